//! LUNA16 folds (issue 26): `luna synth --layout luna16` writes the LUNA16 download's tree,
//! `merge_candidates` records each series' subset and splits train / val / test by subset,
//! `rule: official` keeps the candidates' classes, training never reads a test CT, `epochs` is
//! required, and the real LUNA16 / book CSVs parse through luna's readers.
//!
//! Oracles: the generator's own `synth_truth.json` is not used for the checks that matter; the
//! folder a CT sits in (read from disk), the CSV text and hand-computed distances are.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use luna::tables::*;

use crate::engine_support::{b3, Ws};
use crate::harness::require_real_data;

const EVAL: &str = "evaluationScript/annotations";

/// `luna synth DIR --preset tiny --layout luna16 ...` in `ws`.
fn synth_luna16(ws: &Ws, dir: &str, extra: &[&str]) {
    let mut args = vec!["synth", dir, "--preset", "tiny", "--layout", "luna16"];
    args.extend_from_slice(extra);
    let out = ws.luna(&args);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// series uid → N of the `subsetN` folder its `.mhd` sits in (read from disk).
fn subsets_on_disk(root: &Path) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(root).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(n) = name.strip_prefix("subset") else {
            continue;
        };
        for f in std::fs::read_dir(e.path()).unwrap().flatten() {
            let p = f.path();
            if p.extension().is_some_and(|x| x == "mhd") {
                let uid = p.file_stem().unwrap().to_string_lossy().into_owned();
                m.insert(uid, n.parse().unwrap());
            }
        }
    }
    m
}

/// (uid, xyz, last column) of a LUNA16 CSV's data rows.
fn csv_rows(path: &Path) -> Vec<(String, [f64; 3], f64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let v = |i: usize| f[i].parse::<f64>().unwrap();
            (f[0].to_string(), [v(1), v(2), v(3)], v(4))
        })
        .collect()
}

fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    (0..3).map(|i| (a[i] - b[i]).powi(2)).sum::<f64>().sqrt()
}

#[test]
fn synth_luna16_writes_the_luna16_tree_with_official_candidates() {
    let ws = Ws::new();
    synth_luna16(&ws, "l16", &["--series", "30"]);
    let root = ws.path("l16");
    let subsets = subsets_on_disk(&root);
    assert_eq!(subsets.len(), 30);
    assert_eq!(
        subsets.values().collect::<BTreeSet<_>>().len(),
        10,
        "subset0..9"
    );
    let first = |rel: &str| ws.read(rel).lines().next().unwrap_or_default().to_string();
    assert_eq!(
        first("l16/candidates_V2.csv"),
        "seriesuid,coordX,coordY,coordZ,class"
    );
    let ann_header = "seriesuid,coordX,coordY,coordZ,diameter_mm";
    assert_eq!(first("l16/annotations.csv"), ann_header);
    assert_eq!(first(&format!("l16/{EVAL}/annotations.csv")), ann_header);
    assert_eq!(
        first(&format!("l16/{EVAL}/annotations_excluded.csv")),
        ann_header
    );
    assert_eq!(
        first("l16/annotations_with_malignancy.csv"),
        luna::synth::MALIGNANCY_HEADER
    );
    // seriesuids.csv: one uid per line, no header, every CT
    let uids: BTreeSet<String> = ws
        .read(&format!("l16/{EVAL}/seriesuids.csv"))
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(uids, subsets.keys().cloned().collect());
    let masks = ws.ls("l16/seg-lungs-LUNA16");
    assert_eq!(masks.iter().filter(|m| m.ends_with(".mhd")).count(), 30);
    assert!(!root.join("candidates.csv").exists(), "V2 only");

    // Official candidates: class-1 marks off-centre inside the LUNA16 radius, or on no nodule.
    let ann = csv_rows(&root.join("annotations.csv"));
    let cand = csv_rows(&root.join("candidates_V2.csv"));
    let pos: Vec<_> = cand.iter().filter(|c| c.2 == 1.0).collect();
    assert!(cand.len() > 5 * pos.len(), "many class-0 candidates");
    let mut on_nothing = 0;
    for c in &pos {
        let near = ann
            .iter()
            .filter(|a| a.0 == c.0)
            .map(|a| (dist(a.1, c.1), a.2 / 2.0))
            .find(|(d, r)| d < r);
        match near {
            Some((d, r)) => assert!(d >= 0.29 * r, "off-centre: {d} mm of radius {r}"),
            None => on_nothing += 1,
        }
    }
    let missed = ann
        .iter()
        .filter(|a| !pos.iter().any(|c| c.0 == a.0 && dist(a.1, c.1) < a.2 / 2.0))
        .count();
    assert!(
        on_nothing > 0,
        "some class-1 candidates match no annotation"
    );
    assert!(missed > 0, "some nodules have no class-1 candidate");
    assert!(
        missed < ann.len() / 2,
        "{missed} of {} nodules missed",
        ann.len()
    );
}

#[test]
fn synth_luna16_is_deterministic_by_seed() {
    let ws = Ws::new();
    for d in ["a", "b"] {
        synth_luna16(&ws, d, &["--series", "10", "--seed", "3"]);
    }
    synth_luna16(&ws, "c", &["--series", "10", "--seed", "4"]);
    let digest = |d: &str| -> Vec<(String, String)> {
        walk(&ws.path(d))
            .into_iter()
            .map(|p| {
                let rel = p.strip_prefix(ws.path(d)).unwrap().display().to_string();
                (rel, b3(&std::fs::read(&p).unwrap()))
            })
            .collect()
    };
    assert_eq!(digest("a"), digest("b"));
    assert_ne!(digest("a"), digest("c"));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

fn ann(uid: &str, xyz: [f64; 3], d: f64, mal: Option<bool>, line: i64) -> AnnotationRow {
    AnnotationRow {
        series_uid: uid.into(),
        center_xyz: xyz,
        diameter_mm: d,
        is_malignant: mal,
        source_line: line,
    }
}

fn cand(uid: &str, xyz: [f64; 3], class: i8, line: i64) -> CandidateRow {
    CandidateRow {
        series_uid: uid.into(),
        center_xyz: xyz,
        class,
        source_line: line,
    }
}

#[test]
fn official_rule_keeps_classes_and_joins_malignancy_within_the_luna_radius() {
    // s1: nodule A (d 10, malignant) with an off-centre positive 3 mm away; nodule B (d 6,
    // benign) whose only candidate sits exactly on its radius (3 mm: not a hit, strict <);
    // a class-1 candidate on nothing; a class-0 candidate inside A; a far class-0 one.
    let anns = [
        ann("s1", [0.0, 0.0, 0.0], 10.0, Some(true), 2),
        ann("s1", [50.0, 0.0, 0.0], 6.0, Some(false), 3),
    ];
    let cands = [
        cand("s1", [3.0, 0.0, 0.0], 1, 2),
        cand("s1", [53.0, 0.0, 0.0], 1, 3),
        cand("s1", [100.0, 0.0, 0.0], 1, 4),
        cand("s1", [0.0, 4.0, 0.0], 0, 5),
        cand("s1", [-80.0, 0.0, 0.0], 0, 6),
    ];
    let opts = MergeOptions {
        rule: MergeRule::Official,
        ..MergeOptions::default()
    };
    let rows = merge_rows(&anns, &cands, &opts).expect("merge");
    assert_eq!(rows.len(), 5, "every candidate, no annotation row");
    let at = |x: f64, y: f64| {
        rows.iter()
            .find(|r| r.center_xyz == [x, y, 0.0])
            .unwrap_or_else(|| panic!("row at {x},{y}"))
    };
    let r = at(3.0, 0.0);
    assert_eq!(
        (r.is_nodule, r.has_annotation, r.is_malignant, r.diameter_mm),
        (true, true, Some(true), 10.0),
        "off-centre positive joined to A"
    );
    let r = at(53.0, 0.0);
    assert_eq!(
        (r.is_nodule, r.has_annotation, r.is_malignant, r.diameter_mm),
        (true, false, None, 0.0),
        "on B's radius is no hit: B has no candidate"
    );
    let r = at(100.0, 0.0);
    assert_eq!(
        (r.is_nodule, r.has_annotation, r.is_malignant),
        (true, false, None),
        "a class-1 candidate on no annotation: positive, malignancy unknown"
    );
    let r = at(0.0, 4.0);
    assert_eq!(
        (r.is_nodule, r.has_annotation, r.is_malignant),
        (false, true, Some(true)),
        "class as given"
    );
    assert_eq!(at(-80.0, 0.0).is_malignant, None);
    assert!(
        !rows.iter().any(|r| r.center_xyz == [50.0, 0.0, 0.0]),
        "no centred positive is made up for B"
    );
    // Positives first (the book's sort), then by diameter.
    assert!(rows[0].is_nodule && rows[0].diameter_mm == 10.0);
}

/// A pipeline over the CT tree `l16` with one merge stage per fold (`split: { by: subset,
/// test: K }`), plus `extra` stages.
fn folds_pipeline(folds: &[u32], extra: &str) -> String {
    let mut y = String::from(
        "pipeline: folds\nstages:\n  annotations:\n    uses: load_annotations\n    with: { annotations: l16/annotations_with_malignancy.csv, candidates: l16/candidates_V2.csv }\n",
    );
    for k in folds {
        y.push_str(&format!(
            "  cands_{k}:\n    uses: merge_candidates\n    needs: [annotations]\n    with: {{ ct_root: l16, rule: official, split: {{ by: subset, test: {k} }} }}\n"
        ));
    }
    y + extra
}

#[test]
fn every_fold_splits_series_by_subset_and_disjointly() {
    let ws = Ws::new();
    synth_luna16(&ws, "l16", &["--series", "20"]);
    let on_disk = subsets_on_disk(&ws.path("l16"));
    let folds: Vec<u32> = (0..10).collect();
    ws.pipeline("folds", &folds_pipeline(&folds, ""));
    let out = ws.luna(&["run", "folds"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for k in folds {
        let table = ws
            .object_of(&format!("cands_{k}"))
            .join("candidates.parquet");
        let rows = read_rows::<MergedRow>(&table).expect("candidates.parquet");
        let mut by_split: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for r in &rows {
            assert_eq!(
                r.subset,
                Some(on_disk[&r.series_uid]),
                "subset of {}",
                r.series_uid
            );
            by_split
                .entry(r.split.as_str())
                .or_default()
                .insert(r.series_uid.clone());
        }
        let (tr, va, te) = (&by_split["train"], &by_split["val"], &by_split["test"]);
        assert!(
            tr.is_disjoint(va) && tr.is_disjoint(te) && va.is_disjoint(te),
            "fold {k}"
        );
        let sub =
            |s: &BTreeSet<String>| -> BTreeSet<i64> { s.iter().map(|u| on_disk[u]).collect() };
        assert_eq!(
            sub(te),
            BTreeSet::from([i64::from(k)]),
            "fold {k}: test = subset{k}"
        );
        assert_eq!(
            sub(va),
            BTreeSet::from([i64::from((k + 1) % 10)]),
            "fold {k}: val = next"
        );
        assert_eq!(tr.len() + va.len() + te.len(), on_disk.len());
    }
    // The merge report counts them.
    let rep: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ws.object_of("cands_3").join("merge_report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rep["test_series"], 2);
}

/// Fold 0's training pipeline: crops of the train and val series only, a short CPU training.
const TRAIN: &str = "  crops:\n    uses: build_crops\n    needs: [cands_0]\n    with: { ct_root: l16, split: train_val }\n\
\x20 train:\n    uses: train_classifier\n    needs: [crops]\n    with: { epochs: 1, epoch_samples: 32, batch_size: 16, augment: null, seed: 1, device: cpu, threads: 1, loader_threads: 1, allow_single_class: true }\n";

/// The test fold's CTs, as paths.
fn test_cts(ws: &Ws) -> Vec<std::path::PathBuf> {
    walk(&ws.path("l16/subset0"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "raw"))
        .collect()
}

/// Overwrites the first 4 KiB of every test-fold CT's data with other bytes.
fn change_test_cts(ws: &Ws) {
    for p in test_cts(ws) {
        let mut b = std::fs::read(&p).unwrap();
        let n = b.len().min(4096);
        b[..n].iter_mut().for_each(|v| *v ^= 0x5a);
        std::fs::write(&p, b).unwrap();
    }
}

#[test]
fn training_reads_no_test_ct_and_its_checkpoint_ignores_them() {
    let ws = Ws::new();
    synth_luna16(&ws, "l16", &["--series", "20"]);
    ws.pipeline("folds", &folds_pipeline(&[0], TRAIN));
    let out = ws.luna(&["run", "folds"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let test: BTreeSet<String> = test_cts(&ws)
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(test.len(), 2);
    let index = read_rows::<CropIndexRow>(&ws.object_of("crops").join("index.parquet")).unwrap();
    assert!(!index.is_empty());
    assert!(
        index
            .iter()
            .all(|r| !test.contains(&r.series_uid) && r.split != Split::Test),
        "the training's crops hold no test series"
    );
    let weights =
        |ws: &Ws| b3(&std::fs::read(ws.object_of("train").join("model.safetensors")).unwrap());
    let before = weights(&ws);

    // Corrupt the test fold's CTs: the training's inputs do not contain them, so a re-run
    // (forced, whatever the keys say) trains the same model.
    change_test_cts(&ws);
    let out = ws.luna(&["run", "folds", "--force", "crops"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        weights(&ws),
        before,
        "the checkpoint does not depend on test CTs"
    );
}

/// The key half of the fold-hygiene acceptance: a changed test CT leaves the training stage
/// fresh (stages over an explicit `ct_root` are keyed by the series they read, and the
/// training's crops of `train_val` read no test CT).
#[test]
fn a_changed_test_ct_leaves_the_training_fresh() {
    let ws = Ws::new();
    synth_luna16(&ws, "l16", &["--series", "20"]);
    ws.pipeline("folds", &folds_pipeline(&[0], TRAIN));
    assert_eq!(ws.luna(&["run", "folds"]).code, 0);
    let key = |ws: &Ws| ws.object_of("train");
    let before = key(&ws);
    change_test_cts(&ws);
    let out = ws.luna(&["run", "folds"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(key(&ws), before);
    let st = ws.last_statuses();
    assert!(
        st.iter().any(|(s, v)| s == "train" && v == "cached"),
        "{st:?}"
    );
}

#[test]
fn epochs_is_required_at_plan_time() {
    let ws = Ws::new();
    ws.pipeline(
        "noep",
        "pipeline: noep\nstages:\n  crops:\n    uses: command\n    with: { run: 'true', provides: [crops] }\n  train:\n    uses: train_classifier\n    needs: [crops]\n    with: { batch_size: 8 }\n",
    );
    let out = ws.luna(&["status", "noep"]);
    out.expect_code(2);
    assert!(out.stderr.contains("epochs"), "{}", out.stderr);
    assert!(
        out.stderr.contains("pipelines/noep.yaml:"),
        "{}",
        out.stderr
    );
}

#[test]
fn split_params_are_checked_at_plan_time() {
    let ws = Ws::new();
    for (with, msg) in [
        (
            "split: { by: subset, test: 2, val: [2] }",
            "subset 2 is the test subset",
        ),
        (
            "split: { by: subset, test: 2, val: 3 }",
            "list of subset numbers",
        ),
        (
            "split: { by: subset, val_stride: 0, test: 1 }",
            "at least 1",
        ),
        (
            "split: { by: stride, val_stride: 10 }, val_stride: 10",
            "not both",
        ),
        ("split: { by: folds }", "unknown variant `folds`"),
    ] {
        ws.pipeline(
            "bad",
            &format!("pipeline: bad\nstages:\n  a:\n    uses: command\n    with: {{ run: 'true', provides: [annotations] }}\n  m:\n    uses: merge_candidates\n    needs: [a]\n    with: {{ ct_root: x, {with} }}\n"),
        );
        let out = ws.luna(&["status", "bad"]);
        out.expect_code(2);
        assert!(out.stderr.contains(msg), "{with}:\n{}", out.stderr);
    }
}

#[test]
fn real_luna16_and_book_csvs_parse() {
    let Some(real) = require_real_data() else {
        return;
    };
    let o = CsvOptions::default();
    let eval = real.join("luna16-eval");
    let a = read_annotations_csv(&eval.join("annotations.csv"), AnnotationsKind::Plain, o)
        .expect("annotations.csv");
    assert_eq!(a.rows.len(), 1186);
    let series: BTreeSet<&str> = a.rows.iter().map(|r| r.series_uid.as_str()).collect();
    assert_eq!(series.len(), 601);
    let x = read_annotations_csv(
        &eval.join("annotations_excluded.csv"),
        AnnotationsKind::Excluded,
        o,
    )
    .expect("annotations_excluded.csv");
    assert_eq!(x.rows.len(), 35192);
    assert!(x.rows.iter().any(|r| r.diameter_mm == -1.0));
    let scans = luna::froc::read_seriesuids(&eval.join("seriesuids.csv")).expect("seriesuids");
    assert_eq!(scans.len(), 888);
    let book = real.join("book-csv");
    let m = read_annotations_csv(
        &book.join("annotations_with_malignancy.csv"),
        AnnotationsKind::WithMalignancy,
        o,
    )
    .expect("annotations_with_malignancy.csv");
    assert_eq!(m.rows.len(), 1182);
    let mal = m
        .rows
        .iter()
        .filter(|r| r.is_malignant == Some(true))
        .count();
    assert_eq!(mal, 378, "book: mal_bool True 378 / False 804");
    let b = read_annotations_csv(&book.join("annotations.csv"), AnnotationsKind::Plain, o)
        .expect("book annotations.csv");
    assert_eq!(b.rows.len(), 1186);
    // The official rule joins the book's malignancy to the LUNA16 annotations' own centres:
    // every annotation centre lies in its own hit sphere.
    let cands: Vec<CandidateRow> = a
        .rows
        .iter()
        .map(|r| cand(&r.series_uid, r.center_xyz, 1, r.source_line))
        .collect();
    let opts = MergeOptions {
        rule: MergeRule::Official,
        ..MergeOptions::default()
    };
    let rows = merge_rows(&m.rows, &cands, &opts).expect("merge");
    let joined = rows.iter().filter(|r| r.is_malignant.is_some()).count();
    assert!(joined >= 1182, "{joined} of 1186 joined");
}

#[test]
fn the_synth_stage_writes_luna16_and_load_annotations_prefers_candidates_v2() {
    let ws = Ws::new();
    ws.pipeline(
        "s",
        "pipeline: s\nstages:\n  data:\n    uses: synth\n    with: { preset: tiny, layout: luna16, series: 20, seed: 1 }\n\
         \x20 annotations:\n    uses: load_annotations\n    needs: [data]\n\
         \x20 cands:\n    uses: merge_candidates\n    needs: [annotations, data]\n    with: { rule: official, split: { by: subset, test: 9, val: [0, 1] } }\n",
    );
    let out = ws.luna(&["run", "s"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let data = ws.object_of("data");
    assert!(data
        .join("evaluationScript/annotations/seriesuids.csv")
        .is_file());
    let rep: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ws.object_of("annotations").join("load_report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rep["candidates"]["file"], "candidates_V2.csv");
    let rows = read_rows::<MergedRow>(&ws.object_of("cands").join("candidates.parquet")).unwrap();
    let series = |s: Split| -> BTreeSet<(String, Option<i64>)> {
        rows.iter()
            .filter(|r| r.split == s)
            .map(|r| (r.series_uid.clone(), r.subset))
            .collect()
    };
    // 20 series in 10 subsets: subset9 is the test fold, subsets 0 and 1 validation.
    assert!(series(Split::Test).iter().all(|(_, s)| *s == Some(9)));
    assert_eq!(series(Split::Test).len(), 2);
    assert_eq!(series(Split::Val).len(), 4);
    assert_eq!(series(Split::Train).len(), 14);
    // The lung masks are not CTs: 20 series, not 40 (or "on disk twice").
    let all: BTreeSet<&str> = rows.iter().map(|r| r.series_uid.as_str()).collect();
    assert_eq!(all.len(), 20);
}

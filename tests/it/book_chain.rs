//! The book's own models on a real CT: `pipelines/book-models.yaml` (import_model of the two
//! 2020 checkpoints → segment → cluster with the book's 3-D erosion → classify_candidates
//! without a malignancy model → diagnose) on LIDC-IDRI-0003 equals an independent PyTorch +
//! scipy implementation of the book's `nodule_analysis.py` chain (tests/oracle/book_chain.py,
//! on the same DICOM series and checkpoints): the same clusters (count, voxels per cluster,
//! centres) and P(nodule) per cluster within 1e-4. Needs `../shared/real/`; under `CI` it must
//! be there.

use std::path::{Path, PathBuf};

use luna::tables::{read_rows, ClusterRow, DetectionRow};

use crate::engine_support::Ws;
use crate::nn_support::run_oracle;

const SEG: &str = "seg_2020-01-26_19.45.12_w4d3c1-bal_1_nodupe-label_pos-d1_fn8-adam.best.state";
const CLS: &str = "cls_2020-02-06_14.16.55_final-nodule-nonnodule.best.state";

/// The folder of the one DICOM series under `lidc/`.
fn series_dir(lidc: &Path) -> PathBuf {
    let mut dir = lidc.join("LIDC-IDRI-0003");
    for _ in 0..2 {
        let sub = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.is_dir())
            .unwrap_or_else(|| panic!("no series folder under {}", dir.display()));
        dir = sub;
    }
    dir
}

#[test]
fn book_models_on_a_real_ct_equal_the_books_chain_in_pytorch_and_scipy() {
    let Some(real) = crate::harness::require_real_data() else {
        return;
    };
    let ws = Ws::new();
    let yaml =
        std::fs::read_to_string(Path::new(crate::REPO).join("pipelines/book-models.yaml")).unwrap();
    ws.pipeline("book-models", &yaml);
    let sets = [
        format!("models={}", real.join("book-models").display()),
        format!("ct_root={}", real.join("lidc").display()),
        "device=cpu".to_string(),
    ];
    // `luna <command> book-models <extra> --set …` with the real data's paths
    let luna = |command: &str, extra: &[&str]| {
        let mut args = vec![command, "book-models"];
        args.extend_from_slice(extra);
        for s in &sets {
            args.extend(["--set", s.as_str()]);
        }
        ws.luna(&args)
    };
    let out = luna("run", &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let path = |s: &str| PathBuf::from(luna("path", &[s]).stdout.trim());
    let mut clusters: Vec<ClusterRow> =
        read_rows(&path("clusters").join("clusters.parquet")).unwrap();
    clusters.sort_by_key(|c| c.cluster_id);
    let mut detections: Vec<DetectionRow> =
        read_rows(&path("detections").join("detections.parquet")).unwrap();
    detections.sort_by_key(|d| d.cluster_id);

    let s = |p: PathBuf| p.to_str().unwrap().to_string();
    let models = real.join("book-models");
    let oracle_json = ws.path("oracle.json");
    run_oracle(
        "book_chain.py",
        &[
            &s(series_dir(&real.join("lidc"))),
            &s(models.join(SEG)),
            &s(models.join(CLS)),
            "--threads",
            "2",
            "--annotations",
            &s(real.join("luna16-eval/annotations.csv")),
            "--out",
            &s(oracle_json.clone()),
        ],
    );
    let oracle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&oracle_json).unwrap()).unwrap();
    let want = oracle["clusters"].as_array().unwrap();
    assert_eq!(
        clusters.len(),
        want.len(),
        "cluster count; oracle: {oracle}"
    );
    assert_eq!(detections.len(), want.len(), "one detection per cluster");
    for ((c, d), w) in clusters.iter().zip(&detections).zip(want) {
        assert_eq!(
            c.voxels,
            w["voxels"].as_i64().unwrap(),
            "cluster {}",
            c.cluster_id
        );
        for k in 0..3 {
            let (got, exp) = (c.center_irc[k], w["irc"][k].as_f64().unwrap());
            assert!(
                (got - exp).abs() <= 1e-6,
                "cluster {} irc {got} vs {exp}",
                c.cluster_id
            );
            assert_eq!(d.center_irc[k], w["crop_center_irc"][k].as_i64().unwrap());
        }
        let (got, exp) = (d.prob_nodule, w["prob_nodule"].as_f64().unwrap());
        assert!(
            (got - exp).abs() <= 1e-4,
            "cluster {}: P(nodule) {got} vs oracle {exp}",
            c.cluster_id
        );
        assert_eq!(d.prob_malignant, None, "no malignancy model: null");
    }
    // what the book's models find: each annotated nodule by luna's clusters, by both rules,
    // as the oracle judged it from its own clusters
    let found = found_nodules(
        &real.join("luna16-eval/annotations.csv"),
        oracle["series_uid"].as_str().unwrap(),
        &clusters,
        &detections,
    );
    let want = oracle["nodules"].as_array().unwrap();
    assert_eq!(found.len(), want.len());
    for (f, w) in found.iter().zip(want) {
        for (k, v) in f {
            assert_eq!(w[*k].as_bool(), Some(*v), "{k}: {f:?} vs oracle {w}");
        }
    }
    let accepted = detections.iter().filter(|d| d.prob_nodule > 0.5).count();
    eprintln!(
        "book models on LIDC-IDRI-0003: {} clusters, {accepted} with P(nodule) > 0.5; false positives {}; nodules {found:?}",
        clusters.len(),
        oracle["false_positives"]
    );
}

/// Per annotated nodule of `uid`: whether a cluster (any, and with P(nodule) > 0.5) lies within
/// its radius (LUNA16) and within 0.7 × its diameter (the book), keyed as the oracle's JSON.
fn found_nodules(
    csv: &Path,
    uid: &str,
    clusters: &[ClusterRow],
    detections: &[DetectionRow],
) -> Vec<Vec<(&'static str, bool)>> {
    let text = std::fs::read_to_string(csv).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| l.starts_with(uid))
        .map(|l| {
            let v: Vec<f64> = l.split(',').skip(1).map(|x| x.parse().unwrap()).collect();
            let dist: Vec<(f64, bool)> = clusters
                .iter()
                .zip(detections)
                .map(|(c, d)| {
                    let d2: f64 = (0..3).map(|k| (c.center_xyz[k] - v[k]).powi(2)).sum();
                    (d2.sqrt(), d.prob_nodule > 0.5)
                })
                .collect();
            let any = |ok: &dyn Fn(f64) -> bool, accepted: bool| {
                dist.iter().any(|&(x, a)| ok(x) && (a || !accepted))
            };
            let (luna16, book) = (|x: f64| x <= v[3] / 2.0, |x: f64| x < 0.7 * v[3]);
            vec![
                ("segmented_luna16", any(&luna16, false)),
                ("segmented_book", any(&book, false)),
                ("found_luna16", any(&luna16, true)),
                ("found_book", any(&book, true)),
            ]
        })
        .collect()
}

//! DICOM series as dataset CTs (`stages::dataset::find_series`): a `ct_root` of `.mhd` files and
//! LIDC-style DICOM folders side by side builds crops for both, keyed by SeriesInstanceUID; a
//! uid on disk twice (as `.mhd` and DICOM, or two DICOM copies) is an error naming both
//! places; LUNA16's `seg-lungs-LUNA16` masks (`.mhd` named like the CTs) are not CTs; a DICOM
//! CT's partitions are keyed by its slices' content, not their file names.

use std::path::{Path, PathBuf};

use crate::data_support::{data_artifact, data_mhds, data_synth};
use crate::dicom_equiv::write_dicom;
use crate::engine_support::Ws;

/// A pipeline over `root`: candidates (CTs required on disk) and their crops.
fn crops_pipeline(root: &str) -> String {
    format!(
        "pipeline: c\nstages:\n  \
         annotations: {{ uses: load_annotations, with: {{ annotations: ext/annotations_with_malignancy.csv, candidates: ext/candidates.csv }} }}\n  \
         candidates: {{ uses: merge_candidates, needs: [annotations], with: {{ val_stride: 2, ct_root: {root} }} }}\n  \
         crops: {{ uses: build_crops, needs: [candidates], with: {{ ct_root: {root} }} }}\n"
    )
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

/// Copies a `.mhd` and its data file (same stem) into `dir` under the stem `stem`.
fn copy_mhd(mhd: &Path, dir: &Path, stem: &str) {
    let text = std::fs::read_to_string(mhd).unwrap();
    let data = mhd.with_extension("raw");
    let ext = if data.is_file() { "raw" } else { "zraw" };
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("ElementDataFile") {
                format!("ElementDataFile = {stem}.{ext}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{stem}.mhd")), text + "\n").unwrap();
    copy(&mhd.with_extension(ext), &dir.join(format!("{stem}.{ext}")));
}

fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from).into_iter().flatten() {
        if e.file_type().is_file() {
            copy(e.path(), &to.join(e.path().strip_prefix(from).unwrap()));
        }
    }
}

fn stem(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

fn crops_json(ws: &Ws) -> serde_json::Value {
    let f = data_artifact(ws, "c", "crops").join("crops.json");
    serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap()
}

/// `ext` (2 synthetic CTs) and `dcm/` (both as DICOM series); returns each CT's `.mhd` and
/// series folder.
fn two_cts(ws: &Ws) -> Vec<(PathBuf, PathBuf)> {
    data_synth(ws, "ext", 7, 2);
    let written = write_dicom(ws, "ext", &ws.path("dcm"), None);
    let mhds = data_mhds(&ws.path("ext"));
    assert_eq!(mhds.len(), 2);
    mhds.into_iter()
        .map(|m| {
            let uid = stem(&m);
            let dir = written
                .iter()
                .find_map(|l| l.strip_prefix(&format!("{uid} ")))
                .unwrap_or_else(|| panic!("{uid} not in {written:?}"));
            (m, PathBuf::from(dir))
        })
        .collect()
}

#[test]
fn a_mixed_tree_of_mhd_and_dicom_series_with_lung_masks_builds_every_ct() {
    let ws = Ws::new();
    let cts = two_cts(&ws);
    // CT 0 as .mhd, CT 1 as its DICOM series, LUNA16's masks of both beside them
    let mixed = ws.path("mixed");
    copy_mhd(&cts[0].0, &mixed.join("subset0"), &stem(&cts[0].0));
    let series = mixed.join("LIDC-X/study/series");
    copy_tree(&cts[1].1, &series);
    for (m, _) in &cts {
        copy_mhd(m, &mixed.join("seg-lungs-LUNA16"), &stem(m));
    }
    ws.pipeline("c", &crops_pipeline("mixed"));
    let out = ws.luna(&["run", "c"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc = crops_json(&ws);
    assert_eq!(doc["series"], 2, "{doc}");
    let index =
        luna::store::crop_set::read_index(&data_artifact(&ws, "c", "crops").join("index.parquet"))
            .unwrap();
    let mut uids: Vec<String> = index.iter().map(|r| r.series_uid.clone()).collect();
    uids.dedup();
    let mut want: Vec<String> = cts.iter().map(|(m, _)| stem(m)).collect();
    want.sort();
    assert_eq!(
        uids, want,
        "crops of the .mhd CT and of the DICOM series (by its uid)"
    );

    // renaming a series' slice files re-runs nothing: the stages are keyed by the CTs they
    // read, and a DICOM CT by its slices' content, not their names
    for e in std::fs::read_dir(&series).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().replace("IM", "slice-");
        std::fs::rename(e.path(), series.join(name)).unwrap();
    }
    let again = ws.luna(&["run", "c"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        ws.last_statuses().iter().all(|(_, s)| s == "cached"),
        "{:?}\n{}",
        ws.last_statuses(),
        again.stderr
    );
}

#[test]
fn a_ct_root_with_luna16_lung_masks_reads_the_cts_only() {
    // before the rule: "series X is on disk twice: …/subset0/X.mhd and …/seg-lungs-LUNA16/X.mhd"
    let ws = Ws::new();
    data_synth(&ws, "ext", 7, 2);
    for m in data_mhds(&ws.path("ext")) {
        copy_mhd(&m, &ws.path("ext/seg-lungs-LUNA16"), &stem(&m));
    }
    ws.pipeline("c", &crops_pipeline("ext"));
    let out = ws.luna(&["run", "c"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(crops_json(&ws)["series"], 2);
}

#[test]
fn a_series_on_disk_twice_is_an_error_naming_both_places() {
    let ws = Ws::new();
    let cts = two_cts(&ws);
    let uid = stem(&cts[0].0);
    // as .mhd and as DICOM
    copy_mhd(&cts[0].0, &ws.path("dcm/subset0"), &uid);
    ws.pipeline("c", &crops_pipeline("dcm"));
    let out = ws.luna(&["run", "c"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let mhd = ws.path("dcm/subset0").join(format!("{uid}.mhd"));
    let dir = cts[0].1.clone();
    let want = format!(
        "series {uid} is on disk twice: {} and {}",
        mhd.display(),
        dir.display()
    );
    assert!(out.stderr.contains(&want), "{want}\n{}", out.stderr);
    assert!(
        out.stderr
            .contains("hint: remove one copy; luna identifies a CT by its series uid"),
        "{}",
        out.stderr
    );
    // two copies of one DICOM series
    std::fs::remove_file(&mhd).unwrap();
    copy_tree(&dir, &ws.path("dcm/copy/series"));
    let out = ws.luna(&["run", "c"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let want = format!("series {uid} is on disk twice: ");
    assert!(out.stderr.contains(&want), "{}", out.stderr);
    for place in [&dir, &ws.path("dcm/copy/series")] {
        assert!(
            out.stderr.contains(&place.display().to_string()),
            "{}: {}",
            place.display(),
            out.stderr
        );
    }
}

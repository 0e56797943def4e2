//! `seg_dataset` (issue 8, item 1): the annotation mask and the UNet samples against an
//! independent numpy implementation (`tests/oracle/seg_mask.py`, reading the HDF5 with h5py +
//! hdf5plugin) on a tiny synthetic dataset plus two hand-made CTs whose nodules touch the
//! volume's edges (`tests/oracle/seg_edge_ct.py`); the reader API (`SegStore`) on the same
//! files; the bad inputs (a CT with fewer than 7 slices, an annotation outside the volume) with
//! their exact messages; and incrementality (3 series → 5 series computes 2 partitions).

use std::path::Path;

use luna::store::SegStore;
use luna::tables::{read_rows, SegIndexRow, Split};

use crate::data_support::{
    data_artifact, data_count_kind, data_expect_failure, data_json, data_oracle, data_synth,
};
use crate::engine_support::{stages_with, Ws};

const PART: &str = "seg_dataset/partition";

/// load_annotations → merge_candidates (val_stride 2) → seg_dataset over the folder `ext`.
fn pipeline(seg_with: &str) -> String {
    format!(
        "pipeline: seg\nstages:\n  \
         annotations: {{ uses: load_annotations, with: {{ annotations: ext/annotations_with_malignancy.csv, candidates: ext/candidates.csv }} }}\n  \
         candidates: {{ uses: merge_candidates, needs: [annotations], with: {{ val_stride: 2, ct_root: ext }} }}\n  \
         seg: {{ uses: seg_dataset, needs: [candidates], with: {{ ct_root: ext{seg_with} }} }}\n"
    )
}

/// The number after `key=` in an oracle summary line.
fn count(line: &str, key: &str) -> usize {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

#[test]
fn seg_dataset_matches_numpy_for_every_voxel_and_sample() {
    let ws = Ws::new();
    data_synth(&ws, "ext", 1, 4);
    data_oracle("seg_edge_ct.py", &[&ws.path("ext"), Path::new("10")]);
    let mut yaml = pipeline(", crop: 48");
    yaml.push_str(
        "  seg_all: { uses: seg_dataset, needs: [candidates], with: { ct_root: ext, crop: 48, context_slices: 2, val_slices: all } }\n",
    );
    ws.pipeline("seg", &yaml);
    ws.luna(&["run", "seg"]).expect_code(0);
    let cand = data_artifact(&ws, "seg", "candidates");
    let seg = data_artifact(&ws, "seg", "seg");
    let seg_all = data_artifact(&ws, "seg", "seg_all");
    let schemas = Path::new(crate::REPO).join("schemas");
    let out = data_oracle(
        "seg_mask.py",
        &[&schemas, &ws.path("ext"), &cand, &seg, &seg_all],
    );
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("OK ")).collect();
    assert_eq!(lines.len(), 2, "{out}");
    for line in &lines {
        assert_eq!(count(line, "series"), 6, "{line}");
        assert!(count(line, "train") >= 3, "{line}");
        assert!(count(line, "val") >= 3, "{line}");
        // Boxes clipped at the volume's edges, clamped context slices, shifted crops, flips.
        assert!(count(line, "edge_boxes") >= 6, "{line}");
        assert!(count(line, "clamped") >= 2, "{line}");
        assert!(count(line, "shifted") >= 1, "{line}");
        assert!(count(line, "flipped") >= 1, "{line}");
    }
    assert!(lines[1].contains("val_slices=all"), "{out}");

    // The reader API the training stage uses, on the same files.
    let index = read_rows::<SegIndexRow>(&seg.join("seg_index.parquet")).expect("seg_index");
    for r in &index {
        let store = SegStore::open(seg.join(&r.file)).expect("open store");
        assert_eq!(store.series_uid(), r.series_uid);
        let (shape, mask) = (store.shape(), store.read_mask().expect("mask"));
        let plane = shape[1] * shape[2];
        let (ins, side) = match r.dataset {
            Split::Train => (store.train_input_shape(), store.crop()),
            Split::Val => (store.val_input_shape(), shape[1]),
            Split::Test => panic!("a test series is never in a segmentation dataset: {r:?}"),
        };
        let mut input = vec![0i16; ins.iter().product()];
        let mut label = vec![0u8; ins[1] * ins[2]];
        match r.dataset {
            Split::Train => store.read_train(r.row as usize, &mut input, &mut label),
            Split::Val => store.read_val(r.row as usize, &mut input, &mut label),
            Split::Test => panic!("a test series is never in a segmentation dataset: {r:?}"),
        }
        .expect("read sample");
        assert_eq!(ins[0], 2 * store.context_slices() + 1);
        assert_eq!(ins[1], side);
        let sum: i64 = label.iter().map(|&v| i64::from(v)).sum();
        assert_eq!(sum, r.label_pixels, "{r:?}");
        assert!(input.iter().all(|v| (-1000..=1000).contains(v)), "{r:?}");
        if r.dataset == Split::Val {
            let s = r.slice as usize;
            assert_eq!(&label[..], &mask[s * plane..(s + 1) * plane], "{r:?}");
        }
    }
}

#[test]
fn seg_dataset_names_the_ct_with_too_few_slices() {
    let ws = Ws::new();
    data_oracle("seg_edge_ct.py", &[&ws.path("ext"), Path::new("6")]);
    ws.pipeline("seg", &pipeline(", crop: 48"));
    let o = ws.luna(&["run", "seg"]);
    let mhd = ws.path("ext/subset9/1.2.0.edge.a.mhd");
    let want = format!(
        "{}: series 1.2.0.edge.a has 6 slices, fewer than the 7 (2 × context_slices 3 + 1) one \
         segmentation sample spans; remove this CT from the dataset or lower `context_slices`",
        mhd.display()
    );
    data_expect_failure(&o, &["seg", &want]);
    // With 2 context slices (5 per sample) the same CTs are fine.
    ws.pipeline("seg", &pipeline(", crop: 48, context_slices: 2"));
    ws.luna(&["run", "seg"]).expect_code(0);
}

#[test]
fn seg_dataset_names_an_annotation_outside_the_volume() {
    let ws = Ws::new();
    data_oracle("seg_edge_ct.py", &[&ws.path("ext"), Path::new("10")]);
    // Line 2 is the first nodule of 1.2.0.edge.a, at voxel (0, 2, 57): move it to z = 500 mm.
    crate::data_support::data_set_csv_field(
        &ws.path("ext/annotations_with_malignancy.csv"),
        2,
        3,
        "500.0",
    );
    ws.pipeline("seg", &pipeline(", crop: 48"));
    let o = ws.luna(&["run", "seg"]);
    let mhd = ws.path("ext/subset9/1.2.0.edge.a.mhd");
    let want = format!(
        "{}: series 1.2.0.edge.a: the annotated nodule at xyz (20.250, -18.400, 500.000) mm maps \
         to voxel (index 325, row 2, col 57), outside the volume of shape (i,r,c) [10, 56, 60]; \
         check the annotation's coordinates against the CT's Offset, ElementSpacing and \
         TransformMatrix",
        mhd.display()
    );
    data_expect_failure(&o, &["seg", &want]);
}

#[test]
fn seg_dataset_crop_is_checked_at_plan_time_and_per_ct() {
    let ws = Ws::new();
    data_oracle("seg_edge_ct.py", &[&ws.path("ext"), Path::new("10")]);
    ws.pipeline("seg", &pipeline(", crop: 50"));
    let o = ws.luna(&["run", "seg"]);
    o.expect_code(2);
    assert!(
        o.stderr
            .contains("crop 50 must be a positive multiple of 4 (the UNet pools twice)"),
        "{}",
        o.stderr
    );
    ws.pipeline("seg", &pipeline(""));
    let o = ws.luna(&["run", "seg"]);
    data_expect_failure(
        &o,
        &["series 1.2.0.edge.a: the 96×96 training crop does not fit in its 56×60 slices; set `crop` to at most 56"],
    );
}

#[test]
fn seg_dataset_adding_series_computes_only_their_partitions() {
    let ws = Ws::new();
    ws.pipeline("seg", &pipeline(", crop: 64"));
    // Seed 11: the two new series sort between the old ones without changing the old series'
    // split under val_stride 2 (index 0 val, 1 train, 2 val stays 0, 1, 4).
    data_synth(&ws, "ext", 11, 3);
    ws.luna(&["run", "seg"]).expect_code(0);
    let seg = data_artifact(&ws, "seg", "seg");
    let s = data_json(&seg.join("seg.json"));
    assert_eq!(s["series_computed"], 3, "{s}");
    assert_eq!(data_count_kind(&ws, PART), 3);
    let old_index = read_rows::<SegIndexRow>(&seg.join("seg_index.parquet")).expect("index");

    std::fs::remove_dir_all(ws.path("ext")).expect("remove ext");
    data_synth(&ws, "ext", 11, 5);
    ws.luna(&["run", "seg"]).expect_code(0);
    let seg2 = data_artifact(&ws, "seg", "seg");
    assert_ne!(seg, seg2, "the stage key must change with the new CTs");
    let s = data_json(&seg2.join("seg.json"));
    assert_eq!(s["series_computed"], 2, "{s}");
    assert_eq!(s["series"], 5, "{s}");
    assert_eq!(data_count_kind(&ws, PART), 5);
    assert_eq!(ws.ls(&format!("{}/seg", seg2.display())).len(), 5);
    // The old series' rows are unchanged (same files, rows, labels).
    let new_rows = read_rows::<SegIndexRow>(&seg2.join("seg_index.parquet")).expect("index");
    for r in old_index {
        assert!(new_rows.contains(&r), "row {r:?} changed");
    }

    let o = ws.luna(&["run", "seg"]);
    o.expect_code(0);
    assert!(
        stages_with(&o.stderr, "CACHED").contains(&"seg".to_string()),
        "{}",
        o.stderr
    );
}

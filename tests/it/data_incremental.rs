//! Incrementality of `build_crops` (issue 3, point 2): a dataset made with `luna synth` in an
//! external folder, processed through `ct_root` and explicit CSV paths; then regenerated with
//! two more series (same seed). The first series keep their bytes but one moves to another
//! `subsetN` folder, which is fine because partitions are keyed by content, not path. The
//! second run must compute exactly the two new partitions and reuse the old ones untouched.

use std::collections::BTreeMap;

use crate::data_support::{
    data_artifact, data_count_kind, data_ext_pipeline, data_json, data_mhds, data_synth,
};
use crate::engine_support::{b3, Ws};

const PART: &str = "build_crops/partition";

/// uid → (subset folder, blake3 of .mhd + .raw).
fn series_files(ws: &Ws) -> BTreeMap<String, (String, String)> {
    data_mhds(&ws.path("ext"))
        .into_iter()
        .map(|m| {
            let uid = m.file_stem().expect("stem").to_string_lossy().to_string();
            let subset = m
                .parent()
                .and_then(|p| p.file_name())
                .expect("subset")
                .to_string_lossy()
                .to_string();
            let mut bytes = std::fs::read(&m).expect("read mhd");
            bytes.extend(std::fs::read(m.with_extension("raw")).expect("read raw"));
            (uid, (subset, b3(&bytes)))
        })
        .collect()
}

/// Partition keys of the `crops` stage in the last run record.
fn crop_partitions(ws: &Ws) -> Vec<String> {
    let run = ws.last_run();
    let st = run["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["stage"] == "crops")
        .expect("crops stage");
    st["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|k| k.as_str().expect("key").to_string())
        .collect()
}

/// `created` of a partition object's manifest.
fn created(ws: &Ws, key: &str) -> String {
    let m = data_json(&ws.path(&format!("cache/objects/{}/{key}/manifest.json", &key[..2])));
    assert_eq!(m["kind"], PART);
    m["created"].as_str().expect("created").to_string()
}

#[test]
fn data_adding_series_computes_only_their_partitions() {
    let ws = Ws::new();
    ws.pipeline("data", &data_ext_pipeline("", ""));
    data_synth(&ws, "ext", 11, 3);
    let before = series_files(&ws);
    assert_eq!(before.len(), 3);

    ws.luna(&["run", "data"]).expect_code(0);
    let crops = data_artifact(&ws, "data", "crops");
    assert_eq!(data_json(&crops.join("crops.json"))["series_computed"], 3);
    assert_eq!(data_count_kind(&ws, PART), 3);
    let old_keys = crop_partitions(&ws);
    assert_eq!(old_keys.len(), 3);
    let old_created: Vec<String> = old_keys.iter().map(|k| created(&ws, k)).collect();

    std::fs::remove_dir_all(ws.path("ext")).expect("remove ext");
    data_synth(&ws, "ext", 11, 5);
    let after = series_files(&ws);
    assert_eq!(after.len(), 5);
    let mut moved = 0;
    for (uid, (subset, hash)) in &before {
        let (subset2, hash2) = after
            .get(uid)
            .unwrap_or_else(|| panic!("series {uid} gone after regenerating"));
        assert_eq!(
            hash, hash2,
            "series {uid}: same seed must give the same bytes"
        );
        moved += usize::from(subset != subset2);
    }
    assert!(
        moved >= 1,
        "expected a series to move subset folder (contiguous chunks): {before:?} → {after:?}"
    );

    ws.luna(&["run", "data"]).expect_code(0);
    let crops2 = data_artifact(&ws, "data", "crops");
    assert_ne!(crops, crops2, "the stage key must change with the new CTs");
    let summary = data_json(&crops2.join("crops.json"));
    assert_eq!(summary["series_computed"], 2, "{summary}");
    assert_eq!(summary["series"], 5);
    assert_eq!(data_count_kind(&ws, PART), 5);
    let new_keys = crop_partitions(&ws);
    assert_eq!(new_keys.len(), 5);
    for (k, c) in old_keys.iter().zip(&old_created) {
        assert!(new_keys.contains(k), "old partition {k} not reused");
        assert_eq!(&created(&ws, k), c, "old partition {k} was rewritten");
    }
    assert_eq!(
        std::fs::read_dir(crops2.join("crops"))
            .expect("crops/")
            .count(),
        5
    );

    // Nothing changed: the whole stage is a cache hit.
    let o = ws.luna(&["run", "data"]);
    o.expect_code(0);
    assert!(
        crate::engine_support::stages_with(&o.stderr, "CACHED").contains(&"crops".to_string()),
        "{}",
        o.stderr
    );
}

//! `classify_candidates` bad input through the real binary: one small nodule model is trained
//! once per workspace (cached across the pipelines below), and each pipeline's `clusters`
//! stage writes the clusters of the candidate table (`tests/oracle/clusters_from_candidates.py`)
//! and then breaks them with pyarrow — a missing coordinate column, a NaN coordinate, a series
//! that is not in the dataset, no scan list — or binds the nodule model as the malignancy
//! model. Each is exit 1 with the file (row, column where it applies) and the cause, and
//! `classify_candidates` commits nothing.

use crate::engine_support::{Out, Ws};

/// Breaks `$1/clusters.parquet` (or its scan list) the way `$2` says.
const EDIT: &str = r#"import os, sys
import pyarrow as pa, pyarrow.parquet as pq
out, case = sys.argv[1], sys.argv[2]
p = os.path.join(out, "clusters.parquet")
t = pq.read_table(p)
if case == "nan":
    c = t.column("coord_y").to_pylist()
    c[1] = float("nan")
    t = t.set_column(t.schema.get_field_index("coord_y"), "coord_y", pa.array(c, pa.float64()))
elif case == "drop":
    t = t.drop_columns(["coord_x"])
elif case == "unknown":
    c = t.column("series_uid").to_pylist()
    c[0] = "1.2.999"
    t = t.set_column(0, "series_uid", pa.array(c, pa.string()))
    with open(os.path.join(out, "seriesuids.csv"), "a") as f:
        f.write("1.2.999\n")
elif case == "nolist":
    os.remove(os.path.join(out, "seriesuids.csv"))
pq.write_table(t, p)
"#;

fn pipeline(case: &str, detections_with: &str) -> String {
    let fast = "batch_size: 16, augment: null, optimizer: { kind: adam, lr: 0.001 }, device: cpu, threads: 1, loader_threads: 1";
    format!(
        "pipeline: c\nstages:\n  data:\n    uses: synth\n    with: {{ preset: tiny, seed: 5 }}\n\
         \x20 annotations:\n    uses: load_annotations\n    needs: [data]\n\
         \x20 candidates:\n    uses: merge_candidates\n    needs: [annotations, data]\n    with: {{ val_stride: 2 }}\n\
         \x20 crops:\n    uses: build_crops\n    needs: [candidates, data]\n\
         \x20 nodule:\n    uses: train_classifier\n    needs: [crops]\n    with: {{ epochs: 1, epoch_samples: 16, {fast} }}\n\
         \x20 clusters:\n    uses: command\n    needs: [candidates]\n    with: {{ run: '\"$LUNA_PYTHON\" {repo}/tests/oracle/clusters_from_candidates.py \"$LUNA_IN_CANDIDATES/candidates.parquet\" \"$LUNA_OUT\" && \"$LUNA_PYTHON\" edit.py \"$LUNA_OUT\" {case}', inputs: [edit.py], provides: [clusters] }}\n\
         \x20 detections:\n    uses: classify_candidates\n    needs: [clusters, nodule, data]\n    with: {{ device: cpu, {detections_with} }}\n",
        repo = crate::REPO
    )
}

fn run(ws: &Ws, case: &str, detections_with: &str) -> Out {
    ws.pipeline("c", &pipeline(case, detections_with));
    let py = crate::py::python();
    ws.luna_env(&["run", "c"], &[("LUNA_PYTHON", py.to_str().unwrap())])
}

fn fails(ws: &Ws, case: &str, detections_with: &str, texts: &[&str]) {
    let out = run(ws, case, detections_with);
    out.expect_code(1);
    for t in texts {
        assert!(
            out.stderr.contains(t),
            "{case}: missing {t:?} in:\n{}",
            out.stderr
        );
    }
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("FAILED") && l.ends_with(" detections")),
        "{case}: the failed stage is named:\n{}",
        out.stderr
    );
    assert!(
        ws.manifests()
            .iter()
            .all(|m| m["stage"] != "detections" || m["kind"] != "classify_candidates"),
        "{case}: a failed classify_candidates committed an artifact"
    );
}

#[test]
fn classify_candidates_refuses_bad_clusters_and_a_model_in_the_wrong_slot() {
    let ws = Ws::new();
    ws.file("edit.py", EDIT);
    fails(
        &ws,
        "drop",
        "model: nodule",
        &["clusters.parquet: column \"coord_x\" of table clusters: expected column #2 of type Float64, found no such column"],
    );
    fails(
        &ws,
        "nan",
        "model: nodule",
        &["clusters.parquet: row 1 (0-based) of table clusters: column coord_y is NaN, not a finite number"],
    );
    fails(
        &ws,
        "unknown",
        "model: nodule",
        &[
            "clusters.parquet: series 1.2.999 has clusters but ",
            " holds no 1.2.999.mhd",
            "hint: point `ct_root` (or the `dataset` input) at the CTs that were segmented",
        ],
    );
    fails(
        &ws,
        "nolist",
        "model: nodule",
        &[
            "seriesuids.csv: missing: the clusters artifact of `clusters` does not say which series were searched",
            "hint: a stage that provides `clusters` writes seriesuids.csv beside clusters.parquet",
        ],
    );
    fails(
        &ws,
        "none",
        "model: nodule, malignancy_model: nodule",
        &[
            "`malignancy_model: nodule` is a nodule classifier, but `malignancy_model` takes a malignancy classifier",
            "hint: bind `model:` to the train_classifier stage with `task: nodule` and `malignancy_model:` to the one with `task: malignancy`",
        ],
    );
}

//! Training that diverges, a corrupt model, bad hyperparameters and single-class data stop with
//! clear errors (issue: NaN-safe metrics and loss, validated hyperparameters).

use std::path::PathBuf;

use crate::engine_support::Ws;
use crate::train_support::{pipeline, stage_logs, write_crops, Fixture};

const FAST: &str = "batch_size: 16, augment: null, device: cpu, threads: 1, loader_threads: 1";

fn ws(f: &Fixture, extra: &str) -> Ws {
    let ws = Ws::new();
    write_crops(&ws.path("fixture"), f);
    ws.pipeline("t", &pipeline(extra));
    ws
}

fn small() -> Fixture {
    Fixture {
        series: 4,
        per_series: 12,
        malignancy: true,
    }
}

#[test]
fn lr_10_ends_with_the_nan_loss_error_in_bounded_memory() {
    let ws = ws(
        &small(),
        &format!("  nodule:\n    uses: train_classifier\n    needs: [crops]\n    with: {{ epochs: 3, epoch_samples: 192, optimizer: {{ kind: sgd, lr: 10 }}, {FAST} }}\n"),
    );
    let out = ws.luna(&["run", "t"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("loss became")
            && out
                .stderr
                .contains("(lr 10): lower the learning rate or check the inputs"),
        "{}",
        out.stderr
    );
    assert_eq!(ws.committed("nodule"), 0, "nothing committed");
    let log = stage_logs(ws.root(), "nodule");
    let mib: u64 = log
        .lines()
        .find_map(|l| l.split("worker: peak memory ").nth(1))
        .and_then(|s| s.trim_end_matches(" MiB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory line in the log:\n{log}"));
    assert!(mib < 2048, "worker peak RSS {mib} MiB");
}

#[test]
fn a_model_with_nan_weights_fails_evaluation_and_commits_nothing() {
    let ws = ws(
        &small(),
        &format!(
            "  nodule:\n    uses: train_classifier\n    needs: [crops]\n    with: {{ epochs: 1, epoch_samples: 32, {FAST} }}\n\
             \x20 broken:\n    uses: command\n    needs: [nodule]\n    with: {{ run: 'cp -r \"$LUNA_IN_NODULE\"/. \"$LUNA_OUT\"/ && chmod -R u+w \"$LUNA_OUT\" && \"$LUNA_PYTHON\" tests_nan.py \"$LUNA_OUT/model.safetensors\"', inputs: [tests_nan.py], provides: [classifier] }}\n\
             \x20 eval:\n    uses: evaluate_classifier\n    needs: [crops, broken]\n    with: {{ device: cpu }}\n"
        ),
    );
    ws.file(
        "tests_nan.py",
        // safetensors = u64 header length, JSON header (name -> dtype, shape, data_offsets),
        // raw data: overwrite one tensor's f32 values with NaN in place.
        "import sys, json, struct\nb = bytearray(open(sys.argv[1], 'rb').read())\nn = struct.unpack('<Q', b[:8])[0]\nh = json.loads(b[8:8 + n])\ns, e = h['block1.conv1.weight']['data_offsets']\nb[8 + n + s:8 + n + e] = struct.pack('<f', float('nan')) * ((e - s) // 4)\nopen(sys.argv[1], 'wb').write(b)\n",
    );
    let out = ws.luna_env(
        &["run", "t"],
        &[("LUNA_PYTHON", crate::py::python().to_str().unwrap())],
    );
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("weight tensor(s) hold NaN or infinite values (first: block1.conv1.weight)"),
        "{}",
        out.stderr
    );
    assert_eq!(ws.committed("eval"), 0);
}

#[test]
fn invalid_hyperparameters_are_spec_errors_with_positions() {
    let ws = Ws::new();
    write_crops(&ws.path("fixture"), &small());
    for (with, pos, msg) in [
        ("optimizer: { kind: sgd, lr: -0.1 }", "10", "optimizer.lr must be a finite number > 0 (book: 1e-3), got -0.1"),
        ("optimizer: { kind: sgd, momentum: 1.5 }", "10", "optimizer.momentum must be a finite number in [0, 1) (0 = plain SGD as in the book), got 1.5"),
        ("optimizer: { kind: adam, weight_decay: 2 }", "10", "optimizer.weight_decay must be a finite number in [0, 1) (L2 penalty; book: 1e-4), got 2"),
        ("augment: { scale: 5 }", "10", "augment.scale must be a finite number in [0, 1) (relative scale change; book: 0.2), got 5"),
        ("augment: { offset: 3 }", "10", "augment.offset must be a finite number in [0, 1] (normalised grid units; book: 0.1), got 3"),
        ("augment: { noise: -1 }", "10", "augment.noise must be a finite number in [0, 1000] (HU; book: 25), got -1"),
    ] {
        ws.pipeline(
            "bad",
            &pipeline(&format!(
                "  nodule:\n    uses: train_classifier\n    needs: [crops]\n    with:\n      {with}\n      epochs: 1\n"
            )),
        );
        let out = ws.luna(&["status", "bad"]);
        out.expect_code(2);
        assert!(out.stderr.contains(msg), "{with}:\n{}", out.stderr);
        assert!(
            out.stderr.contains(&format!("pipelines/bad.yaml:{}", pos.split(':').next().unwrap())),
            "{with}:\n{}",
            out.stderr
        );
    }
}

#[test]
fn a_training_split_without_positives_fails_unless_allowed() {
    // The nodule task on crops whose training rows are all negatives (the index is rewritten
    // with pyarrow, as another tool would).
    let ws = Ws::new();
    let f = Fixture {
        series: 4,
        per_series: 12,
        malignancy: true,
    };
    write_crops(&ws.path("fixture"), &f);
    // Rewrite the index so the training split has no nodules.
    let idx = ws.path("fixture/index.parquet");
    let py = crate::py::python();
    let script = "import sys, pyarrow.parquet as pq, pyarrow.compute as pc, pyarrow as pa\n\
t = pq.read_table(sys.argv[1])\n\
train = pc.equal(t['split'].cast(pa.string()), 'train')\n\
nod = pc.and_(t['is_nodule'], pc.invert(train))\n\
t = t.set_column(t.schema.get_field_index('is_nodule'), 'is_nodule', nod)\n\
t = t.set_column(t.schema.get_field_index('has_annotation'), 'has_annotation', nod)\n\
pq.write_table(t, sys.argv[1], compression='zstd')\n";
    let st = std::process::Command::new(&py)
        .args(["-c", script, idx.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let stage = |allow: bool| {
        format!("  nodule:\n    uses: train_classifier\n    needs: [crops]\n    with: {{ epochs: 1, epoch_samples: 32, allow_single_class: {allow}, {FAST} }}\n")
    };
    ws.pipeline("t", &pipeline(&stage(false)));
    let out = ws.luna(&["run", "t"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("the training split has 0 nodules and 36 non-nodules samples: a classifier needs both classes"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("allow_single_class: true"),
        "{}",
        out.stderr
    );
    ws.pipeline("t", &pipeline(&stage(true)));
    ws.luna(&["run", "t"]).expect_code(0);
    assert!(stage_logs(ws.root(), "nodule").contains("sampling without balancing"));
    let art = PathBuf::from(ws.luna(&["path", "t", "nodule"]).stdout.trim());
    assert!(art.join("model.safetensors").is_file());
}

#[test]
fn thread_hints_are_capped_at_the_cores() {
    let ws = ws(
        &small(),
        "  nodule:\n    uses: train_classifier\n    needs: [crops]\n    with: { epochs: 1, epoch_samples: 16, batch_size: 16, augment: null, device: cpu, threads: 1000, loader_threads: 500 }\n",
    );
    ws.luna(&["run", "t"]).expect_code(0);
    let log = stage_logs(ws.root(), "nodule");
    let cores = std::thread::available_parallelism().unwrap().get();
    assert!(
        log.contains(&format!(
            "note: threads: 1000 capped to the machine's {cores} cores"
        )),
        "{log}"
    );
    assert!(log.contains("note: loader_threads: 500 capped"), "{log}");
}

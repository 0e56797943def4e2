//! TensorBoard event files read back by TensorBoard's own EventAccumulator (oracle).
use crate::nn_support::run_oracle;
use luna_torch::nn::tensorboard::EventWriter;

#[test]
fn event_accumulator_reads_exact_scalars() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(&dir.path().join("trn")).unwrap();
    let name = w.path().file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    assert!(name.split('.').count() >= 7, "{name}");
    assert!(
        name.ends_with(&format!(".{}", std::process::id()))
            || name.contains(&format!(".{}.", std::process::id()))
    );
    w.add_scalars(50_000, &[("loss/all", 0.6875), ("correct/all", 51.25)])
        .unwrap();
    w.add_scalar("loss/all", 0.25, 100_000).unwrap();
    w.add_scalar("pr/f1_score", 1.0e-7, 100_000).unwrap();
    w.add_scalar("big", 3.0e9, 1 << 40).unwrap();
    w.flush().unwrap();
    let out = run_oracle(
        "nn_tensorboard.py",
        &[dir.path().join("trn").to_str().unwrap()],
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let expect = serde_json::json!({
        "big": [[1u64 << 40, 3.0e9f32 as f64]],
        "correct/all": [[50000, 51.25]],
        "loss/all": [[50000, 0.6875f32 as f64], [100000, 0.25]],
        "pr/f1_score": [[100000, 1.0e-7f32 as f64]],
    });
    assert_eq!(v, expect);
}

#[test]
fn unwritable_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let e = EventWriter::create(&file.join("sub"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "tensorboard event file {}:",
            file.join("sub").display()
        )),
        "{e}"
    );
    assert!(
        e.ends_with("hint: check that the log directory is writable"),
        "{e}"
    );
}

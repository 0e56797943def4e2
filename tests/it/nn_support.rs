//! Shared helpers for the nn integration tests: the Python oracle runner and tensor checks.
use std::path::Path;
use std::process::Command;
use tch::Tensor;

/// Runs `tests/oracle/<script>` with `args`; panics with stderr (never skips) on failure.
pub fn run_oracle(script: &str, args: &[&str]) -> String {
    let py = crate::py::python();
    let dir = Path::new(crate::REPO).join("tests/oracle");
    let out = Command::new(&py)
        .arg(dir.join(script))
        .args(args)
        .env("PYTHONPATH", &dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run oracle python {}: {e}; set LUNA_PYTHON or create the venv",
                py.display()
            )
        });
    assert!(
        out.status.success(),
        "oracle {script} failed (python {}): {}\nhint: the venv needs torch (full deps) and tensorboard: \
         $HOME/.cache/luna/venv/bin/pip install torch==2.11.0 tensorboard",
        py.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Named tensors of a safetensors file.
pub fn read_st(path: &Path) -> std::collections::HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// Max |a − b| as f64 (shapes must agree).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shape mismatch");
    (a.to_kind(tch::Kind::Double) - b.to_kind(tch::Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// Serialises the tests that use torch's process-global state (the RNG behind
/// `tch::manual_seed`, the intra-op thread count): one test's seeding or thread change must not
/// land between another test's seed and its draws (a resumed run would then start from other
/// weights). Poison-tolerant: a failed test does not fail the others.
pub fn torch_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

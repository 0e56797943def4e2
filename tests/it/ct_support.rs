//! Helpers for the `ct` integration tests: locating python, running oracle scripts, writing files.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Run `tests/oracle/<script>` with `out` as its argument; panic with a clear message on failure.
pub fn run_oracle(script: &str, out: &Path) {
    let py = crate::py::python();
    let script_path = Path::new(crate::REPO).join("tests/oracle").join(script);
    let res = Command::new(&py).arg(&script_path).arg(out).output();
    let output = match res {
        Ok(o) => o,
        Err(e) => panic!(
            "oracle {script}: cannot run python at {} ({e}); set LUNA_PYTHON to a python with numpy and SimpleITK",
            py.display()
        ),
    };
    assert!(
        output.status.success(),
        "oracle {script} failed (python {}; needs numpy and SimpleITK, set LUNA_PYTHON):\n{}",
        py.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Write `bytes` to `dir/name` and return the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write test file into tempdir");
    p
}

/// Little-endian bytes of i16 values.
pub fn le_i16(v: &[i16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A minimal 3-D MET_SHORT header (x,y,z dims) naming `data`, plus `extra` lines before it.
pub fn short_header(dims: [usize; 3], extra: &str, data: &str) -> String {
    format!(
        "ObjectType = Image\nNDims = 3\nDimSize = {} {} {}\nElementType = MET_SHORT\n{extra}ElementDataFile = {data}\n",
        dims[0], dims[1], dims[2]
    )
}

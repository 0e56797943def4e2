//! Shared helpers of the store tests: seeded CT-like crop generator, python oracle runner.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_pcg::Pcg64;

/// A deterministic CT-like crop: lung background (-900..-700 HU), a gradient, three soft-tissue
/// blobs, Gaussian noise σ=25 HU, clipped to [-1000, 1000]. Row-major (i, r, c).
pub fn ct_like_crop(seed: u64, width: [usize; 3]) -> Vec<i16> {
    let mut rng = Pcg64::seed_from_u64(seed);
    let base: f32 = rng.random_range(-900.0..-700.0);
    let grad: f32 = rng.random_range(-3.0..3.0);
    let blobs: Vec<([f32; 3], f32, f32)> = (0..3)
        .map(|_| {
            let c = [
                rng.random_range(0.0..width[0] as f32),
                rng.random_range(0.0..width[1] as f32),
                rng.random_range(0.0..width[2] as f32),
            ];
            (
                c,
                rng.random_range(1.5..6.0),
                rng.random_range(-100.0..100.0),
            )
        })
        .collect();
    let noise = Normal::new(0.0f32, 25.0).expect("σ > 0");
    let mut out = Vec::with_capacity(width.iter().product());
    for i in 0..width[0] {
        for r in 0..width[1] {
            for c in 0..width[2] {
                let p = [i as f32, r as f32, c as f32];
                let mut v = base + grad * r as f32;
                for (bc, radius, val) in &blobs {
                    let d2: f32 = (0..3).map(|k| (p[k] - bc[k]).powi(2)).sum();
                    if d2 < 9.0 * radius * radius {
                        v += (val - base) * (-d2 / (2.0 * radius * radius)).exp();
                    }
                }
                v += noise.sample(&mut rng);
                out.push(v.round().clamp(-1000.0, 1000.0) as i16);
            }
        }
    }
    out
}

/// Uniformly random i16 (incompressible: the direct writer stores it unfiltered, mask bit 0).
pub fn random_crop(seed: u64, n: usize) -> Vec<i16> {
    let mut rng = Pcg64::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<i16>()).collect()
}

/// Writes i16 values as little-endian bytes (the oracle's `np.fromfile(dtype='<i2')`).
pub fn write_raw_i16(path: &Path, values: &[i16]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).expect("write raw test file in tempdir");
}

/// Reads little-endian i16 values written by an oracle script.
pub fn read_raw_i16(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).expect("oracle wrote its raw file");
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Held while a test has an HDF5 file open for writing outside luna (plain `hdf5::File`, whose
/// descriptor is inheritable) and while an oracle process is spawned, so the child cannot
/// inherit that descriptor and its `flock` (luna's own files are close-on-exec).
pub static SPAWN_LOCK: Mutex<()> = Mutex::new(());

/// Runs `tests/oracle/<script>` with `args`; panics with its output unless it exits 0.
pub fn run_oracle(script: &str, args: &[String]) -> String {
    let script = Path::new(crate::REPO).join("tests/oracle").join(script);
    let py = crate::py::python_with("h5py, hdf5plugin, numpy");
    let child = {
        let _guard = SPAWN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        Command::new(py)
            .arg(&script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn oracle python")
    };
    let out = child.wait_with_output().expect("wait for oracle python");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "oracle {} failed:\nstdout: {stdout}\nstderr: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

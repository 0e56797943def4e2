//! DICOM series read benchmark (ignored by default; bench/dicom_read.sh runs it in release):
//! `cargo test --release -p luna-tests --test it ct_dicom_bench -- --ignored --nocapture`.
//! Env: `LUNA_BENCH_DICOM` (a series folder; default the real LIDC-IDRI-0003 series of
//! shared/real), `LUNA_BENCH_REPS` (default 7). Prints the median wall time of the scan
//! (`select_series`: header-only read of the folder) and of the read (`CtSource::open`),
//! one warm-up first (page cache), as `luna scan+read: S s (scan S s, read S s)`.

use std::path::PathBuf;
use std::time::Instant;

use luna::ct::dicom::select_series;
use luna::ct::CtSource;

use crate::ct_dicom_support::real_lidc_series;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture (bench/dicom_read.sh)"]
fn ct_dicom_bench() {
    let dir = match std::env::var_os("LUNA_BENCH_DICOM") {
        Some(d) => PathBuf::from(d),
        None => match crate::harness::require_real_data() {
            Some(real) => real_lidc_series(&real),
            None => return,
        },
    };
    let reps: usize = std::env::var("LUNA_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let warm = select_series(&dir, None).expect("series");
    let shape = CtSource::Dicom(warm).open().expect("read").shape_irc();
    let (mut scans, mut reads, mut totals) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let t = Instant::now();
        let s = select_series(&dir, None).expect("series");
        let scanned = t.elapsed().as_secs_f64();
        let ct = CtSource::Dicom(s).open().expect("read");
        let total = t.elapsed().as_secs_f64();
        assert_eq!(ct.shape_irc(), shape);
        scans.push(scanned);
        reads.push(total - scanned);
        totals.push(total);
    }
    println!(
        "luna scan+read: {:.4} s (scan {:.4} s, read {:.4} s); shape {shape:?}, {reps} reps, \
         rayon threads {}",
        median(totals),
        median(scans),
        median(reads),
        rayon::current_num_threads()
    );
}

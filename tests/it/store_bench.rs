//! Crop store throughput (ignored by default; run in release):
//! `cargo test --release --test it store_bench -- --ignored --nocapture`
//! Env: `LUNA_BENCH_CROPS` (default 3000) crops of 32×48×48, CT-like content.

use std::time::Instant;

use luna::store::{CropReader, CropWriter, CropWriterOptions, WriteMode};
use rayon::prelude::*;

use crate::store_support::ct_like_crop;

const W: [usize; 3] = [32, 48, 48];

fn mbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn store_bench() {
    let n: usize = std::env::var("LUNA_BENCH_CROPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let dir = tempfile::tempdir().unwrap();
    let vox: usize = W.iter().product();
    let t = Instant::now();
    // 64 distinct crops reused cyclically (generation is slow; compression cost is the same).
    let distinct: Vec<Vec<i16>> = (0..64u64)
        .into_par_iter()
        .map(|k| ct_like_crop(k, W))
        .collect();
    let raw_bytes = n * vox * 2;
    println!(
        "generated {} distinct crops in {:.2}s; {n} crops = {:.1} MB raw, rayon threads {}",
        distinct.len(),
        t.elapsed().as_secs_f64(),
        raw_bytes as f64 / 1e6,
        rayon::current_num_threads()
    );

    // Reference: reading a 130 MB raw file (a CT) from the page cache.
    let ct = dir.path().join("ct.raw");
    std::fs::write(&ct, vec![7u8; 130_000_000]).unwrap();
    let _ = std::fs::read(&ct).unwrap();
    let t = Instant::now();
    let bytes = std::fs::read(&ct).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "reference: read 130 MB raw CT in {secs:.3}s = {:.0} MB/s",
        mbps(bytes.len(), secs)
    );
    drop(bytes);

    let cases = [
        (WriteMode::Direct, 3, true),
        (WriteMode::Library, 3, true),
        (WriteMode::Direct, 3, false),
        (WriteMode::Library, 3, false),
        (WriteMode::Direct, 1, true),
        (WriteMode::Direct, 1, false),
    ];
    for (mode, level, shuffle) in cases {
        let path = dir.path().join(format!("{mode:?}{level}{shuffle}.h5"));
        let opts = CropWriterOptions {
            level,
            mode,
            shuffle,
            ..Default::default()
        };
        let t = Instant::now();
        let mut w = CropWriter::create_with(&path, W, opts).unwrap();
        for k in 0..n {
            w.append(&distinct[k % distinct.len()], [k as i64, 0, 0])
                .unwrap();
        }
        w.finish().unwrap();
        let secs = t.elapsed().as_secs_f64();
        let size = std::fs::metadata(&path).unwrap().len();
        println!(
            "write {mode:?} level {level} shuffle {shuffle}: {secs:.2}s = {:.0} MB/s raw, {:.0} crops/s; file {:.1} MB (ratio {:.2})",
            mbps(raw_bytes, secs),
            n as f64 / secs,
            size as f64 / 1e6,
            raw_bytes as f64 / size as f64
        );
    }

    let path = dir.path().join("Direct3true.h5");
    let r = CropReader::open(&path).unwrap();
    let f = hdf5::File::open(&path).unwrap();
    let ds = f.dataset("crops").unwrap();
    let t = Instant::now();
    let mut out = vec![0i16; vox];
    for row in 0..n as u64 {
        r.read(row, &mut out).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(out, distinct[(n - 1) % distinct.len()]);
    println!(
        "read 1 thread: {secs:.2}s = {:.0} MB/s decoded",
        mbps(raw_bytes, secs)
    );
    // Lock-held share of a read: the raw chunk copies alone (what `read` does under the lock).
    let lock_secs = raw_chunk_reads(&ds, n, vox);
    println!(
        "raw chunk reads alone (under the HDF5 lock): {lock_secs:.2}s = {:.0}% of a 1-thread read",
        100.0 * lock_secs / secs
    );
    for threads in [2usize, 4] {
        let t = Instant::now();
        std::thread::scope(|s| {
            for th in 0..threads {
                let r = &r;
                s.spawn(move || {
                    let mut out = vec![0i16; vox];
                    for row in (th..n).step_by(threads) {
                        r.read(row as u64, &mut out).unwrap();
                    }
                });
            }
        });
        let secs = t.elapsed().as_secs_f64();
        println!(
            "read {threads} threads: {secs:.2}s = {:.0} MB/s decoded",
            mbps(raw_bytes, secs)
        );
    }
    let t = Instant::now();
    let all = r.read_all().unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(all.len(), n * vox);
    println!(
        "read_all (rayon): {secs:.2}s = {:.0} MB/s decoded",
        mbps(raw_bytes, secs)
    );
    // Library decode for comparison (what h5py-style reading through HDF5 costs).
    let t = Instant::now();
    let via_lib: Vec<i16> = ds.read_raw().unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(via_lib, all);
    println!(
        "read_raw via HDF5 filter pipeline (1 thread, whole dataset): {secs:.2}s = {:.0} MB/s decoded",
        mbps(raw_bytes, secs)
    );
}

/// Seconds to copy every stored chunk with `H5Dread_chunk2` (HDF5 2.x, the static build).
#[cfg(feature = "static-hdf5")]
fn raw_chunk_reads(ds: &hdf5::Dataset, n: usize, vox: usize) -> f64 {
    let t = Instant::now();
    let mut buf = vec![0u8; vox * 2];
    for row in 0..n as u64 {
        let (mut mask, mut len) = (0u32, buf.len());
        let code = hdf5::sync::sync(|| unsafe {
            hdf5_sys::h5d::H5Dread_chunk2(
                ds.id(),
                hdf5_sys::h5p::H5P_DEFAULT,
                [row, 0, 0, 0].as_ptr(),
                &mut mask,
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        });
        assert!(code >= 0 && len <= buf.len());
    }
    t.elapsed().as_secs_f64()
}

/// Not measured with a system HDF5 (1.x has no `H5Dread_chunk2`).
#[cfg(not(feature = "static-hdf5"))]
fn raw_chunk_reads(_: &hdf5::Dataset, _: usize, _: usize) -> f64 {
    f64::NAN
}

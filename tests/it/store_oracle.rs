//! h5py oracles: h5py reads luna's stores, luna reads h5py's stores (values compared exactly).

use luna::store::{CropReader, CropWriter, CropWriterOptions, StoreError, WriteMode};

use crate::store_support::{ct_like_crop, random_crop, read_raw_i16, run_oracle, write_raw_i16};

const W: [usize; 3] = [6, 10, 12];

#[test]
fn h5py_reads_luna_stores_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let vox: usize = W.iter().product();
    // Row 3 is incompressible: stored with all filters skipped (mask), h5py must honour it.
    let crops: Vec<Vec<i16>> = (0..21u64)
        .map(|k| {
            if k == 3 {
                random_crop(k, vox)
            } else {
                ct_like_crop(100 + k, W)
            }
        })
        .collect();
    let raw = dir.path().join("expected.raw");
    write_raw_i16(&raw, &crops.concat());
    let cases = [
        (WriteMode::Direct, 3, true, "[2, 32015]"),
        (WriteMode::Direct, 4, false, "[32015]"),
        (WriteMode::Library, 9, true, "[2, 32015]"),
        (WriteMode::Library, 1, false, "[32015]"),
    ];
    for (mode, level, shuffle, filters) in cases {
        let path = dir.path().join(format!("{mode:?}{shuffle}.h5"));
        let opts = CropWriterOptions {
            level,
            mode,
            shuffle,
            batch_rows: 8,
            ..Default::default()
        };
        let mut w = CropWriter::create_with(&path, W, opts).unwrap();
        for c in &crops {
            w.append(c, [1, 2, 3]).unwrap();
        }
        assert_eq!(w.finish().unwrap(), 21);
        let args: Vec<String> = [path.to_str().unwrap(), raw.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .chain(["21", "6", "10", "12", &level.to_string()].map(String::from))
            .collect();
        let out = run_oracle("store_check_h5py.py", &args);
        let want = format!("OK rows=21 filters={filters} chunks=(1, 6, 10, 12)");
        assert!(out.starts_with(&want), "{mode:?} shuffle {shuffle}: {out}");
    }
}

fn h5py_store(dir: &std::path::Path, mode: &str, n: usize) -> (std::path::PathBuf, Vec<i16>) {
    let path = dir.join(format!("{mode}.h5"));
    let raw = dir.join(format!("{mode}.raw"));
    let args: Vec<String> = [path.to_str().unwrap(), raw.to_str().unwrap()]
        .iter()
        .map(|s| s.to_string())
        .chain([
            n.to_string(),
            "6".into(),
            "10".into(),
            "12".into(),
            mode.into(),
        ])
        .collect();
    run_oracle("store_write_h5py.py", &args);
    (path, read_raw_i16(&raw))
}

#[test]
fn luna_reads_h5py_stores_exactly() {
    let dir = tempfile::tempdir().unwrap();
    for mode in ["zstd", "shufzstd", "gzip", "partial"] {
        let (path, expected) = h5py_store(dir.path(), mode, 13);
        let r = CropReader::open(&path).unwrap();
        assert_eq!((r.len(), r.width()), (13, W), "{mode}");
        assert_eq!(r.decodes_outside_lock(), mode != "gzip", "{mode}");
        assert_eq!(r.read_all().unwrap(), expected, "{mode} read_all");
        let f = hdf5::File::open(&path).unwrap();
        let via_filter: Vec<i16> = f.dataset("crops").unwrap().read_raw().unwrap();
        assert_eq!(
            via_filter, expected,
            "{mode} through HDF5's pipeline (luna's zstd filter)"
        );
        let mut out = vec![0i16; r.voxels()];
        for row in (0..13u64).rev() {
            r.read(row, &mut out).unwrap();
            let v = r.voxels();
            assert_eq!(out, expected[row as usize * v..][..v], "{mode} row {row}");
        }
        assert_eq!(
            r.centers().unwrap(),
            None,
            "{mode}: h5py file has no center_irc"
        );
    }
}

#[test]
fn corrupted_chunk_is_reported_with_row() {
    let dir = tempfile::tempdir().unwrap();
    let (path, expected) = h5py_store(dir.path(), "corrupt", 4);
    let r = CropReader::open(&path).unwrap();
    let mut out = vec![0i16; r.voxels()];
    r.read(0, &mut out).unwrap();
    assert_eq!(out, expected[..r.voxels()]);
    let err = r.read(1, &mut out).unwrap_err();
    assert!(
        matches!(err, StoreError::CorruptChunk { row: 1, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}: dataset `crops` row 1: corrupted chunk (zstd:",
            path.display()
        )),
        "{msg}"
    );
    assert!(msg.ends_with(
        "the file is damaged or was written by an incompatible filter, regenerate this store"
    ));
    assert!(matches!(
        r.read_all().unwrap_err(),
        StoreError::CorruptChunk { row: 1, .. }
    ));
}

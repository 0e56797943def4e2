//! Crop store round trips (both write paths, many reader threads) and error messages.

use luna::store::{CropReader, CropWriter, CropWriterOptions, StoreError, WriteMode};

use crate::store_support::{ct_like_crop, random_crop, SPAWN_LOCK};

const W: [usize; 3] = [8, 12, 10];

/// 37 crops (not a multiple of the batch), one incompressible (stored unfiltered).
fn sample_crops() -> Vec<Vec<i16>> {
    let vox = W.iter().product();
    (0..37u64)
        .map(|k| {
            if k == 5 {
                random_crop(k, vox)
            } else {
                ct_like_crop(k, W)
            }
        })
        .collect()
}

fn write(path: &std::path::Path, crops: &[Vec<i16>], mode: WriteMode, shuffle: bool) -> u64 {
    let opts = CropWriterOptions {
        mode,
        shuffle,
        batch_rows: 16,
        ..CropWriterOptions::default()
    };
    let mut w = CropWriter::create_with(path, W, opts).unwrap();
    for (k, c) in crops.iter().enumerate() {
        let row = w.append(c, [k as i64, 2 * k as i64, -(k as i64)]).unwrap();
        assert_eq!(row, k as u64);
    }
    assert_eq!(w.len(), crops.len() as u64);
    w.finish().unwrap()
}

#[test]
fn round_trip_both_write_paths_exact() {
    let dir = tempfile::tempdir().unwrap();
    let crops = sample_crops();
    let modes = [WriteMode::Direct, WriteMode::Library];
    for (mode, shuffle) in modes.into_iter().flat_map(|m| [(m, true), (m, false)]) {
        let path = dir.path().join(format!("{mode:?}{shuffle}.h5"));
        assert_eq!(write(&path, &crops, mode, shuffle), 37);
        let r = CropReader::open(&path).unwrap();
        assert_eq!((r.len(), r.width(), r.voxels()), (37, W, 960));
        assert!(r.decodes_outside_lock());
        let mut out = vec![0i16; r.voxels()];
        for (k, c) in crops.iter().enumerate() {
            r.read(k as u64, &mut out).unwrap();
            assert_eq!(&out, c, "{mode:?} shuffle {shuffle} row {k}");
        }
        assert_eq!(r.read_all().unwrap(), crops.concat(), "{mode:?} read_all");
        // HDF5's own pipeline (luna's registered zstd filter, decompress side) agrees.
        let f = hdf5::File::open(&path).unwrap();
        let via_filter: Vec<i16> = f.dataset("crops").unwrap().read_raw().unwrap();
        assert_eq!(
            via_filter,
            crops.concat(),
            "{mode:?} shuffle {shuffle} via HDF5 filter"
        );
        let centers = r.centers().unwrap().unwrap();
        assert_eq!(centers.len(), 37);
        assert_eq!(centers[7], [7, 14, -7]);
        // CT-like content compresses; the store is smaller than the raw int16 bytes.
        assert!(
            r.stored_bytes() < (37 * 960 * 2) as u64,
            "{}",
            r.stored_bytes()
        );
    }
}

#[test]
fn concurrent_reads_from_many_threads_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.h5");
    let crops = sample_crops();
    write(&path, &crops, WriteMode::Direct, true);
    let r = CropReader::open(&path).unwrap();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (r, crops) = (&r, &crops);
            s.spawn(move || {
                let mut out = vec![0i16; r.voxels()];
                for i in 0..200u64 {
                    let row = (i * 7 + t * 13) % r.len();
                    r.read(row, &mut out).unwrap();
                    assert_eq!(out, crops[row as usize], "thread {t} row {row}");
                }
            });
        }
    });
}

#[test]
fn empty_store_and_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.h5");
    let w = CropWriter::create(&path, W, 7).unwrap();
    assert!(w.is_empty());
    assert_eq!(w.finish().unwrap(), 0);
    let r = CropReader::open(&path).unwrap();
    assert!(r.is_empty());
    assert!(r.read_all().unwrap().is_empty());
    let f = hdf5::File::open(&path).unwrap();
    let ds = f.dataset("crops").unwrap();
    let width: Vec<u64> = ds.attr("width_irc").unwrap().read_raw().unwrap();
    assert_eq!(width, vec![8, 12, 10]);
    let clip: Vec<i16> = ds.attr("hu_clip").unwrap().read_raw().unwrap();
    assert_eq!(clip, vec![-1000, 1000]);
    let filters = ds.filters();
    assert_eq!(
        filters,
        vec![
            hdf5::filters::Filter::Shuffle,
            hdf5::filters::Filter::user(32015, &[7])
        ],
        "shuffle, then zstd with level 7 as cd_values[0]"
    );
}

#[test]
fn bad_rows_and_buffers_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.h5");
    let mut w = CropWriter::create(&path, W, 3).unwrap();
    let err = w.append(&[0i16; 5], [0, 0, 0]).unwrap_err();
    assert!(matches!(
        err,
        StoreError::BufferSize {
            expected: 960,
            found: 5,
            ..
        }
    ));
    w.append(&[1i16; 960], [0, 0, 0]).unwrap();
    w.finish().unwrap();
    let r = CropReader::open(&path).unwrap();
    let err = r.read(1, &mut [0i16; 960]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: row 1 is out of range, the store has 1 rows; check the index table that points into this store",
            path.display()
        )
    );
    assert_eq!(
        err.hint().as_deref(),
        Some("check the index table that points into this store")
    );
}

#[test]
fn missing_dataset_is_reported_with_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.h5");
    {
        let _guard = SPAWN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let f = hdf5::File::create(&path).unwrap();
        f.new_dataset::<i16>()
            .shape((2, 3))
            .create("images")
            .unwrap();
    }
    let err = CropReader::open(&path).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{p}: no dataset `crops` (found: [\"images\"]); this is not a luna crop store, or it was written under another name; list it with `h5ls -r {p}`",
            p = path.display()
        )
    );
}

#[test]
fn wrong_dtype_and_chunking_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.h5");
    {
        let _guard = SPAWN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let f = hdf5::File::create(&path).unwrap();
        f.new_dataset::<f32>()
            .chunk((1, 8, 12, 10))
            .shape((3, 8, 12, 10))
            .create("crops")
            .unwrap();
    }
    let err = CropReader::open(&path).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: dataset `crops` has element type float32, expected int16; crops are stored as little-endian int16 HU, rewrite the file with luna (or h5py dtype='<i2')",
            path.display()
        )
    );
    let path = dir.path().join("k.h5");
    {
        let _guard = SPAWN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let f = hdf5::File::create(&path).unwrap();
        f.new_dataset::<i16>()
            .chunk((2, 8, 12, 10))
            .shape((3, 8, 12, 10))
            .create("crops")
            .unwrap();
    }
    let err = CropReader::open(&path).err().unwrap();
    assert!(matches!(
        &err,
        StoreError::WrongChunkShape { expected, found: Some(found), .. }
            if expected == &vec![1, 8, 12, 10] && found == &vec![2, 8, 12, 10]
    ));
    assert!(err
        .to_string()
        .contains("expected [1, 8, 12, 10] (one sample per chunk)"));
}

#[test]
fn not_hdf5_file_names_path_and_operation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.h5");
    std::fs::write(&path, b"not an hdf5 file").unwrap();
    let err = CropReader::open(&path).err().unwrap();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}: HDF5 failed to open the file", path.display())),
        "{msg}"
    );
    assert!(matches!(
        err,
        StoreError::Hdf5 {
            op: "open the file",
            ..
        }
    ));
}

#[test]
fn reader_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CropReader>();
    assert_send_sync::<StoreError>();
}

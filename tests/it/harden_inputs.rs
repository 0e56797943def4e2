//! Issue 14, the inputs half: a data file named by a header stays inside the dataset, special
//! files (FIFOs, `/dev/zero`) are errors rather than hangs, and sizes from a header or a
//! parameter cannot exhaust memory.

use std::path::Path;
use std::time::{Duration, Instant};

use luna::ct::{CtError, CtImage};

use crate::ct_support::{le_i16, short_header, write};
use crate::engine_support::{one_command, Out, Ws};

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("a C path");
    // SAFETY: a NUL-terminated path that lives for the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// Runs `luna args` in `ws`, killing it (and failing) if it takes longer than 30 s.
pub(crate) fn luna_bounded(ws: &Ws, args: &[&str]) -> Out {
    let mut child = ws
        .command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start luna");
    let end = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("poll").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("luna {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().expect("collect output");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn element_data_file_outside_the_mhd_folder_is_rejected() {
    let outside = tempfile::tempdir().expect("tempdir");
    let host = write(outside.path(), "host.raw", &le_i16(&[7; 24]));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    write(&dir.path().join("sub"), "up.raw", &le_i16(&[7; 24]));
    for name in [host.display().to_string(), "../host.raw".to_string()] {
        let mhd = write(
            &dir.path().join("sub"),
            "x.mhd",
            short_header([4, 3, 2], "HeaderSize = -1\n", &name).as_bytes(),
        );
        match CtImage::open(&mhd) {
            Err(e) => assert!(
                e.to_string().contains(":6: ElementDataFile `")
                    && e.to_string()
                        .contains("points outside the folder of the .mhd"),
                "{name}: wrong error {e}"
            ),
            Ok(_) => panic!("{name}: a data file outside the .mhd folder was read"),
        }
    }
    // LIST entries too
    let mhd = write(
        dir.path(),
        "l.mhd",
        short_header([4, 3, 2], "", "LIST 2D\nsub/up.raw\n../x.raw").as_bytes(),
    );
    let err = CtImage::open(&mhd).err().map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("`../x.raw` points outside")),
        "{err:?}"
    );
}

#[test]
fn a_fifo_as_element_data_file_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    mkfifo(&dir.path().join("f.raw"));
    let mhd = write(
        dir.path(),
        "f.mhd",
        short_header([4, 3, 2], "", "f.raw").as_bytes(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(CtImage::open(&mhd).map(|_| ()).map_err(|e| e.to_string()));
    });
    let res = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("opening a FIFO data file hung");
    let err = res.expect_err("a FIFO is not a data file");
    assert!(err.contains("is a FIFO, not a regular file"), "{err}");
}

#[test]
fn a_pattern_with_huge_bounds_fails_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    for pattern in [
        "s%d.raw 9223372036854775806 9223372036854775807",
        "s%d.raw -9223372036854775808 9223372036854775807 1",
        "s%d.raw 0 2000000000",
    ] {
        let mhd = write(
            dir.path(),
            "p.mhd",
            short_header([4, 3, 3], "", pattern).as_bytes(),
        );
        let t0 = Instant::now();
        let err = match CtImage::open(&mhd) {
            Ok(_) => panic!("{pattern}: opened"),
            Err(e) => e,
        };
        assert!(t0.elapsed() < Duration::from_secs(2), "{pattern}: slow");
        assert!(
            matches!(
                err,
                CtError::ListCount { expected: 3, .. } | CtError::MissingDataFile { .. }
            ),
            "{pattern}: {err}"
        );
    }
}

#[test]
fn dev_zero_as_a_csv_input_is_an_error_not_a_hang() {
    let ws = Ws::new();
    ws.file("cand.csv", "seriesuid,coordX,coordY,coordZ,class\n");
    ws.pipeline(
        "p",
        "pipeline: p\nstages:\n  a:\n    uses: load_annotations\n    with: { annotations: /dev/zero, candidates: cand.csv }\n",
    );
    let out = luna_bounded(&ws, &["run", "p"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("/dev/zero") && out.stderr.contains("not a regular file"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_fifo_as_a_command_output_is_an_error_not_a_hang() {
    let ws = Ws::new();
    ws.pipeline("p", &one_command("mkfifo $LUNA_OUT/f"));
    let out = luna_bounded(&ws, &["run", "p"]);
    out.expect_code(1);
    assert!(out.stderr.contains("`f` is a FIFO"), "{}", out.stderr);
    assert!(ws.manifests().is_empty());
}

#[test]
fn a_compressed_volume_larger_than_memory_is_refused_before_inflating() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&[0u8; 4096]).expect("deflate");
    let comp = z.finish().expect("deflate");
    write(dir.path(), "big.zraw", &comp);
    // 2^21 × 2^21 × 2^10 shorts: 8 PiB
    let hdr = short_header(
        [1 << 21, 1 << 21, 1 << 10],
        &format!(
            "CompressedData = True\nCompressedDataSize = {}\n",
            comp.len()
        ),
        "big.zraw",
    );
    let mhd = write(dir.path(), "big.mhd", hdr.as_bytes());
    match CtImage::open(&mhd) {
        Err(e) => assert!(
            e.to_string().contains(&format!(
                "DimSize × element size is {} bytes, more than the",
                1u64 << 53
            )),
            "wrong error: {e}"
        ),
        Ok(_) => panic!("opened an 8 PiB volume"),
    }
}

#[test]
fn a_crop_width_whose_size_overflows_or_exhausts_memory_is_a_parse_error() {
    let ws = Ws::new();
    for width in ["[1000, 1000, 1000]", "[4294967296, 4294967296, 1]"] {
        ws.pipeline(
            "p",
            &format!(
                "pipeline: p\nstages:\n  crops:\n    uses: build_crops\n    with: {{ width_irc: {width}, ct_root: data }}\n"
            ),
        );
        let out = ws.luna(&["status", "p"]);
        out.expect_code(2);
        assert!(
            out.stderr
                .contains("is larger than the limit of 16777216 voxels")
                && out.stderr.contains("p.yaml:5:24"),
            "{width}: {}",
            out.stderr
        );
    }
}

//! Bad inputs: each error names the file and the cause and says what to do.

use luna::ct::{CropWindow, CtError, CtImage, Irc};

use crate::ct_support::{le_i16, short_header, write};

fn open_err(dir: &std::path::Path, hdr: &str) -> (CtError, String) {
    let mhd = write(dir, "bad.mhd", hdr.as_bytes());
    let err = match CtImage::open(&mhd) {
        Ok(_) => panic!("expected an error for header:\n{hdr}"),
        Err(e) => e,
    };
    let msg = err.to_string().replace(&format!("{}/", dir.display()), "");
    (err, msg)
}

#[test]
fn ct_error_truncated_raw() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "t.raw", &le_i16(&[0; 23]));
    let (e, msg) = open_err(dir.path(), &short_header([4, 3, 2], "", "t.raw"));
    assert!(matches!(
        e,
        CtError::Truncated {
            expected: 48,
            found: 46,
            ..
        }
    ));
    assert_eq!(
        msg,
        "t.raw: truncated data: expected 48 bytes (DimSize [4, 3, 2] × 2 bytes of MET_SHORT) after offset 0, \
         found 46; re-download or re-export the volume"
    );
}

#[test]
fn ct_error_dimsize_vs_data_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "m.raw", &le_i16(&[0; 30]));
    let (_, msg) = open_err(dir.path(), &short_header([4, 3, 2], "", "m.raw"));
    assert_eq!(
        msg,
        "m.raw: DimSize [4, 3, 2] × 2 bytes of MET_SHORT = 48 bytes, but the data holds 60 bytes after offset 0; \
         fix DimSize/ElementType, or set HeaderSize = -1 if the file has a leading header"
    );
}

#[test]
fn ct_error_unknown_element_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hdr = short_header([4, 3, 2], "", "x.raw").replace("MET_SHORT", "MET_HALF");
    let (_, msg) = open_err(dir.path(), &hdr);
    assert_eq!(
        msg,
        "bad.mhd:4: unknown ElementType \"MET_HALF\"; known types are MET_CHAR, MET_UCHAR, MET_SHORT, MET_USHORT, \
         MET_INT, MET_UINT, MET_LONG, MET_ULONG, MET_LONG_LONG, MET_ULONG_LONG, MET_FLOAT, MET_DOUBLE"
    );
}

#[test]
fn ct_error_missing_data_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, msg) = open_err(dir.path(), &short_header([4, 3, 2], "", "nothere.raw"));
    assert_eq!(
        msg,
        "bad.mhd: ElementDataFile points to nothere.raw, which does not exist; put the data file next to the .mhd \
         or fix ElementDataFile"
    );
}

#[test]
fn ct_error_bad_number_and_missing_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, msg) = open_err(
        dir.path(),
        &short_header([4, 3, 2], "ElementSpacing = 0.7 0,7 2.5\n", "x.raw"),
    );
    assert_eq!(
        msg,
        "bad.mhd:5: bad number \"0,7\" in key `ElementSpacing`; write a plain decimal number"
    );
    let (_, msg) = open_err(
        dir.path(),
        &short_header([4, 3, 2], "", "x.raw").replace("NDims = 3\n", ""),
    );
    assert_eq!(
        msg,
        "bad.mhd: required key `NDims` is missing from the header; add it (see the MetaImage spec)"
    );
    let (_, msg) = open_err(
        dir.path(),
        &short_header([4, 3, 2], "", "x.raw").replace("DimSize = 4 3 2", "DimSize = 4 3"),
    );
    assert_eq!(
        msg,
        "bad.mhd:3: key `DimSize` has 2 values but 3 are needed (NDims); fix the header"
    );
}

#[test]
fn ct_error_bad_geometry_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, msg) = open_err(
        dir.path(),
        &short_header([4, 3, 2], "Offset = 0 nan 0\n", "x.raw"),
    );
    assert_eq!(msg, "bad.mhd:5: key `Offset` contains a non-finite value (NaN); the header is corrupt, rewrite it");
    let (_, msg) = open_err(
        dir.path(),
        &short_header([4, 3, 2], "ElementSpacing = 0.7 0 2.5\n", "x.raw"),
    );
    assert_eq!(msg, "bad.mhd: key `ElementSpacing` has spacing 0 on axis 1; spacings must be > 0 mm, fix the header");
    let (_, msg) = open_err(
        dir.path(),
        &short_header([4, 3, 2], "TransformMatrix = 1 0 0 2 0 0 0 0 1\n", "x.raw"),
    );
    assert!(
        msg.starts_with("bad.mhd: key `TransformMatrix` gives a non-invertible direction matrix"),
        "{msg}"
    );
    let (_, msg) = open_err(
        dir.path(),
        &short_header([4, 3, 2], "ElementNumberOfChannels = 3\n", "x.raw"),
    );
    assert_eq!(msg, "bad.mhd: `ElementNumberOfChannels = 3` is not supported: only single-channel (scalar) images are supported");
}

#[test]
fn ct_error_centre_outside_volume() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "c.raw", &le_i16(&[0; 24]));
    let ct = CtImage::open(&write(
        dir.path(),
        "c.mhd",
        short_header([4, 3, 2], "", "c.raw").as_bytes(),
    ))
    .expect("open");
    let e = CropWindow::around(
        Irc {
            index: 2,
            row: 0,
            col: 0,
        },
        [1, 1, 1],
        ct.shape_irc(),
    )
    .expect_err("outside");
    assert_eq!(
        e.to_string(),
        "crop centre (index 2, row 0, col 0) lies outside the volume of shape (i,r,c) [2, 3, 4]; \
         check the candidate's xyz against the CT's origin, spacing and direction"
    );
    let w = CropWindow {
        start: [1, 0, 0],
        width: [2, 1, 1],
    };
    assert!(matches!(
        ct.crop_hu_i16(&w),
        Err(CtError::VolumeTooSmall { .. })
    ));
}

#[test]
fn ct_error_huge_dimsize_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "h.raw", &le_i16(&[0; 8]));
    let hdr = short_header([4_000_000_000, 4_000_000_000, 4_000_000_000], "", "h.raw");
    let (e, _) = open_err(dir.path(), &hdr);
    assert!(
        matches!(
            e,
            CtError::Truncated {
                expected: u64::MAX,
                found: 16,
                ..
            }
        ),
        "{e}"
    );
    let hdr = short_header(
        [4_000_000_000, 4_000_000_000, 4_000_000_000],
        "CompressedData = True\n",
        "h.raw",
    );
    let (e, _) = open_err(dir.path(), &hdr);
    // refused before inflating: it could never fit in memory (issue 14)
    assert!(matches!(e, CtError::TooLarge { .. }), "{e}");
}

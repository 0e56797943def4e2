//! Crop oracle: luna's `CropWindow::around` + `crop_hu_i16` against numpy slicing of clipped HU,
//! with the window computed independently in Python by the book's rule.

use luna::ct::{CropWindow, CtImage, Irc};

use crate::ct_support::run_oracle;

#[test]
fn ct_crops_match_numpy_book_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    run_oracle("ct_crop_oracle.py", dir.path());
    let recs = std::fs::read_to_string(dir.path().join("crops.txt")).expect("crops.txt");
    let mut n = 0;
    let mut shifted = 0;
    for line in recs.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        let v: Vec<i64> = t[2..11].iter().map(|x| x.parse().expect("int")).collect();
        let ct = CtImage::open(&dir.path().join(format!("{}.mhd", t[1]))).expect("open");
        let center = Irc {
            index: v[0],
            row: v[1],
            col: v[2],
        };
        let width = [v[3] as usize, v[4] as usize, v[5] as usize];
        let w = CropWindow::around(center, width, ct.shape_irc()).expect("window");
        assert_eq!(
            w.start.to_vec(),
            vec![v[6] as usize, v[7] as usize, v[8] as usize],
            "{line}"
        );
        let got = ct.crop_hu_i16(&w).expect("crop");
        let want: Vec<i16> = std::fs::read(dir.path().join(t[11]))
            .expect("bin")
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(got, want, "{line}");
        let unshifted = (0..3).all(|a| {
            let s = ([center.index, center.row, center.col][a] as f64 - width[a] as f64 / 2.0)
                .round_ties_even();
            s == w.start[a] as f64
        });
        shifted += usize::from(!unshifted);
        n += 1;
    }
    assert_eq!(n, 3 * 10 * 3);
    assert!(
        shifted > 30,
        "edge centres must exercise shifting, got {shifted}"
    );
}

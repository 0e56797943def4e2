//! Crop windows around a voxel, and copying a window out of an (index,row,col) volume.
//!
//! Book rule (book-reference §2.3), per axis: `start = round(center − width/2)` with numpy's
//! round-half-to-even, `end = start + width`. **Out-of-bounds windows are shifted inside the
//! volume, never padded**: if start < 0 the window becomes [0, width); if end > shape it becomes
//! [shape − width, shape). So a crop always has the full width and the candidate may be off-centre.
//! Rejected alternative: padding with −1000 HU (keeps the candidate centred but changes what the
//! book's models saw). A centre outside the volume, or a volume narrower than the crop, is an error.
//!
//! Quirk kept from the book: for an odd width w = 2k+1, `c − w/2` ends in .5 and rounds to the
//! even neighbour, so the window starts at c−k or c−k−1 depending on the parity of c−k: the centre
//! sits at offset k or k+1. For the segmentation width 7 both are inside; for width 1 the window
//! [c−1, c) misses the centre when c−1 is even (e.g. centre 1 → [0, 1)). Even widths (the book's
//! 32, 48, 96) are exact: start = c − w/2.
//!
//! Extraction walks the window row by row: each (index,row) pair is one contiguous byte run in
//! the source, decoded and clipped straight into the output (no full-volume copy).

use super::convert::{fill_row, Elem};
use super::error::CtError;
use super::geometry::{contains, round_half_even, Irc};

/// A box of voxels [start, start+width) per axis, (index, row, col) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CropWindow {
    /// First voxel of the window (index, row, col).
    pub start: [usize; 3],
    /// Extent of the window (index, row, col).
    pub width: [usize; 3],
}

impl CropWindow {
    /// The book's window of `width_irc` around `center`, shifted inside a volume of `shape_irc`.
    pub fn around(
        center: Irc,
        width_irc: [usize; 3],
        shape_irc: [usize; 3],
    ) -> Result<CropWindow, CtError> {
        if !contains(center, shape_irc) {
            return Err(CtError::CenterOutside {
                center,
                shape: shape_irc,
            });
        }
        if (0..3).any(|a| width_irc[a] > shape_irc[a]) {
            return Err(CtError::VolumeTooSmall {
                width: width_irc,
                shape: shape_irc,
            });
        }
        let c = [center.index, center.row, center.col];
        let mut start = [0usize; 3];
        for a in 0..3 {
            let (w, n) = (width_irc[a] as i64, shape_irc[a] as i64);
            let s = round_half_even(c[a] as f64 - w as f64 / 2.0);
            // Shift inside: clamp the start to [0, n − w].
            start[a] = s.clamp(0, n - w) as usize;
        }
        Ok(CropWindow {
            start,
            width: width_irc,
        })
    }

    /// One past the last voxel (index, row, col).
    pub fn end(&self) -> [usize; 3] {
        [0, 1, 2].map(|a| self.start[a] + self.width[a])
    }

    /// Number of voxels in the window.
    pub fn len(&self) -> usize {
        self.width.iter().product()
    }

    /// Whether the window holds no voxel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Error unless the window lies inside a volume of `shape` (for hand-built windows).
    pub fn check_fits(&self, shape: [usize; 3]) -> Result<(), CtError> {
        let fits = |a: usize| {
            self.start[a]
                .checked_add(self.width[a])
                .is_some_and(|e| e <= shape[a])
        };
        if !(0..3).all(fits) {
            return Err(CtError::VolumeTooSmall {
                width: self.width,
                shape,
            });
        }
        Ok(())
    }
}

/// Copy `window` of an (index,row,col) volume of `shape` stored as `bytes` into `out`, mapping
/// each voxel through `f` (to clipped HU, or to raw values for thresholds). `window` must fit
/// (`check_fits`) and `out.len() == window.len()`.
pub fn crop_into<T: Elem, U>(
    bytes: &[u8],
    msb: bool,
    shape: [usize; 3],
    window: &CropWindow,
    out: &mut [U],
    f: &impl Fn(T) -> U,
) {
    let [w0, w1, w2] = window.width;
    let [s0, s1, s2] = window.start;
    if w2 == 0 {
        return;
    }
    let rows = out.chunks_exact_mut(w2);
    let coords = (0..w0).flat_map(|i| (0..w1).map(move |r| (s0 + i, s1 + r)));
    for (dst, (i, r)) in rows.zip(coords) {
        let from = ((i * shape[1] + r) * shape[2] + s2) * T::N;
        fill_row(&bytes[from..from + w2 * T::N], msb, dst, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn irc(index: i64, row: i64, col: i64) -> Irc {
        Irc { index, row, col }
    }

    #[test]
    fn centred_window_uses_half_even() {
        // width 5: 10 − 2.5 = 7.5 → 8 (even); 11 − 2.5 = 8.5 → 8.
        let w = CropWindow::around(irc(10, 11, 20), [5, 5, 4], [30, 30, 40]).expect("fits");
        assert_eq!(w.start, [8, 8, 18]);
        assert_eq!(w.end(), [13, 13, 22]);
    }

    #[test]
    fn shifted_at_each_edge() {
        let shape = [20, 30, 40];
        let w = CropWindow::around(irc(0, 1, 2), [6, 8, 10], shape).expect("fits");
        assert_eq!(w.start, [0, 0, 0]);
        let w = CropWindow::around(irc(19, 29, 39), [6, 8, 10], shape).expect("fits");
        assert_eq!(w.start, [14, 22, 30]);
        assert_eq!(w.end(), shape);
        let w = CropWindow::around(irc(2, 28, 5), [6, 8, 10], shape).expect("fits");
        assert_eq!(w.start, [0, 22, 0]);
    }

    #[test]
    fn full_width_volume() {
        let w = CropWindow::around(irc(3, 3, 3), [7, 7, 7], [7, 7, 7]).expect("fits");
        assert_eq!(w.start, [0, 0, 0]);
    }

    #[test]
    fn errors() {
        let e = CropWindow::around(irc(5, -1, 0), [2, 2, 2], [5, 5, 5]).expect_err("outside");
        assert_eq!(
            e.to_string(),
            "crop centre (index 5, row -1, col 0) lies outside the volume of shape (i,r,c) [5, 5, 5]; \
             check the candidate's xyz against the CT's origin, spacing and direction"
        );
        let e = CropWindow::around(irc(1, 1, 1), [2, 8, 2], [5, 5, 5]).expect_err("too small");
        assert!(
            e.to_string()
                .starts_with("crop width (i,r,c) [2, 8, 2] does not fit"),
            "{e}"
        );
    }

    #[test]
    fn crop_copies_rows() {
        let shape = [3, 4, 5];
        let vol: Vec<i16> = (0..60).map(|v| v * 50 - 1500).collect();
        let bytes: Vec<u8> = vol.iter().flat_map(|v| v.to_le_bytes()).collect();
        let win = CropWindow {
            start: [1, 2, 1],
            width: [2, 2, 3],
        };
        let mut out = vec![0i16; win.len()];
        crop_into::<i16, i16>(&bytes, false, shape, &win, &mut out, &|v| v.hu());
        let mut want = Vec::new();
        for i in 1..3 {
            for r in 2..4 {
                for c in 1..4 {
                    want.push(vol[(i * 4 + r) * 5 + c].clamp(-1000, 1000));
                }
            }
        }
        assert_eq!(out, want);
    }
}

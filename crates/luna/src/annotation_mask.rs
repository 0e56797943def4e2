//! The book's annotation mask (book-reference §4.2) and the segmentation samples cut from a CT
//! (§4.3): what the `seg_dataset` stage stores for the UNet.
//!
//! **Mask rule, made well-defined at the volume edges.** Per annotated nodule:
//! 1. centre irc = `Geometry::xyz_to_irc` of the annotation centre (full direction matrix,
//!    round half to even); a centre outside the volume is an error naming the CT, the series
//!    and the coordinates;
//! 2. for each axis separately, start at r = 2 and, on the line through the centre along that
//!    axis, grow r while both voxels at centre − r and centre + r are inside the volume and
//!    their **raw** HU is > `threshold_hu`; as soon as centre ± r leaves the volume, r −= 1 and
//!    stop (so a box never reaches past the first out-of-volume step);
//! 3. box = [c − r, c + r] per axis (inclusive), clipped to the volume.
//!
//! mask = (union of the boxes) AND (raw HU > threshold_hu), on unclipped HU.
//!
//! The book grows r inside a `try` and decrements it on `IndexError`, which only fires past
//! the *top* of an axis: at the bottom, numpy's negative indices silently wrap to the other end
//! of the volume, so the result depends on voxels far away. We treat both ends like the top
//! (rejected: replicating the wrap, which makes a nodule on slice 1 depend on the last slice).
//! Inside the volume the rule is the book's exactly.
//!
//! **Samples.** Context slices are c − k … c + k along the index axis (k = `context_slices`),
//! clamped at the volume ends (edge slices repeated); a training crop's row/col window is the
//! book's crop rule (`ct::crop`: centred, shifted inside the volume, never padded); HU are
//! clipped to ±1000 (`ct::convert`). Only the voxels a sample needs are decoded (rows of the
//! memory-mapped CT, opened with `CtImage::open_sparse`), never the whole volume; the mask
//! touches only the boxes' voxels and records which slices a box reaches, so the all-zero
//! slices are never scanned.

use std::path::{Path, PathBuf};

use crate::ct::{CropWindow, CtError, CtImage, Irc, Xyz};

/// Errors of the mask and sample extraction; each names the CT file and the series.
#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    /// The CT has fewer slices than one context sample spans.
    #[error("{}: series {series} has {slices} slices, fewer than the {needed} (2 × context_slices {context} + 1) one segmentation sample spans; remove this CT from the dataset or lower `context_slices`", mhd.display())]
    TooFewSlices {
        /// The CT header.
        mhd: PathBuf,
        /// Series UID.
        series: String,
        /// Slices of the CT.
        slices: usize,
        /// 2k + 1.
        needed: usize,
        /// k.
        context: usize,
    },
    /// An annotation centre maps to a voxel outside the volume.
    #[error("{}: series {series}: the annotated nodule at xyz ({:.3}, {:.3}, {:.3}) mm maps to voxel (index {}, row {}, col {}), outside the volume of shape (i,r,c) {shape:?}; check the annotation's coordinates against the CT's Offset, ElementSpacing and TransformMatrix", mhd.display(), xyz[0], xyz[1], xyz[2], irc.index, irc.row, irc.col)]
    NoduleOutside {
        /// The CT header.
        mhd: PathBuf,
        /// Series UID.
        series: String,
        /// Annotation centre (mm).
        xyz: [f64; 3],
        /// The voxel it maps to.
        irc: Irc,
        /// Volume shape (index, row, col).
        shape: [usize; 3],
    },
    /// The training crop is wider than the CT's slices.
    #[error("{}: series {series}: the {crop}×{crop} training crop does not fit in its {rows}×{cols} slices; set `crop` to at most {} (divisible by 4)", mhd.display(), (rows.min(cols) / 4) * 4)]
    CropTooLarge {
        /// The CT header.
        mhd: PathBuf,
        /// Series UID.
        series: String,
        /// Crop side.
        crop: usize,
        /// Rows of the CT.
        rows: usize,
        /// Columns of the CT.
        cols: usize,
    },
    /// Reading voxels failed.
    #[error(transparent)]
    Ct(#[from] CtError),
}

/// Where the raw voxels come from: a CT (memory-mapped) or, in tests, a plain array.
pub trait RawVoxels {
    /// Shape (index, row, col).
    fn shape(&self) -> [usize; 3];
    /// Raw (unclipped) values of `window`, (index,row,col) order.
    fn raw_window(&self, window: &CropWindow) -> Result<Vec<f64>, CtError>;
}

impl RawVoxels for CtImage {
    fn shape(&self) -> [usize; 3] {
        self.shape_irc()
    }
    fn raw_window(&self, window: &CropWindow) -> Result<Vec<f64>, CtError> {
        self.window_raw_f64(window)
    }
}

/// The nodule centres of a series as voxels, each checked to lie inside the CT.
pub fn nodule_centres(
    ct: &CtImage,
    series: &str,
    centres_xyz: &[[f64; 3]],
) -> Result<Vec<Irc>, MaskError> {
    let shape = ct.shape_irc();
    centres_xyz
        .iter()
        .map(|&xyz| {
            let irc = ct.geometry().xyz_to_irc(Xyz {
                x: xyz[0],
                y: xyz[1],
                z: xyz[2],
            });
            if irc.is_inside(shape) {
                Ok(irc)
            } else {
                Err(MaskError::NoduleOutside {
                    mhd: ct.path().to_path_buf(),
                    series: series.to_string(),
                    xyz,
                    irc,
                    shape,
                })
            }
        })
        .collect()
}

/// Checks that a CT can hold samples: ≥ 2k+1 slices and slices at least `crop` wide.
pub fn check_ct(
    mhd: &Path,
    series: &str,
    shape: [usize; 3],
    context: usize,
    crop: usize,
) -> Result<(), MaskError> {
    let needed = 2 * context + 1;
    if shape[0] < needed {
        return Err(MaskError::TooFewSlices {
            mhd: mhd.to_path_buf(),
            series: series.to_string(),
            slices: shape[0],
            needed,
            context,
        });
    }
    if crop > shape[1] || crop > shape[2] {
        return Err(MaskError::CropTooLarge {
            mhd: mhd.to_path_buf(),
            series: series.to_string(),
            crop,
            rows: shape[1],
            cols: shape[2],
        });
    }
    Ok(())
}

/// Half-widths (index, row, col) of a nodule's box (rule step 2). `centre` must be inside.
pub fn box_radii(vol: &impl RawVoxels, centre: Irc, threshold: f64) -> Result<[usize; 3], CtError> {
    let shape = vol.shape();
    let c = [centre.index, centre.row, centre.col].map(|v| v.max(0) as usize);
    let mut radii = [0usize; 3];
    for (a, radius) in radii.iter_mut().enumerate() {
        // The whole line through the centre along axis `a`.
        let mut start = c;
        let mut width = [1usize; 3];
        start[a] = 0;
        width[a] = shape[a];
        let line = vol.raw_window(&CropWindow { start, width })?;
        let mut r = 2usize;
        loop {
            if r > c[a] || c[a] + r >= shape[a] {
                r -= 1;
                break;
            }
            if line[c[a] - r] > threshold && line[c[a] + r] > threshold {
                r += 1;
            } else {
                break;
            }
        }
        *radius = r;
    }
    Ok(radii)
}

/// An annotation mask: 0/1 voxels in (index,row,col) order, and which slices a nodule's box
/// reaches (every other slice is known to be all zero without reading it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    /// The voxels.
    pub data: Vec<u8>,
    /// Per slice: whether some box covers it.
    pub boxed: Vec<bool>,
}

/// The annotation mask of nodules centred at `centres`.
pub fn build_mask(vol: &impl RawVoxels, centres: &[Irc], threshold: f64) -> Result<Mask, CtError> {
    let shape = vol.shape();
    let mut mask = vec![0u8; shape.iter().product()];
    let mut boxed = vec![false; shape[0]];
    for &centre in centres {
        let radii = box_radii(vol, centre, threshold)?;
        let c = [centre.index, centre.row, centre.col].map(|v| v.max(0) as usize);
        let start: [usize; 3] = std::array::from_fn(|a| c[a].saturating_sub(radii[a]));
        let width: [usize; 3] =
            std::array::from_fn(|a| (c[a] + radii[a]).min(shape[a] - 1) + 1 - start[a]);
        let window = CropWindow { start, width };
        boxed[start[0]..start[0] + width[0]].fill(true);
        let raw = vol.raw_window(&window)?;
        let mut k = 0;
        for i in start[0]..start[0] + width[0] {
            for r in start[1]..start[1] + width[1] {
                let row = (i * shape[1] + r) * shape[2];
                for v in &mut mask[row + start[2]..row + start[2] + width[2]] {
                    *v |= u8::from(raw[k] > threshold);
                    k += 1;
                }
            }
        }
    }
    Ok(Mask { data: mask, boxed })
}

impl Mask {
    /// Slice indices holding at least one mask voxel, ascending (only boxed slices are read).
    pub fn positive_slices(&self, shape: [usize; 3]) -> Vec<usize> {
        let plane = shape[1] * shape[2];
        (0..shape[0])
            .filter(|&i| {
                self.boxed[i]
                    && self.data[i * plane..(i + 1) * plane]
                        .iter()
                        .any(|&v| v != 0)
            })
            .collect()
    }
}

/// The context slice indices c − k … c + k, clamped to [0, n − 1].
pub fn context_indices(c: usize, k: usize, n: usize) -> Vec<usize> {
    (0..=2 * k)
        .map(|j| (c + j).saturating_sub(k).min(n.saturating_sub(1)))
        .collect()
}

/// Row/col start of the `crop`×`crop` window around `centre` (the book's crop rule).
pub fn crop_start(centre: Irc, crop: usize, shape: [usize; 3]) -> Result<[usize; 2], CtError> {
    let w = CropWindow::around(centre, [1, crop, crop], shape)?;
    Ok([w.start[1], w.start[2]])
}

/// One training sample: (2k+1)×crop×crop clipped HU, the centre slice's mask window as label.
pub fn train_sample(
    ct: &CtImage,
    mask: &[u8],
    centre: Irc,
    context: usize,
    crop: usize,
) -> Result<(Vec<i16>, Vec<u8>), CtError> {
    let shape = ct.shape_irc();
    let [r0, c0] = crop_start(centre, crop, shape)?;
    let ci = centre.index.max(0) as usize;
    let mut input = Vec::with_capacity((2 * context + 1) * crop * crop);
    for s in context_indices(ci, context, shape[0]) {
        let w = CropWindow {
            start: [s, r0, c0],
            width: [1, crop, crop],
        };
        input.extend(ct.crop_hu_i16(&w)?);
    }
    let mut label = Vec::with_capacity(crop * crop);
    for r in r0..r0 + crop {
        let row = (ci * shape[1] + r) * shape[2] + c0;
        label.extend_from_slice(&mask[row..row + crop]);
    }
    Ok((input, label))
}

/// Whole slices of clipped HU, decoded once each (and turned into `T` by `encode`, e.g. the
/// store's shuffled layout) and kept while a sliding window of contexts needs them.
pub struct SliceCache<'a, T> {
    ct: &'a CtImage,
    encode: fn(&[i16]) -> T,
    slices: std::collections::BTreeMap<usize, T>,
}

impl<'a, T> SliceCache<'a, T> {
    /// An empty cache over `ct`.
    pub fn new(ct: &'a CtImage, encode: fn(&[i16]) -> T) -> Self {
        SliceCache {
            ct,
            encode,
            slices: Default::default(),
        }
    }

    /// The (2k+1) context slices of each slice in `centres` (ascending; callers go through a
    /// volume's slices in ascending order); forgets slices below the first context.
    pub fn contexts(&mut self, centres: &[usize], k: usize) -> Result<Vec<Vec<&T>>, CtError> {
        let [n, rows, cols] = self.ct.shape_irc();
        let idx: Vec<Vec<usize>> = centres.iter().map(|&c| context_indices(c, k, n)).collect();
        if let Some(first) = idx.first() {
            self.slices.retain(|&s, _| s >= first[0]);
        }
        for &s in idx.iter().flatten() {
            if !self.slices.contains_key(&s) {
                let w = CropWindow {
                    start: [s, 0, 0],
                    width: [1, rows, cols],
                };
                let hu = self.ct.crop_hu_i16(&w)?;
                self.slices.insert(s, (self.encode)(&hu));
            }
        }
        let slices = &self.slices;
        Ok(idx
            .iter()
            .map(|ix| ix.iter().map(|s| &slices[s]).collect())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory volume.
    struct Vol {
        shape: [usize; 3],
        v: Vec<f64>,
    }

    impl RawVoxels for Vol {
        fn shape(&self) -> [usize; 3] {
            self.shape
        }
        fn raw_window(&self, w: &CropWindow) -> Result<Vec<f64>, CtError> {
            w.check_fits(self.shape)?;
            let mut out = Vec::new();
            for i in w.start[0]..w.start[0] + w.width[0] {
                for r in w.start[1]..w.start[1] + w.width[1] {
                    for c in w.start[2]..w.start[2] + w.width[2] {
                        out.push(self.v[(i * self.shape[1] + r) * self.shape[2] + c]);
                    }
                }
            }
            Ok(out)
        }
    }

    fn irc(index: i64, row: i64, col: i64) -> Irc {
        Irc { index, row, col }
    }

    /// A bright cube [lo, hi) on every axis in a −1000 background.
    fn cube(n: usize, lo: usize, hi: usize) -> Vol {
        let mut v = vec![-1000.0; n * n * n];
        for i in lo..hi {
            for r in lo..hi {
                for c in lo..hi {
                    v[(i * n + r) * n + c] = 100.0;
                }
            }
        }
        Vol {
            shape: [n, n, n],
            v,
        }
    }

    #[test]
    fn radius_grows_to_the_first_dark_voxel() {
        // Bright [4, 13): from centre 8 the first dark voxels are at 8 ± 5.
        let vol = cube(20, 4, 13);
        assert_eq!(
            box_radii(&vol, irc(8, 8, 8), -700.0).expect("radii"),
            [5; 3]
        );
        let mask = build_mask(&vol, &[irc(8, 8, 8)], -700.0).expect("mask");
        assert_eq!(mask.data.iter().filter(|&&m| m == 1).count(), 9 * 9 * 9);
        assert_eq!(mask.positive_slices([20; 3]), (4..13).collect::<Vec<_>>());
        assert_eq!(mask.boxed.iter().filter(|&&b| b).count(), 11);
    }

    #[test]
    fn minimum_box_is_five_voxels() {
        let vol = cube(20, 9, 10);
        assert_eq!(
            box_radii(&vol, irc(9, 9, 9), -700.0).expect("radii"),
            [2; 3]
        );
    }

    #[test]
    fn both_ends_stop_like_the_top() {
        // Bright everywhere: growth stops one step before leaving the volume on each side.
        let vol = cube(10, 0, 10);
        assert_eq!(
            box_radii(&vol, irc(0, 9, 4), -700.0).expect("radii"),
            [1, 1, 4]
        );
        assert_eq!(
            box_radii(&vol, irc(1, 8, 5), -700.0).expect("radii"),
            [1, 1, 4]
        );
        let mask = build_mask(&vol, &[irc(0, 9, 4)], -700.0).expect("mask");
        // index [0, 1], row [8, 9], col [0, 8].
        assert_eq!(mask.data.iter().filter(|&&m| m == 1).count(), 2 * 2 * 9);
    }

    #[test]
    fn context_clamps_at_the_ends() {
        assert_eq!(context_indices(0, 3, 10), vec![0, 0, 0, 0, 1, 2, 3]);
        assert_eq!(context_indices(9, 3, 10), vec![6, 7, 8, 9, 9, 9, 9]);
        assert_eq!(context_indices(5, 1, 10), vec![4, 5, 6]);
    }

    #[test]
    fn errors_name_the_ct_and_series() {
        let e = check_ct(Path::new("/d/x.mhd"), "1.2.3", [6, 64, 64], 3, 48).expect_err("few");
        assert_eq!(
            e.to_string(),
            "/d/x.mhd: series 1.2.3 has 6 slices, fewer than the 7 (2 × context_slices 3 + 1) one \
             segmentation sample spans; remove this CT from the dataset or lower `context_slices`"
        );
        let e = check_ct(Path::new("/d/x.mhd"), "1.2.3", [9, 90, 80], 3, 96).expect_err("crop");
        assert!(e.to_string().contains("at most 80"), "{e}");
    }
}

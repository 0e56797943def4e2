//! Gallery tiles: three orthogonal slices (axial, coronal, sagittal) through a point of a CT,
//! 40 mm across, resampled to square millimetres (nearest neighbour) and windowed to the lung
//! (−1000…400 HU), with red ticks marking the centre, as one PNG.
//!
//! Only the tile's window is read (`CtImage::crop_hu_i16` on the memory-mapped file), so a
//! gallery over real-size CTs costs milliseconds per tile. Rejected: plotters for the tiles (a
//! chart library for three bitmaps; `crate::image` encodes the pixels).

use crate::ct::{CropWindow, CtImage, Xyz};
use crate::image::RgbImage;

/// Side of a view in millimetres.
const FIELD_MM: f64 = 40.0;
/// Output pixels per millimetre.
const PX_PER_MM: f64 = 2.4;
/// Lung window.
const HU_LO: f64 = -1000.0;
const HU_HI: f64 = 400.0;

/// A rendered view: width, height, RGB.
struct View {
    w: usize,
    h: usize,
    rgb: Vec<u8>,
}

/// The tile of `ct` around world `xyz` as PNG bytes.
pub fn tile_png(ct: &CtImage, xyz: [f64; 3]) -> Result<Vec<u8>, String> {
    let shape = ct.shape_irc();
    let g = ct.geometry();
    let sp = [g.spacing.z, g.spacing.y, g.spacing.x];
    let centre = g.xyz_to_irc(Xyz {
        x: xyz[0],
        y: xyz[1],
        z: xyz[2],
    });
    let c = [centre.index, centre.row, centre.col];
    if (0..3).any(|a| c[a] < 0 || c[a] >= shape[a] as i64) {
        return Err(format!(
            "centre {c:?} (xyz {xyz:?}) is outside the CT {}",
            ct.path().display()
        ));
    }
    let width: [usize; 3] =
        [0, 1, 2].map(|a| ((FIELD_MM / sp[a]).round() as usize).clamp(1, shape[a]));
    let window = CropWindow::around(centre, width, shape).map_err(|e| format!("{e}"))?;
    let hu = ct.crop_hu_i16(&window).map_err(|e| format!("{e}"))?;
    let at = |i: usize, r: usize, col: usize| hu[(i * width[1] + r) * width[2] + col];
    let local = [0, 1, 2].map(|a| c[a] as usize - window.start[a]);
    // axial: rows × cols at the centre slice; coronal: index × cols; sagittal: index × rows.
    // Index runs top to bottom in decreasing order (head up for LUNA16's increasing z).
    let views = [
        resample(
            width[1],
            width[2],
            sp[1],
            sp[2],
            &|y, x| at(local[0], y, x),
            (local[1], local[2]),
        ),
        resample(
            width[0],
            width[2],
            sp[0],
            sp[2],
            &|y, x| at(width[0] - 1 - y, local[1], x),
            (width[0] - 1 - local[0], local[2]),
        ),
        resample(
            width[0],
            width[1],
            sp[0],
            sp[1],
            &|y, x| at(width[0] - 1 - y, x, local[2]),
            (width[0] - 1 - local[0], local[1]),
        ),
    ];
    let gap = 3;
    let h = views.iter().map(|v| v.h).max().unwrap_or(1);
    let w = views.iter().map(|v| v.w).sum::<usize>() + gap * (views.len() - 1);
    let mut rgb = vec![255u8; w * h * 3];
    let mut x0 = 0;
    for v in &views {
        for y in 0..v.h {
            let from = &v.rgb[y * v.w * 3..(y + 1) * v.w * 3];
            let to = (y * w + x0) * 3;
            rgb[to..to + v.w * 3].copy_from_slice(from);
        }
        x0 += v.w + gap;
    }
    RgbImage::new(w, h, rgb)
        .and_then(|img| img.encode_png())
        .map_err(|e| e.to_string())
}

/// Nearest-neighbour resampling of an `n_y × n_x` view with voxel sizes (`s_y`, `s_x`) mm to
/// square pixels; red ticks at the image border mark `mark` (voxel row, col).
fn resample(
    n_y: usize,
    n_x: usize,
    s_y: f64,
    s_x: f64,
    value: &dyn Fn(usize, usize) -> i16,
    mark: (usize, usize),
) -> View {
    let h = ((n_y as f64 * s_y * PX_PER_MM).round() as usize).max(1);
    let w = ((n_x as f64 * s_x * PX_PER_MM).round() as usize).max(1);
    let mut rgb = vec![0u8; w * h * 3];
    let src = |p: usize, n_out: usize, n_in: usize| (p * n_in / n_out).min(n_in - 1);
    for y in 0..h {
        let vy = src(y, h, n_y);
        for x in 0..w {
            let vx = src(x, w, n_x);
            let g = grey(value(vy, vx));
            let o = (y * w + x) * 3;
            rgb[o..o + 3].copy_from_slice(&[g, g, g]);
        }
    }
    let my = ((mark.0 as f64 + 0.5) * h as f64 / n_y as f64) as usize;
    let mx = ((mark.1 as f64 + 0.5) * w as f64 / n_x as f64) as usize;
    let tick = (w.min(h) / 8).max(2);
    let mut red = |y: usize, x: usize| {
        if y < h && x < w {
            let o = (y * w + x) * 3;
            rgb[o..o + 3].copy_from_slice(&[230, 30, 30]);
        }
    };
    for t in 0..tick {
        red(my, t);
        red(my, w - 1 - t);
        red(t, mx);
        red(h - 1 - t, mx);
    }
    View { w, h, rgb }
}

fn grey(hu: i16) -> u8 {
    let t = ((hu as f64 - HU_LO) / (HU_HI - HU_LO)).clamp(0.0, 1.0);
    (t * 255.0).round() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lung_window_maps_air_to_black_and_bone_to_white() {
        assert_eq!(grey(-1000), 0);
        assert_eq!(grey(-2000), 0);
        assert_eq!(grey(400), 255);
        assert_eq!(grey(-300), 128);
    }

    #[test]
    fn resampling_gives_square_millimetres_and_marks_the_centre() {
        let v = resample(4, 10, 2.5, 1.0, &|_, _| -1000, (2, 5));
        assert_eq!((v.h, v.w), (24, 24)); // 10 mm × 10 mm at 2.4 px/mm
        let px = |y: usize, x: usize| &v.rgb[(y * v.w + x) * 3..(y * v.w + x) * 3 + 3];
        assert_eq!(px(0, 0), &[0, 0, 0]);
        assert_eq!(px(0, 13), &[230, 30, 30]); // column tick of the centre (col 5.5 × 2.4 → px 13)
        assert_eq!(px(15, 0), &[230, 30, 30]); // row tick (row 2 → px 15)
    }
}

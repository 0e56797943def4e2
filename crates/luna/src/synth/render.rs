//! Rasterising a planned series into an i16 HU array (z, y, x), one rayon task per slice.
//!
//! Per slice: background by region (out-of-FOV pad, air, table, soft tissue, lung), then every
//! primitive whose bounding box meets the slice is blended in over its in-plane box only
//! (`mean += (hu − mean)·α`, α a linear ramp of width `EDGE_MM` across the surface), then
//! Gaussian noise from a per-slice `Pcg64` stream (seeded from the plan's noise seed and the
//! slice number, so output does not depend on thread scheduling). Rejected: a global voxel loop
//! testing every primitive (too slow for the 512² preset).

use super::plan::{Anatomy, SeriesPlan};
use super::shapes::{Prim, EDGE_MM};
use rand::Rng;
use rand_distr::StandardNormal;
use rand_pcg::Pcg64;
use rayon::prelude::*;

const AIR: (f32, f32) = (-1000.0, 8.0);
const TISSUE: (f32, f32) = (40.0, 20.0);
const TABLE: (f32, f32) = (150.0, 25.0);
const LUNG: (f32, f32) = (-850.0, 30.0);
/// Noise σ inside vessels and nodules.
const DENSE_SIGMA: f32 = 20.0;

/// Render the whole volume (z, y, x) in HU.
pub(crate) fn render(plan: &SeriesPlan) -> Vec<i16> {
    let [nx, ny, nz] = plan.geometry.dims_xyz;
    let mut out = vec![0i16; nx * ny * nz];
    out.par_chunks_mut(nx * ny)
        .enumerate()
        .for_each(|(z, slice)| render_slice(plan, z, slice));
    out
}

/// The lung mask (z, y, x) of LUNA16's `seg-lungs-LUNA16`: 3 inside the first lung, 4 inside
/// the second, 0 elsewhere.
pub(crate) fn lung_mask(g: &super::SeriesGeometry, anatomy: &super::plan::Anatomy) -> Vec<i16> {
    let [nx, ny, nz] = g.dims_xyz;
    let [sx, sy, sz] = g.spacing_xyz;
    let mut out = vec![0i16; nx * ny * nz];
    out.par_chunks_mut(nx * ny)
        .enumerate()
        .for_each(|(z, slice)| {
            for (i, v) in slice.iter_mut().enumerate() {
                let p = [(i % nx) as f64 * sx, (i / nx) as f64 * sy, z as f64 * sz];
                let [a, b] = &anatomy.lungs;
                *v = if a.rho(p, 0.0) < 1.0 {
                    3
                } else if b.rho(p, 0.0) < 1.0 {
                    4
                } else {
                    0
                };
            }
        });
    out
}

/// Call `f(voxel, x, y)` (local mm) for every voxel of a slice inside the reconstruction
/// circle of `an`; flag the others in `pad`.
pub(crate) fn each_in_fov(
    an: &Anatomy,
    [sx, sy]: [f64; 2],
    [nx, ny]: [usize; 2],
    pad: &mut [bool],
    mut f: impl FnMut(usize, f64, f64),
) {
    for y in 0..ny {
        let yl = y as f64 * sy;
        for x in 0..nx {
            let xl = x as f64 * sx;
            let i = y * nx + x;
            if an.outside_fov(xl, yl) {
                pad[i] = true;
            } else {
                f(i, xl, yl);
            }
        }
    }
}

/// Visit every voxel of the slice at local height `zl` that a primitive covers: `f(voxel,
/// primitive HU, coverage α)` in primitive order (α a linear ramp of width `EDGE_MM` across the
/// surface), over each primitive's in-plane box only; voxels flagged in `skip` are left out.
pub(crate) fn blend_prims(
    prims: &[Prim],
    zl: f64,
    [sx, sy]: [f64; 2],
    [nx, ny]: [usize; 2],
    skip: &[bool],
    mut f: impl FnMut(usize, f32, f32),
) {
    for p in prims {
        if zl < p.lo[2] || zl > p.hi[2] {
            continue;
        }
        let x0 = ((p.lo[0] / sx).floor().max(0.0) as usize).min(nx);
        let x1 = ((p.hi[0] / sx).ceil().max(-1.0) + 1.0).min(nx as f64) as usize;
        let y0 = ((p.lo[1] / sy).floor().max(0.0) as usize).min(ny);
        let y1 = ((p.hi[1] / sy).ceil().max(-1.0) + 1.0).min(ny as f64) as usize;
        for y in y0..y1 {
            for x in x0..x1 {
                let i = y * nx + x;
                if skip[i] {
                    continue;
                }
                let d = p.sdist([x as f64 * sx, y as f64 * sy, zl]);
                let a = (0.5 - d / EDGE_MM).clamp(0.0, 1.0) as f32;
                if a > 0.0 {
                    f(i, p.hu, a);
                }
            }
        }
    }
}

fn render_slice(plan: &SeriesPlan, z: usize, out: &mut [i16]) {
    let g = &plan.geometry;
    let an = &plan.anatomy;
    let [nx, ny, _] = g.dims_xyz;
    let [sx, sy, sz] = g.spacing_xyz;
    let zl = z as f64 * sz;
    let mut mean = vec![0f32; nx * ny];
    let mut sigma = vec![0f32; nx * ny];
    let mut pad = vec![false; nx * ny];
    // Lung cross-sections at this z: (centre x, centre y, semi x, semi y) or None.
    let lung_xs: Vec<[f64; 4]> = an
        .lungs
        .iter()
        .filter_map(|l| {
            let t = 1.0 - ((zl - l.c[2]) / l.s[2]).powi(2);
            (t > 0.0).then(|| [l.c[0], l.c[1], l.s[0] * t.sqrt(), l.s[1] * t.sqrt()])
        })
        .collect();
    each_in_fov(an, [sx, sy], [nx, ny], &mut pad, |i, xl, yl| {
        let bx = (xl - an.body_c[0]) / an.body_s[0];
        let by = (yl - an.body_c[1]) / an.body_s[1];
        let (m, s) = if bx * bx + by * by <= 1.0 {
            let in_lung = lung_xs.iter().any(|c| {
                let u = (xl - c[0]) / c[2];
                let v = (yl - c[1]) / c[3];
                u * u + v * v <= 1.0
            });
            if in_lung {
                LUNG
            } else {
                TISSUE
            }
        } else if yl >= an.table_y[0] && yl <= an.table_y[1] {
            TABLE
        } else {
            AIR
        };
        mean[i] = m;
        sigma[i] = s;
    });
    blend_prims(&plan.prims, zl, [sx, sy], [nx, ny], &pad, |i, hu, a| {
        mean[i] += (hu - mean[i]) * a;
        sigma[i] += (DENSE_SIGMA - sigma[i]) * a;
    });
    let mut rng = Pcg64::new(
        (plan.noise_seed as u128) << 64 | 0x853C_49E6_748F_EA9B,
        z as u128 * 2 + 1,
    );
    for i in 0..nx * ny {
        out[i] = if pad[i] {
            an.pad
        } else {
            let n: f32 = rng.sample(StandardNormal);
            (mean[i] + sigma[i] * n).round().clamp(-1024.0, 3071.0) as i16
        };
    }
}

//! Placing candidate marks (candidates.csv rows) around the planted scene of one series.
//!
//! Positives: 1–3 marks per nodule, jittered by 0.1–0.25 × radius from the annotation centre.
//! With `official` (the luna16 layout's candidates_V2.csv) they are drawn like LUNA16's: a
//! nodule has no class-1 candidate with probability 0.15, otherwise 1–3 at 0.3–0.8 × radius from
//! its centre (inside the LUNA16 hit radius, off-centre), and each irrelevant finding (an
//! excluded blob) gets a class-1 candidate on it with probability 0.5 (a positive that matches
//! no annotation). The flat layout's draws are unchanged, so its files stay byte-identical.
//! Negatives (V1 class 0): ~45 % on vessel axes (thicker vessels favoured: the hard negatives),
//! ~20 % on bifurcations, ~20 % in lung parenchyma at least 1.5 mm from any vessel surface, ~15 %
//! in soft tissue 2–8 mm outside a lung wall. Each negative keeps ≥ diameter + 2 mm from every
//! nodule centre and ≥ 4 mm from every excluded blob, and lies inside the volume; a placement
//! that fails 50 draws is dropped. Marks are shuffled (deterministically) so classes interleave.

use super::plan::Anatomy;
use super::shapes::{add_scaled, dist, dot, sub, unit, Prim};
use rand::Rng;
use rand_pcg::Pcg64;

/// What candidates are placed around (local mm).
pub(crate) struct Scene<'a> {
    /// Body and lungs.
    pub anatomy: &'a Anatomy,
    /// Vessel capsules.
    pub vessels: &'a [Prim],
    /// Vessel branch points.
    pub bifurcations: &'a [[f64; 3]],
    /// Nodule centres and diameters.
    pub nodules: &'a [([f64; 3], f64)],
    /// Excluded blob centres.
    pub blobs: &'a [[f64; 3]],
    /// Volume extent (mm).
    pub ext: [f64; 3],
    /// Voxel spacing (mm).
    pub spacing: [f64; 3],
}

/// A placed mark: local position, class, kind.
pub(crate) type Mark = ([f64; 3], u8, &'static str);

/// Place positives for every nodule (LUNA16-like when `official`) and up to `negatives`
/// negatives.
pub(crate) fn place_candidates(
    sc: &Scene,
    negatives: usize,
    official: bool,
    rng: &mut Pcg64,
) -> Vec<Mark> {
    let mut cands: Vec<([f64; 3], u8, &'static str)> = Vec::new();
    let jitter = if official { 0.3..0.8 } else { 0.1..0.25 };
    for (c, d) in sc.nodules {
        if official && rng.random_bool(0.15) {
            continue;
        }
        for _ in 0..rng.random_range(1..=3usize) {
            let j = rng.random_range(jitter.clone()) * d / 2.0;
            cands.push((add_scaled(*c, unit(rng), j), 1, "nodule"));
        }
    }
    if official {
        for b in sc.blobs {
            if rng.random_bool(0.5) {
                cands.push((*b, 1, "excluded"));
            }
        }
    }
    let inside = |p: [f64; 3]| (0..3).all(|k| p[k] >= 0.0 && p[k] <= sc.ext[k] - sc.spacing[k]);
    let far = |p: [f64; 3]| {
        sc.nodules.iter().all(|n| dist(p, n.0) >= n.1 + 2.0)
            && sc.blobs.iter().all(|b| dist(p, *b) >= 4.0)
    };
    let r_top = sc.vessels.iter().map(|v| v.ra).fold(0.0, f64::max);
    for _ in 0..negatives {
        for _attempt in 0..50 {
            let u: f64 = rng.random();
            let (p, kind) = if u < 0.45 && !sc.vessels.is_empty() {
                // Thicker sc.vessels are picked more often (harder negatives).
                let v = loop {
                    let v = &sc.vessels[rng.random_range(0..sc.vessels.len())];
                    if rng.random::<f64>() * r_top <= v.ra {
                        break v;
                    }
                };
                let t: f64 = rng.random();
                (add_scaled(v.a, sub(v.b, v.a), t), "vessel")
            } else if u < 0.65 && !sc.bifurcations.is_empty() {
                (
                    sc.bifurcations[rng.random_range(0..sc.bifurcations.len())],
                    "bifurcation",
                )
            } else if u < 0.85 {
                let l = &sc.anatomy.lungs[rng.random_range(0..2)];
                let p = std::array::from_fn(|k| l.c[k] + l.s[k] * rng.random_range(-1.0..1.0));
                if l.rho(p, 1.0) >= 1.0 || sc.vessels.iter().any(|v| v.sdist(p) < 1.5) {
                    continue;
                }
                (p, "parenchyma")
            } else {
                let l = &sc.anatomy.lungs[rng.random_range(0..2)];
                let dir = unit(rng);
                let on = std::array::from_fn(|k| dir[k] * l.s[k]);
                let n = dot(on, on).sqrt();
                let out = rng.random_range(2.0..8.0);
                let p = [l.c[0] + on[0], l.c[1] + on[1], l.c[2] + on[2]];
                let p = add_scaled(p, on, out / n);
                let b = (((p[0] - sc.anatomy.body_c[0]) / sc.anatomy.body_s[0]).powi(2)
                    + ((p[1] - sc.anatomy.body_c[1]) / sc.anatomy.body_s[1]).powi(2))
                .sqrt();
                if b >= 0.95 || sc.anatomy.lungs.iter().any(|l| l.rho(p, 0.0) < 1.05) {
                    continue;
                }
                (p, "tissue")
            };
            if inside(p) && far(p) {
                cands.push((p, 0, kind));
                break;
            }
        }
    }
    // Deterministic Fisher–Yates shuffle so classes are interleaved like the real file.
    for i in (1..cands.len()).rev() {
        let j = rng.random_range(0..=i);
        cands.swap(i, j);
    }
    cands
}

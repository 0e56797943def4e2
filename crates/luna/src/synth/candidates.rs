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

use super::geometry::SeriesGeometry;
use super::plan::Anatomy;
use super::shapes::{add_scaled, dist, dot, sub, unit, Prim};
use super::truth::CandidateTruth;
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
    place_marks(sc, negatives, official, rng, |u, rng| {
        if u < 0.45 && !sc.vessels.is_empty() {
            Some((on_vessel(sc, rng), "vessel"))
        } else if u < 0.65 && !sc.bifurcations.is_empty() {
            Some((on_bifurcation(sc, rng), "bifurcation"))
        } else if u < 0.85 {
            in_parenchyma(sc, rng).map(|p| (p, "parenchyma"))
        } else {
            in_tissue(sc, rng).map(|p| (p, "tissue"))
        }
    })
}

/// The positives, then up to `negatives` class-0 marks, shuffled. Each negative is
/// `draw(u, rng)` for a uniform `u` (the site mix), retried up to 50 times until it gives an
/// [`admissible`] point, else dropped.
pub(crate) fn place_marks(
    sc: &Scene,
    negatives: usize,
    official: bool,
    rng: &mut Pcg64,
    mut draw: impl FnMut(f64, &mut Pcg64) -> Option<([f64; 3], &'static str)>,
) -> Vec<Mark> {
    let mut cands = place_positives(sc, official, rng);
    for _ in 0..negatives {
        for _attempt in 0..50 {
            let u: f64 = rng.random();
            if let Some((p, kind)) = draw(u, rng).filter(|(p, _)| admissible(sc, *p)) {
                cands.push((p, 0, kind));
                break;
            }
        }
    }
    shuffle(&mut cands, rng);
    cands
}

/// Candidate marks in world coordinates.
pub(crate) fn to_world(marks: Vec<Mark>, g: &SeriesGeometry) -> Vec<CandidateTruth> {
    marks
        .into_iter()
        .map(|(p, class, kind)| CandidateTruth {
            xyz: g.local_to_world(p),
            class,
            kind,
        })
        .collect()
}

/// The class-1 marks: 1–3 per nodule (see the module docs), and with `official` some on
/// excluded blobs.
fn place_positives(sc: &Scene, official: bool, rng: &mut Pcg64) -> Vec<Mark> {
    let mut cands: Vec<Mark> = Vec::new();
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
    cands
}

/// Whether a negative at `p` lies inside the volume and away from nodules and blobs.
fn admissible(sc: &Scene, p: [f64; 3]) -> bool {
    (0..3).all(|k| p[k] >= 0.0 && p[k] <= sc.ext[k] - sc.spacing[k])
        && sc.nodules.iter().all(|n| dist(p, n.0) >= n.1 + 2.0)
        && sc.blobs.iter().all(|b| dist(p, *b) >= 4.0)
}

/// A point on the axis of a vessel, thicker vessels picked more often (harder negatives).
pub(crate) fn on_vessel(sc: &Scene, rng: &mut Pcg64) -> [f64; 3] {
    let r_top = sc.vessels.iter().map(|v| v.ra).fold(0.0, f64::max);
    let v = loop {
        let v = &sc.vessels[rng.random_range(0..sc.vessels.len())];
        if rng.random::<f64>() * r_top <= v.ra {
            break v;
        }
    };
    let t: f64 = rng.random();
    add_scaled(v.a, sub(v.b, v.a), t)
}

/// A random vessel branch point.
pub(crate) fn on_bifurcation(sc: &Scene, rng: &mut Pcg64) -> [f64; 3] {
    sc.bifurcations[rng.random_range(0..sc.bifurcations.len())]
}

/// A lung point at least 1 mm inside its wall and 1.5 mm from any vessel surface, if the draw
/// gives one.
pub(crate) fn in_parenchyma(sc: &Scene, rng: &mut Pcg64) -> Option<[f64; 3]> {
    let l = &sc.anatomy.lungs[rng.random_range(0..2)];
    let p = std::array::from_fn(|k| l.c[k] + l.s[k] * rng.random_range(-1.0..1.0));
    (l.rho(p, 1.0) < 1.0 && sc.vessels.iter().all(|v| v.sdist(p) >= 1.5)).then_some(p)
}

/// A soft-tissue point 2–8 mm outside a lung wall and inside the body, if the draw gives one.
pub(crate) fn in_tissue(sc: &Scene, rng: &mut Pcg64) -> Option<[f64; 3]> {
    let p = outside_lung(sc, 2.0..8.0, rng);
    let b = (((p[0] - sc.anatomy.body_c[0]) / sc.anatomy.body_s[0]).powi(2)
        + ((p[1] - sc.anatomy.body_c[1]) / sc.anatomy.body_s[1]).powi(2))
    .sqrt();
    (b < 0.95 && sc.anatomy.lungs.iter().all(|l| l.rho(p, 0.0) >= 1.05)).then_some(p)
}

/// A point `out` mm (drawn from the range; negative = inside) beyond a random lung's surface
/// along a random direction.
pub(crate) fn outside_lung(sc: &Scene, out: std::ops::Range<f64>, rng: &mut Pcg64) -> [f64; 3] {
    let l = &sc.anatomy.lungs[rng.random_range(0..2)];
    let dir = unit(rng);
    let on = std::array::from_fn(|k| dir[k] * l.s[k]);
    let n = dot(on, on).sqrt();
    let out = rng.random_range(out);
    let p = [l.c[0] + on[0], l.c[1] + on[1], l.c[2] + on[2]];
    add_scaled(p, on, out / n)
}

/// Deterministic Fisher–Yates shuffle so classes are interleaved like the real file.
fn shuffle(cands: &mut [Mark], rng: &mut Pcg64) {
    for i in (1..cands.len()).rev() {
        let j = rng.random_range(0..=i);
        cands.swap(i, j);
    }
}

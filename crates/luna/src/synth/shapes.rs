//! Geometric primitives of the synthetic anatomy: capsules/spheres with a soft edge, lung
//! ellipsoids, nodule shapes and branching vessel trees (all in local mm).
//!
//! A sphere is a zero-length capsule, so one distance function (`Prim::sdist`) serves vessels,
//! nodules, lobes and spikes. Benign nodules are one smooth sphere. Malignant ones are either
//! lobulated (a 0.8 r core, 4–7 lobes of 0.35–0.55 r, 2–4 short spikes) or spiculated (a 0.9 r
//! core with 6–12 spikes reaching 1.3–1.8 r). Vessel trees start at the hilum (medial side of
//! each lung), taper by 0.92 per segment and 0.72–0.9 per branching, branch in two at 20–46°,
//! and stop below 0.5 mm radius, at depth 7, or where they would leave the lung. Rejected:
//! voxel-space skeletons or L-systems (more code, no gain for a classifier's 48-voxel view).

use super::truth::NoduleShape;
use rand::Rng;
use rand_pcg::Pcg64;

/// A rendered primitive in local mm.
#[derive(Debug, Clone)]
pub(crate) struct Prim {
    /// Segment start (a sphere has a == b).
    pub a: [f64; 3],
    /// Segment end.
    pub b: [f64; 3],
    /// Radius at a.
    pub ra: f64,
    /// Radius at b.
    pub rb: f64,
    /// Target HU.
    pub hu: f32,
    /// Bounding box min/max (local mm), edge included.
    pub lo: [f64; 3],
    /// Bounding box max.
    pub hi: [f64; 3],
}

/// Edge width (mm) of the soft boundary of every primitive.
pub(crate) const EDGE_MM: f64 = 0.8;

impl Prim {
    pub(crate) fn capsule(a: [f64; 3], b: [f64; 3], ra: f64, rb: f64, hu: f32) -> Prim {
        let r = ra.max(rb) + EDGE_MM;
        let lo = std::array::from_fn(|k| a[k].min(b[k]) - r);
        let hi = std::array::from_fn(|k| a[k].max(b[k]) + r);
        Prim {
            a,
            b,
            ra,
            rb,
            hu,
            lo,
            hi,
        }
    }
    pub(crate) fn sphere(c: [f64; 3], r: f64, hu: f32) -> Prim {
        Prim::capsule(c, c, r, r, hu)
    }
    /// Signed distance-like value: distance to axis minus local radius (mm).
    pub fn sdist(&self, p: [f64; 3]) -> f64 {
        let ab = sub(self.b, self.a);
        let ap = sub(p, self.a);
        let l2 = dot(ab, ab);
        let t = if l2 > 0.0 {
            (dot(ap, ab) / l2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let q = [ap[0] - t * ab[0], ap[1] - t * ab[1], ap[2] - t * ab[2]];
        dot(q, q).sqrt() - (self.ra + t * (self.rb - self.ra))
    }
}

/// Axis-aligned ellipsoid (local mm).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ellipsoid {
    /// Centre.
    pub c: [f64; 3],
    /// Semi-axes.
    pub s: [f64; 3],
}

impl Ellipsoid {
    /// Normalised radius (< 1 inside), after shrinking the semi-axes by `margin` mm.
    pub fn rho(&self, p: [f64; 3], margin: f64) -> f64 {
        (0..3)
            .map(|k| {
                let d = (p[k] - self.c[k]) / (self.s[k] - margin).max(1e-6);
                d * d
            })
            .sum::<f64>()
            .sqrt()
    }
}

pub(crate) fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
pub(crate) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
pub(crate) fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    let d = sub(a, b);
    dot(d, d).sqrt()
}
pub(crate) fn add_scaled(a: [f64; 3], d: [f64; 3], s: f64) -> [f64; 3] {
    [a[0] + d[0] * s, a[1] + d[1] * s, a[2] + d[2] * s]
}

/// Uniform random unit vector.
pub(crate) fn unit(rng: &mut Pcg64) -> [f64; 3] {
    loop {
        let v = [
            rng.random_range(-1.0..1.0),
            rng.random_range(-1.0..1.0),
            rng.random_range(-1.0..1.0),
        ];
        let n = dot(v, v);
        if n > 1e-4 && n <= 1.0 {
            let n = n.sqrt();
            return [v[0] / n, v[1] / n, v[2] / n];
        }
    }
}

pub(crate) fn nodule_prims(
    prims: &mut Vec<Prim>,
    c: [f64; 3],
    r: f64,
    shape: NoduleShape,
    rng: &mut Pcg64,
) {
    let hu: f32 = match shape {
        NoduleShape::Sphere => rng.random_range(20.0..70.0),
        _ => rng.random_range(30.0..100.0),
    };
    shaped_prims(prims, c, r, shape, hu, rng);
}

/// The primitives of a nodule of radius `r` and shape `shape`, all at `hu`.
pub(crate) fn shaped_prims(
    prims: &mut Vec<Prim>,
    c: [f64; 3],
    r: f64,
    shape: NoduleShape,
    hu: f32,
    rng: &mut Pcg64,
) {
    match shape {
        NoduleShape::Sphere => prims.push(Prim::sphere(c, r, hu)),
        NoduleShape::Lobulated => {
            prims.push(Prim::sphere(c, 0.8 * r, hu));
            for _ in 0..rng.random_range(4..=7) {
                let p = add_scaled(c, unit(rng), rng.random_range(0.45..0.7) * r);
                prims.push(Prim::sphere(p, rng.random_range(0.35..0.55) * r, hu));
            }
            spikes(prims, c, r, rng.random_range(2..=4), hu, rng);
        }
        NoduleShape::Spiculated => {
            prims.push(Prim::sphere(c, 0.9 * r, hu));
            spikes(prims, c, r, rng.random_range(6..=12), hu, rng);
        }
    }
}

fn spikes(prims: &mut Vec<Prim>, c: [f64; 3], r: f64, n: usize, hu: f32, rng: &mut Pcg64) {
    for _ in 0..n {
        let u = unit(rng);
        let a = add_scaled(c, u, 0.6 * r);
        let b = add_scaled(c, u, rng.random_range(1.3..1.8) * r);
        prims.push(Prim::capsule(a, b, (0.18 * r).max(0.7), 0.35, hu));
    }
}

/// How a branching tree grows (see [`grow`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TreeParams {
    /// Branches thinner than this (mm) stop.
    pub r_min: f64,
    /// Deepest generation.
    pub max_depth: usize,
    /// Segment length as a multiple of its radius (range).
    pub len: [f64; 2],
    /// Shortest segment (mm).
    pub min_len: f64,
    /// Radius ratio along one segment.
    pub taper: f64,
    /// Radius ratio of each of the two children to its parent's end (ranges).
    pub split: [[f64; 2]; 2],
    /// Branching angle of each child (radians, ranges).
    pub angle: [[f64; 2]; 2],
    /// Segment HU (range; f32 draws).
    pub hu: [f32; 2],
}

/// The vessel trees of the tiny/small/real presets.
const CARTOON_TREE: TreeParams = TreeParams {
    r_min: 0.5,
    max_depth: 7,
    len: [7.0, 12.0],
    min_len: 4.0,
    taper: 0.92,
    split: [[0.72, 0.9], [0.72, 0.9]],
    angle: [[0.35, 0.8], [0.35, 0.8]],
    hu: [25.0, 55.0],
};

/// A growing tree: its parameters, the lung it stays in, and what it has grown so far.
pub(crate) struct Tree<'a> {
    /// Growth parameters.
    pub tp: TreeParams,
    /// The lung the tree stays inside.
    pub lung: &'a Ellipsoid,
    /// A region the tree stays out of (the heart), if any.
    pub avoid: Option<&'a Ellipsoid>,
    /// Grown capsules.
    pub caps: Vec<Prim>,
    /// Branch points.
    pub bif: Vec<[f64; 3]>,
}

/// Branching vessel trees in both lungs; returns capsules and bifurcation points.
pub(crate) fn vessel_trees(
    lungs: &[Ellipsoid; 2],
    r_max: f64,
    rng: &mut Pcg64,
) -> (Vec<Prim>, Vec<[f64; 3]>) {
    let mut caps = Vec::new();
    let mut bif = Vec::new();
    for (li, l) in lungs.iter().enumerate() {
        let medial = if li == 0 { 1.0 } else { -1.0 };
        let r0 = (0.1 * l.s[0]).clamp(0.8, r_max);
        // More trees in bigger lungs (about 4 per 20 mm of lateral semi-axis).
        let trees = (rng.random_range(3.0..5.0) * (l.s[0] / 20.0).max(1.0)).round() as usize;
        for _ in 0..trees {
            let start = [
                l.c[0] + medial * 0.6 * l.s[0],
                l.c[1] + l.s[1] * rng.random_range(-0.2..0.2),
                l.c[2] + l.s[2] * rng.random_range(-0.25..0.25),
            ];
            let target = [
                l.c[0] - medial * 0.5 * l.s[0],
                l.c[1] + l.s[1] * rng.random_range(-0.6..0.6),
                l.c[2] + l.s[2] * rng.random_range(-0.7..0.7),
            ];
            let d = sub(target, start);
            let n = dot(d, d).sqrt().max(1e-6);
            let dir = [d[0] / n, d[1] / n, d[2] / n];
            let mut t = Tree {
                tp: CARTOON_TREE,
                lung: l,
                avoid: None,
                caps: std::mem::take(&mut caps),
                bif: std::mem::take(&mut bif),
            };
            t.grow(start, dir, r0 * rng.random_range(0.8..1.0), 0, rng);
            (caps, bif) = (t.caps, t.bif);
        }
    }
    (caps, bif)
}

impl Tree<'_> {
    /// Grow one segment from `p` along `dir` with radius `r`, then two children (depth-first).
    /// A segment that would leave the lung (or enter `avoid`) is halved up to three times, then
    /// dropped.
    pub(crate) fn grow(
        &mut self,
        p: [f64; 3],
        dir: [f64; 3],
        r: f64,
        depth: usize,
        rng: &mut Pcg64,
    ) {
        let tp = self.tp;
        if r < tp.r_min || depth > tp.max_depth {
            return;
        }
        let mut len = (r * rng.random_range(tp.len[0]..tp.len[1])).max(tp.min_len);
        let mut end = add_scaled(p, dir, len);
        let mut tries = 0;
        while self.lung.rho(end, r + 0.5) >= 1.0 || self.avoid.is_some_and(|a| a.rho(end, -r) < 1.0)
        {
            tries += 1;
            if tries > 3 {
                return;
            }
            len *= 0.5;
            end = add_scaled(p, dir, len);
        }
        let rb = r * tp.taper;
        let hu: f32 = rng.random_range(tp.hu[0]..tp.hu[1]);
        self.caps.push(Prim::capsule(p, end, r, rb, hu));
        if rb * 0.9 < tp.r_min || depth == tp.max_depth {
            return;
        }
        self.bif.push(end);
        for (split, angle) in tp.split.iter().zip(&tp.angle) {
            let u = unit(rng);
            let ang = rng.random_range(angle[0]..angle[1]);
            // Rotate `dir` towards a random perpendicular by `ang` radians.
            let perp = add_scaled(u, dir, -dot(u, dir));
            let pn = dot(perp, perp).sqrt().max(1e-6);
            let nd = std::array::from_fn(|k| dir[k] * ang.cos() + perp[k] / pn * ang.sin());
            let rc = rb * rng.random_range(split[0]..split[1]);
            self.grow(end, nd, rc, depth + 1, rng);
        }
    }
}

//! The `realistic` preset: CTs with what makes real nodule detection hard (issue 27).
//!
//! A series is a scanner-like 512² grid (0.55–0.9 mm in-plane, the field of view fitted to a
//! 290–370 mm wide chest) with a slice thickness drawn from the usual values (0.625 mm 8 %,
//! 1.0 mm 12 %, 1.25 mm 30 %, 2.0 mm 15 %, 2.5 mm 35 %; spacing = thickness) and averaged over
//! the slice profile. At most `MAX_SLICES` (200) slices: a thin-slice series covers only part
//! of the chest (0.625 mm: 125 mm), a thick one the whole chest and the upper abdomen.
//! Content: body layers, ribs, spine, mediastinum with heart and aorta, table (`anatomy`);
//! textured lungs with a gravity gradient and correlated noise (`render`); trachea and bronchi
//! (`airways`); dense vessel trees from the hila down to 0.3 mm radius (the shared
//! [`Tree`](super::shapes::Tree)); solid, part-solid, ground-glass and calcified nodules,
//! isolated, juxtapleural or juxtavascular, with size- and shape-driven malignancy
//! (`nodules`); negatives at vessels, bifurcations, airway walls, pleura, parenchyma and
//! mediastinum (`candidates`). Output format, truth records and writing are the other presets'
//! (`NoduleTruth` gains `density`, `attachment`, `calcified`).
//!
//! Each series draws from its own `Pcg64` (seeded from the seed and the series index, on a
//! stream apart from the other presets'), in one fixed order; the texture lattice and the
//! per-slice noise have seeds drawn last. Rejected: extending `plan::plan_series` with
//! preset switches (the tiny/small/real files must stay byte-identical, and one function
//! would then carry two draw orders).

mod airways;
mod anatomy;
mod candidates;
mod nodules;
mod render;

pub(crate) use render::render;

use super::candidates::{to_world, Scene};
use super::plan::{make_uid, mix, orient_geometry, place_excluded, ratings, SeriesPlan};
use super::shapes::{dist, sub, Prim, Tree, TreeParams};
use super::truth::{NoduleTruth, SeriesTruth};
use super::{Layout, ResolvedOptions, SeriesGeometry};
use anatomy::Body;
use rand::{Rng, RngCore, SeedableRng};
use rand_pcg::Pcg64;

/// Most slices of one series (thin-slice series cover less of the chest).
pub const MAX_SLICES: usize = 200;

/// Slice thicknesses (mm) and their probabilities.
const THICKNESS: [(f64, f64); 5] = [
    (0.625, 0.08),
    (1.0, 0.12),
    (1.25, 0.30),
    (2.0, 0.15),
    (2.5, 0.35),
];

/// Pulmonary vessel trees (arteries and veins alike).
const VESSELS: TreeParams = TreeParams {
    r_min: 0.25,
    max_depth: 24,
    len: [4.0, 7.0],
    min_len: 1.5,
    taper: 0.97,
    split: [[0.86, 0.95], [0.45, 0.7]],
    angle: [[0.1, 0.3], [0.6, 1.2]],
    hu: [30.0, 50.0],
};

/// A planned realistic series: the shared plan (geometry, lungs, primitives, truth, noise
/// seed) plus the chest and the rendering parameters.
pub(crate) struct RealisticPlan {
    /// Geometry, anatomy (lungs, body ellipse, table), primitives, noise seed, truth.
    pub base: SeriesPlan,
    /// The chest.
    pub body: Body,
    /// Noise σ (HU) after the kernel blur.
    pub noise_sigma: f32,
    /// Seed of the lung texture lattices.
    pub texture_seed: u64,
}

/// Plan series `index` of a realistic dataset.
pub(crate) fn plan_series(o: &ResolvedOptions, index: usize) -> RealisticPlan {
    let mut rng = Pcg64::seed_from_u64(mix(o.seed ^ mix(index as u64 + 1) ^ 0x0052_4541_4C49));
    let uid = make_uid(o.seed, index);
    let subset = index * o.subsets / o.series;
    let (geometry, body_w, lung_h) = plan_geometry(o, index, &mut rng);
    let ext = geometry.extent_mm();
    let full = lung_h + 50.0;
    let shift = ((full - ext[2]) / 2.0).max(0.0);
    let zc = ext[2] / 2.0 + rng.random_range(-shift..=shift) - 10.0;
    let body = anatomy::plan_body(ext, body_w, lung_h, zc, &mut rng);
    let (vessels, bifurcations) = vessel_trees(&body, &mut rng);
    let airways = airways::airways(&body, ext[2], &mut rng);
    let mut prims: Vec<Prim> = vessels.clone();
    prims.extend(airways.walls.iter().cloned());
    prims.extend(airways.lumens.iter().cloned());
    let n_nod = rng.random_range(o.nodules_per_series[0]..=o.nodules_per_series[1]);
    let site = nodules::Site {
        body: &body,
        vessels: &vessels,
        ext,
    };
    let planted = nodules::place(&site, n_nod, o.malignant_fraction, &mut prims, &mut rng);
    let nod_cd: Vec<([f64; 3], f64)> = planted.iter().map(|n| (n.c, n.d)).collect();
    let (excluded, blobs) = place_excluded(&body.base, &nod_cd, &geometry, &mut prims, &mut rng);
    let scene = Scene {
        anatomy: &body.base,
        vessels: &vessels,
        bifurcations: &bifurcations,
        nodules: &nod_cd,
        blobs: &blobs,
        ext,
        spacing: geometry.spacing_xyz,
    };
    let negatives = o.negatives_per_nodule * n_nod.max(2);
    let official = o.layout == Layout::Luna16;
    let marks = candidates::place(
        &scene,
        &body,
        &airways.lumens,
        negatives,
        official,
        &mut rng,
    );
    let candidates = to_world(marks, &geometry);
    let nodules = planted
        .into_iter()
        .map(|n| nodule_truth(&geometry, n, o.label_noise, &mut rng))
        .collect();
    let thin = 2.5 / geometry.spacing_xyz[2];
    let noise_sigma = (rng.random_range(14.0..22.0) * thin.sqrt()) as f32;
    let texture_seed = rng.next_u64();
    let noise_seed = rng.next_u64();
    RealisticPlan {
        base: SeriesPlan {
            truth: SeriesTruth {
                index,
                uid,
                subset,
                geometry: geometry.clone(),
                nodules,
                excluded,
                candidates,
            },
            geometry,
            anatomy: body.base.clone(),
            prims,
            noise_seed,
        },
        body,
        noise_sigma,
        texture_seed,
    }
}

/// Grid, spacing and orientation; also the chest width and lung height (mm) it was fitted to.
fn plan_geometry(o: &ResolvedOptions, index: usize, rng: &mut Pcg64) -> (SeriesGeometry, f64, f64) {
    let u: f64 = rng.random();
    let mut acc = 0.0;
    let thickness = THICKNESS
        .iter()
        .find(|(_, p)| {
            acc += p;
            u < acc
        })
        .map_or(2.5, |t| t.0);
    let body_w: f64 = rng.random_range(290.0..370.0);
    let fov = body_w * rng.random_range(1.08..1.3);
    let sxy = (fov / 512.0).clamp(0.55, 0.9) as f32 as f64;
    let lung_h: f64 = rng.random_range(210.0..270.0);
    let nz = (((lung_h + 50.0) / thickness).round() as usize).min(MAX_SLICES);
    let g = orient_geometry(o, index, [512, 512, nz], [sxy, sxy, thickness], rng);
    (g, body_w, lung_h)
}

/// Pulmonary vessel trees: 36–44 per lung from around its hilum towards random points of the
/// lung.
fn vessel_trees(body: &Body, rng: &mut Pcg64) -> (Vec<Prim>, Vec<[f64; 3]>) {
    let mut caps = Vec::new();
    let mut bif = Vec::new();
    for (k, lung) in body.base.lungs.iter().enumerate() {
        let mut tree = Tree {
            tp: VESSELS,
            lung,
            avoid: Some(&body.heart),
            caps: Vec::new(),
            bif: Vec::new(),
        };
        let hilum = body.hila[k];
        for _ in 0..rng.random_range(36..=44) {
            let target: [f64; 3] =
                std::array::from_fn(|j| lung.c[j] + lung.s[j] * rng.random_range(-0.8..0.8));
            let start = [
                hilum[0],
                hilum[1] + rng.random_range(-20.0..20.0),
                hilum[2] + rng.random_range(-40.0..40.0),
            ];
            let d = sub(target, start);
            let n = dist(target, start).max(1e-6);
            let dir = [d[0] / n, d[1] / n, d[2] / n];
            tree.grow(start, dir, rng.random_range(1.5..4.5), 0, rng);
        }
        caps.extend(tree.caps);
        bif.extend(tree.bif);
    }
    (caps, bif)
}

/// The truth record of a planted nodule (label noise and ratings drawn here).
fn nodule_truth(
    g: &SeriesGeometry,
    n: nodules::Planted,
    label_noise: f64,
    rng: &mut Pcg64,
) -> NoduleTruth {
    let mal_bool = n.malignant ^ rng.random_bool(label_noise);
    let xyz = g.local_to_world(n.c);
    NoduleTruth {
        xyz,
        irc: g.world_to_irc(xyz),
        diameter_mm: n.d,
        malignant: n.malignant,
        mal_bool,
        shape: n.shape,
        mal_details: ratings(mal_bool, rng),
        density: Some(n.density),
        attachment: Some(n.attachment),
        calcified: Some(n.calcified),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{Preset, SynthOptions};

    /// Same seed, same plan; candidates and nodules inside the volume; geometry scanner-like.
    #[test]
    fn plans_are_deterministic_and_inside_the_volume() {
        let o = SynthOptions {
            series: Some(4),
            ..SynthOptions::preset(Preset::Realistic)
        }
        .resolve()
        .unwrap();
        for i in 0..o.series {
            let p = plan_series(&o, i);
            assert_eq!(p.base.truth, plan_series(&o, i).base.truth, "series {i}");
            let g = &p.base.geometry;
            assert_eq!(&g.dims_xyz[..2], &[512, 512]);
            assert!(g.dims_xyz[2] <= MAX_SLICES && g.dims_xyz[2] >= 32);
            assert!(THICKNESS.iter().any(|t| t.0 == g.spacing_xyz[2]));
            assert!((0.55..=0.9).contains(&g.spacing_xyz[0]));
            let t = &p.base.truth;
            assert!(!t.nodules.is_empty());
            assert!(t.candidates.iter().filter(|c| c.class == 0).count() >= 2 * 80 * 9 / 10);
            for c in t
                .candidates
                .iter()
                .map(|c| c.xyz)
                .chain(t.nodules.iter().map(|n| n.xyz))
            {
                let idx = g.world_to_index(c);
                assert!((0..3).all(|k| idx[k] >= -0.5 && idx[k] <= g.dims_xyz[k] as f64 - 0.5));
            }
            for n in &t.nodules {
                assert!(n.density.is_some() && n.attachment.is_some() && n.calcified.is_some());
                assert!((3.2..=30.0).contains(&n.diameter_mm));
                assert_eq!(
                    n.mal_details.iter().filter(|&&r| r >= 4).count() >= 2,
                    n.mal_bool
                );
            }
            assert!(
                p.base.prims.len() > 2000,
                "dense vessels: {}",
                p.base.prims.len()
            );
        }
        assert_ne!(plan_series(&o, 0).base.truth, plan_series(&o, 1).base.truth);
    }
}

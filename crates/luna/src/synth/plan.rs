//! Planning one series: geometry, anatomy, vessel trees, nodules, candidates (all random draws).
//!
//! Everything random about a series is drawn here from one `Pcg64` seeded from
//! `(seed, series index)`; rendering only adds per-slice noise from a seed stored in the plan.
//! Positions are in the local frame (mm, see `geometry`); world coordinates are derived at the end.
//! Nodules sit inside a lung with a margin of 0.55 × diameter (benign) or 0.8 × diameter
//! (malignant, for the spikes) and keep apart from each other; candidates are placed by
//! `candidates`. Annotation centres are the exact planted centres.

use super::candidates::{place_candidates, to_world, Scene};
use super::geometry::{direction_matrix, SeriesGeometry};
use super::shapes::{dist, nodule_prims, vessel_trees, Ellipsoid, Prim};
use super::truth::{ExcludedTruth, NoduleShape, NoduleTruth, SeriesTruth};
use super::{Layout, Preset, ResolvedOptions};
use rand::{Rng, RngCore, SeedableRng};
use rand_pcg::Pcg64;

/// Body outline and background parameters (local mm).
#[derive(Debug, Clone)]
pub(crate) struct Anatomy {
    /// In-plane field-of-view centre (x, y).
    pub fov_c: [f64; 2],
    /// Field-of-view radius; outside it voxels get `pad`.
    pub fov_r: f64,
    /// Body ellipse centre (x, y).
    pub body_c: [f64; 2],
    /// Body ellipse semi-axes (x, y).
    pub body_s: [f64; 2],
    /// Table band rows (y range, mm).
    pub table_y: [f64; 2],
    /// The two lungs.
    pub lungs: [Ellipsoid; 2],
    /// Out-of-field value.
    pub pad: i16,
}

impl Anatomy {
    /// Whether local (x, y) lies outside the reconstruction circle (voxels get `pad`).
    pub(crate) fn outside_fov(&self, x: f64, y: f64) -> bool {
        let (dx, dy) = (x - self.fov_c[0], y - self.fov_c[1]);
        dx * dx + dy * dy > self.fov_r * self.fov_r
    }
}

/// Everything needed to render and describe one series.
pub(crate) struct SeriesPlan {
    /// Header geometry.
    pub geometry: SeriesGeometry,
    /// Background anatomy.
    pub anatomy: Anatomy,
    /// Vessels, nodules and blobs.
    pub prims: Vec<Prim>,
    /// Seed of the per-slice noise streams.
    pub noise_seed: u64,
    /// CSV / JSON truth.
    pub truth: SeriesTruth,
}

struct PresetParams {
    nxy: [usize; 2],
    nz: [usize; 2],
    sxy: [f64; 2],
    sz: [f64; 2],
    zext: [f64; 2],
    benign_d: [f64; 2],
    malig_d: [f64; 2],
    vessel_r: f64,
}

fn params(p: Preset) -> PresetParams {
    match p {
        Preset::Tiny => PresetParams {
            nxy: [80, 96],
            nz: [48, 64],
            sxy: [0.8, 0.98],
            sz: [1.0, 2.0],
            zext: [48.0, 128.0],
            benign_d: [4.0, 6.5],
            malig_d: [6.5, 10.0],
            vessel_r: 1.2,
        },
        Preset::Small => PresetParams {
            nxy: [128, 160],
            nz: [64, 96],
            sxy: [0.8, 0.98],
            sz: [0.8, 2.0],
            zext: [64.0, 192.0],
            // no size overlap: a CNN trained for minutes on ~100 nodules must be able to rank
            // malignancy (shape differs too); real LUNA16-like overlap is the `real` preset's
            benign_d: [5.0, 8.0],
            malig_d: [8.5, 16.0],
            vessel_r: 1.5,
        },
        // realistic series are planned by `synth::realistic` and never reach here
        Preset::Real | Preset::Realistic => PresetParams {
            nxy: [512, 512],
            nz: [100, 300],
            sxy: [0.5, 0.98],
            sz: [0.6, 2.5],
            zext: [150.0, 400.0],
            benign_d: [3.2, 12.0],
            malig_d: [8.0, 30.0],
            vessel_r: 3.0,
        },
    }
}

/// SplitMix64 finaliser, to derive independent seeds.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether item `i` of `n` is among the `fraction` selected ones (evenly spread), and its rank.
fn spread(i: usize, fraction: f64) -> Option<usize> {
    let f = |k: usize| (k as f64 * fraction + 1e-9).floor() as usize;
    (f(i + 1) > f(i)).then(|| f(i))
}

/// Series UID: the LUNA16 prefix plus 30 digits drawn from `(seed, index)`.
pub(crate) fn make_uid(seed: u64, index: usize) -> String {
    let mut rng = Pcg64::seed_from_u64(mix(mix(seed) ^ 0x5EED_0F1D ^ (index as u64)));
    let mut s = String::from("1.3.6.1.4.1.14519.5.2.1.6279.6001.");
    s.push(char::from(b'1' + rng.random_range(0..3u8)));
    for _ in 0..29 {
        s.push(char::from(b'0' + rng.random_range(0..10u8)));
    }
    s
}

/// A nodule placed in a series: local centre (mm), diameter, malignant, shape.
type Placed = ([f64; 3], f64, bool, NoduleShape);

/// Plan series `index` of the dataset. The draws from `rng` happen in one fixed order
/// (geometry, anatomy, vessels, nodules, excluded blobs, candidates, labels, noise seed): the
/// helpers below are that order cut into steps, so a dataset stays byte-identical per seed.
pub(crate) fn plan_series(o: &ResolvedOptions, index: usize) -> SeriesPlan {
    let pp = params(o.preset);
    let mut rng = Pcg64::seed_from_u64(mix(o.seed ^ mix(index as u64 + 1)));
    let uid = make_uid(o.seed, index);
    let subset = index * o.subsets / o.series;
    let geometry = plan_geometry(o, &pp, index, &mut rng);
    let ext = geometry.extent_mm();
    let anatomy = plan_anatomy(ext, &mut rng);

    let mut prims = Vec::new();
    let (vessels, bifurcations) = vessel_trees(&anatomy.lungs, pp.vessel_r, &mut rng);
    prims.extend(vessels.iter().cloned());
    let n_nod = rng.random_range(o.nodules_per_series[0]..=o.nodules_per_series[1]);
    let nodules = place_nodules(o, &pp, &anatomy, n_nod, &mut prims, &mut rng);
    let nod_cd: Vec<([f64; 3], f64)> = nodules.iter().map(|n| (n.0, n.1)).collect();
    let (excluded, blobs) = place_excluded(&anatomy, &nod_cd, &geometry, &mut prims, &mut rng);

    let scene = Scene {
        anatomy: &anatomy,
        vessels: &vessels,
        bifurcations: &bifurcations,
        nodules: &nod_cd,
        blobs: &blobs,
        ext,
        spacing: geometry.spacing_xyz,
    };
    let official = o.layout == Layout::Luna16;
    let negatives = o.negatives_per_nodule * n_nod.max(2);
    let cands = place_candidates(&scene, negatives, official, &mut rng);
    let candidates = to_world(cands, &geometry);

    let nodules = nodules
        .into_iter()
        .map(|(p, d, malignant, shape)| {
            let mal_bool = malignant ^ rng.random_bool(o.label_noise);
            let xyz = geometry.local_to_world(p);
            NoduleTruth {
                xyz,
                irc: geometry.world_to_irc(xyz),
                diameter_mm: d,
                malignant,
                mal_bool,
                shape,
                mal_details: ratings(mal_bool, &mut rng),
                density: None,
                attachment: None,
                calcified: None,
            }
        })
        .collect();
    let noise_seed = rng.next_u64();
    SeriesPlan {
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
        anatomy,
        prims,
        noise_seed,
    }
}

/// The series' grid, spacing, direction (rotated / flipped for the chosen fraction),
/// compression and origin (the volume centred near the lungs' usual scanner position).
fn plan_geometry(
    o: &ResolvedOptions,
    pp: &PresetParams,
    index: usize,
    rng: &mut Pcg64,
) -> SeriesGeometry {
    let nxy = rng.random_range(pp.nxy[0]..=pp.nxy[1]);
    let nz = rng.random_range(pp.nz[0]..=pp.nz[1]);
    let sxy = rng.random_range(pp.sxy[0]..=pp.sxy[1]) as f32 as f64;
    let sz_lo = pp.sz[0].max(pp.zext[0] / nz as f64);
    let sz_hi = pp.sz[1].min(pp.zext[1] / nz as f64).max(sz_lo);
    let sz = rng.random_range(sz_lo..=sz_hi) as f32 as f64;
    orient_geometry(o, index, [nxy, nxy, nz], [sxy, sxy, sz], rng)
}

/// The geometry of a grid already drawn: direction (rotated / flipped for the chosen
/// fraction), compression and origin (the volume centred near the lungs' usual scanner
/// position).
pub(crate) fn orient_geometry(
    o: &ResolvedOptions,
    index: usize,
    dims_xyz: [usize; 3],
    spacing_xyz: [f64; 3],
    rng: &mut Pcg64,
) -> SeriesGeometry {
    let rotated = spread(index, o.rotated_fraction);
    let compressed = spread(o.series - 1 - index, o.compressed_fraction).is_some();
    let direction = match rotated.map(|r| r % 3) {
        None => direction_matrix(0.0, false),
        Some(k) => {
            let deg = rng.random_range(5.0..15.0) * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            match k {
                0 => direction_matrix(deg, false),
                1 => direction_matrix(0.0, true),
                _ => direction_matrix(deg, true),
            }
        }
    };
    let mut geometry = SeriesGeometry {
        dims_xyz,
        spacing_xyz,
        origin_xyz: [0.0; 3],
        direction,
        compressed,
    };
    let ext = geometry.extent_mm();
    let centre_w = [
        rng.random_range(-15.0..15.0),
        rng.random_range(-15.0..15.0),
        rng.random_range(-220.0..-120.0),
    ];
    let half = geometry.local_to_world([ext[0] / 2.0, ext[1] / 2.0, ext[2] / 2.0]);
    geometry.origin_xyz =
        std::array::from_fn(|k| ((centre_w[k] - half[k]) * 100.0).round() / 100.0);
    geometry
}

/// Body, table and the two lungs inside a field of view of extent `ext` (mm).
fn plan_anatomy(ext: [f64; 3], rng: &mut Pcg64) -> Anatomy {
    let fov_c = [ext[0] / 2.0, ext[1] / 2.0];
    let fov_r = ext[0].min(ext[1]) / 2.0;
    let body_s = [
        fov_r * rng.random_range(0.86..0.93),
        fov_r * rng.random_range(0.68..0.76),
    ];
    let body_c = [fov_c[0], fov_c[1] - 0.06 * fov_r];
    let table_top = body_c[1] + body_s[1] + 0.04 * fov_r;
    let zc = ext[2] / 2.0;
    let lung = |sign: f64, rng: &mut Pcg64| Ellipsoid {
        c: [
            body_c[0] + sign * body_s[0] * rng.random_range(0.44..0.5),
            body_c[1] - body_s[1] * rng.random_range(0.0..0.06),
            zc + ext[2] * rng.random_range(-0.03..0.03),
        ],
        s: [
            body_s[0] * rng.random_range(0.36..0.41),
            body_s[1] * rng.random_range(0.66..0.74),
            ext[2] * rng.random_range(0.42..0.47),
        ],
    };
    let lungs = [lung(-1.0, rng), lung(1.0, rng)];
    Anatomy {
        fov_c,
        fov_r,
        body_c,
        body_s,
        table_y: [table_top, table_top + 0.05 * fov_r],
        lungs,
        pad: if rng.random_bool(0.5) { -2048 } else { -3024 },
    }
}

/// Up to `n` nodules inside the lungs, apart from each other (60 tries each); their
/// primitives are appended to `prims`.
fn place_nodules(
    o: &ResolvedOptions,
    pp: &PresetParams,
    anatomy: &Anatomy,
    n: usize,
    prims: &mut Vec<Prim>,
    rng: &mut Pcg64,
) -> Vec<Placed> {
    let mut nodules: Vec<Placed> = Vec::new();
    for _ in 0..n {
        let malignant = rng.random_bool(o.malignant_fraction);
        let dr = if malignant { pp.malig_d } else { pp.benign_d };
        for _attempt in 0..60 {
            let d: f64 = rng.random_range(dr[0]..=dr[1]);
            let l = &anatomy.lungs[rng.random_range(0..2)];
            let margin = d * if malignant { 0.8 } else { 0.55 } + 0.5;
            let p = std::array::from_fn(|k| l.c[k] + l.s[k] * rng.random_range(-1.0..1.0));
            let clear = nodules
                .iter()
                .all(|(q, dq, _, _)| dist(p, *q) > 1.2 * (d + dq) + 4.0);
            if l.rho(p, margin) < 1.0 && clear {
                let shape = if !malignant {
                    NoduleShape::Sphere
                } else if rng.random_bool(0.5) {
                    NoduleShape::Lobulated
                } else {
                    NoduleShape::Spiculated
                };
                nodule_prims(prims, p, d / 2.0, shape, rng);
                nodules.push((p, d, malignant, shape));
                break;
            }
        }
    }
    nodules
}

/// Excluded findings: 0–2 small blobs away from the nodules (30 tries each); returns their
/// truth and their local centres, and appends their primitives to `prims`.
pub(crate) fn place_excluded(
    anatomy: &Anatomy,
    nodules: &[([f64; 3], f64)],
    geometry: &SeriesGeometry,
    prims: &mut Vec<Prim>,
    rng: &mut Pcg64,
) -> (Vec<ExcludedTruth>, Vec<[f64; 3]>) {
    let mut excluded = Vec::new();
    let mut blobs: Vec<[f64; 3]> = Vec::new();
    for _ in 0..rng.random_range(0..=2usize) {
        for _attempt in 0..30 {
            let d: f64 = rng.random_range(1.5..2.8);
            let l = &anatomy.lungs[rng.random_range(0..2)];
            let p = std::array::from_fn(|k| l.c[k] + l.s[k] * rng.random_range(-1.0..1.0));
            if l.rho(p, 2.0) < 1.0 && nodules.iter().all(|n| dist(p, n.0) > n.1 + 6.0) {
                prims.push(Prim::sphere(p, d / 2.0, rng.random_range(-50.0..50.0)));
                let dm = if rng.random_bool(0.5) { -1.0 } else { d };
                excluded.push(ExcludedTruth {
                    xyz: geometry.local_to_world(p),
                    diameter_mm: (dm * 100.0f64).round() / 100.0,
                });
                blobs.push(p);
                break;
            }
        }
    }
    (excluded, blobs)
}

/// Reader ratings consistent with the book's rule (malignant ⇔ ≥ 2 ratings ≥ 4).
pub(crate) fn ratings(mal: bool, rng: &mut Pcg64) -> Vec<u8> {
    let n = if rng.random_bool(0.35) { 3 } else { 4 };
    let mut r: Vec<u8> = (0..n)
        .map(|_| {
            if mal {
                rng.random_range(3..=5)
            } else {
                rng.random_range(1..=3)
            }
        })
        .collect();
    if mal {
        r[0] = r[0].max(4);
        r[1] = r[1].max(4);
    } else if rng.random_bool(0.2) {
        r[0] = 4;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_selects_fraction() {
        let sel: Vec<usize> = (0..8).filter(|&i| spread(i, 0.25).is_some()).collect();
        assert_eq!(sel, vec![3, 7]);
        assert_eq!((0..4).filter(|&i| spread(i, 0.5).is_some()).count(), 2);
        assert_eq!((0..4).filter(|&i| spread(i, 0.0).is_some()).count(), 0);
    }

    #[test]
    fn uid_shape() {
        let u = make_uid(7, 3);
        assert!(u.starts_with("1.3.6.1.4.1.14519.5.2.1.6279.6001."));
        assert_eq!(u.len(), "1.3.6.1.4.1.14519.5.2.1.6279.6001.".len() + 30);
        assert_ne!(u, make_uid(7, 4));
        assert_ne!(u, make_uid(8, 3));
    }

    #[test]
    fn presets_meet_their_size_and_candidate_targets() {
        for (preset, min_cands) in [(Preset::Tiny, 10), (Preset::Small, 40), (Preset::Real, 300)] {
            let o = super::super::SynthOptions::preset(preset)
                .resolve()
                .unwrap();
            for i in 0..o.series {
                let p = plan_series(&o, i);
                let [x, y, z] = p.geometry.dims_xyz;
                assert!(
                    x >= 48 && y >= 48 && z >= 32,
                    "{preset:?} {i}: crops must fit"
                );
                assert!(p.truth.candidates.len() >= min_cands, "{preset:?} {i}");
                assert!(!p.truth.nodules.is_empty(), "{preset:?} {i}");
                for n in &p.truth.nodules {
                    let local = p.geometry.world_to_local(n.xyz);
                    assert!(p.anatomy.lungs.iter().any(|l| l.rho(local, 0.0) < 1.0));
                }
            }
        }
    }

    #[test]
    fn ratings_follow_book_rule() {
        let mut rng = Pcg64::seed_from_u64(1);
        for mal in [true, false] {
            for _ in 0..200 {
                let r = ratings(mal, &mut rng);
                assert_eq!(r.iter().filter(|&&v| v >= 4).count() >= 2, mal, "{r:?}");
            }
        }
    }
}

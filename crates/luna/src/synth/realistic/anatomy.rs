//! The chest of a `realistic` series: body layers, lungs, mediastinum, spine, ribs, table,
//! and the background HU of any point (before vessels, airways and nodules are blended in).
//!
//! Sizes are absolute (an adult chest: 290–370 mm wide), not fractions of the field of view, so
//! a thin-slice series that covers only part of the chest shows part of the same anatomy. Every
//! boundary is soft (a linear ramp of `EDGE_MM` across it, from an approximate signed distance),
//! so each tissue edge has partial volume. Regions are composited in a fixed order: outside air
//! / table → skin, fat, muscle → interior soft tissue → mediastinal fat → lungs → ribs → heart,
//! aorta, spine (which override the lungs' ellipsoids where they overlap). Rejected: voxelised
//! organ atlases (no data we may ship) and marching-squares outlines (slower, no gain for the
//! classifier's 48-voxel view).

use super::super::plan::Anatomy;
use super::super::shapes::{Ellipsoid, EDGE_MM};
use rand::Rng;
use rand_pcg::Pcg64;

/// HU of the tissues (before noise).
pub(crate) const AIR_HU: f32 = -1000.0;
const SKIN_HU: f32 = 25.0;
const FAT_HU: f32 = -100.0;
const MUSCLE_HU: f32 = 45.0;
const ORGAN_HU: f32 = 38.0;
const BLOOD_HU: f32 = 40.0;
const TABLE_HU: f32 = 120.0;
const MARROW_HU: f32 = 260.0;
const CORTEX_HU: f32 = 750.0;
const DISC_HU: f32 = 80.0;
const CSF_HU: f32 = 15.0;

/// Chest anatomy of one series (local mm, z towards the head).
#[derive(Debug, Clone)]
pub(crate) struct Body {
    /// Field of view, body ellipse (skin), table and the lung ellipsoids (shared with the other
    /// presets' candidate placement and lung masks).
    pub base: Anatomy,
    /// Subcutaneous fat thickness (mm).
    pub fat: f64,
    /// Chest-wall muscle thickness (mm).
    pub muscle: f64,
    /// Heart (overrides the lungs).
    pub heart: Ellipsoid,
    /// Vertebral body centre (x, y) and radius.
    pub spine: [f64; 3],
    /// Descending aorta centre (x, y) and radius.
    pub aorta: [f64; 3],
    /// Trachea centre (x, y) and lumen radius.
    pub trachea: [f64; 3],
    /// Height of the carina (local z).
    pub carina_z: f64,
    /// Lung hila (where vessels and bronchi enter), one per lung.
    pub hila: [[f64; 3]; 2],
    /// Mean parenchyma HU (non-dependent lung).
    pub lung_hu: f32,
    /// HU added from the front to the back of a lung (gravity-dependent density).
    pub gravity: f32,
    /// Rib repeat along z (mm), rib height (mm) and slope (mm of z per mm of y).
    pub ribs: [f64; 3],
}

/// Draw the chest for a volume of extent `ext` whose lungs are `lung_h` mm tall, centred at
/// local height `zc`.
pub(crate) fn plan_body(ext: [f64; 3], body_w: f64, lung_h: f64, zc: f64, rng: &mut Pcg64) -> Body {
    let fov_c = [ext[0] / 2.0, ext[1] / 2.0];
    let fov_r = ext[0].min(ext[1]) / 2.0;
    let body_s = [body_w / 2.0, body_w / 2.0 * rng.random_range(0.62..0.74)];
    let body_c = [fov_c[0], fov_c[1] - 0.04 * fov_r];
    let fat = rng.random_range(6.0..22.0);
    let muscle = rng.random_range(9.0..15.0);
    let wall = fat + muscle + 8.0;
    let inner = [body_s[0] - wall, body_s[1] - wall];
    let lung = |sign: f64, rng: &mut Pcg64| Ellipsoid {
        c: [
            body_c[0] + sign * inner[0] * rng.random_range(0.53..0.57),
            body_c[1] + inner[1] * rng.random_range(0.0..0.06),
            zc + rng.random_range(-5.0..5.0),
        ],
        s: [
            inner[0] * rng.random_range(0.41..0.44),
            inner[1] * rng.random_range(0.86..0.92),
            lung_h / 2.0 * rng.random_range(0.95..1.05),
        ],
    };
    let lungs = [lung(-1.0, rng), lung(1.0, rng)];
    let sz = lungs[0].s[2];
    let heart = Ellipsoid {
        c: [
            body_c[0] + inner[0] * rng.random_range(0.1..0.2),
            body_c[1] - inner[1] * rng.random_range(0.15..0.25),
            zc - sz * rng.random_range(0.35..0.45),
        ],
        s: [
            inner[0] * rng.random_range(0.28..0.34),
            inner[1] * rng.random_range(0.42..0.5),
            sz * rng.random_range(0.35..0.42),
        ],
    };
    let spine_r = rng.random_range(15.0..19.0);
    let spine = [body_c[0], body_c[1] + inner[1] * 0.85 - spine_r, spine_r];
    let aorta_r = rng.random_range(10.0..13.0);
    let aorta = [spine[0] + spine_r * 1.1, spine[1] - spine_r * 1.2, aorta_r];
    let trachea = [
        body_c[0],
        spine[1] - spine_r - 22.0,
        rng.random_range(7.5..9.5),
    ];
    let carina_z = zc + sz * rng.random_range(0.3..0.4);
    let hila = std::array::from_fn(|k| {
        let l = &lungs[k];
        let medial = if k == 0 { 1.0 } else { -1.0 };
        [l.c[0] + medial * 0.7 * l.s[0], l.c[1], carina_z - 20.0]
    });
    let table_top = body_c[1] + body_s[1] + rng.random_range(2.0..10.0);
    Body {
        base: Anatomy {
            fov_c,
            fov_r,
            body_c,
            body_s,
            table_y: [table_top, table_top + 8.0],
            lungs,
            pad: if rng.random_bool(0.5) { -2048 } else { -3024 },
        },
        fat,
        muscle,
        heart,
        spine,
        aorta,
        trachea,
        carina_z,
        hila,
        lung_hu: rng.random_range(-880.0..-850.0),
        gravity: rng.random_range(25.0..60.0),
        ribs: [
            rng.random_range(24.0..30.0),
            rng.random_range(8.0..11.0),
            rng.random_range(0.3..0.6),
        ],
    }
}

/// Coverage of a region from its signed distance (mm, negative inside).
fn cover(sd: f64) -> f32 {
    (0.5 - sd / EDGE_MM).clamp(0.0, 1.0) as f32
}

/// Approximate signed distance (mm) of (x, y) to an ellipse (centre `c`, semi-axes `s`).
fn ellipse_sd(x: f64, y: f64, c: [f64; 2], s: [f64; 2]) -> f64 {
    let (dx, dy) = (x - c[0], y - c[1]);
    let e = ((dx / s[0]).powi(2) + (dy / s[1]).powi(2)).sqrt();
    if e < 1e-9 {
        return -s[0].min(s[1]);
    }
    (dx * dx + dy * dy).sqrt() * (1.0 - 1.0 / e)
}

/// Cross-section of an ellipsoid at height z: centre and semi-axes, if it meets the plane.
fn section(e: &Ellipsoid, z: f64) -> Option<([f64; 2], [f64; 2])> {
    let t = 1.0 - ((z - e.c[2]) / e.s[2]).powi(2);
    (t > 0.0).then(|| ([e.c[0], e.c[1]], [e.s[0] * t.sqrt(), e.s[1] * t.sqrt()]))
}

/// What the background of one slice needs (computed once per slice).
pub(crate) struct SliceBody<'a> {
    body: &'a Body,
    z: f64,
    lungs: [Option<([f64; 2], [f64; 2])>; 2],
    heart: Option<([f64; 2], [f64; 2])>,
    disc: bool,
}

/// Background at one point: HU and lung coverage (0–1; texture goes where it is > 0).
pub(crate) struct Background {
    /// HU before lung texture and noise.
    pub hu: f32,
    /// Lung coverage.
    pub lung: f32,
}

impl Body {
    /// Per-slice cross-sections at local height z.
    pub(crate) fn slice(&self, z: f64) -> SliceBody<'_> {
        let lungs = [
            section(&self.base.lungs[0], z),
            section(&self.base.lungs[1], z),
        ];
        let disc = (z / 26.0).rem_euclid(1.0) < 0.2;
        SliceBody {
            body: self,
            z,
            lungs,
            heart: section(&self.heart, z),
            disc,
        }
    }
}

impl SliceBody<'_> {
    /// Background at (x, y) of this slice.
    pub(crate) fn at(&self, x: f64, y: f64) -> Background {
        let b = self.body;
        let a = &b.base;
        let sd_body = ellipse_sd(x, y, a.body_c, a.body_s);
        let table = (y >= a.table_y[0]
            && y <= a.table_y[1]
            && (x - a.body_c[0]).abs() < a.body_s[0] * 1.1) as u8 as f32;
        let mut hu = AIR_HU + (TABLE_HU - AIR_HU) * table;
        let c_body = cover(sd_body);
        if c_body <= 0.0 {
            return Background { hu, lung: 0.0 };
        }
        let depth = -sd_body;
        let ramp = |t: f64| (0.5 + t / EDGE_MM).clamp(0.0, 1.0) as f32;
        let mut t = SKIN_HU + (FAT_HU - SKIN_HU) * ramp(depth - 2.0);
        t += (MUSCLE_HU - t) * ramp(depth - 2.0 - b.fat);
        t += (ORGAN_HU - t) * ramp(depth - 2.0 - b.fat - b.muscle);
        // mediastinal fat between the lungs, in front of the spine
        let mf = ellipse_sd(
            x,
            y,
            [a.body_c[0], b.trachea[1]],
            [a.body_s[0] * 0.16, a.body_s[1] * 0.45],
        );
        t += (FAT_HU + 10.0 - t) * cover(mf) * ramp(depth - 2.0 - b.fat - b.muscle);
        hu += (t - hu) * c_body;
        let mut lung = 0.0f32;
        let mut near: Option<(f64, usize)> = None;
        for (k, s) in self.lungs.iter().enumerate() {
            if let Some((c, s)) = s {
                let sd = ellipse_sd(x, y, *c, *s);
                let cv = cover(sd);
                lung = lung.max(cv);
                if near.is_none_or(|(d, _)| sd < d) {
                    near = Some((sd, k));
                }
            }
        }
        if lung > 0.0 {
            let l = &a.lungs[near.map_or(0, |n| n.1)];
            let g = ((y - l.c[1]) / l.s[1]).clamp(-1.0, 1.0) as f32;
            hu += (b.lung_hu + b.gravity * 0.5 * g - hu) * lung;
        }
        if let Some((sd, k)) = near {
            hu += (CORTEX_HU * 0.55 - hu) * self.rib(x, y, sd, k);
        }
        let mut dense = 0.0f32;
        if let Some((c, s)) = self.heart {
            let sd = ellipse_sd(x, y, c, s);
            hu += (FAT_HU - hu) * cover(sd - 3.0);
            let cv = cover(sd);
            hu += (BLOOD_HU - hu) * cv;
            dense = dense.max(cover(sd - 3.0));
        }
        let ao = disc_sd(x, y, b.aorta);
        hu += (FAT_HU - hu) * cover(ao - 2.5);
        hu += (BLOOD_HU - hu) * cover(ao);
        dense = dense.max(cover(ao - 2.5));
        let (sp, sd_sp) = self.spine(x, y);
        hu += (sp - hu) * cover(sd_sp);
        dense = dense.max(cover(sd_sp));
        Background {
            hu,
            lung: lung * (1.0 - dense),
        }
    }

    /// Coverage of a rib at (x, y), whose signed distance to lung `k` is `sd`.
    fn rib(&self, x: f64, y: f64, sd: f64, k: usize) -> f32 {
        let b = self.body;
        let l = &b.base.lungs[k];
        let medial = if k == 0 { 1.0 } else { -1.0 };
        if (x - l.c[0]) * medial > 0.3 * l.s[0] || !(0.0..14.0).contains(&sd) {
            return 0.0;
        }
        let [period, height, slope] = b.ribs;
        let phase = (self.z - slope * (y - l.c[1])).rem_euclid(period);
        let m = (sd - 2.5).min(11.0 - sd).min(phase).min(height - phase);
        (0.5 + m / EDGE_MM).clamp(0.0, 1.0) as f32
    }

    /// Spine HU at (x, y) and the signed distance to its outline (vertebral body, canal, arch).
    fn spine(&self, x: f64, y: f64) -> (f32, f64) {
        let [cx, cy, r] = self.body.spine;
        let body_sd = disc_sd(x, y, [cx, cy, r]);
        let canal = disc_sd(x, y, [cx, cy + r + 8.0, 7.0]);
        let arch = disc_sd(x, y, [cx, cy + r + 8.0, 14.0]);
        if body_sd < arch {
            let hu = if self.disc {
                DISC_HU
            } else {
                CORTEX_HU
                    + (MARROW_HU - CORTEX_HU)
                        * (0.5 - (body_sd + 2.0) / EDGE_MM).clamp(0.0, 1.0) as f32
            };
            (hu, body_sd)
        } else if canal < 0.0 {
            (CSF_HU, arch)
        } else {
            (CORTEX_HU * 0.8, arch)
        }
    }
}

/// Signed distance (mm) of (x, y) to the disc `[cx, cy, r]`.
fn disc_sd(x: f64, y: f64, d: [f64; 3]) -> f64 {
    ((x - d[0]).powi(2) + (y - d[1]).powi(2)).sqrt() - d[2]
}

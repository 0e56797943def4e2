//! Candidate marks of a `realistic` series: the positives as every preset places them, and
//! negatives at the sites where real detectors raise false positives.
//!
//! Negative mix: 30 % on vessel axes (thicker favoured), 18 % on vessel bifurcations, 10 % on
//! airway walls, 14 % at the pleura (−2…+3 mm across a lung surface), 18 % in parenchyma away
//! from vessels, 10 % in the mediastinum (heart, aorta, mediastinal fat); each must be
//! admissible (inside the volume, clear of nodules and blobs) within 50 draws or is dropped.
//! The shared draws live in `synth::candidates`; only the new sites are here.

use super::super::candidates::{
    in_parenchyma, on_bifurcation, on_vessel, outside_lung, place_marks, Mark, Scene,
};
use super::super::shapes::{add_scaled, dot, sub, unit, Prim};
use super::anatomy::Body;
use rand::Rng;
use rand_pcg::Pcg64;

/// Positives and up to `negatives` negatives (shuffled).
pub(crate) fn place(
    sc: &Scene,
    body: &Body,
    lumens: &[Prim],
    negatives: usize,
    official: bool,
    rng: &mut Pcg64,
) -> Vec<Mark> {
    place_marks(sc, negatives, official, rng, |u, rng| {
        if u < 0.30 && !sc.vessels.is_empty() {
            Some((on_vessel(sc, rng), "vessel"))
        } else if u < 0.48 && !sc.bifurcations.is_empty() {
            Some((on_bifurcation(sc, rng), "bifurcation"))
        } else if u < 0.58 && !lumens.is_empty() {
            Some((on_airway_wall(lumens, rng), "airway"))
        } else if u < 0.72 {
            Some((outside_lung(sc, -2.0..3.0, rng), "pleura"))
        } else if u < 0.90 {
            in_parenchyma(sc, rng).map(|p| (p, "parenchyma"))
        } else {
            Some((in_mediastinum(body, rng), "mediastinum"))
        }
    })
}

/// A point in the wall of a random airway lumen.
fn on_airway_wall(lumens: &[Prim], rng: &mut Pcg64) -> [f64; 3] {
    let l = &lumens[rng.random_range(0..lumens.len())];
    let t: f64 = rng.random();
    let axis = add_scaled(l.a, sub(l.b, l.a), t);
    let r = l.ra + t * (l.rb - l.ra);
    let ab = sub(l.b, l.a);
    let u = unit(rng);
    let n2 = dot(ab, ab).max(1e-9);
    let perp = add_scaled(u, ab, -dot(u, ab) / n2);
    let pn = dot(perp, perp).sqrt().max(1e-6);
    add_scaled(axis, perp, (r + 0.5) / pn)
}

/// A point in the heart, beside the aorta or in the mediastinal fat.
fn in_mediastinum(body: &Body, rng: &mut Pcg64) -> [f64; 3] {
    let h = &body.heart;
    match rng.random_range(0..3) {
        0 => std::array::from_fn(|k| h.c[k] + h.s[k] * rng.random_range(-0.7..0.7)),
        1 => [
            body.aorta[0] + rng.random_range(-1.0..1.0) * body.aorta[2],
            body.aorta[1] + rng.random_range(-1.0..1.0) * body.aorta[2],
            h.c[2] + rng.random_range(-1.5..1.5) * h.s[2],
        ],
        _ => [
            body.trachea[0] + rng.random_range(-25.0..25.0),
            body.trachea[1] + rng.random_range(-20.0..10.0),
            body.carina_z + rng.random_range(-40.0..40.0),
        ],
    }
}

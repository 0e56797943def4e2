//! Airways of a `realistic` series: trachea → carina → two main bronchi → a few generations of
//! branching bronchi in each lung, each an air lumen (−1000 HU) inside a soft-tissue wall.
//!
//! The bronchial trees grow with the vessels' [`Tree`] (other parameters: thicker start, fewer
//! generations, lumens no thinner than 0.8 mm). Each lumen capsule gets a wall capsule
//! 0.6 mm + 25 % of its radius thicker; all walls are rendered before all lumens, so a child's
//! wall never closes its parent's lumen at a branch point. Rejected: hollow-tube primitives
//! (a second distance function for no visible difference).

use super::super::shapes::{add_scaled, dist, sub, Prim, Tree, TreeParams};
use super::anatomy::Body;
use rand::Rng;
use rand_pcg::Pcg64;

/// Bronchial trees inside a lung.
const BRONCHI: TreeParams = TreeParams {
    r_min: 0.8,
    max_depth: 5,
    len: [4.0, 7.0],
    min_len: 5.0,
    taper: 0.95,
    split: [[0.75, 0.9], [0.6, 0.8]],
    angle: [[0.2, 0.5], [0.5, 1.0]],
    hu: [-1000.0, -990.0],
};

/// Airway wall HU.
const WALL_HU: f32 = 30.0;

/// The airways' walls and lumens (render walls first).
pub(crate) struct Airways {
    /// Wall capsules.
    pub walls: Vec<Prim>,
    /// Lumen capsules (air).
    pub lumens: Vec<Prim>,
}

/// Grow the airways of `body`, from above the volume (`top`, local z) down to the bronchi.
pub(crate) fn airways(body: &Body, top: f64, rng: &mut Pcg64) -> Airways {
    let [tx, ty, tr] = body.trachea;
    let carina = [tx, ty, body.carina_z];
    let mut lumens = vec![Prim::capsule([tx, ty, top + 20.0], carina, tr, tr, -1000.0)];
    for (k, hilum) in body.hila.iter().enumerate() {
        let r_main = tr * 0.7;
        lumens.push(Prim::capsule(carina, *hilum, r_main, r_main * 0.9, -1000.0));
        let lung = &body.base.lungs[k];
        let mut tree = Tree {
            tp: BRONCHI,
            lung,
            avoid: Some(&body.heart),
            caps: Vec::new(),
            bif: Vec::new(),
        };
        for _ in 0..rng.random_range(3..=4) {
            let target =
                std::array::from_fn(|j| lung.c[j] + lung.s[j] * rng.random_range(-0.7..0.7));
            let d = sub(target, *hilum);
            let n = dist(target, *hilum).max(1e-6);
            let dir = [d[0] / n, d[1] / n, d[2] / n];
            let start = add_scaled(*hilum, dir, 2.0);
            tree.grow(start, dir, r_main * rng.random_range(0.55..0.7), 0, rng);
        }
        lumens.extend(tree.caps);
    }
    let walls = lumens
        .iter()
        .map(|l| {
            let w = |r: f64| r + 0.6 + 0.25 * r;
            Prim::capsule(l.a, l.b, w(l.ra), w(l.rb), WALL_HU)
        })
        .collect();
    Airways { walls, lumens }
}

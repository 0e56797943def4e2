//! Geometry of one synthetic series: size, spacing, origin, direction, world↔index maps.
//!
//! Conventions (as MetaImage/SimpleITK): vectors are (x, y, z) = (col, row, slice);
//! `world = origin + D·(index ⊙ spacing)` with `D` the 3×3 direction matrix (`direction[r][c]`,
//! column `c` is the world direction of index axis `c`). The voxel array is stored (z, y, x).
//! The "local" frame is `index ⊙ spacing` (mm, axis-aligned with the array); the generator models
//! anatomy there. `D` is always orthonormal here, so its inverse is its transpose.

use serde::Serialize;

/// Geometry of one series (all vectors x, y, z).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesGeometry {
    /// Voxel counts (x = columns, y = rows, z = slices).
    pub dims_xyz: [usize; 3],
    /// Voxel spacing in mm.
    pub spacing_xyz: [f64; 3],
    /// World position (mm) of voxel (0, 0, 0).
    pub origin_xyz: [f64; 3],
    /// Direction matrix `D` (row-major; column c = world direction of index axis c).
    pub direction: [[f64; 3]; 3],
    /// Whether the series is written with `CompressedData = True`.
    pub compressed: bool,
}

impl SeriesGeometry {
    /// Local mm (`index ⊙ spacing`) to world mm.
    pub fn local_to_world(&self, p: [f64; 3]) -> [f64; 3] {
        let d = &self.direction;
        let mut w = self.origin_xyz;
        for (r, wr) in w.iter_mut().enumerate() {
            *wr += d[r][0] * p[0] + d[r][1] * p[1] + d[r][2] * p[2];
        }
        w
    }

    /// World mm to local mm (`Dᵀ·(world − origin)`, exact for orthonormal `D`).
    pub fn world_to_local(&self, w: [f64; 3]) -> [f64; 3] {
        let d = &self.direction;
        let v = [
            w[0] - self.origin_xyz[0],
            w[1] - self.origin_xyz[1],
            w[2] - self.origin_xyz[2],
        ];
        let mut p = [0.0; 3];
        for (c, pc) in p.iter_mut().enumerate() {
            *pc = d[0][c] * v[0] + d[1][c] * v[1] + d[2][c] * v[2];
        }
        p
    }

    /// Continuous index (x, y, z) = (col, row, slice) of world point `w`.
    pub fn world_to_index(&self, w: [f64; 3]) -> [f64; 3] {
        let p = self.world_to_local(w);
        [
            p[0] / self.spacing_xyz[0],
            p[1] / self.spacing_xyz[1],
            p[2] / self.spacing_xyz[2],
        ]
    }

    /// Nearest voxel as (index, row, col) = (z, y, x), rounding half away from zero.
    pub fn world_to_irc(&self, w: [f64; 3]) -> [i64; 3] {
        let c = self.world_to_index(w);
        [
            c[2].round() as i64,
            c[1].round() as i64,
            c[0].round() as i64,
        ]
    }

    /// Physical extent of the volume in the local frame (mm, x y z).
    pub fn extent_mm(&self) -> [f64; 3] {
        [
            self.dims_xyz[0] as f64 * self.spacing_xyz[0],
            self.dims_xyz[1] as f64 * self.spacing_xyz[1],
            self.dims_xyz[2] as f64 * self.spacing_xyz[2],
        ]
    }

    /// Number of voxels.
    pub fn voxels(&self) -> usize {
        self.dims_xyz.iter().product()
    }
}

/// Direction matrix of a rotation by `deg` degrees about z, optionally flipping x and y.
pub(crate) fn direction_matrix(deg: f64, flip_xy: bool) -> [[f64; 3]; 3] {
    let (s, c) = deg.to_radians().sin_cos();
    let f = if flip_xy { -1.0 } else { 1.0 };
    // R_z(deg) · diag(f, f, 1)
    // `+ 0.0` turns -0.0 into 0.0 so headers never print "-0".
    [
        [c * f + 0.0, -s * f + 0.0, 0.0],
        [s * f + 0.0, c * f + 0.0, 0.0],
        [0.0, 0.0, 1.0],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_index_round_trip_with_rotation() {
        let g = SeriesGeometry {
            dims_xyz: [10, 12, 14],
            spacing_xyz: [0.7, 0.7, 1.25],
            origin_xyz: [120.0, -80.5, -300.25],
            direction: direction_matrix(11.0, true),
            compressed: false,
        };
        let idx = [3.5, 7.25, 9.0];
        let w = g.local_to_world([idx[0] * 0.7, idx[1] * 0.7, idx[2] * 1.25]);
        let back = g.world_to_index(w);
        for k in 0..3 {
            assert!((back[k] - idx[k]).abs() < 1e-9, "{back:?} vs {idx:?}");
        }
        assert_eq!(g.world_to_irc(w), [9, 7, 4]);
    }
}

//! World (x,y,z mm) ↔ voxel (index,row,col) conversion for a CT.
//!
//! Conventions (book-reference §2.2): arrays are (index,row,col) = (z,y,x); headers are (x,y,z).
//! `irc_to_xyz`: xyz = D·(cri ⊙ spacing) + origin, where cri = (col,row,index) and D is the 3×3
//! direction matrix **as SimpleITK's `GetDirection()` returns it** (row-major, columns are the
//! world directions of the x/y/z voxel axes). The `.mhd` `TransformMatrix` is written by ITK in
//! the transposed (column-major) order; `metaimage` converts it when reading.
//!
//! `xyz_to_irc_continuous` uses the true inverse: cri = (D⁻¹·(xyz − origin)) ⊘ spacing.
//! Rejected: the book's `(xyz − origin) @ inv(D)`, which multiplies on the right and so applies
//! `inv(D)ᵀ`; it is only correct for symmetric D (identity, flips) — dlwpt-code issue #96.
//! Rounding to integer voxels is half-to-even, like `np.round` in the book.

use std::path::Path;

use super::error::CtError;

/// A point in world coordinates (millimetres), patient space as in the `.mhd` header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Xyz {
    /// x (mm).
    pub x: f64,
    /// y (mm).
    pub y: f64,
    /// z (mm).
    pub z: f64,
}

/// An integer voxel position (index=z, row=y, col=x), may be outside a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Irc {
    /// Slice index (z).
    pub index: i64,
    /// Row (y).
    pub row: i64,
    /// Column (x).
    pub col: i64,
}

/// A continuous voxel position (index, row, col); voxel centres are at integer values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IrcF {
    /// Slice index (z).
    pub index: f64,
    /// Row (y).
    pub row: f64,
    /// Column (x).
    pub col: f64,
}

impl Irc {
    /// As a continuous position.
    pub fn to_f(self) -> IrcF {
        IrcF {
            index: self.index as f64,
            row: self.row as f64,
            col: self.col as f64,
        }
    }

    /// Whether this voxel lies inside a volume of `shape` (index, row, col).
    pub fn is_inside(self, shape: [usize; 3]) -> bool {
        contains(self, shape)
    }
}

impl IrcF {
    /// Round each axis half-to-even (numpy `np.round`), as the book's xyz2irc does.
    pub fn round(self) -> Irc {
        Irc {
            index: round_half_even(self.index),
            row: round_half_even(self.row),
            col: round_half_even(self.col),
        }
    }
}

/// Round half to even (banker's rounding), saturating at the i64 range; NaN gives 0.
pub fn round_half_even(v: f64) -> i64 {
    // `as` saturates and maps NaN to 0, which keeps out-of-range positions out of range.
    v.round_ties_even() as i64
}

/// Whether `irc` lies inside a volume of `shape` (index, row, col).
pub fn contains(irc: Irc, shape: [usize; 3]) -> bool {
    let inside = |v: i64, n: usize| v >= 0 && (v as u64) < n as u64;
    inside(irc.index, shape[0]) && inside(irc.row, shape[1]) && inside(irc.col, shape[2])
}

/// Origin, spacing and direction of a volume plus the precomputed inverse direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    /// World position of voxel (0,0,0), mm.
    pub origin: Xyz,
    /// Voxel size along x, y, z (mm), all finite and > 0.
    pub spacing: Xyz,
    /// Direction matrix D, row-major, as SimpleITK `GetDirection()` (D[r][c]).
    pub direction: [[f64; 3]; 3],
    /// The true inverse D⁻¹.
    pub inverse: [[f64; 3]; 3],
}

fn mat_vec(m: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    [
        m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
        m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
        m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2],
    ]
}

/// Determinant of a 3×3 matrix.
pub fn det3(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// Inverse of a 3×3 matrix by the adjugate, or `None` when |det| < 1e-9 or not finite.
pub fn invert3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = det3(m);
    if !det.is_finite() || det.abs() < 1e-9 {
        return None;
    }
    let c =
        |r0: usize, c0: usize, r1: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    let adj = [
        [c(1, 1, 2, 2), -c(0, 1, 2, 2), c(0, 1, 1, 2)],
        [-c(1, 0, 2, 2), c(0, 0, 2, 2), -c(0, 0, 1, 2)],
        [c(1, 0, 2, 1), -c(0, 0, 2, 1), c(0, 0, 1, 1)],
    ];
    let mut inv = [[0.0; 3]; 3];
    for r in 0..3 {
        for k in 0..3 {
            inv[r][k] = adj[r][k] / det;
        }
    }
    Some(inv)
}

impl Geometry {
    /// Build a geometry, validating spacing (finite, > 0) and direction (invertible).
    /// `path` and `key` only name the source in errors.
    pub fn new(
        origin: Xyz,
        spacing: Xyz,
        direction: [[f64; 3]; 3],
        path: &Path,
    ) -> Result<Geometry, CtError> {
        for (axis, value) in [spacing.x, spacing.y, spacing.z].into_iter().enumerate() {
            if !(value.is_finite() && value > 0.0) {
                return Err(CtError::NonPositiveSpacing {
                    path: path.to_path_buf(),
                    key: "ElementSpacing".into(),
                    axis,
                    value,
                });
            }
        }
        let inverse = invert3(&direction).ok_or_else(|| CtError::SingularDirection {
            path: path.to_path_buf(),
            key: "TransformMatrix".into(),
            det: det3(&direction),
        })?;
        Ok(Geometry {
            origin,
            spacing,
            direction,
            inverse,
        })
    }

    /// Identity direction, given origin and spacing (no validation beyond `new`'s).
    pub fn axis_aligned(origin: Xyz, spacing: Xyz) -> Result<Geometry, CtError> {
        let id = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        Geometry::new(origin, spacing, id, Path::new("<in-memory geometry>"))
    }

    /// Voxel (continuous) → world: xyz = D·(cri ⊙ spacing) + origin.
    pub fn irc_to_xyz(&self, irc: IrcF) -> Xyz {
        let s = &self.spacing;
        let v = [irc.col * s.x, irc.row * s.y, irc.index * s.z];
        let w = mat_vec(&self.direction, v);
        Xyz {
            x: w[0] + self.origin.x,
            y: w[1] + self.origin.y,
            z: w[2] + self.origin.z,
        }
    }

    /// World → continuous voxel: cri = D⁻¹·(xyz − origin) ⊘ spacing (the true inverse).
    pub fn xyz_to_irc_continuous(&self, xyz: Xyz) -> IrcF {
        let d = [
            xyz.x - self.origin.x,
            xyz.y - self.origin.y,
            xyz.z - self.origin.z,
        ];
        let cri = mat_vec(&self.inverse, d);
        IrcF {
            col: cri[0] / self.spacing.x,
            row: cri[1] / self.spacing.y,
            index: cri[2] / self.spacing.z,
        }
    }

    /// World → nearest voxel, rounding half-to-even on each axis (as `np.round`).
    pub fn xyz_to_irc(&self, xyz: Xyz) -> Irc {
        self.xyz_to_irc_continuous(xyz).round()
    }
}

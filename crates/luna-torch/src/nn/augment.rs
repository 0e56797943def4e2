//! Batched 3-D augmentation on the tensor's device (`affine_grid` + `grid_sample`).
//!
//! Semantics are the book's ch. 12 `getCtAugmentedCandidate` (per sample), applied batch-wise:
//! start from eye(4); for each grid axis i (x=col, y=row, z=index): flip with p=0.5
//! (`T[i,i] *= -1`), offset `T[i,3] = offset·U(−1,1)` (normalised grid units), scale
//! `T[i,i] *= 1 + scale·U(−1,1)`; then `T = T @ R` with a rotation U(0,2π) in the x/y
//! (col/row) grid plane, i.e. about the index axis; `theta = T[:3]`. Resampling is trilinear
//! with border padding and `align_corners=False`; HU noise `randn·noise` is added afterwards.
//!
//! Decisions:
//! - One independent transform per sample (ch. 12), not one per batch (p2ch14 `augment3d`).
//! - The offset goes in the translation column. p2ch14 writes it in the bottom row, which
//!   `T[:3]` discards, so the final book classifier trains without translation; we do not
//!   reproduce that bug (set `offset: 0.0` to get the same effect). p2ch14 also drops scale and
//!   noise; both stay switchable here.
//! - Randomness: theta is built on the CPU from a seeded `rand_pcg` generator (deterministic and
//!   independent of the device), then moved to the device. The noise is drawn by torch on the
//!   device after `tch::manual_seed` with a seed taken from the same generator, so a run is
//!   reproducible given the seed (torch's generator is process-global: concurrent torch RNG use
//!   on other threads would break that). Rejected: CPU-side noise (a 24-crop batch is 1.7 M
//!   normals, too slow for the training thread).
use rand::{Rng, RngCore, SeedableRng};
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Which random transforms to apply; default = the book's ch. 12 values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Flip each axis with probability 0.5.
    pub flip: bool,
    /// Max translation in normalised grid units (0.1 = ±5% of the extent); 0 = off.
    pub offset: f64,
    /// Max relative scale change per axis (0.2 = ±20%); 0 = off.
    pub scale: f64,
    /// Rotate by U(0, 2π) about the index axis.
    pub rotate: bool,
    /// Standard deviation of additive HU noise; 0 = off.
    pub noise: f64,
    /// One transform per batch (the book's p2ch13 segmentation augmentation) instead of one
    /// per sample (ch. 12).
    pub per_batch: bool,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            flip: true,
            offset: 0.1,
            scale: 0.2,
            rotate: true,
            noise: 25.0,
            per_batch: false,
        }
    }
}

impl AugmentConfig {
    /// All transforms off (identity).
    pub fn none() -> Self {
        AugmentConfig {
            flip: false,
            offset: 0.0,
            scale: 0.0,
            rotate: false,
            noise: 0.0,
            per_batch: false,
        }
    }
}

/// Errors from augmentation.
#[derive(Debug, thiserror::Error)]
pub enum AugmentError {
    /// Input is not (N, C, D, H, W).
    #[error(
        "augment: input must be 5-D (N,C,D,H,W), found shape {shape:?}; hint: add the channel axis"
    )]
    BadInputShape {
        /// Shape found.
        shape: Vec<i64>,
    },
    /// theta is not (N, 3, 4).
    #[error("augment: theta must have shape [{n}, 3, 4], found {shape:?}")]
    BadThetaShape {
        /// Expected batch size.
        n: i64,
        /// Shape found.
        shape: Vec<i64>,
    },
    /// Torch failed.
    #[error("augment: torch error: {0}")]
    Torch(#[from] tch::TchError),
}

/// A seeded per-sample augmenter.
#[derive(Debug, Clone)]
pub struct Augmenter {
    config: AugmentConfig,
    rng: Pcg64,
}

impl Augmenter {
    /// New augmenter; the same seed gives the same transforms.
    pub fn new(config: AugmentConfig, seed: u64) -> Augmenter {
        Augmenter {
            config,
            rng: Pcg64::seed_from_u64(seed),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AugmentConfig {
        &self.config
    }

    /// Draws one 3×4 matrix (row-major) following the book's recipe.
    pub fn random_theta(&mut self) -> [f32; 12] {
        let c = &self.config;
        let mut t = [[0f64; 4]; 4];
        for (i, row) in t.iter_mut().enumerate() {
            row[i] = 1.0;
        }
        for (i, row) in t.iter_mut().enumerate().take(3) {
            if c.flip && self.rng.random::<f64>() > 0.5 {
                row[i] *= -1.0;
            }
            if c.offset != 0.0 {
                row[3] = c.offset * (self.rng.random::<f64>() * 2.0 - 1.0);
            }
            if c.scale != 0.0 {
                row[i] *= 1.0 + c.scale * (self.rng.random::<f64>() * 2.0 - 1.0);
            }
        }
        if c.rotate {
            let a = self.rng.random::<f64>() * std::f64::consts::TAU;
            t = matmul4(&t, &rotation_xy(a));
        }
        let mut out = [0f32; 12];
        for r in 0..3 {
            for k in 0..4 {
                out[r * 4 + k] = t[r][k] as f32;
            }
        }
        out
    }

    /// Draws one 2×3 matrix (row-major) for (N,C,H,W) batches: the book's p2ch13 recipe
    /// (per grid axis x=col, y=row: flip p=0.5, scale 1 + scale·U(−1,1); rotation U(0,2π)),
    /// with the offset in the translation column — the book writes it into the bottom row,
    /// which `affine_grid` ignores, so its segmentation trains without translation; here
    /// `offset` works (set 0 for the book's behaviour).
    pub fn random_theta_2d(&mut self) -> [f32; 6] {
        let c = &self.config;
        let mut t = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0f64]];
        for (i, row) in t.iter_mut().enumerate().take(2) {
            if c.flip && self.rng.random::<f64>() > 0.5 {
                row[i] *= -1.0;
            }
            if c.offset != 0.0 {
                row[2] = c.offset * (self.rng.random::<f64>() * 2.0 - 1.0);
            }
            if c.scale != 0.0 {
                row[i] *= 1.0 + c.scale * (self.rng.random::<f64>() * 2.0 - 1.0);
            }
        }
        if c.rotate {
            let (s, co) = (self.rng.random::<f64>() * std::f64::consts::TAU).sin_cos();
            let r = [[co, -s, 0.0], [s, co, 0.0], [0.0, 0.0, 1.0]];
            let mut o = [[0f64; 3]; 3];
            for (i, row) in o.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|k| t[i][k] * r[k][j]).sum();
                }
            }
            t = o;
        }
        let mut out = [0f32; 6];
        for r in 0..2 {
            for k in 0..3 {
                out[r * 3 + k] = t[r][k] as f32;
            }
        }
        out
    }

    /// Augments an input batch and its targets jointly: (N,C,D,H,W) batches with 3-D
    /// transforms, (N,C,H,W) batches with 2-D ones; a target with the input's rank (a mask) is
    /// warped by the same transforms (bilinear, then `> 0.5`, as the book warps its
    /// segmentation labels) and gets no noise; any other target (class labels) passes through.
    pub fn augment_pair(
        &mut self,
        input: &Tensor,
        target: &Tensor,
    ) -> Result<(Tensor, Tensor), AugmentError> {
        let two_d = input.dim() == 4;
        let (theta, noise_seed) = if two_d {
            self.draw_2d(input)
        } else {
            self.draw(input)?
        };
        let warp = |x: &Tensor, noise: f64, seed: Option<i64>| {
            if two_d {
                augment_with_2d(x, &theta, noise, seed)
            } else {
                augment_with(x, &theta, noise, seed)
            }
        };
        let out = warp(input, self.config.noise, Some(noise_seed))?;
        if target.dim() != input.dim() {
            return Ok((out, target.shallow_clone()));
        }
        let warped = warp(&target.f_to_kind(input.kind())?, 0.0, None)?;
        let mask = warped.f_gt(0.5)?.f_to_kind(target.kind())?;
        Ok((out, mask))
    }

    fn draw_2d(&mut self, input: &Tensor) -> (Tensor, i64) {
        let n = input.size()[0] as usize;
        let mut flat = Vec::with_capacity(n * 6);
        let shared = self.config.per_batch.then(|| self.random_theta_2d());
        for _ in 0..n {
            let t = match shared {
                Some(t) => t,
                None => self.random_theta_2d(),
            };
            flat.extend_from_slice(&t);
        }
        let theta = Tensor::from_slice(&flat).view([n as i64, 2, 3]);
        (theta, (self.rng.next_u64() >> 1) as i64)
    }

    fn draw(&mut self, input: &Tensor) -> Result<(Tensor, i64), AugmentError> {
        let shape = input.size();
        if shape.len() != 5 {
            return Err(AugmentError::BadInputShape { shape });
        }
        let n = shape[0] as usize;
        let mut flat = Vec::with_capacity(n * 12);
        for _ in 0..n {
            flat.extend_from_slice(&self.random_theta());
        }
        let theta = Tensor::from_slice(&flat).view([n as i64, 3, 4]);
        Ok((theta, (self.rng.next_u64() >> 1) as i64))
    }

    /// Augments a (N,C,D,H,W) float batch with fresh random transforms (and noise).
    pub fn augment(&mut self, input: &Tensor) -> Result<Tensor, AugmentError> {
        let (theta, noise_seed) = self.draw(input)?;
        augment_with(input, &theta, self.config.noise, Some(noise_seed))
    }
}

/// [`augment_with`] for (N,C,H,W) batches and `theta` (N,2,3).
pub fn augment_with_2d(
    input: &Tensor,
    theta: &Tensor,
    noise: f64,
    seed: Option<i64>,
) -> Result<Tensor, AugmentError> {
    check_shapes(input, theta, 2)?;
    resample(input, theta, noise, seed)
}

/// Resamples `input` (N,C,D,H,W) with explicit matrices `theta` (N,3,4, any device), then adds
/// `randn·noise` (skipped when `noise == 0`; `seed` seeds torch's generator first if given).
pub fn augment_with(
    input: &Tensor,
    theta: &Tensor,
    noise: f64,
    seed: Option<i64>,
) -> Result<Tensor, AugmentError> {
    check_shapes(input, theta, 3)?;
    resample(input, theta, noise, seed)
}

/// `input` is (N,C, + `dims` spatial axes) and `theta` (N, dims, dims + 1).
fn check_shapes(input: &Tensor, theta: &Tensor, dims: i64) -> Result<(), AugmentError> {
    let shape = input.size();
    if shape.len() as i64 != dims + 2 {
        return Err(AugmentError::BadInputShape { shape });
    }
    let ts = theta.size();
    if ts != [shape[0], dims, dims + 1] {
        return Err(AugmentError::BadThetaShape {
            n: shape[0],
            shape: ts,
        });
    }
    Ok(())
}

/// `grid_sample` (bilinear, border, align_corners=False) of `input` on `affine_grid(theta)`, then
/// the seeded HU noise.
fn resample(
    input: &Tensor,
    theta: &Tensor,
    noise: f64,
    seed: Option<i64>,
) -> Result<Tensor, AugmentError> {
    let shape = input.size();
    let kind = input.kind();
    let theta = theta.f_to_device(input.device())?.f_to_kind(kind)?;
    let grid = Tensor::f_affine_grid_generator(&theta, shape.as_slice(), false)?;
    // interpolation 0 = bilinear (trilinear for 5-D), padding 1 = border.
    let mut out = input.f_grid_sampler(&grid, 0, 1, false)?;
    if noise != 0.0 {
        if let Some(s) = seed {
            tch::manual_seed(s);
        }
        let n = Tensor::f_randn(out.size().as_slice(), (Kind::Float, out.device()))?;
        out = out.f_add(&(n.f_to_kind(kind)? * noise))?;
    }
    Ok(out)
}

/// 4×4 rotation by `a` in the first two grid axes (x=col, y=row), as the book builds it.
fn rotation_xy(a: f64) -> [[f64; 4]; 4] {
    let (s, c) = a.sin_cos();
    [
        [c, -s, 0.0, 0.0],
        [s, c, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

fn matmul4(a: &[[f64; 4]; 4], b: &[[f64; 4]; 4]) -> [[f64; 4]; 4] {
    let mut o = [[0f64; 4]; 4];
    for i in 0..4 {
        for j in 0..4 {
            o[i][j] = (0..4).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_config_draws_identity() {
        let mut a = Augmenter::new(AugmentConfig::none(), 7);
        assert_eq!(
            a.random_theta(),
            [1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1., 0.]
        );
    }

    #[test]
    fn same_seed_same_theta_and_offsets_in_translation_column() {
        let cfg = AugmentConfig {
            flip: false,
            scale: 0.0,
            rotate: false,
            ..Default::default()
        };
        let t1 = Augmenter::new(cfg.clone(), 3).random_theta();
        let t2 = Augmenter::new(cfg, 3).random_theta();
        assert_eq!(t1, t2);
        for (r, &v) in [t1[3], t1[7], t1[11]].iter().enumerate() {
            assert!(v.abs() <= 0.1 && v != 0.0, "row {r} offset {v}");
        }
    }

    #[test]
    fn rotation_keeps_index_axis() {
        let cfg = AugmentConfig {
            flip: false,
            offset: 0.0,
            scale: 0.0,
            noise: 0.0,
            rotate: true,
            per_batch: false,
        };
        let t = Augmenter::new(cfg, 11).random_theta();
        assert_eq!(&t[8..12], &[0., 0., 1., 0.]);
        let det = t[0] * t[5] - t[1] * t[4];
        assert!((det - 1.0).abs() < 1e-6);
    }
}

//! `LunaModel`: the book's nodule classifier (ch. 11, `p2ch14/model.py:60-136`) on tch.
//!
//! Layout: `tail_batchnorm` (BatchNorm3d(1)) → `block1..block4` (each Conv3d k3 pad1 → ReLU →
//! Conv3d k3 pad1 → ReLU → MaxPool3d(2,2); channels 1→8→16→32→64) → flatten → `head_linear`
//! (Linear(flattened, 2)) → softmax. Every layer lives on a named VarStore sub-path, so the
//! safetensors written by `VarStore::save` carry exactly the PyTorch state-dict keys
//! (`tail_batchnorm.weight`, `block1.conv1.weight`, …, `head_linear.bias`) and load into the
//! book's PyTorch model with `load_state_dict(strict=True)` (we also keep the BatchNorm's
//! `num_batches_tracked` buffer for that reason, incremented in train mode like PyTorch).
//!
//! Decisions:
//! - The flattened size is derived from [`LunaModelConfig::input_size`] (1152 for 32×48×48),
//!   never hard-coded (rejected: the tch mnist example's literal `1024`).
//! - Init follows `_init_weights`: kaiming_normal(fan_out, relu) for conv/linear weights. The
//!   book's bias line `normal_(bias, -bound, bound)` draws from a *normal with mean −bound and std
//!   bound* (bound = 1/sqrt(fan_out)); it was probably meant to be `uniform_`. [`BiasInit`]
//!   selects either; the default is [`BiasInit::BookNormal`] so results are comparable with the
//!   book (a fresh head in fine-tuning is initialised the same way, as in the book).
//! - BatchNorm starts as PyTorch's (weight 1, bias 0), not tch's default uniform weight.
//! - Eval-mode passes of two or more crops on the CPU run channels-last-3d (NDHWC strides for
//!   the convolutions' inputs and weights; see [`channels_last`]): oneDNN's native layout,
//!   which spares it a reorder around every convolution. PyTorch 2.11 on 2 cores, per crop:
//!   13.8 → 7.5 ms at batch 64, 13.4 → 6.5 ms at batch 8 (bench/serve.sh's model table; luna's
//!   own pass: 4.9 ms at batch 64). Values differ from the NCDHW pass only by float summation
//!   order (~1e-6 of the logits' scale, as PyTorch's own two layouts do). Training keeps NCDHW
//!   (its numbers are the oracle-tested ones); a single crop keeps NCDHW (PyTorch then uses
//!   its direct convolution, not oneDNN: 66.0 vs 65.6 ms, nothing to gain); so does CUDA
//!   (cuDNN picks its own layouts; unmeasured). Rejected: TorchScript's
//!   `optimize_for_inference` (a second model definition to keep in step with this one).
//! - Expected on synthetic data: the smoke test (bright centre blob vs noise) reaches >95%
//!   validation accuracy within a few hundred samples.
use serde::{Deserialize, Serialize};

use crate::nn::model::{Model, ModelConfig};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// Number of pooling blocks (each halves every spatial axis).
pub const NUM_BLOCKS: usize = 4;

/// How conv/linear biases are initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BiasInit {
    /// The book as it runs: `normal_(bias, -bound, bound)` = N(mean −bound, std bound).
    BookNormal,
    /// What the book meant (pytorch issue 18182): U(−bound, bound).
    Uniform,
}

/// Architecture configuration; saved in the checkpoint sidecar as
/// `ModelConfig::LunaModel` (`{"architecture": "LunaModel", ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LunaModelConfig {
    /// Crop size (index, row, col).
    pub input_size: [i64; 3],
    /// Input channels (1 for CT HU).
    pub in_channels: i64,
    /// Channels of the first block; doubled for each following block.
    pub conv_channels: i64,
    /// Bias initialisation (see [`BiasInit`]).
    pub bias_init: BiasInit,
}

impl Default for LunaModelConfig {
    fn default() -> Self {
        LunaModelConfig {
            input_size: [32, 48, 48],
            in_channels: 1,
            conv_channels: 8,
            bias_init: BiasInit::BookNormal,
        }
    }
}

/// Errors building a [`LunaModel`].
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The crop is too small for four 2× poolings.
    #[error("model config: input size {size:?} is too small: every axis must be >= 16 so that 4 max-pools leave at least 1 voxel; hint: use a crop of at least 16 voxels per axis (book: 32x48x48)")]
    InputTooSmall {
        /// The offending size.
        size: [i64; 3],
    },
    /// Input batch shape does not match the config.
    #[error("model input: expected shape [N, {channels}, {d}, {h}, {w}], found {found:?}; hint: crops must match the model's input_size")]
    BadInputShape {
        /// Configured channels.
        channels: i64,
        /// Configured depth.
        d: i64,
        /// Configured height.
        h: i64,
        /// Configured width.
        w: i64,
        /// Shape found.
        found: Vec<i64>,
    },
    /// The sidecar holds another architecture than the one asked for.
    #[error("model config: the checkpoint holds a {found} model, expected {expected}; hint: name a stage that trains a {expected}")]
    WrongArchitecture {
        /// Architecture found.
        found: &'static str,
        /// Architecture expected.
        expected: &'static str,
    },
    /// Channel counts must be positive.
    #[error(
        "model config: in_channels {in_channels} and conv_channels {conv_channels} must be >= 1"
    )]
    BadChannels {
        /// Input channels.
        in_channels: i64,
        /// First-block channels.
        conv_channels: i64,
    },
}

impl LunaModelConfig {
    /// Spatial size after the 4 blocks, or an error when an axis would vanish.
    pub fn final_spatial(&self) -> Result<[i64; 3], ModelError> {
        if self.input_size.iter().any(|&s| s < 1 << NUM_BLOCKS) {
            return Err(ModelError::InputTooSmall {
                size: self.input_size,
            });
        }
        Ok(self.input_size.map(|s| s >> NUM_BLOCKS))
    }

    /// Length of the flattened feature vector fed to `head_linear` (1152 for 32×48×48).
    pub fn flattened_size(&self) -> Result<i64, ModelError> {
        let s = self.final_spatial()?;
        Ok(self.conv_channels * (1 << (NUM_BLOCKS - 1)) * s[0] * s[1] * s[2])
    }

    fn validate(&self) -> Result<(), ModelError> {
        if self.in_channels < 1 || self.conv_channels < 1 {
            return Err(ModelError::BadChannels {
                in_channels: self.in_channels,
                conv_channels: self.conv_channels,
            });
        }
        self.final_spatial().map(|_| ())
    }
}

/// One conv-relu-conv-relu-maxpool block.
#[derive(Debug)]
struct LunaBlock {
    conv1: nn::Conv3D,
    conv2: nn::Conv3D,
}

impl LunaBlock {
    fn new(p: nn::Path, in_c: i64, out_c: i64) -> LunaBlock {
        let cfg = nn::ConvConfig {
            padding: 1,
            bias: true,
            ..Default::default()
        };
        LunaBlock {
            conv1: nn::conv3d(&p / "conv1", in_c, out_c, 3, cfg),
            conv2: nn::conv3d(&p / "conv2", out_c, out_c, 3, cfg),
        }
    }

    fn forward(&self, xs: &Tensor, channels_last_3d: bool) -> Tensor {
        let conv = |x: &Tensor, c: &nn::Conv3D| {
            if channels_last_3d {
                x.conv3d(
                    &channels_last(&c.ws),
                    c.bs.as_ref(),
                    [1, 1, 1],
                    [1, 1, 1],
                    [1, 1, 1],
                    1,
                )
            } else {
                x.apply(c)
            }
        };
        conv(&conv(xs, &self.conv1).relu(), &self.conv2)
            .relu()
            .max_pool3d([2, 2, 2], [2, 2, 2], [0, 0, 0], [1, 1, 1], false)
    }
}

/// The same values with channels-last-3d strides (N, C, D, H, W logical order, C varying
/// fastest in memory): what PyTorch's `x.contiguous(memory_format=torch.channels_last_3d)`
/// makes, which tch does not expose. Convolutions given such inputs and weights run in
/// oneDNN's native layout and return channels-last outputs; ReLU and max-pooling keep it.
pub fn channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 4, 1])
        .contiguous()
        .permute([0, 4, 1, 2, 3])
}

/// The book's LunaModel; the VarStore it was built on holds its weights.
#[derive(Debug)]
pub struct LunaModel {
    config: LunaModelConfig,
    tail_batchnorm: nn::BatchNorm,
    num_batches_tracked: Tensor,
    blocks: Vec<LunaBlock>,
    head_linear: nn::Linear,
}

impl LunaModel {
    /// Builds the model on `p` (normally `vs.root()`) and initialises it as the book does.
    pub fn new(p: &nn::Path, config: &LunaModelConfig) -> Result<LunaModel, ModelError> {
        config.validate()?;
        let bn_cfg = nn::BatchNormConfig {
            ws_init: nn::Init::Const(1.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        let bn_path = p / "tail_batchnorm";
        let tail_batchnorm = nn::batch_norm3d(&bn_path, config.in_channels, bn_cfg);
        let nbt = Tensor::zeros([], (Kind::Int64, p.device()));
        let num_batches_tracked = bn_path.add("num_batches_tracked", nbt, false);
        let mut blocks = Vec::with_capacity(NUM_BLOCKS);
        let mut in_c = config.in_channels;
        let mut out_c = config.conv_channels;
        for b in 0..NUM_BLOCKS {
            blocks.push(LunaBlock::new(p / format!("block{}", b + 1), in_c, out_c));
            in_c = out_c;
            out_c *= 2;
        }
        let flat = config.flattened_size()?;
        let head_linear = nn::linear(p / "head_linear", flat, 2, Default::default());
        let model = LunaModel {
            config: config.clone(),
            tail_batchnorm,
            num_batches_tracked,
            blocks,
            head_linear,
        };
        for b in &model.blocks {
            init_layer(&b.conv1.ws, b.conv1.bs.as_ref(), config.bias_init);
            init_layer(&b.conv2.ws, b.conv2.bs.as_ref(), config.bias_init);
        }
        model.reinit_head();
        Ok(model)
    }

    /// Re-initialises `head_linear` with the book's init (used for fine-tuning).
    pub fn reinit_head(&self) {
        init_layer(
            &self.head_linear.ws,
            self.head_linear.bs.as_ref(),
            self.config.bias_init,
        );
    }

    /// The architecture config this model was built from.
    pub fn config(&self) -> &LunaModelConfig {
        &self.config
    }

    /// Forward pass on (N, C, D, H, W) HU input: returns (logits (N,2), softmax probs (N,2)).
    /// Panics (inside libtorch) on a wrong shape; use [`LunaModel::f_forward_t`] for user data.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        if train {
            tch::no_grad(|| {
                let _ = self.num_batches_tracked.shallow_clone().g_add_scalar_(1);
            });
        }
        let mut h = self.tail_batchnorm.forward_t(xs, train);
        // see the module doc: oneDNN's layout for batched eval passes on the CPU
        let cl = !train && xs.device() == Device::Cpu && xs.size().first() > Some(&1);
        if cl {
            h = channels_last(&h);
        }
        for b in &self.blocks {
            h = b.forward(&h, cl);
        }
        let logits = h.flatten(1, -1).apply(&self.head_linear);
        let probs = logits.softmax(1, Kind::Float);
        (logits, probs)
    }

    /// [`LunaModel::forward_t`] after checking the input shape against the config.
    pub fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<(Tensor, Tensor), ModelError> {
        let c = &self.config;
        let found = xs.size();
        let [d, h, w] = c.input_size;
        if found.len() != 5 || found[1..] != [c.in_channels, d, h, w] {
            return Err(ModelError::BadInputShape {
                channels: c.in_channels,
                d,
                h,
                w,
                found,
            });
        }
        Ok(self.forward_t(xs, train))
    }

    /// Device of the weights.
    pub fn device(&self) -> Device {
        self.head_linear.ws.device()
    }
}

impl Model for LunaModel {
    type Config = LunaModelConfig;
    const ARCHITECTURE: &'static str = "LunaModel";
    const BLOCKS: &'static [&'static str] = &[
        "tail_batchnorm",
        "block1",
        "block2",
        "block3",
        "block4",
        "head_linear",
    ];
    const HEAD: &'static str = "head_linear";

    fn build(p: &nn::Path, config: &LunaModelConfig) -> Result<Self, ModelError> {
        LunaModel::new(p, config)
    }
    fn model_config(&self) -> ModelConfig {
        ModelConfig::LunaModel(self.config.clone())
    }
    fn config_of(c: &ModelConfig) -> Result<&LunaModelConfig, ModelError> {
        match c {
            ModelConfig::LunaModel(c) => Ok(c),
            other => Err(ModelError::WrongArchitecture {
                found: other.architecture(),
                expected: Self::ARCHITECTURE,
            }),
        }
    }
    /// Logits (N, 2).
    fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_t(xs, train).0
    }
    fn check_input(&self, shape: &[usize]) -> Result<(), String> {
        let [d, h, w] = self.config.input_size;
        let want = [self.config.in_channels, d, h, w];
        if shape.len() == 4 && want.iter().zip(shape).all(|(&a, &b)| a as usize == b) {
            Ok(())
        } else {
            Err(format!("{want:?}"))
        }
    }
    fn device(&self) -> Device {
        LunaModel::device(self)
    }
    fn reinit_head(&self) {
        LunaModel::reinit_head(self)
    }
}

/// Book `_init_weights` for one conv/linear layer.
pub(crate) fn init_layer(ws: &Tensor, bs: Option<&Tensor>, bias_init: BiasInit) {
    let dims = ws.size();
    let fan_out = nn::init::FanInOut::FanOut.for_weight_dims(&dims) as f64;
    tch::no_grad(|| {
        let std = 2f64.sqrt() / fan_out.sqrt();
        let _ = ws.shallow_clone().normal_(0.0, std);
        if let Some(b) = bs {
            let bound = 1.0 / fan_out.sqrt();
            let _ = match bias_init {
                BiasInit::BookNormal => b.shallow_clone().normal_(-bound, bound),
                BiasInit::Uniform => b.shallow_clone().uniform_(-bound, bound),
            };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattened_size_matches_book() {
        assert_eq!(LunaModelConfig::default().flattened_size().unwrap(), 1152);
        let c = LunaModelConfig {
            input_size: [16, 16, 16],
            ..Default::default()
        };
        assert_eq!(c.flattened_size().unwrap(), 64);
        let c = LunaModelConfig {
            input_size: [15, 48, 48],
            ..Default::default()
        };
        assert!(matches!(
            c.flattened_size(),
            Err(ModelError::InputTooSmall { .. })
        ));
    }

    #[test]
    fn parameter_names_and_count_match_pytorch() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _m = LunaModel::new(&vs.root(), &LunaModelConfig::default()).unwrap();
        let vars = vs.variables();
        let mut names: Vec<_> = vars.keys().cloned().collect();
        names.sort();
        assert!(names.contains(&"tail_batchnorm.running_mean".to_string()));
        assert!(names.contains(&"tail_batchnorm.num_batches_tracked".to_string()));
        assert!(names.contains(&"block4.conv2.bias".to_string()));
        assert!(names.contains(&"head_linear.weight".to_string()));
        assert_eq!(names.len(), 4 * 4 + 2 + 5);
        let n: i64 = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        assert_eq!(n, 222_220);
    }
}

//! The book's segmentation model (p2ch13 `UNetWrapper` over jvanvugt's `pytorch-unet`) on tch:
//! `input_batchnorm` (BatchNorm2d(7)) → UNet(in 7, depth 3, wf 4, padding, batch_norm,
//! upconv) → 1×1 conv to 1 channel → sigmoid, so the output is a probability map (N,1,H,W).
//!
//! - Down path: blocks of 2^(wf+i) = 16, 32, 64 channels; each block is Conv3×3(pad 1) → ReLU →
//!   BatchNorm → Conv3×3(pad 1) → ReLU → BatchNorm (BatchNorm after the ReLU, as in the book);
//!   between blocks **average** pooling 2×2 (the book's one change to the original max-pool).
//! - Up path: ConvTranspose2d(k 2, s 2) halving the channels, concatenation with the skip
//!   (no crop needed with padding), a conv block.
//! - VarStore paths are the PyTorch state-dict keys (`input_batchnorm.*`,
//!   `unet.down_path.0.block.0.weight` … `block.2.*` (BN) … `block.3.*`, `block.5.*`,
//!   `unet.up_path.0.up.*`, `unet.up_path.0.conv_block.block.*`, `unet.last.*`), with every
//!   BatchNorm's `num_batches_tracked` buffer, so the book's Python model loads luna's
//!   safetensors with `load_state_dict(strict=True)` (checked by an oracle test).
//! - Init as the book's `_init_weights`: kaiming normal (fan_out, relu) for every Conv2d and
//!   ConvTranspose2d weight, biases `normal_(−bound, bound)` (bound = 1/√fan_out; see
//!   `luna_model` for why that is a normal with mean −bound), BatchNorm weight 1 / bias 0.
//! - Fully convolutional: any H×W divisible by 2^(depth−1) (64×64 training crops, whole slices
//!   for validation and inference).
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use crate::nn::luna_model::{init_layer, BiasInit, ModelError};
use crate::nn::model::{Model, ModelConfig};

/// Architecture of the UNet (the book's values are the default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    /// Input channels: 2·context + 1 slices (book: 7).
    pub in_channels: i64,
    /// Output channels (book: 1, the nodule probability).
    pub n_classes: i64,
    /// Blocks on the down path (book: 3).
    pub depth: i64,
    /// log2 of the first block's channels (book: 4 → 16).
    pub wf: i64,
    /// Bias initialisation (see `luna_model::BiasInit`).
    pub bias_init: BiasInit,
}

impl Default for UNetConfig {
    fn default() -> Self {
        UNetConfig {
            in_channels: 7,
            n_classes: 1,
            depth: 3,
            wf: 4,
            bias_init: BiasInit::BookNormal,
        }
    }
}

#[derive(Debug)]
struct Bn {
    bn: nn::BatchNorm,
    tracked: Tensor,
}

impl Bn {
    fn new(p: nn::Path, c: i64) -> Bn {
        let cfg = nn::BatchNormConfig {
            ws_init: nn::Init::Const(1.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        let bn = nn::batch_norm2d(&p, c, cfg);
        let tracked = p.add(
            "num_batches_tracked",
            Tensor::zeros([], (Kind::Int64, p.device())),
            false,
        );
        Bn { bn, tracked }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        if train {
            tch::no_grad(|| {
                let _ = self.tracked.shallow_clone().g_add_scalar_(1);
            });
        }
        self.bn.forward_t(x, train)
    }
}

#[derive(Debug)]
struct ConvBlock {
    conv1: nn::Conv2D,
    bn1: Bn,
    conv2: nn::Conv2D,
    bn2: Bn,
}

impl ConvBlock {
    fn new(p: nn::Path, in_c: i64, out_c: i64) -> ConvBlock {
        let cfg = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        let b = &p / "block";
        ConvBlock {
            conv1: nn::conv2d(&b / "0", in_c, out_c, 3, cfg),
            bn1: Bn::new(&b / "2", out_c),
            conv2: nn::conv2d(&b / "3", out_c, out_c, 3, cfg),
            bn2: Bn::new(&b / "5", out_c),
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = self.bn1.forward_t(&x.apply(&self.conv1).relu(), train);
        self.bn2.forward_t(&h.apply(&self.conv2).relu(), train)
    }

    fn init(&self, bias: BiasInit) {
        for c in [&self.conv1, &self.conv2] {
            init_layer(&c.ws, c.bs.as_ref(), bias);
        }
    }
}

#[derive(Debug)]
struct UpBlock {
    up: nn::ConvTranspose2D,
    conv: ConvBlock,
}

/// The book's UNet wrapper; its VarStore holds the weights.
#[derive(Debug)]
pub struct UNet {
    config: UNetConfig,
    input_bn: Bn,
    down: Vec<ConvBlock>,
    up: Vec<UpBlock>,
    last: nn::Conv2D,
}

impl UNet {
    /// Builds the model on `p` (normally `vs.root()`) and initialises it as the book does.
    pub fn new(p: &nn::Path, config: &UNetConfig) -> Result<UNet, ModelError> {
        let c = config;
        if c.in_channels < 1
            || c.n_classes < 1
            || !(1..=8).contains(&c.depth)
            || !(0..=10).contains(&c.wf)
        {
            return Err(ModelError::BadChannels {
                in_channels: c.in_channels,
                conv_channels: 1 << c.wf.clamp(0, 10),
            });
        }
        let input_bn = Bn::new(p / "input_batchnorm", c.in_channels);
        let u = p / "unet";
        let mut down = Vec::new();
        let mut prev = c.in_channels;
        for i in 0..c.depth {
            let ch = 1i64 << (c.wf + i);
            down.push(ConvBlock::new(&u / "down_path" / i.to_string(), prev, ch));
            prev = ch;
        }
        let mut up = Vec::new();
        for (k, i) in (0..c.depth - 1).rev().enumerate() {
            let ch = 1i64 << (c.wf + i);
            let bp = &u / "up_path" / k.to_string();
            let cfg = nn::ConvTransposeConfig {
                stride: 2,
                ..Default::default()
            };
            up.push(UpBlock {
                up: nn::conv_transpose2d(&bp / "up", prev, ch, 2, cfg),
                conv: ConvBlock::new(&bp / "conv_block", prev, ch),
            });
            prev = ch;
        }
        let last = nn::conv2d(&u / "last", prev, c.n_classes, 1, Default::default());
        let m = UNet {
            config: config.clone(),
            input_bn,
            down,
            up,
            last,
        };
        for b in &m.down {
            b.init(c.bias_init);
        }
        for b in &m.up {
            init_layer(&b.up.ws, b.up.bs.as_ref(), c.bias_init);
            b.conv.init(c.bias_init);
        }
        init_layer(&m.last.ws, m.last.bs.as_ref(), c.bias_init);
        Ok(m)
    }

    /// The architecture config.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }
}

impl Model for UNet {
    type Config = UNetConfig;
    const ARCHITECTURE: &'static str = "UNet";
    // Fine-tuning a segmenter is not a book workflow; the blocks exist for completeness.
    const BLOCKS: &'static [&'static str] = &["input_batchnorm", "unet"];
    const HEAD: &'static str = "unet";

    fn build(p: &nn::Path, config: &UNetConfig) -> Result<Self, ModelError> {
        UNet::new(p, config)
    }
    fn model_config(&self) -> ModelConfig {
        ModelConfig::UNet(self.config.clone())
    }
    fn config_of(c: &ModelConfig) -> Result<&UNetConfig, ModelError> {
        match c {
            ModelConfig::UNet(c) => Ok(c),
            other => Err(ModelError::WrongArchitecture {
                found: other.architecture(),
                expected: Self::ARCHITECTURE,
            }),
        }
    }
    /// Probabilities (N, n_classes, H, W).
    fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = self.input_bn.forward_t(xs, train);
        let mut skips = Vec::new();
        for (i, b) in self.down.iter().enumerate() {
            x = b.forward_t(&x, train);
            if i + 1 != self.down.len() {
                skips.push(x.shallow_clone());
                x = x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
            }
        }
        for b in &self.up {
            let up = x.apply(&b.up);
            let skip = skips.pop().unwrap_or_else(|| up.shallow_clone());
            x = b.conv.forward_t(&Tensor::cat(&[up, skip], 1), train);
        }
        x.apply(&self.last).sigmoid()
    }
    fn check_input(&self, shape: &[usize]) -> Result<(), String> {
        let div = 1usize << (self.config.depth - 1);
        let want = format!(
            "[{}, H, W] with H and W divisible by {div}",
            self.config.in_channels
        );
        match shape {
            [c, h, w]
                if *c as i64 == self.config.in_channels
                    && h % div == 0
                    && w % div == 0
                    && *h > 0
                    && *w > 0 =>
            {
                Ok(())
            }
            _ => Err(want),
        }
    }
    fn device(&self) -> Device {
        self.last.ws.device()
    }
    fn reinit_head(&self) {
        init_layer(&self.last.ws, self.last.bs.as_ref(), self.config.bias_init);
    }
}

//! `import_model`: a PyTorch checkpoint (the book's `.state` files, any `torch.save` of a
//! `state_dict`, or safetensors) → the artifact `train_classifier` / `train_segmentation`
//! write (`model.safetensors` + the `model.json` sidecar), so every stage that takes a trained
//! classifier or segmenter takes an imported one unchanged.
//!
//! ```yaml
//! nodule_model:
//!   uses: import_model
//!   with: { checkpoint: models/cls_2020-02-06_14.16.55_final-nodule-nonnodule.best.state,
//!           architecture: luna_model }            # provides: classifier (the default)
//! unet:
//!   uses: import_model
//!   with: { checkpoint: models/seg_2020-01-26_19.45.12_w4d3c1-bal_1_nodupe-label_pos-d1_fn8-adam.best.state,
//!           architecture: unet }                  # provides: segmenter (the default)
//! ```
//!
//! Decisions:
//! - Parameters are flat, as written above: `architecture` (`luna_model` | `unet`) and that
//!   architecture's parameters with the book's defaults — LunaModel `in_channels 1,
//!   conv_channels 8, input_size [32, 48, 48]`, `task nodule` (or `malignancy`, for a
//!   fine-tuned malignancy head); UNet `in_channels 7, n_classes 1, depth 3, wf 4, padding
//!   true, batch_norm true, up_mode upconv` (luna's UNet is that variant only, so other values
//!   are refused at plan time). A parameter of the other architecture is a plan-time error.
//! - `provides` names the artifact type (`classifier` for `luna_model`, `segmenter` for `unet`,
//!   the defaults; any other pairing is refused): downstream `model:` / `segmenter:` inputs
//!   bind to it as to a training stage.
//! - The checkpoint's content is in the cache key (an external input), its path is not.
//! - Reading is `crate::ptload` (pure Rust, no Python, a restricted unpickler that refuses
//!   anything but tensors, storages and plain containers); copying into the model, the
//!   architecture check and the artifact are the torch half,
//!   `crates/luna-torch/src/kinds/import_model.rs`. The book's tensor names are luna's (the
//!   model modules keep PyTorch's state-dict keys), so no renaming happens.
//!
//! Rejected: a nested `architecture: { luna_model: {...} }` map (the issue's and the book's
//! flat parameter names read better in YAML), and guessing the architecture from the tensor
//! names (a wrong guess would hide the mismatch error).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{ExternalInput, InputPath, ParamError, Stage};
use crate::model::{Device, CLASSIFIER, SEGMENTER};
use crate::store::crop_set::Task;
use crate::worker::WorkerStage;

/// The architectures a checkpoint can be imported as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// The book's nodule classifier (p2ch14 `LunaModel`).
    LunaModel,
    /// The book's segmentation model (p2ch13 `UNetWrapper`).
    Unet,
}

/// The artifact type an import provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Provides {
    /// A classifier (as `train_classifier`).
    Classifier,
    /// A segmenter (as `train_segmentation`).
    Segmenter,
}

/// The UNet's upsampling (luna's UNet is the book's `upconv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpMode {
    /// ConvTranspose2d(k 2, s 2).
    Upconv,
    /// Bilinear upsampling + 1×1 conv (not supported by luna's UNet).
    Upsample,
}

/// Parameters of `import_model`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportModelParams {
    /// The checkpoint file: `torch.save` output (legacy or zip format) of a `state_dict` or of a
    /// dict holding one under `model_state`, or safetensors. Its content is in the cache key.
    pub checkpoint: InputPath,
    /// `luna_model` (classifier) or `unet` (segmenter).
    pub architecture: Architecture,
    /// Artifact type provided: `classifier` (luna_model, default) or `segmenter` (unet, default).
    #[serde(default)]
    pub provides: Option<Provides>,
    /// Input channels (book: 1 for luna_model, 7 for unet).
    #[serde(default)]
    pub in_channels: Option<i64>,
    /// luna_model: channels of the first block (book: 8).
    #[serde(default)]
    pub conv_channels: Option<i64>,
    /// luna_model: crop size (index, row, col) the head was trained for (book: [32, 48, 48]).
    #[serde(default)]
    pub input_size: Option<[i64; 3]>,
    /// luna_model: what the classifier learned, `nodule` (default) or `malignancy`.
    #[serde(default)]
    pub task: Option<Task>,
    /// unet: output channels (book: 1).
    #[serde(default)]
    pub n_classes: Option<i64>,
    /// unet: blocks on the down path (book: 3).
    #[serde(default)]
    pub depth: Option<i64>,
    /// unet: log2 of the first block's channels (book: 4).
    #[serde(default)]
    pub wf: Option<i64>,
    /// unet: padded convolutions (book: true; the only value luna's UNet has).
    #[serde(default)]
    pub padding: Option<bool>,
    /// unet: batch norm in the conv blocks (book: true; the only value luna's UNet has).
    #[serde(default)]
    pub batch_norm: Option<bool>,
    /// unet: upsampling (book: upconv; the only value luna's UNet has).
    #[serde(default)]
    pub up_mode: Option<UpMode>,
}

/// LunaModel's parameters, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct LunaDims {
    /// Input channels.
    pub in_channels: i64,
    /// First block's channels.
    pub conv_channels: i64,
    /// Crop size.
    pub input_size: [i64; 3],
    /// What the classifier learned.
    pub task: Task,
}

/// UNet's parameters, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct UnetDims {
    /// Input channels.
    pub in_channels: i64,
    /// Output channels.
    pub n_classes: i64,
    /// Blocks on the down path.
    pub depth: i64,
    /// log2 of the first block's channels.
    pub wf: i64,
}

/// An import's architecture with every parameter resolved (defaults filled in).
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// LunaModel.
    LunaModel(LunaDims),
    /// UNet.
    Unet(UnetDims),
}

impl Resolved {
    /// Range checks (what the models' constructors would refuse, at plan time).
    fn check(&self) -> Result<(), ParamError> {
        let (ok, key, rule) = match self {
            Resolved::LunaModel(d) => (
                d.in_channels >= 1 && d.conv_channels >= 1 && d.input_size.iter().all(|&s| s >= 16),
                "input_size",
                "luna_model needs in_channels >= 1, conv_channels >= 1 and every axis of input_size >= 16 (four 2x poolings)",
            ),
            Resolved::Unet(d) => (
                d.in_channels >= 1 && d.n_classes >= 1 && (1..=8).contains(&d.depth) && (0..=10).contains(&d.wf),
                "depth",
                "unet needs in_channels >= 1, n_classes >= 1, depth 1..=8 and wf 0..=10",
            ),
        };
        if ok {
            Ok(())
        } else {
            Err(ParamError::new(key, rule))
        }
    }
}

impl ImportModelParams {
    /// The architecture with the book's defaults filled in.
    pub fn resolved(&self) -> Resolved {
        match self.architecture {
            Architecture::LunaModel => Resolved::LunaModel(LunaDims {
                in_channels: self.in_channels.unwrap_or(1),
                conv_channels: self.conv_channels.unwrap_or(8),
                input_size: self.input_size.unwrap_or([32, 48, 48]),
                task: self.task.unwrap_or_default(),
            }),
            Architecture::Unet => Resolved::Unet(UnetDims {
                in_channels: self.in_channels.unwrap_or(7),
                n_classes: self.n_classes.unwrap_or(1),
                depth: self.depth.unwrap_or(3),
                wf: self.wf.unwrap_or(4),
            }),
        }
    }

    /// The artifact type provided.
    pub fn provides(&self) -> Provides {
        self.provides.unwrap_or(match self.architecture {
            Architecture::LunaModel => Provides::Classifier,
            Architecture::Unet => Provides::Segmenter,
        })
    }
}

/// This kind's name in `uses:` and in the `luna-torch` worker's dispatch table.
pub const KIND: &str = "import_model";

/// The `import_model` kind.
pub struct ImportModelStage;

impl WorkerStage for ImportModelStage {
    fn device(_p: &ImportModelParams) -> Option<Device> {
        None
    }
}

fn other_arch(p: &ImportModelParams) -> Result<(), ParamError> {
    let (luna, unet) = (
        [
            ("conv_channels", p.conv_channels.is_some()),
            ("input_size", p.input_size.is_some()),
            ("task", p.task.is_some()),
        ],
        [
            ("n_classes", p.n_classes.is_some()),
            ("depth", p.depth.is_some()),
            ("wf", p.wf.is_some()),
            ("padding", p.padding.is_some()),
            ("batch_norm", p.batch_norm.is_some()),
            ("up_mode", p.up_mode.is_some()),
        ],
    );
    let (wrong, name) = match p.architecture {
        Architecture::LunaModel => (&unet[..], "luna_model"),
        Architecture::Unet => (&luna[..], "unet"),
    };
    match wrong.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(ParamError::new(
            *key,
            format!("`{key}` is not a parameter of architecture {name}"),
        )),
        None => Ok(()),
    }
}

impl Stage for ImportModelStage {
    type Params = ImportModelParams;
    const KIND: &'static str = KIND;
    const VERSION: u32 = 1;
    const DOC: &'static str =
        "Import a PyTorch checkpoint (legacy/zip torch.save, safetensors) as a classifier or segmenter";

    fn inputs(p: &ImportModelParams) -> Vec<ExternalInput> {
        vec![ExternalInput::new("checkpoint", p.checkpoint.path())]
    }

    fn provides(p: &ImportModelParams) -> Vec<String> {
        vec![match p.provides() {
            Provides::Classifier => CLASSIFIER.to_string(),
            Provides::Segmenter => SEGMENTER.to_string(),
        }]
    }

    fn validate(p: &ImportModelParams) -> Result<(), ParamError> {
        other_arch(p)?;
        match (p.architecture, p.provides()) {
            (Architecture::LunaModel, Provides::Classifier)
            | (Architecture::Unet, Provides::Segmenter) => {}
            (a, pr) => {
                return Err(ParamError::new(
                    "provides",
                    format!("architecture {a:?} cannot provide a {pr:?}: luna_model provides classifier, unet segmenter"),
                ))
            }
        }
        p.resolved().check()?;
        for (key, ok) in [
            ("padding", p.padding != Some(false)),
            ("batch_norm", p.batch_norm != Some(false)),
            ("up_mode", p.up_mode != Some(UpMode::Upsample)),
        ] {
            if !ok {
                return Err(ParamError::new(key, format!("luna's UNet is the book's (padding true, batch_norm true, up_mode upconv); `{key}` cannot differ")));
            }
        }
        Ok(())
    }

    fn run(&self, _p: &ImportModelParams, ctx: &mut StageContext) -> Result<(), StageError> {
        crate::worker::run_in_worker::<Self>(ctx)
    }
}

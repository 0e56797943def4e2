//! The torch half of `import_model` (its plan and params: `luna::stages::import_model`): read
//! the checkpoint with `luna::ptload`, copy it into the architecture's model
//! (`nn::import`), write the trained-model artifact.

use luna::engine::context::StageContext;
use luna::engine::error::StageError;
use luna::stages::import_model::{ImportModelParams, ImportModelStage, Resolved};

use crate::kinds::params;
use crate::nn::import::{import, write_artifact};
use crate::nn::{BiasInit, LunaModel, LunaModelConfig, UNet, UNetConfig};

fn dom(e: impl std::error::Error + Send + Sync + 'static) -> StageError {
    StageError::domain(e)
}

/// The checkpoint itself is unusable (not one, refused, does not fit): the user's to fix.
fn bad(e: impl std::error::Error + Send + Sync + 'static) -> StageError {
    StageError::bad_input(e)
}

/// Runs `import_model` in the worker.
pub fn execute(ctx: &mut StageContext) -> Result<(), StageError> {
    let p: ImportModelParams = params(ImportModelStage, ctx)?;
    let path = ctx.resolve(p.checkpoint.path());
    let ck = luna::ptload::read_checkpoint(&path).map_err(bad)?;
    let out = ctx.out_dir().to_path_buf();
    let imported = serde_json::json!({ "format": ck.format, "extras": ck.extras });
    let meta = match p.resolved() {
        Resolved::LunaModel(d) => {
            let cfg = LunaModelConfig {
                input_size: d.input_size,
                in_channels: d.in_channels,
                conv_channels: d.conv_channels,
                bias_init: BiasInit::BookNormal,
            };
            let lm = import::<LunaModel>(&cfg, &ck, &path, "luna_model").map_err(bad)?;
            let tp = serde_json::json!({ "task": d.task, "imported": imported });
            write_artifact(&out, &lm, &ck, tp).map_err(dom)?
        }
        Resolved::Unet(d) => {
            let cfg = UNetConfig {
                in_channels: d.in_channels,
                n_classes: d.n_classes,
                depth: d.depth,
                wf: d.wf,
                bias_init: BiasInit::BookNormal,
            };
            let lm = import::<UNet>(&cfg, &ck, &path, "unet").map_err(bad)?;
            let tp = serde_json::json!({ "imported": imported });
            write_artifact(&out, &lm, &ck, tp).map_err(dom)?
        }
    };
    ctx.log(format!(
        "imported {} ({} format, {} tensors) as {} (epoch {}, {} training samples)",
        path.display(),
        ck.format,
        ck.tensors.len(),
        meta.model.architecture(),
        meta.epoch,
        meta.total_samples
    ));
    Ok(())
}

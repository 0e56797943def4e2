//! The torch half of the test-only `test_torch_partitions` kind (its plan and params:
//! `luna::stages::test_kinds`): per-item partitions committed from inside the worker, scheduled
//! longest first.

use luna::artifacts::{PartsSummary, Style};
use luna::engine::context::StageContext;
use luna::engine::error::StageError;
use luna::stages::glue::write_json;
use luna::stages::test_kinds::{TestTorchPartitionsParams, TestTorchPartitionsStage};

use crate::kinds::params;

/// Runs `test_torch_partitions` in the worker.
pub fn execute(ctx: &mut StageContext) -> Result<(), StageError> {
    let p: TestTorchPartitionsParams = params(TestTorchPartitionsStage, ctx)?;
    let files = luna::stages::test_kinds::item_files(ctx, &p.items)?;
    let ctx_ref = &*ctx;
    let results = ctx.longest_first(
        &files,
        2,
        |f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0),
        |f| -> Result<(String, luna::engine::context::Partition), StageError> {
            luna::stages::test_kinds::item_partition(ctx_ref, f, |out| {
                let bytes = std::fs::read(f).map_err(|e| StageError::io(f, e))?;
                let t = tch::Tensor::from_slice(&bytes).to_kind(tch::Kind::Double);
                let v = t.sum(tch::Kind::Double).double_value(&[]) * p.scale;
                let o = out.join("out.txt");
                std::fs::write(&o, format!("{v}\n")).map_err(|e| StageError::io(&o, e))?;
                if p.pad_bytes > 0 {
                    let pad = out.join("pad.bin");
                    std::fs::write(&pad, vec![0u8; p.pad_bytes as usize])
                        .map_err(|e| StageError::io(&pad, e))?;
                }
                Ok(())
            })
        },
    )?;
    let (mut computed, mut cached) = (0, 0);
    for r in results {
        let (name, part) = r?;
        if part.cached {
            cached += 1;
        } else {
            computed += 1;
        }
        ctx.link_into_output(&part.dir.join("out.txt"), &format!("parts/{name}.txt"))?;
    }
    ctx.log(format!("{computed} computed, {cached} cached"));
    write_json(
        &ctx.out_dir().join("summary.json"),
        &PartsSummary { computed, cached },
        Style::Compact,
    )
}

//! Kinds that exist only for luna's own integration tests (registered when the environment
//! has `LUNA_TEST_KINDS=1`): typed parameters with a hint, to test key and error behaviour
//! without CT data, and a torch kind with per-item partitions in the worker (its torch half is
//! `crates/luna-torch/src/kinds/test_kinds.rs`), and a slow partitioned kind without torch (the
//! Slurm tests cancel its array tasks mid-run).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{ExternalInput, Hint, InputPath, Stage};
use crate::model::Device;
use crate::worker::WorkerStage;

/// Parameters of `test_params`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestParams {
    /// A float parameter.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// An integer parameter.
    #[serde(default)]
    pub epochs: u32,
    /// Nested parameters.
    #[serde(default)]
    pub nested: Nested,
    /// A hint: never part of the key.
    #[serde(default)]
    pub device: Hint<String>,
}

/// Nested test parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Nested {
    /// A nested flag.
    #[serde(default)]
    pub flag: bool,
}

fn default_lr() -> f64 {
    0.001
}

/// `uses:` name of [`TestParamsStage`].
pub const PARAMS_KIND: &str = "test_params";
/// `uses:` name of [`TestTorchPartitionsStage`] (and its key in the worker's dispatch table).
pub const TORCH_PARTITIONS_KIND: &str = "test_torch_partitions";
/// `uses:` name of [`TestSlowPartitionsStage`].
pub const SLOW_PARTITIONS_KIND: &str = "test_slow_partitions";

/// Writes its parameters and upstream keys to `params.json`.
pub struct TestParamsStage;

impl Stage for TestParamsStage {
    type Params = TestParams;
    const KIND: &'static str = PARAMS_KIND;
    const VERSION: u32 = 1;
    const DOC: &'static str = "(tests only) write the parameters to params.json";

    fn run(&self, p: &TestParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let ups: Vec<&str> = ctx.upstreams().iter().map(|u| u.key.as_str()).collect();
        let doc = serde_json::json!({ "lr": p.lr, "epochs": p.epochs, "flag": p.nested.flag, "device": p.device.0, "upstream": ups });
        let path = ctx.out_dir().join("params.json");
        std::fs::write(&path, doc.to_string()).map_err(|e| StageError::io(&path, e))
    }
}

/// Parameters of `test_torch_partitions`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestTorchPartitionsParams {
    /// A directory of item files (one partition per file, keyed by its content).
    pub items: InputPath,
    /// A semantic parameter (changes every partition key).
    #[serde(default)]
    pub scale: f64,
    /// Bytes of zeros each partition also writes (`pad.bin`), to fill a disk from the worker.
    #[serde(default)]
    pub pad_bytes: u64,
}

/// A torch kind with per-item partitions computed in the `luna-torch` worker: each file of
/// `items` becomes a partition holding `out.txt` = (sum of its bytes) × `scale`, computed by
/// torch; the stage links them as `parts/<file>.txt` and writes `summary.json`
/// (`computed`, `cached`).
pub struct TestTorchPartitionsStage;

impl WorkerStage for TestTorchPartitionsStage {
    fn device(_: &TestTorchPartitionsParams) -> Option<Device> {
        None
    }
}

impl Stage for TestTorchPartitionsStage {
    const PARTITIONED: bool = true;
    type Params = TestTorchPartitionsParams;
    const KIND: &'static str = TORCH_PARTITIONS_KIND;
    const VERSION: u32 = 1;
    const DOC: &'static str = "(tests only) per-item partitions computed by torch in the worker";

    fn inputs(p: &TestTorchPartitionsParams) -> Vec<ExternalInput> {
        vec![ExternalInput::new("items", p.items.path())]
    }

    fn run(
        &self,
        _p: &TestTorchPartitionsParams,
        ctx: &mut StageContext,
    ) -> Result<(), StageError> {
        crate::worker::run_in_worker::<Self>(ctx)
    }
}

/// Parameters of `test_slow_partitions`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestSlowPartitionsParams {
    /// A directory of item files (one partition per file, keyed by its content).
    pub items: InputPath,
    /// Milliseconds each partition takes (a hint: not in any key).
    #[serde(default)]
    pub delay_ms: Hint<u64>,
    /// The item whose partition fails (after its delay), if any.
    #[serde(default)]
    pub fail: Option<String>,
}

/// A partitioned kind without torch: each file of `items` becomes a partition holding a copy
/// of it (`copy.bin`) after `delay_ms` (the item named `fail` fails instead); the stage links
/// them as `parts/<file>` and writes `count.txt`.
pub struct TestSlowPartitionsStage;

impl Stage for TestSlowPartitionsStage {
    const PARTITIONED: bool = true;
    type Params = TestSlowPartitionsParams;
    const KIND: &'static str = SLOW_PARTITIONS_KIND;
    const VERSION: u32 = 1;
    const DOC: &'static str = "(tests only) slow per-item partitions, in the luna process";

    fn inputs(p: &TestSlowPartitionsParams) -> Vec<ExternalInput> {
        vec![ExternalInput::new("items", p.items.path())]
    }

    fn run(&self, p: &TestSlowPartitionsParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let files = item_files(ctx, &p.items)?;
        ctx.progress().start(files.len() as u64, "items");
        let ctx_ref = &*ctx;
        let results = ctx.longest_first(
            &files,
            1,
            |_| 0,
            |f| {
                let r = item_partition(ctx_ref, f, |out| {
                    std::thread::sleep(std::time::Duration::from_millis(p.delay_ms.0));
                    if p.fail.as_deref() == f.file_name().and_then(|n| n.to_str()) {
                        return Err(StageError::msg(format!(
                            "item {} fails, as asked",
                            f.display()
                        )));
                    }
                    std::fs::copy(f, out.join("copy.bin")).map_err(|e| StageError::io(f, e))?;
                    Ok(())
                })?;
                ctx_ref.progress().inc(1);
                Ok::<_, StageError>(r)
            },
        )?;
        let n = results.len();
        for r in results {
            let (name, part) = r?;
            ctx.link_into_output(&part.dir.join("copy.bin"), &format!("parts/{name}"))?;
        }
        let c = ctx.out_dir().join("count.txt");
        std::fs::write(&c, format!("{n}\n")).map_err(|e| StageError::io(&c, e))
    }
}

/// The files of a test kind's `items` directory, sorted.
pub fn item_files(
    ctx: &StageContext,
    items: &InputPath,
) -> Result<Vec<std::path::PathBuf>, StageError> {
    let dir = ctx.resolve(items.path());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| StageError::io(&dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// The partition of item file `f` (named by its file name, keyed by its content), computed by
/// `produce` when not cached.
pub fn item_partition(
    ctx: &StageContext,
    f: &std::path::Path,
    produce: impl FnOnce(&std::path::Path) -> Result<(), StageError>,
) -> Result<(String, crate::engine::context::Partition), StageError> {
    let name = f
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let hash = ctx.hash_file(f)?;
    let part = ctx.partition(&name, &serde_json::json!({ "content": hash }), produce)?;
    Ok((name, part))
}

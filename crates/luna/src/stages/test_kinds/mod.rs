//! Kinds that exist only for luna's own integration tests (registered when the environment
//! has `LUNA_TEST_KINDS=1`): typed parameters with a hint, to test key and error behaviour
//! without CT data, and a torch kind with per-item partitions in the worker (its torch half is
//! `torch.rs`, compiled into `luna-torch`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{ExternalInput, Hint, InputPath, Stage};

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

/// Writes its parameters and upstream keys to `params.json`.
pub struct TestParamsStage;

impl Stage for TestParamsStage {
    type Params = TestParams;
    const KIND: &'static str = "test_params";
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

impl Stage for TestTorchPartitionsStage {
    type Params = TestTorchPartitionsParams;
    const KIND: &'static str = "test_torch_partitions";
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
        crate::worker::run_in_worker(Self::KIND, ctx)
    }
}

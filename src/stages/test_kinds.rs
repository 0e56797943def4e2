//! Kinds that exist only for luna's own integration tests (registered when the environment
//! has `LUNA_TEST_KINDS=1`): typed parameters with a hint, to test key and error behaviour
//! without CT data.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{Hint, Stage};

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

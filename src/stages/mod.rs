//! Stage kinds: one file per kind, each the glue between the engine and the domain modules,
//! and [`registry`], the list of kinds a pipeline may use.

pub mod command;
pub mod synth;
pub mod test_kinds;

use crate::engine::registry::Registry;

/// The kinds pipelines may use: the built-in ones, plus test-only kinds when the environment
/// has `LUNA_TEST_KINDS=1`.
pub fn registry() -> Registry {
    let mut r = builtin_registry();
    if std::env::var_os("LUNA_TEST_KINDS").is_some_and(|v| v == "1") {
        r.add(test_kinds::TestParamsStage);
    }
    r
}

/// The built-in kinds (what `schemas/pipeline.schema.json` describes).
pub fn builtin_registry() -> Registry {
    let mut r = Registry::new();
    r.add(command::CommandStage);
    r.add(synth::SynthStage);
    r
}

/// Runs the torch work of `kind` inside the `luna-torch` worker.
#[cfg(feature = "torch")]
pub fn run_torch_kind(
    kind: &str,
    _ctx: &mut crate::engine::context::StageContext,
) -> Result<(), crate::engine::error::StageError> {
    Err(crate::engine::error::StageError::msg(format!(
        "luna-torch has no torch kind `{kind}`"
    )))
}

//! `luna synth OUT`: write the synthetic LUNA16-format dataset to a directory (the same
//! generator as the `synth` stage kind), e.g. to try luna's stages on files outside a cache.

use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::synth::{generate, Preset, SynthOptions};

/// Arguments of `luna synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output directory (created).
    out: PathBuf,
    /// Size class.
    #[arg(long, value_enum, default_value = "small")]
    preset: PresetArg,
    /// Seed (same seed, same bytes).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of CT series (default: the preset's).
    #[arg(long)]
    series: Option<usize>,
}

/// `--preset` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PresetArg {
    /// Tests.
    Tiny,
    /// Demo.
    Small,
    /// 512² benchmark volumes.
    Real,
}

/// Runs the command.
pub fn cmd(a: SynthArgs) -> Result<i32, CliError> {
    let preset = match a.preset {
        PresetArg::Tiny => Preset::Tiny,
        PresetArg::Small => Preset::Small,
        PresetArg::Real => Preset::Real,
    };
    let opts = SynthOptions {
        seed: a.seed,
        series: a.series,
        ..SynthOptions::preset(preset)
    };
    let t = std::time::Instant::now();
    let s = generate(&opts, &a.out, &|p| {
        if p.done == p.total || p.done % 5 == 0 {
            eprintln!("{:>12} {}/{} CTs", "synth", p.done, p.total);
        }
    })
    .map_err(|e| CliError::failed(e.to_string(), None))?;
    eprintln!(
        "{:>12} [{:>8.2}s] {}: {} series, {} nodules ({} malignant), {} candidates",
        "Finished",
        t.elapsed().as_secs_f64(),
        a.out.display(),
        s.series,
        s.nodules,
        s.malignant,
        s.candidates
    );
    Ok(0)
}

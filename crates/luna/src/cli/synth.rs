//! `luna synth OUT`: write the synthetic LUNA16-format dataset to a directory (the same
//! generator as the `synth` stage kind), e.g. to try luna's stages on files outside a cache.

use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::synth::{generate, Layout, Preset, SynthOptions};

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
    /// Number of CT series (default: the preset's; luna16 layout: at least 20).
    #[arg(long)]
    series: Option<usize>,
    /// Number of subsetN folders (default: the preset's; luna16 layout: 10).
    #[arg(long)]
    subsets: Option<usize>,
    /// File tree: `flat` (luna's demo data) or `luna16` (the LUNA16 download's tree, with
    /// candidates_V2.csv, evaluationScript/annotations/ and seg-lungs-LUNA16/).
    #[arg(long, value_enum, default_value = "flat")]
    layout: LayoutArg,
    /// Negative (class-0) candidates per planted nodule (default: the preset's).
    #[arg(long)]
    negatives_per_nodule: Option<usize>,
}

/// `--layout` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LayoutArg {
    /// Every CSV beside the subset folders.
    Flat,
    /// The LUNA16 download's tree.
    Luna16,
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
    /// Scanner-like CTs that make detection hard (512², ≤ 200 slices).
    Realistic,
}

/// Runs the command.
pub fn cmd(a: SynthArgs) -> Result<i32, CliError> {
    let preset = match a.preset {
        PresetArg::Tiny => Preset::Tiny,
        PresetArg::Small => Preset::Small,
        PresetArg::Real => Preset::Real,
        PresetArg::Realistic => Preset::Realistic,
    };
    let layout = match a.layout {
        LayoutArg::Flat => None,
        LayoutArg::Luna16 => Some(Layout::Luna16),
    };
    let opts = SynthOptions {
        preset,
        seed: a.seed,
        layout,
        series: a.series,
        subsets: a.subsets,
        negatives_per_nodule: a.negatives_per_nodule,
        ..SynthOptions::default()
    };
    let t = std::time::Instant::now();
    let s = generate(&opts, &a.out, &|p| {
        if p.done == p.total || p.done % 5 == 0 {
            eprintln!("{:>12} {}/{} CTs", "synth", p.done, p.total);
        }
    })
    .map_err(|e| CliError::failed(e.to_string(), None))?;
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "{:>12} [{:>8.2}s] {}: {} series ({:.2} CTs/s), {} nodules ({} malignant), {} candidates",
        "Finished",
        secs,
        a.out.display(),
        s.series,
        s.series as f64 / secs.max(1e-9),
        s.nodules,
        s.malignant,
        s.candidates
    );
    Ok(0)
}

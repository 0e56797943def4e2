//! `synth`: generate luna's synthetic LUNA16-format dataset (the embedded default data) as a
//! cached artifact: `subset*/<uid>.mhd/.raw` and the LUNA16 CSVs, laid out like the real files,
//! so every downstream stage reads it exactly as it would read real LUNA16.

use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{ParamError, Stage};
use crate::synth::{generate, SynthOptions};

/// The `synth` kind.
pub struct SynthStage;

impl Stage for SynthStage {
    type Params = SynthOptions;
    const KIND: &'static str = "synth";
    const VERSION: u32 = 1;
    const DOC: &'static str =
        "Generate the synthetic LUNA16-format dataset (CT volumes + annotation/candidate CSVs)";
    const OUTPUTS: &'static [&'static str] = &[super::artifact::DATASET];

    fn validate(p: &SynthOptions) -> Result<(), ParamError> {
        p.resolve()
            .map(|_| ())
            .map_err(|e| ParamError::whole(e.to_string()))
    }

    fn run(&self, p: &SynthOptions, ctx: &mut StageContext) -> Result<(), StageError> {
        let progress = ctx.progress().clone();
        let started = std::sync::atomic::AtomicBool::new(false);
        let t = std::time::Instant::now();
        let summary = generate(p, ctx.out_dir(), &|pr| {
            if !started.swap(true, std::sync::atomic::Ordering::Relaxed) {
                progress.start(pr.total as u64, "CTs");
            }
            progress.set(pr.done as u64, pr.total as u64, "CTs");
        })
        .map_err(StageError::domain)?;
        let secs = t.elapsed().as_secs_f64();
        ctx.log(format!(
            "synth: {} series in {secs:.1} s ({:.2} CTs/s), {} nodules ({} malignant), {} candidates ({} positive), {} bytes",
            summary.series,
            summary.series as f64 / secs.max(1e-9),
            summary.nodules,
            summary.malignant,
            summary.candidates,
            summary.positive_candidates,
            summary.bytes
        ));
        Ok(())
    }
}

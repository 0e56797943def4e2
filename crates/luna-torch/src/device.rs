//! The `device` hint ([`luna::model::Device`], parsed at plan time) → a tch device, with one
//! log line saying which device was chosen and why.

use luna::engine::context::StageContext;
use luna::engine::error::StageError;
use luna::model::Device;

/// Resolves `hint` to a torch device and logs which one and why.
pub fn choose(hint: Device, ctx: &StageContext) -> Result<tch::Device, StageError> {
    resolve(hint, &|line| ctx.log(line))
}

/// [`choose`] with the log line going to `log` (the model server logs to stderr).
pub fn resolve(hint: Device, log: &dyn Fn(String)) -> Result<tch::Device, StageError> {
    let (cuda, why) = crate::runtime::cuda_summary();
    let d = match hint {
        Device::Auto => {
            if cuda {
                log(format!(
                    "device: cuda:0 (device: auto; CUDA available: {why})"
                ));
                tch::Device::Cuda(0)
            } else {
                log(format!("device: cpu (device: auto; no CUDA: {why})"));
                tch::Device::Cpu
            }
        }
        Device::Cpu => {
            log("device: cpu (requested)".into());
            tch::Device::Cpu
        }
        Device::Cuda(idx) => {
            if !cuda {
                return Err(StageError::msg(format!("device `{hint}` requested but CUDA is not usable: {why}"))
                    .with_hint("use `device: auto` or `device: cpu`, or run on a machine with an NVIDIA GPU (`luna doctor` says why CUDA is off)"));
            }
            let n = tch::Cuda::device_count() as usize;
            if idx >= n {
                return Err(StageError::msg(format!(
                    "device `{hint}` requested but only {n} CUDA device(s) exist"
                ))
                .with_hint("pick a device index below the count, or `device: cuda`"));
            }
            log(format!("device: cuda:{idx} (requested; {why})"));
            tch::Device::Cuda(idx)
        }
    };
    Ok(d)
}

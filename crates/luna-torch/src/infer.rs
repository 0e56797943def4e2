//! `luna-torch infer`: the long-lived model worker of `luna serve`.
//!
//! It reads an [`InferConfig`] frame, loads the nodule (and malignancy) LunaModel from their
//! cached artifacts, runs one warm-up batch of `chunk` crops through them, answers with a
//! [`Hello`], then serves batches until stdin closes: a
//! [`Tag::Crops`] frame in, a [`Tag::Probs`] frame out (or a [`Tag::Json`] [`BatchError`], after
//! which it keeps serving). The crops go through `classify_candidates`' `classify_crops` — the
//! same preprocessing (i16 HU → f32, the model's own clamp) and eval-mode pass `luna detect`
//! and `evaluate_classifier` use — so the service's numbers are the pipeline's.
//!
//! The worker only runs forward passes; batching, queueing and HTTP live in the server
//! (`luna::serve`). It dies with its parent (PR_SET_PDEATHSIG, set by the server).
//! Nothing but frames is written to stdout; log lines go to stderr.
//!
//! Rejected: loading the models in the server process (the `luna` binary never links
//! libtorch, and a crash in a CUDA kernel would take the HTTP server down with it).

use std::io::{Read, Write};

use luna::engine::error::StageError;
use luna::serve::wire::{
    self, f32_bytes, header, i16_values, parse_header, BatchError, Hello, InferConfig, Tag,
};
use luna::store::crop_set::Task;

use crate::kinds::classify_candidates::{check_task, classify_crops};
use crate::nn::checkpoint::{self, LoadedModel};
use crate::nn::LunaModel;

/// Most crops of the warm-up batch run before the hello.
const PRIME_MAX: usize = 256;

/// Reads one frame; `Ok(None)` at a clean end of input.
fn read_frame(r: &mut impl Read) -> Result<Option<(Tag, Vec<u8>)>, StageError> {
    let mut h = [0u8; wire::HEADER_LEN];
    match r.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(StageError::io("stdin", e)),
    }
    let (tag, len) = parse_header(&h).map_err(StageError::domain)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)
        .map_err(|e| StageError::io("stdin", e))?;
    Ok(Some((tag, body)))
}

fn write_frame(w: &mut impl Write, tag: Tag, body: &[u8]) -> Result<(), StageError> {
    w.write_all(&header(tag, body.len()))
        .and_then(|()| w.write_all(body))
        .and_then(|()| w.flush())
        .map_err(|e| StageError::io("stdout", e))
}

fn write_json(w: &mut impl Write, v: &impl serde::Serialize) -> Result<(), StageError> {
    let body = serde_json::to_vec(v).map_err(|e| StageError::msg(e.to_string()))?;
    write_frame(w, Tag::Json, &body)
}

fn load(
    dir: &std::path::Path,
    slot: &str,
    want: Task,
    device: tch::Device,
) -> Result<LoadedModel, StageError> {
    let (lm, meta) = checkpoint::load_model_files::<LunaModel>(
        &dir.join(luna::model::MODEL_WEIGHTS),
        &dir.join(luna::model::MODEL_META),
        device,
    )
    .map_err(StageError::domain)?;
    check_task(
        slot,
        &dir.display().to_string(),
        Task::of_train_params(&meta.train_params),
        want,
    )?;
    Ok(lm)
}

/// Runs the worker on stdin/stdout; returns the exit code.
pub fn main() -> i32 {
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    match serve(&mut stdin, &mut stdout) {
        Ok(()) => 0,
        Err(e) => {
            let be = BatchError {
                error: e.to_string(),
                hint: e.hint(),
            };
            let _ = write_json(&mut stdout, &be);
            eprintln!("luna-torch infer: {e}");
            1
        }
    }
}

fn serve(stdin: &mut impl Read, stdout: &mut impl Write) -> Result<(), StageError> {
    let Some((Tag::Json, body)) = read_frame(stdin)? else {
        return Err(StageError::msg(
            "luna-torch infer: expected a JSON config frame first",
        ));
    };
    let cfg: InferConfig = serde_json::from_slice(&body)
        .map_err(|e| StageError::msg(format!("bad infer config: {e}")))?;
    let hint = luna::model::Device::parse(&cfg.device).map_err(StageError::msg)?;
    tch::set_num_threads(cfg.threads.max(1) as i32);
    let device = crate::device::resolve(hint, &|line| eprintln!("luna-torch infer: {line}"))?;
    let nodule = load(&cfg.nodule, "model", Task::Nodule, device)?;
    let mal = match &cfg.malignancy {
        Some(d) => Some(load(d, "malignancy_model", Task::Malignancy, device)?),
        None => None,
    };
    let shape = nodule.model.config().input_size.map(|v| v as usize);
    if let Some(m) = &mal {
        let ms = m.model.config().input_size.map(|v| v as usize);
        if ms != shape {
            return Err(StageError::msg(format!(
                "the malignancy model takes {ms:?} crops, the nodule model {shape:?}"
            )));
        }
    }
    // P(nodule), P(malignant) (NaN without the model) of each crop, flat
    let probs = |crops: &[Vec<i16>]| -> Result<Vec<f32>, StageError> {
        let pn = classify_crops(&nodule.model, crops, shape, cfg.chunk)?;
        let pm = match &mal {
            Some(m) => Some(classify_crops(&m.model, crops, shape, cfg.chunk)?),
            None => None,
        };
        Ok((0..crops.len())
            .flat_map(|i| [pn[i] as f32, pm.as_ref().map_or(f32::NAN, |p| p[i] as f32)])
            .collect())
    };
    let vox: usize = shape.iter().product();
    // One full batch through each model before saying hello: the first pass at a batch size
    // builds oneDNN's primitives and the allocator's pools (measured: the first batch of 64
    // took 930 ms, the next ones 650-670), which would otherwise land on the first full
    // batch of real requests. Capped: a huge max_batch is primed with PRIME_MAX crops.
    probs(&vec![vec![0i16; vox]; cfg.chunk.clamp(1, PRIME_MAX)])?;
    write_json(
        stdout,
        &Hello {
            shape,
            device: format!("{device:?}").to_lowercase(),
            malignancy: mal.is_some(),
            pid: std::process::id(),
        },
    )?;
    while let Some((tag, body)) = read_frame(stdin)? {
        if tag != Tag::Crops {
            return Err(StageError::msg(format!(
                "expected a crops frame, got {tag:?}"
            )));
        }
        let answer = i16_values(&body)
            .filter(|v| v.len().is_multiple_of(vox))
            .ok_or_else(|| {
                StageError::msg(format!(
                    "a crops frame of {} bytes is not a whole number of {shape:?} i16 crops",
                    body.len()
                ))
            })
            .and_then(|v| {
                let crops: Vec<Vec<i16>> = v.chunks_exact(vox).map(<[i16]>::to_vec).collect();
                probs(&crops)
            });
        match answer {
            Ok(p) => write_frame(stdout, Tag::Probs, &f32_bytes(&p))?,
            Err(e) => write_json(
                stdout,
                &BatchError {
                    error: e.to_string(),
                    hint: e.hint(),
                },
            )?,
        }
    }
    Ok(())
}

//! The `luna-torch` side of [`crate::worker`]: read a request, run the kind's torch work with
//! events on stdout, report failure as one `luna:error` line. Also `luna-torch doctor`.

use std::io::Read;

use luna::engine::cache::Cache;
use luna::engine::context::{ContextParts, StageContext};
use luna::engine::error::StageError;
use luna::engine::events::EventSink;
use luna::worker::{WorkerDone, WorkerError, WorkerRequest, DONE_PREFIX, ERROR_PREFIX};

/// Entry point of the `luna-torch` binary; returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    crate::runtime::tune_allocator();
    // Before any tch call: ATen decides once whether CUDA exists (see runtime.rs).
    crate::runtime::init();
    match args.get(1).map(String::as_str) {
        Some("stage") => match serve_stage() {
            Ok(()) => 0,
            Err(e) => {
                let we = WorkerError {
                    message: e.to_string(),
                    hint: e.hint(),
                    no_space: luna::engine::error::out_of_space(&e),
                };
                println!(
                    "{ERROR_PREFIX}{}",
                    serde_json::to_string(&we).unwrap_or_default()
                );
                1
            }
        },
        Some("infer") => crate::infer::main(),
        Some("doctor") => {
            doctor();
            0
        }
        // `luna-torch bench-unet-step BATCH THREADS STEPS`: the same for the book's UNet.
        Some("bench-unet-step") => {
            let arg = |i: usize, d: usize| {
                args.get(i)
                    .and_then(|a| a.parse::<usize>().ok())
                    .unwrap_or(d)
            };
            match crate::nn::bench::bench_unet_step(arg(2, 16) as i64, arg(3, 2) as i32, arg(4, 10))
            {
                Ok(s) => {
                    println!("luna-torch unet train step: {s:.4} s/step");
                    0
                }
                Err(e) => {
                    eprintln!("bench-unet-step: {e}");
                    1
                }
            }
        }
        // `luna-torch bench-step BATCH THREADS STEPS`: one LunaModel training step timed in the
        // worker process itself, allocator settings included (bench/train.sh).
        Some("bench-step") => {
            let arg = |i: usize, d: usize| {
                args.get(i)
                    .and_then(|a| a.parse::<usize>().ok())
                    .unwrap_or(d)
            };
            match crate::nn::bench::bench_train_step(
                arg(2, 24) as i64,
                arg(3, 2) as i32,
                arg(4, 10),
            ) {
                Ok(s) => {
                    println!("luna-torch train step: {s:.4} s/step");
                    0
                }
                Err(e) => {
                    eprintln!("bench-step: {e}");
                    1
                }
            }
        }
        _ => {
            eprintln!("luna-torch runs torch stages for luna; it is not meant to be run by hand.\nusage: luna-torch stage < request.json | luna-torch infer (framed, see luna::serve::wire) | luna-torch doctor");
            2
        }
    }
}

fn doctor() {
    println!(
        "torch       {} (libtorch at {})",
        env!("LUNA_TORCH_VERSION"),
        env!("LUNA_LIBTORCH_LIB")
    );
    println!("torch threads {}", tch::get_num_threads());
    let (cuda, why) = crate::runtime::cuda_summary();
    println!("cuda        {}: {why}", if cuda { "yes" } else { "no" });
}

/// The process's peak resident set size in KiB (`getrusage`).
fn peak_rss_kib() -> i64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) == 0 {
            u.ru_maxrss
        } else {
            0
        }
    }
}

fn serve_stage() -> Result<(), StageError> {
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .map_err(|e| StageError::io("stdin", e))?;
    let req: WorkerRequest = serde_json::from_slice(&body)
        .map_err(|e| StageError::msg(format!("bad worker request: {e}")))?;
    let cache = Cache::open(&req.cache_root)?;
    let mut ctx = StageContext::new(ContextParts {
        stage: req.stage.clone(),
        pipeline: req.pipeline.clone(),
        out_dir: req.out_dir.clone(),
        workspace: req.workspace.clone(),
        upstream: req.upstream.clone(),
        bindings: req.bindings.clone(),
        tx: EventSink::Stdout,
        with: req.with.clone(),
        log_path: req.log_path.clone(),
        cache,
        partition_base: req.partition_base.clone(),
        threads: req.threads,
        key: req.key.clone(),
        stat: None,
    });
    let result = crate::kinds::run(&req.kind, &mut ctx);
    ctx.log(format!("worker: peak memory {} MiB", peak_rss_kib() / 1024));
    result?;
    let done = WorkerDone {
        partitions: ctx.partition_keys(),
        known_files: ctx.known_files(),
    };
    println!(
        "{DONE_PREFIX}{}",
        serde_json::to_string(&done).map_err(|e| StageError::msg(e.to_string()))?
    );
    Ok(())
}

//! The `luna-torch` side of [`crate::worker`]: read a request, run the kind's torch work with
//! events on stdout, report failure as one `luna:error` line. Also `luna-torch doctor`.

use std::io::BufRead;

use luna::engine::error::StageError;
use luna::worker::{follow_budget, report_error, report_result, WorkerRequest};

/// Entry point of the `luna-torch` binary; returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    crate::runtime::tune_allocator();
    // Before any tch call: ATen decides once whether CUDA exists (see runtime.rs).
    crate::runtime::init();
    match args.get(1).map(String::as_str) {
        Some("stage") => serve_stage(),
        Some("infer") => crate::infer::main(),
        Some("export") => export(&args[2..]),
        Some("doctor") => {
            doctor();
            0
        }
        // `luna-torch bench-unet-step BATCH THREADS STEPS`: the same for the book's UNet.
        Some("bench-unet-step") => bench(&args, (16, 2, 10), |b, t, n| {
            let s = crate::nn::bench::bench_unet_step(b, t, n)?;
            Ok(format!("luna-torch unet train step: {s:.4} s/step"))
        }),
        // `luna-torch bench-infer BATCH THREADS STEPS`: one eval-mode LunaModel forward pass
        // per step, time per crop (bench/serve.sh: batched vs single-crop model cost).
        Some("bench-infer") => bench(&args, (64, 2, 5), |b, t, n| {
            let s = crate::nn::bench::bench_infer(b, t, n)?;
            Ok(format!("luna-torch infer: {:.3} ms/crop", s * 1000.0))
        }),
        // `luna-torch bench-step BATCH THREADS STEPS`: one LunaModel training step timed in the
        // worker process itself, allocator settings included (bench/train.sh).
        Some("bench-step") => bench(&args, (24, 2, 10), |b, t, n| {
            let s = crate::nn::bench::bench_train_step(b, t, n)?;
            Ok(format!("luna-torch train step: {s:.4} s/step"))
        }),
        _ => {
            eprintln!("luna-torch runs torch stages for luna; it is not meant to be run by hand.\nusage: luna-torch stage < request.json | luna-torch infer (framed, see luna::serve::wire) | luna-torch export ARTIFACT_DIR [--torchscript FILE] [--state-dict FILE] | luna-torch doctor");
            2
        }
    }
}

/// Runs a bench subcommand on its positional BATCH THREADS STEPS (`defaults` where absent or
/// not numbers), prints its result line or its error; returns the exit code.
fn bench(
    args: &[String],
    defaults: (usize, usize, usize),
    run: impl FnOnce(i64, i32, usize) -> Result<String, crate::nn::bench::BenchError>,
) -> i32 {
    let num = |i: usize, d: usize| {
        args.get(i)
            .and_then(|a| a.parse::<usize>().ok())
            .unwrap_or(d)
    };
    let (b, t, n) = defaults;
    match run(num(2, b) as i64, num(3, t) as i32, num(4, n)) {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => {
            eprintln!("{}: {e}", args.get(1).map_or("bench", String::as_str));
            1
        }
    }
}

/// `luna-torch export ARTIFACT_DIR [--torchscript FILE] [--state-dict FILE]` (run by `luna
/// export`, which checks the stage and its artifact first): prints `exported <architecture>`,
/// or the error on stderr and exits 1.
fn export(args: &[String]) -> i32 {
    let mut targets = crate::nn::export::ExportTargets::default();
    let mut dir = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let slot = match a.as_str() {
            "--torchscript" => &mut targets.torchscript,
            "--state-dict" => &mut targets.state_dict,
            _ if dir.is_none() => {
                dir = Some(std::path::PathBuf::from(a));
                continue;
            }
            _ => {
                eprintln!("error: luna-torch export: unexpected argument {a:?}");
                return 2;
            }
        };
        *slot = it.next().map(std::path::PathBuf::from);
    }
    let Some(dir) = dir else {
        eprintln!("usage: luna-torch export ARTIFACT_DIR [--torchscript FILE] [--state-dict FILE]");
        return 2;
    };
    match crate::nn::export::export(&dir, &targets) {
        Ok(arch) => {
            println!("exported {arch}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
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

/// `luna-torch stage`: the request is stdin's first line; the rest of stdin carries the
/// stage's thread-budget changes (`luna::worker::follow_budget`) while the stage runs.
fn serve_stage() -> i32 {
    let mut stdin = std::io::BufReader::new(std::io::stdin());
    let mut body = String::new();
    let req = stdin
        .read_line(&mut body)
        .map_err(|e| StageError::io("stdin", e))
        .and_then(|_| {
            serde_json::from_str::<WorkerRequest>(&body)
                .map_err(|e| StageError::msg(format!("bad worker request: {e}")))
        });
    let (mut ctx, kind) = match req.and_then(|r| Ok((r.context()?, r.kind))) {
        Ok(c) => c,
        Err(e) => {
            report_error(&e);
            return 1;
        }
    };
    let budget = ctx.thread_budget().clone();
    // detached: it ends with stdin, or with the process
    std::thread::spawn(move || {
        follow_budget(stdin, &budget, |line| eprintln!("{line}"));
    });
    let result = crate::kinds::run(&kind, &mut ctx);
    ctx.log(format!("worker: peak memory {} MiB", peak_rss_kib() / 1024));
    report_result(result, &ctx)
}

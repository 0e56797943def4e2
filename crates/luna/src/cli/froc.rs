//! `luna froc SUBMISSION.csv --annotations A --excluded E --seriesuids S [--out DIR]`: score
//! any LUNA16 submission with the official FROC/CPM rules (`froc` module, the same code as the
//! `evaluate_froc` stage) and write the same files into DIR.
//!
//! Everything is read and scored before DIR is created, so bad input (exit 2, one line with
//! `file:line` and a hint) leaves nothing behind. DIR must not hold the submission itself as
//! `submission.csv` (it would be overwritten).

use std::path::{Path, PathBuf};

use clap::Args;

use super::CliError;
use crate::froc::{evaluate, summary, write_outputs, FrocError, FrocInput, FrocOptions};

/// Arguments of `luna froc`.
#[derive(Debug, Args)]
pub struct FrocArgs {
    /// The submission: CSV `seriesuid,coordX,coordY,coordZ,probability` (world mm).
    submission: PathBuf,
    /// annotations.csv (the included nodules).
    #[arg(long, value_name = "FILE")]
    annotations: PathBuf,
    /// annotations_excluded.csv (irrelevant findings: marks on them are ignored).
    #[arg(long, value_name = "FILE")]
    excluded: PathBuf,
    /// seriesuids.csv (the evaluated scans, one uid per line, no header).
    #[arg(long, value_name = "FILE")]
    seriesuids: PathBuf,
    /// Output directory (created).
    #[arg(long, value_name = "DIR", default_value = "froc")]
    out: PathBuf,
    /// Marks kept per scan (the official script's 100; 0 keeps all).
    #[arg(long, default_value_t = 100)]
    max_marks: usize,
    /// Bootstrap rounds (0: none).
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Seed of the bootstrap's resampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn bad_input(e: FrocError) -> CliError {
    CliError::usage(e.to_string(), e.hint())
}

fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Runs the command.
pub fn cmd(a: FrocArgs) -> Result<i32, CliError> {
    let t = std::time::Instant::now();
    let input = FrocInput::load(
        &a.submission,
        &a.annotations,
        Some(&a.excluded),
        &a.seriesuids,
    )
    .map_err(bad_input)?;
    if same_file(&a.out.join("submission.csv"), &a.submission) {
        return Err(CliError::usage(
            format!(
                "{}: the output directory {} would overwrite the submission with its copy",
                a.submission.display(),
                a.out.display()
            ),
            Some("choose another --out directory".into()),
        ));
    }
    let opts = FrocOptions {
        max_marks: a.max_marks,
        bootstrap: a.bootstrap,
        seed: a.seed,
        ..FrocOptions::default()
    };
    let r = evaluate(&input, opts).map_err(bad_input)?;
    std::fs::create_dir_all(&a.out).map_err(|e| {
        CliError::failed(
            format!("cannot create {}: {e}", a.out.display()),
            Some("choose a writable --out directory".into()),
        )
    })?;
    write_outputs(&a.out, &input, &r, Vec::new())
        .map_err(|e| CliError::failed(e.to_string(), e.hint()))?;
    for line in summary(&r) {
        println!("{line}");
    }
    eprintln!(
        "{:>12} [{:>8.2}s] {}",
        "Finished",
        t.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(0)
}

//! `luna doctor`: what luna was built with and what it finds at run time — the first thing to
//! run when something is off.

use super::CliError;

/// Runs the command.
pub fn cmd() -> Result<i32, CliError> {
    println!("luna        {}", env!("CARGO_PKG_VERSION"));
    let (maj, min, rel) = hdf5::library_version();
    println!("hdf5        {maj}.{min}.{rel} (zstd filter 32015 built in)");
    println!("parquet     60 (low-level API, zstd)");
    println!(
        "threads     {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    match crate::worker::worker_binary() {
        Ok(bin) => match std::process::Command::new(&bin).arg("doctor").output() {
            Ok(out) if out.status.success() => print!("{}", String::from_utf8_lossy(&out.stdout)),
            Ok(out) => println!(
                "torch       worker {} failed: {}",
                bin.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => println!("torch       cannot run worker {}: {e}", bin.display()),
        },
        Err(e) => println!("torch       not available: {e}"),
    }
    Ok(0)
}

//! The `luna` binary: load the CUDA backend first (before any tch call), then run the CLI.

fn main() {
    std::process::exit(luna::cli::run(std::env::args_os()));
}

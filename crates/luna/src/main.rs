//! The `luna` binary: a thin shell around [`luna::cli::run`], which returns the exit code.
//! It does not link libtorch (see `worker.rs`), so every command starts in milliseconds.

fn main() {
    // Behave like a Unix tool when the reader goes away (`luna runs | head`): exit quietly
    // instead of panicking on a write to a closed pipe.
    // SAFETY: setting a signal disposition before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(luna::cli::run(std::env::args_os()));
}

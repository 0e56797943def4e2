//! `luna-torch`: the worker process that runs torch stages for `luna` (see `worker.rs`).

fn main() {
    std::process::exit(luna::worker_serve::main(std::env::args().collect()));
}

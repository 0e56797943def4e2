//! `luna-torch`: the worker process that runs torch stages for `luna` (see `luna::worker`).

fn main() {
    std::process::exit(luna_torch::serve::main(std::env::args().collect()));
}

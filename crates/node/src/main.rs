//! The `faultline-node` binary: a thin wrapper around the `faultline_node` library.

fn main() {
    eprintln!("faultline-node: not built yet");
    std::process::exit(3);
}

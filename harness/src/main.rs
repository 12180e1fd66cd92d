//! The `faultline` binary: the controller's command line.

fn main() {
    eprintln!("faultline: not built yet");
    std::process::exit(3);
}

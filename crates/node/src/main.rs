//! The `faultline-node` binary: a thin wrapper around [`faultline_node::main_with_args`].

fn main() -> std::process::ExitCode {
    faultline_node::main_with_args(std::env::args_os())
}

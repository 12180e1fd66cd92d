//! The `faultline-node` binary: a thin wrapper around [`faultline_node::main_with_args`].

fn main() -> std::process::ExitCode {
    // `faultline-node node ARGS` is `faultline-node ARGS`: the same command
    // line as `faultline node ARGS`, so either program can be given as
    // `faultline run --node-bin` for the built-in spec.
    let mut args: Vec<_> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "node") {
        args.remove(1);
    }
    faultline_node::main_with_args(args)
}

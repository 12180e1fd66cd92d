//! The `faultline` binary: the controller's command line.
//!
//! Thin by design: clap parses the raw arguments, each subcommand's library
//! code validates them and does the work, and this file maps results to exit
//! codes. Adding a subcommand is a variant in [`Command`] and one match arm.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit code for an error: unreadable file, bad flags, internal failure.
const EXIT_ERROR: u8 = 3;

/// faultline: a Jepsen-style fault-injection harness.
#[derive(Debug, Parser)]
#[command(name = "faultline", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check history files (linearizability, set, counter).
    Check(faultline::check::CheckArgs),
    /// Work with history files.
    #[command(subcommand)]
    History(HistoryCommand),
}

#[derive(Debug, Subcommand)]
enum HistoryCommand {
    /// Convert a history to another format.
    Convert(faultline::convert::ConvertArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { 0 };
            // Printing can only fail if stdout/stderr are gone; nothing to do then.
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result: anyhow::Result<u8> = match cli.command {
        Command::Check(args) => args.into_config().map(|cfg| faultline::check::run(&cfg)),
        Command::History(HistoryCommand::Convert(args)) => {
            faultline::convert::run(&args).map(|()| 0)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("faultline: error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

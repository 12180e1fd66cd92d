//! The `faultline` binary: the controller's command line.
//!
//! Thin by design: clap parses the raw arguments, each subcommand's library
//! code validates them and does the work, and this file maps results to exit
//! codes. Adding a subcommand is a variant in [`Command`] and one match arm.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit code for an error: unreadable file, bad flags, internal failure.
const EXIT_ERROR: u8 = 3;

/// Exit code for bad arguments (clap errors and failed validation).
const EXIT_USAGE: u8 = 4;

/// faultline: a Jepsen-style fault-injection harness.
#[derive(Debug, Parser)]
#[command(
    name = "faultline",
    version,
    about,
    after_help = "Exit codes: 0 valid, 1 invalid, 2 unknown, 3 harness or cluster error, 4 bad arguments."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check history files (linearizability, set, counter).
    Check(faultline::check::CheckArgs),
    /// Start a cluster, inject faults, drive clients, check and store the run.
    #[command(
        after_help = "Stores store/<workload>/<timestamp>/ with history.jsonl, nemesis.jsonl, \
config.json, results.json and nodes/ (logs and data); store/latest points at the newest run.\n\
Exit codes: 0 valid, 1 invalid, 2 unknown (or interrupted), 3 harness or cluster error, 4 bad arguments."
    )]
    Run(faultline::run::RunArgs),
    /// Re-check a stored run (a run folder, or `latest`).
    #[command(after_help = "Exit codes: 0 valid, 1 invalid, 2 unknown, 3 error, 4 bad arguments.")]
    Analyze(faultline::run::AnalyzeArgs),
    /// Closed-loop benchmark of faultline-node and etcd with the same client code, no faults.
    Bench(faultline::sut::bench::DbBenchArgs),
    /// Measure the fault proxy's added latency (pass mode) and exit.
    #[command(hide = true)]
    BenchProxy(faultline::bench::BenchArgs),
    /// Write junit.xml and summary.md from ci/nightly.sh's run table.
    #[command(hide = true)]
    NightlyReport(faultline::nightly::NightlyReportArgs),
    /// Work with history files.
    #[command(subcommand)]
    History(HistoryCommand),
    /// Regenerate latency.hgrm, the SVG plots and report.html of a stored run.
    Report(faultline::report::ReportArgs),
    /// List the workloads and nemeses with one line each.
    List,
}

#[derive(Debug, Subcommand)]
enum HistoryCommand {
    /// Convert a history to another format.
    Convert(faultline::convert::ConvertArgs),
}

fn main() -> ExitCode {
    // Hidden node mode: `faultline node ARGS` runs a faultline-node in this
    // process, so `faultline run` needs no separately built node program.
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == "node") {
        let rest = std::iter::once(std::ffi::OsString::from("faultline-node")).chain(args);
        return faultline_node::main_with_args(rest);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `check` promises exit 3 for bad flags (issue 4); the rest use 4.
            let check = std::env::args().nth(1).is_some_and(|a| a == "check");
            let code = match (e.use_stderr(), check) {
                (false, _) => 0,
                (true, true) => EXIT_ERROR,
                (true, false) => EXIT_USAGE,
            };
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
        Command::Report(args) => faultline::report::run(&args),
        Command::List => {
            print!("{}", faultline::run::list());
            Ok(0)
        }
        Command::Run(args) => faultline::run::run(&args).map(|o| o.exit),
        Command::Analyze(args) => faultline::run::analyze(&args),
        Command::Bench(args) => faultline::sut::bench::run(&args).map(|()| 0),
        Command::BenchProxy(args) => faultline::bench::run(&args).map(|()| 0),
        Command::NightlyReport(args) => faultline::nightly::run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("faultline: error: {e:#}");
            if e.downcast_ref::<faultline::run::UsageError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(EXIT_ERROR)
            }
        }
    }
}

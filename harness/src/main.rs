//! The `faultline` binary: the controller's command line.
//!
//! Thin by design: clap parses the raw arguments, each subcommand's library
//! code validates them and does the work, and this file maps results to exit
//! codes. Adding a subcommand is a variant in [`Command`] and one match arm.

use clap::{Parser, Subcommand};
use faultline::exit::{Exit, help_line};
use std::process::ExitCode;

/// faultline: a Jepsen-style fault-injection harness.
#[derive(Debug, Parser)]
#[command(name = "faultline", version, about, after_help = help_line())]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check history files (linearizability, set, counter).
    Check(faultline::check::CheckArgs),
    /// Start a cluster, inject faults, drive clients, check and store the run.
    #[command(after_help = format!(
        "Stores store/<workload>/<timestamp>/ with history.jsonl, nemesis.jsonl, \
config.json, results.json, nodes/ (logs and data) and the report; store/latest points at the newest run.\n{}",
        help_line()
    ))]
    Run(faultline::settings::RunArgs),
    /// Re-check a stored run (a run folder, or `latest`).
    #[command(after_help = help_line())]
    Analyze(faultline::analyze::AnalyzeArgs),
    /// Closed-loop benchmark of faultline-node and etcd, no faults.
    Bench(faultline::dbbench::DbBenchArgs),
    /// Measure the fault proxy's added latency (pass mode) and exit.
    #[command(hide = true)]
    BenchProxy(faultline::bench::BenchArgs),
    /// Write junit.xml and summary.md from ci/nightly.sh's run table.
    #[command(hide = true)]
    NightlyReport(faultline::nightly::NightlyReportArgs),
    /// Write mutation.md and junit.xml from ci/mutation.sh's result tables.
    #[command(hide = true)]
    MutationReport(faultline::mutation::MutationReportArgs),
    /// Work with history files.
    #[command(subcommand)]
    History(HistoryCommand),
    /// Regenerate latency.hgrm, the SVG plots and report.html of a stored run.
    Report(faultline::report::ReportArgs),
    /// List the workloads and nemeses with one line each.
    List,
    /// Browse the stored runs in a browser (127.0.0.1 only).
    Serve(faultline::serve::ServeArgs),
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
    match args.nth(1) {
        Some(a) if a == "node" => {
            let rest = std::iter::once(std::ffi::OsString::from("faultline-node")).chain(args);
            return faultline_node::main_with_args(rest);
        }
        // Hidden: the disk nemesis's watchdog (see `supervisor::UnmountWatch`).
        Some(a) if a == "unmount-watch" => {
            let mounts: Vec<std::path::PathBuf> = args.map(Into::into).collect();
            return ExitCode::from(faultline::supervisor::unmount_watch(&mounts));
        }
        _ => {}
    }
    // `check` promises exit 3 for bad flags (its issue predates the table's
    // usage code); everything else exits 4.
    let check = std::env::args().nth(1).is_some_and(|a| a == "check");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = match (e.use_stderr(), check) {
                (false, _) => 0,
                (true, true) => Exit::Error.code(),
                (true, false) => Exit::Usage.code(),
            };
            // Printing can only fail if stdout/stderr are gone; nothing to do then.
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result: anyhow::Result<Exit> = match cli.command {
        Command::Check(args) => args.into_config().map(|cfg| faultline::check::run(&cfg)),
        Command::History(HistoryCommand::Convert(args)) => {
            faultline::convert::run(&args).map(|()| Exit::Valid)
        }
        Command::Report(args) => faultline::report::run(&args).map(|()| Exit::Valid),
        Command::List => {
            print!("{}", faultline::list::list());
            Ok(Exit::Valid)
        }
        Command::Run(args) => faultline::run::run(&args).map(|o| o.exit),
        Command::Analyze(args) => faultline::analyze::analyze(&args),
        Command::Bench(args) => faultline::dbbench::run(&args).map(|()| Exit::Valid),
        Command::BenchProxy(args) => faultline::bench::run(&args).map(|()| Exit::Valid),
        Command::NightlyReport(args) => faultline::nightly::run(&args),
        Command::MutationReport(args) => faultline::mutation::run(&args),
        Command::Serve(args) => faultline::serve::run(&args),
    };
    match result {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("faultline: error: {e:#}");
            let exit = faultline::exit::of_error(&e);
            ExitCode::from(if check { Exit::Error } else { exit }.code())
        }
    }
}

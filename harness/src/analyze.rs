//! `faultline analyze`: re-checks a stored run's history with its
//! workload's checker and rewrites the verdict in `results.json`.

use std::path::PathBuf;

use anyhow::{Context as _, Result};

use crate::exit::{Exit, usage};
use crate::store::{self, RunDir};
use crate::verdict;

/// `faultline analyze` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct AnalyzeArgs {
    /// A run folder, or `latest` (in --store).
    #[arg(default_value = "latest")]
    pub run: String,
    /// Directory of stored runs (for `latest`).
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
}

/// Re-checks `history.jsonl`, updates `results.json`, prints the verdict.
pub fn analyze(args: &AnalyzeArgs) -> Result<Exit> {
    let path = store::resolve(&args.run, &args.store);
    let dir = RunDir::open(&path).map_err(|e| usage(format!("{e:#}")))?;
    let config = dir
        .read_config()
        .map_err(|e| usage(format!("{e:#}")))?
        .ok_or_else(|| usage(format!("{} has no config.json", path.display())))?;
    let workload =
        faultline_workloads::by_name(&config.settings.workload).map_err(anyhow::Error::msg)?;
    let hpath = dir.history();
    let (history, _) = faultline_history::read_path(&hpath, Some(faultline_history::Format::Jsonl))
        .with_context(|| format!("cannot read {}", hpath.display()))?;
    for w in &history.warnings {
        eprintln!("faultline: {}: {w}", hpath.display());
    }
    let j = verdict::judge(workload.as_ref(), &history.events);
    let exit = Exit::of(&j.verdict);
    if let Some(mut results) = dir.read_results()? {
        results.verdict = j.verdict.name().to_string();
        results.checker = j.detail.clone();
        results.exit_code = exit.code();
        dir.write_results(&results)?;
    }
    println!("{}: {} events", path.display(), history.events.len());
    println!("  checker   {}", j.summary);
    let sentence = match exit {
        Exit::Valid => format!(
            "Valid: the operations of this history {}.",
            j.checker.holds()
        ),
        Exit::Invalid => format!(
            "Invalid: the history {}; see results.json.",
            j.checker.broken()
        ),
        _ => "Unknown: the checker could not decide.".to_string(),
    };
    println!("{sentence} (exit {})", exit.code());
    Ok(exit)
}

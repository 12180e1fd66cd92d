//! `faultline check`: check history files and report one verdict line per file.

use crate::convert::InputFormat;
use crate::exit::Exit;
use anyhow::{Context, Result, bail};
use faultline_checkers::{Checker, LinOptions, ModelKind, Verdict, stats};
use faultline_history::{Format, Op, pair, read_path};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

/// What to check a history for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelArg {
    /// Linearizable single register (per key): read, write.
    Register,
    /// Linearizable register with compare-and-set.
    CasRegister,
    /// Linearizable independent keys (read/get, write/put, cas, append of strings).
    Kv,
    /// Linearizable per-key lists: append one element, read the whole list.
    Append,
    /// Linearizable transactions over named registers.
    MultiRegister,
    /// Linearizable lock: acquire, release.
    Mutex,
    /// Set: adds, then a final read; lost and unexpected elements.
    Set,
    /// Counter: reads within the bounds of acknowledged and attempted adds.
    Counter,
}

impl ModelArg {
    /// The checker this names.
    pub fn checker(self) -> Checker {
        match self {
            ModelArg::Register => Checker::Linearizable(ModelKind::Register),
            ModelArg::CasRegister => Checker::Linearizable(ModelKind::CasRegister),
            ModelArg::Kv => Checker::Linearizable(ModelKind::Kv),
            ModelArg::Append => Checker::Linearizable(ModelKind::Append),
            ModelArg::MultiRegister => Checker::Linearizable(ModelKind::MultiRegister),
            ModelArg::Mutex => Checker::Linearizable(ModelKind::Mutex),
            ModelArg::Set => Checker::Set,
            ModelArg::Counter => Checker::Counter,
        }
    }

    fn name(self) -> &'static str {
        self.checker().name()
    }
}

/// Raw arguments of `faultline check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// History files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Input format (auto: from the file name and first line).
    #[arg(long, value_enum, default_value = "auto")]
    pub format: InputFormat,
    /// Model or checker (default: guessed from the ops' functions).
    #[arg(long, value_enum)]
    pub model: Option<ModelArg>,
    /// Give up with "unknown" after this many seconds per file.
    #[arg(long, default_value_t = 60.0)]
    pub time_limit: f64,
    /// Threads for checking keys in parallel (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Initial register value as JSON (default: 0 for EDN, "" for porcupine-kv, else null).
    #[arg(long)]
    pub initial: Option<String>,
    /// Give up with "unknown" when the search's memo grows past this many MiB.
    #[arg(long, default_value_t = 4096)]
    pub memory_limit_mib: u64,
}

/// Validated configuration of `faultline check`.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// Files to check.
    pub files: Vec<PathBuf>,
    /// Forced format, or detect.
    pub format: Option<Format>,
    /// Forced model, or guess.
    pub model: Option<ModelArg>,
    /// Per-file time limit.
    pub time_limit: Duration,
    /// Threads.
    pub threads: usize,
    /// JSON output.
    pub json: bool,
    /// Initial value override.
    pub initial: Option<serde_json::Value>,
    /// Memo budget in bytes.
    pub memory_limit: usize,
}

impl CheckArgs {
    /// Validates the raw arguments.
    pub fn into_config(self) -> Result<CheckConfig> {
        if !(self.time_limit.is_finite() && self.time_limit > 0.0) {
            bail!(
                "--time-limit must be a positive number of seconds, not {}",
                self.time_limit
            );
        }
        let threads = match self.threads {
            Some(0) => bail!("--threads must be at least 1"),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let initial = match &self.initial {
            Some(s) => Some(serde_json::from_str(s).with_context(|| {
                format!("--initial {s:?} is not JSON (e.g. 0, null, \"\", {{\"x\":0}})")
            })?),
            None => None,
        };
        if self.memory_limit_mib == 0 {
            bail!("--memory-limit-mib must be at least 1");
        }
        Ok(CheckConfig {
            files: self.files,
            format: self.format.format(),
            model: self.model,
            time_limit: Duration::from_secs_f64(self.time_limit),
            threads,
            json: self.json,
            initial,
            memory_limit: usize::try_from(self.memory_limit_mib.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
        })
    }
}

/// Guesses the checker from the ops' functions and the format.
pub fn guess_model(ops: &[Op], format: Format) -> ModelArg {
    let has = |f: &str| ops.iter().any(|o| o.f == f);
    let list_reads = ops
        .iter()
        .any(|o| (o.f == "read" || o.f == "get") && o.value.is_array());
    if has("txn") {
        ModelArg::MultiRegister
    } else if has("acquire") || has("release") {
        ModelArg::Mutex
    } else if has("add") {
        if list_reads {
            ModelArg::Set
        } else {
            ModelArg::Counter
        }
    } else if has("append") && list_reads {
        ModelArg::Append
    } else if format == Format::PorcupineKv || has("append") || ops.iter().any(|o| o.key.is_some())
    {
        ModelArg::Kv
    } else {
        ModelArg::CasRegister
    }
}

/// The outcome for one file.
#[derive(Debug, Clone)]
pub struct FileResult {
    /// The file.
    pub path: PathBuf,
    /// Its verdict, or the error that stopped it.
    pub outcome: Result<Checked, String>,
}

/// A checked file.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The detected or given format.
    pub format: Format,
    /// The checker used.
    pub model: ModelArg,
    /// The verdict.
    pub verdict: Verdict,
    /// Check time (parse excluded), ms.
    pub check_ms: f64,
    /// Witness shrinking time, ms.
    pub shrink_ms: f64,
    /// Ops in the history.
    pub ops: usize,
    /// Independent parts checked (linearizability only).
    pub partitions: usize,
    /// Reader warnings.
    pub warnings: Vec<String>,
    /// Per-f statistics as JSON.
    pub stats: serde_json::Value,
}

/// Checks one file.
pub fn check_file(cfg: &CheckConfig, path: &std::path::Path) -> Result<Checked> {
    let (history, format) = read_path(path, cfg.format)?;
    let name = path.display().to_string();
    let ops = pair(&name, &history.events)?;
    let model = cfg.model.unwrap_or_else(|| guess_model(&ops, format));
    let st = serde_json::to_value(stats(&ops)).unwrap_or_default();
    let mut checked = Checked {
        format,
        model,
        verdict: Verdict::Valid,
        check_ms: 0.0,
        shrink_ms: 0.0,
        ops: ops.len(),
        partitions: 1,
        warnings: history.warnings,
        stats: st,
    };
    let mut opts = LinOptions::for_format(
        format,
        model.checker().model().unwrap_or(ModelKind::Register),
    );
    if let Some(init) = &cfg.initial {
        opts.initial = init.clone();
    }
    opts.time_limit = Some(cfg.time_limit);
    opts.threads = cfg.threads;
    opts.memo_limit_bytes = cfg.memory_limit;
    let j = faultline_checkers::check(model.checker(), &ops, &opts)
        .with_context(|| format!("{name}: cannot check as {}", model.name()))?;
    checked.verdict = j.verdict;
    checked.check_ms = j.check_ms;
    checked.shrink_ms = j.shrink_ms;
    checked.partitions = j.partitions.max(1);
    Ok(checked)
}

/// The exit for a set of results: an error if any, else invalid if any,
/// else unknown if any, else valid.
pub fn exit_code(results: &[FileResult]) -> Exit {
    let verdicts = || results.iter().filter_map(|r| r.outcome.as_ref().ok());
    if results.iter().any(|r| r.outcome.is_err()) {
        Exit::Error
    } else if verdicts().any(|c| matches!(c.verdict, Verdict::Invalid { .. })) {
        Exit::Invalid
    } else if verdicts().any(|c| matches!(c.verdict, Verdict::Unknown { .. })) {
        Exit::Unknown
    } else {
        Exit::Valid
    }
}

/// Renders results as text: one line per file, the witness in words below invalid ones.
pub fn render_text(results: &[FileResult]) -> String {
    let mut out = String::new();
    for r in results {
        let path = r.path.display();
        match &r.outcome {
            Err(e) => out.push_str(&format!("{path}: error: {e}\n")),
            Ok(c) => {
                let what = format!("{}, {} ops, {} parts", c.model.name(), c.ops, c.partitions);
                match &c.verdict {
                    Verdict::Valid => {
                        out.push_str(&format!("{path}: valid ({what}) in {:.1} ms\n", c.check_ms))
                    }
                    Verdict::Unknown { reason } => out.push_str(&format!(
                        "{path}: unknown ({what}) in {:.1} ms: {reason}\n",
                        c.check_ms
                    )),
                    Verdict::Invalid { key, witness } => {
                        out.push_str(&format!(
                            "{path}: INVALID ({what}{}) in {:.1} ms (witness shrunk in {:.1} ms)\n",
                            key.as_ref()
                                .map(|k| format!(", key {k:?}"))
                                .unwrap_or_default(),
                            c.check_ms,
                            c.shrink_ms
                        ));
                        for line in witness.explanation.lines() {
                            out.push_str("    ");
                            out.push_str(line);
                            out.push('\n');
                        }
                    }
                }
            }
        }
    }
    out
}

/// Renders results as one JSON document.
pub fn render_json(results: &[FileResult]) -> serde_json::Value {
    let files: Vec<serde_json::Value> = results
        .iter()
        .map(|r| match &r.outcome {
            Err(e) => json!({"path": r.path.display().to_string(), "error": e}),
            Ok(c) => json!({
                "path": r.path.display().to_string(),
                "format": c.format.name(),
                "model": c.model.name(),
                "result": c.verdict,
                "verdict": c.verdict.name(),
                "check_ms": c.check_ms,
                "shrink_ms": c.shrink_ms,
                "ops": c.ops,
                "partitions": c.partitions,
                "warnings": c.warnings,
                "stats": c.stats,
            }),
        })
        .collect();
    json!({"files": files, "exit_code": exit_code(results).code()})
}

/// Runs `faultline check`: checks every file, prints, and returns the exit.
pub fn run(cfg: &CheckConfig) -> Exit {
    let mut results = Vec::new();
    for path in &cfg.files {
        let outcome = check_file(cfg, path).map_err(|e| format!("{e:#}"));
        if let Ok(c) = &outcome
            && !cfg.json
        {
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
        }
        if !cfg.json {
            let one = FileResult {
                path: path.clone(),
                outcome: outcome.clone(),
            };
            print!("{}", render_text(std::slice::from_ref(&one)));
        }
        results.push(FileResult {
            path: path.clone(),
            outcome,
        });
    }
    if cfg.json {
        println!("{}", render_json(&results));
    }
    exit_code(&results)
}

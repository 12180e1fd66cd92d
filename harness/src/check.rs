//! `faultline check`: check history files and report one verdict line per file.

use crate::convert::InputFormat;
use anyhow::{Context, Result, bail};
use faultline_checkers::{
    LinOptions, ModelKind, Verdict, check_counter, check_linearizable, check_set, stats,
};
use faultline_history::{Format, Op, pair, read_path};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Exit code: every file valid.
pub const EXIT_VALID: u8 = 0;
/// Exit code: some file invalid.
pub const EXIT_INVALID: u8 = 1;
/// Exit code: some file unknown, none invalid.
pub const EXIT_UNKNOWN: u8 = 2;
/// Exit code: an error (unreadable file, bad flags, unsupported ops).
pub const EXIT_ERROR: u8 = 3;

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
    fn lin(self) -> Option<ModelKind> {
        Some(match self {
            ModelArg::Register => ModelKind::Register,
            ModelArg::CasRegister => ModelKind::CasRegister,
            ModelArg::Kv => ModelKind::Kv,
            ModelArg::Append => ModelKind::Append,
            ModelArg::MultiRegister => ModelKind::MultiRegister,
            ModelArg::Mutex => ModelKind::Mutex,
            ModelArg::Set | ModelArg::Counter => return None,
        })
    }

    fn name(self) -> &'static str {
        match self.lin() {
            Some(m) => m.name(),
            None if self == ModelArg::Set => "set",
            None => "counter",
        }
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
    match model.lin() {
        Some(kind) => {
            let mut opts = LinOptions::for_format(format, kind);
            if let Some(init) = &cfg.initial {
                opts.initial = init.clone();
            }
            opts.time_limit = Some(cfg.time_limit);
            opts.threads = cfg.threads;
            opts.memo_limit_bytes = cfg.memory_limit;
            let report = check_linearizable(&ops, &opts)
                .with_context(|| format!("{name}: cannot check as {}", kind.name()))?;
            checked.verdict = report.verdict;
            checked.check_ms = report.check_ms;
            checked.shrink_ms = report.shrink_ms;
            checked.partitions = report.partitions;
        }
        None => {
            let start = Instant::now();
            checked.verdict = if model == ModelArg::Set {
                check_set(&ops).verdict
            } else {
                check_counter(&ops).verdict
            };
            checked.check_ms = start.elapsed().as_secs_f64() * 1000.0;
        }
    }
    Ok(checked)
}

/// The exit code for a set of results: 3 if any error, else 1 if any invalid,
/// else 2 if any unknown, else 0.
pub fn exit_code(results: &[FileResult]) -> u8 {
    let verdicts = || results.iter().filter_map(|r| r.outcome.as_ref().ok());
    if results.iter().any(|r| r.outcome.is_err()) {
        EXIT_ERROR
    } else if verdicts().any(|c| matches!(c.verdict, Verdict::Invalid { .. })) {
        EXIT_INVALID
    } else if verdicts().any(|c| matches!(c.verdict, Verdict::Unknown { .. })) {
        EXIT_UNKNOWN
    } else {
        EXIT_VALID
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
    json!({"files": files, "exit_code": exit_code(results)})
}

/// Runs `faultline check`: checks every file, prints, and returns the exit code.
pub fn run(cfg: &CheckConfig) -> u8 {
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

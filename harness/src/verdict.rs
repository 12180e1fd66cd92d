//! The run's verdict: checks a recorded history with the workload's checker
//! and condenses the answer for `results.json` and the summary.

use faultline_checkers::{LinOptions, ModelKind, check_linearizable};
use faultline_history::{Event, pair};
use faultline_workloads::Workload;
use serde_json::{Value, json};

/// Valid, invalid or unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The history satisfies the model.
    Valid,
    /// The history violates it.
    Invalid,
    /// The checker could not decide.
    Unknown,
}

impl Verdict {
    /// `valid`, `invalid` or `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Invalid => "invalid",
            Verdict::Unknown => "unknown",
        }
    }
}

/// A checked history.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// The verdict.
    pub verdict: Verdict,
    /// One line for the summary.
    pub summary: String,
    /// The checker's full output for `results.json`.
    pub detail: Value,
}

/// Checks `events` for the workload: pairs them into ops, then runs the
/// linearizability checker with the workload's model (keys checked apart).
pub fn check(workload: &dyn Workload, events: &[Event]) -> CheckReport {
    let model = match workload.name() {
        "register" | "kv" => ModelKind::CasRegister,
        other => {
            return CheckReport {
                verdict: Verdict::Unknown,
                summary: format!("no checker for workload {other}"),
                detail: Value::Null,
            };
        }
    };
    let ops = match pair("history.jsonl", events) {
        Ok(ops) => ops,
        Err(e) => {
            return CheckReport {
                verdict: Verdict::Unknown,
                summary: format!("history is malformed: {e}"),
                detail: json!({"error": e.to_string()}),
            };
        }
    };
    let mut opts = LinOptions::new(model);
    opts.initial = workload.initial_value();
    opts.threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    match check_linearizable(&ops, &opts) {
        Ok(r) => {
            let verdict = match &r.verdict {
                faultline_checkers::Verdict::Valid => Verdict::Valid,
                faultline_checkers::Verdict::Invalid { .. } => Verdict::Invalid,
                faultline_checkers::Verdict::Unknown { .. } => Verdict::Unknown,
            };
            let mut summary = format!(
                "{}: {} ops in {} key(s) checked in {:.0} ms",
                model.name(),
                r.ops,
                r.partitions,
                r.check_ms
            );
            match &r.verdict {
                faultline_checkers::Verdict::Invalid { key, witness } => {
                    summary.push_str(&format!(
                        "; not linearizable{}: {}",
                        key.as_ref()
                            .map(|k| format!(" (key {k})"))
                            .unwrap_or_default(),
                        witness.explanation
                    ));
                }
                faultline_checkers::Verdict::Unknown { reason } => {
                    summary.push_str(&format!("; undecided: {reason}"));
                }
                faultline_checkers::Verdict::Valid => {}
            }
            CheckReport {
                verdict,
                summary,
                detail: json!({
                    "model": model.name(),
                    "result": r.verdict,
                    "partitions": r.partitions,
                    "ops": r.ops,
                    "check_ms": r.check_ms,
                    "shrink_ms": r.shrink_ms,
                    "steps": r.steps,
                }),
            }
        }
        Err(e) => CheckReport {
            verdict: Verdict::Unknown,
            summary: format!("the checker failed: {e}"),
            detail: json!({"error": e.to_string()}),
        },
    }
}

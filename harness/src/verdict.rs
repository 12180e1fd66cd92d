//! The run's verdict: checks a recorded history with the workload's checker
//! and condenses the answer for `results.json` and the summary.

use faultline_checkers::{LinOptions, check_counter, check_linearizable, check_set};
use faultline_history::{Event, Op, pair};
use faultline_workloads::{Checker, Workload};
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
    /// What a valid history's operations satisfy, completing "the N
    /// operations of this history ..." (e.g. "are linearizable").
    pub holds: &'static str,
    /// What an invalid history breaks, completing "the history ..." (e.g.
    /// "is not linearizable").
    pub broken: &'static str,
}

const LIN_HOLDS: &str = "are linearizable";
const LIN_BROKEN: &str = "is not linearizable";

/// Checks `events` for the workload: pairs them into ops, then runs the
/// workload's checker (linearizability with its model, keys checked apart;
/// or the set or counter checker).
pub fn check(workload: &dyn Workload, events: &[Event]) -> CheckReport {
    let ops = match pair("history.jsonl", events) {
        Ok(ops) => ops,
        Err(e) => {
            return CheckReport {
                verdict: Verdict::Unknown,
                summary: format!("history is malformed: {e}"),
                detail: json!({"error": e.to_string()}),
                holds: LIN_HOLDS,
                broken: LIN_BROKEN,
            };
        }
    };
    let model = match workload.checker() {
        Checker::Linearizable(model) => model,
        Checker::Set => return set_report(&ops),
        Checker::Counter => return counter_report(&ops),
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
                holds: LIN_HOLDS,
                broken: LIN_BROKEN,
            }
        }
        Err(e) => CheckReport {
            verdict: Verdict::Unknown,
            summary: format!("the checker failed: {e}"),
            detail: json!({"error": e.to_string()}),
            holds: LIN_HOLDS,
            broken: LIN_BROKEN,
        },
    }
}

fn verdict_of(v: &faultline_checkers::Verdict) -> Verdict {
    match v {
        faultline_checkers::Verdict::Valid => Verdict::Valid,
        faultline_checkers::Verdict::Invalid { .. } => Verdict::Invalid,
        faultline_checkers::Verdict::Unknown { .. } => Verdict::Unknown,
    }
}

/// `; <explanation or reason>` for a verdict that is not valid.
fn why(v: &faultline_checkers::Verdict) -> String {
    match v {
        faultline_checkers::Verdict::Invalid { witness, .. } => {
            format!("; {}", witness.explanation)
        }
        faultline_checkers::Verdict::Unknown { reason } => format!("; undecided: {reason}"),
        faultline_checkers::Verdict::Valid => String::new(),
    }
}

fn set_report(ops: &[Op]) -> CheckReport {
    let r = check_set(ops);
    let summary = format!(
        "set: {} adds attempted, {} acknowledged, {} reads; lost {}, unexpected {}, duplicated {}, stale reads {}, indeterminate adds recovered {}{}",
        r.attempted,
        r.acknowledged,
        r.reads,
        r.lost.len(),
        r.unexpected.len(),
        r.duplicated.len(),
        r.stale_count,
        r.recovered.len(),
        why(&r.verdict)
    );
    CheckReport {
        verdict: verdict_of(&r.verdict),
        summary,
        detail: json!({
            "model": "set",
            "result": r.verdict,
            "ops": ops.len(),
            "set": {
                "attempted": r.attempted,
                "acknowledged": r.acknowledged,
                "reads": r.reads,
                "lost": r.lost,
                "unexpected": r.unexpected,
                "duplicated": r.duplicated,
                "stale_count": r.stale_count,
                "stale": r.stale,
                "recovered": r.recovered.len(),
                "never_read": r.never_read.len(),
            },
        }),
        holds: "form a valid set: no element lost, unexpected, duplicated or missing from a later read",
        broken: "breaks the set's guarantees",
    }
}

fn counter_report(ops: &[Op]) -> CheckReport {
    let r = check_counter(ops);
    let summary = format!(
        "counter: {} reads checked, {} out of bounds{}",
        r.reads,
        r.errors.len(),
        why(&r.verdict)
    );
    CheckReport {
        verdict: verdict_of(&r.verdict),
        summary,
        detail: json!({
            "model": "counter",
            "result": r.verdict,
            "ops": ops.len(),
            "counter": {
                "reads": r.reads,
                "errors": r.errors.len(),
            },
        }),
        holds: "keep every counter read within the acknowledged and attempted increments",
        broken: "has counter reads outside the acknowledged and attempted increments",
    }
}

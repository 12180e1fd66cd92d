//! A run's verdict: pairs the recorded history into operations and judges
//! them with the workload's checker, through the checkers' one dispatch.

use faultline_checkers::{Judgement, LinOptions, ModelKind, Verdict};
use faultline_history::{Event, pair};
use faultline_workloads::Workload;
use serde_json::json;

/// Judges `events` with `workload`'s checker. A malformed history or a
/// checker that cannot read an op gives an Unknown judgement saying why.
pub fn judge(workload: &dyn Workload, events: &[Event]) -> Judgement {
    let checker = workload.checker();
    let unknown = |summary: String, error: String| Judgement {
        checker,
        verdict: Verdict::Unknown {
            reason: summary.clone(),
        },
        summary,
        detail: json!({"error": error}),
        check_ms: 0.0,
        shrink_ms: 0.0,
        partitions: 0,
    };
    let ops = match pair("history.jsonl", events) {
        Ok(ops) => ops,
        Err(e) => return unknown(format!("history is malformed: {e}"), e.to_string()),
    };
    // The model comes from the checker; these are the run's options.
    let mut opts = LinOptions::new(ModelKind::Register);
    opts.initial = workload.initial_value();
    opts.threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let mut j = match faultline_checkers::check(checker, &ops, &opts) {
        Ok(j) => j,
        Err(e) => return unknown(format!("the checker failed: {e}"), e.to_string()),
    };
    // Jepsen's stats check: a kind that never succeeded was not exercised,
    // so a valid verdict would claim what the run cannot show.
    let idle = faultline_checkers::never_succeeded(&faultline_checkers::stats(&ops));
    if j.verdict == Verdict::Valid && !idle.is_empty() {
        let what: Vec<String> = idle
            .iter()
            .map(|(f, s)| {
                format!(
                    "no {f} succeeded ({} failed, {} indeterminate)",
                    s.fail, s.info
                )
            })
            .collect();
        let reason = format!(
            "{}: a run that never exercised an operation proves nothing about it",
            what.join("; ")
        );
        j.summary = format!("{}; stats: {reason}", j.summary);
        j.detail["stats_check"] = json!({"never_succeeded": what});
        j.verdict = Verdict::Unknown { reason };
    }
    j
}

/// The verdict's name: `valid`, `invalid` or `unknown`.
pub fn name(j: &Judgement) -> &'static str {
    j.verdict.name()
}

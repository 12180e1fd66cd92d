//! The set checker: elements added, then read back by a final read.

use crate::Verdict;
use faultline_history::{Op, Outcome};
use serde_json::Value as J;
use std::collections::BTreeSet;

/// What the set checker found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SetReport {
    /// Valid when nothing acknowledged is lost and nothing unexpected is read.
    pub verdict: Verdict,
    /// Adds attempted (not failed).
    pub attempted: usize,
    /// Adds acknowledged (`ok`).
    pub acknowledged: usize,
    /// Acknowledged adds missing from the final read.
    pub lost: Vec<J>,
    /// Elements read that no add ever attempted.
    pub unexpected: Vec<J>,
    /// Indeterminate adds that the final read shows.
    pub recovered: Vec<J>,
    /// Indeterminate adds the final read does not show (allowed).
    pub never_read: Vec<J>,
}

/// Checks `add` ops against the last successful `read` (a list or set of elements).
pub fn check_set(ops: &[Op]) -> SetReport {
    let key = |v: &J| v.to_string();
    let final_read = ops
        .iter()
        .filter(|o| o.f == "read" && o.outcome == Outcome::Ok)
        .max_by_key(|o| o.ret);
    let mut acked: Vec<&J> = Vec::new();
    let mut maybe: Vec<&J> = Vec::new();
    for o in ops.iter().filter(|o| o.f == "add") {
        match o.outcome {
            Outcome::Ok => acked.push(&o.value),
            Outcome::Info | Outcome::Pending => maybe.push(&o.invoke_value),
            Outcome::Fail => {}
        }
    }
    let mut report = SetReport {
        verdict: Verdict::Valid,
        attempted: acked.len() + maybe.len(),
        acknowledged: acked.len(),
        lost: Vec::new(),
        unexpected: Vec::new(),
        recovered: Vec::new(),
        never_read: Vec::new(),
    };
    let Some(read) = final_read else {
        report.verdict = Verdict::Unknown {
            reason: "no successful final read".into(),
        };
        return report;
    };
    let J::Array(seen) = &read.value else {
        report.verdict = Verdict::Unknown {
            reason: format!(
                "the final read (event {}) did not return a list",
                read.index
            ),
        };
        return report;
    };
    let seen_keys: BTreeSet<String> = seen.iter().map(key).collect();
    let attempted_keys: BTreeSet<String> = acked.iter().chain(&maybe).map(|v| key(v)).collect();
    report.lost = acked
        .iter()
        .filter(|v| !seen_keys.contains(&key(v)))
        .map(|v| (*v).clone())
        .collect();
    report.unexpected = seen
        .iter()
        .filter(|v| !attempted_keys.contains(&key(v)))
        .cloned()
        .collect();
    report.recovered = maybe
        .iter()
        .filter(|v| seen_keys.contains(&key(v)))
        .map(|v| (*v).clone())
        .collect();
    report.never_read = maybe
        .iter()
        .filter(|v| !seen_keys.contains(&key(v)))
        .map(|v| (*v).clone())
        .collect();
    if !report.lost.is_empty() || !report.unexpected.is_empty() {
        let witness = crate::Witness {
            op: None,
            prefix: Vec::new(),
            state: format!(
                "the final read (event {}) has {} elements",
                read.index,
                seen.len()
            ),
            minimal: Vec::new(),
            minimal_complete: true,
            explanation: format!(
                "{} acknowledged adds are missing from the final read (lost: {}); {} elements were read that were never added (unexpected: {}).",
                report.lost.len(),
                J::Array(report.lost.clone()),
                report.unexpected.len(),
                J::Array(report.unexpected.clone())
            ),
        };
        report.verdict = Verdict::Invalid {
            key: None,
            witness: Box::new(witness),
        };
    }
    report
}

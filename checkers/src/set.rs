//! The set checker: elements added, read back by reads during the run and a
//! final read; finds lost, unexpected, stale and duplicated elements.

use crate::{OpSummary, Verdict};
use faultline_history::{Op, Outcome};
use rustc_hash::FxHashMap;
use serde_json::Value as J;
use std::collections::BTreeSet;

/// At most this many missing elements are listed per stale read (all are counted).
const STALE_LIST_CAP: usize = 20;
/// At most this many stale reads are listed (all are counted).
const STALE_READS_CAP: usize = 20;

/// A read that lacks elements that were surely in the set before it began.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StaleRead {
    /// The read.
    pub read: OpSummary,
    /// How many elements it lacks.
    pub missing_count: usize,
    /// The first missing elements (at most 20), earliest known first.
    pub missing: Vec<J>,
}

/// What the set checker found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SetReport {
    /// Valid when nothing acknowledged is lost, nothing unexpected or
    /// duplicated is read, and no read is stale.
    pub verdict: Verdict,
    /// Adds attempted (not failed).
    pub attempted: usize,
    /// Adds acknowledged (`ok`).
    pub acknowledged: usize,
    /// Successful reads checked (the final one included).
    pub reads: usize,
    /// Acknowledged adds missing from the final read.
    pub lost: Vec<J>,
    /// Elements read that no add ever attempted.
    pub unexpected: Vec<J>,
    /// Elements that some read holds more than once.
    pub duplicated: Vec<J>,
    /// How many reads are stale.
    pub stale_count: usize,
    /// Stale reads (at most 20 listed).
    pub stale: Vec<StaleRead>,
    /// Indeterminate adds that the final read shows.
    pub recovered: Vec<J>,
    /// Indeterminate adds the final read does not show (allowed).
    pub never_read: Vec<J>,
}

fn summary(o: &Op) -> OpSummary {
    // A read's value can be thousands of elements; the witness names the op,
    // the missing elements are listed apart.
    let value = match &o.value {
        J::Array(xs) => J::String(format!("[{} elements]", xs.len())),
        v => v.clone(),
    };
    OpSummary {
        index: o.index,
        process: o.process,
        f: o.f.clone(),
        key: o.key.clone(),
        value,
        outcome: "ok".into(),
    }
}

/// Checks `add` ops against successful `read`s (each a list of elements;
/// a `null` read is the empty set).
///
/// - lost: an acknowledged add missing from the final read (the read that
///   completed last);
/// - unexpected: an element some read holds that no add attempted;
/// - duplicated: an element some read holds twice (adds are unique);
/// - stale: a read lacking an element that was surely present before the read
///   began: its add completed `ok`, or an earlier read that completed before
///   this one began held it.
pub fn check_set(ops: &[Op]) -> SetReport {
    let key = |v: &J| v.to_string();
    let mut acked: Vec<&Op> = Vec::new();
    let mut maybe: Vec<&J> = Vec::new();
    for o in ops.iter().filter(|o| o.f == "add") {
        match o.outcome {
            Outcome::Ok => acked.push(o),
            Outcome::Info | Outcome::Pending => maybe.push(&o.invoke_value),
            Outcome::Fail => {}
        }
    }
    let mut report = SetReport {
        verdict: Verdict::Valid,
        attempted: acked.len() + maybe.len(),
        acknowledged: acked.len(),
        reads: 0,
        lost: Vec::new(),
        unexpected: Vec::new(),
        duplicated: Vec::new(),
        stale_count: 0,
        stale: Vec::new(),
        recovered: Vec::new(),
        never_read: Vec::new(),
    };
    let mut reads: Vec<(&Op, &[J])> = Vec::new();
    for o in ops
        .iter()
        .filter(|o| o.f == "read" && o.outcome == Outcome::Ok)
    {
        match &o.value {
            J::Array(xs) => reads.push((o, xs)),
            J::Null => reads.push((o, &[])),
            _ => {
                report.verdict = Verdict::Unknown {
                    reason: format!("the read at event {} did not return a list", o.index),
                };
                return report;
            }
        }
    }
    report.reads = reads.len();
    let Some(&(final_read, seen)) = reads.iter().max_by_key(|(o, _)| o.ret) else {
        report.verdict = Verdict::Unknown {
            reason: "no successful final read".into(),
        };
        return report;
    };

    // Interned elements, and for each the position by which it was surely present.
    let mut ids: FxHashMap<String, usize> = FxHashMap::default();
    let mut elems: Vec<J> = Vec::new();
    let mut intern = |v: &J, elems: &mut Vec<J>| -> usize {
        *ids.entry(key(v)).or_insert_with(|| {
            elems.push(v.clone());
            elems.len() - 1
        })
    };
    let acked_ids: Vec<usize> = acked
        .iter()
        .map(|o| intern(&o.invoke_value, &mut elems))
        .collect();
    let maybe_ids: Vec<usize> = maybe.iter().map(|v| intern(v, &mut elems)).collect();
    let mut attempted = vec![false; elems.len()];
    for &i in acked_ids.iter().chain(&maybe_ids) {
        attempted[i] = true;
    }
    let mut read_ids: Vec<Vec<usize>> = reads
        .iter()
        .map(|(_, xs)| xs.iter().map(|x| intern(x, &mut elems)).collect())
        .collect();
    attempted.resize(elems.len(), false);
    let mut present_by = vec![usize::MAX; elems.len()];
    for (o, &i) in acked.iter().zip(&acked_ids) {
        if let Some(r) = o.ret {
            present_by[i] = present_by[i].min(r);
        }
    }
    // Each read as distinct element ids; duplicates and unexpected noted.
    let mut dup: BTreeSet<usize> = BTreeSet::new();
    let mut unexpected: BTreeSet<usize> = BTreeSet::new();
    for ((o, _), these) in reads.iter().zip(read_ids.iter_mut()) {
        these.sort_unstable();
        for w in these.windows(2) {
            if w[0] == w[1] {
                dup.insert(w[0]);
            }
        }
        these.dedup();
        for &i in these.iter() {
            if !attempted[i] {
                unexpected.insert(i);
            }
            if let Some(r) = o.ret {
                present_by[i] = present_by[i].min(r);
            }
        }
    }
    report.duplicated = dup.iter().map(|&i| elems[i].clone()).collect();
    report.unexpected = unexpected.iter().map(|&i| elems[i].clone()).collect();

    // Stale: a read holding fewer of the elements present before its call
    // than there are. Counting first keeps this linear in the reads' sizes.
    let mut sorted_present: Vec<usize> = present_by
        .iter()
        .copied()
        .filter(|&p| p != usize::MAX)
        .collect();
    sorted_present.sort_unstable();
    let mut order: Vec<usize> = (0..reads.len()).collect();
    order.sort_by_key(|&k| reads[k].0.call);
    for k in order {
        let (o, _) = reads[k];
        let must = sorted_present.partition_point(|&p| p < o.call);
        let has = read_ids[k]
            .iter()
            .filter(|&&i| present_by[i] < o.call)
            .count();
        if has >= must {
            continue;
        }
        report.stale_count += 1;
        if report.stale.len() >= STALE_READS_CAP {
            continue;
        }
        let held: BTreeSet<usize> = read_ids[k].iter().copied().collect();
        let mut missing: Vec<usize> = (0..elems.len())
            .filter(|&i| present_by[i] < o.call && !held.contains(&i))
            .collect();
        missing.sort_by_key(|&i| present_by[i]);
        report.stale.push(StaleRead {
            read: summary(o),
            missing_count: missing.len(),
            missing: missing
                .iter()
                .take(STALE_LIST_CAP)
                .map(|&i| elems[i].clone())
                .collect(),
        });
    }

    let seen_keys: BTreeSet<String> = seen.iter().map(key).collect();
    report.lost = acked
        .iter()
        .map(|o| &o.invoke_value)
        .filter(|v| !seen_keys.contains(&key(v)))
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
    if !report.lost.is_empty()
        || !report.unexpected.is_empty()
        || !report.duplicated.is_empty()
        || report.stale_count > 0
    {
        report.verdict = invalid(&report, final_read, seen.len());
    }
    report
}

fn invalid(report: &SetReport, final_read: &Op, final_len: usize) -> Verdict {
    let list = |xs: &[J]| {
        let shown: Vec<String> = xs.iter().take(10).map(J::to_string).collect();
        let more = if xs.len() > 10 {
            format!(", … {} more", xs.len() - 10)
        } else {
            String::new()
        };
        format!("{}{more}", shown.join(", "))
    };
    let mut parts = Vec::new();
    if !report.lost.is_empty() {
        parts.push(format!(
            "{} acknowledged adds are missing from the final read (lost: {})",
            report.lost.len(),
            list(&report.lost)
        ));
    }
    if !report.unexpected.is_empty() {
        parts.push(format!(
            "{} elements were read that were never added (unexpected: {})",
            report.unexpected.len(),
            list(&report.unexpected)
        ));
    }
    if !report.duplicated.is_empty() {
        parts.push(format!(
            "{} elements were read more than once although each was added once (duplicated: {})",
            report.duplicated.len(),
            list(&report.duplicated)
        ));
    }
    if let Some(first) = report.stale.first() {
        parts.push(format!(
            "{} reads are stale; the first, {}, lacks {} elements that were surely present before it began ({})",
            report.stale_count,
            first.read.describe(),
            first.missing_count,
            list(&first.missing)
        ));
    }
    let op = report.stale.first().map(|s| s.read.clone());
    Verdict::Invalid {
        key: final_read.key.clone(),
        witness: Box::new(crate::Witness {
            op: op.clone(),
            prefix: Vec::new(),
            state: format!(
                "the final read (event {}) has {final_len} elements",
                final_read.index
            ),
            minimal: op.into_iter().collect(),
            minimal_complete: true,
            explanation: format!("{}.", parts.join("; ")),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_history::{Event, pair};
    use serde_json::json;

    /// (process, type, f, value) lines, in order.
    fn ops(lines: &[(u64, &str, &str, J)]) -> Vec<Op> {
        let text: String = lines
            .iter()
            .enumerate()
            .map(|(i, (p, t, f, v))| {
                json!({"index": i, "time": i * 1000, "process": p, "type": t, "f": f, "key": "s", "value": v})
                    .to_string()
                    + "\n"
            })
            .collect();
        let h = faultline_history::parse_jsonl("t", &text).expect("parse");
        let events: &[Event] = &h.events;
        pair("t", events).expect("pair")
    }

    #[test]
    fn a_read_missing_an_acknowledged_add_is_stale() {
        let r = check_set(&ops(&[
            (0, "invoke", "add", json!(1)),
            (0, "ok", "add", json!(1)),
            (1, "invoke", "read", J::Null),
            (1, "ok", "read", json!([])),
            (1, "invoke", "read", J::Null),
            (1, "ok", "read", json!([1])),
        ]));
        assert_eq!(r.stale_count, 1, "{r:?}");
        assert_eq!(r.stale[0].missing, vec![json!(1)]);
        assert_eq!(r.stale[0].read.index, 2);
        assert!(r.lost.is_empty());
        assert_eq!(r.verdict.name(), "invalid");
    }

    #[test]
    fn an_element_read_then_gone_is_stale_even_if_its_add_was_indeterminate() {
        let r = check_set(&ops(&[
            (0, "invoke", "add", json!(1)),
            (0, "info", "add", json!(1)),
            (1, "invoke", "read", J::Null),
            (1, "ok", "read", json!([1])),
            (1, "invoke", "read", J::Null),
            (1, "ok", "read", json!([])),
            (1, "invoke", "read", J::Null),
            (1, "ok", "read", json!([1])),
        ]));
        assert_eq!(r.stale_count, 1, "{r:?}");
        assert_eq!(r.stale[0].read.index, 4);
    }

    #[test]
    fn concurrent_adds_may_be_missing_and_duplicates_are_caught() {
        let r = check_set(&ops(&[
            (0, "invoke", "add", json!(1)),
            (1, "invoke", "read", J::Null),
            (0, "ok", "add", json!(1)),
            (1, "ok", "read", json!([])),
            (1, "invoke", "read", J::Null),
            (1, "ok", "read", json!([1])),
        ]));
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
        let r = check_set(&ops(&[
            (0, "invoke", "add", json!(1)),
            (0, "ok", "add", json!(1)),
            (1, "invoke", "read", J::Null),
            (1, "ok", "read", json!([1, 1])),
        ]));
        assert_eq!(r.duplicated, vec![json!(1)]);
        assert_eq!(r.verdict.name(), "invalid");
    }
}

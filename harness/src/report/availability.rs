//! Availability around each fault window: how long before the fault the
//! last `ok` op completed, how long after the fault ended the first `ok`
//! op completed (the recovery time), and the longest stretch without any
//! `ok` completion that touches the window.

use super::load::{FaultWindow, OpRec};
use faultline_history::Outcome;
use serde_json::{Value, json};

/// Availability figures for one fault window (times in ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Availability {
    /// The window's kind.
    pub kind: crate::nemesis::NemesisKind,
    /// Its label.
    pub label: String,
    /// Start (s since the run began).
    pub start_s: f64,
    /// End (s), or `None` if the fault never ended.
    pub end_s: Option<f64>,
    /// From the last `ok` completion before the start to the start.
    pub last_ok_before_ms: Option<f64>,
    /// `ok` completions inside the window.
    pub ok_during: u64,
    /// From the end to the first `ok` completion after it: the recovery time.
    pub recovery_ms: Option<f64>,
    /// Longest interval without an `ok` completion that overlaps the window.
    pub longest_gap_ms: Option<f64>,
}

impl Availability {
    /// The JSON object for `results.json`.
    pub fn to_json(&self) -> Value {
        json!({
            "kind": self.kind,
            "label": self.label,
            "start_s": r3(self.start_s),
            "end_s": self.end_s.map(r3),
            "last_ok_before_start_ms": self.last_ok_before_ms.map(r3),
            "ok_during": self.ok_during,
            "recovery_ms": self.recovery_ms.map(r3),
            "longest_gap_without_ok_ms": self.longest_gap_ms.map(r3),
        })
    }
}

fn r3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Sorted completion times (ns) of `ok` ops.
pub fn ok_times(ops: &[OpRec]) -> Vec<u64> {
    let mut t: Vec<u64> = ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .filter_map(|o| o.complete_ns)
        .collect();
    t.sort_unstable();
    t
}

/// Availability of every window; `run_end_ns` closes windows that never ended.
pub fn availability(ops: &[OpRec], windows: &[FaultWindow], run_end_ns: u64) -> Vec<Availability> {
    let oks = ok_times(ops);
    windows
        .iter()
        .map(|w| {
            let start = w.start_ns;
            let end = w.end_ns.unwrap_or(run_end_ns).max(start);
            // oks[..a] complete before the start; oks[a..b] inside; oks[b..] after the end.
            let a = oks.partition_point(|&t| t < start);
            let b = oks.partition_point(|&t| t <= end);
            let before = a.checked_sub(1).map(|i| oks[i]);
            let after = oks.get(b).copied();
            let ms = |ns: u64| ns as f64 / 1e6;
            // Gaps between consecutive ok completions from the last one before
            // the window to the first one after it (or the window's edges).
            let mut marks: Vec<u64> = Vec::with_capacity(b - a + 2);
            marks.push(before.unwrap_or(start));
            marks.extend_from_slice(&oks[a..b]);
            marks.push(after.unwrap_or(end));
            let gap = marks.windows(2).map(|p| p[1] - p[0]).max();
            Availability {
                kind: w.kind,
                label: w.label.clone(),
                start_s: start as f64 / 1e9,
                end_s: w.end_ns.map(|e| e as f64 / 1e9),
                last_ok_before_ms: before.map(|t| ms(start - t)),
                ok_during: (b - a) as u64,
                recovery_ms: if w.end_ns.is_some() {
                    after.map(|t| ms(t - end))
                } else {
                    None
                },
                longest_gap_ms: gap.map(ms),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn ok_at(done_ms: u64) -> OpRec {
        OpRec {
            index: 0,
            process: 0,
            f: "read".into(),
            key: None,
            outcome: Outcome::Ok,
            invoke_ns: done_ms * 1_000_000 - 1_000_000,
            complete_ns: Some(done_ms * 1_000_000),
            invoke_value: Value::Null,
            value: Value::Null,
        }
    }

    #[test]
    fn last_ok_before_and_recovery_after_a_window() {
        let ops: Vec<OpRec> = [100, 900, 1100, 2600, 2700]
            .into_iter()
            .map(ok_at)
            .collect();
        let w = FaultWindow {
            kind: crate::nemesis::NemesisKind::Partition,
            label: "partition halves".into(),
            start_ns: 1_000_000_000,
            end_ns: Some(2_000_000_000),
        };
        let a = &availability(&ops, &[w], 3_000_000_000)[0];
        assert_eq!(a.last_ok_before_ms, Some(100.0));
        assert_eq!(a.ok_during, 1);
        assert_eq!(a.recovery_ms, Some(600.0));
        assert_eq!(a.longest_gap_ms, Some(1500.0));
    }

    #[test]
    fn a_window_that_never_ends_has_no_recovery() {
        let ops: Vec<OpRec> = [100].into_iter().map(ok_at).collect();
        let w = FaultWindow {
            kind: crate::nemesis::NemesisKind::Kill,
            label: "kill n1".into(),
            start_ns: 500_000_000,
            end_ns: None,
        };
        let a = &availability(&ops, &[w], 900_000_000)[0];
        assert_eq!(a.recovery_ms, None);
        assert_eq!(a.ok_during, 0);
        assert_eq!(a.longest_gap_ms, Some(800.0));
    }
}

//! Operation counts and latency quantiles of a run, for `results.json` and
//! the summary.

use std::collections::{BTreeMap, HashMap};

use faultline_history::{Event, EventType, Process};

use crate::store::{FCounts, OpCounts, Quantiles};

/// Counts every client operation by function and completion type.
pub fn op_counts(events: &[Event]) -> OpCounts {
    let mut by_f: BTreeMap<String, FCounts> = BTreeMap::new();
    let mut open: HashMap<u64, String> = HashMap::new();
    let mut c = OpCounts::default();
    for e in events {
        let Process::Client(p) = e.process else {
            continue;
        };
        let slot = by_f.entry(e.f.clone()).or_default();
        match e.kind {
            EventType::Invoke => {
                open.insert(p, e.f.clone());
            }
            EventType::Ok => {
                slot.ok += 1;
                c.ok += 1;
                open.remove(&p);
            }
            EventType::Fail => {
                slot.fail += 1;
                c.fail += 1;
                open.remove(&p);
            }
            EventType::Info => {
                slot.info += 1;
                c.info += 1;
                open.remove(&p);
            }
        }
    }
    for f in open.values() {
        by_f.entry(f.clone()).or_default().pending += 1;
    }
    c.pending = open.len() as u64;
    c.total = c.ok + c.fail + c.info + c.pending;
    c.by_f = by_f;
    c
}

/// Quantiles (ms) of a histogram of microseconds; `None` when empty.
pub fn quantiles(h: &hdrhistogram::Histogram<u64>) -> Option<Quantiles> {
    if h.is_empty() {
        return None;
    }
    let q = |x: f64| h.value_at_quantile(x) as f64 / 1000.0;
    Some(Quantiles {
        count: h.len(),
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        p999: q(0.999),
        max: h.max() as f64 / 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_completions_and_pending_ops() {
        let text = [
            r#"{"index":0,"time":0,"process":0,"type":"invoke","f":"write","value":1}"#,
            r#"{"index":1,"time":1,"process":1,"type":"invoke","f":"read","value":null}"#,
            r#"{"index":2,"time":2,"process":0,"type":"ok","f":"write","value":1}"#,
            r#"{"index":3,"time":3,"process":"nemesis","type":"invoke","f":"kill","value":null}"#,
        ]
        .join("\n");
        let h = faultline_history::parse_jsonl("t", &text).expect("parse");
        let c = op_counts(&h.events);
        assert_eq!((c.total, c.ok, c.pending), (2, 1, 1));
        assert_eq!(c.by_f["read"].pending, 1);
        let mut hist = hdrhistogram::Histogram::<u64>::new(3).expect("h");
        assert!(quantiles(&hist).is_none());
        hist.record(2000).expect("record");
        assert_eq!(quantiles(&hist).expect("q").count, 1);
    }
}

//! Per-function statistics: how many ops of each `f` succeeded, failed or are indeterminate.

use faultline_history::{Op, Outcome};
use std::collections::BTreeMap;

/// Counts for one function.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FStats {
    /// Completed ok.
    pub ok: usize,
    /// Completed fail.
    pub fail: usize,
    /// Completed info or never completed.
    pub info: usize,
}

/// Counts ops by function and outcome, sorted by function name.
pub fn stats(ops: &[Op]) -> BTreeMap<String, FStats> {
    let mut m: BTreeMap<String, FStats> = BTreeMap::new();
    for o in ops {
        let s = m.entry(o.f.clone()).or_default();
        match o.outcome {
            Outcome::Ok => s.ok += 1,
            Outcome::Fail => s.fail += 1,
            Outcome::Info | Outcome::Pending => s.info += 1,
        }
    }
    m
}

/// How many attempts of a kind with no success make a run say so.
pub const STATS_MIN_ATTEMPTS: usize = 5;

/// Jepsen's stats check: the kinds of operation attempted at least
/// [`STATS_MIN_ATTEMPTS`] times that never succeeded, with their counts. A
/// run in which some kind never succeeds exercised nothing of it and
/// proves nothing about it.
pub fn never_succeeded(stats: &BTreeMap<String, FStats>) -> Vec<(String, FStats)> {
    stats
        .iter()
        .filter(|(_, s)| s.ok == 0 && s.fail + s.info >= STATS_MIN_ATTEMPTS)
        .map(|(f, s)| (f.clone(), s.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_that_never_succeed_are_named() {
        let mut m = BTreeMap::new();
        m.insert(
            "cas".to_string(),
            FStats {
                ok: 0,
                fail: 7,
                info: 1,
            },
        );
        m.insert(
            "read".to_string(),
            FStats {
                ok: 3,
                fail: 9,
                info: 0,
            },
        );
        m.insert(
            "write".to_string(),
            FStats {
                ok: 0,
                fail: 2,
                info: 1,
            },
        );
        let bad = never_succeeded(&m);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, "cas");
    }
}

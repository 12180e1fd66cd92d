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

//! The counter checker: every read lies between what was surely and what was possibly added.

use crate::{OpSummary, Verdict, Witness};
use faultline_history::{Op, Outcome};

/// What the counter checker found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CounterReport {
    /// Valid when every read is within its bounds.
    pub verdict: Verdict,
    /// Reads checked.
    pub reads: usize,
    /// Reads out of bounds, as (read op, lower, upper).
    pub errors: Vec<(OpSummary, i64, i64)>,
}

/// Checks `add`/`increment` ops (value = delta, default 1) against `read`s.
///
/// A read invoked at call position c and completed at r must be at least the
/// increments acknowledged before c plus every decrement that may have
/// happened before r, and at most the increments that may have happened before
/// r plus the decrements acknowledged before c.
pub fn check_counter(ops: &[Op]) -> CounterReport {
    let n = ops
        .iter()
        .filter_map(|o| o.ret)
        .chain(ops.iter().map(|o| o.call))
        .max()
        .map_or(0, |m| m + 2);
    // Per position: acknowledged (+, -) completed there; attempted (+, -) invoked there.
    let mut ok_pos = vec![0i64; n];
    let mut ok_neg = vec![0i64; n];
    let mut att_pos = vec![0i64; n];
    let mut att_neg = vec![0i64; n];
    for o in ops.iter().filter(|o| o.f == "add" || o.f == "increment") {
        if o.outcome == Outcome::Fail {
            continue;
        }
        let d = o.invoke_value.as_i64().unwrap_or(1);
        let (ok, att) = if d >= 0 {
            (&mut ok_pos, &mut att_pos)
        } else {
            (&mut ok_neg, &mut att_neg)
        };
        att[o.call] += d;
        if let (Outcome::Ok, Some(r)) = (o.outcome, o.ret) {
            ok[r] += d;
        }
    }
    let prefix = |v: &mut Vec<i64>| {
        let mut acc = 0;
        for x in v.iter_mut() {
            acc += *x;
            *x = acc;
        }
    };
    for v in [&mut ok_pos, &mut ok_neg, &mut att_pos, &mut att_neg] {
        prefix(v);
    }
    let before = |v: &Vec<i64>, p: usize| if p == 0 { 0 } else { v[p - 1] };
    let mut report = CounterReport {
        verdict: Verdict::Valid,
        reads: 0,
        errors: Vec::new(),
    };
    let mut unreadable: Option<u64> = None;
    for o in ops
        .iter()
        .filter(|o| o.f == "read" && o.outcome == Outcome::Ok)
    {
        let Some(r) = o.ret else { continue };
        let Some(v) = o.value.as_i64() else {
            // Not silently skipped: a read the checker cannot judge leaves
            // the verdict open (unless another read is already out of bounds).
            unreadable.get_or_insert(o.index);
            continue;
        };
        report.reads += 1;
        let lower = before(&ok_pos, o.call) + before(&att_neg, r);
        let upper = before(&att_pos, r) + before(&ok_neg, o.call);
        if v < lower || v > upper {
            report.errors.push((
                OpSummary {
                    index: o.index,
                    process: o.process,
                    f: o.f.clone(),
                    key: o.key.clone(),
                    value: o.value.clone(),
                    outcome: "ok".into(),
                },
                lower,
                upper,
            ));
        }
    }
    if let (Some(index), true) = (unreadable, report.errors.is_empty()) {
        report.verdict = Verdict::Unknown {
            reason: format!("the read at event {index} did not return an integer"),
        };
    }
    if let Some((first, lo, hi)) = report.errors.first() {
        let explanation = format!(
            "{} of {} reads are out of bounds; the first, {}, read {} but only values in [{lo}, {hi}] are possible.",
            report.errors.len(),
            report.reads,
            first.describe(),
            first.value
        );
        report.verdict = Verdict::Invalid {
            key: None,
            witness: Box::new(Witness {
                op: Some(first.clone()),
                prefix: Vec::new(),
                state: format!("the counter is between {lo} and {hi}"),
                minimal: vec![first.clone()],
                minimal_complete: true,
                explanation,
            }),
        };
    }
    report
}

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

/// A valid verdict needs the final reads: when the workload asked for some
/// and none succeeded, the cluster never came back after the faults healed,
/// so nothing acknowledged was read back at the end and the run is unknown.
pub fn require_final_reads(j: &mut Judgement, final_reads: Option<(usize, usize)>) {
    let Some((0, asked)) = final_reads else {
        return;
    };
    if asked == 0 || j.verdict != Verdict::Valid {
        return;
    }
    let reason = format!(
        "none of the {asked} final reads succeeded: the system did not recover after the \
         faults healed, so what it acknowledged was never read back"
    );
    j.summary = format!("{}; {reason}", j.summary);
    j.detail["final_reads"] = json!({"ok": 0, "asked": asked});
    j.verdict = Verdict::Unknown { reason };
}

/// An invalid run with lease reads and clock faults may show the lease's
/// stated assumption failing (clocks that run at the rate the lease
/// assumes), not a bug: the verdict stands, with that caveat in words.
pub fn note_lease_assumption(j: &mut Judgement, lease_reads: bool, clock_faults: u64) {
    if !lease_reads || clock_faults == 0 || !matches!(j.verdict, Verdict::Invalid { .. }) {
        return;
    }
    let caveat = format!(
        "reads were lease reads and {clock_faults} clock fault(s) changed nodes' clocks: a \
         lease is safe only while clocks run at the rate it assumes, so this may be that \
         assumption failing rather than a bug (rerun with --read-mode linearizable to tell)"
    );
    j.summary = format!("{}; caveat: {caveat}", j.summary);
    j.detail["caveat"] = json!(caveat);
}

/// The verdict's name: `valid`, `invalid` or `unknown`.
pub fn name(j: &Judgement) -> &'static str {
    j.verdict.name()
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_checkers::Checker;

    fn valid() -> Judgement {
        Judgement {
            checker: Checker::Set,
            verdict: Verdict::Valid,
            summary: "set: ok".into(),
            detail: json!({}),
            check_ms: 0.0,
            shrink_ms: 0.0,
            partitions: 0,
        }
    }

    #[test]
    fn a_valid_run_whose_final_reads_all_failed_is_unknown() {
        let mut j = valid();
        require_final_reads(&mut j, Some((0, 3)));
        let Verdict::Unknown { reason } = &j.verdict else {
            panic!("{:?}", j.verdict);
        };
        assert!(reason.contains("none of the 3 final reads"), "{reason}");
        // One final read that succeeded, none asked, or no final phase at
        // all (an interrupted run) leave the verdict alone.
        for reads in [Some((1, 3)), Some((0, 0)), None] {
            let mut j = valid();
            require_final_reads(&mut j, reads);
            assert_eq!(j.verdict, Verdict::Valid, "{reads:?}");
        }
    }

    #[test]
    fn an_invalid_lease_read_run_under_clock_faults_carries_the_caveat() {
        let invalid = || Judgement {
            verdict: Verdict::Invalid {
                key: None,
                witness: Box::new(faultline_checkers::Witness {
                    op: None,
                    prefix: vec![],
                    state: String::new(),
                    minimal: vec![],
                    minimal_complete: true,
                    explanation: "stale read".into(),
                }),
            },
            ..valid()
        };
        let mut j = invalid();
        note_lease_assumption(&mut j, true, 2);
        assert!(matches!(j.verdict, Verdict::Invalid { .. }));
        assert!(
            j.detail["caveat"]
                .as_str()
                .is_some_and(|c| c.contains("lease"))
        );
        assert!(j.summary.contains("caveat"), "{}", j.summary);
        for (lease, clocks) in [(false, 2), (true, 0)] {
            let mut j = invalid();
            note_lease_assumption(&mut j, lease, clocks);
            assert!(j.detail.get("caveat").is_none(), "{lease} {clocks}");
        }
    }
}

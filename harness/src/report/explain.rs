//! The sentence at the top of an invalid report: which operations contradict
//! each other and how, with times relative to the faults. Each workload's
//! shape has its own account — a register read that missed a completed
//! write ([`witness::timed_explanation`]), a list that does not extend what
//! an earlier read saw, a value that appears twice or was never appended, a
//! set element that vanished after an add had completed, a counter read
//! outside what the increments allow — and lists are shown only where they
//! differ, element by element, with ellipses around. `None` when no
//! account fits; the page then shows the checker's own words.

use std::collections::HashMap;

use faultline_history::Outcome;
use serde_json::Value;

use super::load::{FaultWindow, OpRec};
use super::witness::{self, Witness, secs};

/// Elements shown either side of where two lists part.
const CONTEXT: usize = 2;
/// Earlier reads compared with the impossible one, at most.
const MAX_EARLIER: usize = 2_000;

/// An account: the sentence and the ops it names (the timeline draws them).
pub type Account = (String, Vec<u64>);

/// The account of `w`, with the impossible op's start placed among the faults.
pub fn explain(
    w: &Witness,
    by_index: &HashMap<u64, &OpRec>,
    all: &[OpRec],
    windows: &[FaultWindow],
) -> Option<Account> {
    let bad = *by_index.get(&w.op.as_ref()?.index)?;
    let (text, named) = list_account(bad, all)
        .or_else(|| set_account(bad, all))
        .or_else(|| counter_account(bad, all))
        .or_else(|| Some((witness::timed_explanation(w, by_index)?, vec![bad.index])))?;
    Some((
        format!(
            "{text} Op #{} began {}.",
            bad.index,
            fault_context(bad.invoke_ns, windows)
        ),
        named,
    ))
}

/// Where `t` falls among the faults: `0.4 s into partition isolate-leader`,
/// `1.2 s after kill n2 ended`, or `before any fault`.
pub fn fault_context(t: u64, windows: &[FaultWindow]) -> String {
    let s = |ns: u64| format!("{:.1} s", ns as f64 / 1e9);
    if let Some(w) = windows
        .iter()
        .filter(|w| w.start_ns <= t && w.end_ns.is_none_or(|e| t < e))
        .max_by_key(|w| w.start_ns)
    {
        return format!("{} into {}", s(t - w.start_ns), w.label);
    }
    match windows
        .iter()
        .filter_map(|w| Some((w.end_ns.filter(|e| *e <= t)?, w)))
        .max_by_key(|(e, _)| *e)
    {
        Some((end, w)) => format!("{} after {} ended", s(t - end), w.label),
        None => "before any fault".into(),
    }
}

/// `op #12 (process 3 read of key "k", 2.1000 s–2.1300 s)`.
fn op_name(o: &OpRec) -> String {
    let key = o
        .key
        .as_ref()
        .map(|k| format!(" of key {k:?}"))
        .unwrap_or_default();
    let end = o.complete_ns.map(secs).unwrap_or_else(|| "never".into());
    format!(
        "op #{} (process {} {}{key}, {}–{end})",
        o.index,
        o.process,
        o.f,
        secs(o.invoke_ns)
    )
}

fn is_read(o: &OpRec) -> bool {
    matches!(o.f.as_str(), "read" | "get") && o.outcome == Outcome::Ok
}

/// Completed, and before `t`.
fn done_before(o: &OpRec, t: u64) -> bool {
    o.complete_ns.is_some_and(|c| c < t)
}

/// `[… 4, 5, 6 …]`: `list[lo..hi]`, with ellipses for what is left out.
pub fn region(list: &[Value], lo: usize, hi: usize) -> String {
    let hi = hi.min(list.len());
    let lo = lo.min(hi);
    let parts: Vec<String> = list[lo..hi].iter().map(short).collect();
    format!(
        "[{}{}{}]",
        if lo > 0 { "… " } else { "" },
        parts.join(", "),
        if hi < list.len() { " …" } else { "" }
    )
}

/// A value as shown in a sentence: long ones cut.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(39).collect::<String>())
    } else {
        s
    }
}

/// A list read (append workload): a value twice, a value never appended,
/// a list that does not extend an earlier read's, or a missing append.
fn list_account(bad: &OpRec, all: &[OpRec]) -> Option<Account> {
    if !is_read(bad) {
        return None;
    }
    let list = bad.value.as_array()?;
    let same_key = |o: &&OpRec| o.key == bad.key;
    let mut appends: HashMap<String, Vec<&OpRec>> = HashMap::new();
    for o in all.iter().filter(same_key).filter(|o| o.f == "append") {
        appends
            .entry(o.invoke_value.to_string())
            .or_default()
            .push(o);
    }
    if appends.is_empty() {
        return None;
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, v) in list.iter().enumerate() {
        if let Some(j) = seen.insert(v.to_string(), i) {
            let by = match appends.get(&v.to_string()).map(Vec::as_slice) {
                Some([a]) => format!("it was appended once, by {}", op_name(a)),
                Some(many) => format!("{} ops appended it", many.len()),
                None => "no op appended it".into(),
            };
            return Some((
                format!(
                    "{} returned a list in which {} appears twice, at positions {j} and {i}: {}; but {by}.",
                    op_name(bad),
                    short(v),
                    region(list, j.saturating_sub(CONTEXT), i + CONTEXT + 1)
                ),
                std::iter::once(bad.index)
                    .chain(
                        appends
                            .get(&v.to_string())
                            .into_iter()
                            .flatten()
                            .take(3)
                            .map(|o| o.index),
                    )
                    .collect(),
            ));
        }
    }
    for (i, v) in list.iter().enumerate() {
        if !appends.contains_key(&v.to_string()) {
            return Some((
                format!(
                    "{} returned a list holding {} at position {i}, {}, but no op appended {}.",
                    op_name(bad),
                    short(v),
                    region(list, i.saturating_sub(CONTEXT), i + CONTEXT + 1),
                    short(v)
                ),
                vec![bad.index],
            ));
        }
    }
    // An earlier read whose list this one does not extend: the latest first.
    let mut earlier: Vec<&OpRec> = all
        .iter()
        .filter(same_key)
        .filter(|o| is_read(o) && done_before(o, bad.invoke_ns))
        .collect();
    earlier.sort_by_key(|o| std::cmp::Reverse(o.complete_ns));
    for r in earlier.into_iter().take(MAX_EARLIER) {
        let Some(old) = r.value.as_array() else {
            continue;
        };
        let Some(i) = (0..old.len()).find(|&i| list.get(i) != Some(&old[i])) else {
            continue;
        };
        let what = if i >= list.len() {
            format!(
                "the later list ends after {i} elements: the {} after them vanished",
                old.len() - i
            )
        } else if !list.contains(&old[i]) {
            format!("{} vanished from position {i}", short(&old[i]))
        } else if !old.contains(&list[i]) {
            format!(
                "{} appeared in the middle, at position {i}, before {}",
                short(&list[i]),
                short(&old[i])
            )
        } else {
            format!(
                "the order changed at position {i}: {} now comes before {}",
                short(&list[i]),
                short(&old[i])
            )
        };
        let (lo, hi) = (i.saturating_sub(CONTEXT), i + CONTEXT + 1);
        return Some((
            format!(
                "{} began after {} had completed, so its list must extend the earlier one, but {what}: earlier {}, later {}.",
                op_name(bad),
                op_name(r),
                region(old, lo, hi),
                region(list, lo, hi)
            ),
            vec![bad.index, r.index],
        ));
    }
    let lost = all
        .iter()
        .filter(same_key)
        .filter(|o| o.f == "append" && o.outcome == Outcome::Ok)
        .filter(|o| done_before(o, bad.invoke_ns) && !list.contains(&o.invoke_value))
        .min_by_key(|o| o.complete_ns)?;
    Some((
        format!(
            "{} returned a list of {} elements without {}, but {} had appended it and completed before the read began.",
            op_name(bad),
            list.len(),
            short(&lost.invoke_value),
            op_name(lost)
        ),
        vec![bad.index, lost.index],
    ))
}

/// A set read (set workload) that lacks an element whose add had completed
/// before the read began.
fn set_account(bad: &OpRec, all: &[OpRec]) -> Option<Account> {
    if !is_read(bad) {
        return None;
    }
    let read = bad.value.as_array()?;
    let lost = all
        .iter()
        .filter(|o| o.key == bad.key && o.f == "add" && o.outcome == Outcome::Ok)
        .filter(|o| done_before(o, bad.invoke_ns) && !read.contains(&o.invoke_value))
        .min_by_key(|o| o.complete_ns)?;
    let also = all
        .iter()
        .filter(|o| o.key == bad.key && o.f == "add" && o.outcome == Outcome::Ok)
        .filter(|o| done_before(o, bad.invoke_ns) && !read.contains(&o.invoke_value))
        .count()
        - 1;
    Some((
        format!(
            "{} returned a set of {} elements without {}, but {} had added it and completed before the read began{}.",
            op_name(bad),
            read.len(),
            short(&lost.invoke_value),
            op_name(lost),
            if also > 0 {
                format!(" ({also} more acknowledged adds are missing too)")
            } else {
                String::new()
            }
        ),
        vec![bad.index, lost.index],
    ))
}

/// A counter read outside what the increments allow: below the sum of the
/// increments that completed before it began, or above the sum of every
/// increment that began before it completed.
fn counter_account(bad: &OpRec, all: &[OpRec]) -> Option<Account> {
    if !is_read(bad) {
        return None;
    }
    let v = bad.value.as_i64()?;
    let adds: Vec<&OpRec> = all
        .iter()
        .filter(|o| o.key == bad.key && matches!(o.f.as_str(), "add" | "increment"))
        .collect();
    if adds.is_empty() {
        return None;
    }
    let delta = |o: &OpRec| o.invoke_value.as_i64().unwrap_or(0);
    let before: Vec<&OpRec> = adds
        .iter()
        .copied()
        .filter(|o| o.outcome == Outcome::Ok && done_before(o, bad.invoke_ns))
        .collect();
    let lo: i64 = before.iter().map(|o| delta(o)).sum();
    if v < lo {
        let last = before.iter().max_by_key(|o| o.complete_ns)?;
        return Some((
            format!(
                "{} returned {v}, but the {} increments acknowledged before it began add up to {lo}, the last of them {}: the counter lost acknowledged increments.",
                op_name(bad),
                before.len(),
                op_name(last)
            ),
            vec![bad.index, last.index],
        ));
    }
    let end = bad.complete_ns?;
    let possible: Vec<&OpRec> = adds
        .iter()
        .copied()
        .filter(|o| o.outcome != Outcome::Fail && o.invoke_ns < end)
        .collect();
    let hi: i64 = possible.iter().map(|o| delta(o)).sum();
    if v > hi {
        let last = possible.iter().max_by_key(|o| o.invoke_ns)?;
        return Some((
            format!(
                "{} returned {v}, but the {} increments that may have happened before it completed add up to {hi}, the last of them {}: some increment was counted twice.",
                op_name(bad),
                possible.len(),
                op_name(last)
            ),
            vec![bad.index, last.index],
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nemesis::NemesisKind;
    use serde_json::json;

    fn op(index: u64, f: &str, key: &str, t: (u64, u64), arg: Value, ret: Value) -> OpRec {
        OpRec {
            index,
            process: index % 3,
            f: f.into(),
            key: Some(key.into()),
            outcome: Outcome::Ok,
            invoke_ns: t.0 * 1_000_000,
            complete_ns: Some(t.1 * 1_000_000),
            invoke_value: arg,
            value: ret,
        }
    }

    #[test]
    fn a_value_read_twice_is_named_with_its_one_append() {
        let all = vec![
            op(1, "append", "k", (0, 5), json!(1), json!(1)),
            op(2, "append", "k", (6, 9), json!(2), json!(2)),
            op(3, "read", "k", (10, 12), Value::Null, json!([1, 2, 2])),
        ];
        let s = list_account(&all[2], &all).unwrap().0;
        assert!(s.contains("2 appears twice, at positions 1 and 2"), "{s}");
        assert!(s.contains("appended once, by op #2"), "{s}");
    }

    #[test]
    fn a_list_that_drops_an_element_names_the_earlier_read_and_shows_only_the_difference() {
        let long: Vec<u64> = (1..=1000).collect();
        let mut later = long.clone();
        later.remove(500);
        let mut all: Vec<OpRec> = long
            .iter()
            .map(|v| op(*v, "append", "k", (*v, *v + 1), json!(v), json!(v)))
            .collect();
        all.push(op(
            2001,
            "read",
            "k",
            (1100, 1101),
            Value::Null,
            json!(long),
        ));
        all.push(op(
            2002,
            "read",
            "k",
            (1200, 1201),
            Value::Null,
            json!(later),
        ));
        let (s, named) = list_account(&all[1001], &all).unwrap();
        assert_eq!(named, vec![2002, 2001], "both reads go on the timeline");
        assert!(s.contains("op #2002") && s.contains("op #2001"), "{s}");
        assert!(s.contains("501 vanished from position 500"), "{s}");
        assert!(
            s.contains(
                "earlier [… 499, 500, 501, 502, 503 …], later [… 499, 500, 502, 503, 504 …]"
            ),
            "{s}"
        );
        assert!(s.len() < 600, "only the region that differs: {s}");
    }

    #[test]
    fn a_set_read_names_the_add_it_lost_and_counters_name_the_bound() {
        let all = vec![
            op(1, "add", "s", (0, 5), json!(7), json!(7)),
            op(2, "read", "s", (6, 8), Value::Null, json!([])),
        ];
        let s = set_account(&all[1], &all).unwrap().0;
        assert!(s.contains("without 7") && s.contains("op #1"), "{s}");
        let all = vec![
            op(1, "add", "c", (0, 5), json!(2), json!(2)),
            op(2, "add", "c", (1, 6), json!(3), json!(3)),
            op(3, "read", "c", (7, 8), Value::Null, json!(2)),
        ];
        let s = counter_account(&all[2], &all).unwrap().0;
        assert!(s.contains("add up to 5") && s.contains("op #2"), "{s}");
    }

    #[test]
    fn times_are_placed_among_the_faults() {
        let w = |start: u64, end: Option<u64>| FaultWindow {
            kind: NemesisKind::Partition,
            label: "partition isolate-leader".into(),
            start_ns: start,
            end_ns: end,
        };
        let ws = [w(1_000_000_000, Some(3_000_000_000))];
        assert_eq!(
            fault_context(1_400_000_000, &ws),
            "0.4 s into partition isolate-leader"
        );
        assert_eq!(
            fault_context(4_200_000_000, &ws),
            "1.2 s after partition isolate-leader ended"
        );
        assert_eq!(fault_context(10, &ws), "before any fault");
    }
}

//! The sentence at the top of an invalid report: which operations contradict
//! each other and how, with times relative to the faults. Each workload's
//! shape has its own account — a register read (or a cas that succeeded)
//! that missed a write completed before it began; two list reads that
//! cannot both be prefixes of one list, a list that lost elements an
//! earlier read saw, a value that appears twice or was never appended, an
//! acknowledged append missing from a later read; a set element that
//! vanished after its add completed; a counter read outside what the
//! increments allow — and lists are shown only where they differ, element
//! by element, with ellipses around. The accounts look at the witness's ops
//! first, then at every op of its key (each names a contradiction that
//! holds on its own). `None` when no account fits; the page then shows the
//! checker's own words.

use std::collections::HashMap;

use faultline_history::Outcome;
use serde_json::Value;

use super::load::{FaultWindow, OpRec};
use super::witness::{Witness, secs};

/// Elements shown either side of where two lists part.
const CONTEXT: usize = 2;
/// Reads of one key looked at, at most (each list is compared once).
const MAX_READS: usize = 20_000;

/// An account: the sentence and the ops it names, the one placed among the
/// faults first (the timeline draws them all).
pub type Account = (String, Vec<u64>);

/// The account of `w`, with its last observation placed among the faults.
pub fn explain(
    w: &Witness,
    by_index: &HashMap<u64, &OpRec>,
    all: &[OpRec],
    windows: &[FaultWindow],
) -> Option<Account> {
    let bad = *by_index.get(&w.op.as_ref()?.index)?;
    let key = w.key.clone().or_else(|| bad.key.clone());
    let ops: Vec<&OpRec> = all
        .iter()
        .filter(|o| key.is_none() || o.key == key)
        .collect();
    // The witness's own ops first: the impossible op, then the minimal set.
    let mut cands: Vec<&OpRec> = vec![bad];
    cands.extend(
        w.minimal
            .iter()
            .filter_map(|m| by_index.get(&m.index).copied()),
    );
    let (text, named) = list_account(&ops)
        .or_else(|| set_account(&cands, &ops))
        .or_else(|| counter_account(bad, &ops))
        .or_else(|| register_account(&cands, &ops))?;
    let focus = by_index.get(named.first()?).copied().unwrap_or(bad);
    Some((
        format!(
            "{text} Op #{} began {}.",
            focus.index,
            fault_context(focus.invoke_ns, windows)
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

/// The value an op wrote, if it may have written one: a write's argument,
/// a cas's new value (unless it failed).
fn written(o: &OpRec) -> Option<&Value> {
    match o.f.as_str() {
        "write" | "put" if o.outcome != Outcome::Fail => Some(&o.invoke_value),
        "cas" if o.outcome != Outcome::Fail => o.invoke_value.as_array()?.get(1),
        _ => None,
    }
}

/// The value an op saw: a read's result, or the expected value of a cas
/// that succeeded.
fn observed(o: &OpRec) -> Option<(&Value, &'static str, &'static str)> {
    if o.outcome != Outcome::Ok {
        return None;
    }
    match o.f.as_str() {
        "read" | "get" => Some((&o.value, "read", "")),
        "cas" => Some((
            o.invoke_value.as_array()?.first()?,
            "found",
            " (its cas succeeded)",
        )),
        _ => None,
    }
}

/// A register (or one key of kv): an observation of `v` although every
/// write of `v` had completed, and another value was written and
/// acknowledged, before it began.
fn register_account(cands: &[&OpRec], ops: &[&OpRec]) -> Option<Account> {
    for o in cands {
        let Some((v, saw, how)) = observed(o) else {
            continue;
        };
        let writes: Vec<&OpRec> = ops
            .iter()
            .copied()
            .filter(|x| x.index != o.index && written(x) == Some(v))
            .collect();
        if writes.iter().any(|x| x.complete_ns.is_none()) || (writes.is_empty() && !v.is_null()) {
            continue;
        }
        // The initial value (null) is there from the start.
        let v_done = writes
            .iter()
            .filter_map(|x| x.complete_ns)
            .max()
            .unwrap_or(0);
        let Some(later) = ops
            .iter()
            .copied()
            .filter(|x| x.outcome == Outcome::Ok && written(x).is_some_and(|u| u != v))
            .filter(|x| x.invoke_ns > v_done && done_before(x, o.invoke_ns))
            .min_by_key(|x| x.complete_ns)
        else {
            continue;
        };
        let u = written(later)?;
        let source = match writes.as_slice() {
            [] => "the register held it only at the start".to_string(),
            [w] => format!(
                "{} had written it and completed by {}",
                op_name(w),
                secs(v_done)
            ),
            many => format!(
                "all {} writes of it had completed by {}",
                many.len(),
                secs(v_done)
            ),
        };
        let mut named = vec![o.index, later.index];
        named.extend(writes.iter().take(2).map(|x| x.index));
        return Some((
            format!(
                "{} {saw} {}{how}, but {source}, and after that {} wrote {} and completed before {} began: it must have seen {} or something newer.",
                op_name(o),
                short(v),
                op_name(later),
                short(u),
                format_args!("op #{}", o.index),
                short(u)
            ),
            named,
        ));
    }
    None
}

/// Lists (append workload), over every read of the key: a value twice or
/// never appended; two reads that cannot both be prefixes of one list; a
/// read that lost elements a read completed before it began had seen; an
/// acknowledged append missing from a read that began after it completed.
fn list_account(ops: &[&OpRec]) -> Option<Account> {
    let mut appends: HashMap<String, Vec<&OpRec>> = HashMap::new();
    for o in ops.iter().filter(|o| o.f == "append") {
        appends
            .entry(o.invoke_value.to_string())
            .or_default()
            .push(o);
    }
    if appends.is_empty() {
        return None;
    }
    let mut reads: Vec<(&OpRec, &Vec<Value>)> = ops
        .iter()
        .filter(|o| is_read(o))
        .filter_map(|o| Some((*o, o.value.as_array()?)))
        .collect();
    reads.sort_by_key(|(o, _)| o.invoke_ns);
    reads.truncate(MAX_READS);
    for (r, list) in &reads {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, v) in list.iter().enumerate() {
            let made = appends
                .get(&v.to_string())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            if made.is_empty() {
                return Some((
                    format!(
                        "{} returned a list holding {} at position {i}, {}, but no op appended {}.",
                        op_name(r),
                        short(v),
                        region(list, i.saturating_sub(CONTEXT), i + CONTEXT + 1),
                        short(v)
                    ),
                    vec![r.index],
                ));
            }
            if let Some(j) = seen.insert(v.to_string(), i)
                && made.len() < 2
            {
                return Some((
                    format!(
                        "{} returned a list in which {} appears twice, at positions {j} and {i}: {}; but it was appended once, by {}.",
                        op_name(r),
                        short(v),
                        region(list, j.saturating_sub(CONTEXT), i + CONTEXT + 1),
                        op_name(made[0])
                    ),
                    vec![r.index, made[0].index],
                ));
            }
        }
    }
    // Every read must be a prefix of the longest one seen.
    let mut longest: Option<(&OpRec, &Vec<Value>)> = None;
    for &(r, list) in &reads {
        if let Some((l, ll)) = longest {
            if let Some(i) = (0..list.len().min(ll.len())).find(|&i| list[i] != ll[i]) {
                let (lo, hi) = (i.saturating_sub(CONTEXT), i + CONTEXT + 1);
                let (first, second) = if l.invoke_ns <= r.invoke_ns {
                    ((l, ll), (r, list))
                } else {
                    ((r, list), (l, ll))
                };
                let (old, new) = (first.1, second.1);
                let what = if !new.contains(&old[i]) {
                    format!("{} vanished from position {i}", short(&old[i]))
                } else if !old.contains(&new[i]) {
                    format!(
                        "{} appeared in the middle, at position {i}, before {}",
                        short(&new[i]),
                        short(&old[i])
                    )
                } else {
                    format!(
                        "the order changed at position {i}: {} now comes before {}",
                        short(&new[i]),
                        short(&old[i])
                    )
                };
                let text = if done_before(first.0, second.0.invoke_ns) {
                    format!(
                        "{} began after {} had completed, so its list must extend the earlier one, but {what}: earlier {}, later {}.",
                        op_name(second.0),
                        op_name(first.0),
                        region(old, lo, hi),
                        region(new, lo, hi)
                    )
                } else {
                    format!(
                        "{} and {} overlap, but a list that only grows at its end must extend what every other read saw, and these two part at position {i} ({what}): {} and {}.",
                        op_name(second.0),
                        op_name(first.0),
                        region(new, lo, hi),
                        region(old, lo, hi)
                    )
                };
                return Some((text, vec![second.0.index, first.0.index]));
            }
            if list.len() > ll.len() {
                longest = Some((r, list));
            }
        } else {
            longest = Some((r, list));
        }
    }
    // A read shorter than one that completed before it began.
    let mut by_end: Vec<&(&OpRec, &Vec<Value>)> = reads.iter().collect();
    by_end.sort_by_key(|(o, _)| o.complete_ns);
    let mut j = 0;
    let mut best: Option<(&OpRec, &Vec<Value>)> = None;
    for &(r, list) in &reads {
        while j < by_end.len() && done_before(by_end[j].0, r.invoke_ns) {
            let (e, el) = *by_end[j];
            if best.is_none_or(|(_, bl)| el.len() > bl.len()) {
                best = Some((e, el));
            }
            j += 1;
        }
        if let Some((e, el)) = best
            && list.len() < el.len()
        {
            let i = list.len();
            let (lo, hi) = (i.saturating_sub(CONTEXT), i + CONTEXT + 1);
            return Some((
                format!(
                    "{} began after {} had completed, so its list must extend the earlier one, but it ends after {i} elements: the {} after them vanished: earlier {}, later {}.",
                    op_name(r),
                    op_name(e),
                    el.len() - i,
                    region(el, lo, hi),
                    region(list, lo, hi)
                ),
                vec![r.index, e.index],
            ));
        }
    }
    // An acknowledged append missing from a read that began after it completed.
    let mut acked: Vec<&OpRec> = ops
        .iter()
        .copied()
        .filter(|o| o.f == "append" && o.outcome == Outcome::Ok)
        .collect();
    acked.sort_by_key(|o| o.complete_ns);
    for &(r, list) in &reads {
        let has: std::collections::HashSet<String> = list.iter().map(Value::to_string).collect();
        if let Some(lost) = acked
            .iter()
            .take_while(|a| done_before(a, r.invoke_ns))
            .find(|a| !has.contains(&a.invoke_value.to_string()))
        {
            return Some((
                format!(
                    "{} returned a list of {} elements without {}, but {} had appended it and completed before the read began.",
                    op_name(r),
                    list.len(),
                    short(&lost.invoke_value),
                    op_name(lost)
                ),
                vec![r.index, lost.index],
            ));
        }
    }
    None
}

/// A set read (set workload) that lacks an element whose add had completed
/// before the read began: the witness's reads first.
fn set_account(cands: &[&OpRec], ops: &[&OpRec]) -> Option<Account> {
    let adds: Vec<&OpRec> = ops
        .iter()
        .copied()
        .filter(|o| o.f == "add" && o.outcome == Outcome::Ok)
        .collect();
    if adds.is_empty() {
        return None;
    }
    for r in cands.iter().filter(|o| is_read(o)) {
        let Some(read) = r.value.as_array() else {
            continue;
        };
        let has: std::collections::HashSet<String> = read.iter().map(Value::to_string).collect();
        let missing: Vec<&OpRec> = adds
            .iter()
            .copied()
            .filter(|a| done_before(a, r.invoke_ns) && !has.contains(&a.invoke_value.to_string()))
            .collect();
        let Some(lost) = missing.iter().min_by_key(|o| o.complete_ns) else {
            continue;
        };
        let also = missing.len() - 1;
        return Some((
            format!(
                "{} returned a set of {} elements without {}, but {} had added it and completed before the read began{}.",
                op_name(r),
                read.len(),
                short(&lost.invoke_value),
                op_name(lost),
                if also > 0 {
                    format!(" ({also} more acknowledged adds are missing too)")
                } else {
                    String::new()
                }
            ),
            vec![r.index, lost.index],
        ));
    }
    None
}

/// A counter read outside what the increments allow: below the sum of the
/// increments that completed before it began, or above the sum of every
/// increment that began before it completed.
fn counter_account(bad: &OpRec, ops: &[&OpRec]) -> Option<Account> {
    if !is_read(bad) {
        return None;
    }
    let v = bad.value.as_i64()?;
    let adds: Vec<&OpRec> = ops
        .iter()
        .copied()
        .filter(|o| matches!(o.f.as_str(), "add" | "increment"))
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
        let all = [
            op(1, "append", "k", (0, 5), json!(1), json!(1)),
            op(2, "append", "k", (6, 9), json!(2), json!(2)),
            op(3, "read", "k", (10, 12), Value::Null, json!([1, 2, 2])),
        ];
        let s = list_account(&all.iter().collect::<Vec<_>>()).unwrap().0;
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
        let (s, named) = list_account(&all.iter().collect::<Vec<_>>()).unwrap();
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
        let all = [
            op(1, "add", "s", (0, 5), json!(7), json!(7)),
            op(2, "read", "s", (6, 8), Value::Null, json!([])),
        ];
        let s = set_account(&[&all[1]], &all.iter().collect::<Vec<_>>())
            .unwrap()
            .0;
        assert!(s.contains("without 7") && s.contains("op #1"), "{s}");
        let all = [
            op(1, "add", "c", (0, 5), json!(2), json!(2)),
            op(2, "add", "c", (1, 6), json!(3), json!(3)),
            op(3, "read", "c", (7, 8), Value::Null, json!(2)),
        ];
        let s = counter_account(&all[2], &all.iter().collect::<Vec<_>>())
            .unwrap()
            .0;
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

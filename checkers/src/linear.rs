//! The linearizability checker: partitions, interleaved/parallel search,
//! budgets, witnesses and shrinking.

use crate::compile::{Compiled, Part, compile, describe_state};
use crate::model::{CasObs, MOp};
use crate::search::{Progress, SOp, Search};
use crate::{CheckError, LinOptions, OpSummary, Verdict, Witness};
use faultline_history::Op;
use rayon::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The result of one linearizability check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LinReport {
    /// Valid, Invalid (with a witness) or Unknown.
    pub verdict: Verdict,
    /// How many independent parts (keys) were checked.
    pub partitions: usize,
    /// Ops given to the search (after dropping failed ops and optional reads).
    pub ops: usize,
    /// Time to reach the verdict (parse excluded), in milliseconds.
    pub check_ms: f64,
    /// Time spent shrinking the witness, in milliseconds.
    pub shrink_ms: f64,
    /// Search steps taken over all parts.
    pub steps: u64,
}

const FIRST_SLICE: u64 = 2_000;
const MAX_SLICE: u64 = 200_000;

/// Checks that `ops` (from [`faultline_history::pair`]) are linearizable
/// under `opts.model`. Errors only for ops the model cannot read.
pub fn check_linearizable(ops: &[Op], opts: &LinOptions) -> Result<LinReport, CheckError> {
    let start = Instant::now();
    let deadline = opts.time_limit.map(|t| start + t);
    let compiled = compile(ops, opts)?;
    let memo_bytes = Arc::new(AtomicUsize::new(0));
    let mut searches: Vec<Search> = compiled
        .parts
        .iter()
        .map(|p| {
            Search::new(
                p.ops.clone(),
                p.machine.clone(),
                p.init,
                memo_bytes.clone(),
                opts.memo_limit_bytes,
            )
        })
        .collect();
    let pool = if opts.threads > 1 {
        Some(
            rayon::ThreadPoolBuilder::new()
                .num_threads(opts.threads)
                .build()
                .map_err(|e| CheckError::Internal(format!("cannot start threads: {e}")))?,
        )
    } else {
        None
    };
    let mut slice = FIRST_SLICE;
    // Set by the first part found invalid so parallel peers stop their slice early.
    let stop = AtomicBool::new(false);
    let mut timed_out = false;
    loop {
        let active: Vec<&mut Search> = searches
            .iter_mut()
            .filter(|s| s.finished().is_none())
            .collect();
        if active.is_empty() {
            break;
        }
        match &pool {
            Some(pool) => pool.install(|| {
                active.into_par_iter().for_each(|s| {
                    if s.run_until(slice, &stop) == Progress::Invalid {
                        stop.store(true, Ordering::Relaxed);
                    }
                })
            }),
            None => {
                for s in active {
                    s.run(slice);
                }
            }
        }
        if searches
            .iter()
            .any(|s| s.finished() == Some(&Progress::Invalid))
        {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            timed_out = true;
            break;
        }
        slice = (slice * 2).min(MAX_SLICE);
    }
    let check_ms = ms(start.elapsed());
    let steps = searches.iter().map(|s| s.steps).sum();
    let n_ops = compiled.parts.iter().map(|p| p.ops.len()).sum();
    let mut report = LinReport {
        verdict: Verdict::Valid,
        partitions: compiled.parts.len(),
        ops: n_ops,
        check_ms,
        shrink_ms: 0.0,
        steps,
    };
    if let Some(bad) = searches
        .iter()
        .position(|s| s.finished() == Some(&Progress::Invalid))
    {
        let shrink_start = Instant::now();
        // Shrinking gets its own budget but never runs far past the time limit.
        let mut shrink_until = shrink_start + opts.shrink_time;
        if let Some(d) = deadline {
            shrink_until = shrink_until.min(d.max(shrink_start + Duration::from_millis(50)));
        }
        let witness = build_witness(
            ops,
            &compiled,
            bad,
            &searches[bad],
            opts,
            &memo_bytes,
            shrink_until,
        );
        report.shrink_ms = ms(shrink_start.elapsed());
        report.verdict = Verdict::Invalid {
            key: compiled.parts[bad].key.clone(),
            witness: Box::new(witness),
        };
        return Ok(report);
    }
    let undecided = searches
        .iter()
        .filter(|s| s.finished() != Some(&Progress::Valid))
        .count();
    if undecided > 0 {
        let oom = searches
            .iter()
            .any(|s| s.finished() == Some(&Progress::OutOfMemory));
        let reason = if oom {
            format!(
                "memo budget of {} MiB exhausted; {undecided} of {} parts undecided",
                opts.memo_limit_bytes >> 20,
                searches.len()
            )
        } else if timed_out {
            format!(
                "time limit of {:.1} s reached; {undecided} of {} parts undecided",
                opts.time_limit.unwrap_or_default().as_secs_f64(),
                searches.len()
            )
        } else {
            format!("{undecided} parts undecided")
        };
        report.verdict = Verdict::Unknown { reason };
    }
    Ok(report)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(ops: &[Op], src: usize) -> OpSummary {
    let op = &ops[src];
    OpSummary {
        index: op.index,
        process: op.process,
        f: op.f.clone(),
        key: op.key.clone(),
        value: op.value.clone(),
        outcome: match op.outcome {
            faultline_history::Outcome::Ok => "ok",
            faultline_history::Outcome::Fail => "fail",
            faultline_history::Outcome::Info => "info",
            faultline_history::Outcome::Pending => "pending",
        }
        .to_string(),
    }
}

/// Whether `ops` (a subset of a part) is still not linearizable within `steps`.
fn subset_invalid(
    part: &Part,
    ops: Vec<SOp>,
    steps: u64,
    memo: &Arc<AtomicUsize>,
    limit: usize,
) -> bool {
    let mut s = Search::new(ops, part.machine.clone(), part.init, memo.clone(), limit);
    s.run(steps) == Progress::Invalid
}

/// The ops among `set` (indices into `part.ops`) that observe a value no op
/// in `set` (nor the initial state) could have produced, ignoring order.
fn unsupported_reads(part: &Part, set: &[usize]) -> Vec<usize> {
    use crate::model::TxnStep;
    use rustc_hash::FxHashMap;
    let m = &part.machine;
    // For each value: the earliest call of an op in `set` that produces it. A
    // read is explained only by a producer invoked before the read returned.
    let mut written: FxHashMap<(u16, u32), usize> = FxHashMap::default();
    let mut elems: FxHashMap<u32, usize> = FxHashMap::default();
    let mut appended: Vec<(&[u8], usize)> = Vec::new();
    let mut first_acquire = usize::MAX;
    let note = |map: &mut FxHashMap<(u16, u32), usize>, k: (u16, u32), call: usize| {
        let e = map.entry(k).or_insert(call);
        *e = (*e).min(call);
    };
    for &i in set {
        let call = part.ops[i].call;
        match &part.ops[i].op {
            MOp::Write(v) => note(&mut written, (0, *v), call),
            MOp::Cas {
                to,
                obs: CasObs::Succeeded,
                ..
            } => note(&mut written, (0, *to), call),
            MOp::StrAppend(v) | MOp::StrPut(v) => appended.push((m.str_of(*v), call)),
            MOp::SeqAppend(xs) => {
                for &x in xs.iter() {
                    let e = elems.entry(x).or_insert(call);
                    *e = (*e).min(call);
                }
            }
            MOp::Txn(steps) => {
                for s in steps.iter() {
                    if let TxnStep::Write(r, v) = s {
                        note(&mut written, (*r, *v), call);
                    }
                }
            }
            MOp::Acquire => first_acquire = first_acquire.min(call),
            _ => {}
        }
    }
    // The initial value can explain an op only if no producer in `set`
    // certainly took effect before that op was invoked.
    let first_ret = set
        .iter()
        .filter(|&&i| {
            matches!(
                part.ops[i].op,
                MOp::Write(_)
                    | MOp::Cas {
                        obs: CasObs::Succeeded,
                        ..
                    }
            )
        })
        .filter_map(|&i| part.ops[i].ret)
        .min()
        .unwrap_or(usize::MAX);
    let init_vec = m.vec_of(part.init).to_vec();
    let init_elems: Vec<u32> = m.seq_of(part.init);
    let init_str = m.str_of(part.init);
    // Whether `s` can be built from the initial string or an appended/put
    // string, followed by appended strings (each usable any number of times),
    // using only ops invoked before `deadline`.
    let tileable = |s: &[u8], deadline: usize| {
        let mut reach = vec![false; s.len() + 1];
        reach[0] = true;
        if s.starts_with(init_str) {
            reach[init_str.len()] = true;
        }
        for p in 0..s.len() {
            if !reach[p] {
                continue;
            }
            for (a, call) in &appended {
                if *call < deadline && !a.is_empty() && s[p..].starts_with(a) {
                    reach[p + a.len()] = true;
                }
            }
        }
        reach[s.len()]
    };
    let before = |call: Option<&usize>, deadline: usize| call.is_some_and(|c| *c < deadline);
    let mut out = Vec::new();
    for &i in set {
        let deadline = part.ops[i].ret.unwrap_or(usize::MAX);
        let ok = match &part.ops[i].op {
            MOp::Read(Some(v))
            | MOp::Cas {
                from: v,
                obs: CasObs::Succeeded,
                ..
            } => {
                (*v == part.init && first_ret > part.ops[i].call)
                    || before(written.get(&(0, *v)), deadline)
            }
            MOp::StrRead(Some(v)) => tileable(m.str_of(*v), deadline),
            MOp::SeqRead(Some(v)) => m
                .seq_of(*v)
                .iter()
                .all(|e| init_elems.contains(e) || before(elems.get(e), deadline)),
            MOp::Txn(steps) => steps.iter().all(|s| match s {
                TxnStep::Read(r, Some(v)) => {
                    init_vec.get(*r as usize) == Some(v) || before(written.get(&(*r, *v)), deadline)
                }
                _ => true,
            }),
            // A failed CAS observed some value other than `from`.
            MOp::Cas {
                from,
                obs: CasObs::Failed,
                ..
            } => {
                (*from != part.init && first_ret > part.ops[i].call)
                    || written
                        .iter()
                        .any(|(&(_, v), &c)| v != *from && c < deadline)
            }
            MOp::Release => first_acquire < deadline,
            _ => true,
        };
        if !ok {
            out.push(i);
        }
    }
    out
}

/// The interned id of a register value, if it was interned.
fn machine_value_id(compiled: &Compiled, v: &serde_json::Value) -> u32 {
    let mut values = compiled.values.clone();
    values.id(v)
}

fn others(n: usize) -> String {
    match n {
        0 => "no other op".to_string(),
        1 => "the other op that may precede it".to_string(),
        n => format!("the {n} other ops that may precede it"),
    }
}

fn build_witness(
    ops: &[Op],
    compiled: &Compiled,
    bad: usize,
    search: &Search,
    opts: &LinOptions,
    memo: &Arc<AtomicUsize>,
    shrink_deadline: Instant,
) -> Witness {
    let part = &compiled.parts[bad];
    let mut machine = search.machine.clone();
    // Replay the longest prefix to get the state it leaves.
    let mut state = part.init;
    let prefix: Vec<usize> = search.best().iter().map(|&i| i as usize).collect();
    for &i in &prefix {
        if let Some(s) = machine.step(state, &part.ops[i].op) {
            state = s;
        }
    }
    let mut in_prefix = vec![false; part.ops.len()];
    for &i in &prefix {
        in_prefix[i] = true;
    }
    // The op that blocks: the earliest-returning required op not linearized.
    // When the search saw a read whose value can no longer be produced, that
    // read is the op to show; otherwise the earliest-completing op left out.
    let dead = search.dead_value.map(|l| search.local_values[l as usize]);
    let needs = |i: usize, v: u32| match part.ops[i].op {
        MOp::Read(Some(x)) => x == v,
        MOp::Cas {
            from,
            obs: CasObs::Succeeded,
            ..
        } => from == v,
        _ => false,
    };
    // The zone check names its read; otherwise the earliest-returning
    // unlinearized read of the dead value.
    let stale = search
        .blame_op
        .map(|i| i as usize)
        .filter(|&i| !in_prefix[i])
        .or_else(|| {
            dead.and_then(|v| {
                (0..part.ops.len())
                    .filter(|&i| !in_prefix[i] && part.ops[i].ret.is_some() && needs(i, v))
                    .min_by_key(|&i| part.ops[i].ret)
            })
        });
    let blocker = stale.or_else(|| {
        (0..part.ops.len())
            .filter(|&i| !in_prefix[i] && part.ops[i].ret.is_some())
            .min_by_key(|&i| part.ops[i].ret)
    });
    let state_text = describe_state(compiled, part.shape, &machine, state);
    let key_text = part
        .key
        .as_ref()
        .map(|k| format!("On key {k:?}: "))
        .unwrap_or_default();
    let mut explanation = String::new();
    let op_summary = blocker.map(|b| summary(ops, part.ops[b].src));
    if let Some(b) = blocker {
        let o = summary(ops, part.ops[b].src);
        let legal_here = machine.step(state, &part.ops[b].op).is_some();
        let rivals = (0..part.ops.len())
            .filter(|&i| {
                !in_prefix[i] && i != b && part.ops[i].call < part.ops[b].ret.unwrap_or(usize::MAX)
            })
            .count();
        let dead_at_root = stale.is_some() && prefix.is_empty();
        if dead_at_root {
            explanation.push_str(&format!("{key_text}{} ", o.describe()));
        } else {
            explanation.push_str(&format!(
                "{key_text}the longest linearizable prefix has {} ops, after which {state_text}. {} ",
                prefix.len(),
                o.describe()
            ));
        }
        if let (Some(_), Some(v)) = (stale, dead) {
            let v = compiled.values.get(v);
            let never = !(0..part.ops.len()).any(|i| match part.ops[i].op {
                MOp::Write(x)
                | MOp::Cas {
                    to: x,
                    obs: CasObs::Succeeded,
                    ..
                } => compiled.values.get(x) == v,
                _ => false,
            }) && part.init != machine_value_id(compiled, &v);
            if never {
                explanation.push_str(&format!(
                    "needs the register to hold {v}, which no op writes and which is not the initial value."
                ));
            } else {
                explanation.push_str(&format!(
                    "needs the register to hold {v}, but in every order that gets this far, each op that writes {v} has already taken effect and been overwritten (a stale or lost read)."
                ));
            }
        } else if legal_here {
            explanation.push_str(&format!(
                "could go next, but every order of it and {} leads to a dead end.",
                others(rivals)
            ));
        } else {
            explanation.push_str(&format!(
                "cannot take effect in that state, and {}.",
                match rivals {
                    0 => "no other op may go before it".to_string(),
                    1 => "the other op that may precede it cannot make it possible".to_string(),
                    n => format!(
                        "none of the {n} other ops that may precede it can make it possible"
                    ),
                }
            ));
        }
    }
    // Shrink: remove chunks while the rest stays non-linearizable, and every
    // read that some op in the full set explains stays explained (else the
    // shrunk set would just be "a read of a value nobody wrote").
    let mut cur: Vec<usize> = (0..part.ops.len()).collect();
    let baseline = unsupported_reads(part, &cur);
    let mut complete = true;
    let mut chunk = cur.len().div_ceil(2).max(1);
    'outer: loop {
        let mut i = 0;
        let mut changed = false;
        while i < cur.len() {
            if Instant::now() >= shrink_deadline {
                complete = false;
                break 'outer;
            }
            let end = (i + chunk).min(cur.len());
            let cand: Vec<usize> = cur[..i].iter().chain(&cur[end..]).copied().collect();
            let sub = || {
                cand.iter()
                    .map(|&j| part.ops[j].clone())
                    .collect::<Vec<SOp>>()
            };
            if !cand.is_empty()
                && unsupported_reads(part, &cand)
                    .iter()
                    .all(|r| baseline.contains(r))
                && subset_invalid(part, sub(), opts.shrink_steps, memo, opts.memo_limit_bytes)
            {
                cur = cand;
                changed = true;
            } else {
                i += chunk;
            }
        }
        // Removals are not monotone (a removed read can free the write it
        // needed), so single-op passes repeat until nothing changes.
        if chunk == 1 && !changed {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    let minimal: Vec<OpSummary> = cur.iter().map(|&j| summary(ops, part.ops[j].src)).collect();
    explanation.push_str(&format!(
        " {} {} ops that are not linearizable together:",
        if complete {
            "A minimal set is these"
        } else {
            "Shrinking ran out of time; a reduced set is these"
        },
        minimal.len()
    ));
    for m in &minimal {
        explanation.push_str("\n  ");
        explanation.push_str(&m.describe());
    }
    Witness {
        op: op_summary,
        prefix: prefix
            .iter()
            .map(|&i| summary(ops, part.ops[i].src))
            .collect(),
        state: state_text,
        minimal,
        minimal_complete: complete,
        explanation,
    }
}

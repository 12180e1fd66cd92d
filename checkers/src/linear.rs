//! The linearizability checker: partitions, interleaved/parallel search,
//! budgets, witnesses and shrinking.

use crate::compile::{Compiled, Part, compile, describe_state};
use crate::search::{Progress, SOp, Search};
use crate::{CheckError, LinOptions, OpSummary, Verdict, Witness};
use faultline_history::Op;
use rayon::prelude::*;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
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
                    s.run(slice);
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
        let witness = build_witness(ops, &compiled, bad, &searches[bad], opts, &memo_bytes);
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
    use crate::model::{CasObs, MOp, TxnStep};
    use rustc_hash::FxHashSet;
    let m = &part.machine;
    let mut written: FxHashSet<(u16, u32)> = FxHashSet::default();
    let mut appended: Vec<&[u8]> = Vec::new();
    let mut elems: FxHashSet<u32> = FxHashSet::default();
    let mut acquires = 0usize;
    for &i in set {
        match &part.ops[i].op {
            MOp::Write(v) => {
                written.insert((0, *v));
            }
            MOp::Cas {
                to,
                obs: CasObs::Succeeded,
                ..
            } => {
                written.insert((0, *to));
            }
            MOp::StrAppend(v) | MOp::StrPut(v) => appended.push(m.str_of(*v)),
            MOp::SeqAppend(xs) => elems.extend(xs.iter().copied()),
            MOp::Txn(steps) => {
                for s in steps.iter() {
                    if let TxnStep::Write(r, v) = s {
                        written.insert((*r, *v));
                    }
                }
            }
            MOp::Acquire => acquires += 1,
            _ => {}
        }
    }
    let init_vec = m.vec_of(part.init).to_vec();
    let init_elems: FxHashSet<u32> = m.seq_of(part.init).into_iter().collect();
    let init_str = m.str_of(part.init);
    // Whether `s` can be built from the initial string or an appended/put
    // string, followed by appended strings (each usable any number of times).
    let tileable = |s: &[u8]| {
        let mut reach = vec![false; s.len() + 1];
        reach[0] = true;
        if s.starts_with(init_str) {
            reach[init_str.len()] = true;
        }
        for p in 0..s.len() {
            if !reach[p] {
                continue;
            }
            for a in &appended {
                if !a.is_empty() && s[p..].starts_with(a) {
                    reach[p + a.len()] = true;
                }
            }
        }
        reach[s.len()]
    };
    let mut out = Vec::new();
    for &i in set {
        let ok = match &part.ops[i].op {
            MOp::Read(Some(v))
            | MOp::Cas {
                from: v,
                obs: CasObs::Succeeded,
                ..
            } => *v == part.init || written.contains(&(0, *v)),
            MOp::StrRead(Some(v)) => tileable(m.str_of(*v)),
            MOp::SeqRead(Some(v)) => m
                .seq_of(*v)
                .iter()
                .all(|e| elems.contains(e) || init_elems.contains(e)),
            MOp::Txn(steps) => steps.iter().all(|s| match s {
                TxnStep::Read(r, Some(v)) => {
                    init_vec.get(*r as usize) == Some(v) || written.contains(&(*r, *v))
                }
                _ => true,
            }),
            MOp::Release => acquires > 0,
            _ => true,
        };
        if !ok {
            out.push(i);
        }
    }
    out
}

fn others(n: usize) -> String {
    match n {
        0 => "no other op".to_string(),
        1 => "the 1 other op that may precede it".to_string(),
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
    let blocker = (0..part.ops.len())
        .filter(|&i| !in_prefix[i] && part.ops[i].ret.is_some())
        .min_by_key(|&i| part.ops[i].ret);
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
        explanation.push_str(&format!(
            "{key_text}the longest linearizable prefix has {} ops, after which {state_text}. {} ",
            prefix.len(),
            o.describe()
        ));
        if legal_here {
            explanation.push_str(&format!(
                "could go next, but every order of it and {} leads to a dead end.",
                others(rivals)
            ));
        } else {
            explanation.push_str(&format!(
                "cannot take effect in that state, and {}.",
                if rivals == 0 {
                    "no other op may go before it".to_string()
                } else {
                    format!("none of {} can make it possible", others(rivals))
                }
            ));
        }
    }
    // Shrink: remove chunks while the rest stays non-linearizable, and every
    // read that some op in the full set explains stays explained (else the
    // shrunk set would just be "a read of a value nobody wrote").
    let shrink_deadline = Instant::now() + opts.shrink_time;
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

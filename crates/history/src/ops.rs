//! Pairing events into operations: an invocation with its completion.

use crate::{Event, EventType, HistoryError, Process};
use std::collections::HashMap;

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Completed `ok`: it took effect.
    Ok,
    /// Completed `fail`: it certainly did not take effect.
    Fail,
    /// Completed `info`: it may or may not take effect.
    Info,
    /// Never completed before the history ended: like `info`.
    Pending,
}

/// A client operation: an invocation and its completion, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    /// The client process.
    pub process: u64,
    /// The function (from the invocation).
    pub f: String,
    /// The key, if any (from the invocation, else the completion).
    pub key: Option<String>,
    /// The invocation's value (the argument).
    pub invoke_value: serde_json::Value,
    /// The completion's value for `ok` ops (the result); the invocation's otherwise.
    pub value: serde_json::Value,
    /// How it ended.
    pub outcome: Outcome,
    /// The completion's error, if any.
    pub error: Option<String>,
    /// A failed op's completion value (what the system reported, e.g. the
    /// current value a refused cas saw, when its error says so).
    pub fail_value: Option<serde_json::Value>,
    /// Position of the invocation in the event list (the call "time" for checking).
    pub call: usize,
    /// Position of the completion in the event list, if it completed.
    pub ret: Option<usize>,
    /// The invocation event's `index`.
    pub index: u64,
    /// The completion event's `index`, if it completed.
    pub ret_index: Option<u64>,
    /// The invocation's `time` (ns).
    pub time: u64,
}

/// Pairs invocations with completions by process, in event order.
///
/// Nemesis events are skipped. A completion with no open invocation is an
/// error, except `info` (Jepsen logs nemesis-like `info` events that way); a
/// process that invokes while its previous op is still open is an error.
pub fn pair(name: &str, events: &[Event]) -> Result<Vec<Op>, HistoryError> {
    let mut ops: Vec<Op> = Vec::new();
    let mut open: HashMap<u64, usize> = HashMap::new();
    for (pos, e) in events.iter().enumerate() {
        let Process::Client(p) = e.process else {
            continue;
        };
        let malformed = |message: String| HistoryError::Malformed {
            file: name.to_string(),
            index: e.index,
            message,
        };
        match e.kind {
            EventType::Invoke => {
                if let Some(&prev) = open.get(&p) {
                    return Err(malformed(format!(
                        "process {p} invokes {} while its {} (event {}) is still open",
                        e.f, ops[prev].f, ops[prev].index
                    )));
                }
                open.insert(p, ops.len());
                ops.push(Op {
                    process: p,
                    f: e.f.clone(),
                    key: e.key.clone(),
                    invoke_value: e.value.clone(),
                    value: e.value.clone(),
                    outcome: Outcome::Pending,
                    error: None,
                    fail_value: None,
                    call: pos,
                    ret: None,
                    index: e.index,
                    ret_index: None,
                    time: e.time,
                });
            }
            kind => {
                let Some(i) = open.remove(&p) else {
                    if kind == EventType::Info {
                        continue;
                    }
                    return Err(malformed(format!(
                        "process {p} completes {} ({}) with no open invocation",
                        e.f,
                        kind.name()
                    )));
                };
                let op = &mut ops[i];
                if op.f != e.f {
                    return Err(malformed(format!(
                        "process {p} invoked {} but completes {}",
                        op.f, e.f
                    )));
                }
                op.outcome = match kind {
                    EventType::Ok => Outcome::Ok,
                    EventType::Fail => Outcome::Fail,
                    _ => Outcome::Info,
                };
                if kind == EventType::Ok {
                    op.value = e.value.clone();
                }
                if kind == EventType::Fail {
                    op.fail_value = Some(e.value.clone());
                }
                if op.key.is_none() {
                    op.key = e.key.clone();
                }
                op.error = e.error.clone();
                op.ret = Some(pos);
                op.ret_index = Some(e.index);
            }
        }
    }
    Ok(ops)
}

//! faultline-workloads: named workloads. A workload is a name, a description,
//! a seeded generator of operations, the mapping of each operation onto the
//! node's HTTP API and back, and the final reads that close a run.
//!
//! Workloads do no I/O: the harness sends the [`HttpCall`]s and hands the
//! answers back to [`Workload::interpret`].

mod append;
mod counter;
mod register;
mod set;

pub use append::AppendWorkload;
pub use counter::CounterWorkload;
pub use faultline_checkers::ModelKind;
pub use register::{KvWorkload, RegisterWorkload};
pub use set::SetWorkload;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One operation as a generator produces it (the invocation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpSpec {
    /// The function: `read`, `write`, `cas`, ...
    pub f: String,
    /// The key, for workloads over independent keys.
    pub key: Option<String>,
    /// The argument (`null` for reads, the value for writes, `[from, to]` for cas).
    pub value: Value,
}

/// The HTTP method of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// PUT
    Put,
    /// POST
    Post,
    /// DELETE
    Delete,
}

/// One HTTP request against a node's client API.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpCall {
    /// The method.
    pub method: Method,
    /// The path and query, e.g. `/kv/r` (keys are percent-encoded).
    pub path: String,
    /// The JSON body, if any.
    pub body: Option<Value>,
}

impl HttpCall {
    /// A linearizable read of `key` (already percent-encoded).
    pub fn read(key: &str) -> HttpCall {
        HttpCall {
            method: Method::Get,
            path: format!("/kv/{key}?consistency=linearizable"),
            body: None,
        }
    }

    /// An effectful request on `key` (already percent-encoded): `action` is
    /// the path after the key (`""`, `"/cas"`, `"/append"`, `"/incr"`).
    pub fn effect(method: Method, key: &str, action: &str, body: Value) -> HttpCall {
        HttpCall {
            method,
            path: format!("/kv/{key}{action}"),
            body: Some(body),
        }
    }
}

/// How an answer from a node ends an operation.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// It took effect; the completion's value.
    Ok(Value),
    /// It certainly did not take effect; the completion's value and why.
    Fail(Value, String),
    /// It may or may not have taken effect; why.
    Info(String),
}

/// A generator of operations for one client worker, seeded.
pub trait Generator: Send {
    /// The next operation to invoke.
    fn next_op(&mut self) -> OpSpec;
    /// Tells the generator how an operation ended (e.g. to aim cas at a
    /// value that was really seen).
    fn observe(&mut self, _op: &OpSpec, _reply: &Reply) {}
}

/// Which checker judges a workload's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checker {
    /// Linearizability under this model, keys checked apart.
    Linearizable(ModelKind),
    /// The set checker: lost, unexpected, duplicated and stale elements.
    Set,
    /// The counter checker: every read within acknowledged and attempted increments.
    Counter,
}

/// A named workload.
pub trait Workload: Send + Sync {
    /// The name used on the command line.
    fn name(&self) -> &'static str;
    /// One line for `--help` and error messages.
    fn description(&self) -> &'static str;
    /// A generator for worker `worker` of `workers`, from the run's seed.
    /// Written values are unique across all workers of a run.
    fn generator(&self, seed: u64, worker: usize, workers: usize) -> Box<dyn Generator>;
    /// The HTTP call that performs `op`.
    fn request(&self, op: &OpSpec) -> HttpCall;
    /// Interprets a successful-looking answer (2xx, or a status the workload
    /// owns such as 412 for a failed cas). Transport errors and the node's
    /// generic errors (`not_leader`, `indeterminate`, ...) are the harness's.
    fn interpret(&self, op: &OpSpec, status: u16, body: &Value) -> Reply;
    /// The reads to issue after the quiet period on a cluster of `nodes`
    /// nodes (the harness starts read `k` at node `k % nodes`).
    fn final_reads(&self, nodes: usize) -> Vec<OpSpec>;
    /// The checker that judges this workload's history.
    fn checker(&self) -> Checker;
    /// The initial value of every key (what a read of an absent key returns).
    fn initial_value(&self) -> Value {
        Value::Null
    }
}

/// Every workload this crate knows, in the order `--help` lists them.
pub fn all() -> Vec<Box<dyn Workload>> {
    vec![
        Box::new(RegisterWorkload),
        Box::new(KvWorkload::default()),
        Box::new(SetWorkload),
        Box::new(CounterWorkload),
        Box::new(AppendWorkload::default()),
    ]
}

/// The workload with this name, or an error listing the known ones.
pub fn by_name(name: &str) -> Result<Box<dyn Workload>, String> {
    let all = all();
    let known: Vec<&str> = all.iter().map(|w| w.name()).collect();
    let known = known.join(", ");
    all.into_iter()
        .find(|w| w.name() == name)
        .ok_or_else(|| format!("unknown workload `{name}`; known: {known}"))
}

/// Percent-encodes a key for use in a URL path segment.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_workload_lists_known_ones() {
        let e = by_name("bank").err().expect("unknown");
        for name in ["bank", "register", "kv", "set", "counter", "append"] {
            assert!(e.contains(name), "{name} not in {e}");
        }
        for w in all() {
            assert_eq!(by_name(w.name()).expect("known").name(), w.name());
            assert!(!w.description().is_empty());
        }
    }

    #[test]
    fn keys_are_percent_encoded() {
        assert_eq!(encode_key("a b/c"), "a%20b%2Fc");
        assert_eq!(encode_key("k-1"), "k-1");
    }
}

/// Test helpers: judge a hand-made history with a workload's checker, as the
/// harness does.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Checker, Workload};
    use faultline_checkers::{LinOptions, Verdict, check_counter, check_linearizable, check_set};
    use serde_json::{Value, json};

    /// Judges `(process, type, f, key, value)` events in this order.
    pub fn judge_keyed(w: &dyn Workload, lines: &[(u64, &str, &str, &str, Value)]) -> Verdict {
        let text: String = lines
            .iter()
            .enumerate()
            .map(|(i, (p, t, f, k, v))| {
                json!({"index": i, "time": i * 1000, "process": p, "type": t, "f": f, "key": k, "value": v})
                    .to_string()
                    + "\n"
            })
            .collect();
        let history = faultline_history::parse_jsonl("test", &text).expect("parse");
        let ops = faultline_history::pair("test", &history.events).expect("pair");
        match w.checker() {
            Checker::Set => check_set(&ops).verdict,
            Checker::Counter => check_counter(&ops).verdict,
            Checker::Linearizable(model) => {
                let mut opts = LinOptions::new(model);
                opts.initial = w.initial_value();
                check_linearizable(&ops, &opts).expect("checkable").verdict
            }
        }
    }

    /// Judges `(process, type, f, value)` events on the workload's first final-read key.
    pub fn judge(w: &dyn Workload, lines: &[(u64, &str, &str, Value)]) -> Verdict {
        let key = w.final_reads(1)[0].key.clone().unwrap_or_default();
        let keyed: Vec<(u64, &str, &str, &str, Value)> = lines
            .iter()
            .map(|(p, t, f, v)| (*p, *t, *f, key.as_str(), v.clone()))
            .collect();
        judge_keyed(w, &keyed)
    }
}

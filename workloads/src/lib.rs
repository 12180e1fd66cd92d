//! faultline-workloads: named workloads. A workload is a name, a
//! description, a seeded generator of operations, the [`Command`] each
//! operation asks of the system under test, the final reads that close a
//! run, and the [`Checker`] that judges its history.
//!
//! Workloads do no I/O and know no system: [`Command`] is the closed
//! vocabulary every system's client implements (faultline-node's HTTP API,
//! etcd, ZooKeeper, or a user's program over JSON lines), so a workload
//! never names a URL, and a client never needs to know which workload or
//! checker it serves.

mod append;
mod counter;
mod register;
mod set;

pub use append::AppendWorkload;
pub use counter::CounterWorkload;
pub use faultline_checkers::{Checker, ModelKind};
pub use register::{KvWorkload, RegisterWorkload};
pub use set::SetWorkload;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One operation as a generator produces it (the invocation, as the
/// history records it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpSpec {
    /// The function: `read`, `write`, `cas`, ...
    pub f: String,
    /// The key, for workloads over independent keys.
    pub key: Option<String>,
    /// The argument (`null` for reads, the value for writes, `[from, to]` for cas).
    pub value: Value,
}

/// What a client must do on the system under test: the vocabulary every
/// system's client implements. As JSON (the program-client protocol's
/// request line) it is `{"f": "read", "key": "r"}`, `{"f": "write", "key",
/// "value"}`, `{"f": "cas", "key", "from", "to"}`, `{"f": "append", "key",
/// "value"}`, `{"f": "incr", "key", "delta"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Command {
    /// The value at `key`: `null` when absent, else the value written, the
    /// list appended, or the integer incremented.
    Read {
        /// The key.
        key: String,
    },
    /// Sets `key` to `value`.
    Write {
        /// The key.
        key: String,
        /// The value (unique in a run).
        value: Value,
    },
    /// Sets `key` to `to` if it holds `from` (`null`: absent). Refused
    /// otherwise, a definite failure that may report the current value.
    Cas {
        /// The key.
        key: String,
        /// The expected value.
        from: Value,
        /// The new value.
        to: Value,
    },
    /// Appends `value` to the list at `key` (absent: the empty list).
    Append {
        /// The key.
        key: String,
        /// The element.
        value: Value,
    },
    /// Adds `delta` to the integer at `key` (absent: 0).
    Incr {
        /// The key.
        key: String,
        /// The increment.
        delta: i64,
    },
}

impl Command {
    /// The key it touches.
    pub fn key(&self) -> &str {
        match self {
            Command::Read { key }
            | Command::Write { key, .. }
            | Command::Cas { key, .. }
            | Command::Append { key, .. }
            | Command::Incr { key, .. } => key,
        }
    }

    /// Whether it can change state (a read cannot).
    pub fn is_effectful(&self) -> bool {
        !matches!(self, Command::Read { .. })
    }

    /// Its name, as in the JSON `f` field.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Read { .. } => "read",
            Command::Write { .. } => "write",
            Command::Cas { .. } => "cas",
            Command::Append { .. } => "append",
            Command::Incr { .. } => "incr",
        }
    }
}

/// How an operation ended. A client answers a [`Command`] with one (`Ok`
/// holds the value read, `null` when absent, and is ignored for other
/// commands; `Fail` may hold the current value a refused cas saw);
/// [`Workload::completion`] turns that into the history's completion.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// It took effect; the completion's value.
    Ok(Value),
    /// It certainly did not take effect; the completion's value (`null`, or
    /// what a refused cas saw) and why.
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

/// How a run shapes a workload's traffic: how many keys (for workloads
/// over many keys) and how often each kind of operation comes. Exploration
/// draws it from the run's seed; [`Workload::shape`] is the default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Keys (1 for single-key workloads).
    pub keys: usize,
    /// The weight of each operation kind, in [`Workload::kinds`] order.
    pub weights: Vec<u32>,
}

/// Picks an index with probability proportional to its weight (all zero:
/// the first).
pub fn pick(rng: &mut rand_chacha::ChaCha8Rng, weights: &[u32]) -> usize {
    use rand::RngExt as _;
    let total: u32 = weights.iter().sum();
    if total == 0 {
        return 0;
    }
    let mut roll = rng.random_range(0..total);
    for (i, w) in weights.iter().enumerate() {
        if roll < *w {
            return i;
        }
        roll -= w;
    }
    weights.len() - 1
}

/// A named workload.
pub trait Workload: Send + Sync {
    /// The name used on the command line.
    fn name(&self) -> &'static str;
    /// One line for `--help` and error messages.
    fn description(&self) -> &'static str;
    /// The operation kinds its generator draws from (the `f`s).
    fn kinds(&self) -> &'static [&'static str];
    /// Its shape: keys and the weight of each kind.
    fn shape(&self) -> Shape;
    /// Whether it runs over a number of independent keys that a shape may change.
    fn multi_key(&self) -> bool {
        false
    }
    /// The same workload in another shape (checked by [`build`]).
    fn with_shape(&self, shape: Shape) -> Box<dyn Workload>;
    /// A generator for worker `worker` of `workers`, from the run's seed.
    /// Written values are unique across all workers of a run.
    fn generator(&self, seed: u64, worker: usize, workers: usize) -> Box<dyn Generator>;
    /// What the system must do for `op`.
    fn command(&self, op: &OpSpec) -> Command;
    /// The history's completion of `op` from the client's answer: a read's
    /// value (`null`, absent, becomes [`Workload::initial_value`]); any other
    /// command completes with its argument; failures and `info` pass through.
    fn completion(&self, op: &OpSpec, answer: Reply) -> Reply {
        match answer {
            Reply::Ok(v) if op.f == "read" => {
                Reply::Ok(if v.is_null() { self.initial_value() } else { v })
            }
            Reply::Ok(_) => Reply::Ok(op.value.clone()),
            other => other,
        }
    }
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

/// Every workload this crate knows, with its default shape, in the order
/// `--help` lists them.
pub fn all() -> Vec<Box<dyn Workload>> {
    vec![
        Box::new(RegisterWorkload::default()),
        Box::new(KvWorkload::default()),
        Box::new(SetWorkload::default()),
        Box::new(CounterWorkload::default()),
        Box::new(AppendWorkload::default()),
    ]
}

/// The workload with this name and its default shape, or an error listing
/// the known ones.
pub fn by_name(name: &str) -> Result<Box<dyn Workload>, String> {
    build(name, None)
}

/// The workload with this name in `shape` (`None`: its default), or an
/// error naming what is wrong.
pub fn build(name: &str, shape: Option<&Shape>) -> Result<Box<dyn Workload>, String> {
    let all = all();
    let known: Vec<&str> = all.iter().map(|w| w.name()).collect();
    let known = known.join(", ");
    let w = all
        .into_iter()
        .find(|w| w.name() == name)
        .ok_or_else(|| format!("unknown workload `{name}`; known: {known}"))?;
    let Some(shape) = shape else {
        return Ok(w);
    };
    if shape.weights.len() != w.kinds().len() || shape.weights.iter().all(|x| *x == 0) {
        return Err(format!(
            "workload {name}: weights {:?} must give {} kinds ({}) and not all be 0",
            shape.weights,
            w.kinds().len(),
            w.kinds().join(", ")
        ));
    }
    let keys_ok = if w.multi_key() {
        (1..=64).contains(&shape.keys)
    } else {
        shape.keys == 1
    };
    if !keys_ok {
        return Err(format!(
            "workload {name}: {} keys (allowed: {})",
            shape.keys,
            if w.multi_key() { "1 to 64" } else { "1" }
        ));
    }
    Ok(w.with_shape(shape.clone()))
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
    fn shapes_are_checked_and_applied() {
        let kv = build(
            "kv",
            Some(&Shape {
                keys: 2,
                weights: vec![0, 1, 1],
            }),
        )
        .expect("valid shape");
        assert_eq!(kv.final_reads(3).len(), 2);
        let mut g = kv.generator(1, 0, 1);
        assert!((0..100).all(|_| g.next_op().f != "read"));
        for (name, keys, weights, says) in [
            ("register", 2, vec![1, 1, 1], "2 keys"),
            ("kv", 0, vec![1, 1, 1], "0 keys"),
            ("set", 1, vec![1], "must give 2 kinds"),
            ("counter", 1, vec![0, 0], "not all be 0"),
        ] {
            let e = build(name, Some(&Shape { keys, weights }))
                .err()
                .expect(name);
            assert!(e.contains(says), "{name}: {e}");
        }
    }

    #[test]
    fn picks_follow_the_weights() {
        use rand::SeedableRng as _;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut counts = [0u32; 3];
        for _ in 0..6000 {
            counts[pick(&mut rng, &[1, 0, 2])] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!((1700..2300).contains(&counts[0]), "{counts:?}");
        assert_eq!(pick(&mut rng, &[0, 0]), 0);
    }

    #[test]
    fn commands_are_json_lines_of_the_program_protocol() {
        let c = Command::Cas {
            key: "r".into(),
            from: Value::Null,
            to: serde_json::json!(3),
        };
        let text = serde_json::to_string(&c).expect("serialize");
        assert_eq!(text, r#"{"f":"cas","key":"r","from":null,"to":3}"#);
        let back: Command = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, c);
        let incr: Command =
            serde_json::from_str(r#"{"f":"incr","key":"c","delta":2}"#).expect("incr");
        assert_eq!(incr.key(), "c");
        assert!(incr.is_effectful() && !Command::Read { key: "c".into() }.is_effectful());
    }
}

/// Test helpers: judge a hand-made history with a workload's checker, as the
/// harness does.
#[cfg(test)]
pub(crate) mod testing {
    use super::Workload;
    use faultline_checkers::{LinOptions, ModelKind, Verdict};
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
        let mut opts = LinOptions::new(ModelKind::Register);
        opts.initial = w.initial_value();
        faultline_checkers::check(w.checker(), &ops, &opts)
            .expect("checkable")
            .verdict
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

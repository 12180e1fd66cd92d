//! faultline-checkers: linearizability and other checkers over histories; no I/O.
//!
//! [`check_linearizable`] decides whether paired ops are linearizable under a
//! [`ModelKind`], returning a [`Verdict`] value; [`check_set`],
//! [`check_counter`] and [`stats`] check other properties of the same ops.
//! [`Checker`] and [`check`] are the one dispatch over them that every
//! caller uses.

mod compile;
mod counter;
mod dispatch;
mod linear;
mod model;
mod search;
mod set;
mod stats;

pub use counter::{CounterReport, check_counter};
pub use dispatch::{Checker, Judgement, check};
pub use linear::{LinReport, check_linearizable};
pub use model::ModelKind;
pub use set::{SetReport, check_set};
pub use stats::{FStats, STATS_MIN_ATTEMPTS, never_succeeded, stats};

use std::time::Duration;

/// The error of a refused `cas` whose completion holds the value the
/// system saw instead of `from` (faultline's histories).
pub const REFUSED_CAS: &str = "cas-mismatch";

/// How to check a history for linearizability.
#[derive(Debug, Clone)]
pub struct LinOptions {
    /// The sequential specification.
    pub model: ModelKind,
    /// The initial value of every register (or `{"x": 0, ...}` for multi-register,
    /// a string for kv appends, a list for append). `null` = absent/empty.
    pub initial: serde_json::Value,
    /// Knossos semantics: a read of `nil` matches any state. Otherwise `nil`
    /// means "absent" (Porcupine etcd, our own histories).
    pub nil_read_matches_any: bool,
    /// Porcupine etcd semantics: a failed CAS observed a different value (kept
    /// as an op). Otherwise failed ops are removed.
    pub failed_cas_observes: bool,
    /// Our histories: a failed `cas` whose error is [`REFUSED_CAS`] saw its
    /// completion's value (the system reported it), so it is kept as a read
    /// of that value within its interval.
    pub refused_cas_observes: bool,
    /// Give up with Unknown after this long.
    pub time_limit: Option<Duration>,
    /// Give up with Unknown when the memo caches grow past this many bytes.
    pub memo_limit_bytes: usize,
    /// Threads for checking keys in parallel; 1 interleaves keys on this thread.
    pub threads: usize,
    /// Time allowed for shrinking a witness to a minimal op set.
    pub shrink_time: Duration,
    /// Step budget of each trial search while shrinking.
    pub shrink_steps: u64,
}

impl LinOptions {
    /// Options for `model` with our defaults: initial `null`, `nil` reads mean
    /// absent, failed ops removed, 60 s, 4 GiB, one thread, 2 s of shrinking.
    pub fn new(model: ModelKind) -> LinOptions {
        LinOptions {
            model,
            initial: serde_json::Value::Null,
            nil_read_matches_any: false,
            failed_cas_observes: false,
            refused_cas_observes: true,
            time_limit: Some(Duration::from_secs(60)),
            memo_limit_bytes: 4 << 30,
            threads: 1,
            shrink_time: Duration::from_secs(2),
            shrink_steps: 200_000,
        }
    }
}

impl LinOptions {
    /// The semantics a history format implies, as the tools that wrote it check it:
    /// EDN gets Knossos's (nil reads match anything, failed ops removed,
    /// registers start at 0); Porcupine's etcd logs get Porcupine's (the register
    /// starts absent, a failed CAS is an observation); Porcupine's kv files start
    /// every key at the empty string; our JSONL starts registers absent and
    /// removes failed ops.
    pub fn for_format(format: faultline_history::Format, model: ModelKind) -> LinOptions {
        use faultline_history::Format;
        let mut o = LinOptions::new(model);
        match format {
            Format::Edn => {
                o.nil_read_matches_any = true;
                o.refused_cas_observes = false;
                if model != ModelKind::Append && model != ModelKind::Kv {
                    o.initial = serde_json::json!(0);
                }
            }
            Format::PorcupineEtcd => {
                o.failed_cas_observes = true;
                o.refused_cas_observes = false;
            }
            Format::PorcupineKv => {
                o.initial = serde_json::json!("");
                o.refused_cas_observes = false;
            }
            Format::Jsonl => {}
        }
        o
    }
}

/// A checker's verdict. Invalid beats Unknown beats Valid when combining.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    /// The property holds.
    Valid,
    /// The property is violated; the witness says how.
    Invalid {
        /// The key (part) found invalid, if the history has keys.
        key: Option<String>,
        /// Why.
        witness: Box<Witness>,
    },
    /// The checker could not decide within its budget.
    Unknown {
        /// Why not.
        reason: String,
    },
}

impl Verdict {
    /// `valid`, `invalid` or `unknown`.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Invalid { .. } => "invalid",
            Verdict::Unknown { .. } => "unknown",
        }
    }
}

/// One op as shown in a witness.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OpSummary {
    /// The invocation's event index.
    pub index: u64,
    /// The client process.
    pub process: u64,
    /// The function.
    pub f: String,
    /// The key, if any.
    pub key: Option<String>,
    /// The result (for ok ops) or the argument.
    pub value: serde_json::Value,
    /// `ok`, `fail`, `info` or `pending`.
    pub outcome: String,
}

impl OpSummary {
    /// e.g. `op 14 (process 21 read 2, ok)`.
    pub fn describe(&self) -> String {
        format!(
            "op {} (process {} {}{} {}, {})",
            self.index,
            self.process,
            self.f,
            self.key
                .as_ref()
                .map(|k| format!(" key {k:?}"))
                .unwrap_or_default(),
            self.value,
            self.outcome
        )
    }
}

/// Why a history is not linearizable.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Witness {
    /// The op that cannot be linearized after the longest prefix (the
    /// earliest-completing op left out).
    pub op: Option<OpSummary>,
    /// The longest linearizable prefix found, in linearization order.
    pub prefix: Vec<OpSummary>,
    /// The model state after that prefix, in words.
    pub state: String,
    /// A set of ops that is still not linearizable, shrunk by removing ops.
    pub minimal: Vec<OpSummary>,
    /// Whether shrinking finished (no single op can be removed), i.e. `minimal` is 1-minimal.
    pub minimal_complete: bool,
    /// The witness in plain words.
    pub explanation: String,
}

/// The checker itself failed (as opposed to finding the history invalid).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// An op's function is not part of the model.
    #[error("event {index}: the {model} model has no operation {f:?}")]
    UnsupportedOp {
        /// The invocation's event index.
        index: u64,
        /// The function.
        f: String,
        /// The model's name.
        model: &'static str,
    },
    /// An op's value has the wrong shape.
    #[error("event {index}: {f} value {value} is not {expected}")]
    BadValue {
        /// The invocation's event index.
        index: u64,
        /// The function.
        f: String,
        /// The value found.
        value: String,
        /// The shape expected.
        expected: String,
    },
    /// Something outside the history failed (e.g. starting threads).
    #[error("internal error: {0}")]
    Internal(String),
}

//! The event type: one invocation or completion in a history.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Who performed an event: a client process (a number) or the nemesis.
///
/// Serialized as a JSON number, or the string `"nemesis"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    /// A client process. A process whose op ends in `info` is never reused.
    Client(u64),
    /// The fault injector.
    Nemesis,
}

impl std::fmt::Display for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Process::Client(p) => write!(f, "{p}"),
            Process::Nemesis => f.write_str("nemesis"),
        }
    }
}

impl Serialize for Process {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Process::Client(p) => s.serialize_u64(*p),
            Process::Nemesis => s.serialize_str("nemesis"),
        }
    }
}

impl<'de> Deserialize<'de> for Process {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Process;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a non-negative process number or \"nemesis\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Process, E> {
                Ok(Process::Client(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Process, E> {
                u64::try_from(v)
                    .map(Process::Client)
                    .map_err(|_| E::custom(format!("negative process number {v}")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Process, E> {
                if v == "nemesis" {
                    Ok(Process::Nemesis)
                } else {
                    Err(E::custom(format!(
                        "process must be a number or \"nemesis\", not {v:?}"
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// What an event says about its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The operation was invoked.
    Invoke,
    /// The operation took effect.
    Ok,
    /// The operation certainly did not take effect.
    Fail,
    /// The operation may or may not have taken effect (and may still take effect).
    Info,
}

impl EventType {
    /// The lowercase name (`invoke`, `ok`, `fail`, `info`).
    pub fn name(self) -> &'static str {
        match self {
            EventType::Invoke => "invoke",
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            EventType::Info => "info",
        }
    }
}

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history, 0, 1, 2, … in the order events happened.
    pub index: u64,
    /// Nanoseconds since the run started, from a monotonic clock.
    pub time: u64,
    /// Who performed it.
    pub process: Process,
    /// Invocation or completion kind.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The operation's function, e.g. `read`, `write`, `cas`, `append`, `txn`.
    pub f: String,
    /// The key for operations on independent keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The operation's argument (on invoke) or result (on completion).
    #[serde(default)]
    pub value: serde_json::Value,
    /// Why the operation failed or is indeterminate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The node the client talked to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Event {
    /// A new event with no key, error or node.
    pub fn new(
        index: u64,
        time: u64,
        process: Process,
        kind: EventType,
        f: impl Into<String>,
        value: serde_json::Value,
    ) -> Event {
        Event {
            index,
            time,
            process,
            kind,
            f: f.into(),
            key: None,
            value,
            error: None,
            node: None,
        }
    }
}

//! The replicated state machine: string keys, JSON values, the client
//! de-duplication table, the commands in the log and their snapshot form.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One write operation, as carried in a log entry. Values travel as JSON text
/// because the log's binary encoding (postcard) cannot carry a
/// self-describing `serde_json::Value`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Sets `key` to `value` (`null` deletes it).
    Put {
        /// The key.
        key: String,
        /// The new value, as JSON text.
        value: String,
    },
    /// Sets `key` to `to` if it currently holds `from` (`null` = absent).
    Cas {
        /// The key.
        key: String,
        /// The expected value, as JSON text.
        from: String,
        /// The new value, as JSON text.
        to: String,
    },
    /// Appends `value` to the list at `key`, creating it.
    Append {
        /// The key.
        key: String,
        /// The element, as JSON text.
        value: String,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: String,
    },
    /// Adds `delta` to the integer at `key` (absent = 0).
    Incr {
        /// The key.
        key: String,
        /// The amount.
        delta: i64,
    },
}

/// A command in the log: an operation and, for de-duplication, the client's
/// id and request sequence number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// `(client id, request sequence)` from `X-Client-Id` / `X-Request-Seq`.
    pub session: Option<(String, u64)>,
    /// What to do.
    pub op: Op,
}

impl Command {
    /// The bytes of a log entry.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("encoding to a Vec cannot fail")
    }

    /// Reads a log entry's bytes.
    pub fn decode(bytes: &[u8]) -> Result<Command, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// What applying a command produced. It is cached in the de-duplication table,
/// so a retried request gets exactly this answer again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// Done, nothing to report (put, append, delete).
    Done,
    /// A compare-and-set: whether it happened and the value it found.
    Cas {
        /// True when the value matched and was replaced.
        ok: bool,
        /// The value found, as JSON text (`null` when absent).
        current: String,
    },
    /// An increment's new value.
    Incr(i64),
    /// The operation was refused by the state machine (for example an append
    /// to a non-list); nothing changed.
    Rejected(String),
    /// The request's sequence number is older than the last one this client
    /// had applied, whose outcome is all the table keeps: unknown.
    Forgotten,
}

/// The last request applied for one client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Session {
    seq: u64,
    outcome: Outcome,
}

/// The key-value state and the de-duplication table. Values are kept as
/// compact JSON text, as they arrive: a put costs no parsing, and a snapshot
/// is a binary copy (only cas, append and incr look inside a value).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Kv {
    data: HashMap<String, String>,
    sessions: HashMap<String, Session>,
}

/// A snapshot that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("unreadable state-machine snapshot: {0}")]
pub struct BadSnapshot(String);

fn parse(json: &str) -> Value {
    // Values were validated as JSON by the API before they were proposed; a
    // command that still fails to parse is treated as null on every replica
    // alike, which keeps replicas identical.
    serde_json::from_str(json).unwrap_or(Value::Null)
}

const NULL: &str = "null";

impl Kv {
    /// An empty state.
    pub fn new() -> Kv {
        Kv::default()
    }

    /// The value at `key` (`null` when absent).
    pub fn get(&self, key: &str) -> Value {
        self.data.get(key).map_or(Value::Null, |t| parse(t))
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when no key is set.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Applies a command, at most once per `(client, seq)` when `dedup` is on.
    pub fn apply(&mut self, cmd: Command, dedup: bool) -> Outcome {
        if dedup && let Some((client, seq)) = &cmd.session {
            if let Some(s) = self.sessions.get(client) {
                if *seq == s.seq {
                    tracing::info!(client, seq, "duplicate request answered from the table");
                    return s.outcome.clone();
                }
                if *seq < s.seq {
                    return Outcome::Forgotten;
                }
            }
            let outcome = self.execute(cmd.op);
            let (client, seq) = cmd.session.expect("checked above");
            self.sessions.insert(
                client,
                Session {
                    seq,
                    outcome: outcome.clone(),
                },
            );
            return outcome;
        }
        self.execute(cmd.op)
    }

    /// Sets `key` to JSON text, `null` meaning absent.
    fn set(&mut self, key: String, text: String) {
        if text.trim() == NULL {
            self.data.remove(&key);
        } else {
            self.data.insert(key, text);
        }
    }

    fn execute(&mut self, op: Op) -> Outcome {
        match op {
            Op::Put { key, value } => {
                self.set(key, value);
                Outcome::Done
            }
            Op::Delete { key } => {
                self.data.remove(&key);
                Outcome::Done
            }
            Op::Cas { key, from, to } => {
                // Compare parsed values: equal JSON may differ in text (key
                // order of objects, number spelling).
                let current = self.get(&key);
                let ok = current == parse(&from);
                if ok {
                    self.set(key, to);
                }
                Outcome::Cas {
                    ok,
                    current: current.to_string(),
                }
            }
            Op::Append { key, value } => match self.data.get_mut(&key) {
                None => {
                    self.data.insert(key, format!("[{value}]"));
                    Outcome::Done
                }
                // Stored text is compact JSON, so a list is `[...]` exactly
                // and the element can be spliced in without re-encoding.
                Some(list) if list.starts_with('[') && list.ends_with(']') => {
                    list.pop();
                    if list.len() > 1 {
                        list.push(',');
                    }
                    list.push_str(&value);
                    list.push(']');
                    Outcome::Done
                }
                Some(_) => {
                    Outcome::Rejected(format!("cannot append: the value at {key:?} is not a list"))
                }
            },
            Op::Incr { key, delta } => {
                let current = match self.data.get(&key) {
                    None => 0,
                    Some(t) => match parse(t).as_i64() {
                        Some(n) => n,
                        None => {
                            return Outcome::Rejected(format!(
                                "cannot increment: the value at {key:?} is not a 64-bit integer"
                            ));
                        }
                    },
                };
                match current.checked_add(delta) {
                    Some(n) => {
                        self.data.insert(key, n.to_string());
                        Outcome::Incr(n)
                    }
                    None => Outcome::Rejected(format!(
                        "cannot increment {key:?}: the result overflows i64"
                    )),
                }
            }
        }
    }

    /// The state as snapshot bytes (postcard).
    pub fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("encoding to a Vec cannot fail")
    }

    /// The state a snapshot holds.
    pub fn restore(bytes: &[u8]) -> Result<Kv, BadSnapshot> {
        if bytes.is_empty() {
            return Ok(Kv::new());
        }
        postcard::from_bytes(bytes).map_err(|e| BadSnapshot(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cmd(op: Op) -> Command {
        Command { session: None, op }
    }

    fn put(key: &str, v: Value) -> Op {
        Op::Put {
            key: key.into(),
            value: v.to_string(),
        }
    }

    #[test]
    fn operations() {
        let mut kv = Kv::new();
        assert_eq!(kv.apply(cmd(put("a", json!(1))), true), Outcome::Done);
        assert_eq!(kv.get("a"), json!(1));
        let cas = |from: Value, to: Value| {
            cmd(Op::Cas {
                key: "a".into(),
                from: from.to_string(),
                to: to.to_string(),
            })
        };
        assert_eq!(
            kv.apply(cas(json!(2), json!(3)), true),
            Outcome::Cas {
                ok: false,
                current: "1".into()
            }
        );
        assert_eq!(
            kv.apply(cas(json!(1), json!(3)), true),
            Outcome::Cas {
                ok: true,
                current: "1".into()
            }
        );
        assert_eq!(kv.get("a"), json!(3));
        kv.apply(cmd(Op::Delete { key: "a".into() }), true);
        assert_eq!(kv.get("a"), Value::Null);
        assert_eq!(
            kv.apply(cas(Value::Null, json!("x")), true),
            Outcome::Cas {
                ok: true,
                current: "null".into()
            }
        );
        let app = |v: Value| {
            cmd(Op::Append {
                key: "l".into(),
                value: v.to_string(),
            })
        };
        kv.apply(app(json!(1)), true);
        kv.apply(app(json!({"b": 2})), true);
        assert_eq!(kv.get("l"), json!([1, {"b": 2}]));
        assert!(matches!(
            kv.apply(
                cmd(Op::Append {
                    key: "a".into(),
                    value: "1".into()
                }),
                true
            ),
            Outcome::Rejected(_)
        ));
        let incr = |d| {
            cmd(Op::Incr {
                key: "c".into(),
                delta: d,
            })
        };
        assert_eq!(kv.apply(incr(5), true), Outcome::Incr(5));
        assert_eq!(kv.apply(incr(-7), true), Outcome::Incr(-2));
        assert!(matches!(
            kv.apply(
                cmd(Op::Incr {
                    key: "l".into(),
                    delta: 1
                }),
                true
            ),
            Outcome::Rejected(_)
        ));
        assert_eq!(
            kv.apply(cmd(put("c", json!(i64::MAX))), true),
            Outcome::Done
        );
        assert!(matches!(kv.apply(incr(1), true), Outcome::Rejected(_)));
    }

    #[test]
    fn values_compare_as_json_and_lists_splice() {
        let mut kv = Kv::new();
        kv.apply(cmd(put("o", json!({"a": 1, "b": [2, 3]}))), true);
        let cas = Op::Cas {
            key: "o".into(),
            from: r#"{ "b": [2,3], "a": 1 }"#.into(),
            to: "true".into(),
        };
        assert!(matches!(
            kv.apply(cmd(cas), true),
            Outcome::Cas { ok: true, .. }
        ));
        assert_eq!(kv.get("o"), json!(true));
        kv.apply(cmd(put("l", json!([]))), true);
        for v in [json!(1), json!("two"), json!([3])] {
            kv.apply(
                cmd(Op::Append {
                    key: "l".into(),
                    value: v.to_string(),
                }),
                true,
            );
        }
        assert_eq!(kv.get("l"), json!([1, "two", [3]]));
        let back = Kv::restore(&kv.snapshot()).unwrap();
        assert_eq!(back, kv);
        assert_eq!(back.get("l"), json!([1, "two", [3]]));
    }

    #[test]
    fn dedup_applies_once_and_survives_snapshots() {
        let mut kv = Kv::new();
        let c = |seq| Command {
            session: Some(("c1".into(), seq)),
            op: Op::Incr {
                key: "n".into(),
                delta: 1,
            },
        };
        assert_eq!(kv.apply(c(1), true), Outcome::Incr(1));
        assert_eq!(kv.apply(c(1), true), Outcome::Incr(1));
        let mut restored = Kv::restore(&kv.snapshot()).unwrap();
        assert_eq!(restored, kv);
        assert_eq!(restored.apply(c(1), true), Outcome::Incr(1));
        assert_eq!(restored.apply(c(2), true), Outcome::Incr(2));
        assert_eq!(restored.apply(c(1), true), Outcome::Forgotten);
        assert_eq!(restored.get("n"), json!(2));
        // With de-duplication off (a test bug) the retry applies again.
        assert_eq!(restored.apply(c(2), false), Outcome::Incr(3));
    }

    #[test]
    fn commands_round_trip() {
        let c = Command {
            session: Some(("x".into(), 9)),
            op: put("k", json!({"a": [1, null]})),
        };
        assert_eq!(Command::decode(&c.encode()).unwrap(), c);
        assert!(Kv::restore(b"{not json").is_err());
    }
}

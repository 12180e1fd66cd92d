//! What etcd's two client protocols share (`etcd`, the v3 JSON gateway, and
//! `etcd-grpc`, the native gRPC API): the commands built from four etcd
//! requests ([`Requests`], [`attempt`]), the read-modify-write loop of
//! `append`/`incr`, values stored as JSON text, and which etcd errors are
//! definite ([`classify`], by gRPC code and message: the gateway carries
//! the same code and message in its JSON error body).
//!
//! Commands: `read` is a range (linearizable; with the `stale` read mode
//! serializable: a member answers from its own state); `write` is a put;
//! `cas` is a txn comparing the value (or, for `from = null`, that the key
//! was never created) whose failure branch reads the key, so a refused cas
//! reports the current value; `append` and `incr` are a linearizable range
//! and then a txn guarded by the key's `mod_revision`, repeated on conflict
//! while the attempt's time lasts. etcd has no request de-duplication, so
//! neither protocol allows resends.

use std::future::Future;
use std::sync::Mutex;

use faultline_workloads::Command;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::sut::{Attempt, Status};

/// The four requests every command is made of, as one member answers them.
/// Each maps its own transport's errors to an [`Attempt`] (effectful ones:
/// `put`, `cas`, `put_if_unmodified`; a `range` has no effect).
pub trait Requests: Send {
    /// Reads `key`: its value (`None`: absent) and `mod_revision` (0: absent).
    fn range(
        &mut self,
        key: &str,
        serializable: bool,
        deadline: Instant,
    ) -> impl Future<Output = Result<(Option<Value>, i64), Attempt>> + Send;
    /// Puts `value` at `key`.
    fn put(
        &mut self,
        key: &str,
        value: &Value,
        deadline: Instant,
    ) -> impl Future<Output = Result<(), Attempt>> + Send;
    /// The cas txn: `Ok(Ok(()))` when it put `to`, `Ok(Err(current))` when
    /// its compare failed, with what its failure branch read (`null`: absent).
    fn cas(
        &mut self,
        key: &str,
        from: &Value,
        to: &Value,
        deadline: Instant,
    ) -> impl Future<Output = Result<Result<(), Value>, Attempt>> + Send;
    /// Puts `value` only if the key's `mod_revision` is still `mod_rev` (0:
    /// the key does not exist); `Ok(false)` when it changed.
    fn put_if_unmodified(
        &mut self,
        key: &str,
        mod_rev: i64,
        value: &Value,
        deadline: Instant,
    ) -> impl Future<Output = Result<bool, Attempt>> + Send;
}

/// One attempt at `cmd` on the member `member` speaks to, within `deadline`.
pub async fn attempt<R: Requests>(
    member: &mut R,
    cmd: &Command,
    serializable: bool,
    deadline: Instant,
) -> Attempt {
    let key = cmd.key();
    let done = match cmd {
        Command::Read { .. } => member
            .range(key, serializable, deadline)
            .await
            .map(|(v, _)| v.unwrap_or(Value::Null)),
        Command::Write { value, .. } => {
            member.put(key, value, deadline).await.map(|()| Value::Null)
        }
        Command::Cas { from, to, .. } => match member.cas(key, from, to, deadline).await {
            Ok(Ok(())) => Ok(Value::Null),
            Ok(Err(current)) => {
                return Attempt::Fail {
                    current,
                    why: faultline_checkers::REFUSED_CAS.into(),
                };
            }
            Err(a) => Err(a),
        },
        Command::Append { value, .. } => {
            return read_modify_write(member, key, &Update::Push(value.clone()), deadline).await;
        }
        Command::Incr { delta, .. } => {
            return read_modify_write(member, key, &Update::Add(*delta), deadline).await;
        }
    };
    match done {
        Ok(v) => Attempt::Ok(v),
        Err(a) => a,
    }
}

/// A read-modify-write: push onto a list, or add to an integer.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// Append this element.
    Push(Value),
    /// Add this delta.
    Add(i64),
}

/// `append`/`incr`: read the key (linearizably), compute the new value, and
/// write it only if the key's `mod_revision` is unchanged; retry on conflict.
async fn read_modify_write<R: Requests>(
    member: &mut R,
    key: &str,
    update: &Update,
    deadline: Instant,
) -> Attempt {
    let mut conflicts = 0u32;
    loop {
        if Instant::now() >= deadline {
            // Every txn so far failed its guard: nothing was written.
            return Attempt::Fail {
                current: Value::Null,
                why: format!("conflict: {conflicts} concurrent updates won"),
            };
        }
        let (current, mod_rev) = match member.range(key, false, deadline).await {
            Ok((v, r)) => (v.unwrap_or(Value::Null), r),
            Err(a) => return a,
        };
        let Some(next) = apply_update(&current, update) else {
            return Attempt::Fail {
                current: Value::Null,
                why: format!("etcd: stored value {current} cannot take {update:?}"),
            };
        };
        match member
            .put_if_unmodified(key, mod_rev, &next, deadline)
            .await
        {
            Ok(true) => return Attempt::Ok(Value::Null),
            Ok(false) => conflicts += 1,
            Err(a) => return a,
        }
    }
}

/// The new value after an update: a list with the element pushed, or the
/// sum. `None` if the stored value has the wrong shape.
pub fn apply_update(current: &Value, update: &Update) -> Option<Value> {
    match update {
        Update::Add(d) => {
            let now = match current {
                Value::Null => 0,
                v => v.as_i64()?,
            };
            Some(json!(now.checked_add(*d)?))
        }
        Update::Push(x) => {
            let mut list = match current {
                Value::Null => Vec::new(),
                Value::Array(a) => a.clone(),
                _ => return None,
            };
            list.push(x.clone());
            Some(Value::Array(list))
        }
    }
}

/// How a value is stored: its JSON text, so every workload's values
/// round-trip, and both protocols read what the other wrote.
pub fn value_text(v: &Value) -> String {
    v.to_string()
}

/// A stored value's bytes read back as JSON.
pub fn parse_value(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "etcd: stored value is not JSON ({e}): {:?}",
            String::from_utf8_lossy(bytes)
        )
    })
}

/// How a failure that leaves the outcome unknown (a timeout, a lost
/// connection or answer) ends an attempt: ambiguous for a command with
/// effects, a definite failure for a read (dropping a read is always sound).
pub fn lost(why: String, effectful: bool) -> Attempt {
    if effectful {
        Attempt::Ambiguous(why)
    } else {
        Attempt::Fail {
            current: Value::Null,
            why,
        }
    }
}

/// gRPC `InvalidArgument`: a malformed request, rejected before anything.
pub const INVALID_ARGUMENT: i64 = 3;
/// gRPC `ResourceExhausted`: `too many requests` (apply lags commit by more
/// than 5000 entries) or `database space exceeded`, refused before a proposal.
pub const RESOURCE_EXHAUSTED: i64 = 8;

/// `(gRPC code, message)` of etcd 3.4's errors that are returned before a
/// proposal is appended to the Raft log: nothing happened on this member.
const REFUSED: &[(i64, &str)] = &[
    // The require-leader check (gRPC `hasleader` metadata), or a member
    // that knows no leader.
    (14, "etcdserver: no leader"),
    (14, "etcdserver: not capable"),
    (14, "etcdserver: rpc not supported for learner"),
    // Only from a linearizable read's wait for the read index.
    (14, "etcdserver: leader changed"),
    // raft.ErrProposalDropped: a follower or candidate with no leader
    // dropped the proposal before appending it.
    (2, "raft proposal dropped"),
];

/// How an etcd error, by gRPC code and message, ends an attempt:
/// - `InvalidArgument` (e.g. `key is not provided`, `request is too large`):
///   rejected before anything happened → a definite failure;
/// - the refusals in `REFUSED` and any `ResourceExhausted`: nothing was
///   proposed → definite; try another member;
/// - anything else (`request timed out*` and `server stopped`, code 14;
///   `context deadline exceeded`, code 2): the proposal may have been
///   appended and commit later → ambiguous for a command with effects, a
///   definite failure for a read.
pub fn classify(code: i64, message: &str, effectful: bool, why: String) -> Attempt {
    if code == RESOURCE_EXHAUSTED || REFUSED.contains(&(code, message)) {
        return Attempt::Elsewhere { hint: None, why };
    }
    if code == INVALID_ARGUMENT {
        return Attempt::Fail {
            current: Value::Null,
            why,
        };
    }
    lost(why, effectful)
}

/// What a member's status says (ids in decimal, as the gateway prints them).
#[derive(Debug, PartialEq)]
pub struct MemberStatus {
    /// This member's id.
    pub member: String,
    /// The leader's id, if it knows one.
    pub leader: Option<String>,
    /// Raft term.
    pub term: u64,
    /// Raft index.
    pub raft_index: u64,
}

/// Member id → member name, learnt from the member list the first time a
/// status names a leader whose id is not known yet.
#[derive(Default)]
pub struct MemberNames(Mutex<Vec<(String, String)>>);

impl MemberNames {
    /// Node `id`'s view of the cluster from its member status, its leader
    /// named; `list` (the member list as `(id, name)`) is awaited only when
    /// that leader's name is not known yet.
    pub async fn status(
        &self,
        id: &str,
        st: &MemberStatus,
        list: impl Future<Output = Option<Vec<(String, String)>>>,
    ) -> Option<Status> {
        let leader = match &st.leader {
            Some(l) => match self.name_of(l) {
                Some(n) => Some(n),
                None => {
                    let list = list.await?;
                    let mut names = self.0.lock().unwrap_or_else(|e| e.into_inner());
                    *names = list;
                    names.iter().find(|(i, _)| i == l).map(|(_, n)| n.clone())
                }
            },
            None => None,
        };
        Some(Status {
            id: id.to_string(),
            role: if st.leader.as_deref() == Some(st.member.as_str()) {
                "leader".into()
            } else {
                "follower".into()
            },
            term: Some(st.term),
            leader,
        })
    }

    fn name_of(&self, member: &str) -> Option<String> {
        let names = self.0.lock().unwrap_or_else(|e| e.into_inner());
        names
            .iter()
            .find(|(id, _)| id == member)
            .map(|(_, n)| n.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_counters_update() {
        let push = |x: i64| Update::Push(json!(x));
        assert_eq!(apply_update(&Value::Null, &push(1)), Some(json!([1])));
        assert_eq!(apply_update(&json!([1]), &push(2)), Some(json!([1, 2])));
        assert_eq!(apply_update(&json!(5), &push(2)), None);
        assert_eq!(apply_update(&json!(5), &Update::Add(2)), Some(json!(7)));
        assert_eq!(apply_update(&Value::Null, &Update::Add(2)), Some(json!(2)));
        assert_eq!(apply_update(&json!("x"), &Update::Add(1)), None);
    }

    #[test]
    fn values_are_json_text() {
        for v in [json!(1), json!([1, 2]), json!("s"), json!({"a": null})] {
            assert_eq!(parse_value(value_text(&v).as_bytes()), Ok(v));
        }
        assert!(parse_value(b"xyz").is_err());
    }

    #[test]
    fn errors_are_definite_only_when_etcd_refused_before_proposing() {
        let c = |code, msg: &str, effectful| classify(code, msg, effectful, msg.to_string());
        let elsewhere = |a: Attempt| matches!(a, Attempt::Elsewhere { .. });
        let fail = |a: Attempt| matches!(a, Attempt::Fail { .. });
        let ambiguous = |a: Attempt| matches!(a, Attempt::Ambiguous(_));
        assert!(elsewhere(c(14, "etcdserver: no leader", true)));
        assert!(elsewhere(c(14, "etcdserver: leader changed", false)));
        assert!(elsewhere(c(2, "raft proposal dropped", true)));
        assert!(elsewhere(c(8, "etcdserver: too many requests", true)));
        assert!(fail(c(3, "etcdserver: key is not provided", true)));
        assert!(ambiguous(c(14, "etcdserver: request timed out", true)));
        assert!(ambiguous(c(
            14,
            "etcdserver: request timed out, possibly due to previous leader failure",
            true
        )));
        assert!(ambiguous(c(14, "etcdserver: server stopped", true)));
        assert!(ambiguous(c(2, "context deadline exceeded", true)));
        assert!(fail(c(2, "context deadline exceeded", false)));
    }
}

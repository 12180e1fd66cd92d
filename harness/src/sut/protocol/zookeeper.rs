//! ZooKeeper 3.8 as a client protocol, through the `zookeeper-client`
//! crate (ZooKeeper's own wire protocol, pure Rust). The servers themselves
//! are described by `harness/systems/zookeeper.toml`.
//!
//! Every worker keeps one session per server it talks to, each connected to
//! that one server only, so a client stays pinned to the server the harness
//! chose and what a lagging or cut-off server answers is observable. A
//! session that expired or was closed is dropped and a new one is made on
//! the next attempt at that server.
//!
//! Keys are znodes `/faultline/<key>` (bytes other than letters, digits,
//! `.`, `_` and `-` written `%XX`), holding their value as JSON text, so
//! every workload's values round-trip. Commands:
//! - `read`: `sync` then `get_data` (linearizable read mode: the server
//!   first catches up with the leader; ZooKeeper documents that even this
//!   is not strictly linearizable, see ZOOKEEPER-1675), or `get_data` alone
//!   (`stale`: the server answers from its own state). An absent znode
//!   reads as `null`.
//! - `write`: `set_data` with no version; on `NoNode`, `create` (and the
//!   parent `/faultline` if it is missing); on `NodeExists`, again.
//! - `cas`: from `null`, `create` (refused by `NodeExists`); otherwise
//!   `sync` + `get_data`, then, when the value is the expected one,
//!   `set_data` guarded by the version read (`BadVersion`: refused). A
//!   refusal after a read that saw another value reports that value.
//! - `append`, `incr`: `sync` + `get_data`, then `set_data` guarded by the
//!   version read (or `create` when absent), again on `BadVersion` or
//!   `NodeExists` while the attempt's time lasts.
//!
//! ZooKeeper has no request de-duplication: this protocol never allows
//! resends ([`Protocol::dedup`] is false).
//!
//! Definite versus indeterminate outcomes ([`classify`]):
//! - A request is only issued on a session in state `SyncConnected`. A
//!   session that is not (reconnecting, expired, closed, or not made at
//!   all because the server refused) sends nothing: the attempt is
//!   [`Attempt::Elsewhere`], definite, and the harness tries another
//!   server. (The crate queues requests issued while it reconnects and may
//!   send them later, so none is issued then.)
//! - Errors the server answers for one request are definite: it did not
//!   happen (`BadVersion`, `NoNode`, `NodeExists`, `NotEmpty`, `NoAuth`,
//!   `InvalidAcl`, `BadArguments`, `Throttled`, `SessionMoved`, ...).
//! - `ConnectionLoss`, the crate's `no response from connection` (a custom
//!   error), `Timeout`, an `UnexpectedError`, an unknown error code, an
//!   answer that cannot be decoded, and this protocol's own time limit
//!   (the crate has no per-request timeout, so each request runs under
//!   the attempt's deadline) are indeterminate: the request may have
//!   reached the leader. So are `SessionExpired`, `ClientClosed`,
//!   `AuthFailed` and `NoHosts` for a request issued while the session was
//!   `SyncConnected`: the crate fails every request in flight with the
//!   error that ended the session, whether or not it was sent.
//! - An indeterminate outcome is [`Attempt::Ambiguous`] for a step that
//!   can write; for a read (or the read half of cas, append and incr,
//!   before anything was written) nothing happened, and the attempt is
//!   [`Attempt::Elsewhere`].

use std::time::Duration;

use anyhow::Result;
use faultline_workloads::Command;
use serde_json::Value;
use tokio::time::Instant;
use zookeeper_client as zk;

use super::ProtocolEnv;
use super::etcd_kv::{Update, apply_update};
use crate::sut::{Attempt, BoxFuture, Client, Protocol, ReadMode, Request};

/// The session timeout asked for (the servers' tickTime of 200 ms allows
/// 0.4 to 4 s). A server that stops answering is noticed after 2/5 of it.
const SESSION_TIMEOUT: Duration = Duration::from_secs(2);

/// How long making a session may take, at most (less when the attempt has
/// less time left).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// How long an attempt waits for a reconnecting session before trying
/// another server.
const RECONNECT_WAIT: Duration = Duration::from_millis(200);

/// The znode under which every key lives.
pub const ROOT: &str = "/faultline";

/// ZooKeeper's client protocol.
pub struct ZooKeeper {
    env: ProtocolEnv,
}

impl ZooKeeper {
    /// A protocol for the run's servers.
    pub fn new(env: ProtocolEnv) -> Result<ZooKeeper> {
        Ok(ZooKeeper { env })
    }
}

impl Protocol for ZooKeeper {
    fn name(&self) -> &'static str {
        "zookeeper"
    }

    fn dedup(&self) -> bool {
        false
    }

    fn client<'a>(&'a self, _worker: usize) -> BoxFuture<'a, Result<Box<dyn Client>>> {
        Box::pin(async move {
            let servers: Vec<Server> = self
                .env
                .endpoints
                .iter()
                .map(|e| Server {
                    id: e.id.clone(),
                    addr: e.addr.to_string(),
                    session: None,
                })
                .collect();
            Ok(Box::new(ZkClient {
                servers,
                sync_reads: self.env.read_mode != ReadMode::Stale,
            }) as Box<dyn Client>)
        })
    }
}

/// One server as a worker sees it.
struct Server {
    id: String,
    /// `host:port`, the connect string of a session pinned to it.
    addr: String,
    /// The worker's session with it, once made.
    session: Option<zk::Client>,
}

/// One worker's sessions.
struct ZkClient {
    servers: Vec<Server>,
    /// `sync` before reads (every read mode but `stale`).
    sync_reads: bool,
}

impl Client for ZkClient {
    fn attempt<'a>(&'a mut self, req: Request<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let deadline = Instant::now() + req.timeout;
            let Some(server) = self.servers.get_mut(req.node) else {
                return Attempt::Fail {
                    current: Value::Null,
                    why: format!("no server {}", req.node),
                };
            };
            let session = match session(server, deadline).await {
                Ok(s) => s,
                Err(a) => return a,
            };
            let path = znode(req.cmd.key());
            let op = Op {
                zk: &session,
                path: &path,
                deadline,
            };
            let attempt = match req.cmd {
                Command::Read { .. } => read(&op, self.sync_reads).await,
                Command::Write { value, .. } => write(&op, value).await,
                Command::Cas { from, to, .. } => cas(&op, from, to).await,
                Command::Append { value, .. } => {
                    read_modify_write(&op, &Update::Push(value.clone())).await
                }
                Command::Incr { delta, .. } => read_modify_write(&op, &Update::Add(*delta)).await,
            };
            if session.state().is_terminated() {
                // Expired or closed: the next attempt here makes a new one.
                server.session = None;
            }
            attempt
        })
    }
}

/// The worker's session with `server`, made if need be, once it is
/// `SyncConnected`; otherwise a definite `Elsewhere` (nothing was sent).
async fn session(server: &mut Server, deadline: Instant) -> Result<zk::Client, Attempt> {
    let elsewhere = |why: String| Attempt::Elsewhere { hint: None, why };
    if server
        .session
        .as_ref()
        .is_some_and(|s| s.state().is_terminated())
    {
        server.session = None;
    }
    if server.session.is_none() {
        let until = deadline.min(Instant::now() + CONNECT_TIMEOUT);
        let connect = zk::Client::connector()
            .with_session_timeout(SESSION_TIMEOUT)
            .with_server_version(3, 8, 0)
            // One server: fail when it refuses, rather than retrying it
            // until the session timeout.
            .with_fail_eagerly()
            .connect(&server.addr);
        match tokio::time::timeout_at(until, connect).await {
            Ok(Ok(c)) => server.session = Some(c),
            Ok(Err(e)) => return Err(elsewhere(format!("connect {}: {e}", server.id))),
            Err(_) => return Err(elsewhere(format!("connect {}: timeout", server.id))),
        }
    }
    let Some(s) = server.session.as_ref() else {
        return Err(elsewhere(format!("connect {}: no session", server.id)));
    };
    let mut state = s.state();
    if state == zk::SessionState::Disconnected {
        // It may come back at once (a lost connection to a live server).
        let mut watcher = s.state_watcher();
        let until = deadline.min(Instant::now() + RECONNECT_WAIT);
        while state == zk::SessionState::Disconnected {
            match tokio::time::timeout_at(until, watcher.changed()).await {
                Ok(st) => state = st,
                Err(_) => break,
            }
        }
    }
    match state {
        zk::SessionState::SyncConnected => Ok(s.clone()),
        other => {
            if other.is_terminated() {
                server.session = None;
            }
            Err(elsewhere(format!("{}: session {other}", server.id)))
        }
    }
}

/// The znode of a key.
pub fn znode(key: &str) -> String {
    let mut name = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    // ZooKeeper refuses the path components "." and "..", and empty ones.
    let name = match name.as_str() {
        "" => "%".to_string(),
        "." => "%2E".to_string(),
        ".." => "%2E%2E".to_string(),
        _ => name,
    };
    format!("{ROOT}/{name}")
}

/// One attempt's session, znode and deadline.
struct Op<'a> {
    zk: &'a zk::Client,
    path: &'a str,
    deadline: Instant,
}

/// How one request ended, before it is mapped to an [`Attempt`].
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// The server refused it: it did not happen.
    Refused(zk::Error),
    /// It may have happened (or, for a read, simply has no answer).
    Unknown(String),
}

/// How an error ends a request issued on a `SyncConnected` session (see
/// the module docs).
pub fn classify(e: &zk::Error) -> Outcome {
    use zk::Error as E;
    match e {
        E::NoNode
        | E::NodeExists
        | E::BadVersion
        | E::NotEmpty
        | E::NoChildrenForEphemerals
        | E::NoAuth
        | E::InvalidAcl
        | E::BadArguments(_)
        | E::Throttled
        | E::SessionMoved
        | E::NotReadOnly
        | E::NoWatcher
        | E::QuotaExceeded
        | E::MarshallingError
        | E::Unimplemented
        | E::ReconfigDisabled
        | E::RuntimeInconsistent => Outcome::Refused(e.clone()),
        _ => Outcome::Unknown(format!("zookeeper: {e}")),
    }
}

impl Op<'_> {
    /// Waits for one issued request, at most until the attempt's deadline.
    async fn run<T, F>(&self, fut: F) -> Result<T, Outcome>
    where
        F: Future<Output = Result<T, zk::Error>>,
    {
        match tokio::time::timeout_at(self.deadline, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(Outcome::Unknown("timeout".into())),
        }
    }

    /// Whether the session may take a request now (see the module docs).
    fn connected(&self) -> Result<(), Attempt> {
        match self.zk.state() {
            zk::SessionState::SyncConnected => Ok(()),
            other => Err(Attempt::Elsewhere {
                hint: None,
                why: format!("session {other}"),
            }),
        }
    }

    /// A linearizable (`sync` first) or local read: the value and version,
    /// `None` when the znode is absent. Errors end the attempt definitely.
    async fn get(&self, sync: bool) -> Result<Option<(Value, i32)>, Attempt> {
        self.connected()?;
        if sync && let Err(o) = self.run(self.zk.sync(self.path)).await {
            return Err(read_failed(o));
        }
        self.connected()?;
        match self.run(self.zk.get_data(self.path)).await {
            Ok((data, stat)) => match serde_json::from_slice(&data) {
                Ok(v) => Ok(Some((v, stat.version))),
                Err(e) => Err(Attempt::Fail {
                    current: Value::Null,
                    why: format!(
                        "zookeeper: {} holds no JSON ({e}): {:?}",
                        self.path,
                        String::from_utf8_lossy(&data)
                    ),
                }),
            },
            Err(Outcome::Refused(zk::Error::NoNode)) => Ok(None),
            Err(o) => Err(read_failed(o)),
        }
    }

    /// `set_data` (guarded by `version` when given).
    async fn set(&self, value: &Value, version: Option<i32>) -> Result<(), Step> {
        self.connected().map_err(Step::NotSent)?;
        let data = value.to_string();
        self.run(self.zk.set_data(self.path, data.as_bytes(), version))
            .await
            .map(drop)
            .map_err(Step::Done)
    }

    /// `create` with `value`, creating the parent if it is missing.
    async fn create(&self, value: &Value) -> Result<(), Step> {
        let data = value.to_string();
        let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        let mut made_root = false;
        loop {
            self.connected().map_err(Step::NotSent)?;
            match self
                .run(self.zk.create(self.path, data.as_bytes(), &opts))
                .await
            {
                Ok(_) => return Ok(()),
                Err(Outcome::Refused(zk::Error::NoNode)) if !made_root => {
                    made_root = true;
                    self.connected().map_err(Step::NotSent)?;
                    match self.run(self.zk.create(ROOT, b"", &opts)).await {
                        Ok(_) | Err(Outcome::Refused(zk::Error::NodeExists)) => {}
                        // Only the parent may have been made: the key's
                        // znode certainly was not.
                        Err(Outcome::Unknown(why)) => {
                            return Err(Step::NotSent(Attempt::Elsewhere { hint: None, why }));
                        }
                        Err(o) => return Err(Step::Done(o)),
                    }
                }
                Err(o) => return Err(Step::Done(o)),
            }
        }
    }
}

/// Why a writing step did not succeed.
#[derive(Debug)]
enum Step {
    /// Nothing was sent: this attempt's outcome.
    NotSent(Attempt),
    /// The request was sent and ended so.
    Done(Outcome),
}

/// A read step that failed: definite either way, since nothing was
/// written; unanswered, another server may answer.
fn read_failed(o: Outcome) -> Attempt {
    match o {
        Outcome::Refused(e) => Attempt::Fail {
            current: Value::Null,
            why: format!("zookeeper: {e}"),
        },
        Outcome::Unknown(why) => Attempt::Elsewhere { hint: None, why },
    }
}

/// A writing step that failed in a way this command does not handle.
fn write_failed(s: Step) -> Attempt {
    match s {
        Step::NotSent(a) => a,
        Step::Done(Outcome::Refused(e)) => Attempt::Fail {
            current: Value::Null,
            why: format!("zookeeper: {e}"),
        },
        Step::Done(Outcome::Unknown(why)) => Attempt::Ambiguous(why),
    }
}

async fn read(op: &Op<'_>, sync: bool) -> Attempt {
    match op.get(sync).await {
        Ok(v) => Attempt::Ok(v.map_or(Value::Null, |(v, _)| v)),
        Err(a) => a,
    }
}

async fn write(op: &Op<'_>, value: &Value) -> Attempt {
    loop {
        match op.set(value, None).await {
            Ok(()) => return Attempt::Ok(Value::Null),
            Err(Step::Done(Outcome::Refused(zk::Error::NoNode))) => {}
            Err(s) => return write_failed(s),
        }
        match op.create(value).await {
            Ok(()) => return Attempt::Ok(Value::Null),
            // Created meanwhile by someone else: set it.
            Err(Step::Done(Outcome::Refused(zk::Error::NodeExists))) => {}
            Err(s) => return write_failed(s),
        }
        if Instant::now() >= op.deadline {
            return Attempt::Fail {
                current: Value::Null,
                why: "zookeeper: the znode kept appearing and vanishing".into(),
            };
        }
    }
}

async fn cas(op: &Op<'_>, from: &Value, to: &Value) -> Attempt {
    // A refusal that knows the value the cas saw reports it (the checker
    // reads it as an observation); one that does not must not claim one.
    let mismatch = |current: Value| Attempt::Fail {
        current,
        why: faultline_checkers::REFUSED_CAS.into(),
    };
    let refused_unseen = || Attempt::Fail {
        current: Value::Null,
        why: "cas refused: the value changed, to what is unknown".into(),
    };
    if from.is_null() {
        return match op.create(to).await {
            Ok(()) => Attempt::Ok(Value::Null),
            Err(Step::Done(Outcome::Refused(zk::Error::NodeExists))) => refused_unseen(),
            Err(s) => write_failed(s),
        };
    }
    let (current, version) = match op.get(true).await {
        Ok(Some(x)) => x,
        Ok(None) => return mismatch(Value::Null),
        Err(a) => return a,
    };
    if current != *from {
        return mismatch(current);
    }
    match op.set(to, Some(version)).await {
        Ok(()) => Attempt::Ok(Value::Null),
        // Changed since the read: the value it has now is unknown.
        Err(Step::Done(Outcome::Refused(zk::Error::BadVersion | zk::Error::NoNode))) => {
            refused_unseen()
        }
        Err(s) => write_failed(s),
    }
}

/// `append`/`incr`: read (after a `sync`), compute, write guarded by the
/// version read; again on conflict while the attempt's time lasts.
async fn read_modify_write(op: &Op<'_>, update: &Update) -> Attempt {
    let mut conflicts = 0u32;
    loop {
        if Instant::now() >= op.deadline {
            // Every write so far was refused: nothing was written.
            return Attempt::Fail {
                current: Value::Null,
                why: format!("conflict: {conflicts} concurrent updates won"),
            };
        }
        let (current, version) = match op.get(true).await {
            Ok(Some((v, version))) => (v, Some(version)),
            Ok(None) => (Value::Null, None),
            Err(a) => return a,
        };
        let Some(next) = apply_update(&current, update) else {
            return Attempt::Fail {
                current: Value::Null,
                why: format!("zookeeper: stored value {current} cannot take {update:?}"),
            };
        };
        let r = match version {
            Some(v) => op.set(&next, Some(v)).await,
            None => op.create(&next).await,
        };
        match r {
            Ok(()) => return Attempt::Ok(Value::Null),
            Err(Step::Done(Outcome::Refused(
                zk::Error::BadVersion | zk::Error::NodeExists | zk::Error::NoNode,
            ))) => conflicts += 1,
            Err(s) => return write_failed(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_single_znodes() {
        assert_eq!(znode("r"), "/faultline/r");
        assert_eq!(znode("a-0.x_y"), "/faultline/a-0.x_y");
        assert_eq!(znode("a/b c"), "/faultline/a%2Fb%20c");
        assert_eq!(znode("100%"), "/faultline/100%25");
        assert_eq!(znode(""), "/faultline/%");
        assert_eq!(znode("."), "/faultline/%2E");
        assert_eq!(znode(".."), "/faultline/%2E%2E");
    }

    #[test]
    fn server_refusals_are_definite_and_the_rest_is_not() {
        for e in [
            zk::Error::BadVersion,
            zk::Error::NoNode,
            zk::Error::NodeExists,
            zk::Error::NotEmpty,
            zk::Error::BadArguments(&"path"),
            zk::Error::NoAuth,
        ] {
            assert_eq!(classify(&e), Outcome::Refused(e.clone()), "{e}");
        }
        for e in [
            zk::Error::ConnectionLoss,
            zk::Error::Timeout,
            zk::Error::SessionExpired,
            zk::Error::ClientClosed,
            zk::Error::UnexpectedError("x".into()),
            zk::Error::UnexpectedErrorCode(-122),
        ] {
            assert!(
                matches!(classify(&e), Outcome::Unknown(_)),
                "{e} must be indeterminate"
            );
        }
    }

    #[test]
    fn failed_steps_map_to_attempts() {
        assert!(matches!(
            write_failed(Step::Done(Outcome::Unknown("x".into()))),
            Attempt::Ambiguous(_)
        ));
        assert!(matches!(
            write_failed(Step::Done(Outcome::Refused(zk::Error::NoAuth))),
            Attempt::Fail { .. }
        ));
        assert!(matches!(
            read_failed(Outcome::Unknown("x".into())),
            Attempt::Elsewhere { .. }
        ));
        assert!(matches!(
            read_failed(Outcome::Refused(zk::Error::NoAuth)),
            Attempt::Fail { .. }
        ));
    }
}

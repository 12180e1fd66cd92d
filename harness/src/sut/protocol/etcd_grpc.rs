//! etcd 3.4's native gRPC API as a client protocol (`etcd-grpc`, compiled
//! in with the `faultline` crate's cargo feature of the same name), through
//! the etcd-client crate. The same commands and stored values as the JSON
//! gateway's `etcd` protocol (see [`etcd_kv`](super::etcd_kv)), so either
//! reads what the other wrote.
//!
//! Connections: one etcd-client `Client` per member, made on a run's first
//! client with that member as its only endpoint (so an attempt goes to the
//! member the harness chose, never to one the library picks), and cloned
//! by every worker: the clones share one HTTP/2 connection per member,
//! multiplexed, which is how etcd's own clients talk to it. It connects
//! lazily, so a member that is down costs only a refused attempt. Clients
//! send the require-leader metadata (`hasleader`), so a member that knows
//! no leader refuses at once instead of holding a write for ~7 s. Status
//! queries have their own connections (to each member's own address,
//! never proxied; without require-leader, so a leaderless member still
//! answers).
//!
//! Definite versus indeterminate errors ([`classify_error`]), as observed
//! on etcd 3.4.23 through etcd-client 0.21:
//! - `InvalidArgument` (`key is not provided`, `too many operations in txn
//!   request`, `request is too large`): rejected before anything happened →
//!   a definite failure;
//! - `Unavailable` `etcdserver: no leader` (the require-leader check),
//!   `not capable`, `leader changed` (only from a linearizable read's wait
//!   for the read index); `ResourceExhausted` (`too many requests`); `Unknown`
//!   `raft proposal dropped`: refused before a proposal → definite, try
//!   another member;
//! - a connection that could not be opened (`Unavailable`, `tcp connect
//!   error`): nothing was sent → definite, try another member;
//! - `Unavailable` `request timed out` (after ~7 s on a member cut from its
//!   quorum), `request timed out, possibly due to previous leader failure`,
//!   `server stopped`; `Unknown` `context deadline exceeded`; the attempt's
//!   time running out on the client (the call is dropped, which cancels it
//!   but cannot take back what was sent); a connection lost after sending;
//!   anything else: the proposal may have been appended and commit later →
//!   ambiguous for a command with effects;
//! - any error on a `read` (or on the read half of an append) → a definite
//!   failure: a read has no effect, so dropping it is always sound.
//!
//! A cas whose compare fails is not an error: etcd answers OK with
//! `succeeded = false`, and the failure branch's read gives the value seen.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result};
use etcd_client::{
    Compare, CompareOp, ConnectOptions, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse,
};
use serde_json::Value;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tonic::Code;

use super::ProtocolEnv;
use super::etcd_kv::{self, MemberNames, MemberStatus, Requests, value_text};
use crate::sut::{Attempt, BoxFuture, Client, Protocol, ReadMode, Request, Status};

/// How long a status query or its member list may take.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
/// How long opening a connection may take (on 127.0.0.1 a refusal is
/// immediate; this bounds a member that is paused mid-handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// etcd's gRPC API, one shared connection per member.
pub struct EtcdGrpc {
    env: ProtocolEnv,
    /// Per member, the client every worker clones (dials `Endpoint::addr`).
    shared: OnceCell<Vec<etcd_client::Client>>,
    /// Per member, the client status queries use (dials `Endpoint::direct`).
    direct: OnceCell<Vec<etcd_client::Client>>,
    names: MemberNames,
}

impl EtcdGrpc {
    /// A protocol for the run's members; it connects on first use.
    pub fn new(env: ProtocolEnv) -> EtcdGrpc {
        EtcdGrpc {
            env,
            shared: OnceCell::new(),
            direct: OnceCell::new(),
            names: MemberNames::default(),
        }
    }
}

/// One client per address, each with that address as its only endpoint.
async fn connect(
    addrs: impl Iterator<Item = SocketAddr>,
    require_leader: bool,
) -> Result<Vec<etcd_client::Client>> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_require_leader(require_leader);
    let mut out = Vec::new();
    for a in addrs {
        let url = format!("http://{a}");
        out.push(
            etcd_client::Client::connect([url.as_str()], Some(opts.clone()))
                .await
                .with_context(|| format!("cannot make an etcd gRPC client for {url}"))?,
        );
    }
    Ok(out)
}

impl Protocol for EtcdGrpc {
    fn name(&self) -> &'static str {
        "etcd-grpc"
    }

    fn dedup(&self) -> bool {
        false
    }

    fn client<'a>(&'a self, _worker: usize) -> BoxFuture<'a, Result<Box<dyn Client>>> {
        Box::pin(async move {
            let shared = self
                .shared
                .get_or_try_init(|| connect(self.env.endpoints.iter().map(|e| e.addr), true))
                .await?;
            Ok(Box::new(GrpcClient {
                kvs: shared.iter().map(etcd_client::Client::kv_client).collect(),
                serializable: self.env.read_mode == ReadMode::Stale,
            }) as Box<dyn Client>)
        })
    }

    fn status<'a>(&'a self, node: usize) -> BoxFuture<'a, Option<Status>> {
        Box::pin(async move {
            let e = self.env.endpoints.get(node)?;
            let direct = self
                .direct
                .get_or_try_init(|| connect(self.env.endpoints.iter().map(|e| e.direct), false))
                .await
                .ok()?;
            let mut c = direct.get(node)?.clone();
            let st = tokio::time::timeout(STATUS_TIMEOUT, c.status())
                .await
                .ok()?
                .ok()?;
            let st = MemberStatus {
                member: st.header()?.member_id().to_string(),
                // 0: it knows no leader.
                leader: (st.leader() != 0).then(|| st.leader().to_string()),
                term: st.raft_term(),
                raft_index: st.raft_index(),
            };
            let list = async move {
                let l = tokio::time::timeout(STATUS_TIMEOUT, c.member_list())
                    .await
                    .ok()?
                    .ok()?;
                Some(
                    l.members()
                        .iter()
                        .map(|m| (m.id().to_string(), m.name().to_string()))
                        .collect(),
                )
            };
            self.names.status(&e.id, &st, list).await
        })
    }
}

/// One worker's handle: per member, a clone of the shared client's KV API.
struct GrpcClient {
    kvs: Vec<KvClient>,
    serializable: bool,
}

impl Client for GrpcClient {
    fn attempt<'a>(&'a mut self, req: Request<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let Some(kv) = self.kvs.get_mut(req.node) else {
                return Attempt::Fail {
                    current: Value::Null,
                    why: format!("no member {}", req.node),
                };
            };
            let deadline = Instant::now() + req.timeout;
            etcd_kv::attempt(&mut Member(kv), req.cmd, self.serializable, deadline).await
        })
    }
}

/// One member's KV API, for one attempt.
struct Member<'a>(&'a mut KvClient);

/// Awaits one gRPC call until `deadline`, classifying its errors.
async fn call<T>(
    rpc: impl Future<Output = Result<T, etcd_client::Error>>,
    deadline: Instant,
    effectful: bool,
) -> Result<T, Attempt> {
    if Instant::now() >= deadline {
        return Err(etcd_kv::lost("timeout".into(), effectful));
    }
    match tokio::time::timeout_at(deadline, rpc).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify_error(&e, effectful)),
        Err(_) => Err(etcd_kv::lost("timeout".into(), effectful)),
    }
}

/// A stored value read back, or a definite failure naming what is wrong.
fn stored(bytes: &[u8]) -> Result<Value, Attempt> {
    etcd_kv::parse_value(bytes).map_err(|why| Attempt::Fail {
        current: Value::Null,
        why,
    })
}

impl Requests for Member<'_> {
    async fn range(
        &mut self,
        key: &str,
        serializable: bool,
        deadline: Instant,
    ) -> Result<(Option<Value>, i64), Attempt> {
        let opts = serializable.then(|| GetOptions::new().with_serializable());
        let resp = call(self.0.get(key, opts), deadline, false).await?;
        match resp.kvs().first() {
            Some(kv) => Ok((Some(stored(kv.value())?), kv.mod_revision())),
            None => Ok((None, 0)),
        }
    }

    async fn put(&mut self, key: &str, value: &Value, deadline: Instant) -> Result<(), Attempt> {
        call(self.0.put(key, value_text(value), None), deadline, true)
            .await
            .map(|_| ())
    }

    async fn cas(
        &mut self,
        key: &str,
        from: &Value,
        to: &Value,
        deadline: Instant,
    ) -> Result<Result<(), Value>, Attempt> {
        let compare = if from.is_null() {
            // Never created (or deleted since): create_revision is 0.
            Compare::create_revision(key, CompareOp::Equal, 0)
        } else {
            Compare::value(key, CompareOp::Equal, value_text(from))
        };
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(key, value_text(to), None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = call(self.0.txn(txn), deadline, true).await?;
        if resp.succeeded() {
            return Ok(Ok(()));
        }
        // The failure branch read the key: the value the cas saw.
        let seen = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| stored(kv.value())),
            _ => None,
        });
        Ok(Err(seen.and_then(Result::ok).unwrap_or(Value::Null)))
    }

    async fn put_if_unmodified(
        &mut self,
        key: &str,
        mod_rev: i64,
        value: &Value,
        deadline: Instant,
    ) -> Result<bool, Attempt> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, mod_rev)])
            .and_then([TxnOp::put(key, value_text(value), None)]);
        let resp = call(self.0.txn(txn), deadline, true).await?;
        Ok(resp.succeeded())
    }
}

/// How an etcd-client error ends an attempt (see the module docs).
pub fn classify_error(e: &etcd_client::Error, effectful: bool) -> Attempt {
    match e {
        etcd_client::Error::GRpcStatus(s) => classify_status(s, effectful),
        other => etcd_kv::lost(format!("etcd-client: {other}"), effectful),
    }
}

/// How a gRPC status ends an attempt: a connection that could not be
/// opened sent nothing; otherwise by etcd's code and message
/// ([`etcd_kv::classify`]).
pub fn classify_status(s: &tonic::Status, effectful: bool) -> Attempt {
    let why = format!("etcd {:?}: {}", s.code(), s.message());
    if s.code() == Code::Unavailable && never_sent(s) {
        return Attempt::Elsewhere { hint: None, why };
    }
    etcd_kv::classify(s.code() as i64, s.message(), effectful, why)
}

/// Whether the status says the connection could not be opened: tonic maps
/// a connect error to `Unavailable` with the connector's message and keeps
/// the error as its source.
fn never_sent(s: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        source = e.source();
    }
    s.message().starts_with("tcp connect error")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kind of attempt, for comparing.
    fn kind(a: &Attempt) -> &'static str {
        match a {
            Attempt::Ok(_) => "ok",
            Attempt::Fail { .. } => "fail",
            Attempt::Elsewhere { .. } => "elsewhere",
            Attempt::Ambiguous(_) => "ambiguous",
            Attempt::Fatal(_) => "fatal",
        }
    }

    #[test]
    fn statuses_map_to_definite_or_indeterminate() {
        // (code, message, effectful, outcome), as etcd 3.4.23 answered.
        let cases = [
            (
                Code::InvalidArgument,
                "etcdserver: request is too large",
                true,
                "fail",
            ),
            (
                Code::Unavailable,
                "etcdserver: no leader",
                true,
                "elsewhere",
            ),
            (
                Code::Unavailable,
                "etcdserver: leader changed",
                false,
                "elsewhere",
            ),
            (Code::Unavailable, "tcp connect error", true, "elsewhere"),
            (
                Code::ResourceExhausted,
                "etcdserver: too many requests",
                true,
                "elsewhere",
            ),
            (Code::Unknown, "raft proposal dropped", true, "elsewhere"),
            (
                Code::Unavailable,
                "etcdserver: request timed out",
                true,
                "ambiguous",
            ),
            (
                Code::Unavailable,
                "etcdserver: server stopped",
                true,
                "ambiguous",
            ),
            (
                Code::Unknown,
                "context deadline exceeded",
                true,
                "ambiguous",
            ),
            (Code::Unknown, "context deadline exceeded", false, "fail"),
            (Code::Unknown, "transport error", true, "ambiguous"),
        ];
        for (code, msg, effectful, want) in cases {
            let got = classify_status(&tonic::Status::new(code, msg), effectful);
            assert_eq!(kind(&got), want, "{code:?} {msg:?} effectful={effectful}");
        }
        // A connect error is found in the status's source, whatever its text.
        let connect =
            tonic::Status::from_error(Box::new(tonic::ConnectError("connection refused".into())));
        assert_eq!(kind(&classify_status(&connect, true)), "elsewhere");
    }
}

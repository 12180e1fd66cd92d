//! Client workers: each is a logical process that takes operations from the
//! workload's seeded generator, paces them to the run's total rate, sends
//! them over HTTP to a node (following `not_leader` hints) and records the
//! invocation before sending and the completion on return.
//!
//! How an answer becomes a completion:
//! - the workload's own answers (200, or 412 for a cas whose `from` did not
//!   match) → `ok` / `fail` as the workload says;
//! - `not_leader`, `unavailable` (503), `bad_request` (400), `too_large`
//!   (413), and a connection that could not be opened: definite, the op did
//!   not happen. `not_leader` and refused connections are retried on the
//!   hinted (or next) node while the op's time lasts, then → `fail`;
//! - `indeterminate` (504), a timeout, or a connection error after the
//!   request was sent → `info`; the worker then continues as a new process.
//!   With an attempt timeout shorter than the op's (`--attempt-timeout-ms`)
//!   such an attempt is first resent, with the same client id and request
//!   sequence number, to the next node while the op's time lasts: a node
//!   that de-duplicates applies it once. Once any attempt was ambiguous the
//!   op can only end `ok`/`fail` from an answer, or `info` — never a
//!   refusal-made `fail`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use faultline_history::{EventType, Process};
use faultline_workloads::{Generator, Method, OpSpec, Reply, Workload};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::NodeInfo;
use crate::recorder::{Entry, Recorder};
use crate::sut::{Attempt, Db, Target};

/// Ok / fail / info counters shared with the progress line.
#[derive(Debug, Default)]
pub struct Counts {
    /// Operations that completed `ok`.
    pub ok: AtomicU64,
    /// Operations that completed `fail`.
    pub fail: AtomicU64,
    /// Operations that completed `info`.
    pub info: AtomicU64,
}

impl Counts {
    /// (ok, fail, info) right now.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.fail.load(Ordering::Relaxed),
            self.info.load(Ordering::Relaxed),
        )
    }
}

/// Spaces operations to a total rate across all workers (`None` = as fast
/// as possible). Late workers do not cause a burst: slots are never in the past.
#[derive(Debug)]
pub struct Pacer {
    interval: Option<Duration>,
    next: std::sync::Mutex<Instant>,
}

impl Pacer {
    /// A pacer for `rate` operations per second in total (0 = unpaced).
    pub fn new(rate: f64) -> Pacer {
        Pacer {
            interval: (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate)),
            next: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// Waits for this worker's next slot.
    pub async fn wait(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let at = (*next).max(Instant::now());
            *next = at + interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// What every worker shares.
#[derive(Clone)]
pub struct ClientCtx {
    /// The workload.
    pub workload: Arc<dyn Workload>,
    /// The history.
    pub recorder: Arc<Recorder>,
    /// Nodes to talk to.
    pub nodes: Vec<NodeInfo>,
    /// HTTP client (connection pool shared by all workers).
    pub http: reqwest::Client,
    /// Per-operation time limit.
    pub op_timeout: Duration,
    /// Per-attempt time limit; shorter than `op_timeout` turns on resends.
    pub attempt_timeout: Duration,
    /// Start every op at the worker's own node.
    pub pin_clients: bool,
    /// Rate limiter.
    pub pacer: Arc<Pacer>,
    /// Counters.
    pub counts: Arc<Counts>,
    /// The next fresh process id (for workers replacing a crashed process).
    pub next_process: Arc<AtomicU64>,
    /// Latency of completed ops (ok and fail), microseconds.
    pub latencies: Arc<std::sync::Mutex<hdrhistogram::Histogram<u64>>>,
    /// Another system under test (etcd) whose [`Db::attempt`] maps ops;
    /// `None` for faultline-node through the workload's HTTP calls.
    pub db: Option<Arc<dyn Db>>,
}

/// A client's identity for de-duplication: one per logical process.
pub struct Session {
    process: u64,
    seq: u64,
    node: usize,
    /// The worker's own node, where pinned clients start every op.
    home: usize,
}

/// Runs one worker until `stop` fires (the op in flight finishes first).
pub async fn worker(
    ctx: ClientCtx,
    index: usize,
    workers: usize,
    seed: u64,
    stop: CancellationToken,
) {
    let mut generator: Box<dyn Generator> = ctx.workload.generator(seed, index, workers);
    let home = index % ctx.nodes.len().max(1);
    let mut s = Session {
        process: index as u64,
        seq: 0,
        node: home,
        home,
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ctx.pacer.wait() => {}
        }
        if stop.is_cancelled() {
            return;
        }
        let op = generator.next_op();
        if ctx.pin_clients {
            s.node = s.home;
        }
        let reply = invoke(&ctx, &mut s, &op).await;
        generator.observe(&op, &reply);
        if matches!(reply, Reply::Info(_)) {
            // The old process may still take effect at any time: never
            // reuse it. Also move on to another node, which is likely healthier.
            s.process = ctx.next_process.fetch_add(1, Ordering::Relaxed);
            s.seq = 0;
            s.node = (s.node + 1) % ctx.nodes.len().max(1);
        }
    }
}

/// Records the invocation, performs it, records the completion.
pub async fn invoke(ctx: &ClientCtx, s: &mut Session, op: &OpSpec) -> Reply {
    let process = Process::Client(s.process);
    ctx.recorder.record(Entry {
        process,
        kind: EventType::Invoke,
        f: op.f.clone(),
        key: op.key.clone(),
        value: op.value.clone(),
        error: None,
        node: Some(ctx.nodes[s.node].id.clone()),
    });
    let started = Instant::now();
    s.seq += 1;
    let reply = perform(ctx, s, op).await;
    let (kind, value, error) = match &reply {
        Reply::Ok(v) => {
            ctx.counts.ok.fetch_add(1, Ordering::Relaxed);
            (EventType::Ok, v.clone(), None)
        }
        Reply::Fail(v, e) => {
            ctx.counts.fail.fetch_add(1, Ordering::Relaxed);
            // A fail keeps the invocation's argument unless the workload
            // learned something (e.g. the value a cas saw).
            let v = if v.is_null() {
                op.value.clone()
            } else {
                v.clone()
            };
            (EventType::Fail, v, Some(e.clone()))
        }
        Reply::Info(e) => {
            ctx.counts.info.fetch_add(1, Ordering::Relaxed);
            (EventType::Info, op.value.clone(), Some(e.clone()))
        }
    };
    ctx.recorder.record(Entry {
        process,
        kind,
        f: op.f.clone(),
        key: op.key.clone(),
        value,
        error,
        node: Some(ctx.nodes[s.node].id.clone()),
    });
    if !matches!(reply, Reply::Info(_)) {
        let us = started.elapsed().as_micros() as u64;
        let mut h = ctx.latencies.lock().unwrap_or_else(|e| e.into_inner());
        let _ = h.record(us.max(1));
    }
    reply
}

/// A fresh session for a one-off client (final reads).
pub fn session(process: u64, node: usize) -> Session {
    Session {
        process,
        seq: 0,
        node,
        home: node,
    }
}

/// One op through another system's [`Db::attempt`], moving to the hinted
/// (or next) node while its answers prove the op was not done.
async fn perform_db(db: &dyn Db, ctx: &ClientCtx, s: &mut Session, op: &OpSpec) -> Reply {
    let deadline = Instant::now() + ctx.op_timeout;
    let n = ctx.nodes.len().max(1);
    let mut last_definite = String::from("no attempt");
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Reply::Fail(Value::Null, last_definite);
        }
        let node = &ctx.nodes[s.node];
        let target = Target {
            id: node.id.clone(),
            client_url: node.client_url.clone(),
            direct_url: node.direct_url.clone(),
        };
        match db
            .attempt(&ctx.http, &*ctx.workload, &target, op, remaining)
            .await
        {
            Attempt::Done(r) => return r,
            Attempt::Elsewhere { hint, why } => {
                last_definite = why;
                match hint.and_then(|h| ctx.nodes.iter().position(|x| x.id == h)) {
                    Some(i) if i != s.node => s.node = i,
                    _ => {
                        s.node = (s.node + 1) % n;
                        backoff(deadline).await;
                    }
                }
            }
        }
    }
}

async fn perform(ctx: &ClientCtx, s: &mut Session, op: &OpSpec) -> Reply {
    if let Some(db) = &ctx.db {
        return perform_db(&**db, ctx, s, op).await;
    }
    let deadline = Instant::now() + ctx.op_timeout;
    let call = ctx.workload.request(op);
    let n = ctx.nodes.len().max(1);
    let mut last_definite = String::from("no attempt");
    // Why the last attempt may have taken effect, once one may have.
    let mut ambiguous: Option<String> = None;
    let resend = ctx.attempt_timeout < ctx.op_timeout;
    let mut hops = 0u32;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return match ambiguous {
                Some(why) => Reply::Info(why),
                // Every attempt was refused before it could take effect.
                None => Reply::Fail(Value::Null, last_definite),
            };
        }
        let url = format!("{}{}", ctx.nodes[s.node].client_url, call.path);
        let mut req = match call.method {
            Method::Get => ctx.http.get(url),
            Method::Put => ctx.http.put(url),
            Method::Post => ctx.http.post(url),
            Method::Delete => ctx.http.delete(url),
        }
        .timeout(remaining.min(ctx.attempt_timeout))
        .header("X-Client-Id", format!("p{}", s.process))
        .header("X-Request-Seq", s.seq.to_string());
        if let Some(body) = &call.body {
            req = req.json(body);
        }
        let (status, body) = match send(req).await {
            Ok(answer) => answer,
            Err(Lost::NotSent) => {
                // Nothing was sent: definite. Try the next node.
                last_definite = format!("connect: {}", ctx.nodes[s.node].id);
                s.node = (s.node + 1) % n;
                backoff(deadline).await;
                continue;
            }
            Err(Lost::Ambiguous(why)) => {
                if let Some(end) = after_ambiguous(resend, why, &mut ambiguous, s, n) {
                    return end;
                }
                backoff(deadline).await;
                continue;
            }
        };
        if (200..300).contains(&status) || status == 412 {
            return ctx.workload.interpret(op, status, &body);
        }
        let kind = body.get("error").and_then(Value::as_str).unwrap_or("");
        match (status, kind) {
            (503, "not_leader") => {
                last_definite = "not_leader".into();
                let hint = body.get("leader").and_then(Value::as_str);
                match hint.and_then(|h| ctx.nodes.iter().position(|x| x.id == h)) {
                    Some(i) if i != s.node => {
                        s.node = i;
                        hops += 1;
                        // Stale hints can bounce between nodes: slow down.
                        if hops > 2 {
                            backoff(deadline).await;
                        }
                    }
                    _ => {
                        // No usable hint (an election is on): try the next node.
                        s.node = (s.node + 1) % n;
                        backoff(deadline).await;
                    }
                }
            }
            (503, _) => {
                last_definite = format!("unavailable: {}", message(&body));
                s.node = (s.node + 1) % n;
                backoff(deadline).await;
            }
            (400 | 413 | 404 | 405 | 422, _) => {
                return Reply::Fail(Value::Null, format!("{kind}: {}", message(&body)));
            }
            _ => {
                let why = if status == 504 {
                    format!("indeterminate: {}", message(&body))
                } else {
                    format!("status {status}: {}", message(&body))
                };
                if let Some(end) = after_ambiguous(resend, why, &mut ambiguous, s, n) {
                    return end;
                }
                backoff(deadline).await;
            }
        }
    }
}

/// Why an attempt brought no answer.
enum Lost {
    /// The connection could not be opened: the request never left.
    NotSent,
    /// The request may have arrived (timeout, broken connection, unreadable
    /// answer): it may have taken effect.
    Ambiguous(String),
}

/// Sends one attempt and reads its status and JSON answer.
async fn send(req: reqwest::RequestBuilder) -> Result<(u16, Value), Lost> {
    let why = |e: &reqwest::Error, what: &str| {
        if e.is_timeout() {
            "timeout".to_string()
        } else {
            format!("{what}: {}", short(e))
        }
    };
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() && !e.is_timeout() => return Err(Lost::NotSent),
        Err(e) => return Err(Lost::Ambiguous(why(&e, "transport"))),
    };
    let status = resp.status().as_u16();
    match resp.json().await {
        Ok(body) => Ok((status, body)),
        Err(e) => Err(Lost::Ambiguous(why(
            &e,
            &format!("unreadable answer ({status})"),
        ))),
    }
}

/// After an attempt that may have taken effect: without resends the op ends
/// `info` (returned); with them the next node gets the same request.
fn after_ambiguous(
    resend: bool,
    why: String,
    ambiguous: &mut Option<String>,
    s: &mut Session,
    nodes: usize,
) -> Option<Reply> {
    if !resend {
        return Some(Reply::Info(why));
    }
    *ambiguous = Some(why);
    s.node = (s.node + 1) % nodes;
    None
}

/// A short pause before retrying elsewhere, never past the op's deadline.
async fn backoff(deadline: Instant) {
    let at = (Instant::now() + Duration::from_millis(20)).min(deadline);
    tokio::time::sleep_until(at).await;
}

fn message(body: &Value) -> String {
    body.get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn short(e: &reqwest::Error) -> String {
    // reqwest's Display omits the cause; the chain names what went wrong.
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

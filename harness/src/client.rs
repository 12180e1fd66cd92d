//! Client workers: each is a logical process that takes operations from the
//! workload's seeded generator, paces them to the run's total rate, asks
//! the run's [`Protocol`] client to carry out the operation's [`Command`]
//! on a node, and records the invocation before sending and the completion
//! on return. Everything here is the same for every system.
//!
//! How attempts end an operation:
//! - [`Attempt::Ok`] → `ok`; [`Attempt::Fail`] → `fail` (a refused cas
//!   keeps the value the system reported);
//! - [`Attempt::Elsewhere`] (not the leader, unavailable, could not
//!   connect): definite, retried on the hinted (or next) node while the
//!   op's time lasts, then `fail`;
//! - [`Attempt::Ambiguous`] (a timeout, a lost connection or answer, an
//!   indeterminate error) → `info`, and the worker continues as a new
//!   process. With an attempt timeout shorter than the op's
//!   (`--attempt-timeout-ms`) and a system that de-duplicates, such an
//!   attempt is first resent with the same client and sequence number to
//!   the next node while the op's time lasts. Once any attempt was
//!   ambiguous the op can only end `ok`/`fail` from an answer, or `info`,
//!   never a refusal-made `fail`;
//! - [`Attempt::Fatal`] → `info`, and the run stops with that error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faultline_history::{EventType, Process};
use faultline_workloads::{Generator, OpSpec, Reply, Workload};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::recorder::{Entry, Recorder};
use crate::sut::{Attempt, Client, Members, Protocol, Request};

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
/// as possible). Late workers do not cause a burst: slots are never in the
/// past. With bursts, the last half second of every three is unpaced.
#[derive(Debug)]
pub struct Pacer {
    interval: Option<Duration>,
    next: Mutex<Instant>,
    bursts: Option<Instant>,
}

/// Bursts: the last `BURST` of every `BURST_EVERY` runs at full speed.
const BURST_EVERY: Duration = Duration::from_secs(3);
const BURST: Duration = Duration::from_millis(500);

impl Pacer {
    /// A pacer for `rate` operations per second in total (0 = unpaced).
    pub fn new(rate: f64) -> Pacer {
        Pacer {
            interval: (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate)),
            next: Mutex::new(Instant::now()),
            bursts: None,
        }
    }

    /// The same with bursts at full speed, counted from now.
    pub fn with_bursts(rate: f64) -> Pacer {
        Pacer {
            bursts: Some(Instant::now()),
            ..Pacer::new(rate)
        }
    }

    /// Waits for this worker's next slot.
    pub async fn wait(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        if let Some(start) = self.bursts {
            let phase = start.elapsed().as_nanos() % BURST_EVERY.as_nanos();
            if phase >= (BURST_EVERY - BURST).as_nanos() {
                return;
            }
        }
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let at = (*next).max(Instant::now());
            *next = at + interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// The first fatal error of a run's clients; setting it stops the run.
#[derive(Debug, Default)]
pub struct Fatal {
    error: Mutex<Option<String>>,
    /// Cancelled when an error is set.
    pub token: CancellationToken,
}

impl Fatal {
    /// Records `why` (the first one wins) and stops the run.
    pub fn set(&self, why: String) {
        let mut e = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if e.is_none() {
            *e = Some(why);
        }
        self.token.cancel();
    }

    /// The error, if any.
    pub fn get(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What every worker shares.
#[derive(Clone)]
pub struct ClientCtx {
    /// The workload.
    pub workload: Arc<dyn Workload>,
    /// The history.
    pub recorder: Arc<Recorder>,
    /// The client protocol.
    pub protocol: Arc<dyn Protocol>,
    /// Node ids, in order (every node in the address book).
    pub nodes: Vec<String>,
    /// Which of them are members now: ops go to members only (a spare is
    /// stopped; a removed node would only refuse).
    pub members: Arc<Members>,
    /// Per-operation time limit.
    pub op_timeout: Duration,
    /// Per-attempt time limit; shorter than `op_timeout` turns on resends
    /// (when the protocol de-duplicates).
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
    pub latencies: Arc<Mutex<hdrhistogram::Histogram<u64>>>,
    /// Set when a client breaks its protocol; stops the run.
    pub fatal: Arc<Fatal>,
}

impl ClientCtx {
    /// A context for these nodes with no pacing, counters from zero and
    /// process ids for replacements from `first_spare_process`.
    pub fn new(
        workload: Arc<dyn Workload>,
        recorder: Arc<Recorder>,
        protocol: Arc<dyn Protocol>,
        nodes: Vec<String>,
        op_timeout: Duration,
        attempt_timeout: Duration,
        first_spare_process: u64,
    ) -> ClientCtx {
        ClientCtx {
            workload,
            recorder,
            protocol,
            members: Arc::new(Members::new(nodes.len(), nodes.len())),
            nodes,
            op_timeout,
            attempt_timeout,
            pin_clients: false,
            pacer: Arc::new(Pacer::new(0.0)),
            counts: Arc::new(Counts::default()),
            next_process: Arc::new(AtomicU64::new(first_spare_process)),
            latencies: Arc::new(Mutex::new(
                hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
                    .expect("static histogram bounds are valid"),
            )),
            fatal: Arc::new(Fatal::default()),
        }
    }
}

/// A client's identity for de-duplication: one per logical process.
pub struct Session {
    process: u64,
    seq: u64,
    node: usize,
    /// The worker's own node, where pinned clients start every op.
    home: usize,
}

/// A fresh session (process `process`, starting at node `node`).
pub fn session(process: u64, node: usize) -> Session {
    Session {
        process,
        seq: 0,
        node,
        home: node,
    }
}

/// Runs one worker until `stop` fires (the op in flight finishes first).
pub async fn worker(
    ctx: ClientCtx,
    index: usize,
    workers: usize,
    seed: u64,
    stop: CancellationToken,
) {
    let mut client = match ctx.protocol.client(index).await {
        Ok(c) => c,
        Err(e) => {
            ctx.fatal.set(format!("cannot start client {index}: {e:#}"));
            return;
        }
    };
    let mut generator: Box<dyn Generator> = ctx.workload.generator(seed, index, workers);
    let mut s = session(index as u64, ctx.members.nth(index));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ctx.fatal.token.cancelled() => return,
            _ = ctx.pacer.wait() => {}
        }
        if stop.is_cancelled() || ctx.fatal.token.is_cancelled() {
            return;
        }
        let op = generator.next_op();
        if ctx.pin_clients {
            s.node = if ctx.members.is_member(s.home) {
                s.home
            } else {
                ctx.members.after(s.home)
            };
        }
        let reply = invoke(&ctx, &mut s, &mut *client, &op).await;
        generator.observe(&op, &reply);
        if matches!(reply, Reply::Info(_)) {
            // The old process may still take effect at any time: never
            // reuse it. Also move on to another node, which is likely healthier.
            s.process = ctx.next_process.fetch_add(1, Ordering::Relaxed);
            s.seq = 0;
            s.node = ctx.members.after(s.node);
        }
    }
}

/// Records the invocation, performs it, records the completion.
pub async fn invoke(
    ctx: &ClientCtx,
    s: &mut Session,
    client: &mut dyn Client,
    op: &OpSpec,
) -> Reply {
    let process = Process::Client(s.process);
    ctx.recorder.record(Entry {
        process,
        kind: EventType::Invoke,
        f: op.f.clone(),
        key: op.key.clone(),
        value: op.value.clone(),
        error: None,
        node: Some(ctx.nodes[s.node].clone()),
    });
    let started = Instant::now();
    s.seq += 1;
    let answer = perform(ctx, s, client, op).await;
    let reply = ctx.workload.completion(op, answer);
    let (kind, value, error) = match &reply {
        Reply::Ok(v) => {
            ctx.counts.ok.fetch_add(1, Ordering::Relaxed);
            (EventType::Ok, v.clone(), None)
        }
        Reply::Fail(v, e) => {
            ctx.counts.fail.fetch_add(1, Ordering::Relaxed);
            // A refused cas records the value the system saw (absent too:
            // the checker reads it as an observation); any other fail keeps
            // the invocation's argument.
            let v = if e == faultline_checkers::REFUSED_CAS || !v.is_null() {
                v.clone()
            } else {
                op.value.clone()
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
        node: Some(ctx.nodes[s.node].clone()),
    });
    if !matches!(reply, Reply::Info(_)) {
        let us = started.elapsed().as_micros() as u64;
        let mut h = ctx.latencies.lock().unwrap_or_else(|e| e.into_inner());
        let _ = h.record(us.max(1));
    }
    reply
}

/// Attempts `op` until an answer ends it or its time runs out; records
/// nothing (see [`invoke`]). The answer is the client's, before
/// [`Workload::completion`].
pub async fn perform(
    ctx: &ClientCtx,
    s: &mut Session,
    client: &mut dyn Client,
    op: &OpSpec,
) -> Reply {
    let deadline = Instant::now() + ctx.op_timeout;
    let cmd = ctx.workload.command(op);
    let mut last_definite = String::from("no attempt");
    // Why the last attempt may have taken effect, once one may have.
    let mut ambiguous: Option<String> = None;
    let resend = ctx.attempt_timeout < ctx.op_timeout && ctx.protocol.dedup();
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
        let attempt = client
            .attempt(Request {
                node: s.node,
                cmd: &cmd,
                client: s.process,
                seq: s.seq,
                timeout: remaining.min(ctx.attempt_timeout),
            })
            .await;
        match attempt {
            Attempt::Ok(v) => return Reply::Ok(v),
            Attempt::Fail { current, why } => return Reply::Fail(current, why),
            Attempt::Elsewhere { hint, why } => {
                last_definite = why;
                match hint.and_then(|h| ctx.nodes.iter().position(|x| *x == h)) {
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
                        s.node = ctx.members.after(s.node);
                        backoff(deadline).await;
                    }
                }
            }
            Attempt::Ambiguous(why) => {
                if !resend {
                    return Reply::Info(why);
                }
                ambiguous = Some(why);
                s.node = ctx.members.after(s.node);
                backoff(deadline).await;
            }
            Attempt::Fatal(why) => {
                ctx.fatal.set(why.clone());
                return Reply::Info(why);
            }
        }
    }
}

/// A short pause before retrying elsewhere, never past the op's deadline.
async fn backoff(deadline: Instant) {
    let at = (Instant::now() + Duration::from_millis(20)).min(deadline);
    tokio::time::sleep_until(at).await;
}

//! A run's traffic phase: client workers and the nemesis until the time
//! limit (with a progress line), then healing, the quiet period and the
//! workload's final reads. Also the Ctrl-C/SIGTERM watch that turns the
//! first signal into an orderly stop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use faultline_workloads::{OpSpec, Reply, Workload};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{self, ClientCtx, Pacer};
use crate::exit::Exit;
use crate::faults::{FaultLog, apply_blocking, nemesis_loop};
use crate::nemesis::Fault;
use crate::recorder::Recorder;
use crate::settings::Settings;
use crate::store::NodeExit;

/// What the traffic phase measured.
pub struct Phase {
    /// Seconds of client traffic.
    pub traffic_s: f64,
    /// Latency of completed ok/fail ops, µs.
    pub latencies: hdrhistogram::Histogram<u64>,
    /// Final reads that returned ok.
    pub final_reads_ok: usize,
    /// Final reads requested.
    pub final_reads: usize,
    /// Nodes that exited without being asked to.
    pub node_exits: Vec<NodeExit>,
}

/// The clients' shared context for a run.
pub fn client_ctx(
    settings: &Settings,
    workload: Arc<dyn Workload>,
    recorder: Arc<Recorder>,
    faults: &FaultLog,
) -> ClientCtx {
    let mut ctx = ClientCtx::new(
        workload,
        recorder,
        faults.cluster.protocol.clone(),
        faults.cluster.ids(),
        Duration::from_millis(settings.op_timeout_ms),
        Duration::from_millis(settings.attempt_timeout_ms),
        settings.concurrency as u64,
    );
    ctx.pin_clients = settings.pin_clients;
    ctx.members = faults.cluster.members_handle();
    ctx.pacer = Arc::new(if settings.bursts {
        Pacer::with_bursts(settings.rate)
    } else {
        Pacer::new(settings.rate)
    });
    ctx
}

/// Clients and the nemesis until the time limit, an interrupt or a fatal
/// client error; every op in flight completes before this returns.
pub async fn drive(
    settings: &Settings,
    ctx: &ClientCtx,
    faults: &Arc<FaultLog>,
    interrupt: &CancellationToken,
) -> (f64, Vec<NodeExit>) {
    let start = Instant::now();
    let limit = Duration::from_secs_f64(settings.time_limit_s);
    let stop_clients = CancellationToken::new();
    let stop_nemesis = CancellationToken::new();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..settings.concurrency {
        workers.spawn(client::worker(
            ctx.clone(),
            w,
            settings.concurrency,
            settings.seed,
            stop_clients.clone(),
        ));
    }
    let nemesis = tokio::spawn(nemesis_loop(
        faults.clone(),
        settings.seed,
        settings.nemesis.clone(),
        Duration::from_secs_f64(settings.nemesis_interval_s),
        stop_nemesis.clone(),
    ));
    let bar = progress_bar();
    let mut exits = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = interrupt.cancelled() => break,
            _ = ctx.fatal.token.cancelled() => break,
            _ = tick.tick() => {}
        }
        for (id, what) in faults.cluster.supervisor.poll_exits() {
            bar.suspend(|| eprintln!("faultline: node {id} {what}"));
            exits.push(NodeExit {
                node: id,
                exit: what,
                time: ctx.recorder.now_ns(),
            });
        }
        let elapsed = start.elapsed();
        let (ok, fail, info) = ctx.counts.snapshot();
        let active: Vec<&str> = faults.active().iter().map(|k| k.name()).collect();
        bar.set_message(format!(
            "{:>5.1}/{} s  ok {ok}  fail {fail}  info {info}  faults: {}",
            elapsed.as_secs_f64(),
            settings.time_limit_s,
            if active.is_empty() {
                "none".to_string()
            } else {
                active.join(",")
            }
        ));
        bar.tick();
        if elapsed >= limit {
            break;
        }
    }
    let traffic_s = start.elapsed().as_secs_f64();
    stop_clients.cancel();
    stop_nemesis.cancel();
    bar.finish_and_clear();
    // In-flight ops end within their timeout; then every one is complete.
    while workers.join_next().await.is_some() {}
    let _ = nemesis.await;
    (traffic_s, exits)
}

/// Heals everything (when faults were on) and waits the quiet period.
pub async fn heal(settings: &Settings, faults: &Arc<FaultLog>, interrupt: &CancellationToken) {
    if settings.nemesis.any() {
        apply_blocking(faults, Fault::Clear).await;
    }
    tokio::select! {
        _ = interrupt.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_secs_f64(settings.quiet_period_s)) => {}
    }
}

/// Each final read is retried (as a fresh process) until one succeeds or
/// ten seconds pass; every attempt is in the history. The reads use one
/// more client (`worker`, numbered after the run's workers). Returns how
/// many succeeded.
pub async fn final_reads(
    ctx: &ClientCtx,
    worker: usize,
    ops: &[OpSpec],
    interrupt: &CancellationToken,
) -> Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = ctx
        .protocol
        .client(worker)
        .await
        .context("cannot start a client for the final reads")?;
    let mut ok = 0;
    for (k, op) in ops.iter().enumerate() {
        loop {
            let process = ctx
                .next_process
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut s = client::session(process, ctx.members.nth(k));
            let reply = client::invoke(ctx, &mut s, &mut *client, op).await;
            if matches!(reply, Reply::Ok(_)) {
                ok += 1;
                break;
            }
            if Instant::now() >= deadline
                || interrupt.is_cancelled()
                || ctx.fatal.token.is_cancelled()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(ok)
}

fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar
}

/// Ctrl-C and SIGTERM stop the run in order (the token); a second one
/// kills every node at once and exits.
pub fn watch_signals() -> CancellationToken {
    let interrupt = CancellationToken::new();
    let token = interrupt.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            seen += 1;
            if seen == 1 {
                eprintln!(
                    "\nfaultline: interrupted; stopping clients and nodes (again to kill at once)"
                );
                token.cancel();
            } else {
                crate::supervisor::kill_all_registered();
                std::process::exit(i32::from(Exit::Error.code()));
            }
        }
    });
    interrupt
}

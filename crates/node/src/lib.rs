//! faultline-node: a durable Raft key-value server. The library holds the
//! driver (event loop), storage, peer transport, state machine and HTTP API;
//! the `faultline-node` binary and the `faultline` controller's hidden `node`
//! mode both call [`main_with_args`].
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT) or `--help` /
//! `--list-bugs`; 1 when the node fails (storage corruption before the log's
//! tail, an address that cannot be bound, a failing disk); 2 on a bad command
//! line.

pub mod api;
pub mod config;
pub mod driver;
pub mod kv;
pub mod ports;
pub mod storage;
pub mod transport;

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use faultline_raft::{Raft, SnapshotMeta};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Args, NodeBug, NodeConfig, bug_list};
use crate::driver::{Driver, Event};
use crate::kv::Kv;
use crate::storage::{Storage, StorageOptions};

/// Events queued for the event loop before clients get `unavailable` and peer
/// messages are dropped.
const EVENT_QUEUE: usize = 65_536;

/// Parses a `faultline-node` command line (the first item is the program name)
/// and runs the node until SIGTERM or SIGINT.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if args.list_bugs {
        for (name, description) in bug_list() {
            println!("{name:<26} {description}");
        }
        return ExitCode::SUCCESS;
    }
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let cfg = match NodeConfig::try_from(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("faultline-node: {e}");
            return ExitCode::from(2);
        }
    };
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once, on stderr (where the log goes too).
            eprintln!("faultline-node: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Recovers the node's state and runs it until a signal or a fatal error.
pub fn run(cfg: NodeConfig) -> anyhow::Result<()> {
    let cfg = Arc::new(cfg);
    let storage_opts = StorageOptions {
        // The skip-fsync bug: everything is written, nothing is synced.
        fsync: !cfg.has_bug(NodeBug::SkipFsync),
        segment_bytes: cfg.segment_bytes,
    };
    let (storage, persisted) = Storage::open(&cfg.data_dir, storage_opts)
        .with_context(|| format!("recovering data directory {}", cfg.data_dir.display()))?;
    let (kv, snap_meta) = match &persisted.snapshot {
        Some(s) => (
            Kv::restore(&s.data).context("restoring the state machine from the snapshot")?,
            s.meta,
        ),
        None => (Kv::new(), SnapshotMeta::default()),
    };
    tracing::info!(
        node = %cfg.name,
        id = cfg.id,
        term = persisted.hard_state.term,
        commit = persisted.hard_state.commit,
        entries = persisted.entries.len(),
        snapshot_index = snap_meta.index,
        "recovered"
    );
    let mut rc = faultline_raft::Config::new(cfg.id, cfg.voters.clone());
    rc.heartbeat_ticks = 1;
    rc.election_ticks = cfg.election_ticks;
    rc.seed = cfg.seed;
    rc.check_quorum = cfg.check_quorum;
    rc.pre_vote = cfg.pre_vote;
    rc.max_entries_per_msg = cfg.max_entries_per_msg;
    rc.max_inflight_msgs = cfg.max_inflight_msgs;
    rc.bugs = cfg.core_bugs.clone();
    let raft = Raft::new(rc, persisted).context("starting the Raft core")?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = rt.block_on(serve(cfg, raft, storage, kv, snap_meta));
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn serve(
    cfg: Arc<NodeConfig>,
    raft: Raft,
    storage: Storage,
    kv: Kv,
    snap_meta: SnapshotMeta,
) -> anyhow::Result<()> {
    let client_listener = TcpListener::bind(cfg.client_addr)
        .await
        .with_context(|| format!("binding the client address {}", cfg.client_addr))?;
    let peer_listener = TcpListener::bind(cfg.peer_addr)
        .await
        .with_context(|| format!("binding the peer address {}", cfg.peer_addr))?;
    tracing::info!(
        node = %cfg.name,
        client_addr = %client_listener.local_addr()?,
        peer_addr = %peer_listener.local_addr()?,
        "listening"
    );
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let (events, inbox) = std::sync::mpsc::sync_channel(EVENT_QUEUE);
    let outbox = transport::start_outgoing(cfg.id, &cfg.peer_addrs, &tracker, &cancel);
    tracker.spawn(transport::serve_incoming(
        cfg.id,
        cfg.peer_addrs.keys().copied().collect(),
        peer_listener,
        events.clone(),
        tracker.clone(),
        cancel.clone(),
    ));

    let driver = Driver::new(cfg.clone(), raft, storage, kv, snap_meta, outbox);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("raft-driver".into())
        .spawn(move || {
            let _ = done_tx.send(driver.run(inbox));
        })
        .context("starting the event-loop thread")?;

    let app = api::router(Arc::new(api::ApiState {
        events: events.clone(),
        cfg: cfg.clone(),
    }));
    let server_cancel = cancel.clone();
    let server = tokio::spawn(async move {
        axum::serve(client_listener, app)
            .with_graceful_shutdown(server_cancel.cancelled_owned())
            .await
    });

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut done_rx = done_rx;
    let result = tokio::select! {
        _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); None }
        _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); None }
        r = &mut done_rx => Some(r),
    };
    let result = match result {
        Some(r) => r,
        None => {
            // The queue may be full; wait for room rather than lose the stop.
            let ev = events.clone();
            let _ = tokio::task::spawn_blocking(move || ev.send(Event::Shutdown).is_ok()).await;
            done_rx.await
        }
    };
    cancel.cancel();
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    match result {
        Ok(r) => r.context("the event loop failed"),
        Err(_) => anyhow::bail!("the event loop thread died"),
    }
}

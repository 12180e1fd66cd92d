//! `faultline bench`: the same closed-loop client code against each system
//! under test, with no faults and no proxies, at several client counts;
//! throughput and HdrHistogram latency quantiles per system and client
//! count, and the ratio faultline/etcd.
//!
//! Clusters are started without proxies: nodes dial each other directly.
//! etcd is driven through its native gRPC API (protocol `etcd-grpc`, one
//! connection per member shared by every worker, as etcd's own clients do)
//! unless `--etcd-client gateway` asks for the JSON gateway; the gRPC client
//! is the cargo feature `etcd-grpc`, and a build without it says so rather
//! than measure etcd through the slower gateway. Before measuring, the bench
//! prints what each system does about fsync and batching ([`DURABILITY`]),
//! since that decides much of what the numbers mean.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use faultline_workloads::{Reply, Workload};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::{self, ClientCtx};
use crate::cluster::{Cluster, ClusterConfig, ClusterPaths};
use crate::recorder::Recorder;
use crate::sut::{Db, ReadMode, protocol};

/// `faultline bench` arguments.
#[derive(Debug, clap::Args)]
pub struct DbBenchArgs {
    /// Systems to measure, comma-separated (faultline, etcd).
    #[arg(long, default_value = "faultline,etcd")]
    pub db: String,
    /// Client counts, comma-separated; each is measured in turn.
    #[arg(long, default_value = "1,16,64")]
    pub clients: String,
    /// Seconds of measurement per system and client count.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// The workload whose operations are sent (register or kv suit best).
    #[arg(long, default_value = "kv")]
    pub workload: String,
    /// Nodes per cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// The etcd executable (default: `etcd` on PATH).
    #[arg(long)]
    pub etcd_bin: Option<PathBuf>,
    /// The faultline-node executable (default: this program in node mode).
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// Seed for the operation generators.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the clusters' data and logs go (default: a fresh folder under the temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// How etcd is driven: its native gRPC API (needs the cargo feature
    /// `etcd-grpc`) or its v3 JSON gateway.
    #[arg(long, value_enum, default_value_t = EtcdClient::Grpc)]
    pub etcd_client: EtcdClient,
}

/// `--etcd-client`: which of etcd's client protocols the bench uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EtcdClient {
    /// Native gRPC (`etcd-grpc`): one HTTP/2 connection per member, shared.
    Grpc,
    /// The v3 JSON gateway (`etcd`): HTTP/1.1, pooled connections.
    Gateway,
}

impl EtcdClient {
    /// The client protocol it names.
    pub fn protocol(self) -> &'static str {
        match self {
            EtcdClient::Grpc => "etcd-grpc",
            EtcdClient::Gateway => "etcd",
        }
    }
}

/// What each system does about fsync and batching, by spec name: printed
/// once before the table, because a system that acknowledges before its
/// data is on disk, or batches more, buys throughput with it.
pub const DURABILITY: &[(&str, &str)] = &[
    (
        "faultline-node",
        "group commit: requests that arrive while a batch is being persisted form the next \
         Ready batch; one fsync per batch (log entries and hard state together); the leader \
         sends entries to followers only after its own fsync",
    ),
    (
        "etcd",
        "etcd 3.4: one WAL fsync per Raft Ready batch; the leader sends entries to followers \
         before its own WAL write (the two overlap); the bbolt backend commits every 100 ms or \
         10,000 ops (--backend-batch-interval, --backend-batch-limit)",
    ),
];

/// How a system's clients reach it, for the bench's header.
fn client_note(protocol: &str) -> &'static str {
    match protocol {
        "etcd-grpc" => "native gRPC, one HTTP/2 connection per member shared by every worker",
        "etcd" => "the v3 JSON gateway, HTTP/1.1 with pooled connections",
        "faultline-http" => "HTTP/1.1 with pooled connections",
        _ => "its spec's client",
    }
}

/// What one measurement found.
#[derive(Clone, Debug)]
pub struct Figures {
    /// The system.
    pub db: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Completed (ok + fail) operations per second.
    pub ops_per_sec: f64,
    /// Ok, fail and info counts.
    pub counts: (u64, u64, u64),
    /// Latency quantiles of ok and fail ops in milliseconds: p50, p99, p99.9.
    pub quantiles_ms: (f64, f64, f64),
}

/// Runs `clients` closed-loop workers for `duration` against a running
/// cluster, through its client protocol, without recording a history.
pub async fn measure(
    cluster: &Cluster,
    workload: Arc<dyn Workload>,
    scratch: &Path,
    clients: usize,
    duration: Duration,
    seed: u64,
) -> Result<Figures> {
    let end = Instant::now() + duration;
    let recorder = Recorder::create(
        &scratch.join(format!("unused-history-{clients}.jsonl")),
        std::time::Instant::now(),
    )?;
    let ctx = ClientCtx::new(
        workload.clone(),
        Arc::new(recorder),
        cluster.protocol.clone(),
        cluster.ids(),
        Duration::from_secs(5),
        Duration::from_secs(5),
        clients as u64,
    );
    let mut tasks = Vec::with_capacity(clients);
    for w in 0..clients {
        let (ctx, workload) = (ctx.clone(), workload.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .expect("static histogram bounds are valid");
            let mut counts = (0u64, 0u64, 0u64);
            let mut client = ctx.protocol.client(w).await?;
            let mut generator = workload.generator(seed, w, clients);
            let mut s = client::session(w as u64, w % ctx.nodes.len().max(1));
            while Instant::now() < end {
                let op = generator.next_op();
                let started = Instant::now();
                let reply = client::perform(&ctx, &mut s, &mut *client, &op).await;
                let reply = workload.completion(&op, reply);
                let us = started.elapsed().as_micros() as u64;
                match &reply {
                    Reply::Ok(_) => counts.0 += 1,
                    Reply::Fail(..) => counts.1 += 1,
                    Reply::Info(_) => counts.2 += 1,
                }
                if !matches!(reply, Reply::Info(_)) {
                    let _ = hist.record(us.max(1));
                }
                generator.observe(&op, &reply);
            }
            Ok::<_, anyhow::Error>((hist, counts))
        }));
    }
    let started = Instant::now();
    let mut hist =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram")?;
    let mut counts = (0u64, 0u64, 0u64);
    for t in tasks {
        let (h, c) = t.await.context("a bench worker panicked")??;
        hist.add(&h).context("merging histograms")?;
        counts = (counts.0 + c.0, counts.1 + c.1, counts.2 + c.2);
    }
    if let Some(e) = ctx.fatal.get() {
        bail!("{e}");
    }
    let secs = started.elapsed().as_secs_f64().max(duration.as_secs_f64());
    let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
    Ok(Figures {
        db: cluster.db.name().to_string(),
        clients,
        ops_per_sec: (counts.0 + counts.1) as f64 / secs,
        counts,
        quantiles_ms: (q(0.5), q(0.99), q(0.999)),
    })
}

fn parse_list<T: std::str::FromStr>(what: &str, text: &str) -> Result<Vec<T>> {
    text.split(',')
        .map(|s| {
            s.trim()
                .parse::<T>()
                .map_err(|_| anyhow::anyhow!("--{what}: `{s}` is not valid"))
        })
        .collect()
}

/// `faultline bench`: measures and prints the table.
pub fn run(args: &DbBenchArgs) -> Result<()> {
    let usage = |m: String| crate::exit::usage(m);
    let dbs: Vec<String> = args.db.split(',').map(|s| s.trim().to_string()).collect();
    let clients: Vec<usize> =
        parse_list("clients", &args.clients).map_err(|e| usage(e.to_string()))?;
    if clients.iter().any(|&c| c == 0 || c > 1024) {
        return Err(usage("--clients: each count must be 1..=1024".into()));
    }
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        return Err(usage("--duration: must be in (0, 3600] seconds".into()));
    }
    if !(1..=9).contains(&args.nodes) {
        return Err(usage("--nodes: must be 1..=9".into()));
    }
    let workload: Arc<dyn Workload> =
        Arc::from(faultline_workloads::by_name(&args.workload).map_err(usage)?);
    let mut systems = Vec::new();
    for d in &dbs {
        let mut db = Db::resolve(d).map_err(|e| usage(e.to_string()))?;
        if db.name() == "faultline-node" {
            db.program = args.node_bin.clone();
        } else if db.name() == "etcd" {
            db.program = args.etcd_bin.clone();
        }
        if matches!(db.spec.client.protocol.as_str(), "etcd" | "etcd-grpc") {
            let wanted = args.etcd_client.protocol();
            if let Some(why) = protocol::not_built(wanted) {
                return Err(usage(format!(
                    "--etcd-client grpc: {why}; or measure etcd through its JSON gateway \
                     with --etcd-client gateway"
                )));
            }
            db.spec.client.protocol = wanted.to_string();
        }
        systems.push(Arc::new(db));
    }
    for db in &systems {
        let facts = DURABILITY
            .iter()
            .find(|(n, _)| *n == db.name())
            .map_or("not described", |(_, f)| *f);
        println!("{} fsync and batching: {facts}", db.name());
    }
    let base = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("faultline-bench-{}", std::process::id())),
    };
    crate::supervisor::install_panic_hook();
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut all = Vec::new();
    for db in &systems {
        let dir = base.join(db.name());
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = ClusterConfig {
            nodes: args.nodes,
            spares: 0,
            client_links: false,
            read_mode: ReadMode::Linearizable,
            seed: args.seed,
            direct: true,
            clocks: false,
            disks: false,
        };
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let figures = rt.block_on(async {
            let cluster = Cluster::start(
                db.clone(),
                &cfg,
                &ClusterPaths::under(&dir),
                cancel.clone(),
                &tracker,
            )
            .await?;
            let leader = cluster.wait_ready(Duration::from_secs(30)).await?;
            let client = &db.spec.client.protocol;
            eprintln!(
                "{}: {} nodes up{}; client {client}: {}",
                db.name(),
                args.nodes,
                leader.map(|l| format!(", leader {l}")).unwrap_or_default(),
                client_note(client)
            );
            let mut out = Vec::new();
            for &c in &clients {
                let f = measure(
                    &cluster,
                    workload.clone(),
                    &dir,
                    c,
                    Duration::from_secs_f64(args.duration),
                    args.seed,
                )
                .await?;
                println!("{}", row(&f));
                out.push(f);
            }
            cluster.supervisor.kill_all();
            Ok::<_, anyhow::Error>(out)
        });
        cancel.cancel();
        all.extend(figures?);
    }
    println!("{}", ratios(&all));
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&base);
    }
    Ok(())
}

/// One table row.
pub fn row(f: &Figures) -> String {
    format!(
        "{:<10} clients {:>4}: {:>9.1} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  (ok {} fail {} info {})",
        f.db,
        f.clients,
        f.ops_per_sec,
        f.quantiles_ms.0,
        f.quantiles_ms.1,
        f.quantiles_ms.2,
        f.counts.0,
        f.counts.1,
        f.counts.2
    )
}

/// faultline/etcd throughput and p99 ratios per client count measured for both.
pub fn ratios(all: &[Figures]) -> String {
    let mut out = Vec::new();
    for f in all.iter().filter(|f| f.db == "faultline-node") {
        if let Some(e) = all
            .iter()
            .find(|e| e.db == "etcd" && e.clients == f.clients)
        {
            out.push(format!(
                "faultline/etcd at {} clients: throughput {:.2}x, p99 {:.2}x",
                f.clients,
                f.ops_per_sec / e.ops_per_sec.max(f64::MIN_POSITIVE),
                f.quantiles_ms.1 / e.quantiles_ms.1.max(f64::MIN_POSITIVE)
            ));
        }
    }
    out.join("\n")
}

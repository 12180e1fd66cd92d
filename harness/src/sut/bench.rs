//! `faultline bench`: the same closed-loop client code against each system
//! under test, with no faults and no proxies, at several client counts;
//! throughput and HdrHistogram latency quantiles per system and client
//! count, and the ratio faultline/etcd.
//!
//! Also the plain launcher the benchmark and the etcd tests use: a cluster
//! of any [`Db`] whose nodes dial each other directly.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use faultline_workloads::{Reply, Workload};
use tokio::time::Instant;

use super::etcd::{EtcdDb, find_etcd};
use super::faultline::FaultlineDb;
use super::{Attempt, ClusterPlan, Db, KNOWN, Target};
use crate::supervisor::{NodeProgram, NodeSpec, Supervisor};

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
}

/// A cluster of any [`Db`], nodes dialling each other directly. Dropping it
/// kills every node.
pub struct Launched {
    /// The processes.
    pub supervisor: Supervisor,
    /// The nodes as clients address them.
    pub targets: Vec<Target>,
    /// Node ids in order.
    pub ids: Vec<String>,
}

/// Reserves `n` distinct loopback ports for the nodes.
fn ports(n: usize) -> Result<Vec<std::net::SocketAddr>> {
    faultline_node::ports::reserve_loopback_ports(n).context("cannot reserve loopback ports")
}

/// Starts `nodes` nodes of `db` with data and logs under `dir`.
pub fn launch(db: &dyn Db, nodes: usize, dir: &Path) -> Result<Launched> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let addrs = ports(2 * nodes)?;
    let (client_addrs, peer_addrs) = addrs.split_at(nodes);
    let ids: Vec<String> = (1..=nodes).map(|i| format!("n{i}")).collect();
    let client_urls: Vec<String> = client_addrs.iter().map(|a| format!("http://{a}")).collect();
    let plan = ClusterPlan {
        ids: ids.clone(),
        client_addrs: client_addrs.to_vec(),
        client_urls: client_urls.clone(),
        peer_addrs: peer_addrs.to_vec(),
        dial: (0..nodes)
            .map(|i| {
                (0..nodes)
                    .map(|j| (i != j).then_some(peer_addrs[j]))
                    .collect()
            })
            .collect(),
        data_dirs: ids.iter().map(|id| dir.join(id)).collect(),
    };
    let specs = (0..nodes)
        .map(|i| NodeSpec {
            id: ids[i].clone(),
            args: db.node_args(&plan, i),
            log_path: dir.join(format!("{}.log", ids[i])),
        })
        .collect();
    let supervisor = Supervisor::new(db.program(), specs);
    supervisor.start_all()?;
    let targets = ids
        .iter()
        .zip(&client_urls)
        .map(|(id, url)| Target {
            id: id.clone(),
            client_url: url.clone(),
            direct_url: url.clone(),
        })
        .collect();
    Ok(Launched {
        supervisor,
        targets,
        ids,
    })
}

/// Waits until some node says it leads and a majority name it; its id.
pub async fn wait_for_leader(
    db: &dyn Db,
    http: &reqwest::Client,
    c: &Launched,
    within: Duration,
) -> Result<String> {
    let deadline = Instant::now() + within;
    loop {
        if let Some((id, what)) = c.supervisor.poll_exits().into_iter().next() {
            bail!("{} node {id} {what} before a leader was elected", db.name());
        }
        let mut statuses = Vec::new();
        for t in &c.targets {
            statuses.push(db.status(http, t, &c.ids).await);
        }
        let leader = statuses
            .iter()
            .flatten()
            .filter(|s| s.role == "leader")
            .max_by_key(|s| s.term);
        if let Some(l) = leader {
            let agree = statuses
                .iter()
                .flatten()
                .filter(|s| s.leader.as_deref() == Some(l.id.as_str()))
                .count();
            if agree > c.targets.len() / 2 {
                return Ok(l.id.clone());
            }
        }
        if Instant::now() >= deadline {
            bail!("{}: no leader within {:?}", db.name(), within);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One operation to its end: attempts on `node`, moving to the hinted (or
/// next) node on a definite refusal, until `timeout`.
pub async fn run_op(
    db: &dyn Db,
    http: &reqwest::Client,
    workload: &dyn Workload,
    targets: &[Target],
    node: &mut usize,
    op: &faultline_workloads::OpSpec,
    timeout: Duration,
) -> Reply {
    let deadline = Instant::now() + timeout;
    let mut why = String::from("no attempt");
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Reply::Fail(serde_json::Value::Null, why);
        }
        match db
            .attempt(http, workload, &targets[*node], op, remaining)
            .await
        {
            Attempt::Done(r) => return r,
            Attempt::Elsewhere { hint, why: w } => {
                why = w;
                let hinted = hint.and_then(|h| targets.iter().position(|t| t.id == h));
                match hinted {
                    Some(i) if i != *node => *node = i,
                    _ => {
                        *node = (*node + 1) % targets.len();
                        let pause = (Instant::now() + Duration::from_millis(20)).min(deadline);
                        tokio::time::sleep_until(pause).await;
                    }
                }
            }
        }
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

/// Runs `clients` closed-loop workers for `duration` against a running cluster.
pub async fn measure(
    db: Arc<dyn Db>,
    workload: Arc<dyn Workload>,
    targets: Arc<Vec<Target>>,
    clients: usize,
    duration: Duration,
    seed: u64,
) -> Result<Figures> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients.max(1))
        .build()
        .context("cannot build the HTTP client")?;
    let end = Instant::now() + duration;
    let mut tasks = Vec::with_capacity(clients);
    for w in 0..clients {
        let (db, workload, targets, http) =
            (db.clone(), workload.clone(), targets.clone(), http.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .expect("static histogram bounds are valid");
            let mut counts = (0u64, 0u64, 0u64);
            let mut generator = workload.generator(seed, w, clients);
            let mut node = w % targets.len();
            while Instant::now() < end {
                let op = generator.next_op();
                let started = Instant::now();
                let reply = run_op(
                    &*db,
                    &http,
                    &*workload,
                    &targets,
                    &mut node,
                    &op,
                    Duration::from_secs(5),
                )
                .await;
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
            (hist, counts)
        }));
    }
    let started = Instant::now();
    let mut hist =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram")?;
    let mut counts = (0u64, 0u64, 0u64);
    for t in tasks {
        let (h, c) = t.await.context("a bench worker panicked")?;
        hist.add(&h).context("merging histograms")?;
        counts = (counts.0 + c.0, counts.1 + c.1, counts.2 + c.2);
    }
    let secs = started.elapsed().as_secs_f64().max(duration.as_secs_f64());
    let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
    Ok(Figures {
        db: db.name().to_string(),
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

/// Builds the named system.
pub fn make_db(
    name: &str,
    etcd_bin: Option<&Path>,
    node_bin: Option<&Path>,
) -> Result<Arc<dyn Db>> {
    match name {
        "faultline" => Ok(Arc::new(FaultlineDb {
            program: match node_bin {
                Some(p) => NodeProgram::external(p)?,
                None => NodeProgram::current_exe()?,
            },
            extra_args: Vec::new(),
            per_node_args: Default::default(),
        })),
        "etcd" => Ok(Arc::new(EtcdDb::new(find_etcd(etcd_bin)?, false))),
        other => Err(crate::run::UsageError(format!(
            "unknown --db `{other}`; known: {}",
            KNOWN.join(", ")
        ))
        .into()),
    }
}

/// `faultline bench`: measures and prints the table.
pub fn run(args: &DbBenchArgs) -> Result<()> {
    let usage = |m: String| anyhow::Error::from(crate::run::UsageError(m));
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
        systems.push(make_db(
            d,
            args.etcd_bin.as_deref(),
            args.node_bin.as_deref(),
        )?);
    }
    let base = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("faultline-bench-{}", std::process::id())),
    };
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut all = Vec::new();
    for db in &systems {
        let dir = base.join(db.name());
        let _ = std::fs::remove_dir_all(&dir);
        let cluster = launch(&**db, args.nodes, &dir)?;
        let http = reqwest::Client::new();
        let leader = rt.block_on(wait_for_leader(
            &**db,
            &http,
            &cluster,
            Duration::from_secs(30),
        ))?;
        eprintln!("{}: {} nodes up, leader {leader}", db.name(), args.nodes);
        let targets = Arc::new(cluster.targets.clone());
        for &c in &clients {
            let f = rt.block_on(measure(
                db.clone(),
                workload.clone(),
                targets.clone(),
                c,
                Duration::from_secs_f64(args.duration),
                args.seed,
            ))?;
            println!("{}", row(&f));
            all.push(f);
        }
        drop(cluster);
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
    for f in all.iter().filter(|f| f.db == "faultline") {
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

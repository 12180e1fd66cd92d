//! `faultline run`: start a cluster behind proxies, drive clients while the
//! nemesis injects faults, heal, wait, do final reads, check the history and
//! store everything under `store/<workload>/<timestamp>/`.
//!
//! Exit codes: 0 valid, 1 invalid, 2 unknown (including a run interrupted
//! by Ctrl-C whose partial history shows no violation), 3 harness or cluster
//! error, 4 bad arguments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use faultline_history::{Event, EventType, Process};
use faultline_workloads::Workload;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::{self, ClientCtx, Counts, Pacer};
use crate::cluster::{Cluster, ClusterConfig};
use crate::nemesis::{Choices, Fault, NemesisKind, PartitionShape, Scheduler, Target, View};
use crate::recorder::{Entry, Recorder};
use crate::supervisor::NodeProgram;
use crate::verdict::{self, CheckReport, Verdict};

/// Exit code: the history is valid.
pub const EXIT_VALID: u8 = 0;
/// Exit code: the history is invalid.
pub const EXIT_INVALID: u8 = 1;
/// Exit code: validity unknown (checker budget, or an interrupted run).
pub const EXIT_UNKNOWN: u8 = 2;
/// Exit code: the harness or the cluster failed.
pub const EXIT_ERROR: u8 = 3;
/// Exit code: bad arguments.
pub const EXIT_USAGE: u8 = 4;

/// Raw `faultline run` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Workload: register, kv, set, counter or append (descriptions: `faultline list`).
    #[arg(long, short = 'w', default_value = "register")]
    pub workload: String,
    /// Number of nodes (1 to 15).
    #[arg(long, short = 'n', default_value_t = 5)]
    pub nodes: usize,
    /// Seconds of client traffic and faults (1 to 86400).
    #[arg(long, default_value_t = 20.0)]
    pub time_limit: f64,
    /// Client workers: a number, or `Kn` for K × nodes (e.g. `2n`).
    #[arg(long, default_value = "2n")]
    pub concurrency: String,
    /// Total operations per second over all workers; 0 = as fast as possible.
    #[arg(long, default_value_t = 100.0, allow_negative_numbers = true)]
    pub rate: f64,
    /// Time limit of one operation, in milliseconds; past it the op is `info`.
    #[arg(long, default_value_t = 1000)]
    pub op_timeout_ms: u64,
    /// Time limit of one attempt, in milliseconds (default: the op timeout).
    /// Shorter: an attempt that times out or loses its connection after
    /// sending is resent with the same request id to the next node while the
    /// op's time lasts (the node must de-duplicate it).
    #[arg(long, value_name = "MS")]
    pub attempt_timeout_ms: Option<u64>,
    /// Each worker sends every op to its own node first (worker i → node
    /// i mod n) and follows `not_leader` only within that op, as Jepsen's
    /// clients do; by default a worker stays with the node that last answered.
    #[arg(long)]
    pub pin_clients: bool,
    /// Faults: a comma list of partition, kill, pause, delay, loss; or all; or none.
    /// Partition, kill and pause may name what they draw: `partition:isolate-leader+halves`,
    /// `kill:majority+all`, `pause:leader` (the variants: `faultline list`).
    #[arg(long, default_value = "partition,kill,pause")]
    pub nemesis: String,
    /// Seconds between nemesis actions.
    #[arg(long, default_value_t = 3.0)]
    pub nemesis_interval: f64,
    /// Seconds of calm after healing, before the final reads.
    #[arg(long, default_value_t = 2.0)]
    pub quiet_period: f64,
    /// Seed of every random choice (default: from the clock, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Directory of stored runs.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// The node executable (default: this program's hidden `node` mode).
    #[arg(long, value_name = "PATH")]
    pub node_bin: Option<PathBuf>,
    /// Switch on deliberate node/Raft mistakes (test-only): `NAME[,NAME]` on every
    /// node, or `nK:NAME` on node nK only (repeatable; `--bug` is an alias);
    /// names: `faultline node --list-bugs`.
    #[arg(long = "node-bug", alias = "bug", value_name = "[nK:]NAME[,...]")]
    pub bugs: Vec<String>,
    /// Pass an extra flag to every node (repeat), e.g. `--node-arg=--heartbeat-ms=20`.
    #[arg(long = "node-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub node_args: Vec<String>,
    /// Also put a proxy on every client→node link.
    #[arg(long)]
    pub client_proxies: bool,
    /// Seconds to wait for the first leader.
    #[arg(long, default_value_t = 20.0)]
    pub leader_timeout: f64,
    /// The system under test: faultline (faultline-node) or etcd.
    #[arg(long, default_value = "faultline")]
    pub db: String,
    /// The etcd executable for `--db etcd` (default: `etcd` on PATH).
    #[arg(long, value_name = "PATH")]
    pub etcd_bin: Option<PathBuf>,
    /// With `--db etcd`: serializable (local, possibly stale) reads instead of linearizable ones.
    #[arg(long)]
    pub serializable_reads: bool,
}

/// A validated run configuration; written to `config.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// Workload name.
    pub workload: String,
    /// Nodes.
    pub nodes: usize,
    /// Seconds of traffic.
    pub time_limit_s: f64,
    /// Workers.
    pub concurrency: usize,
    /// As typed (`2n`).
    pub concurrency_arg: String,
    /// Ops/s in total (0 = unpaced).
    pub rate: f64,
    /// Per-op timeout.
    pub op_timeout_ms: u64,
    /// Per-attempt timeout (equal to `op_timeout_ms`: no resends).
    pub attempt_timeout_ms: u64,
    /// Workers start every op at their own node.
    pub pin_clients: bool,
    /// Fault kinds.
    pub nemesis: Vec<NemesisKind>,
    /// The partition shapes and kill/pause targets they draw from.
    pub nemesis_choices: Choices,
    /// Seconds between faults.
    pub nemesis_interval_s: f64,
    /// Seconds of calm before final reads.
    pub quiet_period_s: f64,
    /// The seed.
    pub seed: u64,
    /// The store directory.
    pub store: PathBuf,
    /// How nodes are run.
    pub node_program: NodeProgram,
    /// Extra node flags (bugs on every node included).
    pub node_args: Vec<String>,
    /// Mistakes switched on in every node (`--node-bug NAME`).
    pub node_bugs: Vec<String>,
    /// Mistakes switched on in one node only (`--node-bug nK:NAME`), by node id.
    pub node_bugs_per_node: BTreeMap<String, Vec<String>>,
    /// Client proxies on.
    pub client_proxies: bool,
    /// Seconds to wait for the first leader.
    pub leader_timeout_s: f64,
    /// The system under test (`faultline` or `etcd`).
    pub db: String,
    /// The etcd executable, for `--db etcd`.
    pub etcd_bin: Option<PathBuf>,
    /// etcd reads are serializable rather than linearizable.
    pub serializable_reads: bool,
}

/// A bad argument, reported with exit code 4.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// Parses `--concurrency`: `N` or `Kn`.
pub fn parse_concurrency(s: &str, nodes: usize) -> Result<usize, String> {
    let s = s.trim();
    let n = if let Some(k) = s.strip_suffix('n') {
        let k: usize = if k.is_empty() {
            1
        } else {
            k.parse()
                .map_err(|_| format!("--concurrency {s}: expected a number or Kn such as 2n"))?
        };
        k * nodes
    } else {
        s.parse()
            .map_err(|_| format!("--concurrency {s}: expected a number or Kn such as 2n"))?
    };
    if !(1..=1000).contains(&n) {
        return Err(format!(
            "--concurrency {s} means {n} workers; allowed: 1 to 1000"
        ));
    }
    Ok(n)
}

/// Mistakes of single nodes, by node id.
pub type PerNodeBugs = BTreeMap<String, Vec<String>>;

/// Splits `--node-bug` values (`NAME`, `nK:NAME`, comma lists) into the
/// mistakes of every node and those of single nodes; node ids must exist.
pub fn parse_node_bugs(values: &[String], nodes: usize) -> Result<(Vec<String>, PerNodeBugs)> {
    let mut all = Vec::new();
    let mut per_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for item in values.iter().flat_map(|v| v.split(',')) {
        let item = item.trim();
        if item.is_empty() {
            return Err(usage("--node-bug: empty name in the list".to_string()));
        }
        match item.split_once(':') {
            Some((id, name)) => {
                let ok = id
                    .strip_prefix('n')
                    .and_then(|k| k.parse::<usize>().ok())
                    .is_some_and(|k| (1..=nodes).contains(&k));
                if !ok || name.is_empty() {
                    return Err(usage(format!(
                        "--node-bug {item}: expected nK:NAME with K from 1 to {nodes}"
                    )));
                }
                let list = per_node.entry(id.to_string()).or_default();
                if !list.iter().any(|b| b == name) {
                    list.push(name.to_string());
                }
            }
            None => {
                if !all.iter().any(|b| b == item) {
                    all.push(item.to_string());
                }
            }
        }
    }
    Ok((all, per_node))
}

impl RunArgs {
    /// Checks bounds and names; errors are [`UsageError`]s.
    pub fn validate(&self) -> Result<(RunConfig, Box<dyn Workload>)> {
        let workload = faultline_workloads::by_name(&self.workload).map_err(usage)?;
        if !(1..=15).contains(&self.nodes) {
            return Err(usage(format!("--nodes {}: allowed 1 to 15", self.nodes)));
        }
        if !(self.time_limit.is_finite() && (1.0..=86_400.0).contains(&self.time_limit)) {
            return Err(usage(format!(
                "--time-limit {}: allowed 1 to 86400 seconds",
                self.time_limit
            )));
        }
        if !(self.rate.is_finite() && (0.0..=1_000_000.0).contains(&self.rate)) {
            return Err(usage(format!(
                "--rate {}: allowed 0 (as fast as possible) to 1000000 ops/s",
                self.rate
            )));
        }
        let concurrency = parse_concurrency(&self.concurrency, self.nodes).map_err(usage)?;
        if !(10..=600_000).contains(&self.op_timeout_ms) {
            return Err(usage(format!(
                "--op-timeout-ms {}: allowed 10 to 600000",
                self.op_timeout_ms
            )));
        }
        let attempt_timeout_ms = self.attempt_timeout_ms.unwrap_or(self.op_timeout_ms);
        if !(10..=self.op_timeout_ms).contains(&attempt_timeout_ms) {
            return Err(usage(format!(
                "--attempt-timeout-ms {attempt_timeout_ms}: allowed 10 to --op-timeout-ms ({})",
                self.op_timeout_ms
            )));
        }
        if attempt_timeout_ms < self.op_timeout_ms && self.db != "faultline" {
            return Err(usage(format!(
                "--attempt-timeout-ms resends requests, which needs the request \
                 de-duplication that --db {} lacks",
                self.db
            )));
        }
        let (nemesis, nemesis_choices) = NemesisKind::parse_spec(&self.nemesis).map_err(usage)?;
        if !(self.nemesis_interval.is_finite() && (0.1..=3600.0).contains(&self.nemesis_interval)) {
            return Err(usage(format!(
                "--nemesis-interval {}: allowed 0.1 to 3600 seconds",
                self.nemesis_interval
            )));
        }
        if !(self.quiet_period.is_finite() && (0.0..=3600.0).contains(&self.quiet_period)) {
            return Err(usage(format!(
                "--quiet-period {}: allowed 0 to 3600 seconds",
                self.quiet_period
            )));
        }
        if !(self.leader_timeout.is_finite() && (1.0..=600.0).contains(&self.leader_timeout)) {
            return Err(usage(format!(
                "--leader-timeout {}: allowed 1 to 600 seconds",
                self.leader_timeout
            )));
        }
        if !crate::sut::KNOWN.contains(&self.db.as_str()) {
            return Err(usage(format!(
                "unknown --db `{}`; known: {}",
                self.db,
                crate::sut::KNOWN.join(", ")
            )));
        }
        let etcd_bin = if self.db == "etcd" {
            if !self.bugs.is_empty() || !self.node_args.is_empty() || self.node_bin.is_some() {
                return Err(usage(
                    "--node-bug, --node-arg and --node-bin are for --db faultline".to_string(),
                ));
            }
            Some(
                crate::sut::etcd::find_etcd(self.etcd_bin.as_deref())
                    .map_err(|e| usage(format!("{e:#}")))?,
            )
        } else {
            if self.serializable_reads || self.etcd_bin.is_some() {
                return Err(usage(
                    "--serializable-reads and --etcd-bin are for --db etcd".to_string(),
                ));
            }
            None
        };
        let node_program = match &self.node_bin {
            Some(p) => NodeProgram::external(p).map_err(|e| usage(format!("{e:#}")))?,
            None => NodeProgram::current_exe()?,
        };
        let (node_bugs, node_bugs_per_node) = parse_node_bugs(&self.bugs, self.nodes)?;
        if self.node_bin.is_none() {
            // The built-in node's bugs are known here: refuse a typo now,
            // not as a node that dies at start.
            let known: Vec<&str> = faultline_node::config::bug_list()
                .into_iter()
                .map(|(name, _)| name)
                .collect();
            if let Some(b) = node_bugs
                .iter()
                .chain(node_bugs_per_node.values().flatten())
                .find(|b| !known.contains(&b.as_str()))
            {
                return Err(usage(format!(
                    "unknown bug `{b}`; known: {}",
                    known.join(", ")
                )));
            }
        }
        let mut node_args = Vec::new();
        for b in &node_bugs {
            node_args.push("--bug".to_string());
            node_args.push(b.clone());
        }
        node_args.extend(self.node_args.iter().cloned());
        let seed = self.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
                % 1_000_000_000
        });
        Ok((
            RunConfig {
                workload: workload.name().to_string(),
                nodes: self.nodes,
                time_limit_s: self.time_limit,
                concurrency,
                concurrency_arg: self.concurrency.clone(),
                rate: self.rate,
                op_timeout_ms: self.op_timeout_ms,
                attempt_timeout_ms,
                pin_clients: self.pin_clients,
                nemesis,
                nemesis_choices,
                nemesis_interval_s: self.nemesis_interval,
                quiet_period_s: self.quiet_period,
                seed,
                store: self.store.clone(),
                node_program,
                db: self.db.clone(),
                etcd_bin,
                serializable_reads: self.serializable_reads,
                node_args,
                node_bugs,
                node_bugs_per_node,
                client_proxies: self.client_proxies,
                leader_timeout_s: self.leader_timeout,
            },
            workload,
        ))
    }
}

/// `YYYYMMDDTHHMMSS.mmmZ` in UTC, from the system clock (no time crate needed).
fn timestamp() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Creates `store/<workload>/<timestamp>/` (unique) and its `nodes/`.
fn create_run_dir(store: &Path, workload: &str) -> Result<PathBuf> {
    let base = store.join(workload);
    std::fs::create_dir_all(&base)
        .with_context(|| format!("cannot create the store {}", base.display()))?;
    let ts = timestamp();
    for k in 0..100 {
        let name = if k == 0 {
            ts.clone()
        } else {
            format!("{ts}-{k}")
        };
        let dir = base.join(&name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                std::fs::create_dir(dir.join("nodes"))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
    bail!(
        "cannot find a free run directory name under {}",
        base.display()
    )
}

/// Points `link` at `target` (relative), replacing it atomically.
fn relink(link: &Path, target: &Path) -> Result<()> {
    let tmp = link.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("cannot create link {}", tmp.display()))?;
    std::fs::rename(&tmp, link).with_context(|| format!("cannot update {}", link.display()))?;
    Ok(())
}

fn update_latest(store: &Path, run_dir: &Path) -> Result<()> {
    let ws = run_dir.parent().context("run dir has no parent")?;
    let wname = ws.file_name().context("no workload dir")?;
    let rname = run_dir.file_name().context("no run name")?;
    relink(&store.join("latest"), &Path::new(wname).join(rname))?;
    relink(&ws.join("latest"), Path::new(rname))?;
    Ok(())
}

/// One line of `nemesis.jsonl`.
#[derive(Debug, Serialize)]
struct NemesisLine<'a> {
    /// Nanoseconds since the run started (when the action began).
    time: u64,
    /// Nanoseconds since the run started (when the action was carried out).
    done: u64,
    fault: &'a Fault,
    /// The kind of fault this action starts, if any.
    starts: Option<NemesisKind>,
    /// The kind of fault this action ends, if any.
    ends: Option<NemesisKind>,
    /// What was done, or the error.
    result: String,
}

/// The live state a run shares between its tasks.
struct Live {
    cluster: Arc<Cluster>,
    recorder: Arc<Recorder>,
    nemesis_log: std::sync::Mutex<std::fs::File>,
    active: std::sync::Mutex<Vec<NemesisKind>>,
    fault_counts: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    node_exits: std::sync::Mutex<Vec<Value>>,
}

impl Live {
    /// Carries out a fault, recording its start and end in the history and
    /// a line in `nemesis.jsonl`.
    fn apply(&self, fault: &Fault, starts: Option<NemesisKind>, ends: Option<NemesisKind>) {
        let inv = self.recorder.record(Entry {
            process: Process::Nemesis,
            kind: EventType::Invoke,
            f: fault.name().to_string(),
            key: None,
            value: serde_json::to_value(fault).unwrap_or(Value::Null),
            error: None,
            node: None,
        });
        let (result, error) = match self.cluster.apply(fault) {
            Ok(r) => (r, None),
            Err(e) => (format!("error: {e:#}"), Some(format!("{e:#}"))),
        };
        let done = self.recorder.record(Entry {
            process: Process::Nemesis,
            kind: EventType::Info,
            f: fault.name().to_string(),
            key: None,
            value: json!(result),
            error,
            node: None,
        });
        let line = NemesisLine {
            time: inv.time,
            done: done.time,
            fault,
            starts,
            ends,
            result,
        };
        if let Ok(mut text) = serde_json::to_vec(&line) {
            text.push(b'\n');
            use std::io::Write as _;
            // One write per line, so a crash leaves whole lines. The history
            // has the same facts, so a failed write here is not fatal.
            let _ = lock(&self.nemesis_log).write_all(&text);
        }
        *lock(&self.fault_counts)
            .entry(fault.name().to_string())
            .or_default() += 1;
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a finished (or interrupted) run produced.
pub struct RunOutcome {
    /// The run's folder.
    pub dir: PathBuf,
    /// The exit code to return.
    pub exit: u8,
}

/// Runs `faultline run` to the end; returns the exit code. Usage errors come
/// back as `Err` holding a [`UsageError`].
pub fn run(args: &RunArgs) -> Result<RunOutcome> {
    let (cfg, workload) = args.validate()?;
    let workload: Arc<dyn Workload> = Arc::from(workload);
    crate::supervisor::install_panic_hook();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(cfg, workload))
}

async fn run_async(cfg: RunConfig, workload: Arc<dyn Workload>) -> Result<RunOutcome> {
    let started_wall = SystemTime::now();
    let t0 = Instant::now();
    let dir = create_run_dir(&cfg.store, &cfg.workload)?;
    update_latest(&cfg.store, &dir)?;
    let config_json = json!({
        "settings": &cfg,
        "seed": cfg.seed,
        "versions": {
            "faultline": env!("CARGO_PKG_VERSION"),
            "history_format": "faultline-jsonl-1",
        },
        "started_unix_ms": started_wall.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
        "command_line": std::env::args().collect::<Vec<_>>(),
    });
    write_json(&dir.join("config.json"), &config_json)?;
    eprintln!(
        "faultline: {} on {} nodes for {} s, nemesis {}, seed {} → {}",
        cfg.workload,
        cfg.nodes,
        cfg.time_limit_s,
        nemesis_names(&cfg.nemesis),
        cfg.seed,
        dir.display()
    );

    // Ctrl-C and SIGTERM stop the run in order; a second one kills at once.
    let interrupt = CancellationToken::new();
    spawn_signal_watch(interrupt.clone());

    let recorder = Arc::new(Recorder::create(&dir.join("history.jsonl"), t0.into_std())?);
    let nemesis_path = dir.join("nemesis.jsonl");
    let nemesis_log = std::fs::File::create(&nemesis_path)
        .with_context(|| format!("cannot create {}", nemesis_path.display()))?;
    let proxies_cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let cluster_cfg = ClusterConfig {
        nodes: cfg.nodes,
        program: cfg.node_program.clone(),
        client_proxies: cfg.client_proxies,
        node_args: cfg.node_args.clone(),
        seed: cfg.seed,
    };
    let result = async {
        let db: Arc<dyn crate::sut::Db> = match &cfg.etcd_bin {
            Some(exe) => Arc::new(crate::sut::etcd::EtcdDb::new(
                exe.clone(),
                cfg.serializable_reads,
            )),
            None => Arc::new(crate::sut::faultline::FaultlineDb {
                program: cfg.node_program.clone(),
                extra_args: cfg.node_args.clone(),
                per_node_args: cfg
                    .node_bugs_per_node
                    .iter()
                    .map(|(id, bugs)| {
                        let flags = bugs.iter().flat_map(|b| ["--bug".to_string(), b.clone()]);
                        (id.clone(), flags.collect())
                    })
                    .collect(),
            }),
        };
        let cluster = Arc::new(
            Cluster::start_db(
                db,
                &cluster_cfg,
                &dir.join("nodes"),
                proxies_cancel.clone(),
                &tracker,
            )
            .await?,
        );
        let live = Arc::new(Live {
            cluster: cluster.clone(),
            recorder: recorder.clone(),
            nemesis_log: std::sync::Mutex::new(nemesis_log),
            active: std::sync::Mutex::new(Vec::new()),
            fault_counts: Default::default(),
            node_exits: Default::default(),
        });
        let leader = tokio::select! {
            _ = interrupt.cancelled() => None,
            l = cluster.wait_for_leader(Duration::from_secs_f64(cfg.leader_timeout_s)) => Some(l?),
        };
        let phase = drive(&cfg, workload.clone(), live.clone(), &interrupt, leader).await;
        // Whatever happened, no node outlives this point.
        cluster.supervisor.kill_all();
        let exits = lock(&live.node_exits).clone();
        phase.map(|p| (p, exits))
    }
    .await;
    proxies_cancel.cancel();
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
    let history_ok = recorder.finish();

    let wall = t0.elapsed();
    let events = recorder.events();
    let (phase, node_exits, harness_error) = match result {
        Ok((p, exits)) => (Some(p), exits, None),
        Err(e) => (None, Vec::new(), Some(format!("{e:#}"))),
    };
    let interrupted = interrupt.is_cancelled();
    let report = verdict::check(workload.as_ref(), &events);
    let mut exit = match (&harness_error, &report.verdict) {
        (Some(_), Verdict::Invalid) => EXIT_INVALID,
        (Some(_), _) => EXIT_ERROR,
        (None, Verdict::Valid) if interrupted => EXIT_UNKNOWN,
        (None, Verdict::Valid) => EXIT_VALID,
        (None, Verdict::Invalid) => EXIT_INVALID,
        (None, Verdict::Unknown) => EXIT_UNKNOWN,
    };
    if let Err(e) = &history_ok {
        eprintln!("faultline: {e:#}");
        if exit == EXIT_VALID {
            exit = EXIT_ERROR;
        }
    }
    let stats = Stats::of(&events, phase.as_ref());
    let results = json!({
        "verdict": report.verdict.name(),
        "exit_code": exit,
        "interrupted": interrupted,
        "harness_error": harness_error,
        "seed": cfg.seed,
        "checker": report.detail,
        "ops": stats.ops,
        "latency_ms": stats.latency,
        "throughput_ok_per_s": stats.ok_per_s,
        "faults": phase.as_ref().map(|p| p.faults.clone()),
        "node_exits_unasked": node_exits,
        "wall_time_s": wall.as_secs_f64(),
    });
    write_json(&dir.join("results.json"), &results)?;
    // The report reads what was just stored; a failure to draw it must not
    // hide the verdict, so it becomes a line of the summary instead.
    let report_lines = match crate::report::write_report(&dir) {
        Ok(summary) => summary.summary_lines(),
        Err(e) => vec![format!(
            "  report    not written: {e:#} (retry with `faultline report {}`)",
            dir.display()
        )],
    };
    print_summary(
        &cfg,
        &dir,
        &stats,
        &report,
        phase.as_ref(),
        interrupted,
        harness_error.as_deref(),
        exit,
        wall,
        &report_lines,
    );
    Ok(RunOutcome { dir, exit })
}

/// What the traffic phase measured.
struct Phase {
    /// Seconds of client traffic.
    traffic_s: f64,
    /// Latency of completed ok/fail ops, µs.
    latencies: hdrhistogram::Histogram<u64>,
    /// Faults carried out, by name.
    faults: std::collections::BTreeMap<String, u64>,
    /// Final reads that returned ok.
    final_reads_ok: usize,
    /// Final reads requested.
    final_reads: usize,
}

fn spawn_signal_watch(interrupt: CancellationToken) {
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
                interrupt.cancel();
            } else {
                crate::supervisor::kill_all_registered();
                std::process::exit(i32::from(EXIT_ERROR));
            }
        }
    });
}

/// Clients + nemesis + progress, then heal, quiet period and final reads.
async fn drive(
    cfg: &RunConfig,
    workload: Arc<dyn Workload>,
    live: Arc<Live>,
    interrupt: &CancellationToken,
    leader: Option<String>,
) -> Result<Phase> {
    let cluster = live.cluster.clone();
    let latencies = Arc::new(std::sync::Mutex::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
            .context("cannot build the latency histogram")?,
    ));
    let counts = Arc::new(Counts::default());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(cfg.concurrency)
        .tcp_nodelay(true)
        .build()
        .context("cannot build the HTTP client")?;
    let ctx = ClientCtx {
        workload: workload.clone(),
        recorder: live.recorder.clone(),
        nodes: cluster.nodes.clone(),
        http,
        op_timeout: Duration::from_millis(cfg.op_timeout_ms),
        attempt_timeout: Duration::from_millis(cfg.attempt_timeout_ms),
        pin_clients: cfg.pin_clients,
        pacer: Arc::new(Pacer::new(cfg.rate)),
        counts: counts.clone(),
        next_process: Arc::new(AtomicU64::new(cfg.concurrency as u64)),
        latencies: latencies.clone(),
        // faultline-node keeps its own client path (dedup headers).
        db: (cfg.db != "faultline").then(|| cluster.db()),
    };
    let mut traffic_s = 0.0;
    let mut final_reads_ok = 0;
    let final_ops = workload.final_reads(cfg.nodes);
    if let Some(leader) = leader {
        eprintln!(
            "faultline: leader {leader}; starting {} clients",
            cfg.concurrency
        );
        let traffic_start = Instant::now();
        let limit = Duration::from_secs_f64(cfg.time_limit_s);
        let stop_clients = CancellationToken::new();
        let stop_nemesis = CancellationToken::new();
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..cfg.concurrency {
            workers.spawn(client::worker(
                ctx.clone(),
                w,
                cfg.concurrency,
                cfg.seed,
                stop_clients.clone(),
            ));
        }
        let nemesis = tokio::spawn(nemesis_loop(
            live.clone(),
            cfg.seed,
            cfg.nemesis.clone(),
            cfg.nemesis_choices.clone(),
            Duration::from_secs_f64(cfg.nemesis_interval_s),
            stop_nemesis.clone(),
        ));
        let bar = progress_bar();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = interrupt.cancelled() => break,
                _ = tick.tick() => {}
            }
            for (id, what) in cluster.supervisor.poll_exits() {
                bar.suspend(|| eprintln!("faultline: node {id} {what}"));
                lock(&live.node_exits)
                    .push(json!({"node": id, "exit": what, "time": live.recorder.now_ns()}));
            }
            let elapsed = traffic_start.elapsed();
            let (ok, fail, info) = counts.snapshot();
            let active: Vec<&str> = lock(&live.active).iter().map(|k| k.name()).collect();
            bar.set_message(format!(
                "{:>5.1}/{} s  ok {ok}  fail {fail}  info {info}  faults: {}",
                elapsed.as_secs_f64(),
                cfg.time_limit_s,
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
        traffic_s = traffic_start.elapsed().as_secs_f64();
        stop_clients.cancel();
        stop_nemesis.cancel();
        bar.finish_and_clear();
        // In-flight ops end within their timeout; then every one is complete.
        while workers.join_next().await.is_some() {}
        let _ = nemesis.await;
        if !interrupt.is_cancelled() {
            // Heal everything, then let the cluster settle.
            if !cfg.nemesis.is_empty() {
                live.apply(&Fault::Clear, None, None);
            }
            lock(&live.active).clear();
            tokio::select! {
                _ = interrupt.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs_f64(cfg.quiet_period_s)) => {}
            }
        }
        if !interrupt.is_cancelled() {
            final_reads_ok = final_reads(&ctx, &final_ops, interrupt).await;
        }
    }
    let faults = lock(&live.fault_counts).clone();
    let latencies = lock(&latencies).clone();
    Ok(Phase {
        traffic_s,
        latencies,
        faults,
        final_reads_ok,
        final_reads: final_ops.len(),
    })
}

/// Each final read is retried (as a fresh process) until one succeeds or
/// ten seconds pass; every attempt is in the history.
async fn final_reads(
    ctx: &ClientCtx,
    ops: &[faultline_workloads::OpSpec],
    interrupt: &CancellationToken,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ok = 0;
    for (k, op) in ops.iter().enumerate() {
        loop {
            let process = ctx
                .next_process
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut s = client::session(process, k % ctx.nodes.len().max(1));
            let reply = client::invoke(ctx, &mut s, op).await;
            if matches!(reply, faultline_workloads::Reply::Ok(_)) {
                ok += 1;
                break;
            }
            if Instant::now() >= deadline || interrupt.is_cancelled() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    ok
}

async fn nemesis_loop(
    live: Arc<Live>,
    seed: u64,
    kinds: Vec<NemesisKind>,
    choices: Choices,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut sched = Scheduler::new(seed, &kinds, choices);
    if kinds.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let view = View {
            ids: live.cluster.ids(),
            leader: live.cluster.leader().await,
        };
        if stop.is_cancelled() {
            break;
        }
        let before: Vec<NemesisKind> = sched.active().to_vec();
        let Some(fault) = sched.next(&view) else {
            break;
        };
        let after = sched.active().to_vec();
        let starts = fault.starts();
        let ends = before.iter().find(|k| !after.contains(k)).copied();
        *lock(&live.active) = after;
        let l2 = live.clone();
        // Killing and starting processes blocks briefly; keep it off the
        // async workers.
        let _ = tokio::task::spawn_blocking(move || l2.apply(&fault, starts, ends)).await;
    }
    // End what is still active, so nemesis.jsonl pairs every start with an end.
    let active = sched.active().to_vec();
    for (k, fault) in sched.heal_all().into_iter().enumerate() {
        if fault == Fault::Clear {
            continue; // the run's own Clear follows
        }
        // heal_all ends the active kinds in order.
        let ends = active.get(k).copied();
        let l2 = live.clone();
        let _ = tokio::task::spawn_blocking(move || l2.apply(&fault, None, ends)).await;
    }
    lock(&live.active).clear();
}

fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(v)?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Counts and quantiles for results.json and the summary.
pub struct Stats {
    /// Op counts by function and completion type.
    pub ops: Value,
    /// Latency quantiles in ms.
    pub latency: Value,
    /// ok ops per second of traffic.
    pub ok_per_s: f64,
    ok: u64,
    fail: u64,
    info: u64,
    pending: u64,
}

impl Stats {
    fn of(events: &[Event], phase: Option<&Phase>) -> Stats {
        let mut by_f: std::collections::BTreeMap<String, [u64; 4]> = Default::default();
        let mut open: std::collections::HashMap<u64, String> = Default::default();
        let (mut ok, mut fail, mut info) = (0, 0, 0);
        for e in events {
            let Process::Client(p) = e.process else {
                continue;
            };
            let slot = by_f.entry(e.f.clone()).or_default();
            match e.kind {
                EventType::Invoke => {
                    open.insert(p, e.f.clone());
                }
                EventType::Ok => {
                    slot[0] += 1;
                    ok += 1;
                    open.remove(&p);
                }
                EventType::Fail => {
                    slot[1] += 1;
                    fail += 1;
                    open.remove(&p);
                }
                EventType::Info => {
                    slot[2] += 1;
                    info += 1;
                    open.remove(&p);
                }
            }
        }
        for f in open.values() {
            by_f.entry(f.clone()).or_default()[3] += 1;
        }
        let pending = open.len() as u64;
        let ops = json!({
            "total": ok + fail + info + pending,
            "ok": ok, "fail": fail, "info": info, "pending": pending,
            "by_f": by_f.iter().map(|(f, c)| (f.clone(), json!({"ok": c[0], "fail": c[1], "info": c[2], "pending": c[3]}))).collect::<serde_json::Map<_, _>>(),
        });
        let (latency, ok_per_s) = match phase {
            Some(p) if !p.latencies.is_empty() => {
                let h = &p.latencies;
                let q = |x: f64| h.value_at_quantile(x) as f64 / 1000.0;
                (
                    json!({"count": h.len(), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": h.max() as f64 / 1000.0}),
                    if p.traffic_s > 0.0 {
                        ok as f64 / p.traffic_s
                    } else {
                        0.0
                    },
                )
            }
            _ => (json!(null), 0.0),
        };
        Stats {
            ops,
            latency,
            ok_per_s,
            ok,
            fail,
            info,
            pending,
        }
    }
}

/// The text of `faultline list`: every workload and nemesis with one line each.
pub fn list() -> String {
    let mut out = String::from("workloads (--workload):\n");
    for w in faultline_workloads::all() {
        out.push_str(&format!("  {:<10} {}\n", w.name(), w.description()));
    }
    out.push_str("nemeses (--nemesis, comma-separated; also `all` and `none`):\n");
    for k in NemesisKind::ALL {
        out.push_str(&format!("  {:<10} {}\n", k.name(), k.description()));
    }
    let shapes: Vec<&str> = PartitionShape::ALL.iter().map(|s| s.name()).collect();
    let targets: Vec<&str> = Target::ALL.iter().map(|t| t.name()).collect();
    out.push_str(&format!(
        "variants (e.g. --nemesis partition:isolate-leader,kill:majority+all):\n  \
         partition:{}\n  kill:{} (pause: the same)\n",
        shapes.join("+"),
        targets.join("+")
    ));
    out
}

/// `partition,kill,pause`, or `none`.
fn nemesis_names(kinds: &[NemesisKind]) -> String {
    if kinds.is_empty() {
        return "none".to_string();
    }
    kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
}

#[allow(clippy::too_many_arguments)]
fn print_summary(
    cfg: &RunConfig,
    dir: &Path,
    stats: &Stats,
    report: &CheckReport,
    phase: Option<&Phase>,
    interrupted: bool,
    harness_error: Option<&str>,
    exit: u8,
    wall: Duration,
    report_lines: &[String],
) {
    println!();
    println!(
        "faultline run: {} · {} nodes · {} s · {} workers · rate {} · nemesis {} · seed {}",
        cfg.workload,
        cfg.nodes,
        cfg.time_limit_s,
        cfg.concurrency,
        if cfg.rate > 0.0 {
            format!("{}/s", cfg.rate)
        } else {
            "max".into()
        },
        nemesis_names(&cfg.nemesis),
        cfg.seed
    );
    println!(
        "  ops       {} ok · {} fail · {} info · {} pending   ({:.1} ok/s)",
        stats.ok, stats.fail, stats.info, stats.pending, stats.ok_per_s
    );
    if let Some(l) = stats.latency.as_object() {
        let g = |k: &str| l.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        println!(
            "  latency   p50 {:.1} ms · p99 {:.1} ms · max {:.1} ms  (ok and fail)",
            g("p50"),
            g("p99"),
            g("max")
        );
    }
    if let Some(p) = phase {
        let faults: Vec<String> = p.faults.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
        println!(
            "  faults    {}",
            if faults.is_empty() {
                "none".to_string()
            } else {
                faults.join(" · ")
            }
        );
        println!(
            "  final     {}/{} final reads ok",
            p.final_reads_ok, p.final_reads
        );
    }
    println!("  checker   {}", report.summary);
    println!(
        "  stored    {}  ({:.1} s wall)",
        dir.display(),
        wall.as_secs_f64()
    );
    for line in report_lines {
        println!("{line}");
    }
    if let Some(e) = harness_error {
        println!("  error     {e}");
    }
    let sentence = match (exit, interrupted) {
        (EXIT_VALID, _) => format!(
            "Valid: the {} operations of this history {}.",
            stats.ok + stats.fail + stats.info + stats.pending,
            report.holds
        ),
        (EXIT_INVALID, _) => format!(
            "Invalid: the history {}; see results.json for the witness.",
            report.broken
        ),
        (EXIT_UNKNOWN, true) => {
            "Unknown: the run was interrupted; what it recorded shows no violation.".to_string()
        }
        (EXIT_UNKNOWN, false) => format!(
            "Unknown: the checker could not decide ({}).",
            report.summary
        ),
        _ => "Error: the harness or the cluster failed; the verdict is unknown.".to_string(),
    };
    println!("{sentence} (exit {exit})");
}

/// `faultline analyze`: re-checks a stored run.
#[derive(Debug, Clone, clap::Args)]
pub struct AnalyzeArgs {
    /// A run folder, or `latest` (in --store).
    #[arg(default_value = "latest")]
    pub run: String,
    /// Directory of stored runs (for `latest`).
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
}

/// Re-checks `history.jsonl` of a stored run, rewrites `results.json`'s
/// verdict, prints the verdict; returns the exit code.
pub fn analyze(args: &AnalyzeArgs) -> Result<u8> {
    let dir = if args.run == "latest" {
        args.store.join("latest")
    } else {
        PathBuf::from(&args.run)
    };
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| {
        usage(format!(
            "{} is not a run folder: cannot read config.json: {e}",
            dir.display()
        ))
    })?;
    let config: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", config_path.display()))?;
    let wname = config["settings"]["workload"]
        .as_str()
        .context("config.json names no workload")?;
    let workload = faultline_workloads::by_name(wname).map_err(anyhow::Error::msg)?;
    let hpath = dir.join("history.jsonl");
    let (history, _) = faultline_history::read_path(&hpath, Some(faultline_history::Format::Jsonl))
        .with_context(|| format!("cannot read {}", hpath.display()))?;
    for w in &history.warnings {
        eprintln!("faultline: {}: {w}", hpath.display());
    }
    let report = verdict::check(workload.as_ref(), &history.events);
    let rpath = dir.join("results.json");
    let mut results: Value = std::fs::read_to_string(&rpath)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({}));
    let exit = match report.verdict {
        Verdict::Valid => EXIT_VALID,
        Verdict::Invalid => EXIT_INVALID,
        Verdict::Unknown => EXIT_UNKNOWN,
    };
    if let Some(obj) = results.as_object_mut() {
        obj.insert("verdict".into(), json!(report.verdict.name()));
        obj.insert("checker".into(), report.detail.clone());
        obj.insert("exit_code".into(), json!(exit));
    }
    write_json(&rpath, &results)?;
    println!("{}: {} events", dir.display(), history.events.len());
    println!("  checker   {}", report.summary);
    println!(
        "{} (exit {exit})",
        match report.verdict {
            Verdict::Valid => format!("Valid: the operations of this history {}.", report.holds),
            Verdict::Invalid =>
                format!("Invalid: the history {}; see results.json.", report.broken),
            Verdict::Unknown => "Unknown: the checker could not decide.".to_string(),
        }
    );
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_bugs_split_into_every_node_and_single_nodes() {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (all, one) = parse_node_bugs(
            &v(&[
                "skip-dedup,n2:forget-vote",
                "skip-dedup",
                "n2:ack-before-fsync",
            ]),
            3,
        )
        .expect("valid");
        assert_eq!(all, v(&["skip-dedup"]));
        assert_eq!(one.len(), 1);
        assert_eq!(one["n2"], v(&["forget-vote", "ack-before-fsync"]));
        for bad in ["n4:skip-dedup", "x:skip-dedup", "n2:", "a,,b"] {
            let err = parse_node_bugs(&v(&[bad]), 3).expect_err(bad);
            assert!(err.downcast_ref::<UsageError>().is_some(), "{bad}: {err}");
        }
    }

    #[test]
    fn list_names_every_workload_and_nemesis() {
        let text = list();
        for name in [
            "register",
            "kv",
            "set",
            "counter",
            "append",
            "partition",
            "kill",
            "pause",
            "delay",
            "loss",
        ] {
            assert!(
                text.contains(&format!("  {name} ")),
                "{name} missing:\n{text}"
            );
        }
    }

    #[test]
    fn concurrency_accepts_numbers_and_multiples_of_n() {
        assert_eq!(parse_concurrency("2n", 5), Ok(10));
        assert_eq!(parse_concurrency("n", 3), Ok(3));
        assert_eq!(parse_concurrency("7", 5), Ok(7));
        assert!(parse_concurrency("0", 5).is_err());
        assert!(parse_concurrency("x2", 5).unwrap_err().contains("Kn"));
    }

    #[test]
    fn timestamps_sort_and_look_utc() {
        let t = timestamp();
        assert_eq!(t.len(), "20261121T220800.123Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[8] == b'T');
    }
}

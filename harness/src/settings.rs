//! `faultline run`'s command line in two stages: the raw [`RunArgs`] clap
//! parses, and the validated [`Settings`] a run uses and stores in
//! `config.json`. Bad input becomes a [`UsageError`](crate::exit::UsageError)
//! naming the flag (or the spec file and field) and what is allowed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use faultline_workloads::Workload;
use serde::{Deserialize, Serialize};

use crate::exit::usage;
use crate::nemesis::{NemesisKind, Plan};
use crate::sut::{Db, NodeNames, ReadMode};

/// Raw `faultline run` arguments. Settings left out are drawn from the seed
/// (see [`crate::explore`]) unless `--fixed` is given.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Workload: register, kv, set, counter or append (descriptions: `faultline list`).
    #[arg(long, short = 'w', default_value = "register")]
    pub workload: String,
    /// The system under test: faultline (faultline-node), etcd, zookeeper,
    /// or the path of a spec file describing any system (README: "Any system").
    #[arg(long, default_value = "faultline")]
    pub db: String,
    /// Draw nothing from the seed: every setting left out takes its fixed
    /// default (5 nodes, 2n workers, 100 ops/s, partition,kill,pause every 3 s, ...).
    #[arg(long)]
    pub fixed: bool,
    /// Number of nodes (1 to 15; drawn from 3, 4, 5).
    #[arg(long, short = 'n')]
    pub nodes: Option<usize>,
    /// Seconds of client traffic and faults (1 to 86400).
    #[arg(long, default_value_t = 20.0)]
    pub time_limit: f64,
    /// Client workers: a number, or `Kn` for K × nodes (e.g. `2n`).
    #[arg(long)]
    pub concurrency: Option<String>,
    /// Total operations per second over all workers; 0 = as fast as possible.
    #[arg(long, allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Bursts at full speed (half a second in every three) between paced stretches.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub bursts: Option<bool>,
    /// Time limit of one operation, in milliseconds; past it the op is `info`.
    #[arg(long)]
    pub op_timeout_ms: Option<u64>,
    /// Time limit of one attempt, in milliseconds (default: the op timeout).
    /// Shorter: an attempt that times out or loses its connection after
    /// sending is resent with the same request id to the next node while the
    /// op's time lasts (the system must de-duplicate it).
    #[arg(long, value_name = "MS")]
    pub attempt_timeout_ms: Option<u64>,
    /// Each worker sends every op to its own node first (worker i → node
    /// i mod n), as Jepsen's clients do; otherwise a worker stays with the
    /// node that last answered.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub pin_clients: Option<bool>,
    /// How reads are asked for: linearizable, lease or stale (the system's
    /// client protocol says which it has).
    #[arg(long)]
    pub read_mode: Option<String>,
    /// Same as `--read-mode stale` (kept for etcd users).
    #[arg(long, hide = true)]
    pub serializable_reads: bool,
    /// Faults: a comma list of kinds, each with optional `:`-parameters
    /// joined by `+` (`partition:isolate-leader+reject`, `kill:majority+all`,
    /// `delay:100ms~20ms+clients`, `loss:20%`, `bandwidth:64KiB`); or all;
    /// or none. Every kind and parameter: `faultline list`.
    #[arg(long)]
    pub nemesis: Option<String>,
    /// Seconds between nemesis actions.
    #[arg(long)]
    pub nemesis_interval: Option<f64>,
    /// Seconds of calm after healing, before the final reads.
    #[arg(long, default_value_t = 2.0)]
    pub quiet_period: f64,
    /// Seed of every random choice (default: from the clock, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Directory of stored runs.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// Replaces the program the system's spec starts for each node.
    #[arg(long, value_name = "PATH", alias = "etcd-bin")]
    pub node_bin: Option<PathBuf>,
    /// Switch on deliberate mistakes (test-only): `NAME[,NAME]` on every
    /// node, or `nK:NAME` on node nK only (repeatable; `--bug` is an alias);
    /// names: `faultline node --list-bugs` for faultline-node.
    #[arg(long = "node-bug", alias = "bug", value_name = "[nK:]NAME[,...]")]
    pub bugs: Vec<String>,
    /// Pass an extra argument to every node (repeat), e.g.
    /// `--node-arg=--heartbeat-ms=20`. Given, the system's knobs are not drawn.
    #[arg(long = "node-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub node_args: Vec<String>,
    /// Seconds to wait for the cluster to be ready (every node, and a leader
    /// when the system says who leads).
    #[arg(long, default_value_t = 30.0)]
    pub leader_timeout: f64,
}

/// A validated run configuration; stored in `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    /// Workload name.
    pub workload: String,
    /// `--db` as given (a shorthand or a spec file's path).
    pub db: String,
    /// The system's name, from its spec.
    pub system: String,
    /// Nodes started at first (the founders).
    pub nodes: usize,
    /// Spare nodes beyond them, for the member nemesis (0 without it).
    #[serde(default)]
    pub spares: usize,
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
    /// How reads are asked for.
    pub read_mode: ReadMode,
    /// `--nemesis` as typed.
    pub nemesis_arg: String,
    /// The fault kinds and their parameters.
    pub nemesis: Plan,
    /// Seconds between faults.
    pub nemesis_interval_s: f64,
    /// Seconds of calm before final reads.
    pub quiet_period_s: f64,
    /// The seed.
    pub seed: u64,
    /// The store directory.
    pub store: PathBuf,
    /// `--node-bin`, if given.
    pub node_bin: Option<PathBuf>,
    /// `--node-arg`s.
    pub node_args: Vec<String>,
    /// Mistakes switched on in every node.
    pub node_bugs: Vec<String>,
    /// Mistakes switched on in one node only, by node id.
    pub node_bugs_per_node: BTreeMap<String, Vec<String>>,
    /// Seconds to wait for the cluster to be ready.
    pub leader_timeout_s: f64,
    /// Bursts at full speed between paced stretches.
    pub bursts: bool,
    /// The workload's keys and operation mix.
    pub shape: faultline_workloads::Shape,
    /// The system's knobs drawn: name → the arguments added to every node.
    pub knobs: BTreeMap<String, Vec<String>>,
    /// The settings the seed chose (the rest the user set, or `--fixed`).
    pub drawn: Vec<String>,
}

/// What the seed drew for a run, in words (the run's first lines and its
/// summary): each drawn setting and its value.
pub fn describe_drawn(s: &Settings) -> String {
    let mut parts = Vec::new();
    for name in &s.drawn {
        parts.push(match name.as_str() {
            "nodes" => format!("{} nodes", s.nodes),
            "rate" if s.rate > 0.0 => format!("{} ops/s", s.rate),
            "rate" => "full speed".to_string(),
            "bursts" if s.bursts => "bursts".to_string(),
            "bursts" => continue,
            "concurrency" => format!("{} workers", s.concurrency),
            "op_timeout_ms" => format!("{} ms op timeout", s.op_timeout_ms),
            "attempt_timeout_ms" if s.attempt_timeout_ms < s.op_timeout_ms => {
                format!("resends after {} ms", s.attempt_timeout_ms)
            }
            "attempt_timeout_ms" => continue,
            "pin_clients" if s.pin_clients => "pinned clients".to_string(),
            "pin_clients" => continue,
            "nemesis" => format!("nemesis {}", s.nemesis_arg),
            "nemesis_interval_s" => format!("every {} s", s.nemesis_interval_s),
            "read_mode" => format!("{} reads", s.read_mode.name()),
            "shape" => format!("keys {} mix {:?}", s.shape.keys, s.shape.weights),
            "knobs" => {
                let args: Vec<String> = s.knobs.values().flatten().cloned().collect();
                if args.is_empty() {
                    continue;
                }
                format!("node {}", args.join(" "))
            }
            other => other.to_string(),
        });
    }
    if parts.is_empty() {
        "nothing (every setting given or fixed)".to_string()
    } else {
        parts.join(", ")
    }
}

/// One setting of a run in words, for the report's and `serve`'s tables.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingLine {
    /// What it is, e.g. `clients`.
    pub label: &'static str,
    /// Its value in words, e.g. `10 workers, each pinned to its node`.
    pub text: String,
    /// Whether the seed drew it (exploration) rather than a flag or a default.
    pub drawn: bool,
}

/// Every setting of a run in words, each marked drawn by the seed or set.
pub fn in_words(s: &Settings) -> Vec<SettingLine> {
    let drawn = |names: &[&str]| names.iter().any(|n| s.drawn.iter().any(|d| d == n));
    let mix = match faultline_workloads::by_name(&s.workload) {
        Ok(w) if w.kinds().len() == s.shape.weights.len() => w
            .kinds()
            .iter()
            .zip(&s.shape.weights)
            .map(|(k, w)| format!("{k} {w}"))
            .collect::<Vec<_>>()
            .join(" : "),
        _ => format!("{:?}", s.shape.weights),
    };
    let mut rate = if s.rate > 0.0 {
        format!("{} ops/s", s.rate)
    } else {
        "as fast as the system answers".to_string()
    };
    if s.bursts {
        rate.push_str(", with bursts at full speed");
    }
    let mut clients = format!("{} workers", s.concurrency);
    if s.pin_clients {
        clients.push_str(", each pinned to its node");
    }
    let mut timeouts = format!("{} ms per operation", s.op_timeout_ms);
    if s.attempt_timeout_ms < s.op_timeout_ms {
        let _ = write!(timeouts, ", resent after {} ms", s.attempt_timeout_ms);
    }
    let knobs: Vec<String> = s.knobs.values().flatten().cloned().collect();
    let mut node_args = knobs.join(" ");
    if !s.node_args.is_empty() {
        if !node_args.is_empty() {
            node_args.push(' ');
        }
        node_args.push_str(&s.node_args.join(" "));
    }
    let mut bugs: Vec<String> = s.node_bugs.clone();
    for (node, b) in &s.node_bugs_per_node {
        bugs.extend(b.iter().map(|b| format!("{b} on {node}")));
    }
    let line = |label, text: String, names: &[&str]| SettingLine {
        label,
        text,
        drawn: drawn(names),
    };
    let mut out = vec![
        line("system", format!("{} (--db {})", s.system, s.db), &[]),
        line(
            "workload",
            format!("{}: {} keys, mix {mix}", s.workload, s.shape.keys),
            &["shape"],
        ),
        line("nodes", s.nodes.to_string(), &["nodes"]),
        line(
            "traffic",
            format!(
                "{} s, then {} s of calm before the final reads",
                s.time_limit_s, s.quiet_period_s
            ),
            &[],
        ),
        line("rate", rate, &["rate", "bursts"]),
        line("clients", clients, &["concurrency", "pin_clients"]),
        line(
            "timeouts",
            timeouts,
            &["op_timeout_ms", "attempt_timeout_ms"],
        ),
        line(
            "faults",
            if s.nemesis.any() {
                format!("{}, every {} s", s.nemesis_arg, s.nemesis_interval_s)
            } else {
                "none".to_string()
            },
            &["nemesis", "nemesis_interval_s"],
        ),
        line(
            "reads",
            format!("{} reads", s.read_mode.name()),
            &["read_mode"],
        ),
        line(
            "node arguments",
            if node_args.is_empty() {
                "none".into()
            } else {
                node_args
            },
            &["knobs"],
        ),
    ];
    if !bugs.is_empty() {
        out.push(line("deliberate mistakes", bugs.join(", "), &[]));
    }
    if let Some(b) = &s.node_bin {
        out.push(line("node program", b.display().to_string(), &[]));
    }
    out
}

/// Parses `--concurrency`: `N` or `Kn`.
pub fn parse_concurrency(s: &str, nodes: usize) -> Result<usize, String> {
    let s = s.trim();
    let bad = || format!("--concurrency {s}: expected a number or Kn such as 2n");
    let n = if let Some(k) = s.strip_suffix('n') {
        let k: usize = if k.is_empty() {
            1
        } else {
            k.parse().map_err(|_| bad())?
        };
        k * nodes
    } else {
        s.parse().map_err(|_| bad())?
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
            return Err(usage("--node-bug: empty name in the list"));
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

/// The spares a run with the member nemesis starts: the spec's, which it
/// must have, with at least three founders.
fn member_spares(db: &Db, nodes: usize, arg: &str) -> Result<usize> {
    let member = NemesisKind::Member.name();
    if db.spec.membership.is_none() {
        return Err(usage(format!(
            "--nemesis {arg}: {member} needs spare nodes, and {} ({}) has no [membership] \
             section (spares = N, join_args = [...]; README: \"Membership changes\")",
            db.file(),
            db.name()
        )));
    }
    let min = crate::nemesis::schedule::MIN_VOTERS;
    if nodes < min {
        return Err(usage(format!(
            "--nemesis {arg}: {member} keeps at least {min} voters: --nodes {nodes} is too few"
        )));
    }
    Ok(db.spares())
}

fn check_range(flag: &str, v: f64, lo: f64, hi: f64, unit: &str) -> Result<()> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(usage(format!("{flag} {v}: allowed {lo} to {hi}{unit}")))
    }
}

impl RunArgs {
    /// Checks bounds and names, loads the system's spec and checks it, and
    /// fills every setting left out from the seed's profile (or the fixed
    /// defaults); errors are [`UsageError`](crate::exit::UsageError)s.
    pub fn validate(&self) -> Result<(Settings, Box<dyn Workload>, Db)> {
        let base = faultline_workloads::by_name(&self.workload).map_err(usage)?;
        let mut db = Db::resolve(&self.db).map_err(|e| usage(e.to_string()))?;
        let seed = self.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
                % 1_000_000_000
        });
        let profile = crate::explore::draw(seed, &db, base.as_ref());
        let mut drawn = Vec::new();
        // The value a setting takes: the flag, else the draw, else (with
        // --fixed) the fixed default.
        let mut pick = |name: &str, flag: bool| {
            let draw = !flag && !self.fixed;
            if draw {
                drawn.push(name.to_string());
            }
            draw
        };

        let nodes = match self.nodes {
            Some(n) => n,
            None if pick("nodes", false) => profile.nodes,
            None => 5,
        };
        if !(1..=15).contains(&nodes) {
            return Err(usage(format!("--nodes {nodes}: allowed 1 to 15")));
        }
        check_range("--time-limit", self.time_limit, 1.0, 86_400.0, " seconds")?;
        let rate = match self.rate {
            Some(r) => r,
            None if pick("rate", false) => profile.rate,
            None => 100.0,
        };
        if !(rate.is_finite() && (0.0..=1_000_000.0).contains(&rate)) {
            return Err(usage(format!(
                "--rate {rate}: allowed 0 (as fast as possible) to 1000000 ops/s"
            )));
        }
        let bursts = match self.bursts {
            Some(b) => b,
            None if pick("bursts", self.rate.is_some()) => profile.bursts,
            None => false,
        };
        let concurrency_arg = match &self.concurrency {
            Some(c) => c.clone(),
            None if pick("concurrency", false) => format!("{}n", profile.workers_per_node),
            None => "2n".to_string(),
        };
        let concurrency = parse_concurrency(&concurrency_arg, nodes).map_err(usage)?;
        let op_timeout_ms = match self.op_timeout_ms {
            Some(t) => t,
            None if pick("op_timeout_ms", false) => profile.op_timeout_ms,
            None => 1000,
        };
        if !(10..=600_000).contains(&op_timeout_ms) {
            return Err(usage(format!(
                "--op-timeout-ms {op_timeout_ms}: allowed 10 to 600000"
            )));
        }
        let attempt_timeout_ms = match self.attempt_timeout_ms {
            Some(t) => t,
            // Resends need a system that applies a resent request once.
            None if pick("attempt_timeout_ms", false) && profile.resends && db.dedup() => {
                op_timeout_ms / 4
            }
            None => op_timeout_ms,
        };
        if !(10..=op_timeout_ms).contains(&attempt_timeout_ms) {
            return Err(usage(format!(
                "--attempt-timeout-ms {attempt_timeout_ms}: allowed 10 to --op-timeout-ms ({op_timeout_ms})"
            )));
        }
        if attempt_timeout_ms < op_timeout_ms && !db.dedup() {
            return Err(usage(format!(
                "--attempt-timeout-ms resends requests, which needs request de-duplication, \
                 which {} lacks",
                db.name()
            )));
        }
        let pin_clients = match self.pin_clients {
            Some(p) => p,
            None if pick("pin_clients", false) => profile.pin_clients,
            None => false,
        };
        // Clock faults need libfaketime and a program that reads the clock
        // through libc; exploration draws them only where both hold.
        let clocks_possible = crate::clock::library().is_ok()
            && db
                .launch(&NodeNames::for_checks(&db.spec, nodes), 0)
                .ok()
                .is_some_and(|l| !crate::clock::is_go_program(&l.program).unwrap_or(true));
        let (nemesis_arg, mut nemesis) = match &self.nemesis {
            Some(n) => (n.clone(), Plan::parse(n).map_err(usage)?),
            None if pick("nemesis", false) => {
                let mut plan = profile.nemesis.clone();
                let disks_possible = faultline_diskfs::fuse_available().is_ok();
                plan.kinds.retain(|k| match k {
                    NemesisKind::Clock => clocks_possible,
                    NemesisKind::Disk => disks_possible,
                    _ => true,
                });
                if plan.kinds.is_empty() {
                    plan.kinds = vec![NemesisKind::Partition];
                }
                // A script needs a leader probe with a term, and its nodes.
                plan.scripts
                    .retain(|s| db.has_term_probe() && nodes >= s.kind.info().min_nodes);
                (crate::explore::nemesis_arg(&plan), plan)
            }
            None => {
                let n = "partition,kill,pause";
                (n.to_string(), Plan::parse(n).map_err(usage)?)
            }
        };
        for script in &nemesis.scripts {
            let info = script.kind.info();
            if nodes < info.min_nodes {
                return Err(usage(format!(
                    "--nemesis {nemesis_arg}: script {} needs at least {} nodes, not {nodes}",
                    info.name, info.min_nodes
                )));
            }
            if !db.has_term_probe() {
                return Err(usage(format!(
                    "--nemesis {nemesis_arg}: the script follows leaders and their terms, and \
                     {} gives no leader probe with a term ({}: [leader] with `term`)",
                    db.name(),
                    db.file()
                )));
            }
        }
        // `all` means every kind the system can take: membership changes
        // only where the spec has spares (asked for by name, they must).
        let named = |k: NemesisKind| {
            nemesis_arg
                .split(',')
                .any(|p| p.split(':').next().map(str::trim) == Some(k.name()))
        };
        if db.spec.membership.is_none() && !named(NemesisKind::Member) {
            nemesis.kinds.retain(|k| *k != NemesisKind::Member);
        }
        let spares = if nemesis.kinds.contains(&NemesisKind::Member) {
            member_spares(&db, nodes, &nemesis_arg)?
        } else {
            0
        };
        let nemesis_interval = match self.nemesis_interval {
            Some(i) => i,
            // A script alone keeps its own time: nothing to draw.
            None if pick(
                "nemesis_interval_s",
                !nemesis.scripts.is_empty() && nemesis.kinds.is_empty(),
            ) =>
            {
                profile.nemesis_interval_s
            }
            None => 3.0,
        };
        check_range(
            "--nemesis-interval",
            nemesis_interval,
            0.1,
            3600.0,
            " seconds",
        )?;
        check_range("--quiet-period", self.quiet_period, 0.0, 3600.0, " seconds")?;
        check_range(
            "--leader-timeout",
            self.leader_timeout,
            1.0,
            600.0,
            " seconds",
        )?;
        let read_mode = match (&self.read_mode, self.serializable_reads) {
            (_, true) => ReadMode::Stale,
            (Some(m), false) => ReadMode::parse(m).ok_or_else(|| {
                usage(format!(
                    "--read-mode {m}: known: linearizable, lease, stale"
                ))
            })?,
            // A lease assumes clocks that run at its rate: with clock faults
            // drawn, reads stay linearizable.
            (None, false) if pick("read_mode", false) => {
                if nemesis.kinds.contains(&NemesisKind::Disk) {
                    faultline_diskfs::fuse_available()
                        .map_err(|e| usage(format!("--nemesis disk needs FUSE: {e}")))?;
                }
                if nemesis.kinds.contains(&NemesisKind::Clock) {
                    ReadMode::Linearizable
                } else {
                    profile.read_mode
                }
            }
            (None, false) => ReadMode::Linearizable,
        };
        let modes = db.read_modes();
        if !modes.contains(&read_mode) {
            let names: Vec<&str> = modes.iter().map(|m| m.name()).collect();
            return Err(usage(format!(
                "--read-mode {}: {} reads only {}",
                read_mode.name(),
                db.name(),
                names.join(", ")
            )));
        }
        let shape = if pick("shape", false) {
            profile.shape.clone()
        } else {
            base.shape()
        };
        let workload = faultline_workloads::build(&self.workload, Some(&shape)).map_err(usage)?;
        let knobs = if pick("knobs", !self.node_args.is_empty()) {
            profile.knobs.clone()
        } else {
            BTreeMap::new()
        };
        if let Some(p) = &self.node_bin
            && !crate::sut::is_executable(p)
        {
            return Err(usage(format!(
                "--node-bin {}: not an executable file",
                p.display()
            )));
        }
        let (node_bugs, node_bugs_per_node) = parse_node_bugs(&self.bugs, nodes)?;
        db.program = self.node_bin.clone();
        db.extra_args = knobs.values().flatten().cloned().collect();
        db.extra_args.extend(self.node_args.iter().cloned());
        db.bugs = node_bugs.clone();
        db.node_bugs = node_bugs_per_node.clone();
        let names = NodeNames::for_checks(&db.spec, nodes);
        db.check(&names).map_err(|e| usage(format!("{e:#}")))?;
        if nemesis.kinds.contains(&NemesisKind::Disk) {
            faultline_diskfs::fuse_available()
                .map_err(|e| usage(format!("--nemesis disk needs FUSE: {e}")))?;
        }
        if nemesis.kinds.contains(&NemesisKind::Clock) {
            crate::clock::library().map_err(|e| usage(format!("--nemesis clock: {e:#}")))?;
            let program = db
                .launch(&names, 0)
                .map_err(|e| usage(e.to_string()))?
                .program;
            crate::clock::check_program(&program, db.name())
                .map_err(|e| usage(format!("--nemesis clock: {e:#}")))?;
        }
        Ok((
            Settings {
                workload: workload.name().to_string(),
                db: self.db.clone(),
                system: db.name().to_string(),
                nodes,
                spares,
                time_limit_s: self.time_limit,
                concurrency,
                concurrency_arg,
                rate,
                op_timeout_ms,
                attempt_timeout_ms,
                pin_clients,
                read_mode,
                nemesis_arg,
                nemesis,
                nemesis_interval_s: nemesis_interval,
                quiet_period_s: self.quiet_period,
                seed,
                store: self.store.clone(),
                node_bin: self.node_bin.clone(),
                node_args: self.node_args.clone(),
                node_bugs,
                node_bugs_per_node,
                leader_timeout_s: self.leader_timeout,
                bursts,
                shape,
                knobs,
                drawn,
            },
            workload,
            db,
        ))
    }
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
            assert!(
                err.downcast_ref::<crate::exit::UsageError>().is_some(),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn settings_read_in_words_and_say_what_the_seed_drew() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let cli = <Cli as clap::Parser>::try_parse_from([
            "faultline",
            "-w",
            "append",
            "--seed",
            "3",
            "--nodes",
            "4",
            "--rate",
            "50",
        ])
        .unwrap();
        let (s, _, _) = cli.run.validate().unwrap();
        let lines = in_words(&s);
        let line = |label: &str| lines.iter().find(|l| l.label == label).unwrap().clone();
        assert_eq!(line("nodes").text, "4");
        assert!(!line("nodes").drawn && !line("traffic").drawn);
        assert!(line("rate").text.starts_with("50 ops/s"));
        assert!(line("workload").text.contains("append") && line("workload").drawn);
        assert!(line("faults").drawn && line("reads").drawn);
    }

    #[test]
    fn concurrency_accepts_numbers_and_multiples_of_n() {
        assert_eq!(parse_concurrency("2n", 5), Ok(10));
        assert_eq!(parse_concurrency("n", 3), Ok(3));
        assert_eq!(parse_concurrency("7", 5), Ok(7));
        assert!(parse_concurrency("0", 5).is_err());
        assert!(parse_concurrency("x2", 5).unwrap_err().contains("Kn"));
    }
}

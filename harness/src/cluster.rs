//! A running cluster: node processes (through the [`Supervisor`]), a proxy on
//! every directed peer link (and optionally on every client link), the
//! nodes' `/status`, and [`Cluster::apply`], which carries out a nemesis
//! [`Fault`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::nemesis::Fault;
use crate::proxy::{LinkMode, Proxy};
use crate::supervisor::{NodeProgram, NodeSpec, ProcState, Supervisor};
use crate::sut::{ClusterPlan, Db, PeerRouting, Target};

/// How to build a cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Number of nodes (ids `n1`..).
    pub nodes: usize,
    /// The node program.
    pub program: NodeProgram,
    /// Put a proxy on every client→node link too.
    pub client_proxies: bool,
    /// Extra flags for every node (e.g. `--bug NAME`).
    pub node_args: Vec<String>,
    /// Seed for the proxies' jitter and loss draws.
    pub seed: u64,
}

/// A node's `/status` answer (the fields the harness uses).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// The node's id.
    pub id: String,
    /// `follower`, `pre_candidate`, `candidate` or `leader`.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// The leader it knows, if any.
    pub leader: Option<String>,
    /// Commit index.
    #[serde(default)]
    pub commit_index: u64,
}

/// One node as the harness addresses it.
#[derive(Clone, Debug, Serialize)]
pub struct NodeInfo {
    /// Its id.
    pub id: String,
    /// The URL clients use (a proxy when client proxies are on).
    pub client_url: String,
    /// The node's own client URL (for `/status`, never proxied).
    pub direct_url: String,
    /// Where it accepts peers.
    pub peer_addr: SocketAddr,
}

/// A running cluster. Dropping it kills every node.
pub struct Cluster {
    /// The nodes, in id order.
    pub nodes: Vec<NodeInfo>,
    /// The processes.
    pub supervisor: Supervisor,
    /// `links[i][j]`: the proxy node `i` dials to reach node `j` (`None` on the diagonal).
    links: Vec<Vec<Option<Proxy>>>,
    client_links: Vec<Option<Proxy>>,
    net: std::sync::Mutex<Net>,
    http: reqwest::Client,
    nodes_dir: std::path::PathBuf,
    db: std::sync::Arc<dyn Db>,
}

/// The network faults in force: which directed links are cut, and the mode
/// every other link has.
#[derive(Debug)]
struct Net {
    cut: BTreeSet<(usize, usize)>,
    quality: LinkMode,
}

impl Cluster {
    /// Starts proxies and faultline-node nodes; data and logs go under `nodes_dir`.
    pub async fn start(
        cfg: &ClusterConfig,
        nodes_dir: &Path,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Cluster> {
        let db = std::sync::Arc::new(crate::sut::faultline::FaultlineDb {
            program: cfg.program.clone(),
            extra_args: cfg.node_args.clone(),
            per_node_args: Default::default(),
        });
        Cluster::start_db(db, cfg, nodes_dir, cancel, tracker).await
    }

    /// The system under test.
    pub fn db(&self) -> std::sync::Arc<dyn Db> {
        self.db.clone()
    }

    /// Starts proxies and nodes of `db` (`cfg.program` and `cfg.node_args`
    /// are ignored: `db` says what to run).
    pub async fn start_db(
        db: std::sync::Arc<dyn Db>,
        cfg: &ClusterConfig,
        nodes_dir: &Path,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Cluster> {
        let n = cfg.nodes;
        std::fs::create_dir_all(nodes_dir)
            .with_context(|| format!("cannot create {}", nodes_dir.display()))?;
        let ids: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        // The nodes bind these a moment later; a clash would show up as a
        // node that fails to start (see `ports` for why they cannot clash
        // with the kernel's own choices).
        let mut addrs = faultline_node::ports::reserve_loopback_ports(2 * n)
            .context("cannot reserve loopback ports for the nodes")?;
        let peer_addrs = addrs.split_off(n);
        let client_addrs = addrs;

        let mut links: Vec<Vec<Option<Proxy>>> = Vec::with_capacity(n);
        for i in 0..n {
            let mut row = Vec::with_capacity(n);
            for (j, peer) in peer_addrs.iter().enumerate() {
                if i == j {
                    row.push(None);
                    continue;
                }
                let seed = cfg.seed ^ ((i as u64) << 32 | j as u64);
                let p = Proxy::start(*peer, seed, cancel.clone(), tracker)
                    .await
                    .context("cannot start a link proxy")?;
                row.push(Some(p));
            }
            links.push(row);
        }
        let mut client_links = Vec::with_capacity(n);
        for (i, addr) in client_addrs.iter().enumerate() {
            if cfg.client_proxies {
                let seed = cfg.seed ^ (0xc11e_u64 << 32 | i as u64);
                let p = Proxy::start(*addr, seed, cancel.clone(), tracker)
                    .await
                    .context("cannot start a client proxy")?;
                client_links.push(Some(p));
            } else {
                client_links.push(None);
            }
        }

        let mut nodes = Vec::with_capacity(n);
        let mut specs = Vec::with_capacity(n);
        for i in 0..n {
            let direct_url = format!("http://{}", client_addrs[i]);
            let client_url = match &client_links[i] {
                Some(p) => format!("http://{}", p.addr()),
                None => direct_url.clone(),
            };
            nodes.push(NodeInfo {
                id: ids[i].clone(),
                client_url,
                direct_url,
                peer_addr: peer_addrs[i],
            });
        }
        // Where node i dials node j: its own link proxy, or (for systems
        // whose members advertise one peer address) a demultiplexer per
        // destination that hands each connection to the dialler's link.
        let mut dial: Vec<Vec<Option<SocketAddr>>> = links
            .iter()
            .map(|row| row.iter().map(|p| p.as_ref().map(Proxy::addr)).collect())
            .collect();
        if db.routing() == PeerRouting::PerDestination {
            for j in 0..n {
                let column: Vec<Option<SocketAddr>> = (0..n).map(|i| dial[i][j]).collect();
                let inbound =
                    crate::sut::demux::start(ids.clone(), column, cancel.clone(), tracker).await?;
                for (i, row) in dial.iter_mut().enumerate() {
                    row[j] = (i != j).then_some(inbound);
                }
            }
        }
        let plan = ClusterPlan {
            ids: ids.clone(),
            client_addrs: client_addrs.clone(),
            client_urls: nodes.iter().map(|x| x.client_url.clone()).collect(),
            peer_addrs: peer_addrs.clone(),
            dial,
            data_dirs: ids.iter().map(|id| nodes_dir.join(id)).collect(),
        };
        for (i, id) in ids.iter().enumerate() {
            specs.push(NodeSpec {
                id: id.clone(),
                args: db.node_args(&plan, i),
                log_path: nodes_dir.join(format!("{id}.log")),
            });
        }
        let supervisor = Supervisor::new(db.program(), specs);
        supervisor.start_all()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .pool_max_idle_per_host(2)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Cluster {
            nodes,
            supervisor,
            links,
            client_links,
            net: std::sync::Mutex::new(Net {
                cut: BTreeSet::new(),
                quality: LinkMode::Pass,
            }),
            http,
            nodes_dir: nodes_dir.to_path_buf(),
            db,
        })
    }

    /// Node ids in order.
    pub fn ids(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.id.clone()).collect()
    }

    fn index_of(&self, id: &str) -> Result<usize> {
        match self.nodes.iter().position(|n| n.id == id) {
            Some(i) => Ok(i),
            None => bail!("no node named {id}"),
        }
    }

    /// The proxy node `from` dials to reach node `to`.
    pub fn link(&self, from: &str, to: &str) -> Result<&Proxy> {
        let (i, j) = (self.index_of(from)?, self.index_of(to)?);
        match &self.links[i][j] {
            Some(p) => Ok(p),
            None => bail!("no link from a node to itself"),
        }
    }

    /// The proxy on the client link to `node`, when client proxies are on.
    pub fn client_link(&self, node: &str) -> Result<Option<&Proxy>> {
        Ok(self.client_links[self.index_of(node)?].as_ref())
    }

    /// One node's `/status`, or `None` if it does not answer in time.
    pub async fn status(&self, id: &str) -> Option<Status> {
        let i = self.index_of(id).ok()?;
        let node = &self.nodes[i];
        let target = Target {
            id: node.id.clone(),
            client_url: node.client_url.clone(),
            direct_url: node.direct_url.clone(),
        };
        self.db.status(&self.http, &target, &self.ids()).await
    }

    /// Every node's `/status`, concurrently, in id order.
    pub async fn statuses(&self) -> Vec<Option<Status>> {
        let futs = self.nodes.iter().map(|n| self.status(&n.id));
        futures::future::join_all(futs).await
    }

    /// The leader with the highest term among nodes that say they lead.
    pub async fn leader(&self) -> Option<String> {
        self.statuses()
            .await
            .into_iter()
            .flatten()
            .filter(|s| s.role == "leader")
            .max_by_key(|s| s.term)
            .map(|s| s.id)
    }

    /// Waits until a leader is known to a majority, or the deadline.
    pub async fn wait_for_leader(&self, within: Duration) -> Result<String> {
        let deadline = Instant::now() + within;
        loop {
            // A node that dies while the cluster forms will not come back:
            // say so now, with the end of its log, instead of timing out.
            if let Some((id, what)) = self.supervisor.poll_exits().into_iter().next() {
                let log = self.nodes_dir.join(format!("{id}.log"));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "node {id} {what} before a leader was elected; the end of {}:\n{}",
                    log.display(),
                    tail.join("\n")
                );
            }
            let statuses = self.statuses().await;
            let leaders: Vec<&Status> = statuses
                .iter()
                .flatten()
                .filter(|s| s.role == "leader")
                .collect();
            if let Some(l) = leaders.iter().max_by_key(|s| s.term) {
                let agree = statuses
                    .iter()
                    .flatten()
                    .filter(|s| s.leader.as_deref() == Some(l.id.as_str()) && s.term == l.term)
                    .count();
                if agree > self.nodes.len() / 2 {
                    return Ok(l.id.clone());
                }
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = statuses
                    .iter()
                    .zip(&self.nodes)
                    .map(|(s, n)| match s {
                        Some(s) => format!("{}: {} term {}", n.id, s.role, s.term),
                        None => format!("{}: no answer", n.id),
                    })
                    .collect();
                bail!(
                    "no leader within {:.1} s ({}); see the node logs",
                    within.as_secs_f64(),
                    seen.join(", ")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Changes the network faults and sets every peer link's mode to match.
    fn with_net(&self, change: impl FnOnce(&mut Net)) {
        let mut net = self.net.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut net);
        for (i, row) in self.links.iter().enumerate() {
            for (j, p) in row.iter().enumerate() {
                if let Some(p) = p {
                    let m = if net.cut.contains(&(i, j)) {
                        LinkMode::Blackhole
                    } else {
                        net.quality
                    };
                    if p.mode() != m {
                        p.set_mode(m);
                    }
                }
            }
        }
    }

    /// Carries out one fault. Returns a short description of what was done.
    pub fn apply(&self, fault: &Fault) -> Result<String> {
        match fault {
            Fault::Partition { cut, .. } => {
                let mut pairs = Vec::with_capacity(cut.len());
                for [a, b] in cut {
                    pairs.push((self.index_of(a)?, self.index_of(b)?));
                }
                self.with_net(|net| net.cut.extend(pairs));
                Ok(format!("{} links cut", cut.len()))
            }
            Fault::Heal => {
                self.with_net(|net| net.cut.clear());
                Ok("healed".into())
            }
            Fault::Kill { nodes, .. } => {
                for n in nodes {
                    self.supervisor.kill(n)?;
                }
                Ok(format!("killed {}", nodes.join(" ")))
            }
            Fault::Restart => Ok(format!("restarted {}", self.restart_killed()?.join(" "))),
            Fault::Pause { nodes, .. } => {
                for n in nodes {
                    if self.supervisor.state(n)? == ProcState::Running {
                        self.supervisor.pause(n)?;
                    }
                }
                Ok(format!("paused {}", nodes.join(" ")))
            }
            Fault::Resume => Ok(format!("resumed {}", self.resume_paused()?.join(" "))),
            Fault::LinkDelay {
                latency_ms,
                jitter_ms,
            } => {
                let m = LinkMode::Delay {
                    latency_ms: *latency_ms,
                    jitter_ms: *jitter_ms,
                };
                self.with_net(|net| net.quality = m);
                Ok(format!("links delayed {latency_ms}±{jitter_ms} ms"))
            }
            Fault::LinkLoss { probability } => {
                let m = LinkMode::Loss {
                    probability: *probability,
                };
                self.with_net(|net| net.quality = m);
                Ok(format!(
                    "links lose connections at p={probability} per chunk"
                ))
            }
            Fault::ClearLinks => {
                self.with_net(|net| net.quality = LinkMode::Pass);
                Ok("links clear".into())
            }
            Fault::Clear => {
                self.with_net(|net| {
                    net.cut.clear();
                    net.quality = LinkMode::Pass;
                });
                let resumed = self.resume_paused()?;
                let restarted = self.restart_killed()?;
                Ok(format!(
                    "all clear (resumed [{}], restarted [{}])",
                    resumed.join(" "),
                    restarted.join(" ")
                ))
            }
        }
    }

    fn restart_killed(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for id in self.ids() {
            if self.supervisor.state(&id)? == ProcState::Killed {
                self.supervisor.start(&id)?;
                out.push(id);
            }
        }
        Ok(out)
    }

    fn resume_paused(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for id in self.ids() {
            if self.supervisor.state(&id)? == ProcState::Paused {
                self.supervisor.resume(&id)?;
                out.push(id);
            }
        }
        Ok(out)
    }
}

//! A running cluster of any system under test: node processes (through the
//! [`Supervisor`]), a proxy on every directed link of every peer port (and,
//! when a fault needs them, on every client link), the client protocol, the
//! readiness and leader probes, and [`Cluster::apply`], the one place that
//! carries out a nemesis [`Fault`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::NodeClock;
use crate::nemesis::{CutMode, DiskAction, Fault, LinkScope};
use crate::proxy::{LinkMode, Proxy, ProxyOptions, Rewrite};
use crate::supervisor::{NodeSpec, ProcState, Supervisor};
use crate::sut::membership::{self, ChangeOp, MemberError, MemberView, Membership};
use crate::sut::protocol::{self, ProtocolEnv};
use crate::sut::{
    BoxFuture, Db, Endpoint, Members, NodeNames, Protocol, ReadMode, Routing, Status, demux, probe,
};

/// How long a peer link's proxy keeps trying a node that refuses
/// connections before resetting the dialler: long enough for a server that
/// opens a port only once elected (ZooKeeper's quorum port), short next to
/// a run's fault intervals. Client links reset at once, so clients see a
/// refused connection (a definite failure) rather than a timeout.
pub const PEER_CONNECT_PATIENCE: Duration = Duration::from_secs(2);

/// How to build a cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Number of nodes started at first (ids `n1`..).
    pub nodes: usize,
    /// Spare nodes after them (in every address book, not started): the
    /// member nemesis grows the cluster from them.
    pub spares: usize,
    /// Put a proxy on every client→node link too.
    pub client_links: bool,
    /// How the run's clients read.
    pub read_mode: ReadMode,
    /// Seed for the proxies' jitter and loss draws.
    pub seed: u64,
    /// No proxies at all: nodes dial each other's real ports (benchmarks).
    pub direct: bool,
    /// Start nodes with libfaketime, so clock faults can change their clocks.
    pub clocks: bool,
    /// Put each node's data directory on faultline's FUSE filesystem, so
    /// disk faults can drop unsynced writes, damage files and fill it.
    pub disks: bool,
}

/// Where a cluster keeps its files.
#[derive(Clone, Debug)]
pub struct ClusterPaths {
    /// Node data directories and logs (`nodes/`).
    pub nodes: PathBuf,
    /// Client programs' stderr (`clients/`).
    pub clients: PathBuf,
}

impl ClusterPaths {
    /// `nodes/` and `clients/` under `dir`.
    pub fn under(dir: &Path) -> ClusterPaths {
        ClusterPaths {
            nodes: dir.join("nodes"),
            clients: dir.join("clients"),
        }
    }
}

/// A running cluster. Dropping it kills every node.
pub struct Cluster {
    /// The system.
    pub db: Arc<Db>,
    /// What its templates saw: ids, ports, dial addresses, data directories.
    pub names: NodeNames,
    /// The nodes as clients address them.
    pub endpoints: Vec<Endpoint>,
    /// The processes.
    pub supervisor: Arc<Supervisor>,
    /// The client protocol.
    pub protocol: Arc<dyn Protocol>,
    /// `links[port][i][j]`: the proxy node `i` dials to reach node `j` on
    /// that peer port (`None` on the diagonal).
    links: BTreeMap<String, Vec<Vec<Option<Proxy>>>>,
    client_links: Vec<Option<Proxy>>,
    net: std::sync::Mutex<Net>,
    http: reqwest::Client,
    paths: ClusterPaths,
    /// Each node's clock, when clock faults are on.
    clocks: std::sync::Mutex<Vec<NodeClock>>,
    /// Each node's disk (mounted on its data directory), when disk faults are on.
    disks: Vec<faultline_diskfs::Mount>,
    /// Detaches the disks if the controller dies without unmounting them.
    _unmount_watch: Option<crate::supervisor::UnmountWatch>,
    /// Which nodes are members (the rest are stopped spares).
    members: Arc<Members>,
    /// How to change the configuration (specs with spares).
    membership: Option<Arc<dyn Membership>>,
    /// The configuration the last membership step left, as the leader saw it.
    last_view: std::sync::Mutex<Option<MemberView>>,
    /// libfaketime, when clock faults are on (a joining spare's launch
    /// needs it too).
    faketime: Option<PathBuf>,
}

/// How long a grown node may take to catch up with the leader's log
/// before its promotion is given up (and retried at the next step).
pub const CATCH_UP_WITHIN: Duration = Duration::from_secs(10);
/// How long a member step's split holds: long enough for the far side to
/// elect a leader and take writes (a few election timeouts).
const SPLIT_FOR: Duration = Duration::from_millis(2500);

impl Drop for Cluster {
    fn drop(&mut self) {
        // Nodes hold files open on the mounts: they die first, so each
        // mount can go at once.
        self.supervisor.kill_all();
    }
}

/// The network faults in force: which directed links are cut (and how),
/// and the mode every other peer link and every client link has.
#[derive(Debug)]
struct Net {
    cut: BTreeMap<(usize, usize), CutMode>,
    peers: LinkMode,
    clients: LinkMode,
}

/// The last `lines` lines of a log file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let t: Vec<&str> = text.lines().rev().take(lines).collect();
    t.into_iter().rev().collect::<Vec<_>>().join("\n")
}

impl Cluster {
    /// Starts proxies and the nodes of `db`, and its client protocol.
    pub async fn start(
        db: Arc<Db>,
        cfg: &ClusterConfig,
        paths: &ClusterPaths,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Cluster> {
        let founders = cfg.nodes;
        let n = cfg.nodes + cfg.spares;
        std::fs::create_dir_all(&paths.nodes)
            .with_context(|| format!("cannot create {}", paths.nodes.display()))?;
        let ids: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let port_names = db.port_names();
        // The nodes bind these a moment later; a clash would show up as a
        // node that fails to start (see `ports` for why they cannot clash
        // with the kernel's own choices).
        let reserved = faultline_node::ports::reserve_loopback_ports(port_names.len() * n)
            .context("cannot reserve loopback ports for the nodes")?;
        let ports: Vec<BTreeMap<String, u16>> = (0..n)
            .map(|i| {
                port_names
                    .iter()
                    .enumerate()
                    .map(|(k, name)| (name.clone(), reserved[i * port_names.len() + k].port()))
                    .collect()
            })
            .collect();
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));

        let supervisor = Arc::new(Supervisor::new(Vec::new()));
        // Every link's listener first: a link's address rewrite may name
        // the proxies of another link or port.
        let mut listeners: BTreeMap<String, Vec<Vec<Option<TcpListener>>>> = BTreeMap::new();
        let mut dial = BTreeMap::new();
        for name in db.peer_ports() {
            let mut rows = Vec::with_capacity(n);
            for i in 0..n {
                let mut row = Vec::with_capacity(n);
                for j in 0..n {
                    row.push(if i == j || cfg.direct {
                        None
                    } else {
                        Some(
                            TcpListener::bind(("127.0.0.1", 0))
                                .await
                                .context("cannot bind a link proxy")?,
                        )
                    });
                }
                rows.push(row);
            }
            // What node i dials to reach node j (and, on the diagonal, what
            // the others dial to reach i): its own link proxy, or for
            // systems whose nodes advertise one peer address, a
            // demultiplexer per destination that hands each connection to
            // the dialler's link.
            let bound = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
            let mut m: Vec<Vec<u16>> = (0..n)
                .map(|i| {
                    (0..n)
                        .map(|j| bound(&rows[i][j]).map_or(ports[j][&name], |a| a.port()))
                        .collect()
                })
                .collect();
            if db.routing() == Routing::PerDestination && !cfg.direct {
                for j in 0..n {
                    let column: Vec<Option<SocketAddr>> =
                        (0..n).map(|i| bound(&rows[i][j])).collect();
                    let sup = supervisor.clone();
                    let who: demux::WhoIs = Arc::new(move |g| sup.node_of_group(g));
                    let inbound =
                        demux::start(ids.clone(), column, who, cancel.clone(), tracker).await?;
                    for row in m.iter_mut() {
                        row[j] = inbound.port();
                    }
                }
            }
            dial.insert(name.clone(), m);
            listeners.insert(name, rows);
        }
        let names = NodeNames {
            ids: ids.clone(),
            ports: ports.clone(),
            dial,
            data_dirs: ids.iter().map(|id| paths.nodes.join(id)).collect(),
            members: (0..founders).collect(),
            faultline: std::env::current_exe().context("cannot locate the faultline executable")?,
            spec_dir: db.spec_dir.clone(),
        };
        let mut links = BTreeMap::new();
        for (name, rows) in listeners {
            let mut proxies: Vec<Vec<Option<Proxy>>> = Vec::with_capacity(n);
            for (i, row) in rows.into_iter().enumerate() {
                let mut out = Vec::with_capacity(n);
                for (j, listener) in row.into_iter().enumerate() {
                    let Some(listener) = listener else {
                        out.push(None);
                        continue;
                    };
                    let options = ProxyOptions {
                        connect_patience: PEER_CONNECT_PATIENCE,
                        rewrite: self_address_rewrite(&db, &names, &name, i, j)?,
                    };
                    let seed = cfg.seed ^ ((i as u64) << 32 | j as u64) ^ hash(&name);
                    let target = addr(ports[j][&name]);
                    let p =
                        Proxy::start_with(listener, target, seed, options, cancel.clone(), tracker)
                            .await
                            .context("cannot start a link proxy")?;
                    out.push(Some(p));
                }
                proxies.push(out);
            }
            links.insert(name, proxies);
        }
        let mut client_links = Vec::with_capacity(n);
        let mut endpoints = Vec::with_capacity(n);
        for (i, own) in ports.iter().enumerate() {
            let direct = addr(own["client"]);
            let proxy = if cfg.client_links {
                let seed = cfg.seed ^ (0xc11e_u64 << 32 | i as u64);
                Some(
                    Proxy::start(direct, seed, cancel.clone(), tracker)
                        .await
                        .context("cannot start a client proxy")?,
                )
            } else {
                None
            };
            endpoints.push(Endpoint {
                id: ids[i].clone(),
                addr: proxy.as_ref().map_or(direct, Proxy::addr),
                direct,
            });
            client_links.push(proxy);
        }
        let mut disks = Vec::new();
        let mut unmount_watch = None;
        if cfg.disks {
            faultline_diskfs::fuse_available().map_err(anyhow::Error::msg)?;
            let mountpoints: Vec<PathBuf> = ids.iter().map(|id| paths.nodes.join(id)).collect();
            unmount_watch = Some(crate::supervisor::UnmountWatch::start(&mountpoints)?);
            for id in &ids {
                let backing = paths.nodes.join(format!("{id}.disk"));
                let mountpoint = paths.nodes.join(id);
                for d in [&backing, &mountpoint] {
                    std::fs::create_dir_all(d)
                        .with_context(|| format!("cannot create {}", d.display()))?;
                }
                disks.push(
                    faultline_diskfs::mount(&backing, &mountpoint, &Default::default())
                        .with_context(|| format!("cannot mount node {id}'s disk"))?,
                );
            }
        }
        let faketime = if cfg.clocks {
            Some(crate::clock::library()?)
        } else {
            None
        };
        let mut clocks = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let mut launch = db.launch(&names, i)?;
            if let Some(lib) = &faketime {
                crate::clock::check_program(&launch.program, db.name())?;
                let file = paths.nodes.join(format!("{id}.faketime"));
                clocks.push(NodeClock::new(file.clone())?);
                launch.env.extend(crate::clock::env(lib, &file));
            }
            supervisor.add(NodeSpec {
                id: id.clone(),
                launch,
                log_path: paths.nodes.join(format!("{id}.log")),
            });
        }
        // The founders; spares start when the member nemesis grows.
        for id in &ids[..founders] {
            supervisor.start(id)?;
        }
        let membership = if cfg.spares > 0 {
            let m = membership::build(&db, &names, &endpoints)?;
            if m.is_none() {
                bail!("{}: spares need a [membership] section", db.file());
            }
            m
        } else {
            None
        };
        let protocol = protocol::build(
            &db,
            &names,
            ProtocolEnv {
                endpoints: endpoints.clone(),
                read_mode: cfg.read_mode,
                supervisor: supervisor.clone(),
                log_dir: paths.clients.clone(),
            },
        )?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(1000))
            .pool_max_idle_per_host(2)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Cluster {
            db,
            names,
            endpoints,
            supervisor,
            protocol,
            links,
            client_links,
            net: std::sync::Mutex::new(Net {
                cut: BTreeMap::new(),
                peers: LinkMode::Pass,
                clients: LinkMode::Pass,
            }),
            http,
            paths: paths.clone(),
            clocks: std::sync::Mutex::new(clocks),
            disks,
            _unmount_watch: unmount_watch,
            members: Arc::new(Members::new(n, founders)),
            membership,
            last_view: std::sync::Mutex::new(None),
            faketime,
        })
    }

    /// Every node's id in order: the members and the spares (the address
    /// book).
    pub fn ids(&self) -> Vec<String> {
        self.names.ids.clone()
    }

    /// The members' ids in order (every node, in a cluster without spares).
    pub fn members(&self) -> Vec<String> {
        self.members
            .indices()
            .into_iter()
            .map(|i| self.names.ids[i].clone())
            .collect()
    }

    /// The spares' ids in order: not members, stopped, data wiped.
    pub fn spares(&self) -> Vec<String> {
        (0..self.names.ids.len())
            .filter(|i| !self.members.is_member(*i))
            .map(|i| self.names.ids[i].clone())
            .collect()
    }

    /// Members whose process is killed or paused now.
    pub fn down(&self) -> Vec<String> {
        self.members()
            .into_iter()
            .filter(|id| {
                self.supervisor
                    .state(id)
                    .is_ok_and(|s| s != ProcState::Running)
            })
            .collect()
    }

    /// Who is a member, shared with the clients (they send to members).
    pub fn members_handle(&self) -> Arc<Members> {
        self.members.clone()
    }

    /// The voters as last seen: after the last membership step, or the
    /// members when no step has happened.
    pub fn voters(&self) -> Vec<String> {
        match &*self.last_view.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(v) => v.voters.clone(),
            None => self.members(),
        }
    }

    fn index_of(&self, id: &str) -> Result<usize> {
        match self.names.ids.iter().position(|n| n == id) {
            Some(i) => Ok(i),
            None => bail!("no node named {id}"),
        }
    }

    /// The proxy node `from` dials to reach node `to` on peer port `port`.
    pub fn link(&self, port: &str, from: &str, to: &str) -> Result<&Proxy> {
        let (i, j) = (self.index_of(from)?, self.index_of(to)?);
        match self.links.get(port).and_then(|rows| rows[i][j].as_ref()) {
            Some(p) => Ok(p),
            None => bail!("no link {from}→{to} on port {port}"),
        }
    }

    /// The proxy on the client link to `node`, when client links are proxied.
    pub fn client_link(&self, node: &str) -> Result<Option<&Proxy>> {
        Ok(self.client_links[self.index_of(node)?].as_ref())
    }

    /// One node's status from the leader probe, or `None`.
    pub async fn status(&self, id: &str) -> Option<Status> {
        let i = self.index_of(id).ok()?;
        probe::status(&self.db, &self.names, i, &self.http, &*self.protocol).await
    }

    /// Every member's status, concurrently, in id order.
    pub async fn statuses(&self) -> Vec<Option<Status>> {
        let ids = self.members();
        futures::future::join_all(ids.iter().map(|id| self.status(id))).await
    }

    /// The leader with the highest term among nodes that say they lead.
    pub async fn leader(&self) -> Option<String> {
        self.statuses()
            .await
            .into_iter()
            .flatten()
            .filter(Status::leads)
            .max_by_key(|s| s.term)
            .map(|s| s.id)
    }

    /// The last lines of a node's log.
    pub fn log_tail(&self, id: &str) -> String {
        tail(&self.paths.nodes.join(format!("{id}.log")), 5)
    }

    fn exited(&self) -> Result<()> {
        if let Some((id, what)) = self.supervisor.poll_exits().into_iter().next() {
            bail!(
                "node {id} {what} before the cluster was ready; the end of {}:\n{}",
                self.paths.nodes.join(format!("{id}.log")).display(),
                self.log_tail(&id)
            );
        }
        Ok(())
    }

    /// Waits until every node's readiness probe passes, then (when the
    /// system says who leads) until a leader is known to a majority.
    /// Returns the leader, if known.
    pub async fn wait_ready(&self, within: Duration) -> Result<Option<String>> {
        let deadline = Instant::now() + within;
        let ready_timeout = self.db.ready_timeout().min(within);
        let ready_until = Instant::now() + ready_timeout;
        for i in self.members.indices() {
            let id = &self.names.ids[i];
            loop {
                self.exited()?;
                match probe::ready(&self.db, &self.names, i, &self.http).await {
                    Ok(()) => break,
                    Err(why) if Instant::now() >= ready_until => bail!(
                        "{}: ready: node {id} did not pass its readiness probe within {:.1} s \
                         (last: {why}); the end of its log:\n{}",
                        self.db.file(),
                        ready_timeout.as_secs_f64(),
                        self.log_tail(id)
                    ),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        if !self.db.has_leader_probe() {
            return Ok(None);
        }
        loop {
            self.exited()?;
            let statuses = self.statuses().await;
            if let Some(l) = agreed_leader(&statuses) {
                return Ok(Some(l));
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = statuses
                    .iter()
                    .zip(&self.members())
                    .map(|(s, id)| match s {
                        Some(s) => format!(
                            "{id}: {}{}",
                            s.role,
                            s.term.map(|t| format!(" term {t}")).unwrap_or_default()
                        ),
                        None => format!("{id}: no answer"),
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

    /// Changes the network faults and sets every link's mode to match.
    fn with_net(&self, change: impl FnOnce(&mut Net)) {
        let mut net = self.net.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut net);
        for rows in self.links.values() {
            for (i, row) in rows.iter().enumerate() {
                for (j, p) in row.iter().enumerate() {
                    if let Some(p) = p {
                        let m = match net.cut.get(&(i, j)) {
                            Some(CutMode::Blackhole) => LinkMode::Blackhole,
                            Some(CutMode::Reject) => LinkMode::Reject,
                            None => net.peers,
                        };
                        if p.mode() != m {
                            p.set_mode(m);
                        }
                    }
                }
            }
        }
        for p in self.client_links.iter().flatten() {
            if p.mode() != net.clients {
                p.set_mode(net.clients);
            }
        }
    }

    fn set_quality(&self, links: LinkScope, m: LinkMode) {
        self.with_net(|net| {
            if links.peers() {
                net.peers = m;
            }
            if links.clients() {
                net.clients = m;
            }
        });
    }

    /// Carries out one fault. Returns a short description of what was done.
    pub fn apply(&self, fault: &Fault) -> Result<String> {
        match fault {
            Fault::Partition { cut, mode, .. } => {
                let mut pairs = Vec::with_capacity(cut.len());
                for [a, b] in cut {
                    pairs.push((self.index_of(a)?, self.index_of(b)?));
                }
                self.with_net(|net| net.cut.extend(pairs.into_iter().map(|p| (p, *mode))));
                Ok(format!("{} links cut", cut.len()))
            }
            Fault::Repartition { cut, mode, .. } => {
                let mut pairs = Vec::with_capacity(cut.len());
                for [a, b] in cut {
                    pairs.push((self.index_of(a)?, self.index_of(b)?));
                }
                // One change of every link's mode: nothing that stays cut
                // passes for a moment.
                self.with_net(|net| net.cut = pairs.into_iter().map(|p| (p, *mode)).collect());
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
            Fault::Revive { nodes } => {
                let mut out = Vec::new();
                for n in nodes {
                    if self.supervisor.state(n)? == ProcState::Killed
                        && self.members.is_member(self.index_of(n)?)
                    {
                        self.supervisor.start(n)?;
                        out.push(n.as_str());
                    }
                }
                Ok(format!("restarted {}", out.join(" ")))
            }
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
                links,
            } => {
                let m = LinkMode::Delay {
                    latency_ms: *latency_ms,
                    jitter_ms: *jitter_ms,
                };
                self.set_quality(*links, m);
                Ok(format!("links delayed {latency_ms}±{jitter_ms} ms"))
            }
            Fault::LinkLoss { probability, links } => {
                let m = LinkMode::Loss {
                    probability: *probability,
                };
                self.set_quality(*links, m);
                Ok(format!(
                    "links lose connections at p={probability} per chunk"
                ))
            }
            Fault::LinkBandwidth {
                bytes_per_sec,
                links,
            } => {
                let m = LinkMode::Bandwidth {
                    bytes_per_sec: *bytes_per_sec,
                };
                self.set_quality(*links, m);
                Ok(format!("links limited to {bytes_per_sec} B/s"))
            }
            Fault::ClearLinks => {
                self.set_quality(LinkScope::AllLinks, LinkMode::Pass);
                Ok("links clear".into())
            }
            Fault::Clock { nodes, action, .. } => {
                let mut clocks = self.clocks.lock().unwrap_or_else(|e| e.into_inner());
                if clocks.is_empty() {
                    bail!("the nodes were started without libfaketime");
                }
                for n in nodes {
                    let running = self.supervisor.running_for(n)?;
                    clocks[self.index_of(n)?].apply(*action, running)?;
                }
                Ok(format!("clocks of {}: {}", nodes.join(" "), action.name()))
            }
            Fault::ClockReset => {
                self.reset_clocks()?;
                Ok("clocks reset".into())
            }
            Fault::Disk { nodes, action, .. } => {
                if self.disks.is_empty() {
                    bail!("the nodes' data directories are not on faultline's filesystem");
                }
                let mut done = Vec::new();
                for n in nodes {
                    let disk = self.disks[self.index_of(n)?].control();
                    match action {
                        DiskAction::PowerCut { torn } => {
                            self.supervisor.kill(n)?;
                            let lost = disk.lose_unsynced(*torn)?;
                            done.push(format!(
                                "{n}: power cut, {} unsynced bytes in {} files lost{}",
                                lost.bytes,
                                lost.files.len(),
                                lost.torn
                                    .map(|t| format!(", {} of a {}-byte write kept", t.kept, t.len))
                                    .unwrap_or_default()
                            ));
                        }
                        DiskAction::Corrupt { flip, seed } => {
                            self.supervisor.kill(n)?;
                            disk.lose_unsynced(None)?;
                            let kind = if *flip {
                                faultline_diskfs::DamageKind::FlipBits
                            } else {
                                faultline_diskfs::DamageKind::Truncate
                            };
                            let suffix = self.db.spec.disk.damage_suffix.as_deref();
                            let d = disk.damage(*seed, kind, suffix)?;
                            done.push(format!(
                                "{n}: {} {} at offset {} ({} of {} bytes)",
                                if *flip {
                                    "flipped bits in"
                                } else {
                                    "truncated"
                                },
                                d.path.display(),
                                d.offset,
                                d.count,
                                d.len_before
                            ));
                        }
                        DiskAction::Full => {
                            disk.set_full(true);
                            done.push(format!("{n}: disk full"));
                        }
                    }
                }
                Ok(done.join("; "))
            }
            Fault::DiskHeal => {
                for d in &self.disks {
                    d.control().set_full(false);
                }
                Ok(format!(
                    "disks healed, restarted {}",
                    self.restart_killed()?.join(" ")
                ))
            }
            Fault::Grow { .. } | Fault::Shrink { .. } | Fault::Replace { .. } => bail!(
                "{}: a membership change waits on the system: it is carried out by \
                 Cluster::change_members",
                fault.label()
            ),
            Fault::Clear => {
                for d in &self.disks {
                    d.control().set_full(false);
                }
                self.with_net(|net| {
                    net.cut.clear();
                    net.peers = LinkMode::Pass;
                    net.clients = LinkMode::Pass;
                });
                self.reset_clocks()?;
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

    /// Carries out a membership change (the member nemesis's steps): the
    /// configuration afterwards as the leader saw it, on success. A step
    /// first looks at the configuration and does only what is left, so a
    /// step that was refused half-way is finished when it is tried again.
    pub async fn change_members(&self, fault: &Fault) -> (Result<String>, Option<MemberView>) {
        let Some(driver) = self.membership.as_deref() else {
            return (
                Err(anyhow::anyhow!(
                    "{}: this cluster has no spares ({} has no [membership], or the member \
                     nemesis is off)",
                    fault.label(),
                    self.db.file()
                )),
                None,
            );
        };
        let result = match fault {
            Fault::Grow { node, split } => self.grow(driver, node, None, *split).await,
            Fault::Shrink { node } => self.shrink(driver, node).await,
            // In one joint change where the system offers it (two voters
            // change at once), else a promotion and then a removal.
            Fault::Replace { add, remove, split } => {
                match self.grow(driver, add, Some(remove), *split).await {
                    Ok(_) => self.shrink(driver, remove).await,
                    Err(e) => Err(e),
                }
            }
            other => Err(anyhow::anyhow!("{} is no membership change", other.label())),
        };
        match result {
            Ok(view) => {
                *self.last_view.lock().unwrap_or_else(|e| e.into_inner()) = Some(view.clone());
                let mut text = format!("voters {}", view.voters.join(","));
                if !view.learners.is_empty() {
                    text.push_str(&format!(", learners {}", view.learners.join(",")));
                }
                if let Some(l) = &view.leader {
                    text.push_str(&format!(", leader {l}"));
                }
                (Ok(text), Some(view))
            }
            Err(e) => (Err(e.context(fault.label())), None),
        }
    }

    /// The leader and its view of the configuration: asks the running
    /// members in turn and follows the leader they name.
    async fn leader_view(
        &self,
        driver: &dyn Membership,
    ) -> Result<(usize, MemberView), MemberError> {
        let mut last = MemberError::Unreachable("no running member".into());
        for i in self.members.indices() {
            let id = &self.names.ids[i];
            if self.supervisor.state(id).ok() != Some(ProcState::Running) {
                continue;
            }
            let view = match driver.members(i).await {
                Ok(v) => v,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let Some(l) = view.leader.as_deref().and_then(|l| self.index_of(l).ok()) else {
                last = MemberError::Refused {
                    kind: "no_leader".into(),
                    message: format!("{id} knows no leader"),
                };
                continue;
            };
            if l == i {
                return Ok((i, view));
            }
            match driver.members(l).await {
                Ok(v) if v.leader.as_deref() == Some(self.names.ids[l].as_str()) => {
                    return Ok((l, v));
                }
                Ok(_) => {
                    last = MemberError::NotLeader { leader: None };
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Asks the leader for a change, following a `not_leader` answer once.
    async fn change_at_leader(
        &self,
        driver: &dyn Membership,
        op: ChangeOp,
        node: usize,
    ) -> Result<MemberView, MemberError> {
        let (l, _) = self.leader_view(driver).await?;
        match driver.change(l, op, node).await {
            Err(MemberError::NotLeader {
                leader: Some(other),
            }) if self.index_of(&other).is_ok_and(|o| o != l) => {
                let o = self.index_of(&other).unwrap_or(l);
                driver.change(o, op, node).await
            }
            r => r,
        }
    }

    /// Grows the cluster by spare `id`: a fresh data directory, added as a
    /// learner, started to join, promoted once it has caught up — with
    /// `replacing`, in the same change that removes that voter, where the
    /// system offers it (the caller then stops the removed node).
    async fn grow(
        &self,
        driver: &dyn Membership,
        id: &str,
        replacing: Option<&str>,
        mut split: bool,
    ) -> Result<MemberView> {
        let j = self.index_of(id)?;
        let replacing = match replacing {
            Some(r) => Some(self.index_of(r)?),
            None => None,
        };
        let (_, view) = self.leader_view(driver).await?;
        if view.votes(id) {
            self.members.set(j, true);
            return Ok(view);
        }
        if !view.learns(id) {
            if self.members.is_member(j) {
                bail!("{id} is a member the configuration does not name");
            }
            // A spare: stopped, data wiped, told who the members are.
            self.supervisor.kill(id)?;
            self.wipe(j)?;
            let members: Vec<usize> = view
                .members()
                .iter()
                .filter_map(|m| self.index_of(m).ok())
                .collect();
            let mut launch = self.db.launch_joining(&self.names, j, &members)?;
            if let Some(lib) = &self.faketime {
                let file = self.paths.nodes.join(format!("{id}.faketime"));
                launch.env.extend(crate::clock::env(lib, &file));
            }
            self.supervisor.set_launch(id, launch)?;
            self.change_at_leader(driver, ChangeOp::AddLearner, j)
                .await
                .context("add-learner")?;
        }
        // From here on it is a member: clients may send to it, faults may
        // hit it, and a kill is followed by a restart.
        self.members.set(j, true);
        if self.supervisor.state(id)? == ProcState::Killed {
            self.supervisor.start(id)?;
        }
        let deadline = Instant::now() + CATCH_UP_WITHIN;
        let mut last: String;
        loop {
            match self.leader_view(driver).await {
                Ok((_, v)) if v.votes(id) => return Ok(v),
                Ok((l, v)) if !v.learns(id) => {
                    bail!(
                        "{id} is neither learner nor voter at {} (voters {})",
                        self.names.ids[l],
                        v.voters.join(",")
                    )
                }
                Ok((l, v)) => match driver.caught_up(l, j).await {
                    Ok(true) => {
                        let both = replacing
                            .filter(|&r| v.votes(&self.names.ids[r]))
                            .and_then(|r| driver.replace(l, j, r));
                        let asked = match both {
                            Some(both) => both,
                            None => driver.change(l, ChangeOp::Promote, j),
                        };
                        // Asked split once at most; whatever comes of it,
                        // the step goes on unsplit.
                        let was_split = std::mem::take(&mut split);
                        let asked = if was_split {
                            self.split_while(&[l, j], asked).await
                        } else {
                            asked.await
                        };
                        match asked {
                            Ok(v) => return Ok(v),
                            // Not caught up after all, or another change in
                            // flight: ask again until the deadline. A change
                            // asked while split may have been lost with its
                            // leader's term: the next round reads the
                            // configuration and asks for what is left.
                            Err(
                                e @ (MemberError::Refused { .. } | MemberError::NotLeader { .. }),
                            ) => {
                                last = format!("promote: {e}");
                            }
                            Err(e @ MemberError::Indeterminate(_)) if was_split => {
                                last = format!("promote (split): {e}");
                            }
                            Err(e) => return Err(anyhow::Error::new(e).context("promote")),
                        }
                    }
                    Ok(false) => last = format!("{id} has not caught up"),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                bail!(
                    "{id} was not promoted within {} s (last: {last}); it stays a learner",
                    CATCH_UP_WITHIN.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Awaits `asked` with the peer links between `side` and every other
    /// node cut (blackhole) for [`SPLIT_FOR`], then restores them: only the
    /// links this cut added, so another partition's stay.
    async fn split_while<T>(&self, side: &[usize], asked: BoxFuture<'_, T>) -> T {
        let n = self.names.ids.len();
        let mut added = Vec::new();
        self.with_net(|net| {
            for a in side.iter().copied() {
                for b in (0..n).filter(|b| !side.contains(b)) {
                    for pair in [(a, b), (b, a)] {
                        if let std::collections::btree_map::Entry::Vacant(e) = net.cut.entry(pair) {
                            e.insert(CutMode::Blackhole);
                            added.push(pair);
                        }
                    }
                }
            }
        });
        // The split holds its whole time even when the change is answered
        // early: a system that completed a change it could not have (no
        // majority of the old voters here) has a second leader on the far
        // side only after an election timeout, and both take writes.
        let mut asked = asked;
        let hold = tokio::time::sleep(SPLIT_FOR);
        tokio::pin!(hold);
        let out = tokio::select! {
            out = &mut asked => Some(out),
            () = &mut hold => None,
        };
        if out.is_some() {
            hold.await;
        }
        self.with_net(|net| {
            for pair in &added {
                net.cut.remove(pair);
            }
        });
        match out {
            Some(out) => out,
            None => asked.await,
        }
    }

    /// Shrinks the cluster by voter `id`: removed from the configuration,
    /// then stopped and wiped, a spare again.
    async fn shrink(&self, driver: &dyn Membership, id: &str) -> Result<MemberView> {
        let j = self.index_of(id)?;
        let (_, mut view) = self.leader_view(driver).await?;
        if view.members().iter().any(|m| m == id) {
            view = self
                .change_at_leader(driver, ChangeOp::Remove, j)
                .await
                .context("remove")?;
        }
        self.members.set(j, false);
        self.supervisor.kill(id)?;
        self.wipe(j)?;
        // The leader's view once it no longer counts the node (the node
        // removed may have led: then a new leader is elected first). If
        // none shows soon, the removal's own answer stands.
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok((_, v)) = self.leader_view(driver).await
                && !v.members().iter().any(|m| m == id)
            {
                return Ok(v);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(view)
    }

    /// Empties node `j`'s data directory (the folder stays: it may be a
    /// mount point).
    fn wipe(&self, j: usize) -> Result<()> {
        let dir = &self.names.data_dirs[j];
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        for e in entries {
            let p = e
                .with_context(|| format!("cannot read {}", dir.display()))?
                .path();
            let r = if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            r.with_context(|| format!("cannot wipe {}", p.display()))?;
        }
        Ok(())
    }

    fn reset_clocks(&self) -> Result<()> {
        let mut clocks = self.clocks.lock().unwrap_or_else(|e| e.into_inner());
        for (c, id) in clocks.iter_mut().zip(self.ids()) {
            c.reset(self.supervisor.running_for(&id)?)?;
        }
        Ok(())
    }

    /// Restarts killed members (spares stay stopped: a member that was
    /// killed and then removed is a spare, and does not come back).
    fn restart_killed(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for id in self.members() {
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

/// The leader a majority agrees on: the leader of the highest term, named
/// by a majority when the system reports whom nodes follow, else answered
/// by a majority of nodes (the system only says who leads).
pub fn agreed_leader(statuses: &[Option<Status>]) -> Option<String> {
    let n = statuses.len();
    let answered: Vec<&Status> = statuses.iter().flatten().collect();
    let l = answered
        .iter()
        .filter(|s| s.leads())
        .max_by_key(|s| s.term)?;
    let names_leaders = answered.iter().any(|s| s.leader.is_some());
    let agree = if names_leaders {
        answered
            .iter()
            .filter(|s| s.leader.as_deref() == Some(l.id.as_str()) && s.term == l.term)
            .count()
    } else {
        answered.len()
    };
    (agree > n / 2).then(|| l.id.clone())
}

/// The address rewrite of link `i→j` on peer port `port`, when the spec
/// says the dialler writes its own address there (`self_address`).
fn self_address_rewrite(
    db: &Db,
    names: &NodeNames,
    port: &str,
    i: usize,
    j: usize,
) -> Result<Option<Rewrite>> {
    let Some(sa) = db.spec.self_address.get(port) else {
        return Ok(None);
    };
    let field = format!("self_address.{port}.text");
    let (from, to) = names
        .self_address(&db.spec, &sa.text, i, j)
        .map_err(|e| anyhow::anyhow!("{}: {field}: {e}", db.file()))?;
    if from.len() != to.len() {
        bail!(
            "{}: {field}: node {} writes {from:?}, which would become {to:?} for node {}: \
             the rewrite must keep the length (the dialler's framing may count it)",
            db.file(),
            names.ids[i],
            names.ids[j]
        );
    }
    Ok(Some(Rewrite {
        from: from.into_bytes(),
        to: to.into_bytes(),
    }))
}

fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(id: &str, role: &str, term: Option<u64>, leader: Option<&str>) -> Option<Status> {
        Some(Status {
            id: id.into(),
            role: role.into(),
            term,
            leader: leader.map(String::from),
        })
    }

    #[test]
    fn a_leader_needs_a_majority() {
        let named = [
            st("n1", "leader", Some(3), Some("n1")),
            st("n2", "follower", Some(3), Some("n1")),
            None,
        ];
        assert_eq!(agreed_leader(&named).as_deref(), Some("n1"));
        let stale = [
            st("n1", "leader", Some(3), Some("n1")),
            st("n2", "follower", Some(2), Some("n1")),
            None,
        ];
        assert_eq!(agreed_leader(&stale), None);
        // A system that only says who leads: a majority must answer.
        let roles = [
            st("n1", "leader", None, None),
            st("n2", "follower", None, None),
            None,
        ];
        assert_eq!(agreed_leader(&roles).as_deref(), Some("n1"));
        let lonely = [st("n1", "leader", None, None), None, None];
        assert_eq!(agreed_leader(&lonely), None);
    }
}

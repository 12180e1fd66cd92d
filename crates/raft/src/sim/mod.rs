//! A seeded deterministic simulator of a Raft cluster: 3 or 5 cores, a
//! network that drops, duplicates, reorders and delays messages, partitions
//! (symmetric and one-way) that come and heal, crashes that lose everything
//! not persisted, restarts, snapshots, and clients that write and read. The
//! checks of [`check`] run as it goes; at the end the network heals and every
//! acknowledged write must reach every node.
//!
//! With membership churn ([`SimOptions::membership`], or the `membership`
//! profile) the cluster draws on a pool of [`POOL`] node ids: it starts with
//! [`SimOptions::nodes`] voters, and an administrator asks whichever node
//! leads for changes — add a spare as a learner (started with an empty
//! disk and no peers), promote it, remove a voter, or replace one with a
//! learner in one joint change — with faults aimed at the moments just
//! after. A removed node is either stopped for good once its removal is
//! committed or left running, and may be added again later. After healing
//! only the members of the cluster must converge.
//!
//! Every random choice comes from one ChaCha8 stream seeded by
//! [`SimOptions::seed`], so a run is replayed exactly by its seed and options
//! ([`SimOptions::replay_command`]).

mod check;
mod churn;

use std::collections::BTreeSet;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::{FxHashMap, FxHashSet};

use check::{Checker, fnv};
pub use check::{Property, Violation};
pub use churn::ChurnStats;

use crate::types::{
    Bug, Config, Entry, EntryKind, Membership, Message, NodeId, Persisted, ReadMode, Ready, Role,
    Snapshot, SnapshotMeta,
};
use crate::{Error, Raft};

/// A fault mix: how often each kind of trouble happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Every knob drawn per seed: the default, for broad coverage.
    Mixed,
    /// Many crashes and restarts, short delays: stresses elections and
    /// persistence (finds `forget-vote`, `vote-without-log-check`).
    Crashes,
    /// Many partitions, no CheckQuorum, leaders isolated with clients still
    /// reading from them (finds `stale-leader-read`).
    Partitions,
    /// Short leaderships: lossy links, one entry per message, leaders cut
    /// off right after they commit, so logs diverge as in Figure 8 (finds
    /// `commit-previous-term`).
    Churn,
    /// Membership churn (always on in this profile): frequent changes,
    /// snapshots sent to new learners, and crashes, isolations and splits
    /// right after a change is asked for (finds `single-step-change` and
    /// `config-on-commit`).
    Membership,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 5] = [
        Profile::Mixed,
        Profile::Crashes,
        Profile::Partitions,
        Profile::Churn,
        Profile::Membership,
    ];

    /// The name used on command lines.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Mixed => "mixed",
            Profile::Crashes => "crashes",
            Profile::Partitions => "partitions",
            Profile::Churn => "churn",
            Profile::Membership => "membership",
        }
    }

    /// Looks a profile up by name.
    pub fn from_name(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// The ids a cluster with membership churn draws on: 1 to `POOL`.
pub const POOL: usize = 7;

/// What to simulate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimOptions {
    /// The seed of every random choice.
    pub seed: u64,
    /// Cluster size (3 or 5); with membership churn, the initial voters
    /// (3 to 5) out of a pool of [`POOL`] ids.
    pub nodes: usize,
    /// Ticks of faulty operation before healing.
    pub steps: u64,
    /// Deliberate mistakes switched on in every node.
    pub bugs: Vec<Bug>,
    /// The fault mix.
    pub profile: Profile,
    /// Membership churn on top of the profile's faults (always on with
    /// [`Profile::Membership`]).
    pub membership: bool,
    /// Properties not checked (to see what else a mistake breaks); empty
    /// normally.
    pub ignore: Vec<Property>,
}

impl SimOptions {
    /// Options with the mixed profile and no bugs.
    pub fn new(seed: u64, nodes: usize, steps: u64) -> SimOptions {
        SimOptions {
            seed,
            nodes,
            steps,
            bugs: Vec::new(),
            profile: Profile::Mixed,
            membership: false,
            ignore: Vec::new(),
        }
    }

    /// True when the administrator changes the membership in this run.
    pub fn churn(&self) -> bool {
        self.membership || self.profile == Profile::Membership
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut s = format!(
            "cargo run -p faultline-raft --release --bin raft-sim -- --seed {} --nodes {} --steps {}",
            self.seed, self.nodes, self.steps
        );
        if self.profile != Profile::Mixed {
            s.push_str(&format!(" --profile {}", self.profile.name()));
        }
        if self.membership && self.profile != Profile::Membership {
            s.push_str(" --membership");
        }
        for b in &self.bugs {
            s.push_str(&format!(" --bug {}", b.name()));
        }
        for p in &self.ignore {
            s.push_str(&format!(" --ignore {}", p.key()));
        }
        s
    }
}

/// What a run did and found.
#[derive(Clone, Debug)]
pub struct SimReport {
    /// The options it ran with.
    pub options: SimOptions,
    /// Ticks simulated, the healing period included.
    pub steps: u64,
    /// Messages delivered.
    pub messages: u64,
    /// Writes acknowledged to clients.
    pub acked_writes: u64,
    /// Reads served to clients.
    pub reads: u64,
    /// Crashes injected.
    pub crashes: u64,
    /// Crashes that caught a node with a Ready not yet acted on (lost, or
    /// persisted only in part).
    pub torn_readies: u64,
    /// Restarts of crashed nodes.
    pub restarts: u64,
    /// Snapshots nodes installed from a leader.
    pub snapshots_installed: u64,
    /// What the membership administrator did (all zero without churn).
    pub churn: ChurnStats,
    /// The first broken property, if any.
    pub violation: Option<Violation>,
}

impl SimReport {
    /// A multi-line description of the failure with the replay command, or
    /// None when the run passed.
    pub fn failure_text(&self) -> Option<String> {
        let v = self.violation.as_ref()?;
        Some(format!(
            "raft-sim: {} violated at step {} (seed {}): {}\nreplay: {}",
            v.property.name(),
            v.step,
            self.options.seed,
            v.detail,
            self.options.replay_command()
        ))
    }
}

/// The knobs of one run, drawn from the seed and the profile.
#[derive(Clone, Debug)]
struct Knobs {
    check_quorum: bool,
    pre_vote: bool,
    heartbeat_ticks: u32,
    election_ticks: u32,
    max_entries: usize,
    max_bytes: usize,
    max_inflight: usize,
    drop: f64,
    dup: f64,
    max_delay: u64,
    crash: f64,
    restart: f64,
    partition: f64,
    heal: f64,
    compact: f64,
    transfer: f64,
    writes: f64,
    reads: f64,
    /// Probability that a node that just received a message crashes right
    /// after acting on it (and, half the time, restarts at once).
    bounce: f64,
    /// Probability that a node that just granted a vote crashes and
    /// restarts at once (it must remember that vote).
    vote_bounce: f64,
    /// Probability that a leader that just applied entries crashes (cutting
    /// it off in the middle of replicating its term's entries).
    commit_crash: f64,
    /// Probability that a node acts on its Ready right after an event (else
    /// at the end of the tick, leaving a window in which a crash loses it).
    eager_ready: f64,
    /// With membership churn: probability per tick that the administrator
    /// asks a leader for a change.
    admin: f64,
    /// Probability that a fault strikes right after a change was accepted
    /// (the leader crashes or is isolated, or the network splits).
    after_change: f64,
    /// Probability that a removed node is stopped for good (else it keeps
    /// running, and may be added again).
    retire: f64,
}

impl Knobs {
    fn draw(rng: &mut ChaCha8Rng, profile: Profile) -> Knobs {
        let mut k = Knobs {
            check_quorum: rng.random_bool(0.75),
            pre_vote: rng.random_bool(0.75),
            heartbeat_ticks: rng.random_range(1..=2),
            election_ticks: 10,
            max_entries: [1, 2, 4, 64][rng.random_range(0..4)],
            max_bytes: [16, 64, 1 << 20][rng.random_range(0..3)],
            max_inflight: [1, 2, 4, 16][rng.random_range(0..4)],
            drop: [0.0, 0.02, 0.1][rng.random_range(0..3)],
            dup: [0.0, 0.02, 0.05][rng.random_range(0..3)],
            max_delay: rng.random_range(1..=4),
            crash: [0.0, 0.01, 0.03][rng.random_range(0..3)],
            restart: 0.1,
            partition: [0.01, 0.03][rng.random_range(0..2)],
            heal: [0.05, 0.1][rng.random_range(0..2)],
            compact: 0.02,
            transfer: 0.005,
            writes: 0.8,
            reads: 0.5,
            eager_ready: 0.8,
            bounce: 0.0005,
            vote_bounce: 0.01,
            commit_crash: 0.002,
            admin: 0.04,
            after_change: 0.2,
            retire: 0.5,
        };
        match profile {
            Profile::Mixed => {}
            Profile::Crashes => {
                k.crash = 0.06;
                k.restart = 0.3;
                k.max_delay = rng.random_range(1..=2);
                k.partition = 0.02;
                k.election_ticks = 6;
                k.heartbeat_ticks = 1;
                k.eager_ready = 0.5;
                k.bounce = 0.01;
                k.pre_vote = rng.random_bool(0.5);
                k.vote_bounce = 0.3;
                k.commit_crash = 0.02;
            }
            Profile::Partitions => {
                k.check_quorum = false;
                k.partition = 0.06;
                k.heal = 0.03;
                k.crash = 0.005;
                k.reads = 1.0;
            }
            Profile::Churn => {
                k.election_ticks = 6;
                k.heartbeat_ticks = 1;
                k.max_entries = 1;
                k.max_inflight = 1;
                k.drop = 0.15;
                k.partition = 0.08;
                k.heal = 0.25;
                k.crash = 0.03;
                k.restart = 0.4;
                k.bounce = 0.005;
                k.vote_bounce = 0.05;
                k.commit_crash = 0.5;
                k.writes = 1.0;
            }
            Profile::Membership => {
                k.crash = [0.005, 0.01, 0.02][rng.random_range(0..3)];
                k.restart = 0.2;
                k.partition = [0.01, 0.02][rng.random_range(0..2)];
                k.heal = [0.03, 0.1][rng.random_range(0..2)];
                k.compact = 0.05;
                k.admin = [0.05, 0.1, 0.2][rng.random_range(0..3)];
                k.after_change = [0.4, 0.8][rng.random_range(0..2)];
                k.commit_crash = 0.01;
                k.writes = 0.25;
            }
        }
        k
    }
}

/// The simulated application: a state hash folded over applied commands.
#[derive(Clone, Copy, Debug, Default)]
struct App {
    applied: u64,
    state: u64,
}

impl App {
    fn encode(&self) -> Vec<u8> {
        let mut v = self.applied.to_le_bytes().to_vec();
        v.extend_from_slice(&self.state.to_le_bytes());
        v
    }

    fn decode(data: &[u8]) -> Option<App> {
        if data.len() != 16 {
            return None;
        }
        let applied = u64::from_le_bytes(data[..8].try_into().ok()?);
        let state = u64::from_le_bytes(data[8..].try_into().ok()?);
        Some(App { applied, state })
    }
}

/// Where a node of the pool is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    /// Never started: a spare id the administrator may add.
    Spare,
    /// Started: running, or crashed and waiting for a restart.
    Active,
    /// Removed from the cluster and stopped for good.
    Retired,
}

/// One simulated node: the core (None while crashed), its disk and its app.
struct Node {
    id: NodeId,
    /// `Config::peers`: the initial voters, or none for a node that joins.
    peers: Vec<NodeId>,
    life: Life,
    /// Stop it for good once a leader has committed a configuration
    /// without it (it was removed).
    retire: bool,
    /// A leader accepted to add it as a learner before.
    added: bool,
    raft: Option<Raft>,
    disk: Persisted,
    app: App,
    /// Proposals waiting to be applied: index -> (term, command id).
    proposals: FxHashMap<u64, (u64, u64)>,
    /// Reads confirmed, waiting for the app to reach their index.
    confirmed_reads: Vec<(u64, u64)>,
    /// Reads asked of this node, not yet confirmed or aborted.
    asked_reads: BTreeSet<u64>,
    restarts: u64,
}

struct InFlight {
    deliver_at: u64,
    msg: Message,
}

/// A read in progress: what it must observe.
struct ReadRec {
    required: u64,
}

struct Sim {
    opts: SimOptions,
    knobs: Knobs,
    rng: ChaCha8Rng,
    nodes: Vec<Node>,
    net: Vec<InFlight>,
    /// Directed links that drop everything.
    blocked: BTreeSet<(NodeId, NodeId)>,
    now: u64,
    check: Checker,
    next_cmd: u64,
    max_acked_index: u64,
    /// The highest index observed by a read that completed.
    max_read_index: u64,
    reads: FxHashMap<u64, ReadRec>,
    messages: u64,
    acked: u64,
    served: u64,
    crashes: u64,
    /// Crashes that caught a node with a Ready it had not acted on.
    torn_readies: u64,
    snapshots_installed: u64,
    quiet: bool,
    /// Membership churn is on.
    churn: bool,
    stats: ChurnStats,
    /// A split of the network scheduled shortly after a change: when, and
    /// the nodes on one side (empty: random sides).
    split_at: Option<(u64, Vec<NodeId>)>,
    /// The network does not heal before this tick (a split after a change
    /// holds for a while).
    hold_until: u64,
    /// Per node: the term it last led and the commit index up to which
    /// the commit quorum was checked in it.
    quorum_checked: FxHashMap<NodeId, (u64, u64)>,
    /// Configuration entries seen applied (by index), to count each once.
    configs_applied: FxHashSet<u64>,
}

/// Runs one simulation and reports what it found.
pub fn run(opts: &SimOptions) -> SimReport {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let knobs = Knobs::draw(&mut rng, opts.profile);
    let churn = opts.churn();
    let pool = if churn {
        POOL.max(opts.nodes)
    } else {
        opts.nodes
    };
    let voters: Vec<NodeId> = (1..=opts.nodes as u64).collect();
    let ids: Vec<NodeId> = (1..=pool as u64).collect();
    let nodes = ids
        .iter()
        .map(|&id| Node {
            id,
            peers: if voters.contains(&id) {
                voters.clone()
            } else {
                Vec::new()
            },
            life: if voters.contains(&id) {
                Life::Active
            } else {
                Life::Spare
            },
            retire: false,
            added: false,
            raft: None,
            disk: Persisted::default(),
            app: App::default(),
            proposals: FxHashMap::default(),
            confirmed_reads: Vec::new(),
            asked_reads: BTreeSet::new(),
            restarts: 0,
        })
        .collect();
    let mut sim = Sim {
        opts: opts.clone(),
        knobs,
        rng,
        nodes,
        net: Vec::new(),
        blocked: BTreeSet::new(),
        now: 0,
        check: Checker::default(),
        next_cmd: 1,
        max_acked_index: 0,
        max_read_index: 0,
        reads: FxHashMap::default(),
        messages: 0,
        acked: 0,
        served: 0,
        crashes: 0,
        torn_readies: 0,
        snapshots_installed: 0,
        quiet: false,
        churn,
        stats: ChurnStats::default(),
        split_at: None,
        hold_until: 0,
        quorum_checked: FxHashMap::default(),
        configs_applied: FxHashSet::default(),
    };
    sim.check.ignore = opts.ignore.clone();
    for i in 0..sim.nodes.len() {
        if sim.nodes[i].life == Life::Active {
            sim.start(i);
        }
    }
    sim.main_phase();
    if sim.check.violation.is_none() {
        sim.heal_phase();
    }
    SimReport {
        options: opts.clone(),
        steps: sim.now,
        messages: sim.messages,
        acked_writes: sim.acked,
        reads: sim.served,
        crashes: sim.crashes,
        torn_readies: sim.torn_readies,
        restarts: sim.nodes.iter().map(|n| n.restarts).sum(),
        snapshots_installed: sim.snapshots_installed,
        churn: sim.stats,
        violation: sim.check.violation,
    }
}

impl Sim {
    fn config(&self, id: NodeId, peers: Vec<NodeId>, restarts: u64) -> Config {
        let k = &self.knobs;
        let mut c = Config::new(id, peers);
        c.heartbeat_ticks = k.heartbeat_ticks;
        c.election_ticks = k.election_ticks;
        c.pre_vote = k.pre_vote;
        c.check_quorum = k.check_quorum;
        c.max_entries_per_msg = k.max_entries;
        c.max_bytes_per_msg = k.max_bytes;
        c.max_inflight_msgs = k.max_inflight;
        c.seed = self
            .opts
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(id * 1000 + restarts);
        c.bugs = self.opts.bugs.clone();
        c
    }

    /// Starts (or restarts) node `i` from its disk.
    fn start(&mut self, i: usize) {
        let n = &self.nodes[i];
        let cfg = self.config(n.id, n.peers.clone(), n.restarts);
        match Raft::new(cfg, n.disk.clone()) {
            Ok(r) => {
                let n = &mut self.nodes[i];
                // The app restarts from the persisted snapshot; the core
                // hands out the committed entries after it again.
                n.app = match &n.disk.snapshot {
                    Some(s) => App::decode(&s.data).unwrap_or_default(),
                    None => App::default(),
                };
                n.raft = Some(r);
            }
            Err(e) => self.check.fail(
                Property::Contract,
                format!("node {} refused its own persisted state: {e}", n.id),
            ),
        }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].raft.is_some())
            .collect()
    }

    fn leader(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| {
            self.nodes[i]
                .raft
                .as_ref()
                .is_some_and(|r| r.status().role == Role::Leader)
        })
    }

    /// The leader of the highest term among the running nodes.
    fn top_leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i]
                    .raft
                    .as_ref()
                    .is_some_and(|r| r.status().role == Role::Leader)
            })
            .max_by_key(|&i| self.nodes[i].raft.as_ref().map_or(0, |r| r.status().term))
    }

    /// The members of the cluster as the leader of the highest term sees
    /// them (every node, without churn); None without a leader.
    fn members(&self) -> Option<Vec<NodeId>> {
        let l = self.top_leader()?;
        let r = self.nodes[l].raft.as_ref()?;
        Some(r.membership().0.nodes())
    }

    /// The end of healing: a leader whose configuration is committed and
    /// not joint, and every member of it running, in that configuration,
    /// with every acknowledged write applied.
    fn settled(&self) -> bool {
        let Some(r) = self.top_leader().and_then(|l| self.nodes[l].raft.as_ref()) else {
            return false;
        };
        let (m, at) = r.membership();
        if m.is_joint() || at > r.status().commit_index {
            return false;
        }
        let members = m.nodes();
        self.nodes
            .iter()
            .filter(|n| members.contains(&n.id))
            .all(|n| {
                n.app.applied >= self.max_acked_index
                    && n.raft.as_ref().is_some_and(|x| x.membership().0 == m)
            })
    }

    fn main_phase(&mut self) {
        while self.now < self.opts.steps && self.check.violation.is_none() {
            self.now += 1;
            self.check.step = self.now;
            self.tick_all();
            self.clients();
            if self.churn {
                self.admin();
            }
            // Faults come after ticks and client calls, so that a crash can
            // catch a node holding a Ready it has not acted on yet.
            self.faults();
            self.deliver_due();
            self.end_of_tick();
        }
    }

    /// Heals everything, restarts every node (not those stopped for good),
    /// stops faults, clients and membership changes, and waits for every
    /// acknowledged write to reach every member.
    fn heal_phase(&mut self) {
        self.quiet = true;
        self.blocked.clear();
        for i in 0..self.nodes.len() {
            if self.nodes[i].raft.is_none() && self.nodes[i].life == Life::Active {
                self.nodes[i].restarts += 1;
                self.start(i);
            }
        }
        // A lagging node may catch up one small message per round trip (and
        // a new leader's no-op commits only once a follower reaches it), so
        // the deadline moves while logs or applied indexes keep growing; it
        // is a failure only when nothing moves for `patience` ticks.
        let patience = 100 * u64::from(self.knobs.election_ticks);
        let hard_limit = self.now + 100 * patience;
        let mut last_move = self.now;
        let mut total = self.progress_mark();
        while self.now < hard_limit && self.now - last_move < patience {
            if self.check.violation.is_some() {
                return;
            }
            self.now += 1;
            self.check.step = self.now;
            self.tick_all();
            self.deliver_due();
            self.end_of_tick();
            if self.settled() {
                return;
            }
            let t = self.progress_mark();
            if t != total {
                total = t;
                last_move = self.now;
            }
        }
        if self.check.violation.is_none() {
            let members = self.members();
            let state: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| members.as_ref().is_none_or(|m| m.contains(&n.id)))
                .map(|n| {
                    let conf = n.raft.as_ref().map(|r| r.membership().0.clone());
                    format!("node {} applied {} in {conf:?}", n.id, n.app.applied)
                })
                .collect();
            self.check.fail(
                Property::Liveness,
                format!(
                    "after healing, no log grew and nothing was applied for {} quiet ticks, yet the cluster has not settled (writes acknowledged up to index {}): {} (leader: {:?})",
                    self.now - last_move,
                    self.max_acked_index,
                    state.join("; "),
                    self.top_leader().map(|i| self.nodes[i].id)
                ),
            );
        }
    }

    /// What changes while the cluster makes progress: applied indexes and
    /// log lengths, summed over nodes.
    fn progress_mark(&self) -> (u64, u64) {
        let applied = self.nodes.iter().map(|n| n.app.applied).sum();
        let logs = self
            .nodes
            .iter()
            .filter_map(|n| n.raft.as_ref())
            .map(|r| r.status().last_log_index)
            .sum();
        (applied, logs)
    }

    /// Cuts every link between `victim` and the other nodes, both ways.
    fn isolate(&mut self, victim: NodeId) {
        for o in self.nodes.iter().map(|x| x.id) {
            if o != victim {
                self.blocked.insert((victim, o));
                self.blocked.insert((o, victim));
            }
        }
    }

    /// Cuts every link between the nodes of `side` and the others.
    fn cut_off(&mut self, side: &[NodeId]) {
        for a in self.nodes.iter().map(|x| x.id) {
            for b in self.nodes.iter().map(|x| x.id) {
                if side.contains(&a) != side.contains(&b) {
                    self.blocked.insert((a, b));
                }
            }
        }
    }

    /// Splits the nodes into two random sides.
    fn split(&mut self) {
        let n = self.nodes.len();
        let side: Vec<bool> = (0..n).map(|_| self.rng.random_bool(0.5)).collect();
        for a in 0..n {
            for b in 0..n {
                if side[a] != side[b] {
                    self.blocked.insert((self.nodes[a].id, self.nodes[b].id));
                }
            }
        }
    }

    fn faults(&mut self) {
        let k = self.knobs.clone();
        let n = self.nodes.len();
        let ids: Vec<NodeId> = self.nodes.iter().map(|x| x.id).collect();
        if self.churn {
            if self.split_at.as_ref().is_some_and(|s| s.0 <= self.now) {
                let (_, side) = self.split_at.take().unwrap_or_default();
                // It lasts one to three election timeouts: long enough for
                // each side to elect a leader if it can.
                let e = u64::from(k.election_ticks);
                self.hold_until = self.now + e * self.rng.random_range(1..=3);
                if side.is_empty() {
                    self.split();
                } else {
                    self.cut_off(&side);
                }
            }
            self.retire_removed();
        }
        if self.rng.random_bool(k.partition) {
            match self.rng.random_range(0..4) {
                0 => {
                    // Isolate one node (often the leader).
                    let victim = match self.leader() {
                        Some(l) if self.rng.random_bool(0.6) => ids[l],
                        _ => ids[self.rng.random_range(0..n)],
                    };
                    self.isolate(victim);
                }
                // Split into two sides.
                1 => self.split(),
                2 => {
                    // One-way: a node's outbound (or inbound) links fail.
                    let v = ids[self.rng.random_range(0..n)];
                    let out = self.rng.random_bool(0.5);
                    for &o in &ids {
                        if o != v {
                            self.blocked.insert(if out { (v, o) } else { (o, v) });
                        }
                    }
                }
                _ => {
                    // One random directed link.
                    let a = ids[self.rng.random_range(0..n)];
                    let b = ids[self.rng.random_range(0..n)];
                    if a != b {
                        self.blocked.insert((a, b));
                    }
                }
            }
        }
        if !self.blocked.is_empty() && self.now >= self.hold_until && self.rng.random_bool(k.heal) {
            self.blocked.clear();
        }
        if self.rng.random_bool(k.crash) {
            let live = self.live();
            if !live.is_empty() {
                let i = match self.leader() {
                    Some(l) if self.rng.random_bool(0.5) => l,
                    _ => live[self.rng.random_range(0..live.len())],
                };
                self.crash(i);
            }
        }
        for i in 0..n {
            if self.nodes[i].raft.is_none()
                && self.nodes[i].life == Life::Active
                && self.rng.random_bool(k.restart)
            {
                self.nodes[i].restarts += 1;
                self.start(i);
            }
        }
        for i in 0..n {
            if self.rng.random_bool(k.compact) {
                self.compact(i);
            }
        }
        if self.rng.random_bool(k.transfer)
            && let Some(l) = self.leader()
        {
            let to = ids[self.rng.random_range(0..n)];
            if let Some(r) = self.nodes[l].raft.as_mut() {
                let voter = r.membership().0.is_voter(to);
                match r.transfer_leader(to) {
                    Ok(()) => {}
                    // With churn the target may not be a voter (now).
                    Err(Error::UnknownPeer(_)) if !voter => {}
                    Err(e) => self
                        .check
                        .fail(Property::Contract, format!("transfer_leader({to}): {e}")),
                }
            }
            self.process_ready(l);
        }
    }

    /// Crashes node `i`: what its core held in memory is gone; a Ready it
    /// had not acted on may be lost entirely or persisted in part (as a
    /// crash in the middle of writing it would).
    fn crash(&mut self, i: usize) {
        self.crashes += 1;
        let node = &mut self.nodes[i];
        let Some(mut raft) = node.raft.take() else {
            return;
        };
        if raft.has_ready() {
            self.torn_readies += 1;
        }
        if raft.has_ready() && self.rng.random_bool(0.5) {
            let rd = raft.ready();
            let upto = self.rng.random_range(1..=3);
            persist(&mut node.disk, &rd, upto);
        }
        node.proposals.clear();
        node.confirmed_reads.clear();
        for ctx in std::mem::take(&mut node.asked_reads) {
            self.reads.remove(&ctx);
        }
        // Messages already sent stay in the network.
    }

    fn compact(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let Some(raft) = node.raft.as_mut() else {
            return;
        };
        let snap_index = raft.status().snapshot_index;
        if node.app.applied < snap_index + 5 {
            return;
        }
        let data = node.app.encode();
        let index = node.app.applied;
        let (off, off_term, log) = raft.log_view();
        let term = if index == off {
            off_term
        } else {
            log[(index - off - 1) as usize].term
        };
        let membership = match raft.compact(index, data.clone()) {
            Ok(m) => m,
            Err(e) => {
                self.check.fail(
                    Property::Contract,
                    format!("node {} compact({index}): {e}", node.id),
                );
                return;
            }
        };
        node.disk.snapshot = Some(Snapshot {
            meta: SnapshotMeta { index, term },
            membership,
            data,
        });
        node.disk.entries.retain(|e| e.index > index);
    }

    fn tick_all(&mut self) {
        for i in 0..self.nodes.len() {
            if let Some(r) = self.nodes[i].raft.as_mut() {
                r.tick();
                self.note_leader(i);
                self.maybe_ready(i);
            }
        }
    }

    fn clients(&mut self) {
        let n = self.nodes.len();
        if self.rng.random_bool(self.knobs.writes) {
            for _ in 0..self.rng.random_range(1..=3) {
                let i = match self.leader() {
                    Some(l) if self.rng.random_bool(0.8) => l,
                    _ => self.rng.random_range(0..n),
                };
                self.write(i);
            }
        }
        if self.rng.random_bool(self.knobs.reads) {
            let i = match self.leader() {
                Some(l) if self.rng.random_bool(0.7) => l,
                _ => self.rng.random_range(0..n),
            };
            self.read(i);
        }
    }

    fn write(&mut self, i: usize) {
        let cmd = self.next_cmd;
        self.next_cmd += 1;
        let pad = self.rng.random_range(0..24usize);
        let mut data = cmd.to_le_bytes().to_vec();
        data.resize(8 + pad, 0xab);
        let node = &mut self.nodes[i];
        let Some(raft) = node.raft.as_mut() else {
            return;
        };
        match raft.propose(data) {
            Ok((index, term)) => {
                node.proposals.insert(index, (term, cmd));
            }
            Err(Error::NotLeader { .. } | Error::TransferInProgress) => {}
            Err(e) => self.check.fail(Property::Contract, format!("propose: {e}")),
        }
        self.maybe_ready(i);
    }

    fn read(&mut self, i: usize) {
        let ctx = self.next_cmd;
        self.next_cmd += 1;
        let lease = self.knobs.check_quorum && self.rng.random_bool(0.5);
        let mode = if lease {
            ReadMode::Lease
        } else {
            ReadMode::Safe
        };
        let required = self.max_acked_index.max(self.max_read_index);
        let node = &mut self.nodes[i];
        let Some(raft) = node.raft.as_mut() else {
            return;
        };
        match raft.read_index(ctx, mode) {
            Ok(()) => {
                node.asked_reads.insert(ctx);
                self.reads.insert(ctx, ReadRec { required });
            }
            Err(Error::NotLeader { .. }) => {}
            Err(e) => self
                .check
                .fail(Property::Contract, format!("read_index: {e}")),
        }
        self.maybe_ready(i);
    }

    fn maybe_ready(&mut self, i: usize) {
        if self.quiet || self.rng.random_bool(self.knobs.eager_ready) {
            self.process_ready(i);
        }
    }

    fn end_of_tick(&mut self) {
        for i in 0..self.nodes.len() {
            self.process_ready(i);
        }
        self.observe();
    }

    /// Delivers, in random order, every message whose time has come.
    fn deliver_due(&mut self) {
        let now = self.now;
        let mut due = Vec::new();
        let mut k = 0;
        while k < self.net.len() {
            if self.net[k].deliver_at <= now {
                due.push(self.net.swap_remove(k).msg);
            } else {
                k += 1;
            }
        }
        // swap_remove scrambled the order already; shuffle for good measure
        // so that reordering does not depend on the vector's layout.
        for j in (1..due.len()).rev() {
            let s = self.rng.random_range(0..=j);
            due.swap(j, s);
        }
        for msg in due {
            if self.check.violation.is_some() {
                return;
            }
            if self.blocked.contains(&(msg.from, msg.to)) {
                continue;
            }
            let i = (msg.to - 1) as usize;
            let Some(raft) = self.nodes[i].raft.as_mut() else {
                continue;
            };
            self.messages += 1;
            let led = raft.status();
            let (member, voter) = {
                let m = raft.membership().0;
                (m.nodes().contains(&msg.from), m.is_voter(msg.from))
            };
            let (from, term) = (msg.from, msg.term);
            let kind = kind_of(&msg.body);
            // A leader's message may come from a node this one does not
            // count as a member: it was elected, in a configuration this
            // one has not seen yet (or in the joint one it left).
            let from_leader = matches!(
                msg.body,
                crate::MessageBody::AppendEntries { .. }
                    | crate::MessageBody::InstallSnapshot { .. }
            );
            if let Err(e) = raft.step(msg) {
                self.check.fail(Property::Contract, format!("step: {e}"));
                return;
            }
            if led.role == Role::Leader && raft.status().role != Role::Leader && !from_leader {
                if !member {
                    let detail = format!(
                        "leader {} of term {} stepped down on {kind} of term {term} from node {from}, which is not in its configuration",
                        led.id, led.term
                    );
                    self.check.fail(Property::Disruption, detail);
                } else if !voter {
                    self.stats.learner_depositions += 1;
                }
            }
            self.note_leader(i);
            self.maybe_ready(i);
            if !self.quiet && self.rng.random_bool(self.knobs.bounce) {
                self.process_ready(i);
                self.crash(i);
                if self.rng.random_bool(0.5) {
                    self.nodes[i].restarts += 1;
                    self.start(i);
                }
            }
        }
    }

    fn send(&mut self, msg: Message) {
        if !self.quiet && self.rng.random_bool(self.knobs.drop) {
            return;
        }
        let copies = if !self.quiet && self.rng.random_bool(self.knobs.dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = if self.quiet {
                1
            } else {
                self.rng.random_range(1..=self.knobs.max_delay)
            };
            self.net.push(InFlight {
                deliver_at: self.now + delay,
                msg: msg.clone(),
            });
        }
    }

    /// Acts on node `i`'s Ready in the documented order, checking as it goes.
    fn process_ready(&mut self, i: usize) {
        let id = self.nodes[i].id;
        let Some(raft) = self.nodes[i].raft.as_mut() else {
            return;
        };
        if !raft.has_ready() {
            return;
        }
        let rd = raft.ready();
        // Log matching, on every entry any log ever takes in.
        if !rd.entries.is_empty() {
            let (off, off_term, log) = raft.log_view();
            for e in &rd.entries {
                let p = e.index - 1;
                let prev_term = if p == off {
                    off_term
                } else if p > off && p <= off + log.len() as u64 {
                    log[(p - off - 1) as usize].term
                } else {
                    continue;
                };
                self.check.appended(id, e, prev_term);
            }
        }
        persist(&mut self.nodes[i].disk, &rd, 3);
        // The leader may have committed (its own copy counts once handed
        // out, which is now persisted).
        self.note_leader(i);
        let voted = rd.messages.iter().any(|m| {
            matches!(
                m.body,
                crate::MessageBody::RequestVoteResponse { granted: true }
            )
        });
        let leader_applied = !rd.committed.is_empty()
            && self.nodes[i]
                .raft
                .as_ref()
                .is_some_and(|r| r.status().role == Role::Leader);
        let Ready {
            snapshot,
            messages,
            committed,
            read_states,
            aborted_reads,
            ..
        } = rd;
        for m in messages {
            self.send(m);
        }
        if let Some(s) = snapshot {
            self.snapshots_installed += 1;
            if let Some(r) = self.nodes[i].raft.as_ref()
                && !r.membership().0.is_voter(id)
            {
                self.stats.learner_snapshots += 1;
            }
            match App::decode(&s.data) {
                Some(app) if app.applied == s.meta.index => {
                    self.nodes[i].app = app;
                    self.check.state(id, app.applied, app.state);
                }
                _ => self.check.fail(
                    Property::Contract,
                    format!("node {id} got a snapshot whose data does not match its index"),
                ),
            }
        }
        for e in committed {
            self.apply(i, &e);
        }
        for ctx in aborted_reads {
            self.nodes[i].asked_reads.remove(&ctx);
            self.reads.remove(&ctx);
        }
        for rs in read_states {
            if self.nodes[i].asked_reads.remove(&rs.ctx) {
                self.nodes[i].confirmed_reads.push((rs.ctx, rs.index));
            }
        }
        self.serve_reads(i);
        if self.quiet {
            return;
        }
        if voted && self.rng.random_bool(self.knobs.vote_bounce) {
            self.crash(i);
            self.nodes[i].restarts += 1;
            self.start(i);
        } else if leader_applied && self.rng.random_bool(self.knobs.commit_crash) {
            self.crash(i);
        }
    }

    fn apply(&mut self, i: usize, e: &Entry) {
        let node = &mut self.nodes[i];
        if e.index != node.app.applied + 1 {
            let msg = format!(
                "node {} was handed entry {} to apply after applying {}",
                node.id, e.index, node.app.applied
            );
            self.check.fail(Property::Contract, msg);
            return;
        }
        node.app.state = fnv(node.app.state, &e.data) ^ e.index;
        node.app.applied = e.index;
        let (id, state) = (node.id, node.app.state);
        if e.kind == EntryKind::Config && self.configs_applied.insert(e.index) {
            match Membership::decode(&e.data) {
                Some(m) if m.is_joint() => self.stats.joint_committed += 1,
                Some(_) => self.stats.configs_committed += 1,
                None => self.check.fail(
                    Property::Contract,
                    format!(
                        "node {id} applied an undecodable configuration entry {}",
                        e.index
                    ),
                ),
            }
        }
        let node = &mut self.nodes[i];
        if let Some((term, cmd)) = node.proposals.remove(&e.index)
            && term == e.term
            && e.data.len() >= 8
            && e.data[..8] == cmd.to_le_bytes()
        {
            self.acked += 1;
            self.max_acked_index = self.max_acked_index.max(e.index);
        }
        self.check.applied(id, e, state);
    }

    fn serve_reads(&mut self, i: usize) {
        let applied = self.nodes[i].app.applied;
        let id = self.nodes[i].id;
        let mut k = 0;
        while k < self.nodes[i].confirmed_reads.len() {
            let (ctx, index) = self.nodes[i].confirmed_reads[k];
            if index > applied {
                k += 1;
                continue;
            }
            self.nodes[i].confirmed_reads.swap_remove(k);
            let Some(rec) = self.reads.remove(&ctx) else {
                continue;
            };
            self.served += 1;
            if applied < rec.required {
                self.check.fail(
                    Property::LinearizableRead,
                    format!(
                        "node {id} served read {ctx} at applied index {applied}, but writes acknowledged (or reads completed) before it began reach index {}",
                        rec.required
                    ),
                );
            }
            self.max_read_index = self.max_read_index.max(applied);
        }
    }

    /// End-of-tick checks over every live node (spares and removed nodes
    /// included): election safety, leader completeness, what leaders have
    /// committed, the commit quorum, and each node's membership view.
    fn observe(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].raft.is_none() {
                continue;
            }
            self.note_leader(i);
            self.check_membership_view(i);
            if self.check.violation.is_some() {
                return;
            }
        }
    }

    /// If node `i` leads: election safety, leader completeness when it is
    /// new, what it has committed, and the commit quorum of what it
    /// committed since last seen. Called after every tick, message and
    /// Ready, so that no leadership goes unseen.
    fn note_leader(&mut self, i: usize) {
        let Some(raft) = self.nodes[i].raft.as_ref() else {
            return;
        };
        let st = raft.status();
        if st.role != Role::Leader {
            return;
        }
        let (off, off_term, log) = raft.log_view();
        if self.check.is_new_leader(st.term) {
            self.check.new_leader(st.id, st.term, off, off_term, log);
        }
        if !self.check.leader(st.id, st.term) {
            return;
        }
        self.check
            .leader_committed(st.term, st.commit_index, off, log);
        self.check_commit_quorum(i);
    }

    /// The configuration in force at node `i` as its log says: the last
    /// configuration entry in it, else the one its snapshot carries (the
    /// persisted snapshot is the one in memory once its Ready was acted
    /// on), else the initial one.
    fn log_config(&self, i: usize) -> Membership {
        let node = &self.nodes[i];
        if let Some(r) = node.raft.as_ref() {
            let (_, _, log) = r.log_view();
            if let Some(e) = log.iter().rev().find(|e| e.kind == EntryKind::Config) {
                return Membership::decode(&e.data).unwrap_or_default();
            }
        }
        match &node.disk.snapshot {
            Some(s) if !s.membership.voters.is_empty() => s.membership.clone(),
            _ => Membership::of_voters(&node.peers),
        }
    }

    /// True when node `id`'s disk holds entry `index` of `term` (or a
    /// snapshot covering it: only committed entries are snapshotted).
    fn disk_holds(&self, id: NodeId, index: u64, term: u64) -> bool {
        let Some(node) = self.nodes.get((id as usize).wrapping_sub(1)) else {
            return false;
        };
        let d = &node.disk;
        let snap = d.snapshot.as_ref().map_or(0, |s| s.meta.index);
        if index <= snap {
            return true;
        }
        match d.entries.get((index - snap - 1) as usize) {
            Some(e) if e.index == index => e.term == term,
            _ => d.entries.iter().any(|e| e.index == index && e.term == term),
        }
    }

    /// Commit quorum (§6): every entry a leader has newly committed is
    /// persisted on a majority of each voter set of the configuration in
    /// force at it — its latest appended one; both C_old and C_new while
    /// joint.
    fn check_commit_quorum(&mut self, i: usize) {
        let Some(raft) = self.nodes[i].raft.as_ref() else {
            return;
        };
        let st = raft.status();
        let seen = self
            .quorum_checked
            .entry(st.id)
            .or_insert((st.term, st.commit_index));
        if seen.0 != st.term {
            // A new leadership: what was committed before it was checked
            // at the leaders that committed it.
            *seen = (st.term, st.commit_index);
            return;
        }
        if st.commit_index <= seen.1 {
            return;
        }
        let from = seen.1 + 1;
        seen.1 = st.commit_index;
        let conf = self.log_config(i);
        let (off, _, log) = raft.log_view();
        for index in from.max(off + 1)..=st.commit_index {
            let term = log[(index - off - 1) as usize].term;
            for set in conf.majorities() {
                let holders: Vec<NodeId> = set
                    .iter()
                    .copied()
                    .filter(|&n| self.disk_holds(n, index, term))
                    .collect();
                if holders.len() * 2 <= set.len() {
                    let detail = format!(
                        "leader {} of term {} committed entry {index}@term {term}, but of the voters {set:?} only {holders:?} hold it (configuration in force at the leader: {conf:?})",
                        st.id, st.term
                    );
                    self.check.fail(Property::CommitQuorum, detail);
                    return;
                }
            }
        }
    }

    /// Membership view: node `i`'s membership is the one its log says.
    fn check_membership_view(&mut self, i: usize) {
        let Some(raft) = self.nodes[i].raft.as_ref() else {
            return;
        };
        let want = self.log_config(i);
        let (have, at) = raft.membership();
        if *have != want {
            let detail = format!(
                "node {} is in membership {have:?} (set at index {at}), but its log says {want:?}",
                self.nodes[i].id
            );
            self.check.fail(Property::MembershipView, detail);
        }
    }
}

/// The name of a message's kind, for reports.
fn kind_of(body: &crate::MessageBody) -> &'static str {
    use crate::MessageBody as B;
    match body {
        B::PreVote { .. } => "a PreVote",
        B::PreVoteResponse { .. } => "a PreVote answer",
        B::RequestVote { .. } => "a RequestVote",
        B::RequestVoteResponse { .. } => "a RequestVote answer",
        B::AppendEntries { .. } => "an AppendEntries",
        B::AppendEntriesResponse { .. } => "an AppendEntries answer",
        B::InstallSnapshot { .. } => "an InstallSnapshot",
        B::InstallSnapshotResponse { .. } => "an InstallSnapshot answer",
        B::TimeoutNow => "a TimeoutNow",
    }
}

/// Writes the first `upto` steps of the persistence contract (1: snapshot,
/// 2: entries, 3: hard state) to `disk`.
fn persist(disk: &mut Persisted, rd: &Ready, upto: u32) {
    if let Some(s) = &rd.snapshot {
        disk.snapshot = Some(s.clone());
        disk.entries.clear();
    }
    if upto < 2 {
        return;
    }
    if let Some(first) = rd.entries.first() {
        disk.entries.retain(|e| e.index < first.index);
        disk.entries.extend(rd.entries.iter().cloned());
    }
    if upto < 3 {
        return;
    }
    if let Some(hs) = rd.hard_state {
        disk.hard_state = hs;
    }
}

/// Totals over many runs.
#[derive(Clone, Debug, Default)]
pub struct SoakTotals {
    /// Seeds run.
    pub seeds: u64,
    /// Ticks simulated.
    pub steps: u64,
    /// Messages delivered.
    pub messages: u64,
    /// Writes acknowledged.
    pub acked_writes: u64,
    /// Reads served.
    pub reads: u64,
    /// Crashes injected.
    pub crashes: u64,
    /// Crashes that caught a Ready not yet acted on.
    pub torn_readies: u64,
    /// Restarts of crashed nodes.
    pub restarts: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// What membership administrators did, summed.
    pub churn: ChurnStats,
    /// The failing runs.
    pub failures: Vec<SimReport>,
}

impl SoakTotals {
    /// Adds one run.
    pub fn add(&mut self, r: SimReport) {
        self.seeds += 1;
        self.steps += r.steps;
        self.messages += r.messages;
        self.acked_writes += r.acked_writes;
        self.reads += r.reads;
        self.crashes += r.crashes;
        self.torn_readies += r.torn_readies;
        self.restarts += r.restarts;
        self.snapshots_installed += r.snapshots_installed;
        self.churn.add(&r.churn);
        if r.violation.is_some() {
            self.failures.push(r);
        }
    }
}

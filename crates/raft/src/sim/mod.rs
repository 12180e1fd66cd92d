//! A seeded deterministic simulator of a Raft cluster: 3 or 5 cores, a
//! network that drops, duplicates, reorders and delays messages, partitions
//! (symmetric and one-way) that come and heal, crashes that lose everything
//! not persisted, restarts, snapshots, and clients that write and read. The
//! checks of [`check`] run as it goes; at the end the network heals and every
//! acknowledged write must reach every node.
//!
//! Every random choice comes from one ChaCha8 stream seeded by
//! [`SimOptions::seed`], so a run is replayed exactly by its seed and options
//! ([`SimOptions::replay_command`]).

mod check;

use std::collections::BTreeSet;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use check::{Checker, fnv};
pub use check::{Property, Violation};

use crate::types::{
    Bug, Config, Entry, Message, NodeId, Persisted, ReadMode, Ready, Role, Snapshot, SnapshotMeta,
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
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 4] = [
        Profile::Mixed,
        Profile::Crashes,
        Profile::Partitions,
        Profile::Churn,
    ];

    /// The name used on command lines.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Mixed => "mixed",
            Profile::Crashes => "crashes",
            Profile::Partitions => "partitions",
            Profile::Churn => "churn",
        }
    }

    /// Looks a profile up by name.
    pub fn from_name(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// What to simulate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimOptions {
    /// The seed of every random choice.
    pub seed: u64,
    /// Cluster size (3 or 5).
    pub nodes: usize,
    /// Ticks of faulty operation before healing.
    pub steps: u64,
    /// Deliberate mistakes switched on in every node.
    pub bugs: Vec<Bug>,
    /// The fault mix.
    pub profile: Profile,
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
        }
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
        for b in &self.bugs {
            s.push_str(&format!(" --bug {}", b.name()));
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

/// One simulated node: the core (None while crashed), its disk and its app.
struct Node {
    id: NodeId,
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
    quiet: bool,
}

/// Runs one simulation and reports what it found.
pub fn run(opts: &SimOptions) -> SimReport {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let knobs = Knobs::draw(&mut rng, opts.profile);
    let ids: Vec<NodeId> = (1..=opts.nodes as u64).collect();
    let nodes = ids
        .iter()
        .map(|&id| Node {
            id,
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
        quiet: false,
    };
    for i in 0..sim.nodes.len() {
        sim.start(i);
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
        violation: sim.check.violation,
    }
}

impl Sim {
    fn config(&self, id: NodeId, restarts: u64) -> Config {
        let k = &self.knobs;
        let mut c = Config::new(id, (1..=self.opts.nodes as u64).collect());
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
        let cfg = self.config(n.id, n.restarts);
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

    fn main_phase(&mut self) {
        while self.now < self.opts.steps && self.check.violation.is_none() {
            self.now += 1;
            self.check.step = self.now;
            self.tick_all();
            self.clients();
            // Faults come after ticks and client calls, so that a crash can
            // catch a node holding a Ready it has not acted on yet.
            self.faults();
            self.deliver_due();
            self.end_of_tick();
        }
    }

    /// Heals everything, restarts every node, stops faults and clients, and
    /// waits for every acknowledged write to reach every node.
    fn heal_phase(&mut self) {
        self.quiet = true;
        self.blocked.clear();
        for i in 0..self.nodes.len() {
            if self.nodes[i].raft.is_none() {
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
            let done = self
                .nodes
                .iter()
                .all(|n| n.app.applied >= self.max_acked_index)
                && self.leader().is_some();
            if done {
                return;
            }
            let t = self.progress_mark();
            if t != total {
                total = t;
                last_move = self.now;
            }
        }
        if self.check.violation.is_none() {
            let behind: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| n.app.applied < self.max_acked_index)
                .map(|n| format!("node {} applied {}", n.id, n.app.applied))
                .collect();
            self.check.fail(
                Property::Liveness,
                format!(
                    "after healing, no log grew and nothing was applied for {} quiet ticks, yet writes acknowledged up to index {} are missing: {} (leader: {:?})",
                    self.now - last_move,
                    self.max_acked_index,
                    behind.join(", "),
                    self.leader().map(|i| self.nodes[i].id)
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

    fn faults(&mut self) {
        let k = self.knobs.clone();
        let n = self.nodes.len();
        let ids: Vec<NodeId> = self.nodes.iter().map(|x| x.id).collect();
        if self.rng.random_bool(k.partition) {
            match self.rng.random_range(0..4) {
                0 => {
                    // Isolate one node (often the leader).
                    let victim = match self.leader() {
                        Some(l) if self.rng.random_bool(0.6) => ids[l],
                        _ => ids[self.rng.random_range(0..n)],
                    };
                    for &o in &ids {
                        if o != victim {
                            self.blocked.insert((victim, o));
                            self.blocked.insert((o, victim));
                        }
                    }
                }
                1 => {
                    // Split into two sides.
                    let side: Vec<bool> = (0..n).map(|_| self.rng.random_bool(0.5)).collect();
                    for a in 0..n {
                        for b in 0..n {
                            if side[a] != side[b] {
                                self.blocked.insert((ids[a], ids[b]));
                            }
                        }
                    }
                }
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
        if !self.blocked.is_empty() && self.rng.random_bool(k.heal) {
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
            if self.nodes[i].raft.is_none() && self.rng.random_bool(k.restart) {
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
            if let Some(r) = self.nodes[l].raft.as_mut()
                && let Err(e) = r.transfer_leader(to)
            {
                self.check
                    .fail(Property::Contract, format!("transfer_leader({to}): {e}"));
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
            if let Err(e) = raft.step(msg) {
                self.check.fail(Property::Contract, format!("step: {e}"));
                return;
            }
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

    /// End-of-tick checks over every live node: election safety, leader
    /// completeness, and what leaders have committed.
    fn observe(&mut self) {
        for i in 0..self.nodes.len() {
            let Some(raft) = self.nodes[i].raft.as_ref() else {
                continue;
            };
            let st = raft.status();
            if st.role != Role::Leader {
                continue;
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
        }
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
        if r.violation.is_some() {
            self.failures.push(r);
        }
    }
}

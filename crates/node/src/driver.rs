//! The event loop: one thread owns the Raft core, the storage and the state
//! machine, takes events from one closed enum, and acts on each `Ready` in the
//! documented order (persist and fsync, then send, then apply, then serve
//! reads). Events that arrive while a batch is being persisted queue up and go
//! into the next batch together: that is the group commit.
//!
//! The loop runs on a plain OS thread rather than a tokio task because it
//! blocks in fsync; the async side talks to it through a bounded channel and
//! gets answers on oneshot channels.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use faultline_raft::{
    Entry, EntryKind, HardState, Membership, MembershipChange, Message, MessageBody, NodeId, Raft,
    ReadMode, Ready, Role, Snapshot, SnapshotMeta,
};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::config::{NodeBug, NodeConfig};
use crate::kv::{Command, Kv, Outcome};
use crate::storage::{Storage, StorageError};
use crate::transport::Outbox;

/// How many queued events at most go into one batch.
const MAX_BATCH: usize = 4096;
/// Every this many ticks, forget requests whose client has stopped waiting.
const SWEEP_TICKS: u64 = 20;

/// How a read is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// ReadIndex with a leadership check by a majority round.
    Linearizable,
    /// ReadIndex under the leader lease.
    Lease,
    /// Local state of whichever node is asked.
    Stale,
}

/// The closed vocabulary of things that happen to a node.
#[derive(Debug)]
pub enum Event {
    /// A Raft tick (the heartbeat interval) elapsed.
    Tick,
    /// A message from a peer.
    Peer(Message),
    /// A client write: an encoded [`Command`] to propose.
    Write {
        /// The command's bytes.
        data: Vec<u8>,
        /// Where the answer goes.
        reply: oneshot::Sender<Answer>,
    },
    /// A client read.
    Read {
        /// The key.
        key: String,
        /// How to confirm it.
        consistency: Consistency,
        /// Where the answer goes.
        reply: oneshot::Sender<Answer>,
    },
    /// A request for the node's status.
    Status(oneshot::Sender<StatusView>),
    /// A request for the membership as this node sees it.
    Members(oneshot::Sender<MembersView>),
    /// A membership change, asked of the leader.
    ChangeMembers {
        /// What to change.
        change: MembershipChange,
        /// Where the answer goes: [`Answer::Members`] once the change (for
        /// voters: the joint configuration, then the final one) committed.
        reply: oneshot::Sender<Answer>,
    },
    /// Stop after making everything durable.
    Shutdown,
}

/// The driver's answer to a client request.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// The write was committed and applied with this outcome.
    Applied(Outcome),
    /// The write was only proposed (the `ack-before-commit` bug).
    Early,
    /// A read's value (`null` when absent).
    Value(Value),
    /// Definite failure: this node is not the leader, or lost leadership
    /// before the operation could take effect.
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
        /// Why.
        reason: &'static str,
    },
    /// Definite failure for another reason (overload, transfer under way).
    Unavailable(String),
    /// The operation was proposed but its fate is unknown.
    Indeterminate(String),
    /// A membership change took effect and committed.
    Members(MembersView),
    /// A membership change refused as it stands (another in flight, or
    /// it does not fit the membership); nothing changed.
    Conflict(String),
    /// A change that would remove the last voter; nothing changed.
    LastVoter(String),
}

/// What `GET /admin/members` shows: the membership in force on this node.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MembersView {
    /// The voters (C_new while joint).
    pub voters: Vec<String>,
    /// The old voters while joint consensus is in force; empty otherwise.
    pub outgoing: Vec<String>,
    /// Non-voting members.
    pub learners: Vec<String>,
    /// The log index of the configuration entry (0: the initial one).
    pub index: u64,
    /// Whether that entry is committed as far as this node knows.
    pub committed: bool,
    /// The leader this node knows of.
    pub leader: Option<String>,
}

/// What `GET /status` shows.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct StatusView {
    /// This node's name.
    pub id: String,
    /// `follower`, `pre_candidate`, `candidate` or `leader`.
    pub role: &'static str,
    /// Current term.
    pub term: u64,
    /// The leader's name, if known.
    pub leader: Option<String>,
    /// Commit index.
    pub commit_index: u64,
    /// Applied index.
    pub applied_index: u64,
    /// Last log index.
    pub last_log_index: u64,
    /// Snapshot index.
    pub snapshot_index: u64,
}

/// Why the loop stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Storage failed: the node cannot promise durability any more.
    #[error("storage failure: {0}")]
    Storage(#[from] StorageError),
    /// The snapshot-writing thread panicked.
    #[error("the snapshot-writing thread panicked")]
    SnapshotThread,
    /// A snapshot from the leader could not be read.
    #[error("{0}")]
    Snapshot(#[from] crate::kv::BadSnapshot),
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Follower => "follower",
        Role::PreCandidate => "pre_candidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

/// The state owned by the event loop.
pub struct Driver {
    cfg: Arc<NodeConfig>,
    raft: Raft,
    storage: Storage,
    kv: Kv,
    outbox: Outbox,
    applied: u64,
    applied_term: u64,
    snapshot_index: u64,
    role: Role,
    term: u64,
    leader: Option<NodeId>,
    /// Proposed writes by log index: (term proposed in, reply).
    writes: BTreeMap<u64, (u64, oneshot::Sender<Answer>)>,
    /// Reads awaiting their leadership check, by context.
    reads: HashMap<u64, (String, oneshot::Sender<Answer>)>,
    /// Confirmed reads waiting for the state machine to reach their index.
    waiting: BTreeMap<(u64, u64), (String, oneshot::Sender<Answer>)>,
    next_ctx: u64,
    ticks: u64,
    /// Log writes held back until the next tick (the `ack-before-fsync` bug).
    deferred: Vec<(Vec<Entry>, Option<HardState>)>,
    /// The snapshot file being written in the background, if any.
    snapshot_job: Option<std::thread::JoinHandle<Result<u64, StorageError>>>,
    /// The membership change under way: index and term of its first
    /// configuration entry, and who waits for it.
    change: Option<(u64, u64, oneshot::Sender<Answer>)>,
}

impl Driver {
    /// A driver for a core built from what `storage` recovered; `kv` and
    /// `applied` are the state machine restored from the snapshot.
    pub fn new(
        cfg: Arc<NodeConfig>,
        raft: Raft,
        storage: Storage,
        kv: Kv,
        snapshot: SnapshotMeta,
        outbox: Outbox,
    ) -> Driver {
        let st = raft.status();
        Driver {
            cfg,
            raft,
            storage,
            kv,
            outbox,
            applied: snapshot.index,
            applied_term: snapshot.term,
            snapshot_index: snapshot.index,
            role: st.role,
            term: st.term,
            leader: st.leader,
            writes: BTreeMap::new(),
            reads: HashMap::new(),
            waiting: BTreeMap::new(),
            next_ctx: 1,
            ticks: 0,
            deferred: Vec::new(),
            snapshot_job: None,
            change: None,
        }
    }

    /// Runs until [`Event::Shutdown`] or until every sender is gone.
    pub fn run(mut self, events: Receiver<Event>) -> Result<(), DriverError> {
        let tick = self.cfg.tick;
        let mut next_tick = Instant::now() + tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let first = match events.recv_timeout(wait) {
                Ok(ev) => Some(ev),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(Event::Shutdown),
            };
            let mut stop = false;
            if let Some(ev) = first {
                stop |= self.handle(ev);
                // Everything already queued joins this batch.
                for _ in 0..MAX_BATCH {
                    match events.try_recv() {
                        Ok(ev) => stop |= self.handle(ev),
                        Err(_) => break,
                    }
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.flush_deferred()?;
                self.handle(Event::Tick);
                next_tick += tick;
                if next_tick < now {
                    // We fell behind (a long fsync): do not burst ticks.
                    next_tick = now + tick;
                }
            }
            self.process_ready()?;
            if stop {
                self.flush_deferred()?;
                self.finish_snapshot(true)?;
                self.storage.sync()?;
                tracing::info!("event loop stopped");
                return Ok(());
            }
        }
    }

    /// Handles one event; true means stop.
    fn handle(&mut self, ev: Event) -> bool {
        match ev {
            Event::Tick => {
                self.raft.tick();
                self.ticks += 1;
                if self.ticks.is_multiple_of(SWEEP_TICKS) {
                    self.writes.retain(|_, (_, r)| !r.is_closed());
                    self.reads.retain(|_, (_, r)| !r.is_closed());
                    self.waiting.retain(|_, (_, r)| !r.is_closed());
                    if self.change.as_ref().is_some_and(|(_, _, r)| r.is_closed()) {
                        self.change = None;
                    }
                }
            }
            Event::Peer(msg) => {
                if let Err(e) = self.raft.step(msg) {
                    tracing::debug!("message refused: {e}");
                }
            }
            Event::Write { data, reply } => self.propose(data, reply),
            Event::Read {
                key,
                consistency,
                reply,
            } => self.read(key, consistency, reply),
            Event::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Event::Members(reply) => {
                let _ = reply.send(self.members());
            }
            Event::ChangeMembers { change, reply } => self.change_members(change, reply),
            Event::Shutdown => return true,
        }
        false
    }

    fn not_leader(&self, reason: &'static str) -> Answer {
        Answer::NotLeader {
            leader: self.leader.filter(|&l| l != self.cfg.id),
            reason,
        }
    }

    fn propose(&mut self, data: Vec<u8>, reply: oneshot::Sender<Answer>) {
        use faultline_raft::Error;
        match self.raft.propose(data) {
            Ok((index, term)) => {
                if self.cfg.has_bug(NodeBug::AckBeforeCommit) {
                    let _ = reply.send(Answer::Early);
                } else {
                    self.writes.insert(index, (term, reply));
                }
            }
            Err(Error::NotLeader { leader }) => {
                let _ = reply.send(Answer::NotLeader {
                    leader: leader.or(self.leader).filter(|&l| l != self.cfg.id),
                    reason: "this node is not the leader",
                });
            }
            Err(Error::TransferInProgress) => {
                let _ = reply.send(Answer::Unavailable(
                    "a leadership transfer is in progress; retry".into(),
                ));
            }
            Err(e) => {
                let _ = reply.send(Answer::Unavailable(e.to_string()));
            }
        }
    }

    fn read(&mut self, key: String, consistency: Consistency, reply: oneshot::Sender<Answer>) {
        let mode = match consistency {
            _ if self.cfg.has_bug(NodeBug::StaleLocalRead) => None,
            Consistency::Stale => None,
            Consistency::Linearizable => Some(ReadMode::Safe),
            Consistency::Lease => Some(ReadMode::Lease),
        };
        let Some(mode) = mode else {
            let _ = reply.send(Answer::Value(self.kv.get(&key)));
            return;
        };
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        match self.raft.read_index(ctx, mode) {
            Ok(()) => {
                self.reads.insert(ctx, (key, reply));
            }
            Err(faultline_raft::Error::NotLeader { leader }) => {
                let _ = reply.send(Answer::NotLeader {
                    leader: leader.or(self.leader).filter(|&l| l != self.cfg.id),
                    reason: "this node is not the leader",
                });
            }
            Err(e) => {
                let _ = reply.send(Answer::Unavailable(e.to_string()));
            }
        }
    }

    fn members(&self) -> MembersView {
        let (m, index) = self.raft.membership();
        let names = |ids: &[NodeId]| ids.iter().map(|&i| self.cfg.name_of(i)).collect();
        MembersView {
            voters: names(&m.voters),
            outgoing: names(&m.outgoing),
            learners: names(&m.learners),
            index,
            committed: index <= self.raft.status().commit_index,
            leader: self.raft.status().leader.map(|l| self.cfg.name_of(l)),
        }
    }

    fn change_members(&mut self, change: MembershipChange, reply: oneshot::Sender<Answer>) {
        use faultline_raft::Error;
        if self.change.as_ref().is_some_and(|(_, _, r)| !r.is_closed()) {
            let _ = reply.send(Answer::Conflict(
                "another membership change asked of this node is still under way".into(),
            ));
            return;
        }
        let answer = match self.raft.change_membership(change) {
            Ok(index) => {
                tracing::info!(index, ?change, "membership change proposed");
                self.change = Some((index, self.raft.status().term, reply));
                return;
            }
            Err(Error::NotLeader { leader }) => Answer::NotLeader {
                leader: leader.or(self.leader).filter(|&l| l != self.cfg.id),
                reason: "this node is not the leader",
            },
            Err(e @ Error::LastVoter(_)) => Answer::LastVoter(e.to_string()),
            Err(e) => Answer::Conflict(e.to_string()),
        };
        let _ = reply.send(answer);
    }

    /// Settles the membership change under way once what it waits for is
    /// applied: the final configuration, or another leader's entry at its
    /// index, or a snapshot that jumped past it.
    fn settle_change(&mut self, applied: Option<&Entry>, config: Option<&Membership>) {
        let Some((index, term, _)) = &self.change else {
            return;
        };
        let (index, term) = (*index, *term);
        let answer = match applied {
            Some(e) if e.index == index && e.term != term => self.not_leader(
                "leadership was lost before the membership change committed; it did not happen",
            ),
            Some(e) if e.index >= index && config.is_some_and(|m| !m.is_joint()) => {
                Answer::Members(self.members())
            }
            None if self.applied >= index => Answer::Indeterminate(
                "a snapshot from the leader went past the change before it was seen".into(),
            ),
            _ => return,
        };
        if let Some((_, _, reply)) = self.change.take() {
            let _ = reply.send(answer);
        }
    }

    fn status(&self) -> StatusView {
        let st = self.raft.status();
        StatusView {
            id: self.cfg.name.clone(),
            role: role_name(st.role),
            term: st.term,
            leader: st.leader.map(|l| self.cfg.name_of(l)),
            commit_index: st.commit_index,
            applied_index: self.applied,
            last_log_index: self.storage.last_index().max(st.last_log_index),
            snapshot_index: self.snapshot_index,
        }
    }

    fn process_ready(&mut self) -> Result<(), DriverError> {
        while self.raft.has_ready() {
            let rd = self.raft.ready();
            self.act(rd)?;
        }
        Ok(())
    }

    /// Acts on one `Ready` in the order its documentation gives.
    fn act(&mut self, rd: Ready) -> Result<(), DriverError> {
        if let Some(ss) = rd.soft_state {
            if ss.role != self.role || ss.term != self.term {
                tracing::info!(
                    node = %self.cfg.name,
                    role = role_name(ss.role),
                    term = ss.term,
                    leader = ?ss.leader.map(|l| self.cfg.name_of(l)),
                    "role change"
                );
            } else if ss.leader != self.leader {
                tracing::info!(
                    node = %self.cfg.name,
                    term = ss.term,
                    leader = ?ss.leader.map(|l| self.cfg.name_of(l)),
                    "leader change"
                );
            }
            self.role = ss.role;
            self.term = ss.term;
            self.leader = ss.leader;
        }
        // 1. A snapshot from the leader: persist it, drop the log it covers,
        //    reset the state machine.
        if let Some(snap) = &rd.snapshot {
            self.flush_deferred()?;
            // One snapshot file write at a time, and never an older one last.
            self.finish_snapshot(true)?;
            self.storage.install_snapshot(snap)?;
            self.kv = Kv::restore(&snap.data)?;
            self.applied = snap.meta.index;
            self.applied_term = snap.meta.term;
            self.snapshot_index = snap.meta.index;
            tracing::info!(
                index = snap.meta.index,
                term = snap.meta.term,
                "installed snapshot from leader"
            );
            self.settle_change(None, None);
        }
        // 2–4. Entries, hard state, then one fsync for all of it.
        if self.cfg.has_bug(NodeBug::AckBeforeFsync) {
            if !rd.entries.is_empty() || rd.hard_state.is_some() {
                self.deferred.push((rd.entries, rd.hard_state));
            }
        } else {
            self.storage.append(&rd.entries)?;
            if let Some(hs) = rd.hard_state {
                self.storage.set_hard_state(hs)?;
            }
            self.storage.sync()?;
        }
        // Only now may anything promised above reach another node.
        for m in rd.messages {
            if let MessageBody::InstallSnapshot { snapshot } = &m.body {
                tracing::info!(
                    to = %self.cfg.name_of(m.to),
                    index = snapshot.meta.index,
                    "sending snapshot"
                );
            }
            self.outbox.send(m);
        }
        // 5. Apply.
        for e in rd.committed {
            self.apply(e);
        }
        self.maybe_snapshot()?;
        // 6. Reads.
        for rs in rd.read_states {
            if let Some((key, reply)) = self.reads.remove(&rs.ctx) {
                if rs.index <= self.applied {
                    let _ = reply.send(Answer::Value(self.kv.get(&key)));
                } else {
                    self.waiting.insert((rs.index, rs.ctx), (key, reply));
                }
            }
        }
        for ctx in rd.aborted_reads {
            if let Some((_, reply)) = self.reads.remove(&ctx) {
                let _ =
                    reply.send(self.not_leader("leadership could not be confirmed for this read"));
            }
        }
        while let Some(entry) = self.waiting.first_entry() {
            if entry.key().0 > self.applied {
                break;
            }
            let (key, reply) = entry.remove();
            let _ = reply.send(Answer::Value(self.kv.get(&key)));
        }
        Ok(())
    }

    fn apply(&mut self, e: Entry) {
        if e.index <= self.applied {
            return;
        }
        self.applied = e.index;
        self.applied_term = e.term;
        if e.kind != EntryKind::Config {
            self.settle_change(Some(&e), None);
        }
        let outcome = match e.kind {
            EntryKind::Noop => None,
            EntryKind::Config => {
                self.applied_config(&e);
                None
            }
            EntryKind::Normal => match Command::decode(&e.data) {
                Ok(cmd) => Some(self.kv.apply(cmd, !self.cfg.has_bug(NodeBug::SkipDedup))),
                Err(err) => {
                    // Every replica skips it alike, so they stay identical.
                    tracing::error!(index = e.index, "undecodable command skipped: {err}");
                    None
                }
            },
        };
        while let Some(w) = self.writes.first_entry() {
            let index = *w.key();
            if index > e.index {
                break;
            }
            let (term, reply) = w.remove();
            let answer = if index < e.index {
                // Its index went by in a snapshot: we cannot tell whether the
                // entry there was ours.
                Answer::Indeterminate(
                    "the outcome was compacted into a snapshot before it was seen".into(),
                )
            } else if term == e.term {
                Answer::Applied(
                    outcome
                        .clone()
                        .unwrap_or(Outcome::Rejected("undecodable command".into())),
                )
            } else {
                // Another leader's entry took this index: ours is gone for good.
                self.not_leader(
                    "leadership was lost before the write committed; it was not applied",
                )
            };
            let _ = reply.send(answer);
        }
    }

    /// A configuration entry was applied.
    fn applied_config(&mut self, e: &Entry) {
        let Some(m) = Membership::decode(&e.data) else {
            tracing::error!(index = e.index, "undecodable configuration entry");
            return;
        };
        let names = |ids: &[NodeId]| {
            ids.iter()
                .map(|&i| self.cfg.name_of(i))
                .collect::<Vec<_>>()
                .join(",")
        };
        tracing::info!(
            index = e.index,
            voters = %names(&m.voters),
            outgoing = %names(&m.outgoing),
            learners = %names(&m.learners),
            "configuration applied"
        );
        self.settle_change(Some(e), Some(&m));
    }

    /// Writes the log writes held back by the `ack-before-fsync` bug.
    fn flush_deferred(&mut self) -> Result<(), DriverError> {
        for (entries, hs) in std::mem::take(&mut self.deferred) {
            self.storage.append(&entries)?;
            if let Some(hs) = hs {
                self.storage.set_hard_state(hs)?;
            }
        }
        self.storage.sync()?;
        Ok(())
    }

    /// Takes a snapshot every `snapshot_every` applied entries. The state is
    /// serialised here, but the file is written and fsynced on a helper
    /// thread so that the event loop keeps committing meanwhile; the log
    /// segments it covers are deleted once it is durable.
    fn maybe_snapshot(&mut self) -> Result<(), DriverError> {
        self.finish_snapshot(false)?;
        if self.snapshot_job.is_some()
            || self.applied < self.snapshot_index + self.cfg.snapshot_every
        {
            return Ok(());
        }
        // The snapshot must not overtake log writes held back by a test bug.
        self.flush_deferred()?;
        let started = Instant::now();
        let data = self.kv.snapshot();
        let index = self.applied;
        // The core may serve the snapshot to lagging followers at once: our
        // own log keeps the entries until the file is durable.
        let membership = match self.raft.compact(index, data.clone()) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("core refused compaction: {e}");
                self.snapshot_index = index;
                return Ok(());
            }
        };
        let snap = Snapshot {
            meta: SnapshotMeta {
                index,
                term: self.applied_term,
            },
            membership,
            data,
        };
        let writer = self.storage.snapshot_writer();
        let bytes = snap.data.len();
        self.snapshot_index = index;
        self.snapshot_job = Some(std::thread::spawn(move || {
            writer.write(&snap)?;
            tracing::info!(
                index,
                bytes,
                ms = started.elapsed().as_millis() as u64,
                "snapshot written"
            );
            Ok(index)
        }));
        Ok(())
    }

    /// Completes a finished background snapshot write (or waits for it when
    /// `wait`), then deletes the log segments it covers.
    fn finish_snapshot(&mut self, wait: bool) -> Result<(), DriverError> {
        let Some(job) = self.snapshot_job.take() else {
            return Ok(());
        };
        if !wait && !job.is_finished() {
            self.snapshot_job = Some(job);
            return Ok(());
        }
        let index = job.join().map_err(|_| DriverError::SnapshotThread)??;
        self.storage.snapshot_written(index)?;
        Ok(())
    }
}

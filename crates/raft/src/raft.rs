//! The Raft state machine: elections (with PreVote and CheckQuorum), log
//! replication with flow control, the commit rule, snapshots, reads and
//! leadership transfer. It does no I/O: inputs are `tick`, `step`,
//! `propose`, `read_index`, `transfer_leader` and `compact`; everything the
//! driver must do comes out of `ready`.

use std::collections::BTreeMap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use crate::log::RaftLog;
use crate::progress::{Progress, ProgressState};
use crate::read_only::ReadOnly;
use crate::types::{
    Bug, Config, ConflictHint, Entry, EntryKind, Error, HardState, Membership, MembershipChange,
    Message, MessageBody, NodeId, Persisted, ReadMode, ReadState, Ready, Role, Snapshot, SoftState,
    Status,
};

/// One Raft node's consensus state. See the crate documentation for how to
/// drive it.
#[derive(Debug)]
pub struct Raft {
    id: NodeId,
    /// The other members (voters, old voters and learners), sorted.
    others: Vec<NodeId>,
    /// The configurations the log holds, by index: first the one in force
    /// at the snapshot (or the initial one, at 0), then one per `Config`
    /// entry after it.
    confs: Vec<(u64, Membership)>,
    /// The membership in force (the last of `confs`) and its index.
    members: Membership,
    members_index: u64,
    cfg: Config,
    term: u64,
    vote: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    log: RaftLog,
    rng: ChaCha8Rng,
    /// Ticks since this value was created: the core's only notion of time.
    now: u64,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_timeout: u32,
    /// Set at start: until an election timeout has passed, act as if a
    /// leader had just been heard from (a restarted follower may have
    /// acknowledged a leader's lease moments before it crashed).
    restart_guard: bool,
    votes: FxHashMap<NodeId, bool>,
    progress: BTreeMap<NodeId, Progress>,
    msgs: Vec<Message>,
    reads: ReadOnly,
    /// Appends must be sent to followers at the next flush (proposals made
    /// since the last `ready` are batched into one message per follower).
    need_broadcast: bool,
    transferee: Option<NodeId>,
    transfer_start: u64,
    /// A TimeoutNow was sent in this term: another leader may appear without
    /// waiting for leases to expire, so lease reads are off until the term
    /// ends.
    lease_revoked: bool,
    prev_soft: SoftState,
    prev_hard: HardState,
    pending_snapshot: Option<Snapshot>,
    read_states: Vec<ReadState>,
    aborted_reads: Vec<u64>,
}

impl Raft {
    /// Creates a node from its configuration and what it persisted (empty
    /// for a new node). After a restart the first `Ready`s hand out, as
    /// `committed`, the entries from the persisted snapshot's index up to
    /// the persisted commit index: the driver restores its state machine
    /// from the snapshot itself and then applies them.
    pub fn new(config: Config, persisted: Persisted) -> Result<Raft, Error> {
        validate_config(&config)?;
        let Persisted {
            hard_state,
            snapshot,
            entries,
        } = persisted;
        let snapshot = snapshot.filter(|s| s.meta.index > 0);
        validate_persisted(&hard_state, snapshot.as_ref(), &entries)?;
        let mut confs = vec![match &snapshot {
            Some(s) if !s.membership.voters.is_empty() => (s.meta.index, s.membership.clone()),
            _ => (0, Membership::of_voters(&config.peers)),
        }];
        for e in entries.iter().filter(|e| e.kind == EntryKind::Config) {
            let m = Membership::decode(&e.data).ok_or_else(|| {
                Error::InvalidPersisted(format!("configuration entry {} is undecodable", e.index))
            })?;
            confs.push((e.index, m));
        }
        let mut hard_state = hard_state;
        let log_term = entries
            .last()
            .map(|e| e.term)
            .or(snapshot.as_ref().map(|s| s.meta.term))
            .unwrap_or(0);
        if log_term > hard_state.term {
            // A crash between writing the entries of a Ready and its hard
            // state: nothing of that Ready was sent (messages go out after
            // both are durable), so no vote was promised in the newer term.
            hard_state.term = log_term;
            hard_state.vote = None;
        }
        let log = RaftLog::restore(snapshot, entries, hard_state.commit);
        let mut r = Raft {
            id: config.id,
            others: Vec::new(),
            confs,
            members: Membership::default(),
            members_index: 0,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            cfg: config,
            term: hard_state.term,
            vote: hard_state.vote,
            role: Role::Follower,
            leader: None,
            log,
            now: 0,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: 0,
            restart_guard: true,
            votes: FxHashMap::default(),
            progress: BTreeMap::new(),
            msgs: Vec::new(),
            reads: ReadOnly::default(),
            need_broadcast: false,
            transferee: None,
            transfer_start: 0,
            lease_revoked: false,
            prev_soft: SoftState {
                role: Role::Follower,
                leader: None,
                term: hard_state.term,
            },
            prev_hard: hard_state,
            pending_snapshot: None,
            read_states: Vec::new(),
            aborted_reads: Vec::new(),
        };
        r.prev_hard.commit = r.log.committed;
        r.reset_randomized_timeout();
        r.apply_membership();
        Ok(r)
    }

    /// Advances time by one tick: followers and candidates count towards an
    /// election; a leader sends heartbeats, checks its quorum and times out
    /// a leadership transfer.
    pub fn tick(&mut self) {
        self.now += 1;
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.election_elapsed = self.election_elapsed.saturating_add(1);
            if self.election_elapsed >= self.cfg.election_ticks {
                self.restart_guard = false;
            }
            // Only a voter campaigns: a learner, a node waiting to join
            // and a removed node never do.
            if self.election_elapsed >= self.randomized_timeout && self.members.is_voter(self.id) {
                self.campaign(false);
            }
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        let e = u64::from(self.cfg.election_ticks);
        if self.cfg.check_quorum && self.now.saturating_sub(self.quorum_contact()) >= e {
            // CheckQuorum: no majority heard from for an election timeout.
            let term = self.term;
            self.become_follower(term, None);
            return;
        }
        if self.transferee.is_some() && self.now - self.transfer_start >= e {
            self.transferee = None;
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    /// Handles one message from a peer.
    pub fn step(&mut self, msg: Message) -> Result<(), Error> {
        if msg.to != self.id || msg.from == self.id {
            return Err(Error::Misrouted {
                id: self.id,
                from: msg.from,
                to: msg.to,
            });
        }
        if matches!(
            msg.body,
            MessageBody::PreVote { .. } | MessageBody::RequestVote { .. } | MessageBody::TimeoutNow
        ) && !self.members.is_voter(msg.from)
        {
            // A node that is not a voter here (removed, or not yet
            // promoted as far as this log knows) cannot raise our term,
            // win our vote or start our election: a removed node does not
            // disrupt the cluster.
            return Ok(());
        }
        if msg.term > self.term {
            match &msg.body {
                MessageBody::PreVote { .. } | MessageBody::RequestVote { .. } => {
                    let transfer =
                        matches!(msg.body, MessageBody::RequestVote { transfer: true, .. });
                    if !transfer && self.in_lease() {
                        // CheckQuorum: a leader is alive as far as we know;
                        // a node that merely lost touch must not depose it.
                        return Ok(());
                    }
                    if let MessageBody::RequestVote { .. } = msg.body {
                        self.become_follower(msg.term, None);
                    }
                }
                MessageBody::PreVoteResponse { granted: true } => {}
                MessageBody::AppendEntries { .. }
                | MessageBody::InstallSnapshot { .. }
                | MessageBody::TimeoutNow => self.become_follower(msg.term, Some(msg.from)),
                _ => self.become_follower(msg.term, None),
            }
        } else if msg.term < self.term {
            self.step_stale(msg);
            return Ok(());
        }
        self.step_current(msg);
        Ok(())
    }

    /// A message from an older term: answer those whose sender must learn
    /// of the newer term (a deposed leader, a pre-candidate), drop the rest.
    fn step_stale(&mut self, msg: Message) {
        match msg.body {
            MessageBody::AppendEntries { .. } | MessageBody::InstallSnapshot { .. } => {
                let last = self.log.last_index();
                self.send(
                    msg.from,
                    MessageBody::AppendEntriesResponse {
                        success: false,
                        match_index: last,
                        conflict: None,
                        read_round: 0,
                    },
                );
            }
            MessageBody::PreVote { .. } => {
                self.send(msg.from, MessageBody::PreVoteResponse { granted: false });
            }
            MessageBody::RequestVote { .. } => {
                self.send(
                    msg.from,
                    MessageBody::RequestVoteResponse { granted: false },
                );
            }
            _ => {}
        }
    }

    fn step_current(&mut self, msg: Message) {
        let from = msg.from;
        match msg.body {
            MessageBody::PreVote {
                last_log_index,
                last_log_term,
            } => {
                // Granting a pre-vote changes nothing here: it only says
                // an election in `msg.term` could be won.
                let granted = msg.term > self.term
                    && (self.cfg.has_bug(Bug::VoteWithoutLogCheck)
                        || self.log.is_up_to_date(last_log_index, last_log_term));
                let term = if granted { msg.term } else { self.term };
                self.msgs.push(Message {
                    from: self.id,
                    to: from,
                    term,
                    body: MessageBody::PreVoteResponse { granted },
                });
            }
            MessageBody::RequestVote {
                last_log_index,
                last_log_term,
                ..
            } => {
                let can_vote =
                    self.vote == Some(from) || (self.vote.is_none() && self.leader.is_none());
                // Bug::VoteWithoutLogCheck skips §5.4.1's restriction, so a
                // candidate missing committed entries can win and overwrite
                // them.
                let log_ok = self.cfg.has_bug(Bug::VoteWithoutLogCheck)
                    || self.log.is_up_to_date(last_log_index, last_log_term);
                let granted = can_vote && log_ok && self.role != Role::Leader;
                if granted {
                    self.vote = Some(from);
                    self.election_elapsed = 0;
                }
                self.send(from, MessageBody::RequestVoteResponse { granted });
            }
            MessageBody::PreVoteResponse { granted } => {
                if self.role == Role::PreCandidate && (msg.term == self.term + 1 || !granted) {
                    self.votes.insert(from, granted);
                    self.tally(false);
                }
            }
            MessageBody::RequestVoteResponse { granted } => {
                if self.role == Role::Candidate {
                    self.votes.insert(from, granted);
                    self.tally(true);
                }
            }
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                read_round,
            } => {
                self.heard_from_leader(from);
                self.handle_append(
                    from,
                    prev_log_index,
                    prev_log_term,
                    entries,
                    leader_commit,
                    read_round,
                );
            }
            MessageBody::InstallSnapshot { snapshot } => {
                self.heard_from_leader(from);
                self.handle_snapshot(from, snapshot);
            }
            MessageBody::TimeoutNow => {
                if self.role != Role::Leader && self.members.is_voter(self.id) {
                    self.campaign(true);
                }
            }
            MessageBody::AppendEntriesResponse {
                success,
                match_index,
                conflict,
                read_round,
            } => {
                if self.role == Role::Leader {
                    self.handle_append_response(from, success, match_index, conflict, read_round);
                }
            }
            MessageBody::InstallSnapshotResponse { last_index } => {
                if self.role == Role::Leader {
                    self.handle_snapshot_response(from, last_index);
                }
            }
        }
    }

    /// Leader only: appends a Normal entry; returns (index, term) of it.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(u64, u64), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if self.transferee.is_some() {
            return Err(Error::TransferInProgress);
        }
        let index = self.log.last_index() + 1;
        self.log_push(Entry {
            term: self.term,
            index,
            kind: EntryKind::Normal,
            data,
        });
        // Sent at the next flush, so that every proposal made before the
        // driver's next `ready` travels in one message per follower.
        self.need_broadcast = true;
        Ok((index, self.term))
    }

    /// Leader only: starts a read; ctx comes back in Ready::read_states or
    /// Ready::aborted_reads. A read asked for before the leader has
    /// committed an entry of its term waits for that commit. A lease read
    /// whose lease cannot be established — always, without CheckQuorum,
    /// since then nothing bounds a deposed leader's belief — falls back to
    /// ReadIndex.
    pub fn read_index(&mut self, ctx: u64, mode: ReadMode) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if self.cfg.has_bug(Bug::StaleLeaderRead) {
            // Bug::StaleLeaderRead: answers at the local commit index without
            // asking anyone, so a deposed leader that has not noticed serves
            // stale data.
            self.read_states.push(ReadState {
                ctx,
                index: self.log.committed,
            });
            return Ok(());
        }
        if self.log.term(self.log.committed) != Some(self.term) {
            self.reads.add_waiting(ctx, mode);
            return Ok(());
        }
        self.start_read(ctx, mode);
        Ok(())
    }

    fn start_read(&mut self, ctx: u64, mode: ReadMode) {
        let index = self.log.committed;
        if self.sole_voter() || (mode == ReadMode::Lease && self.lease_valid()) {
            self.read_states.push(ReadState { ctx, index });
        } else {
            self.reads.add_pending(ctx, index);
        }
    }

    /// Leader only: hands leadership to `to` once its log has caught up
    /// (proposals are refused meanwhile; the transfer is abandoned after an
    /// election timeout).
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if to == self.id || self.transferee == Some(to) {
            return Ok(());
        }
        if !self.members.is_voter(to) {
            return Err(Error::UnknownPeer(to));
        }
        self.transferee = Some(to);
        self.transfer_start = self.now;
        self.lease_revoked = true;
        if self.progress[&to].matched == self.log.last_index() {
            self.send(to, MessageBody::TimeoutNow);
        } else {
            self.send_append(to, true);
        }
        Ok(())
    }

    /// The application took a snapshot of its state machine at `index` (<=
    /// the last committed index emitted in a Ready); the core compacts its
    /// log up to it and keeps the snapshot to send to lagging followers via
    /// InstallSnapshot.
    /// Returns the membership in force at `index`, which the snapshot
    /// holds and the driver persists with it.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) -> Result<Membership, Error> {
        if index > self.log.applied {
            return Err(Error::BadSnapshotIndex {
                index,
                reason: "not yet handed out as committed",
            });
        }
        if index <= self.log.offset() {
            return Err(Error::BadSnapshotIndex {
                index,
                reason: "already covered by a snapshot",
            });
        }
        // The configuration in force at `index` becomes the first one kept.
        let keep = self
            .confs
            .iter()
            .rposition(|(i, _)| *i <= index)
            .unwrap_or(0);
        self.confs.drain(..keep);
        let membership = self.confs[0].1.clone();
        self.log.compact(index, data, membership.clone());
        Ok(membership)
    }

    /// Leader only: starts a membership change (one at a time, and only
    /// once the leader has committed an entry of its term). Adding or
    /// removing a learner is one configuration entry; a change of voters
    /// first appends the joint configuration C_old,new, and once that is
    /// committed the leader appends C_new by itself. Each takes effect when
    /// appended. Returns the index of the first configuration entry.
    pub fn change_membership(&mut self, change: MembershipChange) -> Result<u64, Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if self.transferee.is_some() {
            return Err(Error::TransferInProgress);
        }
        let (at, cur) = self.confs.last().expect("a configuration");
        if *at > self.log.committed || cur.is_joint() {
            return Err(Error::ChangeInProgress(
                "the previous membership change is not committed yet",
            ));
        }
        if self.log.term(self.log.committed) != Some(self.term) {
            return Err(Error::ChangeInProgress(
                "the leader has not yet committed an entry of its term",
            ));
        }
        let mut voters = cur.voters.clone();
        let mut learners = cur.learners.clone();
        let bad = |s: String| Err(Error::BadChange(s));
        let committed = self.log.committed;
        let promote = |voters: &mut Vec<NodeId>, learners: &mut Vec<NodeId>, id: NodeId| {
            if !learners.contains(&id) {
                return bad(format!("node {id} is not a learner"));
            }
            let matched = self.progress.get(&id).map_or(0, |p| p.matched);
            if matched < committed {
                return bad(format!(
                    "learner {id} has not caught up (it holds up to index {matched}, the commit index is {committed})"
                ));
            }
            learners.retain(|&l| l != id);
            voters.push(id);
            Ok(())
        };
        let remove_voter = |voters: &mut Vec<NodeId>, id: NodeId| {
            if !voters.contains(&id) {
                return bad(format!("node {id} is not a voter"));
            }
            voters.retain(|&v| v != id);
            Ok(())
        };
        match change {
            MembershipChange::AddLearner(id) => {
                if cur.nodes().contains(&id) {
                    return Err(Error::BadChange(format!("node {id} is already a member")));
                }
                learners.push(id);
            }
            MembershipChange::Promote(id) => promote(&mut voters, &mut learners, id)?,
            MembershipChange::Remove(id) if learners.contains(&id) => learners.retain(|&l| l != id),
            MembershipChange::Remove(id) => {
                if voters == [id] {
                    return Err(Error::LastVoter(id));
                }
                remove_voter(&mut voters, id)?;
            }
            MembershipChange::Replace { promote: p, remove } => {
                if p == remove {
                    return Err(Error::BadChange(format!("node {p} cannot replace itself")));
                }
                remove_voter(&mut voters, remove)?;
                promote(&mut voters, &mut learners, p)?;
            }
        }
        voters.sort_unstable();
        learners.sort_unstable();
        // Bug::SingleStepChange: goes from C_old to C_new at once; for a
        // change of more than one voter a majority of C_old and one of C_new
        // need not overlap, so two leaders can be elected in one term.
        let outgoing = if voters != cur.voters && !self.cfg.has_bug(Bug::SingleStepChange) {
            cur.voters.clone()
        } else {
            Vec::new()
        };
        let next = Membership {
            voters,
            outgoing,
            learners,
        };
        Ok(self.append_config(next))
    }

    /// The membership in force on this node and the index of the entry
    /// that set it (0: the initial one, or one a snapshot carries).
    pub fn membership(&self) -> (&Membership, u64) {
        (&self.members, self.members_index)
    }

    /// True when `ready` would return something to act on.
    pub fn has_ready(&self) -> bool {
        self.reads.need_round
            || self.need_broadcast
            || !self.msgs.is_empty()
            || self.pending_snapshot.is_some()
            || self.log.has_unstable()
            || self.log.has_committed_to_apply()
            || self.soft_state() != self.prev_soft
            || self.hard_state() != self.prev_hard
            || !self.read_states.is_empty()
            || !self.aborted_reads.is_empty()
    }

    /// Drains everything pending; the driver acts on it in the order
    /// documented on `Ready`.
    pub fn ready(&mut self) -> Ready {
        self.membership_steps();
        self.flush();
        let snapshot = self.pending_snapshot.take();
        let entries = self.log.take_unstable();
        if self.role == Role::Leader && !entries.is_empty() {
            // The leader's own copy counts towards the commit only from the
            // Ready that hands it out for persistence.
            self.maybe_commit();
        }
        // What a commit just now set in motion (C_new after C_old,new, a
        // removed leader stepping down) leaves with the next Ready.
        self.membership_steps();
        let mut rd = Ready {
            snapshot,
            entries,
            ..Ready::default()
        };
        let soft = self.soft_state();
        if soft != self.prev_soft {
            rd.soft_state = Some(soft);
            self.prev_soft = soft;
        }
        let hard = self.hard_state();
        if hard != self.prev_hard {
            rd.hard_state = Some(hard);
            self.prev_hard = hard;
        }
        rd.messages = std::mem::take(&mut self.msgs);
        rd.committed = self.log.take_committed();
        rd.read_states = std::mem::take(&mut self.read_states);
        rd.aborted_reads = std::mem::take(&mut self.aborted_reads);
        rd
    }

    /// A read-only view of this node.
    pub fn status(&self) -> Status {
        Status {
            id: self.id,
            role: self.role,
            term: self.term,
            leader: self.leader,
            commit_index: self.log.committed,
            last_log_index: self.log.last_index(),
            snapshot_index: self.log.offset(),
        }
    }

    /// The log as held in memory: the snapshot's index and term, then the
    /// entries after it (for the simulator's checks and for tests).
    pub fn log_view(&self) -> (u64, u64, &[Entry]) {
        let off = self.log.offset();
        (off, self.log.term(off).unwrap_or(0), self.log.entries())
    }

    // ----- internals -----

    fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role,
            leader: self.leader,
            term: self.term,
        }
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            // Bug::ForgetVote: the vote never reaches the disk, so a node that
            // restarts within a term can vote a second time in it.
            vote: if self.cfg.has_bug(Bug::ForgetVote) {
                None
            } else {
                self.vote
            },
            commit: self.log.committed,
        }
    }

    /// The highest value that a majority of every voter set in force
    /// reaches (this node counts only where it is a voter).
    fn quorum_value(&self, value: impl Fn(NodeId) -> u64) -> u64 {
        self.members
            .majorities()
            .map(|set| {
                let mut v: Vec<u64> = set.iter().map(|&id| value(id)).collect();
                v.sort_unstable_by(|a, b| b.cmp(a));
                v.get(set.len() / 2).copied().unwrap_or(0)
            })
            .min()
            .unwrap_or(0)
    }

    /// True when this node alone decides (the only voter).
    fn sole_voter(&self) -> bool {
        !self.members.is_joint() && self.members.voters == [self.id]
    }

    /// Appends a configuration entry (leader only) and puts it in force.
    fn append_config(&mut self, next: Membership) -> u64 {
        let index = self.log.last_index() + 1;
        self.log_push(Entry {
            term: self.term,
            index,
            kind: EntryKind::Config,
            data: next.encode(),
        });
        self.need_broadcast = true;
        self.apply_membership();
        index
    }

    /// Appends to the log, noting a configuration entry.
    fn log_push(&mut self, e: Entry) {
        if e.kind == EntryKind::Config
            && let Some(m) = Membership::decode(&e.data)
        {
            self.confs.push((e.index, m));
        }
        self.log.push(e);
    }

    /// Deletes the log from `index` on, and the configurations it held.
    fn log_truncate(&mut self, index: u64) {
        let keep = self.confs.iter().filter(|(i, _)| *i < index).count().max(1);
        self.confs.truncate(keep);
        self.log.truncate_from(index);
    }

    /// Puts the configuration in force: the latest in the log. The set of
    /// nodes this node talks to follows it, and so does a leader's
    /// progress tracking.
    fn apply_membership(&mut self) {
        let (index, m) = if self.cfg.has_bug(Bug::ConfigOnCommit) {
            // Bug::ConfigOnCommit: a configuration counts only once
            // committed, so between appending C_old,new and committing it a
            // leader still decides by C_old alone.
            let c = self.log.committed;
            let at = self.confs.iter().rposition(|(i, _)| *i <= c).unwrap_or(0);
            &self.confs[at]
        } else {
            self.confs.last().expect("a configuration")
        };
        if *index == self.members_index && *m == self.members {
            return;
        }
        self.members_index = *index;
        self.members = m.clone();
        self.others = self.members.nodes();
        self.others.retain(|&n| n != self.id);
        if self.role == Role::Leader {
            let (last, now) = (self.log.last_index(), self.now);
            self.progress.retain(|id, _| self.others.contains(id));
            for &n in &self.others {
                self.progress
                    .entry(n)
                    .or_insert_with(|| Progress::new(last, now));
            }
            if self.transferee.is_some_and(|t| !self.members.is_voter(t)) {
                self.transferee = None;
            }
        }
    }

    /// What follows from configurations being committed: C_new after a
    /// committed C_old,new, and a leader outside a committed C_new steps
    /// down.
    fn membership_steps(&mut self) {
        self.apply_membership();
        if self.role != Role::Leader {
            return;
        }
        let (at, last) = self.confs.last().expect("a configuration");
        if *at > self.log.committed {
            return;
        }
        if last.is_joint() {
            let next = Membership {
                voters: last.voters.clone(),
                outgoing: Vec::new(),
                learners: last.learners.clone(),
            };
            self.append_config(next);
        } else if !last.voters.contains(&self.id) {
            let term = self.term;
            self.become_follower(term, None);
        }
    }

    /// The voters other than this node (whom elections ask).
    fn other_voters(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .others
            .iter()
            .copied()
            .filter(|&n| self.members.is_voter(n))
            .collect();
        v.sort_unstable();
        v
    }

    fn send(&mut self, to: NodeId, body: MessageBody) {
        self.msgs.push(Message {
            from: self.id,
            to,
            term: self.term,
            body,
        });
    }

    fn reset_randomized_timeout(&mut self) {
        let e = self.cfg.election_ticks;
        self.randomized_timeout = self.rng.random_range(e..2 * e);
    }

    /// True while this node believes a leader is alive (CheckQuorum): then
    /// vote requests that are not a leadership transfer are ignored.
    fn in_lease(&self) -> bool {
        if !self.cfg.check_quorum {
            return false;
        }
        if self.role == Role::Leader {
            return true;
        }
        (self.leader.is_some() || self.restart_guard)
            && self.election_elapsed < self.cfg.election_ticks
    }

    fn heard_from_leader(&mut self, from: NodeId) {
        if self.role != Role::Follower {
            let term = self.term;
            self.become_follower(term, Some(from));
        }
        self.leader = Some(from);
        self.election_elapsed = 0;
        self.restart_guard = false;
    }

    fn abort_reads(&mut self) {
        let aborted = self.reads.abort_all();
        self.aborted_reads.extend(aborted);
    }

    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        if self.role == Role::Leader {
            self.abort_reads();
            self.progress.clear();
            self.need_broadcast = false;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.election_elapsed = 0;
        self.votes.clear();
        self.transferee = None;
        self.lease_revoked = false;
        self.reset_randomized_timeout();
    }

    fn campaign(&mut self, transfer: bool) {
        if self.cfg.pre_vote && !transfer {
            self.become_pre_candidate();
        } else {
            self.become_candidate(transfer);
        }
    }

    /// What a pre-vote and a vote round share: the new role, no leader, a
    /// fresh timeout, this node's own vote; returns the last log index and
    /// term the requests carry.
    fn start_round(&mut self, role: Role) -> (u64, u64) {
        self.role = role;
        self.leader = None;
        self.election_elapsed = 0;
        self.reset_randomized_timeout();
        self.votes.clear();
        self.votes.insert(self.id, true);
        (self.log.last_index(), self.log.last_term())
    }

    fn become_pre_candidate(&mut self) {
        let (li, lt) = self.start_round(Role::PreCandidate);
        for to in self.other_voters() {
            self.msgs.push(Message {
                from: self.id,
                to,
                term: self.term + 1,
                body: MessageBody::PreVote {
                    last_log_index: li,
                    last_log_term: lt,
                },
            });
        }
        self.tally(false);
    }

    fn become_candidate(&mut self, transfer: bool) {
        self.term += 1;
        self.vote = Some(self.id);
        let (li, lt) = self.start_round(Role::Candidate);
        for to in self.other_voters() {
            self.send(
                to,
                MessageBody::RequestVote {
                    last_log_index: li,
                    last_log_term: lt,
                    transfer,
                },
            );
        }
        self.tally(true);
    }

    /// Counts (pre-)votes and moves on when a majority decided.
    fn tally(&mut self, real: bool) {
        // Won with a majority of every voter set in force; lost once a
        // majority of any of them is out of reach.
        let mut won = true;
        let mut lost = false;
        for set in self.members.majorities() {
            let q = set.len() / 2 + 1;
            let count = |g: bool| {
                set.iter()
                    .filter(|id| self.votes.get(id) == Some(&g))
                    .count()
            };
            won &= count(true) >= q;
            lost |= count(false) + q > set.len();
        }
        if won {
            if real {
                self.become_leader();
            } else {
                self.become_candidate(false);
            }
        } else if lost {
            let term = self.term;
            self.become_follower(term, None);
        }
    }

    fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.transferee = None;
        self.lease_revoked = false;
        self.votes.clear();
        let last = self.log.last_index();
        let now = self.now;
        self.progress = self
            .others
            .iter()
            .map(|&p| (p, Progress::new(last, now)))
            .collect();
        self.reads.abort_all();
        // §8: a no-op opens the term; entries of earlier terms are committed
        // through it (Figure 8).
        self.log_push(Entry {
            term: self.term,
            index: last + 1,
            kind: EntryKind::Noop,
            data: Vec::new(),
        });
        for i in 0..self.others.len() {
            let to = self.others[i];
            self.send_append(to, true);
        }
    }

    /// The tick by which a majority (this node included) was last heard from.
    fn quorum_contact(&self) -> u64 {
        self.quorum_value(|id| {
            if id == self.id {
                self.now
            } else {
                self.progress.get(&id).map_or(0, |p| p.last_contact)
            }
        })
    }

    /// The highest heartbeat round a majority (this node included) acked.
    fn quorum_round(&self) -> u64 {
        self.quorum_value(|id| {
            if id == self.id {
                self.reads.round
            } else {
                self.progress.get(&id).map_or(0, |p| p.acked_round)
            }
        })
    }

    /// Lease reads: a majority acknowledged a round that began at tick `s`;
    /// each of them then refuses votes until at least `s + election_ticks`
    /// (CheckQuorum), so no other leader can exist before that. One tick of
    /// margin covers nodes whose ticks are out of phase.
    fn lease_valid(&self) -> bool {
        if self.lease_revoked || !self.cfg.check_quorum {
            return false;
        }
        let Some(start) = self.reads.round_tick(self.quorum_round()) else {
            return false;
        };
        self.now + 1 < start + u64::from(self.cfg.election_ticks)
    }

    /// Sends what was batched since the last flush: appends after
    /// proposals, a new heartbeat round for reads, commit updates.
    fn flush(&mut self) {
        if self.role != Role::Leader {
            self.need_broadcast = false;
            self.reads.need_round = false;
            return;
        }
        let round = self.reads.need_round;
        if round {
            self.reads.start_round(self.now);
        }
        let bcast = std::mem::take(&mut self.need_broadcast);
        for i in 0..self.others.len() {
            let to = self.others[i];
            let mut sent = false;
            if bcast {
                while self.send_append(to, false) {
                    sent = true;
                }
            }
            let pr = &self.progress[&to];
            let stale_commit = pr.sent_commit < self.log.committed.min(pr.matched);
            if !sent && (round || stale_commit) {
                self.send_heartbeat(to);
            }
        }
    }

    fn broadcast_heartbeat(&mut self) {
        self.reads.start_round(self.now);
        let stall = u64::from((2 * self.cfg.heartbeat_ticks).max(self.cfg.election_ticks / 2));
        let e = u64::from(self.cfg.election_ticks);
        let now = self.now;
        for i in 0..self.others.len() {
            let to = self.others[i];
            let pr = self.progress.get_mut(&to).expect("progress of a peer");
            let probe = match pr.state {
                // Resend the probe: it or its answer may have been lost.
                ProgressState::Probe => {
                    pr.paused = false;
                    true
                }
                // Nothing acknowledged for a while with messages in flight:
                // assume they were lost and probe again.
                ProgressState::Replicate
                    if !pr.inflight.is_empty() && now - pr.progress_tick >= stall =>
                {
                    let next = pr.matched + 1;
                    pr.become_probe(next);
                    true
                }
                // The snapshot or its answer may have been lost.
                ProgressState::Snapshot(_) if now - pr.snapshot_tick >= e => {
                    let next = pr.matched + 1;
                    pr.become_probe(next);
                    true
                }
                _ => false,
            };
            if !(probe && self.send_append(to, true)) {
                self.send_heartbeat(to);
            }
        }
        // A sole voter confirms its own round at once.
        self.confirm_reads();
    }

    /// An empty AppendEntries at the follower's matched index, which it is
    /// known to hold: it carries the commit index and the read round and
    /// can never be rejected by a follower of this term.
    fn send_heartbeat(&mut self, to: NodeId) {
        let commit = self.log.committed;
        let round = self.reads.round;
        let pr = self.progress.get_mut(&to).expect("progress of a peer");
        let (prev, prev_term) = match self.log.term(pr.matched) {
            Some(t) => (pr.matched, t),
            None => (0, 0),
        };
        let leader_commit = commit.min(prev);
        pr.sent_commit = pr.sent_commit.max(leader_commit);
        self.send(
            to,
            MessageBody::AppendEntries {
                prev_log_index: prev,
                prev_log_term: prev_term,
                entries: Vec::new(),
                leader_commit,
                read_round: round,
            },
        );
    }

    /// Sends the follower its next batch (or the snapshot when the entries
    /// it needs are compacted). With `allow_empty`, sends even when there
    /// are no new entries (a probe). Returns whether a message was sent.
    fn send_append(&mut self, to: NodeId, allow_empty: bool) -> bool {
        let max_inflight = self.cfg.max_inflight_msgs;
        let pr = self.progress.get_mut(&to).expect("progress of a peer");
        if pr.is_paused(max_inflight) {
            return false;
        }
        let prev = pr.next - 1;
        let Some(prev_term) = self.log.term(prev) else {
            let Some(snapshot) = self.log.snapshot.clone() else {
                return false;
            };
            pr.become_snapshot(snapshot.meta.index, self.now);
            self.send(to, MessageBody::InstallSnapshot { snapshot });
            return true;
        };
        let entries = self.log.slice(
            pr.next,
            self.cfg.max_entries_per_msg,
            self.cfg.max_bytes_per_msg,
        );
        if entries.is_empty() && !allow_empty {
            return false;
        }
        let last = prev + entries.len() as u64;
        match pr.state {
            ProgressState::Replicate => {
                if !entries.is_empty() {
                    pr.next = last + 1;
                    pr.inflight.push_back(last);
                }
            }
            ProgressState::Probe => pr.paused = true,
            ProgressState::Snapshot(_) => {}
        }
        let leader_commit = self.log.committed.min(last);
        pr.sent_commit = pr.sent_commit.max(leader_commit);
        let round = self.reads.round;
        self.send(
            to,
            MessageBody::AppendEntries {
                prev_log_index: prev,
                prev_log_term: prev_term,
                entries,
                leader_commit,
                read_round: round,
            },
        );
        true
    }

    fn handle_append(
        &mut self,
        from: NodeId,
        mut prev: u64,
        prev_term: u64,
        mut entries: Vec<Entry>,
        leader_commit: u64,
        read_round: u64,
    ) {
        let msg_last = prev + entries.len() as u64;
        let mut prev_term = prev_term;
        let committed = self.log.committed;
        if prev < committed {
            // What we committed is in every later leader's log, so the part
            // of the message up to our commit index matches: skip it.
            let skip = ((committed - prev) as usize).min(entries.len());
            entries.drain(..skip);
            if entries.is_empty() {
                self.send(
                    from,
                    MessageBody::AppendEntriesResponse {
                        success: true,
                        match_index: msg_last.min(committed),
                        conflict: None,
                        read_round,
                    },
                );
                return;
            }
            prev = committed;
            prev_term = self.log.term(committed).unwrap_or(0);
        }
        let last = self.log.last_index();
        let reject = match self.log.term(prev) {
            None => Some(ConflictHint {
                term: 0,
                index: last + 1,
            }),
            Some(t) if t != prev_term => Some(ConflictHint {
                term: t,
                index: self.log.first_index_of_term_at(prev),
            }),
            Some(_) => None,
        };
        if let Some(hint) = reject {
            self.send(
                from,
                MessageBody::AppendEntriesResponse {
                    success: false,
                    match_index: last,
                    conflict: Some(hint),
                    read_round,
                },
            );
            return;
        }
        let no_truncate = self.cfg.has_bug(Bug::NoTruncateOnConflict);
        let mut iter = entries.into_iter();
        for e in iter.by_ref() {
            match self.log.term(e.index) {
                Some(t) if t == e.term => continue,
                // Bug::NoTruncateOnConflict: keeps its own conflicting entry
                // (and those after it) and acknowledges as if it held the
                // leader's, so the leader counts it towards a commit of
                // entries this node does not have.
                Some(_) if no_truncate => continue,
                Some(_) => {
                    self.log_truncate(e.index);
                    self.log_push(e);
                    break;
                }
                None => {
                    self.log_push(e);
                    break;
                }
            }
        }
        for e in iter {
            if e.index <= self.log.last_index() {
                continue;
            }
            self.log_push(e);
        }
        self.apply_membership();
        let new_commit = leader_commit.min(msg_last).min(self.log.last_index());
        if new_commit > self.log.committed {
            self.log.committed = new_commit;
        }
        self.send(
            from,
            MessageBody::AppendEntriesResponse {
                success: true,
                match_index: msg_last,
                conflict: None,
                read_round,
            },
        );
    }

    fn handle_snapshot(&mut self, from: NodeId, snapshot: Snapshot) {
        let idx = snapshot.meta.index;
        let matched = if idx <= self.log.committed {
            self.log.committed
        } else if self.log.term(idx) == Some(snapshot.meta.term) {
            // We hold the snapshot's last entry: our log up to it is the
            // leader's, so only the commit index moves.
            self.log.committed = idx;
            idx
        } else {
            if !snapshot.membership.voters.is_empty() {
                self.confs = vec![(idx, snapshot.membership.clone())];
            }
            self.log.install(snapshot.clone());
            self.pending_snapshot = Some(snapshot);
            self.apply_membership();
            idx
        };
        self.send(
            from,
            MessageBody::InstallSnapshotResponse {
                last_index: matched,
            },
        );
    }

    fn handle_append_response(
        &mut self,
        from: NodeId,
        success: bool,
        match_index: u64,
        conflict: Option<ConflictHint>,
        read_round: u64,
    ) {
        let now = self.now;
        let last = self.log.last_index();
        if !self.progress.contains_key(&from) {
            // From a node that is no longer a member.
            return;
        }
        {
            let pr = self.progress.get_mut(&from).expect("progress of a peer");
            pr.last_contact = now;
            pr.acked_round = pr.acked_round.max(read_round);
        }
        if success {
            let pr = self.progress.get_mut(&from).expect("progress of a peer");
            let moved = pr.ack(match_index, now);
            match pr.state {
                // Only the answer to the probe itself (not to a heartbeat at
                // the old matched index) says where the logs agree.
                ProgressState::Probe if match_index + 1 >= pr.next => pr.become_replicate(now),
                ProgressState::Snapshot(idx) if pr.matched >= idx => pr.become_replicate(now),
                _ => {}
            }
            if moved && self.maybe_commit() {
                self.need_broadcast = true;
            }
            if self.transferee == Some(from) && self.progress[&from].matched == last {
                self.send(from, MessageBody::TimeoutNow);
            }
            while self.send_append(from, false) {}
        } else if let Some(hint) = conflict {
            let next = if hint.term == 0 {
                hint.index
            } else {
                match self.log.last_index_of_term(hint.term) {
                    Some(j) => j + 1,
                    None => hint.index,
                }
            };
            let pr = self.progress.get_mut(&from).expect("progress of a peer");
            let next = next.min(last + 1).min(pr.next.max(pr.matched + 1));
            if !matches!(pr.state, ProgressState::Snapshot(_)) {
                pr.become_probe(next);
                self.send_append(from, true);
            }
        }
        self.confirm_reads();
    }

    fn handle_snapshot_response(&mut self, from: NodeId, last_index: u64) {
        let now = self.now;
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.last_contact = now;
        pr.ack(last_index, now);
        let next = pr.matched + 1;
        pr.become_probe(next);
        if self.maybe_commit() {
            self.need_broadcast = true;
        }
        self.send_append(from, true);
    }

    fn confirm_reads(&mut self) {
        let q = self.quorum_round();
        let mut out = Vec::new();
        self.reads.confirm(q, &mut out);
        self.read_states.extend(out);
    }

    /// Advances the commit index to what a majority holds, counting only an
    /// entry of the current term (Figure 8). True when it moved.
    fn maybe_commit(&mut self) -> bool {
        let q = self.quorum_value(|id| {
            if id == self.id {
                self.log.stable
            } else {
                self.progress.get(&id).map_or(0, |p| p.matched)
            }
        });
        if q <= self.log.committed {
            return false;
        }
        // Bug::CommitPreviousTerm: counting replicas of an older term's entry
        // is not enough (Figure 8): a leader elected without it may still
        // overwrite it.
        let current = self.log.term(q) == Some(self.term);
        if !current && !self.cfg.has_bug(Bug::CommitPreviousTerm) {
            return false;
        }
        let first_in_term = self.log.term(self.log.committed) != Some(self.term) && current;
        self.log.committed = q;
        if first_in_term {
            for (ctx, mode) in self.reads.take_waiting() {
                self.start_read(ctx, mode);
            }
        }
        true
    }
}

fn validate_config(c: &Config) -> Result<(), Error> {
    let bad = |s: String| Err(Error::InvalidConfig(s));
    // No peers: a node that joins a running cluster.
    if !c.peers.is_empty() && !c.peers.contains(&c.id) {
        return bad(format!(
            "peers {:?} do not include this node {}",
            c.peers, c.id
        ));
    }
    let mut sorted = c.peers.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != c.peers.len() {
        return bad(format!("peers {:?} contain duplicates", c.peers));
    }
    if c.heartbeat_ticks == 0 {
        return bad("heartbeat_ticks must be at least 1".into());
    }
    if c.election_ticks <= c.heartbeat_ticks {
        return bad(format!(
            "election_ticks ({}) must exceed heartbeat_ticks ({})",
            c.election_ticks, c.heartbeat_ticks
        ));
    }
    if c.max_entries_per_msg == 0 {
        return bad("max_entries_per_msg must be at least 1".into());
    }
    if c.max_inflight_msgs == 0 {
        return bad("max_inflight_msgs must be at least 1".into());
    }
    Ok(())
}

fn validate_persisted(
    hs: &HardState,
    snapshot: Option<&Snapshot>,
    entries: &[Entry],
) -> Result<(), Error> {
    let bad = |s: String| Err(Error::InvalidPersisted(s));
    let meta = snapshot.map(|s| s.meta).unwrap_or_default();
    let mut expect = meta.index + 1;
    let mut term = meta.term;
    for e in entries {
        if e.index != expect {
            return bad(format!(
                "entry index {} where {} was expected (entries must follow the snapshot contiguously)",
                e.index, expect
            ));
        }
        if e.term < term {
            return bad(format!(
                "entry {} has term {} below the previous term {}",
                e.index, e.term, term
            ));
        }
        term = e.term;
        expect += 1;
    }
    let last = expect - 1;
    if hs.commit > last {
        return bad(format!(
            "commit index {} is beyond the last persisted index {}",
            hs.commit, last
        ));
    }
    Ok(())
}

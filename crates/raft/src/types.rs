//! The values that cross the core's boundary: log entries, hard state,
//! snapshots, messages, the `Ready` output, configuration and errors.
//!
//! Everything here is plain data so that the simulator and the real node can
//! both drive the same core, and so that the node can put messages on the wire
//! with serde.

use serde::{Deserialize, Serialize};

/// A node's identity inside one cluster. The node binary maps names such as
/// `n3` onto these numbers; the core only compares them.
pub type NodeId = u64;

/// What an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryKind {
    /// The empty entry a new leader appends at the start of its term (§8), so
    /// that entries of earlier terms become committed through it.
    Noop,
    /// An application command, opaque to the core.
    Normal,
    /// A membership change: `data` is an encoded [`Membership`], in force on
    /// every node from the moment the entry is appended to its log (§6).
    Config,
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The term of the leader that created the entry.
    pub term: u64,
    /// The entry's position in the log, starting at 1.
    pub index: u64,
    /// A no-op or an application command.
    pub kind: EntryKind,
    /// The command's bytes; empty for a no-op.
    pub data: Vec<u8>,
}

/// The state that must survive a crash: the current term, the vote cast in it,
/// and the commit index (kept so that a restarted node can apply up to it
/// without waiting for a leader).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: u64,
    /// The candidate this node voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// The highest index known to be committed.
    pub commit: u64,
}

/// Where a snapshot stands in the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The last index the snapshot covers.
    pub index: u64,
    /// The term of the entry at `index`.
    pub term: u64,
}

/// A snapshot of the application's state machine at `meta.index`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The index and term it covers.
    pub meta: SnapshotMeta,
    /// The membership in force at `meta.index` (the core fills it in when
    /// it compacts; see [`crate::Raft::compact`]).
    pub membership: Membership,
    /// The application's bytes, opaque to the core.
    pub data: Vec<u8>,
}

/// Who is in the cluster: the voters, and while joint consensus is in force
/// (C_old,new) the old voters too; learners receive the log but never vote
/// or count towards a majority.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Membership {
    /// The voters (C_new while joint), sorted.
    pub voters: Vec<NodeId>,
    /// The old voters (C_old) while joint consensus is in force; empty
    /// otherwise. Sorted.
    pub outgoing: Vec<NodeId>,
    /// Non-voting members, sorted.
    pub learners: Vec<NodeId>,
}

impl Membership {
    /// A configuration of `voters` only.
    pub fn of_voters(voters: &[NodeId]) -> Membership {
        let mut voters = voters.to_vec();
        voters.sort_unstable();
        voters.dedup();
        Membership {
            voters,
            ..Membership::default()
        }
    }

    /// True while decisions need a majority of both `voters` and `outgoing`.
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// True when `id` votes (in either half of a joint configuration).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.outgoing.contains(&id)
    }

    /// Every member: voters, old voters and learners, sorted, once each.
    pub fn nodes(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self
            .voters
            .iter()
            .chain(&self.outgoing)
            .chain(&self.learners)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The voter sets whose majorities every decision needs: one, or two
    /// while joint.
    pub fn majorities(&self) -> impl Iterator<Item = &[NodeId]> {
        std::iter::once(self.voters.as_slice())
            .chain(self.is_joint().then_some(self.outgoing.as_slice()))
    }

    /// The bytes of a `Config` entry: three length-prefixed lists of
    /// little-endian ids.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for list in [&self.voters, &self.outgoing, &self.learners] {
            out.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for id in list {
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
        out
    }

    /// Reads what [`Membership::encode`] wrote; `None` for anything else.
    pub fn decode(mut bytes: &[u8]) -> Option<Membership> {
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, rest) = bytes.split_at_checked(n)?;
            bytes = rest;
            Some(head)
        };
        let mut lists: [Vec<NodeId>; 3] = Default::default();
        for list in &mut lists {
            let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            for _ in 0..len {
                list.push(u64::from_le_bytes(take(8)?.try_into().ok()?));
            }
        }
        if !bytes.is_empty() {
            return None;
        }
        let [voters, outgoing, learners] = lists;
        Some(Membership {
            voters,
            outgoing,
            learners,
        })
    }
}

/// One membership change, asked of the leader with
/// [`crate::Raft::change_membership`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a non-voting member that receives the log.
    AddLearner(NodeId),
    /// Make a learner that has caught up a voter (through joint consensus).
    Promote(NodeId),
    /// Remove a voter (through joint consensus) or a learner.
    Remove(NodeId),
    /// Promote one learner and remove one voter in a single joint change.
    Replace {
        /// The learner to promote.
        promote: NodeId,
        /// The voter to remove.
        remove: NodeId,
    },
}

/// What a node has persisted, handed back to [`crate::Raft::new`] on restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Persisted {
    /// The last persisted hard state.
    pub hard_state: HardState,
    /// The last persisted snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// The persisted log entries after the snapshot, contiguous and in order.
    pub entries: Vec<Entry>,
}

/// One message between two nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term it would campaign in).
    pub term: u64,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of message of the protocol, with their fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// PreVote (§9.6): would you vote for me if I started an election?
    PreVote {
        /// Index of the candidate's last log entry.
        last_log_index: u64,
        /// Term of the candidate's last log entry.
        last_log_term: u64,
    },
    /// The answer to a pre-vote request.
    PreVoteResponse {
        /// Whether the pre-vote is granted.
        granted: bool,
    },
    /// RequestVote (§5.2).
    RequestVote {
        /// Index of the candidate's last log entry.
        last_log_index: u64,
        /// Term of the candidate's last log entry.
        last_log_term: u64,
        /// Set when a leadership transfer asked for this election, so that
        /// voters do not refuse it for having heard from a leader recently.
        transfer: bool,
    },
    /// The answer to a vote request.
    RequestVoteResponse {
        /// Whether the vote is granted.
        granted: bool,
    },
    /// AppendEntries (§5.3), also used as the heartbeat.
    AppendEntries {
        /// Index of the entry just before `entries`.
        prev_log_index: u64,
        /// Term of that entry.
        prev_log_term: u64,
        /// The entries to append; empty for a heartbeat.
        entries: Vec<Entry>,
        /// The leader's commit index.
        leader_commit: u64,
        /// A read-index round this message confirms leadership for (0 = none).
        read_round: u64,
    },
    /// The answer to AppendEntries.
    AppendEntriesResponse {
        /// Whether the consistency check passed and the entries were appended.
        success: bool,
        /// On success, the index of the last entry the follower now holds
        /// from this message; on rejection, the follower's last log index.
        match_index: u64,
        /// On rejection, the fast back-off hint: the term of the conflicting
        /// entry at `prev_log_index` (0 if the follower's log is shorter) and
        /// the first index the follower holds for that term.
        conflict: Option<ConflictHint>,
        /// The read-index round echoed back from the request.
        read_round: u64,
    },
    /// InstallSnapshot (§7), in one message.
    InstallSnapshot {
        /// The snapshot to install.
        snapshot: Snapshot,
    },
    /// The answer to InstallSnapshot.
    InstallSnapshotResponse {
        /// The index up to which the follower's log now matches the
        /// leader's: the snapshot's index, or the follower's commit index if
        /// that is higher (it then ignored the snapshot).
        last_index: u64,
    },
    /// Leadership transfer: start an election now, without waiting.
    TimeoutNow,
}

/// A follower's hint for the leader's back-off after a failed consistency check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictHint {
    /// The term of the follower's entry at the leader's `prev_log_index`, or 0
    /// when the follower's log does not reach that far.
    pub term: u64,
    /// The first index the follower holds with `term`, or its last index + 1
    /// when `term` is 0.
    pub index: u64,
}

/// A node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Follows a leader, or waits for one.
    Follower,
    /// Asks for pre-votes before it bumps its term.
    PreCandidate,
    /// Asks for votes in a new term.
    Candidate,
    /// Replicates its log to the others.
    Leader,
}

/// The volatile state the driver may want to show (role changes, leader).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// This node's role.
    pub role: Role,
    /// The leader this node knows of in the current term.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: u64,
}

/// How a read is confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadMode {
    /// ReadIndex: the leader confirms it is still leader with a round of
    /// heartbeats acknowledged by a majority.
    Safe,
    /// Lease: the leader trusts that no other leader can exist within an
    /// election timeout of the last majority contact. Only allowed when
    /// CheckQuorum is on.
    Lease,
}

/// A read that may be served once the state machine has applied `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The context the driver passed to `read_index`.
    pub ctx: u64,
    /// The commit index at the time leadership was confirmed.
    pub index: u64,
}

/// What the driver must do, in this order (the persistence contract):
///
/// 1. If `snapshot` is set: persist it durably, drop the whole persisted log
///    (the entries it covers and any after it: the log now continues at the
///    snapshot's index + 1), and reset the state machine from it.
/// 2. Append `entries` to the durable log. If the first entry's index is not
///    one past the last persisted index, first delete every persisted entry
///    from that index on (a conflict was truncated).
/// 3. If `hard_state` is set, persist it.
/// 4. Make 1–3 durable (fsync). Only then send `messages`: a vote or an
///    acknowledgement must never reach another node before what it promises is
///    on disk.
/// 5. Apply `committed` to the state machine, in order. (They may be applied
///    after 4 only: an entry is never reported committed before this node's
///    own copy of it is in a `Ready` the driver has persisted.)
/// 6. Serve each of `read_states` once the applied index is at least its
///    `index`; answer each of `aborted_reads` with a retryable error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Set when role, leader or term changed since the last `Ready`.
    pub soft_state: Option<SoftState>,
    /// Set when term, vote or commit changed since the last `Ready`.
    pub hard_state: Option<HardState>,
    /// A snapshot received from the leader, to persist and install.
    pub snapshot: Option<Snapshot>,
    /// New log entries to persist (possibly replacing a conflicting suffix).
    pub entries: Vec<Entry>,
    /// Messages to send once 1–3 are durable.
    pub messages: Vec<Message>,
    /// Entries that became committed, to apply in order.
    pub committed: Vec<Entry>,
    /// Reads whose leadership check completed.
    pub read_states: Vec<ReadState>,
    /// Contexts of reads that can no longer be confirmed (leadership lost).
    pub aborted_reads: Vec<u64>,
}

impl Ready {
    /// True when the driver has nothing to do.
    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && self.hard_state.is_none()
            && self.snapshot.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.read_states.is_empty()
            && self.aborted_reads.is_empty()
    }
}

/// A read-only view of a node, for status pages and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of in this term.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit_index: u64,
    /// The index of its last log entry (or of its snapshot if the log is empty).
    pub last_log_index: u64,
    /// The index its latest snapshot covers (0 = none).
    pub snapshot_index: u64,
}

/// A deliberate mistake that can be switched on to prove that the simulator
/// and the harness catch real bugs. All are off by default and are for
/// testing only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bug {
    /// Grants votes without the up-to-date log check of §5.4.1.
    VoteWithoutLogCheck,
    /// Commits an entry of an earlier term by counting replicas (Figure 8).
    CommitPreviousTerm,
    /// Leaves the vote out of the persisted hard state.
    ForgetVote,
    /// Appends after a conflicting entry without deleting it and what follows.
    NoTruncateOnConflict,
    /// Serves ReadIndex reads without confirming leadership.
    StaleLeaderRead,
    /// Changes membership in one step from C_old to C_new, without joint
    /// consensus: the majorities of the two may not overlap.
    SingleStepChange,
    /// A configuration takes effect only once committed, not when appended.
    ConfigOnCommit,
}

impl Bug {
    /// Every deliberate mistake, in a fixed order.
    pub const ALL: [Bug; 7] = [
        Bug::VoteWithoutLogCheck,
        Bug::CommitPreviousTerm,
        Bug::ForgetVote,
        Bug::NoTruncateOnConflict,
        Bug::StaleLeaderRead,
        Bug::SingleStepChange,
        Bug::ConfigOnCommit,
    ];

    /// The name used on command lines.
    pub fn name(self) -> &'static str {
        match self {
            Bug::VoteWithoutLogCheck => "vote-without-log-check",
            Bug::CommitPreviousTerm => "commit-previous-term",
            Bug::ForgetVote => "forget-vote",
            Bug::NoTruncateOnConflict => "no-truncate-on-conflict",
            Bug::StaleLeaderRead => "stale-leader-read",
            Bug::SingleStepChange => "single-step-change",
            Bug::ConfigOnCommit => "config-on-commit",
        }
    }

    /// One line on what the mistake does.
    pub fn description(self) -> &'static str {
        match self {
            Bug::VoteWithoutLogCheck => "grants votes without the up-to-date log check of §5.4.1",
            Bug::CommitPreviousTerm => {
                "commits an older-term entry by counting replicas (Figure 8)"
            }
            Bug::ForgetVote => "the vote is not part of the persisted hard state",
            Bug::NoTruncateOnConflict => "appends after a conflicting entry without deleting it",
            Bug::StaleLeaderRead => "serves ReadIndex reads without confirming leadership",
            Bug::SingleStepChange => {
                "changes membership from C_old to C_new in one step, without joint consensus"
            }
            Bug::ConfigOnCommit => "a configuration takes effect when committed, not when appended",
        }
    }

    /// Looks a mistake up by its command-line name.
    pub fn from_name(name: &str) -> Result<Bug, crate::Error> {
        Bug::ALL
            .into_iter()
            .find(|b| b.name() == name)
            .ok_or_else(|| crate::Error::UnknownBug(name.to_string()))
    }
}

/// The core's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// The initial voters, this node included; used only when nothing
    /// persisted says otherwise. Empty for a node that joins an existing
    /// cluster: it waits, never campaigning, until a leader sends it the log.
    pub peers: Vec<NodeId>,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: u32,
    /// The shortest election timeout in ticks; each timeout is drawn from
    /// `[election_ticks, 2 * election_ticks)`.
    pub election_ticks: u32,
    /// Ask for pre-votes before starting an election.
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a majority for an
    /// election timeout; followers ignore vote requests while they hear from a
    /// leader. Required for lease reads.
    pub check_quorum: bool,
    /// The most entries in one AppendEntries message.
    pub max_entries_per_msg: usize,
    /// The most bytes of entry data in one AppendEntries message (at least one
    /// entry is always sent).
    pub max_bytes_per_msg: usize,
    /// The most AppendEntries messages in flight to one follower.
    pub max_inflight_msgs: usize,
    /// The seed of the election-timeout randomness.
    pub seed: u64,
    /// Deliberate mistakes switched on (empty in production).
    pub bugs: Vec<Bug>,
}

impl Config {
    /// A configuration with sensible defaults for `id` among `peers`.
    pub fn new(id: NodeId, peers: Vec<NodeId>) -> Config {
        Config {
            id,
            peers,
            heartbeat_ticks: 1,
            election_ticks: 10,
            pre_vote: true,
            check_quorum: true,
            max_entries_per_msg: 1024,
            max_bytes_per_msg: 1 << 20,
            max_inflight_msgs: 64,
            seed: id,
            bugs: Vec::new(),
        }
    }

    /// True when `bug` is switched on.
    pub fn has_bug(&self, bug: Bug) -> bool {
        self.bugs.contains(&bug)
    }
}

/// What can go wrong when driving the core. Protocol-level disagreements
/// (stale terms, rejected votes) are not errors: they are handled inside.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A proposal, read or transfer was made on a node that is not the leader.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<NodeId>,
    },
    /// A leadership transfer is under way; proposals wait until it ends.
    #[error("a leadership transfer is in progress")]
    TransferInProgress,
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The persisted state handed to `Raft::new` is inconsistent.
    #[error("invalid persisted state: {0}")]
    InvalidPersisted(String),
    /// A snapshot was asked for at an index that is not applied, or already
    /// compacted.
    #[error("cannot snapshot at index {index}: {reason}")]
    BadSnapshotIndex {
        /// The index asked for.
        index: u64,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A message addressed to another node, or from an unknown one.
    #[error("message from {from} to {to} does not belong to node {id}")]
    Misrouted {
        /// This node.
        id: NodeId,
        /// The message's sender.
        from: NodeId,
        /// The message's receiver.
        to: NodeId,
    },
    /// A leadership transfer to a node that is not a peer.
    #[error("node {0} is not a peer of this cluster")]
    UnknownPeer(NodeId),
    /// An unknown deliberate-mistake name.
    #[error(
        "unknown bug {0:?}; known: vote-without-log-check, commit-previous-term, forget-vote, no-truncate-on-conflict, stale-leader-read, single-step-change, config-on-commit"
    )]
    UnknownBug(String),
    /// A membership change while another is not finished (one at a time),
    /// or before the leader committed an entry of its term.
    #[error("a membership change is in progress: {0}")]
    ChangeInProgress(&'static str),
    /// A membership change that does not fit the current membership.
    #[error("membership change refused: {0}")]
    BadChange(String),
    /// A change that would leave no voter.
    #[error("node {0} is the last voter and cannot be removed")]
    LastVoter(NodeId),
}

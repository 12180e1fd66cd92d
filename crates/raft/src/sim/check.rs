//! The simulator's safety checks: election safety, log matching, leader
//! completeness, state machine safety and linearizable reads, each fed by
//! the simulator as events happen.

use rustc_hash::FxHashMap;

use crate::types::{Entry, EntryKind, NodeId};

/// The property a run broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Property {
    /// Two leaders in one term.
    ElectionSafety,
    /// Two logs hold an entry with the same index and term but differ in it
    /// or before it.
    LogMatching,
    /// A leader was elected without an entry committed in an earlier term.
    LeaderCompleteness,
    /// Two nodes applied different entries (or reached different states) at
    /// one index.
    StateMachineSafety,
    /// A read missed a write acknowledged, or a state observed by a read
    /// completed, before it began.
    LinearizableRead,
    /// After healing and a quiet period, an acknowledged command is not
    /// applied on every node.
    Liveness,
    /// The core refused or broke its contract with the driver.
    Contract,
}

impl Property {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Property::ElectionSafety => "election safety",
            Property::LogMatching => "log matching",
            Property::LeaderCompleteness => "leader completeness",
            Property::StateMachineSafety => "state machine safety",
            Property::LinearizableRead => "linearizable reads",
            Property::Liveness => "liveness after healing",
            Property::Contract => "driver contract",
        }
    }
}

/// A broken property, with where and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which property.
    pub property: Property,
    /// The simulator step (tick) at which it was seen.
    pub step: u64,
    /// What exactly was seen.
    pub detail: String,
}

/// A 64-bit FNV-1a hash, to compare entries and states cheaply.
pub(crate) fn fnv(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed ^ 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The hash identifying an entry's content.
pub(crate) fn entry_hash(e: &Entry) -> u64 {
    let kind = match e.kind {
        EntryKind::Noop => 1u64,
        EntryKind::Normal => 2,
        EntryKind::Config => 3,
    };
    fnv(e.term.wrapping_mul(31).wrapping_add(kind), &e.data)
}

/// What the checks remember across a run.
#[derive(Default)]
pub(crate) struct Checker {
    /// The leader of each term.
    leaders: FxHashMap<u64, NodeId>,
    /// (index, term) -> (content hash, term of the previous entry): equal
    /// for every log that holds the entry, which by induction is log
    /// matching.
    entries: FxHashMap<(u64, u64), (u64, u64)>,
    /// Per index (1-based, slot 0 unused): the state hash after applying it
    /// and the entry's term and content, from the first node that got there.
    states: Vec<Option<u64>>,
    applied: Vec<Option<(u64, u64)>>,
    /// Per index: (entry term, the lowest leader term seen committing it).
    committed: Vec<(u64, u64)>,
    /// The first violation seen.
    pub violation: Option<Violation>,
    /// The current step, for reports.
    pub step: u64,
}

impl Checker {
    /// Records a violation (the first one wins).
    pub fn fail(&mut self, property: Property, detail: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                property,
                step: self.step,
                detail,
            });
        }
    }

    /// Election safety: `node` is leader in `term`.
    pub fn leader(&mut self, node: NodeId, term: u64) -> bool {
        let prev = *self.leaders.entry(term).or_insert(node);
        if prev != node {
            self.fail(
                Property::ElectionSafety,
                format!("nodes {prev} and {node} are both leader in term {term}"),
            );
        }
        prev == node
    }

    /// True the first time `node` is seen leading `term`.
    pub fn is_new_leader(&self, term: u64) -> bool {
        !self.leaders.contains_key(&term)
    }

    /// Log matching: `e` was handed out for persistence by `node`, whose
    /// previous entry has `prev_term`.
    pub fn appended(&mut self, node: NodeId, e: &Entry, prev_term: u64) {
        let v = (entry_hash(e), prev_term);
        let seen = *self.entries.entry((e.index, e.term)).or_insert(v);
        if seen != v {
            self.fail(
                Property::LogMatching,
                format!(
                    "node {node} holds entry {}@term {} differing from another log's (content or previous term {} vs {})",
                    e.index, e.term, prev_term, seen.1
                ),
            );
        }
    }

    /// State machine safety: `node` applied `e` reaching state `state`.
    pub fn applied(&mut self, node: NodeId, e: &Entry, state: u64) {
        let i = e.index as usize;
        if self.applied.len() <= i {
            self.applied.resize(i + 1, None);
        }
        let v = (e.term, entry_hash(e));
        match self.applied[i] {
            None => self.applied[i] = Some(v),
            Some(prev) if prev != v => self.fail(
                Property::StateMachineSafety,
                format!(
                    "node {node} applied entry {}@term {} where another node applied an entry of term {}",
                    e.index, e.term, prev.0
                ),
            ),
            _ => {}
        }
        self.state(node, e.index, state);
    }

    /// State machine safety: `node` is in state `state` after index `index`
    /// (applied or restored from a snapshot).
    pub fn state(&mut self, node: NodeId, index: u64, state: u64) {
        let i = index as usize;
        if self.states.len() <= i {
            self.states.resize(i + 1, None);
        }
        match self.states[i] {
            None => self.states[i] = Some(state),
            Some(prev) if prev != state => self.fail(
                Property::StateMachineSafety,
                format!(
                    "node {node} reached a different state after index {index} than another node"
                ),
            ),
            _ => {}
        }
    }

    /// Leader completeness: records what the leader of `term` has committed
    /// (`log` holds its entries after `offset`).
    pub fn leader_committed(&mut self, term: u64, commit: u64, offset: u64, log: &[Entry]) {
        let known = self.committed.len() as u64;
        for i in known + 1..=commit {
            let t = if i > offset {
                log[(i - offset - 1) as usize].term
            } else {
                // Compacted on the leader already; the applied map knows it.
                self.applied
                    .get(i as usize)
                    .copied()
                    .flatten()
                    .map_or(0, |a| a.0)
            };
            self.committed.push((t, term));
        }
    }

    /// Leader completeness: a leader of `term` just appeared with this log.
    pub fn new_leader(
        &mut self,
        node: NodeId,
        term: u64,
        offset: u64,
        offset_term: u64,
        log: &[Entry],
    ) {
        let last = offset + log.len() as u64;
        for (k, &(et, ct)) in self.committed.iter().enumerate() {
            let i = k as u64 + 1;
            if ct >= term || et == 0 || i < offset {
                continue;
            }
            let have = if i == offset {
                Some(offset_term)
            } else if i <= last {
                Some(log[(i - offset - 1) as usize].term)
            } else {
                None
            };
            if have != Some(et) {
                self.fail(
                    Property::LeaderCompleteness,
                    format!(
                        "node {node} became leader of term {term} without entry {i}@term {et}, committed in term {ct} (it holds {have:?})"
                    ),
                );
                return;
            }
        }
    }
}

//! The in-memory Raft log: the entries after the latest snapshot, and the
//! marks that say how far they are committed, handed out for persistence
//! (`stable`) and handed out for applying (`applied`).

use crate::types::{Entry, Membership, Snapshot, SnapshotMeta};

/// The log of one node. Entry `i` (for `offset < i <= last_index()`) lives at
/// `entries[i - offset - 1]`; everything up to `offset` is covered by the
/// snapshot.
#[derive(Debug)]
pub(crate) struct RaftLog {
    /// The latest snapshot (taken locally or received), kept to send to
    /// followers behind the compacted prefix.
    pub snapshot: Option<Snapshot>,
    offset: u64,
    offset_term: u64,
    entries: Vec<Entry>,
    /// The highest index known to be committed.
    pub committed: u64,
    /// The highest index handed to the driver to apply (or covered by an
    /// installed snapshot).
    pub applied: u64,
    /// The highest index handed to the driver to persist.
    pub stable: u64,
}

impl RaftLog {
    /// A log restored from what was persisted. The caller has validated it.
    pub fn restore(snapshot: Option<Snapshot>, entries: Vec<Entry>, commit: u64) -> RaftLog {
        let meta = snapshot.as_ref().map(|s| s.meta).unwrap_or_default();
        let mut log = RaftLog {
            snapshot,
            offset: meta.index,
            offset_term: meta.term,
            entries,
            committed: 0,
            applied: meta.index,
            stable: 0,
        };
        log.stable = log.last_index();
        log.committed = commit.max(meta.index);
        log
    }

    /// The index the snapshot covers (0 = none).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The first index held as an entry.
    pub fn first_index(&self) -> u64 {
        self.offset + 1
    }

    /// The last index (of an entry, or of the snapshot when there is none).
    pub fn last_index(&self) -> u64 {
        self.offset + self.entries.len() as u64
    }

    /// The term of the last entry (or of the snapshot).
    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.offset_term, |e| e.term)
    }

    /// The term at `index`, if known (it is not below the snapshot).
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.offset {
            Some(self.offset_term)
        } else if index < self.offset || index > self.last_index() {
            None
        } else {
            Some(self.entries[(index - self.offset - 1) as usize].term)
        }
    }

    /// The entries held, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// §5.4.1: a candidate's log is at least as up to date as ours.
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// Appends one entry at the end (leader side).
    pub fn push(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index() + 1);
        self.entries.push(entry);
    }

    /// Entries `[lo, last]` limited to `max_entries` and `max_bytes` of data
    /// (at least one entry when any is available). `lo` must be above the
    /// snapshot.
    pub fn slice(&self, lo: u64, max_entries: usize, max_bytes: usize) -> Vec<Entry> {
        if lo > self.last_index() || lo <= self.offset {
            return Vec::new();
        }
        let start = (lo - self.offset - 1) as usize;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for e in &self.entries[start..] {
            if out.len() >= max_entries.max(1) {
                break;
            }
            if !out.is_empty() && bytes + e.data.len() > max_bytes {
                break;
            }
            bytes += e.data.len();
            out.push(e.clone());
        }
        out
    }

    /// Deletes every entry from `index` on (a conflicting suffix). The
    /// caller guarantees `index > committed`.
    pub fn truncate_from(&mut self, index: u64) {
        debug_assert!(index > self.offset);
        self.entries.truncate((index - self.offset - 1) as usize);
        // The driver must rewrite from here: the next Ready's entries start
        // at `index`, which tells it to delete its persisted suffix first.
        self.stable = self.stable.min(index - 1);
    }

    /// The first index of the run of entries with the same term that ends
    /// at `index` (for the follower's conflict hint).
    pub fn first_index_of_term_at(&self, index: u64) -> u64 {
        let Some(term) = self.term(index) else {
            return index;
        };
        let mut i = index;
        while i > self.first_index() && self.term(i - 1) == Some(term) {
            i -= 1;
        }
        i
    }

    /// The last index holding an entry of `term`, if any (for the leader's
    /// back-off). Terms never decrease along a log, so this is a binary
    /// search.
    pub fn last_index_of_term(&self, term: u64) -> Option<u64> {
        let n = self.entries.partition_point(|e| e.term <= term);
        if n > 0 && self.entries[n - 1].term == term {
            Some(self.offset + n as u64)
        } else if n == 0 && self.offset_term == term && self.offset > 0 {
            Some(self.offset)
        } else {
            None
        }
    }

    /// The entries not yet handed out for persistence; marks them handed out.
    pub fn take_unstable(&mut self) -> Vec<Entry> {
        let last = self.last_index();
        if self.stable >= last {
            return Vec::new();
        }
        let start = (self.stable.max(self.offset) - self.offset) as usize;
        self.stable = last;
        self.entries[start..].to_vec()
    }

    /// True when some entries await persistence.
    pub fn has_unstable(&self) -> bool {
        self.stable < self.last_index()
    }

    /// True when committed entries (that were handed out for persistence)
    /// await applying.
    pub fn has_committed_to_apply(&self) -> bool {
        self.committed.min(self.stable) > self.applied
    }

    /// The committed entries not yet handed out for applying, limited to
    /// those already handed out for persistence; marks them handed out.
    pub fn take_committed(&mut self) -> Vec<Entry> {
        let hi = self.committed.min(self.stable);
        if hi <= self.applied {
            return Vec::new();
        }
        let lo = (self.applied - self.offset) as usize;
        let hi_pos = (hi - self.offset) as usize;
        self.applied = hi;
        self.entries[lo..hi_pos].to_vec()
    }

    /// Drops the entries up to `index` (applied), keeping `data` (and the
    /// membership in force at `index`) as the snapshot that covers them.
    pub fn compact(&mut self, index: u64, data: Vec<u8>, membership: Membership) {
        let term = self.term(index).unwrap_or(self.offset_term);
        let drop = (index - self.offset) as usize;
        self.entries.drain(..drop);
        self.offset = index;
        self.offset_term = term;
        self.snapshot = Some(Snapshot {
            meta: SnapshotMeta { index, term },
            membership,
            data,
        });
    }

    /// Replaces the whole log with a snapshot received from the leader.
    pub fn install(&mut self, snapshot: Snapshot) {
        self.entries.clear();
        self.offset = snapshot.meta.index;
        self.offset_term = snapshot.meta.term;
        self.committed = snapshot.meta.index;
        self.applied = snapshot.meta.index;
        self.stable = snapshot.meta.index;
        self.snapshot = Some(snapshot);
    }
}

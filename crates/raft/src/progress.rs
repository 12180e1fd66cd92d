//! The leader's view of one follower: how much of the log it holds, where to
//! send from next, and the flow-control state (probe, replicate, snapshot).

use std::collections::VecDeque;

/// How the leader sends to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProgressState {
    /// Where the follower's log matches is unknown: one message at a time,
    /// and each heartbeat interval resends it.
    Probe,
    /// The follower is known to match up to `matched`: entries are streamed
    /// optimistically, up to `max_inflight_msgs` messages ahead.
    Replicate,
    /// A snapshot at this index was sent; nothing else until it is answered.
    Snapshot(u64),
}

/// Replication state of one follower.
#[derive(Debug)]
pub(crate) struct Progress {
    /// The highest index known to match the leader's log.
    pub matched: u64,
    /// The next index to send.
    pub next: u64,
    /// Flow-control state.
    pub state: ProgressState,
    /// In probe state: a probe is outstanding.
    pub paused: bool,
    /// In replicate state: the last index of each message in flight.
    pub inflight: VecDeque<u64>,
    /// The tick at which `matched` last moved (or replicate began), to
    /// detect a pipeline whose messages were lost.
    pub progress_tick: u64,
    /// The tick at which the snapshot was sent (snapshot state).
    pub snapshot_tick: u64,
    /// The last tick a message of the current term came from this follower.
    pub last_contact: u64,
    /// The highest heartbeat round this follower acknowledged.
    pub acked_round: u64,
    /// The commit index last sent to it.
    pub sent_commit: u64,
}

impl Progress {
    /// Fresh progress for a new leader whose last index is `last`.
    pub fn new(last: u64, now: u64) -> Progress {
        Progress {
            matched: 0,
            next: last + 1,
            state: ProgressState::Probe,
            paused: false,
            inflight: VecDeque::new(),
            progress_tick: now,
            snapshot_tick: 0,
            last_contact: now,
            acked_round: 0,
            sent_commit: 0,
        }
    }

    /// Falls back to probing from `next`.
    pub fn become_probe(&mut self, next: u64) {
        self.state = ProgressState::Probe;
        self.next = next.max(self.matched + 1);
        self.paused = false;
        self.inflight.clear();
    }

    /// Starts streaming after `matched`.
    pub fn become_replicate(&mut self, now: u64) {
        self.state = ProgressState::Replicate;
        self.next = self.matched + 1;
        self.paused = false;
        self.inflight.clear();
        self.progress_tick = now;
    }

    /// Waits for the follower to install the snapshot at `index`.
    pub fn become_snapshot(&mut self, index: u64, now: u64) {
        self.state = ProgressState::Snapshot(index);
        self.paused = false;
        self.inflight.clear();
        self.snapshot_tick = now;
    }

    /// True when no more appends may be sent now.
    pub fn is_paused(&self, max_inflight: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.paused,
            ProgressState::Replicate => self.inflight.len() >= max_inflight.max(1),
            ProgressState::Snapshot(_) => true,
        }
    }

    /// Records an acknowledgement up to `index`; true when `matched` moved.
    pub fn ack(&mut self, index: u64, now: u64) -> bool {
        let moved = index > self.matched;
        if moved {
            self.matched = index;
            self.progress_tick = now;
        }
        self.next = self.next.max(index + 1);
        while self.inflight.front().is_some_and(|&i| i <= index) {
            self.inflight.pop_front();
        }
        moved
    }
}

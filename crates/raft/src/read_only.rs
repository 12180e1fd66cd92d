//! The leader's bookkeeping for reads: heartbeat rounds (each AppendEntries
//! carries the latest round; an acknowledgement of round `r` from a majority
//! proves the node was still leader when `r` began) and the reads waiting on
//! them.

use std::collections::VecDeque;

use crate::types::{ReadMode, ReadState};

/// A ReadIndex read waiting for its round to be acknowledged by a majority.
#[derive(Clone, Copy, Debug)]
struct PendingRead {
    ctx: u64,
    /// The round whose majority acknowledgement confirms it.
    round: u64,
    /// The commit index when it was asked for.
    index: u64,
}

/// Rounds and pending reads of one leader term.
#[derive(Debug, Default)]
pub(crate) struct ReadOnly {
    /// The latest round started (0 = none yet). Never reset, so a response
    /// can never be mistaken for one of a later round.
    pub round: u64,
    /// The tick at which each round not yet known to be superseded began.
    round_ticks: VecDeque<(u64, u64)>,
    /// Reads were registered for round `round + 1`, which must be started.
    pub need_round: bool,
    pending: VecDeque<PendingRead>,
    /// Reads asked for before this term's first commit; they start once it
    /// happens (until then the commit index may be behind earlier terms').
    waiting_commit: Vec<(u64, ReadMode)>,
}

impl ReadOnly {
    /// Starts a new round at tick `now`; returns its number.
    pub fn start_round(&mut self, now: u64) -> u64 {
        self.round += 1;
        self.round_ticks.push_back((self.round, now));
        self.need_round = false;
        self.round
    }

    /// Registers a read confirmed by the next round.
    pub fn add_pending(&mut self, ctx: u64, index: u64) {
        self.pending.push_back(PendingRead {
            ctx,
            round: self.round + 1,
            index,
        });
        self.need_round = true;
    }

    /// Parks a read until the term's first commit.
    pub fn add_waiting(&mut self, ctx: u64, mode: ReadMode) {
        self.waiting_commit.push((ctx, mode));
    }

    /// Takes the reads parked until the term's first commit.
    pub fn take_waiting(&mut self) -> Vec<(u64, ReadMode)> {
        std::mem::take(&mut self.waiting_commit)
    }

    /// Given the highest round a majority acknowledged, moves the reads it
    /// confirms into `out` and forgets rounds no longer needed.
    pub fn confirm(&mut self, quorum_round: u64, out: &mut Vec<ReadState>) {
        while let Some(r) = self.pending.front() {
            if r.round > quorum_round {
                break;
            }
            out.push(ReadState {
                ctx: r.ctx,
                index: r.index,
            });
            self.pending.pop_front();
        }
        while self.round_ticks.len() > 1 && self.round_ticks[1].0 <= quorum_round {
            self.round_ticks.pop_front();
        }
    }

    /// The tick at which `round` began (or, conservatively, the latest
    /// known round before it), if known.
    pub fn round_tick(&self, round: u64) -> Option<u64> {
        self.round_ticks
            .iter()
            .take_while(|&&(r, _)| r <= round)
            .last()
            .map(|&(_, t)| t)
    }

    /// Drops everything of the term (keeps the round counter); returns the
    /// contexts of the reads that can no longer be confirmed.
    pub fn abort_all(&mut self) -> Vec<u64> {
        let mut out: Vec<u64> = self.pending.drain(..).map(|r| r.ctx).collect();
        out.extend(self.waiting_commit.drain(..).map(|(c, _)| c));
        self.round_ticks.clear();
        self.need_round = false;
        out
    }
}

//! Membership churn: a seeded administrator asks whichever node leads for
//! membership changes, starts spares as they are added, stops removed nodes
//! for good once their removal is committed (or leaves them running), and
//! strikes with a fault right after a change now and then — the moments
//! where a wrong change protocol shows.

use rand::RngExt;

use super::{Life, POOL, Property, Sim};
use crate::{Error, MembershipChange, Role};

/// What the administrator did in a run (or, summed, in a soak).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChurnStats {
    /// Changes asked of a leader.
    pub asked: u64,
    /// Changes a leader accepted (appended a configuration entry for).
    pub accepted: u64,
    /// Accepted: learners added (a spare started with an empty disk, or a
    /// removed node that kept running).
    pub learners_added: u64,
    /// Of those, nodes added before (removed since, or whose addition was
    /// lost with a leader), with the disk they kept.
    pub readded: u64,
    /// Accepted: learners promoted to voters.
    pub promotions: u64,
    /// Accepted: voters or learners removed.
    pub removals: u64,
    /// Accepted: a learner promoted and a voter removed in one change.
    pub replacements: u64,
    /// Refused: a change in progress, not the leader, a transfer under way,
    /// or a learner that has not caught up.
    pub refused: u64,
    /// Of those, a promotion (or replacement) of a learner not yet caught
    /// up; the administrator tries again later.
    pub not_caught_up: u64,
    /// Of those, the previous change was not committed yet, or the leader
    /// had not yet committed an entry of its term.
    pub in_progress: u64,
    /// Joint configurations (C_old,new) seen committed.
    pub joint_committed: u64,
    /// Other configurations (C_new, learner changes) seen committed.
    pub configs_committed: u64,
    /// Snapshots installed by a node that is not a voter (a learner, or a
    /// node waiting to join).
    pub learner_snapshots: u64,
    /// Removed nodes stopped for good.
    pub retired: u64,
    /// Removed nodes left running.
    pub kept_running: u64,
    /// Faults struck right after an accepted change.
    pub after_change_faults: u64,
    /// Leaders that stepped down on the higher term of a learner's answer
    /// (a removed node added again after it campaigned, alone, to a higher
    /// term: it can only rejoin by deposing the leader).
    pub learner_depositions: u64,
}

impl ChurnStats {
    /// Adds another run's figures.
    pub fn add(&mut self, o: &ChurnStats) {
        self.asked += o.asked;
        self.accepted += o.accepted;
        self.learners_added += o.learners_added;
        self.readded += o.readded;
        self.promotions += o.promotions;
        self.removals += o.removals;
        self.replacements += o.replacements;
        self.refused += o.refused;
        self.not_caught_up += o.not_caught_up;
        self.in_progress += o.in_progress;
        self.joint_committed += o.joint_committed;
        self.configs_committed += o.configs_committed;
        self.learner_snapshots += o.learner_snapshots;
        self.retired += o.retired;
        self.kept_running += o.kept_running;
        self.after_change_faults += o.after_change_faults;
        self.learner_depositions += o.learner_depositions;
    }
}

/// What the administrator means to do.
#[derive(Clone, Copy, Debug)]
enum Plan {
    AddLearner,
    Promote,
    Replace,
    RemoveLearner,
    RemoveVoter,
}

impl Sim {
    /// Now and then, asks a leader (any node that believes it leads) for a
    /// change chosen from its own view of the membership, keeping 3 to
    /// [`POOL`] voters.
    pub(super) fn admin(&mut self) {
        if !self.rng.random_bool(self.knobs.admin) {
            return;
        }
        let leaders: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i]
                    .raft
                    .as_ref()
                    .is_some_and(|r| r.status().role == Role::Leader)
            })
            .collect();
        if leaders.is_empty() {
            return;
        }
        let l = leaders[self.rng.random_range(0..leaders.len())];
        let Some(raft) = self.nodes[l].raft.as_ref() else {
            return;
        };
        let m = raft.membership().0.clone();
        let members = m.nodes();
        // Nodes that may be added: never started, or removed and still
        // running (not those waiting to be stopped for good).
        let spares: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| {
                let n = &self.nodes[j];
                n.life != Life::Retired && !n.retire && !members.contains(&n.id)
            })
            .collect();
        let (voters, learners) = (&m.voters, &m.learners);
        let mut plans: Vec<(u32, Plan)> = Vec::new();
        if !spares.is_empty() {
            plans.push((if learners.is_empty() { 4 } else { 1 }, Plan::AddLearner));
        }
        if !learners.is_empty() {
            if voters.len() < POOL {
                plans.push((4, Plan::Promote));
            }
            plans.push((4, Plan::Replace));
            plans.push((1, Plan::RemoveLearner));
        }
        if voters.len() > 3 {
            plans.push((3, Plan::RemoveVoter));
        }
        let total: u32 = plans.iter().map(|p| p.0).sum();
        if total == 0 {
            return;
        }
        let mut draw = self.rng.random_range(0..total);
        let plan = plans
            .iter()
            .find(|(w, _)| {
                let hit = draw < *w;
                draw = draw.saturating_sub(*w);
                hit
            })
            .map_or(Plan::AddLearner, |p| p.1);
        let learner = |sim: &mut Sim| learners[sim.rng.random_range(0..learners.len())];
        let voter = |sim: &mut Sim| voters[sim.rng.random_range(0..voters.len())];
        let mut readd = false;
        let (change, removed) = match plan {
            Plan::AddLearner => {
                let j = spares[self.rng.random_range(0..spares.len())];
                readd = self.nodes[j].added;
                self.bring_up(j);
                (MembershipChange::AddLearner(self.nodes[j].id), None)
            }
            Plan::Promote => (MembershipChange::Promote(learner(self)), None),
            Plan::Replace => {
                let (promote, remove) = (learner(self), voter(self));
                (MembershipChange::Replace { promote, remove }, Some(remove))
            }
            Plan::RemoveLearner => {
                let id = learner(self);
                (MembershipChange::Remove(id), Some(id))
            }
            Plan::RemoveVoter => {
                let id = voter(self);
                (MembershipChange::Remove(id), Some(id))
            }
        };
        self.stats.asked += 1;
        let Some(raft) = self.nodes[l].raft.as_mut() else {
            return;
        };
        match raft.change_membership(change) {
            Ok(ix) => {
                if std::env::var("DBG").is_ok() {
                    eprintln!(
                        "t{} accept {change:?} at {ix} leader {} term {} conf {:?}",
                        self.now,
                        self.nodes[l].id,
                        self.nodes[l].raft.as_ref().unwrap().status().term,
                        m
                    );
                }
                self.stats.accepted += 1;
                match change {
                    MembershipChange::AddLearner(id) => {
                        self.stats.learners_added += 1;
                        self.stats.readded += u64::from(readd);
                        self.nodes[(id - 1) as usize].added = true;
                    }
                    MembershipChange::Promote(_) => self.stats.promotions += 1,
                    MembershipChange::Remove(_) => self.stats.removals += 1,
                    MembershipChange::Replace { .. } => self.stats.replacements += 1,
                }
                if let Some(id) = removed {
                    if self.rng.random_bool(self.knobs.retire) {
                        self.nodes[(id - 1) as usize].retire = true;
                    } else {
                        self.stats.kept_running += 1;
                    }
                }
                let incoming = match change {
                    MembershipChange::AddLearner(id)
                    | MembershipChange::Promote(id)
                    | MembershipChange::Replace { promote: id, .. } => vec![id],
                    MembershipChange::Remove(_) => Vec::new(),
                };
                self.after_change(l, incoming);
            }
            Err(Error::BadChange(why)) if why.contains("has not caught up") => {
                self.stats.refused += 1;
                self.stats.not_caught_up += 1;
            }
            Err(Error::ChangeInProgress(_)) => {
                self.stats.refused += 1;
                self.stats.in_progress += 1;
            }
            Err(Error::NotLeader { .. } | Error::TransferInProgress) => self.stats.refused += 1,
            // The change was chosen from the leader's own membership: any
            // other refusal breaks the core's contract.
            Err(e) => {
                let detail = format!(
                    "leader {} refused {change:?} (its membership: {m:?}): {e}",
                    self.nodes[l].id
                );
                self.check.fail(Property::Contract, detail);
            }
        }
        self.maybe_ready(l);
    }

    /// Makes sure node `j` runs before it is added: a spare starts with an
    /// empty disk and no peers; a removed node that crashed restarts from
    /// its disk.
    fn bring_up(&mut self, j: usize) {
        if self.nodes[j].life == Life::Spare {
            self.nodes[j].life = Life::Active;
            self.start(j);
        } else if self.nodes[j].raft.is_none() {
            self.nodes[j].restarts += 1;
            self.start(j);
        }
    }

    /// Sometimes strikes right after leader `l` accepted a change that
    /// brings in the nodes `incoming`: it crashes before its Ready is acted
    /// on (the entry lost, or persisted on it alone), or just after (the
    /// entry on its way to the others), either way coming back at once half
    /// the time; or it is cut off before the entry leaves; or the network
    /// splits, now or once the entry reached some nodes — into random
    /// sides, or the leader with the incoming nodes against the rest (the
    /// members new to the configuration cut off from the old ones).
    fn after_change(&mut self, l: usize, mut incoming: Vec<crate::NodeId>) {
        if !self.rng.random_bool(self.knobs.after_change) {
            return;
        }
        self.stats.after_change_faults += 1;
        match self.rng.random_range(0..5) {
            0 | 1 => {
                if self.rng.random_bool(0.5) {
                    self.process_ready(l);
                }
                self.crash(l);
                if self.rng.random_bool(0.5) {
                    self.nodes[l].restarts += 1;
                    self.start(l);
                }
            }
            2 => self.isolate(self.nodes[l].id),
            pick => {
                if pick == 3 || incoming.is_empty() {
                    incoming.clear();
                } else {
                    incoming.push(self.nodes[l].id);
                }
                let delay = self.rng.random_range(0..=2 * self.knobs.max_delay);
                self.split_at = Some((self.now + delay, incoming));
            }
        }
    }

    /// Stops for good the removed nodes meant to be, once the leader of the
    /// highest term has committed a configuration without them.
    pub(super) fn retire_removed(&mut self) {
        let Some(l) = self.top_leader() else {
            return;
        };
        let Some(raft) = self.nodes[l].raft.as_ref() else {
            return;
        };
        let (m, at) = raft.membership();
        if m.is_joint() || at > raft.status().commit_index {
            return;
        }
        let members = m.nodes();
        for j in 0..self.nodes.len() {
            let n = &self.nodes[j];
            if !n.retire || n.life != Life::Active || members.contains(&n.id) {
                continue;
            }
            // A clean stop: what it was doing reaches its disk first.
            self.process_ready(j);
            let node = &mut self.nodes[j];
            node.raft = None;
            node.life = Life::Retired;
            node.proposals.clear();
            node.confirmed_reads.clear();
            for ctx in std::mem::take(&mut node.asked_reads) {
                self.reads.remove(&ctx);
            }
            self.stats.retired += 1;
        }
    }
}

//! The seeded scheduler: which fault comes next and whom it hits, and the
//! partition shapes and kill/pause targets it draws from.

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{DiskAction, DiskChoice, Fault, MemberStep, NemesisKind, Plan};

/// The shape of a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionShape {
    /// One random node cut from all others.
    IsolateOne,
    /// The current leader cut from all others (a random node if none is known).
    IsolateLeader,
    /// A random minority and majority, cut from each other.
    Halves,
    /// Every node sees a majority, no two nodes the same one (a ring where
    /// each node reaches its nearest neighbours).
    MajoritiesRing,
    /// Two halves that cannot reach each other, and one node reaching both.
    Bridge,
    /// One node's outbound links cut (it hears the others, they do not hear
    /// it), or its inbound links (it talks, hears nothing).
    OneWay,
    /// Groups a scripted schedule chose (never drawn; the fault lists its
    /// links).
    Scripted,
}

impl PartitionShape {
    /// Every shape.
    pub const ALL: [PartitionShape; 6] = [
        PartitionShape::IsolateOne,
        PartitionShape::IsolateLeader,
        PartitionShape::Halves,
        PartitionShape::MajoritiesRing,
        PartitionShape::Bridge,
        PartitionShape::OneWay,
    ];

    /// The name used after `partition:` on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PartitionShape::IsolateOne => "isolate-one",
            PartitionShape::IsolateLeader => "isolate-leader",
            PartitionShape::Halves => "halves",
            PartitionShape::MajoritiesRing => "majorities-ring",
            PartitionShape::Bridge => "bridge",
            PartitionShape::OneWay => "one-way",
            PartitionShape::Scripted => "scripted",
        }
    }
}

/// Which nodes a kill or pause hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// One random node.
    One,
    /// A random minority (at least one node).
    Minority,
    /// A random majority.
    Majority,
    /// The current leader (a random node if none is known).
    Leader,
    /// Every node.
    All,
    /// Nodes a scripted schedule chose (never drawn; the fault names them).
    Scripted,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 5] = [
        Target::One,
        Target::Minority,
        Target::Majority,
        Target::Leader,
        Target::All,
    ];

    /// The name used after `kill:` or `pause:` on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Target::One => "one",
            Target::Minority => "minority",
            Target::Majority => "majority",
            Target::Leader => "leader",
            Target::All => "all",
            Target::Scripted => "scripted",
        }
    }
}

/// What the scheduler knows about the cluster when it decides.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// The members' ids, in order: the nodes faults may hit (spares, which
    /// are stopped, are not among them).
    pub ids: Vec<String>,
    /// The leader as last reported by `/status`, if any.
    pub leader: Option<String>,
    /// The voters as last seen (the member nemesis's bounds count them).
    pub voters: Vec<String>,
    /// Spares: nodes in the address book that are not members, stopped,
    /// with empty data directories (the member nemesis grows from them).
    pub spares: Vec<String>,
    /// Members whose process is killed or paused right now.
    pub down: Vec<String>,
}

impl View {
    /// A view of these members, all voters, with no spares.
    pub fn of(ids: Vec<String>, leader: Option<String>) -> View {
        View {
            voters: ids.clone(),
            ids,
            leader,
            spares: Vec::new(),
            down: Vec::new(),
        }
    }
}

/// The fewest voters the member nemesis leaves: below three, one failure
/// stops a cluster, and a shrink would test nothing but that.
pub const MIN_VOTERS: usize = 3;

/// Draws faults from the seed: each tick either ends the oldest active fault
/// or starts the next kind of a seeded round-robin. At most three ticks pass
/// between two starts, so every requested kind comes up within a few
/// rounds, and up to two faults overlap. Membership steps, when asked for
/// beside other kinds, take every other tick of their own and stay out of
/// the round-robin: a step is over when it is carried out, so it would
/// otherwise come up only once in many ticks, a run's few changes leaving
/// most runs at the size they started with.
pub struct Scheduler {
    rng: ChaCha8Rng,
    plan: Plan,
    round: Vec<NemesisKind>,
    active: Vec<NemesisKind>,
    /// Nodes whose files a disk fault damaged (they may never start again).
    damaged: Vec<String>,
    /// The most voters the member nemesis may reach (founders + spares).
    max_voters: usize,
    /// A membership change that was refused or failed: the next member
    /// step tries it again.
    pending: Option<Fault>,
    /// Ticks so far (membership steps take the odd ones).
    ticks: u64,
}

impl Scheduler {
    /// A scheduler over the plan's kinds and parameters, seeded.
    pub fn new(seed: u64, plan: Plan) -> Scheduler {
        Scheduler {
            // A stream apart from the clients' so adding clients does not
            // change the faults.
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7300),
            plan,
            round: Vec::new(),
            active: Vec::new(),
            damaged: Vec::new(),
            max_voters: 0,
            pending: None,
            ticks: 0,
        }
    }

    /// Lets the member nemesis grow the voters up to `max` (the founders
    /// plus the spec's spares); without it, it never grows.
    pub fn with_max_voters(mut self, max: usize) -> Scheduler {
        self.max_voters = max;
        self
    }

    /// Tells the scheduler how a fault it chose ended: a membership change
    /// that did not succeed is tried again at the next member step, never
    /// dropped — without its split (a correct system cannot complete a
    /// change while split, so a split retry would fail forever).
    pub fn outcome(&mut self, fault: &Fault, ok: bool) {
        if fault.changes_members() {
            self.pending = (!ok).then(|| fault.clone().unsplit());
        }
    }

    /// The kinds active right now, oldest first.
    pub fn active(&self) -> &[NemesisKind] {
        &self.active
    }

    /// The next fault, or `None` when nothing is to be done this time (no
    /// kinds were requested, no members, or no membership step possible).
    pub fn next(&mut self, view: &View) -> Option<Fault> {
        if self.plan.kinds.is_empty() || view.ids.is_empty() {
            return None;
        }
        self.ticks += 1;
        let member_apart =
            self.plan.kinds.contains(&NemesisKind::Member) && self.plan.kinds.len() > 1;
        if member_apart && self.ticks % 2 == 1 && self.member_step(view).is_some() {
            return self.member(view);
        }
        let startable: Vec<NemesisKind> = self
            .plan
            .kinds
            .iter()
            .copied()
            .filter(|k| !self.active.contains(k) && !self.active.iter().any(|a| a.conflicts(*k)))
            .filter(|k| {
                *k != NemesisKind::Member || (!member_apart && self.member_step(view).is_some())
            })
            .collect();
        if startable.is_empty() && self.active.is_empty() {
            // Only membership steps were asked for, and none is possible.
            return None;
        }
        let end_one = !self.active.is_empty()
            && (self.active.len() >= 2 || startable.is_empty() || self.rng.random_bool(0.6));
        if end_one {
            let kind = self.active.remove(0);
            return Some(end_of(kind));
        }
        let kind = loop {
            if self.round.is_empty() {
                self.round = self.plan.kinds.clone();
                self.round.shuffle(&mut self.rng);
            }
            let k = self.round.remove(0);
            if startable.contains(&k) {
                break k;
            }
        };
        if kind.instant() {
            // A step, over when it is carried out: nothing stays active.
            return self.start(kind, view);
        }
        self.active.push(kind);
        self.start(kind, view)
    }

    /// The membership steps possible now: voters stay between
    /// [`MIN_VOTERS`] and the most this run may have, a grow needs a spare,
    /// and a replace needs room for one more voter while it runs. Clusters
    /// live at odd sizes (an even one tolerates no more failures than the
    /// odd one below it) and pass through even ones: a replace swaps a
    /// member of an odd-sized cluster, and from an even size the next step
    /// grows or shrinks back to an odd one.
    fn member_steps(&self, view: &View) -> Vec<MemberStep> {
        let v = view.voters.len();
        let spare = !view.spares.is_empty();
        self.plan
            .member
            .iter()
            .copied()
            .filter(|s| match s {
                MemberStep::Grow => spare && v < self.max_voters,
                MemberStep::Shrink => v > MIN_VOTERS,
                MemberStep::Replace => {
                    spare && v >= MIN_VOTERS && v < self.max_voters && v % 2 == 1
                }
            })
            .collect()
    }

    /// Whether a member step can happen now (a refused change to retry, or
    /// a possible step).
    fn member_step(&self, view: &View) -> Option<()> {
        (self.pending.is_some() || !self.member_steps(view).is_empty()).then_some(())
    }

    /// The next membership change: the one refused last time, else a
    /// seeded draw among the possible steps and nodes.
    fn member(&mut self, view: &View) -> Option<Fault> {
        if let Some(f) = self.pending.clone() {
            return Some(f);
        }
        let steps = self.member_steps(view);
        if steps.is_empty() {
            return None;
        }
        let step = steps[self.rng.random_range(0..steps.len())];
        let mut spares = view.spares.clone();
        spares.sort();
        let mut voters = view.voters.clone();
        voters.sort();
        // Changes of voters are asked with the network split along them:
        // where membership changes break, it is in the window while the
        // new configuration has reached some nodes and not others. Every
        // replace is (two voters change at once: the change joint consensus
        // exists for, whose old and new majorities need not overlap), and
        // three in four grows. The far side must be able to act, so no
        // split while a voter is down (killed or paused).
        let split = (step == MemberStep::Replace || self.rng.random_bool(0.75))
            && !voters.iter().any(|v| view.down.contains(v));
        let mut pick = |from: &[String]| from[self.rng.random_range(0..from.len())].clone();
        Some(match step {
            MemberStep::Grow => Fault::Grow {
                node: pick(&spares),
                split,
            },
            MemberStep::Shrink => Fault::Shrink {
                node: pick(&voters),
            },
            MemberStep::Replace => {
                let add = pick(&spares);
                // A split keeps the leader beside the joiner: were the
                // leader the voter leaving, the change could only stall
                // until the split ends, so a split replace removes a
                // follower (when the leader is known and one is left).
                let followers: Vec<String> = voters
                    .iter()
                    .filter(|v| Some(*v) != view.leader.as_ref())
                    .cloned()
                    .collect();
                let remove = if split && !followers.is_empty() {
                    pick(&followers)
                } else {
                    pick(&voters)
                };
                Fault::Replace { add, remove, split }
            }
        })
    }

    /// The faults that end everything still active, then a final `Clear`.
    pub fn heal_all(&mut self) -> Vec<Fault> {
        let mut out: Vec<Fault> = self.active.drain(..).map(end_of).collect();
        out.push(Fault::Clear);
        out
    }

    fn start(&mut self, kind: NemesisKind, view: &View) -> Option<Fault> {
        let p = &self.plan;
        Some(match kind {
            NemesisKind::Member => return self.member(view),
            NemesisKind::Partition => {
                let shape = p.shapes[self.rng.random_range(0..p.shapes.len())];
                let mode = p.cut;
                let cut = partition(shape, view, &mut self.rng);
                Fault::Partition { shape, cut, mode }
            }
            NemesisKind::Kill => {
                let target = p.kill[self.rng.random_range(0..p.kill.len())];
                let nodes = targets(target, view, &mut self.rng);
                Fault::Kill { target, nodes }
            }
            NemesisKind::Pause => {
                let target = p.pause[self.rng.random_range(0..p.pause.len())];
                let nodes = targets(target, view, &mut self.rng);
                Fault::Pause { target, nodes }
            }
            NemesisKind::Delay => Fault::LinkDelay {
                latency_ms: p.delay.latency_ms,
                jitter_ms: p.delay.jitter_ms,
                links: p.delay.links,
            },
            NemesisKind::Loss => Fault::LinkLoss {
                probability: p.loss.probability,
                links: p.loss.links,
            },
            NemesisKind::Bandwidth => Fault::LinkBandwidth {
                bytes_per_sec: p.bandwidth.bytes_per_sec,
                links: p.bandwidth.links,
            },
            NemesisKind::Disk => {
                let weights: Vec<u32> = p.disk_actions.iter().map(|c| c.weight()).collect();
                let mut choice = p.disk_actions[faultline_workloads::pick(&mut self.rng, &weights)];
                let drawn = p.disk[self.rng.random_range(0..p.disk.len())];
                let torn = self.rng.random_range(0.1..0.9);
                let seed = self.rng.random::<u64>();
                // Damage is for one node that stays down while the others
                // carry on: a damaged node may refuse to start for the rest
                // of the run, so over a run the damaged nodes stay a
                // minority (a power cut instead, once they would not).
                let damages =
                    |c: DiskChoice| matches!(c, DiskChoice::Corrupt | DiskChoice::Truncate);
                let minority = view.ids.len().saturating_sub(1) / 2;
                if damages(choice) && self.damaged.len() >= minority {
                    choice = DiskChoice::PowerCut;
                }
                let (target, nodes) = if damages(choice) {
                    let undamaged: Vec<&String> = view
                        .ids
                        .iter()
                        .filter(|i| !self.damaged.contains(i))
                        .collect();
                    let one = undamaged[self.rng.random_range(0..undamaged.len())].clone();
                    self.damaged.push(one.clone());
                    (Target::One, vec![one])
                } else {
                    (drawn, targets(drawn, view, &mut self.rng))
                };
                let action = match choice {
                    DiskChoice::PowerCut => DiskAction::PowerCut { torn: None },
                    DiskChoice::Torn => DiskAction::PowerCut { torn: Some(torn) },
                    DiskChoice::Corrupt => DiskAction::Corrupt { flip: true, seed },
                    DiskChoice::Truncate => DiskAction::Corrupt { flip: false, seed },
                    DiskChoice::Full => DiskAction::Full,
                };
                Fault::Disk {
                    target,
                    nodes,
                    action,
                }
            }
            NemesisKind::Clock => {
                let target = p.clock[self.rng.random_range(0..p.clock.len())];
                let action = p.clock_actions[self.rng.random_range(0..p.clock_actions.len())];
                let nodes = targets(target, view, &mut self.rng);
                Fault::Clock {
                    target,
                    nodes,
                    action,
                }
            }
        })
    }
}

fn end_of(kind: NemesisKind) -> Fault {
    match kind {
        NemesisKind::Partition => Fault::Heal,
        NemesisKind::Kill => Fault::Restart,
        NemesisKind::Pause => Fault::Resume,
        NemesisKind::Delay | NemesisKind::Loss | NemesisKind::Bandwidth => Fault::ClearLinks,
        NemesisKind::Clock => Fault::ClockReset,
        NemesisKind::Disk => Fault::DiskHeal,
        // Never active (instant steps); a clear ends nothing of it.
        NemesisKind::Member => Fault::Clear,
    }
}

fn shuffled(ids: &[String], rng: &mut ChaCha8Rng) -> Vec<String> {
    let mut v = ids.to_vec();
    v.shuffle(rng);
    v
}

fn pick_one(view: &View, rng: &mut ChaCha8Rng, prefer_leader: bool) -> String {
    if prefer_leader
        && let Some(l) = &view.leader
        && view.ids.contains(l)
    {
        return l.clone();
    }
    view.ids[rng.random_range(0..view.ids.len())].clone()
}

/// The nodes a kill or pause with this target hits.
pub fn targets(target: Target, view: &View, rng: &mut ChaCha8Rng) -> Vec<String> {
    let n = view.ids.len();
    let mut nodes = match target {
        Target::One => vec![pick_one(view, rng, false)],
        Target::Leader => vec![pick_one(view, rng, true)],
        Target::Minority => {
            let k = rng.random_range(1..=((n.saturating_sub(1)) / 2).max(1));
            shuffled(&view.ids, rng).into_iter().take(k).collect()
        }
        Target::Majority => shuffled(&view.ids, rng)
            .into_iter()
            .take(n / 2 + 1)
            .collect(),
        Target::All => view.ids.clone(),
        // A script names its nodes in the fault; nothing to draw.
        Target::Scripted => Vec::new(),
    };
    nodes.sort();
    nodes
}

/// Directed links `[from, to]` that cut the cluster into `groups`: every
/// pair in different groups, both ways.
pub(super) fn cut_between(groups: &[Vec<String>]) -> Vec<[String; 2]> {
    let mut cut = Vec::new();
    for (gi, a) in groups.iter().enumerate() {
        for (gj, b) in groups.iter().enumerate() {
            if gi == gj {
                continue;
            }
            for x in a {
                for y in b {
                    cut.push([x.clone(), y.clone()]);
                }
            }
        }
    }
    cut
}

pub(super) fn isolate(node: &str, ids: &[String]) -> Vec<[String; 2]> {
    let rest: Vec<String> = ids.iter().filter(|i| *i != node).cloned().collect();
    cut_between(&[vec![node.to_string()], rest])
}

/// The directed links a partition of this shape cuts.
pub fn partition(shape: PartitionShape, view: &View, rng: &mut ChaCha8Rng) -> Vec<[String; 2]> {
    let ids = &view.ids;
    let n = ids.len();
    let mut cut = match shape {
        PartitionShape::IsolateOne => isolate(&pick_one(view, rng, false), ids),
        PartitionShape::IsolateLeader => isolate(&pick_one(view, rng, true), ids),
        PartitionShape::Halves => {
            let s = shuffled(ids, rng);
            let (a, b) = s.split_at(n / 2);
            cut_between(&[a.to_vec(), b.to_vec()])
        }
        PartitionShape::MajoritiesRing => {
            let s = shuffled(ids, rng);
            // Each node keeps the nodes within ring distance k; with
            // k = ceil((majority - 1) / 2) every node sees a majority.
            let majority = n / 2 + 1;
            let k = majority / 2;
            let mut cut = Vec::new();
            for (i, a) in s.iter().enumerate() {
                for (j, b) in s.iter().enumerate() {
                    let d = i.abs_diff(j);
                    let ring = d.min(n - d);
                    if ring > k {
                        cut.push([a.clone(), b.clone()]);
                    }
                }
            }
            cut
        }
        PartitionShape::Bridge => {
            let s = shuffled(ids, rng);
            // s[0] is the bridge; the rest split in two halves that each see
            // the bridge but not each other.
            let rest = &s[1.min(n)..];
            let (a, b) = rest.split_at(rest.len() / 2);
            cut_between(&[a.to_vec(), b.to_vec()])
        }
        // A script lists its links in the fault; nothing to draw.
        PartitionShape::Scripted => Vec::new(),
        PartitionShape::OneWay => {
            let node = pick_one(view, rng, false);
            let outbound = rng.random_bool(0.5);
            ids.iter()
                .filter(|i| **i != node)
                .map(|o| {
                    if outbound {
                        [node.clone(), o.clone()]
                    } else {
                        [o.clone(), node.clone()]
                    }
                })
                .collect()
        }
    };
    cut.sort();
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn view(n: usize) -> View {
        View::of(
            (1..=n).map(|i| format!("n{i}")).collect(),
            Some("n2".into()),
        )
    }

    #[test]
    fn member_steps_keep_voters_in_bounds_and_retry_what_was_refused() {
        let plan = Plan::parse("member,kill").expect("ok");
        let all: Vec<String> = (1..=5).map(|i| format!("n{i}")).collect();
        let mut voters: Vec<String> = all[..3].to_vec();
        let mut s = Scheduler::new(11, plan).with_max_voters(5);
        let mut seen = BTreeSet::new();
        let mut sizes = BTreeSet::new();
        let mut refused_once = false;
        for round in 0..200 {
            let v = View {
                ids: voters.clone(),
                leader: voters.first().cloned(),
                voters: voters.clone(),
                spares: all
                    .iter()
                    .filter(|n| !voters.contains(n))
                    .cloned()
                    .collect(),
                // Now and then a voter is down: no split then.
                down: voters
                    .iter()
                    .take(usize::from(round % 7 == 0))
                    .cloned()
                    .collect(),
            };
            let Some(f) = s.next(&v) else { continue };
            match &f {
                // A split replace keeps the leader: it removes a follower.
                Fault::Replace { remove, split, .. } => {
                    assert!(voters.len() % 2 == 1, "replace at {} voters", voters.len());
                    assert!(!(*split && v.leader.as_ref() == Some(remove)), "{f:?}");
                    assert!(!*split || v.down.is_empty(), "split with {:?} down", v.down);
                }
                Fault::Grow { split: true, .. } => assert!(v.down.is_empty(), "{f:?}"),
                _ => {}
            }
            // Kills only ever hit members.
            if let Fault::Kill { nodes, .. } = &f {
                assert!(nodes.iter().all(|n| voters.contains(n)), "{nodes:?}");
            }
            let (add, remove) = match &f {
                Fault::Grow { node, .. } => (Some(node.clone()), None),
                Fault::Shrink { node } => (None, Some(node.clone())),
                Fault::Replace { add, remove, .. } => (Some(add.clone()), Some(remove.clone())),
                _ => continue,
            };
            seen.insert(f.name());
            // The first change is refused: the next member step is the same.
            if !refused_once {
                refused_once = true;
                s.outcome(&f, false);
                let again = loop {
                    if let Some(g) = s.next(&v).filter(|g| g.name() == f.name()) {
                        break g;
                    }
                };
                // Retried as it was, without its split.
                assert_eq!(again, f.clone().unsplit());
            }
            s.outcome(&f, true);
            if let Some(a) = add {
                assert!(!voters.contains(&a), "{a} grown twice");
                voters.push(a);
            }
            if let Some(r) = remove {
                assert!(voters.contains(&r), "{r} is no voter");
                voters.retain(|x| *x != r);
            }
            assert!((3..=5).contains(&voters.len()), "{voters:?}");
            sizes.insert(voters.len());
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(sizes, BTreeSet::from([3, 4, 5]));
        // Without room to grow and at the floor, no member step comes.
        let mut s = Scheduler::new(1, Plan::parse("member").expect("ok")).with_max_voters(3);
        assert_eq!(s.next(&view(3)), None);
    }

    /// Who `a` can send to under a cut.
    fn reach(cut: &[[String; 2]], ids: &[String], a: &str) -> BTreeSet<String> {
        ids.iter()
            .filter(|b| *b == a || !cut.contains(&[a.to_string(), (*b).clone()]))
            .cloned()
            .collect()
    }

    #[test]
    fn variants_narrow_what_the_scheduler_draws() {
        let plan = Plan::parse("partition:isolate-leader, kill:all+majority").expect("ok");
        let v = view(5);
        let mut s = Scheduler::new(7, plan);
        for _ in 0..40 {
            match s.next(&v) {
                Some(Fault::Partition { shape, cut, .. }) => {
                    assert_eq!(shape, PartitionShape::IsolateLeader);
                    assert_eq!(reach(&cut, &v.ids, "n2").len(), 1);
                }
                Some(Fault::Kill { target, nodes }) => {
                    assert!(matches!(target, Target::Majority | Target::All));
                    assert!(nodes.len() >= 3, "{nodes:?}");
                }
                _ => {}
            }
        }
    }

    #[test]
    fn damaged_disks_stay_a_minority_over_a_run() {
        for (n, most) in [(3, 1), (4, 1), (5, 2), (2, 0)] {
            let v = view(n);
            let mut s = Scheduler::new(n as u64, Plan::parse("disk:corrupt").expect("ok"));
            let mut damaged = BTreeSet::new();
            let mut power_cuts = 0;
            for _ in 0..60 {
                match s.next(&v) {
                    Some(Fault::Disk {
                        nodes,
                        action: DiskAction::Corrupt { .. },
                        ..
                    }) => {
                        assert_eq!(nodes.len(), 1);
                        assert!(damaged.insert(nodes[0].clone()), "{nodes:?} damaged twice");
                    }
                    Some(Fault::Disk {
                        action: DiskAction::PowerCut { .. },
                        ..
                    }) => power_cuts += 1,
                    _ => {}
                }
            }
            assert_eq!(damaged.len(), most, "{n} nodes: {damaged:?}");
            assert!(
                power_cuts > 0,
                "{n} nodes: a power cut once damage would reach a majority"
            );
        }
    }

    #[test]
    fn isolate_leader_cuts_the_leader_both_ways() {
        let v = view(5);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let cut = partition(PartitionShape::IsolateLeader, &v, &mut rng);
        assert_eq!(cut.len(), 8);
        assert_eq!(reach(&cut, &v.ids, "n2").len(), 1);
        assert_eq!(reach(&cut, &v.ids, "n1").len(), 4);
    }

    #[test]
    fn majorities_ring_gives_everyone_a_distinct_majority() {
        for n in [5, 7] {
            let v = view(n);
            let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
            let cut = partition(PartitionShape::MajoritiesRing, &v, &mut rng);
            let views: BTreeSet<BTreeSet<String>> =
                v.ids.iter().map(|a| reach(&cut, &v.ids, a)).collect();
            assert_eq!(views.len(), n, "views must differ");
            for r in &views {
                assert!(r.len() > n / 2 && r.len() < n, "{r:?}");
            }
        }
    }

    #[test]
    fn bridge_has_one_node_reaching_all() {
        let v = view(5);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let cut = partition(PartitionShape::Bridge, &v, &mut rng);
        let full: Vec<_> = v
            .ids
            .iter()
            .filter(|a| reach(&cut, &v.ids, a).len() == 5)
            .collect();
        assert_eq!(full.len(), 1);
        assert!(!cut.is_empty());
    }

    #[test]
    fn one_way_is_asymmetric() {
        let v = view(3);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let cut = partition(PartitionShape::OneWay, &v, &mut rng);
        assert_eq!(cut.len(), 2);
        for [a, b] in &cut {
            assert!(!cut.contains(&[b.clone(), a.clone()]));
        }
    }

    #[test]
    fn targets_have_the_right_sizes() {
        let v = view(5);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        assert_eq!(targets(Target::Majority, &v, &mut rng).len(), 3);
        assert_eq!(targets(Target::All, &v, &mut rng).len(), 5);
        assert_eq!(
            targets(Target::Leader, &v, &mut rng),
            vec!["n2".to_string()]
        );
        for _ in 0..20 {
            let m = targets(Target::Minority, &v, &mut rng).len();
            assert!((1..=2).contains(&m));
        }
    }

    #[test]
    fn scheduler_is_seeded_and_covers_every_kind() {
        let plan = Plan::parse("partition,kill,pause").expect("ok");
        let v = view(5);
        let run = |seed| {
            let mut s = Scheduler::new(seed, plan.clone());
            (0..6).filter_map(|_| s.next(&v)).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        let started: BTreeSet<_> = run(42).iter().filter_map(Fault::starts).collect();
        assert_eq!(started.len(), 3, "{:?}", run(42));
    }

    #[test]
    fn heal_all_ends_everything_active() {
        let v = view(3);
        let mut s = Scheduler::new(9, Plan::parse("kill,pause").expect("ok"));
        let _ = s.next(&v);
        let heals = s.heal_all();
        assert_eq!(heals.last(), Some(&Fault::Clear));
        assert!(s.active().is_empty());
    }
}

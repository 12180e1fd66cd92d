//! Scripted schedules (`--nemesis script:NAME`): named fault choreographies
//! that watch the cluster at a fine grain (each node's leader probe, every
//! few milliseconds, and the history as it is recorded) and act at moments
//! a random scheduler almost never hits. A script is a pure state machine:
//! it takes an [`Observation`] and returns the [`Fault`]s to carry out now
//! ([`Step`]); the loop in `faults.rs` polls, feeds it and applies the
//! faults through the cluster. Scripts describe fault patterns (a crash
//! just after a vote, Raft's Figure 8), not a system's bugs: they read
//! roles, terms and the history, nothing else, and repeat their pattern in
//! attempts until the run ends.

use std::collections::BTreeMap;
use std::fmt;

use faultline_history::{Event, EventType, Process};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::schedule::{cut_between, isolate};
use super::{CutMode, Fault, LinkScope, PartitionShape, Target};

/// A named scripted schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum ScriptKind {
    /// Crash the voters of a new leader right after its election, cut the
    /// winner off, and let the previous leader ask them for votes in the
    /// same term.
    VoteLoss,
    /// Raft's Figure 8: an old leader's uncommitted tail, a rival elected
    /// without it and cut off at once, the old leader back to re-replicate
    /// the tail, cut off the moment it acknowledges an old write, then the
    /// rival elected.
    Figure8,
}

/// One row of the script table.
#[derive(Clone, Copy, Debug)]
pub struct ScriptInfo {
    /// The script.
    pub kind: ScriptKind,
    /// Its name after `script:`.
    pub name: &'static str,
    /// One line for `faultline list`.
    pub description: &'static str,
    /// The fewest nodes it works with.
    pub min_nodes: usize,
    /// The link delay it uses by default (ms), so that it can act between a
    /// message's sending and its arrival.
    pub delay_ms: u64,
    /// The node settings it is meant for, in words (for `faultline list`).
    pub suits: &'static str,
}

/// The script table, in the order `faultline list` shows it.
pub const SCRIPTS: [ScriptInfo; 2] = [
    ScriptInfo {
        kind: ScriptKind::VoteLoss,
        name: "vote-loss",
        description: "kill the leader with peer links delayed; the moment a new leader is \
                      elected cut it off and kill the nodes that voted for it; restart the old \
                      leader and, once it campaigns, the voters; let it lead, then kill it and \
                      bring the cut-off winner back",
        min_nodes: 3,
        delay_ms: 50,
        suits: "systems without pre-vote (a pre-vote for a term is refused by a node already in \
                it); without CheckQuorum a cut-off leader keeps leading",
    },
    ScriptInfo {
        kind: ScriptKind::Figure8,
        name: "figure-8",
        description: "Raft's Figure 8: cut the leader off with peer links delayed; the moment a \
                      rival is elected cut it off and reconnect the old leader with a bare \
                      majority; once the old leader is back and acknowledges a write it took \
                      after being cut off, cut it off and let the rival win that majority",
        min_nodes: 3,
        delay_ms: 40,
        suits: "a leader sending one entry per message with one message in flight, and \
                client and request timeouts longer than an election or two",
    },
];

impl ScriptKind {
    /// Its row of the table.
    pub fn info(self) -> &'static ScriptInfo {
        SCRIPTS
            .iter()
            .find(|s| s.kind == self)
            .unwrap_or(&SCRIPTS[0])
    }

    /// Its name after `script:`.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The script with this name.
    pub fn by_name(name: &str) -> Option<ScriptKind> {
        SCRIPTS.iter().find(|s| s.name == name).map(|s| s.kind)
    }
}

impl fmt::Display for ScriptKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The word before the script's name on the command line.
pub const PREFIX: &str = "script";

/// `--nemesis script:NAME[+DELAY]` parsed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScriptPlan {
    /// Which script.
    pub kind: ScriptKind,
    /// The delay it puts on peer links during an attempt (ms).
    pub delay_ms: u64,
}

impl ScriptPlan {
    /// Parses what follows `script:`: a name, optionally `+` a link delay
    /// (`vote-loss+80ms`).
    pub fn parse(s: &str) -> Result<ScriptPlan, String> {
        let mut parts = s.split('+').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let Some(kind) = ScriptKind::by_name(name) else {
            let known: Vec<&str> = SCRIPTS.iter().map(|s| s.name).collect();
            return Err(format!(
                "unknown script `{name}`; known: {}",
                known.join(", ")
            ));
        };
        let mut plan = ScriptPlan {
            kind,
            delay_ms: kind.info().delay_ms,
        };
        for p in parts {
            match super::parse_ms(p) {
                Some(ms) if (5..=5_000).contains(&ms) => plan.delay_ms = ms,
                _ => {
                    return Err(format!(
                        "`{PREFIX}:{s}`: `{p}` is not a link delay from 5ms to 5s \
                         (the only parameter a script takes)"
                    ));
                }
            }
        }
        Ok(plan)
    }

    /// `script:NAME+DELAY` as the command line spells it.
    pub fn arg(&self) -> String {
        format!("{PREFIX}:{}+{}ms", self.kind.name(), self.delay_ms)
    }
}

/// Reads a plan's scripts: a list, or (stored before episodes) one script.
pub fn one_or_many<'de, D>(d: D) -> Result<Vec<ScriptPlan>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scripts {
        Many(Vec<ScriptPlan>),
        One(ScriptPlan),
    }
    Ok(match Scripts::deserialize(d)? {
        Scripts::Many(v) => v,
        Scripts::One(s) => vec![s],
    })
}

/// A node's leader probe as a script sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// It says it leads.
    pub leads: bool,
    /// Its term or epoch.
    pub term: Option<u64>,
    /// The leader it follows, when the system tells.
    pub leader: Option<String>,
}

/// One node as a script sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Its id.
    pub id: String,
    /// Its process runs (not killed, not paused).
    pub up: bool,
    /// Its leader probe's answer, if it answered.
    pub probe: Option<Probe>,
}

/// What a script sees when it decides.
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    /// The run's clock (ns since it started, the history's clock).
    pub now_ns: u64,
    /// When the faults of the previous step were all carried out (run
    /// clock), if it returned any.
    pub applied_ns: Option<u64>,
    /// Every node, in id order.
    pub nodes: &'a [Seen],
    /// History events recorded since the previous observation.
    pub events: &'a [Event],
}

/// What a script wants done now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    /// Faults to carry out, in order.
    pub faults: Vec<Fault>,
    /// Lines for the history (what the script saw and decided).
    pub notes: Vec<String>,
    /// Milliseconds until the next observation.
    pub next_ms: u64,
}

/// A scripted schedule: a state machine over observations.
pub trait Script: Send {
    /// Decides what to do after this observation.
    fn step(&mut self, obs: &Observation<'_>) -> Step;
    /// Whether an attempt is under way (it may have faults active).
    fn attempting(&self) -> bool;
    /// Ends the attempt under way, if any, whatever it reached (the
    /// episode it ran in is over): the faults that heal it. The next
    /// attempt starts from a settled cluster again.
    fn abandon(&mut self, now_ns: u64) -> Step;
}

/// The script of a plan, for a cluster of these nodes, seeded. `stale` is
/// how long a link may hold a message for a node that is down (a script
/// that restarts a node waits that long for what was sent to it before to
/// be gone).
pub fn build(
    plan: &ScriptPlan,
    ids: Vec<String>,
    stale: std::time::Duration,
    seed: u64,
) -> Box<dyn Script> {
    let stale_ms = u64::try_from(stale.as_millis()).unwrap_or(u64::MAX);
    let base = Base::new(ids, plan.delay_ms, stale_ms + 200, seed);
    match plan.kind {
        ScriptKind::VoteLoss => Box::new(VoteLoss {
            base,
            phase: VoteLossPhase::Settle,
        }),
        ScriptKind::Figure8 => Box::new(Figure8 {
            base,
            phase: Figure8Phase::Settle,
            invokes: BTreeMap::new(),
        }),
    }
}

/// How long the cluster must keep one leader before an attempt starts.
const SETTLE_MS: u64 = 1_000;
/// Polling while waiting for a moment that passes within a link delay.
const FAST_MS: u64 = 2;
/// Polling otherwise.
const SLOW_MS: u64 = 20;
/// How long to wait for an election before giving the attempt up.
const ELECTION_MS: u64 = 6_000;
/// The shortest link delay a script halves its delay to (its polls come
/// every [`FAST_MS`], so it still acts between a send and its arrival).
const MIN_DELAY_MS: u64 = 10;

/// What every script keeps: the nodes, the clock, attempts, the seed.
struct Base {
    ids: Vec<String>,
    delay_ms: u64,
    /// How long a link may hold a message for a node that is down before
    /// dropping it (the proxy's patience), in ms.
    stale_ms: u64,
    rng: ChaCha8Rng,
    attempt: u64,
    /// The leader and term seen steady, and since when (ms).
    steady: Option<(String, u64, u64)>,
    /// When the current phase began (ms).
    since: u64,
    /// The attempt just ended: the script goes back to settling.
    ended: bool,
}

impl Base {
    fn new(ids: Vec<String>, delay_ms: u64, stale_ms: u64, seed: u64) -> Base {
        Base {
            ids,
            delay_ms,
            stale_ms,
            // A stream of its own, apart from the clients' and the random
            // scheduler's.
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x7363_7269_7074_0000),
            attempt: 0,
            steady: None,
            since: 0,
            ended: false,
        }
    }

    fn majority(&self) -> usize {
        self.ids.len() / 2 + 1
    }

    /// The leader a majority agrees on, with every node up and answering,
    /// held for [`SETTLE_MS`]; `None` until then.
    fn settled(&mut self, obs: &Observation<'_>) -> Option<(String, u64)> {
        let now = ms(obs.now_ns);
        let all_up = obs.nodes.iter().all(|n| n.up && n.probe.is_some());
        let agreed = agreed_leader(obs.nodes).filter(|_| all_up);
        match (&self.steady, agreed) {
            (Some((l, t, at)), Some((l2, t2))) if *l == l2 && *t == t2 => {
                (now >= at + SETTLE_MS).then_some((l2, t2))
            }
            (_, Some((l, t))) => {
                self.steady = Some((l, t, now));
                None
            }
            (_, None) => {
                self.steady = None;
                None
            }
        }
    }

    /// Every directed link except those inside `group`.
    fn all_but(&self, group: &[String]) -> Vec<[String; 2]> {
        let mut groups = vec![group.to_vec()];
        groups.extend(
            self.ids
                .iter()
                .filter(|i| !group.contains(i))
                .map(|i| vec![i.clone()]),
        );
        let mut cut = cut_between(&groups);
        cut.sort();
        cut
    }

    /// Starts an attempt: links delayed (no jitter, so that the script
    /// knows how long a message takes).
    fn delay(&self) -> Fault {
        Fault::LinkDelay {
            latency_ms: self.delay_ms,
            jitter_ms: 0,
            links: LinkScope::Peers,
        }
    }

    /// Ends an attempt, whatever it did: every link heals and clears,
    /// every killed node restarts.
    fn recover(&mut self, now: u64, why: &str) -> Step {
        self.steady = None;
        self.since = now;
        self.ended = true;
        Step {
            faults: vec![Fault::Heal, Fault::Restart, Fault::ClearLinks],
            notes: vec![format!("attempt {}: {why}; recovering", self.attempt)],
            next_ms: SLOW_MS,
        }
    }

    /// Halves the link delay for the next attempts, down to
    /// [`MIN_DELAY_MS`]: an election that spreads over several terms under
    /// the delay says that a round trip is close to the system's election
    /// timeout (which a script cannot read), so candidates time out before
    /// their votes arrive. What it did, for the note.
    fn halve_delay(&mut self) -> String {
        let was = self.delay_ms;
        self.delay_ms = (was / 2).max(MIN_DELAY_MS);
        if self.delay_ms == was {
            format!("link delay stays {was} ms")
        } else {
            format!("link delay {was} -> {} ms", self.delay_ms)
        }
    }

    /// Ends an attempt from outside (its episode is over): as
    /// [`Base::recover`], with the script already back to settling.
    fn abandon(&mut self, now_ns: u64) -> Step {
        let step = self.recover(ms(now_ns), "the episode is over");
        self.ended = false;
        step
    }

    fn waited(&self, now: u64) -> u64 {
        now.saturating_sub(self.since)
    }
}

fn ms(ns: u64) -> u64 {
    ns / 1_000_000
}

/// The status of node `id`, if it is up and answered.
fn probe<'a>(obs: &'a Observation<'_>, id: &str) -> Option<&'a Probe> {
    obs.nodes
        .iter()
        .find(|n| n.id == id && n.up)
        .and_then(|n| n.probe.as_ref())
}

/// Up nodes that say they lead, with their terms.
fn leaders(nodes: &[Seen]) -> Vec<(String, Option<u64>)> {
    nodes
        .iter()
        .filter(|n| n.up)
        .filter_map(|n| {
            let p = n.probe.as_ref()?;
            p.leads.then(|| (n.id.clone(), p.term))
        })
        .collect()
}

/// The leader of the highest term among up nodes, named by a majority of
/// all nodes (or, when the system does not say whom nodes follow, answered
/// by a majority); it must report a term.
pub fn agreed_leader(nodes: &[Seen]) -> Option<(String, u64)> {
    let answered: Vec<(&str, &Probe)> = nodes
        .iter()
        .filter(|n| n.up)
        .filter_map(|n| n.probe.as_ref().map(|p| (n.id.as_str(), p)))
        .collect();
    let (id, term) = answered
        .iter()
        .filter(|(_, p)| p.leads)
        .filter_map(|(id, p)| p.term.map(|t| (*id, t)))
        .max_by_key(|(_, t)| *t)?;
    let names = answered.iter().any(|(_, p)| p.leader.is_some());
    let agree = if names {
        answered
            .iter()
            .filter(|(_, p)| p.leader.as_deref() == Some(id) && p.term == Some(term))
            .count()
    } else {
        answered.len()
    };
    (agree > nodes.len() / 2).then(|| (id.to_string(), term))
}

/// The highest term any up node reports.
fn max_term(nodes: &[Seen]) -> u64 {
    nodes
        .iter()
        .filter(|n| n.up)
        .filter_map(|n| n.probe.as_ref().and_then(|p| p.term))
        .max()
        .unwrap_or(0)
}

fn wait(next_ms: u64) -> Step {
    Step {
        next_ms,
        ..Step::default()
    }
}

// ----- vote-loss -----

/// Where a vote-loss attempt is.
#[derive(Clone, Debug, PartialEq)]
enum VoteLossPhase {
    /// Waiting for a steady leader.
    Settle,
    /// Links delayed; the leader is killed once messages in flight feel it.
    Armed { leader: String, term: u64 },
    /// The old leader is dead; waiting for the next term's winner.
    Elect { old: String, term: u64 },
    /// The winner is cut off and its voters killed; waiting until no link
    /// holds a message sent during the election any more (a candidate that
    /// lost may have asked the old leader for its vote in that term).
    Quiet {
        old: String,
        winner: String,
        term: u64,
        voters: Vec<String>,
    },
    /// The old leader was restarted and should campaign in the winner's
    /// term.
    Campaign {
        old: String,
        winner: String,
        term: u64,
        voters: Vec<String>,
    },
    /// The voters were restarted into the old leader's campaign.
    Second {
        old: String,
        winner: String,
        term: u64,
    },
    /// The old leader leads again; it takes writes for a while.
    Hold { old: String },
    /// The old leader is dead and the cut-off winner back.
    Swap,
}

/// The vote-loss script: a vote promised just before a crash must survive
/// the restart. It makes the previous leader campaign, in exactly the term
/// a new leader just won, to the nodes that voted for the winner, right
/// after they restart; a node that forgot its vote grants it a second
/// leader in that term.
struct VoteLoss {
    base: Base,
    phase: VoteLossPhase,
}

/// How long the old leader leads again (taking writes) before the swap.
const HOLD_MS: u64 = 1_000;
/// How long the cut-off winner is back with the voters before recovery.
const SWAP_MS: u64 = 1_500;
/// How long a restarted node may take to campaign.
const CAMPAIGN_MS: u64 = 3_000;

impl Script for VoteLoss {
    fn step(&mut self, obs: &Observation<'_>) -> Step {
        let step = self.decide(obs);
        if std::mem::take(&mut self.base.ended) {
            self.phase = VoteLossPhase::Settle;
        }
        step
    }

    fn attempting(&self) -> bool {
        self.phase != VoteLossPhase::Settle
    }

    fn abandon(&mut self, now_ns: u64) -> Step {
        if !self.attempting() {
            return Step::default();
        }
        self.phase = VoteLossPhase::Settle;
        self.base.abandon(now_ns)
    }
}

impl VoteLoss {
    fn decide(&mut self, obs: &Observation<'_>) -> Step {
        let now = ms(obs.now_ns);
        let b = &mut self.base;
        match self.phase.clone() {
            VoteLossPhase::Settle => {
                let Some((leader, term)) = b.settled(obs) else {
                    return wait(SLOW_MS);
                };
                b.attempt += 1;
                b.since = now;
                self.phase = VoteLossPhase::Armed {
                    leader: leader.clone(),
                    term,
                };
                Step {
                    faults: vec![b.delay()],
                    notes: vec![format!(
                        "attempt {}: leader {leader} in term {term}; peer links delayed {} ms",
                        b.attempt, b.delay_ms
                    )],
                    next_ms: SLOW_MS,
                }
            }
            VoteLossPhase::Armed { leader, term } => {
                // Messages already in flight travel undelayed; wait until
                // the delay holds every link.
                if b.waited(now) < 3 * b.delay_ms {
                    return wait(SLOW_MS);
                }
                if agreed_leader(obs.nodes) != Some((leader.clone(), term)) {
                    return b.recover(now, "the leader changed before the kill");
                }
                b.since = now;
                self.phase = VoteLossPhase::Elect {
                    old: leader.clone(),
                    term,
                };
                Step {
                    faults: vec![Fault::Kill {
                        target: Target::Leader,
                        nodes: vec![leader.clone()],
                    }],
                    notes: vec![format!("attempt {}: killing leader {leader}", b.attempt)],
                    next_ms: FAST_MS,
                }
            }
            VoteLossPhase::Elect { old, term } => {
                let next = term + 1;
                let winner = leaders(obs.nodes)
                    .into_iter()
                    .find(|(id, t)| *id != old && *t == Some(next));
                if let Some((winner, _)) = winner {
                    // Its no-op is on its way to the voters, a link delay
                    // long: cut it off, and kill the voters before it lands.
                    let voters: Vec<String> = obs
                        .nodes
                        .iter()
                        .filter(|n| n.up && n.id != winner)
                        .map(|n| n.id.clone())
                        .collect();
                    b.since = now;
                    self.phase = VoteLossPhase::Quiet {
                        old: old.clone(),
                        winner: winner.clone(),
                        term: next,
                        voters: voters.clone(),
                    };
                    return Step {
                        faults: vec![
                            Fault::Partition {
                                shape: PartitionShape::IsolateOne,
                                cut: isolate(&winner, &b.ids),
                                mode: CutMode::Blackhole,
                            },
                            Fault::Kill {
                                target: Target::Scripted,
                                nodes: voters.clone(),
                            },
                        ],
                        notes: vec![format!(
                            "attempt {}: {winner} won term {next}; cut it off and killed its \
                             voters {}",
                            b.attempt,
                            voters.join(",")
                        )],
                        next_ms: SLOW_MS,
                    };
                }
                if max_term(obs.nodes) > next {
                    // Votes crossed on delayed links: the delay is close
                    // to the system's election timeout.
                    let halved = b.halve_delay();
                    return b.recover(
                        now,
                        &format!("the election took more than one term ({halved})"),
                    );
                }
                if b.waited(now) > ELECTION_MS {
                    return b.recover(now, "no new leader");
                }
                wait(FAST_MS)
            }
            VoteLossPhase::Quiet {
                old,
                winner,
                term,
                voters,
            } => {
                if b.waited(now) < b.stale_ms {
                    return wait(SLOW_MS);
                }
                b.since = now;
                self.phase = VoteLossPhase::Campaign {
                    old: old.clone(),
                    winner,
                    term,
                    voters,
                };
                Step {
                    faults: vec![Fault::Revive {
                        nodes: vec![old.clone()],
                    }],
                    notes: vec![format!("attempt {}: restarting {old}", b.attempt)],
                    next_ms: FAST_MS,
                }
            }
            VoteLossPhase::Campaign {
                old,
                winner,
                term,
                voters,
            } => {
                let campaigning = probe(obs, &old)
                    .and_then(|p| p.term)
                    .is_some_and(|t| t >= term);
                if !campaigning && b.waited(now) < CAMPAIGN_MS {
                    return wait(FAST_MS);
                }
                b.since = now;
                self.phase = VoteLossPhase::Second {
                    old: old.clone(),
                    winner,
                    term,
                };
                Step {
                    faults: vec![Fault::Revive {
                        nodes: voters.clone(),
                    }],
                    notes: vec![format!(
                        "attempt {}: {old} {}; restarting {}",
                        b.attempt,
                        if campaigning {
                            format!("campaigns in term {term}")
                        } else {
                            "did not campaign in time".to_string()
                        },
                        voters.join(",")
                    )],
                    next_ms: SLOW_MS,
                }
            }
            VoteLossPhase::Second { old, winner, term } => {
                let Some(t) = probe(obs, &old).filter(|p| p.leads).map(|p| p.term) else {
                    if b.waited(now) > ELECTION_MS {
                        return b.recover(now, &format!("{old} did not lead again"));
                    }
                    return wait(SLOW_MS);
                };
                b.since = now;
                self.phase = VoteLossPhase::Hold { old: old.clone() };
                let same = if t == Some(term) {
                    format!(", the term {winner} won: two leaders in one term")
                } else {
                    String::new()
                };
                Step {
                    notes: vec![format!(
                        "attempt {}: {old} leads in term {}{same}",
                        b.attempt,
                        t.map_or("?".to_string(), |t| t.to_string())
                    )],
                    next_ms: SLOW_MS,
                    ..Step::default()
                }
            }
            VoteLossPhase::Hold { old } => {
                if b.waited(now) < HOLD_MS {
                    return wait(SLOW_MS);
                }
                b.since = now;
                self.phase = VoteLossPhase::Swap;
                Step {
                    faults: vec![
                        Fault::Kill {
                            target: Target::Scripted,
                            nodes: vec![old.clone()],
                        },
                        Fault::Heal,
                    ],
                    notes: vec![format!(
                        "attempt {}: killed {old}; the cut-off winner is back",
                        b.attempt
                    )],
                    next_ms: SLOW_MS,
                }
            }
            VoteLossPhase::Swap => {
                if b.waited(now) < SWAP_MS {
                    return wait(SLOW_MS);
                }
                b.recover(now, "done")
            }
        }
    }
}

// ----- figure-8 -----

/// Where a Figure 8 attempt is.
#[derive(Clone, Debug, PartialEq)]
enum Figure8Phase {
    /// Waiting for a steady leader.
    Settle,
    /// The old leader is cut off; waiting for a rival's election.
    Rival {
        old: String,
        term: u64,
        cut_at: Option<u64>,
    },
    /// The rival is cut off and the old leader joined with a bare
    /// majority; waiting for it to lead again.
    Return {
        old: String,
        rival: String,
        rival_term: u64,
        group: Vec<String>,
        cut_at: u64,
    },
    /// The old leader leads again; waiting for it to acknowledge a write
    /// it took while cut off.
    Ack {
        old: String,
        rival: String,
        group: Vec<String>,
        cut_at: u64,
        elected_at: u64,
    },
    /// The old leader is cut off and the rival joined with the rest of the
    /// majority; waiting for the rival to lead.
    Overwrite { rival: String, led: bool },
}

/// The Figure 8 script: an entry of an older term on a majority is not
/// committed until an entry of the leader's own term is too. It builds the
/// one history where counting replicas of an old entry is wrong: the old
/// leader's tail, which no other node has; a rival elected without it and
/// cut off before its entries spread; the old leader elected again by a
/// bare majority, re-replicating the tail; and the moment it acknowledges
/// a write from that tail, it is cut off and the rival, whose log ends in
/// a newer term, wins the same majority.
struct Figure8 {
    base: Base,
    phase: Figure8Phase,
    /// Each client process's last invocation: (time ns, f).
    invokes: BTreeMap<u64, (u64, String)>,
}

/// How long the old leader may take to acknowledge a write from its tail.
const ACK_MS: u64 = 6_000;
/// How long the rival is given to lead, and then to serve reads.
const OVERWRITE_MS: u64 = 4_000;
/// How long reads are served after the rival leads.
const READS_MS: u64 = 1_500;

impl Figure8 {
    /// The first write acknowledged by `old` since the last observation
    /// that was invoked after `cut_at` and before `elected_at`.
    fn old_write_acked(
        &mut self,
        events: &[Event],
        old: &str,
        window: Option<(u64, u64)>,
    ) -> Option<u64> {
        let mut found = None;
        for e in events {
            let Process::Client(p) = e.process else {
                continue;
            };
            match e.kind {
                EventType::Invoke => {
                    self.invokes.insert(p, (e.time, e.f.clone()));
                }
                EventType::Ok => {
                    let Some((invoked, f)) = self.invokes.get(&p) else {
                        continue;
                    };
                    if let Some((from, to)) = window
                        && found.is_none()
                        && f != "read"
                        && e.node.as_deref() == Some(old)
                        && (from..to).contains(invoked)
                    {
                        found = Some(*invoked);
                    }
                }
                _ => {}
            }
        }
        found
    }
}

impl Script for Figure8 {
    fn step(&mut self, obs: &Observation<'_>) -> Step {
        let step = self.decide(obs);
        if std::mem::take(&mut self.base.ended) {
            self.phase = Figure8Phase::Settle;
        }
        step
    }

    fn attempting(&self) -> bool {
        self.phase != Figure8Phase::Settle
    }

    fn abandon(&mut self, now_ns: u64) -> Step {
        if !self.attempting() {
            return Step::default();
        }
        self.phase = Figure8Phase::Settle;
        self.base.abandon(now_ns)
    }
}

impl Figure8 {
    fn decide(&mut self, obs: &Observation<'_>) -> Step {
        let now = ms(obs.now_ns);
        // Invocations are tracked in every phase: the write the script
        // waits for may have been invoked long before.
        let window = match &self.phase {
            Figure8Phase::Ack {
                old,
                cut_at,
                elected_at,
                ..
            } => Some((old.clone(), *cut_at, *elected_at)),
            _ => None,
        };
        let acked = self.old_write_acked(
            obs.events,
            window.as_ref().map_or("", |w| w.0.as_str()),
            window.as_ref().map(|w| (w.1, w.2)),
        );
        let b = &mut self.base;
        match self.phase.clone() {
            Figure8Phase::Settle => {
                let Some((old, term)) = b.settled(obs) else {
                    return wait(SLOW_MS);
                };
                b.attempt += 1;
                b.since = now;
                self.phase = Figure8Phase::Rival {
                    old: old.clone(),
                    term,
                    cut_at: None,
                };
                // The delay starts with the cut, so that the followers hold
                // everything the leader sent before it (one entry per
                // message would fall behind under a delay held longer).
                Step {
                    faults: vec![
                        Fault::Partition {
                            shape: PartitionShape::IsolateLeader,
                            cut: isolate(&old, &b.ids),
                            mode: CutMode::Blackhole,
                        },
                        b.delay(),
                    ],
                    notes: vec![format!(
                        "attempt {}: leader {old} in term {term} cut off; peer links delayed {} ms",
                        b.attempt, b.delay_ms
                    )],
                    next_ms: FAST_MS,
                }
            }
            Figure8Phase::Rival { old, term, cut_at } => {
                let cut_at = cut_at.or(obs.applied_ns).unwrap_or(obs.now_ns);
                let rival = leaders(obs.nodes)
                    .into_iter()
                    .find(|(id, t)| *id != old && t.is_some_and(|t| t > term));
                let Some((rival, Some(rival_term))) = rival else {
                    if b.waited(now) > ELECTION_MS {
                        return b.recover(now, "no rival was elected");
                    }
                    self.phase = Figure8Phase::Rival {
                        old,
                        term,
                        cut_at: Some(cut_at),
                    };
                    return wait(FAST_MS);
                };
                // A bare majority around the old leader, without the
                // rival: only the old leader, whose log is the longest, can
                // win it.
                let mut others: Vec<String> = b
                    .ids
                    .iter()
                    .filter(|i| **i != old && **i != rival)
                    .cloned()
                    .collect();
                others.shuffle(&mut b.rng);
                let mut group = vec![old.clone()];
                group.extend(others.into_iter().take(b.majority() - 1));
                group.sort();
                b.since = now;
                self.phase = Figure8Phase::Return {
                    old: old.clone(),
                    rival: rival.clone(),
                    rival_term,
                    group: group.clone(),
                    cut_at,
                };
                Step {
                    faults: vec![Fault::Repartition {
                        shape: PartitionShape::Scripted,
                        cut: b.all_but(&group),
                        mode: CutMode::Blackhole,
                    }],
                    notes: vec![format!(
                        "attempt {}: {rival} won term {rival_term}; cut it off; {} together",
                        b.attempt,
                        group.join(",")
                    )],
                    next_ms: SLOW_MS,
                }
            }
            Figure8Phase::Return {
                old,
                rival,
                rival_term,
                group,
                cut_at,
            } => {
                let led = leaders(obs.nodes)
                    .into_iter()
                    .find(|(id, t)| group.contains(id) && t.is_some_and(|t| t > rival_term));
                match led {
                    Some((id, t)) if id == old => {
                        b.since = now;
                        self.phase = Figure8Phase::Ack {
                            old: old.clone(),
                            rival,
                            group,
                            cut_at,
                            elected_at: obs.now_ns,
                        };
                        Step {
                            notes: vec![format!(
                                "attempt {}: {old} leads again in term {}",
                                b.attempt,
                                t.unwrap_or_default()
                            )],
                            next_ms: FAST_MS,
                            ..Step::default()
                        }
                    }
                    Some((id, _)) => b.recover(now, &format!("{id} won instead of {old}")),
                    None if b.waited(now) > ELECTION_MS => {
                        b.recover(now, &format!("{old} did not lead again"))
                    }
                    None => wait(SLOW_MS),
                }
            }
            Figure8Phase::Ack {
                old, rival, group, ..
            } => {
                if let Some(invoked) = acked {
                    // Its next message may carry its own term's entry, a
                    // link delay away: cut it off now.
                    let mut majority: Vec<String> =
                        group.iter().filter(|i| **i != old).cloned().collect();
                    majority.push(rival.clone());
                    majority.sort();
                    b.since = now;
                    self.phase = Figure8Phase::Overwrite {
                        rival: rival.clone(),
                        led: false,
                    };
                    return Step {
                        faults: vec![Fault::Repartition {
                            shape: PartitionShape::Scripted,
                            cut: b.all_but(&majority),
                            mode: CutMode::Blackhole,
                        }],
                        notes: vec![format!(
                            "attempt {}: {old} acknowledged a write invoked at {:.3} s, after \
                             it was cut off; cut it off again; {} together",
                            b.attempt,
                            invoked as f64 / 1e9,
                            majority.join(",")
                        )],
                        next_ms: SLOW_MS,
                    };
                }
                if probe(obs, &old).is_some_and(|p| !p.leads) {
                    return b.recover(now, &format!("{old} lost the lead"));
                }
                if b.waited(now) > ACK_MS {
                    return b.recover(now, &format!("{old} acknowledged no write from its tail"));
                }
                wait(FAST_MS)
            }
            Figure8Phase::Overwrite { rival, led } => {
                let leads = probe(obs, &rival).is_some_and(|p| p.leads);
                if leads && !led {
                    b.since = now;
                    self.phase = Figure8Phase::Overwrite {
                        rival: rival.clone(),
                        led: true,
                    };
                    return Step {
                        notes: vec![format!(
                            "attempt {}: {rival} leads in term {}",
                            b.attempt,
                            probe(obs, &rival)
                                .and_then(|p| p.term)
                                .map_or("?".to_string(), |t| t.to_string())
                        )],
                        next_ms: SLOW_MS,
                        ..Step::default()
                    };
                }
                let limit = if led { READS_MS } else { OVERWRITE_MS };
                if b.waited(now) < limit {
                    return wait(SLOW_MS);
                }
                let why = if led {
                    "done"
                } else {
                    "the rival did not lead"
                };
                b.recover(now, why)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const STALE: std::time::Duration = std::time::Duration::from_millis(300);

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    /// Nodes up and following `leader` in `term`, except where `over` says.
    fn cluster(n: usize, leader: &str, term: u64) -> Vec<Seen> {
        ids(n)
            .into_iter()
            .map(|id| Seen {
                probe: Some(Probe {
                    leads: id == leader,
                    term: Some(term),
                    leader: Some(leader.to_string()),
                }),
                id,
                up: true,
            })
            .collect()
    }

    fn set(nodes: &mut [Seen], id: &str, up: bool, leads: bool, term: u64) {
        let n = nodes.iter_mut().find(|n| n.id == id).expect("node");
        n.up = up;
        n.probe = up.then(|| Probe {
            leads,
            term: Some(term),
            leader: leads.then(|| id.to_string()),
        });
    }

    fn at<'a>(ms: u64, nodes: &'a [Seen], events: &'a [Event]) -> Observation<'a> {
        Observation {
            now_ns: ms * 1_000_000,
            applied_ns: None,
            nodes,
            events,
        }
    }

    /// Steps until the script returns faults (or `limit` ms pass).
    fn until_faults(s: &mut dyn Script, from: u64, limit: u64, nodes: &[Seen]) -> (u64, Step) {
        let mut t = from;
        while t <= from + limit {
            let step = s.step(&at(t, nodes, &[]));
            if !step.faults.is_empty() {
                return (t, step);
            }
            t += step.next_ms.max(1);
        }
        panic!("no faults within {limit} ms");
    }

    fn names(step: &Step) -> Vec<&'static str> {
        step.faults.iter().map(Fault::name).collect()
    }

    #[test]
    fn plans_parse_with_a_delay_and_refuse_the_rest() {
        let p = ScriptPlan::parse("vote-loss").expect("ok");
        assert_eq!((p.kind, p.delay_ms), (ScriptKind::VoteLoss, 50));
        let p = ScriptPlan::parse("figure-8+25ms").expect("ok");
        assert_eq!((p.kind, p.delay_ms), (ScriptKind::Figure8, 25));
        assert_eq!(ScriptPlan::parse(&p.arg()[7..]).expect("again"), p);
        let e = ScriptPlan::parse("vote").expect_err("unknown");
        assert!(e.contains("vote-loss, figure-8"), "{e}");
        for bad in ["vote-loss+fast", "vote-loss+1ms", "figure-8+9s"] {
            assert!(ScriptPlan::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn agreed_leader_needs_a_majority_and_a_term() {
        let mut c = cluster(3, "n1", 4);
        assert_eq!(agreed_leader(&c), Some(("n1".into(), 4)));
        set(&mut c, "n2", true, false, 5);
        set(&mut c, "n3", false, false, 0);
        assert_eq!(agreed_leader(&c), None, "only n1 names n1");
        let mut c = cluster(3, "n1", 4);
        c[0].probe.as_mut().expect("probe").term = None;
        assert_eq!(agreed_leader(&c), None, "no term");
    }

    #[test]
    fn vote_loss_kills_the_voters_the_moment_a_winner_appears() {
        let plan = ScriptPlan::parse("vote-loss").expect("ok");
        let mut s = build(&plan, ids(3), STALE, 1);
        let mut c = cluster(3, "n1", 4);
        // Settles, then delays links.
        let (t, step) = until_faults(&mut *s, 0, 5_000, &c);
        assert!(t >= SETTLE_MS, "settled at {t}");
        assert_eq!(names(&step), ["delay"]);
        // Then kills the leader, once the delay holds.
        let (t, step) = until_faults(&mut *s, t + 1, 1_000, &c);
        assert_eq!(step.faults[0].label(), "kill n1");
        set(&mut c, "n1", false, false, 0);
        // Nothing while the others wait for an election.
        let step = s.step(&at(t + 300, &c, &[]));
        assert!(step.faults.is_empty() && step.next_ms == FAST_MS);
        // n3 wins term 5: n3 is cut off, n2 (its voter) killed.
        set(&mut c, "n3", true, true, 5);
        set(&mut c, "n2", true, false, 5);
        let step = s.step(&at(t + 700, &c, &[]));
        assert_eq!(names(&step), ["partition", "kill"]);
        match &step.faults[0] {
            Fault::Partition { cut, .. } => {
                assert_eq!(cut.len(), 4);
                assert!(cut.iter().all(|[a, b]| a == "n3" || b == "n3"));
            }
            f => panic!("{f:?}"),
        }
        assert_eq!(step.faults[1].label(), "kill n2");
        set(&mut c, "n2", false, false, 0);
        // Once what links held for the dead is gone, n1 restarts.
        let (t1, step) = until_faults(&mut *s, t + 701, 2_000, &c);
        assert!(t1 >= t + 700 + STALE.as_millis() as u64, "{t1}");
        assert_eq!(
            step.faults,
            vec![Fault::Revive {
                nodes: vec!["n1".into()]
            }]
        );
        // n1 back in its old term: wait; then it campaigns in term 5.
        set(&mut c, "n1", true, false, 4);
        assert!(s.step(&at(t1 + 100, &c, &[])).faults.is_empty());
        set(&mut c, "n1", true, false, 5);
        let step = s.step(&at(t1 + 200, &c, &[]));
        assert_eq!(
            step.faults,
            vec![Fault::Revive {
                nodes: vec!["n2".into()]
            }]
        );
        // n1 leads term 5 too: noted, held, then killed and the winner healed.
        set(&mut c, "n1", true, true, 5);
        let step = s.step(&at(t1 + 300, &c, &[]));
        assert!(
            step.notes[0].contains("two leaders in one term"),
            "{step:?}"
        );
        let (t2, step) = until_faults(&mut *s, t1 + 301, 2_000, &c);
        assert!(t2 >= t1 + 300 + HOLD_MS);
        assert_eq!(names(&step), ["kill", "heal"]);
        let (_, step) = until_faults(&mut *s, t2 + 1, 3_000, &c);
        assert_eq!(names(&step), ["heal", "restart", "clear-links"]);
    }

    #[test]
    fn an_abandoned_attempt_heals_and_settles_again() {
        for name in ["vote-loss", "figure-8"] {
            let plan = ScriptPlan::parse(name).expect("ok");
            let mut s = build(&plan, ids(3), STALE, 1);
            let c = cluster(3, "n1", 4);
            assert!(!s.attempting());
            assert_eq!(s.abandon(0), Step::default(), "{name}: nothing to end");
            let (t, _) = until_faults(&mut *s, 0, 5_000, &c);
            assert!(s.attempting(), "{name}");
            let step = s.abandon(t * 1_000_000 + 10);
            assert_eq!(names(&step), ["heal", "restart", "clear-links"], "{name}");
            assert!(!s.attempting(), "{name}");
            // The next attempt starts from a settled cluster again.
            let (t2, _) = until_faults(&mut *s, t + 1, 5_000, &c);
            assert!(t2 >= t + SETTLE_MS, "{name}: {t2}");
            assert!(s.attempting(), "{name}");
        }
    }

    #[test]
    fn vote_loss_gives_up_on_a_split_vote() {
        let plan = ScriptPlan::parse("vote-loss").expect("ok");
        let mut s = build(&plan, ids(3), STALE, 1);
        let mut c = cluster(3, "n1", 4);
        let (t, _) = until_faults(&mut *s, 0, 5_000, &c);
        let (t, _) = until_faults(&mut *s, t + 1, 1_000, &c);
        set(&mut c, "n1", false, false, 0);
        set(&mut c, "n2", true, false, 6);
        let step = s.step(&at(t + 500, &c, &[]));
        assert_eq!(names(&step), ["heal", "restart", "clear-links"]);
        assert!(step.notes[0].contains("more than one term"), "{step:?}");
        // Back to settling: nothing until a leader holds again.
        let step = s.step(&at(t + 520, &c, &[]));
        assert!(step.faults.is_empty(), "{step:?}");
        let c = cluster(3, "n2", 6);
        let (t2, step) = until_faults(&mut *s, t + 540, 5_000, &c);
        assert!(t2 >= t + 540 + SETTLE_MS);
        assert_eq!(names(&step), ["delay"]);
        // Votes crossed on the delayed links: the next attempt halves it.
        match &step.faults[0] {
            Fault::LinkDelay { latency_ms, .. } => assert_eq!(*latency_ms, 25),
            f => panic!("{f:?}"),
        }
        assert!(step.notes[0].starts_with("attempt 2:"), "{step:?}");
    }

    fn event(index: u64, ms: u64, process: u64, kind: EventType, f: &str, node: &str) -> Event {
        let mut e = Event::new(
            index,
            ms * 1_000_000,
            Process::Client(process),
            kind,
            f,
            Value::Null,
        );
        e.node = Some(node.into());
        e
    }

    #[test]
    fn figure_8_moves_the_majority_from_the_old_leader_to_the_rival() {
        let plan = ScriptPlan::parse("figure-8").expect("ok");
        let mut s = build(&plan, ids(5), STALE, 3);
        let mut c = cluster(5, "n1", 2);
        let (t, step) = until_faults(&mut *s, 0, 5_000, &c);
        assert_eq!(names(&step), ["partition", "delay"]);
        let cut_at = t + 1;
        let mut o = at(cut_at, &c, &[]);
        o.applied_ns = Some(cut_at * 1_000_000);
        assert!(s.step(&o).faults.is_empty());
        // n4 wins term 3: n4 cut off, n1 with two others.
        set(&mut c, "n4", true, true, 3);
        let step = s.step(&at(t + 600, &c, &[]));
        let Fault::Repartition { cut, .. } = &step.faults[0] else {
            panic!("{step:?}");
        };
        let group = |cut: &[[String; 2]], a: &str| -> Vec<String> {
            ids(5)
                .into_iter()
                .filter(|b| b == a || !cut.contains(&[a.to_string(), b.clone()]))
                .collect()
        };
        let g = group(cut, "n1");
        assert_eq!(g.len(), 3, "{g:?}");
        assert!(!g.contains(&"n4".to_string()));
        assert_eq!(group(cut, "n4"), vec!["n4".to_string()]);
        // Another member winning ends the attempt; n1 winning goes on.
        set(&mut c, "n1", true, true, 5);
        let elected = t + 1_500;
        assert!(s.step(&at(elected, &c, &[])).faults.is_empty());
        // A write invoked before the cut, acknowledged by n1: not the one.
        // A read invoked after it: not a write. A write invoked after the
        // cut but acknowledged by another node: not n1's.
        let events = [
            event(0, cut_at - 5, 7, EventType::Invoke, "append", "n1"),
            event(1, cut_at + 3, 8, EventType::Invoke, "read", "n1"),
            event(2, cut_at + 4, 9, EventType::Invoke, "append", "n2"),
            event(3, elected + 10, 7, EventType::Ok, "append", "n1"),
            event(4, elected + 11, 8, EventType::Ok, "read", "n1"),
            event(5, elected + 12, 9, EventType::Ok, "append", "n2"),
        ];
        assert!(s.step(&at(elected + 20, &c, &events)).faults.is_empty());
        let events = [
            event(6, cut_at + 6, 10, EventType::Invoke, "append", "n1"),
            event(7, elected + 30, 10, EventType::Ok, "append", "n1"),
        ];
        let step = s.step(&at(elected + 40, &c, &events));
        let Fault::Repartition { cut, .. } = &step.faults[0] else {
            panic!("{step:?}");
        };
        let mut expect: Vec<String> = g.iter().filter(|i| *i != "n1").cloned().collect();
        expect.push("n4".into());
        expect.sort();
        assert_eq!(group(cut, "n4"), expect);
        assert_eq!(group(cut, "n1"), vec!["n1".to_string()]);
        // The rival leads; reads go on for a while; then recovery.
        set(&mut c, "n4", true, true, 7);
        let step = s.step(&at(elected + 100, &c, &[]));
        assert!(step.notes[0].contains("n4 leads in term 7"), "{step:?}");
        let (t2, step) = until_faults(&mut *s, elected + 101, 5_000, &c);
        assert!(t2 >= elected + 100 + READS_MS);
        assert_eq!(names(&step), ["heal", "restart", "clear-links"]);
    }

    #[test]
    fn figure_8_gives_up_when_another_member_wins() {
        let plan = ScriptPlan::parse("figure-8").expect("ok");
        let mut s = build(&plan, ids(3), STALE, 3);
        let mut c = cluster(3, "n1", 2);
        let (t, _) = until_faults(&mut *s, 0, 5_000, &c);
        set(&mut c, "n3", true, true, 3);
        let step = s.step(&at(t + 500, &c, &[]));
        assert_eq!(names(&step), ["repartition"]);
        // n1's partner n2 wins instead.
        set(&mut c, "n2", true, true, 4);
        set(&mut c, "n1", true, false, 4);
        let step = s.step(&at(t + 900, &c, &[]));
        assert_eq!(names(&step), ["heal", "restart", "clear-links"]);
        assert!(step.notes[0].contains("n2 won instead of n1"), "{step:?}");
    }
}

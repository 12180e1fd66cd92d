//! Exploration by default (swarm testing, Groce et al., ISSTA 2012): a run
//! draws a profile from its seed — cluster size (even sizes too), rate
//! (with bursts at full speed), concurrency, pinned clients, resends, the
//! workload's keys and operation mix, which fault kinds are on with which
//! parameters and how often, the read mode, and the system's own knobs
//! (its spec's `[knobs]`) — so that runs differ from each other and each
//! leaves some features out, which finds more bugs than one configuration
//! with everything on. Each scripted schedule is drawn in half the runs,
//! and runs in episodes between stretches of the random faults. Explicit
//! flags win over the draw; `--fixed` draws nothing. Every value is drawn,
//! in a fixed order, whatever the flags say, so one flag never shifts the
//! others' draws.

use std::collections::BTreeMap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::nemesis::{
    CutMode, LinkScope, NemesisKind, PartitionShape, Plan, SCRIPTS, ScriptPlan, Target,
};
use crate::sut::{Db, ReadMode};
use faultline_workloads::{Shape, Workload};

/// What the seed drew for a run (every setting; flags may override).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Nodes.
    pub nodes: usize,
    /// Workers per node.
    pub workers_per_node: usize,
    /// Ops/s in total (0 = as fast as possible).
    pub rate: f64,
    /// Bursts at full speed between paced stretches.
    pub bursts: bool,
    /// Workers start every op at their own node.
    pub pin_clients: bool,
    /// Per-op timeout.
    pub op_timeout_ms: u64,
    /// Resend ambiguous attempts (for systems that de-duplicate).
    pub resends: bool,
    /// The workload's keys and mix.
    pub shape: Shape,
    /// The faults.
    pub nemesis: Plan,
    /// Seconds between faults.
    pub nemesis_interval_s: f64,
    /// How reads are asked for.
    pub read_mode: ReadMode,
    /// The system's knobs: name → the alternative drawn.
    pub knobs: BTreeMap<String, Vec<String>>,
}

/// The seed's stream for profiles, apart from the clients' and the nemesis's.
const STREAM: u64 = 0x7377_6172_6d00_0000;

/// Picks one of `xs` with the given weights.
fn weighted<T: Clone>(rng: &mut ChaCha8Rng, xs: &[(T, u32)]) -> T {
    let weights: Vec<u32> = xs.iter().map(|(_, w)| *w).collect();
    xs[faultline_workloads::pick(rng, &weights)].0.clone()
}

/// A non-empty random subset of `all` (each kept with probability `p`), in order.
fn subset<T: Copy + PartialEq>(rng: &mut ChaCha8Rng, all: &[T], p: f64) -> Vec<T> {
    let mut out: Vec<T> = all.iter().copied().filter(|_| rng.random_bool(p)).collect();
    if out.is_empty() {
        out.push(all[rng.random_range(0..all.len())]);
    }
    out
}

/// Draws the profile of a run of `workload` on `db` from `seed`.
pub fn draw(seed: u64, db: &Db, workload: &dyn Workload) -> Profile {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ STREAM);
    // Even sizes as often as three: quorum arithmetic slips show only there.
    let nodes = weighted(&mut rng, &[(3, 3), (4, 3), (5, 4)]);
    let workers_per_node = weighted(&mut rng, &[(1, 2), (2, 3), (4, 3)]);
    let rate = weighted(&mut rng, &[(100.0, 3), (500.0, 4), (0.0, 3)]);
    let bursts = rate > 0.0 && rng.random_bool(0.5);
    let pin_clients = rng.random_bool(0.5);
    let op_timeout_ms = weighted(&mut rng, &[(1000, 3), (3000, 2)]);
    // Real client libraries resend a request whose answer was lost: most
    // runs do too (where the system de-duplicates).
    let resends = rng.random_bool(0.75);

    // The workload: keys (for multi-key workloads) and each kind's weight.
    let default = workload.shape();
    let keys = weighted(&mut rng, &[(1, 1), (2, 2), (4, 2), (8, 2)]);
    let mut weights: Vec<u32> = default
        .weights
        .iter()
        .map(|_| weighted(&mut rng, &[(1, 1), (2, 2), (4, 2), (8, 1)]))
        .collect();
    if weights.iter().all(|w| *w == 0) {
        weights = default.weights.clone();
    }
    let shape = Shape {
        keys: if workload.multi_key() { keys } else { 1 },
        weights,
    };

    // Faults: each kind on or off, at least one, with its parameters.
    // Partitions and crashes expose the most bugs in replicated systems
    // (Jepsen's defaults): they are on more often than the rest.
    let mut plan = Plan::default();
    for k in NemesisKind::all() {
        let p = match k {
            // Membership changes need a spec with spares: only on request
            // (and drawing nothing for them keeps every other draw).
            NemesisKind::Member => continue,
            NemesisKind::Partition => 0.75,
            NemesisKind::Kill | NemesisKind::Disk => 0.6,
            NemesisKind::Pause => 0.5,
            NemesisKind::Delay | NemesisKind::Loss => 0.4,
            NemesisKind::Bandwidth | NemesisKind::Clock => 0.25,
        };
        if rng.random_bool(p) {
            plan.kinds.push(k);
        }
    }
    if plan.kinds.is_empty() {
        let all: Vec<NemesisKind> = NemesisKind::all()
            .filter(|k| *k != NemesisKind::Member)
            .collect();
        plan.kinds.push(all[rng.random_range(0..all.len())]);
    }
    plan.shapes = subset(&mut rng, &PartitionShape::ALL, 0.6);
    plan.cut = if rng.random_bool(0.25) {
        CutMode::Reject
    } else {
        CutMode::Blackhole
    };
    plan.kill = subset(&mut rng, &Target::ALL, 0.6);
    plan.pause = subset(&mut rng, &Target::ALL, 0.6);
    let scope = |rng: &mut ChaCha8Rng| {
        weighted(
            rng,
            &[
                (LinkScope::Peers, 3),
                (LinkScope::Clients, 1),
                (LinkScope::AllLinks, 1),
            ],
        )
    };
    plan.delay.latency_ms = weighted(&mut rng, &[(5, 1), (20, 2), (50, 2), (100, 2), (250, 1)]);
    plan.delay.jitter_ms = plan.delay.latency_ms / 2;
    plan.delay.links = scope(&mut rng);
    plan.loss.probability = weighted(&mut rng, &[(0.01, 1), (0.05, 2), (0.2, 2)]);
    plan.loss.links = scope(&mut rng);
    plan.bandwidth.bytes_per_sec =
        weighted(&mut rng, &[(16 * 1024, 1), (64 * 1024, 2), (256 * 1024, 1)]);
    plan.bandwidth.links = scope(&mut rng);
    plan.kinds.sort();
    let nemesis_interval_s = weighted(
        &mut rng,
        &[(0.3, 2), (0.6, 2), (1.0, 2), (2.0, 2), (3.0, 1)],
    );

    // Reads: only the modes that promise linearizable reads (stale reads
    // would be flagged on a correct system).
    let modes: Vec<ReadMode> = db
        .read_modes()
        .into_iter()
        .filter(|m| *m != ReadMode::Stale)
        .collect();
    let read_mode = if modes.contains(&ReadMode::Lease) && rng.random_bool(0.4) {
        ReadMode::Lease
    } else {
        ReadMode::Linearizable
    };

    let knobs = db
        .spec
        .knobs
        .iter()
        .map(|(name, k)| {
            let weights: Vec<u32> = if k.weights.len() == k.choices.len() {
                k.weights.clone()
            } else {
                vec![1; k.choices.len()]
            };
            let choice = k.choices[faultline_workloads::pick(&mut rng, &weights)].clone();
            (name.clone(), choice)
        })
        .collect();

    // Scripted episodes between the random faults, each script on in half
    // the runs: a script acts at the moments a random schedule almost never
    // hits (a crash right after an election, Raft's Figure 8). Drawn last,
    // so that they shift no other draw. Where the system gives no leader
    // probe with a term, the run leaves them out.
    for info in &SCRIPTS {
        if rng.random_bool(0.5) {
            plan.scripts.push(ScriptPlan {
                kind: info.kind,
                delay_ms: info.delay_ms,
            });
        }
    }
    Profile {
        nodes,
        workers_per_node,
        rate,
        bursts,
        pin_clients,
        op_timeout_ms,
        resends,
        shape,
        nemesis: plan,
        nemesis_interval_s,
        read_mode,
        knobs,
    }
}

/// A profile's faults, as `--nemesis` would spell them (for the summary).
pub fn nemesis_arg(plan: &Plan) -> String {
    plan.kinds
        .iter()
        .map(|k| {
            let params: Vec<String> = match k {
                NemesisKind::Partition => {
                    let mut v: Vec<String> =
                        plan.shapes.iter().map(|s| s.name().to_string()).collect();
                    if plan.cut == CutMode::Reject {
                        v.push("reject".into());
                    }
                    v
                }
                NemesisKind::Kill => plan.kill.iter().map(|t| t.name().to_string()).collect(),
                NemesisKind::Pause => plan.pause.iter().map(|t| t.name().to_string()).collect(),
                NemesisKind::Member => plan.member.iter().map(|s| s.name().to_string()).collect(),
                NemesisKind::Delay => vec![
                    format!("{}ms~{}ms", plan.delay.latency_ms, plan.delay.jitter_ms),
                    plan.delay.links.name().to_string(),
                ],
                NemesisKind::Loss => vec![
                    format!("{}%", plan.loss.probability * 100.0),
                    plan.loss.links.name().to_string(),
                ],
                NemesisKind::Bandwidth => vec![
                    format!("{}B", plan.bandwidth.bytes_per_sec),
                    plan.bandwidth.links.name().to_string(),
                ],
                NemesisKind::Disk => {
                    let mut v: Vec<String> =
                        plan.disk.iter().map(|t| t.name().to_string()).collect();
                    v.extend(plan.disk_actions.iter().map(|a| a.name().to_string()));
                    v
                }
                NemesisKind::Clock => {
                    let mut v: Vec<String> =
                        plan.clock.iter().map(|t| t.name().to_string()).collect();
                    for a in &plan.clock_actions {
                        if !v.iter().any(|x| x == a.name()) {
                            v.push(a.name().to_string());
                        }
                    }
                    v
                }
            };
            format!("{}:{}", k.name(), params.join("+"))
        })
        .chain(plan.scripts.iter().map(ScriptPlan::arg))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_repeat_from_the_seed_and_vary_across_seeds() {
        let db = Db::resolve("faultline").expect("built in");
        let w = faultline_workloads::by_name("kv").expect("kv");
        assert_eq!(draw(7, &db, &*w), draw(7, &db, &*w));
        let profiles: Vec<Profile> = (0..40).map(|s| draw(s, &db, &*w)).collect();
        let sizes: std::collections::BTreeSet<usize> = profiles.iter().map(|p| p.nodes).collect();
        assert_eq!(sizes.len(), 3, "3, 4 and 5 nodes drawn: {sizes:?}");
        assert!(profiles.iter().any(|p| p.rate == 0.0));
        assert!(
            profiles
                .iter()
                .any(|p| p.nemesis.kinds.contains(&NemesisKind::Delay))
        );
        assert!(profiles.iter().all(|p| !p.nemesis.kinds.is_empty()));
        assert!(profiles.iter().all(|p| p.read_mode != ReadMode::Stale));
        assert!(
            profiles
                .iter()
                .any(|p| p.knobs["snapshots"] == ["--snapshot-every=64"])
        );
        // Each script in some runs, not all; some runs take turns of both.
        for info in &SCRIPTS {
            let with = profiles
                .iter()
                .filter(|p| p.nemesis.scripts.iter().any(|s| s.kind == info.kind))
                .count();
            assert!((10..=30).contains(&with), "{} in {with} of 40", info.name);
        }
        assert!(profiles.iter().any(|p| p.nemesis.scripts.len() == 2));
        // The drawn nemesis spells back into the same plan.
        for p in &profiles {
            let again = Plan::parse(&nemesis_arg(&p.nemesis)).expect("parses");
            assert_eq!(again.kinds, p.nemesis.kinds);
            assert_eq!(again.scripts, p.nemesis.scripts);
        }
    }
}

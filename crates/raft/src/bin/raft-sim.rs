//! raft-sim: runs the seeded Raft simulator for one seed (to replay a
//! failure) or for many (a soak), and prints what it checked.
//!
//! Exit codes: 0 every run passed, 1 a property was violated, 2 bad usage.

use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use faultline_raft::Bug;
use faultline_raft::sim::{self, Profile, Property, SimOptions, SoakTotals};

/// Raw command-line arguments.
#[derive(Parser, Debug)]
#[command(
    name = "raft-sim",
    about = "Seeded deterministic simulator of the faultline Raft core"
)]
struct Args {
    /// Run exactly this seed (and print its report).
    #[arg(long, conflicts_with_all = ["seeds", "start_seed"])]
    seed: Option<u64>,
    /// Run this many seeds (a soak).
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed of a soak.
    #[arg(long, default_value_t = 0)]
    start_seed: u64,
    /// Cluster size: 3 or 5; with membership churn, the initial voters
    /// (3 to 5) out of a pool of 7 node ids.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Ticks of faulty operation per seed, before healing.
    #[arg(long, default_value_t = 400)]
    steps: u64,
    /// Switch on a deliberate mistake (repeatable): vote-without-log-check,
    /// commit-previous-term, forget-vote, no-truncate-on-conflict,
    /// stale-leader-read, single-step-change, config-on-commit.
    #[arg(long = "bug")]
    bugs: Vec<String>,
    /// Fault mix: mixed, crashes, partitions, churn or membership (which
    /// implies --membership).
    #[arg(long, default_value = "mixed")]
    profile: String,
    /// Membership churn: an administrator adds learners, promotes, removes
    /// and replaces voters while the profile's faults go on.
    #[arg(long)]
    membership: bool,
    /// Do not check this property (repeatable), to see what else a mistake
    /// breaks: election-safety, log-matching, leader-completeness,
    /// state-machine-safety, linearizable-reads, liveness, commit-quorum,
    /// membership-view, disruption, contract.
    #[arg(long = "ignore")]
    ignore: Vec<String>,
    /// Worker threads for a soak (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

/// Validated settings.
struct Settings {
    template: SimOptions,
    seeds: std::ops::Range<u64>,
    threads: usize,
}

fn settings(a: Args) -> anyhow::Result<Settings> {
    if a.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let profile = Profile::from_name(&a.profile).with_context(|| {
        format!(
            "unknown --profile {:?}; known: mixed, crashes, partitions, churn, membership",
            a.profile
        )
    })?;
    let churn = a.membership || profile == Profile::Membership;
    if churn && !(3..=5).contains(&a.nodes) {
        bail!(
            "--nodes must be 3 to 5 with membership churn, not {}",
            a.nodes
        );
    }
    if !churn && a.nodes != 3 && a.nodes != 5 {
        bail!("--nodes must be 3 or 5, not {}", a.nodes);
    }
    let mut ignore = Vec::new();
    for p in &a.ignore {
        ignore.push(Property::from_key(p).with_context(|| {
            let known: Vec<&str> = Property::ALL.iter().map(|p| p.key()).collect();
            format!("unknown --ignore {p:?}; known: {}", known.join(", "))
        })?);
    }
    let mut bugs = Vec::new();
    for b in &a.bugs {
        bugs.push(Bug::from_name(b)?);
    }
    let seeds = match a.seed {
        Some(s) => s..s.saturating_add(1),
        None => a.start_seed..a.start_seed.saturating_add(a.seeds),
    };
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let mut template = SimOptions::new(0, a.nodes, a.steps);
    template.bugs = bugs;
    template.profile = profile;
    template.membership = a.membership;
    template.ignore = ignore;
    Ok(Settings {
        template,
        seeds,
        threads,
    })
}

fn main() -> ExitCode {
    let s = match settings(Args::parse()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("raft-sim: {e:#}");
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let next = AtomicU64::new(s.seeds.start);
    let totals = Mutex::new(SoakTotals::default());
    std::thread::scope(|scope| {
        for _ in 0..s.threads.min((s.seeds.end - s.seeds.start).max(1) as usize) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= s.seeds.end {
                        break;
                    }
                    let mut o = s.template.clone();
                    o.seed = seed;
                    let r = sim::run(&o);
                    if let Some(text) = r.failure_text() {
                        eprintln!("{text}");
                    }
                    totals.lock().expect("totals lock").add(r);
                }
            });
        }
    });
    let t = totals.into_inner().expect("totals lock");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "raft-sim: {} seeds, {} steps, {} messages, {} acknowledged writes, {} reads, {} crashes ({} with a Ready not acted on), {} restarts, {} snapshots installed checked in {:.1}s; {} failing",
        t.seeds,
        t.steps,
        t.messages,
        t.acked_writes,
        t.reads,
        t.crashes,
        t.torn_readies,
        t.restarts,
        t.snapshots_installed,
        secs,
        t.failures.len()
    );
    if s.template.churn() {
        let c = &t.churn;
        println!(
            "raft-sim: membership: {} changes asked, {} accepted ({} learners added, {} of them again, {} promotions, {} removals, {} replacements), {} refused ({} learners not caught up, {} changes in progress); {} joint and {} other configurations committed; {} snapshots installed to learners; {} removed nodes stopped for good, {} left running; {} faults right after a change; {} leaders deposed by a learner's higher term",
            c.asked,
            c.accepted,
            c.learners_added,
            c.readded,
            c.promotions,
            c.removals,
            c.replacements,
            c.refused,
            c.not_caught_up,
            c.in_progress,
            c.joint_committed,
            c.configs_committed,
            c.learner_snapshots,
            c.retired,
            c.kept_running,
            c.after_change_faults,
            c.learner_depositions
        );
    }
    if t.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        let mut seeds: Vec<u64> = t.failures.iter().map(|f| f.options.seed).collect();
        seeds.sort_unstable();
        println!("failing seeds: {seeds:?}");
        ExitCode::from(1)
    }
}

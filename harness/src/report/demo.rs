//! Synthetic run folders for testing the report without a cluster: a seeded
//! register history that is linearizable by construction (every op takes
//! effect at a point inside its interval), with fault windows during which
//! ops fail, time out or slow down; and an invalid variant in which one read
//! returns a value that two completed writes had already overwritten (a
//! stale read). The checker judges both, as a run would.

use anyhow::{Context, Result};
use faultline_checkers::{Checker, LinOptions, ModelKind};
use faultline_history::{Event, EventType, JsonlWriter, Process};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::nemesis::{CutMode, Fault, LinkScope, NemesisKind, PartitionShape, Plan, Target};
use crate::settings::Settings;
use crate::store::{Config, NemesisLine, Results, RunDir, SCHEMA, SystemInfo, Versions};
use crate::sut::ReadMode;

/// Which synthetic run to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoKind {
    /// Linearizable by construction.
    Valid,
    /// One stale read injected.
    Invalid,
}

/// Histories up to this many ops are checked; larger ones are valid by
/// construction and marked unchecked (checking 100k ops is not what a report test is for).
const CHECK_UP_TO: usize = 20_000;

struct SimOp {
    process: u64,
    f: &'static str,
    invoke: u64,
    complete: u64,
    lin: u64,
    outcome: EventType,
    applies: bool,
    arg: Value,
    result: Value,
}

/// Faults: (kind, start s, end s, the fault that starts it).
fn faults(duration_s: f64) -> Vec<(NemesisKind, f64, f64, Fault)> {
    let mut out = Vec::new();
    let n = |x: &str| x.to_string();
    let shapes = [
        (
            NemesisKind::Partition,
            Fault::Partition {
                shape: PartitionShape::IsolateLeader,
                cut: vec![[n("n1"), n("n2")], [n("n2"), n("n1")]],
                mode: CutMode::Blackhole,
            },
        ),
        (
            NemesisKind::Kill,
            Fault::Kill {
                target: Target::Minority,
                nodes: vec![n("n2"), n("n4")],
            },
        ),
        (
            NemesisKind::Pause,
            Fault::Pause {
                target: Target::Leader,
                nodes: vec![n("n3")],
            },
        ),
        (
            NemesisKind::Delay,
            Fault::LinkDelay {
                latency_ms: 50,
                jitter_ms: 10,
                links: LinkScope::Peers,
            },
        ),
    ];
    let mut t = duration_s * 0.12;
    let mut i = 0;
    while t + duration_s * 0.1 < duration_s * 0.92 {
        let (k, v) = shapes[i % shapes.len()].clone();
        out.push((k, t, t + duration_s * 0.08, v));
        t += duration_s * 0.2;
        i += 1;
    }
    out
}

fn end_fault(kind: NemesisKind) -> Fault {
    match kind {
        NemesisKind::Partition => Fault::Heal,
        NemesisKind::Kill => Fault::Restart,
        NemesisKind::Pause => Fault::Resume,
        _ => Fault::ClearLinks,
    }
}

/// Writes a synthetic run (history, nemesis, config, results) into `dir`
/// (created if needed) with about `ops` client ops; deterministic in `seed`.
pub fn write_demo_run(dir: &Path, kind: DemoKind, ops: usize, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let workers = 10u64;
    // About 1,500 ops/s in total, at least 20 s.
    let duration_s = (ops as f64 / 1500.0).max(20.0);
    let dur_ns = (duration_s * 1e9) as u64;
    let faults = faults(duration_s);
    let in_fault = |t: u64| {
        faults
            .iter()
            .find(|(_, s, e, _)| t as f64 / 1e9 >= *s && (t as f64 / 1e9) < *e)
            .map(|f| f.0)
    };
    // Generate each worker's ops in sequence.
    let per_worker = ops.div_ceil(workers as usize);
    let mut sim: Vec<SimOp> = Vec::with_capacity(ops);
    // Think time between a worker's ops, leaving room for their latency.
    let gap_ns = (dur_ns / per_worker.max(1) as u64) * 6 / 10;
    for w in 0..workers {
        let mut process = w;
        let mut t = rng.random_range(0..gap_ns.max(1));
        for _ in 0..per_worker {
            if sim.len() >= ops {
                break;
            }
            let fault = in_fault(t);
            let roll: f64 = rng.random();
            let f = if roll < 0.5 {
                "read"
            } else if roll < 0.85 {
                "write"
            } else {
                "cas"
            };
            // Log-normal-ish latency around 2 ms, slower under faults.
            let base = 0.6e6 + (rng.random::<f64>().powi(3) * 8e6) + rng.random_range(0.0..1.2e6);
            let (outcome, lat) = match fault {
                Some(NemesisKind::Partition | NemesisKind::Kill) if rng.random_bool(0.35) => {
                    if rng.random_bool(0.5) {
                        (EventType::Fail, base * 0.5)
                    } else {
                        (EventType::Info, 1000e6)
                    }
                }
                Some(NemesisKind::Pause) if rng.random_bool(0.3) => (EventType::Info, 1000e6),
                Some(NemesisKind::Delay) => {
                    (EventType::Ok, base + 50e6 + rng.random_range(0.0..20e6))
                }
                Some(_) => (EventType::Ok, base * 3.0),
                None => (EventType::Ok, base),
            };
            // The invalid run keeps every op definite: indeterminate ops
            // stay open to the end for the checker, and proving a history
            // invalid means exhausting every order of them.
            let (outcome, lat) = if outcome == EventType::Info && kind == DemoKind::Invalid {
                (EventType::Fail, lat / 400.0)
            } else {
                (outcome, lat)
            };
            let complete = t + lat as u64;
            let applies = match outcome {
                EventType::Ok => true,
                EventType::Info => rng.random_bool(0.5),
                _ => false,
            };
            let lin = t + (rng.random::<f64>() * lat) as u64;
            sim.push(SimOp {
                process,
                f,
                invoke: t,
                complete,
                lin,
                outcome,
                applies,
                arg: Value::Null,
                result: Value::Null,
            });
            if outcome == EventType::Info {
                // A process whose op is indeterminate never invokes again.
                process += workers;
            }
            t = complete + rng.random_range(gap_ns / 2..gap_ns.max(2) * 3 / 2);
        }
    }
    // Take effect in linearization-point order: the results follow.
    let mut order: Vec<usize> = (0..sim.len()).collect();
    order.sort_by_key(|&i| (sim[i].lin, i));
    let mut state = Value::Null;
    let mut next_value = 1u64;
    for i in order {
        let op = &mut sim[i];
        match op.f {
            "write" => {
                op.arg = json!(next_value);
                next_value += 1;
                if op.applies {
                    state = op.arg.clone();
                }
            }
            "cas" => {
                let to = json!(next_value);
                next_value += 1;
                // Half aim at the current value, half at an older one.
                let from = if rng.random_bool(0.5) || state.is_null() {
                    state.clone()
                } else {
                    json!(state.as_u64().unwrap_or(1).saturating_sub(1))
                };
                let matches = from == state;
                op.arg = json!([from, to]);
                if op.outcome == EventType::Ok && !matches {
                    op.outcome = EventType::Fail;
                    op.applies = false;
                }
                if op.applies && matches {
                    state = to;
                } else if op.outcome == EventType::Info {
                    op.applies = false;
                }
            }
            _ => {
                op.result = state.clone();
            }
        }
    }
    if kind == DemoKind::Invalid {
        inject_stale_read(&mut sim).context("the synthetic history has no read to make stale")?;
    }
    // Events in time order, nemesis included.
    let mut evs: Vec<(u64, u8, Event)> = Vec::with_capacity(sim.len() * 2 + 16);
    for op in &sim {
        let p = Process::Client(op.process);
        let inv_val = if op.f == "read" {
            Value::Null
        } else {
            op.arg.clone()
        };
        let mut inv = Event::new(0, op.invoke, p, EventType::Invoke, op.f, inv_val.clone());
        inv.key = None;
        evs.push((op.invoke, 1, inv));
        let val = if op.f == "read" && op.outcome == EventType::Ok {
            op.result.clone()
        } else {
            inv_val
        };
        let mut done = Event::new(0, op.complete, p, op.outcome, op.f, val);
        done.error = match op.outcome {
            EventType::Fail => Some(if op.f == "cas" {
                "precondition failed".into()
            } else {
                "not_leader".into()
            }),
            EventType::Info => Some("timeout".into()),
            _ => None,
        };
        evs.push((op.complete, 0, done));
    }
    let mut nemesis_lines = Vec::new();
    for (k, s, e, fault) in &faults {
        let (s, e) = ((s * 1e9) as u64, (e * 1e9) as u64);
        for (t, fv, starts, ends) in [
            (s, fault.clone(), Some(*k), vec![]),
            (e, end_fault(*k), None, vec![*k]),
        ] {
            let name = fv.name().to_string();
            evs.push((
                t,
                1,
                Event::new(
                    0,
                    t,
                    Process::Nemesis,
                    EventType::Invoke,
                    name.clone(),
                    serde_json::to_value(&fv)?,
                ),
            ));
            evs.push((
                t + 2_000_000,
                0,
                Event::new(
                    0,
                    t + 2_000_000,
                    Process::Nemesis,
                    EventType::Info,
                    name,
                    json!("done"),
                ),
            ));
            nemesis_lines.push(NemesisLine {
                schema: SCHEMA,
                time: t,
                done: t + 2_000_000,
                fault: fv,
                starts,
                ends,
                result: "done".into(),
                members: None,
            });
        }
    }
    // Completions before invocations at the same instant keep processes sequential.
    evs.sort_by_key(|(t, k, _)| (*t, *k));
    let events: Vec<Event> = evs
        .into_iter()
        .enumerate()
        .map(|(i, (_, _, mut e))| {
            e.index = i as u64;
            e
        })
        .collect();
    let mut w = JsonlWriter::create(&dir.join("history.jsonl"))?;
    for e in &events {
        w.append(e)?;
    }
    let run = RunDir::at(dir)?;
    let log = run.nemesis_log()?;
    for l in &nemesis_lines {
        log.append(l);
    }
    let settings = Settings {
        workload: "register".into(),
        db: "faultline".into(),
        system: format!(
            "synthetic: faultline report --demo {} (a generated history, no cluster)",
            if kind == DemoKind::Invalid {
                "invalid"
            } else {
                "valid"
            }
        ),
        nodes: 5,
        spares: 0,
        time_limit_s: duration_s.round(),
        concurrency: workers as usize,
        concurrency_arg: "2n".into(),
        rate: 0.0,
        op_timeout_ms: 1000,
        attempt_timeout_ms: 1000,
        pin_clients: false,
        read_mode: ReadMode::Linearizable,
        nemesis_arg: "partition,kill,pause,delay".into(),
        nemesis: Plan::parse("partition,kill,pause,delay").map_err(anyhow::Error::msg)?,
        nemesis_interval_s: duration_s * 0.1,
        quiet_period_s: 2.0,
        seed,
        store: PathBuf::from("store"),
        node_bin: None,
        node_args: vec![],
        node_bugs: vec![],
        node_bugs_per_node: Default::default(),
        leader_timeout_s: 20.0,
        bursts: false,
        shape: faultline_workloads::by_name("register")
            .map_err(anyhow::Error::msg)?
            .shape(),
        knobs: Default::default(),
        drawn: vec![],
    };
    run.write_config(&Config {
        schema: SCHEMA,
        system: SystemInfo {
            name: settings.system.clone(),
            spec: "none".into(),
            protocol: "none".into(),
        },
        settings,
        seed,
        versions: Versions::current(),
        started_unix_ms: 0,
        command_line: vec![],
    })?;
    let (verdict, checker) = if sim.len() <= CHECK_UP_TO {
        let paired = faultline_history::pair("history.jsonl", &events)?;
        let mut opts = LinOptions::new(ModelKind::CasRegister);
        opts.time_limit = Some(Duration::from_secs(60));
        let j = faultline_checkers::check(
            Checker::Linearizable(ModelKind::CasRegister),
            &paired,
            &opts,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        (j.verdict.name().to_string(), j.detail)
    } else {
        (
            "valid".to_string(),
            json!({"note": "synthetic history, linearizable by construction; not checked"}),
        )
    };
    run.write_results(&Results {
        schema: SCHEMA,
        exit_code: if verdict == "invalid" { 1 } else { 0 },
        verdict,
        interrupted: false,
        harness_error: None,
        seed,
        checker,
        ops: crate::stats::op_counts(&events),
        latency_ms: None,
        throughput_ok_per_s: 0.0,
        faults: Default::default(),
        node_exits_unasked: vec![],
        client_restarts: 0,
        wall_time_s: 0.0,
        coverage: Default::default(),
        latency: None,
        availability: None,
        membership: None,
    })?;
    Ok(())
}

/// Makes one ok read (about 60 % into the run) return the value of an ok
/// write W1 that completed before another ok write W2 began, where W2
/// completed before the read began: {W1, W2, read} cannot be linearized.
fn inject_stale_read(sim: &mut [SimOp]) -> Option<()> {
    let end = sim.iter().map(|o| o.complete).max()?;
    let mut reads: Vec<usize> = (0..sim.len())
        .filter(|&i| {
            sim[i].f == "read" && sim[i].outcome == EventType::Ok && sim[i].invoke > end * 6 / 10
        })
        .collect();
    reads.sort_by_key(|&i| sim[i].invoke);
    for r in reads {
        let ri = sim[r].invoke;
        let writes: Vec<usize> = (0..sim.len())
            .filter(|&i| {
                sim[i].f == "write" && sim[i].outcome == EventType::Ok && sim[i].complete < ri
            })
            .collect();
        let w2 = *writes.iter().max_by_key(|&&i| sim[i].complete)?;
        let w1 = writes
            .iter()
            .copied()
            .filter(|&i| sim[i].complete < sim[w2].invoke)
            .max_by_key(|&i| sim[i].complete);
        if let Some(w1) = w1
            && sim[r].result != sim[w1].arg
        {
            sim[r].result = sim[w1].arg.clone();
            return Some(());
        }
    }
    None
}

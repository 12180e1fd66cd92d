//! Property tests: random linearizable executions of every model, sliced into
//! concurrent histories with random overlaps, are Valid; changing one read to
//! a value never written makes them Invalid, with that read in the witness.

mod common;

use common::histgen::{GenModel, GenParams, generate};
use faultline_checkers::{LinOptions, ModelKind, Verdict, check_linearizable};
use faultline_history::{EventType, pair};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

const MODELS: [(GenModel, ModelKind); 6] = [
    (GenModel::Register, ModelKind::Register),
    (GenModel::CasRegister, ModelKind::CasRegister),
    (GenModel::Kv, ModelKind::Kv),
    (GenModel::Append, ModelKind::Append),
    (GenModel::MultiRegister, ModelKind::MultiRegister),
    (GenModel::Mutex, ModelKind::Mutex),
];

const NEVER: i64 = 999_999_999;

fn opts(model: ModelKind) -> LinOptions {
    let mut o = LinOptions::new(model);
    if model == ModelKind::MultiRegister {
        o.initial = json!(0);
    }
    o.shrink_time = std::time::Duration::from_secs(2);
    o
}

fn params(model: GenModel, seed: u64) -> GenParams {
    GenParams {
        model,
        ops: 120 + (seed as usize % 5) * 20,
        keys: 1 + (seed as usize % 3),
        procs: 3 + (seed as usize % 4),
        info_rate: 0.04,
        latency: 2 + seed % 6,
        seed,
    }
}

#[test]
fn random_executions_are_valid() {
    for (gm, model) in MODELS {
        for seed in 0..25u64 {
            let events = generate(&params(gm, seed));
            let ops = pair("gen", &events).unwrap();
            let mut o = opts(model);
            // Odd seeds go through the parallel (rayon) path.
            o.threads = 1 + (seed as usize % 2);
            let r = check_linearizable(&ops, &o).unwrap();
            assert_eq!(
                r.verdict,
                Verdict::Valid,
                "model {model:?} seed {seed} threads {}: {:?}",
                o.threads,
                r.verdict
            );
        }
    }
}

#[test]
fn one_read_of_a_never_written_value_is_invalid() {
    for (gm, model) in MODELS {
        if gm == GenModel::Mutex {
            continue; // no reads to change; mutex violations are golden tests
        }
        for seed in 0..25u64 {
            let mut events = generate(&params(gm, seed));
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xBAD);
            let candidates: Vec<usize> = (0..events.len())
                .filter(|&i| {
                    let e = &events[i];
                    e.kind == EventType::Ok
                        && match gm {
                            GenModel::MultiRegister => e
                                .value
                                .as_array()
                                .is_some_and(|m| m.iter().any(|x| x[0] == "read")),
                            _ => e.f == "read",
                        }
                })
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let victim = candidates[rng.random_range(0..candidates.len())];
            let v = &mut events[victim].value;
            match gm {
                GenModel::Append => v.as_array_mut().unwrap().push(json!(NEVER)),
                GenModel::MultiRegister => {
                    let m = v
                        .as_array_mut()
                        .unwrap()
                        .iter_mut()
                        .find(|x| x[0] == "read")
                        .unwrap();
                    m[2] = json!(NEVER);
                }
                _ => *v = json!(NEVER),
            }
            let ops = pair("gen", &events).unwrap();
            let mutated = ops.iter().find(|o| o.ret == Some(victim)).unwrap().index;
            let r = check_linearizable(&ops, &opts(model)).unwrap();
            let Verdict::Invalid { witness, .. } = &r.verdict else {
                panic!(
                    "model {model:?} seed {seed}: expected invalid, got {:?}",
                    r.verdict
                );
            };
            assert!(
                witness.minimal.iter().any(|o| o.index == mutated),
                "model {model:?} seed {seed}: minimal set {:?} lacks the changed read {mutated}",
                witness.minimal
            );
            assert!(
                witness.minimal.len() <= 3,
                "model {model:?} seed {seed}: minimal set too big: {:?}; complete {}; {}",
                witness.minimal,
                witness.minimal_complete,
                witness.explanation
            );
        }
    }
}

/// A read changed to a value that was overwritten before the read began (a
/// stale read) is Invalid: this needs the search, not just a static check.
#[test]
fn one_stale_read_is_invalid() {
    for (gm, model) in MODELS.into_iter().take(3) {
        let mut found = 0;
        for seed in 0..40u64 {
            let mut events = generate(&params(gm, seed));
            let ops = pair("gen", &events).unwrap();
            let ok = |o: &&faultline_history::Op| o.outcome == faultline_history::Outcome::Ok;
            let writes: Vec<_> = ops.iter().filter(ok).filter(|o| o.f == "write").collect();
            let mut choice = None;
            'find: for r in ops.iter().filter(ok).filter(|o| o.f == "read") {
                for w in &writes {
                    if w.key != r.key || w.value == r.value || w.ret.unwrap() >= r.call {
                        continue;
                    }
                    let overwritten = writes.iter().any(|w2| {
                        w2.key == r.key
                            && w2.value != w.value
                            && w2.call > w.ret.unwrap()
                            && w2.ret.unwrap() < r.call
                    });
                    if overwritten {
                        choice = Some((r.ret.unwrap(), r.index, w.value.clone()));
                        break 'find;
                    }
                }
            }
            let Some((ret_pos, read_index, stale)) = choice else {
                continue;
            };
            found += 1;
            events[ret_pos].value = stale;
            let ops = pair("gen", &events).unwrap();
            let r = check_linearizable(&ops, &opts(model)).unwrap();
            let Verdict::Invalid { witness, .. } = &r.verdict else {
                panic!(
                    "model {model:?} seed {seed}: expected invalid, got {:?}",
                    r.verdict
                );
            };
            assert!(
                witness.minimal.iter().any(|o| o.index == read_index),
                "model {model:?} seed {seed}: minimal set {:?} lacks the stale read {read_index}",
                witness.minimal
            );
        }
        assert!(
            found >= 10,
            "model {model:?}: only {found} seeds had a stale-read candidate"
        );
    }
}

/// Histories like those of runs under kill and partition faults: one key,
/// 10 processes, 5 % of ops indeterminate (`info`, each replaced by a new
/// process), so dozens of optional ops are open at once. Valid ones must come
/// back Valid and ones with a stale read (or, for lists, a read missing an
/// element appended before it began) Invalid, within a generous time limit:
/// unpruned, the subsets of optional ops make these searches hit the limit.
#[test]
fn info_heavy_histories_are_decided() {
    use common::histgen::inject_stale_read;
    let models = [
        (GenModel::Register, ModelKind::Register),
        (GenModel::CasRegister, ModelKind::CasRegister),
        (GenModel::Kv, ModelKind::Kv),
        (GenModel::Append, ModelKind::Append),
    ];
    for (gm, model) in models {
        for seed in 0..2u64 {
            let p = GenParams {
                model: gm,
                ops: 5_000,
                keys: 1,
                procs: 10,
                info_rate: 0.05,
                latency: 20,
                seed,
            };
            let mut o = opts(model);
            o.time_limit = Some(std::time::Duration::from_secs(120));
            let mut events = generate(&p);
            let info = events.iter().filter(|e| e.kind == EventType::Info).count();
            assert!(info >= 150, "seed {seed}: only {info} info ops");
            let ops = pair("gen", &events).unwrap();
            let r = check_linearizable(&ops, &o).unwrap();
            assert_eq!(
                r.verdict,
                Verdict::Valid,
                "model {model:?} seed {seed} ({info} info ops)"
            );
            let victim = if gm == GenModel::Append {
                drop_appended_element(&mut events)
            } else {
                inject_stale_read(&mut events, 0.5)
            };
            let Some(victim) = victim else {
                panic!("model {model:?} seed {seed}: no read to corrupt");
            };
            let ops = pair("gen", &events).unwrap();
            let read_index = ops.iter().find(|o| o.ret == Some(victim)).unwrap().index;
            let r = check_linearizable(&ops, &o).unwrap();
            let Verdict::Invalid { witness, .. } = &r.verdict else {
                panic!(
                    "model {model:?} seed {seed}: expected invalid, got {:?}",
                    r.verdict
                );
            };
            // Dropped optional ops never show up as the op that cannot go on.
            assert!(
                witness.op.as_ref().is_some_and(|w| w.outcome == "ok"),
                "model {model:?} seed {seed}: {}",
                witness.explanation
            );
            if witness.minimal_complete {
                assert!(
                    witness.minimal.iter().any(|m| m.index == read_index),
                    "model {model:?} seed {seed}: minimal set {:?} lacks read {read_index}",
                    witness.minimal
                );
            }
        }
    }
}

/// Removes from one ok read (past the middle) an element whose ok append
/// completed before the read began; returns the read's completion position.
fn drop_appended_element(events: &mut [faultline_history::Event]) -> Option<usize> {
    let ops = pair("gen", events).unwrap();
    let ok = |o: &&faultline_history::Op| o.outcome == faultline_history::Outcome::Ok;
    let half = events.len() / 2;
    for r in ops
        .iter()
        .filter(ok)
        .filter(|o| o.f == "read" && o.call > half)
    {
        let list = r.value.as_array()?;
        let done_before = ops
            .iter()
            .filter(ok)
            .find(|a| a.f == "append" && a.ret.unwrap() < r.call && list.contains(&a.value));
        if let Some(a) = done_before {
            let pos = r.ret.unwrap();
            let kept: Vec<_> = list.iter().filter(|x| **x != a.value).cloned().collect();
            events[pos].value = serde_json::Value::Array(kept);
            return Some(pos);
        }
    }
    None
}

/// With 32 processes a stale read in a register history cannot be proved by
/// exhausting orders in time; the zone check decides it, and the witness
/// still names the stale read.
#[test]
fn stale_reads_among_32_processes_are_invalid() {
    use common::histgen::inject_stale_read;
    let models = [
        (GenModel::Register, ModelKind::Register),
        (GenModel::CasRegister, ModelKind::CasRegister),
    ];
    for ((gm, model), seed) in models.into_iter().flat_map(|m| [(m, 0u64), (m, 1)]) {
        let p = GenParams {
            model: gm,
            ops: 5_000,
            keys: 1,
            procs: 32,
            info_rate: 0.05,
            latency: 20,
            seed,
        };
        let mut o = opts(model);
        o.time_limit = Some(std::time::Duration::from_secs(120));
        let mut events = generate(&p);
        let ops = pair("gen", &events).unwrap();
        let r = check_linearizable(&ops, &o).unwrap();
        assert_eq!(r.verdict, Verdict::Valid, "{model:?} seed {seed}");
        let victim = inject_stale_read(&mut events, 0.5).expect("a read to make stale");
        let ops = pair("gen", &events).unwrap();
        let read_index = ops.iter().find(|o| o.ret == Some(victim)).unwrap().index;
        let r = check_linearizable(&ops, &o).unwrap();
        let Verdict::Invalid { witness, .. } = &r.verdict else {
            panic!(
                "{model:?} seed {seed}: expected invalid, got {:?}",
                r.verdict
            );
        };
        assert_eq!(
            witness.op.as_ref().map(|w| w.index),
            Some(read_index),
            "{model:?} seed {seed}: {}",
            witness.explanation
        );
        if witness.minimal_complete {
            assert!(
                witness.minimal.iter().any(|m| m.index == read_index),
                "{model:?} seed {seed}: minimal set {:?} lacks read {read_index}",
                witness.minimal
            );
        }
    }
}

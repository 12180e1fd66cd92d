//! Random linearizable histories for tests and benchmarks: a seeded
//! discrete-event simulation of processes running ops against a sequential
//! model, each op taking effect at a random instant between its invocation
//! and its completion.

use faultline_history::{Event, EventType, Process};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// Which model's ops to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenModel {
    Register,
    CasRegister,
    Kv,
    Append,
    MultiRegister,
    Mutex,
}

/// Generation parameters.
#[derive(Debug, Clone)]
pub struct GenParams {
    pub model: GenModel,
    pub ops: usize,
    pub keys: usize,
    pub procs: usize,
    /// Probability that an op ends `info` (its process is then replaced).
    pub info_rate: f64,
    /// Maximum ticks between invocation and effect, and effect and completion.
    pub latency: u64,
    pub seed: u64,
}

#[derive(Debug)]
struct InFlight {
    logical: usize,
    process: u64,
    f: &'static str,
    key: Option<String>,
    arg: Value,
    result: Option<(EventType, Value)>,
    info: bool,
}

#[derive(Default)]
struct World {
    regs: BTreeMap<String, Value>,
    lists: BTreeMap<String, Vec<Value>>,
    lock: bool,
}

/// Generates a linearizable history as events (our JSONL semantics: registers
/// start absent, failed ops did not happen).
pub fn generate(p: &GenParams) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let mut world = World::default();
    let mut events = Vec::new();
    // Queue of (time, seq, logical process, phase): 0 = invoke, 1 = effect, 2 = complete.
    let mut queue: BinaryHeap<Reverse<(u64, u64, usize, u8)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut flights: Vec<Option<InFlight>> = (0..p.procs).map(|_| None).collect();
    let mut pid: Vec<u64> = (0..p.procs as u64).collect();
    let mut holding: Vec<bool> = vec![false; p.procs];
    for l in 0..p.procs {
        queue.push(Reverse((rng.random_range(0..3), seq, l, 0)));
        seq += 1;
    }
    let mut invoked = 0usize;
    let mut next_value = 1i64;
    while let Some(Reverse((t, _, l, phase))) = queue.pop() {
        match phase {
            0 => {
                if invoked >= p.ops {
                    continue;
                }
                invoked += 1;
                let key = (p.keys > 1
                    && p.model != GenModel::MultiRegister
                    && p.model != GenModel::Mutex)
                    .then(|| format!("k{}", rng.random_range(0..p.keys)));
                let (f, arg): (&'static str, Value) = match p.model {
                    GenModel::Register | GenModel::CasRegister | GenModel::Kv => {
                        let choice =
                            rng.random_range(0..if p.model == GenModel::Register { 2 } else { 3 });
                        match choice {
                            0 => ("read", Value::Null),
                            1 => {
                                next_value += 1;
                                ("write", json!(next_value))
                            }
                            _ => {
                                let k = key.clone().unwrap_or_default();
                                let cur = world.regs.get(&k).cloned().unwrap_or(Value::Null);
                                let from = if rng.random_bool(0.5) && !cur.is_null() {
                                    cur
                                } else {
                                    json!(rng.random_range(1..next_value.max(2)))
                                };
                                next_value += 1;
                                ("cas", json!([from, next_value]))
                            }
                        }
                    }
                    GenModel::Append => {
                        if rng.random_bool(0.5) {
                            ("read", Value::Null)
                        } else {
                            next_value += 1;
                            ("append", json!(next_value))
                        }
                    }
                    GenModel::MultiRegister => {
                        let n = rng.random_range(1..4);
                        let mops: Vec<Value> = (0..n)
                            .map(|_| {
                                let r = ["x", "y", "z"][rng.random_range(0..3)];
                                if rng.random_bool(0.5) {
                                    json!(["read", r, null])
                                } else {
                                    next_value += 1;
                                    json!(["write", r, next_value])
                                }
                            })
                            .collect();
                        ("txn", Value::Array(mops))
                    }
                    GenModel::Mutex => {
                        (if holding[l] { "release" } else { "acquire" }, Value::Null)
                    }
                };
                let mut e = Event::new(
                    events.len() as u64,
                    t,
                    Process::Client(pid[l]),
                    EventType::Invoke,
                    f,
                    arg.clone(),
                );
                e.key = key.clone();
                events.push(e);
                let info = rng.random_bool(p.info_rate);
                flights[l] = Some(InFlight {
                    logical: l,
                    process: pid[l],
                    f,
                    key,
                    arg,
                    result: None,
                    info,
                });
                queue.push(Reverse((t + 1 + rng.random_range(0..p.latency), seq, l, 1)));
                seq += 1;
            }
            1 => {
                let Some(fl) = flights[l].as_mut() else {
                    continue;
                };
                // An indeterminate op takes effect or not, at random.
                let happens = !fl.info || rng.random_bool(0.5);
                let k = fl.key.clone().unwrap_or_default();
                fl.result = Some(match fl.f {
                    "read" if p.model == GenModel::Append => (
                        EventType::Ok,
                        Value::Array(world.lists.get(&k).cloned().unwrap_or_default()),
                    ),
                    "read" => (
                        EventType::Ok,
                        world.regs.get(&k).cloned().unwrap_or(Value::Null),
                    ),
                    "write" => {
                        if happens {
                            world.regs.insert(k, fl.arg.clone());
                        }
                        (EventType::Ok, fl.arg.clone())
                    }
                    "cas" => {
                        let cur = world.regs.get(&k).cloned().unwrap_or(Value::Null);
                        if cur == fl.arg[0] {
                            if happens {
                                world.regs.insert(k, fl.arg[1].clone());
                            }
                            (EventType::Ok, fl.arg.clone())
                        } else {
                            (EventType::Fail, fl.arg.clone())
                        }
                    }
                    "append" => {
                        if happens {
                            world.lists.entry(k).or_default().push(fl.arg.clone());
                        }
                        (EventType::Ok, fl.arg.clone())
                    }
                    "txn" => {
                        let mut out = Vec::new();
                        for m in fl.arg.as_array().cloned().unwrap_or_default() {
                            let r = m[1].as_str().unwrap_or("x").to_string();
                            if m[0] == "read" {
                                let v = world.regs.get(&r).cloned().unwrap_or(json!(0));
                                out.push(json!(["read", r, v]));
                            } else {
                                if happens {
                                    world.regs.insert(r, m[2].clone());
                                }
                                out.push(m);
                            }
                        }
                        (EventType::Ok, Value::Array(out))
                    }
                    "acquire" => {
                        if world.lock {
                            (EventType::Fail, Value::Null)
                        } else {
                            if happens {
                                world.lock = true;
                            }
                            (EventType::Ok, Value::Null)
                        }
                    }
                    _ => {
                        if happens {
                            world.lock = false;
                        }
                        (EventType::Ok, Value::Null)
                    }
                });
                queue.push(Reverse((t + 1 + rng.random_range(0..p.latency), seq, l, 2)));
                seq += 1;
            }
            _ => {
                let Some(fl) = flights[l].take() else {
                    continue;
                };
                let (kind, value) = fl.result.unwrap_or((EventType::Info, Value::Null));
                let kind = if fl.info { EventType::Info } else { kind };
                let value = if kind == EventType::Info {
                    fl.arg.clone()
                } else {
                    value
                };
                let mut e = Event::new(
                    events.len() as u64,
                    t,
                    Process::Client(fl.process),
                    kind,
                    fl.f,
                    value,
                );
                e.key = fl.key.clone();
                if kind == EventType::Info {
                    e.error = Some("timeout".into());
                }
                events.push(e);
                if fl.info {
                    // A crashed process is replaced; a lock it may hold is
                    // never released by the new one (it does not know).
                    pid[fl.logical] += p.procs as u64;
                    if fl.f == "acquire" {
                        holding[fl.logical] = false;
                        // Keep the lock model simple: an indeterminate
                        // acquire's process stops taking part.
                        continue;
                    }
                } else if fl.f == "acquire" && kind == EventType::Ok {
                    holding[fl.logical] = true;
                } else if fl.f == "release" && kind == EventType::Ok {
                    holding[fl.logical] = false;
                }
                if fl.f == "release" && fl.info {
                    continue;
                }
                queue.push(Reverse((t + 1 + rng.random_range(0..p.latency), seq, l, 0)));
                seq += 1;
            }
        }
    }
    events
}

/// Makes one ok read (after `from` of the way through) return the value of an
/// ok write W1 that completed before an ok write W2 of the same key began,
/// where W2 completed before the read began: a stale read, which only the
/// search (not a static check) can reject. Returns the read's completion
/// event position, or `None` when the history has no such read.
pub fn inject_stale_read(events: &mut [Event], from: f64) -> Option<usize> {
    // Pair invocations with completions by process.
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    // (invoke pos, complete pos) of ok ops.
    let mut done: Vec<(usize, usize)> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let Process::Client(p) = e.process else {
            continue;
        };
        if e.kind == EventType::Invoke {
            open.insert(p, i);
        } else if let Some(c) = open.remove(&p)
            && e.kind == EventType::Ok
        {
            done.push((c, i));
        }
    }
    let start = (events.len() as f64 * from) as usize;
    let writes: Vec<(usize, usize)> = done
        .iter()
        .copied()
        .filter(|&(c, _)| events[c].f == "write")
        .collect();
    let mut reads: Vec<(usize, usize)> = done
        .iter()
        .copied()
        .filter(|&(c, _)| events[c].f == "read" && c >= start)
        .collect();
    reads.sort_unstable();
    for (rc, rr) in reads {
        let key = &events[rc].key;
        let same = |&&(c, r): &&(usize, usize)| &events[c].key == key && r < rc;
        let Some(&(w2c, _)) = writes.iter().filter(same).max_by_key(|w| w.1) else {
            continue;
        };
        let Some(&(_, w1r)) = writes
            .iter()
            .filter(same)
            .filter(|w| w.1 < w2c)
            .max_by_key(|w| w.1)
        else {
            continue;
        };
        let stale = events[w1r].value.clone();
        if events[rr].value != stale {
            events[rr].value = stale;
            return Some(rr);
        }
    }
    None
}

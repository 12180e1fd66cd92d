//! The `register` and `kv` workloads: reads, writes of unique values and
//! compare-and-set, on one key or on many independent keys.
//!
//! A cas aims at a value the worker saw: right after a read (or a refused
//! cas that reported the current value) the next operation on that key is,
//! half the time, a cas from what was seen, so a good share of cas succeed
//! even under contention and a wrong cas shows in the history.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::{Checker, Command, Generator, ModelKind, OpSpec, Reply, Shape, Workload, pick};

/// The kinds both workloads draw, in weight order.
const KINDS: &[&str] = &["read", "write", "cas"];

/// One register (key `r`): read, write of unique values, cas.
#[derive(Clone, Debug)]
pub struct RegisterWorkload {
    /// Keys (always 1) and weights.
    pub shape: Shape,
}

impl Default for RegisterWorkload {
    fn default() -> Self {
        RegisterWorkload {
            shape: Shape {
                keys: 1,
                weights: vec![5, 3, 2],
            },
        }
    }
}

/// Many independent registers (keys `k0`..): the same operations per key,
/// checked key by key.
#[derive(Clone, Debug)]
pub struct KvWorkload {
    /// Keys and weights.
    pub shape: Shape,
}

impl Default for KvWorkload {
    fn default() -> Self {
        KvWorkload {
            shape: Shape {
                keys: 8,
                weights: vec![5, 3, 2],
            },
        }
    }
}

/// Generates reads, writes and cas over a set of keys, by the shape's
/// weights. Written values are `k × workers + worker + 1`, so unique in
/// the run.
struct RegisterGen {
    rng: ChaCha8Rng,
    keys: Vec<String>,
    weights: Vec<u32>,
    worker: u64,
    workers: u64,
    next: u64,
    /// The last value this worker saw per key, to aim cas at.
    seen: Vec<Value>,
    /// A key just read: the next op may be a cas from what the read saw.
    follow: Option<usize>,
}

impl RegisterGen {
    fn new(
        seed: u64,
        worker: usize,
        workers: usize,
        keys: Vec<String>,
        weights: Vec<u32>,
    ) -> RegisterGen {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // One stream per worker, from the one seed.
        rng.set_stream(worker as u64 + 1);
        let n = keys.len();
        RegisterGen {
            rng,
            keys,
            weights,
            worker: worker as u64,
            workers: workers.max(1) as u64,
            next: 0,
            seen: vec![Value::Null; n],
            follow: None,
        }
    }

    fn fresh(&mut self) -> u64 {
        let v = self.next * self.workers + self.worker + 1;
        self.next += 1;
        v
    }
}

impl Generator for RegisterGen {
    fn next_op(&mut self) -> OpSpec {
        // Draw every choice each time, so the stream does not depend on
        // whether a follow-up was possible.
        let k = self.rng.random_range(0..self.keys.len());
        let kind = pick(&mut self.rng, &self.weights);
        let follow_up = self.rng.random_bool(0.5);
        let (k, kind) = match self.follow.take() {
            Some(fk) if follow_up && self.weights[2] > 0 => (fk, 2),
            _ => (k, kind),
        };
        let key = Some(self.keys[k].clone());
        let (f, value) = match kind {
            0 => ("read", Value::Null),
            1 => ("write", json!(self.fresh())),
            _ => {
                let from = self.seen[k].clone();
                ("cas", json!([from, self.fresh()]))
            }
        };
        OpSpec {
            f: f.to_string(),
            key,
            value,
        }
    }

    fn observe(&mut self, op: &OpSpec, reply: &Reply) {
        let Some(k) = op
            .key
            .as_ref()
            .and_then(|k| self.keys.iter().position(|x| x == k))
        else {
            return;
        };
        match (op.f.as_str(), reply) {
            ("read", Reply::Ok(v)) => {
                self.seen[k] = v.clone();
                self.follow = Some(k);
            }
            ("write", Reply::Ok(_)) => self.seen[k] = op.value.clone(),
            ("cas", Reply::Ok(_)) => self.seen[k] = op.value[1].clone(),
            // A refused cas tells us the current value, when the system says it.
            ("cas", Reply::Fail(v, e)) if e == "cas-mismatch" => {
                self.seen[k] = v.clone();
                self.follow = Some(k);
            }
            _ => {}
        }
    }
}

fn command(op: &OpSpec) -> Command {
    let key = op.key.clone().unwrap_or_else(|| "r".to_string());
    match op.f.as_str() {
        "write" => Command::Write {
            key,
            value: op.value.clone(),
        },
        "cas" => Command::Cas {
            key,
            from: op.value[0].clone(),
            to: op.value[1].clone(),
        },
        // Reads, and anything unknown, are reads.
        _ => Command::Read { key },
    }
}

impl Workload for RegisterWorkload {
    fn name(&self) -> &'static str {
        "register"
    }
    fn description(&self) -> &'static str {
        "one register: read, write of unique values, cas; checked for linearizability"
    }
    fn kinds(&self) -> &'static [&'static str] {
        KINDS
    }
    fn shape(&self) -> Shape {
        self.shape.clone()
    }
    fn with_shape(&self, shape: Shape) -> Box<dyn Workload> {
        Box::new(RegisterWorkload { shape })
    }
    fn generator(&self, seed: u64, worker: usize, workers: usize) -> Box<dyn Generator> {
        Box::new(RegisterGen::new(
            seed,
            worker,
            workers,
            vec!["r".to_string()],
            self.shape.weights.clone(),
        ))
    }
    fn command(&self, op: &OpSpec) -> Command {
        command(op)
    }
    fn final_reads(&self, _nodes: usize) -> Vec<OpSpec> {
        vec![read("r")]
    }
    fn checker(&self) -> Checker {
        Checker::Linearizable(ModelKind::CasRegister)
    }
}

impl KvWorkload {
    fn keys(&self) -> Vec<String> {
        (0..self.shape.keys.max(1))
            .map(|i| format!("k{i}"))
            .collect()
    }
}

impl Workload for KvWorkload {
    fn name(&self) -> &'static str {
        "kv"
    }
    fn description(&self) -> &'static str {
        "independent registers (8 by default): read, write, cas per key; checked key by key"
    }
    fn kinds(&self) -> &'static [&'static str] {
        KINDS
    }
    fn shape(&self) -> Shape {
        self.shape.clone()
    }
    fn multi_key(&self) -> bool {
        true
    }
    fn with_shape(&self, shape: Shape) -> Box<dyn Workload> {
        Box::new(KvWorkload { shape })
    }
    fn generator(&self, seed: u64, worker: usize, workers: usize) -> Box<dyn Generator> {
        Box::new(RegisterGen::new(
            seed,
            worker,
            workers,
            self.keys(),
            self.shape.weights.clone(),
        ))
    }
    fn command(&self, op: &OpSpec) -> Command {
        command(op)
    }
    fn final_reads(&self, _nodes: usize) -> Vec<OpSpec> {
        self.keys().iter().map(|k| read(k)).collect()
    }
    fn checker(&self) -> Checker {
        Checker::Linearizable(ModelKind::CasRegister)
    }
}

fn read(key: &str) -> OpSpec {
    OpSpec {
        f: "read".to_string(),
        key: Some(key.to_string()),
        value: Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generators_are_seeded_and_values_unique() {
        let w = KvWorkload::default();
        let ops = |seed| {
            let mut g = w.generator(seed, 1, 3);
            (0..200).map(|_| g.next_op()).collect::<Vec<_>>()
        };
        assert_eq!(ops(42), ops(42));
        assert_ne!(ops(42), ops(43));
        let mut seen = HashSet::new();
        for worker in 0..3 {
            let mut g = w.generator(42, worker, 3);
            for _ in 0..500 {
                let op = g.next_op();
                let v = match op.f.as_str() {
                    "write" => op.value.clone(),
                    "cas" => op.value[1].clone(),
                    _ => continue,
                };
                assert!(seen.insert(v.to_string()), "duplicate value {v}");
            }
        }
    }

    #[test]
    fn ops_map_onto_commands() {
        let w = RegisterWorkload::default();
        let cas = OpSpec {
            f: "cas".into(),
            key: Some("r".into()),
            value: json!([1, 2]),
        };
        assert_eq!(
            w.command(&cas),
            Command::Cas {
                key: "r".into(),
                from: json!(1),
                to: json!(2)
            }
        );
        // A refused cas keeps the value the system reported.
        assert_eq!(
            w.completion(&cas, Reply::Fail(json!(5), "cas-mismatch".into())),
            Reply::Fail(json!(5), "cas-mismatch".into())
        );
        assert_eq!(
            w.completion(&cas, Reply::Ok(json!(null))),
            Reply::Ok(json!([1, 2]))
        );
        let r = read("r");
        assert_eq!(w.command(&r), Command::Read { key: "r".into() });
        assert_eq!(w.completion(&r, Reply::Ok(json!(7))), Reply::Ok(json!(7)));
    }

    #[test]
    fn a_read_is_often_followed_by_a_cas_from_what_it_saw() {
        let w = RegisterWorkload::default();
        let mut g = w.generator(7, 0, 1);
        let (mut follow_ups, mut reads) = (0, 0);
        for i in 0..2000 {
            let op = g.next_op();
            if op.f == "read" {
                reads += 1;
                g.observe(&op, &Reply::Ok(json!(i)));
                let next = g.next_op();
                if next.f == "cas" && next.value[0] == json!(i) {
                    follow_ups += 1;
                }
            }
        }
        // Half the reads are followed by a cas from the value read, plus
        // the cas the weights draw anyway.
        assert!(follow_ups * 2 > reads, "{follow_ups} of {reads}");
    }

    #[test]
    fn cas_aims_at_observed_values() {
        let w = RegisterWorkload::default();
        let mut g = w.generator(1, 0, 1);
        g.observe(&read("r"), &Reply::Ok(json!(99)));
        let cas = (0..100)
            .map(|_| g.next_op())
            .find(|o| o.f == "cas")
            .expect("a cas within 100 ops");
        assert_eq!(cas.value[0], json!(99));
    }
}

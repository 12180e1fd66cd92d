//! The `set` workload: unique adds to one key's list and reads of the whole
//! list; final reads started at every node; judged by the set checker (lost,
//! unexpected, duplicated and stale elements).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::{Checker, Command, Generator, OpSpec, Shape, Workload, pick};

/// The key whose list holds the set.
const KEY: &str = "s";

/// One set (key `s`): `add` of unique values (appends to the list), `read`.
#[derive(Clone, Debug)]
pub struct SetWorkload {
    /// Keys (always 1) and the weights of add and read.
    pub shape: Shape,
}

impl Default for SetWorkload {
    fn default() -> Self {
        SetWorkload {
            shape: Shape {
                keys: 1,
                weights: vec![9, 1],
            },
        }
    }
}

/// Adds and reads by the shape's weights (90 % / 10 % by default). Added
/// values are `k × workers + worker + 1`, so unique in the run.
struct SetGen {
    rng: ChaCha8Rng,
    weights: Vec<u32>,
    worker: u64,
    workers: u64,
    next: u64,
}

impl Generator for SetGen {
    fn next_op(&mut self) -> OpSpec {
        if pick(&mut self.rng, &self.weights) == 1 {
            return read();
        }
        let v = self.next * self.workers + self.worker + 1;
        self.next += 1;
        OpSpec {
            f: "add".to_string(),
            key: Some(KEY.to_string()),
            value: json!(v),
        }
    }
}

fn read() -> OpSpec {
    OpSpec {
        f: "read".to_string(),
        key: Some(KEY.to_string()),
        value: Value::Null,
    }
}

impl Workload for SetWorkload {
    fn name(&self) -> &'static str {
        "set"
    }
    fn description(&self) -> &'static str {
        "one set: unique adds and reads of the whole set; checked for lost, unexpected, duplicated and stale elements"
    }
    fn kinds(&self) -> &'static [&'static str] {
        &["add", "read"]
    }
    fn shape(&self) -> Shape {
        self.shape.clone()
    }
    fn with_shape(&self, shape: Shape) -> Box<dyn Workload> {
        Box::new(SetWorkload { shape })
    }
    fn generator(&self, seed: u64, worker: usize, workers: usize) -> Box<dyn Generator> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // One stream per worker, from the one seed.
        rng.set_stream(worker as u64 + 1);
        Box::new(SetGen {
            rng,
            weights: self.shape.weights.clone(),
            worker: worker as u64,
            workers: workers.max(1) as u64,
            next: 0,
        })
    }
    fn command(&self, op: &OpSpec) -> Command {
        let key = op.key.clone().unwrap_or_else(|| KEY.to_string());
        match op.f.as_str() {
            "add" => Command::Append {
                key,
                value: op.value.clone(),
            },
            _ => Command::Read { key },
        }
    }
    fn final_reads(&self, nodes: usize) -> Vec<OpSpec> {
        (0..nodes.max(1)).map(|_| read()).collect()
    }
    fn checker(&self) -> Checker {
        Checker::Set
    }
    fn initial_value(&self) -> Value {
        json!([])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reply;
    use crate::testing::judge;
    use std::collections::HashSet;

    #[test]
    fn adds_are_unique_and_seeded() {
        let w = SetWorkload::default();
        let ops = |seed| {
            let mut g = w.generator(seed, 0, 2);
            (0..100).map(|_| g.next_op()).collect::<Vec<_>>()
        };
        assert_eq!(ops(3), ops(3));
        assert_ne!(ops(3), ops(4));
        let mut seen = HashSet::new();
        for worker in 0..4 {
            let mut g = w.generator(9, worker, 4);
            for op in (0..500).map(|_| g.next_op()).filter(|o| o.f == "add") {
                assert!(seen.insert(op.value.to_string()), "duplicate {}", op.value);
            }
        }
        assert!(seen.len() > 1500, "mostly adds: {}", seen.len());
    }

    #[test]
    fn ops_map_onto_append_and_read() {
        let w = SetWorkload::default();
        let add = OpSpec {
            f: "add".into(),
            key: Some("s".into()),
            value: json!(7),
        };
        assert_eq!(
            w.command(&add),
            Command::Append {
                key: "s".into(),
                value: json!(7)
            }
        );
        assert_eq!(
            w.completion(&add, Reply::Ok(json!(null))),
            Reply::Ok(json!(7))
        );
        assert_eq!(w.command(&read()), Command::Read { key: "s".into() });
        assert_eq!(
            w.completion(&read(), Reply::Ok(json!(null))),
            Reply::Ok(json!([]))
        );
        assert_eq!(
            w.completion(&read(), Reply::Ok(json!([1, 2]))),
            Reply::Ok(json!([1, 2]))
        );
        assert_eq!(w.final_reads(5).len(), 5);
    }

    #[test]
    fn checker_accepts_a_valid_history() {
        let v = judge(
            &SetWorkload::default(),
            &[
                (0, "invoke", "add", json!(1)),
                (1, "invoke", "add", json!(2)),
                (0, "ok", "add", json!(1)),
                (2, "invoke", "read", Value::Null),
                (2, "ok", "read", json!([1])), // 2 is still concurrent
                (1, "info", "add", json!(2)),
                (3, "invoke", "read", Value::Null),
                (3, "ok", "read", json!([1, 2])),
            ],
        );
        assert_eq!(v.name(), "valid", "{v:?}");
    }

    #[test]
    fn checker_finds_lost_unexpected_and_stale_elements() {
        let lost = judge(
            &SetWorkload::default(),
            &[
                (0, "invoke", "add", json!(1)),
                (0, "ok", "add", json!(1)),
                (1, "invoke", "read", Value::Null),
                (1, "ok", "read", json!([])),
            ],
        );
        let text = format!("{lost:?}");
        assert!(text.contains("lost: 1") && text.contains("stale"), "{text}");
        let unexpected = judge(
            &SetWorkload::default(),
            &[
                (1, "invoke", "read", Value::Null),
                (1, "ok", "read", json!([42])),
            ],
        );
        assert!(format!("{unexpected:?}").contains("unexpected: 42"));
        let stale = judge(
            &SetWorkload::default(),
            &[
                (0, "invoke", "add", json!(1)),
                (0, "ok", "add", json!(1)),
                (1, "invoke", "read", Value::Null),
                (1, "ok", "read", json!([])),
                (1, "invoke", "read", Value::Null),
                (1, "ok", "read", json!([1])),
            ],
        );
        let text = format!("{stale:?}");
        assert!(
            text.contains("1 reads are stale") && !text.contains("lost"),
            "{text}"
        );
    }
}

//! The `append` workload: appends of unique values to many keys' lists and
//! reads of whole lists; judged key by key with the `append` linearizability
//! model (every read a prefix of one total order, no acknowledged append lost).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::{Checker, Command, Generator, ModelKind, OpSpec, Shape, Workload, pick};

/// Lists under keys `a0`..: `append` of unique values, `read` of the whole list.
#[derive(Clone, Debug)]
pub struct AppendWorkload {
    /// Keys and the weights of append and read.
    pub shape: Shape,
}

impl Default for AppendWorkload {
    fn default() -> Self {
        AppendWorkload {
            shape: Shape {
                keys: 8,
                weights: vec![1, 1],
            },
        }
    }
}

impl AppendWorkload {
    fn keys(&self) -> Vec<String> {
        (0..self.shape.keys.max(1))
            .map(|i| format!("a{i}"))
            .collect()
    }
}

/// Appends and reads (50 % / 50 % by default) on a random key. Appended
/// values are `k × workers + worker + 1`, so unique in the run (across keys
/// too).
struct AppendGen {
    rng: ChaCha8Rng,
    keys: Vec<String>,
    weights: Vec<u32>,
    worker: u64,
    workers: u64,
    next: u64,
}

impl Generator for AppendGen {
    fn next_op(&mut self) -> OpSpec {
        let key = self.keys[self.rng.random_range(0..self.keys.len())].clone();
        if pick(&mut self.rng, &self.weights) == 1 {
            return read(&key);
        }
        let v = self.next * self.workers + self.worker + 1;
        self.next += 1;
        OpSpec {
            f: "append".to_string(),
            key: Some(key),
            value: json!(v),
        }
    }
}

fn read(key: &str) -> OpSpec {
    OpSpec {
        f: "read".to_string(),
        key: Some(key.to_string()),
        value: Value::Null,
    }
}

impl Workload for AppendWorkload {
    fn name(&self) -> &'static str {
        "append"
    }
    fn description(&self) -> &'static str {
        "lists (8 by default): appends of unique values and whole-list reads; linearizable per key (append model)"
    }
    fn kinds(&self) -> &'static [&'static str] {
        &["append", "read"]
    }
    fn shape(&self) -> Shape {
        self.shape.clone()
    }
    fn multi_key(&self) -> bool {
        true
    }
    fn with_shape(&self, shape: Shape) -> Box<dyn Workload> {
        Box::new(AppendWorkload { shape })
    }
    fn generator(&self, seed: u64, worker: usize, workers: usize) -> Box<dyn Generator> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // One stream per worker, from the one seed.
        rng.set_stream(worker as u64 + 1);
        Box::new(AppendGen {
            rng,
            keys: self.keys(),
            weights: self.shape.weights.clone(),
            worker: worker as u64,
            workers: workers.max(1) as u64,
            next: 0,
        })
    }
    fn command(&self, op: &OpSpec) -> Command {
        let key = op.key.clone().unwrap_or_else(|| "a0".to_string());
        match op.f.as_str() {
            "append" => Command::Append {
                key,
                value: op.value.clone(),
            },
            _ => Command::Read { key },
        }
    }
    fn final_reads(&self, _nodes: usize) -> Vec<OpSpec> {
        self.keys().iter().map(|k| read(k)).collect()
    }
    fn checker(&self) -> Checker {
        Checker::Linearizable(ModelKind::Append)
    }
    fn initial_value(&self) -> Value {
        json!([])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reply;
    use crate::testing::judge_keyed;
    use std::collections::HashSet;

    #[test]
    fn appends_are_unique_across_keys_and_workers() {
        let w = AppendWorkload::default();
        let mut seen = HashSet::new();
        let mut keys = HashSet::new();
        for worker in 0..3 {
            let mut g = w.generator(5, worker, 3);
            for op in (0..400).map(|_| g.next_op()) {
                keys.insert(op.key.clone().expect("keyed"));
                if op.f == "append" {
                    assert!(seen.insert(op.value.to_string()), "duplicate {}", op.value);
                }
            }
        }
        assert_eq!(keys.len(), 8);
        assert_eq!(w.final_reads(3).len(), 8);
    }

    #[test]
    fn ops_map_onto_append_and_read() {
        let w = AppendWorkload::default();
        let op = OpSpec {
            f: "append".into(),
            key: Some("a3".into()),
            value: json!(11),
        };
        assert_eq!(
            w.command(&op),
            Command::Append {
                key: "a3".into(),
                value: json!(11)
            }
        );
        assert_eq!(
            w.completion(&op, Reply::Ok(json!(null))),
            Reply::Ok(json!(11))
        );
        let r = read("a3");
        assert_eq!(w.command(&r), Command::Read { key: "a3".into() });
        assert_eq!(
            w.completion(&r, Reply::Ok(json!(null))),
            Reply::Ok(json!([]))
        );
    }

    #[test]
    fn checker_accepts_prefix_reads() {
        let v = judge_keyed(
            &AppendWorkload::default(),
            &[
                (0, "invoke", "append", "a0", json!(1)),
                (1, "invoke", "append", "a0", json!(2)),
                (0, "ok", "append", "a0", json!(1)),
                (2, "invoke", "read", "a0", Value::Null),
                (2, "ok", "read", "a0", json!([2, 1])),
                (1, "info", "append", "a0", json!(2)),
                (2, "invoke", "read", "a1", Value::Null),
                (2, "ok", "read", "a1", json!([])),
                (2, "invoke", "read", "a0", Value::Null),
                (2, "ok", "read", "a0", json!([2, 1])),
            ],
        );
        assert_eq!(v.name(), "valid", "{v:?}");
    }

    #[test]
    fn checker_rejects_reordered_or_lost_appends() {
        let reordered = judge_keyed(
            &AppendWorkload::default(),
            &[
                (0, "invoke", "append", "a0", json!(1)),
                (0, "ok", "append", "a0", json!(1)),
                (0, "invoke", "append", "a0", json!(2)),
                (0, "ok", "append", "a0", json!(2)),
                (2, "invoke", "read", "a0", Value::Null),
                (2, "ok", "read", "a0", json!([2, 1])),
            ],
        );
        assert_eq!(reordered.name(), "invalid", "{reordered:?}");
        let lost = judge_keyed(
            &AppendWorkload::default(),
            &[
                (0, "invoke", "append", "a2", json!(1)),
                (0, "ok", "append", "a2", json!(1)),
                (2, "invoke", "read", "a2", Value::Null),
                (2, "ok", "read", "a2", json!([])),
            ],
        );
        let text = format!("{lost:?}");
        assert!(
            text.contains("invalid") || text.contains("Invalid"),
            "{text}"
        );
        assert!(text.contains("\"a2\""), "{text}");
        // A read before the append began may not see it (not stale then).
        let early = judge_keyed(
            &AppendWorkload::default(),
            &[
                (2, "invoke", "read", "a2", Value::Null),
                (2, "ok", "read", "a2", json!([])),
                (0, "invoke", "append", "a2", json!(1)),
                (0, "ok", "append", "a2", json!(1)),
            ],
        );
        assert_eq!(early.name(), "valid", "{early:?}");
    }
}

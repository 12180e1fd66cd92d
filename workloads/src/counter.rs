//! The `counter` workload: atomic increments of one key (`POST
//! /kv/{key}/incr`) and reads; judged by the counter checker (every read lies
//! between the increments acknowledged before it began and those attempted
//! before it ended).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::{Checker, Command, Generator, OpSpec, Shape, Workload, pick};

/// The counter's key.
const KEY: &str = "c";

/// One counter (key `c`): `add` of a delta from 1 to 5, `read`.
#[derive(Clone, Debug)]
pub struct CounterWorkload {
    /// Keys (always 1) and the weights of add and read.
    pub shape: Shape,
}

impl Default for CounterWorkload {
    fn default() -> Self {
        CounterWorkload {
            shape: Shape {
                keys: 1,
                weights: vec![6, 4],
            },
        }
    }
}

/// Adds and reads by the shape's weights (60 % / 40 % by default).
struct CounterGen {
    rng: ChaCha8Rng,
    weights: Vec<u32>,
}

impl Generator for CounterGen {
    fn next_op(&mut self) -> OpSpec {
        if pick(&mut self.rng, &self.weights) == 1 {
            return read();
        }
        OpSpec {
            f: "add".to_string(),
            key: Some(KEY.to_string()),
            value: json!(self.rng.random_range(1..=5i64)),
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

impl Workload for CounterWorkload {
    fn name(&self) -> &'static str {
        "counter"
    }
    fn description(&self) -> &'static str {
        "one counter: atomic increments and reads; every read within acknowledged and attempted increments"
    }
    fn kinds(&self) -> &'static [&'static str] {
        &["add", "read"]
    }
    fn shape(&self) -> Shape {
        self.shape.clone()
    }
    fn with_shape(&self, shape: Shape) -> Box<dyn Workload> {
        Box::new(CounterWorkload { shape })
    }
    fn generator(&self, seed: u64, worker: usize, _workers: usize) -> Box<dyn Generator> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // One stream per worker, from the one seed.
        rng.set_stream(worker as u64 + 1);
        Box::new(CounterGen {
            rng,
            weights: self.shape.weights.clone(),
        })
    }
    fn command(&self, op: &OpSpec) -> Command {
        let key = op.key.clone().unwrap_or_else(|| KEY.to_string());
        match op.f.as_str() {
            // The completion keeps the delta (as Jepsen's counter does).
            "add" => Command::Incr {
                key,
                delta: op.value.as_i64().unwrap_or(1),
            },
            _ => Command::Read { key },
        }
    }
    fn final_reads(&self, nodes: usize) -> Vec<OpSpec> {
        (0..nodes.max(1)).map(|_| read()).collect()
    }
    fn checker(&self) -> Checker {
        Checker::Counter
    }
    fn initial_value(&self) -> Value {
        json!(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reply;
    use crate::testing::judge;

    #[test]
    fn generator_is_seeded_and_mixes_adds_and_reads() {
        let w = CounterWorkload::default();
        let ops = |seed, worker| {
            let mut g = w.generator(seed, worker, 2);
            (0..200).map(|_| g.next_op()).collect::<Vec<_>>()
        };
        assert_eq!(ops(1, 0), ops(1, 0));
        assert_ne!(ops(1, 0), ops(1, 1));
        let adds: Vec<i64> = ops(1, 0)
            .iter()
            .filter(|o| o.f == "add")
            .filter_map(|o| o.value.as_i64())
            .collect();
        assert!(adds.len() > 80 && adds.len() < 160, "{}", adds.len());
        assert!(adds.iter().all(|d| (1..=5).contains(d)));
    }

    #[test]
    fn ops_map_onto_incr_and_read() {
        let w = CounterWorkload::default();
        let add = OpSpec {
            f: "add".into(),
            key: Some("c".into()),
            value: json!(3),
        };
        assert_eq!(
            w.command(&add),
            Command::Incr {
                key: "c".into(),
                delta: 3
            }
        );
        assert_eq!(
            w.completion(&add, Reply::Ok(json!(10))),
            Reply::Ok(json!(3))
        );
        // A key never incremented reads `null`: zero.
        assert_eq!(
            w.completion(&read(), Reply::Ok(json!(null))),
            Reply::Ok(json!(0))
        );
        assert_eq!(
            w.completion(&read(), Reply::Ok(json!(12))),
            Reply::Ok(json!(12))
        );
    }

    #[test]
    fn checker_accepts_reads_within_bounds() {
        let v = judge(
            &CounterWorkload::default(),
            &[
                (0, "invoke", "add", json!(2)),
                (0, "ok", "add", json!(2)),
                (1, "invoke", "add", json!(5)),
                (2, "invoke", "read", Value::Null),
                (2, "ok", "read", json!(7)), // the concurrent add may count
                (1, "info", "add", json!(5)),
                (2, "invoke", "read", Value::Null),
                (2, "ok", "read", json!(2)), // ... or never happen
            ],
        );
        assert_eq!(v.name(), "valid", "{v:?}");
    }

    #[test]
    fn checker_rejects_reads_out_of_bounds() {
        let low = judge(
            &CounterWorkload::default(),
            &[
                (0, "invoke", "add", json!(2)),
                (0, "ok", "add", json!(2)),
                (2, "invoke", "read", Value::Null),
                (2, "ok", "read", json!(1)),
            ],
        );
        assert!(format!("{low:?}").contains("[2, 2]"), "{low:?}");
        let high = judge(
            &CounterWorkload::default(),
            &[
                (0, "invoke", "add", json!(2)),
                (0, "fail", "add", json!(2)),
                (2, "invoke", "read", Value::Null),
                (2, "ok", "read", json!(2)),
            ],
        );
        assert!(format!("{high:?}").contains("[0, 0]"), "{high:?}");
    }
}

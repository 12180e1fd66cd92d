//! The one place a checker is chosen and run: [`Checker`] names what judges
//! a history (linearizability under a model, the set checker, the counter
//! checker) and [`check`] runs it and condenses its answer into a
//! [`Judgement`] that `faultline run`, `analyze`, `check` and the workloads'
//! tests all read.

use std::time::Instant;

use faultline_history::Op;
use serde_json::{Value, json};

#[cfg(test)]
use crate::REFUSED_CAS;
use crate::{
    CheckError, LinOptions, ModelKind, Verdict, check_counter, check_linearizable, check_set,
};

/// What judges a history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "checker", content = "model")]
pub enum Checker {
    /// Linearizability under this model, keys checked apart.
    Linearizable(ModelKind),
    /// The set checker: lost, unexpected, duplicated and stale elements.
    Set,
    /// The counter checker: every read within acknowledged and attempted increments.
    Counter,
}

impl Checker {
    /// Every checker, as `faultline check --model` lists them.
    pub const ALL: [Checker; 8] = [
        Checker::Linearizable(ModelKind::Register),
        Checker::Linearizable(ModelKind::CasRegister),
        Checker::Linearizable(ModelKind::Kv),
        Checker::Linearizable(ModelKind::Append),
        Checker::Linearizable(ModelKind::MultiRegister),
        Checker::Linearizable(ModelKind::Mutex),
        Checker::Set,
        Checker::Counter,
    ];

    /// The name used on the command line and in `results.json`: the model's
    /// name for linearizability, else `set` or `counter`.
    pub fn name(self) -> &'static str {
        match self {
            Checker::Linearizable(m) => m.name(),
            Checker::Set => "set",
            Checker::Counter => "counter",
        }
    }

    /// The checker with this name, or `None`.
    pub fn by_name(name: &str) -> Option<Checker> {
        Checker::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The model, for linearizability.
    pub fn model(self) -> Option<ModelKind> {
        match self {
            Checker::Linearizable(m) => Some(m),
            _ => None,
        }
    }

    /// What a valid history's operations satisfy, completing "the N
    /// operations of this history ...".
    pub fn holds(self) -> &'static str {
        match self {
            Checker::Linearizable(_) => "are linearizable",
            Checker::Set => {
                "form a valid set: no element lost, unexpected, duplicated or missing from a later read"
            }
            Checker::Counter => {
                "keep every counter read within the acknowledged and attempted increments"
            }
        }
    }

    /// What an invalid history breaks, completing "the history ...".
    pub fn broken(self) -> &'static str {
        match self {
            Checker::Linearizable(_) => "is not linearizable",
            Checker::Set => "breaks the set's guarantees",
            Checker::Counter => {
                "has counter reads outside the acknowledged and attempted increments"
            }
        }
    }
}

/// A checked history: the verdict, one line in words, and the checker's
/// full output.
#[derive(Debug, Clone)]
pub struct Judgement {
    /// The checker that judged.
    pub checker: Checker,
    /// Valid, Invalid (with its witness) or Unknown.
    pub verdict: Verdict,
    /// One line for a summary.
    pub summary: String,
    /// The checker's full output, for `results.json`.
    pub detail: Value,
    /// Time to the verdict, ms.
    pub check_ms: f64,
    /// Time spent shrinking a witness, ms.
    pub shrink_ms: f64,
    /// Independent parts checked (keys; 1 for set and counter).
    pub partitions: usize,
}

/// Judges `ops` with `checker`. `lin` carries the options of a
/// linearizability check (its `model` is replaced by the checker's); the
/// set and counter checkers need none. `Err` only when the checker cannot
/// read an op (a function the model does not have, a malformed value).
pub fn check(checker: Checker, ops: &[Op], lin: &LinOptions) -> Result<Judgement, CheckError> {
    match checker {
        Checker::Linearizable(model) => {
            let mut opts = lin.clone();
            opts.model = model;
            let r = check_linearizable(ops, &opts)?;
            let mut summary = format!(
                "{}: {} ops in {} key(s) checked in {:.0} ms",
                model.name(),
                r.ops,
                r.partitions,
                r.check_ms
            );
            match &r.verdict {
                Verdict::Invalid { key, witness } => summary.push_str(&format!(
                    "; not linearizable{}: {}",
                    key.as_ref()
                        .map(|k| format!(" (key {k})"))
                        .unwrap_or_default(),
                    witness.explanation
                )),
                Verdict::Unknown { reason } => summary.push_str(&format!("; undecided: {reason}")),
                Verdict::Valid => {}
            }
            Ok(Judgement {
                checker,
                detail: json!({
                    "model": model.name(),
                    "result": r.verdict,
                    "partitions": r.partitions,
                    "ops": r.ops,
                    "check_ms": r.check_ms,
                    "shrink_ms": r.shrink_ms,
                    "steps": r.steps,
                }),
                verdict: r.verdict,
                summary,
                check_ms: r.check_ms,
                shrink_ms: r.shrink_ms,
                partitions: r.partitions,
            })
        }
        Checker::Set => {
            let start = Instant::now();
            let r = check_set(ops);
            let summary = format!(
                "set: {} adds attempted, {} acknowledged, {} reads; lost {}, unexpected {}, duplicated {}, stale reads {}, indeterminate adds recovered {}{}",
                r.attempted,
                r.acknowledged,
                r.reads,
                r.lost.len(),
                r.unexpected.len(),
                r.duplicated.len(),
                r.stale_count,
                r.recovered.len(),
                why(&r.verdict)
            );
            Ok(Judgement {
                checker,
                detail: json!({
                    "model": "set",
                    "result": r.verdict,
                    "ops": ops.len(),
                    "set": {
                        "attempted": r.attempted,
                        "acknowledged": r.acknowledged,
                        "reads": r.reads,
                        "lost": r.lost,
                        "unexpected": r.unexpected,
                        "duplicated": r.duplicated,
                        "stale_count": r.stale_count,
                        "stale": r.stale,
                        "recovered": r.recovered.len(),
                        "never_read": r.never_read.len(),
                    },
                }),
                verdict: r.verdict,
                summary,
                check_ms: start.elapsed().as_secs_f64() * 1000.0,
                shrink_ms: 0.0,
                partitions: 1,
            })
        }
        Checker::Counter => {
            let start = Instant::now();
            let r = check_counter(ops);
            let summary = format!(
                "counter: {} reads checked, {} out of bounds{}",
                r.reads,
                r.errors.len(),
                why(&r.verdict)
            );
            Ok(Judgement {
                checker,
                detail: json!({
                    "model": "counter",
                    "result": r.verdict,
                    "ops": ops.len(),
                    "counter": {"reads": r.reads, "errors": r.errors.len()},
                }),
                verdict: r.verdict,
                summary,
                check_ms: start.elapsed().as_secs_f64() * 1000.0,
                shrink_ms: 0.0,
                partitions: 1,
            })
        }
    }
}

/// `; <explanation or reason>` for a verdict that is not valid.
fn why(v: &Verdict) -> String {
    match v {
        Verdict::Invalid { witness, .. } => format!("; {}", witness.explanation),
        Verdict::Unknown { reason } => format!("; undecided: {reason}"),
        Verdict::Valid => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(lines: &[String]) -> Verdict {
        let text = lines.join("\n");
        let h = faultline_history::parse_jsonl("t", &text).expect("parse");
        let ops = faultline_history::pair("t", &h.events).expect("pair");
        check(
            Checker::Linearizable(ModelKind::CasRegister),
            &ops,
            &LinOptions::for_format(faultline_history::Format::Jsonl, ModelKind::CasRegister),
        )
        .expect("checkable")
        .verdict
    }

    #[test]
    fn a_refused_cas_is_a_read_of_the_value_it_saw() {
        let head = [
            r#"{"index":0,"time":0,"process":0,"type":"invoke","f":"write","value":1}"#,
            r#"{"index":1,"time":1,"process":0,"type":"ok","f":"write","value":1}"#,
            r#"{"index":2,"time":2,"process":1,"type":"invoke","f":"cas","value":[5,9]}"#,
        ];
        let saw = |v: &str, error: &str| {
            let mut l: Vec<String> = head.iter().map(|x| x.to_string()).collect();
            l.push(format!(
                r#"{{"index":3,"time":3,"process":1,"type":"fail","f":"cas","value":{v},"error":"{error}"}}"#
            ));
            judge(&l)
        };
        assert_eq!(saw("1", REFUSED_CAS), Verdict::Valid);
        // Only 1 was ever written: a cas cannot have seen 7, or absent.
        assert!(matches!(saw("7", REFUSED_CAS), Verdict::Invalid { .. }));
        assert!(matches!(saw("null", REFUSED_CAS), Verdict::Invalid { .. }));
        // A failure that reports nothing is dropped.
        assert_eq!(saw("[5,9]", "timeout"), Verdict::Valid);
        // A failed read is dropped too, whatever it holds.
        let failed_read = [
            r#"{"index":0,"time":0,"process":0,"type":"invoke","f":"write","value":1}"#,
            r#"{"index":1,"time":1,"process":0,"type":"ok","f":"write","value":1}"#,
            r#"{"index":2,"time":2,"process":1,"type":"invoke","f":"read","value":null}"#,
            r#"{"index":3,"time":3,"process":1,"type":"fail","f":"read","value":null,"error":"timeout"}"#,
        ];
        let l: Vec<String> = failed_read.iter().map(|x| x.to_string()).collect();
        assert_eq!(judge(&l), Verdict::Valid);
    }

    #[test]
    fn names_round_trip() {
        for c in Checker::ALL {
            assert_eq!(Checker::by_name(c.name()), Some(c));
        }
        assert_eq!(Checker::by_name("bank"), None);
    }
}

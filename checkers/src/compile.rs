//! Turning paired history ops into per-key partitions of model ops.

use crate::REFUSED_CAS;
use crate::model::{CasObs, MOp, Machine, ModelKind, TxnStep};
use crate::search::SOp;
use crate::{CheckError, LinOptions};
use faultline_history::{Op, Outcome};
use rustc_hash::FxHashMap;
use serde_json::Value as J;
use std::collections::BTreeMap;

/// Register values interned to `u32`; 0 is `null` (absent).
#[derive(Debug, Default, Clone)]
pub(crate) struct Values {
    ids: FxHashMap<String, u32>,
    vals: Vec<J>,
}

impl Values {
    pub(crate) fn new() -> Values {
        let mut v = Values::default();
        v.id(&J::Null);
        v
    }

    pub(crate) fn id(&mut self, v: &J) -> u32 {
        let key = v.to_string();
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let id = self.vals.len() as u32;
        self.vals.push(v.clone());
        self.ids.insert(key, id);
        id
    }

    pub(crate) fn get(&self, id: u32) -> J {
        self.vals.get(id as usize).cloned().unwrap_or(J::Null)
    }
}

/// How a partition's states look, for describing them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Register,
    Str,
    List,
    Registers,
    Mutex,
}

/// One independently checked part of a history.
#[derive(Clone)]
pub(crate) struct Part {
    pub key: Option<String>,
    pub ops: Vec<SOp>,
    pub machine: Machine,
    pub init: u32,
    pub shape: Shape,
}

/// The compiled history: partitions plus what is needed to describe them.
pub(crate) struct Compiled {
    pub parts: Vec<Part>,
    pub values: Values,
    pub registers: Vec<String>,
}

fn unsupported(op: &Op, model: ModelKind) -> CheckError {
    CheckError::UnsupportedOp {
        index: op.index,
        f: op.f.clone(),
        model: model.name(),
    }
}

fn bad_value(op: &Op, expected: &str) -> CheckError {
    CheckError::BadValue {
        index: op.index,
        f: op.f.clone(),
        value: op.value.to_string(),
        expected: expected.to_string(),
    }
}

pub(crate) fn compile(ops: &[Op], opts: &LinOptions) -> Result<Compiled, CheckError> {
    let model = opts.model;
    let mut values = Values::new();
    // Group by key (multi-register transactions span registers: one part).
    let mut groups: BTreeMap<Option<String>, Vec<usize>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        let key = if model == ModelKind::MultiRegister {
            None
        } else {
            op.key.clone()
        };
        groups.entry(key).or_default().push(i);
    }
    // Register names for transactions, in first-seen order.
    let mut registers: Vec<String> = Vec::new();
    let mut reg_idx: FxHashMap<String, u16> = FxHashMap::default();
    if model == ModelKind::MultiRegister {
        if let J::Object(m) = &opts.initial {
            for k in m.keys() {
                reg_idx.insert(k.clone(), registers.len() as u16);
                registers.push(k.clone());
            }
        }
        for op in ops {
            if let J::Array(mops) = &op.value {
                for m in mops {
                    if let Some(J::String(r)) = m.get(1)
                        && !reg_idx.contains_key(r)
                    {
                        reg_idx.insert(r.clone(), registers.len() as u16);
                        registers.push(r.clone());
                    }
                }
            }
        }
    }
    let mut parts = Vec::new();
    for (key, idxs) in groups {
        let seq_str = model == ModelKind::Kv && idxs.iter().any(|&i| ops[i].f == "append");
        let shape = match model {
            ModelKind::Register | ModelKind::CasRegister => Shape::Register,
            ModelKind::Kv if seq_str => Shape::Str,
            ModelKind::Kv => Shape::Register,
            ModelKind::Append => Shape::List,
            ModelKind::MultiRegister => Shape::Registers,
            ModelKind::Mutex => Shape::Mutex,
        };
        let mut machine = Machine::new();
        let nil_any = opts.nil_read_matches_any;
        let init = match shape {
            Shape::Register => values.id(&opts.initial),
            Shape::Str => match &opts.initial {
                J::String(s) => machine.str_id(s.as_bytes()),
                _ => 0,
            },
            Shape::List => match &opts.initial {
                J::Array(xs) => {
                    let syms: Vec<u32> = xs.iter().map(|x| values.id(x)).collect();
                    machine.seq_node(&syms)
                }
                _ => 0,
            },
            Shape::Registers => {
                let init: Vec<u32> = registers
                    .iter()
                    .map(|r| match &opts.initial {
                        J::Object(m) => values.id(m.get(r).unwrap_or(&J::Null)),
                        other => values.id(other),
                    })
                    .collect();
                machine.vec_id(&init)
            }
            Shape::Mutex => 0,
        };
        let mut sops = Vec::with_capacity(idxs.len());
        for i in idxs {
            let op = &ops[i];
            let optional = matches!(op.outcome, Outcome::Info | Outcome::Pending);
            let failed = op.outcome == Outcome::Fail;
            let f = op.f.as_str();
            let mop = match (shape, f) {
                (Shape::Register, "read" | "get") => {
                    if optional {
                        None
                    } else if op.value.is_null() && nil_any {
                        Some(MOp::Read(None))
                    } else {
                        Some(MOp::Read(Some(values.id(&op.value))))
                    }
                }
                (Shape::Register, "write" | "put") => Some(MOp::Write(values.id(&op.value))),
                // A refused cas that reported the value it saw is a read of
                // that value within its interval (our histories: the error
                // is `cas-mismatch` and the completion holds the value).
                (Shape::Register, "cas")
                    if failed
                        && opts.refused_cas_observes
                        && op.error.as_deref() == Some(REFUSED_CAS)
                        && op.fail_value.is_some() =>
                {
                    let seen = op.fail_value.as_ref().unwrap_or(&J::Null);
                    if seen.is_null() && nil_any {
                        Some(MOp::Read(None))
                    } else {
                        Some(MOp::Read(Some(values.id(seen))))
                    }
                }
                (Shape::Register, "cas") if model != ModelKind::Register => {
                    let J::Array(xs) = &op.value else {
                        return Err(bad_value(op, "[from, to]"));
                    };
                    if xs.len() != 2 {
                        return Err(bad_value(op, "[from, to]"));
                    }
                    let (from, to) = (values.id(&xs[0]), values.id(&xs[1]));
                    let obs = if failed {
                        CasObs::Failed
                    } else {
                        CasObs::Succeeded
                    };
                    Some(MOp::Cas { from, to, obs })
                }
                (Shape::Str, "read" | "get") => {
                    if optional {
                        None
                    } else {
                        match &op.value {
                            J::Null if nil_any => Some(MOp::StrRead(None)),
                            J::Null => Some(MOp::StrRead(Some(0))),
                            J::String(s) => Some(MOp::StrRead(Some(machine.str_id(s.as_bytes())))),
                            _ => return Err(bad_value(op, "a string")),
                        }
                    }
                }
                (Shape::Str, "write" | "put") => match &op.value {
                    J::String(s) => Some(MOp::StrPut(machine.str_id(s.as_bytes()))),
                    _ => return Err(bad_value(op, "a string")),
                },
                (Shape::Str, "append") => match &op.value {
                    J::String(s) => Some(MOp::StrAppend(machine.str_id(s.as_bytes()))),
                    _ => return Err(bad_value(op, "a string")),
                },
                (Shape::List, "read" | "get") => {
                    if optional {
                        None
                    } else {
                        match &op.value {
                            J::Null if nil_any => Some(MOp::SeqRead(None)),
                            J::Null => Some(MOp::SeqRead(Some(0))),
                            J::Array(xs) => {
                                let syms: Vec<u32> = xs.iter().map(|x| values.id(x)).collect();
                                Some(MOp::SeqRead(Some(machine.seq_node(&syms))))
                            }
                            _ => return Err(bad_value(op, "a list")),
                        }
                    }
                }
                (Shape::List, "append") => Some(MOp::SeqAppend(vec![values.id(&op.value)].into())),
                (Shape::Registers, "txn") => {
                    let J::Array(mops) = &op.value else {
                        return Err(bad_value(op, "[[f register value] ...]"));
                    };
                    let mut steps = Vec::with_capacity(mops.len());
                    let mut writes = false;
                    for m in mops {
                        let (Some(J::String(mf)), Some(J::String(r)), Some(v)) =
                            (m.get(0), m.get(1), m.get(2))
                        else {
                            return Err(bad_value(op, "[[f register value] ...]"));
                        };
                        let r = reg_idx.get(r).copied().unwrap_or(0);
                        match mf.as_str() {
                            "read" | "r" => {
                                let any = optional || (v.is_null() && nil_any);
                                steps.push(TxnStep::Read(r, (!any).then(|| values.id(v))));
                            }
                            "write" | "w" => {
                                writes = true;
                                steps.push(TxnStep::Write(r, values.id(v)));
                            }
                            _ => return Err(bad_value(op, "micro-ops :read or :write")),
                        }
                    }
                    (writes || !optional).then(|| MOp::Txn(steps.into()))
                }
                (Shape::Mutex, "acquire") => Some(MOp::Acquire),
                (Shape::Mutex, "release") => Some(MOp::Release),
                _ => return Err(unsupported(op, model)),
            };
            // Failed ops did not happen; a failed CAS is kept only as an
            // observation where the format says so (a read of what it saw,
            // or Porcupine's "the value was not `from`").
            let keep_failed = failed
                && ((opts.failed_cas_observes && matches!(mop, Some(MOp::Cas { .. })))
                    || (opts.refused_cas_observes
                        && f == "cas"
                        && matches!(mop, Some(MOp::Read(_)))));
            let Some(mop) = mop.filter(|_| !failed || keep_failed) else {
                continue;
            };
            sops.push(SOp {
                call: op.call,
                ret: if optional {
                    None
                } else {
                    Some(op.ret.unwrap_or(usize::MAX))
                },
                op: mop,
                src: i,
            });
        }
        drop_unobserved_optional(&mut sops, shape, &machine);
        parts.push(Part {
            key,
            ops: sops,
            machine,
            init,
            shape,
        });
    }
    Ok(Compiled {
        parts,
        values,
        registers,
    })
}

/// Drops optional (`info` or pending) ops whose effect nothing can observe.
///
/// Registers: an optional write of `v` (or cas to `v`) where no op in the
/// part reads `v` (a read of `v` or a successful cas from `v`) can never
/// help. Proof: in any linearization containing it, the ops after it until
/// the next state change see `v`, so they can only be reads matching any
/// value (a read of `v` or a cas from `v` does not exist); the next state
/// change cannot be a cas (it would be from `v`), so it is a write, which sets
/// the state whatever it was. Removing the op leaves every other op legal and
/// in the same order, and it was optional. Dropping a cas removes its need
/// for `from`, which can leave other optional producers of `from`
/// unobserved, so this repeats to a fixpoint. Not applied when a failed CAS
/// is an observation (Porcupine's etcd logs): that observes "not `from`",
/// which an unread write could make true.
///
/// Lists: an optional append whose element appears in no read can never
/// help: the element stays in the list for good, so every read after it
/// would have to be a read matching anything; removing it changes nothing
/// those reads can see.
///
/// Applied per part before the search, so the search, the witness and the
/// shrinker all see the same ops (a dropped op never appears in a witness).
fn drop_unobserved_optional(sops: &mut Vec<SOp>, shape: Shape, machine: &Machine) {
    match shape {
        Shape::Register => {
            if sops.iter().any(|o| {
                matches!(
                    o.op,
                    MOp::Cas {
                        obs: CasObs::Failed,
                        ..
                    }
                )
            }) {
                return;
            }
            let needs = |op: &MOp| match *op {
                MOp::Read(Some(v))
                | MOp::Cas {
                    from: v,
                    obs: CasObs::Succeeded,
                    ..
                } => Some(v),
                _ => None,
            };
            let mut observers: FxHashMap<u32, u32> = FxHashMap::default();
            for o in sops.iter() {
                if let Some(v) = needs(&o.op) {
                    *observers.entry(v).or_default() += 1;
                }
            }
            let mut keep = vec![true; sops.len()];
            loop {
                let mut changed = false;
                for (i, o) in sops.iter().enumerate() {
                    if !keep[i] || o.ret.is_some() {
                        continue;
                    }
                    let produces = match o.op {
                        MOp::Write(v) | MOp::Cas { to: v, .. } => v,
                        _ => continue,
                    };
                    if observers.get(&produces).copied().unwrap_or(0) == 0 {
                        keep[i] = false;
                        changed = true;
                        if let Some(v) = needs(&o.op)
                            && let Some(c) = observers.get_mut(&v)
                        {
                            *c -= 1;
                        }
                    }
                }
                if !changed {
                    break;
                }
            }
            let mut i = 0;
            sops.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        }
        Shape::List => {
            let mut seen: rustc_hash::FxHashSet<u32> = rustc_hash::FxHashSet::default();
            for o in sops.iter() {
                if let MOp::SeqRead(Some(node)) = o.op {
                    seen.extend(machine.seq_of(node));
                }
            }
            sops.retain(|o| match &o.op {
                MOp::SeqAppend(xs) if o.ret.is_none() => xs.iter().any(|x| seen.contains(x)),
                _ => true,
            });
        }
        Shape::Str | Shape::Registers | Shape::Mutex => {}
    }
}

/// Describes a model state in words.
pub(crate) fn describe_state(c: &Compiled, shape: Shape, machine: &Machine, state: u32) -> String {
    match shape {
        Shape::Register => match c.values.get(state) {
            J::Null => "the register is empty (nil)".to_string(),
            v => format!("the register holds {v}"),
        },
        Shape::Str => {
            format!(
                "the value is {:?}",
                String::from_utf8_lossy(machine.str_of(state))
            )
        }
        Shape::List => {
            let xs: Vec<J> = machine
                .seq_of(state)
                .into_iter()
                .map(|v| c.values.get(v))
                .collect();
            format!("the list is {}", J::Array(xs))
        }
        Shape::Registers => {
            let regs = machine.vec_of(state);
            let parts: Vec<String> = c
                .registers
                .iter()
                .zip(regs)
                .map(|(r, v)| format!("{r}={}", c.values.get(*v)))
                .collect();
            format!("the registers are {}", parts.join(", "))
        }
        Shape::Mutex => if state == 1 {
            "the lock is held"
        } else {
            "the lock is free"
        }
        .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(i: usize, f: &str, value: J, outcome: Outcome, ret: Option<usize>) -> Op {
        Op {
            process: i as u64,
            f: f.to_string(),
            key: None,
            invoke_value: value.clone(),
            value,
            outcome,
            error: None,
            fail_value: None,
            call: i,
            ret,
            index: i as u64,
            ret_index: ret.map(|r| r as u64),
            time: i as u64,
        }
    }

    fn kept(ops: &[Op], opts: &LinOptions) -> Vec<u64> {
        let c = compile(ops, opts).unwrap();
        c.parts[0].ops.iter().map(|o| ops[o.src].index).collect()
    }

    #[test]
    fn unobserved_indeterminate_ops_are_dropped_to_a_fixpoint() {
        // info write 1, info cas 1→2, info write 3 (read), ok read 3:
        // nothing reads 2, so the cas goes; then nothing reads 1, so the write of 1 goes.
        let ops = vec![
            op(0, "write", json!(1), Outcome::Info, None),
            op(1, "cas", json!([1, 2]), Outcome::Info, None),
            op(2, "write", json!(3), Outcome::Info, None),
            op(3, "read", json!(3), Outcome::Ok, Some(10)),
            op(4, "write", json!(4), Outcome::Ok, Some(11)),
        ];
        let opts = LinOptions::new(ModelKind::CasRegister);
        assert_eq!(kept(&ops, &opts), vec![2, 3, 4]);
        // A failed CAS observed "not from": an unread write could explain it.
        let mut etcd = opts.clone();
        etcd.failed_cas_observes = true;
        let mut with_failed = ops.clone();
        with_failed.push(op(5, "cas", json!([4, 5]), Outcome::Fail, Some(12)));
        assert_eq!(kept(&with_failed, &etcd), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn unread_indeterminate_appends_are_dropped() {
        let ops = vec![
            op(0, "append", json!(1), Outcome::Info, None),
            op(1, "append", json!(2), Outcome::Info, None),
            op(2, "read", json!([2]), Outcome::Ok, Some(10)),
        ];
        assert_eq!(kept(&ops, &LinOptions::new(ModelKind::Append)), vec![1, 2]);
    }
}

//! Reading a stored run folder: the history paired into ops with times, the
//! fault windows (from `nemesis.jsonl`, else from the history's nemesis
//! events), `config.json` and `results.json`. Missing optional files become
//! notes for the page, never silent gaps.

use anyhow::{Context, Result};
use faultline_history::{Event, EventType, Outcome, Process};
use serde_json::Value;
use std::path::Path;

use crate::nemesis::{Fault, NemesisKind, instant_step, semantics};
use crate::store::{MembershipRecord, RunDir};

/// One client operation with the times the report needs.
#[derive(Debug, Clone)]
pub struct OpRec {
    /// The invocation's event index (how witnesses name ops).
    pub index: u64,
    /// The client process.
    pub process: u64,
    /// The function.
    pub f: String,
    /// The key, if any.
    pub key: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// Invocation time (ns since the run started).
    pub invoke_ns: u64,
    /// Completion time, if it completed.
    pub complete_ns: Option<u64>,
    /// The argument.
    pub invoke_value: Value,
    /// The result for ok ops, the argument otherwise.
    pub value: Value,
}

impl OpRec {
    /// Latency in ns, for completed ops.
    pub fn latency_ns(&self) -> Option<u64> {
        self.complete_ns.map(|c| c.saturating_sub(self.invoke_ns))
    }
}

/// The name of an outcome as used in files and on the page.
pub fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Fail => "fail",
        Outcome::Info => "info",
        Outcome::Pending => "pending",
    }
}

/// A fault window: from the action that started a fault to the one that ended it.
#[derive(Debug, Clone)]
pub struct FaultWindow {
    /// The fault kind.
    pub kind: NemesisKind,
    /// A short description, e.g. `partition isolate-leader` or `kill n2,n3`.
    pub label: String,
    /// When the starting action was invoked (ns).
    pub start_ns: u64,
    /// When the ending action was carried out (ns); `None` if it never ended.
    pub end_ns: Option<u64>,
}

/// Everything read from a run folder.
#[derive(Debug, Clone, Default)]
pub struct RunData {
    /// Client ops in invocation order.
    pub ops: Vec<OpRec>,
    /// Fault windows in start order.
    pub windows: Vec<FaultWindow>,
    /// `config.json`, or `null`.
    pub config: Value,
    /// `results.json`, or `null`.
    pub results: Value,
    /// Time of the last event (ns): the run's length as recorded.
    pub end_ns: u64,
    /// Where the fault windows came from.
    pub windows_source: &'static str,
    /// Things the reader should know (missing files, torn lines).
    pub notes: Vec<String>,
    /// The member nemesis's steps and the configurations they left.
    pub membership: Option<MembershipRecord>,
}

/// Reads a run folder. `history.jsonl` is required; the rest is optional.
pub fn load(dir: &Path) -> Result<RunData> {
    let mut notes = Vec::new();
    let run = RunDir::open(dir)?;
    let hpath = run.history();
    let (history, _) = faultline_history::read_path(&hpath, Some(faultline_history::Format::Jsonl))
        .with_context(|| format!("cannot read {}", hpath.display()))?;
    notes.extend(history.warnings.iter().cloned());
    let events = history.events;
    let config = match run.read_config()? {
        Some(c) => serde_json::to_value(c)?,
        None => {
            notes.push("No config.json in the run folder: settings and seed are unknown.".into());
            Value::Null
        }
    };
    let results = match run.read_results()? {
        Some(r) => serde_json::to_value(r)?,
        None => {
            notes.push(
                "No results.json in the run folder: the verdict is unknown (run `faultline analyze` to check the history)."
                    .into(),
            );
            Value::Null
        }
    };
    let paired = faultline_history::pair(&hpath.display().to_string(), &events)
        .with_context(|| format!("{} does not form a history", hpath.display()))?;
    let ops: Vec<OpRec> = paired
        .into_iter()
        .map(|o| OpRec {
            index: o.index,
            process: o.process,
            f: o.f,
            key: o.key,
            outcome: o.outcome,
            invoke_ns: o.time,
            complete_ns: o.ret.map(|r| events[r].time),
            invoke_value: o.invoke_value,
            value: o.value,
        })
        .collect();
    let end_ns = events.iter().map(|e| e.time).max().unwrap_or(0);

    let mut membership = None;
    let (actions, windows_source) = match run.read_nemesis()? {
        Some(lines) => {
            let founders = config["settings"]["nodes"].as_u64().unwrap_or(0) as usize;
            membership = MembershipRecord::of(&lines, founders);
            (
                lines
                    .into_iter()
                    .map(|l| Action {
                        time: l.time,
                        done: l.done,
                        label: l.fault.label(),
                        starts: l.starts,
                        ends: l.ends,
                        instant: instant_step(l.fault.name()),
                    })
                    .collect(),
                "nemesis.jsonl",
            )
        }
        None => {
            let a = actions_from_history(&events);
            notes.push(if a.is_empty() {
                "No nemesis.jsonl and no nemesis events in the history: no fault windows are shown."
                    .to_string()
            } else {
                "No nemesis.jsonl: fault windows are taken from the history's nemesis events."
                    .to_string()
            });
            (a, "history")
        }
    };
    Ok(RunData {
        ops,
        windows: windows_of(&actions),
        config,
        results,
        end_ns,
        windows_source,
        notes,
        membership,
    })
}

/// One nemesis action: when, what, and which fault kinds it started or ended.
#[derive(Debug, Clone)]
struct Action {
    time: u64,
    done: u64,
    label: String,
    starts: Option<NemesisKind>,
    ends: Vec<NemesisKind>,
    /// The kind of instant steps it is one of: a window by itself.
    instant: Option<NemesisKind>,
}

fn actions_from_history(events: &[Event]) -> Vec<Action> {
    let mut out: Vec<Action> = Vec::new();
    let mut open: Option<usize> = None;
    for e in events {
        if e.process != Process::Nemesis {
            continue;
        }
        if e.kind == EventType::Invoke {
            let (starts, ends) = semantics(&e.f);
            open = Some(out.len());
            let label = serde_json::from_value::<Fault>(e.value.clone())
                .map(|f| f.label())
                .unwrap_or_else(|_| e.f.clone());
            out.push(Action {
                time: e.time,
                done: e.time,
                label,
                starts,
                ends,
                instant: instant_step(&e.f),
            });
        } else if let Some(i) = open.take() {
            out[i].done = e.time;
        }
    }
    out
}

fn windows_of(actions: &[Action]) -> Vec<FaultWindow> {
    let mut windows: Vec<FaultWindow> = Vec::new();
    for a in actions {
        if let Some(k) = a.instant {
            windows.push(FaultWindow {
                kind: k,
                label: a.label.clone(),
                start_ns: a.time,
                end_ns: Some(a.done),
            });
        }
        for k in &a.ends {
            // The oldest open window of that kind ends.
            if let Some(w) = windows
                .iter_mut()
                .find(|w| w.kind == *k && w.end_ns.is_none())
            {
                w.end_ns = Some(a.done);
            }
        }
        if let Some(k) = a.starts {
            windows.push(FaultWindow {
                kind: k,
                label: a.label.clone(),
                start_ns: a.time,
                end_ns: None,
            });
        }
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nemesis::{PartitionShape, Target};
    use crate::store::{NemesisLine, SCHEMA, parse_nemesis};

    #[test]
    fn nemesis_lines_pair_into_windows_and_clear_ends_all() {
        let line = |time, fault, starts, ends| NemesisLine {
            schema: SCHEMA,
            time,
            done: time + 100,
            fault,
            starts,
            ends,
            result: "ok".into(),
            members: None,
        };
        let lines = [
            line(
                1000,
                Fault::Partition {
                    shape: PartitionShape::Halves,
                    cut: vec![],
                    mode: Default::default(),
                },
                Some(NemesisKind::Partition),
                vec![],
            ),
            line(
                2000,
                Fault::Kill {
                    target: Target::One,
                    nodes: vec!["n2".into()],
                },
                Some(NemesisKind::Kill),
                vec![],
            ),
            line(3000, Fault::Heal, None, vec![NemesisKind::Partition]),
            line(4000, Fault::Clear, None, vec![NemesisKind::Kill]),
            line(
                5000,
                Fault::Grow {
                    node: "n4".into(),
                    split: false,
                },
                None,
                vec![],
            ),
        ];
        let text: String = lines
            .iter()
            .map(|l| serde_json::to_string(l).unwrap() + "\n")
            .collect();
        let parsed = parse_nemesis(Path::new("n.jsonl"), &text).unwrap();
        let actions: Vec<Action> = parsed
            .into_iter()
            .map(|l| Action {
                time: l.time,
                done: l.done,
                label: l.fault.label(),
                starts: l.starts,
                ends: l.ends,
                instant: instant_step(l.fault.name()),
            })
            .collect();
        let w = windows_of(&actions);
        assert_eq!(w.len(), 3);
        // A membership step is a window of its own, closed by itself.
        assert_eq!(
            (w[2].kind, w[2].label.as_str(), w[2].start_ns, w[2].end_ns),
            (NemesisKind::Member, "grow n4", 5000, Some(5100))
        );
        assert_eq!(
            (w[0].label.as_str(), w[0].start_ns, w[0].end_ns),
            ("partition halves", 1000, Some(3100))
        );
        assert_eq!((w[1].label.as_str(), w[1].end_ns), ("kill n2", Some(4100)));
    }
}

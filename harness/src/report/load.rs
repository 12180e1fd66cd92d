//! Reading a stored run folder: the history paired into ops with times, the
//! fault windows (from `nemesis.jsonl`, else from the history's nemesis
//! events), `config.json` and `results.json`. Missing optional files become
//! notes for the page, never silent gaps.

use anyhow::{Context, Result};
use faultline_history::{Event, EventType, Outcome, Process};
use serde_json::Value;
use std::path::Path;

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
    /// The fault kind (`partition`, `kill`, `pause`, `delay`, `loss`).
    pub kind: String,
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
}

fn read_json(path: &Path, notes: &mut Vec<String>, what: &str) -> Result<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            notes.push(format!("No {} in the run folder: {what}.", file_name(path)));
            Ok(Value::Null)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads a run folder. `history.jsonl` is required; the rest is optional.
pub fn load(dir: &Path) -> Result<RunData> {
    let mut notes = Vec::new();
    let hpath = dir.join("history.jsonl");
    if !hpath.exists() {
        anyhow::bail!(
            "{} is not a run folder: it has no history.jsonl",
            dir.display()
        );
    }
    let (history, _) = faultline_history::read_path(&hpath, Some(faultline_history::Format::Jsonl))
        .with_context(|| format!("cannot read {}", hpath.display()))?;
    notes.extend(history.warnings.iter().cloned());
    let events = history.events;
    let config = read_json(
        &dir.join("config.json"),
        &mut notes,
        "settings and seed are unknown",
    )?;
    let results = read_json(
        &dir.join("results.json"),
        &mut notes,
        "the verdict is unknown (run `faultline analyze` to check the history)",
    )?;
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

    let npath = dir.join("nemesis.jsonl");
    let (actions, windows_source) = match std::fs::read_to_string(&npath) {
        Ok(text) => (parse_nemesis_jsonl(&npath, &text)?, "nemesis.jsonl"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
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
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", npath.display())),
    };
    Ok(RunData {
        ops,
        windows: windows_of(&actions),
        config,
        results,
        end_ns,
        windows_source,
        notes,
    })
}

/// One nemesis action: what it did and which fault kinds it started or ended.
#[derive(Debug, Clone)]
struct Action {
    time: u64,
    done: u64,
    fault: Value,
    starts: Option<String>,
    ends: Vec<String>,
}

const KINDS: [&str; 5] = ["partition", "kill", "pause", "delay", "loss"];

/// The kinds a fault (by its `f` name) starts and ends, as the nemesis defines them.
fn semantics(f: &str) -> (Option<&'static str>, Vec<&'static str>) {
    match f {
        "partition" => (Some("partition"), vec![]),
        "kill" => (Some("kill"), vec![]),
        "pause" => (Some("pause"), vec![]),
        "delay" | "link-delay" => (Some("delay"), vec![]),
        "loss" | "link-loss" => (Some("loss"), vec![]),
        "heal" => (None, vec!["partition"]),
        "restart" => (None, vec!["kill"]),
        "resume" => (None, vec!["pause"]),
        "clear-links" => (None, vec!["delay", "loss"]),
        "clear" => (None, KINDS.to_vec()),
        _ => (None, vec![]),
    }
}

fn parse_nemesis_jsonl(path: &Path, text: &str) -> Result<Vec<Action>> {
    let mut out = Vec::new();
    let torn_possible = !text.is_empty() && !text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            // A crashed run may leave a torn last line; the history has the same facts.
            Err(_) if torn_possible && i + 1 == lines.len() => continue,
            Err(e) => anyhow::bail!("{}:{}: not a JSON object: {e}", path.display(), i + 1),
        };
        let time = v["time"]
            .as_u64()
            .with_context(|| format!("{}:{}: no \"time\"", path.display(), i + 1))?;
        let done = v["done"].as_u64().unwrap_or(time);
        let fault = v["fault"].clone();
        let f = fault["f"].as_str().unwrap_or("");
        let (_, default_ends) = semantics(f);
        let starts = v["starts"].as_str().map(str::to_string);
        let mut ends: Vec<String> = v["ends"].as_str().map(str::to_string).into_iter().collect();
        // `clear` ends everything even when the line names no single kind.
        if f == "clear" {
            ends = default_ends.iter().map(|s| s.to_string()).collect();
        }
        out.push(Action {
            time,
            done,
            fault,
            starts,
            ends,
        });
    }
    Ok(out)
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
            let mut fault = e.value.clone();
            if fault.get("f").is_none() {
                fault = serde_json::json!({"f": e.f});
            }
            out.push(Action {
                time: e.time,
                done: e.time,
                fault,
                starts: starts.map(str::to_string),
                ends: ends.iter().map(|s| s.to_string()).collect(),
            });
        } else if let Some(i) = open.take() {
            out[i].done = e.time;
        }
    }
    out
}

/// A short label for a fault, e.g. `partition isolate-leader`, `kill n2,n3`, `delay 50±10 ms`.
fn label(fault: &Value, kind: &str) -> String {
    let list = |k: &str| {
        fault[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    match kind {
        "partition" => format!("partition {}", fault["shape"].as_str().unwrap_or("")),
        "kill" | "pause" => format!("{kind} {}", list("nodes")),
        "delay" => format!(
            "delay {}±{} ms",
            fault["latency_ms"].as_u64().unwrap_or(0),
            fault["jitter_ms"].as_u64().unwrap_or(0)
        ),
        "loss" => format!(
            "loss {}%",
            (fault["probability"].as_f64().unwrap_or(0.0) * 100.0).round()
        ),
        k => k.to_string(),
    }
    .trim()
    .to_string()
}

fn windows_of(actions: &[Action]) -> Vec<FaultWindow> {
    let mut windows: Vec<FaultWindow> = Vec::new();
    for a in actions {
        for k in &a.ends {
            // The oldest open window of that kind ends.
            if let Some(w) = windows
                .iter_mut()
                .find(|w| &w.kind == k && w.end_ns.is_none())
            {
                w.end_ns = Some(a.done);
            }
        }
        if let Some(k) = &a.starts {
            windows.push(FaultWindow {
                kind: k.clone(),
                label: label(&a.fault, k),
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

    #[test]
    fn nemesis_lines_pair_into_windows_and_clear_ends_all() {
        let text = r#"{"time":1000,"done":1100,"fault":{"f":"partition","shape":"halves","cut":[]},"starts":"partition","ends":null,"result":"ok"}
{"time":2000,"done":2100,"fault":{"f":"kill","target":"one","nodes":["n2"]},"starts":"kill","ends":null,"result":"ok"}
{"time":3000,"done":3100,"fault":{"f":"heal"},"starts":null,"ends":"partition","result":"ok"}
{"time":4000,"done":4200,"fault":{"f":"clear"},"starts":null,"ends":null,"result":"ok"}
"#;
        let a = parse_nemesis_jsonl(Path::new("n.jsonl"), text).unwrap();
        let w = windows_of(&a);
        assert_eq!(w.len(), 2);
        assert_eq!(
            (w[0].label.as_str(), w[0].start_ns, w[0].end_ns),
            ("partition halves", 1000, Some(3100))
        );
        assert_eq!((w[1].label.as_str(), w[1].end_ns), ("kill n2", Some(4200)));
    }

    #[test]
    fn a_bad_nemesis_line_is_named() {
        let e =
            parse_nemesis_jsonl(Path::new("n.jsonl"), "{\"time\":1}\nnot json\n{}\n").unwrap_err();
        assert!(e.to_string().contains("n.jsonl:2"), "{e}");
    }
}

//! Porcupine's two test formats: Jepsen etcd log lines and the key-value EDN lines.

use crate::{Event, EventType, History, HistoryError, Process};
use serde_json::Value as J;

/// Parses a Jepsen 2015 etcd log as Porcupine's test data has it:
/// `INFO jepsen.util - <proc> <:type> <:f> <value>` with tabs or spaces between.
///
/// Lines without the `INFO jepsen.util -` prefix are ignored (Jepsen setup
/// noise), as Porcupine does; the count is reported as a warning. A failed read
/// with `:timed-out` becomes an `info` read (Porcupine lets it return anything);
/// `:info … :timed-out` completions become `info` events with error `timed-out`.
pub fn parse_porcupine_etcd(name: &str, text: &str) -> Result<History, HistoryError> {
    let mut history = History::default();
    let mut ignored = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let mut it = line.split_whitespace();
        if it.next() != Some("INFO") || it.next() != Some("jepsen.util") || it.next() != Some("-") {
            if !line.trim().is_empty() {
                ignored += 1;
            }
            continue;
        }
        let fields: Vec<&str> = it.collect();
        let err = |message: String| HistoryError::Parse {
            file: name.to_string(),
            line: i + 1,
            message,
        };
        if fields.len() < 3 {
            return Err(err(format!(
                "expected `<process> <:type> <:f> <value>`, found {line:?}"
            )));
        }
        let process = fields[0]
            .parse::<u64>()
            .map_err(|_| err(format!("process {:?} is not a number", fields[0])))?;
        let kind = match fields[1] {
            ":invoke" => EventType::Invoke,
            ":ok" => EventType::Ok,
            ":fail" => EventType::Fail,
            ":info" => EventType::Info,
            t => return Err(err(format!("unknown type {t:?}"))),
        };
        let f = fields[2]
            .strip_prefix(':')
            .ok_or_else(|| err(format!("function {:?} is not a keyword", fields[2])))?;
        if !matches!(f, "read" | "write" | "cas") {
            return Err(err(format!(
                "unknown function :{f} (expected :read, :write or :cas)"
            )));
        }
        let rest = fields[3..].join(" ");
        let (value, error) = parse_etcd_value(&rest).map_err(err)?;
        let index = history.events.len() as u64;
        let mut kind = kind;
        if kind == EventType::Fail && f == "read" && error.is_some() {
            // A timed-out read is indeterminate, not a definite failure.
            kind = EventType::Info;
        }
        let mut e = Event::new(index, index, Process::Client(process), kind, f, value);
        e.error = error;
        history.events.push(e);
    }
    if ignored > 0 {
        history.warnings.push(format!(
            "{name}: ignored {ignored} lines that are not `INFO jepsen.util -` op lines"
        ));
    }
    Ok(history)
}

fn parse_etcd_value(s: &str) -> Result<(J, Option<String>), String> {
    let s = s.trim();
    if s == "nil" || s.is_empty() {
        return Ok((J::Null, None));
    }
    if let Some(k) = s.strip_prefix(':') {
        return Ok((J::Null, Some(k.to_string())));
    }
    if let Ok(n) = s.parse::<i64>() {
        return Ok((J::from(n), None));
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        let xs: Result<Vec<J>, String> = inner
            .split_whitespace()
            .map(|x| {
                x.parse::<i64>()
                    .map(J::from)
                    .map_err(|_| format!("bad number {x:?} in {s:?}"))
            })
            .collect();
        return Ok((J::Array(xs?), None));
    }
    Err(format!("cannot read value {s:?}"))
}

/// Parses Porcupine's key-value format: one EDN map per line,
/// `{:process N, :type :invoke|:ok, :f :get|:put|:append, :key "k", :value nil|"v"}`.
pub fn parse_porcupine_kv(name: &str, text: &str) -> Result<History, HistoryError> {
    let mut history = History::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let one = crate::parse_edn(name, line).map_err(|e| match e {
            HistoryError::Parse { message, .. } => HistoryError::Parse {
                file: name.to_string(),
                line: i + 1,
                message,
            },
            other => other,
        })?;
        for mut e in one.events {
            if e.key.is_none() {
                return Err(HistoryError::Parse {
                    file: name.to_string(),
                    line: i + 1,
                    message: "key-value op without :key".into(),
                });
            }
            let index = history.events.len() as u64;
            e.index = index;
            e.time = index;
            history.events.push(e);
        }
    }
    Ok(history)
}

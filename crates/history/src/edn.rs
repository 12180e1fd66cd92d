//! Jepsen/Knossos EDN histories: reading (via the `edn-format` crate) and writing.

use crate::{Event, EventType, History, HistoryError, Process};
use edn_format::{Keyword, Parser, ParserOptions, Value};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::str::Chars;

/// A char iterator that counts newlines, so parse errors can name a line.
#[derive(Clone)]
struct LineCounting<'a> {
    chars: Chars<'a>,
    line: Rc<Cell<usize>>,
}

impl Iterator for LineCounting<'_> {
    type Item = char;
    fn next(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line.set(self.line.get() + 1);
        }
        Some(c)
    }
}

/// Parses a Jepsen EDN history: one vector or list of op maps (as Knossos's
/// test data), or a stream of op maps (as Jepsen's `history.edn`).
///
/// Missing `:index` values are assigned 0, 1, 2, … and a missing `:time` is
/// taken to be the index, as Knossos does. Keywords become plain strings.
pub fn parse_edn(name: &str, text: &str) -> Result<History, HistoryError> {
    let line = Rc::new(Cell::new(1usize));
    let iter = LineCounting {
        chars: text.chars(),
        line: line.clone(),
    };
    let mut parser = Parser::from_iter(iter, ParserOptions::default());
    let perr = |line: usize, message: String| HistoryError::Parse {
        file: name.to_string(),
        line,
        message,
    };
    let mut history = History::default();
    let mut unknown_keys: BTreeSet<String> = BTreeSet::new();
    let mut forms = 0usize;
    let mut push = |v: &Value, at: usize, history: &mut History| -> Result<(), HistoryError> {
        let pos = history.events.len() as u64;
        let e = event_from_edn(v, pos, &mut unknown_keys).map_err(|m| perr(at, m))?;
        history.events.push(e);
        Ok(())
    };
    loop {
        let start = line.get();
        let Some(item) = parser.next() else { break };
        let value = item.map_err(|e| perr(line.get(), format!("EDN syntax error: {e:?}")))?;
        forms += 1;
        match &value {
            Value::Vector(items) | Value::List(items) => {
                if forms > 1 || !history.events.is_empty() {
                    return Err(perr(
                        start,
                        "expected one collection of op maps or a stream of op maps, found a collection after other forms".into(),
                    ));
                }
                for item in items {
                    push(item, start, &mut history)?;
                }
            }
            Value::Map(_) => push(&value, start, &mut history)?,
            other => {
                return Err(perr(
                    start,
                    format!("expected an op map or a collection of op maps, found {other}"),
                ));
            }
        }
    }
    if !unknown_keys.is_empty() {
        history.warnings.push(format!(
            "{name}: ignored op keys {}",
            unknown_keys.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(history)
}

fn kw(name: &str) -> Value {
    Value::Keyword(Keyword::from_name(name))
}

fn keyword_name(v: &Value) -> Option<String> {
    match v {
        Value::Keyword(k) => Some(match k.namespace() {
            Some(ns) => format!("{ns}/{}", k.name()),
            None => k.name().to_string(),
        }),
        _ => None,
    }
}

fn event_from_edn(
    v: &Value,
    pos: u64,
    unknown_keys: &mut BTreeSet<String>,
) -> Result<Event, String> {
    let Value::Map(m) = v else {
        return Err(format!("expected an op map, found {v}"));
    };
    let get = |k: &str| m.get(&kw(k));
    let process = match get("process") {
        Some(Value::Integer(p)) if *p >= 0 => Process::Client(*p as u64),
        Some(p) if keyword_name(p).as_deref() == Some("nemesis") => Process::Nemesis,
        Some(p) => return Err(format!(":process must be a number or :nemesis, not {p}")),
        None => return Err(format!("op map without :process: {v}")),
    };
    let kind = match get("type").and_then(keyword_name).as_deref() {
        Some("invoke") => EventType::Invoke,
        Some("ok") => EventType::Ok,
        Some("fail") => EventType::Fail,
        Some("info") => EventType::Info,
        _ => return Err(format!(":type must be :invoke, :ok, :fail or :info in {v}")),
    };
    let f = match get("f") {
        Some(Value::Keyword(_)) => {
            keyword_name(get("f").unwrap_or(&Value::Nil)).unwrap_or_default()
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => return Err(format!("op map without :f: {v}")),
    };
    let index = match get("index") {
        Some(Value::Integer(i)) if *i >= 0 => *i as u64,
        None => pos,
        Some(i) => return Err(format!(":index must be a non-negative integer, not {i}")),
    };
    let time = match get("time") {
        Some(Value::Integer(t)) if *t >= 0 => *t as u64,
        None => index,
        Some(t) => return Err(format!(":time must be a non-negative integer, not {t}")),
    };
    let value = match get("value") {
        Some(x) => to_json(x)?,
        None => serde_json::Value::Null,
    };
    let key = match get("key") {
        None | Some(Value::Nil) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(k) => Some(keyword_name(k).unwrap_or_else(|| k.to_string())),
    };
    let error = match get("error") {
        None | Some(Value::Nil) => None,
        Some(e) => Some(keyword_name(e).unwrap_or_else(|| e.to_string())),
    };
    let node = match get("node") {
        None | Some(Value::Nil) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(n) => Some(keyword_name(n).unwrap_or_else(|| n.to_string())),
    };
    for k in m.keys() {
        let name = keyword_name(k).unwrap_or_else(|| k.to_string());
        if !matches!(
            name.as_str(),
            "process" | "type" | "f" | "value" | "index" | "time" | "key" | "error" | "node"
        ) {
            unknown_keys.insert(format!(":{name}"));
        }
    }
    Ok(Event {
        index,
        time,
        process,
        kind,
        f,
        key,
        value,
        error,
        node,
    })
}

/// Converts an EDN value to JSON: keywords and symbols become strings, sets
/// and lists become arrays, map keys become strings.
fn to_json(v: &Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match v {
        Value::Nil => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Character(c) => J::String(c.to_string()),
        Value::String(s) => J::String(s.clone()),
        Value::Symbol(s) => J::String(s.to_string()),
        Value::Keyword(_) => J::String(keyword_name(v).unwrap_or_default()),
        Value::Integer(i) => J::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(f.into_inner())
            .map(J::Number)
            .ok_or_else(|| format!("non-finite number {v}"))?,
        Value::BigInt(_) | Value::BigDec(_) => {
            return Err(format!("number {v} does not fit in 64 bits"));
        }
        Value::List(xs) | Value::Vector(xs) => {
            J::Array(xs.iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Value::Set(xs) => J::Array(xs.iter().map(to_json).collect::<Result<_, _>>()?),
        Value::Map(m) => {
            let mut o = serde_json::Map::new();
            for (k, x) in m {
                let key = match k {
                    Value::String(s) => s.clone(),
                    _ => keyword_name(k).unwrap_or_else(|| k.to_string()),
                };
                o.insert(key, to_json(x)?);
            }
            J::Object(o)
        }
        Value::Inst(t) => J::String(t.to_rfc3339()),
        Value::Uuid(u) => J::String(u.to_string()),
        Value::TaggedElement(_, inner) => to_json(inner)?,
    })
}

/// Writes events as a Jepsen-style EDN stream: one op map per line.
///
/// `type`, `f` and `process :nemesis` become keywords; in `txn` values the
/// micro-op function and register name become keywords again (`[:read :x 1]`).
pub fn to_edn_string(events: &[Event]) -> String {
    let mut out = String::new();
    for e in events {
        out.push_str(&format!(
            "{{:index {}, :time {}, :type :{}, :process ",
            e.index,
            e.time,
            e.kind.name()
        ));
        match e.process {
            Process::Client(p) => out.push_str(&p.to_string()),
            Process::Nemesis => out.push_str(":nemesis"),
        }
        out.push_str(", :f ");
        out.push_str(&keyword_or_string(&e.f));
        if let Some(k) = &e.key {
            out.push_str(", :key ");
            out.push_str(&edn_string(k));
        }
        out.push_str(", :value ");
        if e.f == "txn" {
            out.push_str(&txn_to_edn(&e.value));
        } else {
            out.push_str(&json_to_edn(&e.value));
        }
        if let Some(err) = &e.error {
            out.push_str(", :error ");
            out.push_str(&keyword_or_string(err));
        }
        if let Some(n) = &e.node {
            out.push_str(", :node ");
            out.push_str(&edn_string(n));
        }
        out.push_str("}\n");
    }
    out
}

fn is_keyword_like(s: &str) -> bool {
    !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_?!*+./<>=".contains(c))
}

fn keyword_or_string(s: &str) -> String {
    if is_keyword_like(s) {
        format!(":{s}")
    } else {
        edn_string(s)
    }
}

fn edn_string(s: &str) -> String {
    // EDN strings use the same escapes as JSON for everything we emit.
    serde_json::to_string(s).unwrap_or_default()
}

fn json_to_edn(v: &serde_json::Value) -> String {
    use serde_json::Value as J;
    match v {
        J::Null => "nil".into(),
        J::Bool(b) => b.to_string(),
        J::Number(n) => n.to_string(),
        J::String(s) => edn_string(s),
        J::Array(xs) => format!(
            "[{}]",
            xs.iter().map(json_to_edn).collect::<Vec<_>>().join(" ")
        ),
        J::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, x)| format!("{} {}", keyword_or_string(k), json_to_edn(x)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn txn_to_edn(v: &serde_json::Value) -> String {
    use serde_json::Value as J;
    let J::Array(mops) = v else {
        return json_to_edn(v);
    };
    let parts: Vec<String> = mops
        .iter()
        .map(|m| match m {
            J::Array(xs) if xs.len() == 3 => {
                let name = |x: &J| match x {
                    J::String(s) => keyword_or_string(s),
                    other => json_to_edn(other),
                };
                format!(
                    "[{} {} {}]",
                    name(&xs[0]),
                    name(&xs[1]),
                    json_to_edn(&xs[2])
                )
            }
            other => json_to_edn(other),
        })
        .collect();
    format!("[{}]", parts.join(" "))
}

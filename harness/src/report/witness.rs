//! The witness of an invalid history, as the page shows it: found in
//! `results.json` (the checker's `Invalid { witness }` value, wherever the run
//! nested it), matched to the history's ops for their times, explained with
//! times in plain words, and drawn as a timeline — each op a bar from
//! invocation to completion on its process's lane, the impossible op
//! highlighted.

use super::load::{OpRec, outcome_name};
use super::plot::{self, Frame, Scale, Svg, esc};
use faultline_history::Outcome;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Most context ops (not in the minimal set) drawn on the timeline.
const MAX_CONTEXT: usize = 120;

/// One op named by the witness.
#[derive(Debug, Clone, PartialEq)]
pub struct WitnessOp {
    /// The invocation's event index.
    pub index: u64,
    /// The client process.
    pub process: u64,
    /// The function.
    pub f: String,
    /// The key, if any.
    pub key: Option<String>,
    /// The result (ok) or argument.
    pub value: Value,
    /// `ok`, `fail`, `info` or `pending`.
    pub outcome: String,
}

impl WitnessOp {
    fn from_json(v: &Value) -> Option<WitnessOp> {
        Some(WitnessOp {
            index: v.get("index")?.as_u64()?,
            process: v.get("process").and_then(Value::as_u64).unwrap_or(0),
            f: v.get("f")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
            key: v.get("key").and_then(Value::as_str).map(str::to_string),
            value: v.get("value").cloned().unwrap_or(Value::Null),
            outcome: v
                .get("outcome")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
        })
    }

    /// e.g. `op 14: process 3 read → 1 (ok)`.
    pub fn describe(&self) -> String {
        let key = self
            .key
            .as_ref()
            .map(|k| format!(" key {k:?}"))
            .unwrap_or_default();
        format!(
            "op {}: process {} {}{} {} ({})",
            self.index, self.process, self.f, key, self.value, self.outcome
        )
    }
}

/// The checker's witness as read back from `results.json`.
#[derive(Debug, Clone, Default)]
pub struct Witness {
    /// The key found invalid, if any.
    pub key: Option<String>,
    /// The op that cannot be linearized.
    pub op: Option<WitnessOp>,
    /// Length of the longest linearizable prefix.
    pub prefix_len: usize,
    /// The last few ops of that prefix.
    pub prefix_tail: Vec<WitnessOp>,
    /// The model state after the prefix, in words.
    pub state: String,
    /// A set of ops that is not linearizable together.
    pub minimal: Vec<WitnessOp>,
    /// Whether shrinking finished.
    pub minimal_complete: bool,
    /// The checker's explanation.
    pub explanation: String,
}

/// Finds the first witness object (`{"minimal": [...], ...}` under a
/// `"witness"` key) anywhere in `results`.
pub fn find(results: &Value) -> Option<Witness> {
    fn walk<'a>(v: &'a Value, key: Option<&'a Value>) -> Option<(&'a Value, Option<&'a Value>)> {
        match v {
            Value::Object(m) => {
                if let Some(w) = m.get("witness")
                    && w.get("minimal").is_some()
                {
                    return Some((w, m.get("key").or(key)));
                }
                m.values().find_map(|c| walk(c, key))
            }
            Value::Array(a) => a.iter().find_map(|c| walk(c, key)),
            _ => None,
        }
    }
    let (w, key) = walk(results, None)?;
    let ops = |k: &str| -> Vec<WitnessOp> {
        w.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(WitnessOp::from_json).collect())
            .unwrap_or_default()
    };
    let prefix = ops("prefix");
    Some(Witness {
        key: key.and_then(Value::as_str).map(str::to_string),
        op: w.get("op").and_then(WitnessOp::from_json),
        prefix_len: prefix.len(),
        prefix_tail: prefix[prefix.len().saturating_sub(5)..].to_vec(),
        state: w
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        minimal: ops("minimal"),
        minimal_complete: w
            .get("minimal_complete")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        explanation: w
            .get("explanation")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    })
}

/// Seconds to a tenth of a millisecond, e.g. `12.4103 s` (ops on loopback
/// often take less than a millisecond).
pub fn secs(ns: u64) -> String {
    format!("{:.4} s", ns as f64 / 1e9)
}

fn is_read(f: &str) -> bool {
    matches!(f, "read" | "get")
}

/// The witness timeline: the minimal op set, the impossible op and the ops
/// the explanation names (`named`) as bars on process lanes, with other ops
/// of the same key in that span faded.
pub fn timeline(
    w: &Witness,
    named: &[u64],
    all: &[OpRec],
    by_index: &HashMap<u64, &OpRec>,
    end_ns: u64,
) -> Option<(String, Option<String>)> {
    let mut chosen: Vec<&OpRec> = w
        .minimal
        .iter()
        .map(|m| m.index)
        .chain(named.iter().copied())
        .filter_map(|i| by_index.get(&i).copied())
        .collect();
    chosen.sort_by_key(|o| o.index);
    chosen.dedup_by_key(|o| o.index);
    let bad = w.op.as_ref().and_then(|o| by_index.get(&o.index).copied());
    if let Some(b) = bad
        && !chosen.iter().any(|o| o.index == b.index)
    {
        chosen.push(b);
    }
    if chosen.is_empty() {
        return None;
    }
    let t0 = chosen.iter().map(|o| o.invoke_ns).min()?;
    let t1 = chosen
        .iter()
        .map(|o| o.complete_ns.unwrap_or(end_ns))
        .max()?
        .max(t0 + 1);
    let pad = ((t1 - t0) / 20).max(1);
    let (lo, hi) = (t0.saturating_sub(pad), t1 + pad);
    let in_set: std::collections::HashSet<u64> = chosen.iter().map(|o| o.index).collect();
    let lanes_of_set: std::collections::BTreeSet<u64> = chosen.iter().map(|o| o.process).collect();
    // Context: ops on the same key and the same lanes that overlap the span.
    let mut context: Vec<&OpRec> = all
        .iter()
        .filter(|o| {
            !in_set.contains(&o.index)
                && lanes_of_set.contains(&o.process)
                && o.key == chosen[0].key
                && o.invoke_ns < hi
                && o.complete_ns.unwrap_or(end_ns) > lo
        })
        .collect();
    let mut note = None;
    if context.len() > MAX_CONTEXT {
        note = Some(format!(
            "{} other ops on these lanes overlap this span; the first {MAX_CONTEXT} are drawn faded.",
            context.len()
        ));
        context.truncate(MAX_CONTEXT);
    }
    let lanes: Vec<u64> = lanes_of_set.into_iter().collect();
    let lane_of: BTreeMap<u64, usize> = lanes.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let lane_h = 58.0;
    let top = 64.0;
    let left = 110.0;
    let width = 1000.0;
    let height = top + lane_h * lanes.len() as f64 + 50.0;
    let f = Frame {
        left,
        top,
        width: width - left - 24.0,
        height: lane_h * lanes.len() as f64,
        x: Scale::linear(lo as f64 / 1e9, hi as f64 / 1e9),
        y: Scale::linear(0.0, 1.0),
    };
    let mut svg = Svg::new(width, height);
    svg.title("Witness timeline: each op a bar from invocation to completion");
    svg.rect(
        f.left,
        f.top,
        f.width,
        f.height,
        r##"fill="#fafafa" stroke="#ccc""##,
    );
    let mut grid = String::new();
    for (v, label) in f.x.ticks() {
        let x = f.px(v);
        grid.push_str(&format!("M{x:.1} {:.1}V{:.1}", f.top, f.top + f.height));
        svg.text(
            x,
            f.top + f.height + 15.0,
            "middle",
            r##"fill="#444""##,
            &label,
        );
    }
    svg.raw(&format!(
        r##"<path d="{grid}" stroke="#e3e3e3" fill="none"/>"##
    ));
    svg.text(
        f.left + f.width / 2.0,
        f.top + f.height + 34.0,
        "middle",
        r##"fill="#222""##,
        "time since start (s)",
    );
    for (i, p) in lanes.iter().enumerate() {
        let y = f.top + i as f64 * lane_h;
        if i > 0 {
            svg.raw(&format!(
                r##"<path d="M{:.1} {y:.1}H{:.1}" stroke="#ddd"/>"##,
                f.left,
                f.left + f.width
            ));
        }
        svg.text(
            f.left - 8.0,
            y + lane_h / 2.0 + 4.0,
            "end",
            r##"font-weight="600" fill="#333""##,
            &format!("process {p}"),
        );
    }
    let bar = |svg: &mut Svg, o: &OpRec, style: &str, label: Option<String>| {
        let lane = lane_of[&o.process] as f64;
        let x0 = f.px(o.invoke_ns as f64 / 1e9);
        // Sub-millisecond ops still get a bar wide enough to see.
        let x1 = f.px(o.complete_ns.unwrap_or(hi) as f64 / 1e9).max(x0 + 8.0);
        let y = f.top + lane * lane_h + 16.0;
        svg.rect(
            x0,
            y + 6.0,
            x1 - x0,
            lane_h - 26.0,
            &format!(r#"rx="3" {style}"#),
        );
        if o.complete_ns.is_none() {
            // An op that never completed: an open right end.
            svg.text(
                x1 - 2.0,
                y + 27.0,
                "end",
                r##"font-size="13" fill="#555""##,
                "…",
            );
        }
        if let Some(l) = label {
            // Keep the label inside the frame: right-align it when it would overflow.
            let est = 7.2 * l.chars().count() as f64;
            if x0 + est > f.left + f.width {
                svg.text(
                    x1.min(f.left + f.width),
                    y - 3.0,
                    "end",
                    r##"font-size="13" fill="#111""##,
                    &l,
                );
            } else {
                svg.text(
                    x0 + 2.0,
                    y - 3.0,
                    "start",
                    r##"font-size="13" fill="#111""##,
                    &l,
                );
            }
        }
    };
    for o in &context {
        bar(&mut svg, o, r##"fill="#bbb" fill-opacity="0.35""##, None);
    }
    for o in &chosen {
        let is_bad = bad.is_some_and(|b| b.index == o.index);
        let base = match o.f.as_str() {
            "read" | "get" => plot::OK,
            "write" | "put" => "#2ca02c",
            _ => "#9467bd",
        };
        let style = if is_bad {
            format!(
                r##"fill="{}" fill-opacity="0.85" stroke="#7f0000" stroke-width="3""##,
                plot::FAIL
            )
        } else if o.outcome == Outcome::Ok {
            format!(r#"fill="{base}" fill-opacity="0.75""#)
        } else {
            format!(r#"fill="{base}" fill-opacity="0.3" stroke="{base}" stroke-dasharray="4 3""#)
        };
        let mut label = format!("#{} {} {}", o.index, o.f, short(&op_value(o)));
        if o.outcome != Outcome::Ok {
            label.push_str(&format!(" ({})", outcome_name(o.outcome)));
        }
        if is_bad {
            label = format!("✖ {label} — cannot be linearized");
        }
        bar(&mut svg, o, &style, Some(label));
    }
    svg.legend(
        &f,
        &[
            (plot::FAIL, "impossible op".to_string()),
            ("#2ca02c", "write".to_string()),
            (plot::OK, "read".to_string()),
            ("#9467bd", "other".to_string()),
            ("#bbb", "other ops (context)".to_string()),
        ],
    );
    Some((svg.finish(), note))
}

/// How an op reads on the timeline: `← 3` for a read result, `3` for a write.
fn op_value(o: &OpRec) -> String {
    if is_read(&o.f) {
        if o.outcome == Outcome::Ok {
            format!("→ {}", o.value)
        } else {
            String::new()
        }
    } else {
        o.invoke_value.to_string()
    }
}

fn short(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(39).collect::<String>())
    } else {
        s.to_string()
    }
}

/// HTML-escaped description of an op with its times.
pub fn describe_html(w: &WitnessOp, ops: &HashMap<u64, &OpRec>) -> String {
    let times = ops
        .get(&w.index)
        .map(|o| {
            format!(
                "{} → {}",
                secs(o.invoke_ns),
                o.complete_ns
                    .map(secs)
                    .unwrap_or_else(|| "never completed".into())
            )
        })
        .unwrap_or_default();
    format!("{}<span class=t>{}</span>", esc(&w.describe()), esc(&times))
}

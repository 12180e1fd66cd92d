//! `report.html`: one self-contained page (inline CSS and SVG; no scripts,
//! no fonts, no links out) with the verdict first, then for an invalid run
//! the witness, then settings, counts, latency, plots, fault windows with
//! availability, and notes on anything missing or capped.

use super::availability::Availability;
use super::charts::Chart;
use super::latency::Latencies;
use super::load::{RunData, outcome_name};
use super::plot::esc;
use super::witness::{self, Witness};
use faultline_history::Outcome;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// Most fault windows listed in the table.
const MAX_WINDOW_ROWS: usize = 300;

/// The report's stylesheet (`faultline serve` builds on it).
pub const CSS: &str = r#"
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1b1b1b;background:#f3f4f6}
main{max-width:1060px;margin:0 auto;padding:20px}
.verdict{border-radius:10px;padding:22px 28px;color:#fff;margin-bottom:18px}
.verdict .big{font-size:54px;font-weight:800;letter-spacing:2px;line-height:1}
.verdict .sentence{font-size:21px;margin-top:10px;font-weight:500}
.verdict .meta{margin-top:10px;opacity:.92;font-size:14px}
.valid{background:#1e7b34}.invalid{background:#b3261e}.unknown{background:#a15c00}
section{background:#fff;border-radius:10px;padding:16px 22px;margin-bottom:18px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
h1{font-size:20px;margin:0 0 12px}h2{font-size:19px;margin:4px 0 12px}h3{font-size:16px;margin:16px 0 8px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e5e5e5;vertical-align:top}
th{background:#f7f7f7;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.explain{font-size:19px;line-height:1.5;background:#fdecea;border-left:6px solid #b3261e;padding:12px 16px;border-radius:4px;margin:0 0 14px}
tr.bad td{background:#fdecea;font-weight:700}
.t{color:#666;margin-left:10px;font-weight:400}
.kv td:first-child{color:#555;width:230px}
.seed{font-size:20px;font-weight:700;font-family:ui-monospace,Menlo,Consolas,monospace}
.note{color:#6b4e00;background:#fff6da;border-radius:4px;padding:6px 10px;margin:6px 0;font-size:14px}
pre{white-space:pre-wrap;font-size:13px;background:#f7f7f7;padding:10px;border-radius:4px}
svg{max-width:100%;height:auto;display:block;margin:6px 0}
.chip{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:6px;vertical-align:-1px}
.muted{color:#666}
td,p,pre,div,li,summary,code{overflow-wrap:anywhere}
details.cut summary{cursor:pointer}
details.cut .whole{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px;background:#f7f7f7;padding:6px;border-radius:4px;max-height:320px;overflow-y:auto}
"#;

/// Text longer than this is cut on the page, the whole one click away.
const CUT_AT: usize = 160;

/// Escaped text; a long one shows its start, and the whole of it opens
/// under it (`<details>`: no scripts).
pub fn cut(text: &str) -> String {
    let n = text.chars().count();
    if n <= CUT_AT {
        return esc(text);
    }
    let head: String = text.chars().take(CUT_AT - 40).collect();
    format!(
        "<details class=cut><summary>{}… ({n} characters)</summary><div class=whole>{}</div></details>",
        esc(&head),
        esc(text)
    )
}

/// Everything the page shows, already computed.
pub struct Page<'a> {
    /// The run folder's name as shown.
    pub run_name: String,
    /// The run.
    pub run: &'a RunData,
    /// Latency histograms.
    pub lat: &'a Latencies,
    /// The plots.
    pub charts: &'a [Chart],
    /// Availability per window.
    pub avail: &'a [Availability],
    /// The witness, if the run is invalid and the witness was found.
    pub witness: Option<&'a Witness>,
    /// The account of the violation and the ops it names ([`super::explain`]).
    pub account: Option<&'a super::explain::Account>,
    /// The verdict name (`valid`, `invalid`, `unknown`).
    pub verdict: String,
    /// The run folder as the user named it (for the regenerate hint).
    pub dir: String,
}

fn verdict_sentence(p: &Page<'_>) -> String {
    let n = p.run.ops.len();
    let sentence = verdict_only(p, n);
    match find_str(&p.run.results, "caveat") {
        Some(c) if p.verdict == "invalid" => format!("{sentence} Caveat: {c}."),
        _ => sentence,
    }
}

fn verdict_only(p: &Page<'_>, n: usize) -> String {
    match p.verdict.as_str() {
        "valid" => format!("The {n} operations of this history are consistent with the model."),
        "invalid" => match p.witness {
            Some(w) => format!(
                "The history is not linearizable{}: {} operations cannot be ordered to fit the model.",
                w.key
                    .as_ref()
                    .map(|k| format!(" on key {k:?}"))
                    .unwrap_or_default(),
                w.minimal.len()
            ),
            None => {
                "The history is not linearizable (the checker's output has no witness to show)."
                    .to_string()
            }
        },
        _ => {
            let reason = find_str(&p.run.results, "reason");
            match reason {
                Some(r) => format!("The checker could not decide: {r}."),
                None if p.run.results.is_null() => {
                    "No results.json: this run was not checked.".to_string()
                }
                None => "The checker could not decide.".to_string(),
            }
        }
    }
}

fn find_str(v: &Value, key: &str) -> Option<String> {
    match v {
        Value::Object(m) => m
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| m.values().find_map(|c| find_str(c, key))),
        Value::Array(a) => a.iter().find_map(|c| find_str(c, key)),
        _ => None,
    }
}

fn setting(cfg: &Value, key: &str) -> Option<String> {
    let v = cfg
        .get("settings")
        .and_then(|s| s.get(key))
        .or_else(|| cfg.get(key))?;
    Some(match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    })
}

fn num(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{x:.3}"))
        .unwrap_or_else(|| "–".into())
}

/// Renders the page.
pub fn render(p: &Page<'_>) -> String {
    let mut h = String::with_capacity(256 * 1024);
    let cfg = &p.run.config;
    let workload = setting(cfg, "workload").unwrap_or_else(|| "run".into());
    let seed = cfg
        .get("seed")
        .or_else(|| p.run.results.get("seed"))
        .map(|s| s.to_string())
        .unwrap_or_else(|| "unknown".into());
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{} · {} · {}</title><style>{CSS}</style></head><body><main>",
        esc(&p.verdict.to_uppercase()),
        esc(&workload),
        esc(&p.run_name)
    );
    // The verdict, big and coloured.
    let class = match p.verdict.as_str() {
        "valid" | "invalid" => p.verdict.as_str(),
        _ => "unknown",
    };
    let _ = write!(
        h,
        "<header class=\"verdict {class}\"><div class=big>{}</div><div class=sentence>{}</div><div class=meta>{} · {} nodes · nemesis {} · seed {} · {}</div></header>",
        esc(&p.verdict.to_uppercase()),
        esc(&verdict_sentence(p)),
        esc(&workload),
        esc(&setting(cfg, "nodes").unwrap_or_else(|| "?".into())),
        esc(&setting(cfg, "nemesis_arg")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "none".into())),
        esc(&seed),
        esc(&p.run_name)
    );
    if let Some(w) = p.witness {
        witness_section(&mut h, p, w);
    }
    run_section(&mut h, p, &seed);
    latency_section(&mut h, p);
    h.push_str("<section id=plots><h2>Plots</h2>");
    for c in p.charts {
        let _ = write!(h, "<h3>{}</h3>", esc(c.title));
        if let Some(n) = &c.note {
            let _ = write!(h, "<div class=note>Capped: {}.</div>", esc(n));
        }
        h.push_str(c.svg.trim_end());
    }
    h.push_str("</section>");
    faults_section(&mut h, p);
    membership_section(&mut h, p);
    node_exits_section(&mut h, p);
    coverage_section(&mut h, p);
    if !p.run.notes.is_empty() {
        h.push_str("<section id=notes><h2>Notes</h2>");
        for n in &p.run.notes {
            let _ = write!(h, "<div class=note>{}</div>", esc(n));
        }
        h.push_str("</section>");
    }
    let _ = writeln!(
        h,
        "<p class=muted>Written by faultline {} from the files in this run folder; regenerate with <code>faultline report {}</code>.</p></main></body></html>",
        env!("CARGO_PKG_VERSION"),
        esc(&p.dir)
    );
    h
}

fn witness_section(h: &mut String, p: &Page<'_>, w: &Witness) {
    let by_index: HashMap<u64, &super::load::OpRec> =
        p.run.ops.iter().map(|o| (o.index, o)).collect();
    h.push_str("<section id=witness><h2>Why it is invalid</h2>");
    let (plain, named) = p.account.cloned().unwrap_or_else(|| {
        // The checker's first sentence(s), before the list of ops.
        let first = w.explanation.lines().next().unwrap_or("").to_string();
        (first, Vec::new())
    });
    let _ = write!(h, "<p class=explain>{}</p>", esc(&plain));
    if let Some((svg, note)) = witness::timeline(w, &named, &p.run.ops, &by_index, p.run.end_ns) {
        if let Some(n) = note {
            let _ = write!(h, "<div class=note>{}</div>", esc(&n));
        }
        h.push_str(svg.trim_end());
    }
    let _ = write!(
        h,
        "<h3>Minimal op set: {} ops{}</h3><table><tr><th>op</th><th>process</th><th>f</th><th>value</th><th>outcome</th><th class=n>invoked</th><th class=n>completed</th></tr>",
        w.minimal.len(),
        if w.minimal_complete {
            " (no op can be removed)"
        } else {
            " (shrinking ran out of time: reduced, maybe not minimal)"
        }
    );
    let bad = w.op.as_ref().map(|o| o.index);
    let mut rows: Vec<&witness::WitnessOp> = w.minimal.iter().collect();
    if let Some(o) = &w.op
        && !rows.iter().any(|r| r.index == o.index)
    {
        rows.push(o);
    }
    rows.sort_by_key(|r| by_index.get(&r.index).map(|o| o.invoke_ns).unwrap_or(0));
    for r in rows {
        let o = by_index.get(&r.index);
        let is_bad = Some(r.index) == bad;
        let _ = write!(
            h,
            "<tr{}><td>#{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            if is_bad { " class=bad" } else { "" },
            r.index,
            if is_bad {
                " ✖ cannot be linearized"
            } else {
                ""
            },
            r.process,
            esc(&r.f),
            cut(&r.value.to_string()),
            esc(&r.outcome),
            o.map(|o| witness::secs(o.invoke_ns)).unwrap_or_default(),
            o.and_then(|o| o.complete_ns)
                .map(witness::secs)
                .unwrap_or_else(|| "–".into()),
        );
    }
    h.push_str("</table>");
    let _ = write!(
        h,
        "<h3>Model state</h3><p>After the longest linearizable prefix ({} ops), {}.</p>",
        w.prefix_len,
        cut(&w.state)
    );
    if !w.prefix_tail.is_empty() {
        h.push_str("<p class=muted>Last ops of that prefix, in linearization order: ");
        let parts: Vec<String> = w.prefix_tail.iter().map(|o| cut(&o.describe())).collect();
        h.push_str(&parts.join(" · "));
        h.push_str("</p>");
    }
    let _ = write!(
        h,
        "<h3>The checker's account</h3><pre>{}</pre></section>",
        esc(&w.explanation)
    );
}

fn run_section(h: &mut String, p: &Page<'_>, seed: &str) {
    let cfg = &p.run.config;
    h.push_str("<section id=run><h2>Run</h2><table class=kv>");
    let _ = write!(h, "<tr><td>seed</td><td class=seed>{}</td></tr>", esc(seed));
    match cfg
        .get("settings")
        .cloned()
        .map(serde_json::from_value::<crate::settings::Settings>)
    {
        Some(Ok(settings)) => {
            for l in crate::settings::in_words(&settings) {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}{}</td></tr>",
                    esc(l.label),
                    cut(&l.text),
                    if l.drawn {
                        " <span class=t>drawn by the seed</span>"
                    } else {
                        ""
                    }
                );
            }
        }
        Some(Err(e)) => {
            let _ = write!(
                h,
                "<tr><td>settings</td><td>config.json's settings cannot be read: {}</td></tr>",
                esc(&e.to_string())
            );
        }
        None => {}
    }
    if let Some(cl) = cfg.get("command_line").and_then(Value::as_array) {
        let line: Vec<&str> = cl.iter().filter_map(Value::as_str).collect();
        let _ = write!(
            h,
            "<tr><td>command line</td><td><code>{}</code></td></tr>",
            esc(&line.join(" "))
        );
    }
    if let Some(syn) = cfg.get("synthetic").and_then(Value::as_str) {
        let _ = write!(h, "<tr><td>synthetic</td><td>{}</td></tr>", esc(syn));
    }
    if let Some(v) = cfg.get("versions") {
        let _ = write!(
            h,
            "<tr><td>versions</td><td>{}</td></tr>",
            esc(&v.to_string())
        );
    }
    h.push_str("</table>");
    // Counts by function and outcome.
    let mut by_f: BTreeMap<&str, [u64; 4]> = BTreeMap::new();
    let mut total = [0u64; 4];
    for o in &p.run.ops {
        let i = match o.outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            Outcome::Info => 2,
            Outcome::Pending => 3,
        };
        by_f.entry(o.f.as_str()).or_default()[i] += 1;
        total[i] += 1;
    }
    let _ = write!(
        h,
        "<h3>Operations: {}</h3><table><tr><th>f</th><th class=n>ok</th><th class=n>fail</th><th class=n>info</th><th class=n>pending</th></tr>",
        p.run.ops.len()
    );
    for (f, c) in by_f
        .iter()
        .map(|(f, c)| (*f, *c))
        .chain(std::iter::once(("all", total)))
    {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            esc(f),
            c[0],
            c[1],
            c[2],
            c[3]
        );
    }
    h.push_str("</table></section>");
}

fn latency_section(h: &mut String, p: &Page<'_>) {
    h.push_str("<section id=latency><h2>Latency (ms)</h2><table><tr><th>f</th><th>outcome</th><th class=n>count</th><th class=n>p50</th><th class=n>p90</th><th class=n>p99</th><th class=n>p99.9</th><th class=n>max</th></tr>");
    for (f, o, hist) in p.lat.rows() {
        let q = super::latency::quantiles(hist);
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            esc(&f),
            esc(&o),
            q["count"],
            num(&q["p50"]),
            num(&q["p90"]),
            num(&q["p99"]),
            num(&q["p999"]),
            num(&q["max"])
        );
    }
    let _ = write!(
        h,
        "</table><p class=muted>From HdrHistograms (3 significant digits); the overall one is in <code>latency.hgrm</code>. {} ops never completed and have no latency.</p></section>",
        p.lat.pending
    );
}

/// Nodes that stopped without being asked to (a node refusing a damaged
/// log, a crash), with the last error line of each one's log.
fn node_exits_section(h: &mut String, p: &Page<'_>) {
    let Some(exits) = p
        .run
        .results
        .get("node_exits_unasked")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    else {
        return;
    };
    h.push_str("<section id=node-exits><h2>Nodes that stopped on their own</h2><p class=muted>A node that exits unasked stays down until the nemesis restarts it; the run goes on with the others.</p><table><tr><th>node</th><th class=n>at (s)</th><th>how</th><th>last error in its log</th></tr>");
    for e in exits {
        let node = e["node"].as_str().unwrap_or("?");
        let log = std::path::Path::new(&p.dir)
            .join("nodes")
            .join(format!("{node}.log"));
        let last_error = std::fs::read_to_string(&log)
            .ok()
            .and_then(|t| {
                t.lines()
                    .rev()
                    .find(|l| l.contains("ERROR") || l.contains("error:") || l.contains("corrupt"))
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=n>{:.3}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(node),
            e["time"].as_f64().unwrap_or(0.0) / 1e9,
            esc(e["exit"].as_str().unwrap_or("")),
            esc(&last_error)
        );
    }
    h.push_str("</table></section>");
}

/// What the run exercised, from `results.json`'s coverage counts.
fn coverage_section(h: &mut String, p: &Page<'_>) {
    let Some(cov) = p.run.results.get("coverage").and_then(Value::as_object) else {
        return;
    };
    if cov.is_empty() {
        return;
    }
    h.push_str("<section id=coverage><h2>What this run exercised</h2><p class=muted>Log lines of the nodes that match each pattern of the system's spec; 0 means the run never took that path.</p><table><tr><th>event</th><th class=n>count</th></tr>");
    for (k, v) in cov {
        let n = v.as_u64().unwrap_or(0);
        let _ = write!(
            h,
            "<tr{}><td>{}</td><td class=n>{n}</td></tr>",
            if n == 0 { " class=muted" } else { "" },
            esc(&k.replace('_', " "))
        );
    }
    h.push_str("</table></section>");
}

fn faults_section(h: &mut String, p: &Page<'_>) {
    let _ = write!(
        h,
        "<section id=faults><h2>Fault windows and availability</h2><p class=muted>{} windows (from {}). A window runs from the action that started the fault to the one that ended it. <b>Last ok before</b>: from the last ok completion before the fault to its start. <b>Recovery</b>: from the fault's end to the first ok completion after it. <b>Longest gap</b>: the longest stretch without an ok completion that overlaps the window.</p>",
        p.avail.len(),
        esc(p.run.windows_source)
    );
    if p.avail.is_empty() {
        h.push_str("<p>No faults were injected.</p></section>");
        return;
    }
    h.push_str("<table><tr><th>fault</th><th class=n>start (s)</th><th class=n>end (s)</th><th class=n>last ok before (ms)</th><th class=n>ok during</th><th class=n>recovery (ms)</th><th class=n>longest gap (ms)</th></tr>");
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "–".into());
    for a in p.avail.iter().take(MAX_WINDOW_ROWS) {
        let _ = write!(
            h,
            "<tr><td><span class=chip style=\"background:{}\"></span>{}</td><td class=n>{:.3}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            super::plot::fault_colour(a.kind),
            esc(&a.label),
            a.start_s,
            a.end_s
                .map(|e| format!("{e:.3}"))
                .unwrap_or_else(|| "never ended".into()),
            opt(a.last_ok_before_ms),
            a.ok_during,
            if a.end_s.is_some() {
                opt(a.recovery_ms)
            } else {
                "–".into()
            },
            opt(a.longest_gap_ms),
        );
    }
    h.push_str("</table>");
    if p.avail.len() > MAX_WINDOW_ROWS {
        let _ = write!(
            h,
            "<div class=note>Capped: the first {MAX_WINDOW_ROWS} of {} windows are listed; results.json has all.</div>",
            p.avail.len()
        );
    }
    h.push_str("</section>");
}

/// The member nemesis's steps: each with the voters it left (as the
/// leader saw them after the change), or why it was refused.
fn membership_section(h: &mut String, p: &Page<'_>) {
    let Some(m) = &p.run.membership else {
        return;
    };
    let _ = write!(
        h,
        "<section id=membership><h2>Membership</h2><p>{}.</p><p class=muted>Each step as the leader saw the configuration once it was carried out; a refused step changes nothing and is tried again at the next membership step.</p><table><tr><th class=n>start (s)</th><th class=n>took (s)</th><th>step</th><th class=n>voters</th><th>voters after</th><th>learners</th><th>leader</th></tr>",
        esc(&m.line())
    );
    for st in m.steps.iter().take(MAX_WINDOW_ROWS) {
        let secs = |ns: u64| ns as f64 / 1e9;
        if st.ok {
            let _ = write!(
                h,
                "<tr><td class=n>{:.3}</td><td class=n>{:.3}</td><td><span class=chip style=\"background:{}\"></span>{}</td><td class=n>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                secs(st.time),
                secs(st.done.saturating_sub(st.time)),
                super::plot::fault_colour(crate::nemesis::NemesisKind::Member),
                esc(&st.step),
                st.voters.len(),
                esc(&st.voters.join(", ")),
                esc(&st.learners.join(", ")),
                esc(st.leader.as_deref().unwrap_or("–")),
            );
        } else {
            let _ = write!(
                h,
                "<tr><td class=n>{:.3}</td><td class=n>{:.3}</td><td>{} (refused)</td><td colspan=4>{}</td></tr>",
                secs(st.time),
                secs(st.done.saturating_sub(st.time)),
                esc(&st.step),
                esc(&cut(&st.result)),
            );
        }
    }
    h.push_str("</table>");
    if m.steps.len() > MAX_WINDOW_ROWS {
        let _ = write!(
            h,
            "<div class=note>Capped: the first {MAX_WINDOW_ROWS} of {} steps are listed; results.json has all.</div>",
            m.steps.len()
        );
    }
    h.push_str("</section>");
}

/// The outcome counts line, e.g. `ok 120 · fail 3 · info 1 · pending 0`.
pub fn counts_line(run: &RunData) -> String {
    let mut c: BTreeMap<&str, u64> = BTreeMap::new();
    for o in &run.ops {
        *c.entry(outcome_name(o.outcome)).or_default() += 1;
    }
    ["ok", "fail", "info", "pending"]
        .iter()
        .map(|k| format!("{k} {}", c.get(k).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(" · ")
}

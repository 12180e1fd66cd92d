//! Reports of a stored run: latency histograms (`latency.hgrm`), SVG plots,
//! availability around each fault window, and `report.html`, one
//! self-contained page. [`write_report`] is the one call a run makes at its
//! end; `faultline report RUN_DIR` calls it on a stored run.

pub mod availability;
pub mod charts;
pub mod demo;
pub mod explain;
pub mod html;
pub mod latency;
pub mod load;
pub mod plot;
pub mod witness;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

use crate::store::RunDir;

/// What [`write_report`] produced, for the run's summary and `results.json`.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    /// The run folder.
    pub dir: PathBuf,
    /// The page.
    pub html: PathBuf,
    /// Its size in bytes.
    pub html_bytes: u64,
    /// Every file written (page, plots, `latency.hgrm`).
    pub files: Vec<PathBuf>,
    /// The verdict shown (`valid`, `invalid`, `unknown`).
    pub verdict: String,
    /// The latency quantile table (see [`latency::Latencies::table`]).
    pub latency: Value,
    /// Availability per fault window.
    pub availability: Value,
    /// Size of the minimal op set, for an invalid run with a witness.
    pub minimal_ops: Option<usize>,
    /// The op that cannot be linearized, described.
    pub offending: Option<String>,
    /// What the page notes (missing files, caps).
    pub notes: Vec<String>,
    /// For an invalid run: which operations contradict each other and how
    /// (the page's first sentence), when an account fits the witness.
    pub why: Option<String>,
}

impl ReportSummary {
    /// Lines for the run's printed summary: latency quantiles per f and
    /// outcome, availability per fault window, and where the report is.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(why) = &self.why {
            out.push(format!("  why       {why}"));
        }
        let q = |v: &Value| {
            let g = |k: &str| {
                v[k].as_f64()
                    .map(|x| format!("{x:.1}"))
                    .unwrap_or_else(|| "–".into())
            };
            format!(
                "n {:>6}  p50 {:>7}  p90 {:>7}  p99 {:>7}  p99.9 {:>7}  max {:>7} ms",
                v["count"],
                g("p50"),
                g("p90"),
                g("p99"),
                g("p999"),
                g("max")
            )
        };
        out.push(format!(
            "  latency   all completed  {}",
            q(&self.latency["overall"])
        ));
        if let Some(by_f) = self.latency["by_f"].as_object() {
            for (f, m) in by_f {
                if let Some(m) = m.as_object() {
                    for (o, v) in m {
                        out.push(format!("            {:<14} {}", format!("{f} {o}"), q(v)));
                    }
                }
            }
        }
        if let Some(ws) = self.availability.as_array() {
            for w in ws {
                let ms = |k: &str| {
                    w[k].as_f64()
                        .map(|x| format!("{x:.0} ms"))
                        .unwrap_or_else(|| "–".into())
                };
                out.push(format!(
                    "  fault     {:<28} at {:>8.3} s  last ok before {:>8}  recovery {:>8}  longest gap {:>8}",
                    w["label"].as_str().unwrap_or(""),
                    w["start_s"].as_f64().unwrap_or(0.0),
                    ms("last_ok_before_start_ms"),
                    ms("recovery_ms"),
                    ms("longest_gap_without_ok_ms"),
                ));
            }
        }
        out.push(format!(
            "  report    {}  ({:.0} KiB)",
            self.html.display(),
            self.html_bytes as f64 / 1024.0
        ));
        out
    }

    /// The fields a run merges into `results.json` (`write_report` already did).
    pub fn results_fields(&self) -> Value {
        json!({"latency": self.latency, "availability": self.availability})
    }
}

/// Reads the run folder `dir` and writes `latency.hgrm`, the SVG plots and
/// `report.html` into it; adds `latency` (the quantile table) and
/// `availability` to `results.json` when that file exists. Missing
/// `nemesis.jsonl`, `config.json` or `results.json` are noted on the page.
pub fn write_report(dir: &Path) -> Result<ReportSummary> {
    let run = load::load(dir)?;
    let lat = latency::Latencies::of(&run.ops);
    let avail = availability::availability(&run.ops, &run.windows, run.end_ns);
    let charts = charts::charts(&run, &lat);
    let verdict = run
        .results
        .get("verdict")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let witness = if verdict == "invalid" {
        witness::find(&run.results)
    } else {
        None
    };
    let run_name = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .components()
        .rev()
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    let mut files = Vec::new();
    let write = |name: &str, text: &str, files: &mut Vec<PathBuf>| -> Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
        files.push(p);
        Ok(())
    };
    write("latency.hgrm", &latency::hgrm(&lat.overall), &mut files)?;
    for c in &charts {
        write(c.file, &c.svg, &mut files)?;
    }
    let mut notes = run.notes.clone();
    notes.extend(
        charts
            .iter()
            .filter_map(|c| c.note.as_ref().map(|n| format!("{}: {n}", c.file))),
    );
    // The account of the violation, once: the page and the summary show it.
    let account = witness.as_ref().and_then(|w| {
        let by_index: std::collections::HashMap<u64, &load::OpRec> =
            run.ops.iter().map(|o| (o.index, o)).collect();
        explain::explain(w, &by_index, &run.ops, &run.windows)
    });
    let page = html::Page {
        run_name,
        run: &run,
        lat: &lat,
        charts: &charts,
        avail: &avail,
        witness: witness.as_ref(),
        account: account.as_ref(),
        verdict: verdict.clone(),
        dir: dir.display().to_string(),
    };
    let why = account.as_ref().map(|(text, _)| text.clone());
    let text = html::render(&page);
    write("report.html", &text, &mut files)?;
    let latency = lat.table();
    let availability = Value::Array(
        avail
            .iter()
            .map(availability::Availability::to_json)
            .collect(),
    );
    let folder = RunDir::open(dir)?;
    if let Some(mut results) = folder.read_results()? {
        results.latency = Some(latency.clone());
        results.availability = Some(availability.clone());
        folder.write_results(&results)?;
    }
    Ok(ReportSummary {
        dir: dir.to_path_buf(),
        html: dir.join("report.html"),
        html_bytes: text.len() as u64,
        files,
        verdict,
        latency,
        availability,
        minimal_ops: witness.as_ref().map(|w| w.minimal.len()),
        offending: witness
            .as_ref()
            .and_then(|w| w.op.as_ref().map(witness::WitnessOp::describe)),
        notes,
        why,
    })
}

/// `faultline report`: regenerate plots and `report.html` for a stored run.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// A run folder, or `latest` (the newest run in --store).
    #[arg(default_value = "latest")]
    pub run: String,
    /// Directory of stored runs (for `latest`).
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// Testing aid: first write a synthetic run (`valid` or `invalid`) into RUN.
    #[arg(long, hide = true, value_parser = ["valid", "invalid"])]
    pub demo: Option<String>,
    /// Testing aid: client ops in the synthetic run.
    #[arg(long, hide = true, default_value_t = 3000)]
    pub demo_ops: usize,
    /// Testing aid: the synthetic run's seed.
    #[arg(long, hide = true, default_value_t = 7)]
    pub demo_seed: u64,
}

/// Runs `faultline report`; prints where the page is.
pub fn run(args: &ReportArgs) -> Result<()> {
    let dir = crate::store::resolve(&args.run, &args.store);
    if let Some(kind) = &args.demo {
        let kind = if kind == "invalid" {
            demo::DemoKind::Invalid
        } else {
            demo::DemoKind::Valid
        };
        demo::write_demo_run(&dir, kind, args.demo_ops, args.demo_seed)?;
    }
    let s = write_report(&dir)?;
    // A closed stdout (e.g. piped into `head`) must not turn a written report into a panic.
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}: {}", dir.display(), s.verdict);
    for l in s.summary_lines() {
        let _ = writeln!(out, "{l}");
    }
    for n in &s.notes {
        let _ = writeln!(out, "  note      {n}");
    }
    Ok(())
}

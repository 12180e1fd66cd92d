//! The run's four plots: latency over time (one dot per op, coloured by
//! outcome), latency quantiles over time, throughput over time by outcome,
//! and the latency distribution. Fault windows are shaded and labelled on
//! the time plots. Large runs are drawn capped: ops that land on the same
//! pixel are drawn once, and past [`MAX_DOTS`] dots a deterministic stride
//! sample is drawn; every cap is stated on the plot.

use super::latency::{Latencies, curve};
use super::load::{OpRec, RunData};
use super::plot::{self, Band, Frame, Scale, Svg};
use faultline_history::Outcome;
use std::collections::HashSet;

/// Most dots drawn on the latency-over-time plot.
pub const MAX_DOTS: usize = 40_000;
/// Most time bins on the binned plots.
const MAX_BINS: usize = 150;

/// One plot: its file name, SVG text and what was left out, if anything.
pub struct Chart {
    /// File name in the run folder, e.g. `latency-raw.svg`.
    pub file: &'static str,
    /// Heading on the page.
    pub title: &'static str,
    /// The SVG document.
    pub svg: String,
    /// What the plot does not show, in words (caps, sampling).
    pub note: Option<String>,
}

const W: f64 = 1000.0;
const H: f64 = 360.0;

fn time_frame(end_s: f64, y: Scale) -> Frame {
    Frame {
        left: 64.0,
        top: 60.0,
        width: W - 64.0 - 20.0,
        height: H - 60.0 - 48.0,
        x: Scale::linear(0.0, end_s.max(0.001)),
        y,
    }
}

fn bands(run: &RunData) -> Vec<Band> {
    let end = run.end_ns;
    run.windows
        .iter()
        .map(|w| Band {
            start: w.start_ns as f64 / 1e9,
            end: w.end_ns.unwrap_or(end) as f64 / 1e9,
            kind: w.kind,
            label: w.label.clone(),
        })
        .collect()
}

fn colour(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => plot::OK,
        Outcome::Fail => plot::FAIL,
        _ => plot::INFO,
    }
}

/// Every plot for a run, in page order.
pub fn charts(run: &RunData, lat: &Latencies) -> Vec<Chart> {
    vec![
        latency_raw(run),
        latency_quantiles(run),
        rate(run),
        distribution(lat),
    ]
}

fn max_latency_ms(ops: &[OpRec]) -> f64 {
    ops.iter()
        .filter_map(OpRec::latency_ns)
        .max()
        .map(|n| n as f64 / 1e6)
        // Headroom so the slowest ops do not sit on the frame under the labels.
        .map(|m| m * 1.6)
        .unwrap_or(1.0)
}

fn min_latency_ms(ops: &[OpRec]) -> f64 {
    ops.iter()
        .filter_map(OpRec::latency_ns)
        .min()
        .map(|n| n as f64 / 1e6)
        .unwrap_or(0.1)
}

fn latency_raw(run: &RunData) -> Chart {
    let end_s = run.end_ns as f64 / 1e9;
    let f = time_frame(
        end_s,
        Scale::log(min_latency_ms(&run.ops), max_latency_ms(&run.ops)),
    );
    let mut svg = Svg::new(W, H);
    svg.title("Latency of every op (by invocation time)");
    svg.axes(&f, "time since start (s)", "latency (ms, log)");
    svg.bands(&f, &bands(run));
    // One dot per occupied pixel and outcome: dense runs keep their shape
    // and every outlier, in a bounded number of marks.
    let mut seen: HashSet<(i32, i32, u8)> = HashSet::new();
    let mut per: [Vec<(f64, f64)>; 3] = Default::default();
    let mut drawn_ops = 0usize;
    let mut without_latency = 0usize;
    for op in &run.ops {
        let Some(lat) = op.latency_ns() else {
            without_latency += 1;
            continue;
        };
        let x = f.px(op.invoke_ns as f64 / 1e9);
        let y = f.py(lat as f64 / 1e6);
        let slot = match op.outcome {
            Outcome::Ok => 0u8,
            Outcome::Fail => 1,
            _ => 2,
        };
        drawn_ops += 1;
        if seen.insert((x.round() as i32, y.round() as i32, slot)) {
            per[slot as usize].push((x, y));
        }
    }
    let dots: usize = per.iter().map(Vec::len).sum();
    let stride = dots.div_ceil(MAX_DOTS).max(1);
    // Failures and indeterminate ops are rarer and matter more: draw them on top.
    for (slot, o) in [
        (0usize, Outcome::Ok),
        (2, Outcome::Info),
        (1, Outcome::Fail),
    ] {
        let pts: Vec<(f64, f64)> = per[slot].iter().step_by(stride).copied().collect();
        svg.dots(&pts, colour(o), 3.0, 0.75);
    }
    let count = |o: Outcome| {
        run.ops
            .iter()
            .filter(|p| p.outcome == o && p.complete_ns.is_some())
            .count()
    };
    svg.legend(
        &f,
        &[
            (plot::OK, format!("ok ({})", count(Outcome::Ok))),
            (plot::FAIL, format!("fail ({})", count(Outcome::Fail))),
            (plot::INFO, format!("info ({})", count(Outcome::Info))),
        ],
    );
    // Ops on one pixel sharing a dot loses nothing visible; a stride does.
    let mut foot = Vec::new();
    if dots < drawn_ops {
        foot.push(format!(
            "{drawn_ops} ops drawn as {dots} dots (ops on the same pixel share one)"
        ));
    }
    let note = (stride > 1).then(|| {
        format!(
            "{dots} distinct dots is more than {MAX_DOTS}: every {stride}th is drawn (all {drawn_ops} ops are in the tables and histograms)"
        )
    });
    if let Some(n) = &note {
        foot.push(n.clone());
    }
    if without_latency > 0 {
        foot.push(format!(
            "{without_latency} ops never completed and have no latency"
        ));
    }
    if !foot.is_empty() {
        svg.footnote(&foot.join("; "));
    }
    Chart {
        file: "latency-raw.svg",
        title: "Latency over time",
        svg: svg.finish(),
        note,
    }
}

/// Bin width (s) so that a run of `end_s` has at most [`MAX_BINS`] bins.
fn bin_width(end_s: f64) -> f64 {
    plot::nice_step((end_s / MAX_BINS as f64).max(0.01))
}

fn latency_quantiles(run: &RunData) -> Chart {
    let end_s = run.end_ns as f64 / 1e9;
    let bw = bin_width(end_s);
    let nbins = ((end_s / bw).ceil() as usize).max(1);
    let mut bins: Vec<Vec<u64>> = vec![Vec::new(); nbins];
    for op in &run.ops {
        if let Some(lat) = op.latency_ns() {
            let i = ((op.invoke_ns as f64 / 1e9 / bw) as usize).min(nbins - 1);
            bins[i].push(lat);
        }
    }
    let f = time_frame(
        end_s,
        Scale::log(min_latency_ms(&run.ops), max_latency_ms(&run.ops)),
    );
    let mut svg = Svg::new(W, H);
    svg.title(&format!(
        "Latency quantiles over time ({bw} s bins, every completed op)"
    ));
    svg.axes(&f, "time since start (s)", "latency (ms, log)");
    svg.bands(&f, &bands(run));
    let qs: [(f64, &str, &str); 4] = [
        (0.5, "p50", "#1f77b4"),
        (0.9, "p90", "#2ca02c"),
        (0.99, "p99", "#ff7f0e"),
        (1.0, "max", "#d62728"),
    ];
    for b in &mut bins {
        b.sort_unstable();
    }
    for (q, _, c) in qs {
        let pts: Vec<(f64, f64)> = bins
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.is_empty())
            .map(|(i, b)| {
                let k = ((q * b.len() as f64).ceil() as usize).clamp(1, b.len()) - 1;
                (f.px((i as f64 + 0.5) * bw), f.py(b[k] as f64 / 1e6))
            })
            .collect();
        svg.line(&pts, c, 1.6, None);
    }
    svg.legend(
        &f,
        &qs.iter()
            .map(|(_, n, c)| (*c, n.to_string()))
            .collect::<Vec<_>>(),
    );
    Chart {
        file: "latency-quantiles.svg",
        title: "Latency quantiles over time",
        svg: svg.finish(),
        note: None,
    }
}

fn rate(run: &RunData) -> Chart {
    let end_s = run.end_ns as f64 / 1e9;
    let bw = bin_width(end_s);
    let nbins = ((end_s / bw).ceil() as usize).max(1);
    let mut bins = vec![[0u64; 3]; nbins];
    for op in &run.ops {
        let Some(c) = op.complete_ns else { continue };
        let i = ((c as f64 / 1e9 / bw) as usize).min(nbins - 1);
        let slot = match op.outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            _ => 2,
        };
        bins[i][slot] += 1;
    }
    let peak = bins
        .iter()
        .flat_map(|b| b.iter())
        .copied()
        .max()
        .unwrap_or(0) as f64
        / bw;
    let f = time_frame(end_s, Scale::linear(0.0, (peak * 1.15).max(1.0)));
    let mut svg = Svg::new(W, H);
    svg.title(&format!(
        "Throughput by outcome (completions per second, {bw} s bins)"
    ));
    svg.axes(&f, "time since start (s)", "ops/s");
    svg.bands(&f, &bands(run));
    for (slot, c, dash) in [
        (0usize, plot::OK, None),
        (2, plot::INFO, Some("5 3")),
        (1, plot::FAIL, None),
    ] {
        let pts: Vec<(f64, f64)> = bins
            .iter()
            .enumerate()
            .map(|(i, b)| (f.px((i as f64 + 0.5) * bw), f.py(b[slot] as f64 / bw)))
            .collect();
        svg.line(&pts, c, 1.6, dash);
    }
    svg.legend(
        &f,
        &[
            (plot::OK, "ok".to_string()),
            (plot::FAIL, "fail".to_string()),
            (plot::INFO, "info".to_string()),
        ],
    );
    Chart {
        file: "rate.svg",
        title: "Throughput over time",
        svg: svg.finish(),
        note: None,
    }
}

/// A named, coloured curve of (quantile, ms) points.
type Series = (String, &'static str, Vec<(f64, f64)>);

fn distribution(lat: &Latencies) -> Chart {
    // HdrHistogram's classic view: x is 1/(1-q) on a log axis.
    let mut series: Vec<Series> = vec![("all completed".to_string(), "#222", curve(&lat.overall))];
    let palette = [
        "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    ];
    for (i, (f, m)) in lat.by_f.iter().enumerate() {
        if let Some(h) = m.get("ok") {
            series.push((format!("{f} ok"), palette[i % palette.len()], curve(h)));
        }
    }
    let max_x = series
        .iter()
        .flat_map(|s| s.2.iter())
        .filter(|(q, _)| *q < 1.0)
        .map(|(q, _)| 1.0 / (1.0 - q))
        .fold(10.0f64, f64::max)
        .min(1e6);
    let (min_y, max_y) = series
        .iter()
        .flat_map(|s| s.2.iter())
        .map(|p| p.1)
        .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let f = Frame {
        left: 64.0,
        top: 60.0,
        width: W - 64.0 - 20.0,
        height: H - 60.0 - 48.0,
        x: Scale::log(1.0, max_x),
        // Log: timeouts (info ops) would flatten every other curve on a linear axis.
        y: Scale::log(min_y.min(max_y), max_y * 1.3),
    };
    let mut svg = Svg::new(W, H);
    svg.title("Latency by percentile (HdrHistogram view; latency.hgrm)");
    // Percentile labels instead of 1/(1-q) numbers.
    svg.rect(
        f.left,
        f.top,
        f.width,
        f.height,
        r##"fill="#fafafa" stroke="#ccc""##,
    );
    let mut decade = 1.0;
    let mut grid = String::new();
    while decade <= max_x * 1.0001 {
        let x = f.px(decade);
        let pct = 100.0 - 100.0 / decade;
        let label = if decade == 1.0 {
            "0%".to_string()
        } else {
            format!("{}%", trim_pct(pct))
        };
        grid.push_str(&format!("M{x:.1} {:.1}V{:.1}", f.top, f.top + f.height));
        svg.text(
            x,
            f.top + f.height + 15.0,
            "middle",
            r##"fill="#444""##,
            &label,
        );
        decade *= 10.0;
    }
    for (v, label) in f.y.ticks() {
        let y = f.py(v);
        grid.push_str(&format!("M{:.1} {y:.1}H{:.1}", f.left, f.left + f.width));
        svg.text(f.left - 5.0, y + 4.0, "end", r##"fill="#444""##, &label);
    }
    svg.raw(&format!(
        r##"<path d="{grid}" stroke="#e3e3e3" stroke-width="1" fill="none"/>"##
    ));
    svg.text(
        f.left + f.width / 2.0,
        f.top + f.height + 32.0,
        "middle",
        r##"fill="#222""##,
        "percentile",
    );
    svg.raw(&format!(
        r##"<text x="14" y="{y:.1}" text-anchor="middle" fill="#222" transform="rotate(-90 14 {y:.1})">latency (ms, log)</text>"##,
        y = f.top + f.height / 2.0
    ));
    for (_, c, pts) in &series {
        let px: Vec<(f64, f64)> = pts
            .iter()
            .map(|(q, v)| {
                let x = if *q >= 1.0 {
                    max_x
                } else {
                    (1.0 / (1.0 - q)).min(max_x)
                };
                (f.px(x), f.py(*v))
            })
            .collect();
        svg.line(&px, c, 1.8, None);
    }
    svg.legend(
        &f,
        &series
            .iter()
            .map(|(n, c, _)| (*c, n.clone()))
            .collect::<Vec<_>>(),
    );
    Chart {
        file: "latency-dist.svg",
        title: "Latency distribution",
        svg: svg.finish(),
        note: None,
    }
}

fn trim_pct(p: f64) -> String {
    let s = format!("{p:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

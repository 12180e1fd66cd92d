//! Latency: an HdrHistogram per (`f`, outcome) and overall, the quantile
//! table for `results.json` and the summary, and `latency.hgrm` in the
//! percentile-distribution text format HdrHistogram's own tools write and
//! plot (`outputPercentileDistribution`, values in milliseconds).

use super::load::{OpRec, outcome_name};
use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Significant digits kept by every histogram.
const SIGFIG: u8 = 3;
/// Largest latency recorded (1 hour in µs); longer ones are clamped.
const MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds.
pub type Hist = Histogram<u64>;

/// An empty histogram with the report's bounds.
pub fn new_hist() -> Hist {
    // Constant bounds the constructor accepts (1 ≤ low, high ≥ 2·low, 3 digits).
    Histogram::new_with_bounds(1, MAX_US, SIGFIG).expect("constant histogram bounds are valid")
}

/// Records one op's latency (µs, at least 1).
fn record(h: &mut Hist, latency_ns: u64) {
    let us = (latency_ns / 1000).clamp(1, MAX_US);
    // In range by construction.
    let _ = h.record(us);
}

/// The histograms of one run: overall (every completed op) and per (`f`, outcome).
pub struct Latencies {
    /// Every op that completed (ok, fail or info).
    pub overall: Hist,
    /// Every `ok` op.
    pub ok: Hist,
    /// Per function, per outcome (`ok`, `fail`, `info`).
    pub by_f: BTreeMap<String, BTreeMap<&'static str, Hist>>,
    /// Ops that never completed (no latency).
    pub pending: u64,
}

impl Latencies {
    /// Builds the histograms from a run's ops.
    pub fn of(ops: &[OpRec]) -> Latencies {
        let mut l = Latencies {
            overall: new_hist(),
            ok: new_hist(),
            by_f: BTreeMap::new(),
            pending: 0,
        };
        for op in ops {
            let Some(lat) = op.latency_ns() else {
                l.pending += 1;
                continue;
            };
            record(&mut l.overall, lat);
            if op.outcome == faultline_history::Outcome::Ok {
                record(&mut l.ok, lat);
            }
            let h = l
                .by_f
                .entry(op.f.clone())
                .or_default()
                .entry(outcome_name(op.outcome))
                .or_insert_with(new_hist);
            record(h, lat);
        }
        l
    }

    /// The quantile table: `{"unit": "ms", "overall": {...}, "ok": {...},
    /// "by_f": {f: {outcome: {...}}}}`, each entry with count, p50, p90, p99,
    /// p999, max and mean in ms (`null` quantiles for empty histograms).
    pub fn table(&self) -> Value {
        let by_f: Map<String, Value> = self
            .by_f
            .iter()
            .map(|(f, m)| {
                let inner: Map<String, Value> = m
                    .iter()
                    .map(|(o, h)| (o.to_string(), quantiles(h)))
                    .collect();
                (f.clone(), Value::Object(inner))
            })
            .collect();
        json!({
            "unit": "ms",
            "overall": quantiles(&self.overall),
            "ok": quantiles(&self.ok),
            "by_f": by_f,
            "pending_without_latency": self.pending,
        })
    }

    /// Rows for tables: (label f, label outcome, histogram), overall rows first.
    pub fn rows(&self) -> Vec<(String, String, &Hist)> {
        let mut rows = vec![
            (
                "all".to_string(),
                "all completed".to_string(),
                &self.overall,
            ),
            ("all".to_string(), "ok".to_string(), &self.ok),
        ];
        for (f, m) in &self.by_f {
            for (o, h) in m {
                rows.push((f.clone(), o.to_string(), h));
            }
        }
        rows
    }
}

/// Milliseconds from a histogram value in µs.
pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Count, p50, p90, p99, p99.9, max and mean of a histogram, in ms.
pub fn quantiles(h: &Hist) -> Value {
    if h.is_empty() {
        return json!({"count": 0, "p50": null, "p90": null, "p99": null, "p999": null, "max": null, "mean": null});
    }
    let q = |x: f64| round3(ms(h.value_at_quantile(x)));
    json!({
        "count": h.len(),
        "p50": q(0.5),
        "p90": q(0.9),
        "p99": q(0.99),
        "p999": q(0.999),
        "max": round3(ms(h.max())),
        "mean": round3(h.mean() / 1000.0),
    })
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The histogram as HdrHistogram's `outputPercentileDistribution` prints it
/// (5 ticks per half distance, values scaled from µs to ms).
pub fn hgrm(h: &Hist) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let digits = SIGFIG as usize;
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = ms(v.value_iterated_to());
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:>12.digits$} {q:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:>12.digits$} {q:>2.12} {total:>10}");
            }
        }
    }
    let (mean, sd, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean() / 1000.0, h.stdev() / 1000.0, ms(h.max()))
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.digits$}, StdDeviation   = {sd:>12.digits$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.digits$}, Total count    = {:>12}]",
        h.len()
    );
    // The sub-bucket count HdrHistogram derives from the significant digits:
    // the next power of two above 2 × 10^digits.
    let sub_buckets = (2.0 * 10f64.powi(SIGFIG as i32)).log2().ceil().exp2() as u64;
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets
    );
    out
}

/// Points of the percentile curve (quantile, ms) for plotting, as in `hgrm`.
pub fn curve(h: &Hist) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(5)
        .map(|v| (v.quantile_iterated_to(), ms(v.value_iterated_to())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgrm_has_hdrhistograms_layout() {
        let mut h = new_hist();
        for ms in 1..=1000u64 {
            record(&mut h, ms * 1_000_000);
        }
        let text = hgrm(&h);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        assert!(
            lines[2].starts_with("       1.000 0.000000000000          1           1.00"),
            "{}",
            lines[2]
        );
        let last_row = lines[lines.len() - 4];
        assert!(
            last_row.ends_with(" 1.000000000000       1000"),
            "{last_row}"
        );
        let mean = &lines[lines.len() - 3];
        assert!(mean.starts_with("#[Mean    =      500."), "{mean}");
        assert!(mean.contains(", StdDeviation   =      288."), "{mean}");
        assert_eq!(
            lines[lines.len() - 2],
            "#[Max     =     1000.447, Total count    =         1000]"
        );
        assert!(lines[lines.len() - 1].ends_with("SubBuckets     =         2048]"));
    }

    #[test]
    fn quantile_table_is_in_ms() {
        let mut h = new_hist();
        for ms in [1u64, 2, 3, 4, 100] {
            record(&mut h, ms * 1_000_000);
        }
        let q = quantiles(&h);
        assert_eq!(q["count"], 5);
        assert!((q["p50"].as_f64().unwrap() - 3.0).abs() < 0.01);
        assert!((q["max"].as_f64().unwrap() - 100.0).abs() < 0.1);
    }
}

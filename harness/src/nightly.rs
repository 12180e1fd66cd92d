//! `faultline nightly-report` (hidden): turns the run tables written by
//! `ci/nightly.sh` (one per shard) into one `junit.xml` (one test case per
//! run) and one `summary.md` (untuned detection per mistake; the correct
//! node and etcd under default runs, with what they exercised; the tuned
//! matrix with detection rates and median time to detection; wall time), so
//! the script stays thin.
//!
//! Time to detection of an invalid run: from the start of client traffic to
//! the invocation of the earliest op of the checker's witness (its op and its
//! shrunk op set, looked up in `history.jsonl`); when the witness names no op
//! (set and counter checkers), the run's traffic time (`time_limit_s`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde_json::Value;

/// Arguments of `faultline nightly-report`.
#[derive(Debug, Clone, clap::Args)]
pub struct NightlyReportArgs {
    /// A run table (repeat for shards): a header line, then `suite name
    /// expected exit wall_s run_dir [setup]`, tab-separated.
    #[arg(long, required = true)]
    pub results: Vec<PathBuf>,
    /// Where junit.xml and summary.md go.
    #[arg(long)]
    pub out: PathBuf,
    /// Wall time of the whole matrix, in seconds.
    #[arg(long, default_value_t = 0.0)]
    pub wall_s: f64,
    /// A note for summary.md (e.g. that the budget stopped the matrix).
    #[arg(long, default_value = "")]
    pub note: String,
}

/// One run of the matrix.
#[derive(Debug, Clone)]
pub struct RunRow {
    /// `correct` or the mistake's name.
    pub suite: String,
    /// The test case name (workload, nemesis, seed).
    pub name: String,
    /// `valid`, `invalid`, `gap` (a known gap: either verdict) or `detect`
    /// (an untuned run: a detection rate, never a failure).
    pub expected: String,
    /// `faultline run`'s exit code.
    pub exit: i32,
    /// Seconds the run took.
    pub wall_s: f64,
    /// The run folder.
    pub run_dir: PathBuf,
    /// The workload, nemesis and flags of the matrix entry (optional 7th column).
    pub setup: String,
}

impl RunRow {
    /// The verdict named by the exit code.
    pub fn verdict(&self) -> &'static str {
        match self.exit {
            0 => "valid",
            1 => "invalid",
            2 => "unknown",
            3 => "harness-error",
            4 => "bad-arguments",
            _ => "crashed",
        }
    }

    /// Whether the verdict is the expected one. A known gap (a mistake no
    /// schedule is known to expose) expects a verdict, either one.
    pub fn as_expected(&self) -> bool {
        match self.expected.as_str() {
            "gap" | "detect" => self.exit == 0 || self.exit == 1,
            e => self.verdict() == e,
        }
    }
}

/// Parses the run table.
pub fn parse_table(text: &str) -> Result<Vec<RunRow>> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 6 && f.len() != 7 {
            bail!(
                "line {}: expected 6 or 7 tab-separated fields, got {}",
                i + 1,
                f.len()
            );
        }
        if !["valid", "invalid", "gap", "detect"].contains(&f[2]) {
            bail!(
                "line {}: expected must be valid, invalid, gap or detect, got {:?}",
                i + 1,
                f[2]
            );
        }
        rows.push(RunRow {
            suite: f[0].to_string(),
            name: f[1].to_string(),
            expected: f[2].to_string(),
            exit: f[3]
                .parse()
                .with_context(|| format!("line {}: exit code {:?}", i + 1, f[3]))?,
            wall_s: f[4]
                .parse()
                .with_context(|| format!("line {}: wall seconds {:?}", i + 1, f[4]))?,
            run_dir: PathBuf::from(f[5]),
            setup: f.get(6).map(|x| x.to_string()).unwrap_or_default(),
        });
    }
    Ok(rows)
}

/// Seconds from traffic start to the earliest witness op of an invalid run
/// (see the module docs); `None` if the run folder cannot be read.
pub fn detection_s(run_dir: &Path) -> Option<f64> {
    let run = crate::store::RunDir::open(run_dir).ok()?;
    let results = run.read_results().ok()??;
    let result = &results.checker["result"];
    let mut idx: Vec<u64> = Vec::new();
    for w in [&result["witness"], &result["Invalid"]["witness"]] {
        idx.extend(w["op"]["index"].as_u64());
        for o in w["minimal"].as_array().into_iter().flatten() {
            idx.extend(o["index"].as_u64());
        }
    }
    let fallback = || Some(run.read_config().ok()??.settings.time_limit_s);
    if idx.is_empty() {
        return fallback();
    }
    let history = std::fs::read_to_string(run_dir.join("history.jsonl")).ok()?;
    history
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["index"].as_u64().is_some_and(|i| idx.contains(&i)))
        .filter_map(|e| e["time"].as_u64())
        .max()
        .map(|ns| ns as f64 / 1e9)
        .or_else(fallback)
}

/// The JUnit report: one suite per mistake (and `correct`), one case per run.
pub fn junit(rows: &[RunRow]) -> Report {
    let mut report = Report::new("faultline-nightly");
    let mut suites: Vec<TestSuite> = Vec::new();
    for r in rows {
        let status = if r.expected == "gap" && r.as_expected() {
            // Reported, never failed: the rate is in summary.md.
            let mut s = TestCaseStatus::skipped();
            s.set_message(format!(
                "known gap: {} (no schedule known to expose this mistake); run folder {}",
                r.verdict(),
                r.run_dir.display()
            ));
            s
        } else if r.expected == "detect" && r.exit == 0 {
            // An untuned run that missed: counted in the rate, not a failure.
            let mut s = TestCaseStatus::skipped();
            s.set_message(format!(
                "missed by this default run (the rate is in summary.md); run folder {}",
                r.run_dir.display()
            ));
            s
        } else if r.as_expected() {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(format!(
                "expected {}, got {} (exit {}); run folder {}",
                r.expected,
                r.verdict(),
                r.exit,
                r.run_dir.display()
            ));
            s.set_type(r.verdict());
            s
        };
        let mut case = TestCase::new(r.name.clone(), status);
        case.set_classname(format!("nightly.{}", r.suite));
        case.set_time(Duration::from_secs_f64(r.wall_s.max(0.0)));
        match suites.iter_mut().find(|s| s.name.as_str() == r.suite) {
            Some(s) => {
                s.add_test_case(case);
            }
            None => {
                let mut s = TestSuite::new(r.suite.clone());
                s.add_test_case(case);
                suites.push(s);
            }
        }
    }
    report.add_test_suites(suites);
    report
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Runs whose suite is exactly `suite`.
fn of_suite<'a>(rows: &'a [RunRow], suite: &str) -> Vec<&'a RunRow> {
    rows.iter().filter(|r| r.suite == suite).collect()
}

/// The workload of a run (its setup starts with `-w W`).
fn workload_of(r: &RunRow) -> &str {
    r.setup
        .strip_prefix("-w ")
        .and_then(|x| x.split_whitespace().next())
        .unwrap_or("?")
}

/// One table of default runs that must be valid: per workload, with the
/// share of runs that exercised each coverage item.
fn default_section(s: &mut String, title: &str, runs: &[&RunRow]) {
    if runs.is_empty() {
        return;
    }
    let valid = runs.iter().filter(|r| r.exit == 0).count();
    let _ = writeln!(
        s,
        "## {title}\n\n{valid} of {} runs valid, {} invalid, {} other.\n\n| workload | runs | valid |\n|---|---:|---:|",
        runs.len(),
        runs.iter().filter(|r| r.exit == 1).count(),
        runs.iter().filter(|r| r.exit > 1).count()
    );
    let mut workloads: Vec<&str> = runs.iter().map(|r| workload_of(r)).collect();
    workloads.sort();
    workloads.dedup();
    for w in workloads {
        let of: Vec<&&RunRow> = runs.iter().filter(|r| workload_of(r) == w).collect();
        let ok = of.iter().filter(|r| r.exit == 0).count();
        let _ = writeln!(s, "| {w} | {} | {ok} |", of.len());
    }
    // Coverage: the share of runs in which each item happened at least once.
    let mut counted = 0usize;
    let mut hit: std::collections::BTreeMap<String, usize> = Default::default();
    for r in runs {
        let Some(results) = crate::store::RunDir::open(&r.run_dir)
            .ok()
            .and_then(|d| d.read_results().ok().flatten())
        else {
            continue;
        };
        if results.coverage.is_empty() {
            continue;
        }
        counted += 1;
        for (k, n) in &results.coverage {
            *hit.entry(k.clone()).or_default() += usize::from(*n > 0);
        }
    }
    if counted > 0 {
        let _ = writeln!(
            s,
            "\nWhat the runs exercised (share of {counted} runs with at least one):\n\n| event | runs | share |\n|---|---:|---:|"
        );
        for (k, n) in &hit {
            let _ = writeln!(
                s,
                "| {k} | {n} | {:.0}% |",
                100.0 * *n as f64 / counted as f64
            );
        }
    }
    s.push('\n');
}

/// `summary.md`.
pub fn summary(rows: &[RunRow], wall_s: f64, note: &str) -> String {
    let mut s = String::from("# faultline nightly\n\n");
    // Untuned detection: default runs of each mistake.
    let untuned: Vec<&RunRow> = rows
        .iter()
        .filter(|r| r.suite.starts_with("untuned/"))
        .collect();
    if !untuned.is_empty() {
        s.push_str("## Untuned detection (`faultline run --node-bug M -w W --time-limit T`, nothing else)\n\n");
        s.push_str("| mistake | runs | detected | rate | median time to detection (s) | setup |\n|---|---:|---:|---:|---:|---|\n");
        let mut names: Vec<&str> = Vec::new();
        for r in &untuned {
            if !names.contains(&r.suite.as_str()) {
                names.push(&r.suite);
            }
        }
        let mut reached = 0;
        let total = names.len();
        for name in names {
            let runs: Vec<&RunRow> = of_suite(rows, name);
            let hits: Vec<&&RunRow> = runs.iter().filter(|r| r.exit == 1).collect();
            if hits.len() * 2 >= runs.len() {
                reached += 1;
            }
            let med = median(
                hits.iter()
                    .filter_map(|r| detection_s(&r.run_dir))
                    .collect(),
            );
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0}% | {} | `{}` |",
                name.trim_start_matches("untuned/"),
                runs.len(),
                hits.len(),
                100.0 * hits.len() as f64 / runs.len().max(1) as f64,
                med.map(|m| format!("{m:.1}")).unwrap_or_else(|| "–".into()),
                runs.first().map(|r| r.setup.as_str()).unwrap_or_default()
            );
        }
        let _ = writeln!(
            s,
            "\n{reached} of {total} mistakes caught in at least half their runs.\n"
        );
    }
    default_section(
        &mut s,
        "Correct node, default runs",
        &of_suite(rows, "default"),
    );
    default_section(&mut s, "etcd, default runs", &of_suite(rows, "etcd"));
    let correct: Vec<&RunRow> = rows.iter().filter(|r| r.suite == "correct").collect();
    let tuned_mistakes = rows.iter().any(|r| {
        !matches!(r.suite.as_str(), "correct" | "default" | "etcd")
            && !r.suite.starts_with("untuned/")
    });
    if !correct.is_empty() || tuned_mistakes {
        s.push_str("## Tuned matrix\n\n");
    }
    let fp = correct.iter().filter(|r| r.exit == 1).count();
    let other = correct
        .iter()
        .filter(|r| r.exit != 0 && r.exit != 1)
        .count();
    if !correct.is_empty() {
        let _ = writeln!(
            s,
            "Correct node: {} runs, {fp} false positives (invalid), {other} other non-valid verdicts.\n",
            correct.len()
        );
    }
    let mut setups: Vec<&str> = Vec::new();
    for r in &correct {
        if !setups.contains(&r.setup.as_str()) {
            setups.push(&r.setup);
        }
    }
    if setups.iter().any(|x| !x.is_empty()) {
        s.push_str("| correct-node setup | runs | valid |\n|---|---:|---:|\n");
        for setup in setups {
            let runs: Vec<&&RunRow> = correct.iter().filter(|r| r.setup == setup).collect();
            let valid = runs.iter().filter(|r| r.exit == 0).count();
            let _ = writeln!(s, "| `{setup}` | {} | {valid} |", runs.len());
        }
        s.push('\n');
    }
    let mut names: Vec<&str> = Vec::new();
    for r in rows.iter().filter(|r| {
        !matches!(r.suite.as_str(), "correct" | "default" | "etcd")
            && !r.suite.starts_with("untuned/")
    }) {
        if !names.contains(&r.suite.as_str()) {
            names.push(&r.suite);
        }
    }
    if !names.is_empty() {
        s.push_str("| mistake | runs | detected | rate | median time to detection (s) | setup |\n");
        s.push_str("|---|---:|---:|---:|---:|---|\n");
    }
    for name in names {
        let runs: Vec<&RunRow> = rows.iter().filter(|r| r.suite == name).collect();
        let hits: Vec<&&RunRow> = runs.iter().filter(|r| r.exit == 1).collect();
        let med = median(
            hits.iter()
                .filter_map(|r| detection_s(&r.run_dir))
                .collect(),
        );
        let setup = runs.first().map(|r| r.setup.as_str()).unwrap_or_default();
        let gap = if runs.iter().any(|r| r.expected == "gap") {
            " (known gap)"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "| {name}{gap} | {} | {} | {:.0}% | {} | {} |",
            runs.len(),
            hits.len(),
            100.0 * hits.len() as f64 / runs.len().max(1) as f64,
            med.map(|m| format!("{m:.1}")).unwrap_or_else(|| "–".into()),
            if setup.is_empty() {
                String::new()
            } else {
                format!("`{setup}`")
            }
        );
    }
    let unexpected: Vec<&RunRow> = rows.iter().filter(|r| !r.as_expected()).collect();
    let _ = writeln!(
        s,
        "\nWall time: {wall_s:.0} s for {} runs; {} unexpected verdicts.",
        rows.len(),
        unexpected.len()
    );
    for r in &unexpected {
        let _ = writeln!(
            s,
            "- {} {}: expected {}, got {} — {}",
            r.suite,
            r.name,
            r.expected,
            r.verdict(),
            r.run_dir.display()
        );
    }
    s.push_str(
        "\nTime to detection: from the start of client traffic to the completion of the \
         last op in the checker's witness, when the history first held the violation (or \
         the run's traffic time when the witness names no op).\n",
    );
    if !note.is_empty() {
        let _ = writeln!(s, "\n{note}");
    }
    s
}

/// Writes junit.xml and summary.md; returns 1 if any verdict was unexpected.
pub fn run(args: &NightlyReportArgs) -> Result<crate::exit::Exit> {
    let mut rows = Vec::new();
    for path in &args.results {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        rows.extend(parse_table(&text).with_context(|| format!("{}", path.display()))?);
    }
    let xml = junit(&rows).to_string().context("serializing junit.xml")?;
    std::fs::write(args.out.join("junit.xml"), xml).context("writing junit.xml")?;
    std::fs::write(
        args.out.join("summary.md"),
        summary(&rows, args.wall_s, &args.note),
    )
    .context("writing summary.md")?;
    // Exit 1 (as for an invalid run) when any verdict was unexpected.
    Ok(if rows.iter().any(|r| !r.as_expected()) {
        crate::exit::Exit::Invalid
    } else {
        crate::exit::Exit::Valid
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "suite\tname\texpected\texit\twall_s\trun_dir\n\
        correct\tregister-partition-s1\tvalid\t0\t12.5\t/nope/a\n\
        skip-dedup\tcounter-kill-s1\tinvalid\t0\t11.0\t/nope/b\n\
        stale-local-read\tregister-partition-s1\tinvalid\t1\t9.0\t/nope/c\t-w register --pin-clients\n\
        forget-vote\tappend-kill-s1\tgap\t0\t9.0\t/nope/d\t-w append\n";

    #[test]
    fn junit_has_one_case_per_run_and_names_the_failure() {
        let rows = parse_table(TABLE).expect("table");
        let xml = junit(&rows).to_string().expect("xml");
        assert_eq!(xml.matches("<testcase ").count(), 4, "{xml}");
        assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
        assert_eq!(xml.matches("<skipped ").count(), 1, "{xml}");
        assert!(xml.contains("known gap: valid"), "{xml}");
        assert!(xml.contains("expected invalid, got valid (exit 0); run folder /nope/b"));
    }

    #[test]
    fn summary_counts_rates_and_unexpected_runs() {
        let rows = parse_table(TABLE).expect("table");
        let md = summary(&rows, 33.0, "");
        assert!(md.contains("1 runs, 0 false positives"), "{md}");
        assert!(md.contains("| skip-dedup | 1 | 0 | 0% |"), "{md}");
        assert!(
            md.contains("| stale-local-read | 1 | 1 | 100% | – | `-w register --pin-clients` |"),
            "{md}"
        );
        assert!(md.contains("1 unexpected verdicts"), "{md}");
        assert!(
            md.contains("| forget-vote (known gap) | 1 | 0 | 0% |"),
            "{md}"
        );
    }

    const SHARD: &str = "suite\tname\texpected\texit\twall_s\trun_dir\tsetup\n\
        untuned/skip-dedup\tappend-s1\tdetect\t1\t30.0\t/nope/e\t-w append --node-bug skip-dedup\n\
        untuned/forget-vote\tappend-s1\tdetect\t0\t30.0\t/nope/e\t-w append --node-bug forget-vote\n\
        untuned/skip-dedup\tappend-s2\tdetect\t0\t30.0\t/nope/f\t-w append --node-bug skip-dedup\n\
        default\tkv-s1\tvalid\t0\t22.0\t/nope/g\t-w kv\n\
        default\tset-s1\tvalid\t0\t22.0\t/nope/h\t-w set\n";

    #[test]
    fn shards_merge_and_untuned_misses_never_fail() {
        let mut rows = parse_table(TABLE).expect("table");
        rows.extend(parse_table(SHARD).expect("shard"));
        let xml = junit(&rows).to_string().expect("xml");
        assert_eq!(xml.matches("<testcase ").count(), 9, "{xml}");
        // The untuned misses are skipped, not failed.
        assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
        assert_eq!(xml.matches("<skipped ").count(), 3, "{xml}");
        let md = summary(&rows, 60.0, "");
        assert!(md.contains("| skip-dedup | 2 | 1 | 50% |"), "{md}");
        assert_eq!(
            md.matches("| skip-dedup | 2 | 1 | 50% |").count(),
            1,
            "{md}"
        );
        assert!(
            md.contains("1 of 2 mistakes caught in at least half"),
            "{md}"
        );
        assert!(md.contains("2 of 2 runs valid"), "{md}");
        assert!(md.contains("| kv | 1 | 1 |"), "{md}");
    }

    #[test]
    fn bad_tables_are_refused_with_the_line() {
        let err = parse_table("h\nx\ty\n").expect_err("short line");
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = parse_table("h\na\tb\tmaybe\t0\t1\t/d\n").expect_err("bad expected");
        assert!(err.to_string().contains("maybe"), "{err}");
    }
}

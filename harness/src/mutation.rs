//! `faultline mutation-report` (hidden): turns the tables `ci/mutation.sh`
//! writes (one per shard: each sampled mutant, what caught it, how long it
//! took) into `mutation.md` (the score of the harness battery alone and with
//! `cargo test`, time per mutant, and every miss with its one-line reason)
//! and `junit.xml`. Reasons come from `ci/mutation-notes.tsv`, written by
//! people: `mutant<TAB>class<TAB>reason`, the class one of `unobservable`
//! (not observable from outside the node), `needs-fault` (needs a fault
//! faultline lacks), `harness-weakness` (a fix belongs in the harness) or
//! `equivalent` (the mutant behaves like the original).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::exit::Exit;

/// Arguments of `faultline mutation-report`.
#[derive(Debug, Clone, clap::Args)]
pub struct MutationReportArgs {
    /// A result table (repeat for shards): a header, then `mutant outcome
    /// detail build_s battery_s tests_s`, tab-separated.
    #[arg(long, required = true)]
    pub results: Vec<PathBuf>,
    /// The reasons for misses (`mutant class reason`, tab-separated).
    #[arg(long)]
    pub notes: Option<PathBuf>,
    /// Where mutation.md and junit.xml go.
    #[arg(long)]
    pub out: PathBuf,
    /// What was sampled, for the page (files, sample size, seed).
    #[arg(long, default_value = "")]
    pub about: String,
}

/// How a mutant ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// A run of the harness battery ended non-valid.
    Harness,
    /// The battery missed it; `cargo test` caught it.
    Tests,
    /// Nothing caught it.
    Missed,
    /// It does not build.
    Unviable,
}

impl Outcome {
    fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "harness" => Outcome::Harness,
            "tests" => Outcome::Tests,
            "missed" => Outcome::Missed,
            "unviable" => Outcome::Unviable,
            _ => return None,
        })
    }
}

/// One sampled mutant.
#[derive(Clone, Debug)]
pub struct Row {
    /// cargo-mutants' name of the mutant (file:line: what it does).
    pub mutant: String,
    /// What caught it.
    pub outcome: Outcome,
    /// Which run (and verdict) or test caught it, or why it is unviable.
    pub detail: String,
    /// Seconds to build it.
    pub build_s: f64,
    /// Seconds of the battery.
    pub battery_s: f64,
    /// Seconds of `cargo test` (0 when not run).
    pub tests_s: f64,
}

/// Parses one result table.
pub fn parse(text: &str) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 6 {
            bail!(
                "line {}: expected 6 tab-separated fields, got {}",
                i + 1,
                f.len()
            );
        }
        let num = |k: usize| -> Result<f64> {
            f[k].parse()
                .with_context(|| format!("line {}: {:?} is not a number", i + 1, f[k]))
        };
        out.push(Row {
            mutant: f[0].to_string(),
            outcome: Outcome::parse(f[1]).with_context(|| {
                format!(
                    "line {}: outcome {:?} (harness, tests, missed, unviable)",
                    i + 1,
                    f[1]
                )
            })?,
            detail: f[2].to_string(),
            build_s: num(3)?,
            battery_s: num(4)?,
            tests_s: num(5)?,
        });
    }
    Ok(out)
}

/// The classes a miss may have.
pub const CLASSES: [&str; 4] = [
    "unobservable",
    "needs-fault",
    "harness-weakness",
    "equivalent",
];

/// Parses the notes: mutant → (class, reason).
pub fn parse_notes(text: &str) -> Result<BTreeMap<String, (String, String)>> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.splitn(3, '\t').collect();
        if f.len() != 3 || !CLASSES.contains(&f[1]) {
            bail!(
                "line {}: expected `mutant<TAB>class<TAB>reason` with class one of {}",
                i + 1,
                CLASSES.join(", ")
            );
        }
        out.insert(f[0].to_string(), (f[1].to_string(), f[2].to_string()));
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `mutation.md`.
pub fn markdown(rows: &[Row], notes: &BTreeMap<String, (String, String)>, about: &str) -> String {
    let count = |o: Outcome| rows.iter().filter(|r| r.outcome == o).count();
    let (h, t, m, u) = (
        count(Outcome::Harness),
        count(Outcome::Tests),
        count(Outcome::Missed),
        count(Outcome::Unviable),
    );
    let viable = h + t + m;
    let pct = |x: usize| 100.0 * x as f64 / viable.max(1) as f64;
    let mut s = String::from("# Mutation score\n\n");
    if !about.is_empty() {
        let _ = writeln!(s, "{about}\n");
    }
    let _ = writeln!(
        s,
        "{} mutants sampled, {viable} viable ({u} do not build).\n\n\
         | caught by | mutants | share of viable |\n|---|---:|---:|\n\
         | the harness battery (default `faultline run`s) | {h} | {:.0}% |\n\
         | only `cargo test` | {t} | {:.0}% |\n\
         | nothing (missed) | {m} | {:.0}% |\n",
        rows.len(),
        pct(h),
        pct(t),
        pct(m)
    );
    let viable_rows: Vec<&Row> = rows
        .iter()
        .filter(|r| r.outcome != Outcome::Unviable)
        .collect();
    let _ = writeln!(
        s,
        "Time per viable mutant (median): build {:.0} s, battery {:.0} s, cargo test {:.0} s (only when the battery missed); total {:.0} s.\n",
        median(viable_rows.iter().map(|r| r.build_s).collect()),
        median(viable_rows.iter().map(|r| r.battery_s).collect()),
        median(
            viable_rows
                .iter()
                .filter(|r| r.tests_s > 0.0)
                .map(|r| r.tests_s)
                .collect()
        ),
        median(
            viable_rows
                .iter()
                .map(|r| r.build_s + r.battery_s + r.tests_s)
                .collect()
        ),
    );
    let not_harness: Vec<&Row> = rows
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Tests | Outcome::Missed))
        .collect();
    if !not_harness.is_empty() {
        s.push_str("## Not caught by the harness\n\n| mutant | caught by | class | reason |\n|---|---|---|---|\n");
        for r in not_harness {
            let (class, reason) = notes
                .get(&r.mutant)
                .map(|(c, r)| (c.as_str(), r.as_str()))
                .unwrap_or(("unclassified", "no note in ci/mutation-notes.tsv yet"));
            let _ = writeln!(
                s,
                "| `{}` | {} | {class} | {reason} |",
                r.mutant.replace('|', "\\|"),
                if r.outcome == Outcome::Tests {
                    "cargo test"
                } else {
                    "nothing"
                }
            );
        }
        s.push('\n');
    }
    s.push_str("## Caught by the harness\n\n| mutant | first non-valid run |\n|---|---|\n");
    for r in rows.iter().filter(|r| r.outcome == Outcome::Harness) {
        let _ = writeln!(s, "| `{}` | {} |", r.mutant.replace('|', "\\|"), r.detail);
    }
    s
}

/// `junit.xml`: one case per viable mutant; a miss of the harness battery is
/// a failure unless a note classifies it.
pub fn junit(rows: &[Row], notes: &BTreeMap<String, (String, String)>) -> Report {
    let mut report = Report::new("faultline-mutation");
    let mut suite = TestSuite::new("mutants");
    for r in rows.iter().filter(|r| r.outcome != Outcome::Unviable) {
        let status = match (r.outcome, notes.get(&r.mutant)) {
            (Outcome::Harness, _) => TestCaseStatus::success(),
            (_, Some((class, reason))) => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(format!("{class}: {reason}"));
                s
            }
            (o, None) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(format!(
                    "not caught by the harness battery ({}) and not classified in ci/mutation-notes.tsv",
                    if o == Outcome::Tests {
                        "cargo test caught it"
                    } else {
                        "nothing caught it"
                    }
                ));
                s
            }
        };
        let mut case = TestCase::new(r.mutant.clone(), status);
        case.set_classname("mutation");
        case.set_time(Duration::from_secs_f64(
            (r.build_s + r.battery_s + r.tests_s).max(0.0),
        ));
        suite.add_test_case(case);
    }
    report.add_test_suite(suite);
    report
}

/// Writes mutation.md and junit.xml; exits 1 when a miss is unclassified.
pub fn run(args: &MutationReportArgs) -> Result<Exit> {
    let mut rows = Vec::new();
    for p in &args.results {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        rows.extend(parse(&text).with_context(|| p.display().to_string())?);
    }
    let notes = match &args.notes {
        Some(p) => parse_notes(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .with_context(|| p.display().to_string())?,
        None => BTreeMap::new(),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    std::fs::write(
        args.out.join("mutation.md"),
        markdown(&rows, &notes, &args.about),
    )
    .context("writing mutation.md")?;
    let xml = junit(&rows, &notes)
        .to_string()
        .context("serializing junit.xml")?;
    std::fs::write(args.out.join("junit.xml"), xml).context("writing junit.xml")?;
    let unclassified = rows.iter().any(|r| {
        matches!(r.outcome, Outcome::Tests | Outcome::Missed) && !notes.contains_key(&r.mutant)
    });
    Ok(if unclassified {
        Exit::Invalid
    } else {
        Exit::Valid
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "mutant\toutcome\tdetail\tbuild_s\tbattery_s\ttests_s\n\
        a.rs:1: replace f -> bool with true\tharness\tregister-s1 invalid\t40\t12\t0\n\
        a.rs:2: delete !\ttests\t-\t41\t60\t90\n\
        a.rs:3: replace + with -\tmissed\t-\t39\t60\t95\n\
        a.rs:4: replace g with ()\tunviable\tbuild failed\t20\t0\t0\n";

    #[test]
    fn the_score_counts_viable_mutants_and_names_every_miss() {
        let rows = parse(TABLE).expect("table");
        let notes = parse_notes("a.rs:2: delete !\tunobservable\tonly changes a log line\n")
            .expect("notes");
        let md = markdown(&rows, &notes, "");
        assert!(md.contains("4 mutants sampled, 3 viable"), "{md}");
        assert!(md.contains("| 1 | 33% |"), "{md}");
        assert!(
            md.contains("unobservable | only changes a log line"),
            "{md}"
        );
        assert!(md.contains("unclassified"), "{md}");
        let xml = junit(&rows, &notes).to_string().expect("xml");
        assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
        assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
        assert!(parse_notes("x\tweird\ty\n").is_err());
        assert!(parse("h\nx\tcaught\t-\t1\t2\t3\n").is_err());
    }
}

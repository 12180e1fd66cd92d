//! Conformance: every file of the reference corpus gets the verdict other checkers established.
//!
//! Reads `verdicts.tsv` from `FAULTLINE_CORPUS` (default `../shared/corpus`
//! next to the workspace). Skips with a printed reason when the corpus is
//! absent, unless `FAULTLINE_REQUIRE_CORPUS=1`.

use faultline_checkers::{LinOptions, ModelKind, Verdict, check_linearizable};
use faultline_history::{Format, pair, parse_str};
use std::path::PathBuf;
use std::time::Duration;

fn corpus() -> Option<PathBuf> {
    let root = std::env::var("FAULTLINE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"));
    if root.join("verdicts.tsv").is_file() {
        return Some(root);
    }
    assert!(
        std::env::var("FAULTLINE_REQUIRE_CORPUS").as_deref() != Ok("1"),
        "FAULTLINE_REQUIRE_CORPUS=1 but there is no corpus at {}",
        root.display()
    );
    always_print(&format!(
        "skipping conformance: no corpus at {} (set FAULTLINE_CORPUS)",
        root.display()
    ));
    None
}

/// Writes past the test harness's output capture, so that the count shows in
/// every `cargo test` run (CI's log included), not only with `--nocapture`.
fn always_print(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The format and options a `format-model` column names.
fn setup(format_model: &str) -> (Format, LinOptions) {
    let (format, model) = match format_model {
        "knossos-cas-register" => (Format::Edn, ModelKind::CasRegister),
        "knossos-multi-register" => (Format::Edn, ModelKind::MultiRegister),
        "knossos-mutex" => (Format::Edn, ModelKind::Mutex),
        "porcupine-etcd-cas-register" => (Format::PorcupineEtcd, ModelKind::CasRegister),
        "porcupine-kv" => (Format::PorcupineKv, ModelKind::Kv),
        other => panic!("unknown format-model {other:?} in verdicts.tsv"),
    };
    let mut opts = LinOptions::for_format(format, model);
    opts.time_limit = Some(Duration::from_secs(20));
    opts.threads = 1;
    opts.shrink_time = Duration::from_millis(200);
    (format, opts)
}

#[test]
fn corpus_verdicts_agree() {
    let Some(root) = corpus() else { return };
    let tsv = std::fs::read_to_string(root.join("verdicts.tsv")).unwrap();
    let rows: Vec<Vec<&str>> = tsv
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').collect())
        .collect();
    let mut agree = 0;
    let mut disagreements = Vec::new();
    for row in &rows {
        let (path, fm, expected) = (row[0], row[1], row[2]);
        let (format, opts) = setup(fm);
        let text = std::fs::read_to_string(root.join(path)).unwrap();
        let history = parse_str(path, &text, format).unwrap();
        let ops = pair(path, &history.events).unwrap();
        let report = check_linearizable(&ops, &opts).unwrap_or_else(|e| panic!("{path}: {e}"));
        let got = report.verdict.name();
        if got == expected {
            agree += 1;
        } else {
            disagreements.push(format!(
                "{path}: expected {expected}, got {got} ({:?})",
                report.verdict
            ));
        }
        if let Verdict::Invalid { witness, .. } = &report.verdict {
            assert!(!witness.minimal.is_empty(), "{path}: empty minimal set");
            assert!(!witness.explanation.is_empty(), "{path}: no explanation");
        }
    }
    always_print(&format!("corpus conformance: {agree}/{} agree", rows.len()));
    for d in &disagreements {
        always_print(&format!("  {d}"));
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements",
        disagreements.len()
    );
}

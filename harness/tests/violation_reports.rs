//! Reports of stored invalid runs, one per deliberate mistake and one per
//! workload (`tests/data/violations/<name>/`: the history, nemesis log,
//! config and results of a real `faultline run`; see the folder's README):
//! each report's first sentence names at least two operations and the
//! relation between them, places the impossible op among the faults, and a
//! duplicated append says which value appears twice.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use faultline::report::write_report;

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/violations");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

/// A copy of a fixture to write the report into.
fn scratch_copy(src: &Path) -> PathBuf {
    let name = src.file_name().unwrap();
    let dst = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("violation-reports")
        .join(name);
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
    dst
}

/// The distinct `op #N` named in a sentence.
fn ops_named(s: &str) -> BTreeSet<u64> {
    s.match_indices("op #")
        .filter_map(|(i, m)| {
            let rest = &s[i + m.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

#[test]
fn every_invalid_report_names_two_operations_and_how_they_contradict() {
    let all = fixtures();
    assert!(
        all.len() >= 8,
        "expected the stored violations, found {}",
        all.len()
    );
    let mut failures = Vec::new();
    for src in &all {
        let name = src.file_name().unwrap().to_string_lossy().into_owned();
        let dir = scratch_copy(src);
        let summary = write_report(&dir).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(summary.verdict, "invalid", "{name}");
        let Some(why) = summary.why else {
            failures.push(format!("{name}: no account of the contradiction"));
            continue;
        };
        let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
        assert!(html.contains("class=explain>"), "{name}");
        let named = ops_named(&why);
        if named.len() < 2 {
            failures.push(format!("{name}: names {} op(s): {why}", named.len()));
        }
        let relation = [
            "before",
            "after",
            "appears twice",
            "must extend",
            "add up to",
        ];
        if !relation.iter().any(|r| why.contains(r)) {
            failures.push(format!("{name}: no relation between the ops: {why}"));
        }
        if !why.contains(" into ") && !why.contains(" ended") && !why.contains("before any fault") {
            failures.push(format!("{name}: not placed among the faults: {why}"));
        }
        if name.starts_with("skip-dedup") && !why.contains("appears twice") {
            failures.push(format!(
                "{name}: a duplicated append must say which value appears twice: {why}"
            ));
        }
        println!("{name}: {why}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

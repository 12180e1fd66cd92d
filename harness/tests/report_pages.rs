//! Reports of synthetic run folders: an invalid register history (a stale
//! read) shows a small minimal op set naming the offending read; a valid run
//! gets every file; missing optional files are noted; a 100,000-op run's
//! page stays under 5 MB; `latest` resolves; a folder without a history is
//! refused with a clear error.

use faultline::report::demo::{DemoKind, write_demo_run};
use faultline::report::{ReportArgs, write_report};
use std::path::{Path, PathBuf};

/// A fresh directory under Cargo's per-test scratch space.
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("report-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn assert_self_contained(html: &str) {
    for bad in [
        "<script",
        "<link",
        "src=\"http",
        "url(http",
        "@import",
        "@font-face",
    ] {
        assert!(!html.contains(bad), "report.html contains {bad:?}");
    }
    // The only URL is the SVG namespace, which browsers never fetch.
    let urls = html.matches("http").count();
    let ns = html.matches("http://www.w3.org/2000/svg").count();
    assert_eq!(
        urls, ns,
        "report.html names URLs other than the SVG namespace"
    );
}

#[test]
fn invalid_run_names_the_stale_read_in_a_small_minimal_set() {
    let dir = scratch("invalid");
    write_demo_run(&dir, DemoKind::Invalid, 800, 11).unwrap();
    let s = write_report(&dir).unwrap();
    assert_eq!(s.verdict, "invalid");
    let n = s
        .minimal_ops
        .expect("an invalid run's report has a minimal op set");
    assert!((1..=10).contains(&n), "minimal op set has {n} ops");
    let offending = s.offending.clone().expect("the offending op is named");
    assert!(offending.contains("read"), "{offending}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("class=\"verdict invalid\""));
    assert!(html.contains(&format!("Minimal op set: {n} ops")));
    // The offending op is highlighted in the table and on the timeline.
    let index = offending
        .strip_prefix("op ")
        .and_then(|r| r.split(':').next())
        .unwrap();
    assert!(
        html.contains(&format!(
            "<tr class=bad><td>#{index} ✖ cannot be linearized"
        )),
        "{offending}"
    );
    assert!(html.contains(&format!("✖ #{index} read")));
    // The plain-language account names the newer write and the times.
    assert!(
        html.contains("or something newer") && html.contains("completed before op #"),
        "no timed explanation"
    );
    assert_self_contained(&html);
    println!(
        "invalid report: {} bytes, minimal set {n} ops, offending {offending}",
        s.html_bytes
    );
}

#[test]
fn valid_run_gets_plots_histogram_and_results_fields() {
    let dir = scratch("valid");
    write_demo_run(&dir, DemoKind::Valid, 2000, 5).unwrap();
    let s = write_report(&dir).unwrap();
    assert_eq!(s.verdict, "valid");
    for f in [
        "report.html",
        "latency.hgrm",
        "latency-raw.svg",
        "latency-quantiles.svg",
        "rate.svg",
        "latency-dist.svg",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let hgrm = std::fs::read_to_string(dir.join("latency.hgrm")).unwrap();
    assert!(hgrm.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
    assert!(hgrm.contains("Total count    =         2000]"), "{hgrm}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["latency"]["overall"]["count"], 2000);
    for q in ["p50", "p90", "p99", "p999", "max"] {
        assert!(results["latency"]["overall"][q].as_f64().is_some(), "{q}");
    }
    let windows = results["availability"].as_array().unwrap();
    assert!(!windows.is_empty());
    assert!(windows.iter().all(|w| w["recovery_ms"].as_f64().is_some()));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("class=\"verdict valid\""));
    assert!(!html.contains("Why it is invalid"));
    assert!(
        html.contains("partition isolate-leader"),
        "fault windows are labelled"
    );
    assert_self_contained(&html);
    assert!(s.summary_lines().iter().any(|l| l.contains("recovery")));
}

#[test]
fn missing_nemesis_and_results_are_noted_not_fatal() {
    let dir = scratch("bare");
    write_demo_run(&dir, DemoKind::Valid, 300, 3).unwrap();
    std::fs::remove_file(dir.join("nemesis.jsonl")).unwrap();
    std::fs::remove_file(dir.join("results.json")).unwrap();
    let s = write_report(&dir).unwrap();
    assert_eq!(s.verdict, "unknown");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("No results.json"), "missing results noted");
    assert!(html.contains("No nemesis.jsonl: fault windows are taken from the history"));
    // Windows still come from the history's nemesis events.
    assert!(s.availability.as_array().is_some_and(|a| !a.is_empty()));
    assert!(
        !dir.join("results.json").exists(),
        "the report does not invent results.json"
    );
}

#[test]
fn a_100k_op_run_report_stays_under_5_mb() {
    let dir = scratch("big");
    write_demo_run(&dir, DemoKind::Valid, 100_000, 9).unwrap();
    let s = write_report(&dir).unwrap();
    let bytes = std::fs::metadata(dir.join("report.html")).unwrap().len();
    let history = std::fs::metadata(dir.join("history.jsonl")).unwrap().len();
    println!(
        "100,000-op run: report.html {bytes} bytes ({:.2} MB); history.jsonl {history} bytes",
        bytes as f64 / 1e6
    );
    assert_eq!(s.latency["overall"]["count"], 100_000);
    assert!(bytes < 5_000_000, "report.html is {bytes} bytes");
}

#[test]
fn latest_resolves_and_a_folder_without_history_is_refused() {
    let store = scratch("store");
    let run = store.join("register").join("20260101T000000Z");
    write_demo_run(&run, DemoKind::Valid, 300, 1).unwrap();
    std::os::unix::fs::symlink("register/20260101T000000Z", store.join("latest")).unwrap();
    let args = ReportArgs {
        run: "latest".into(),
        store: store.clone(),
        demo: None,
        demo_ops: 0,
        demo_seed: 0,
    };
    faultline::report::run(&args).unwrap();
    assert!(run.join("report.html").is_file());

    let empty = scratch("empty");
    let e = write_report(&empty).unwrap_err();
    assert!(format!("{e:#}").contains("no history.jsonl"), "{e:#}");
}

//! The member nemesis end to end: a 3-node cluster grows from its spares
//! to 4 and 5 voters and shrinks back (and replaces voters), beside
//! partitions and kills, and the run stays valid. faultline-node always;
//! etcd when it is on PATH. The controller reserves every port (founders
//! and spares) itself.

mod run_common;

use std::time::Duration;

use faultline::sut::which;
use run_common::{TestDir, finish, jsonl, pids_mentioning, run_dir, start_run};
use serde_json::Value;

/// Runs `faultline run` with the member nemesis on `db` and checks what it
/// did: valid, voters up to at least 4 and back down, every step in
/// `nemesis.jsonl`, the history and `results.json`, nothing left running.
fn member_run(test: &str, db: &str, nemesis: &str, interval: &str, seed: &str) {
    let dir = TestDir::new(test);
    let mut g = start_run(
        dir.path(),
        &[
            "--db",
            db,
            "--workload",
            "register",
            "--nodes",
            "3",
            "--time-limit",
            "24",
            "--nemesis",
            nemesis,
            "--nemesis-interval",
            interval,
            "--quiet-period",
            "1",
            "--rate",
            "100",
            "--seed",
            seed,
        ],
    );
    let (code, out, err) = finish(&mut g, Duration::from_secs(150));
    let run = run_dir(dir.path());
    let lines = jsonl(&run.join("nemesis.jsonl"));
    let steps: Vec<&Value> = lines.iter().filter(|l| !l["members"].is_null()).collect();
    let told = || {
        let log: Vec<String> = lines
            .iter()
            .map(|l| format!("{} → {}", l["fault"], l["result"]))
            .collect();
        format!(
            "{db} seed {seed}\nnemesis.jsonl:\n{}\nstdout:\n{out}\nstderr:\n{err}",
            log.join("\n")
        )
    };
    assert_eq!(code, Some(0), "not valid: {}", told());
    let voters: Vec<usize> = steps
        .iter()
        .map(|l| l["members"]["voters"].as_array().map_or(0, Vec::len))
        .collect();
    let top = voters.iter().copied().max().unwrap_or(0);
    assert!(top >= 4, "never grew past 3 voters: {voters:?}\n{}", told());
    let back = voters.iter().skip_while(|v| **v < top).any(|v| *v < top);
    assert!(
        back,
        "never shrank after {top} voters: {voters:?}\n{}",
        told()
    );
    assert!(
        voters.iter().all(|v| (3..=5).contains(v)),
        "voters out of 3..5: {voters:?}\n{}",
        told()
    );
    // The summary line and results.json count the same steps.
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).expect("results"))
            .expect("results.json is JSON");
    let m = &results["membership"];
    assert_eq!(m["changes"].as_u64(), Some(steps.len() as u64), "{m:#}");
    assert_eq!(m["voters_min"], 3, "{m:#}");
    assert_eq!(m["voters_max"].as_u64(), Some(top as u64), "{m:#}");
    assert!(out.contains("membership: "), "{out}");
    // Every step is a nemesis event of the history too.
    let history = jsonl(&run.join("history.jsonl"));
    let in_history = history
        .iter()
        .filter(|e| e["process"] == "nemesis" && e["type"] == "invoke")
        .filter(|e| lines.iter().any(|l| l["fault"] == e["value"]))
        .count();
    assert_eq!(in_history, lines.len(), "{}", told());
    let page = std::fs::read_to_string(run.join("report.html")).expect("report");
    assert!(
        page.contains("<section id=membership>"),
        "no membership table"
    );
    assert_eq!(
        pids_mentioning(dir.path()),
        Vec::<i32>::new(),
        "nodes survived"
    );
}

#[test]
fn faultline_node_grows_to_five_voters_and_back_under_partitions_and_kills() {
    member_run(
        "run_member_faultline",
        "faultline",
        "member:grow+shrink,partition,kill",
        "0.7",
        "4",
    );
}

#[test]
fn etcd_grows_from_its_spares_and_shrinks_back() {
    let missing = which("etcd")
        .is_none()
        .then(|| "etcd is not on PATH (Debian: etcd-server)".to_string());
    if !run_common::can_run("run_member_etcd", missing) {
        return;
    }
    // etcd refuses a change until every member has been connected for a
    // while (strict reconfiguration checks), and a refused step comes again
    // only at the next tick (ticks missed during a long step are not made
    // up): steps 2 s apart leave room for 4, 3, 4, 5, 4, 5 in 24 s.
    member_run("run_member_etcd", "etcd", "member:grow+shrink", "2", "2");
}

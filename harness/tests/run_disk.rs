//! The disk nemesis end to end (skipped with a reason only without
//! /dev/fuse; CI requires it): a node that never fsyncs loses acknowledged
//! writes to a power cut of every node, while the correct node under the
//! same schedule loses nothing; a damaged log on a killed node either stops
//! that node, naming the file and offset, or has its torn tail repaired —
//! and the run goes on with the others and ends valid, the report showing
//! the node down. No mount and no process is left.

mod run_common;

use std::time::Duration;

use run_common::{TestDir, finish, fuse_ok, mounts_under, pids_mentioning, run_dir, start_run};

fn run(dir: &TestDir, args: &[&str]) -> (Option<i32>, String) {
    let mut g = start_run(dir.path(), args);
    let (code, out, err) = finish(&mut g, Duration::from_secs(120));
    assert_eq!(
        pids_mentioning(dir.path()),
        Vec::<i32>::new(),
        "processes left"
    );
    assert_eq!(
        mounts_under(dir.path()),
        Vec::<std::path::PathBuf>::new(),
        "mounts left"
    );
    (code, format!("{out}\n{err}"))
}

const POWER_CUT: &[&str] = &[
    "-w",
    "append",
    "-n",
    "3",
    "--time-limit",
    "8",
    "--nemesis",
    "disk:power-cut+all",
    "--nemesis-interval",
    "1.5",
    "--seed",
    "4",
];

#[test]
fn a_power_cut_loses_what_was_never_fsynced_and_nothing_else() {
    if !fuse_ok("run_disk power cut") {
        return;
    }
    let dir = TestDir::new("run_disk_skip_fsync");
    let mut args = POWER_CUT.to_vec();
    args.extend(["--node-bug", "skip-fsync"]);
    let (code, text) = run(&dir, &args);
    assert_eq!(
        code,
        Some(1),
        "skip-fsync must lose acknowledged writes\n{text}"
    );
    let nemesis = std::fs::read_to_string(run_dir(dir.path()).join("nemesis.jsonl")).unwrap();
    assert!(nemesis.contains("unsynced bytes"), "{nemesis}");

    let dir = TestDir::new("run_disk_correct");
    let (code, text) = run(&dir, POWER_CUT);
    assert_eq!(code, Some(0), "the correct node loses nothing\n{text}");
}

#[test]
fn a_damaged_log_stops_its_node_or_is_repaired_and_the_run_goes_on() {
    if !fuse_ok("run_disk corrupt") {
        return;
    }
    let dir = TestDir::new("run_disk_corrupt");
    let (code, text) = run(
        &dir,
        &[
            "-w",
            "register",
            "-n",
            "3",
            "--time-limit",
            "10",
            "--rate",
            "200",
            "--nemesis",
            "disk:corrupt",
            "--nemesis-interval",
            "1",
            "--seed",
            "2",
        ],
    );
    assert_eq!(
        code,
        Some(0),
        "the majority carries on and the run is valid\n{text}"
    );
    let run = run_dir(dir.path());
    let nemesis = std::fs::read_to_string(run.join("nemesis.jsonl")).unwrap();
    assert!(
        nemesis.contains("flipped bits in") || nemesis.contains("truncated"),
        "some damage was done: {nemesis}"
    );
    // Each damaged node either refused its log, naming the file and the
    // offset, or cut a torn tail and went on.
    let logs: String = ["n1", "n2", "n3"]
        .iter()
        .map(|n| {
            std::fs::read_to_string(run.join("nodes").join(format!("{n}.log"))).unwrap_or_default()
        })
        .collect();
    let refused = logs.contains(".log") && logs.contains("offset");
    let repaired = logs.contains("truncating torn or corrupt tail");
    assert!(refused || repaired, "no node refused or repaired its log");
    if refused {
        let results: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap())
                .unwrap();
        assert!(
            results["node_exits_unasked"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
            "{results}"
        );
        let html = std::fs::read_to_string(run.join("report.html")).unwrap();
        assert!(
            html.contains("Nodes that stopped on their own"),
            "the report shows the node down"
        );
    }
}

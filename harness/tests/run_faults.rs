//! A short real run with partitions, kills and pauses ends valid, every
//! fault kind really happened, and no node process is left behind.

mod run_common;

use std::collections::BTreeSet;
use std::time::Duration;

use run_common::{TestDir, finish, jsonl, pids_mentioning, run_dir, start_run};

#[test]
fn short_run_with_partition_kill_pause_is_valid_and_leaves_nothing() {
    let dir = TestDir::new("run_faults");
    let seed = "7";
    let mut g = start_run(
        dir.path(),
        &[
            "--workload",
            "register",
            "--nodes",
            "3",
            "--time-limit",
            "8",
            "--nemesis",
            "partition,kill,pause",
            "--nemesis-interval",
            "1",
            "--quiet-period",
            "1",
            "--rate",
            "100",
            "--seed",
            seed,
        ],
    );
    let (code, out, err) = finish(&mut g, Duration::from_secs(90));
    let run = run_dir(dir.path());
    assert_eq!(code, Some(0), "seed {seed}\nstdout:\n{out}\nstderr:\n{err}");

    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).expect("results"))
            .expect("results.json is JSON");
    assert_eq!(results["verdict"], "valid", "{results:#}");
    assert!(
        results["ops"]["ok"].as_u64().unwrap_or(0) > 0,
        "{results:#}"
    );

    let started: BTreeSet<String> = jsonl(&run.join("nemesis.jsonl"))
        .iter()
        .filter_map(|l| l["starts"].as_str().map(str::to_string))
        .collect();
    for kind in ["partition", "kill", "pause"] {
        assert!(
            started.contains(kind),
            "{kind} never started: {started:?} (seed {seed})"
        );
    }
    // Every fault's start and end are in the history too.
    let history = jsonl(&run.join("history.jsonl"));
    let nemesis_fs: BTreeSet<&str> = history
        .iter()
        .filter(|e| e["process"] == "nemesis")
        .filter_map(|e| e["f"].as_str())
        .collect();
    for f in ["partition", "heal", "kill", "restart", "pause", "resume"] {
        assert!(
            nemesis_fs.contains(f),
            "no nemesis {f} in history: {nemesis_fs:?}"
        );
    }
    assert!(run.join("config.json").is_file() && run.join("nodes").join("n1.log").is_file());
    assert_eq!(
        pids_mentioning(dir.path()),
        Vec::<i32>::new(),
        "node processes survived"
    );
}

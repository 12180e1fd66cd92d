//! The set, counter and append workloads end to end: a short run of each
//! with partitions, kills and pauses against the correct node ends valid,
//! its checker really looked at reads, and no node process is left.

mod run_common;

use std::time::Duration;

use run_common::{TestDir, finish, jsonl, pids_mentioning, run_dir, start_run};

/// Runs `workload` for 3 s on 3 nodes with every fault kind; returns results.json.
fn short_faulty_run(workload: &str) -> serde_json::Value {
    let dir = TestDir::new(&format!("workloads_{workload}"));
    let seed = "11";
    let mut g = start_run(
        dir.path(),
        &[
            "--workload",
            workload,
            "--nodes",
            "3",
            "--time-limit",
            "3",
            "--nemesis",
            "partition,kill,pause",
            "--nemesis-interval",
            "0.5",
            "--quiet-period",
            "1",
            "--rate",
            "150",
            "--seed",
            seed,
        ],
    );
    let (code, out, err) = finish(&mut g, Duration::from_secs(60));
    assert_eq!(
        code,
        Some(0),
        "{workload}, seed {seed}\nstdout:\n{out}\nstderr:\n{err}"
    );
    let run = run_dir(dir.path());
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).expect("results"))
            .expect("results.json is JSON");
    assert_eq!(results["verdict"], "valid", "{results:#}");
    let started: Vec<String> = jsonl(&run.join("nemesis.jsonl"))
        .iter()
        .filter_map(|l| l["starts"].as_str().map(str::to_string))
        .collect();
    for kind in ["partition", "kill", "pause"] {
        assert!(
            started.iter().any(|s| s == kind),
            "{kind} never started in the {workload} run: {started:?} (seed {seed})"
        );
    }
    assert_eq!(
        pids_mentioning(dir.path()),
        Vec::<i32>::new(),
        "node processes survived ({workload})"
    );
    results
}

#[test]
fn set_run_is_valid_and_checks_reads() {
    let r = short_faulty_run("set");
    let set = &r["checker"]["set"];
    assert!(set["acknowledged"].as_u64().unwrap_or(0) > 0, "{r:#}");
    // Final reads start at each of the 3 nodes, plus reads during the run.
    assert!(set["reads"].as_u64().unwrap_or(0) >= 3, "{r:#}");
    assert_eq!(set["lost"], serde_json::json!([]), "{r:#}");
}

#[test]
fn counter_run_is_valid_and_checks_reads() {
    let r = short_faulty_run("counter");
    assert_eq!(r["checker"]["model"], "counter", "{r:#}");
    assert!(
        r["checker"]["counter"]["reads"].as_u64().unwrap_or(0) >= 3,
        "{r:#}"
    );
}

#[test]
fn append_run_is_valid_under_the_append_model() {
    let r = short_faulty_run("append");
    assert_eq!(r["checker"]["model"], "append", "{r:#}");
    assert!(r["checker"]["ops"].as_u64().unwrap_or(0) > 8, "{r:#}");
}

//! `faultline run --db zookeeper` end to end when `java` and Debian's
//! ZooKeeper jar are there: a short run under partition, kill and pause
//! with linearizable reads ends valid, applies every fault kind, and no
//! server of the run is left afterwards.

mod run_common;

use std::path::Path;
use std::time::Duration;

use faultline::sut::which;
use run_common::{TestDir, finish, pids_mentioning, run_dir, start_run};

#[test]
fn zookeeper_run_under_faults_ends_valid_and_leaves_nothing() {
    let missing = (which("java").is_none() || !Path::new("/usr/share/java/zookeeper.jar").exists())
        .then(|| {
            "java or /usr/share/java/zookeeper.jar is missing (Debian: zookeeperd)".to_string()
        });
    if !run_common::can_run("zookeeper_run", missing) {
        return;
    }
    let dir = TestDir::new("zookeeper_run");
    let mut g = start_run(
        dir.path(),
        &[
            "--db",
            "zookeeper",
            "--workload",
            "register",
            "--nodes",
            "3",
            "--time-limit",
            "9",
            "--nemesis",
            "partition,kill,pause",
            "--nemesis-interval",
            "1.5",
            "--seed",
            "1",
        ],
    );
    let (code, out, err) = finish(&mut g, Duration::from_secs(120));
    assert_eq!(
        code,
        Some(0),
        "run against zookeeper not valid (seed 1)\nstdout:\n{out}\nstderr:\n{err}"
    );
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir(dir.path()).join("results.json")).expect("results.json"),
    )
    .expect("results are JSON");
    for kind in ["partition", "kill", "pause"] {
        assert!(
            results["faults"][kind].as_u64().unwrap_or(0) > 0,
            "no {kind} applied: {}",
            results["faults"]
        );
    }
    let left = pids_mentioning(dir.path());
    assert!(left.is_empty(), "zookeeper servers left: {left:?}");
}

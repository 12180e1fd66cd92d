//! `faultline run --db etcd` end to end when `etcd` is on PATH: a short run
//! under partition, kill and pause with linearizable reads ends valid, and
//! no etcd member of the run is left afterwards.

mod run_common;

use std::time::Duration;

use faultline::sut::which;
use run_common::{TestDir, finish, pids_mentioning, start_run};

#[test]
fn etcd_run_under_faults_ends_valid_and_leaves_nothing() {
    let missing = which("etcd")
        .is_none()
        .then(|| "etcd is not on PATH (Debian: etcd-server)".to_string());
    if !run_common::can_run("etcd_run", missing) {
        return;
    }
    let dir = TestDir::new("etcd_run");
    let mut g = start_run(
        dir.path(),
        &[
            "--db",
            "etcd",
            "--workload",
            "register",
            "--nodes",
            "3",
            "--time-limit",
            "8",
            "--nemesis",
            "partition,kill,pause",
            "--nemesis-interval",
            "1.5",
            "--seed",
            "3",
        ],
    );
    let (code, out, err) = finish(&mut g, Duration::from_secs(90));
    assert_eq!(
        code,
        Some(0),
        "run against etcd not valid (seed 3)\nstdout:\n{out}\nstderr:\n{err}"
    );
    let left = pids_mentioning(dir.path());
    assert!(left.is_empty(), "etcd members left: {left:?}");
}

//! The controller's exit paths: SIGINT mid-run leaves a parseable history
//! and no node; SIGKILL of the controller takes the nodes with it
//! (`PR_SET_PDEATHSIG`). Both with the nodes' data directories on
//! faultline's FUSE filesystem (the disk nemesis): no mount is left either.

mod run_common;

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use run_common::{TestDir, finish, pids_mentioning, run_dir, start_run, wait_for};

const LONG_RUN: &[&str] = &[
    "--nodes",
    "3",
    "--time-limit",
    "120",
    "--nemesis",
    "none",
    "--rate",
    "50",
    "--seed",
    "5",
];

/// The same with the disk nemesis armed (mounts made, no fault before the end).
const LONG_RUN_ON_DISKS: &[&str] = &[
    "--nodes",
    "3",
    "--time-limit",
    "120",
    "--nemesis",
    "disk",
    "--nemesis-interval",
    "1000",
    "--rate",
    "50",
    "--seed",
    "5",
];

fn long_run(test: &str) -> &'static [&'static str] {
    if run_common::fuse_ok(test) {
        LONG_RUN_ON_DISKS
    } else {
        LONG_RUN
    }
}

/// Waits until the run has recorded some completed client ops.
fn wait_for_traffic(dir: &std::path::Path) {
    wait_for("client traffic", Duration::from_secs(60), || {
        let run = std::fs::canonicalize(dir.join("store").join("latest")).ok()?;
        let oks = std::fs::read_to_string(run.join("history.jsonl"))
            .ok()?
            .lines()
            .filter(|l| l.contains("\"type\":\"ok\""))
            .count();
        (oks >= 5).then_some(())
    });
}

#[test]
fn sigint_stops_the_run_with_a_parseable_history_and_no_nodes() {
    let dir = TestDir::new("run_sigint");
    let mut g = start_run(dir.path(), long_run("sigint"));
    wait_for_traffic(dir.path());
    let pid = g.child.as_ref().expect("running").id() as i32;
    kill(Pid::from_raw(pid), Signal::SIGINT).expect("SIGINT");
    let (code, out, err) = finish(&mut g, Duration::from_secs(60));
    // Interrupted with no violation seen: unknown.
    assert_eq!(code, Some(2), "stdout:\n{out}\nstderr:\n{err}");
    let run = run_dir(dir.path());
    let (history, _) = faultline_history::read_path(
        &run.join("history.jsonl"),
        Some(faultline_history::Format::Jsonl),
    )
    .expect("the history parses");
    assert!(history.events.len() >= 10);
    faultline_history::pair("history", &history.events).expect("the history pairs");
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("results.json")).expect("results.json"),
    )
    .expect("results.json is JSON");
    assert_eq!(results["interrupted"], true);
    assert_eq!(
        pids_mentioning(dir.path()),
        Vec::<i32>::new(),
        "nodes survived SIGINT"
    );
    assert_eq!(
        run_common::mounts_under(dir.path()),
        Vec::<std::path::PathBuf>::new()
    );
}

#[test]
fn sigkill_of_the_controller_kills_the_nodes() {
    let dir = TestDir::new("run_sigkill");
    let mut g = start_run(dir.path(), long_run("sigkill"));
    wait_for_traffic(dir.path());
    let controller = g.child.as_ref().expect("running").id() as i32;
    let nodes: Vec<i32> = pids_mentioning(dir.path())
        .into_iter()
        .filter(|p| *p != controller)
        .collect();
    assert!(nodes.len() >= 3, "expected three node processes: {nodes:?}");
    let child = g.child.as_mut().expect("running");
    child.kill().expect("SIGKILL the controller");
    child.wait().expect("reap the controller");
    g.child = None;
    wait_for("the nodes to die", Duration::from_secs(10), || {
        let left: Vec<i32> = pids_mentioning(dir.path());
        left.is_empty().then_some(())
    });
    // fusermount3's auto_unmount takes the mounts when their server dies.
    wait_for("the mounts to go", Duration::from_secs(10), || {
        run_common::mounts_under(dir.path())
            .is_empty()
            .then_some(())
    });
}

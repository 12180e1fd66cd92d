//! `faultline run --db etcd` end to end when `etcd` is on PATH: a short run
//! under partition, kill and pause with linearizable reads ends valid, and
//! no etcd member of the run is left afterwards.

use std::process::{Child, Command};
use std::time::Duration;

use faultline::sut::etcd::which;

/// Kills the controller if the test fails early (its members die with it).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Pids of processes whose command line mentions `needle`.
fn procs_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(needle)
        {
            out.push(pid);
        }
    }
    out
}

#[test]
fn etcd_run_under_faults_ends_valid_and_leaves_nothing() {
    if which("etcd").is_none() {
        eprintln!("etcd is not on PATH: skipped (CI installs etcd-server)");
        return;
    }
    let store = std::env::temp_dir().join(format!("faultline-etcd-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&store);
    let child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args([
            "run",
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
            "--store",
        ])
        .arg(&store)
        .spawn()
        .expect("start faultline");
    let mut guard = Guard(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = guard.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not end in 90 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "run against etcd not valid (seed 3)"
    );
    let left = procs_mentioning(&store.display().to_string());
    assert!(left.is_empty(), "etcd members left: {left:?}");
    let _ = std::fs::remove_dir_all(&store);
}

//! Bad `faultline run` arguments exit with code 4 and a message that names
//! the problem (and, for names, lists the known ones); nothing is started.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("run")
        .args(["--store", env!("CARGO_TARGET_TMPDIR")])
        .args(args)
        .output()
        .expect("run faultline");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_arguments_exit_4_with_a_clear_message() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--workload", "bank"], &["bank", "register", "kv"]),
        (
            &["--nemesis", "partition,flood"],
            &["flood", "partition, kill, pause"],
        ),
        (&["--nodes", "0"], &["--nodes", "1 to 15"]),
        (&["--rate", "-5"], &["--rate"]),
        (&["--concurrency", "3x"], &["--concurrency"]),
        (&["--time-limit", "0"], &["--time-limit"]),
        (&["--bug", "nonsense"], &["nonsense", "stale-local-read"]),
        (
            &["--node-bug", "skip-dedup,nonsense"],
            &["nonsense", "ack-before-fsync"],
        ),
        (&["--node-bug", "n2:nonsense"], &["nonsense", "skip-dedup"]),
        (
            &["--node-bug", "n9:skip-dedup", "-n", "3"],
            &["n9:skip-dedup", "1 to 3"],
        ),
        (&["--node-bin", "/nonexistent/node"], &["--node-bin"]),
        (
            &["--nemesis", "partition:halfs"],
            &["halfs", "isolate-leader", "majorities-ring"],
        ),
        (&["--nemesis", "kill:most"], &["most", "minority, majority"]),
        (
            &["--nemesis", "delay:9"],
            &["delay variant `9`", "100ms~20ms"],
        ),
        (&["--nemesis", "loss:0%"], &["loss:0%", "above 0%"]),
        (
            &["--db", "cassandra"],
            &["cassandra", "faultline, etcd, zookeeper"],
        ),
        (
            &["--db", "etcd", "--read-mode", "lease"],
            &["--read-mode lease", "linearizable, stale"],
        ),
        (&["--read-mode", "sloppy"], &["--read-mode sloppy", "lease"]),
        (
            &["--db", "etcd", "--attempt-timeout-ms", "100"],
            &["--attempt-timeout-ms", "de-duplication"],
        ),
        (
            &["--attempt-timeout-ms", "5000", "--op-timeout-ms", "1000"],
            &["--attempt-timeout-ms 5000", "10 to --op-timeout-ms (1000)"],
        ),
        (&["--no-such-flag"], &["--no-such-flag"]),
    ];
    for (args, needles) in cases {
        let (code, err) = run(args);
        assert_eq!(code, Some(4), "{args:?}: {err}");
        for n in *needles {
            assert!(err.contains(n), "{args:?}: {n:?} not in {err}");
        }
    }
}

#[test]
fn help_documents_the_exit_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["run", "--help"])
        .output()
        .expect("run faultline");
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("4 bad arguments") && help.contains("0 valid"),
        "{help}"
    );
}

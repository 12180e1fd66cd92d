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
        (
            &["--nemesis", "script:chaos"],
            &["unknown script `chaos`", "vote-loss, figure-8"],
        ),
        (
            &["--nemesis", "script:vote-loss,member"],
            &["a script follows a fixed set of nodes", "`member`"],
        ),
        (
            &["--nemesis", "script:vote-loss,kill,script:vote-loss+20ms"],
            &["script:vote-loss+20ms", "vote-loss is named twice"],
        ),
        (
            &["--nemesis", "script:figure-8+fast"],
            &["`fast` is not a link delay"],
        ),
        (
            &["--nemesis", "script:vote-loss", "-n", "2"],
            &["script:vote-loss", "at least 3 nodes"],
        ),
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
fn a_script_needs_a_leader_probe_with_a_term() {
    // faultline-node described without its leader probe: runnable, but a
    // script could not follow leaders and terms.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("run_args-no-leader-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let spec = dir.join("no-leader.toml");
    std::fs::write(
        &spec,
        r#"name = "no-leader"
[ports]
client = "client"
peer = "peer"
[node]
command = ["{faultline}", "node", "--id", "{id}", "--data-dir", "{data_dir}",
           "--client-addr", "{addr.client}", "--peer-addr", "{addr.peer}", "{each.peers}"]
[each.peers]
args = ["--peer", "{peer.id}={peer.addr.peer}"]
[ready]
http = "http://{addr.client}/health"
[client]
protocol = "faultline-http"
"#,
    )
    .expect("spec");
    let spec = spec.display().to_string();
    let (code, err) = run(&["--db", &spec, "--nemesis", "script:vote-loss"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains("no leader probe with a term") && err.contains("no-leader.toml"),
        "{err}"
    );
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

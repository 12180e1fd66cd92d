//! Each scripted schedule, run briefly against the correct node, carries out
//! its steps (as `nemesis.jsonl` and the history's script notes show), the
//! run ends valid, and no node process is left behind; beside a kind, a
//! script runs in episodes between its random faults. One test runs the
//! scripts one after the other, so that two clusters never share the CPU.

mod run_common;

use std::collections::BTreeSet;
use std::time::Duration;

use run_common::{TestDir, finish, jsonl, pids_mentioning, run_dir, start_run};

/// Runs `--nemesis script:NAME` (or, with `kinds`, `KINDS,script:NAME`:
/// episodes between random faults) with these extra arguments; returns the
/// faults carried out (`f` of each `nemesis.jsonl` line, in order) and the
/// script's notes.
fn run_script(name: &str, kinds: &str, extra: &[&str]) -> (Vec<String>, Vec<String>) {
    let dir = TestDir::new(&format!("run_scripts-{name}-{kinds}"));
    let nemesis = if kinds.is_empty() {
        format!("script:{name}")
    } else {
        format!("{kinds},script:{name}")
    };
    let mut args = vec![
        "--workload",
        "append",
        "--nodes",
        "3",
        "--time-limit",
        "12",
        "--quiet-period",
        "1",
        "--rate",
        "100",
        "--nemesis",
        &nemesis,
        "--seed",
        "5",
    ];
    args.extend_from_slice(extra);
    let mut g = start_run(dir.path(), &args);
    let (code, out, err) = finish(&mut g, Duration::from_secs(120));
    let run = run_dir(dir.path());
    assert_eq!(code, Some(0), "{name}\nstdout:\n{out}\nstderr:\n{err}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).expect("results"))
            .expect("results.json is JSON");
    assert_eq!(results["verdict"], "valid", "{name}: {results:#}");
    let faults: Vec<String> = jsonl(&run.join("nemesis.jsonl"))
        .iter()
        .filter_map(|l| l["fault"]["f"].as_str().map(str::to_string))
        .collect();
    let notes: Vec<String> = jsonl(&run.join("history.jsonl"))
        .iter()
        .filter(|e| e["process"] == "nemesis" && e["f"] == "script")
        .filter_map(|e| e["value"]["note"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        pids_mentioning(dir.path()),
        Vec::<i32>::new(),
        "{name}: node processes survived"
    );
    (faults, notes)
}

/// Whether `steps` occur in `faults` in this order (others may come between).
fn in_order(faults: &[String], steps: &[&str]) -> bool {
    let mut it = faults.iter();
    steps.iter().all(|s| it.any(|f| f == s))
}

#[test]
fn scripted_schedules_carry_out_their_steps_and_the_correct_node_stays_valid() {
    // vote-loss: delay, kill the leader, cut the winner off and kill its
    // voter, restart the old leader then the voter, kill, heal, recover.
    let (faults, notes) = run_script(
        "vote-loss",
        "",
        &[
            "--node-arg=--pre-vote=false",
            "--node-arg=--check-quorum=false",
        ],
    );
    let steps = [
        "delay",
        "kill",
        "partition",
        "kill",
        "revive",
        "revive",
        "heal",
        "restart",
        "clear-links",
    ];
    assert!(
        in_order(&faults, &steps),
        "vote-loss did {faults:?}\n{notes:#?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("attempt 1: killing leader")),
        "{notes:#?}"
    );

    // figure-8: cut the leader off with links delayed, move the majority to
    // it once a rival leads, and (once it acknowledges a write from its
    // tail) to the rival; recover.
    let (faults, notes) = run_script(
        "figure-8",
        "",
        &[
            "--node-arg=--max-entries-per-msg=1",
            "--node-arg=--max-inflight-msgs=1",
            "--node-arg=--request-timeout-ms=5000",
            "--op-timeout-ms",
            "5000",
        ],
    );
    let steps = [
        "partition",
        "delay",
        "repartition",
        "repartition",
        "heal",
        "restart",
        "clear-links",
    ];
    assert!(
        in_order(&faults, &steps),
        "figure-8 did {faults:?}\n{notes:#?}"
    );
    let started: BTreeSet<&str> = notes.iter().filter_map(|n| n.split(':').next()).collect();
    assert!(started.contains("attempt 1"), "{notes:#?}");

    // Beside a kind, the script runs in episodes: its first attempt on the
    // fresh cluster, then a stretch of the kind's random faults (five
    // intervals of 0.5 s, at least 4 s), then the next episode.
    let (faults, notes) = run_script(
        "vote-loss",
        "pause",
        &["--node-arg=--pre-vote=false", "--nemesis-interval", "0.5"],
    );
    let first_pause = faults.iter().position(|f| f == "pause");
    let first_delay = faults.iter().position(|f| f == "delay");
    assert!(
        matches!((first_delay, first_pause), (Some(d), Some(p)) if d < p),
        "an episode, then random pauses: {faults:?}\n{notes:#?}"
    );
    assert!(
        notes.iter().any(|n| n.starts_with("attempt 1:")),
        "{notes:#?}"
    );
}

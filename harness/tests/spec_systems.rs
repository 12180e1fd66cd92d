//! Systems described by spec files, end to end through the binary:
//! - a system the controller has never heard of needs only a spec file: a
//!   copy of the example spec and its 39-line Python client, in a scratch
//!   folder, runs faultline-node under faults and ends valid;
//! - killing that client program mid-run records its operation as `info`,
//!   restarts it, and the run goes on and counts the restart;
//! - bad specs (a missing field, an unknown placeholder, a program that is
//!   not found, a readiness probe that never passes, a client that prints
//!   garbage) each end with a clear error naming the file and the field
//!   (exit 3 or 4), and leave no process behind.

mod run_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use run_common::{TestDir, finish, jsonl, pids_mentioning, run_dir, start_run, wait_for};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systems/examples")
}

/// Copies the example spec and client into `dir/system/`; returns the spec's path.
fn copy_example(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let sys = dir.join("system");
    std::fs::create_dir_all(&sys).expect("mkdir");
    for f in ["faultline-program.toml", "faultline_client.py"] {
        std::fs::copy(examples().join(f), sys.join(f)).expect("copy example");
    }
    let spec = sys.join("faultline-program.toml");
    let text = std::fs::read_to_string(&spec).expect("read spec");
    std::fs::write(&spec, edit(text)).expect("write spec");
    spec
}

fn python() -> bool {
    let ok = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    run_common::can_run(
        "spec_systems",
        (!ok).then(|| "python3 is not installed (the example client is Python)".to_string()),
    )
}

#[test]
fn a_spec_file_and_a_client_program_are_a_whole_system() {
    if !python() {
        return;
    }
    let dir = TestDir::new("spec_program");
    let spec = copy_example(dir.path(), |t| t);
    let mut g = start_run(
        dir.path(),
        &[
            "--db",
            spec.to_str().expect("utf-8 path"),
            "-n",
            "3",
            "--time-limit",
            "8",
            "--rate",
            "0",
            "--concurrency",
            "4",
            "--nemesis",
            "partition,kill",
            "--nemesis-interval",
            "2",
            "--seed",
            "5",
        ],
    );
    // Mid-run, kill one client program (they run from the scratch folder).
    let client = dir.path().join("system/faultline_client.py");
    let victim = wait_for("a client program", Duration::from_secs(30), || {
        let mut pids = pids_mentioning(&client);
        pids.sort();
        pids.first().copied()
    });
    // Let it carry traffic first, so an operation is in flight.
    wait_for("a few ops", Duration::from_secs(30), || {
        let h = std::fs::read_to_string(run_dir(dir.path()).join("history.jsonl")).ok()?;
        (h.matches("\"type\":\"ok\"").count() > 50).then_some(())
    });
    kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill the client");
    let (code, out, err) = finish(&mut g, Duration::from_secs(90));
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("client program restart"), "{out}");
    let run = run_dir(dir.path());
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).expect("results"))
            .expect("json");
    assert!(results["client_restarts"].as_u64() >= Some(1), "{results}");
    let infos: Vec<serde_json::Value> = jsonl(&run.join("history.jsonl"))
        .into_iter()
        .filter(|e| {
            e["type"] == "info"
                && e["error"]
                    .as_str()
                    .is_some_and(|s| s.contains("client program"))
        })
        .collect();
    assert!(!infos.is_empty(), "the killed client's op is info");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(config["system"]["protocol"], "program");
    assert_eq!(pids_mentioning(dir.path()), Vec::<i32>::new());
}

/// Runs with a spec edited by `edit`; returns (exit, stderr) after checking
/// that nothing is left running.
fn run_bad(name: &str, edit: impl Fn(String) -> String) -> (Option<i32>, String) {
    let dir = TestDir::new(name);
    let spec = copy_example(dir.path(), edit);
    let mut g = start_run(
        dir.path(),
        &[
            "--db",
            spec.to_str().expect("utf-8 path"),
            "-n",
            "3",
            "--time-limit",
            "5",
            "--leader-timeout",
            "15",
        ],
    );
    let (code, out, err) = finish(&mut g, Duration::from_secs(60));
    assert_eq!(
        pids_mentioning(dir.path()),
        Vec::<i32>::new(),
        "{name}: processes left\n{out}\n{err}"
    );
    (code, format!("{out}\n{err}"))
}

/// A change to the example spec's text.
type Edit = Box<dyn Fn(String) -> String>;

#[test]
fn bad_specs_are_named_by_file_and_field_and_leave_nothing() {
    let file = "faultline-program.toml";
    let cases: Vec<(&str, Edit, &[i32], Vec<&str>)> = vec![
        (
            "spec_missing_field",
            Box::new(|t: String| {
                t.replace("[ready]\nhttp = \"http://{addr.client}/health\"\n", "")
            }),
            &[4],
            vec![file, "missing field `ready`"],
        ),
        (
            "spec_unknown_placeholder",
            Box::new(|t: String| {
                t.replace(
                    "\"--data-dir\", \"{data_dir}\"",
                    "\"--data-dir\", \"{dta_dir}\"",
                )
            }),
            &[4],
            vec![file, "node.command[5]", "unknown placeholder {dta_dir}"],
        ),
        (
            "spec_program_not_found",
            Box::new(|t: String| {
                t.replace(
                    "\"{faultline}\", \"node\"",
                    "\"no-such-program-xyz\", \"node\"",
                )
            }),
            &[4],
            vec![file, "node.command[0]", "no-such-program-xyz", "not found"],
        ),
        (
            "spec_client_not_found",
            Box::new(|t: String| {
                t.replace(
                    "\"python3\", \"{spec_dir}/faultline_client.py\"",
                    "\"{spec_dir}/no_client.py\"",
                )
            }),
            &[4],
            vec![file, "client.command[0]", "no_client.py"],
        ),
        (
            "spec_never_ready",
            Box::new(|t: String| {
                t.replace(
                    "http = \"http://{addr.client}/health\"",
                    "http = \"http://{addr.client}/no-such-page\"\ntimeout_s = 2",
                )
            }),
            &[3],
            vec![
                file,
                "ready",
                "did not pass its readiness probe within 2.0 s",
                "status 404",
            ],
        ),
    ];
    for (name, edit, codes, needles) in cases {
        let (code, text) = run_bad(name, edit);
        assert!(
            code.is_some_and(|c| codes.contains(&c)),
            "{name}: exit {code:?}\n{text}"
        );
        for n in needles {
            assert!(text.contains(n), "{name}: {n:?} not in\n{text}");
        }
    }
}

#[test]
fn a_client_that_prints_garbage_stops_the_run_with_exit_3() {
    let dir = TestDir::new("spec_garbage_client");
    let spec = copy_example(dir.path(), |t| {
        t.replace(
            "command = [\"python3\", \"{spec_dir}/faultline_client.py\"]",
            "command = [\"/bin/sh\", \"-c\", \"while read l; do echo hello; done\"]",
        )
    });
    let mut g = start_run(
        dir.path(),
        &[
            "--db",
            spec.to_str().expect("utf-8 path"),
            "-n",
            "3",
            "--time-limit",
            "20",
        ],
    );
    let (code, out, err) = finish(&mut g, Duration::from_secs(60));
    let text = format!("{out}\n{err}");
    assert_eq!(code, Some(3), "{text}");
    for n in [
        "faultline-program.toml",
        "client.command",
        "\"hello\"",
        "not a reply line",
    ] {
        assert!(text.contains(n), "{n:?} not in\n{text}");
    }
    assert_eq!(pids_mentioning(dir.path()), Vec::<i32>::new());
}

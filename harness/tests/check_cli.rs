//! CLI tests of `faultline check` and `faultline history convert`: verdict
//! lines, exit codes (0 valid, 1 invalid, 2 unknown, 3 error), JSON output,
//! error messages naming the file and line, and format conversion.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn faultline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .output()
        .expect("run faultline")
}

fn testdata(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../checkers/testdata")
        .join(name)
        .display()
        .to_string()
}

/// A scratch directory removed on drop (even when a test fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("faultline-check-cli-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn valid_file_exits_0_with_one_line() {
    let f = testdata("register-concurrent-writes.jsonl");
    let o = faultline(&["check", &f, "--model", "register"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("valid (register, 4 ops, 1 parts) in ") && out.contains(" ms"),
        "{out}"
    );
}

#[test]
fn invalid_file_exits_1_with_witness_in_words() {
    let f = testdata("register-stale-read.jsonl");
    let o = faultline(&["check", &f, "--model", "register"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("INVALID"), "{out}");
    assert!(out.contains("after which the register holds 2"), "{out}");
    assert!(out.contains("A minimal set is these 3 ops"), "{out}");
    // Invalid beats valid across files.
    let g = testdata("register-concurrent-writes.jsonl");
    let o = faultline(&["check", &g, &f, "--model", "register"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[test]
fn model_is_guessed_from_the_ops() {
    let o = faultline(&[
        "check",
        &testdata("append-duplicated.jsonl"),
        &testdata("mutex-valid.jsonl"),
        &testdata("set-lost.jsonl"),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("INVALID (append"), "{out}");
    assert!(out.contains("valid (mutex"), "{out}");
    assert!(out.contains("INVALID (set"), "{out}");
    assert_eq!(o.status.code(), Some(1));
}

/// Many concurrent writes, then two reads in a row that see different values
/// (impossible without a write between): proving that takes a search over
/// the subsets of the other writes, so a tiny memo budget answers unknown.
/// Values repeat (0 and 1 alternately) so that the unique-value zone check,
/// which would decide this at once, does not apply.
#[test]
fn budget_exhausted_exits_2() {
    let dir = Scratch::new("hard");
    let path = dir.path().join("hard.jsonl");
    let n = 30u64;
    let mut lines = Vec::new();
    let mut index = 0;
    let mut push = |p: u64, kind: &str, f: &str, v: serde_json::Value, lines: &mut Vec<String>| {
        lines.push(serde_json::json!({"index": index, "time": index, "process": p, "type": kind, "f": f, "value": v}).to_string());
        index += 1;
    };
    for p in 0..n {
        push(p, "invoke", "write", serde_json::json!(p % 2), &mut lines);
    }
    for p in 0..n {
        push(p, "ok", "write", serde_json::json!(p % 2), &mut lines);
    }
    push(n, "invoke", "read", serde_json::Value::Null, &mut lines);
    push(n, "ok", "read", serde_json::json!(0), &mut lines);
    push(n, "invoke", "read", serde_json::Value::Null, &mut lines);
    push(n, "ok", "read", serde_json::json!(1), &mut lines);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let p = path.display().to_string();
    let o = faultline(&[
        "check",
        &p,
        "--model",
        "register",
        "--memory-limit-mib",
        "1",
        "--time-limit",
        "20",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("unknown"),
        "{}",
        text(&o)
    );
}

#[test]
fn errors_exit_3_and_name_the_file_and_line() {
    let o = faultline(&["check", "/nonexistent/history.jsonl"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o).contains("/nonexistent/history.jsonl"),
        "{}",
        text(&o)
    );
    let dir = Scratch::new("bad");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"index\":0,\"time\":0,\"process\":0,\"type\":\"invoke\",\"f\":\"read\",\"value\":null}\n{\"index\":1,\"time\":1,\"process\":0,\"type\":\"okay\"}\n{\"index\":2}\n",
    )
    .unwrap();
    let b = bad.display().to_string();
    let o = faultline(&["check", &b]);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o).contains(&format!("{b}:2:")), "{}", text(&o));
    // An error outranks an invalid file.
    let o = faultline(&["check", &testdata("register-stale-read.jsonl"), &b]);
    assert_eq!(o.status.code(), Some(3));
    // Bad flags.
    let o = faultline(&["check", "--bogus", &b]);
    assert_eq!(o.status.code(), Some(3));
    let o = faultline(&["check", &b, "--time-limit", "0"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o).contains("--time-limit"), "{}", text(&o));
    let o = faultline(&["check", &b, "--threads", "0"]);
    assert_eq!(o.status.code(), Some(3));
    // An op the model does not know.
    let o = faultline(&[
        "check",
        &testdata("append-duplicated.jsonl"),
        "--model",
        "mutex",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o).contains("no operation \"append\""), "{}", text(&o));
}

#[test]
fn json_output() {
    let o = faultline(&[
        "check",
        "--json",
        &testdata("kv-lost-write.jsonl"),
        &testdata("kv-independent-keys.jsonl"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    assert_eq!(v["exit_code"], 1);
    let f0 = &v["files"][0];
    assert_eq!(f0["verdict"], "invalid");
    assert_eq!(f0["model"], "kv");
    assert_eq!(f0["result"]["key"], "a");
    assert_eq!(f0["result"]["witness"]["op"]["index"], 4);
    assert!(f0["check_ms"].as_f64().is_some());
    assert_eq!(f0["stats"]["write"]["ok"], 2);
    assert_eq!(v["files"][1]["verdict"], "valid");
}

#[test]
fn convert_round_trips_through_edn() {
    let dir = Scratch::new("convert");
    let src = testdata("multi-register-stale.jsonl");
    let edn: PathBuf = dir.path().join("h.edn");
    let back: PathBuf = dir.path().join("h.jsonl");
    let o = faultline(&[
        "history",
        "convert",
        &src,
        "--to",
        "edn",
        "-o",
        &edn.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let edn_text = std::fs::read_to_string(&edn).unwrap();
    assert!(
        edn_text.contains(":f :txn") && edn_text.contains("[[:write :x 1]]"),
        "{edn_text}"
    );
    let o = faultline(&[
        "history",
        "convert",
        &edn.display().to_string(),
        "--to",
        "jsonl",
        "-o",
        &back.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        std::fs::read_to_string(&src).unwrap()
    );
    // The EDN copy checks the same way (EDN registers start at 0, as Knossos's).
    let o = faultline(&["check", &edn.display().to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = faultline(&["history", "convert", "/nonexistent.edn", "--to", "jsonl"]);
    assert_eq!(o.status.code(), Some(3));
}

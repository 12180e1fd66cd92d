//! Tests of the history formats: JSONL writing/reading, EDN, Porcupine's formats, pairing.

use faultline_history::{
    Event, EventType, Format, JsonlWriter, Outcome, Process, pair, parse_edn, parse_jsonl,
    parse_porcupine_etcd, parse_porcupine_kv, parse_str, to_edn_string, to_jsonl_string,
};
use serde_json::json;
use std::path::PathBuf;

fn ev(index: u64, process: Process, kind: EventType, f: &str, value: serde_json::Value) -> Event {
    Event::new(index, index * 10, process, kind, f, value)
}

#[test]
fn process_serializes_as_number_or_nemesis() {
    let e = ev(0, Process::Nemesis, EventType::Info, "start", json!(null));
    let s = serde_json::to_string(&e).unwrap();
    assert!(s.contains("\"process\":\"nemesis\""), "{s}");
    assert!(s.contains("\"type\":\"info\""), "{s}");
    let e2 = ev(
        1,
        Process::Client(7),
        EventType::Invoke,
        "read",
        json!(null),
    );
    let s2 = serde_json::to_string(&e2).unwrap();
    assert!(s2.contains("\"process\":7"), "{s2}");
    assert_eq!(serde_json::from_str::<Event>(&s).unwrap(), e);
    assert_eq!(serde_json::from_str::<Event>(&s2).unwrap(), e2);
    assert!(serde_json::from_str::<Process>("\"bob\"").is_err());
    assert!(serde_json::from_str::<Process>("-1").is_err());
}

#[test]
fn writer_appends_and_reader_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let mut w = JsonlWriter::create(&path).unwrap();
    let mut events = vec![
        ev(0, Process::Client(0), EventType::Invoke, "write", json!(1)),
        ev(1, Process::Client(0), EventType::Ok, "write", json!(1)),
    ];
    events[0].key = Some("k1".into());
    events[1].node = Some("n2".into());
    for e in &events {
        w.append(e).unwrap();
    }
    assert_eq!(w.count(), 2);
    // Every appended event is already in the file, without closing the writer.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 2);
    let h = parse_jsonl("h", &text).unwrap();
    assert_eq!(h.events, events);
    assert!(h.warnings.is_empty());
    drop(w);
    let mut w2 = JsonlWriter::append_to(&path).unwrap();
    w2.append(&ev(
        2,
        Process::Client(1),
        EventType::Invoke,
        "read",
        json!(null),
    ))
    .unwrap();
    let (h2, format) = faultline_history::read_path(&path, None).unwrap();
    assert_eq!(format, Format::Jsonl);
    assert_eq!(h2.events.len(), 3);
}

#[test]
fn torn_last_line_is_a_warning_and_bad_middle_line_an_error() {
    let good = to_jsonl_string(&[ev(
        0,
        Process::Client(0),
        EventType::Invoke,
        "read",
        json!(null),
    )]);
    let torn = format!("{good}{{\"index\":1,\"ti");
    let h = parse_jsonl("run.jsonl", &torn).unwrap();
    assert_eq!(h.events.len(), 1);
    assert_eq!(h.warnings.len(), 1);
    assert!(h.warnings[0].contains("run.jsonl:2"), "{:?}", h.warnings);
    let bad = format!("{{\"index\":1,\"ti\n{good}");
    let err = parse_jsonl("run.jsonl", &bad).unwrap_err().to_string();
    assert!(err.starts_with("run.jsonl:1:"), "{err}");
    // A complete last line (with newline) that is bad is an error too.
    let err = parse_jsonl("run.jsonl", &format!("{good}{{\"index\":\"x\"}}\n"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("run.jsonl:2:"), "{err}");
}

#[test]
fn edn_vector_list_stream_and_comments() {
    let text = "; a comment\n[{:process 0, :type :invoke, :f :cas, :value [1 2]}\n {:process 0 :type :ok :f :cas :value [1 2]}\n {:process :nemesis :type :info :f :start :value nil}]";
    let h = parse_edn("a.edn", text).unwrap();
    assert_eq!(h.events.len(), 3);
    assert_eq!(h.events[0].value, json!([1, 2]));
    assert_eq!(h.events[1].index, 1);
    assert_eq!(h.events[2].process, Process::Nemesis);
    let list = "({:process 1, :type :invoke, :f :txn, :value [[:read :x nil] [:write :y 2]]})";
    let h = parse_edn("b.edn", list).unwrap();
    assert_eq!(
        h.events[0].value,
        json!([["read", "x", null], ["write", "y", 2]])
    );
    let stream = "{:process 1, :type :invoke, :f :read, :value nil, :time 5, :index 9}\n{:process 1, :type :fail, :f :read, :value nil, :error :timeout}\n";
    let h = parse_edn("c.edn", stream).unwrap();
    assert_eq!(h.events[0].time, 5);
    assert_eq!(h.events[0].index, 9);
    assert_eq!(h.events[1].error.as_deref(), Some("timeout"));
    let err = parse_edn(
        "d.edn",
        "[{:process 1, :type :invoke, :f :read}\n {:process 1 :type :bogus :f :read}]",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("d.edn:1") && err.contains(":type"), "{err}");
    let err = parse_edn(
        "e.edn",
        "{:process 1, :type :invoke, :f :read}\n{:process 1 :type :ok :f :read :value [1 2}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("e.edn:"), "{err}");
}

#[test]
fn edn_round_trip_through_writer() {
    let mut events = vec![
        ev(
            0,
            Process::Client(3),
            EventType::Invoke,
            "txn",
            json!([["read", "x", null], ["write", "y", 2]]),
        ),
        ev(1, Process::Nemesis, EventType::Info, "start", json!(null)),
        ev(
            2,
            Process::Client(3),
            EventType::Fail,
            "txn",
            json!([["read", "x", 1], ["write", "y", 2]]),
        ),
    ];
    events[2].error = Some("timed-out".into());
    events[0].key = Some("k".into());
    let text = to_edn_string(&events);
    assert!(text.contains("[[:read :x nil] [:write :y 2]]"), "{text}");
    let back = parse_edn("rt.edn", &text).unwrap();
    assert_eq!(back.events, events);
}

#[test]
fn porcupine_etcd_lines() {
    let text = "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nsome noise\nINFO  jepsen.util - 0\t:ok\t:read\t3\nINFO  jepsen.util - 1   :invoke   :cas   [1 2]\nINFO  jepsen.util - 1\t:fail\t:cas\t[1 2]\nINFO  jepsen.util - 2\t:invoke\t:read\tnil\nINFO  jepsen.util - 2\t:fail\t:read\t:timed-out\n";
    let h = parse_porcupine_etcd("e.log", text).unwrap();
    assert_eq!(h.events.len(), 6);
    assert_eq!(h.warnings.len(), 1);
    assert_eq!(h.events[3].value, json!([1, 2]));
    assert_eq!(h.events[5].kind, EventType::Info);
    let ops = pair("e.log", &h.events).unwrap();
    assert_eq!(ops[0].value, json!(3));
    assert_eq!(ops[1].outcome, Outcome::Fail);
    assert_eq!(ops[2].outcome, Outcome::Info);
    let err = parse_porcupine_etcd("e.log", "INFO jepsen.util - x :invoke :read nil\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("e.log:1:"), "{err}");
}

#[test]
fn porcupine_kv_lines() {
    let text = "{:process 0, :type :invoke, :f :append, :key \"3\", :value \"x 0 0 y\"}\n{:process 0, :type :ok, :f :append, :key \"3\", :value \"x 0 0 y\"}\n";
    let h = parse_porcupine_kv("kv.txt", text).unwrap();
    assert_eq!(h.events[1].key.as_deref(), Some("3"));
    assert_eq!(h.events[1].index, 1);
    let err = parse_porcupine_kv(
        "kv.txt",
        "{:process 0, :type :invoke, :f :get, :value nil}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("kv.txt:1") && err.contains(":key"), "{err}");
}

#[test]
fn pairing_rules() {
    let events = vec![
        ev(0, Process::Client(0), EventType::Invoke, "write", json!(1)),
        ev(
            1,
            Process::Client(1),
            EventType::Invoke,
            "read",
            json!(null),
        ),
        ev(2, Process::Nemesis, EventType::Info, "start", json!(null)),
        ev(3, Process::Client(1), EventType::Ok, "read", json!(1)),
        ev(4, Process::Client(0), EventType::Info, "write", json!(1)),
        ev(
            5,
            Process::Client(2),
            EventType::Invoke,
            "read",
            json!(null),
        ),
    ];
    let ops = pair("p", &events).unwrap();
    assert_eq!(ops.len(), 3);
    assert_eq!(ops[0].outcome, Outcome::Info);
    assert_eq!(ops[1].value, json!(1));
    assert_eq!(ops[1].ret, Some(3));
    assert_eq!(ops[2].outcome, Outcome::Pending);
    let twice = vec![
        ev(0, Process::Client(0), EventType::Invoke, "write", json!(1)),
        ev(1, Process::Client(0), EventType::Invoke, "write", json!(2)),
    ];
    let err = pair("p", &twice).unwrap_err().to_string();
    assert!(
        err.contains("event 1") && err.contains("still open"),
        "{err}"
    );
}

/// The corpus, when present: every file parses.
#[test]
fn corpus_files_parse() {
    let root = std::env::var("FAULTLINE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus")
        });
    let tsv = match std::fs::read_to_string(root.join("verdicts.tsv")) {
        Ok(t) => t,
        Err(e) => {
            assert!(
                std::env::var("FAULTLINE_REQUIRE_CORPUS").as_deref() != Ok("1"),
                "corpus required but {} unreadable: {e}",
                root.display()
            );
            eprintln!("skipping: corpus not found at {} ({e})", root.display());
            return;
        }
    };
    let mut n = 0;
    for row in tsv.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let format = if cols[1].starts_with("knossos") {
            Format::Edn
        } else if cols[1] == "porcupine-kv" {
            Format::PorcupineKv
        } else {
            Format::PorcupineEtcd
        };
        let text = std::fs::read_to_string(root.join(cols[0])).unwrap();
        let h = parse_str(cols[0], &text, format).unwrap_or_else(|e| panic!("{e}"));
        pair(cols[0], &h.events).unwrap_or_else(|e| panic!("{e}"));
        n += 1;
    }
    assert_eq!(n, 230);
}

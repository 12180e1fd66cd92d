//! Integration tests: real `faultline-node` processes on ephemeral loopback
//! ports — client operations through any node, failover after kill -9,
//! catch-up from the log and from a snapshot, durability across kill -9 of the
//! whole cluster, de-duplication, malformed requests and log recovery, and
//! (on faultline-diskfs mounts) that the `skip-fsync` mistake loses
//! acknowledged writes in a power cut but not in a kill -9.
//!
//! Ports come from `faultline_node::ports` (the nodes must know each other's
//! ports before they start, because of `--peer`). Every
//! process is killed by a Drop guard, even when a test fails. Cluster tests
//! take a global lock so that timing assertions (failover within 2 s) are not
//! measured on a machine running several clusters at once.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The nodes: the first three start as the cluster; the others are spares
/// for the membership tests.
const NAMES: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];

fn free_ports(n: usize) -> Vec<u16> {
    faultline_node::ports::reserve_loopback_ports(n)
        .expect("reserve loopback ports")
        .iter()
        .map(|a| a.port())
        .collect()
}

/// Three nodes' addresses, data directories and processes.
struct Cluster {
    dir: tempfile::TempDir,
    client_ports: Vec<u16>,
    peer_ports: Vec<u16>,
    procs: Vec<Option<Child>>,
    /// How many of NAMES are in every node's address book.
    total: usize,
    extra: Vec<String>,
    http: reqwest::Client,
    /// FUSE mounts under the data directories (dropped, so unmounted, after
    /// `drop` has killed the nodes).
    mounts: Vec<faultline_diskfs::Mount>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().flatten() {
            let _ = p.kill();
            let _ = p.wait();
        }
        if std::thread::panicking() {
            for n in &NAMES[..self.total] {
                let log = fs::read_to_string(self.log_path(n)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("--- last lines of {n}'s log ---");
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

impl Cluster {
    fn new(extra: &[&str]) -> Cluster {
        Cluster::with_spares(extra, 0)
    }

    /// Three voters (n1..n3) and `spares` more nodes in the address book,
    /// not started.
    fn with_spares(extra: &[&str], spares: usize) -> Cluster {
        let total = 3 + spares;
        let ports = free_ports(2 * total);
        let mut extra: Vec<&str> = extra.to_vec();
        if spares > 0 {
            extra.extend(["--voters", "n1,n2,n3"]);
        }
        Cluster {
            dir: tempfile::tempdir().expect("tempdir"),
            client_ports: ports[0..total].to_vec(),
            peer_ports: ports[total..].to_vec(),
            procs: (0..total).map(|_| None).collect(),
            total,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client"),
            mounts: Vec::new(),
        }
    }

    /// Puts each node's data directory on a faultline-diskfs mount (backing
    /// directory `<id>.disk` beside it); false, after saying why, where
    /// /dev/fuse is absent (a failure when FAULTLINE_REQUIRE_FUSE=1).
    fn mount_disks(&mut self) -> bool {
        if let Err(reason) = faultline_diskfs::fuse_available() {
            assert!(
                std::env::var("FAULTLINE_REQUIRE_FUSE").as_deref() != Ok("1"),
                "FAULTLINE_REQUIRE_FUSE=1 but FUSE cannot be used: {reason}"
            );
            eprintln!("skipping: {reason}");
            return false;
        }
        for (i, name) in NAMES.iter().enumerate() {
            let backing = self.dir.path().join(format!("{name}.disk"));
            let m = faultline_diskfs::mount(&backing, &self.data_dir(i), &Default::default())
                .expect("mount");
            self.mounts.push(m);
        }
        true
    }

    fn start_all(extra: &[&str]) -> Cluster {
        let mut c = Cluster::new(extra);
        for i in 0..3 {
            c.start(i);
        }
        c
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(NAMES[i])
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn command(&self, i: usize) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline-node"));
        cmd.arg("--id").arg(NAMES[i]);
        cmd.arg("--data-dir").arg(self.data_dir(i));
        cmd.arg("--client-addr")
            .arg(format!("127.0.0.1:{}", self.client_ports[i]));
        cmd.arg("--peer-addr")
            .arg(format!("127.0.0.1:{}", self.peer_ports[i]));
        for j in (0..self.total).filter(|&j| j != i) {
            cmd.arg("--peer")
                .arg(format!("{}=127.0.0.1:{}", NAMES[j], self.peer_ports[j]));
            cmd.arg("--peer-client")
                .arg(format!("{}={}", NAMES[j], self.url(j)));
        }
        cmd.args(&self.extra);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(NAMES[i]))
            .expect("log file");
        cmd.stdout(Stdio::null()).stderr(log);
        cmd
    }

    fn start(&mut self, i: usize) {
        assert!(self.procs[i].is_none(), "{} already running", NAMES[i]);
        self.procs[i] = Some(self.command(i).spawn().expect("spawn faultline-node"));
    }

    /// Starts a spare that waits to be added (`--join`).
    fn start_joining(&mut self, i: usize) {
        assert!(self.procs[i].is_none(), "{} already running", NAMES[i]);
        let mut cmd = self.command(i);
        cmd.arg("--join");
        self.procs[i] = Some(cmd.spawn().expect("spawn faultline-node"));
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            p.kill().expect("kill -9");
            p.wait().expect("wait");
        }
    }

    fn sigterm(&mut self, i: usize) -> std::process::ExitStatus {
        let mut p = self.procs[i].take().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = p.try_wait().expect("wait") {
                return st;
            }
            assert!(Instant::now() < deadline, "node did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.client_ports[i])
    }

    async fn status(&self, i: usize) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}/status", self.url(i)))
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// Waits until one of `among` is leader and the others agree on it.
    async fn leader(&self, among: &[usize], within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let mut seen = Vec::new();
            for &i in among {
                seen.push(self.status(i).await);
            }
            for (k, s) in seen.iter().enumerate() {
                if let Some(s) = s
                    && s["role"] == "leader"
                {
                    let name = &s["id"];
                    let agreed = seen
                        .iter()
                        .all(|o| o.as_ref().is_some_and(|o| &o["leader"] == name));
                    if agreed {
                        return among[k];
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {among:?}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a request to node `start`, following `not_leader` answers (and
    /// retrying while there is no leader) until a deadline.
    async fn call(
        &self,
        start: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut url = self.url(start);
        loop {
            let mut req = self.http.request(method.clone(), format!("{url}{path}"));
            if let Some(b) = &body {
                req = req.json(b);
            }
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let (status, v) = match req.send().await {
                Ok(r) => {
                    let s = r.status().as_u16();
                    (s, r.json::<Value>().await.unwrap_or(Value::Null))
                }
                Err(_) => (0, Value::Null),
            };
            let retry = match (status, v["error"].as_str()) {
                (503, Some("not_leader")) => {
                    url = match v["leader_url"].as_str() {
                        Some(u) => u.to_string(),
                        None => self.url(next_node(&url, self)),
                    };
                    true
                }
                (0, _) | (503, _) => {
                    url = self.url(next_node(&url, self));
                    true
                }
                _ => false,
            };
            if !retry {
                return (status, v);
            }
            assert!(
                Instant::now() < deadline,
                "{method} {path}: still {status} {v}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn put(&self, via: usize, key: &str, value: Value) {
        let (s, v) = self
            .call(
                via,
                reqwest::Method::PUT,
                &format!("/kv/{key}"),
                Some(json!({ "value": value })),
                &[],
            )
            .await;
        assert_eq!((s, &v), (200, &json!({})), "put {key}");
    }

    async fn get(&self, via: usize, key: &str, consistency: &str) -> Value {
        let (s, v) = self
            .call(
                via,
                reqwest::Method::GET,
                &format!("/kv/{key}?consistency={consistency}"),
                None,
                &[],
            )
            .await;
        assert_eq!(s, 200, "get {key}: {v}");
        v["value"].clone()
    }

    /// Waits until node `i` has applied at least `index`.
    async fn wait_applied(&self, i: usize, index: u64, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.status(i).await
                && s["applied_index"].as_u64().is_some_and(|a| a >= index)
            {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{} never applied {index}",
                NAMES[i]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The next node after the one `url` points at (round-robin when there is no
/// leader hint).
fn next_node(url: &str, c: &Cluster) -> usize {
    let cur = (0..c.total).find(|&i| c.url(i) == url).unwrap_or(0);
    (cur + 1) % c.total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reads_and_cas_through_any_node() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start_all(&[]);
    let leader = c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;

    // A follower names the leader and its URL rather than forwarding.
    let r = c
        .http
        .put(format!("{}/kv/a", c.url(follower)))
        .json(&json!({"value": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "not_leader");
    assert_eq!(v["leader"], NAMES[leader]);
    assert_eq!(v["leader_url"], c.url(leader));

    for i in 0..3 {
        c.put(i, &format!("k{i}"), json!({"n": i})).await;
    }
    for i in 0..3 {
        for cons in ["linearizable", "lease"] {
            assert_eq!(
                c.get((i + 1) % 3, &format!("k{i}"), cons).await,
                json!({"n": i})
            );
        }
    }
    assert_eq!(c.get(0, "absent", "linearizable").await, Value::Null);

    let post = reqwest::Method::POST;
    let (s, v) = c
        .call(
            follower,
            post.clone(),
            "/kv/k0/cas",
            Some(json!({"from": 5, "to": 6})),
            &[],
        )
        .await;
    assert_eq!((s, v), (412, json!({"ok": false, "value": {"n": 0}})));
    let (s, v) = c
        .call(
            follower,
            post.clone(),
            "/kv/k0/cas",
            Some(json!({"from": {"n": 0}, "to": 7})),
            &[],
        )
        .await;
    assert_eq!((s, v), (200, json!({"ok": true})));
    let (s, _) = c
        .call(
            0,
            post.clone(),
            "/kv/new/cas",
            Some(json!({"from": null, "to": "x"})),
            &[],
        )
        .await;
    assert_eq!(s, 200);
    for e in [1, 2] {
        let (s, _) = c
            .call(
                1,
                post.clone(),
                "/kv/list/append",
                Some(json!({"value": e})),
                &[],
            )
            .await;
        assert_eq!(s, 200);
    }
    assert_eq!(c.get(2, "list", "linearizable").await, json!([1, 2]));
    let (s, v) = c
        .call(
            2,
            post.clone(),
            "/kv/ctr/incr",
            Some(json!({"delta": 5})),
            &[],
        )
        .await;
    assert_eq!((s, v), (200, json!({"value": 5})));
    let (s, _) = c
        .call(2, reqwest::Method::DELETE, "/kv/k0", None, &[])
        .await;
    assert_eq!(s, 200);
    assert_eq!(c.get(1, "k0", "linearizable").await, Value::Null);

    // Stale reads answer locally on every node; they converge.
    let st = c.status(leader).await.unwrap();
    let commit = st["commit_index"].as_u64().unwrap();
    for i in 0..3 {
        c.wait_applied(i, commit, Duration::from_secs(5)).await;
        assert_eq!(c.get(i, "list", "stale").await, json!([1, 2]));
    }
    for field in [
        "id",
        "role",
        "term",
        "leader",
        "commit_index",
        "applied_index",
        "last_log_index",
        "snapshot_index",
    ] {
        assert!(st.get(field).is_some(), "status lacks {field}: {st}");
    }
    let h = c
        .http
        .get(format!("{}/health", c.url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_failover_and_catch_up_from_log_and_snapshot() {
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::start_all(&["--snapshot-every", "50"]);
    let old = c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    for k in 0..10 {
        c.put(old, &format!("a{k}"), json!(k)).await;
    }

    // kill -9 of the leader: a new one within 2 s.
    c.kill9(old);
    let killed_at = Instant::now();
    let rest: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let new = c.leader(&rest, Duration::from_secs(10)).await;
    let failover = killed_at.elapsed();
    eprintln!("failover: new leader {} after {failover:?}", NAMES[new]);
    assert!(
        failover < Duration::from_secs(2),
        "failover took {failover:?}"
    );

    // Catch-up from the log: a few writes (fewer than a snapshot's worth).
    for k in 0..10 {
        c.put(new, &format!("b{k}"), json!(k)).await;
    }
    c.start(old);
    let commit = c.status(new).await.unwrap()["commit_index"]
        .as_u64()
        .unwrap();
    c.wait_applied(old, commit, Duration::from_secs(10)).await;
    for k in 0..10 {
        assert_eq!(c.get(old, &format!("b{k}"), "stale").await, json!(k));
    }

    // Catch-up from a snapshot: a follower misses more than the leader keeps.
    let leader = c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let lagger = (leader + 1) % 3;
    c.kill9(lagger);
    let before = c.status(leader).await.unwrap();
    for k in 0..120 {
        c.put(leader, &format!("c{k}"), json!(k)).await;
    }
    let st = c.status(leader).await.unwrap();
    assert!(
        st["snapshot_index"].as_u64().unwrap() > before["last_log_index"].as_u64().unwrap(),
        "leader did not compact past the lagger: {st}"
    );
    c.start(lagger);
    let commit = st["commit_index"].as_u64().unwrap();
    let lst = c
        .wait_applied(lagger, commit, Duration::from_secs(10))
        .await;
    assert!(
        lst["snapshot_index"].as_u64().unwrap() > before["last_log_index"].as_u64().unwrap(),
        "the lagger caught up without a snapshot: {lst}"
    );
    for k in [0, 57, 119] {
        assert_eq!(c.get(lagger, &format!("c{k}"), "stale").await, json!(k));
    }
    assert_eq!(c.get(lagger, "a3", "stale").await, json!(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_all_and_restart_keeps_every_acknowledged_write() {
    let _serial = SERIAL.lock().await;
    // Small segments: the log rolls over many files, which recovery reads back.
    let mut c = Cluster::start_all(&["--snapshot-every", "200", "--segment-bytes", "1024"]);
    c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let http = c.http.clone();
    let urls: Vec<String> = (0..3).map(|i| c.url(i)).collect();
    // Writers keep going until the processes die under them; each records
    // the keys it got a 200 for.
    let mut writers = Vec::new();
    for w in 0..8 {
        let http = http.clone();
        let urls = urls.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut target = 0usize;
            let mut failures = 0;
            for k in 0.. {
                let key = format!("w{w}-{k}");
                let r = http
                    .put(format!("{}/kv/{key}", urls[target]))
                    .json(&json!({"value": k}))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => acked.push((key, k)),
                    Ok(_) => target = (target + 1) % 3,
                    Err(_) => {
                        failures += 1;
                        if failures > 20 {
                            break;
                        }
                    }
                }
            }
            acked
        }));
    }
    // Let the writers get a few hundred writes acknowledged, then kill all.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = c.status(0).await;
        if st.is_some_and(|s| s["commit_index"].as_u64().unwrap_or(0) > 400) {
            break;
        }
        assert!(Instant::now() < deadline, "writes did not progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..3 {
        c.kill9(i);
    }
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(
        acked.len() > 300,
        "only {} writes acknowledged",
        acked.len()
    );
    for i in 0..3 {
        c.start(i);
    }
    let leader = c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    for (key, k) in &acked {
        assert_eq!(
            c.get(leader, key, "linearizable").await,
            json!(k),
            "lost acknowledged {key}"
        );
    }
    eprintln!(
        "all {} acknowledged writes survived kill -9 of every node",
        acked.len()
    );
}

/// Puts 30 keys one by one on a cluster whose data directories are FUSE
/// mounts, kills every node with -9, drops their unsynced writes when
/// `power_cut`, restarts them and counts the acknowledged keys that are
/// gone (`None` where FUSE cannot be used).
async fn lost_after_crash(extra: &[&str], power_cut: bool) -> Option<usize> {
    let mut c = Cluster::new(extra);
    if !c.mount_disks() {
        return None;
    }
    for i in 0..3 {
        c.start(i);
    }
    let leader = c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    for k in 0..30 {
        c.put(leader, &format!("k{k}"), json!(k)).await;
    }
    for i in 0..3 {
        c.kill9(i);
    }
    if power_cut {
        for m in &c.mounts {
            m.control().lose_unsynced(None).expect("lose unsynced");
        }
    }
    for i in 0..3 {
        c.start(i);
    }
    let leader = c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let mut lost = 0;
    for k in 0..30 {
        if c.get(leader, &format!("k{k}"), "linearizable").await != json!(k) {
            lost += 1;
        }
    }
    Some(lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_fsync_loses_acknowledged_writes_in_a_power_cut_only() {
    let _serial = SERIAL.lock().await;
    let Some(lost) = lost_after_crash(&[], true).await else {
        return;
    };
    assert_eq!(lost, 0, "the correct node lost acknowledged writes");
    let bug = ["--bug", "skip-fsync"];
    assert_eq!(
        lost_after_crash(&bug, false).await,
        Some(0),
        "kill -9 alone keeps unsynced writes (the page cache survives it)"
    );
    // Nothing was ever synced: every node comes back empty.
    assert_eq!(lost_after_crash(&bug, true).await, Some(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_request_is_applied_once() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start_all(&[]);
    c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let post = reqwest::Method::POST;
    let h1 = [("X-Client-Id", "c7"), ("X-Request-Seq", "1")];
    for via in [0, 1, 2, 0] {
        let (s, v) = c
            .call(
                via,
                post.clone(),
                "/kv/n/incr",
                Some(json!({"delta": 1})),
                &h1,
            )
            .await;
        assert_eq!((s, v), (200, json!({"value": 1})), "retry via {via}");
    }
    let h2 = [("X-Client-Id", "c7"), ("X-Request-Seq", "2")];
    let (s, v) = c
        .call(
            1,
            post.clone(),
            "/kv/n/incr",
            Some(json!({"delta": 1})),
            &h2,
        )
        .await;
    assert_eq!((s, v), (200, json!({"value": 2})));
    let (s, v) = c
        .call(
            1,
            post.clone(),
            "/kv/n/incr",
            Some(json!({"delta": 1})),
            &h2,
        )
        .await;
    assert_eq!((s, v), (200, json!({"value": 2})));
    // A put retried after a later write to the key does not clobber it.
    let hp = [("X-Client-Id", "c8"), ("X-Request-Seq", "1")];
    let (s, _) = c
        .call(
            0,
            reqwest::Method::PUT,
            "/kv/p",
            Some(json!({"value": "first"})),
            &hp,
        )
        .await;
    assert_eq!(s, 200);
    c.put(0, "p", json!("second")).await;
    let (s, _) = c
        .call(
            0,
            reqwest::Method::PUT,
            "/kv/p",
            Some(json!({"value": "first"})),
            &hp,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(c.get(2, "p", "linearizable").await, json!("second"));
    assert_eq!(c.get(2, "n", "linearizable").await, json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_4xx_with_a_message() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start_all(&[]);
    let leader = c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let base = c.url(leader);
    let huge = "x".repeat(3 << 20);
    // A body over the limit is refused from its Content-Length, before it is
    // read; the server then closes the connection, so send it by hand.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", c.client_ports[leader]))
            .await
            .unwrap();
        let head = format!(
            "PUT /kv/a HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            huge.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let _ = s.write_all(&huge.as_bytes()[..4096]).await;
        let mut resp = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&resp).ends_with('}') && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => resp.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        let resp = String::from_utf8_lossy(&resp);
        assert!(resp.starts_with("HTTP/1.1 413"), "huge body: {resp}");
        assert!(resp.contains(r#""error":"too_large""#), "huge body: {resp}");
    }
    let long_key = "k".repeat(2000);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            c.http.put(format!("{base}/kv/a")).body("{not json"),
            400,
            "bad_request",
        ),
        (
            c.http.put(format!("{base}/kv/a")).body(r#"{"valu": 1}"#),
            400,
            "bad_request",
        ),
        (
            c.http
                .put(format!("{base}/kv/a"))
                .body(format!(r#"{{"value": "{}"}}"#, &huge[..(1 << 20) + 10])),
            413,
            "too_large",
        ),
        (
            c.http
                .put(format!("{base}/kv/{long_key}"))
                .body(r#"{"value": 1}"#),
            413,
            "too_large",
        ),
        (
            c.http.get(format!("{base}/kv/a?consistency=eventual")),
            400,
            "bad_request",
        ),
        (
            c.http
                .post(format!("{base}/kv/a/incr"))
                .body(r#"{"delta": "one"}"#),
            400,
            "bad_request",
        ),
        (
            c.http
                .post(format!("{base}/kv/a/cas"))
                .body(r#"{"from": 1}"#),
            400,
            "bad_request",
        ),
        (
            c.http
                .put(format!("{base}/kv/a"))
                .header("X-Client-Id", "c")
                .body(r#"{"value": 1}"#),
            400,
            "bad_request",
        ),
        (
            c.http
                .put(format!("{base}/kv/a"))
                .header("X-Client-Id", "c")
                .header("X-Request-Seq", "-1")
                .body(r#"{"value": 1}"#),
            400,
            "bad_request",
        ),
        (c.http.get(format!("{base}/nope")), 404, "not_found"),
        (c.http.post(format!("{base}/kv/a")), 405, "bad_request"),
    ];
    for (i, (req, status, kind)) in cases.into_iter().enumerate() {
        let r = req.send().await.expect("answered");
        assert_eq!(r.status().as_u16(), status, "case {i}");
        let v: Value = r.json().await.expect("JSON error body");
        assert_eq!(v["error"], kind, "case {i}: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "case {i}: {v}"
        );
    }
    // An append to a non-list is refused by the state machine, definitely.
    c.put(leader, "scalar", json!(1)).await;
    let (s, v) = c
        .call(
            leader,
            reqwest::Method::POST,
            "/kv/scalar/append",
            Some(json!({"value": 2})),
            &[],
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_request")));
    // The node is still fine.
    assert_eq!(c.get(leader, "scalar", "linearizable").await, json!(1));
}

/// Segment files of a data directory, in order.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

/// Offsets of the records of a segment file (format: len u32, crc u32, payload).
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offs = Vec::new();
    let mut off = 0;
    while off + 8 <= bytes.len() {
        offs.push(off);
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        off += 8 + len;
    }
    offs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_recovery_through_the_binary() {
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::start_all(&[]);
    let leader = c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    for k in 0..20 {
        c.put(leader, &format!("r{k}"), json!(k)).await;
    }
    let commit = c.status(leader).await.unwrap()["commit_index"]
        .as_u64()
        .unwrap();
    for i in 0..3 {
        c.wait_applied(i, commit, Duration::from_secs(5)).await;
    }
    let victim = (leader + 1) % 3;
    let st = c.sigterm(victim);
    assert!(st.success(), "SIGTERM exit: {st:?}");
    let seg = segments(&c.data_dir(victim)).pop().expect("a segment");
    let good = fs::read(&seg).unwrap();
    let offs = record_offsets(&good);
    assert!(offs.len() > 10);

    // A truncated final record is repaired: the node starts and catches up.
    fs::write(&seg, &good[..good.len() - 3]).unwrap();
    c.start(victim);
    c.wait_applied(victim, commit, Duration::from_secs(10))
        .await;
    assert_eq!(c.get(victim, "r19", "stale").await, json!(19));
    c.sigterm(victim);
    let log = fs::read_to_string(c.log_path(NAMES[victim])).unwrap();
    assert!(
        log.contains("truncating torn or corrupt tail record"),
        "no warning in log"
    );

    // A flipped byte in an earlier record stops the node with a clear message.
    let good = fs::read(&seg).unwrap();
    let offs = record_offsets(&good);
    let bad_at = offs[offs.len() / 2];
    let mut bad = good.clone();
    bad[bad_at + 12] ^= 0x20;
    fs::write(&seg, &bad).unwrap();
    let out = c
        .command(victim)
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "exit status {:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&seg.display().to_string()) && err.contains(&format!("offset {bad_at}")),
        "unclear error: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliberate_bugs_are_off_by_default_and_switch_on_by_name() {
    let _serial = SERIAL.lock().await;
    // With `--bug skip-dedup` a retried increment applies twice (without it,
    // `retried_request_is_applied_once` shows it applies once).
    let c = Cluster::start_all(&["--bug", "skip-dedup"]);
    c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let h = [("X-Client-Id", "c1"), ("X-Request-Seq", "1")];
    for want in [1, 2] {
        let (s, v) = c
            .call(
                0,
                reqwest::Method::POST,
                "/kv/n/incr",
                Some(json!({"delta": 1})),
                &h,
            )
            .await;
        assert_eq!((s, v), (200, json!({ "value": want })));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_faultline-node"))
        .arg("--list-bugs")
        .output()
        .expect("run");
    let list = String::from_utf8_lossy(&out.stdout);
    for name in [
        "forget-vote",
        "ack-before-commit",
        "stale-local-read",
        "ack-before-fsync",
        "skip-dedup",
        "skip-fsync",
    ] {
        assert!(list.contains(name), "--list-bugs lacks {name}: {list}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_faultline-node"))
        .args([
            "--id",
            "n1",
            "--data-dir",
            "/nonexistent",
            "--client-addr",
            "127.0.0.1:0",
        ])
        .args(["--peer-addr", "127.0.0.1:0", "--bug", "no-such-bug"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no-such-bug"));
}

impl Cluster {
    async fn members(&self, i: usize) -> Value {
        let r = self
            .http
            .get(format!("{}/admin/members", self.url(i)))
            .send()
            .await
            .expect("GET /admin/members");
        assert_eq!(r.status(), 200);
        r.json().await.expect("JSON")
    }

    /// A membership change through whichever node leads; retries while a
    /// learner is catching up.
    async fn change(&self, body: Value) -> (u16, Value) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (s, v) = self
                .call(
                    0,
                    reqwest::Method::POST,
                    "/admin/members",
                    Some(body.clone()),
                    &[],
                )
                .await;
            let catching_up = v["message"]
                .as_str()
                .is_some_and(|m| m.contains("caught up"));
            if !(s == 409 && catching_up) {
                return (s, v);
            }
            assert!(Instant::now() < deadline, "{body}: still {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_grows_shrinks_and_refuses_bad_changes() {
    let _serial = SERIAL.lock().await;
    // Without CheckQuorum the leader stays leader while its followers are
    // down, which the in-flight check below needs.
    let mut c = Cluster::with_spares(&["--snapshot-every=32", "--check-quorum=false"], 2);
    for i in 0..3 {
        c.start(i);
    }
    let leader = c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    for k in 0..40 {
        c.put(leader, &format!("k{k}"), json!(k)).await;
    }
    let before = c.members(leader).await;
    assert_eq!(before["voters"], json!(["n1", "n2", "n3"]), "{before}");
    assert_eq!(before["index"], 0);

    // Bad requests: each a clear 4xx, and nothing changes.
    let bad = [
        (json!({"op": "grow", "node": "n4"}), 400, "unknown op"),
        (json!({"op": "promote"}), 400, "node"),
        (json!({"op": "replace", "node": "n4"}), 400, "remove"),
        (
            json!({"op": "add-learner", "node": "n9"}),
            404,
            "no node named",
        ),
        (json!({"op": "promote", "node": "n4"}), 409, "not a learner"),
        (json!({"op": "remove", "node": "n5"}), 409, "not a voter"),
        (
            json!({"op": "add-learner", "node": "n2"}),
            409,
            "already a member",
        ),
    ];
    for (body, status, says) in bad {
        let (s, v) = c.change(body.clone()).await;
        assert_eq!(s, status, "{body} -> {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| m.contains(says)),
            "{body} -> {v}"
        );
    }
    let r = c
        .http
        .post(format!("{}/admin/members", c.url(leader)))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        c.members(leader).await,
        before,
        "a refused change changed nothing"
    );

    // Grow: n4 joins empty, as a learner, catches up (by snapshot) and is promoted.
    // With both followers down the change cannot commit; meanwhile a
    // second change is refused with 409 and changes nothing.
    c.start_joining(3);
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &f in &followers {
        c.kill9(f);
    }
    let stuck = c
        .http
        .post(format!("{}/admin/members", c.url(leader)))
        .json(&json!({"op": "add-learner", "node": "n4"}))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(
        stuck.is_err(),
        "no answer while it cannot commit: {stuck:?}"
    );
    let (s, v) = c.change(json!({"op": "add-learner", "node": "n5"})).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("conflict")), "{v}");
    assert_eq!(c.members(leader).await["learners"], json!(["n4"]));
    for &f in &followers {
        c.start(f);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.members(leader).await["committed"] != json!(true) {
        assert!(Instant::now() < deadline, "the learner was never committed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, v) = c.change(json!({"op": "promote", "node": "n4"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["voters"], json!(["n1", "n2", "n3", "n4"]), "{v}");
    assert_eq!(v["outgoing"], json!([]), "joint consensus ended: {v}");
    assert_eq!(
        c.get(3, "k39", "stale").await,
        json!(39),
        "n4 holds the data"
    );

    // Replace n5 for n1 in one joint change (n5 joins first as a learner).
    c.start_joining(4);
    let (s, _) = c.change(json!({"op": "add-learner", "node": "n5"})).await;
    assert_eq!(s, 200);
    let (s, v) = c
        .change(json!({"op": "replace", "node": "n5", "remove": "n1"}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["voters"], json!(["n2", "n3", "n4", "n5"]), "{v}");
    c.kill9(0);
    c.put(1, "after-replace", json!(1)).await;

    // A member restarted recovers the membership from its own disk.
    c.kill9(3);
    c.start_joining(3);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = c.status(3).await;
        if m.is_some() {
            let m = c.members(3).await;
            if m["voters"] == json!(["n2", "n3", "n4", "n5"]) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "n4 did not recover the membership"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Shrink to one voter; the last one cannot be removed.
    for n in ["n2", "n3", "n4"] {
        let (s, v) = c.change(json!({"op": "remove", "node": n})).await;
        assert_eq!(s, 200, "remove {n}: {v}");
    }
    let (s, v) = c.change(json!({"op": "remove", "node": "n5"})).await;
    assert_eq!((s, v["error"].as_str()), (422, Some("last_voter")), "{v}");
    assert_eq!(c.members(4).await["voters"], json!(["n5"]));
    assert_eq!(c.get(4, "after-replace", "linearizable").await, json!(1));
}

//! ZooKeeper through the system-under-test boundary (its spec file and its
//! client protocol), against 3 real servers when `java` and Debian's
//! `/usr/share/java/zookeeper.jar` are there (CI installs `zookeeperd`;
//! elsewhere the test says it skipped): every command round-trips; every
//! connection between two servers' peer ports goes through faultline's
//! proxies (the election handshake's connect-back included); with the
//! leader isolated, writes through it never end `ok`, and after healing it
//! serves again. Every process dies with the test, even when it fails.

mod run_common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use faultline::client::{self, ClientCtx};
use faultline::cluster::{Cluster, ClusterConfig, ClusterPaths};
use faultline::nemesis::{CutMode, Fault, PartitionShape, View, partition};
use faultline::recorder::Recorder;
use faultline::supervisor::Supervisor;
use faultline::sut::protocol::ProtocolEnv;
use faultline::sut::protocol::zookeeper::ZooKeeper;
use faultline::sut::{Db, Protocol, ReadMode, which};
use faultline_workloads::{OpSpec, Reply};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use run_common::{Guard, TestDir, pids_mentioning};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn op(f: &str, key: &str, value: Value) -> OpSpec {
    OpSpec {
        f: f.into(),
        key: Some(key.into()),
        value,
    }
}

/// Why ZooKeeper cannot run here, if it cannot.
fn missing() -> Option<&'static str> {
    if which("java").is_none() {
        return Some("java is not on PATH");
    }
    if !Path::new("/usr/share/java/zookeeper.jar").exists() {
        return Some("/usr/share/java/zookeeper.jar is missing");
    }
    None
}

/// One established TCP connection of `/proc/net/tcp`: its inode and ports.
struct Conn {
    inode: u64,
    local: u16,
    remote: u16,
}

/// Established connections over IPv4 and IPv6 (a JVM opens dual-stack
/// sockets, listed in `tcp6` with IPv4-mapped addresses).
fn established() -> Vec<Conn> {
    let table = ["/proc/net/tcp", "/proc/net/tcp6"]
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .join("\n");
    let port = |a: &str| {
        a.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    table
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // State 01 is ESTABLISHED (header lines have no state).
            (f.len() > 9 && f[3] == "01").then_some(())?;
            Some(Conn {
                local: port(f[1])?,
                remote: port(f[2])?,
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

/// The socket inodes a process holds.
fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return BTreeSet::new();
    };
    fds.flatten()
        .filter_map(|fd| {
            let l = std::fs::read_link(fd.path()).ok()?;
            let l = l.to_str()?;
            l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_ops_round_trip_links_are_proxied_and_an_isolated_leader_never_acks() {
    if !run_common::can_run("zookeeper_sut", missing().map(str::to_string)) {
        return;
    }
    let dir = TestDir::new("zookeeper_sut");
    // Kills every server, even if an assertion below fails.
    let _guard = Guard {
        child: None,
        dir: dir.path().to_path_buf(),
    };
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let cfg = ClusterConfig {
        nodes: 3,
        spares: 0,
        client_links: false,
        read_mode: ReadMode::Linearizable,
        seed: 5,
        direct: false,
        clocks: false,
        disks: false,
    };
    let db = Arc::new(Db::resolve("zookeeper").expect("built in"));
    let cluster = Cluster::start(
        db,
        &cfg,
        &ClusterPaths::under(dir.path()),
        cancel.clone(),
        &tracker,
    )
    .await
    .expect("launch zookeeper");
    let leader = cluster
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("ready")
        .expect("a zookeeper leader");

    // Every command, through the built-in protocol.
    let recorder = Arc::new(
        Recorder::create(&dir.path().join("history.jsonl"), std::time::Instant::now())
            .expect("recorder"),
    );
    let ctx_for = |workload: &str, protocol: Arc<dyn Protocol>, nodes: Vec<String>, ms: u64| {
        ClientCtx::new(
            faultline_workloads::by_name(workload)
                .expect("workload")
                .into(),
            recorder.clone(),
            protocol,
            nodes,
            Duration::from_millis(ms),
            Duration::from_millis(ms),
            100,
        )
    };
    let register = ctx_for("register", cluster.protocol.clone(), cluster.ids(), 5000);
    let mut c = cluster.protocol.client(0).await.expect("client");
    let mut s = client::session(1, 0);
    let mut run = async |ctx: &ClientCtx, s: &mut client::Session, o: OpSpec| {
        let r = client::perform(ctx, s, &mut *c, &o).await;
        ctx.workload.completion(&o, r)
    };
    assert_eq!(
        run(&register, &mut s, op("read", "r", Value::Null)).await,
        Reply::Ok(Value::Null),
        "absent key reads the initial value"
    );
    assert_eq!(
        run(&register, &mut s, op("write", "r", json!(1))).await,
        Reply::Ok(json!(1))
    );
    assert_eq!(
        run(&register, &mut s, op("cas", "r", json!([1, 2]))).await,
        Reply::Ok(json!([1, 2]))
    );
    assert_eq!(
        run(&register, &mut s, op("cas", "r", json!([1, 3]))).await,
        Reply::Fail(json!(2), "cas-mismatch".into())
    );
    assert_eq!(
        run(&register, &mut s, op("cas", "z", json!([null, 4]))).await,
        Reply::Ok(json!([null, 4])),
        "cas from null creates the key"
    );
    assert!(
        matches!(
            run(&register, &mut s, op("cas", "z", json!([null, 5]))).await,
            Reply::Fail(..)
        ),
        "cas from null on a present key is refused"
    );
    let mut s2 = client::session(2, 2);
    assert_eq!(
        run(&register, &mut s2, op("read", "r", Value::Null)).await,
        Reply::Ok(json!(2)),
        "another server reads the same value"
    );
    let append = ctx_for("append", cluster.protocol.clone(), cluster.ids(), 5000);
    for v in [7, 8] {
        assert_eq!(
            run(&append, &mut s, op("append", "a0", json!(v))).await,
            Reply::Ok(json!(v))
        );
    }
    assert_eq!(
        run(&append, &mut s2, op("read", "a0", Value::Null)).await,
        Reply::Ok(json!([7, 8]))
    );
    let counter = ctx_for("counter", cluster.protocol.clone(), cluster.ids(), 5000);
    for _ in 0..2 {
        assert_eq!(
            run(&counter, &mut s, op("add", "c", json!(3))).await,
            Reply::Ok(json!(3))
        );
    }
    assert_eq!(
        run(&counter, &mut s2, op("read", "c", Value::Null)).await,
        Reply::Ok(json!(6))
    );

    // Every connection a server holds to a peer port goes through a proxy:
    // none reaches another server's own quorum or election port, and each
    // server holds at least one election connection to a link proxy (the
    // ones that stay are dialled back by the higher id, to the address the
    // handshake named, which the proxy rewrote).
    let names = &cluster.names;
    let n = names.ids.len();
    let mut real: BTreeSet<u16> = BTreeSet::new();
    for port in ["quorum", "election"] {
        for own in &names.ports {
            real.insert(own[port]);
        }
    }
    let proxy_ports = |port: &str| -> BTreeSet<u16> {
        (0..n)
            .flat_map(|i| (0..n).filter(move |j| *j != i).map(move |j| (i, j)))
            .map(|(i, j)| names.dial[port][i][j])
            .collect()
    };
    let (election_proxies, quorum_proxies) = (proxy_ports("election"), proxy_ports("quorum"));
    let pids = cluster.supervisor.pids();
    assert_eq!(pids.len(), 3, "three servers running");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let conns = established();
        let mut through_proxies = 0;
        let mut quorum = 0;
        for (k, pid) in pids.iter().enumerate() {
            let mine = socket_inodes(*pid);
            let own: Vec<&Conn> = conns.iter().filter(|c| mine.contains(&c.inode)).collect();
            for c in &own {
                assert!(
                    !real.contains(&c.remote) || names.ports[k].values().any(|p| *p == c.local),
                    "server {} (pid {pid}) is connected from port {} straight to a peer's own \
                     port {}",
                    names.ids[k],
                    c.local,
                    c.remote
                );
            }
            if own.iter().any(|c| election_proxies.contains(&c.remote)) {
                through_proxies += 1;
            }
            quorum += own
                .iter()
                .filter(|c| quorum_proxies.contains(&c.remote))
                .count();
        }
        // Both followers dial the leader's quorum port, through their links.
        if through_proxies >= 2 && quorum >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "servers never held election and quorum connections through the proxies \
             ({through_proxies} with election links, {quorum} quorum connections)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Isolate the leader: the others elect a newer one.
    let view = View::of(cluster.ids(), Some(leader.clone()));
    let cut = partition(
        PartitionShape::IsolateLeader,
        &view,
        &mut ChaCha8Rng::seed_from_u64(1),
    );
    cluster
        .apply(&Fault::Partition {
            shape: PartitionShape::IsolateLeader,
            cut,
            mode: CutMode::Blackhole,
        })
        .expect("partition");
    let old_term = cluster
        .status(&leader)
        .await
        .and_then(|s| s.term)
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut newer = None;
        for id in cluster.ids().iter().filter(|i| **i != leader) {
            if let Some(s) = cluster.status(id).await
                && s.leads()
                && s.term > Some(old_term)
            {
                newer = Some(s.id);
            }
        }
        if newer.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no newer leader on the majority side"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Writes through the isolated server, and only it, never end ok.
    let old = cluster
        .endpoints
        .iter()
        .find(|e| e.id == leader)
        .expect("old leader")
        .clone();
    let only_old: Arc<dyn Protocol> = Arc::new(
        ZooKeeper::new(ProtocolEnv {
            endpoints: vec![old],
            read_mode: ReadMode::Linearizable,
            supervisor: Arc::new(Supervisor::new(vec![])),
            log_dir: dir.path().join("clients"),
        })
        .expect("protocol"),
    );
    let isolated = ctx_for("register", only_old.clone(), vec![leader.clone()], 700);
    let mut c_old = only_old.client(0).await.expect("client");
    for k in 0..6u64 {
        let mut s = client::session(10 + k, 0);
        let reply = client::invoke(
            &isolated,
            &mut s,
            &mut *c_old,
            &op("write", "r", json!(100 + k)),
        )
        .await;
        assert!(
            matches!(reply, Reply::Fail(..) | Reply::Info(_)),
            "a write through the isolated old leader {leader} succeeded: {reply:?}"
        );
    }

    // Healed, it rejoins (as a follower, dialling the new leader's quorum
    // port through its link) and takes writes again.
    cluster.apply(&Fault::Heal).expect("heal");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut k = 0u64;
    loop {
        k += 1;
        let mut s = client::session(100 + k, 0);
        let reply = client::invoke(
            &isolated,
            &mut s,
            &mut *c_old,
            &op("write", "r", json!(200 + k)),
        )
        .await;
        if matches!(reply, Reply::Ok(_)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the healed server {leader} never took a write again (last: {reply:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    drop((c, c_old));
    cancel.cancel();
    cluster.supervisor.kill_all();
    assert_eq!(pids_mentioning(dir.path()), Vec::<i32>::new());
}

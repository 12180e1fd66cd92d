//! A partition really cuts traffic: with the leader isolated by the proxies,
//! the majority side elects a new leader (seen in `/status`), and writes sent
//! to the old leader end in `fail` or `info`, never `ok`.

mod run_common;

use std::sync::Arc;
use std::time::Duration;

use faultline::client::{self, ClientCtx};
use faultline::cluster::{Cluster, ClusterConfig, ClusterPaths};
use faultline::nemesis::{CutMode, Fault, PartitionShape, View, partition};
use faultline::recorder::Recorder;
use faultline::supervisor::Supervisor;
use faultline::sut::protocol::ProtocolEnv;
use faultline::sut::protocol::faultline_http::FaultlineHttp;
use faultline::sut::{Db, Protocol, ReadMode};
use faultline_history::{EventType, Process};
use faultline_workloads::{OpSpec, Reply, Workload};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use run_common::{Guard, TestDir, pids_mentioning};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_is_replaced_and_its_writes_never_succeed() {
    let dir = TestDir::new("run_partition");
    // Kills whatever survives, even if an assertion below fails.
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
        seed: 11,
        direct: false,
        clocks: false,
        disks: false,
    };
    let mut db = Db::resolve("faultline").expect("built in");
    // The test binary is not the controller: run nodes from the controller's binary.
    db.program = Some(env!("CARGO_BIN_EXE_faultline").into());
    let cluster = Cluster::start(
        Arc::new(db),
        &cfg,
        &ClusterPaths::under(dir.path()),
        cancel.clone(),
        &tracker,
    )
    .await
    .expect("cluster starts");
    let old = cluster
        .wait_ready(Duration::from_secs(20))
        .await
        .expect("ready")
        .expect("a first leader");

    let view = View::of(cluster.ids(), Some(old.clone()));
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
    // The majority side elects someone else.
    let deadline = Instant::now() + Duration::from_secs(20);
    let new = loop {
        let mut found = None;
        for id in cluster.ids().iter().filter(|i| **i != old) {
            if let Some(s) = cluster.status(id).await
                && s.role == "leader"
            {
                found = Some(s.id);
            }
        }
        if let Some(n) = found {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "no new leader on the majority side"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(new, old);

    // Writes sent only to the old leader must never be acknowledged.
    let workload: Arc<dyn Workload> =
        Arc::from(faultline_workloads::by_name("register").expect("register"));
    let recorder = Arc::new(
        Recorder::create(&dir.path().join("history.jsonl"), std::time::Instant::now())
            .expect("history"),
    );
    // A protocol that knows only the old leader.
    let old_endpoint = cluster
        .endpoints
        .iter()
        .find(|e| e.id == old)
        .expect("old leader")
        .clone();
    let protocol: Arc<dyn Protocol> = Arc::new(
        FaultlineHttp::new(ProtocolEnv {
            endpoints: vec![old_endpoint],
            read_mode: ReadMode::Linearizable,
            supervisor: Arc::new(Supervisor::new(vec![])),
            log_dir: dir.path().join("clients"),
        })
        .expect("protocol"),
    );
    let ctx = ClientCtx::new(
        workload,
        recorder.clone(),
        protocol.clone(),
        vec![old.clone()],
        Duration::from_millis(600),
        Duration::from_millis(600),
        100,
    );
    let mut c = protocol.client(0).await.expect("client");
    for k in 0..6u64 {
        let mut s = client::session(k, 0);
        let op = OpSpec {
            f: "write".into(),
            key: Some("r".into()),
            value: json!(1000 + k),
        };
        let reply = client::invoke(&ctx, &mut s, &mut *c, &op).await;
        assert!(
            matches!(reply, Reply::Fail(..) | Reply::Info(_)),
            "a write to the isolated old leader {old} succeeded: {reply:?}"
        );
    }
    let completions: Vec<EventType> = recorder
        .events()
        .iter()
        .filter(|e| matches!(e.process, Process::Client(_)) && e.kind != EventType::Invoke)
        .map(|e| e.kind)
        .collect();
    assert_eq!(completions.len(), 6);
    assert!(!completions.contains(&EventType::Ok));

    cancel.cancel();
    cluster.supervisor.kill_all();
    assert_eq!(pids_mentioning(dir.path()), Vec::<i32>::new());
}

//! The etcd scenario the system-under-test tests share: a real 3-member
//! etcd cluster through the etcd spec with a chosen client protocol.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use faultline::client::{self, ClientCtx};
use faultline::cluster::{Cluster, ClusterConfig, ClusterPaths};
use faultline::recorder::Recorder;
use faultline::sut::protocol::{self, ProtocolEnv};
use faultline::sut::{Attempt, Db, ReadMode, Request, which};
use faultline_workloads::{Command, OpSpec, Reply};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::run_common::{TestDir, pids_mentioning};

fn op(f: &str, key: &str, value: Value) -> OpSpec {
    OpSpec {
        f: f.into(),
        key: Some(key.into()),
        value,
    }
}

/// Every command round-trips through client protocol `client_protocol`, a refused
/// cas reports the current value, values read back the same through
/// `also_read_with` (another etcd protocol) when given, and a write to a
/// member cut off from its quorum never ends `ok`. Skips, saying why, when
/// `etcd` is not on PATH.
pub async fn round_trips_and_minority_writes_never_ok(
    client_protocol: &str,
    also_read_with: Option<&str>,
) {
    let missing = which("etcd")
        .is_none()
        .then(|| "etcd is not on PATH (Debian: etcd-server)".to_string());
    if !crate::run_common::can_run(client_protocol, missing) {
        return;
    }
    let dir = TestDir::new(&format!("etcd_sut_{client_protocol}"));
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let cfg = ClusterConfig {
        nodes: 3,
        spares: 0,
        client_links: false,
        read_mode: ReadMode::Linearizable,
        seed: 1,
        direct: true,
        clocks: false,
        disks: false,
    };
    let mut db = Db::resolve("etcd").expect("built in");
    db.spec.client.protocol = client_protocol.to_string();
    let db = Arc::new(db);
    let cluster = Cluster::start(db, &cfg, &ClusterPaths::under(dir.path()), cancel, &tracker)
        .await
        .expect("launch etcd");
    let leader = cluster
        .wait_ready(Duration::from_secs(30))
        .await
        .expect("ready")
        .expect("an etcd leader");
    let recorder = Arc::new(
        Recorder::create(&dir.path().join("history.jsonl"), std::time::Instant::now())
            .expect("recorder"),
    );
    let ctx_for = |workload: &str| {
        ClientCtx::new(
            faultline_workloads::by_name(workload)
                .expect("workload")
                .into(),
            recorder.clone(),
            cluster.protocol.clone(),
            cluster.ids(),
            Duration::from_secs(5),
            Duration::from_secs(5),
            100,
        )
    };
    let register = ctx_for("register");
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
    let mut s2 = client::session(2, 2);
    assert_eq!(
        run(&register, &mut s2, op("read", "r", Value::Null)).await,
        Reply::Ok(json!(2)),
        "another member reads the same value"
    );
    let append = ctx_for("append");
    for v in [7, 8] {
        assert_eq!(
            run(&append, &mut s, op("append", "a0", json!(v))).await,
            Reply::Ok(json!(v))
        );
    }
    assert_eq!(
        run(&append, &mut s, op("read", "a0", Value::Null)).await,
        Reply::Ok(json!([7, 8]))
    );
    assert_eq!(
        run(&append, &mut s, op("read", "a1", Value::Null)).await,
        Reply::Ok(json!([]))
    );
    let counter = ctx_for("counter");
    assert_eq!(
        run(&counter, &mut s, op("add", "c", json!(3))).await,
        Reply::Ok(json!(3))
    );
    assert_eq!(
        run(&counter, &mut s, op("read", "c", Value::Null)).await,
        Reply::Ok(json!(3))
    );
    if let Some(other) = also_read_with {
        read_back_with(&cluster, other, dir.path()).await;
    }

    // Pause the two other members: the one left has no quorum. A write to
    // it may be indeterminate or refused, never ok.
    let ids = cluster.ids();
    let lone = if leader == "n1" { 1 } else { 0 };
    for (i, id) in ids.iter().enumerate() {
        if i != lone {
            cluster.supervisor.pause(id).expect("pause");
        }
    }
    let write = Command::Write {
        key: "r".into(),
        value: json!(9),
    };
    let req = |cmd| Request {
        node: lone,
        cmd,
        client: 3,
        seq: 1,
        timeout: Duration::from_secs(1),
    };
    let a = c.attempt(req(&write)).await;
    assert!(
        matches!(a, Attempt::Ambiguous(_) | Attempt::Elsewhere { .. }),
        "minority write ended {a:?}"
    );
    let read = Command::Read { key: "r".into() };
    let a = c.attempt(req(&read)).await;
    assert!(
        !matches!(a, Attempt::Ok(_)),
        "a linearizable read on a minority member ended {a:?}"
    );
    drop(c);
    cluster.supervisor.kill_all();
    assert_eq!(pids_mentioning(dir.path()), Vec::<i32>::new());
}

/// Reads what the scenario wrote through protocol `other`: both etcd
/// protocols store values as the same JSON text.
async fn read_back_with(cluster: &Cluster, other: &str, dir: &Path) {
    let mut db = Db::resolve("etcd").expect("built in");
    db.spec.client.protocol = other.to_string();
    let env = ProtocolEnv {
        endpoints: cluster.endpoints.clone(),
        read_mode: ReadMode::Linearizable,
        supervisor: cluster.supervisor.clone(),
        log_dir: dir.join("clients"),
    };
    let p = protocol::build(&db, &cluster.names, env).expect("the other protocol");
    let mut c = p.client(0).await.expect("client");
    for (key, want) in [("r", json!(2)), ("a0", json!([7, 8])), ("c", json!(3))] {
        let read = Command::Read { key: key.into() };
        let a = c
            .attempt(Request {
                node: 1,
                cmd: &read,
                client: 4,
                seq: 1,
                timeout: Duration::from_secs(5),
            })
            .await;
        assert_eq!(a, Attempt::Ok(want), "{key} read through {other}");
    }
}

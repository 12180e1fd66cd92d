//! etcd behind the system-under-test interface, against a real 3-member
//! etcd cluster when `etcd` is on PATH (CI installs it; elsewhere the test
//! says it skipped): every operation kind round-trips, a cas that does not
//! match fails with the value it saw, and a write to a member cut off from
//! its quorum never ends `ok`. Every process dies with the `Launched` guard.

use std::sync::Arc;
use std::time::Duration;

use faultline::sut::bench::{launch, run_op, wait_for_leader};
use faultline::sut::etcd::{EtcdDb, which};
use faultline::sut::{Attempt, Db};
use faultline_workloads::{OpSpec, Reply, Workload};
use serde_json::{Value, json};

fn op(f: &str, key: &str, value: Value) -> OpSpec {
    OpSpec {
        f: f.into(),
        key: Some(key.into()),
        value,
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("faultline-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_ops_round_trip_and_minority_writes_never_ok() {
    let Some(exe) = which("etcd") else {
        eprintln!("etcd is not on PATH: skipped (CI installs etcd-server)");
        return;
    };
    let db: Arc<dyn Db> = Arc::new(EtcdDb::new(exe, false));
    let dir = scratch("etcd-sut");
    let cluster = launch(&*db, 3, &dir).expect("launch etcd");
    let http = reqwest::Client::new();
    let leader = wait_for_leader(&*db, &http, &cluster, Duration::from_secs(30))
        .await
        .expect("an etcd leader");
    let t = &cluster.targets;
    let register = faultline_workloads::by_name("register").expect("register");
    let append = faultline_workloads::by_name("append").expect("append");
    let w: &dyn Workload = &*register;
    let timeout = Duration::from_secs(5);
    let mut node = 0usize;

    let r = run_op(
        &*db,
        &http,
        w,
        t,
        &mut node,
        &op("read", "r", Value::Null),
        timeout,
    )
    .await;
    assert_eq!(
        r,
        Reply::Ok(Value::Null),
        "absent key reads the initial value"
    );
    let r = run_op(
        &*db,
        &http,
        w,
        t,
        &mut node,
        &op("write", "r", json!(1)),
        timeout,
    )
    .await;
    assert_eq!(r, Reply::Ok(json!(1)));
    let r = run_op(
        &*db,
        &http,
        w,
        t,
        &mut node,
        &op("cas", "r", json!([1, 2])),
        timeout,
    )
    .await;
    assert_eq!(r, Reply::Ok(json!([1, 2])));
    let r = run_op(
        &*db,
        &http,
        w,
        t,
        &mut node,
        &op("cas", "r", json!([1, 3])),
        timeout,
    )
    .await;
    assert_eq!(r, Reply::Fail(json!(2), "cas-mismatch".into()));
    let r = run_op(
        &*db,
        &http,
        w,
        t,
        &mut node,
        &op("cas", "z", json!([null, 4])),
        timeout,
    )
    .await;
    assert_eq!(
        r,
        Reply::Ok(json!([null, 4])),
        "cas from null creates the key"
    );
    node = 2;
    let r = run_op(
        &*db,
        &http,
        w,
        t,
        &mut node,
        &op("read", "r", Value::Null),
        timeout,
    )
    .await;
    assert_eq!(
        r,
        Reply::Ok(json!(2)),
        "another member reads the same value"
    );

    let a: &dyn Workload = &*append;
    for v in [7, 8] {
        let r = run_op(
            &*db,
            &http,
            a,
            t,
            &mut node,
            &op("append", "a0", json!(v)),
            timeout,
        )
        .await;
        assert_eq!(r, Reply::Ok(json!(v)));
    }
    let r = run_op(
        &*db,
        &http,
        a,
        t,
        &mut node,
        &op("read", "a0", Value::Null),
        timeout,
    )
    .await;
    assert_eq!(r, Reply::Ok(json!([7, 8])));
    let r = run_op(
        &*db,
        &http,
        a,
        t,
        &mut node,
        &op("read", "a1", Value::Null),
        timeout,
    )
    .await;
    assert_eq!(r, Reply::Ok(json!([])));

    // Stop the two other members: the one left has no quorum. A write to it
    // may be indeterminate or refused, never ok.
    let pids = cluster.supervisor.pids();
    assert_eq!(pids.len(), 3);
    let lone = if leader == "n1" { 1 } else { 0 };
    for (i, id) in cluster.ids.iter().enumerate() {
        if i != lone {
            cluster.supervisor.pause(id).expect("pause");
        }
    }
    let a = db
        .attempt(
            &http,
            w,
            &t[lone],
            &op("write", "r", json!(9)),
            Duration::from_secs(1),
        )
        .await;
    assert!(
        matches!(a, Attempt::Done(Reply::Info(_)) | Attempt::Elsewhere { .. }),
        "minority write ended {a:?}"
    );
    let a = db
        .attempt(
            &http,
            w,
            &t[lone],
            &op("read", "r", Value::Null),
            Duration::from_secs(1),
        )
        .await;
    assert!(
        !matches!(a, Attempt::Done(Reply::Ok(_))),
        "a linearizable read on a minority member ended {a:?}"
    );
    drop(cluster);
    for pid in pids {
        let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true);
        assert!(gone, "etcd pid {pid} survived");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

//! etcd through the system-under-test boundary (its spec file and its JSON
//! gateway client protocol), against a real 3-member etcd cluster when
//! `etcd` is on PATH (CI installs it; elsewhere the test says it skipped):
//! every command round-trips, a cas that does not match fails with the
//! value it saw, and a write to a member cut off from its quorum never ends
//! `ok`. Every process dies with the cluster.

mod etcd_common;
mod run_common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_ops_round_trip_and_minority_writes_never_ok() {
    etcd_common::round_trips_and_minority_writes_never_ok("etcd", None).await;
}

//! etcd through its native gRPC client protocol (`etcd-grpc`, only with the
//! cargo feature of that name), against a real 3-member etcd cluster when
//! `etcd` is on PATH (else the test says it skipped): every command
//! round-trips, a cas that does not match fails with the value it saw, the
//! values read back the same through the JSON gateway, and a write to a
//! member cut off from its quorum never ends `ok`.
#![cfg(feature = "etcd-grpc")]

mod etcd_common;
mod run_common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_grpc_ops_round_trip_and_minority_writes_never_ok() {
    etcd_common::round_trips_and_minority_writes_never_ok("etcd-grpc", Some("etcd")).await;
}

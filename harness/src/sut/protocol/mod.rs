//! The client protocols: the one registry ([`build`]) of how a run's
//! clients speak to a system. Built in: `faultline-http` (faultline-node's
//! HTTP API), `etcd` (etcd's v3 JSON gateway), `etcd-grpc` (etcd's native
//! gRPC API, only with the cargo feature of that name), `zookeeper`; and
//! `program`, a user's client program over one JSON line per operation.

pub mod etcd;
#[cfg(feature = "etcd-grpc")]
pub mod etcd_grpc;
pub mod etcd_kv;
pub mod faultline_http;
pub mod program;
pub mod zookeeper;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use super::{Db, Endpoint, NodeNames, Protocol, ReadMode};
use crate::supervisor::Supervisor;

/// The protocols compiled in (a spec's `client.protocol`; `program` is the other).
#[cfg(feature = "etcd-grpc")]
pub const BUILT_IN: &[&str] = &["faultline-http", "etcd", "etcd-grpc", "zookeeper"];
/// The protocols compiled in (a spec's `client.protocol`; `program` is the other).
#[cfg(not(feature = "etcd-grpc"))]
pub const BUILT_IN: &[&str] = &["faultline-http", "etcd", "zookeeper"];

/// `(protocol, cargo feature)` of the protocols that are compiled in only
/// with a feature of the `faultline` crate.
pub const GATED: &[(&str, &str)] = &[("etcd-grpc", "etcd-grpc")];

/// Why `protocol` cannot be used, when it is a known protocol that this
/// build left out, with how to get it.
pub fn not_built(protocol: &str) -> Option<String> {
    let (p, feature) = GATED.iter().find(|(p, _)| *p == protocol)?;
    if BUILT_IN.contains(p) {
        return None;
    }
    Some(format!(
        "protocol {p:?} is not in this build of faultline: build it with the cargo feature \
         `{feature}` (`cargo run --release --features {feature} -- ...`; its build needs \
         protoc: Debian `apt-get install -y protobuf-compiler libprotobuf-dev`)"
    ))
}

/// The read modes a built-in protocol implements.
pub fn read_modes(protocol: &str) -> &'static [ReadMode] {
    match protocol {
        "faultline-http" => &ReadMode::ALL,
        "etcd" | "etcd-grpc" | "zookeeper" => &[ReadMode::Linearizable, ReadMode::Stale],
        _ => &[ReadMode::Linearizable],
    }
}

/// Whether a built-in protocol's system de-duplicates resent requests.
pub fn dedup(protocol: &str) -> bool {
    protocol == "faultline-http"
}

/// What a protocol needs to know about the run.
#[derive(Clone)]
pub struct ProtocolEnv {
    /// The nodes, in order.
    pub endpoints: Vec<Endpoint>,
    /// How reads are asked for.
    pub read_mode: ReadMode,
    /// Starts client programs (in process groups, killed on every exit path).
    pub supervisor: Arc<Supervisor>,
    /// Where client programs' stderr goes (`clients/` of the run folder).
    pub log_dir: PathBuf,
}

/// The protocol `db`'s spec names, for the nodes in `env`.
pub fn build(db: &Db, names: &NodeNames, env: ProtocolEnv) -> Result<Arc<dyn Protocol>> {
    Ok(match db.spec.client.protocol.as_str() {
        "faultline-http" => Arc::new(faultline_http::FaultlineHttp::new(env)?),
        "etcd" => Arc::new(etcd::Etcd::new(env)?),
        #[cfg(feature = "etcd-grpc")]
        "etcd-grpc" => Arc::new(etcd_grpc::EtcdGrpc::new(env)),
        "zookeeper" => Arc::new(zookeeper::ZooKeeper::new(env)?),
        "program" => Arc::new(program::Program::new(db, names, env)?),
        other => match not_built(other) {
            Some(why) => anyhow::bail!("{}: client.protocol: {why}", db.file()),
            None => anyhow::bail!("{}: client.protocol: unknown protocol {other:?}", db.file()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protocol_left_out_of_the_build_says_how_to_get_it() {
        for (p, feature) in GATED {
            match not_built(p) {
                Some(why) => {
                    assert!(!BUILT_IN.contains(p), "{p}");
                    assert!(why.contains(&format!("--features {feature}")), "{why}");
                }
                None => assert!(BUILT_IN.contains(p), "{p}"),
            }
        }
        assert_eq!(not_built("carrier-pigeon"), None);
        assert_eq!(not_built("etcd"), None);
    }
}

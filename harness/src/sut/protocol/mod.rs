//! The client protocols: the one registry ([`build`]) of how a run's
//! clients speak to a system. Built in: `faultline-http` (faultline-node's
//! HTTP API), `etcd` (etcd's v3 JSON gateway), `zookeeper`; and `program`,
//! a user's client program over one JSON line per operation.

pub mod etcd;
pub mod faultline_http;
pub mod program;
pub mod zookeeper;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use super::{Db, Endpoint, NodeNames, Protocol, ReadMode};
use crate::supervisor::Supervisor;

/// The protocols compiled in (a spec's `client.protocol`; `program` is the other).
pub const BUILT_IN: &[&str] = &["faultline-http", "etcd", "zookeeper"];

/// The read modes a built-in protocol implements.
pub fn read_modes(protocol: &str) -> &'static [ReadMode] {
    match protocol {
        "faultline-http" => &ReadMode::ALL,
        "etcd" | "zookeeper" => &[ReadMode::Linearizable, ReadMode::Stale],
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
        "zookeeper" => Arc::new(zookeeper::ZooKeeper::new(env)?),
        "program" => Arc::new(program::Program::new(db, names, env)?),
        other => anyhow::bail!("{}: client.protocol: unknown protocol {other:?}", db.file()),
    })
}

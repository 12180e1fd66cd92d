//! The system-under-test interface, in the spirit of Jepsen's `db` and
//! `client`: how to run one node of a system (its program, its flags for a
//! given cluster layout, where its addresses, data and log are) and how one
//! workload operation becomes requests to it and an outcome (`ok` / `fail` /
//! `info`).
//!
//! Process control (start, SIGKILL, SIGSTOP/SIGCONT, restart on the same
//! data directory, cleanup on every exit path) is the same for every system
//! and stays in the [`Supervisor`](crate::supervisor::Supervisor); a [`Db`]
//! only says what to run. Two implementations: [`faultline::FaultlineDb`]
//! (our own `faultline-node`) and [`etcd::EtcdDb`] (etcd 3.4 through its v3
//! JSON gateway).

pub mod bench;
pub mod demux;
pub mod etcd;
pub mod faultline;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use faultline_workloads::{OpSpec, Reply, Workload};

use crate::cluster::Status;
use crate::supervisor::NodeProgram;

/// A boxed, sendable future (the trait's async methods return these so a
/// `dyn Db` works; one allocation per request is noise next to HTTP).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a system's peers can be put behind proxies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerRouting {
    /// Each node is told, per peer, which address to dial: one proxy per
    /// directed link (`i` dials `j` through its own listener).
    PerLink,
    /// A node advertises one peer address that every other node dials
    /// (etcd's `--initial-advertise-peer-urls`): one proxy per destination.
    PerDestination,
}

/// Where every node of a cluster lives: what a [`Db`] needs to write each
/// node's flags.
#[derive(Clone, Debug)]
pub struct ClusterPlan {
    /// Node ids in order (`n1`..).
    pub ids: Vec<String>,
    /// The address each node serves clients on (it binds this).
    pub client_addrs: Vec<SocketAddr>,
    /// The URL clients use for each node (a proxy when client proxies are on).
    pub client_urls: Vec<String>,
    /// The address each node accepts peers on (it binds this).
    pub peer_addrs: Vec<SocketAddr>,
    /// `dial[i][j]`: the address node `i` dials to reach node `j` (`None` on
    /// the diagonal). With [`PeerRouting::PerDestination`] every row holds the
    /// same address for a given `j`.
    pub dial: Vec<Vec<Option<SocketAddr>>>,
    /// Each node's data directory.
    pub data_dirs: Vec<PathBuf>,
}

#[cfg(test)]
impl ClusterPlan {
    /// Two nodes n1 and n2 on made-up ports, dialling each other through `dial`.
    pub(crate) fn two_for_tests(dial: Vec<Vec<Option<std::net::SocketAddr>>>) -> ClusterPlan {
        let a = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
        ClusterPlan {
            ids: vec!["n1".into(), "n2".into()],
            client_addrs: vec![a(1), a(2)],
            client_urls: vec!["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()],
            peer_addrs: vec![a(11), a(12)],
            dial,
            data_dirs: vec!["/d/n1".into(), "/d/n2".into()],
        }
    }
}

impl ClusterPlan {
    /// The address every peer dials to reach node `j` (per-destination
    /// routing): the first non-diagonal entry of column `j`.
    pub fn inbound(&self, j: usize) -> SocketAddr {
        self.dial
            .iter()
            .find_map(|row| row.get(j).copied().flatten())
            .unwrap_or(self.peer_addrs[j])
    }
}

/// One node as a client addresses it.
#[derive(Clone, Debug)]
pub struct Target {
    /// The node's id.
    pub id: String,
    /// The URL operations go to (possibly through a client proxy).
    pub client_url: String,
    /// The node's own URL (status queries, never proxied).
    pub direct_url: String,
}

/// The result of one attempt at an operation on one node.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempt {
    /// The operation ended: `ok`, `fail` (certainly no effect) or `info`
    /// (maybe took effect).
    Done(Reply),
    /// Certainly no effect here; try another node (the named one if known).
    Elsewhere {
        /// The node the answer named as leader, if any.
        hint: Option<String>,
        /// Why, for the completion's error if no node takes it.
        why: String,
    },
}

/// A system under test.
pub trait Db: Send + Sync {
    /// The name used by `--db`.
    fn name(&self) -> &'static str;
    /// The program to run for every node.
    fn program(&self) -> NodeProgram;
    /// How peers can be proxied.
    fn routing(&self) -> PeerRouting;
    /// The flags that start (and restart, on the same data directory) node `me`.
    fn node_args(&self, plan: &ClusterPlan, me: usize) -> Vec<String>;
    /// How long a node may take to exit after SIGTERM before it is SIGKILLed.
    fn stop_grace(&self) -> Duration {
        Duration::from_secs(10)
    }
    /// One node's view: its role, term and the leader it knows; `None` when
    /// it does not answer in time.
    fn status<'a>(
        &'a self,
        http: &'a reqwest::Client,
        node: &'a Target,
        ids: &'a [String],
    ) -> BoxFuture<'a, Option<Status>>;
    /// One attempt at `op` on `node` within `timeout`, for `workload`.
    fn attempt<'a>(
        &'a self,
        http: &'a reqwest::Client,
        workload: &'a dyn Workload,
        node: &'a Target,
        op: &'a OpSpec,
        timeout: Duration,
    ) -> BoxFuture<'a, Attempt>;
}

/// Names of the systems `--db` accepts.
pub const KNOWN: &[&str] = &["faultline", "etcd"];

/// Writes `err`'s chain of causes on one line (reqwest's Display omits them).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// How a transport error ends an attempt. A connection that could not be
/// opened sent nothing: definite, try elsewhere. A timeout or a broken
/// connection after sending may have taken effect: `info` for an op with
/// effects, `fail` for one without (a read changes nothing).
pub fn transport_outcome(e: &reqwest::Error, node: &str, effectful: bool) -> Attempt {
    if e.is_connect() && !e.is_timeout() {
        return Attempt::Elsewhere {
            hint: None,
            why: format!("connect: {node}"),
        };
    }
    let why = if e.is_timeout() {
        "timeout".to_string()
    } else {
        format!("transport: {}", error_chain(e))
    };
    if effectful {
        Attempt::Done(Reply::Info(why))
    } else {
        Attempt::Done(Reply::Fail(serde_json::Value::Null, why))
    }
}

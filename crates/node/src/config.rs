//! The command line (raw clap arguments) and the validated node configuration
//! built from it, including the mapping of node names to Raft ids.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use faultline_raft::{Bug, NodeId};

/// Raw command-line arguments of `faultline-node`.
#[derive(Debug, Parser)]
#[command(
    name = "faultline-node",
    about = "A durable Raft key-value server",
    version
)]
pub struct Args {
    /// This node's name, e.g. `n1`.
    #[arg(long, required_unless_present = "list_bugs")]
    pub id: Option<String>,
    /// Directory for the log, hard state and snapshot (created if missing).
    #[arg(long, required_unless_present = "list_bugs")]
    pub data_dir: Option<PathBuf>,
    /// Address of the HTTP client API (loopback; port 0 picks one).
    #[arg(long, required_unless_present = "list_bugs")]
    pub client_addr: Option<SocketAddr>,
    /// Address to accept peer connections on.
    #[arg(long, required_unless_present = "list_bugs")]
    pub peer_addr: Option<SocketAddr>,
    /// `NAME=HOST:PORT`: the address to dial for another node (repeat).
    #[arg(long = "peer", value_name = "NAME=HOST:PORT")]
    pub peers: Vec<String>,
    /// The initial voters, comma-separated names (default: this node and
    /// every `--peer`). Used only on a first start; afterwards the
    /// membership comes from the log. A `--peer` left out is a spare that
    /// may be added later.
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub voters: Option<Vec<String>>,
    /// Start as a future member of a running cluster: no configuration,
    /// never campaign, wait for a leader to add this node and send it the
    /// log (`--voters` is then ignored).
    #[arg(long)]
    pub join: bool,
    /// `NAME=URL`: another node's client URL, given to clients in `not_leader`.
    #[arg(long = "peer-client", value_name = "NAME=URL")]
    pub peer_clients: Vec<String>,
    /// Heartbeat interval (also the tick of the Raft core), in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub heartbeat_ms: u64,
    /// Shortest election timeout in milliseconds; each is drawn from [t, 2t).
    #[arg(long, default_value_t = 300)]
    pub election_timeout_ms: u64,
    /// Take a snapshot and compact the log every this many applied entries.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_every: u64,
    /// Start a new log segment file once the current one holds this many
    /// bytes (at least 256).
    #[arg(long, default_value_t = 64 << 20)]
    pub segment_bytes: u64,
    /// How long a client request may wait for its outcome before the answer
    /// is `indeterminate` (504), in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub request_timeout_ms: u64,
    /// Seed of the election-timeout randomness (default: this node's Raft id).
    #[arg(long)]
    pub seed: Option<u64>,
    /// CheckQuorum: a leader that has not heard from a majority for an election
    /// timeout steps down, and followers ignore votes while they hear from a
    /// leader. With `--check-quorum=false` lease reads wait for a ReadIndex round.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub check_quorum: bool,
    /// PreVote: ask whether an election could be won before raising the term.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub pre_vote: bool,
    /// The most log entries a leader sends in one AppendEntries message.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_entries_per_msg: usize,
    /// The most AppendEntries messages a leader keeps in flight to one
    /// follower (while it replicates; a probe is always one).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_inflight_msgs: usize,
    /// Switch on a deliberate mistake by name (repeat); see `--list-bugs`.
    #[arg(long = "bug", value_name = "NAME")]
    pub bugs: Vec<String>,
    /// Print the deliberate mistakes that `--bug` accepts, and exit.
    #[arg(long)]
    pub list_bugs: bool,
}

/// A deliberate mistake of the node itself (not of the Raft core), for
/// proving that the harness catches real bugs. All are off by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeBug {
    /// Answers a write once it is proposed, before it is committed.
    AckBeforeCommit,
    /// Serves linearizable and lease reads from local state on any node.
    StaleLocalRead,
    /// Sends votes and acknowledgements before what they promise is written:
    /// log writes are held in memory and written only at the next tick, so a
    /// kill -9 can lose entries that were already counted towards a commit.
    AckBeforeFsync,
    /// Ignores `X-Client-Id` / `X-Request-Seq`: retries apply again.
    SkipDedup,
    /// Writes its log and hard state in order and acknowledges after the
    /// write, as it should, but never calls fsync or fdatasync: the data
    /// sits in the page cache, so only a power cut (the `disk` nemesis's
    /// lost unsynced writes), not a kill -9, loses it. After a power cut
    /// it takes an empty `hardstate` or `snapshot` (what write-then-rename
    /// without fsync leaves) for a fresh start, so the loss shows as lost
    /// acknowledged writes rather than a node that will not start.
    SkipFsync,
}

impl NodeBug {
    /// Every node-level mistake, in a fixed order.
    pub const ALL: [NodeBug; 5] = [
        NodeBug::AckBeforeCommit,
        NodeBug::StaleLocalRead,
        NodeBug::AckBeforeFsync,
        NodeBug::SkipDedup,
        NodeBug::SkipFsync,
    ];

    /// The name used on command lines.
    pub fn name(self) -> &'static str {
        match self {
            NodeBug::AckBeforeCommit => "ack-before-commit",
            NodeBug::StaleLocalRead => "stale-local-read",
            NodeBug::AckBeforeFsync => "ack-before-fsync",
            NodeBug::SkipDedup => "skip-dedup",
            NodeBug::SkipFsync => "skip-fsync",
        }
    }

    /// One line on what the mistake does.
    pub fn description(self) -> &'static str {
        match self {
            NodeBug::AckBeforeCommit => "answers a write when it is proposed, before it commits",
            NodeBug::StaleLocalRead => "serves linearizable reads from local state on any node",
            NodeBug::AckBeforeFsync => {
                "acknowledges entries and votes up to a tick before writing them to disk"
            }
            NodeBug::SkipDedup => "ignores X-Client-Id/X-Request-Seq, so retries apply twice",
            NodeBug::SkipFsync => {
                "writes its log and hard state but never fsyncs them (only lost unsynced writes show it)"
            }
        }
    }
}

/// Every `--bug` name with its description, core bugs first.
pub fn bug_list() -> Vec<(&'static str, &'static str)> {
    Bug::ALL
        .iter()
        .map(|b| (b.name(), b.description()))
        .chain(NodeBug::ALL.iter().map(|b| (b.name(), b.description())))
        .collect()
}

/// Why a command line was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required option is missing.
    #[error("missing --{0}")]
    Missing(&'static str),
    /// A `NAME=VALUE` option is malformed.
    #[error("bad {option} {value:?}: {reason}")]
    Bad {
        /// The option.
        option: &'static str,
        /// What was given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// An unknown `--bug` name.
    #[error("unknown bug {0:?}; `--list-bugs` prints the known ones")]
    UnknownBug(String),
}

/// The validated configuration of a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's name.
    pub name: String,
    /// This node's Raft id.
    pub id: NodeId,
    /// Every node's name by Raft id (this one included).
    pub names: BTreeMap<NodeId, String>,
    /// The initial voters (empty for a node that joins).
    pub voters: Vec<NodeId>,
    /// Where to dial each other node.
    pub peer_addrs: BTreeMap<NodeId, String>,
    /// Client URLs of other nodes, for `not_leader` answers.
    pub peer_urls: BTreeMap<NodeId, String>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// HTTP API address.
    pub client_addr: SocketAddr,
    /// Peer listener address.
    pub peer_addr: SocketAddr,
    /// Raft tick.
    pub tick: Duration,
    /// Election timeout in ticks.
    pub election_ticks: u32,
    /// Snapshot interval in applied entries.
    pub snapshot_every: u64,
    /// Log segment size in bytes.
    pub segment_bytes: u64,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Election randomness seed.
    pub seed: u64,
    /// CheckQuorum on (the default).
    pub check_quorum: bool,
    /// PreVote on (the default).
    pub pre_vote: bool,
    /// Entries per AppendEntries message, at most.
    pub max_entries_per_msg: usize,
    /// AppendEntries messages in flight per follower, at most.
    pub max_inflight_msgs: usize,
    /// Core mistakes switched on.
    pub core_bugs: Vec<Bug>,
    /// Node mistakes switched on.
    pub node_bugs: Vec<NodeBug>,
}

impl NodeConfig {
    /// True when a node-level mistake is on.
    pub fn has_bug(&self, bug: NodeBug) -> bool {
        self.node_bugs.contains(&bug)
    }

    /// The name of a Raft id (or the number, for an unknown one).
    pub fn name_of(&self, id: NodeId) -> String {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }
}

fn split_pair(option: &'static str, value: &str) -> Result<(String, String), ConfigError> {
    let bad = |reason: &str| ConfigError::Bad {
        option,
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let (name, rest) = value
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=VALUE"))?;
    if name.is_empty() || rest.is_empty() {
        return Err(bad("expected NAME=VALUE"));
    }
    Ok((name.to_string(), rest.to_string()))
}

/// Node names map to Raft ids by their position in the sorted list of all
/// names (this node's and every `--peer`'s), counting from 1. Every node sees
/// the same set of names, so every node computes the same mapping.
pub fn assign_ids(names: &[String]) -> BTreeMap<String, NodeId> {
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort();
    sorted.dedup();
    sorted
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i as NodeId + 1))
        .collect()
}

impl TryFrom<Args> for NodeConfig {
    type Error = ConfigError;

    fn try_from(a: Args) -> Result<NodeConfig, ConfigError> {
        let name = a.id.ok_or(ConfigError::Missing("id"))?;
        let data_dir = a.data_dir.ok_or(ConfigError::Missing("data-dir"))?;
        let client_addr = a.client_addr.ok_or(ConfigError::Missing("client-addr"))?;
        let peer_addr = a.peer_addr.ok_or(ConfigError::Missing("peer-addr"))?;
        let mut peers = Vec::new();
        for p in &a.peers {
            let (n, addr) = split_pair("--peer", p)?;
            if n == name {
                return Err(ConfigError::Bad {
                    option: "--peer",
                    value: p.clone(),
                    reason: "names this node itself".into(),
                });
            }
            if peers.iter().any(|(m, _)| m == &n) {
                return Err(ConfigError::Bad {
                    option: "--peer",
                    value: p.clone(),
                    reason: "names a node twice".into(),
                });
            }
            peers.push((n, addr));
        }
        let mut all: Vec<String> = peers.iter().map(|(n, _)| n.clone()).collect();
        all.push(name.clone());
        let ids = assign_ids(&all);
        let mut peer_urls = BTreeMap::new();
        for p in &a.peer_clients {
            let (n, url) = split_pair("--peer-client", p)?;
            let id = *ids.get(&n).ok_or_else(|| ConfigError::Bad {
                option: "--peer-client",
                value: p.clone(),
                reason: "names no node given with --peer or --id".into(),
            })?;
            peer_urls.insert(id, url);
        }
        let for_flag = |option: &'static str, v: u64, reason: &str| ConfigError::Bad {
            option,
            value: v.to_string(),
            reason: reason.into(),
        };
        if a.heartbeat_ms == 0 {
            return Err(for_flag("--heartbeat-ms", 0, "must be positive"));
        }
        let election_ticks = a.election_timeout_ms / a.heartbeat_ms;
        if election_ticks < 2 {
            return Err(for_flag(
                "--election-timeout-ms",
                a.election_timeout_ms,
                "must be at least twice --heartbeat-ms",
            ));
        }
        if a.max_entries_per_msg == 0 {
            return Err(for_flag("--max-entries-per-msg", 0, "must be positive"));
        }
        if a.max_inflight_msgs == 0 {
            return Err(for_flag("--max-inflight-msgs", 0, "must be positive"));
        }
        if a.snapshot_every == 0 {
            return Err(for_flag("--snapshot-every", 0, "must be positive"));
        }
        if a.segment_bytes < 256 {
            return Err(for_flag(
                "--segment-bytes",
                a.segment_bytes,
                "must be at least 256",
            ));
        }
        if a.request_timeout_ms == 0 {
            return Err(for_flag("--request-timeout-ms", 0, "must be positive"));
        }
        let mut core_bugs = Vec::new();
        let mut node_bugs = Vec::new();
        for b in &a.bugs {
            if let Ok(bug) = Bug::from_name(b) {
                core_bugs.push(bug);
            } else if let Some(bug) = NodeBug::ALL.into_iter().find(|x| x.name() == b) {
                node_bugs.push(bug);
            } else {
                return Err(ConfigError::UnknownBug(b.clone()));
            }
        }
        let id = ids[&name];
        let voters = match (&a.voters, a.join) {
            (_, true) => Vec::new(),
            (None, false) => ids.values().copied().collect(),
            (Some(list), false) => {
                let shown = list.join(",");
                let mut voters = Vec::new();
                for v in list {
                    let Some(&vid) = ids.get(v.trim()) else {
                        return Err(ConfigError::Bad {
                            option: "--voters",
                            value: shown,
                            reason: format!("{v:?} is neither this node nor a --peer"),
                        });
                    };
                    voters.push(vid);
                }
                if !voters.contains(&id) {
                    return Err(ConfigError::Bad {
                        option: "--voters",
                        value: shown,
                        reason: format!(
                            "does not include this node {name:?} (a node that joins later starts with --join)"
                        ),
                    });
                }
                voters.sort_unstable();
                voters.dedup();
                voters
            }
        };
        Ok(NodeConfig {
            voters,
            names: ids.iter().map(|(n, i)| (*i, n.clone())).collect(),
            peer_addrs: peers.into_iter().map(|(n, addr)| (ids[&n], addr)).collect(),
            peer_urls,
            name,
            id,
            data_dir,
            client_addr,
            peer_addr,
            tick: Duration::from_millis(a.heartbeat_ms),
            election_ticks: u32::try_from(election_ticks).unwrap_or(u32::MAX),
            snapshot_every: a.snapshot_every,
            segment_bytes: a.segment_bytes,
            request_timeout: Duration::from_millis(a.request_timeout_ms),
            seed: a.seed.unwrap_or(id),
            check_quorum: a.check_quorum,
            pre_vote: a.pre_vote,
            max_entries_per_msg: a.max_entries_per_msg,
            max_inflight_msgs: a.max_inflight_msgs,
            core_bugs,
            node_bugs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<NodeConfig, ConfigError> {
        let mut v = vec!["faultline-node"];
        v.extend_from_slice(args);
        NodeConfig::try_from(Args::try_parse_from(v).expect("clap"))
    }

    const BASE: [&str; 12] = [
        "--id",
        "n2",
        "--data-dir",
        "/tmp/x",
        "--client-addr",
        "127.0.0.1:1",
        "--peer-addr",
        "127.0.0.1:2",
        "--peer",
        "n1=127.0.0.1:3",
        "--peer",
        "n3=127.0.0.1:4",
    ];

    #[test]
    fn ids_are_sorted_positions() {
        let c = parse(&BASE).unwrap();
        assert_eq!(c.id, 2);
        assert_eq!(
            c.peer_addrs.get(&1).map(String::as_str),
            Some("127.0.0.1:3")
        );
        assert_eq!(c.name_of(3), "n3");
        assert_eq!(c.election_ticks, 6);
        assert!(c.check_quorum && c.pre_vote, "both on by default");
        let raft = faultline_raft::Config::new(1, vec![1]);
        assert_eq!(
            (c.max_entries_per_msg, c.max_inflight_msgs),
            (raft.max_entries_per_msg, raft.max_inflight_msgs),
            "the core's defaults"
        );
    }

    #[test]
    fn flow_control_can_be_narrowed_to_one_entry_at_a_time() {
        let mut a = BASE.to_vec();
        a.extend(["--max-entries-per-msg=1", "--max-inflight-msgs", "1"]);
        let c = parse(&a).unwrap();
        assert_eq!((c.max_entries_per_msg, c.max_inflight_msgs), (1, 1));
        for bad in ["--max-entries-per-msg=0", "--max-inflight-msgs=0"] {
            let mut a = BASE.to_vec();
            a.push(bad);
            let e = parse(&a).unwrap_err().to_string();
            assert!(e.contains("must be positive"), "{bad}: {e}");
        }
    }

    #[test]
    fn check_quorum_and_pre_vote_can_be_switched_off() {
        let mut a = BASE.to_vec();
        a.extend(["--check-quorum=false", "--pre-vote", "false"]);
        let c = parse(&a).unwrap();
        assert!(!c.check_quorum && !c.pre_vote);
        let mut v = vec!["faultline-node"];
        v.extend_from_slice(&BASE);
        v.push("--check-quorum=maybe");
        let e = Args::try_parse_from(v).expect_err("not a bool");
        assert!(e.to_string().contains("maybe"), "{e}");
    }

    #[test]
    fn bugs_and_bad_options() {
        let mut a = BASE.to_vec();
        a.extend(["--bug", "forget-vote", "--bug", "skip-dedup"]);
        let c = parse(&a).unwrap();
        assert_eq!(c.core_bugs, vec![Bug::ForgetVote]);
        assert!(c.has_bug(NodeBug::SkipDedup));
        let mut a = BASE.to_vec();
        a.extend(["--bug", "skip-fsync"]);
        assert!(parse(&a).unwrap().has_bug(NodeBug::SkipFsync));
        let mut a = BASE.to_vec();
        a.extend(["--bug", "nope"]);
        assert!(matches!(parse(&a), Err(ConfigError::UnknownBug(_))));
        let mut a = BASE.to_vec();
        a.extend(["--peer", "n2=127.0.0.1:9"]);
        assert!(parse(&a).unwrap_err().to_string().contains("itself"));
        let mut a = BASE.to_vec();
        a.extend(["--peer-client", "n9=http://x"]);
        assert!(parse(&a).is_err());
        assert_eq!(bug_list().len(), 12);
    }
}

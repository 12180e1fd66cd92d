//! The system under test, in the spirit of Jepsen's `db` and `client`.
//!
//! The **db side** is [`Db`]: a system described by a spec file
//! ([`spec::SystemSpec`]) — how to start one node (program, arguments,
//! environment, files, its data directory, the ports it binds, how it dials
//! its peers), when it is ready, and who leads. faultline-node, etcd and
//! ZooKeeper are spec files in `harness/systems/`, compiled in as the
//! `--db` shorthands; any other system is `--db PATH.toml`.
//!
//! The **client side** is [`Protocol`] (one per run: makes clients, may
//! also report a node's status) and [`Client`] (one per worker: one
//! attempt at one [`Command`] on one node, answered ok / definite failure /
//! try elsewhere / indeterminate). [`protocol::build`] is the one registry
//! of protocols: faultline's HTTP API, etcd's JSON gateway, ZooKeeper, and
//! a user's program over JSON lines.
//!
//! Process control (start, SIGKILL, SIGSTOP/SIGCONT, restart on the same
//! data directory, cleanup on every exit path) is the same for every system
//! and stays in the [`Supervisor`](crate::supervisor::Supervisor).

pub mod demux;
pub mod membership;
pub mod probe;
pub mod protocol;
pub mod spec;
pub mod template;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use faultline_workloads::Command;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::supervisor::Launch;
pub use spec::{NodeNames, PortKind, Routing, SpecError, SystemSpec};

/// A boxed, sendable future (the traits' async methods return these so
/// `dyn Client` works; one allocation per request is noise next to I/O).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The systems compiled in, by their `--db` shorthand: each is the spec
/// file of the same name in `harness/systems/`.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("faultline", include_str!("../../systems/faultline.toml")),
    ("etcd", include_str!("../../systems/etcd.toml")),
    ("zookeeper", include_str!("../../systems/zookeeper.toml")),
];

/// How reads are asked for. Every protocol implements `linearizable`;
/// others say which more they take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadMode {
    /// Reads see every write that completed before they began.
    #[default]
    Linearizable,
    /// The leader answers within its lease, without a round of messages
    /// (safe only while clocks run at the rate the lease assumes).
    Lease,
    /// Any node answers from its own state; may be stale.
    Stale,
}

impl ReadMode {
    /// Every mode.
    pub const ALL: [ReadMode; 3] = [ReadMode::Linearizable, ReadMode::Lease, ReadMode::Stale];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ReadMode::Linearizable => "linearizable",
            ReadMode::Lease => "lease",
            ReadMode::Stale => "stale",
        }
    }

    /// The mode with this name.
    pub fn parse(s: &str) -> Option<ReadMode> {
        ReadMode::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// A node's view of the cluster, from the leader probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The node's id.
    pub id: String,
    /// Its role (`leader`, `follower`, ...); `leader` means it leads.
    pub role: String,
    /// Its term or epoch, when the system tells.
    #[serde(default)]
    pub term: Option<u64>,
    /// The leader it knows, when the system tells.
    #[serde(default)]
    pub leader: Option<String>,
}

impl Status {
    /// Whether this node says it leads.
    pub fn leads(&self) -> bool {
        self.role == "leader"
    }
}

/// One attempt's outcome.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempt {
    /// It took effect. A read's value (`null`: absent); ignored otherwise.
    Ok(Value),
    /// It certainly did not take effect, and will not anywhere (a refused
    /// cas, a bad request). `current` is what a refused cas saw, or `null`.
    Fail {
        /// The value a refused cas saw, if the system reported it.
        current: Value,
        /// Why.
        why: String,
    },
    /// Certainly not done on this node (not the leader, unavailable, could
    /// not connect): try another, the hinted one if known.
    Elsewhere {
        /// The node named as leader, if any.
        hint: Option<String>,
        /// Why, for the completion's error if no node takes it.
        why: String,
    },
    /// It may have taken effect (a timeout, a lost connection or answer,
    /// an indeterminate error).
    Ambiguous(String),
    /// The client side broke its protocol (a client program printed
    /// garbage): the operation may have happened, and the run must stop
    /// with this error.
    Fatal(String),
}

/// One attempt at one command.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The node to send it to (index into the run's nodes).
    pub node: usize,
    /// What to do.
    pub cmd: &'a Command,
    /// The logical client (history process) sending it.
    pub client: u64,
    /// Its sequence number within that client: a resend keeps it.
    pub seq: u64,
    /// How long this attempt may take.
    pub timeout: Duration,
}

/// The client side of one worker: one attempt at a time.
pub trait Client: Send {
    /// Makes one attempt.
    fn attempt<'a>(&'a mut self, req: Request<'a>) -> BoxFuture<'a, Attempt>;
}

/// Which nodes are members of the cluster right now; the others are
/// spares, stopped (the member nemesis changes it). Clients send only to
/// members, and the nemesis hits only members.
#[derive(Debug)]
pub struct Members(std::sync::RwLock<Vec<bool>>);

impl Members {
    /// `n` nodes of which the first `members` are members.
    pub fn new(n: usize, members: usize) -> Members {
        Members(std::sync::RwLock::new(
            (0..n).map(|i| i < members).collect(),
        ))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<bool>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes node `i` a member or a spare.
    pub fn set(&self, i: usize, member: bool) {
        let mut m = self.0.write().unwrap_or_else(|e| e.into_inner());
        if let Some(x) = m.get_mut(i) {
            *x = member;
        }
    }

    /// Whether node `i` is a member.
    pub fn is_member(&self, i: usize) -> bool {
        self.read().get(i).copied().unwrap_or(false)
    }

    /// The members' indices, in order.
    pub fn indices(&self) -> Vec<usize> {
        self.read()
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.then_some(i))
            .collect()
    }

    /// The `k`-th member, counting round (node 0 when none is).
    pub fn nth(&self, k: usize) -> usize {
        let m = self.indices();
        if m.is_empty() { 0 } else { m[k % m.len()] }
    }

    /// The first member after node `i`, counting round (`i` when none is).
    pub fn after(&self, i: usize) -> usize {
        let m = self.indices();
        m.iter()
            .find(|j| **j > i)
            .or_else(|| m.first())
            .copied()
            .unwrap_or(i)
    }
}

/// One node as clients address it.
#[derive(Clone, Debug, Serialize)]
pub struct Endpoint {
    /// Its id.
    pub id: String,
    /// The address clients dial (a proxy when client links are faulted).
    pub addr: SocketAddr,
    /// Its own client address (status queries, never proxied).
    pub direct: SocketAddr,
}

/// The client protocol of a run: makes one [`Client`] per worker.
pub trait Protocol: Send + Sync {
    /// Its name (`faultline-http`, `etcd`, `zookeeper`, `program`).
    fn name(&self) -> &'static str;
    /// Whether the system applies a resent request (same client and
    /// sequence number) at most once, so ambiguous attempts may be resent.
    fn dedup(&self) -> bool;
    /// A client for worker `worker`.
    fn client<'a>(&'a self, worker: usize) -> BoxFuture<'a, Result<Box<dyn Client>>>;
    /// Node `node`'s view of the cluster, when the protocol can ask
    /// (`leader.via_client` in a spec).
    fn status<'a>(&'a self, _node: usize) -> BoxFuture<'a, Option<Status>> {
        Box::pin(async { None })
    }
    /// How many times a client had to be restarted (program clients).
    fn restarts(&self) -> u64 {
        0
    }
}

/// Where a spec came from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum SpecSource {
    /// Compiled in, by its shorthand.
    BuiltIn(String),
    /// A file.
    File(PathBuf),
}

/// A system under test, ready to launch: its spec and what the command
/// line adds (`--node-bin`, `--node-arg`, `--node-bug`).
#[derive(Clone, Debug)]
pub struct Db {
    /// The spec.
    pub spec: SystemSpec,
    /// Where it came from.
    pub source: SpecSource,
    /// The folder relative paths in the spec start from.
    pub spec_dir: PathBuf,
    /// Replaces the spec's program (`--node-bin`).
    pub program: Option<PathBuf>,
    /// Appended to every node's arguments (`--node-arg`).
    pub extra_args: Vec<String>,
    /// Deliberate mistakes on every node (`--node-bug NAME`).
    pub bugs: Vec<String>,
    /// Deliberate mistakes on single nodes (`--node-bug nK:NAME`), by id.
    pub node_bugs: BTreeMap<String, Vec<String>>,
}

impl Db {
    /// The system `--db` names: a shorthand (`faultline`, `etcd`,
    /// `zookeeper`) or the path of a spec file.
    pub fn resolve(arg: &str) -> Result<Db, SpecError> {
        if let Some((name, text)) = BUILT_IN.iter().find(|(n, _)| *n == arg) {
            let file = format!("harness/systems/{name}.toml (built in)");
            let spec = SystemSpec::parse(&file, text)?;
            return Ok(Db::new(
                spec,
                SpecSource::BuiltIn(name.to_string()),
                PathBuf::from("."),
            ));
        }
        let path = Path::new(arg);
        if !(arg.ends_with(".toml") || arg.contains('/')) {
            let known: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
            return Err(SpecError {
                file: arg.to_string(),
                field: "--db".into(),
                message: format!(
                    "not a known system ({}) nor a spec file (PATH.toml)",
                    known.join(", ")
                ),
            });
        }
        let spec = SystemSpec::load(path)?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        Ok(Db::new(
            spec,
            SpecSource::File(std::fs::canonicalize(path).unwrap_or(path.to_path_buf())),
            dir,
        ))
    }

    fn new(spec: SystemSpec, source: SpecSource, spec_dir: PathBuf) -> Db {
        Db {
            spec,
            source,
            spec_dir,
            program: None,
            extra_args: Vec::new(),
            bugs: Vec::new(),
            node_bugs: BTreeMap::new(),
        }
    }

    /// The spec's file name, for messages.
    pub fn file(&self) -> String {
        match &self.source {
            SpecSource::BuiltIn(n) => format!("harness/systems/{n}.toml"),
            SpecSource::File(p) => p.display().to_string(),
        }
    }

    fn err(&self, field: &str, message: String) -> SpecError {
        SpecError {
            file: self.file(),
            field: field.to_string(),
            message,
        }
    }

    /// The system's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// How peers reach each other.
    pub fn routing(&self) -> Routing {
        self.spec.node.routing
    }

    /// The names of the ports peers dial (each proxied per link).
    pub fn peer_ports(&self) -> Vec<String> {
        self.spec.ports_of(PortKind::Peer)
    }

    /// Every port a node binds, in name order.
    pub fn port_names(&self) -> Vec<String> {
        self.spec.ports.keys().cloned().collect()
    }

    /// How long a node may take to exit after SIGTERM.
    pub fn stop_grace(&self) -> Duration {
        Duration::from_secs_f64(self.spec.node.stop_grace_s.unwrap_or(10.0))
    }

    /// How long a node may take to become ready after a start.
    pub fn ready_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.spec.ready.timeout_s.unwrap_or(30.0))
    }

    /// Whether the spec says how to find the leader.
    pub fn has_leader_probe(&self) -> bool {
        self.spec.leader.is_some()
    }

    /// Whether the leader probe reports a term (a JSON pointer for it, or
    /// the client protocol's own status, which carries one).
    pub fn has_term_probe(&self) -> bool {
        self.spec
            .leader
            .as_ref()
            .is_some_and(|l| l.term.is_some() || l.via_client)
    }

    /// Whether the client side may resend an ambiguous attempt (the system
    /// applies a request with the same client and sequence number once).
    pub fn dedup(&self) -> bool {
        match self.spec.client.protocol.as_str() {
            "program" => self.spec.client.dedup,
            p => protocol::dedup(p),
        }
    }

    /// The read modes the client side implements.
    pub fn read_modes(&self) -> Vec<ReadMode> {
        match self.spec.client.protocol.as_str() {
            "program" => {
                let mut m: Vec<ReadMode> = self
                    .spec
                    .client
                    .read_modes
                    .iter()
                    .filter_map(|m| ReadMode::parse(m))
                    .collect();
                if !m.contains(&ReadMode::Linearizable) {
                    m.insert(0, ReadMode::Linearizable);
                }
                m
            }
            p => protocol::read_modes(p).to_vec(),
        }
    }

    /// Resolves a rendered program name: a path (relative to the spec's
    /// folder) that must exist, or a name on `PATH`.
    pub fn find_program(&self, field: &str, name: &str) -> Result<PathBuf, SpecError> {
        if name.contains('/') {
            let p = Path::new(name);
            let p = if p.is_absolute() {
                p.to_path_buf()
            } else {
                self.spec_dir.join(p)
            };
            if is_executable(&p) {
                return Ok(p);
            }
            return Err(self.err(
                field,
                format!("program {} is not an executable file", p.display()),
            ));
        }
        which(name).ok_or_else(|| {
            self.err(
                field,
                format!("program {name:?} not found on PATH (install it, or give its path)"),
            )
        })
    }

    /// What to run for node `me` of the cluster `names` describes.
    pub fn launch(&self, names: &NodeNames, me: usize) -> Result<Launch, SpecError> {
        let spec = &self.spec;
        let mut none = |_: &str| None;
        let mut cmd = names
            .command(spec, me, &spec.node.command, &mut none)
            .map_err(|e| self.err("node.command", e.to_string()))?;
        let program = match &self.program {
            Some(p) => {
                if !is_executable(p) {
                    return Err(self.err(
                        "--node-bin",
                        format!("{} is not an executable file", p.display()),
                    ));
                }
                // Nodes start in their own folders: a relative path would
                // name nothing there.
                std::path::absolute(p).unwrap_or_else(|_| p.clone())
            }
            None => self.find_program("node.command[0]", &cmd[0])?,
        };
        let mut args = cmd.split_off(1);
        let own = self.node_bugs.get(&names.ids[me]).into_iter().flatten();
        for bug in self.bugs.iter().chain(own) {
            for a in &spec.node.bug_args {
                let mut extra = |n: &str| (n == "bug").then(|| bug.clone());
                args.push(
                    names
                        .render(spec, me, a, &mut extra)
                        .map_err(|e| self.err("node.bug_args", e.to_string()))?,
                );
            }
        }
        args.extend(self.extra_args.iter().cloned());
        let mut env = Vec::new();
        for (k, v) in &spec.node.env {
            let v = names
                .render(spec, me, v, &mut none)
                .map_err(|e| self.err(&format!("node.env.{k}"), e.to_string()))?;
            env.push((k.clone(), v));
        }
        let mut files = Vec::new();
        for (i, f) in spec.node.files.iter().enumerate() {
            let path = names
                .render(spec, me, &f.path, &mut none)
                .map_err(|e| self.err(&format!("node.files[{i}].path"), e.to_string()))?;
            let text = names
                .render(spec, me, &f.text, &mut none)
                .map_err(|e| self.err(&format!("node.files[{i}].text"), e.to_string()))?;
            if Path::new(&path).is_absolute() || path.split('/').any(|c| c == "..") {
                return Err(self.err(
                    &format!("node.files[{i}].path"),
                    format!("{path:?} must stay inside the data directory"),
                ));
            }
            files.push((PathBuf::from(path), text));
        }
        Ok(Launch {
            program,
            args,
            env,
            files,
            cwd: names.data_dirs[me].clone(),
        })
    }

    /// How many spare nodes the spec asks for (0 without `[membership]`).
    pub fn spares(&self) -> usize {
        self.spec.membership.as_ref().map_or(0, |m| m.spares)
    }

    /// What to run for spare `me` joining a running cluster whose members
    /// are `members` (indices): `over = "members"` lists name them and
    /// `me`, and the spec's `membership.join_args` follow every other
    /// argument.
    pub fn launch_joining(
        &self,
        names: &NodeNames,
        me: usize,
        members: &[usize],
    ) -> Result<Launch, SpecError> {
        let mut names = names.clone();
        names.members = members.to_vec();
        names.members.push(me);
        names.members.sort_unstable();
        names.members.dedup();
        let mut launch = self.launch(&names, me)?;
        let join = self
            .spec
            .membership
            .as_ref()
            .map(|m| m.join_args.as_slice())
            .unwrap_or_default();
        for (i, a) in join.iter().enumerate() {
            launch.args.push(
                names
                    .render(&self.spec, me, a, &mut |_| None)
                    .map_err(|e| self.err(&format!("membership.join_args[{i}]"), e.to_string()))?,
            );
        }
        Ok(launch)
    }

    /// The deliberate mistakes the system knows, from `node.bug_list`
    /// (`None` when the spec does not say).
    pub fn known_bugs(&self, names: &NodeNames) -> Result<Option<Vec<String>>> {
        if self.spec.node.bug_list.is_empty() {
            return Ok(None);
        }
        let mut none = |_: &str| None;
        let cmd = names
            .command(&self.spec, 0, &self.spec.node.bug_list, &mut none)
            .map_err(|e| self.err("node.bug_list", e.to_string()))?;
        let program = self.find_program("node.bug_list[0]", &cmd[0])?;
        let out = std::process::Command::new(&program)
            .args(&cmd[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("{}: node.bug_list: cannot run it", self.file()))?;
        if !out.status.success() {
            bail!(
                "{}: node.bug_list: {} exited with {}",
                self.file(),
                program.display(),
                out.status
            );
        }
        Ok(Some(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect(),
        ))
    }

    /// Everything about the spec that can be checked before a run: the
    /// node's command renders and its program exists, a client program
    /// exists, and `--node-bug` names mistakes the system knows.
    pub fn check(&self, names: &NodeNames) -> Result<()> {
        self.launch(names, 0)?;
        if self.spec.client.protocol == "program" {
            let first = names
                .render(&self.spec, 0, &self.spec.client.command[0], &mut |n| {
                    matches!(n, "nodes" | "read_mode").then(String::new)
                })
                .map_err(|e| self.err("client.command[0]", e.to_string()))?;
            self.find_program("client.command[0]", &first)?;
        }
        self.check_bugs(names)
    }

    /// Checks that `--node-bug` names only mistakes the system knows and
    /// that the spec says how to switch them on.
    pub fn check_bugs(&self, names: &NodeNames) -> Result<()> {
        let wanted: Vec<&String> = self
            .bugs
            .iter()
            .chain(self.node_bugs.values().flatten())
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        if self.spec.node.bug_args.is_empty() {
            bail!(
                "{}: node.bug_args: missing, so --node-bug cannot be used with {}",
                self.file(),
                self.name()
            );
        }
        if let Some(known) = self.known_bugs(names)?
            && let Some(b) = wanted.iter().find(|b| !known.contains(b))
        {
            bail!("unknown bug `{b}`; known: {}", known.join(", "));
        }
        Ok(())
    }

    /// Renders the readiness or leader probe's templates for node `me`.
    pub fn render(&self, names: &NodeNames, me: usize, field: &str, tpl: &str) -> Result<String> {
        names
            .render(&self.spec, me, tpl, &mut |_| None)
            .map_err(|e| self.err(field, e.to_string()).into())
    }
}

/// Whether `p` is a file someone may execute.
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first executable file called `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_go_round_the_members_only() {
        let m = Members::new(5, 3);
        assert_eq!(m.indices(), [0, 1, 2]);
        assert_eq!((m.after(2), m.after(0), m.nth(4)), (0, 1, 1));
        m.set(3, true);
        m.set(1, false);
        assert_eq!(m.indices(), [0, 2, 3]);
        assert_eq!((m.after(0), m.after(3), m.after(4)), (2, 0, 0));
        assert!(m.is_member(3) && !m.is_member(1) && !m.is_member(9));
        let none = Members::new(2, 0);
        assert_eq!((none.nth(3), none.after(1)), (0, 1));
    }

    #[test]
    fn every_built_in_spec_is_valid() {
        for (name, _) in BUILT_IN {
            let db = Db::resolve(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!db.name().is_empty());
        }
    }

    #[test]
    fn an_unknown_name_lists_the_built_in_systems() {
        let e = Db::resolve("cassandra").expect_err("unknown").to_string();
        assert!(e.contains("faultline, etcd, zookeeper"), "{e}");
        let e = Db::resolve("/no/such/spec.toml")
            .expect_err("missing")
            .to_string();
        assert!(
            e.starts_with("/no/such/spec.toml: file: cannot read it"),
            "{e}"
        );
    }

    #[test]
    fn faultline_node_launches_with_every_peer_through_its_link() {
        let mut db = Db::resolve("faultline").expect("built in");
        db.program = Some(PathBuf::from("/bin/true"));
        db.bugs = vec!["skip-dedup".into()];
        db.node_bugs = [("n2".to_string(), vec!["forget-vote".to_string()])].into();
        db.extra_args = vec!["--heartbeat-ms=20".into()];
        let names = NodeNames {
            ids: vec!["n1".into(), "n2".into()],
            ports: vec![
                [("client".to_string(), 1), ("peer".to_string(), 11)].into(),
                [("client".to_string(), 2), ("peer".to_string(), 12)].into(),
            ],
            dial: [("peer".to_string(), vec![vec![11, 21], vec![22, 12]])].into(),
            data_dirs: vec!["/d/n1".into(), "/d/n2".into()],
            members: vec![0, 1],
            faultline: PathBuf::from("/fl"),
            spec_dir: PathBuf::from("."),
        };
        let l = db.launch(&names, 0).expect("launch");
        assert_eq!(l.program, PathBuf::from("/bin/true"));
        assert_eq!(
            l.args.join(" "),
            "node --id n1 --data-dir /d/n1 --client-addr 127.0.0.1:1 --peer-addr 127.0.0.1:11 \
             --peer n2=127.0.0.1:21 --peer-client n2=http://127.0.0.1:2 --voters n1,n2 \
             --bug skip-dedup --heartbeat-ms=20"
        );
        let l = db.launch(&names, 1).expect("launch");
        assert!(
            l.args
                .join(" ")
                .ends_with("--bug skip-dedup --bug forget-vote --heartbeat-ms=20"),
            "{:?}",
            l.args
        );
    }

    #[test]
    fn zookeeper_lists_every_other_server_at_its_link_and_rewrites_its_election_address() {
        let mut db = Db::resolve("zookeeper").expect("built in");
        db.program = Some(PathBuf::from("/bin/true"));
        let port = |c, q, e, a| -> BTreeMap<String, u16> {
            [("client", c), ("quorum", q), ("election", e), ("admin", a)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        };
        let names = NodeNames {
            ids: vec!["n1".into(), "n2".into()],
            ports: vec![
                port(12001, 12011, 12021, 12031),
                port(12002, 12012, 12022, 12032),
            ],
            dial: [
                (
                    "quorum".to_string(),
                    vec![vec![12011, 40012], vec![40021, 12012]],
                ),
                (
                    "election".to_string(),
                    vec![vec![12021, 50012], vec![50021, 12022]],
                ),
            ]
            .into(),
            data_dirs: vec!["/d/n1".into(), "/d/n2".into()],
            members: vec![0, 1],
            faultline: PathBuf::from("/fl"),
            spec_dir: PathBuf::from("."),
        };
        let l = db.launch(&names, 0).expect("launch");
        let cfg = &l
            .files
            .iter()
            .find(|(p, _)| p == Path::new("zoo.cfg"))
            .expect("zoo.cfg")
            .1;
        assert!(cfg.contains("server.1=127.0.0.1:12011:12021\n"), "{cfg}");
        assert!(cfg.contains("server.2=127.0.0.1:40012:50012"), "{cfg}");
        assert!(cfg.contains("clientPort=12001\n"), "{cfg}");
        let myid = &l
            .files
            .iter()
            .find(|(p, _)| p == Path::new("myid"))
            .expect("myid")
            .1;
        assert_eq!(myid, "1\n");
        // On link n1→n2, n1 names its own election port; n2 must dial back
        // through the proxy of its link n2→n1.
        let sa = &db.spec.self_address["election"];
        assert_eq!(
            names
                .self_address(&db.spec, &sa.text, 0, 1)
                .expect("renders"),
            ("127.0.0.1:12021".to_string(), "127.0.0.1:50021".to_string())
        );
    }
}

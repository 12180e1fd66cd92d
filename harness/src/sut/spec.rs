//! A system under test described in a TOML file: how to start one node
//! (its command as a template, environment, files to write, its ports and
//! how peers dial each other), how to tell it is ready and who leads, and
//! which client speaks to it. [`SystemSpec::load`] parses and validates a
//! file: every error names the file and the field, and every template is
//! rendered once against a made-up cluster so an unknown placeholder is
//! refused before anything starts. README.md documents the format.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::template::{self, TemplateError};

/// A spec file as written (`deny_unknown_fields`: a misspelt key is an
/// error, not a silently ignored setting).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemSpec {
    /// The system's name (summaries, `config.json`).
    pub name: String,
    /// One line about it.
    #[serde(default)]
    pub description: String,
    /// Every port a node binds, by name, and what it is for. `client` is
    /// required.
    pub ports: BTreeMap<String, PortKind>,
    /// How to start one node.
    pub node: NodeSpecToml,
    /// Lists repeated over the nodes, used as `{each.NAME}`.
    #[serde(default)]
    pub each: BTreeMap<String, EachSpec>,
    /// Peer ports on which the dialler writes its own address into the
    /// first bytes it sends, by port name (see [`SelfAddressSpec`]).
    #[serde(default)]
    pub self_address: BTreeMap<String, SelfAddressSpec>,
    /// When a node is ready to serve (checked after every start).
    pub ready: ProbeSpec,
    /// Who leads (optional; without it the nemesis's `leader` targets pick a
    /// random node).
    #[serde(default)]
    pub leader: Option<LeaderSpec>,
    /// The client side.
    pub client: ClientSpec,
    /// Settings of the node that exploration may draw, by name: each a
    /// list of alternatives (extra arguments; `[]` is the node's default).
    #[serde(default)]
    pub knobs: BTreeMap<String, KnobSpec>,
    /// What a run exercised, read from the nodes' logs: name → a regular
    /// expression; each matching log line counts once.
    #[serde(default)]
    pub coverage: BTreeMap<String, String>,
    /// How the disk nemesis treats the node's files.
    #[serde(default)]
    pub disk: DiskSpec,
    /// Spare nodes and how they join, for the member nemesis (without it,
    /// the member nemesis is refused).
    #[serde(default)]
    pub membership: Option<MembershipSpec>,
}

/// Spare nodes for the member nemesis: in every node's address book from
/// the start (`{each.*}` lists over all nodes, a proxy on every directed
/// link), not started until the nemesis grows the cluster.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipSpec {
    /// How many nodes the cluster has beyond `--nodes` (default 2: from 3
    /// voters to 5). The member nemesis grows to at most `--nodes` + spares.
    #[serde(default = "default_spares")]
    pub spares: usize,
    /// Arguments appended to a spare's command when it starts to join a
    /// running cluster, as templates (`--join`; etcd's
    /// `--initial-cluster-state existing`).
    #[serde(default)]
    pub join_args: Vec<String>,
    /// The URL the members reach a joining node at, for systems whose add
    /// request names it (etcd's peer URL), as an `each` item over the node
    /// itself: `{peer.addr.P}` is what the others dial to reach it.
    #[serde(default)]
    pub peer_url: Option<String>,
}

/// Spares when a spec does not say: enough to go from 3 voters to 5.
fn default_spares() -> usize {
    2
}

/// The most spares a spec may ask for.
pub const MAX_SPARES: usize = 10;

/// How the disk nemesis treats a node's files.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// Damage only files whose name ends so (the log's segments, say);
    /// without it, any file of the data directory.
    #[serde(default)]
    pub damage_suffix: Option<String>,
}

/// One setting of the node that exploration draws from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnobSpec {
    /// The alternatives: arguments appended to the node's command.
    pub choices: Vec<Vec<String>>,
    /// How often each alternative is drawn, relative to the others
    /// (default: all alike).
    #[serde(default)]
    pub weights: Vec<u32>,
}

/// What a node's port is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortKind {
    /// Clients connect here (exactly one, named `client`).
    Client,
    /// Nodes dial each other here: faultline puts a proxy on every directed link.
    Peer,
    /// Anything else the node binds (an admin port): never proxied.
    Plain,
}

/// How peers reach each other through the proxies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// Each node is told, per peer, the address to dial: one proxy per
    /// directed link, chosen by the node's own configuration.
    #[default]
    PerLink,
    /// Each node advertises one peer address that every other node dials
    /// (etcd): faultline listens there, finds the dialling node's process
    /// from `/proc`, and splices the connection into that directed link.
    PerDestination,
}

/// How to start one node.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpecToml {
    /// The program and its arguments, as templates. The program is a path
    /// (relative paths from the spec's folder), a name on `PATH`, or
    /// `{faultline}` (this executable).
    pub command: Vec<String>,
    /// Environment variables, as templates.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Files written into the node's data directory before every start.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// How peers dial each other.
    #[serde(default)]
    pub routing: Routing,
    /// Seconds a node may take to stop after SIGTERM (default 10).
    #[serde(default)]
    pub stop_grace_s: Option<f64>,
    /// Arguments that switch on one deliberate mistake, `{bug}` being its
    /// name (for `--node-bug`).
    #[serde(default)]
    pub bug_args: Vec<String>,
    /// A command that prints the known mistakes, one per line, name first.
    #[serde(default)]
    pub bug_list: Vec<String>,
}

/// A file written into the data directory before every start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Its path inside the data directory.
    pub path: String,
    /// Its contents, a template.
    pub text: String,
}

/// A list repeated over the nodes: `{each.NAME}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EachSpec {
    /// Over the other nodes (default), all of them, or the node itself.
    #[serde(default)]
    pub over: Over,
    /// Arguments per node, spliced into a command where `{each.NAME}` is a
    /// whole element.
    #[serde(default)]
    pub args: Vec<String>,
    /// Text per node, joined with `sep`.
    #[serde(default)]
    pub text: Option<String>,
    /// The separator between texts (default `,`).
    #[serde(default)]
    pub sep: Option<String>,
}

/// Which nodes an `each` list covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Over {
    /// Every node but the one being started.
    #[default]
    Others,
    /// Every node.
    All,
    /// Only the node being started (`{peer.addr.X}` is then the address the
    /// others dial to reach it: what a node advertises).
    #[serde(rename = "self")]
    Itself,
    /// The members when the node starts: the founders at first (`--nodes`),
    /// and for a spare that joins later, the members then and itself (for
    /// systems told their initial voters: `--voters`, etcd's
    /// `--initial-cluster`). Without spares, every node.
    Members,
}

/// On one peer port, the dialler writes its own address into the first
/// bytes of every connection it opens (ZooKeeper's election handshake
/// does), and the receiver may drop the connection and dial that address
/// back, which would bypass faultline's proxies. With this, the proxy of
/// each link `i→j` on that port replaces the first occurrence of `text`
/// rendered for node `i` (within the first 1 KiB `i` sends) with `text`
/// rendered as node `j` sees node `i`: every `{addr.P}` / `{port.P}` of a
/// peer port `P` becomes the address `j` dials to reach `i` there (the
/// proxy of the reverse link `j→i`), everything else stays `i`'s. The two
/// must have the same length, since the dialler's framing may count them
/// (node and proxy ports are all 5 digits); a cluster where they differ
/// is refused before it starts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfAddressSpec {
    /// The dialler's own address as it writes it, e.g. `{addr.election}`.
    pub text: String,
}

/// A probe: exactly one of `tcp`, `http` or `command`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    /// Passes when a TCP connection to this address opens.
    #[serde(default)]
    pub tcp: Option<String>,
    /// Passes on a 2xx answer to a GET of this URL.
    #[serde(default)]
    pub http: Option<String>,
    /// With `http`: a JSON pointer into the answer (e.g. `/error`); the
    /// probe fails unless the answer is JSON with nothing or `null` there
    /// (for servers that answer 200 with an error while not serving).
    #[serde(default)]
    pub error: Option<String>,
    /// Passes when this command exits 0.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Seconds to keep trying after a start (default 30).
    #[serde(default)]
    pub timeout_s: Option<f64>,
}

/// Who leads: a GET whose JSON answer is read with JSON pointers, a command
/// whose output is read the same way, or the client protocol's own status.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderSpec {
    /// GET this URL; the answer is JSON.
    #[serde(default)]
    pub http: Option<String>,
    /// Run this command; its output is JSON, or a line of text.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Ask the client protocol (`etcd`, `faultline-http`, `zookeeper`).
    #[serde(default)]
    pub via_client: bool,
    /// JSON pointer to the node's role (e.g. `/role`); with a text answer,
    /// the role is the text's first word.
    #[serde(default)]
    pub role: Option<String>,
    /// The role value that means "leader" (default `leader`).
    #[serde(default)]
    pub leader_role: Option<String>,
    /// JSON pointer to the term or epoch (optional).
    #[serde(default)]
    pub term: Option<String>,
    /// JSON pointer to the id of the leader the node knows (optional).
    #[serde(default)]
    pub leader_id: Option<String>,
}

/// The client side.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// `faultline-http`, `etcd`, `etcd-grpc` (with that cargo feature),
    /// `zookeeper`, or `program`.
    pub protocol: String,
    /// For `program`: the command started once per worker, as templates
    /// (`{nodes}`, `{spec_dir}`, `{faultline}` and `{read_mode}` are known).
    #[serde(default)]
    pub command: Vec<String>,
    /// For `program`: its environment, as templates.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// For `program`: it applies a resent request (same `client`/`seq`) at
    /// most once, so faultline may resend ambiguous attempts.
    #[serde(default)]
    pub dedup: bool,
    /// For `program`: the read modes it implements (default `linearizable`).
    #[serde(default)]
    pub read_modes: Vec<String>,
}

/// A spec that could not be used: the file, the field, and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct SpecError {
    /// The spec file.
    pub file: String,
    /// The field (`node.command[2]`, `ready`, ...).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl SystemSpec {
    /// Parses `text` (from `file`, for messages) and validates it.
    pub fn parse(file: &str, text: &str) -> Result<SystemSpec, SpecError> {
        let spec: SystemSpec = toml::from_str(text).map_err(|e| SpecError {
            file: file.to_string(),
            field: e
                .span()
                .map(|s| format!("line {}", 1 + text[..s.start].matches('\n').count()))
                .unwrap_or_else(|| "syntax".to_string()),
            message: e.message().to_string(),
        })?;
        spec.validate(file)?;
        Ok(spec)
    }

    /// Reads and validates the spec file at `path`.
    pub fn load(path: &Path) -> Result<SystemSpec, SpecError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: file.clone(),
            field: "file".into(),
            message: format!("cannot read it: {e}"),
        })?;
        SystemSpec::parse(&file, &text)
    }

    fn validate(&self, file: &str) -> Result<(), SpecError> {
        let err = |field: &str, message: String| SpecError {
            file: file.to_string(),
            field: field.to_string(),
            message,
        };
        if self.name.trim().is_empty() {
            return Err(err("name", "must not be empty".into()));
        }
        match self.ports.get("client") {
            Some(PortKind::Client) => {}
            Some(_) => return Err(err("ports.client", "must be of kind \"client\"".into())),
            None => {
                return Err(err(
                    "ports",
                    "needs a port named client (client = \"client\")".into(),
                ));
            }
        }
        for (name, kind) in &self.ports {
            if *kind == PortKind::Client && name != "client" {
                return Err(err(
                    &format!("ports.{name}"),
                    "only the port named client may be of kind \"client\"".into(),
                ));
            }
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(err(
                    &format!("ports.{name}"),
                    "port names are letters, digits and _".into(),
                ));
            }
        }
        if self.node.command.is_empty() {
            return Err(err(
                "node.command",
                "must name a program (an empty list)".into(),
            ));
        }
        if let Some(g) = self.node.stop_grace_s
            && !(g.is_finite() && (0.0..=600.0).contains(&g))
        {
            return Err(err(
                "node.stop_grace_s",
                format!("{g}: allowed 0 to 600 seconds"),
            ));
        }
        for (name, each) in &self.each {
            let field = format!("each.{name}");
            match (&each.text, each.args.is_empty()) {
                (Some(_), false) => {
                    return Err(err(&field, "give either args or text, not both".into()));
                }
                (None, true) => return Err(err(&field, "give args or text".into())),
                _ => {}
            }
        }
        for (name, k) in &self.knobs {
            if k.choices.len() < 2 {
                return Err(err(
                    &format!("knobs.{name}.choices"),
                    "give at least two alternatives (`[]` is the node's default)".into(),
                ));
            }
            if !k.weights.is_empty()
                && (k.weights.len() != k.choices.len() || k.weights.iter().all(|w| *w == 0))
            {
                return Err(err(
                    &format!("knobs.{name}.weights"),
                    "give one weight per choice, not all 0".into(),
                ));
            }
        }
        for (name, pattern) in &self.coverage {
            if let Err(e) = regex::Regex::new(pattern) {
                return Err(err(
                    &format!("coverage.{name}"),
                    format!("not a regular expression: {e}"),
                ));
            }
        }
        for (name, sa) in &self.self_address {
            let field = format!("self_address.{name}");
            if self.ports.get(name) != Some(&PortKind::Peer) {
                return Err(err(
                    &field,
                    format!("{name:?} is not a port of kind \"peer\""),
                ));
            }
            if sa.text.is_empty() {
                return Err(err(&format!("{field}.text"), "must not be empty".into()));
            }
        }
        if let Some(m) = &self.membership {
            if !(1..=MAX_SPARES).contains(&m.spares) {
                return Err(err(
                    "membership.spares",
                    format!("{}: allowed 1 to {MAX_SPARES}", m.spares),
                ));
            }
            if let Err(why) = super::membership::supports(&self.client.protocol, m) {
                return Err(err("membership", why));
            }
        }
        self.ready.check(file, "ready")?;
        if let Some(l) = &self.leader {
            let given = [l.http.is_some(), l.command.is_some(), l.via_client]
                .iter()
                .filter(|x| **x)
                .count();
            if given != 1 {
                return Err(err(
                    "leader",
                    "give exactly one of http, command or via_client = true".into(),
                ));
            }
            if !l.via_client && l.role.is_none() {
                return Err(err(
                    "leader.role",
                    "missing: a JSON pointer to the node's role, e.g. \"/role\"".into(),
                ));
            }
            for (f, p) in [
                ("role", &l.role),
                ("term", &l.term),
                ("leader_id", &l.leader_id),
            ] {
                if let Some(p) = p
                    && !p.is_empty()
                    && !p.starts_with('/')
                {
                    return Err(err(
                        &format!("leader.{f}"),
                        format!("{p:?} is not a JSON pointer (it starts with /)"),
                    ));
                }
            }
        }
        match self.client.protocol.as_str() {
            "program" => {
                if self.client.command.is_empty() {
                    return Err(err(
                        "client.command",
                        "missing: protocol \"program\" needs the command to start".into(),
                    ));
                }
            }
            p if super::protocol::BUILT_IN.contains(&p) => {
                if !self.client.command.is_empty() || !self.client.env.is_empty() {
                    return Err(err(
                        "client.command",
                        format!("protocol {p:?} is built in: it takes no command or env"),
                    ));
                }
            }
            p => {
                return Err(err(
                    "client.protocol",
                    super::protocol::not_built(p).unwrap_or_else(|| {
                        format!(
                            "unknown protocol {p:?}; known: {}, program",
                            super::protocol::BUILT_IN.join(", ")
                        )
                    }),
                ));
            }
        }
        for m in &self.client.read_modes {
            if super::ReadMode::parse(m).is_none() {
                return Err(err(
                    "client.read_modes",
                    format!("unknown read mode {m:?}; known: linearizable, lease, stale"),
                ));
            }
        }
        self.check_templates(file)
    }

    /// Renders every template against a made-up three-node cluster, so an
    /// unknown placeholder is found now, with its field.
    fn check_templates(&self, file: &str) -> Result<(), SpecError> {
        let names = NodeNames::dummy(self, 3);
        let fail = |field: String, e: TemplateError| SpecError {
            file: file.to_string(),
            field,
            message: e.to_string(),
        };
        let node = |field: String, tpl: &str, bug: bool| -> Result<(), SpecError> {
            let mut look = |name: &str| {
                if bug && name == "bug" {
                    return Some(String::new());
                }
                names.node_value(self, 0, name)
            };
            template::render(tpl, &mut look)
                .map(drop)
                .map_err(|e| fail(field, e))
        };
        for (i, t) in self.node.command.iter().enumerate() {
            node(format!("node.command[{i}]"), t, false)?;
        }
        for (k, t) in &self.node.env {
            node(format!("node.env.{k}"), t, false)?;
        }
        for (i, f) in self.node.files.iter().enumerate() {
            node(format!("node.files[{i}].path"), &f.path, false)?;
            node(format!("node.files[{i}].text"), &f.text, false)?;
        }
        for (i, t) in self.node.bug_args.iter().enumerate() {
            node(format!("node.bug_args[{i}]"), t, true)?;
        }
        for (i, t) in self.node.bug_list.iter().enumerate() {
            node(format!("node.bug_list[{i}]"), t, false)?;
        }
        if let Some(m) = &self.membership {
            for (i, t) in m.join_args.iter().enumerate() {
                node(format!("membership.join_args[{i}]"), t, false)?;
            }
            if let Some(t) = &m.peer_url {
                let mut look = |n: &str| names.peer_value(self, 0, 0, n);
                template::render(t, &mut look)
                    .map_err(|e| fail("membership.peer_url".into(), e))?;
            }
        }
        for (name, each) in &self.each {
            let mut items: Vec<(String, &String)> = each
                .args
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("each.{name}.args[{i}]"), t))
                .collect();
            if let Some(t) = &each.text {
                items.push((format!("each.{name}.text"), t));
            }
            for (field, t) in items {
                let mut look = |n: &str| names.peer_value(self, 0, 1, n);
                template::render(t, &mut look).map_err(|e| fail(field, e))?;
            }
        }
        for (name, sa) in &self.self_address {
            let field = format!("self_address.{name}.text");
            let (from, to) = names
                .self_address(self, &sa.text, 0, 1)
                .map_err(|e| fail(field.clone(), e))?;
            if from.len() != to.len() {
                return Err(SpecError {
                    file: file.to_string(),
                    field,
                    message: format!(
                        "{from:?} would become {to:?}: the rewrite must keep the length"
                    ),
                });
            }
        }
        let probes: Vec<(String, &String)> = [
            ("ready.tcp", self.ready.tcp.as_ref()),
            ("ready.http", self.ready.http.as_ref()),
            (
                "leader.http",
                self.leader.as_ref().and_then(|l| l.http.as_ref()),
            ),
        ]
        .into_iter()
        .filter_map(|(f, t)| t.map(|t| (f.to_string(), t)))
        .chain(
            self.ready
                .command
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, t)| (format!("ready.command[{i}]"), t)),
        )
        .chain(
            self.leader
                .iter()
                .filter_map(|l| l.command.as_ref())
                .flatten()
                .enumerate()
                .map(|(i, t)| (format!("leader.command[{i}]"), t)),
        )
        .collect();
        for (field, t) in probes {
            node(field, t, false)?;
        }
        let client_look = |name: &str| -> Option<String> {
            match name {
                "nodes" | "read_mode" => Some(String::new()),
                _ => names.node_value(self, 0, name),
            }
        };
        for (i, t) in self.client.command.iter().enumerate() {
            template::render(t, &mut |n| client_look(n))
                .map_err(|e| fail(format!("client.command[{i}]"), e))?;
        }
        for (k, t) in &self.client.env {
            template::render(t, &mut |n| client_look(n))
                .map_err(|e| fail(format!("client.env.{k}"), e))?;
        }
        Ok(())
    }

    /// Ports of this kind, in name order.
    pub fn ports_of(&self, kind: PortKind) -> Vec<String> {
        self.ports
            .iter()
            .filter(|(_, k)| **k == kind)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

impl ProbeSpec {
    fn check(&self, file: &str, field: &str) -> Result<(), SpecError> {
        let given = [
            self.tcp.is_some(),
            self.http.is_some(),
            self.command.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        let err = |f: String, message: String| SpecError {
            file: file.to_string(),
            field: f,
            message,
        };
        if given != 1 {
            return Err(err(
                field.to_string(),
                "give exactly one of tcp, http or command".into(),
            ));
        }
        if self.command.as_ref().is_some_and(Vec::is_empty) {
            return Err(err(format!("{field}.command"), "an empty command".into()));
        }
        if let Some(p) = &self.error {
            if self.http.is_none() {
                return Err(err(
                    format!("{field}.error"),
                    "only an http probe reads its answer".into(),
                ));
            }
            if !p.starts_with('/') {
                return Err(err(
                    format!("{field}.error"),
                    format!("{p:?} is not a JSON pointer (it starts with /)"),
                ));
            }
        }
        if let Some(t) = self.timeout_s
            && !(t.is_finite() && (0.1..=3600.0).contains(&t))
        {
            return Err(err(
                format!("{field}.timeout_s"),
                format!("{t}: allowed 0.1 to 3600 seconds"),
            ));
        }
        Ok(())
    }
}

/// Everything a template can name for the nodes of one cluster: ids, ports
/// each node binds, the address node i dials for node j's peer ports, data
/// directories, and the run-wide values (`{faultline}`, `{spec_dir}`).
#[derive(Clone, Debug)]
pub struct NodeNames {
    /// Node ids.
    pub ids: Vec<String>,
    /// `ports[i][name]`: the port node i binds for `name`.
    pub ports: Vec<BTreeMap<String, u16>>,
    /// `dial[name][i][j]`: the port node i dials to reach node j's peer port
    /// `name`; for `i == j`, what the others dial to reach node i (its own
    /// port under per-link routing, its demultiplexer under per-destination).
    pub dial: BTreeMap<String, Vec<Vec<u16>>>,
    /// Data directories.
    pub data_dirs: Vec<PathBuf>,
    /// The members an `over = "members"` list covers (indices into `ids`):
    /// the founders, or for a joining spare the members then and itself.
    pub members: Vec<usize>,
    /// The faultline executable.
    pub faultline: PathBuf,
    /// The spec's folder.
    pub spec_dir: PathBuf,
}

/// The host every node binds.
pub const HOST: &str = "127.0.0.1";

impl NodeNames {
    /// A made-up cluster of `n` nodes for checking a spec before a run
    /// (templates render, the bug list runs): made-up ports and folders,
    /// this executable as `{faultline}`.
    pub fn for_checks(spec: &SystemSpec, n: usize) -> NodeNames {
        let mut names = NodeNames::dummy(spec, n);
        if let Ok(exe) = std::env::current_exe() {
            names.faultline = exe;
        }
        names
    }

    /// A made-up cluster for validating templates.
    fn dummy(spec: &SystemSpec, n: usize) -> NodeNames {
        let ports: Vec<BTreeMap<String, u16>> = (0..n)
            .map(|i| {
                spec.ports
                    .keys()
                    .enumerate()
                    .map(|(k, name)| (name.clone(), 20_000 + (i * 10 + k) as u16))
                    .collect()
            })
            .collect();
        let dial = spec
            .ports_of(PortKind::Peer)
            .into_iter()
            .map(|name| {
                let m = (0..n)
                    .map(|i| {
                        (0..n)
                            .map(|j| {
                                if i == j {
                                    ports[j][&name]
                                } else {
                                    30_000 + (i * 10 + j) as u16
                                }
                            })
                            .collect()
                    })
                    .collect();
                (name, m)
            })
            .collect();
        NodeNames {
            ids: (1..=n).map(|i| format!("n{i}")).collect(),
            ports,
            dial,
            data_dirs: (1..=n).map(|i| PathBuf::from(format!("/d/n{i}"))).collect(),
            members: (0..n).collect(),
            faultline: PathBuf::from("/faultline"),
            spec_dir: PathBuf::from("/spec"),
        }
    }

    /// The value of a placeholder in node `me`'s own templates (command,
    /// env, files, probes), or `None` when the name is unknown. `{each.X}`
    /// is the text form of the list.
    pub fn node_value(&self, spec: &SystemSpec, me: usize, name: &str) -> Option<String> {
        match name {
            "id" => return Some(self.ids[me].clone()),
            "num" => return Some((me + 1).to_string()),
            "host" => return Some(HOST.to_string()),
            "data_dir" => return Some(self.data_dirs[me].display().to_string()),
            "faultline" => return Some(self.faultline.display().to_string()),
            "spec_dir" => return Some(self.spec_dir.display().to_string()),
            _ => {}
        }
        if let Some(p) = name.strip_prefix("port.") {
            return self.ports[me].get(p).map(u16::to_string);
        }
        if let Some(p) = name.strip_prefix("addr.") {
            return self.ports[me].get(p).map(|port| format!("{HOST}:{port}"));
        }
        if let Some(list) = name.strip_prefix("each.") {
            let each = spec.each.get(list)?;
            let items = self.each_items(spec, me, each);
            return Some(match &each.text {
                Some(_) => items.join(each.sep.as_deref().unwrap_or(",")),
                None => items.join(" "),
            });
        }
        None
    }

    /// The value of a placeholder inside an `each` item, for peer `j` as
    /// node `me` sees it: `{peer.id}`, `{peer.num}`, `{peer.port.X}` and
    /// `{peer.addr.X}` (for a peer port: what `me` dials to reach `j`),
    /// plus everything [`NodeNames::node_value`] knows about `me`.
    pub fn peer_value(&self, spec: &SystemSpec, me: usize, j: usize, name: &str) -> Option<String> {
        let Some(p) = name.strip_prefix("peer.") else {
            if name.starts_with("each.") {
                return None; // no lists inside lists
            }
            return self.node_value(spec, me, name);
        };
        match p {
            "id" => return Some(self.ids[j].clone()),
            "num" => return Some((j + 1).to_string()),
            _ => {}
        }
        let port = |port_name: &str| -> Option<u16> {
            match self.dial.get(port_name) {
                Some(m) => Some(m[me][j]),
                None => self.ports[j].get(port_name).copied(),
            }
        };
        if let Some(n) = p.strip_prefix("port.") {
            return port(n).map(|x| x.to_string());
        }
        if let Some(n) = p.strip_prefix("addr.") {
            return port(n).map(|x| format!("{HOST}:{x}"));
        }
        None
    }

    /// The rendered items of an `each` list for node `me` (args flattened,
    /// or one text per node).
    pub fn each_items(&self, spec: &SystemSpec, me: usize, each: &EachSpec) -> Vec<String> {
        let over: Vec<usize> = (0..self.ids.len())
            .filter(|j| match each.over {
                Over::All => true,
                Over::Others => *j != me,
                Over::Itself => *j == me,
                Over::Members => self.members.contains(j),
            })
            .collect();
        let mut out = Vec::new();
        for j in over {
            let mut look = |n: &str| self.peer_value(spec, me, j, n);
            match &each.text {
                Some(t) => out.push(template::render(t, &mut look).unwrap_or_default()),
                None => {
                    for a in &each.args {
                        out.push(template::render(a, &mut look).unwrap_or_default());
                    }
                }
            }
        }
        out
    }

    /// A [`SelfAddressSpec`]'s `text` for link `i→j`: as node `i` writes its
    /// own address, and as node `j` must dial it (peer ports replaced by
    /// what `j` dials to reach `i`).
    pub fn self_address(
        &self,
        spec: &SystemSpec,
        text: &str,
        i: usize,
        j: usize,
    ) -> Result<(String, String), TemplateError> {
        let own = template::render(text, &mut |n| self.node_value(spec, i, n))?;
        let seen = template::render(text, &mut |n| {
            let peer_port = n
                .strip_prefix("addr.")
                .or_else(|| n.strip_prefix("port."))
                .filter(|p| self.dial.contains_key(*p));
            match peer_port {
                Some(_) => self.peer_value(spec, j, i, &format!("peer.{n}")),
                None => self.node_value(spec, i, n),
            }
        })?;
        Ok((own, seen))
    }

    /// Renders a command (a list of templates) for node `me`: an element
    /// that is exactly `{each.X}` of an args list becomes its arguments.
    pub fn command(
        &self,
        spec: &SystemSpec,
        me: usize,
        tpl: &[String],
        extra: &mut dyn FnMut(&str) -> Option<String>,
    ) -> Result<Vec<String>, TemplateError> {
        let mut out = Vec::with_capacity(tpl.len());
        for t in tpl {
            if let Some(name) = template::sole_placeholder(t)
                && let Some(list) = name.strip_prefix("each.")
                && let Some(each) = spec.each.get(list)
                && each.text.is_none()
            {
                out.extend(self.each_items(spec, me, each));
                continue;
            }
            out.push(self.render(spec, me, t, extra)?);
        }
        Ok(out)
    }

    /// Renders one template for node `me`; `extra` is asked first.
    pub fn render(
        &self,
        spec: &SystemSpec,
        me: usize,
        tpl: &str,
        extra: &mut dyn FnMut(&str) -> Option<String>,
    ) -> Result<String, TemplateError> {
        template::render(tpl, &mut |n| {
            extra(n).or_else(|| self.node_value(spec, me, n))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "toy"
[ports]
client = "client"
peer = "peer"
[node]
command = ["/bin/toy", "--id", "{id}", "--listen", "{addr.peer}", "{each.peers}", "--cluster", "{each.cluster}"]
[each.peers]
args = ["--peer", "{peer.id}={peer.addr.peer}"]
[each.cluster]
over = "all"
text = "{peer.id}=http://{peer.addr.peer}"
[ready]
tcp = "{addr.client}"
[client]
protocol = "faultline-http"
"#;

    #[test]
    fn a_minimal_spec_renders_each_lists_for_every_node() {
        let spec = SystemSpec::parse("toy.toml", MINIMAL).expect("valid");
        let names = NodeNames::dummy(&spec, 3);
        let cmd = names
            .command(&spec, 1, &spec.node.command, &mut |_| None)
            .expect("renders");
        let peer = names.ports[1]["peer"];
        assert_eq!(
            cmd.join(" "),
            format!(
                "/bin/toy --id n2 --listen 127.0.0.1:{peer} --peer n1=127.0.0.1:30010 \
                 --peer n3=127.0.0.1:30012 --cluster n1=http://127.0.0.1:30010,\
                 n2=http://127.0.0.1:{peer},n3=http://127.0.0.1:30012"
            )
        );
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let cases = [
            (
                MINIMAL.replace("--id\", \"{id}\"", "--id\", \"{dta_dir}\""),
                "toy.toml: node.command[2]: unknown placeholder {dta_dir}",
            ),
            (
                MINIMAL.replace("[ready]\ntcp = \"{addr.client}\"\n", ""),
                "missing field `ready`",
            ),
            (
                MINIMAL.replace(
                    "protocol = \"faultline-http\"",
                    "protocol = \"carrier-pigeon\"",
                ),
                "toy.toml: client.protocol: unknown protocol \"carrier-pigeon\"",
            ),
            (
                MINIMAL.replace("client = \"client\"\n", ""),
                "toy.toml: ports: needs a port named client",
            ),
            (
                MINIMAL.replace("[ready]\n", "[ready]\nhttp = \"http://{addr.client}/\"\n"),
                "toy.toml: ready: give exactly one of tcp, http or command",
            ),
            (
                MINIMAL.replace("name = \"toy\"", "name = \"toy\"\nnmae = \"x\""),
                "unknown field `nmae`",
            ),
            (
                MINIMAL.replace("{peer.id}={peer.addr.peer}", "{peer.id}={peer.adr.peer}"),
                "toy.toml: each.peers.args[1]: unknown placeholder {peer.adr.peer}",
            ),
        ];
        for (text, says) in cases {
            let e = SystemSpec::parse("toy.toml", &text).expect_err(says);
            let msg = e.to_string();
            assert!(msg.contains(says), "expected {says:?} in {msg:?}");
            assert!(msg.starts_with("toy.toml: "), "{msg}");
        }
    }

    #[test]
    fn membership_sections_are_checked_field_by_field() {
        let with = |section: &str| MINIMAL.replace("[ready]", &format!("{section}\n[ready]"));
        // The section's defaults: two spares, nothing appended.
        let spec = SystemSpec::parse("toy.toml", &with("[membership]")).expect("valid");
        let m = spec.membership.as_ref().expect("membership");
        assert_eq!((m.spares, m.join_args.len()), (2, 0));
        assert!(
            SystemSpec::parse("toy.toml", MINIMAL)
                .expect("valid")
                .membership
                .is_none()
        );
        let cases = [
            (
                with("[membership]\nspares = 0"),
                "toy.toml: membership.spares: 0: allowed 1 to 10",
            ),
            (
                with("[membership]\nspares = 11"),
                "toy.toml: membership.spares: 11: allowed 1 to 10",
            ),
            (with("[membership]\nspares = -1"), "toy.toml: line "),
            (with("[membership]\nspare = 2"), "unknown field `spare`"),
            (
                with("[membership]\njoin_args = [\"--join\", \"{joiner}\"]"),
                "toy.toml: membership.join_args[1]: unknown placeholder {joiner}",
            ),
            (
                with("[membership]\njoin_args = \"--join\""),
                "invalid type: string \"--join\", expected a sequence",
            ),
            (
                with("[membership]\npeer_url = \"http://{peer.adr.peer}\""),
                "toy.toml: membership.peer_url: unknown placeholder {peer.adr.peer}",
            ),
            (
                with("[membership]").replace("\"faultline-http\"", "\"etcd\""),
                "toy.toml: membership: etcd's member add names the new member's peer URL",
            ),
            (
                with("[membership]").replace(
                    "protocol = \"faultline-http\"",
                    "protocol = \"program\"\ncommand = [\"/bin/client\"]",
                ),
                "toy.toml: membership: client protocol \"program\" has no membership driver",
            ),
            (
                with("[each.voters]\nover = \"founders\"\ntext = \"{peer.id}\""),
                "unknown variant `founders`",
            ),
        ];
        for (text, says) in cases {
            let e = SystemSpec::parse("toy.toml", &text).expect_err(says);
            let msg = e.to_string();
            assert!(msg.contains(says), "expected {says:?} in {msg:?}");
            assert!(msg.starts_with("toy.toml: "), "{msg}");
        }
    }

    #[test]
    fn a_members_list_names_the_founders_then_the_members_a_spare_joins() {
        let text = MINIMAL.replace(
            "[ready]",
            "[each.voters]\nover = \"members\"\ntext = \"{peer.id}\"\n[membership]\nspares = 2\n\
             join_args = [\"--join\", \"--as={id}\"]\n[ready]",
        );
        let spec = SystemSpec::parse("toy.toml", &text).expect("valid");
        let mut names = NodeNames::dummy(&spec, 5);
        names.members = vec![0, 1, 2];
        let voters = spec.each.get("voters").expect("voters");
        assert_eq!(names.each_items(&spec, 0, voters), ["n1", "n2", "n3"]);
        // Every address book still holds all five.
        let peers = spec.each.get("peers").expect("peers");
        assert_eq!(names.each_items(&spec, 0, peers).len(), 8);
        let db = crate::sut::Db {
            spec: spec.clone(),
            source: crate::sut::SpecSource::File("toy.toml".into()),
            spec_dir: ".".into(),
            program: Some("/bin/true".into()),
            extra_args: vec!["--extra".into()],
            bugs: vec![],
            node_bugs: Default::default(),
        };
        let l = db.launch_joining(&names, 4, &[1, 2, 3]).expect("joins");
        let args = l.args.join(" ");
        assert!(
            args.ends_with(
                "--cluster n1=http://127.0.0.1:30040,n2=http://127.0.0.1:30041,\
                            n3=http://127.0.0.1:30042,n4=http://127.0.0.1:30043,\
                            n5=http://127.0.0.1:20041 --extra --join --as=n5"
            ),
            "{args}"
        );
        let voters_of_joiner = {
            let mut n = names.clone();
            n.members = vec![1, 2, 3, 4];
            n.each_items(&spec, 4, voters)
        };
        assert_eq!(voters_of_joiner, ["n2", "n3", "n4", "n5"]);
        assert_eq!(db.spares(), 2);
    }

    #[test]
    fn a_self_address_is_rewritten_to_what_the_receiver_dials() {
        let text = MINIMAL.replace(
            "[ready]",
            "[self_address.peer]\ntext = \"{addr.peer}\"\n[ready]",
        );
        let spec = SystemSpec::parse("toy.toml", &text).expect("valid");
        let names = NodeNames::dummy(&spec, 3);
        // Link n1→n3: n1 writes its own peer address; n3 reaches n1 at the
        // proxy of the link n3→n1.
        let (from, to) = names
            .self_address(&spec, "{addr.peer}", 0, 2)
            .expect("renders");
        assert_eq!(from, format!("127.0.0.1:{}", names.ports[0]["peer"]));
        assert_eq!(to, format!("127.0.0.1:{}", names.dial["peer"][2][0]));
        // Placeholders that are not peer addresses stay the dialler's.
        let (from, to) = names
            .self_address(&spec, "{id}@{port.peer}/{port.client}", 0, 2)
            .expect("renders");
        assert_eq!(
            from,
            format!("n1@{}/{}", names.ports[0]["peer"], names.ports[0]["client"])
        );
        assert_eq!(
            to,
            format!(
                "n1@{}/{}",
                names.dial["peer"][2][0], names.ports[0]["client"]
            )
        );
    }

    #[test]
    fn self_addresses_and_probe_errors_are_checked() {
        let cases = [
            (
                MINIMAL.replace(
                    "[ready]",
                    "[self_address.client]\ntext = \"{addr.client}\"\n[ready]",
                ),
                "toy.toml: self_address.client: \"client\" is not a port of kind \"peer\"",
            ),
            (
                MINIMAL.replace(
                    "[ready]",
                    "[self_address.peer]\ntext = \"{adr.peer}\"\n[ready]",
                ),
                "toy.toml: self_address.peer.text: unknown placeholder {adr.peer}",
            ),
            (
                MINIMAL.replace(
                    "[ready]",
                    "[self_address.peer]\ntext = \"{num}:{peer.id}\"\n[ready]",
                ),
                "toy.toml: self_address.peer.text: unknown placeholder {peer.id}",
            ),
            (
                MINIMAL.replace("[ready]\n", "[ready]\nerror = \"/error\"\n"),
                "toy.toml: ready.error: only an http probe reads its answer",
            ),
            (
                MINIMAL.replace(
                    "[ready]\ntcp = \"{addr.client}\"\n",
                    "[ready]\nhttp = \"http://{addr.client}/\"\nerror = \"error\"\n",
                ),
                "toy.toml: ready.error: \"error\" is not a JSON pointer",
            ),
        ];
        for (text, says) in cases {
            let e = SystemSpec::parse("toy.toml", &text).expect_err(says);
            let msg = e.to_string();
            assert!(msg.contains(says), "expected {says:?} in {msg:?}");
        }
    }
}

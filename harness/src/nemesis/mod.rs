//! The nemesis: the closed vocabulary of faults ([`Fault`]), the table of
//! fault kinds a user asks for with `--nemesis` ([`KINDS`]: each kind's
//! name, description, how it starts and ends, and its colour in the
//! report), the parsed `--nemesis` argument with its parameters ([`Plan`]),
//! the seeded [`Scheduler`](schedule::Scheduler) and the scripted schedules
//! ([`script`]). It only decides; the cluster (proxies and supervisor)
//! carries faults out.

pub mod schedule;
pub mod script;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use schedule::{PartitionShape, Scheduler, Target, View, partition, targets};
pub use script::{SCRIPTS, ScriptKind, ScriptPlan};

/// A family of faults the user can ask for with `--nemesis`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum NemesisKind {
    /// Network partitions of several shapes, then heal.
    Partition,
    /// SIGKILL nodes, then restart them on the same data.
    Kill,
    /// SIGSTOP nodes, then SIGCONT them.
    Pause,
    /// Add latency and jitter to links, then clear.
    Delay,
    /// Drop connections with a probability per chunk, then clear.
    Loss,
    /// Limit links' throughput, then clear.
    Bandwidth,
    /// Jump, strobe or change the rate of nodes' clocks (libfaketime), then reset.
    Clock,
    /// Lose unsynced writes (a power cut), damage files, or fill the disk
    /// (data directories on faultline's FUSE filesystem), then heal.
    Disk,
    /// Change the cluster's membership: add a spare node as a learner and
    /// promote it, remove a voter, or both. Each step is instant (a window
    /// of its own); nothing stays active.
    Member,
}

/// One row of the fault table: everything about a kind that the nemesis,
/// the report and `faultline list` need.
#[derive(Clone, Copy, Debug)]
pub struct KindInfo {
    /// The kind.
    pub kind: NemesisKind,
    /// Its name on the command line and in files.
    pub name: &'static str,
    /// One line for `faultline list`.
    pub description: &'static str,
    /// What may follow `name:` on the command line.
    pub variants: &'static str,
    /// The `f` of the fault that starts it (history and `nemesis.jsonl`);
    /// empty for a kind made of instant steps (see [`KindInfo::instant`]).
    pub start: &'static str,
    /// The `f` of the fault that ends it; empty for a kind of instant steps.
    pub end: &'static str,
    /// The `f` of faults that change it without starting or ending it (the
    /// finer steps of scripted schedules), or, for a kind of instant steps,
    /// its steps.
    pub steps: &'static [&'static str],
    /// Its colour in the report's plots.
    pub colour: &'static str,
}

/// The fault table, in the order `--help` and `faultline list` show it.
pub const KINDS: [KindInfo; 9] = [
    KindInfo {
        kind: NemesisKind::Partition,
        name: "partition",
        description: "cut links: isolate a node or the leader, halves, majorities ring, bridge, one-way; then heal",
        variants: "shapes isolate-one, isolate-leader, halves, majorities-ring, bridge, one-way; \
                   reject (reset connections instead of dropping bytes)",
        start: "partition",
        end: "heal",
        steps: &["repartition"],
        colour: "#9467bd",
    },
    KindInfo {
        kind: NemesisKind::Kill,
        name: "kill",
        description: "SIGKILL one, a minority, a majority, the leader or all nodes; restart them on their data",
        variants: "targets one, minority, majority, leader, all",
        start: "kill",
        end: "restart",
        steps: &["revive"],
        colour: "#8c564b",
    },
    KindInfo {
        kind: NemesisKind::Pause,
        name: "pause",
        description: "SIGSTOP nodes (same targets as kill), then SIGCONT them",
        variants: "targets one, minority, majority, leader, all",
        start: "pause",
        end: "resume",
        steps: &[],
        colour: "#e377c2",
    },
    KindInfo {
        kind: NemesisKind::Delay,
        name: "delay",
        description: "add latency and jitter to every link (default 50ms~10ms), then clear",
        variants: "LATENCY[~JITTER] e.g. 100ms~20ms; peers (default), clients, all-links",
        start: "delay",
        end: "clear-links",
        steps: &[],
        colour: "#17becf",
    },
    KindInfo {
        kind: NemesisKind::Loss,
        name: "loss",
        description: "drop connections with a probability per chunk on every link (default 5%), then clear",
        variants: "PERCENT e.g. 20%; peers (default), clients, all-links",
        start: "loss",
        end: "clear-links",
        steps: &[],
        colour: "#bcbd22",
    },
    KindInfo {
        kind: NemesisKind::Bandwidth,
        name: "bandwidth",
        description: "limit every link's throughput (default 64KiB per second), then clear",
        variants: "SIZE per second e.g. 64KiB, 1MiB; peers (default), clients, all-links",
        start: "bandwidth",
        end: "clear-links",
        steps: &[],
        colour: "#ff7f0e",
    },
    KindInfo {
        kind: NemesisKind::Clock,
        name: "clock",
        description: "jump a node's clock (±5 s), strobe it, or run it at 2× or 0.5× (libfaketime; not for Go programs), then reset",
        variants: "actions bump, strobe, fast, slow; targets one, minority, majority, leader, all; SECONDS for bump (e.g. 10s)",
        start: "clock",
        end: "clock-reset",
        steps: &[],
        colour: "#7f7f7f",
    },
    KindInfo {
        kind: NemesisKind::Disk,
        name: "disk",
        description: "power cut (kill and lose unsynced writes, maybe a torn last write), damage a killed node's files, or a full disk; then heal and restart",
        variants: "actions power-cut, torn, corrupt, full (default), truncate (on request); targets one, minority, majority, leader, all (default majority, all)",
        start: "disk",
        end: "disk-heal",
        steps: &[],
        colour: "#393b79",
    },
    KindInfo {
        kind: NemesisKind::Member,
        name: "member",
        description: "change membership: grow (start a spare, add it as a learner, promote it once caught up), \
                      shrink (remove a voter, stop it, wipe it), replace (grow, then shrink); voters stay \
                      between 3 and --nodes plus the spec's spares",
        variants: "steps grow, shrink, replace (default all)",
        start: "",
        end: "",
        steps: &["grow", "shrink", "replace"],
        colour: "#2ca02c",
    },
];

impl NemesisKind {
    /// Every kind, in table order.
    pub fn all() -> impl Iterator<Item = NemesisKind> {
        KINDS.iter().map(|k| k.kind)
    }

    /// Its row of the fault table.
    pub fn info(self) -> &'static KindInfo {
        KINDS.iter().find(|k| k.kind == self).unwrap_or(&KINDS[0])
    }

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The kind with this name.
    pub fn by_name(name: &str) -> Option<NemesisKind> {
        KINDS.iter().find(|k| k.name == name).map(|k| k.kind)
    }

    /// Whether the kind is made of instant steps, each a window of its own
    /// from the action's start to its end, that never stays active (its
    /// table row has no start and end).
    pub fn instant(self) -> bool {
        self.info().start.is_empty()
    }

    /// Whether two kinds can be active together (delay, loss and bandwidth
    /// all set the links' quality, so only one at a time).
    pub fn conflicts(self, other: NemesisKind) -> bool {
        let quality = |k: NemesisKind| {
            matches!(
                k,
                NemesisKind::Delay | NemesisKind::Loss | NemesisKind::Bandwidth
            )
        };
        self != other && quality(self) && quality(other)
    }
}

impl fmt::Display for NemesisKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kinds a fault's `f` starts and ends, from the table (`clear` ends
/// every kind). For reading histories and `nemesis.jsonl`; an unknown `f`
/// starts and ends nothing.
pub fn semantics(f: &str) -> (Option<NemesisKind>, Vec<NemesisKind>) {
    if f == "clear" {
        return (None, NemesisKind::all().collect());
    }
    // Older files spelled the link faults `link-delay` and `link-loss`.
    let f = f.strip_prefix("link-").unwrap_or(f);
    if f.is_empty() {
        return (None, Vec::new());
    }
    let starts = KINDS.iter().find(|k| k.start == f).map(|k| k.kind);
    let ends = KINDS
        .iter()
        .filter(|k| k.end == f)
        .map(|k| k.kind)
        .collect();
    (starts, ends)
}

/// The kind of instant steps (see [`NemesisKind::instant`]) that a fault's
/// `f` is a step of, if any: such an action is a window by itself.
pub fn instant_step(f: &str) -> Option<NemesisKind> {
    KINDS
        .iter()
        .find(|k| k.kind.instant() && k.steps.contains(&f))
        .map(|k| k.kind)
}

/// How a partition cuts a link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CutMode {
    /// Bytes are dropped and nothing is reset (like an iptables DROP).
    #[default]
    Blackhole,
    /// Every connection is reset at once (like an iptables REJECT).
    Reject,
}

/// Which links a link-quality fault changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkScope {
    /// Node-to-node links.
    #[default]
    Peers,
    /// Client-to-node links (faultline then proxies them).
    Clients,
    /// Both.
    AllLinks,
}

impl LinkScope {
    /// Whether peer links are included.
    pub fn peers(self) -> bool {
        self != LinkScope::Clients
    }

    /// Whether client links are included.
    pub fn clients(self) -> bool {
        self != LinkScope::Peers
    }

    /// Its name as a `--nemesis` parameter.
    pub fn name(self) -> &'static str {
        match self {
            LinkScope::Peers => "peers",
            LinkScope::Clients => "clients",
            LinkScope::AllLinks => "all-links",
        }
    }
}

/// What a clock fault does to a node's clock.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum ClockAction {
    /// Jump by this many milliseconds (negative: back).
    Bump {
        /// The jump.
        ms: i64,
    },
    /// Flip between real time and this offset every `period_ms`.
    Strobe {
        /// The offset.
        ms: i64,
        /// How long each state lasts.
        period_ms: u64,
    },
    /// Run at this rate (2.0 fast, 0.5 slow) from now on.
    Rate {
        /// The rate.
        rate: f64,
    },
}

impl ClockAction {
    /// Its name as a `--nemesis clock:` parameter.
    pub fn name(self) -> &'static str {
        match self {
            ClockAction::Bump { .. } => "bump",
            ClockAction::Strobe { .. } => "strobe",
            ClockAction::Rate { rate } if rate >= 1.0 => "fast",
            ClockAction::Rate { .. } => "slow",
        }
    }
}

/// What a disk fault does.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum DiskAction {
    /// Kill the nodes and drop their unsynced writes; with `torn`, that
    /// fraction of the last unsynced write survives.
    PowerCut {
        /// The surviving fraction of the last write, for a torn write.
        torn: Option<f64>,
    },
    /// Kill the node, drop its unsynced writes, and damage one of its files.
    Corrupt {
        /// Flip bits in the middle (true) or cut the tail (false).
        flip: bool,
        /// Which file and where, drawn from this seed.
        seed: u64,
    },
    /// Writes fail with ENOSPC until healed.
    Full,
}

impl DiskAction {
    /// Its name as a `--nemesis disk:` parameter.
    pub fn name(self) -> &'static str {
        match self {
            DiskAction::PowerCut { torn: None } => "power-cut",
            DiskAction::PowerCut { torn: Some(_) } => "torn",
            DiskAction::Corrupt { flip: true, .. } => "corrupt",
            DiskAction::Corrupt { flip: false, .. } => "truncate",
            DiskAction::Full => "full",
        }
    }
}

/// A step of the member nemesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberStep {
    /// A spare joins as a voter.
    Grow,
    /// A voter leaves.
    Shrink,
    /// A spare joins, then a voter leaves.
    Replace,
}

impl MemberStep {
    /// Every step.
    pub const ALL: [MemberStep; 3] = [MemberStep::Grow, MemberStep::Shrink, MemberStep::Replace];

    /// Its name as a `--nemesis member:` parameter (the `f` of its fault).
    pub fn name(self) -> &'static str {
        match self {
            MemberStep::Grow => "grow",
            MemberStep::Shrink => "shrink",
            MemberStep::Replace => "replace",
        }
    }
}

/// The disk actions a plan draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskChoice {
    /// A power cut.
    PowerCut,
    /// A power cut that tears the last write.
    Torn,
    /// Bits flipped in the middle of a file on one killed node.
    Corrupt,
    /// A full disk.
    Full,
    /// The tail of a file cut off on one killed node: durable data lost,
    /// which no check on the node can tell from a torn last write. Not in
    /// the default mix (see [`DiskChoice::DEFAULT`]).
    Truncate,
}

impl DiskChoice {
    /// Every choice.
    pub const ALL: [DiskChoice; 5] = [
        DiskChoice::PowerCut,
        DiskChoice::Torn,
        DiskChoice::Corrupt,
        DiskChoice::Full,
        DiskChoice::Truncate,
    ];

    /// What `disk` draws from unless told otherwise: faults a correct
    /// replicated system must survive. Cutting the tail of a file that was
    /// fsynced loses data the node acknowledged, and a node that finds its
    /// file ending mid-record cannot tell that from a torn last write; a
    /// committed entry held by a bare majority then survives on a minority
    /// (Alagappan et al., FAST 2018: most systems lose data so). It is
    /// there on request (`disk:truncate`), not by default.
    pub const DEFAULT: [DiskChoice; 4] = [
        DiskChoice::PowerCut,
        DiskChoice::Torn,
        DiskChoice::Corrupt,
        DiskChoice::Full,
    ];

    /// How often the nemesis draws it, relative to the others: lost
    /// unsynced writes (plain or torn) are what the disk nemesis is for, so
    /// power cuts come three times as often as a damaged file or a full
    /// disk.
    pub fn weight(self) -> u32 {
        match self {
            DiskChoice::PowerCut | DiskChoice::Torn => 3,
            DiskChoice::Corrupt | DiskChoice::Full | DiskChoice::Truncate => 1,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            DiskChoice::PowerCut => "power-cut",
            DiskChoice::Torn => "torn",
            DiskChoice::Corrupt => "corrupt",
            DiskChoice::Full => "full",
            DiskChoice::Truncate => "truncate",
        }
    }
}

/// One fault, with whom it hits already decided. The closed vocabulary of
/// everything the harness can do to a cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Fault {
    /// Cut these directed links `[from, to]`.
    Partition {
        /// The shape that produced the cut.
        shape: PartitionShape,
        /// Directed links cut (node `from` can no longer send to `to`).
        cut: Vec<[String; 2]>,
        /// Dropped bytes or reset connections.
        #[serde(default)]
        mode: CutMode,
    },
    /// The cut becomes exactly these directed links: links cut before and
    /// not listed heal, in one step (a scripted schedule moving a partition
    /// without a moment of full connectivity).
    Repartition {
        /// The shape that produced the cut.
        shape: PartitionShape,
        /// Directed links cut from now on.
        cut: Vec<[String; 2]>,
        /// Dropped bytes or reset connections.
        #[serde(default)]
        mode: CutMode,
    },
    /// Remove every partition.
    Heal,
    /// SIGKILL these nodes.
    Kill {
        /// How the nodes were chosen.
        target: Target,
        /// The nodes.
        nodes: Vec<String>,
    },
    /// Restart every killed node on its data directory.
    Restart,
    /// Restart these killed nodes on their data directories (others stay
    /// down).
    Revive {
        /// The nodes.
        nodes: Vec<String>,
    },
    /// SIGSTOP these nodes.
    Pause {
        /// How the nodes were chosen.
        target: Target,
        /// The nodes.
        nodes: Vec<String>,
    },
    /// SIGCONT every paused node.
    Resume,
    /// Delay links.
    #[serde(rename = "delay", alias = "link-delay")]
    LinkDelay {
        /// Mean added latency (ms).
        latency_ms: u64,
        /// Jitter (ms).
        jitter_ms: u64,
        /// Which links.
        #[serde(default)]
        links: LinkScope,
    },
    /// Per-chunk connection loss on links.
    #[serde(rename = "loss", alias = "link-loss")]
    LinkLoss {
        /// Probability a chunk drops its connection.
        probability: f64,
        /// Which links.
        #[serde(default)]
        links: LinkScope,
    },
    /// Throughput limit on links.
    #[serde(rename = "bandwidth")]
    LinkBandwidth {
        /// Bytes per second.
        bytes_per_sec: u64,
        /// Which links.
        #[serde(default)]
        links: LinkScope,
    },
    /// Links back to pass (partitions stay).
    ClearLinks,
    /// Change these nodes' clocks.
    Clock {
        /// How the nodes were chosen.
        target: Target,
        /// The nodes.
        nodes: Vec<String>,
        /// What happens to their clocks.
        action: ClockAction,
    },
    /// Every node's clock back to real time.
    ClockReset,
    /// Do this to these nodes' disks.
    Disk {
        /// How the nodes were chosen.
        target: Target,
        /// The nodes.
        nodes: Vec<String>,
        /// What happens.
        action: DiskAction,
    },
    /// Disks not full; nodes a disk fault killed restart.
    DiskHeal,
    /// Add a spare to the cluster: start it on an empty data directory,
    /// add it as a learner, wait until it has caught up, promote it.
    Grow {
        /// The spare.
        node: String,
        /// Ask for the change of voters with the network split along it
        /// (see [`Fault::Replace::split`]).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        split: bool,
    },
    /// Remove a voter, then stop it and wipe its data directory: a spare
    /// again.
    Shrink {
        /// The voter.
        node: String,
    },
    /// Grow by `add`, then shrink by `remove` (in one joint change where
    /// the system offers it).
    Replace {
        /// The spare that joins.
        add: String,
        /// The voter that leaves.
        remove: String,
        /// Ask for the change of voters with the network split along it:
        /// the leader and the joining node on one side, every other member
        /// on the other, for a moment (then healed). A correct system
        /// cannot complete the change there (the old voters' majority is on
        /// the far side) and elects a leader on the far side; one whose old
        /// and new majorities need not overlap ends up with two.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        split: bool,
    },
    /// Everything healthy: heal, restart, resume, clear links.
    Clear,
}

impl Fault {
    /// The same fault without a split (a membership change asked as is).
    pub fn unsplit(mut self) -> Fault {
        if let Fault::Grow { split, .. } | Fault::Replace { split, .. } = &mut self {
            *split = false;
        }
        self
    }

    /// The short name used in history events and the progress line.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Partition { .. } => "partition",
            Fault::Repartition { .. } => "repartition",
            Fault::Heal => "heal",
            Fault::Kill { .. } => "kill",
            Fault::Restart => "restart",
            Fault::Revive { .. } => "revive",
            Fault::Pause { .. } => "pause",
            Fault::Resume => "resume",
            Fault::LinkDelay { .. } => "delay",
            Fault::LinkLoss { .. } => "loss",
            Fault::LinkBandwidth { .. } => "bandwidth",
            Fault::ClearLinks => "clear-links",
            Fault::Clock { .. } => "clock",
            Fault::ClockReset => "clock-reset",
            Fault::Disk { .. } => "disk",
            Fault::DiskHeal => "disk-heal",
            Fault::Grow { .. } => "grow",
            Fault::Shrink { .. } => "shrink",
            Fault::Replace { .. } => "replace",
            Fault::Clear => "clear",
        }
    }

    /// Whether it changes the cluster's membership (the member nemesis's
    /// steps, carried out asynchronously: they wait on the system).
    pub fn changes_members(&self) -> bool {
        matches!(
            self,
            Fault::Grow { .. } | Fault::Shrink { .. } | Fault::Replace { .. }
        )
    }

    /// The kind this fault starts, if it starts one (from the table).
    pub fn starts(&self) -> Option<NemesisKind> {
        semantics(self.name()).0
    }

    /// A short description for the report, e.g. `partition isolate-leader`.
    pub fn label(&self) -> String {
        match self {
            Fault::Partition { shape, mode, .. } => match mode {
                CutMode::Blackhole => format!("partition {}", shape.name()),
                CutMode::Reject => format!("partition {} (reject)", shape.name()),
            },
            Fault::Repartition { shape, cut, .. } => {
                format!("repartition {} ({} links cut)", shape.name(), cut.len())
            }
            Fault::Kill { nodes, .. } => format!("kill {}", nodes.join(",")),
            Fault::Revive { nodes } => format!("revive {}", nodes.join(",")),
            Fault::Pause { nodes, .. } => format!("pause {}", nodes.join(",")),
            Fault::LinkDelay {
                latency_ms,
                jitter_ms,
                links,
            } => format!("delay {latency_ms}ms~{jitter_ms}ms {}", links.name()),
            Fault::LinkLoss { probability, links } => {
                format!("loss {}% {}", probability * 100.0, links.name())
            }
            Fault::LinkBandwidth {
                bytes_per_sec,
                links,
            } => format!("bandwidth {} B/s {}", bytes_per_sec, links.name()),
            Fault::Clock { nodes, action, .. } => {
                format!("clock {} {}", action.name(), nodes.join(","))
            }
            Fault::Disk { nodes, action, .. } => {
                format!("disk {} {}", action.name(), nodes.join(","))
            }
            Fault::Grow { node, split } => {
                format!(
                    "{} {node}{}",
                    self.name(),
                    if *split { " (split)" } else { "" }
                )
            }
            Fault::Shrink { node } => format!("{} {node}", self.name()),
            Fault::Replace { add, remove, split } => format!(
                "{} {remove} by {add}{}",
                self.name(),
                if *split { " (split)" } else { "" }
            ),
            other => other.name().to_string(),
        }
    }
}

/// The link-quality parameters of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Delay: mean added latency (ms).
    pub latency_ms: u64,
    /// Delay: jitter (ms).
    pub jitter_ms: u64,
    /// Loss: probability per chunk.
    pub probability: f64,
    /// Bandwidth: bytes per second.
    pub bytes_per_sec: u64,
    /// Which links.
    pub links: LinkScope,
}

/// `--nemesis` parsed: the kinds, and what each draws from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The kinds, in table order.
    pub kinds: Vec<NemesisKind>,
    /// Partition shapes.
    pub shapes: Vec<PartitionShape>,
    /// How a partition cuts links.
    pub cut: CutMode,
    /// Whom a kill hits.
    pub kill: Vec<Target>,
    /// Whom a pause hits.
    pub pause: Vec<Target>,
    /// Delay parameters.
    pub delay: Quality,
    /// Loss parameters.
    pub loss: Quality,
    /// Bandwidth parameters.
    pub bandwidth: Quality,
    /// Whose clocks a clock fault changes.
    #[serde(default = "all_targets")]
    pub clock: Vec<Target>,
    /// What clock faults do.
    #[serde(default = "all_clock_actions")]
    pub clock_actions: Vec<ClockAction>,
    /// Whose disks a disk fault hits (a corrupt action hits one node).
    #[serde(default = "quorum_targets")]
    pub disk: Vec<Target>,
    /// What disk faults do.
    #[serde(default = "all_disk_choices")]
    pub disk_actions: Vec<DiskChoice>,
    /// The membership steps the member nemesis draws from.
    #[serde(default = "all_member_steps")]
    pub member: Vec<MemberStep>,
    /// Scripted schedules, each in episodes of one attempt, taking turns;
    /// beside kinds, between stretches of their random faults. One script
    /// alone is the whole schedule. (Stored runs from before episodes have
    /// one `script`.)
    #[serde(
        default,
        alias = "script",
        deserialize_with = "script::one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub scripts: Vec<ScriptPlan>,
}

/// A power cut below a majority is, for a quorum system's durability, a
/// kill: by default the disk nemesis cuts a majority or all nodes.
fn quorum_targets() -> Vec<Target> {
    vec![Target::Majority, Target::All]
}

fn all_member_steps() -> Vec<MemberStep> {
    MemberStep::ALL.to_vec()
}

fn all_disk_choices() -> Vec<DiskChoice> {
    DiskChoice::DEFAULT.to_vec()
}

fn all_targets() -> Vec<Target> {
    Target::ALL.to_vec()
}

/// Every clock action with its default parameters.
fn all_clock_actions() -> Vec<ClockAction> {
    vec![
        ClockAction::Bump { ms: 5_000 },
        ClockAction::Bump { ms: -5_000 },
        ClockAction::Strobe {
            ms: 2_000,
            period_ms: 50,
        },
        ClockAction::Rate { rate: 2.0 },
        ClockAction::Rate { rate: 0.5 },
    ]
}

impl Default for Plan {
    fn default() -> Plan {
        let q = Quality {
            latency_ms: 50,
            jitter_ms: 10,
            probability: 0.05,
            bytes_per_sec: 64 * 1024,
            links: LinkScope::Peers,
        };
        Plan {
            kinds: Vec::new(),
            shapes: PartitionShape::ALL.to_vec(),
            cut: CutMode::Blackhole,
            kill: Target::ALL.to_vec(),
            pause: Target::ALL.to_vec(),
            delay: q,
            loss: q,
            bandwidth: q,
            clock: all_targets(),
            clock_actions: all_clock_actions(),
            disk: quorum_targets(),
            disk_actions: all_disk_choices(),
            member: all_member_steps(),
            scripts: Vec::new(),
        }
    }
}

impl Plan {
    /// Parses `--nemesis`: a comma list of kinds (`none` is the empty list,
    /// `all` every kind), each optionally followed by `:` and `+`-joined
    /// parameters (see [`KindInfo::variants`]), e.g.
    /// `partition:isolate-leader+reject,kill:majority+all,delay:100ms~20ms+clients`.
    /// `script:NAME[+DELAY]` names a scripted schedule ([`script::SCRIPTS`]):
    /// scripts take turns in episodes of one attempt, beside kinds between
    /// stretches of their random faults; one script alone is the whole
    /// schedule.
    pub fn parse(s: &str) -> Result<Plan, String> {
        let mut plan = Plan::default();
        let parts: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        for part in &parts {
            let part = *part;
            let (name, params) = match part.split_once(':') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (part, None),
            };
            if name == script::PREFIX {
                let script = ScriptPlan::parse(params.unwrap_or_default())?;
                if plan.scripts.iter().any(|s| s.kind == script.kind) {
                    return Err(format!("`{part}`: {} is named twice", script.kind));
                }
                plan.scripts.push(script);
                continue;
            }
            match name {
                "none" | "all" if params.is_some() => {
                    return Err(format!("`{part}`: {name} takes no parameters"));
                }
                "none" => continue,
                "all" => {
                    plan.kinds.extend(NemesisKind::all());
                    continue;
                }
                _ => {}
            }
            let Some(kind) = NemesisKind::by_name(name) else {
                let known: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
                return Err(format!(
                    "unknown nemesis `{name}`; known: {}, all, none, {}:NAME ({})",
                    known.join(", "),
                    script::PREFIX,
                    SCRIPTS
                        .iter()
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            plan.kinds.push(kind);
            if let Some(params) = params {
                plan.set_params(kind, params)?;
            }
        }
        plan.kinds.sort();
        plan.kinds.dedup();
        if !plan.scripts.is_empty() && plan.kinds.contains(&NemesisKind::Member) {
            return Err(format!(
                "`{s}`: a script follows a fixed set of nodes, so it cannot run beside `{}`",
                NemesisKind::Member.name()
            ));
        }
        Ok(plan)
    }

    fn set_params(&mut self, kind: NemesisKind, params: &str) -> Result<(), String> {
        let bad = |p: &str| {
            format!(
                "unknown {kind} variant `{p}`; known: {}",
                kind.info().variants
            )
        };
        let tokens: Vec<&str> = params.split('+').map(str::trim).collect();
        if tokens.iter().any(|t| t.is_empty()) {
            return Err(format!("`{kind}:{params}`: an empty parameter"));
        }
        match kind {
            NemesisKind::Partition => {
                let mut shapes = Vec::new();
                for t in tokens {
                    match t {
                        "reject" => self.cut = CutMode::Reject,
                        "blackhole" => self.cut = CutMode::Blackhole,
                        _ => match PartitionShape::ALL.iter().find(|s| s.name() == t) {
                            Some(s) if !shapes.contains(s) => shapes.push(*s),
                            Some(_) => {}
                            None => return Err(bad(t)),
                        },
                    }
                }
                if !shapes.is_empty() {
                    shapes.sort_by_key(|x| PartitionShape::ALL.iter().position(|y| y == x));
                    self.shapes = shapes;
                }
            }
            NemesisKind::Disk => {
                let mut targets = Vec::new();
                let mut actions = Vec::new();
                for t in &tokens {
                    if let Some(x) = Target::ALL.iter().find(|x| x.name() == *t) {
                        if !targets.contains(x) {
                            targets.push(*x);
                        }
                    } else if let Some(c) = DiskChoice::ALL.iter().find(|c| c.name() == *t) {
                        if !actions.contains(c) {
                            actions.push(*c);
                        }
                    } else {
                        return Err(bad(t));
                    }
                }
                if !targets.is_empty() {
                    targets.sort_by_key(|x| Target::ALL.iter().position(|y| y == x));
                    self.disk = targets;
                }
                if !actions.is_empty() {
                    self.disk_actions = actions;
                }
            }
            NemesisKind::Clock => {
                let mut targets = Vec::new();
                let mut actions = Vec::new();
                let mut bump_ms = 5_000i64;
                for t in &tokens {
                    if let Some(x) = Target::ALL.iter().find(|x| x.name() == *t) {
                        if !targets.contains(x) {
                            targets.push(*x);
                        }
                    } else if let Some(ms) = parse_ms(t) {
                        if !(1..=3_600_000).contains(&ms) {
                            return Err(format!("`clock:{t}`: allowed 1ms to 3600s"));
                        }
                        bump_ms = ms as i64;
                    } else if !["bump", "strobe", "fast", "slow"].contains(t) {
                        return Err(bad(t));
                    }
                }
                for t in &tokens {
                    match *t {
                        "bump" => {
                            actions.push(ClockAction::Bump { ms: bump_ms });
                            actions.push(ClockAction::Bump { ms: -bump_ms });
                        }
                        "strobe" => actions.push(ClockAction::Strobe {
                            ms: bump_ms,
                            period_ms: 50,
                        }),
                        "fast" => actions.push(ClockAction::Rate { rate: 2.0 }),
                        "slow" => actions.push(ClockAction::Rate { rate: 0.5 }),
                        _ => {}
                    }
                }
                if !targets.is_empty() {
                    targets.sort_by_key(|x| Target::ALL.iter().position(|y| y == x));
                    self.clock = targets;
                }
                if !actions.is_empty() {
                    self.clock_actions = actions;
                } else if tokens.iter().any(|t| parse_ms(t).is_some()) {
                    self.clock_actions = vec![
                        ClockAction::Bump { ms: bump_ms },
                        ClockAction::Bump { ms: -bump_ms },
                        ClockAction::Strobe {
                            ms: bump_ms,
                            period_ms: 50,
                        },
                    ];
                }
            }
            NemesisKind::Member => {
                let mut steps = Vec::new();
                for t in tokens {
                    match MemberStep::ALL.iter().find(|x| x.name() == t) {
                        Some(x) if !steps.contains(x) => steps.push(*x),
                        Some(_) => {}
                        None => return Err(bad(t)),
                    }
                }
                steps.sort_by_key(|x| MemberStep::ALL.iter().position(|y| y == x));
                self.member = steps;
            }
            NemesisKind::Kill | NemesisKind::Pause => {
                let mut out = Vec::new();
                for t in tokens {
                    match Target::ALL.iter().find(|x| x.name() == t) {
                        Some(x) if !out.contains(x) => out.push(*x),
                        Some(_) => {}
                        None => return Err(bad(t)),
                    }
                }
                out.sort_by_key(|x| Target::ALL.iter().position(|y| y == x));
                if kind == NemesisKind::Kill {
                    self.kill = out;
                } else {
                    self.pause = out;
                }
            }
            NemesisKind::Delay | NemesisKind::Loss | NemesisKind::Bandwidth => {
                let mut q = match kind {
                    NemesisKind::Delay => self.delay,
                    NemesisKind::Loss => self.loss,
                    _ => self.bandwidth,
                };
                for t in tokens {
                    match t {
                        "peers" => q.links = LinkScope::Peers,
                        "clients" => q.links = LinkScope::Clients,
                        "all-links" => q.links = LinkScope::AllLinks,
                        _ => match kind {
                            NemesisKind::Delay => {
                                let (lat, jit) = match t.split_once('~') {
                                    Some((a, b)) => (a, Some(b)),
                                    None => (t, None),
                                };
                                q.latency_ms = parse_ms(lat).ok_or_else(|| bad(t))?;
                                q.jitter_ms = match jit {
                                    Some(j) => parse_ms(j).ok_or_else(|| bad(t))?,
                                    None => q.latency_ms / 5,
                                };
                                if q.latency_ms > 60_000 || q.jitter_ms > q.latency_ms {
                                    return Err(format!(
                                        "`delay:{t}`: allowed up to 60s, jitter at most the latency"
                                    ));
                                }
                            }
                            NemesisKind::Loss => {
                                let p = t
                                    .strip_suffix('%')
                                    .and_then(|x| x.parse::<f64>().ok())
                                    .ok_or_else(|| bad(t))?;
                                if !(p > 0.0 && p <= 100.0) {
                                    return Err(format!("`loss:{t}`: allowed above 0% up to 100%"));
                                }
                                q.probability = p / 100.0;
                            }
                            _ => {
                                let b = parse_size(t).ok_or_else(|| bad(t))?;
                                if b == 0 {
                                    return Err(format!("`bandwidth:{t}`: must be above 0"));
                                }
                                q.bytes_per_sec = b;
                            }
                        },
                    }
                }
                match kind {
                    NemesisKind::Delay => self.delay = q,
                    NemesisKind::Loss => self.loss = q,
                    _ => self.bandwidth = q,
                }
            }
        }
        Ok(())
    }

    /// Whether some kind faults client links, so clients must go through proxies.
    pub fn faults_client_links(&self) -> bool {
        self.kinds.iter().any(|k| match k {
            NemesisKind::Delay => self.delay.links.clients(),
            NemesisKind::Loss => self.loss.links.clients(),
            NemesisKind::Bandwidth => self.bandwidth.links.clients(),
            _ => false,
        })
    }

    /// Whether any fault will be injected (kinds, or a script).
    pub fn any(&self) -> bool {
        !self.kinds.is_empty() || !self.scripts.is_empty()
    }

    /// `partition,kill,pause`, `script:NAME+DELAY`, both
    /// (`partition,script:vote-loss+50ms`), or `none`.
    pub fn names(&self) -> String {
        let mut names: Vec<String> = self.kinds.iter().map(|k| k.name().to_string()).collect();
        names.extend(self.scripts.iter().map(ScriptPlan::arg));
        if names.is_empty() {
            return "none".to_string();
        }
        names.join(",")
    }
}

/// `100ms`, `1.5s` or `2s` in milliseconds.
fn parse_ms(t: &str) -> Option<u64> {
    let (num, scale) = if let Some(x) = t.strip_suffix("ms") {
        (x, 1.0)
    } else if let Some(x) = t.strip_suffix('s') {
        (x, 1000.0)
    } else {
        return None;
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| (v * scale).round() as u64)
}

/// `64KiB`, `1MiB`, `500B` (optionally with `/s`) in bytes.
fn parse_size(t: &str) -> Option<u64> {
    let t = t.strip_suffix("/s").unwrap_or(t);
    let units = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("KB", 1_000),
        ("kB", 1_000),
        ("B", 1),
    ];
    let (num, scale) = units
        .iter()
        .find_map(|(u, s)| t.strip_suffix(u).map(|n| (n, *s)))?;
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| (v * scale as f64).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_semantics_come_from_the_table() {
        for k in NemesisKind::all() {
            assert_eq!(NemesisKind::by_name(k.name()), Some(k));
            if k.instant() {
                // Steps only: each is a window of its own.
                assert!(k.info().end.is_empty() && !k.info().steps.is_empty());
                for step in k.info().steps {
                    assert_eq!(instant_step(step), Some(k));
                    assert_eq!(semantics(step), (None, vec![]));
                }
                continue;
            }
            assert_eq!(semantics(k.info().start).0, Some(k));
            assert!(semantics(k.info().end).1.contains(&k));
            assert_eq!(instant_step(k.info().start), None);
        }
        assert_eq!(semantics(""), (None, vec![]));
        for (f, label) in [
            (
                Fault::Grow {
                    node: "n4".into(),
                    split: false,
                },
                "grow n4",
            ),
            (Fault::Shrink { node: "n2".into() }, "shrink n2"),
            (
                Fault::Replace {
                    add: "n5".into(),
                    remove: "n1".into(),
                    split: false,
                },
                "replace n1 by n5",
            ),
        ] {
            assert_eq!(f.label(), label);
            assert_eq!(instant_step(f.name()), Some(NemesisKind::Member));
            let json = serde_json::to_string(&f).expect("json");
            assert_eq!(serde_json::from_str::<Fault>(&json).expect("back"), f);
        }
        assert_eq!(semantics("clear").1.len(), KINDS.len());
        assert_eq!(semantics("link-delay").0, Some(NemesisKind::Delay));
        assert_eq!(semantics("clear-links").1.len(), 3);
        assert_eq!(semantics("flood"), (None, vec![]));
        let f = Fault::LinkBandwidth {
            bytes_per_sec: 1,
            links: LinkScope::Peers,
        };
        assert_eq!(f.starts(), Some(NemesisKind::Bandwidth));
        let json = serde_json::to_value(&f).expect("json");
        assert_eq!(json["f"], "bandwidth");
        let old: Fault = serde_json::from_str(r#"{"f":"link-delay","latency_ms":5,"jitter_ms":1}"#)
            .expect("old");
        assert_eq!(old.name(), "delay");
        // A script's finer steps belong to a kind without starting or
        // ending it, and read back as they were written.
        for step in [
            Fault::Repartition {
                shape: PartitionShape::Scripted,
                cut: vec![["n1".into(), "n2".into()]],
                mode: CutMode::Blackhole,
            },
            Fault::Revive {
                nodes: vec!["n3".into()],
            },
        ] {
            assert!(KINDS.iter().any(|k| k.steps.contains(&step.name())));
            assert_eq!(semantics(step.name()), (None, vec![]));
            let json = serde_json::to_string(&step).expect("json");
            assert_eq!(serde_json::from_str::<Fault>(&json).expect("back"), step);
        }
    }

    #[test]
    fn a_script_is_named_alone() {
        let p = Plan::parse("script:figure-8").expect("ok");
        assert!(p.kinds.is_empty() && p.any());
        let kinds: Vec<ScriptKind> = p.scripts.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [ScriptKind::Figure8]);
        assert_eq!(p.names(), "script:figure-8+40ms");
        assert!(!Plan::parse("none").expect("ok").any());
        // Beside kinds, a script runs in episodes between their faults.
        let p = Plan::parse("kill,script:vote-loss").expect("episodes");
        assert_eq!(p.kinds, vec![NemesisKind::Kill]);
        assert_eq!(p.names(), "kill,script:vote-loss+50ms");
        assert_eq!(Plan::parse(&p.names()).expect("spells back"), p);
        let p = Plan::parse("script:vote-loss,partition,script:figure-8").expect("two");
        assert_eq!(
            p.names(),
            "partition,script:vote-loss+50ms,script:figure-8+40ms"
        );
        let e = Plan::parse("script:vote-loss,script:vote-loss+20ms").expect_err("twice");
        assert!(e.contains("named twice"), "{e}");
        let e = Plan::parse("member,script:vote-loss").expect_err("members move");
        assert!(e.contains("fixed set of nodes"), "{e}");
        let e = Plan::parse("flood").expect_err("unknown");
        assert!(e.contains("script:NAME (vote-loss, figure-8)"), "{e}");
        // Settings stored before scripts existed still read, and those
        // stored with one `script` before episodes.
        let mut v = serde_json::to_value(Plan::parse("kill").expect("ok")).expect("json");
        v.as_object_mut().expect("object").remove("scripts");
        assert!(
            serde_json::from_value::<Plan>(v.clone())
                .expect("old plan")
                .scripts
                .is_empty()
        );
        v["script"] = serde_json::json!({"kind": "vote-loss", "delay_ms": 80});
        let old = serde_json::from_value::<Plan>(v).expect("one script");
        assert_eq!(old.names(), "kill,script:vote-loss+80ms");
    }

    #[test]
    fn parse_lists_known_names_and_rejects_others() {
        let p = Plan::parse("partition,kill,pause").expect("ok");
        assert_eq!(
            p.kinds,
            vec![
                NemesisKind::Partition,
                NemesisKind::Kill,
                NemesisKind::Pause
            ]
        );
        assert!(Plan::parse("none").expect("ok").kinds.is_empty());
        assert_eq!(Plan::parse("all").expect("ok").kinds.len(), KINDS.len());
        let e = Plan::parse("partition,flood").expect_err("unknown");
        assert!(
            e.contains("flood") && e.contains("partition, kill, pause"),
            "{e}"
        );
    }

    #[test]
    fn parameters_set_what_each_kind_draws() {
        let p = Plan::parse(
            "partition:isolate-leader+reject, kill:all+majority, delay:100ms~20ms+clients, \
             loss:20%, bandwidth:1MiB",
        )
        .expect("ok");
        assert_eq!(p.shapes, vec![PartitionShape::IsolateLeader]);
        assert_eq!(p.cut, CutMode::Reject);
        assert_eq!(p.kill, vec![Target::Majority, Target::All]);
        assert_eq!(p.pause, Target::ALL.to_vec());
        assert_eq!((p.delay.latency_ms, p.delay.jitter_ms), (100, 20));
        assert_eq!(p.delay.links, LinkScope::Clients);
        assert!(p.faults_client_links());
        assert!((p.loss.probability - 0.2).abs() < 1e-9);
        assert_eq!(p.bandwidth.bytes_per_sec, 1 << 20);
        assert_eq!(
            Plan::parse("delay:1.5s").expect("ok").delay.latency_ms,
            1500
        );
        let m = Plan::parse("member:replace+grow").expect("ok");
        assert_eq!(m.member, vec![MemberStep::Grow, MemberStep::Replace]);
        assert_eq!(Plan::parse("member").expect("ok").member.len(), 3);
        for (bad, says) in [
            ("partition:halfs", "unknown partition variant `halfs`"),
            (
                "kill:everyone",
                "known: targets one, minority, majority, leader, all",
            ),
            ("delay:50", "unknown delay variant `50`"),
            ("delay:10ms~20ms", "jitter at most the latency"),
            ("loss:0%", "above 0%"),
            ("loss:5", "unknown loss variant"),
            ("bandwidth:fast", "unknown bandwidth variant"),
            ("kill:", "an empty parameter"),
            ("member:grow+split", "unknown member variant `split`"),
            ("all:x", "takes no parameters"),
        ] {
            let e = Plan::parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}

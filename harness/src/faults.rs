//! Faults during a run: the nemesis loop asks the [`Scheduler`] for the
//! next fault every interval, or the script loop feeds a scripted schedule
//! what it polls (every node's leader probe, the history as it grows) and
//! takes the faults it asks for; [`FaultLog::apply`] carries each out on
//! the cluster, recording it in the history (as `process: nemesis` events)
//! and in `nemesis.jsonl`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faultline_history::{EventType, Process};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::nemesis::script::{self, Observation, Probe, Seen, Step};
use crate::nemesis::{Fault, NemesisKind, Plan, Scheduler, ScriptPlan, View, semantics};
use crate::recorder::{Entry, Recorder};
use crate::store::{NemesisLine, NemesisLog, SCHEMA};
use crate::supervisor::ProcState;
use crate::sut::membership::MemberView;

/// Carries out faults and records them.
pub struct FaultLog {
    /// The cluster faults act on.
    pub cluster: Arc<Cluster>,
    recorder: Arc<Recorder>,
    log: NemesisLog,
    active: Mutex<Vec<NemesisKind>>,
    counts: Mutex<BTreeMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FaultLog {
    /// A log for faults on `cluster`, recorded in `recorder` and `log`.
    pub fn new(cluster: Arc<Cluster>, recorder: Arc<Recorder>, log: NemesisLog) -> FaultLog {
        FaultLog {
            cluster,
            recorder,
            log,
            active: Mutex::new(Vec::new()),
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    /// Carries out `fault` (not a membership change: see
    /// [`FaultLog::apply_members`]), recording its start and end in the
    /// history and a line in `nemesis.jsonl`. Whether it was carried out.
    pub fn apply(&self, fault: &Fault) -> bool {
        let inv = self.invoke(fault);
        let outcome = self.cluster.apply(fault);
        self.complete(fault, inv, outcome, None)
    }

    /// Carries out a membership change and records it like
    /// [`FaultLog::apply`], with the configuration it left.
    pub async fn apply_members(&self, fault: &Fault) -> bool {
        let inv = self.invoke(fault);
        let (outcome, members) = self.cluster.change_members(fault).await;
        self.complete(fault, inv, outcome, members)
    }

    fn invoke(&self, fault: &Fault) -> faultline_history::Event {
        self.recorder.record(Entry {
            process: Process::Nemesis,
            kind: EventType::Invoke,
            f: fault.name().to_string(),
            key: None,
            value: serde_json::to_value(fault).unwrap_or(Value::Null),
            error: None,
            node: None,
        })
    }

    fn complete(
        &self,
        fault: &Fault,
        inv: faultline_history::Event,
        outcome: anyhow::Result<String>,
        members: Option<MemberView>,
    ) -> bool {
        let ok = outcome.is_ok();
        let (result, error) = match outcome {
            Ok(r) => (r, None),
            Err(e) => (format!("error: {e:#}"), Some(format!("{e:#}"))),
        };
        let done = self.recorder.record(Entry {
            process: Process::Nemesis,
            kind: EventType::Info,
            f: fault.name().to_string(),
            key: None,
            value: json!(result),
            error,
            node: None,
        });
        let (table_starts, table_ends) = semantics(fault.name());
        let (starts, ends) = {
            let mut active = lock(&self.active);
            // Only kinds that were active end (a `clear` after everything
            // ended ends nothing).
            let ends: Vec<NemesisKind> = table_ends
                .into_iter()
                .filter(|k| active.contains(k))
                .collect();
            active.retain(|k| !ends.contains(k));
            // A fault of a kind already active (a script's second kill)
            // extends that kind's window rather than opening another.
            let starts = table_starts.filter(|k| !active.contains(k));
            if let Some(k) = starts {
                active.push(k);
            }
            (starts, ends)
        };
        self.log.append(&NemesisLine {
            schema: SCHEMA,
            time: inv.time,
            done: done.time,
            fault: fault.clone(),
            starts,
            ends,
            result,
            members,
        });
        *lock(&self.counts)
            .entry(fault.name().to_string())
            .or_default() += 1;
        ok
    }

    /// The history this log records into.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// Records what a scripted schedule saw or decided, as a nemesis `info`
    /// event (no fault: it starts and ends nothing).
    pub fn note(&self, script: &str, text: &str) {
        self.recorder.record(Entry {
            process: Process::Nemesis,
            kind: EventType::Info,
            f: script::PREFIX.to_string(),
            key: None,
            value: json!({ "script": script, "note": text }),
            error: None,
            node: None,
        });
    }

    /// The kinds active now, oldest first.
    pub fn active(&self) -> Vec<NemesisKind> {
        lock(&self.active).clone()
    }

    /// Faults carried out so far, by name.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        lock(&self.counts).clone()
    }
}

/// The run's faults until `stop`: every `interval` the next fault of the
/// seeded schedule; or one scripted schedule, alone; or scripted episodes
/// (one attempt each, the scripts taking turns) between stretches of
/// random faults, an episode first (a fresh cluster is the settled one a
/// script starts from). Then the faults that end whatever is still active.
pub async fn nemesis_loop(
    faults: Arc<FaultLog>,
    seed: u64,
    plan: Plan,
    interval: Duration,
    stop: CancellationToken,
) {
    let cluster = &faults.cluster;
    let mut scripts: Vec<Scripted> = plan
        .scripts
        .iter()
        .map(|p| Scripted::new(&faults, p, seed))
        .collect();
    let mut sched = (!plan.kinds.is_empty())
        .then(|| Scheduler::new(seed, plan).with_max_voters(cluster.ids().len()));
    match (&mut sched, scripts.as_mut_slice()) {
        (None, []) => return,
        (None, [one]) => one.run(&faults, &stop, None).await,
        (Some(sched), []) => random_faults(&faults, sched, interval, &stop, None).await,
        (sched, several) => {
            let stretch = (interval * 5).clamp(STRETCH_MIN, STRETCH_MAX);
            for turn in (0..several.len()).cycle() {
                if stop.is_cancelled() {
                    break;
                }
                several[turn].run(&faults, &stop, Some(EPISODE_MAX)).await;
                if let Some(sched) = sched.as_mut()
                    && !stop.is_cancelled()
                {
                    random_faults(&faults, sched, interval, &stop, Some(stretch)).await;
                    heal(&faults, sched).await;
                }
            }
        }
    }
    // What a script still has active is left to the run's final `Clear`.
    if let Some(sched) = &mut sched {
        heal(&faults, sched).await;
    }
}

/// The shortest and longest stretch of random faults between two scripted
/// episodes (five nemesis intervals within these bounds).
const STRETCH_MIN: Duration = Duration::from_secs(4);
const STRETCH_MAX: Duration = Duration::from_secs(10);
/// The longest a scripted episode runs (settling, then one attempt) before
/// it is ended, whatever it reached.
const EPISODE_MAX: Duration = Duration::from_secs(20);

/// Every `interval`, the next fault of the seeded schedule, until `stop`
/// or for `within`.
async fn random_faults(
    faults: &Arc<FaultLog>,
    sched: &mut Scheduler,
    interval: Duration,
    stop: &CancellationToken,
    within: Option<Duration>,
) {
    let cluster = &faults.cluster;
    let until = within.map(|w| Instant::now() + w);
    let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
    // A step that took longer than the interval (a membership change waits
    // on the system for seconds) must not be followed by a burst of the
    // ticks it missed: faults one after another within a millisecond
    // neither take effect nor let the system react between them.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = async {
                match until {
                    Some(u) => tokio::time::sleep_until(u).await,
                    None => std::future::pending().await,
                }
            } => break,
            _ = tick.tick() => {}
        }
        let view = View {
            ids: cluster.members(),
            leader: cluster.leader().await,
            voters: cluster.voters(),
            spares: cluster.spares(),
            down: cluster.down(),
        };
        if stop.is_cancelled() {
            break;
        }
        let Some(fault) = sched.next(&view) else {
            continue;
        };
        let ok = apply_blocking(faults, fault.clone()).await;
        sched.outcome(&fault, ok);
    }
}

/// Ends every fault the schedule has active.
async fn heal(faults: &Arc<FaultLog>, sched: &mut Scheduler) {
    for fault in sched.heal_all() {
        if fault != Fault::Clear {
            // The run's own Clear follows.
            apply_blocking(faults, fault).await;
        }
    }
}

/// Carries out a fault: killing and starting processes blocks briefly, so
/// off the async workers; a membership change waits on the system. Whether
/// it was carried out.
pub async fn apply_blocking(faults: &Arc<FaultLog>, fault: Fault) -> bool {
    if fault.changes_members() {
        return faults.apply_members(&fault).await;
    }
    let f = faults.clone();
    tokio::task::spawn_blocking(move || f.apply(&fault))
        .await
        .unwrap_or(false)
}

/// How long one poll of a node's leader probe may take: a node that does
/// not answer by then counts as silent for this observation.
const PROBE_WITHIN: Duration = Duration::from_millis(250);

/// A scripted schedule and what it has read of the history.
struct Scripted {
    script: Box<dyn script::Script>,
    name: &'static str,
    seen: usize,
}

impl Scripted {
    fn new(faults: &FaultLog, plan: &ScriptPlan, seed: u64) -> Scripted {
        Scripted {
            script: script::build(
                plan,
                faults.cluster.members(),
                crate::cluster::PEER_CONNECT_PATIENCE,
                seed,
            ),
            name: plan.kind.name(),
            seen: 0,
        }
    }

    /// Every few milliseconds (as the script asks) polls every running
    /// node's leader probe, takes the history recorded since, lets the
    /// script decide, and carries out the faults it returns, in order;
    /// until `stop`, or, for an episode, until one attempt has ended or
    /// `episode` has passed (the attempt is then ended and healed).
    async fn run(
        &mut self,
        faults: &Arc<FaultLog>,
        stop: &CancellationToken,
        episode: Option<Duration>,
    ) {
        let cluster = faults.cluster.clone();
        let recorder = faults.recorder().clone();
        let until = episode.map(|e| Instant::now() + e);
        let mut applied_ns = None;
        let mut started = false;
        while !stop.is_cancelled() {
            if until.is_some_and(|u| Instant::now() >= u) {
                let step = self.script.abandon(recorder.now_ns());
                carry_out(faults, stop, self.name, step).await;
                return;
            }
            let nodes = observe(&cluster).await;
            let events = recorder.events_since(self.seen);
            self.seen += events.len();
            let step = self.script.step(&Observation {
                now_ns: recorder.now_ns(),
                applied_ns: applied_ns.take(),
                nodes: &nodes,
                events: &events,
            });
            let next = step.next_ms;
            if carry_out(faults, stop, self.name, step).await {
                applied_ns = Some(recorder.now_ns());
            }
            started |= self.script.attempting();
            if episode.is_some() && started && !self.script.attempting() {
                return;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(next.max(1))) => {}
            }
        }
    }
}

/// Records a script's step's notes and carries out its faults (unless the
/// run stops first); whether it had any.
async fn carry_out(
    faults: &Arc<FaultLog>,
    stop: &CancellationToken,
    name: &'static str,
    step: Step,
) -> bool {
    for note in &step.notes {
        faults.note(name, note);
    }
    for fault in step.faults.iter().cloned() {
        if stop.is_cancelled() {
            break;
        }
        apply_blocking(faults, fault).await;
    }
    !step.faults.is_empty()
}

/// Every node as a script sees it: whether its process runs, and its leader
/// probe (polled concurrently, running nodes only: a paused node would
/// only time out).
async fn observe(cluster: &Cluster) -> Vec<Seen> {
    let ids = cluster.members();
    let polls = ids.iter().map(|id| async move {
        let up = cluster.supervisor.state(id).ok() == Some(ProcState::Running);
        let status = if up {
            tokio::time::timeout(PROBE_WITHIN, cluster.status(id))
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        Seen {
            id: id.clone(),
            up,
            probe: status.map(|s| Probe {
                leads: s.leads(),
                term: s.term,
                leader: s.leader,
            }),
        }
    });
    futures::future::join_all(polls).await
}

//! Faults during a run: the nemesis loop asks the [`Scheduler`] for the
//! next fault every interval and [`FaultLog::apply`] carries it out on the
//! cluster, recording it in the history (as `process: nemesis` events) and
//! in `nemesis.jsonl`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faultline_history::{EventType, Process};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::nemesis::{Fault, NemesisKind, Plan, Scheduler, View, semantics};
use crate::recorder::{Entry, Recorder};
use crate::store::{NemesisLine, NemesisLog, SCHEMA};

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

    /// Carries out `fault`, recording its start and end in the history and
    /// a line in `nemesis.jsonl`.
    pub fn apply(&self, fault: &Fault) {
        let inv = self.recorder.record(Entry {
            process: Process::Nemesis,
            kind: EventType::Invoke,
            f: fault.name().to_string(),
            key: None,
            value: serde_json::to_value(fault).unwrap_or(Value::Null),
            error: None,
            node: None,
        });
        let (result, error) = match self.cluster.apply(fault) {
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
        let (starts, table_ends) = semantics(fault.name());
        // Only kinds that were active end (a `clear` after everything ended
        // ends nothing).
        let ends = {
            let mut active = lock(&self.active);
            let ends: Vec<NemesisKind> = table_ends
                .into_iter()
                .filter(|k| active.contains(k))
                .collect();
            active.retain(|k| !ends.contains(k));
            if let Some(k) = starts {
                active.push(k);
            }
            ends
        };
        self.log.append(&NemesisLine {
            schema: SCHEMA,
            time: inv.time,
            done: done.time,
            fault: fault.clone(),
            starts,
            ends,
            result,
        });
        *lock(&self.counts)
            .entry(fault.name().to_string())
            .or_default() += 1;
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

/// Every `interval`, the next fault of the seeded schedule, until `stop`;
/// then the faults that end whatever is still active.
pub async fn nemesis_loop(
    faults: Arc<FaultLog>,
    seed: u64,
    plan: Plan,
    interval: Duration,
    stop: CancellationToken,
) {
    if plan.kinds.is_empty() {
        return;
    }
    let mut sched = Scheduler::new(seed, plan);
    let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let view = View {
            ids: faults.cluster.ids(),
            leader: faults.cluster.leader().await,
        };
        if stop.is_cancelled() {
            break;
        }
        let Some(fault) = sched.next(&view) else {
            break;
        };
        apply_blocking(&faults, fault).await;
    }
    for fault in sched.heal_all() {
        if fault != Fault::Clear {
            // The run's own Clear follows.
            apply_blocking(&faults, fault).await;
        }
    }
}

/// Killing and starting processes blocks briefly: off the async workers.
pub async fn apply_blocking(faults: &Arc<FaultLog>, fault: Fault) {
    let f = faults.clone();
    let _ = tokio::task::spawn_blocking(move || f.apply(&fault)).await;
}

//! `faultline run`, top to bottom: set up (run folder, cluster, readiness),
//! traffic (clients and the nemesis), heal, final reads, check, store.
//! Each step is a call into the module named for it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use faultline_checkers::Verdict;
use faultline_workloads::Workload;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::{Cluster, ClusterConfig, ClusterPaths};
use crate::exit::Exit;
use crate::faults::FaultLog;
use crate::nemesis::NemesisKind;
use crate::recorder::Recorder;
use crate::settings::{RunArgs, Settings};
use crate::store::{Config, Results, RunDir, SCHEMA, SystemInfo, Versions};
use crate::summary::Summary;
use crate::sut::{Db, SpecSource};
use crate::{stats, traffic, verdict};

/// What a finished (or interrupted) run produced.
pub struct RunOutcome {
    /// The run's folder.
    pub dir: std::path::PathBuf,
    /// How it ended.
    pub exit: Exit,
}

/// Runs `faultline run` to the end. Usage errors come back as `Err`
/// holding a [`UsageError`](crate::exit::UsageError).
pub fn run(args: &RunArgs) -> Result<RunOutcome> {
    let (settings, workload, db) = args.validate()?;
    crate::supervisor::install_panic_hook();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(settings, Arc::from(workload), Arc::new(db)))
}

/// What the cluster part of a run left behind.
struct Ran {
    traffic_s: f64,
    latencies: Option<hdrhistogram::Histogram<u64>>,
    final_reads: Option<(usize, usize)>,
    node_exits: Vec<crate::store::NodeExit>,
    client_restarts: u64,
    faults: std::collections::BTreeMap<String, u64>,
    fatal: Option<String>,
}

async fn run_async(
    settings: Settings,
    workload: Arc<dyn Workload>,
    db: Arc<Db>,
) -> Result<RunOutcome> {
    let t0 = Instant::now();
    // Set up: the run folder and its config.
    let dir = RunDir::create(&settings.store, &settings.workload)?;
    dir.write_config(&Config {
        schema: SCHEMA,
        settings: settings.clone(),
        seed: settings.seed,
        system: SystemInfo {
            name: db.name().to_string(),
            spec: match &db.source {
                SpecSource::BuiltIn(n) => format!("built-in: {n}"),
                SpecSource::File(p) => p.display().to_string(),
            },
            protocol: db.spec.client.protocol.clone(),
        },
        versions: Versions::current(),
        started_unix_ms: crate::store::unix_ms(),
        command_line: std::env::args().collect(),
    })?;
    eprintln!(
        "faultline: {} on {} × {} for {} s, nemesis {}, seed {} → {}",
        settings.workload,
        settings.nodes,
        db.name(),
        settings.time_limit_s,
        settings.nemesis.names(),
        settings.seed,
        dir.path().display()
    );
    eprintln!(
        "faultline: seed {} drew: {}",
        settings.seed,
        crate::settings::describe_drawn(&settings)
    );
    let interrupt = traffic::watch_signals();
    let recorder = Arc::new(Recorder::create(&dir.history(), t0.into_std())?);
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let ran = cluster_phase(
        &settings, &workload, &db, &dir, &recorder, &interrupt, &cancel, &tracker,
    )
    .await;
    cancel.cancel();
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
    let history_ok = recorder.finish();

    // Check.
    let wall = t0.elapsed();
    let events = recorder.events();
    let (ran, harness_error) = match ran {
        Ok(r) => {
            let fatal = r.fatal.clone();
            (Some(r), fatal)
        }
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let interrupted = interrupt.is_cancelled();
    let mut judgement = verdict::judge(workload.as_ref(), &events);
    verdict::require_final_reads(&mut judgement, ran.as_ref().and_then(|r| r.final_reads));
    let clock = crate::nemesis::NemesisKind::Clock.info().start;
    let clock_faults = ran.as_ref().and_then(|r| r.faults.get(clock).copied());
    verdict::note_lease_assumption(
        &mut judgement,
        settings.read_mode == crate::sut::ReadMode::Lease,
        clock_faults.unwrap_or(0),
    );
    let mut exit = match (&harness_error, &judgement.verdict) {
        (_, Verdict::Invalid { .. }) => Exit::Invalid,
        (Some(_), _) => Exit::Error,
        (None, Verdict::Valid) if interrupted => Exit::Unknown,
        (None, v) => Exit::of(v),
    };
    if let Err(e) = &history_ok {
        eprintln!("faultline: {e:#}");
        if exit == Exit::Valid {
            exit = Exit::Error;
        }
    }

    // Store.
    let latency_ms = ran
        .as_ref()
        .and_then(|r| r.latencies.as_ref())
        .and_then(stats::quantiles);
    let ops = stats::op_counts(&events);
    let traffic_s = ran.as_ref().map_or(0.0, |r| r.traffic_s);
    let results = Results {
        schema: SCHEMA,
        // What the run may conclude: a valid history from a run whose
        // harness or cluster failed (or that was stopped) proves nothing.
        verdict: match exit {
            Exit::Valid | Exit::Invalid => judgement.verdict.name(),
            _ => "unknown",
        }
        .to_string(),
        exit_code: exit.code(),
        interrupted,
        harness_error,
        seed: settings.seed,
        checker: judgement.detail.clone(),
        throughput_ok_per_s: if traffic_s > 0.0 {
            ops.ok as f64 / traffic_s
        } else {
            0.0
        },
        ops,
        latency_ms,
        faults: ran.as_ref().map(|r| r.faults.clone()).unwrap_or_default(),
        node_exits_unasked: ran
            .as_ref()
            .map(|r| r.node_exits.clone())
            .unwrap_or_default(),
        client_restarts: ran.as_ref().map_or(0, |r| r.client_restarts),
        wall_time_s: wall.as_secs_f64(),
        coverage: crate::coverage::count(&db, &dir.nodes()).unwrap_or_else(|e| {
            eprintln!("faultline: coverage not counted: {e:#}");
            Default::default()
        }),
        latency: None,
        availability: None,
        membership: (dir.read_nemesis().ok().flatten())
            .and_then(|l| crate::store::MembershipRecord::of(&l, settings.nodes)),
    };
    dir.write_results(&results)?;
    // The report reads what was just stored; a failure to draw it must not
    // hide the verdict, so it becomes a line of the summary instead.
    let report_lines = match crate::report::write_report(dir.path()) {
        Ok(summary) => summary.summary_lines(),
        Err(e) => vec![format!(
            "  report    not written: {e:#} (retry with `faultline report {}`)",
            dir.path().display()
        )],
    };
    Summary {
        settings: &settings,
        dir: dir.path(),
        results: &results,
        judgement: &judgement,
        final_reads: ran.as_ref().and_then(|r| r.final_reads),
        exit,
        wall,
        report_lines: &report_lines,
    }
    .print();
    Ok(RunOutcome {
        dir: dir.path().to_path_buf(),
        exit,
    })
}

/// Starts the cluster, waits until it is ready, drives traffic and faults,
/// heals, does the final reads, and kills every node whatever happened.
#[allow(clippy::too_many_arguments)]
async fn cluster_phase(
    settings: &Settings,
    workload: &Arc<dyn Workload>,
    db: &Arc<Db>,
    dir: &RunDir,
    recorder: &Arc<Recorder>,
    interrupt: &CancellationToken,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Ran> {
    let cfg = ClusterConfig {
        nodes: settings.nodes,
        spares: settings.spares,
        client_links: settings.nemesis.faults_client_links(),
        read_mode: settings.read_mode,
        seed: settings.seed,
        direct: false,
        clocks: settings.nemesis.kinds.contains(&NemesisKind::Clock),
        disks: settings.nemesis.kinds.contains(&NemesisKind::Disk),
    };
    let paths = ClusterPaths::under(dir.path());
    let cluster =
        Arc::new(Cluster::start(db.clone(), &cfg, &paths, cancel.clone(), tracker).await?);
    let faults = Arc::new(FaultLog::new(
        cluster.clone(),
        recorder.clone(),
        dir.nemesis_log()?,
    ));
    let result = async {
        let within = Duration::from_secs_f64(settings.leader_timeout_s);
        let ready = tokio::select! {
            _ = interrupt.cancelled() => None,
            r = cluster.wait_ready(within) => Some(r?),
        };
        let ctx = traffic::client_ctx(settings, workload.clone(), recorder.clone(), &faults);
        let mut ran = Ran {
            traffic_s: 0.0,
            latencies: None,
            final_reads: None,
            node_exits: Vec::new(),
            client_restarts: 0,
            faults: Default::default(),
            fatal: None,
        };
        if let Some(leader) = ready {
            eprintln!(
                "faultline: ready{}; starting {} clients",
                leader.map(|l| format!(" (leader {l})")).unwrap_or_default(),
                settings.concurrency
            );
            // Traffic.
            let (traffic_s, exits) = traffic::drive(settings, &ctx, &faults, interrupt).await;
            ran.traffic_s = traffic_s;
            ran.node_exits = exits;
            // Heal, then the final reads.
            if !interrupt.is_cancelled() && ctx.fatal.get().is_none() {
                traffic::heal(settings, &faults, interrupt).await;
            }
            if !interrupt.is_cancelled() && ctx.fatal.get().is_none() {
                let ops = workload.final_reads(settings.nodes);
                let ok = traffic::final_reads(&ctx, settings.concurrency, &ops, interrupt).await?;
                ran.final_reads = Some((ok, ops.len()));
            }
        }
        ran.latencies = Some(
            ctx.latencies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        );
        ran.client_restarts = cluster.protocol.restarts();
        ran.fatal = ctx.fatal.get();
        Ok::<Ran, anyhow::Error>(ran)
    }
    .await;
    // Whatever happened, no node outlives this point.
    cluster.supervisor.kill_all();
    result.map(|mut r| {
        r.faults = faults.counts();
        r
    })
}

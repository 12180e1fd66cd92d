//! The run folder, `store/<workload>/<timestamp>/`: its layout, the
//! `latest` links, and the one typed, versioned reader and writer of
//! `config.json`, `results.json` and `nemesis.jsonl` that `run`, `analyze`,
//! `report` and the nightly all go through.
//!
//! Layout: `history.jsonl` (every event, appended as the run goes),
//! `nemesis.jsonl` (one [`NemesisLine`] per fault action), `config.json`
//! ([`Config`]), `results.json` ([`Results`]), `nodes/` (each node's data
//! directory and `<id>.log`), `clients/` (client programs' stderr), and the
//! report's files. Every JSON file carries `schema`; a reader refuses a
//! schema it does not know, naming the file.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::nemesis::{Fault, NemesisKind};
use crate::settings::Settings;
use crate::sut::membership::MemberView;

/// The version of `config.json`, `results.json` and `nemesis.jsonl` this
/// build writes and reads.
pub const SCHEMA: u32 = 2;

/// The history file's format.
pub const HISTORY_FORMAT: &str = "faultline-jsonl-1";

/// A run folder.
#[derive(Clone, Debug)]
pub struct RunDir {
    dir: PathBuf,
}

/// `config.json`: everything needed to understand and repeat a run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Config {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The validated settings.
    pub settings: Settings,
    /// The seed (also in `settings`; here for a quick look).
    pub seed: u64,
    /// The system under test.
    pub system: SystemInfo,
    /// Versions of what wrote the run.
    pub versions: Versions,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// The command line as typed.
    pub command_line: Vec<String>,
}

/// The system a run tested.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SystemInfo {
    /// Its name, from its spec.
    pub name: String,
    /// Where its spec came from (`built-in: faultline`, or a path).
    pub spec: String,
    /// Its client protocol.
    pub protocol: String,
}

/// Versions of what wrote a run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Versions {
    /// faultline's version.
    pub faultline: String,
    /// [`HISTORY_FORMAT`].
    pub history_format: String,
}

impl Versions {
    /// This build's versions.
    pub fn current() -> Versions {
        Versions {
            faultline: env!("CARGO_PKG_VERSION").to_string(),
            history_format: HISTORY_FORMAT.to_string(),
        }
    }
}

/// Counts of operations.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct OpCounts {
    /// Every operation invoked.
    pub total: u64,
    /// Completed ok.
    pub ok: u64,
    /// Completed fail.
    pub fail: u64,
    /// Completed info.
    pub info: u64,
    /// Never completed.
    pub pending: u64,
    /// The same per function.
    pub by_f: BTreeMap<String, FCounts>,
}

/// Counts of one function's operations.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FCounts {
    /// Completed ok.
    pub ok: u64,
    /// Completed fail.
    pub fail: u64,
    /// Completed info.
    pub info: u64,
    /// Never completed.
    pub pending: u64,
}

/// Latency quantiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Quantiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
}

/// A node that exited without being asked to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeExit {
    /// The node.
    pub node: String,
    /// How it exited.
    pub exit: String,
    /// When (ns since the run started).
    pub time: u64,
}

/// `results.json`: the verdict and what the run measured.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Results {
    /// [`SCHEMA`].
    pub schema: u32,
    /// `valid`, `invalid` or `unknown`.
    pub verdict: String,
    /// The process exit code.
    pub exit_code: u8,
    /// Stopped by Ctrl-C or SIGTERM.
    pub interrupted: bool,
    /// What failed in the harness or the cluster, if anything.
    pub harness_error: Option<String>,
    /// The seed.
    pub seed: u64,
    /// The checker's full output (its witness for an invalid history).
    pub checker: Value,
    /// Operation counts.
    pub ops: OpCounts,
    /// Latency of completed ok and fail operations.
    pub latency_ms: Option<Quantiles>,
    /// ok operations per second of traffic.
    pub throughput_ok_per_s: f64,
    /// Faults carried out, by name.
    pub faults: BTreeMap<String, u64>,
    /// Nodes that exited without being asked to.
    pub node_exits_unasked: Vec<NodeExit>,
    /// Client programs restarted after they died or stopped answering.
    pub client_restarts: u64,
    /// Seconds from start to end of the controller's work.
    pub wall_time_s: f64,
    /// What the run exercised: coverage item → matching log lines.
    #[serde(default)]
    pub coverage: BTreeMap<String, u64>,
    /// The report's latency table (per function and outcome), once drawn.
    #[serde(default)]
    pub latency: Option<Value>,
    /// The report's availability per fault window, once drawn.
    #[serde(default)]
    pub availability: Option<Value>,
    /// The member nemesis's changes and the voters over time (runs with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<MembershipRecord>,
}

/// What the member nemesis did over a run, from `nemesis.jsonl`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MembershipRecord {
    /// Changes carried out (grow, shrink and replace steps that succeeded).
    pub changes: u64,
    /// Grow steps carried out.
    pub grow: u64,
    /// Shrink steps carried out.
    pub shrink: u64,
    /// Replace steps carried out.
    pub replace: u64,
    /// Steps refused or failed (each tried again at the next member step).
    pub refused: u64,
    /// The fewest voters the run had (the founders count).
    pub voters_min: usize,
    /// The most voters the run had.
    pub voters_max: usize,
    /// Every step in order, with the configuration it left.
    pub steps: Vec<MemberStepRecord>,
}

/// One membership step of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MemberStepRecord {
    /// When it began (ns since the run started).
    pub time: u64,
    /// When it ended (ns since the run started).
    pub done: u64,
    /// The step, e.g. `grow n4`.
    pub step: String,
    /// Whether it was carried out.
    pub ok: bool,
    /// The voters afterwards (as the leader saw them), for a step carried out.
    pub voters: Vec<String>,
    /// The learners afterwards.
    pub learners: Vec<String>,
    /// The leader afterwards, if known.
    pub leader: Option<String>,
    /// What was done, or why not.
    pub result: String,
}

impl MembershipRecord {
    /// The record of a run whose nemesis log is `lines` and that started
    /// `founders` voters; `None` when it made no membership step.
    pub fn of(lines: &[NemesisLine], founders: usize) -> Option<MembershipRecord> {
        let mut r = MembershipRecord {
            voters_min: founders,
            voters_max: founders,
            ..MembershipRecord::default()
        };
        for l in lines.iter().filter(|l| l.fault.changes_members()) {
            let ok = l.members.is_some();
            let view = l.members.clone().unwrap_or_default();
            if ok {
                r.changes += 1;
                match l.fault {
                    Fault::Grow { .. } => r.grow += 1,
                    Fault::Shrink { .. } => r.shrink += 1,
                    _ => r.replace += 1,
                }
                r.voters_min = r.voters_min.min(view.voters.len());
                r.voters_max = r.voters_max.max(view.voters.len());
            } else {
                r.refused += 1;
            }
            r.steps.push(MemberStepRecord {
                time: l.time,
                done: l.done,
                step: l.fault.label(),
                ok,
                voters: view.voters,
                learners: view.learners,
                leader: view.leader,
                result: l.result.clone(),
            });
        }
        (!r.steps.is_empty()).then_some(r)
    }

    /// One line for the run's summary, e.g. `7 changes (3 grow, 3 shrink,
    /// 1 replace); voters ranged 3..5`.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} changes ({} grow, {} shrink, {} replace); voters ranged {}..{}",
            self.changes, self.grow, self.shrink, self.replace, self.voters_min, self.voters_max
        );
        if self.refused > 0 {
            s.push_str(&format!("; {} refused and retried", self.refused));
        }
        s
    }
}

/// The head of `results.json` (see [`RunDir::read_results_head`]).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ResultsHead {
    /// `valid`, `invalid` or `unknown`.
    pub verdict: String,
    /// The seed.
    pub seed: u64,
    /// Faults carried out, by name.
    pub faults: BTreeMap<String, u64>,
    /// Seconds from start to end of the controller's work.
    pub wall_time_s: f64,
}

/// One line of `nemesis.jsonl`: one fault action.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NemesisLine {
    /// [`SCHEMA`].
    pub schema: u32,
    /// When the action began (ns since the run started).
    pub time: u64,
    /// When it was carried out (ns since the run started).
    pub done: u64,
    /// The fault.
    pub fault: Fault,
    /// The kind it starts, if any.
    pub starts: Option<NemesisKind>,
    /// The kinds it ends.
    pub ends: Vec<NemesisKind>,
    /// What was done, or the error.
    pub result: String,
    /// For a membership change carried out: the configuration it left, as
    /// the leader saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<MemberView>,
}

/// Appends [`NemesisLine`]s, one `write` per line so a crash leaves whole lines.
pub struct NemesisLog {
    file: Mutex<std::fs::File>,
}

impl NemesisLog {
    /// Appends one line. The history has the same facts, so a failed write
    /// is reported but not fatal.
    pub fn append(&self, line: &NemesisLine) {
        let Ok(mut text) = serde_json::to_vec(line) else {
            return;
        };
        text.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.write_all(&text) {
            eprintln!("faultline: cannot append to nemesis.jsonl: {e}");
        }
    }
}

impl RunDir {
    /// Creates `store/<workload>/<timestamp>/` (unique) with `nodes/`, and
    /// points `store/latest` and `store/<workload>/latest` at it.
    pub fn create(store: &Path, workload: &str) -> Result<RunDir> {
        let base = store.join(workload);
        std::fs::create_dir_all(&base)
            .with_context(|| format!("cannot create the store {}", base.display()))?;
        let ts = timestamp();
        for k in 0..100 {
            let name = if k == 0 {
                ts.clone()
            } else {
                format!("{ts}-{k}")
            };
            let dir = base.join(&name);
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    std::fs::create_dir(dir.join("nodes"))?;
                    let run = RunDir { dir };
                    run.update_latest(store)?;
                    return Ok(run);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", dir.display()));
                }
            }
        }
        bail!(
            "cannot find a free run directory name under {}",
            base.display()
        )
    }

    /// An existing run folder (it must hold `history.jsonl`).
    pub fn open(dir: &Path) -> Result<RunDir> {
        if !dir.is_dir() {
            bail!("{} is not a run folder (no such directory)", dir.display());
        }
        if !dir.join("history.jsonl").is_file() {
            bail!(
                "{} is not a run folder: it has no history.jsonl",
                dir.display()
            );
        }
        Ok(RunDir {
            dir: dir.to_path_buf(),
        })
    }

    /// A folder to write a run into (tests and the report's demo runs):
    /// created if missing, not linked from a store.
    pub fn at(dir: &Path) -> Result<RunDir> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(RunDir {
            dir: dir.to_path_buf(),
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `history.jsonl`.
    pub fn history(&self) -> PathBuf {
        self.dir.join("history.jsonl")
    }

    /// `nodes/`: data directories and logs.
    pub fn nodes(&self) -> PathBuf {
        self.dir.join("nodes")
    }

    /// `clients/`: client programs' stderr.
    pub fn clients(&self) -> PathBuf {
        self.dir.join("clients")
    }

    fn update_latest(&self, store: &Path) -> Result<()> {
        let ws = self.dir.parent().context("run dir has no parent")?;
        let wname = ws.file_name().context("no workload dir")?;
        let rname = self.dir.file_name().context("no run name")?;
        relink(&store.join("latest"), &Path::new(wname).join(rname))?;
        relink(&ws.join("latest"), Path::new(rname))?;
        Ok(())
    }

    /// Writes `config.json`.
    pub fn write_config(&self, c: &Config) -> Result<()> {
        write_json(&self.dir.join("config.json"), c)
    }

    /// Reads `config.json` (`None` if absent).
    pub fn read_config(&self) -> Result<Option<Config>> {
        read_json(&self.dir.join("config.json"))
    }

    /// Writes `results.json`.
    pub fn write_results(&self, r: &Results) -> Result<()> {
        write_json(&self.dir.join("results.json"), r)
    }

    /// Reads `results.json` (`None` if absent).
    pub fn read_results(&self) -> Result<Option<Results>> {
        read_json(&self.dir.join("results.json"))
    }

    /// Reads what an index of runs shows from `results.json` (`None` if
    /// absent), skipping the rest unparsed.
    pub fn read_results_head(&self) -> Result<Option<ResultsHead>> {
        read_json(&self.dir.join("results.json"))
    }

    /// Creates `nemesis.jsonl` for appending.
    pub fn nemesis_log(&self) -> Result<NemesisLog> {
        let p = self.dir.join("nemesis.jsonl");
        let file =
            std::fs::File::create(&p).with_context(|| format!("cannot create {}", p.display()))?;
        Ok(NemesisLog {
            file: Mutex::new(file),
        })
    }

    /// Reads `nemesis.jsonl` (`None` if absent). A torn last line from a
    /// crash is dropped; any other bad line is an error naming `file:line`.
    pub fn read_nemesis(&self) -> Result<Option<Vec<NemesisLine>>> {
        let p = self.dir.join("nemesis.jsonl");
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", p.display())),
        };
        parse_nemesis(&p, &text).map(Some)
    }
}

/// Parses `nemesis.jsonl` text (see [`RunDir::read_nemesis`]).
pub fn parse_nemesis(path: &Path, text: &str) -> Result<Vec<NemesisLine>> {
    let torn_possible = !text.is_empty() && !text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<NemesisLine>(line) {
            Ok(l) if l.schema == SCHEMA => out.push(l),
            Ok(l) => bail!(
                "{}:{}: schema {} (this faultline reads schema {SCHEMA})",
                path.display(),
                i + 1,
                l.schema
            ),
            Err(_) if torn_possible && i + 1 == lines.len() => {}
            Err(e) => bail!("{}:{}: not a nemesis line: {e}", path.display(), i + 1),
        }
    }
    Ok(out)
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(v)?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    // The schema first, without building the whole document (a checker's
    // output can be large); then the typed value straight from the text.
    #[derive(Deserialize)]
    struct Probe {
        schema: Option<u64>,
    }
    let probe: Probe = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON (a JSON object)", path.display()))?;
    match probe.schema {
        Some(s) if s == u64::from(SCHEMA) => {}
        Some(s) => bail!(
            "{}: schema {s}; this faultline reads schema {SCHEMA}",
            path.display()
        ),
        None => bail!(
            "{}: no schema field: written by an older faultline (this one reads schema {SCHEMA})",
            path.display()
        ),
    }
    serde_json::from_str(&text)
        .map(Some)
        .with_context(|| format!("{}: not a schema {SCHEMA} file", path.display()))
}

/// Points `link` at `target` (relative), replacing it atomically.
fn relink(link: &Path, target: &Path) -> Result<()> {
    let tmp = link.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("cannot create link {}", tmp.display()))?;
    std::fs::rename(&tmp, link).with_context(|| format!("cannot update {}", link.display()))?;
    Ok(())
}

/// The run folder `run` names: a path, or `latest` in `store`.
pub fn resolve(run: &str, store: &Path) -> PathBuf {
    if run == "latest" {
        store.join("latest")
    } else {
        PathBuf::from(run)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `YYYYMMDDTHHMMSS.mmmZ` in UTC, from the system clock (no time crate needed).
pub fn timestamp() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (year, month, day, h, m, s) = civil(d.as_secs() as i64);
    format!(
        "{year:04}{month:02}{day:02}T{h:02}{m:02}{s:02}.{:03}Z",
        d.subsec_millis()
    )
}

/// `YYYY-MM-DD HH:MM:SS UTC` of a time in ms since the Unix epoch.
pub fn utc_time(unix_ms: u64) -> String {
    let (year, month, day, h, m, s) = civil((unix_ms / 1000) as i64);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02} UTC")
}

/// (year, month, day, hour, minute, second) in UTC of seconds since the
/// Unix epoch (Howard Hinnant's civil-from-days).
fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_are_civil_dates() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(1_795_000_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn timestamps_sort_and_look_utc() {
        let t = timestamp();
        assert_eq!(t.len(), "20261121T220800.123Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[8] == b'T');
    }

    #[test]
    fn nemesis_lines_round_trip_and_bad_lines_are_named() {
        let line = NemesisLine {
            schema: SCHEMA,
            time: 1,
            done: 2,
            fault: Fault::Heal,
            starts: None,
            ends: vec![NemesisKind::Partition],
            result: "healed".into(),
            members: None,
        };
        let text = serde_json::to_string(&line).unwrap() + "\n";
        let p = Path::new("n.jsonl");
        assert_eq!(parse_nemesis(p, &text).unwrap(), vec![line.clone()]);
        // A torn last line (no newline) is dropped; a bad middle line is not.
        let torn = format!("{text}{{\"schema\":2,\"ti");
        assert_eq!(parse_nemesis(p, &torn).unwrap().len(), 1);
        let bad = format!("{text}not json\n{text}");
        let e = parse_nemesis(p, &bad).unwrap_err().to_string();
        assert!(e.contains("n.jsonl:2"), "{e}");
        let old = text.replace("\"schema\":2", "\"schema\":9");
        assert!(
            parse_nemesis(p, &old)
                .unwrap_err()
                .to_string()
                .contains("schema 9")
        );
    }

    #[test]
    fn membership_is_counted_from_the_nemesis_log() {
        let view = |voters: &[&str]| MemberView {
            voters: voters.iter().map(|v| v.to_string()).collect(),
            leader: Some("n1".into()),
            ..MemberView::default()
        };
        let line = |time, fault, members| NemesisLine {
            schema: SCHEMA,
            time,
            done: time + 5,
            fault,
            starts: None,
            ends: vec![],
            result: "r".into(),
            members,
        };
        let lines = [
            line(
                1,
                Fault::Grow {
                    node: "n4".into(),
                    split: false,
                },
                Some(view(&["n1", "n2", "n3", "n4"])),
            ),
            line(2, Fault::Heal, None),
            line(
                3,
                Fault::Grow {
                    node: "n5".into(),
                    split: false,
                },
                None,
            ),
            line(
                4,
                Fault::Grow {
                    node: "n5".into(),
                    split: false,
                },
                Some(view(&["n1", "n2", "n3", "n4", "n5"])),
            ),
            line(
                5,
                Fault::Replace {
                    add: "n2".into(),
                    remove: "n3".into(),
                    split: false,
                },
                Some(view(&["n1", "n2", "n4", "n5"])),
            ),
            line(
                6,
                Fault::Shrink { node: "n1".into() },
                Some(view(&["n2", "n4", "n5"])),
            ),
        ];
        let r = MembershipRecord::of(&lines, 3).expect("steps");
        assert_eq!(
            r.line(),
            "4 changes (2 grow, 1 shrink, 1 replace); voters ranged 3..5; 1 refused and retried"
        );
        assert_eq!(r.steps.len(), 5);
        assert!(!r.steps[1].ok && r.steps[1].voters.is_empty());
        assert_eq!(r.steps[0].step, "grow n4");
        assert_eq!(MembershipRecord::of(&lines[1..2], 3), None);
        // Written and read back through results.json's one schema.
        let json = serde_json::to_string(&r).expect("json");
        assert_eq!(
            serde_json::from_str::<MembershipRecord>(&json).expect("back"),
            r
        );
    }

    #[test]
    fn files_without_a_known_schema_are_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("faultline-store-{}", std::process::id()));
        let run = RunDir::at(&dir).unwrap();
        std::fs::write(dir.join("results.json"), "{\"verdict\": \"valid\"}").unwrap();
        let e = run.read_results().unwrap_err().to_string();
        assert!(e.contains("results.json: no schema field"), "{e}");
        assert!(run.read_config().unwrap().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

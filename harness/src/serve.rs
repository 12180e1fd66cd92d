//! `faultline serve`: a store of runs in the browser. The index lists every
//! run folder (`<store>/<workload>/<timestamp>/`) in one table — workload,
//! system, seed, verdict, faults, duration, start time — filtered by
//! verdict and workload; each run's report and files are one click away,
//! and two ticked runs open side by side (verdicts, latency quantiles, every
//! setting, differences marked). Pages are plain HTML: filters and the
//! comparison are GET forms, no scripts.
//!
//! It binds 127.0.0.1 only and serves nothing outside the store: a path
//! with `..`, an absolute path, or a link that leads out of the store is a
//! 404. A run folder it cannot read is listed with the reason, never left
//! out. The index reads every run's files once, in the background from the
//! start, then only the files that change.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{Context as _, Result, bail};
use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::exit::Exit;
use crate::report::plot::esc;
use crate::store::{Config, Results, RunDir, utc_time};

/// `faultline serve`'s flags.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The store to browse (what `faultline run --store` wrote).
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// The port on 127.0.0.1 (0: any free port, printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
}

/// Serves the store until Ctrl-C.
pub fn run(args: &ServeArgs) -> Result<Exit> {
    let root = canonical_store(&args.store)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let listener = bind(args.port).await?;
        let addr = listener.local_addr()?;
        println!(
            "faultline serve: {} at http://{addr}/ (Ctrl-C stops)",
            root.display()
        );
        let app = router(root);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the server failed")?;
        Ok(Exit::Valid)
    })
}

/// The store folder, resolved (every path served is checked against it).
pub fn canonical_store(store: &Path) -> Result<PathBuf> {
    let root = store
        .canonicalize()
        .with_context(|| format!("--store {}: no such folder", store.display()))?;
    if !root.is_dir() {
        bail!("--store {}: not a folder", store.display());
    }
    Ok(root)
}

/// A listener on 127.0.0.1 (never another address).
pub async fn bind(port: u16) -> Result<TcpListener> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .with_context(|| format!("--port {port}: cannot listen on 127.0.0.1:{port}"))
}

/// The pages, for the store at `root` (canonical).
/// The index is read once in the background at the start (a request that
/// comes first waits for it), then only what changes.
pub fn router(root: PathBuf) -> Router {
    let state = Arc::new(Store {
        root,
        cache: Mutex::new(HashMap::new()),
    });
    let warm = state.clone();
    tokio::task::spawn_blocking(move || warm.rows());
    Router::new()
        .route("/", get(index))
        .route("/compare", get(compare))
        .route("/runs/{*path}", get(file))
        .fallback(|| async { not_found() })
        .with_state(state)
}

/// The store and the index rows read so far.
struct Store {
    root: PathBuf,
    /// Run folder → (modification times of config.json and results.json, its row).
    cache: Mutex<HashMap<PathBuf, (Stamp, Row)>>,
}

type Stamp = (Option<SystemTime>, Option<SystemTime>);

/// One run in the index.
#[derive(Clone, Debug)]
struct Row {
    /// The folder, relative to the store (`register/20261201T…Z`).
    rel: String,
    workload: String,
    system: String,
    seed: Option<u64>,
    /// `valid`, `invalid`, `unknown`, `no results` (still running, or
    /// stopped before writing them) or `unreadable`.
    verdict: String,
    faults: String,
    duration_s: Option<f64>,
    started_unix_ms: Option<u64>,
    /// Why a file could not be read.
    problem: Option<String>,
}

impl Store {
    /// Every run folder of the store, newest first.
    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        for workload in subfolders(&self.root) {
            for dir in subfolders(&workload) {
                let is_run = ["history.jsonl", "config.json", "results.json"]
                    .iter()
                    .any(|f| dir.join(f).exists());
                if !is_run {
                    continue;
                }
                let stamp = (
                    modified(&dir.join("config.json")),
                    modified(&dir.join("results.json")),
                );
                if let Some((s, row)) = cache.get(&dir)
                    && *s == stamp
                {
                    rows.push(row.clone());
                    continue;
                }
                let row = read_row(&self.root, &dir);
                cache.insert(dir, (stamp, row.clone()));
                rows.push(row);
            }
        }
        rows.sort_by(|a, b| (b.started_unix_ms, &b.rel).cmp(&(a.started_unix_ms, &a.rel)));
        rows
    }
}

/// The folders (not links) directly in `dir`, by name.
fn subfolders(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// A run folder's row; what cannot be read is named in `problem`.
fn read_row(root: &Path, dir: &Path) -> Row {
    let rel = dir
        .strip_prefix(root)
        .unwrap_or(dir)
        .to_string_lossy()
        .into_owned();
    let mut row = Row {
        workload: rel.split('/').next().unwrap_or_default().to_string(),
        rel,
        system: String::new(),
        seed: None,
        verdict: "no results".into(),
        faults: String::new(),
        duration_s: None,
        started_unix_ms: None,
        problem: None,
    };
    let head = RunDir::open(dir).and_then(|run| Ok((run.read_config()?, run.read_results_head()?)));
    match head {
        Ok((config, results)) => {
            if let Some(c) = config {
                row.workload = c.settings.workload.clone();
                row.system = c.system.name.clone();
                row.seed = Some(c.seed);
                row.started_unix_ms = Some(c.started_unix_ms);
            }
            if let Some(r) = results {
                row.verdict = r.verdict.clone();
                row.faults = faults_text(&r.faults);
                row.duration_s = Some(r.wall_time_s);
                row.seed = row.seed.or(Some(r.seed));
            }
        }
        Err(e) => {
            row.verdict = "unreadable".into();
            row.problem = Some(format!("{e:#}"));
        }
    }
    row
}

/// A run folder's config.json and results.json (either may be missing).
fn read_run(dir: &Path) -> Result<(Option<Config>, Option<Results>)> {
    let run = RunDir::open(dir)?;
    Ok((run.read_config()?, run.read_results()?))
}

/// `partition 3, kill 2`, or `none`.
fn faults_text(faults: &std::collections::BTreeMap<String, u64>) -> String {
    if faults.is_empty() {
        return "none".into();
    }
    faults
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `path` inside the store `root` (canonical), or `None` when it is
/// absolute, has `..` (or `.`) in it, or leads out of the store through a
/// link.
pub fn inside(root: &Path, path: &str) -> Option<PathBuf> {
    // A folder's own link ends in `/`; every other segment must be a name.
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.contains('\0') || path.contains('\\') {
        return None;
    }
    if path.split('/').any(|seg| matches!(seg, "" | "." | "..")) {
        return None;
    }
    let p = Path::new(path);
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let full = root.join(p).canonicalize().ok()?;
    full.starts_with(root).then_some(full)
}

/// A path for a URL: every byte but letters, digits, `-._~/` percent-encoded.
fn url_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn not_found() -> Response {
    page_response(
        StatusCode::NOT_FOUND,
        "Not found",
        "<p>Nothing here: the path is not in the store. <a href=\"/\">All runs</a></p>",
    )
}

fn page_response(status: StatusCode, title: &str, body: &str) -> Response {
    (status, Html(page(title, body))).into_response()
}

/// The page frame (the report's stylesheet, plus the index's).
fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · faultline</title><style>{}{CSS}</style></head><body><main>{body}</main></body></html>\n",
        esc(title),
        crate::report::html::CSS,
    )
}

const CSS: &str = r#"
main{max-width:1240px}
td{overflow-wrap:anywhere}
td.verdict-valid{color:#1e7b34;font-weight:700}td.verdict-invalid{color:#b3261e;font-weight:700}
td.verdict-unknown,td.verdict-unreadable,td.verdict-no-results{color:#a15c00;font-weight:700}
form.filters{display:flex;gap:14px;align-items:center;flex-wrap:wrap;margin-bottom:10px}
tr.diff td{background:#fff6da}
nav{margin-bottom:12px}
"#;

/// The query's values of `name`.
fn values<'a>(q: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    q.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
        .collect()
}

async fn index(
    State(store): State<Arc<Store>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let rows = tokio::task::spawn_blocking(move || store.rows())
        .await
        .unwrap_or_default();
    Html(index_page(&rows, &q)).into_response()
}

fn index_page(rows: &[Row], q: &[(String, String)]) -> String {
    let verdict = values(q, "verdict").first().copied();
    let workload = values(q, "workload").first().copied();
    let shown: Vec<&Row> = rows
        .iter()
        .filter(|r| verdict.is_none_or(|v| r.verdict == v))
        .filter(|r| workload.is_none_or(|w| r.workload == w))
        .collect();
    let mut b = String::new();
    let _ = write!(
        b,
        "<section><h1>Runs</h1><p class=muted>{} runs in the store, {} shown. Tick two runs to compare them.</p>",
        rows.len(),
        shown.len()
    );
    b.push_str("<form class=filters method=get action=\"/\">");
    let select =
        |b: &mut String, name: &str, label: &str, options: &[String], chosen: Option<&str>| {
            let _ = write!(
                b,
                "<label>{label} <select name={name}><option value=\"\">all</option>"
            );
            for o in options {
                let sel = if chosen == Some(o.as_str()) {
                    " selected"
                } else {
                    ""
                };
                let _ = write!(b, "<option value=\"{0}\"{sel}>{0}</option>", esc(o));
            }
            b.push_str("</select></label>");
        };
    let verdicts: BTreeSet<String> = rows.iter().map(|r| r.verdict.clone()).collect();
    let workloads: BTreeSet<String> = rows.iter().map(|r| r.workload.clone()).collect();
    let verdicts: Vec<String> = verdicts.into_iter().collect();
    let workloads: Vec<String> = workloads.into_iter().collect();
    select(&mut b, "verdict", "Verdict", &verdicts, verdict);
    select(&mut b, "workload", "Workload", &workloads, workload);
    b.push_str("<button type=submit>Filter</button></form>");
    b.push_str(
        "<form method=get action=\"/compare\"><table><tr><th></th><th>Run</th><th>Workload</th><th>System</th>\
         <th class=n>Seed</th><th>Verdict</th><th>Faults</th><th class=n>Duration</th><th>Started</th></tr>",
    );
    for r in &shown {
        let link = url_path(&r.rel);
        let verdict_cell = match &r.problem {
            Some(p) => format!("{}<div class=muted>{}</div>", esc(&r.verdict), esc(p)),
            None => esc(&r.verdict),
        };
        let _ = write!(
            b,
            "<tr><td><input type=checkbox name=run value=\"{rel}\" aria-label=\"compare {rel}\"></td>\
             <td><a href=\"/runs/{link}/report.html\">{rel}</a> · <a href=\"/runs/{link}/\">files</a></td>\
             <td>{}</td><td>{}</td><td class=n>{}</td><td class=\"verdict-{}\">{verdict_cell}</td><td>{}</td>\
             <td class=n>{}</td><td>{}</td></tr>",
            esc(&r.workload),
            esc(&r.system),
            r.seed.map(|s| s.to_string()).unwrap_or_default(),
            esc(&r.verdict.replace(' ', "-")),
            esc(&r.faults),
            r.duration_s
                .map(|d| format!("{d:.1} s"))
                .unwrap_or_default(),
            r.started_unix_ms
                .filter(|t| *t > 0)
                .map(utc_time)
                .unwrap_or_default(),
            rel = esc(&r.rel),
        );
    }
    b.push_str(
        "</table><p><button type=submit>Compare the two ticked runs</button></p></form></section>",
    );
    page("Runs", &b)
}

async fn file(State(store): State<Arc<Store>>, UrlPath(path): UrlPath<String>) -> Response {
    let Some(full) = inside(&store.root, &path) else {
        return not_found();
    };
    if full.is_dir() {
        let rel = full
            .strip_prefix(&store.root)
            .unwrap_or(&full)
            .to_string_lossy()
            .into_owned();
        return Html(listing(&full, &rel)).into_response();
    }
    match tokio::fs::read(&full).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, content_type(&full)),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => page_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Unreadable",
            &format!("<p>cannot read {}: {}</p>", esc(&path), esc(&e.to_string())),
        ),
    }
}

/// A folder's entries, each a link.
fn listing(dir: &Path, rel: &str) -> String {
    let mut entries: Vec<(String, bool, u64)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let meta = std::fs::metadata(e.path()).ok();
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        meta.as_ref().is_some_and(|m| m.is_dir()),
                        meta.map(|m| m.len()).unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    let mut b = format!(
        "<nav><a href=\"/\">All runs</a></nav><section><h1>{}</h1><table><tr><th>Name</th><th class=n>Bytes</th></tr>",
        esc(rel)
    );
    for (name, is_dir, len) in entries {
        let slash = if is_dir { "/" } else { "" };
        let _ = write!(
            b,
            "<tr><td><a href=\"/runs/{}/{}{slash}\">{}{slash}</a></td><td class=n>{}</td></tr>",
            url_path(rel),
            url_path(&name),
            esc(&name),
            if is_dir {
                String::new()
            } else {
                len.to_string()
            }
        );
    }
    b.push_str("</table></section>");
    page(rel, &b)
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        "xml" => "application/xml",
        "png" => "image/png",
        "jsonl" | "log" | "txt" | "hgrm" | "tsv" | "md" | "toml" | "edn" | "csv" => {
            "text/plain; charset=utf-8"
        }
        _ => "application/octet-stream",
    }
}

async fn compare(
    State(store): State<Arc<Store>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let runs = values(&q, "run");
    if runs.len() != 2 {
        return page_response(
            StatusCode::BAD_REQUEST,
            "Compare",
            &format!(
                "<nav><a href=\"/\">All runs</a></nav><section><p>Tick exactly two runs to compare ({} given).</p></section>",
                runs.len()
            ),
        );
    }
    let mut sides = Vec::new();
    for r in &runs {
        let Some(dir) = inside(&store.root, r) else {
            return not_found();
        };
        match read_run(&dir) {
            Ok((config, results)) => sides.push((r.to_string(), config, results)),
            Err(e) => {
                return page_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Compare",
                    &format!("<p>{}: {}</p>", esc(r), esc(&format!("{e:#}"))),
                );
            }
        }
    }
    Html(compare_page(&sides)).into_response()
}

type Side = (String, Option<Config>, Option<Results>);

fn compare_page(sides: &[Side]) -> String {
    let mut rows: Vec<(String, [String; 2])> = Vec::new();
    let mut add = |label: &str, f: &dyn Fn(&Side) -> String| {
        rows.push((label.to_string(), [f(&sides[0]), f(&sides[1])]));
    };
    let res = |s: &Side, f: &dyn Fn(&Results) -> String| s.2.as_ref().map(f).unwrap_or_default();
    add("verdict", &|s| res(s, &|r| r.verdict.clone()));
    add("system", &|s| {
        s.1.as_ref()
            .map(|c| c.system.name.clone())
            .unwrap_or_default()
    });
    add("seed", &|s| {
        s.1.as_ref().map(|c| c.seed.to_string()).unwrap_or_default()
    });
    add("started", &|s| {
        s.1.as_ref()
            .filter(|c| c.started_unix_ms > 0)
            .map(|c| utc_time(c.started_unix_ms))
            .unwrap_or_default()
    });
    add("drawn by the seed", &|s| {
        s.1.as_ref()
            .map(|c| crate::settings::describe_drawn(&c.settings))
            .unwrap_or_default()
    });
    add("faults", &|s| res(s, &|r| faults_text(&r.faults)));
    add("operations (ok / fail / info)", &|s| {
        res(s, &|r| {
            format!(
                "{} ({} / {} / {})",
                r.ops.total, r.ops.ok, r.ops.fail, r.ops.info
            )
        })
    });
    add("throughput", &|s| {
        res(s, &|r| format!("{:.0} ok/s", r.throughput_ok_per_s))
    });
    for (name, pick) in [
        (
            "latency p50",
            (|q: &crate::store::Quantiles| q.p50) as fn(&crate::store::Quantiles) -> f64,
        ),
        ("latency p90", |q| q.p90),
        ("latency p99", |q| q.p99),
        ("latency p99.9", |q| q.p999),
        ("latency max", |q| q.max),
    ] {
        add(name, &|s| {
            res(s, &|r| {
                r.latency_ms
                    .as_ref()
                    .map(|q| format!("{:.2} ms", pick(q)))
                    .unwrap_or_default()
            })
        });
    }
    add("wall time", &|s| {
        res(s, &|r| format!("{:.1} s", r.wall_time_s))
    });
    // Every setting in words, marked where the seed drew it.
    let words: Vec<Vec<crate::settings::SettingLine>> = sides
        .iter()
        .map(|s| {
            s.1.as_ref()
                .map(|c| crate::settings::in_words(&c.settings))
                .unwrap_or_default()
        })
        .collect();
    let mut labels: Vec<&'static str> = Vec::new();
    for l in words.iter().flatten() {
        if !labels.contains(&l.label) {
            labels.push(l.label);
        }
    }
    for label in labels {
        let get = |i: usize| {
            words[i]
                .iter()
                .find(|l| l.label == label)
                .map(|l| {
                    if l.drawn {
                        format!("{} (drawn by the seed)", l.text)
                    } else {
                        l.text.clone()
                    }
                })
                .unwrap_or_default()
        };
        rows.push((label.to_string(), [get(0), get(1)]));
    }
    let mut b = String::from(
        "<nav><a href=\"/\">All runs</a></nav><section><h1>Two runs side by side</h1>",
    );
    b.push_str("<p class=muted>Rows that differ are marked.</p><table class=kv><tr><th></th>");
    for (rel, _, _) in sides {
        let _ = write!(
            b,
            "<th><a href=\"/runs/{}/report.html\">{}</a></th>",
            url_path(rel),
            esc(rel)
        );
    }
    b.push_str("</tr>");
    for (label, [a, c]) in rows {
        let class = if a != c { " class=diff" } else { "" };
        let _ = write!(
            b,
            "<tr{class}><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&label),
            esc(&a),
            esc(&c)
        );
    }
    b.push_str("</table></section>");
    page("Compare", &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_store_are_refused() {
        let root = std::env::temp_dir().join(format!("faultline-serve-{}", std::process::id()));
        std::fs::create_dir_all(root.join("register/run1")).unwrap();
        std::fs::write(root.join("register/run1/results.json"), "{}").unwrap();
        let root = root.canonicalize().unwrap();
        assert!(inside(&root, "register/run1/results.json").is_some());
        assert!(inside(&root, "register/run1").is_some());
        for bad in [
            "",
            "/etc/passwd",
            "../etc/passwd",
            "register/../../etc/passwd",
            "register/./run1",
            "register/run1/missing",
        ] {
            assert!(inside(&root, bad).is_none(), "{bad:?}");
        }
        std::os::unix::fs::symlink("/etc", root.join("register/out")).unwrap();
        assert!(inside(&root, "register/out/passwd").is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn url_paths_are_encoded() {
        assert_eq!(url_path("register/2026T1.5Z"), "register/2026T1.5Z");
        assert_eq!(url_path("a b/<x>&\"q\""), "a%20b/%3Cx%3E%26%22q%22");
    }
}

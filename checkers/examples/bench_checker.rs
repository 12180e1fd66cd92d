//! The checker benchmark behind `ci/bench-checker.sh`.
//!
//! * `bench_checker corpus ROOT [RUNS]`: checks every file of `ROOT/verdicts.tsv`
//!   on one thread, each in its own process (so peak memory is per file), and
//!   prints per-file time (minimum of RUNS, parse excluded), peak RSS, verdict,
//!   and the totals against the targets.
//! * `bench_checker one FORMAT-MODEL FILE RUNS`: the per-file worker.
//! * `bench_checker gen OUT OPS KEYS PROCS SEED`: writes a random linearizable
//!   kv history (JSONL) for the large-history benchmark.
//! * `bench_checker info MODEL OPS PROCS INFO_PERMILLE SEED [stale] [TIME_LIMIT_S]`:
//!   generates a one-key history with many indeterminate (`info`) ops (as
//!   runs under kill and partition faults produce), optionally with one stale
//!   read injected, and checks it on one thread: time, verdict, op counts.

#[path = "../tests/common/histgen.rs"]
#[allow(dead_code)]
mod histgen;

use faultline_checkers::{LinOptions, ModelKind, check_linearizable};
use faultline_history::{Format, JsonlWriter, pair, parse_str};
use std::path::Path;
use std::process::{Command, ExitCode};

fn setup(fm: &str) -> Option<(Format, ModelKind)> {
    Some(match fm {
        "knossos-cas-register" => (Format::Edn, ModelKind::CasRegister),
        "knossos-multi-register" => (Format::Edn, ModelKind::MultiRegister),
        "knossos-mutex" => (Format::Edn, ModelKind::Mutex),
        "porcupine-etcd-cas-register" => (Format::PorcupineEtcd, ModelKind::CasRegister),
        "porcupine-kv" => (Format::PorcupineKv, ModelKind::Kv),
        _ => return None,
    })
}

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn one(fm: &str, file: &str, runs: usize) -> Result<(), String> {
    let (format, model) = setup(fm).ok_or(format!("unknown format-model {fm}"))?;
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    let history = parse_str(file, &text, format).map_err(|e| e.to_string())?;
    let ops = pair(file, &history.events).map_err(|e| e.to_string())?;
    let mut opts = LinOptions::for_format(format, model);
    opts.threads = 1;
    let mut best = f64::MAX;
    let mut verdict = "";
    let mut shrink = 0.0;
    for _ in 0..runs.max(1) {
        let r = check_linearizable(&ops, &opts).map_err(|e| e.to_string())?;
        best = best.min(r.check_ms);
        verdict = r.verdict.name();
        shrink = r.shrink_ms;
    }
    println!("{verdict} {best:.3} {shrink:.3} {}", peak_kib());
    Ok(())
}

fn corpus(root: &str, runs: usize) -> Result<bool, String> {
    let tsv = std::fs::read_to_string(Path::new(root).join("verdicts.tsv"))
        .map_err(|e| format!("{root}/verdicts.tsv: {e}"))?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let (mut etcd_total, mut etcd_max, mut etcd_max_file) = (0.0f64, 0.0f64, String::new());
    let (mut knossos_max, mut knossos_max_file) = (0.0f64, String::new());
    let (mut c50_ok, mut c50_bad, mut c50_bad_verdict) = (0.0, 0.0, String::new());
    let (mut agree, mut rows, mut peak_max) = (0, 0, 0u64);
    println!(
        "{:<58} {:>9} {:>9} {:>10}  verdict (expected)",
        "file", "check ms", "shrink ms", "peak KiB"
    );
    for row in tsv.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = row.split('\t').collect();
        let (path, fm, expected) = (cols[0], cols[1], cols[2]);
        let out = Command::new(&me)
            .args([
                "one",
                fm,
                &Path::new(root).join(path).display().to_string(),
                &runs.to_string(),
            ])
            .output()
            .map_err(|e| e.to_string())?;
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 4 {
            return Err(format!(
                "{path}: worker failed: {line} {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let (verdict, ms, shrink, peak): (&str, f64, f64, u64) = (
            f[0],
            f[1].parse().unwrap_or(f64::NAN),
            f[2].parse().unwrap_or(f64::NAN),
            f[3].parse().unwrap_or(0),
        );
        rows += 1;
        if verdict == expected {
            agree += 1;
        }
        peak_max = peak_max.max(peak);
        println!("{path:<58} {ms:>9.3} {shrink:>9.3} {peak:>10}  {verdict} ({expected})");
        if fm.starts_with("porcupine-etcd") {
            etcd_total += ms;
            if ms > etcd_max {
                etcd_max = ms;
                etcd_max_file = path.to_string();
            }
        } else if fm.starts_with("knossos") && ms > knossos_max {
            knossos_max = ms;
            knossos_max_file = path.to_string();
        }
        if path.ends_with("c50-ok.txt") {
            c50_ok = ms;
        }
        if path.ends_with("c50-bad.txt") {
            c50_bad = ms;
            c50_bad_verdict = verdict.to_string();
        }
    }
    let mark = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!();
    println!("verdicts: {agree}/{rows} agree");
    println!(
        "etcd logs, total: {etcd_total:.1} ms (target <= 150; porcupine 911) {}",
        mark(etcd_total <= 150.0)
    );
    println!(
        "etcd logs, slowest: {etcd_max:.1} ms {etcd_max_file} (target <= 40; porcupine 270) {}",
        mark(etcd_max <= 40.0)
    );
    println!(
        "kv/c50-ok: {c50_ok:.1} ms (target <= 60; porcupine 188 with 2 threads) {}",
        mark(c50_ok <= 60.0)
    );
    println!(
        "kv/c50-bad: {c50_bad:.1} ms, {c50_bad_verdict} (target invalid in <= 10) {}",
        mark(c50_bad <= 10.0 && c50_bad_verdict == "invalid")
    );
    println!(
        "knossos, slowest: {knossos_max:.1} ms {knossos_max_file} (target <= 100) {}",
        mark(knossos_max <= 100.0)
    );
    println!("peak RSS, largest of any file: {peak_max} KiB");
    Ok(agree == rows
        && etcd_total <= 150.0
        && etcd_max <= 40.0
        && c50_ok <= 60.0
        && c50_bad <= 10.0
        && knossos_max <= 100.0)
}

fn generate_file(
    out: &str,
    ops: usize,
    keys: usize,
    procs: usize,
    seed: u64,
) -> Result<(), String> {
    let events = histgen::generate(&histgen::GenParams {
        model: histgen::GenModel::Kv,
        ops,
        keys,
        procs,
        info_rate: 0.01,
        latency: 20,
        seed,
    });
    let mut w = JsonlWriter::create(Path::new(out)).map_err(|e| e.to_string())?;
    for e in &events {
        w.append(e).map_err(|e| e.to_string())?;
    }
    println!(
        "wrote {} events ({ops} ops, {keys} keys, {procs} processes, seed {seed}) to {out}",
        events.len()
    );
    Ok(())
}

fn info_heavy(a: &[String]) -> Result<bool, String> {
    let num = |i: usize, d: u64| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (gm, model) = match a.get(2).map(String::as_str) {
        Some("register") => (histgen::GenModel::Register, ModelKind::Register),
        Some("cas-register") => (histgen::GenModel::CasRegister, ModelKind::CasRegister),
        Some("kv") => (histgen::GenModel::Kv, ModelKind::Kv),
        Some("append") => (histgen::GenModel::Append, ModelKind::Append),
        other => return Err(format!("unknown model {other:?}")),
    };
    let (ops, procs, permille, seed) = (num(3, 10_000), num(4, 10), num(5, 50), num(6, 1));
    let stale = a.get(7).map(String::as_str) == Some("stale");
    // `FAULTLINE_INFO_FILE`: check this JSONL history instead of generating one.
    let mut events = match std::env::var("FAULTLINE_INFO_FILE") {
        Ok(f) => {
            let text = std::fs::read_to_string(&f).map_err(|e| format!("{f}: {e}"))?;
            parse_str(&f, &text, Format::Jsonl)
                .map_err(|e| e.to_string())?
                .events
        }
        Err(_) => histgen::generate(&histgen::GenParams {
            model: gm,
            ops: ops as usize,
            keys: 1,
            procs: procs as usize,
            info_rate: permille as f64 / 1000.0,
            latency: 20,
            seed,
        }),
    };
    if stale && histgen::inject_stale_read(&mut events, 0.6).is_none() {
        return Err("no read to make stale".into());
    }
    let paired = pair("gen", &events).map_err(|e| e.to_string())?;
    let info = paired
        .iter()
        .filter(|o| o.outcome == faultline_history::Outcome::Info)
        .count();
    let mut opts = LinOptions::new(model);
    opts.time_limit = Some(std::time::Duration::from_secs(num(8, 60)));
    let r = check_linearizable(&paired, &opts).map_err(|e| e.to_string())?;
    println!(
        "{} {} ops ({info} info, {} searched), {procs} processes, seed {seed}{}: {} in {:.1} ms ({} steps, shrink {:.1} ms)",
        model.name(),
        paired.len(),
        r.ops,
        if stale { ", one stale read" } else { "" },
        r.verdict.name(),
        r.check_ms,
        r.steps,
        r.shrink_ms
    );
    let expected = if stale { "invalid" } else { "valid" };
    Ok(r.verdict.name() == expected)
}

fn main() -> ExitCode {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize| a.get(i).map(String::as_str).unwrap_or("");
    let num = |i: usize, d: usize| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let result = match arg(1) {
        "one" => one(arg(2), arg(3), num(4, 3)).map(|()| true),
        "corpus" => corpus(arg(2), num(3, 3)),
        "gen" => generate_file(arg(2), num(3, 100_000), num(4, 100), num(5, 32), num(6, 1) as u64).map(|()| true),
        "info" => info_heavy(&a),
        _ => Err("usage: bench_checker corpus ROOT [RUNS] | one FORMAT-MODEL FILE RUNS | gen OUT OPS KEYS PROCS SEED | info MODEL OPS PROCS INFO_PERMILLE SEED [stale|-] [TIME_LIMIT_S]".into()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench_checker: {e}");
            ExitCode::from(3)
        }
    }
}

//! The one-screen summary a run prints at its end, and its verdict sentence.

use std::path::Path;
use std::time::Duration;

use faultline_checkers::Judgement;

use crate::exit::Exit;
use crate::settings::Settings;
use crate::store::Results;

/// Everything the summary shows.
pub struct Summary<'a> {
    /// The run's settings.
    pub settings: &'a Settings,
    /// The run folder.
    pub dir: &'a Path,
    /// What was stored in `results.json`.
    pub results: &'a Results,
    /// The checker's judgement.
    pub judgement: &'a Judgement,
    /// Final reads that returned ok, of those asked, if the run got there.
    pub final_reads: Option<(usize, usize)>,
    /// The exit.
    pub exit: Exit,
    /// Wall time.
    pub wall: Duration,
    /// The report's lines (latency, faults, where the page is).
    pub report_lines: &'a [String],
}

impl Summary<'_> {
    /// Prints the summary and the verdict sentence to stdout.
    pub fn print(&self) {
        let s = self.settings;
        let r = self.results;
        println!();
        println!(
            "faultline run: {} on {} · {} nodes · {} s · {} workers · rate {} · reads {} · nemesis {} · seed {}",
            s.workload,
            s.system,
            s.nodes,
            s.time_limit_s,
            s.concurrency,
            if s.rate > 0.0 {
                format!("{}/s", s.rate)
            } else {
                "max".into()
            },
            s.read_mode.name(),
            s.nemesis.names(),
            s.seed
        );
        println!("  drawn     {}", crate::settings::describe_drawn(s));
        println!(
            "  ops       {} ok · {} fail · {} info · {} pending   ({:.1} ok/s)",
            r.ops.ok, r.ops.fail, r.ops.info, r.ops.pending, r.throughput_ok_per_s
        );
        if let Some(l) = &r.latency_ms {
            println!(
                "  latency   p50 {:.1} ms · p99 {:.1} ms · max {:.1} ms  (ok and fail)",
                l.p50, l.p99, l.max
            );
        }
        let faults: Vec<String> = r.faults.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
        println!(
            "  faults    {}",
            if faults.is_empty() {
                "none".to_string()
            } else {
                faults.join(" · ")
            }
        );
        if let Some(m) = &r.membership {
            println!("  membership: {}", m.line());
        }
        if r.client_restarts > 0 {
            println!(
                "  clients   {} client program restart(s) (a client exited or stopped answering; its op is info)",
                r.client_restarts
            );
        }
        if !r.coverage.is_empty() {
            println!("  coverage  {}", crate::coverage::line(&r.coverage));
            let never = crate::coverage::never(&r.coverage);
            if !never.is_empty() {
                println!("            never exercised: {}", never.join(", "));
            }
        }
        if let Some((ok, of)) = self.final_reads {
            println!("  final     {ok}/{of} final reads ok");
        }
        println!("  checker   {}", self.judgement.summary);
        println!(
            "  stored    {}  ({:.1} s wall)",
            self.dir.display(),
            self.wall.as_secs_f64()
        );
        for line in self.report_lines {
            println!("{line}");
        }
        if let Some(e) = &r.harness_error {
            println!("  error     {e}");
        }
        println!("{} (exit {})", self.sentence(), self.exit.code());
    }

    /// The verdict in one sentence.
    pub fn sentence(&self) -> String {
        let checker = self.judgement.checker;
        match (self.exit, self.results.interrupted) {
            (Exit::Valid, _) => format!(
                "Valid: the {} operations of this history {}.",
                self.results.ops.total,
                checker.holds()
            ),
            (Exit::Invalid, _) => format!(
                "Invalid: the history {}; see results.json for the witness.{}",
                checker.broken(),
                self.judgement.detail["caveat"]
                    .as_str()
                    .map(|c| format!(" Caveat: {c}."))
                    .unwrap_or_default()
            ),
            (Exit::Unknown, true) => {
                "Unknown: the run was interrupted; what it recorded shows no violation.".to_string()
            }
            (Exit::Unknown, false) => format!(
                "Unknown: the checker could not decide ({}).",
                self.judgement.summary
            ),
            _ => "Error: the harness or the cluster failed; the verdict is unknown.".to_string(),
        }
    }
}

//! The mount server: mounts one faultline-diskfs view and answers control
//! requests on stdin/stdout (see `faultline_diskfs::serve`) until told to
//! unmount, until its stdin ends, or until SIGTERM/SIGINT/SIGHUP.
//!
//! Exit codes: 0 after a clean unmount, 1 when mounting or unmounting
//! failed, 2 on a bad command line.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;

use anyhow::Context as _;
use clap::Parser;
use faultline_diskfs::serve::{self, Ready, Reply, Request};
use faultline_diskfs::{MountOptions, mount};
use nix::sys::signal::{SigSet, Signal};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "faultline-diskfs",
    about = "faultline's disk-fault FUSE mount server"
)]
struct Args {
    /// The backing directory (created if missing).
    #[arg(long)]
    backing: PathBuf,
    /// The mount point (created if missing).
    #[arg(long)]
    mount: PathBuf,
    /// Threads serving FUSE requests.
    #[arg(long, default_value_t = MountOptions::default().threads)]
    threads: usize,
    /// Syncs do not fsync the backing file (measurements only).
    #[arg(long)]
    no_fsync_backing: bool,
}

/// Everything the main loop waits for.
enum Event {
    Line(String),
    Eof,
    Signal(Signal),
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faultline-diskfs: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    // Block the stop signals before any thread starts (threads inherit the
    // mask), so only the waiting thread below ever takes them.
    let mut stops = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        stops.add(s);
    }
    stops.thread_block().context("blocking signals")?;

    let opts = MountOptions {
        threads: args.threads,
        fsync_backing: !args.no_fsync_backing,
        ..MountOptions::default()
    };
    let m = mount(&args.backing, &args.mount, &opts)?;
    let control = m.control();

    let (tx, rx) = mpsc::channel();
    let sig_tx = tx.clone();
    std::thread::spawn(move || {
        if let Ok(sig) = stops.wait() {
            let _ = sig_tx.send(Event::Signal(sig));
        }
    });
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) => {
                    if tx.send(Event::Line(l)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(Event::Eof);
    });

    let mut out = std::io::stdout().lock();
    let ready = Ready {
        mountpoint: m.mountpoint().to_path_buf(),
        pid: std::process::id(),
    };
    writeln!(out, "{}", serde_json::to_string(&ready)?)?;
    out.flush()?;

    while let Ok(ev) = rx.recv() {
        let req = match ev {
            Event::Eof => break,
            Event::Signal(sig) => {
                eprintln!("faultline-diskfs: {sig}: unmounting");
                break;
            }
            Event::Line(l) if l.trim().is_empty() => continue,
            Event::Line(l) => l,
        };
        let (reply, stop) = match serde_json::from_str::<Request>(&req) {
            Ok(Request::Unmount) => (Reply::Ok, true),
            Ok(r) => (serve::apply(&control, r), false),
            Err(e) => (
                Reply::Error {
                    message: format!("bad request {req:?}: {e}"),
                },
                false,
            ),
        };
        if stop {
            m.unmount()?;
            writeln!(out, "{}", serde_json::to_string(&reply)?)?;
            out.flush()?;
            return Ok(());
        }
        writeln!(out, "{}", serde_json::to_string(&reply)?)?;
        out.flush()?;
    }
    m.unmount()?;
    Ok(())
}

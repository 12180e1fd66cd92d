//! The mount server: mounts one faultline-diskfs view and answers control
//! requests on stdin/stdout (see `faultline_diskfs::serve`) until told to
//! unmount, until its stdin ends, or until SIGTERM/SIGINT/SIGHUP.
//!
//! Exit codes: 0 after a clean unmount, 1 when mounting or unmounting
//! failed, 2 on a bad command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use faultline_diskfs::MountOptions;

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
    let opts = MountOptions {
        threads: args.threads,
        fsync_backing: !args.no_fsync_backing,
        ..MountOptions::default()
    };
    match faultline_diskfs::serve::run(&args.backing, &args.mount, &opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faultline-diskfs: error: {e}");
            ExitCode::from(1)
        }
    }
}

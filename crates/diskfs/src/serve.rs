//! The control protocol of a mount server running as its own process (the
//! hidden `faultline-diskfs` binary): one JSON request per line on its
//! stdin, one JSON reply per line on its stdout. The controller runs one
//! server per node under its supervisor, so a kill of the controller takes
//! the servers (and, through `fusermount3`, their mounts) with it.
//!
//! The server first prints a [`Ready`] line once the mount is live. It
//! unmounts and exits 0 on `{"op":"unmount"}`, at the end of its stdin
//! (the controller is gone) and on SIGTERM, SIGINT or SIGHUP.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::mpsc;

use nix::sys::signal::{SigSet, Signal};
use serde::{Deserialize, Serialize};

use crate::{Control, Damage, DamageKind, DiskError, Lost, MountOptions, Stats, mount};

/// The first line a server prints: the mount is live.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    /// The mount point (canonical).
    pub mountpoint: PathBuf,
    /// The server's process id.
    pub pid: u32,
}

/// One request to a server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// [`Control::lose_unsynced`].
    LoseUnsynced {
        /// The torn fraction of the last write, if any.
        #[serde(default)]
        torn: Option<f64>,
    },
    /// [`Control::set_full`].
    SetFull {
        /// On or off.
        full: bool,
    },
    /// [`Control::unsynced_bytes`].
    UnsyncedBytes,
    /// [`Control::stats`].
    Stats,
    /// [`Control::truncate_tail`].
    TruncateTail {
        /// Path relative to the mount.
        path: PathBuf,
        /// Bytes to cut.
        bytes: u64,
    },
    /// [`Control::flip_bits`].
    FlipBits {
        /// Path relative to the mount.
        path: PathBuf,
        /// First byte.
        offset: u64,
        /// Bits (one per byte).
        count: u64,
    },
    /// [`Control::damage`].
    Damage {
        /// Picks the file and the place.
        seed: u64,
        /// What to do.
        kind: DamageKind,
        /// Only files whose name ends with this.
        #[serde(default)]
        suffix: Option<String>,
    },
    /// Unmount and exit.
    Unmount,
}

/// The reply to one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Reply {
    /// Done, nothing to report.
    Ok,
    /// What was lost.
    Lost(Lost),
    /// A byte count.
    Bytes {
        /// The count.
        bytes: u64,
    },
    /// Traffic counters.
    Stats(Stats),
    /// Damage done.
    Damage(Damage),
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Carries out one request (all but [`Request::Unmount`], which the server
/// loop handles).
pub fn apply(control: &Control, req: Request) -> Reply {
    let done = match req {
        Request::LoseUnsynced { torn } => control.lose_unsynced(torn).map(Reply::Lost),
        Request::SetFull { full } => {
            control.set_full(full);
            Ok(Reply::Ok)
        }
        Request::UnsyncedBytes => Ok(Reply::Bytes {
            bytes: control.unsynced_bytes(),
        }),
        Request::Stats => Ok(Reply::Stats(control.stats())),
        Request::TruncateTail { path, bytes } => {
            control.truncate_tail(&path, bytes).map(Reply::Damage)
        }
        Request::FlipBits {
            path,
            offset,
            count,
        } => control.flip_bits(&path, offset, count).map(Reply::Damage),
        Request::Damage { seed, kind, suffix } => control
            .damage(seed, kind, suffix.as_deref())
            .map(Reply::Damage),
        Request::Unmount => Ok(Reply::Ok),
    };
    done.unwrap_or_else(|e| Reply::Error {
        message: e.to_string(),
    })
}

/// Everything the server loop waits for.
enum Event {
    Line(String),
    Eof,
    Signal(Signal),
}

fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> DiskError {
    move |source| DiskError::Io {
        op,
        path: PathBuf::from("-"),
        source,
    }
}

/// Runs a mount server on this process's stdin and stdout: mounts
/// `mountpoint` over `backing`, prints [`Ready`], answers requests, and
/// unmounts at the end (see the module docs). Call it before this process
/// starts any other thread: it blocks the stop signals for the whole
/// process so that one thread of its own receives them.
pub fn run(
    backing: &std::path::Path,
    mountpoint: &std::path::Path,
    opts: &MountOptions,
) -> Result<(), DiskError> {
    let mut stops = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        stops.add(s);
    }
    // Threads inherit the mask: block before the FUSE threads start.
    stops
        .thread_block()
        .map_err(|e| io("blocking signals")(e.into()))?;
    let m = mount(backing, mountpoint, opts)?;
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
    let mut say = |line: String| -> Result<(), DiskError> {
        writeln!(out, "{line}").map_err(io("writing to stdout"))?;
        out.flush().map_err(io("writing to stdout"))
    };
    let ready = Ready {
        mountpoint: m.mountpoint().to_path_buf(),
        pid: std::process::id(),
    };
    say(json(&ready))?;
    while let Ok(ev) = rx.recv() {
        let line = match ev {
            Event::Eof => break,
            Event::Signal(sig) => {
                eprintln!("faultline-diskfs: {sig}: unmounting");
                break;
            }
            Event::Line(l) if l.trim().is_empty() => continue,
            Event::Line(l) => l,
        };
        match serde_json::from_str::<Request>(&line) {
            Ok(Request::Unmount) => {
                m.unmount()?;
                return say(json(&Reply::Ok));
            }
            Ok(r) => say(json(&apply(&control, r)))?,
            Err(e) => say(json(&Reply::Error {
                message: format!("bad request {line:?}: {e}"),
            }))?,
        }
    }
    m.unmount()
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| format!(r#"{{"result":"error","message":"{e}"}}"#))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_have_a_stable_wire_form() {
        let r: Request = serde_json::from_str(r#"{"op":"lose-unsynced","torn":0.5}"#).unwrap();
        assert_eq!(r, Request::LoseUnsynced { torn: Some(0.5) });
        let r: Request = serde_json::from_str(r#"{"op":"lose-unsynced"}"#).unwrap();
        assert_eq!(r, Request::LoseUnsynced { torn: None });
        let r: Request =
            serde_json::from_str(r#"{"op":"damage","seed":7,"kind":"flip-bits","suffix":".log"}"#)
                .unwrap();
        assert_eq!(
            r,
            Request::Damage {
                seed: 7,
                kind: DamageKind::FlipBits,
                suffix: Some(".log".into())
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"format-disk"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&Reply::Bytes { bytes: 3 }).unwrap(),
            r#"{"result":"bytes","bytes":3}"#
        );
        assert_eq!(
            serde_json::to_string(&Reply::Ok).unwrap(),
            r#"{"result":"ok"}"#
        );
    }
}

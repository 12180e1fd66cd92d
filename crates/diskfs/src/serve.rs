//! The control protocol of a mount server running as its own process (the
//! hidden `faultline-diskfs` binary): one JSON request per line on its
//! stdin, one JSON reply per line on its stdout. The controller runs one
//! server per node under its supervisor, so a kill of the controller takes
//! the servers (and, through `fusermount3`, their mounts) with it.
//!
//! The server first prints a [`Ready`] line once the mount is live. It
//! unmounts and exits 0 on `{"op":"unmount"}`, at the end of its stdin
//! (the controller is gone) and on SIGTERM, SIGINT or SIGHUP.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Control, Damage, DamageKind, Lost, Stats};

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

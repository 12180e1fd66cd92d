//! faultline-diskfs: a FUSE filesystem that forgets unsynced writes on
//! demand, for the `disk` nemesis.
//!
//! `kill -9` keeps the kernel's page cache, so a node that never fsyncs
//! loses nothing when it is killed. Here a node's data directory is a FUSE
//! mount: a passthrough view of a backing directory in which every file
//! write is held in this process's memory (per file, as byte ranges) until
//! the file is fsynced. [`Control::lose_unsynced`] drops what was held, as a
//! power cut would, optionally keeping a prefix of the last write (a torn
//! write); [`Control::set_full`] makes writes fail with ENOSPC; and
//! [`truncate_tail`], [`flip_bits`] and [`damage`] change backing files.
//!
//! What is and is not cached, and so what a power cut loses:
//!
//! - File data: held until fsync/fdatasync (or a write through an O_SYNC or
//!   O_DSYNC handle). Closing a file does not make it durable. Reads see
//!   the held data over the backing file.
//! - Metadata goes straight to the backing directory and is durable at
//!   once (a simplification: real filesystems can lose a create or a rename
//!   that was not followed by a directory fsync): create, mkdir, mknod,
//!   symlink, unlink, rmdir, rename, truncate, chmod, chown, utimes. The
//!   unsynced data of a renamed file moves with it, so write-then-rename
//!   without fsync leaves an empty (or old) file after a power cut, as on
//!   ext4 without its rename heuristics. Directory fsync works (it fsyncs
//!   the backing directory).
//! - Hard links are refused (EPERM); O_DIRECT opens fail with EINVAL;
//!   fallocate fails with EOPNOTSUPP (callers fall back to writing). Every
//!   file is opened for direct I/O, so the mount has no page cache of its
//!   own; shared mmap is allowed where the kernel supports it on such files
//!   (Linux 6.6+, else it fails with ENODEV): mapped pages are cached by the
//!   kernel, reach this cache when written back, msync is an fsync, and
//!   [`Control::lose_unsynced`] first makes the kernel write back what a
//!   killed process left dirty (syncfs), then drops it like any write.
//! - While full, syncs of data already accepted still succeed.
//!
//! Damage helpers act on backing files only and are for a node that is
//! down: call them after [`Control::lose_unsynced`].
//!
//! Layout in a faultline run folder: the node's data directory
//! `nodes/<id>/` is the mount point and `nodes/<id>.disk/` beside it the
//! backing directory, so after a run the data is in `<id>.disk`.
//!
//! Unmounting: dropping a [`Mount`] (or [`Mount::unmount`]) detaches the
//! mount at once. If the process dies instead (SIGKILL included), the
//! `fusermount3` helper that mounted it (with `auto_unmount`) notices and
//! unmounts it, so no mount outlives its server. This needs Debian's
//! `fuse3` package (`fusermount3`); running as root, nothing else (no
//! libfuse headers, no pkg-config). A non-root user also needs
//! `user_allow_other` in /etc/fuse.conf, which `auto_unmount` requires.

mod cache;
mod control;
mod fs;
mod mount;
pub mod serve;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

pub use control::{
    Control, Damage, DamageKind, Lost, LostFile, Stats, Torn, damage, files, flip_bits,
    truncate_tail,
};
pub use mount::{Mount, MountOptions, fuse_available, fuse_mounts, mount};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Mounting failed.
    #[error("mounting {mountpoint} (backing {backing}): {source}")]
    Mount {
        /// The mount point.
        mountpoint: PathBuf,
        /// The backing directory.
        backing: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Unmounting failed or did not finish.
    #[error("unmounting {mountpoint}: {reason}")]
    Unmount {
        /// The mount point.
        mountpoint: PathBuf,
        /// Why.
        reason: String,
    },
    /// An operating-system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A bad argument (a path outside the mount, a fraction outside 0..=1).
    #[error("{0}")]
    InvalidArgument(String),
    /// [`damage`] found no file to damage.
    #[error("no non-empty file{} under {dir} to damage", if suffix.is_empty() { String::new() } else { format!(" ending in {suffix:?}") })]
    NoFile {
        /// The backing directory.
        dir: PathBuf,
        /// The name suffix asked for (empty for any).
        suffix: String,
    },
}

/// Locks a cache, recovering from a poisoned lock (see `fs::lock`).
pub(crate) fn fs_lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

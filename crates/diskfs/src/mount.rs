//! Mounting and unmounting: the FUSE session on its own threads, the
//! `fusermount3` helper that unmounts if this process dies, and a look at
//! the mount table.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, Config, MountOption, SessionACL};
use nix::errno::Errno;
use nix::mount::MntFlags;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::DiskError;
use crate::control::Control;
use crate::fs::{DiskFs, Shared};

/// How long an unmount waits for the server threads and the helper to end.
const UNMOUNT_DEADLINE: Duration = Duration::from_secs(10);
/// How often it looks while waiting.
const POLL: Duration = Duration::from_millis(2);

/// Settings of a mount.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Threads serving FUSE requests.
    pub threads: usize,
    /// Whether a sync fsyncs the backing file (true: what the issue's
    /// durability model says; false only measures the FUSE layer alone).
    pub fsync_backing: bool,
    /// Largest write request to ask the kernel for (it caps this, by
    /// default at 1 MiB).
    pub max_write: u32,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            threads: 2,
            fsync_backing: true,
            max_write: 1 << 20,
        }
    }
}

/// A live mount; dropping it unmounts.
#[derive(Debug)]
pub struct Mount {
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
    control: Control,
    /// The `fusermount3` process watching this one (to reap it).
    helper: Option<Pid>,
}

/// Why FUSE cannot be used here (`/dev/fuse` is absent), or `Ok`.
pub fn fuse_available() -> Result<(), String> {
    if Path::new("/dev/fuse").exists() {
        Ok(())
    } else {
        Err("/dev/fuse is absent".into())
    }
}

/// True when `fusermount3`, which mounts and unmounts for us, is on the PATH.
fn fusermount3_found() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").is_file()))
}

/// Mounts a view of `backing` at `mountpoint` (both created if missing).
pub fn mount(backing: &Path, mountpoint: &Path, opts: &MountOptions) -> Result<Mount, DiskError> {
    let fail = |source| DiskError::Mount {
        mountpoint: mountpoint.to_path_buf(),
        backing: backing.to_path_buf(),
        source,
    };
    if !fusermount3_found() {
        return Err(fail(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "fusermount3 is not on the PATH (install Debian's fuse3 package)",
        )));
    }
    fs::create_dir_all(backing).map_err(fail)?;
    fs::create_dir_all(mountpoint).map_err(fail)?;
    let root = backing.canonicalize().map_err(fail)?;
    let mountpoint = mountpoint.canonicalize().map_err(fail)?;
    let meta = fs::metadata(&root).map_err(fail)?;
    let shared = Arc::new(Shared::new(root, &meta, opts.fsync_backing, opts.max_write));
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("faultline-diskfs:{}", shared.root.display())),
        MountOption::Subtype("faultline-diskfs".into()),
        // fusermount3 stays beside us and unmounts when we die.
        MountOption::AutoUnmount,
        MountOption::NoAtime,
    ];
    // auto_unmount needs allow_other; fuser still refuses other users.
    config.acl = SessionACL::RootAndOwner;
    config.n_threads = Some(opts.threads.max(1));
    let fs = DiskFs {
        shared: shared.clone(),
    };
    let session =
        fuser::spawn_mount(fs, &mountpoint, &config).map_err(|source| DiskError::Mount {
            mountpoint: mountpoint.clone(),
            backing: backing.to_path_buf(),
            source,
        })?;
    let helper = find_helper(&mountpoint);
    *crate::fs_lock(&shared.mounted) = Some(mountpoint.clone());
    Ok(Mount {
        session: Some(session),
        mountpoint,
        control: Control { shared },
        helper,
    })
}

impl Mount {
    /// A handle on this mount's faults.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// The mount point (canonical).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts now, waiting until the server threads and the helper have
    /// ended. Processes that still have files open on the mount see it
    /// detached (their descriptors keep working until closed).
    pub fn unmount(mut self) -> Result<(), DiskError> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> Result<(), DiskError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        *crate::fs_lock(&self.control.shared.mounted) = None;
        let fail = |reason: String| DiskError::Unmount {
            mountpoint: self.mountpoint.clone(),
            reason,
        };
        // Detach first, so the mount table loses the entry whatever still
        // holds files open; as root this needs no helper.
        match nix::mount::umount2(&self.mountpoint, MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(Errno::EPERM) => {
                let out = std::process::Command::new("fusermount3")
                    .args(["-u", "-z", "--"])
                    .arg(&self.mountpoint)
                    .output()
                    .map_err(|e| fail(format!("running fusermount3 -u: {e}")))?;
                if !out.status.success() {
                    return Err(fail(format!(
                        "fusermount3 -u: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
            }
            Err(e) => return Err(fail(format!("umount2: {e}"))),
        }
        // The server threads end when the kernel drops the connection,
        // which it does once no file on the detached mount is open.
        let deadline = Instant::now() + UNMOUNT_DEADLINE;
        while !session.guard.is_finished() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        let mut result = Ok(());
        if session.guard.is_finished() {
            // Joining drops the socket to fusermount3, which then exits.
            if let Err(e) = session.join() {
                result = Err(fail(format!("server thread: {e}")));
            }
        } else {
            // Files are still open on the detached mount: leave the server
            // running for them (closing the socket lets the helper go).
            drop(session);
            result = Err(fail(format!(
                "files still open on the detached mount after {UNMOUNT_DEADLINE:?}"
            )));
        }
        if let Some(pid) = self.helper.take() {
            reap(pid, deadline);
        }
        result
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_inner() {
            eprintln!("faultline-diskfs: {e}");
        }
    }
}

/// Waits (until `deadline`) for our child `pid` to exit, so no zombie stays.
fn reap(pid: Pid, deadline: Instant) {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => std::thread::sleep(POLL),
            _ => return,
        }
    }
}

/// The `fusermount3 ... <mountpoint>` child that fuser started for us.
fn find_helper(mountpoint: &Path) -> Option<Pid> {
    let me = std::process::id().to_string();
    let mp = mountpoint.as_os_str().as_encoded_bytes();
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // The parent pid is the second field after the parenthesised name.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if ppid != Some(me.as_str()) {
            continue;
        }
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let mut args = cmdline.split(|b| *b == 0);
        let is_helper = args
            .next()
            .is_some_and(|a| a.ends_with(b"fusermount3") || a.ends_with(b"fusermount"));
        if is_helper && cmdline.split(|b| *b == 0).any(|a| a == mp) {
            return Some(Pid::from_raw(pid));
        }
    }
    None
}

/// Every FUSE mount point in this process's mount table at or under
/// `under` (for tests and for checking that a run left nothing mounted).
pub fn fuse_mounts(under: &Path) -> Vec<PathBuf> {
    let Ok(table) = fs::read_to_string("/proc/self/mounts") else {
        return Vec::new();
    };
    table
        .lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let (_src, mp, fstype) = (f.next()?, f.next()?, f.next()?);
            fstype
                .starts_with("fuse")
                .then(|| PathBuf::from(unescape(mp)))
        })
        .filter(|p| p.starts_with(under))
        .collect()
}

/// Undoes the octal escapes (`\040` for a space) of the mount table.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_be_shared_across_threads() {
        // The controller keeps mounts in a cluster that its tasks share.
        fn shareable<T: Send + Sync>() {}
        shareable::<Mount>();
        shareable::<Control>();
    }

    #[test]
    fn mount_table_escapes_are_undone() {
        assert_eq!(unescape(r"/a\040b/c"), "/a b/c");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/end\04"), r"/end\04");
    }
}

//! The fault controls of a mount: lose unsynced writes (optionally tearing
//! the last one), fill the disk, and damage backing files.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::DiskError;
use crate::fs::Shared;

/// A cloneable, thread-safe handle on one mount's faults.
#[derive(Clone, Debug)]
pub struct Control {
    pub(crate) shared: Arc<Shared>,
}

/// What [`Control::lose_unsynced`] dropped, for the nemesis's log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Lost {
    /// Each file that had unsynced data, with how many bytes it lost.
    pub files: Vec<LostFile>,
    /// Bytes dropped in all (a torn write's kept prefix not counted).
    pub bytes: u64,
    /// The torn write, when one was asked for and there was one.
    pub torn: Option<Torn>,
}

/// One file's lost unsynced data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LostFile {
    /// Path relative to the mount (`None` when the file had been unlinked).
    pub path: Option<PathBuf>,
    /// Unsynced bytes dropped.
    pub bytes: u64,
}

/// A torn write: a prefix of a file's last unsynced write that survived.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Torn {
    /// Path relative to the mount.
    pub path: Option<PathBuf>,
    /// Byte offset of the write.
    pub offset: u64,
    /// Bytes of it kept (written to the backing file).
    pub kept: u64,
    /// The write's length.
    pub len: u64,
}

/// The kinds of damage [`Control::damage`] can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DamageKind {
    /// Cut bytes off the end of a file.
    Truncate,
    /// Flip bits in the middle half of a file.
    FlipBits,
}

/// Damage done to a backing file, for the nemesis's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Damage {
    /// Path relative to the mount.
    pub path: PathBuf,
    /// What was done.
    pub kind: DamageKind,
    /// Truncate: the new length; flip-bits: the first byte changed.
    pub offset: u64,
    /// Truncate: bytes cut; flip-bits: bits flipped (one per byte).
    pub count: u64,
    /// The file's length before.
    pub len_before: u64,
}

/// Counters of the mount's traffic, for measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Write requests served.
    pub writes: u64,
    /// Bytes they carried.
    pub write_bytes: u64,
    /// Read requests served.
    pub reads: u64,
    /// fsync/fdatasync requests served.
    pub fsyncs: u64,
    /// Bytes those syncs wrote to backing files.
    pub synced_bytes: u64,
}

impl Control {
    /// Drops every file's unsynced data, as a power cut would; the node
    /// using the mount must be down (killed) when this is called. With
    /// `torn = Some(f)`, a prefix of `f` (0 to 1) of the most recent
    /// unsynced write across the mount is written to its backing file
    /// first: a torn write (any earlier unsynced writes of that file are
    /// still dropped, so a torn write past them leaves a hole of zeros).
    pub fn lose_unsynced(&self, torn: Option<f64>) -> Result<Lost, DiskError> {
        if let Some(f) = torn
            && !(0.0..=1.0).contains(&f)
        {
            return Err(DiskError::InvalidArgument(format!(
                "torn fraction {f} is not between 0 and 1"
            )));
        }
        // Pages a process dirtied through a shared mapping may still be in
        // the kernel's page cache: push them here first, so that they are
        // dropped too (they are as unsynced as any write).
        let mounted = crate::fs_lock(&self.shared.mounted).clone();
        if let Some(mp) = mounted
            && let Ok(dir) = std::fs::File::open(&mp)
        {
            let _ = nix::unistd::syncfs(&dir);
        }
        let mut lost = Lost::default();
        let mut latest: Option<(u64, usize)> = None;
        let mut taken = Vec::new();
        for (path, cache) in self.shared.caches() {
            let mut c = crate::fs_lock(&cache);
            if c.extents.is_empty() {
                continue;
            }
            let extents = std::mem::take(&mut c.extents);
            let last = c.last.take();
            let writer = c.writer.take();
            drop(c);
            lost.bytes += extents.bytes();
            lost.files.push(LostFile {
                path: path.clone(),
                bytes: extents.bytes(),
            });
            if let Some(l) = last
                && latest.is_none_or(|(seq, _)| l.seq > seq)
            {
                latest = Some((l.seq, taken.len()));
            }
            taken.push((path, extents, last, writer));
        }
        if let (Some(f), Some((_, i))) = (torn, latest) {
            let (path, extents, last, writer) = &taken[i];
            let last = last.expect("chosen for its last write");
            let kept = ((last.len as f64) * f).floor() as u64;
            if kept > 0
                && let Some(w) = writer
            {
                let prefix = extents.slice(last.offset, kept);
                let io = |source| DiskError::Io {
                    op: "write torn prefix to",
                    path: self
                        .shared
                        .root
                        .join(path.as_deref().unwrap_or(Path::new("?"))),
                    source,
                };
                w.write_all_at(&prefix, last.offset).map_err(io)?;
                w.sync_data().map_err(io)?;
                lost.bytes -= kept;
                if let Some(lf) = lost.files.get_mut(i) {
                    lf.bytes -= kept;
                }
            }
            lost.torn = Some(Torn {
                path: path.clone(),
                offset: last.offset,
                kept,
                len: last.len,
            });
        }
        lost.files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(lost)
    }

    /// Turns the full disk on or off: while on, every write and create
    /// (and any truncate that grows a file, mkdir, mknod, symlink) fails
    /// with ENOSPC. Syncs of data already written still succeed, as on a
    /// filesystem that allocated the space when the write was accepted.
    pub fn set_full(&self, full: bool) {
        self.shared.full.store(full, Ordering::SeqCst);
    }

    /// Whether the disk is full now.
    pub fn is_full(&self) -> bool {
        self.shared.full.load(Ordering::SeqCst)
    }

    /// Bytes written but not yet synced, over all files.
    pub fn unsynced_bytes(&self) -> u64 {
        self.shared
            .caches()
            .iter()
            .map(|(_, c)| crate::fs_lock(c).extents.bytes())
            .sum()
    }

    /// The backing directory.
    pub fn backing(&self) -> &Path {
        &self.shared.root
    }

    /// The traffic counters so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            writes: c.writes.load(Ordering::Relaxed),
            write_bytes: c.write_bytes.load(Ordering::Relaxed),
            reads: c.reads.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            synced_bytes: c.synced_bytes.load(Ordering::Relaxed),
        }
    }

    /// [`truncate_tail`] on this mount's backing directory.
    pub fn truncate_tail(&self, path: &Path, bytes: u64) -> Result<Damage, DiskError> {
        truncate_tail(&self.shared.root, path, bytes)
    }

    /// [`flip_bits`] on this mount's backing directory.
    pub fn flip_bits(&self, path: &Path, offset: u64, count: u64) -> Result<Damage, DiskError> {
        flip_bits(&self.shared.root, path, offset, count)
    }

    /// [`damage`] on this mount's backing directory.
    pub fn damage(
        &self,
        seed: u64,
        kind: DamageKind,
        suffix: Option<&str>,
    ) -> Result<Damage, DiskError> {
        damage(&self.shared.root, seed, kind, suffix)
    }
}

/// `rel` inside `backing`, refusing absolute paths and `..`.
fn inside(backing: &Path, rel: &Path) -> Result<PathBuf, DiskError> {
    if rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && rel.components().next().is_some()
    {
        Ok(backing.join(rel))
    } else {
        Err(DiskError::InvalidArgument(format!(
            "{} is not a path inside the mount",
            rel.display()
        )))
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DiskError + 'a {
    move |source| DiskError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Cuts `bytes` off the end of the backing file `rel` (relative to the
/// backing directory; the whole file when it is shorter). Acts on the
/// backing file only: use it while the node is down and after its unsynced
/// data was dropped, or the dropped-or-not cache would hide the damage.
pub fn truncate_tail(backing: &Path, rel: &Path, bytes: u64) -> Result<Damage, DiskError> {
    let path = inside(backing, rel)?;
    let f = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(io_err("open", &path))?;
    let len = f.metadata().map_err(io_err("stat", &path))?.len();
    let new_len = len.saturating_sub(bytes);
    f.set_len(new_len).map_err(io_err("truncate", &path))?;
    f.sync_all().map_err(io_err("fsync", &path))?;
    Ok(Damage {
        path: rel.to_path_buf(),
        kind: DamageKind::Truncate,
        offset: new_len,
        count: len - new_len,
        len_before: len,
    })
}

/// Flips `count` bits of the backing file `rel`, one in each byte from
/// `offset` on (bit `i % 8` of byte `offset + i`). The range must lie
/// inside the file. Backing file only, like [`truncate_tail`].
pub fn flip_bits(backing: &Path, rel: &Path, offset: u64, count: u64) -> Result<Damage, DiskError> {
    let path = inside(backing, rel)?;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_err("open", &path))?;
    let len = f.metadata().map_err(io_err("stat", &path))?.len();
    if count == 0 || offset.checked_add(count).is_none_or(|end| end > len) {
        return Err(DiskError::InvalidArgument(format!(
            "cannot flip {count} bits from byte {offset} of {} ({len} bytes)",
            rel.display()
        )));
    }
    let mut buf = vec![0u8; count as usize];
    f.read_exact_at(&mut buf, offset)
        .map_err(io_err("read", &path))?;
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= 1 << (i % 8);
    }
    f.write_all_at(&buf, offset)
        .map_err(io_err("write", &path))?;
    f.sync_all().map_err(io_err("fsync", &path))?;
    Ok(Damage {
        path: rel.to_path_buf(),
        kind: DamageKind::FlipBits,
        offset,
        count,
        len_before: len,
    })
}

/// Every non-empty regular file under `backing`, relative and sorted (so a
/// seed picks the same file every time).
pub fn files(backing: &Path) -> Result<Vec<(PathBuf, u64)>, DiskError> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let dir = backing.join(&rel);
        for e in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let e = e.map_err(io_err("list", &dir))?;
            let ft = e.file_type().map_err(io_err("stat", &e.path()))?;
            let child = rel.join(e.file_name());
            if ft.is_dir() {
                dirs.push(child);
            } else if ft.is_file() {
                let len = e.metadata().map_err(io_err("stat", &e.path()))?.len();
                if len > 0 {
                    out.push((child, len));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Damages one backing file chosen by `seed` among the non-empty regular
/// files (those whose name ends with `suffix`, when given): truncation cuts
/// 1 byte to half the file (at most 64 KiB) off its end; bit flips change
/// 1 to 8 consecutive bytes in its middle half. Backing files only, like
/// [`truncate_tail`].
pub fn damage(
    backing: &Path,
    seed: u64,
    kind: DamageKind,
    suffix: Option<&str>,
) -> Result<Damage, DiskError> {
    let candidates: Vec<_> = files(backing)?
        .into_iter()
        .filter(|(p, _)| suffix.is_none_or(|s| p.to_string_lossy().ends_with(s)))
        .collect();
    if candidates.is_empty() {
        return Err(DiskError::NoFile {
            dir: backing.to_path_buf(),
            suffix: suffix.unwrap_or("").to_string(),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (rel, len) = &candidates[rng.random_range(0..candidates.len())];
    match kind {
        DamageKind::Truncate => {
            let most = (len / 2).clamp(1, 64 << 10);
            truncate_tail(backing, rel, rng.random_range(1..=most))
        }
        DamageKind::FlipBits => {
            let lo = len / 4;
            let hi = (len * 3 / 4).max(lo + 1);
            let offset = rng.random_range(lo..hi).min(len - 1);
            let count = rng.random_range(1..=8u64).min(len - offset);
            flip_bits(backing, rel, offset, count)
        }
    }
}

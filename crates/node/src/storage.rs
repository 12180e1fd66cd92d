//! Durable storage of one node: the log in CRC-framed segment files, the hard
//! state and the snapshot in atomically replaced files, and their recovery.
//!
//! Layout of a data directory:
//!
//! - `NNNNNNNNNNNNNNNNNNNN.log`: log segments, named by the index of their first
//!   entry. A segment is a sequence of records `[len u32 LE][crc32 u32 LE]
//!   [payload]`, the CRC covering the payload. A payload is a tag byte and then
//!   either a postcard-encoded [`Entry`] or a commit index (u64 LE).
//! - `hardstate`: term, vote and commit, `[crc32][postcard]`, replaced
//!   atomically whenever the term or vote changes.
//! - `snapshot`: the latest snapshot, `[len][crc32][postcard]`, replaced
//!   atomically.
//!
//! Changes of the commit index alone go into the log as small records instead
//! of rewriting `hardstate`: the commit index is not a promise to anyone (a
//! restarted node that remembers a lower one only re-applies more), so those
//! records need no fsync of their own and ride on the next batch's.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use faultline_raft::{Entry, HardState, Persisted, Snapshot};

/// Records larger than this are refused when written and treated as corrupt
/// when read (a flipped bit in a length must not make us allocate gigabytes).
const MAX_RECORD: usize = 256 << 20;
/// Record header: length then CRC32.
const HEADER: usize = 8;
const TAG_ENTRY: u8 = 1;
const TAG_COMMIT: u8 = 2;
const HARD_STATE_FILE: &str = "hardstate";
const SNAPSHOT_FILE: &str = "snapshot";

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
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
    /// A record before the tail of the log failed its check: the log cannot be
    /// trusted past it, and dropping what follows could lose acknowledged
    /// writes, so the node refuses to start.
    #[error(
        "corrupt log record in {path} at byte offset {offset}: {reason}; records follow it, so this is not a torn tail and the node will not start (restore the file or wipe this node's data directory to rejoin as an empty node)"
    )]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The hard-state or snapshot file failed its check.
    #[error("corrupt {path}: {reason}")]
    CorruptFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The driver asked for something that breaks the log's shape.
    #[error("invalid log operation: {0}")]
    Invalid(String),
}

/// Storage settings.
#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// Start a new segment once the current one is at least this large.
    pub segment_bytes: u64,
    /// When false, nothing is ever fsynced or fdatasynced, files nor
    /// directories (the `skip-fsync` test bug); everything else, the order
    /// of writes included, is unchanged.
    pub fsync: bool,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            segment_bytes: 64 << 20,
            fsync: true,
        }
    }
}

/// Makes files durable, or (with the `skip-fsync` bug) skips it, counting
/// the fsync and fdatasync calls it makes so tests can see which are skipped.
#[derive(Clone, Debug)]
struct Syncer {
    enabled: bool,
    /// Shared with the snapshot writer's thread.
    calls: Arc<AtomicU64>,
}

impl Syncer {
    fn file(&self, f: &File, data_only: bool, path: &Path) -> Result<(), StorageError> {
        if !self.enabled {
            return Ok(());
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        if data_only {
            f.sync_data()
        } else {
            f.sync_all()
        }
        .map_err(io_err("fsync", path))
    }

    fn dir(&self, dir: &Path) -> Result<(), StorageError> {
        if !self.enabled {
            return Ok(());
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        fsync_dir(dir)
    }
}

/// One segment file.
#[derive(Debug)]
struct Segment {
    /// Index of the first entry this segment holds (or would hold).
    first: u64,
    path: PathBuf,
    /// Bytes written so far.
    len: u64,
    /// Byte offset of entry `first + k`, for truncation.
    offsets: Vec<u64>,
}

impl Segment {
    fn last(&self) -> u64 {
        self.first + self.offsets.len() as u64 - 1
    }
}

/// The durable state of one node. Writes are buffered in the OS until
/// [`Storage::sync`], which makes everything written so far durable at once
/// (group commit: one fsync per batch).
#[derive(Debug)]
pub struct Storage {
    dir: PathBuf,
    opts: StorageOptions,
    syncer: Syncer,
    segments: Vec<Segment>,
    /// The open last segment.
    file: File,
    /// Index of the last entry in the log (or of the snapshot when empty).
    last_index: u64,
    snapshot_index: u64,
    hard_state: HardState,
    /// Something was written that the next `sync` must make durable.
    dirty: bool,
    /// A file was truncated, created or deleted: sync metadata too.
    dirty_meta: bool,
    buf: Vec<u8>,
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.log"))
}

fn fsync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Writes `bytes` to `dir/name` atomically: temp file, fsync, rename, fsync of
/// the directory. A crash leaves either the old or the new file.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8], syncer: &Syncer) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(bytes).map_err(io_err("write", &tmp))?;
    syncer.file(&f, false, &tmp)?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    syncer.dir(dir)
}

fn encode_record(out: &mut Vec<u8>, tag: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.push(tag);
    body(out);
    let payload = &out[start + HEADER..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A record read back from a segment.
enum Record {
    Entry(Entry),
    Commit(u64),
}

/// Parses the record at `off`; `Err` says why it is not a valid record.
fn parse_record(bytes: &[u8], off: usize) -> Result<(Record, usize), String> {
    let rest = &bytes[off..];
    if rest.len() < HEADER {
        return Err(format!(
            "incomplete header ({} of {HEADER} bytes)",
            rest.len()
        ));
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    if len == 0 || len > MAX_RECORD {
        return Err(format!("implausible record length {len}"));
    }
    if rest.len() < HEADER + len {
        return Err(format!(
            "record of {len} bytes runs past the end of the file ({} bytes left)",
            rest.len() - HEADER
        ));
    }
    let payload = &rest[HEADER..HEADER + len];
    if crc32fast::hash(payload) != crc {
        return Err("CRC mismatch".to_string());
    }
    let record = match payload[0] {
        TAG_ENTRY => Record::Entry(
            postcard::from_bytes(&payload[1..]).map_err(|e| format!("undecodable entry: {e}"))?,
        ),
        TAG_COMMIT if payload.len() == 9 => Record::Commit(u64::from_le_bytes(
            payload[1..9].try_into().expect("8 bytes"),
        )),
        t => return Err(format!("unknown record tag {t}")),
    };
    Ok((record, HEADER + len))
}

/// True when some valid record starts anywhere after `off`: then the bad record
/// at `off` is not a torn tail but damage in the middle of the log.
fn valid_record_after(bytes: &[u8], off: usize) -> bool {
    (off + 1..bytes.len().saturating_sub(HEADER)).any(|p| parse_record(bytes, p).is_ok())
}

impl Storage {
    /// Opens (creating if needed) the data directory and recovers what was
    /// persisted. A torn or corrupt final record of the last segment is
    /// truncated with a warning; any other damage is an error naming the file
    /// and offset.
    pub fn open(dir: &Path, opts: StorageOptions) -> Result<(Storage, Persisted), StorageError> {
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let syncer = Syncer {
            enabled: opts.fsync,
            calls: Arc::default(),
        };
        for leftover in [HARD_STATE_FILE, SNAPSHOT_FILE] {
            // A temp file is a write that never got renamed: it never counted.
            let _ = fs::remove_file(dir.join(format!("{leftover}.tmp")));
        }
        // Without fsync, write-then-rename can leave an empty or torn file
        // after a power cut; the skip-fsync node takes it for a fresh start
        // (the correct node never sees one, and refuses a damaged file).
        let empty_is_absent = !opts.fsync;
        let hard_state = damaged_is_absent(
            read_hard_state(dir, empty_is_absent),
            empty_is_absent,
            HardState::default(),
        )?;
        let snapshot =
            damaged_is_absent(read_snapshot(dir, empty_is_absent), empty_is_absent, None)?;
        let snapshot_index = snapshot.as_ref().map_or(0, |s| s.meta.index);

        let mut firsts = Vec::new();
        for item in fs::read_dir(dir).map_err(io_err("list", dir))? {
            let item = item.map_err(io_err("list", dir))?;
            let name = item.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".log")
                && let Ok(first) = stem.parse::<u64>()
            {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();

        let mut segments: Vec<Segment> = Vec::new();
        let mut entries: Vec<Entry> = Vec::new();
        let mut commit = hard_state.commit;
        let n = firsts.len();
        for (i, first) in firsts.into_iter().enumerate() {
            let path = segment_path(dir, first);
            let mut bytes = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io_err("read", &path))?;
            let mut seg = Segment {
                first,
                path: path.clone(),
                len: 0,
                offsets: Vec::new(),
            };
            let mut off = 0usize;
            while off < bytes.len() {
                match parse_record(&bytes, off) {
                    Ok((Record::Entry(e), used)) => {
                        let expected = seg.first + seg.offsets.len() as u64;
                        if e.index != expected {
                            return Err(StorageError::Corrupt {
                                path,
                                offset: off as u64,
                                reason: format!(
                                    "entry index {} where {expected} was expected",
                                    e.index
                                ),
                            });
                        }
                        seg.offsets.push(off as u64);
                        entries.push(e);
                        off += used;
                    }
                    Ok((Record::Commit(c), used)) => {
                        commit = commit.max(c);
                        off += used;
                    }
                    Err(reason) => {
                        if i + 1 == n && !valid_record_after(&bytes, off) {
                            tracing::warn!(
                                file = %path.display(),
                                offset = off,
                                dropped_bytes = bytes.len() - off,
                                "truncating torn or corrupt tail record of the log: {reason}"
                            );
                            let f = OpenOptions::new()
                                .write(true)
                                .open(&path)
                                .map_err(io_err("open", &path))?;
                            f.set_len(off as u64).map_err(io_err("truncate", &path))?;
                            syncer.file(&f, false, &path)?;
                            break;
                        }
                        return Err(StorageError::Corrupt {
                            path,
                            offset: off as u64,
                            reason,
                        });
                    }
                }
            }
            seg.len = off as u64;
            if let Some(prev) = segments.last()
                && !seg.offsets.is_empty()
                && !prev.offsets.is_empty()
                && prev.last() + 1 != seg.first
            {
                return Err(StorageError::Corrupt {
                    path: seg.path,
                    offset: 0,
                    reason: format!(
                        "segment starts at index {} but the previous one ends at {}",
                        seg.first,
                        prev.last()
                    ),
                });
            }
            segments.push(seg);
        }

        // Entries the snapshot covers are dead; a gap after the snapshot means
        // the log is from before an installed snapshot and is dropped whole.
        entries.retain(|e| e.index > snapshot_index);
        if entries
            .first()
            .is_some_and(|e| e.index != snapshot_index + 1)
        {
            tracing::warn!(
                snapshot_index,
                first = entries[0].index,
                "log does not continue the snapshot; dropping it"
            );
            entries.clear();
        }
        let mut last_index = entries.last().map_or(snapshot_index, |e| e.index);

        // Append to the last segment only if it ends exactly where the kept log
        // does; otherwise (no log yet, or a log from before an installed
        // snapshot) start a fresh one that continues the snapshot.
        let tail_next = segments.last().map(|s| s.first + s.offsets.len() as u64);
        if tail_next != Some(last_index + 1) {
            if !segments.is_empty() {
                tracing::warn!(
                    snapshot_index,
                    "log does not continue the snapshot; replacing it"
                );
            }
            entries.clear();
            last_index = snapshot_index;
            for s in segments.drain(..) {
                fs::remove_file(&s.path).map_err(io_err("remove", &s.path))?;
            }
            let path = segment_path(dir, last_index + 1);
            File::create(&path).map_err(io_err("create", &path))?;
            syncer.dir(dir)?;
            segments.push(Segment {
                first: last_index + 1,
                path,
                len: 0,
                offsets: Vec::new(),
            });
        }
        let hard_state = HardState {
            commit: commit.max(snapshot_index).min(last_index),
            ..hard_state
        };
        let cur = segments.last().expect("a segment");
        let file = OpenOptions::new()
            .append(true)
            .open(&cur.path)
            .map_err(io_err("open", &cur.path))?;
        let mut storage = Storage {
            dir: dir.to_path_buf(),
            opts,
            syncer,
            segments,
            file,
            last_index,
            snapshot_index,
            hard_state,
            dirty: false,
            dirty_meta: false,
            buf: Vec::with_capacity(1 << 16),
        };
        // Segments wholly covered by the snapshot can go now.
        storage.drop_covered_segments()?;
        Ok((
            storage,
            Persisted {
                hard_state,
                snapshot,
                entries,
            },
        ))
    }

    /// The index of the last persisted entry (or of the snapshot).
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// The index the persisted snapshot covers (0 = none).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    /// Appends entries, first deleting every persisted entry from the first
    /// one's index on if it does not follow the last one.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.last_index {
            tracing::info!(
                from = first.index,
                dropped = self.last_index + 1 - first.index,
                "truncated the log after a conflict"
            );
            self.truncate_from(first.index)?;
        } else if first.index != self.last_index + 1 {
            return Err(StorageError::Invalid(format!(
                "append at index {} leaves a gap after {}",
                first.index, self.last_index
            )));
        }
        if self.segments.last().expect("a segment").len >= self.opts.segment_bytes {
            self.roll()?;
        }
        self.buf.clear();
        let seg = self.segments.last_mut().expect("a segment");
        let base = seg.len;
        for e in entries {
            if e.index != self.last_index + 1 {
                return Err(StorageError::Invalid(format!(
                    "entries not contiguous: {} after {}",
                    e.index, self.last_index
                )));
            }
            seg.offsets.push(base + self.buf.len() as u64);
            encode_record(&mut self.buf, TAG_ENTRY, |out| {
                postcard::to_io(e, out).expect("writing to a Vec cannot fail");
            });
            self.last_index = e.index;
        }
        if self.buf.len() > MAX_RECORD * 4 {
            tracing::debug!(bytes = self.buf.len(), "large log batch");
        }
        self.file
            .write_all(&self.buf)
            .map_err(io_err("write", &seg.path))?;
        seg.len += self.buf.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Persists a hard state. A new term or vote replaces the `hardstate` file
    /// atomically; a new commit index alone is a log record.
    pub fn set_hard_state(&mut self, hs: HardState) -> Result<(), StorageError> {
        if hs == self.hard_state {
            return Ok(());
        }
        if hs.term != self.hard_state.term || hs.vote != self.hard_state.vote {
            // The log's pending writes must not become durable after a vote
            // that depends on them: sync them first.
            self.sync()?;
            let mut bytes = vec![0u8; 4];
            postcard::to_io(&hs, &mut bytes).expect("writing to a Vec cannot fail");
            let crc = crc32fast::hash(&bytes[4..]);
            bytes[0..4].copy_from_slice(&crc.to_le_bytes());
            write_atomic(&self.dir, HARD_STATE_FILE, &bytes, &self.syncer)?;
        } else {
            self.buf.clear();
            encode_record(&mut self.buf, TAG_COMMIT, |out| {
                out.extend_from_slice(&hs.commit.to_le_bytes());
            });
            let seg = self.segments.last_mut().expect("a segment");
            self.file
                .write_all(&self.buf)
                .map_err(io_err("write", &seg.path))?;
            seg.len += self.buf.len() as u64;
            // Deliberately not marking dirty: see the module comment.
        }
        self.hard_state = hs;
        Ok(())
    }

    /// Persists a snapshot made locally at an applied index, then deletes the
    /// log segments it wholly covers.
    pub fn save_snapshot(&mut self, snap: &Snapshot) -> Result<(), StorageError> {
        if snap.meta.index <= self.snapshot_index {
            return Ok(());
        }
        self.snapshot_writer().write(snap)?;
        self.snapshot_written(snap.meta.index)
    }

    /// A handle that writes snapshot files from another thread, so that a
    /// large snapshot does not stall the event loop. At most one write may be
    /// in flight, and none while [`Storage::install_snapshot`] runs.
    pub fn snapshot_writer(&self) -> SnapshotWriter {
        SnapshotWriter {
            dir: self.dir.clone(),
            syncer: self.syncer.clone(),
        }
    }

    /// Records that a snapshot at `index` is durable and deletes the log
    /// segments it wholly covers.
    pub fn snapshot_written(&mut self, index: u64) -> Result<(), StorageError> {
        if index <= self.snapshot_index {
            return Ok(());
        }
        self.snapshot_index = index;
        self.drop_covered_segments()
    }

    /// Persists a snapshot received from the leader and replaces the whole log
    /// with an empty one that continues it.
    pub fn install_snapshot(&mut self, snap: &Snapshot) -> Result<(), StorageError> {
        self.sync()?;
        self.write_snapshot_file(snap)?;
        self.snapshot_index = snap.meta.index;
        // Start the new segment before deleting the old ones, so that a crash
        // in between leaves a log recovery recognises as not continuing.
        let path = segment_path(&self.dir, snap.meta.index + 1);
        let file = File::create(&path).map_err(io_err("create", &path))?;
        self.syncer.dir(&self.dir)?;
        for s in self.segments.drain(..) {
            if s.path != path {
                fs::remove_file(&s.path).map_err(io_err("remove", &s.path))?;
            }
        }
        self.segments.push(Segment {
            first: snap.meta.index + 1,
            path,
            len: 0,
            offsets: Vec::new(),
        });
        self.file = file;
        self.last_index = snap.meta.index;
        self.dirty_meta = true;
        self.dirty = true;
        Ok(())
    }

    /// Makes everything written so far durable with one fsync.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        if !self.dirty && !self.dirty_meta {
            return Ok(());
        }
        let path = &self.segments.last().expect("a segment").path;
        if self.dirty_meta {
            self.syncer.file(&self.file, false, path)?;
            self.syncer.dir(&self.dir)?;
        } else {
            self.syncer.file(&self.file, true, path)?;
        }
        self.dirty = false;
        self.dirty_meta = false;
        Ok(())
    }

    /// How many fsync and fdatasync calls (of files and directories) this
    /// storage and its snapshot writers have made.
    pub fn sync_calls(&self) -> u64 {
        self.syncer.calls.load(Ordering::Relaxed)
    }

    /// True when written data awaits [`Storage::sync`].
    pub fn needs_sync(&self) -> bool {
        self.dirty || self.dirty_meta
    }

    fn write_snapshot_file(&mut self, snap: &Snapshot) -> Result<(), StorageError> {
        self.snapshot_writer().write(snap)
    }

    /// Deletes segments whose entries all lie at or below the snapshot index,
    /// keeping the one being appended to.
    fn drop_covered_segments(&mut self) -> Result<(), StorageError> {
        let mut removed = false;
        while self.segments.len() > 1 && self.segments[1].first <= self.snapshot_index + 1 {
            let s = self.segments.remove(0);
            fs::remove_file(&s.path).map_err(io_err("remove", &s.path))?;
            removed = true;
        }
        if removed {
            self.syncer.dir(&self.dir)?;
        }
        Ok(())
    }

    /// Starts a new segment after making the current one durable.
    fn roll(&mut self) -> Result<(), StorageError> {
        self.sync()?;
        // Commit-index records are written without marking the log dirty,
        // so `sync` may leave one unsynced: sync the segment regardless.
        // Once a newer segment exists, a torn tail in this one is no longer
        // a tail, and recovery refuses it (the node would never start).
        let old = &self.segments.last().expect("a segment").path;
        self.syncer.file(&self.file, true, old)?;
        let path = segment_path(&self.dir, self.last_index + 1);
        let file = File::create(&path).map_err(io_err("create", &path))?;
        self.syncer.dir(&self.dir)?;
        self.segments.push(Segment {
            first: self.last_index + 1,
            path,
            len: 0,
            offsets: Vec::new(),
        });
        self.file = file;
        Ok(())
    }

    /// Deletes every entry from `index` on.
    fn truncate_from(&mut self, index: u64) -> Result<(), StorageError> {
        if index <= self.snapshot_index {
            return Err(StorageError::Invalid(format!(
                "cannot truncate at {index}: the snapshot covers up to {}",
                self.snapshot_index
            )));
        }
        // Drop whole segments that start after the truncation point.
        while self.segments.len() > 1 && self.segments.last().expect("a segment").first >= index {
            let s = self.segments.pop().expect("a segment");
            fs::remove_file(&s.path).map_err(io_err("remove", &s.path))?;
        }
        let seg = self.segments.last_mut().expect("a segment");
        let keep = index.saturating_sub(seg.first) as usize;
        let cut = seg.offsets.get(keep).copied().unwrap_or(seg.len);
        seg.offsets.truncate(keep);
        seg.len = cut;
        let file = OpenOptions::new()
            .append(true)
            .open(&seg.path)
            .map_err(io_err("open", &seg.path))?;
        file.set_len(cut).map_err(io_err("truncate", &seg.path))?;
        self.file = file;
        self.last_index = index - 1;
        self.dirty_meta = true;
        Ok(())
    }
}

/// Writes the snapshot file of a data directory (see [`Storage::snapshot_writer`]).
#[derive(Clone, Debug)]
pub struct SnapshotWriter {
    dir: PathBuf,
    syncer: Syncer,
}

impl SnapshotWriter {
    /// Replaces the snapshot file atomically with `snap`.
    pub fn write(&self, snap: &Snapshot) -> Result<(), StorageError> {
        let mut bytes = vec![0u8; HEADER];
        postcard::to_io(snap, &mut bytes).expect("writing to a Vec cannot fail");
        let len = (bytes.len() - HEADER) as u32;
        let crc = crc32fast::hash(&bytes[HEADER..]);
        bytes[0..4].copy_from_slice(&len.to_le_bytes());
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        write_atomic(&self.dir, SNAPSHOT_FILE, &bytes, &self.syncer)
    }
}

/// With `lenient` (the skip-fsync node, whose files a power cut may tear),
/// a damaged hard state or snapshot file counts as absent, with a warning.
fn damaged_is_absent<T>(
    read: Result<T, StorageError>,
    lenient: bool,
    absent: T,
) -> Result<T, StorageError> {
    match read {
        Err(StorageError::CorruptFile { path, reason }) if lenient => {
            tracing::warn!(file = %path.display(), %reason, "damaged file of a node that never fsyncs: ignoring it");
            Ok(absent)
        }
        r => r,
    }
}

fn read_hard_state(dir: &Path, empty_is_absent: bool) -> Result<HardState, StorageError> {
    let path = dir.join(HARD_STATE_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) if b.is_empty() && empty_is_absent => {
            tracing::warn!(file = %path.display(), "empty hard state file: starting from term 0");
            return Ok(HardState::default());
        }
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HardState::default()),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let corrupt = |reason: &str| StorageError::CorruptFile {
        path: path.clone(),
        reason: reason.to_string(),
    };
    if bytes.len() < 5 {
        return Err(corrupt("too short"));
    }
    let crc = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[4..]) != crc {
        return Err(corrupt("CRC mismatch"));
    }
    postcard::from_bytes(&bytes[4..]).map_err(|e| corrupt(&format!("undecodable: {e}")))
}

fn read_snapshot(dir: &Path, empty_is_absent: bool) -> Result<Option<Snapshot>, StorageError> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) if b.is_empty() && empty_is_absent => {
            tracing::warn!(file = %path.display(), "empty snapshot file: ignoring it");
            return Ok(None);
        }
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let corrupt = |reason: &str| StorageError::CorruptFile {
        path: path.clone(),
        reason: reason.to_string(),
    };
    if bytes.len() < HEADER {
        return Err(corrupt("too short"));
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if bytes.len() != HEADER + len {
        return Err(corrupt("length does not match the header"));
    }
    if crc32fast::hash(&bytes[HEADER..]) != crc {
        return Err(corrupt("CRC mismatch"));
    }
    postcard::from_bytes(&bytes[HEADER..])
        .map(Some)
        .map_err(|e| corrupt(&format!("undecodable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_raft::{EntryKind, SnapshotMeta};

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: format!("cmd-{index}").into_bytes(),
        }
    }

    fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        range.map(|i| entry(i, term)).collect()
    }

    fn open(dir: &Path) -> (Storage, Persisted) {
        Storage::open(dir, StorageOptions::default()).expect("open")
    }

    fn only_segment(dir: &Path) -> PathBuf {
        let segs: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        assert_eq!(segs.len(), 1, "{segs:?}");
        segs[0].clone()
    }

    #[test]
    fn round_trip_entries_hard_state_and_commit_records() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, p) = open(dir.path());
            assert_eq!(p, Persisted::default());
            s.append(&entries(1..=5, 1)).unwrap();
            s.set_hard_state(HardState {
                term: 1,
                vote: Some(2),
                commit: 0,
            })
            .unwrap();
            s.set_hard_state(HardState {
                term: 1,
                vote: Some(2),
                commit: 4,
            })
            .unwrap();
            s.append(&entries(6..=6, 1)).unwrap();
            s.sync().unwrap();
        }
        let (s, p) = open(dir.path());
        assert_eq!(p.entries, entries(1..=6, 1));
        assert_eq!(
            p.hard_state,
            HardState {
                term: 1,
                vote: Some(2),
                commit: 4
            }
        );
        assert_eq!(s.last_index(), 6);
    }

    #[test]
    fn a_segment_is_synced_before_a_newer_one_starts_even_with_only_a_commit_record_pending() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StorageOptions {
            segment_bytes: 64,
            fsync: true,
        };
        let (mut s, _) = Storage::open(dir.path(), opts).unwrap();
        let mut i = 1;
        while s.segments.last().unwrap().len < 64 {
            s.append(&[entry(i, 1)]).unwrap();
            s.sync().unwrap();
            i += 1;
        }
        // A commit-index record: written, deliberately not marked dirty.
        s.set_hard_state(HardState {
            term: 0,
            vote: None,
            commit: i - 1,
        })
        .unwrap();
        assert!(!s.needs_sync());
        let before = s.sync_calls();
        let segments = s.segments.len();
        s.append(&[entry(i, 1)]).unwrap();
        assert_eq!(s.segments.len(), segments + 1, "the append rolled");
        // The old segment (its commit record) and the directory.
        assert_eq!(s.sync_calls() - before, 2);
    }

    #[test]
    fn conflicting_append_truncates_suffix_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StorageOptions {
            segment_bytes: 64,
            fsync: true,
        };
        {
            let (mut s, _) = Storage::open(dir.path(), opts.clone()).unwrap();
            for i in 1..=10 {
                s.append(&[entry(i, 1)]).unwrap();
                s.sync().unwrap();
            }
            assert!(s.segments.len() > 2);
            s.append(&entries(4..=5, 2)).unwrap();
            s.sync().unwrap();
        }
        let (s, p) = Storage::open(dir.path(), opts).unwrap();
        let mut want = entries(1..=3, 1);
        want.extend(entries(4..=5, 2));
        assert_eq!(p.entries, want);
        assert_eq!(s.last_index(), 5);
    }

    #[test]
    fn snapshot_compacts_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StorageOptions {
            segment_bytes: 64,
            fsync: true,
        };
        let snap = Snapshot {
            meta: SnapshotMeta { index: 7, term: 1 },
            membership: Default::default(),
            data: b"state".to_vec(),
        };
        {
            let (mut s, _) = Storage::open(dir.path(), opts.clone()).unwrap();
            for i in 1..=10 {
                s.append(&[entry(i, 1)]).unwrap();
                s.sync().unwrap();
            }
            let before = s.segments.len();
            s.save_snapshot(&snap).unwrap();
            assert!(s.segments.len() < before);
        }
        let (_, p) = Storage::open(dir.path(), opts.clone()).unwrap();
        assert_eq!(p.snapshot, Some(snap));
        assert_eq!(p.entries, entries(8..=10, 1));
        assert_eq!(p.hard_state.commit, 7);

        // An installed snapshot beyond the log replaces it.
        let far = Snapshot {
            meta: SnapshotMeta { index: 20, term: 3 },
            membership: Default::default(),
            data: b"far".to_vec(),
        };
        {
            let (mut s, _) = Storage::open(dir.path(), opts.clone()).unwrap();
            s.install_snapshot(&far).unwrap();
            s.append(&entries(21..=22, 3)).unwrap();
            s.sync().unwrap();
        }
        let (_, p) = Storage::open(dir.path(), opts).unwrap();
        assert_eq!(p.snapshot, Some(far));
        assert_eq!(p.entries, entries(21..=22, 3));
    }

    /// The same history of appends, votes, conflicts, segment rolls and
    /// snapshots; returns the fsync/fdatasync calls it took and what a
    /// reopen recovers.
    fn busy_history(dir: &Path, fsync: bool) -> (u64, Persisted) {
        let opts = StorageOptions {
            segment_bytes: 64,
            fsync,
        };
        let calls = {
            let (mut s, _) = Storage::open(dir, opts.clone()).unwrap();
            for i in 1..=10 {
                s.append(&[entry(i, 1)]).unwrap();
                s.set_hard_state(HardState {
                    term: 1 + i / 4,
                    vote: Some(1),
                    commit: i - 1,
                })
                .unwrap();
                s.sync().unwrap();
            }
            s.append(&entries(8..=9, 3)).unwrap();
            s.sync().unwrap();
            s.save_snapshot(&Snapshot {
                meta: SnapshotMeta { index: 5, term: 1 },
                membership: Default::default(),
                data: b"five".to_vec(),
            })
            .unwrap();
            s.sync_calls()
        };
        (calls, Storage::open(dir, opts).unwrap().1)
    }

    #[test]
    fn without_fsync_everything_is_written_and_nothing_is_synced() {
        let synced = tempfile::tempdir().unwrap();
        let unsynced = tempfile::tempdir().unwrap();
        let (calls, want) = busy_history(synced.path(), true);
        assert!(calls > 10, "one sync per batch at least: {calls}");
        let (calls, got) = busy_history(unsynced.path(), false);
        assert_eq!(calls, 0, "the skip-fsync storage must never sync");
        // Same bytes in the same order, only never made durable.
        assert_eq!(got, want);
        assert_eq!(got.entries.last().map(|e| (e.index, e.term)), Some((9, 3)));
    }

    fn write_five(dir: &Path) -> Vec<u64> {
        let (mut s, _) = open(dir);
        s.append(&entries(1..=5, 1)).unwrap();
        s.sync().unwrap();
        s.segments[0].offsets.clone()
    }

    #[test]
    fn truncated_final_record_is_repaired() {
        let dir = tempfile::tempdir().unwrap();
        write_five(dir.path());
        let seg = only_segment(dir.path());
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (mut s, p) = open(dir.path());
        assert_eq!(p.entries, entries(1..=4, 1));
        // And the log is usable after the repair.
        s.append(&entries(5..=5, 2)).unwrap();
        s.sync().unwrap();
        drop(s);
        let (_, p) = open(dir.path());
        assert_eq!(p.entries.last(), Some(&entry(5, 2)));
    }

    #[test]
    fn flipped_byte_in_final_record_is_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let offsets = write_five(dir.path());
        let seg = only_segment(dir.path());
        for pos in [
            offsets[4] as usize,
            offsets[4] as usize + 5,
            offsets[4] as usize + 12,
        ] {
            let mut bytes = fs::read(&seg).unwrap();
            let saved = bytes.clone();
            bytes[pos] ^= 0x40;
            fs::write(&seg, &bytes).unwrap();
            let (_, p) = open(dir.path());
            assert_eq!(p.entries, entries(1..=4, 1), "flip at {pos}");
            fs::write(&seg, &saved).unwrap();
        }
    }

    #[test]
    fn flipped_byte_before_the_tail_is_an_error_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let offsets = write_five(dir.path());
        let seg = only_segment(dir.path());
        let mut bytes = fs::read(&seg).unwrap();
        bytes[offsets[2] as usize + 10] ^= 0x01;
        fs::write(&seg, &bytes).unwrap();
        let err = Storage::open(dir.path(), StorageOptions::default()).unwrap_err();
        match &err {
            StorageError::Corrupt { path, offset, .. } => {
                assert_eq!(path, &seg);
                assert_eq!(*offset, offsets[2]);
            }
            other => panic!("unexpected error {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&seg.display().to_string()) && msg.contains(&offsets[2].to_string()),
            "{msg}"
        );
        // The file is left as it was for an operator to inspect.
        assert_eq!(fs::read(&seg).unwrap(), bytes);
    }

    #[test]
    fn corrupt_hard_state_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = open(dir.path());
            s.set_hard_state(HardState {
                term: 3,
                vote: None,
                commit: 0,
            })
            .unwrap();
        }
        let path = dir.path().join(HARD_STATE_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[4] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let err = Storage::open(dir.path(), StorageOptions::default()).unwrap_err();
        assert!(matches!(err, StorageError::CorruptFile { .. }), "{err}");
        // An empty one too; only the skip-fsync storage, whose renames can
        // leave empty files after a power cut, takes it for a fresh start.
        fs::write(&path, b"").unwrap();
        let err = Storage::open(dir.path(), StorageOptions::default()).unwrap_err();
        assert!(matches!(err, StorageError::CorruptFile { .. }), "{err}");
        let no_fsync = StorageOptions {
            fsync: false,
            ..StorageOptions::default()
        };
        let (_, p) = Storage::open(dir.path(), no_fsync.clone()).unwrap();
        assert_eq!(p.hard_state, HardState::default());
        // A torn one (a prefix of its last write survived the power cut):
        // refused by the correct storage, a fresh start without fsync.
        fs::write(&path, b"\x01\x02").unwrap();
        let err = Storage::open(dir.path(), StorageOptions::default()).unwrap_err();
        assert!(err.to_string().contains("too short"), "{err}");
        let (_, p) = Storage::open(dir.path(), no_fsync).unwrap();
        assert_eq!(p.hard_state, HardState::default());
    }
}

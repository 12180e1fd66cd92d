//! The FUSE filesystem: a passthrough view of a backing directory whose file
//! writes stay in this process's memory until the file is fsynced.
//!
//! Inodes are ours (the root is 1, then counting up, never reused), each
//! remembering its path relative to the backing directory and the backing
//! file's (device, inode) so that a lookup after a rename finds the same
//! inode and so the same unsynced data. Every data write goes into the
//! inode's [`FileCache`]; reads overlay that cache on the backing file;
//! fsync writes the cache to the backing file and fsyncs it. Metadata
//! operations go straight to the backing directory (see the crate docs).
//!
//! The kernel is asked to cache as little as it can: every open file is
//! direct I/O (reads and writes come here, so a dropped write cannot linger
//! in a page cache on the mount), and entries and attributes have a zero
//! time-to-live (sizes change behind the kernel's back when unsynced data is
//! dropped). Shared mmap still works where the kernel allows it on direct
//! I/O files (Linux 6.6+): mapped pages go through the kernel's page cache,
//! reach us as writes when written back, and every open drops the cache
//! (no FOPEN_KEEP_CACHE), so a restarted process never sees lost data.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io;
use std::os::unix::fs::{
    DirBuilderExt, DirEntryExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};
use nix::libc;

use crate::cache::{Extents, LastWrite};

/// Nothing is cached by the kernel: see the module comment.
const TTL: Duration = Duration::ZERO;
/// The root's inode number, fixed by the FUSE protocol.
const ROOT: u64 = 1;

/// Counters of what the filesystem did, for measurements.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub writes: AtomicU64,
    pub write_bytes: AtomicU64,
    pub reads: AtomicU64,
    pub fsyncs: AtomicU64,
    pub synced_bytes: AtomicU64,
}

/// The unsynced data of one file.
#[derive(Debug, Default)]
pub(crate) struct FileCache {
    /// Written byte ranges not yet in the backing file.
    pub extents: Extents,
    /// The latest of those writes.
    pub last: Option<LastWrite>,
    /// A writable descriptor of the backing file, kept (like the kernel
    /// keeps an inode with dirty pages) after the handle that wrote is
    /// closed, so a later fsync or the torn-write fault can still write.
    pub writer: Option<Arc<File>>,
}

impl FileCache {
    /// Writes the held data to the backing file and fsyncs it (or, with
    /// nothing held, just fsyncs `fallback`). Returns the bytes written.
    pub fn sync(
        &mut self,
        fallback: Option<&File>,
        datasync: bool,
        fsync: bool,
    ) -> io::Result<u64> {
        let mut bytes = 0;
        if let Some(writer) = &self.writer {
            for (off, data) in self.extents.iter() {
                writer.write_all_at(data, off)?;
                bytes += data.len() as u64;
            }
        }
        let file = self.writer.as_deref().or(fallback);
        if fsync && let Some(f) = file {
            if datasync {
                f.sync_data()?;
            } else {
                f.sync_all()?;
            }
        }
        self.extents.clear();
        self.last = None;
        self.writer = None;
        Ok(bytes)
    }
}

/// One inode of the mount.
#[derive(Debug)]
struct Inode {
    /// Path relative to the backing directory (empty for the root).
    path: PathBuf,
    /// The backing file's (device, inode); `None` once unlinked.
    key: Option<(u64, u64)>,
    /// Lookups the kernel holds (decremented by forget).
    nlookup: u64,
    /// Open file handles.
    open: u32,
    cache: Arc<Mutex<FileCache>>,
}

/// An open file or directory.
#[derive(Debug)]
enum Handle {
    File {
        ino: u64,
        file: Arc<File>,
        /// Opened with O_SYNC or O_DSYNC: every write is synced at once.
        sync: bool,
    },
    Dir {
        entries: Vec<(u64, FileType, OsString)>,
    },
}

/// The inode and handle tables.
#[derive(Debug)]
pub(crate) struct State {
    inodes: HashMap<u64, Inode>,
    by_key: HashMap<(u64, u64), u64>,
    next_ino: u64,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
}

/// What the filesystem and its [`crate::Control`] handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The backing directory (canonical).
    pub root: PathBuf,
    state: Mutex<State>,
    /// While set, every write and create fails with ENOSPC.
    pub full: AtomicBool,
    /// Orders writes across the mount (for the torn-write fault).
    seq: AtomicU64,
    /// Whether a sync really fsyncs the backing file.
    pub fsync_backing: bool,
    /// Largest write request to ask the kernel for.
    max_write: u32,
    pub counters: Counters,
    /// The mount point while mounted (for syncfs before dropping data).
    pub mounted: Mutex<Option<PathBuf>>,
}

/// Recovers a poisoned lock: the tables stay consistent between statements,
/// and a panicking request must not take the whole mount down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn errno(e: io::Error) -> Errno {
    Errno::from(e)
}

fn kind_of(ft: fs::FileType) -> FileType {
    FileType::from_std(ft).unwrap_or(FileType::RegularFile)
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs.clamp(0, 999_999_999) as u32)
    } else {
        UNIX_EPOCH
    }
}

impl Shared {
    /// Tables for a backing directory whose root has metadata `meta`.
    pub fn new(root: PathBuf, meta: &fs::Metadata, fsync_backing: bool, max_write: u32) -> Shared {
        let mut inodes = HashMap::new();
        inodes.insert(
            ROOT,
            Inode {
                path: PathBuf::new(),
                key: Some((meta.dev(), meta.ino())),
                // Never forgotten.
                nlookup: u64::MAX / 2,
                open: 0,
                cache: Arc::default(),
            },
        );
        let mut by_key = HashMap::new();
        by_key.insert((meta.dev(), meta.ino()), ROOT);
        Shared {
            root,
            state: Mutex::new(State {
                inodes,
                by_key,
                next_ino: ROOT + 1,
                handles: HashMap::new(),
                next_fh: 1,
            }),
            full: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            fsync_backing,
            max_write,
            counters: Counters::default(),
            mounted: Mutex::new(None),
        }
    }

    /// Every inode's path (`None` once unlinked) and cache.
    pub fn caches(&self) -> Vec<(Option<PathBuf>, Arc<Mutex<FileCache>>)> {
        let st = lock(&self.state);
        st.inodes
            .values()
            .map(|n| (n.key.map(|_| n.path.clone()), n.cache.clone()))
            .collect()
    }

    fn full(&self) -> bool {
        self.full.load(Ordering::SeqCst)
    }

    /// The path and cache of a live (not unlinked) inode.
    fn node(&self, ino: INodeNo) -> Result<(PathBuf, Arc<Mutex<FileCache>>), Errno> {
        let st = lock(&self.state);
        match st.inodes.get(&ino.0) {
            Some(n) if n.key.is_some() => Ok((n.path.clone(), n.cache.clone())),
            _ => Err(Errno::ENOENT),
        }
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.node(parent)?.0.join(name))
    }

    fn full_path(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// Finds or makes the inode of the backing file `meta` at `rel`,
    /// counting a kernel lookup when `lookup`.
    fn register(st: &mut State, rel: &Path, meta: &fs::Metadata, lookup: bool) -> u64 {
        let key = (meta.dev(), meta.ino());
        if let Some(&ino) = st.by_key.get(&key)
            && let Some(n) = st.inodes.get_mut(&ino)
        {
            // The file may have been renamed since (by us or outside).
            n.path = rel.to_path_buf();
            n.nlookup += u64::from(lookup);
            return ino;
        }
        let ino = st.next_ino;
        st.next_ino += 1;
        st.inodes.insert(
            ino,
            Inode {
                path: rel.to_path_buf(),
                key: Some(key),
                nlookup: u64::from(lookup),
                open: 0,
                cache: Arc::default(),
            },
        );
        st.by_key.insert(key, ino);
        ino
    }

    /// Drops an inode the kernel has forgotten, unless it still has open
    /// handles or unsynced data a later lookup must find.
    fn maybe_drop(st: &mut State, ino: u64) {
        let Some(n) = st.inodes.get(&ino) else {
            return;
        };
        if ino == ROOT || n.nlookup > 0 || n.open > 0 {
            return;
        }
        if n.key.is_some() && !lock(&n.cache).extents.is_empty() {
            return;
        }
        if let Some(n) = st.inodes.remove(&ino)
            && let Some(key) = n.key
        {
            st.by_key.remove(&key);
        }
    }

    /// The backing file at `rel` is gone (unlinked, removed or replaced):
    /// its inode keeps serving open handles but no new lookups, and its
    /// unsynced data dies with the last handle.
    fn forget_backing(st: &mut State, key: (u64, u64)) {
        let Some(ino) = st.by_key.remove(&key) else {
            return;
        };
        if let Some(n) = st.inodes.get_mut(&ino) {
            n.key = None;
            if n.open == 0 {
                let mut c = lock(&n.cache);
                c.extents.clear();
                c.last = None;
                c.writer = None;
            }
        }
        Shared::maybe_drop(st, ino);
    }

    /// Attributes of `meta` as inode `ino`, with the size including the
    /// unsynced data.
    fn attr(ino: u64, meta: &fs::Metadata, cache: &FileCache) -> FileAttr {
        let size = if meta.is_file() {
            meta.len().max(cache.extents.end())
        } else {
            meta.len()
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: meta.blocks().max(size.div_ceil(512)),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: UNIX_EPOCH,
            kind: kind_of(meta.file_type()),
            perm: (meta.mode() & 0o7777) as u16,
            nlink: meta.nlink() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: meta.rdev() as u32,
            blksize: meta.blksize() as u32,
            flags: 0,
        }
    }

    /// Registers the new or looked-up entry `rel` and answers with it.
    fn entry(&self, rel: &Path, reply: ReplyEntry) {
        match fs::symlink_metadata(self.full_path(rel)) {
            Ok(meta) => {
                let mut st = lock(&self.state);
                let ino = Shared::register(&mut st, rel, &meta, true);
                let cache = st.inodes[&ino].cache.clone();
                drop(st);
                let attr = Shared::attr(ino, &meta, &lock(&cache));
                reply.entry(&TTL, &attr, Generation(0));
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn file_handle(&self, fh: FileHandle) -> Result<(u64, Arc<File>, bool), Errno> {
        match lock(&self.state).handles.get(&fh.0) {
            Some(Handle::File { ino, file, sync }) => Ok((*ino, file.clone(), *sync)),
            Some(Handle::Dir { .. }) => Err(Errno::EISDIR),
            None => Err(Errno::EBADF),
        }
    }

    fn cache_of(&self, ino: u64) -> Result<Arc<Mutex<FileCache>>, Errno> {
        lock(&self.state)
            .inodes
            .get(&ino)
            .map(|n| n.cache.clone())
            .ok_or(Errno::ENOENT)
    }

    fn add_handle(&self, ino: u64, h: Handle) -> u64 {
        let mut st = lock(&self.state);
        let fh = st.next_fh;
        st.next_fh += 1;
        st.handles.insert(fh, h);
        if let Some(n) = st.inodes.get_mut(&ino) {
            n.open += 1;
        }
        fh
    }

    /// Moves every inode at or under `from` to the same place under `to`.
    fn repath(st: &mut State, moved: &[u64], from: &Path, to: &Path) {
        for ino in moved {
            if let Some(n) = st.inodes.get_mut(ino)
                && let Ok(rest) = n.path.strip_prefix(from)
            {
                n.path = if rest.as_os_str().is_empty() {
                    to.to_path_buf()
                } else {
                    to.join(rest)
                };
            }
        }
    }

    fn under(st: &State, p: &Path) -> Vec<u64> {
        st.inodes
            .iter()
            .filter(|(ino, n)| **ino != ROOT && n.path.starts_with(p))
            .map(|(ino, _)| *ino)
            .collect()
    }

    /// Opens the backing file for a handle. O_APPEND is left out: the kernel
    /// already puts appends at the end, and pwrite on an O_APPEND descriptor
    /// ignores its offset on Linux.
    fn open_backing(path: &Path, flags: i32, create: Option<(u32, bool)>) -> io::Result<File> {
        let mut o = OpenOptions::new();
        match flags & libc::O_ACCMODE {
            libc::O_WRONLY => o.write(true),
            libc::O_RDWR => o.read(true).write(true),
            _ => o.read(true),
        };
        if let Some((mode, excl)) = create {
            if excl {
                o.create_new(true);
            } else {
                o.create(true);
            }
            o.mode(mode);
            if flags & libc::O_ACCMODE == libc::O_RDONLY {
                // create(2) with O_RDONLY is allowed; std needs write access
                // to create, so ask for it and keep the handle read-write.
                o.write(true);
            }
        }
        if flags & libc::O_TRUNC != 0 {
            o.write(true).truncate(true);
        }
        o.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
        o.open(path)
    }
}

/// The filesystem served to the kernel.
#[derive(Debug)]
pub(crate) struct DiskFs {
    pub shared: Arc<Shared>,
}

impl Filesystem for DiskFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Large writes mean fewer requests per log batch; the kernel caps it
        // at its own limit (1 MiB by default).
        let want = self.shared.max_write;
        if let Err(nearest) = config.set_max_write(want) {
            let _ = config.set_max_write(nearest);
        }
        // Shared mmap on direct-I/O files (bbolt, and so etcd, maps its
        // database); without it (kernels before 6.6) such an mmap fails
        // with ENODEV, which is a clear failure too.
        let _ = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.shared.child(parent, name) {
            Ok(rel) => self.shared.entry(&rel, reply),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let mut st = lock(&self.shared.state);
        if let Some(n) = st.inodes.get_mut(&ino.0) {
            n.nlookup = n.nlookup.saturating_sub(nlookup);
        }
        Shared::maybe_drop(&mut st, ino.0);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let sh = &self.shared;
        let by_handle = fh.and_then(|fh| sh.file_handle(fh).ok());
        let (meta, cache) = if let Some((_, file, _)) = by_handle {
            (file.metadata(), sh.cache_of(ino.0))
        } else {
            match sh.node(ino) {
                Ok((rel, cache)) => (fs::symlink_metadata(sh.full_path(&rel)), Ok(cache)),
                Err(e) => return reply.error(e),
            }
        };
        match (meta, cache) {
            (Ok(meta), Ok(cache)) => reply.attr(&TTL, &Shared::attr(ino.0, &meta, &lock(&cache))),
            (Err(e), _) => reply.error(errno(e)),
            (_, Err(e)) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let sh = &self.shared;
        let handle = fh.and_then(|fh| sh.file_handle(fh).ok()).map(|h| h.1);
        let (path, cache) = match sh.node(ino) {
            Ok((rel, cache)) => (Some(sh.full_path(&rel)), cache),
            // An unlinked file can still be changed through an open handle.
            Err(e) => match (&handle, sh.cache_of(ino.0)) {
                (Some(_), Ok(cache)) => (None, cache),
                _ => return reply.error(e),
            },
        };
        let result = (|| -> Result<(), Errno> {
            if let Some(size) = size {
                let mut c = lock(&cache);
                let current = match (&handle, &path) {
                    (Some(f), _) => f.metadata(),
                    (None, Some(p)) => fs::metadata(p),
                    (None, None) => return Err(Errno::ENOENT),
                }
                .map_err(errno)?
                .len()
                .max(c.extents.end());
                if size > current && sh.full() {
                    return Err(Errno::ENOSPC);
                }
                // A truncation is a metadata operation: it reaches the
                // backing file at once (see the crate docs).
                match (&handle, &path) {
                    (Some(f), _) if f.set_len(size).is_ok() => {}
                    (_, Some(p)) => OpenOptions::new()
                        .write(true)
                        .open(p)
                        .and_then(|f| f.set_len(size))
                        .map_err(errno)?,
                    _ => return Err(Errno::EBADF),
                }
                c.extents.truncate(size);
                if let Some(last) = &mut c.last {
                    if last.offset >= size {
                        c.last = None;
                    } else {
                        last.len = last.len.min(size - last.offset);
                    }
                }
            }
            if let Some(mode) = mode {
                let perm = fs::Permissions::from_mode(mode & 0o7777);
                match (&handle, &path) {
                    (Some(f), _) => f.set_permissions(perm),
                    (None, Some(p)) => fs::set_permissions(p, perm),
                    (None, None) => return Err(Errno::ENOENT),
                }
                .map_err(errno)?;
            }
            if uid.is_some() || gid.is_some() {
                let Some(p) = &path else {
                    return Err(Errno::ENOENT);
                };
                std::os::unix::fs::lchown(p, uid, gid).map_err(errno)?;
            }
            if atime.is_some() || mtime.is_some() {
                let resolve = |t: TimeOrNow| match t {
                    TimeOrNow::SpecificTime(t) => t,
                    TimeOrNow::Now => SystemTime::now(),
                };
                let mut times = FileTimes::new();
                if let Some(t) = atime {
                    times = times.set_accessed(resolve(t));
                }
                if let Some(t) = mtime {
                    times = times.set_modified(resolve(t));
                }
                match (&handle, &path) {
                    (Some(f), _) => f.set_times(times),
                    (None, Some(p)) => File::open(p).and_then(|f| f.set_times(times)),
                    (None, None) => return Err(Errno::ENOENT),
                }
                .map_err(errno)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            return reply.error(e);
        }
        let meta = match (&handle, &path) {
            (Some(f), _) => f.metadata(),
            (None, Some(p)) => fs::symlink_metadata(p),
            (None, None) => return reply.error(Errno::ENOENT),
        };
        match meta {
            Ok(meta) => reply.attr(&TTL, &Shared::attr(ino.0, &meta, &lock(&cache))),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        use std::os::unix::ffi::OsStrExt;
        match self.shared.node(ino) {
            Ok((rel, _)) => match fs::read_link(self.shared.full_path(&rel)) {
                Ok(target) => reply.data(target.as_os_str().as_bytes()),
                Err(e) => reply.error(errno(e)),
            },
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        use nix::sys::stat::{Mode, SFlag};
        let sh = &self.shared;
        if sh.full() {
            return reply.error(Errno::ENOSPC);
        }
        let rel = match sh.child(parent, name) {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        let kind = SFlag::from_bits_truncate(mode & libc::S_IFMT);
        let perm = Mode::from_bits_truncate(mode & !umask & 0o7777);
        match nix::sys::stat::mknod(&sh.full_path(&rel), kind, perm, u64::from(rdev)) {
            Ok(()) => sh.entry(&rel, reply),
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let sh = &self.shared;
        if sh.full() {
            return reply.error(Errno::ENOSPC);
        }
        let rel = match sh.child(parent, name) {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        match fs::DirBuilder::new()
            .mode(mode & !umask & 0o7777)
            .create(sh.full_path(&rel))
        {
            Ok(()) => sh.entry(&rel, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, false, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, true, reply);
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let sh = &self.shared;
        if sh.full() {
            return reply.error(Errno::ENOSPC);
        }
        let rel = match sh.child(parent, link_name) {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        match std::os::unix::fs::symlink(target, sh.full_path(&rel)) {
            Ok(()) => sh.entry(&rel, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let sh = &self.shared;
        let (from, to) = match (sh.child(parent, name), sh.child(newparent, newname)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        let (full_from, full_to) = (sh.full_path(&from), sh.full_path(&to));
        let source = match fs::symlink_metadata(&full_from) {
            Ok(m) => m,
            Err(e) => return reply.error(errno(e)),
        };
        let target = fs::symlink_metadata(&full_to).ok();
        let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
        // The rename itself is durable at once; unsynced data of the moved
        // file moves with it (it belongs to the inode, not the name).
        let done = if flags.is_empty() {
            fs::rename(&full_from, &full_to).map_err(errno)
        } else {
            nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &full_from,
                nix::fcntl::AT_FDCWD,
                &full_to,
                nix::fcntl::RenameFlags::from_bits_truncate(flags.bits()),
            )
            .map_err(|e| Errno::from_i32(e as i32))
        };
        if let Err(e) = done {
            return reply.error(e);
        }
        let mut st = lock(&sh.state);
        let src_key = (source.dev(), source.ino());
        if exchange {
            let a = Shared::under(&st, &from);
            let b = Shared::under(&st, &to);
            Shared::repath(&mut st, &a, &from, &to);
            Shared::repath(&mut st, &b, &to, &from);
        } else {
            if let Some(t) = &target {
                let key = (t.dev(), t.ino());
                if key != src_key && (t.is_dir() || t.nlink() <= 1) {
                    Shared::forget_backing(&mut st, key);
                }
            }
            let moved = Shared::under(&st, &from);
            Shared::repath(&mut st, &moved, &from, &to);
        }
        reply.ok();
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // One path per inode keeps the tables simple; EPERM is what link(2)
        // says when a filesystem has no hard links.
        reply.error(Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let sh = &self.shared;
        if flags.0 & libc::O_DIRECT != 0 {
            // Direct I/O would bypass the cache this filesystem exists for.
            return reply.error(Errno::EINVAL);
        }
        let (rel, cache) = match sh.node(ino) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let file = match Shared::open_backing(&sh.full_path(&rel), flags.0, None) {
            Ok(f) => f,
            Err(e) => return reply.error(errno(e)),
        };
        if flags.0 & libc::O_TRUNC != 0 {
            let mut c = lock(&cache);
            c.extents.clear();
            c.last = None;
        }
        let sync = flags.0 & (libc::O_SYNC | libc::O_DSYNC) != 0;
        let fh = sh.add_handle(
            ino.0,
            Handle::File {
                ino: ino.0,
                file: Arc::new(file),
                sync,
            },
        );
        reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let sh = &self.shared;
        sh.counters.reads.fetch_add(1, Ordering::Relaxed);
        let (file, cache) = match sh
            .file_handle(fh)
            .and_then(|(_, f, _)| Ok((f, sh.cache_of(ino.0)?)))
        {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let c = lock(&cache);
        let backing_len = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => return reply.error(errno(e)),
        };
        let len = backing_len.max(c.extents.end());
        if offset >= len {
            return reply.data(&[]);
        }
        let n = (len - offset).min(u64::from(size)) as usize;
        let mut buf = vec![0u8; n];
        // Bytes past the backing file's end and not cached read as zeros
        // (a hole), as they would after an extending write elsewhere.
        let from_backing = backing_len.saturating_sub(offset).min(n as u64) as usize;
        let mut done = 0;
        while done < from_backing {
            match file.read_at(&mut buf[done..from_backing], offset + done as u64) {
                Ok(0) => break,
                Ok(k) => done += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return reply.error(errno(e)),
            }
        }
        c.extents.overlay(offset, &mut buf);
        drop(c);
        reply.data(&buf);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let sh = &self.shared;
        if sh.full() {
            return reply.error(Errno::ENOSPC);
        }
        let (file, sync, cache) = match sh
            .file_handle(fh)
            .and_then(|(_, f, s)| Ok((f, s, sh.cache_of(ino.0)?)))
        {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let mut c = lock(&cache);
        c.extents.insert(offset, data);
        c.last = Some(LastWrite {
            seq: sh.seq.fetch_add(1, Ordering::SeqCst),
            offset,
            len: data.len() as u64,
        });
        c.writer = Some(file.clone());
        sh.counters.writes.fetch_add(1, Ordering::Relaxed);
        sh.counters
            .write_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if sync {
            let datasync = true;
            if let Err(e) = c.sync(Some(&file), datasync, sh.fsync_backing) {
                return reply.error(errno(e));
            }
        }
        drop(c);
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) is not a sync: the data stays unsynced, as in a page cache.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.close(fh);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let sh = &self.shared;
        let (file, cache) = match sh
            .file_handle(fh)
            .and_then(|(_, f, _)| Ok((f, sh.cache_of(ino.0)?)))
        {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        sh.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        let mut c = lock(&cache);
        match c.sync(Some(&file), datasync, sh.fsync_backing) {
            Ok(bytes) => {
                sh.counters.synced_bytes.fetch_add(bytes, Ordering::Relaxed);
                reply.ok();
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let sh = &self.shared;
        let rel = match sh.node(ino) {
            Ok((rel, _)) => rel,
            Err(e) => return reply.error(e),
        };
        let dir = sh.full_path(&rel);
        let listing = match fs::read_dir(&dir) {
            Ok(it) => it.collect::<Result<Vec<_>, _>>(),
            Err(e) => return reply.error(errno(e)),
        };
        let listing = match listing {
            Ok(l) => l,
            Err(e) => return reply.error(errno(e)),
        };
        let dev = fs::symlink_metadata(&dir).map(|m| m.dev()).unwrap_or(0);
        let mut entries = vec![
            (ino.0, FileType::Directory, OsString::from(".")),
            (ino.0, FileType::Directory, OsString::from("..")),
        ];
        {
            let st = lock(&sh.state);
            for e in listing {
                let kind = e.file_type().map(kind_of).unwrap_or(FileType::RegularFile);
                let name = e.file_name();
                let key = (dev, e.ino());
                // The number readdir reports should be the one stat will:
                // use ours when known (a lookup registers the rest).
                let child = st.by_key.get(&key).copied().unwrap_or(u64::MAX - e.ino());
                entries.push((child, kind, name));
            }
        }
        let fh = sh.add_handle(ino.0, Handle::Dir { entries });
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let st = lock(&self.shared.state);
        let Some(Handle::Dir { entries }) = st.handles.get(&fh.0) else {
            drop(st);
            return reply.error(Errno::EBADF);
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        drop(st);
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.close(fh);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let sh = &self.shared;
        let rel = match sh.node(ino) {
            Ok((rel, _)) => rel,
            Err(e) => return reply.error(e),
        };
        // Directory changes are already in the backing directory; make them
        // durable there too.
        if sh.fsync_backing
            && let Err(e) = File::open(sh.full_path(&rel)).and_then(|d| d.sync_all())
        {
            return reply.error(errno(e));
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match nix::sys::statvfs::statvfs(&self.shared.root) {
            Ok(s) => {
                let (bfree, bavail) = if self.shared.full() {
                    (0, 0)
                } else {
                    (s.blocks_free(), s.blocks_available())
                };
                reply.statfs(
                    s.blocks(),
                    bfree,
                    bavail,
                    s.files(),
                    s.files_free(),
                    s.block_size() as u32,
                    s.name_max() as u32,
                    s.fragment_size() as u32,
                );
            }
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // The server runs as the node's user (root): existence is the check.
        match self.shared.node(ino) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let sh = &self.shared;
        if sh.full() {
            return reply.error(Errno::ENOSPC);
        }
        if flags & libc::O_DIRECT != 0 {
            return reply.error(Errno::EINVAL);
        }
        let rel = match sh.child(parent, name) {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        let excl = flags & libc::O_EXCL != 0;
        let file = match Shared::open_backing(
            &sh.full_path(&rel),
            flags,
            Some((mode & !umask & 0o7777, excl)),
        ) {
            Ok(f) => f,
            Err(e) => return reply.error(errno(e)),
        };
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => return reply.error(errno(e)),
        };
        let mut st = lock(&sh.state);
        let ino = Shared::register(&mut st, &rel, &meta, true);
        let cache = st.inodes[&ino].cache.clone();
        drop(st);
        if flags & libc::O_TRUNC != 0 {
            let mut c = lock(&cache);
            c.extents.clear();
            c.last = None;
        }
        let attr = Shared::attr(ino, &meta, &lock(&cache));
        let sync = flags & (libc::O_SYNC | libc::O_DSYNC) != 0;
        let fh = sh.add_handle(
            ino,
            Handle::File {
                ino,
                file: Arc::new(file),
                sync,
            },
        );
        reply.created(
            &TTL,
            &attr,
            Generation(0),
            FileHandle(fh),
            FopenFlags::FOPEN_DIRECT_IO,
        );
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        // Callers of posix_fallocate fall back to writing zeros, which goes
        // through the cache like any write.
        reply.error(Errno::from_i32(libc::EOPNOTSUPP));
    }
}

impl DiskFs {
    fn remove(&self, parent: INodeNo, name: &OsStr, dir: bool, reply: ReplyEmpty) {
        let sh = &self.shared;
        let rel = match sh.child(parent, name) {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        let full = sh.full_path(&rel);
        let meta = match fs::symlink_metadata(&full) {
            Ok(m) => m,
            Err(e) => return reply.error(errno(e)),
        };
        let done = if dir {
            fs::remove_dir(&full)
        } else {
            fs::remove_file(&full)
        };
        if let Err(e) = done {
            return reply.error(errno(e));
        }
        if dir || meta.nlink() <= 1 {
            Shared::forget_backing(&mut lock(&sh.state), (meta.dev(), meta.ino()));
        }
        reply.ok();
    }

    fn close(&self, fh: FileHandle) {
        let mut st = lock(&self.shared.state);
        let ino = match st.handles.remove(&fh.0) {
            Some(Handle::File { ino, .. }) => ino,
            // A directory handle counted against its directory's inode.
            Some(Handle::Dir { entries }) => entries.first().map_or(0, |e| e.0),
            None => return,
        };
        let unlinked_and_closed = match st.inodes.get_mut(&ino) {
            Some(n) => {
                n.open = n.open.saturating_sub(1);
                n.key.is_none() && n.open == 0
            }
            None => false,
        };
        if unlinked_and_closed && let Some(n) = st.inodes.get(&ino) {
            // The file's last name and last handle are gone: so is its data.
            let mut c = lock(&n.cache);
            c.extents.clear();
            c.last = None;
            c.writer = None;
        }
        Shared::maybe_drop(&mut st, ino);
    }
}

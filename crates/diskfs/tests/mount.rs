//! Tests of faultline-diskfs through a real FUSE mount: what survives a
//! lost-unsynced-writes fault, torn writes, a full disk, metadata
//! operations, the damage helpers, and that no mount outlives its server
//! (dropped, or SIGKILLed as a child process).
//!
//! They skip, with a printed reason, only where /dev/fuse is absent;
//! `FAULTLINE_REQUIRE_FUSE=1` (set by CI) turns that skip into a failure.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use faultline_diskfs::{DamageKind, DiskError, Mount, MountOptions, fuse_mounts, mount};
use nix::libc;

/// A mount in a fresh temporary folder: `dir/m` over `dir/b`.
struct Fixture {
    dir: tempfile::TempDir,
    m: Option<Mount>,
}

impl Fixture {
    fn mnt(&self) -> PathBuf {
        self.m.as_ref().expect("mounted").mountpoint().to_path_buf()
    }
    fn backing(&self) -> PathBuf {
        self.dir.path().join("b")
    }
    fn control(&self) -> faultline_diskfs::Control {
        self.m.as_ref().expect("mounted").control()
    }
}

/// Mounts, or returns `None` (after saying why) where FUSE cannot be had.
fn setup() -> Option<Fixture> {
    if let Err(reason) = faultline_diskfs::fuse_available() {
        if std::env::var("FAULTLINE_REQUIRE_FUSE").as_deref() == Ok("1") {
            panic!("FAULTLINE_REQUIRE_FUSE=1 but FUSE cannot be used: {reason}");
        }
        eprintln!("skipping: {reason}");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let m = mount(
        &dir.path().join("b"),
        &dir.path().join("m"),
        &MountOptions::default(),
    )
    .expect("mount");
    Some(Fixture { dir, m: Some(m) })
}

/// Polls `cond` until it holds or `limit` passes; true if it held.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

#[test]
fn fsynced_writes_survive_and_unsynced_ones_are_lost() {
    let Some(fx) = setup() else { return };
    let m = fx.mnt();
    let mut a = File::create(m.join("a")).unwrap();
    a.write_all(b"durable").unwrap();
    a.sync_all().unwrap();
    drop(a);
    let mut b = File::create(m.join("b")).unwrap();
    b.write_all(b"volatile").unwrap();
    // Closing is not a sync: the data stays cached.
    drop(b);
    assert_eq!(fs::read(m.join("b")).unwrap(), b"volatile");
    assert_eq!(fs::read(fx.backing().join("b")).unwrap(), b"");
    assert_eq!(fx.control().unsynced_bytes(), 8);

    let lost = fx.control().lose_unsynced(None).unwrap();
    assert_eq!(lost.bytes, 8);
    assert_eq!(lost.files.len(), 1);
    assert_eq!(lost.files[0].path.as_deref(), Some(Path::new("b")));
    assert_eq!(lost.torn, None);
    assert_eq!(fs::read(m.join("a")).unwrap(), b"durable");
    // The create itself was durable; the data was not.
    assert_eq!(fs::read(m.join("b")).unwrap(), b"");
    assert_eq!(fs::metadata(m.join("b")).unwrap().len(), 0);
    assert_eq!(fx.control().unsynced_bytes(), 0);
}

#[test]
fn fdatasync_and_o_dsync_writes_are_durable_and_appends_land_at_the_end() {
    let Some(fx) = setup() else { return };
    let m = fx.mnt();
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(m.join("log"))
        .unwrap();
    log.write_all(b"one,").unwrap();
    log.sync_data().unwrap();
    log.write_all(b"two,").unwrap();
    assert_eq!(fs::read(m.join("log")).unwrap(), b"one,two,");
    drop(log);
    let mut d = OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_DSYNC)
        .open(m.join("dsync"))
        .unwrap();
    d.write_all(b"synced").unwrap();
    fx.control().lose_unsynced(None).unwrap();
    assert_eq!(fs::read(m.join("log")).unwrap(), b"one,");
    assert_eq!(fs::read(m.join("dsync")).unwrap(), b"synced");
    // The log goes on from its durable end.
    let mut log = OpenOptions::new().append(true).open(m.join("log")).unwrap();
    log.write_all(b"three").unwrap();
    log.sync_all().unwrap();
    assert_eq!(fs::read(fx.backing().join("log")).unwrap(), b"one,three");
}

#[test]
fn a_torn_write_keeps_a_prefix_of_the_latest_write_only() {
    let Some(fx) = setup() else { return };
    let m = fx.mnt();
    let mut other = File::create(m.join("other")).unwrap();
    other.write_all(&[b'o'; 40]).unwrap();
    let mut f = File::create(m.join("f")).unwrap();
    f.write_all(&[b'a'; 100]).unwrap();
    f.sync_all().unwrap();
    f.write_all(&[b'b'; 100]).unwrap();
    drop((f, other));
    let lost = fx.control().lose_unsynced(Some(0.5)).unwrap();
    let torn = lost.torn.expect("a torn write");
    assert_eq!(torn.path.as_deref(), Some(Path::new("f")));
    assert_eq!((torn.offset, torn.kept, torn.len), (100, 50, 100));
    assert_eq!(lost.bytes, 40 + 50);
    let mut want = vec![b'a'; 100];
    want.extend([b'b'; 50]);
    assert_eq!(fs::read(m.join("f")).unwrap(), want);
    assert_eq!(fs::read(m.join("other")).unwrap(), b"");
    // Nothing unsynced, nothing torn.
    let again = fx.control().lose_unsynced(Some(0.5)).unwrap();
    assert_eq!((again.bytes, again.torn), (0, None));
    assert!(matches!(
        fx.control().lose_unsynced(Some(1.5)),
        Err(DiskError::InvalidArgument(_))
    ));
    assert!(fx.control().lose_unsynced(Some(f64::NAN)).is_err());
}

#[test]
fn a_full_disk_refuses_writes_and_creates_with_enospc() {
    let Some(fx) = setup() else { return };
    let m = fx.mnt();
    let mut f = File::create(m.join("f")).unwrap();
    f.write_all(b"before").unwrap();
    fx.control().set_full(true);
    assert!(fx.control().is_full());
    let e = f.write_all(b"during").unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC, "{e}");
    let e = File::create(m.join("g")).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC, "{e}");
    let e = fs::create_dir(m.join("d")).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC, "{e}");
    // Data accepted before the disk filled up can still be synced.
    f.sync_all().unwrap();
    assert_eq!(fs::read(fx.backing().join("f")).unwrap(), b"before");
    fx.control().set_full(false);
    f.write_all(b"after").unwrap();
    assert_eq!(fs::read(m.join("f")).unwrap(), b"beforeafter");
}

#[test]
fn metadata_operations_pass_through_and_unsynced_data_follows_renames() {
    let Some(fx) = setup() else { return };
    let m = fx.mnt();
    fs::create_dir_all(m.join("d/e")).unwrap();
    fs::write(m.join("d/e/x"), b"xx").unwrap();
    fs::write(m.join("y"), b"yyy").unwrap();
    let mut names: Vec<_> = fs::read_dir(m.join("d/e"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["x"]);
    assert_eq!(fs::metadata(m.join("y")).unwrap().len(), 3);
    assert!(fs::metadata(m.join("d")).unwrap().is_dir());

    // Write-then-rename without fsync: the rename is durable, the data is
    // not (and moved with the file).
    fs::rename(m.join("y"), m.join("d/e/x")).unwrap();
    assert_eq!(fs::read(m.join("d/e/x")).unwrap(), b"yyy");
    assert!(!m.join("y").exists());
    fs::rename(m.join("d"), m.join("D")).unwrap();
    assert_eq!(fs::read(m.join("D/e/x")).unwrap(), b"yyy");
    let lost = fx.control().lose_unsynced(None).unwrap();
    // "x" was replaced by "y" before it was synced: only y's bytes count
    // as lost, under its new name.
    assert_eq!(lost.bytes, 3);
    assert_eq!(lost.files[0].path.as_deref(), Some(Path::new("D/e/x")));
    assert_eq!(fs::read(m.join("D/e/x")).unwrap(), b"");

    // Directory fsync works.
    File::open(m.join("D/e")).unwrap().sync_all().unwrap();
    // Unlink and rmdir.
    fs::remove_file(m.join("D/e/x")).unwrap();
    fs::remove_dir(m.join("D/e")).unwrap();
    fs::remove_dir(m.join("D")).unwrap();
    assert_eq!(fs::read_dir(&m).unwrap().count(), 0);
    assert_eq!(fs::read_dir(fx.backing()).unwrap().count(), 0);
    // Truncation goes to the backing file at once and trims cached data.
    let mut t = File::create(m.join("t")).unwrap();
    t.write_all(b"0123456789").unwrap();
    t.set_len(4).unwrap();
    assert_eq!(fs::read(m.join("t")).unwrap(), b"0123");
    t.write_at(b"Z", 6).unwrap();
    assert_eq!(fs::read(m.join("t")).unwrap(), b"0123\0\0Z");
    // Hard links are refused.
    assert_eq!(
        errno(&fs::hard_link(m.join("t"), m.join("t2")).unwrap_err()),
        libc::EPERM
    );
}

#[test]
fn an_unlinked_file_keeps_its_data_until_closed_then_it_is_gone() {
    let Some(fx) = setup() else { return };
    let m = fx.mnt();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.join("u"))
        .unwrap();
    f.write_all(b"scratch").unwrap();
    fs::remove_file(m.join("u")).unwrap();
    let mut back = vec![0; 7];
    f.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(back, b"scratch");
    assert_eq!(fx.control().unsynced_bytes(), 7);
    drop(f);
    assert!(wait_for(Duration::from_secs(5), || fx
        .control()
        .unsynced_bytes()
        == 0));
}

#[test]
fn o_direct_fails_clearly() {
    let Some(fx) = setup() else { return };
    let m = fx.mnt();
    fs::write(m.join("f"), b"data").unwrap();
    let e = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(m.join("f"))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL, "{e}");
}

/// Writes `bytes` at the start of a shared writable mapping of `f`, then
/// msyncs it when `sync`; unmaps it either way.
#[allow(unsafe_code)]
fn write_through_mapping(f: &File, bytes: &[u8; 8], sync: bool) -> nix::Result<()> {
    use nix::sys::mman::{MapFlags, MsFlags, ProtFlags, mmap, msync, munmap};
    let len = std::num::NonZeroUsize::new(8).expect("non-zero");
    // SAFETY: a fresh mapping of 8 bytes of a file that is 8 bytes long,
    // written only within those bytes and unmapped before returning; no
    // other mapping of it exists.
    unsafe {
        let p = mmap(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            f,
            0,
        )?;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.as_ptr().cast::<u8>(), 8);
        let synced = if sync {
            msync(p, 8, MsFlags::MS_SYNC)
        } else {
            Ok(())
        };
        munmap(p, 8)?;
        synced
    }
}

#[test]
fn shared_mmap_writes_are_unsynced_until_msync() {
    let Some(fx) = setup() else { return };
    let m = fx.mnt();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.join("mapped"))
        .unwrap();
    f.set_len(8).unwrap();
    write_through_mapping(&f, b"durable!", true).expect("shared mmap and msync");
    assert_eq!(fs::read(fx.backing().join("mapped")).unwrap(), b"durable!");
    write_through_mapping(&f, b"volatile", false).unwrap();
    drop(f);
    assert_eq!(fs::read(m.join("mapped")).unwrap(), b"volatile");
    // The dirty page may still be in the kernel's page cache: lose_unsynced
    // makes the kernel write it back first, then drops it.
    let lost = fx.control().lose_unsynced(None).unwrap();
    assert!(lost.bytes >= 8, "{lost:?}");
    assert_eq!(fs::read(m.join("mapped")).unwrap(), b"durable!");
}

#[test]
fn damage_helpers_change_the_backing_bytes() {
    let Some(fx) = setup() else { return };
    let m = fx.mnt();
    let data: Vec<u8> = (0..200u8).collect();
    let mut f = File::create(m.join("seg.log")).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let c = fx.control();
    let d = c.truncate_tail(Path::new("seg.log"), 30).unwrap();
    assert_eq!((d.offset, d.count, d.len_before), (170, 30, 200));
    assert_eq!(
        fs::read(fx.backing().join("seg.log")).unwrap(),
        &data[..170]
    );
    let d = c.flip_bits(Path::new("seg.log"), 100, 3).unwrap();
    assert_eq!((d.kind, d.offset, d.count), (DamageKind::FlipBits, 100, 3));
    let now = fs::read(m.join("seg.log")).unwrap();
    for (i, (a, b)) in now.iter().zip(&data[..170]).enumerate() {
        let want = if (100..103).contains(&i) {
            b ^ (1 << (i - 100))
        } else {
            *b
        };
        assert_eq!(*a, want, "byte {i}");
    }
    assert!(c.flip_bits(Path::new("seg.log"), 169, 2).is_err());
    assert!(c.truncate_tail(Path::new("../escape"), 1).is_err());
    assert!(c.truncate_tail(Path::new("/etc/passwd"), 1).is_err());

    // Seeded damage picks the same file and place for the same seed.
    fs::write(m.join("other.dat"), vec![7u8; 64]).unwrap();
    File::open(m.join("other.dat")).unwrap().sync_all().unwrap();
    let copy = tempfile::tempdir().unwrap();
    for name in ["seg.log", "other.dat"] {
        fs::copy(fx.backing().join(name), copy.path().join(name)).unwrap();
    }
    let a = c.damage(42, DamageKind::FlipBits, Some(".log")).unwrap();
    let b = faultline_diskfs::damage(copy.path(), 42, DamageKind::FlipBits, Some(".log")).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.path, Path::new("seg.log"));
    assert!((170 / 4..170).contains(&a.offset));
    assert_eq!(
        fs::read(fx.backing().join("seg.log")).unwrap(),
        fs::read(copy.path().join("seg.log")).unwrap()
    );
    let t = c.damage(3, DamageKind::Truncate, None).unwrap();
    assert!(t.count >= 1 && t.offset + t.count == t.len_before);
    assert!(matches!(
        c.damage(1, DamageKind::Truncate, Some(".nothing")),
        Err(DiskError::NoFile { .. })
    ));
}

#[test]
fn dropping_the_mount_unmounts_at_once() {
    let Some(mut fx) = setup() else { return };
    let m = fx.mnt();
    fs::write(m.join("f"), b"x").unwrap();
    assert_eq!(fuse_mounts(&m), vec![m.clone()]);
    drop(fx.m.take());
    assert!(fuse_mounts(&m).is_empty(), "{:?}", fuse_mounts(&m));
    // The mount point is a plain directory again; the data is in the
    // backing directory.
    assert_eq!(fs::read_dir(&m).unwrap().count(), 0);
    assert!(fx.backing().join("f").exists());
    // And it can be mounted again at once.
    let again = mount(&fx.backing(), &m, &MountOptions::default()).unwrap();
    assert_eq!(fs::read(m.join("f")).unwrap(), b"");
    again.unmount().unwrap();
    assert!(fuse_mounts(&m).is_empty());
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = fs::read(e.path().join("cmdline"))
            && cmd.split(|b| *b == 0).any(|a| a == needle)
        {
            out.push(String::from_utf8_lossy(&cmd).replace('\0', " "));
        }
    }
    out
}

#[test]
fn a_sigkilled_server_leaves_no_mount_and_no_process() {
    let Some(fx) = setup() else { return };
    let mp = fx.dir.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline-diskfs"))
        .arg("--backing")
        .arg(fx.dir.path().join("killed.disk"))
        .arg("--mount")
        .arg(&mp)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    let ready: faultline_diskfs::serve::Ready = serde_json::from_str(&ready).unwrap();
    let mp = mp.canonicalize().unwrap();
    assert_eq!(ready.mountpoint, mp);
    assert_eq!(fuse_mounts(&mp), vec![mp.clone()]);
    // A file is open on the mount while the server dies.
    let mut open = File::create(mp.join("f")).unwrap();
    open.write_all(b"unsynced").unwrap();

    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || fuse_mounts(&mp).is_empty()),
        "still mounted: {:?}",
        fuse_mounts(&mp)
    );
    assert!(
        wait_for(Duration::from_secs(10), || processes_mentioning(&mp)
            .is_empty()),
        "left behind: {:?}",
        processes_mentioning(&mp)
    );
    drop(open);
    let mut s = String::new();
    File::open(fx.dir.path().join("killed.disk/f"))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "", "unsynced data died with the server");
}

#[test]
fn the_server_answers_requests_and_unmounts_when_its_stdin_closes() {
    let Some(fx) = setup() else { return };
    let mp = fx.dir.path().join("served");
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline-diskfs"))
        .arg("--backing")
        .arg(fx.dir.path().join("served.disk"))
        .arg("--mount")
        .arg(&mp)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    lines.next().unwrap().unwrap();
    let mp = mp.canonicalize().unwrap();
    fs::write(mp.join("f"), b"12345").unwrap();
    let mut ask = |req: &str| {
        writeln!(stdin, "{req}").unwrap();
        lines.next().unwrap().unwrap()
    };
    assert_eq!(
        ask(r#"{"op":"unsynced-bytes"}"#),
        r#"{"result":"bytes","bytes":5}"#
    );
    let lost = ask(r#"{"op":"lose-unsynced","torn":0.4}"#);
    assert!(lost.contains(r#""kept":2"#), "{lost}");
    assert_eq!(
        ask(r#"{"op":"set-full","full":true}"#),
        r#"{"result":"ok"}"#
    );
    assert!(ask("nonsense").contains(r#""result":"error""#));
    assert_eq!(fs::read(mp.join("f")).unwrap(), b"12");
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(fuse_mounts(&mp).is_empty());
}

#[test]
fn the_server_unmounts_on_sigterm() {
    let Some(fx) = setup() else { return };
    let mp = fx.dir.path().join("termed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline-diskfs"))
        .arg("--backing")
        .arg(fx.dir.path().join("termed.disk"))
        .arg("--mount")
        .arg(&mp)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    let mp = mp.canonicalize().unwrap();
    assert_eq!(fuse_mounts(&mp), vec![mp.clone()]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(fuse_mounts(&mp).is_empty());
}

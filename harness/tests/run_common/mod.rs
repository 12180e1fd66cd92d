//! Helpers shared by the `run_*` integration tests: scratch directories,
//! finding node processes by their data path, a guard that kills every
//! process a test started even when it fails, and waiting with deadlines.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A scratch directory under Cargo's test temp dir, removed on drop.
pub struct TestDir(pub PathBuf);

impl TestDir {
    /// A fresh directory named after the test.
    pub fn new(name: &str) -> TestDir {
        let p =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create test dir");
        TestDir(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Pids of live processes whose command line mentions `needle` (node
/// processes carry their data directory, inside the test's folder).
pub fn pids_mentioning(needle: &Path) -> Vec<i32> {
    let needle = needle.display().to_string();
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        // Zombies have an empty cmdline and are not running.
        if String::from_utf8_lossy(&cmd).contains(&needle) && !is_zombie(pid) {
            out.push(pid);
        }
    }
    out
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Kills the controller and every process mentioning the test dir on drop.
pub struct Guard {
    /// The controller, if running.
    pub child: Option<Child>,
    /// The folder whose processes must not survive the test.
    pub dir: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in pids_mentioning(&self.dir) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Polls `f` every 20 ms until it returns `Some`, or panics at the deadline.
pub fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `faultline run --fixed` (settings left out take their fixed
/// defaults, not the seed's draw) with these arguments and the test's store.
pub fn start_run(dir: &Path, args: &[&str]) -> Guard {
    let child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("run")
        .arg("--fixed")
        .arg("--store")
        .arg(dir.join("store"))
        .args(args)
        .stdin(Stdio::null())
        // Files, not pipes: nobody reads a pipe while the run goes on.
        .stdout(std::fs::File::create(dir.join("controller.out")).expect("out file"))
        .stderr(std::fs::File::create(dir.join("controller.err")).expect("err file"))
        .spawn()
        .expect("start faultline");
    Guard {
        child: Some(child),
        dir: dir.to_path_buf(),
    }
}

/// Waits for the controller to exit; returns (exit code, stdout, stderr).
pub fn finish(g: &mut Guard, within: Duration) -> (Option<i32>, String, String) {
    let child = g.child.as_mut().expect("running");
    let status = wait_for("the controller to exit", within, || {
        child.try_wait().expect("try_wait")
    });
    g.child = None;
    let read = |name: &str| std::fs::read_to_string(g.dir.join(name)).unwrap_or_default();
    (
        status.code(),
        read("controller.out"),
        read("controller.err"),
    )
}

/// The run folder (`store/latest`, resolved).
pub fn run_dir(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir.join("store").join("latest")).expect("store/latest")
}

/// Lines of a JSONL file, parsed.
pub fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Whether a test can run: `missing` is why it cannot (a system under test
/// or a tool that is not installed). Then the test says so and skips, or
/// fails with `FAULTLINE_REQUIRE_SYSTEMS=1`, as CI sets (it installs them).
pub fn can_run(test: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else {
        return true;
    };
    if std::env::var_os("FAULTLINE_REQUIRE_SYSTEMS").is_some_and(|v| v == "1") {
        panic!("{test}: FAULTLINE_REQUIRE_SYSTEMS=1 but {why}");
    }
    eprintln!("{test}: skipped, {why}");
    false
}

/// Whether FUSE works here; when it does not, says why the caller skips
/// (or fails, with `FAULTLINE_REQUIRE_FUSE=1`, as CI sets).
pub fn fuse_ok(test: &str) -> bool {
    match faultline_diskfs::fuse_available() {
        Ok(()) => true,
        Err(e) if std::env::var_os("FAULTLINE_REQUIRE_FUSE").is_some_and(|v| v == "1") => {
            panic!("{test}: FAULTLINE_REQUIRE_FUSE=1 but FUSE is unavailable: {e}")
        }
        Err(e) => {
            eprintln!("{test}: skipped, FUSE is unavailable: {e}");
            false
        }
    }
}

/// FUSE mounts left under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    faultline_diskfs::fuse_mounts(dir)
}

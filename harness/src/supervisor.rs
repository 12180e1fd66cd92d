//! The process supervisor: starts node processes each in its own process
//! group with output captured to `nodes/<id>.log`, kills (-9), restarts on
//! the same data directory, pauses and resumes them, and makes sure none
//! outlives the controller on any exit path.
//!
//! Exit paths covered: a normal end and an error (the [`Supervisor`]'s
//! `Drop` kills and reaps every group), a panic (the same `Drop` during
//! unwinding, plus [`install_panic_hook`] for panics on other threads),
//! Ctrl-C and SIGTERM (the run loop turns them into a cancellation, then the
//! `Drop` runs), and SIGKILL of the controller (each node asks the kernel for
//! `PR_SET_PDEATHSIG = SIGKILL` before it execs).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context as _, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Serialize;

/// What to run for one node: the program, its arguments, environment and
/// the files written before every start (a system's spec renders it).
#[derive(Clone, Debug, Serialize)]
pub struct Launch {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Files written (relative to `cwd`) before every start.
    pub files: Vec<(PathBuf, String)>,
    /// The working directory (the node's data directory).
    pub cwd: PathBuf,
}

/// Everything needed to (re)start one node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// The node's id, e.g. `n1`.
    pub id: String,
    /// What to run, with its environment and files.
    pub launch: Launch,
    /// Where stdout and stderr go (appended across restarts).
    pub log_path: PathBuf,
}

/// A helper process the harness runs beside the nodes (a client program):
/// what to start.
#[derive(Clone, Debug)]
pub struct AuxCommand {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Its working directory.
    pub cwd: PathBuf,
}

/// A running helper process with piped stdin and stdout, in its own
/// process group; dropping it kills the group and reaps it.
pub struct AuxChild {
    child: Child,
}

impl AuxChild {
    /// Its stdin and stdout as async pipes (once).
    pub fn take_pipes(
        &mut self,
    ) -> Result<(tokio::process::ChildStdin, tokio::process::ChildStdout)> {
        let stdin = self.child.stdin.take().context("no stdin pipe")?;
        let stdout = self.child.stdout.take().context("no stdout pipe")?;
        Ok((
            tokio::process::ChildStdin::from_std(stdin).context("cannot use the stdin pipe")?,
            tokio::process::ChildStdout::from_std(stdout).context("cannot use the stdout pipe")?,
        ))
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for AuxChild {
    fn drop(&mut self) {
        let pg = self.child.id() as i32;
        let _ = killpg(Pid::from_raw(pg), Signal::SIGKILL);
        let _ = self.child.wait();
        unregister(pg);
    }
}

/// A node's process state as the supervisor last left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcState {
    /// Running (or exited on its own, see [`Supervisor::poll_exits`]).
    Running,
    /// Stopped with SIGSTOP.
    Paused,
    /// Killed with SIGKILL and reaped.
    Killed,
}

struct Slot {
    spec: NodeSpec,
    child: Option<Child>,
    state: ProcState,
    /// An exit the supervisor did not cause, once seen.
    unexpected_exit: Option<String>,
    /// When its process was last started.
    started: Option<std::time::Instant>,
}

/// Owns every node process of one cluster (and helper processes such as
/// client programs, started through the same spawner).
pub struct Supervisor {
    slots: Mutex<Vec<Slot>>,
    spawner: Spawner,
}

/// A thread that lives as long as the supervisor and does every spawn.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
/// not the process. Spawning from async workers or the blocking pool (whose
/// threads retire when idle) would kill healthy nodes at random; spawning
/// from this one thread ties the nodes to the supervisor's lifetime.
struct Spawner {
    tx: Mutex<Option<std::sync::mpsc::Sender<SpawnJob>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type SpawnJob = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);

impl Spawner {
    fn new() -> Spawner {
        let (tx, rx) = std::sync::mpsc::channel::<SpawnJob>();
        let thread = std::thread::Builder::new()
            .name("faultline-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .ok();
        Spawner {
            tx: Mutex::new(Some(tx)),
            thread,
        }
    }

    fn spawn(&self, cmd: Command) -> std::io::Result<Child> {
        let (reply_tx, reply_rx) = std::sync::mpsc::channel();
        let gone = || std::io::Error::other("the spawner thread is gone");
        {
            let tx = lock(&self.tx);
            let Some(tx) = tx.as_ref() else {
                return Err(gone());
            };
            tx.send((cmd, reply_tx)).map_err(|_| gone())?;
        }
        reply_rx.recv().map_err(|_| gone())?
    }

    fn stop(&mut self) {
        lock(&self.tx).take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A helper process that detaches mounts once the controller is gone: it
/// waits for its stdin to close — which happens when this handle drops, or
/// when the controller dies, even by SIGKILL — then lazily unmounts every
/// path it was given that is still mounted. Unlike the nodes it has no
/// parent-death signal: it must outlive a killed controller to clean up.
/// It runs in its own process group, so a terminal's Ctrl-C does not reach it.
pub struct UnmountWatch {
    child: Option<Child>,
}

impl UnmountWatch {
    /// Starts `faultline unmount-watch MOUNT...` (this executable's hidden mode).
    pub fn start(mounts: &[PathBuf]) -> Result<UnmountWatch> {
        let exe = std::env::current_exe().context("cannot locate the faultline executable")?;
        let child = Command::new(exe)
            .arg("unmount-watch")
            .args(mounts)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("cannot start the unmount watchdog")?;
        Ok(UnmountWatch { child: Some(child) })
    }
}

impl Drop for UnmountWatch {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Closing its stdin tells it we are done; it unmounts what is
            // left (usually nothing) and exits.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// The watchdog's side ([`UnmountWatch`]): waits for stdin to close, then
/// lazily unmounts each path still mounted. Returns the process exit code.
pub fn unmount_watch(mounts: &[PathBuf]) -> u8 {
    use std::io::Read as _;
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    // The nodes die with the controller (parent-death signal) a moment
    // later; a lazy unmount does not wait for their files to close.
    for m in mounts {
        let mounted = std::fs::read_to_string("/proc/self/mounts")
            .map(|t| t.lines().any(|l| l.split(' ').nth(1) == m.to_str()))
            .unwrap_or(false);
        if mounted {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z", "--"])
                .arg(m)
                .stdin(Stdio::null())
                .status();
        }
    }
    0
}

/// Process groups alive right now, for the panic hook.
static LIVE_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere; the data (pids) is still the
    // truth we need to clean up.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Installs a panic hook that SIGKILLs every live node group before the
/// previous hook runs, so a panic anywhere (even a thread that does not
/// unwind through the supervisor) leaves no node behind.
pub fn install_panic_hook() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_all_registered();
        prev(info);
    }));
}

/// SIGKILLs every registered group (best effort, never blocks).
pub fn kill_all_registered() {
    let groups = lock(&LIVE_GROUPS).clone();
    for pg in groups {
        let _ = killpg(Pid::from_raw(pg), Signal::SIGKILL);
    }
}

fn register(pg: i32) {
    lock(&LIVE_GROUPS).push(pg);
}

fn unregister(pg: i32) {
    lock(&LIVE_GROUPS).retain(|p| *p != pg);
}

impl Supervisor {
    /// A supervisor for these nodes; nothing runs until [`Supervisor::start`].
    pub fn new(specs: Vec<NodeSpec>) -> Supervisor {
        let slots = specs
            .into_iter()
            .map(|spec| Slot {
                spec,
                child: None,
                state: ProcState::Killed,
                unexpected_exit: None,
                started: None,
            })
            .collect();
        Supervisor {
            slots: Mutex::new(slots),
            spawner: Spawner::new(),
        }
    }

    /// Adds a node (not started).
    pub fn add(&self, spec: NodeSpec) {
        lock(&self.slots).push(Slot {
            spec,
            child: None,
            state: ProcState::Killed,
            unexpected_exit: None,
            started: None,
        });
    }

    /// Replaces what a node runs from its next start on (a spare that
    /// joins is told who the members are then).
    pub fn set_launch(&self, id: &str, launch: Launch) -> Result<()> {
        let mut slots = lock(&self.slots);
        find_mut(&mut slots, id)?.spec.launch = launch;
        Ok(())
    }

    /// The ids of the nodes, in order.
    pub fn ids(&self) -> Vec<String> {
        lock(&self.slots)
            .iter()
            .map(|s| s.spec.id.clone())
            .collect()
    }

    /// Starts every node that is not running.
    pub fn start_all(&self) -> Result<()> {
        for id in self.ids() {
            if self.state(&id)? == ProcState::Killed {
                self.start(&id)?;
            }
        }
        Ok(())
    }

    /// The process state of one node.
    pub fn state(&self, id: &str) -> Result<ProcState> {
        let slots = lock(&self.slots);
        let slot = find(&slots, id)?;
        Ok(slot.state)
    }

    /// Starts (or restarts, on the same data directory) one node.
    pub fn start(&self, id: &str) -> Result<()> {
        let mut slots = lock(&self.slots);
        let slot = find_mut(&mut slots, id)?;
        if slot.child.is_some() {
            bail!("node {id} is already running");
        }
        let child = spawn(&self.spawner, &slot.spec)?;
        register(child.id() as i32);
        slot.child = Some(child);
        slot.state = ProcState::Running;
        slot.unexpected_exit = None;
        slot.started = Some(std::time::Instant::now());
        Ok(())
    }

    /// How long one node's process has run, if it runs (paused included).
    pub fn running_for(&self, id: &str) -> Result<Option<std::time::Duration>> {
        let mut slots = lock(&self.slots);
        let slot = find_mut(&mut slots, id)?;
        Ok(slot.child.as_ref().and(slot.started).map(|t| t.elapsed()))
    }

    /// SIGKILLs one node's process group and reaps it.
    pub fn kill(&self, id: &str) -> Result<()> {
        let mut slots = lock(&self.slots);
        let slot = find_mut(&mut slots, id)?;
        kill_slot(slot);
        Ok(())
    }

    /// SIGSTOPs one node's process group.
    pub fn pause(&self, id: &str) -> Result<()> {
        self.signal(id, Signal::SIGSTOP, ProcState::Paused)
    }

    /// SIGCONTs one node's process group.
    pub fn resume(&self, id: &str) -> Result<()> {
        self.signal(id, Signal::SIGCONT, ProcState::Running)
    }

    fn signal(&self, id: &str, sig: Signal, then: ProcState) -> Result<()> {
        let mut slots = lock(&self.slots);
        let slot = find_mut(&mut slots, id)?;
        let Some(child) = &slot.child else {
            // Pausing or resuming a dead node is a no-op, not an error: the
            // nemesis may combine kill and pause on the same node.
            return Ok(());
        };
        killpg(Pid::from_raw(child.id() as i32), sig)
            .with_context(|| format!("cannot send {sig} to node {id}"))?;
        slot.state = then;
        Ok(())
    }

    /// Reaps nodes that exited on their own and returns a description of
    /// each such exit (a node that dies unasked is a finding, not a crash of
    /// the harness: it is reported, and the nemesis may restart it).
    pub fn poll_exits(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut slots = lock(&self.slots);
        for slot in slots.iter_mut() {
            let Some(child) = slot.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                unregister(child.id() as i32);
                let what = format!("exited on its own: {status}");
                slot.child = None;
                slot.state = ProcState::Killed;
                slot.unexpected_exit = Some(what.clone());
                out.push((slot.spec.id.clone(), what));
            }
        }
        out
    }

    /// SIGKILLs and reaps every node.
    pub fn kill_all(&self) {
        let mut slots = lock(&self.slots);
        for slot in slots.iter_mut() {
            kill_slot(slot);
        }
    }

    /// The node whose process group is `pgid`, if any (to tell which node
    /// dialled a connection).
    pub fn node_of_group(&self, pgid: i32) -> Option<String> {
        lock(&self.slots)
            .iter()
            .find(|s| s.child.as_ref().is_some_and(|c| c.id() as i32 == pgid))
            .map(|s| s.spec.id.clone())
    }

    /// Starts a helper process (a client program) with piped stdin and
    /// stdout and stderr appended to `log`, in its own process group, tied
    /// to the controller's life like the nodes.
    pub fn spawn_aux(&self, cmd: &AuxCommand, log: &Path) -> Result<AuxChild> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let err_log = open_log(log)?;
        let mut c = Command::new(&cmd.program);
        c.args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&cmd.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err_log))
            .process_group(0);
        set_parent_death_signal(&mut c, nix::unistd::getpid());
        let child = self
            .spawner
            .spawn(c)
            .with_context(|| format!("cannot start {}", cmd.program.display()))?;
        register(child.id() as i32);
        Ok(AuxChild { child })
    }

    /// The OS process ids of the running nodes (for tests and diagnostics).
    pub fn pids(&self) -> Vec<u32> {
        lock(&self.slots)
            .iter()
            .filter_map(|s| s.child.as_ref().map(Child::id))
            .collect()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.kill_all();
        // Only now may the spawning thread end (its exit would signal the nodes).
        self.spawner.stop();
    }
}

fn find<'a>(slots: &'a [Slot], id: &str) -> Result<&'a Slot> {
    match slots.iter().find(|s| s.spec.id == id) {
        Some(s) => Ok(s),
        None => bail!("no node named {id}"),
    }
}

fn find_mut<'a>(slots: &'a mut [Slot], id: &str) -> Result<&'a mut Slot> {
    match slots.iter_mut().find(|s| s.spec.id == id) {
        Some(s) => Ok(s),
        None => bail!("no node named {id}"),
    }
}

fn kill_slot(slot: &mut Slot) {
    if let Some(mut child) = slot.child.take() {
        let pg = child.id() as i32;
        // The whole group: a node that forked helpers dies with them. SIGKILL
        // also ends a SIGSTOPped process.
        let _ = killpg(Pid::from_raw(pg), Signal::SIGKILL);
        let _ = child.wait();
        unregister(pg);
    }
    slot.state = ProcState::Killed;
}

fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open node log {}", path.display()))
}

fn spawn(spawner: &Spawner, spec: &NodeSpec) -> Result<Child> {
    let launch = &spec.launch;
    std::fs::create_dir_all(&launch.cwd)
        .with_context(|| format!("cannot create {}", launch.cwd.display()))?;
    for (path, text) in &launch.files {
        let p = launch.cwd.join(path);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    let mut log = open_log(&spec.log_path)?;
    let _ = writeln!(
        log,
        "--- faultline: starting {} at unix {:.3}",
        spec.id,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    );
    let err_log = log.try_clone().context("cannot duplicate the node log")?;
    let mut cmd = Command::new(&launch.program);
    cmd.args(&launch.args)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&launch.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err_log))
        // Its own process group: the terminal's Ctrl-C reaches only the
        // controller, which then stops the nodes in order; and killpg can
        // take the node with anything it started.
        .process_group(0);
    let parent = nix::unistd::getpid();
    set_parent_death_signal(&mut cmd, parent);
    spawner.spawn(cmd).with_context(|| {
        format!(
            "cannot start node {} ({})",
            spec.id,
            launch.program.display()
        )
    })
}

#[allow(unsafe_code)]
fn set_parent_death_signal(cmd: &mut Command, parent: Pid) {
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed. It makes two raw system calls
    // (prctl and getppid) and builds an io::Error from a raw errno; it does
    // not allocate, take locks or touch the parent's state.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
            // The controller may have died between fork and prctl; then no
            // signal will ever come, so refuse to exec.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A scratch directory removed on drop.
    struct TestDir(PathBuf);
    impl TestDir {
        fn new(name: &str) -> TestDir {
            let p = std::env::temp_dir().join(format!("faultline-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&p).expect("mkdir");
            TestDir(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn alive(pid: u32) -> bool {
        // Signal 0 probes existence; a reaped child is gone.
        nix::sys::signal::kill(Pid::from_raw(pid as i32), None).is_ok()
    }

    fn sleeper(dir: &Path, id: &str) -> NodeSpec {
        NodeSpec {
            id: id.to_string(),
            launch: Launch {
                program: PathBuf::from("/bin/sh"),
                args: vec!["-c".into(), "cat conf; echo started; exec sleep 600".into()],
                env: vec![],
                files: vec![(PathBuf::from("conf"), format!("config of {id}\n"))],
                cwd: dir.join(id),
            },
            log_path: dir.join(format!("{id}.log")),
        }
    }

    #[test]
    fn kill_pause_resume_restart_and_drop_leave_nothing() {
        let dir = TestDir::new("kill_pause");
        let sup = Supervisor::new(vec![sleeper(dir.path(), "n1"), sleeper(dir.path(), "n2")]);
        // Waits until n1's log shows `n` starts of the program itself.
        let wait_started = |n: usize| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let log = std::fs::read_to_string(dir.path().join("n1.log")).unwrap_or_default();
                if log.lines().filter(|l| *l == "started").count() >= n {
                    return;
                }
                assert!(Instant::now() < deadline, "log: {log}");
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        sup.start_all().expect("start");
        let pids = sup.pids();
        assert_eq!(pids.len(), 2);
        wait_started(1);
        // The spec's files are written into the working directory first.
        let log = std::fs::read_to_string(dir.path().join("n1.log")).unwrap_or_default();
        assert!(log.contains("config of n1"), "{log}");
        assert_eq!(sup.node_of_group(pids[1] as i32).as_deref(), Some("n2"));
        sup.pause("n1").expect("pause");
        assert_eq!(sup.state("n1").expect("state"), ProcState::Paused);
        sup.resume("n1").expect("resume");
        sup.kill("n1").expect("kill");
        assert!(!alive(pids[0]));
        assert_eq!(sup.state("n1").expect("state"), ProcState::Killed);
        sup.start("n1").expect("restart");
        // Output is captured, across restarts, in the node's log.
        wait_started(2);
        let all = sup.pids();
        drop(sup);
        for pid in all {
            assert!(!alive(pid), "pid {pid} survived the supervisor");
        }
    }

    #[test]
    fn unknown_node_is_an_error() {
        let sup = Supervisor::new(vec![]);
        assert!(sup.kill("n9").is_err());
    }
}

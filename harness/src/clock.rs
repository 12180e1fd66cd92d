//! Clocks that lie, per node: nodes start with libfaketime preloaded
//! (`LD_PRELOAD`), reading their offset and rate from a file of their own
//! that faultline rewrites while they run (`nodes/<id>.faketime`: `+0 x1`,
//! `+5 x1`, `-5 x1`, `+0 x0.5`). Programs that read the clock without libc (Go
//! binaries such as etcd) would ignore it: they are refused, never
//! pretended.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::nemesis::ClockAction;

/// Where Debian and others put libfaketime (the thread-safe build first).
const CANDIDATES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
];

/// libfaketime's shared library, or an error saying how to get it.
pub fn library() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("FAULTLINE_LIBFAKETIME") {
        return Ok(PathBuf::from(p));
    }
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .with_context(|| {
            "the clock nemesis needs libfaketime (Debian: apt-get install -y libfaketime; \
             or set FAULTLINE_LIBFAKETIME to its libfaketimeMT.so.1)"
                .to_string()
        })
}

/// Whether the executable at `program` is a Go program (an ELF file with a
/// `.go.buildinfo` section): Go reads the clock with its own system calls,
/// so libfaketime does not reach it. Anything that is not a 64-bit
/// little-endian ELF file (a script, a JVM launcher's target) is not Go.
pub fn is_go_program(program: &Path) -> Result<bool> {
    let b = std::fs::read(program).with_context(|| format!("cannot read {}", program.display()))?;
    Ok(elf_section_names(&b).iter().any(|n| n == ".go.buildinfo"))
}

/// The section names of a 64-bit little-endian ELF image (empty if it is not one).
fn elf_section_names(b: &[u8]) -> Vec<String> {
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|x| u16::from_le_bytes([x[0], x[1]]) as usize)
    };
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]) as usize)
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8).map(|x| {
            let mut a = [0u8; 8];
            a.copy_from_slice(x);
            u64::from_le_bytes(a) as usize
        })
    };
    if b.get(0..6) != Some(b"\x7fELF\x02\x01") {
        return Vec::new();
    }
    let (Some(shoff), Some(shentsize), Some(shnum), Some(shstrndx)) =
        (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e))
    else {
        return Vec::new();
    };
    // The section holding the names: its file offset is at +0x18.
    let Some(strtab) = u64_at(shoff + shstrndx * shentsize + 0x18) else {
        return Vec::new();
    };
    (0..shnum)
        .filter_map(|i| {
            let name = strtab + u32_at(shoff + i * shentsize)?;
            let end = b.get(name..)?.iter().position(|c| *c == 0)?;
            Some(String::from_utf8_lossy(&b[name..name + end]).into_owned())
        })
        .collect()
}

/// Refuses a program whose clock libfaketime cannot change.
pub fn check_program(program: &Path, system: &str) -> Result<()> {
    if is_go_program(program)? {
        bail!(
            "the clock nemesis changes clocks through libc (libfaketime), and {system}'s program \
             {} is a Go program, which reads the clock without libc: its clock cannot be \
             changed this way, so the clock nemesis refuses rather than pretend",
            program.display()
        );
    }
    Ok(())
}

/// The environment that makes a node read its clock from `file`.
pub fn env(library: &Path, file: &Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), library.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
        // Re-read the file at every clock read, so a change applies at once.
        ("FAKETIME_NO_CACHE".into(), "1".into()),
        ("DONT_FAKE_MONOTONIC".into(), "0".into()),
    ]
}

/// libfaketime's text for an offset in milliseconds and a rate. The rate
/// is always written: a spec without one keeps the rate read before.
fn spec(offset_ms: f64, rate: f64) -> String {
    let sign = if offset_ms < 0.0 { '-' } else { '+' };
    let secs = offset_ms.abs().round() / 1000.0;
    format!("{sign}{secs} x{rate}\n")
}

/// One node's clock file, and a strobe that may be flipping it.
///
/// libfaketime computes a process's time as `real + offset + (real -
/// start) × (rate - 1)`, `start` being when the process started: a new rate
/// written as it is would move the clock by the whole time the process has
/// run (and a return to the real rate would move it back as far, stalling
/// every timer for that long). So a rate change also moves the offset by
/// what keeps the clock where it is. The end of a fault brings back the
/// real rate and never sets a clock back: one that fell behind catches up
/// at once, one that ran ahead stays ahead.
#[derive(Debug)]
pub struct NodeClock {
    file: PathBuf,
    strobe: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
    offset_ms: f64,
    rate: f64,
}

impl NodeClock {
    /// A clock at real time, read from `file`.
    pub fn new(file: PathBuf) -> Result<NodeClock> {
        let c = NodeClock {
            file,
            strobe: None,
            offset_ms: 0.0,
            rate: 1.0,
        };
        c.write(0.0)?;
        Ok(c)
    }

    fn write(&self, extra_ms: f64) -> Result<()> {
        write_atomic(&self.file, &spec(self.offset_ms + extra_ms, self.rate))
    }

    /// Moves to `rate`, the clock staying where it is for a process that
    /// started `running` ago (none: not running; it starts afresh).
    fn set_rate(&mut self, rate: f64, running: Option<Duration>) {
        let ran_ms = running.unwrap_or_default().as_secs_f64() * 1000.0;
        self.offset_ms += ran_ms * (self.rate - rate);
        self.rate = rate;
    }

    /// Applies `action` to the clock of a process that started `running`
    /// ago; a strobe runs on a thread until [`NodeClock::reset`].
    pub fn apply(&mut self, action: ClockAction, running: Option<Duration>) -> Result<()> {
        self.stop_strobe();
        match action {
            ClockAction::Bump { ms } => {
                self.offset_ms += ms as f64;
                self.write(0.0)
            }
            ClockAction::Rate { rate } => {
                self.set_rate(rate, running);
                self.write(0.0)
            }
            ClockAction::Strobe { ms, period_ms } => {
                let stop = Arc::new(AtomicBool::new(false));
                let (file, flag) = (self.file.clone(), stop.clone());
                let (base, rate) = (self.offset_ms, self.rate);
                let thread = std::thread::Builder::new()
                    .name("faultline-clock-strobe".into())
                    .spawn(move || {
                        let mut on = false;
                        while !flag.load(Ordering::Relaxed) {
                            on = !on;
                            let extra = if on { ms as f64 } else { 0.0 };
                            let _ = write_atomic(&file, &spec(base + extra, rate));
                            std::thread::sleep(Duration::from_millis(period_ms.max(1)));
                        }
                    })
                    .context("cannot start a clock strobe")?;
                self.strobe = Some((stop, thread));
                Ok(())
            }
        }
    }

    /// Stops a strobe and waits for its thread, so nothing writes after.
    fn stop_strobe(&mut self) {
        if let Some((flag, thread)) = self.strobe.take() {
            flag.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }

    /// Ends a fault: the real rate again and no strobe; a clock behind real
    /// time jumps forward to it, one ahead stays ahead. A clock never jumps
    /// back at the end of a fault: CLOCK_MONOTONIC, which libfaketime moves
    /// too, would hold every timer of the node for as long.
    pub fn reset(&mut self, running: Option<Duration>) -> Result<()> {
        self.stop_strobe();
        self.set_rate(1.0, running);
        self.offset_ms = self.offset_ms.max(0.0);
        self.write(0.0)
    }
}

impl Drop for NodeClock {
    fn drop(&mut self) {
        self.stop_strobe();
    }
}

/// Replaces `path`'s contents in one rename, so a reader never sees half a spec.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("faketime.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot update {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_what_libfaketime_reads() {
        assert_eq!(spec(0.0, 1.0), "+0 x1\n");
        assert_eq!(spec(5000.0, 1.0), "+5 x1\n");
        assert_eq!(spec(-2500.0, 1.0), "-2.5 x1\n");
        assert_eq!(spec(0.0, 0.5), "+0 x0.5\n");
        assert_eq!(spec(1234.4, 2.0), "+1.234 x2\n");
    }

    #[test]
    fn go_programs_are_recognised_by_their_section() {
        // This test binary is ELF, with sections, and not Go.
        let me = std::env::current_exe().unwrap();
        let names = elf_section_names(&std::fs::read(&me).unwrap());
        assert!(names.iter().any(|n| n == ".text"), "{names:?}");
        assert!(!is_go_program(&me).unwrap());
        assert!(elf_section_names(b"#!/bin/sh\n").is_empty());
        // etcd is a Go program, where it is installed.
        if let Some(etcd) = crate::sut::which("etcd") {
            assert!(is_go_program(&etcd).unwrap());
            let e = check_program(&etcd, "etcd").unwrap_err().to_string();
            assert!(e.contains("Go program"), "{e}");
        }
    }

    #[test]
    fn a_node_clock_follows_its_actions() {
        let dir = std::env::temp_dir().join(format!("faultline-clockf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("n1.faketime");
        let mut c = NodeClock::new(f.clone()).unwrap();
        let read = || std::fs::read_to_string(&f).unwrap();
        let ran = |s: u64| Some(Duration::from_secs(s));
        assert_eq!(read(), "+0 x1\n");
        c.apply(ClockAction::Bump { ms: -5000 }, ran(1)).unwrap();
        assert_eq!(read(), "-5 x1\n");
        // Twice as fast from 10 s into the process: libfaketime would add
        // the 10 s already run; the offset takes them back.
        c.apply(ClockAction::Rate { rate: 2.0 }, ran(10)).unwrap();
        assert_eq!(read(), "-15 x2\n");
        c.apply(
            ClockAction::Strobe {
                ms: 1000,
                period_ms: 1,
            },
            ran(11),
        )
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while read() != "-14 x2\n" {
            assert!(
                std::time::Instant::now() < deadline,
                "the strobe never flipped"
            );
            std::thread::yield_now();
        }
        // At 12 s the clock is 15 s behind plus 12 s gained at 2x: 3 s
        // behind, so the end of the fault sets it to real time.
        c.reset(ran(12)).unwrap();
        assert_eq!(read(), "+0 x1\n");
        // Ahead of real time, it stays ahead at the end of a fault.
        c.apply(ClockAction::Rate { rate: 2.0 }, ran(20)).unwrap();
        assert_eq!(read(), "-20 x2\n");
        c.reset(ran(25)).unwrap();
        assert_eq!(read(), "+5 x1\n");
        // A node that is not running starts afresh: nothing to carry.
        c.apply(ClockAction::Rate { rate: 0.5 }, None).unwrap();
        assert_eq!(read(), "+5 x0.5\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

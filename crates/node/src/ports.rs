//! Loopback ports for clusters whose members must know each other's
//! addresses before any of them starts (the controller, the node's tests and
//! `node-bench` all reserve them here).
//!
//! Binding port 0 and releasing it leaves a window in which the kernel may
//! hand the same port to someone else's outgoing connection or `bind(0)`
//! before the node binds it; with many connections about (etcd, a busy test
//! binary) that happens. So ports are chosen below Linux's default ephemeral
//! range (32768–60999), where the kernel never picks ports by itself, and
//! spread by process id and a per-process counter so parallel tests and
//! parallel runs do not try the same ones.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// The first port handed out.
const FIRST: u16 = 12_000;
/// One past the last port handed out (below the ephemeral range).
const END: u16 = 32_000;

/// How far this process has walked through the range.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Finds `n` distinct free loopback addresses. Each is bound (proving it is
/// free) and held until all are found, then released for the caller's
/// processes to bind.
pub fn reserve_loopback_ports(n: usize) -> io::Result<Vec<SocketAddr>> {
    let span = u32::from(END - FIRST);
    // Knuth's multiplicative hash spreads neighbouring process ids apart.
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    let mut held = Vec::with_capacity(n);
    let mut tried = 0;
    while held.len() < n {
        if tried >= span {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("no {n} free loopback ports in {FIRST}..{END}"),
            ));
        }
        tried += 1;
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        // `span` < 2^16, so the remainder fits a u16.
        let port = FIRST + ((start + step) % span) as u16;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
        }
    }
    held.iter().map(TcpListener::local_addr).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let a = reserve_loopback_ports(10).unwrap();
        let b = reserve_loopback_ports(10).unwrap();
        let mut all: Vec<u16> = a.iter().chain(&b).map(SocketAddr::port).collect();
        assert!(all.iter().all(|p| (FIRST..END).contains(p)), "{all:?}");
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 20, "a port was handed out twice");
        for addr in a {
            assert!(addr.ip().is_loopback());
            TcpListener::bind(addr).expect("a reserved port is free again");
        }
    }
}

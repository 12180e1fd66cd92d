//! Per-link faults for systems whose members advertise one peer address
//! ([`PeerRouting::PerDestination`](super::PeerRouting), e.g. etcd): a
//! listener per destination that finds which member dialled it and splices
//! the connection into that directed link's proxy, so partitions and delays
//! act per ordered pair as for faultline-node.
//!
//! The dialler is found from the kernel: the accepted socket's remote port
//! names a socket in `/proc/net/tcp`, its inode names the process holding
//! it (`/proc/<pid>/fd`), and that process's group (`/proc/<pid>/stat`) is
//! one node's, as the supervisor started it (any system: no command-line
//! convention is assumed). A connection whose dialler cannot be found is
//! closed (the node retries). Linux only, like the rest of the harness.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Names the node whose process group is the given one.
pub type WhoIs = Arc<dyn Fn(i32) -> Option<String> + Send + Sync>;

/// Starts a demultiplexer for one destination: connections from the node
/// named `ids[i]` (as `who` tells from the dialling process's group) go to
/// `links[i]` (`None` for the destination itself). Returns the address to
/// advertise.
pub async fn start(
    ids: Vec<String>,
    links: Vec<Option<SocketAddr>>,
    who: WhoIs,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind a demux listener")?;
    let addr = listener.local_addr()?;
    let t2 = tracker.clone();
    tracker.spawn(async move {
        loop {
            let (sock, from) = tokio::select! {
                _ = cancel.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(_) => continue,
                },
            };
            let (ids, links, cancel, who) =
                (ids.clone(), links.clone(), cancel.clone(), who.clone());
            t2.spawn(async move {
                let group = tokio::task::spawn_blocking(move || dialler_group(from, addr))
                    .await
                    .ok()
                    .flatten();
                let Some(name) = group.and_then(|g| who(g)) else {
                    return;
                };
                let Some(i) = ids.iter().position(|id| *id == name) else {
                    return;
                };
                let Some(link) = links[i] else { return };
                let Ok(mut up) = TcpStream::connect(link).await else {
                    return;
                };
                let mut sock = sock;
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut sock, &mut up) => {}
                }
            });
        }
    });
    Ok(addr)
}

/// `127.0.0.1:port` as `/proc/net/tcp` writes it.
fn proc_addr(a: SocketAddr) -> Option<String> {
    match a {
        SocketAddr::V4(v4) => {
            let o = v4.ip().octets();
            Some(format!(
                "{:02X}{:02X}{:02X}{:02X}:{:04X}",
                o[3],
                o[2],
                o[1],
                o[0],
                v4.port()
            ))
        }
        SocketAddr::V6(_) => None,
    }
}

/// The inode of the socket whose local end is `local` and remote end `remote`.
pub fn socket_inode(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let (l, r) = (proc_addr(local)?, proc_addr(remote)?);
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && f[1] == l && f[2] == r).then(|| f[9].parse().ok())?
    })
}

/// The process group of the process that dialled `listener` from `from`.
fn dialler_group(from: SocketAddr, listener: SocketAddr) -> Option<i32> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = socket_inode(&table, from, listener)?;
    let target = format!("socket:[{inode}]");
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = proc_entry.file_name();
        if !pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str())
        });
        if holds {
            let stat = std::fs::read_to_string(proc_entry.path().join("stat")).ok()?;
            return process_group(&stat);
        }
    }
    None
}

/// The process group in a `/proc/<pid>/stat` line (the fifth field; the
/// second, the command, may hold spaces and parentheses).
pub fn process_group(stat: &str) -> Option<i32> {
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_socket_and_the_name() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 424242 1 0 20 4 30 10 -1\n";
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let remote: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(socket_inode(table, local, remote), Some(424242));
        assert_eq!(socket_inode(table, remote, local), None);
        // The process's own group.
        let own = std::fs::read_to_string("/proc/self/stat").expect("stat");
        assert_eq!(process_group(&own), Some(nix::unistd::getpgrp().as_raw()));
        assert_eq!(
            process_group("4242 (java (x) y) S 1 4240 4240 0 -1 4194560"),
            Some(4240)
        );
        assert_eq!(process_group("garbage"), None);
    }
}

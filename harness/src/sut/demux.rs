//! Per-link faults for systems whose members advertise one peer address
//! ([`PeerRouting::PerDestination`](super::PeerRouting), e.g. etcd): a
//! listener per destination that finds which member dialled it and splices
//! the connection into that directed link's proxy, so partitions and delays
//! act per ordered pair as for faultline-node.
//!
//! The dialler is found from the kernel: the accepted socket's remote port
//! names a socket in `/proc/net/tcp`, its inode names the process holding
//! it (`/proc/<pid>/fd`), and that process's command line names the member
//! (`--name nX`). A connection whose dialler cannot be found is closed (the
//! member retries). Linux only, like the rest of the harness.

use std::net::SocketAddr;

use anyhow::{Context as _, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Starts a demultiplexer for destination `to`: connections from the member
/// named `ids[i]` go to `links[i]` (`None` for `to` itself). Returns the
/// address to advertise.
pub async fn start(
    ids: Vec<String>,
    links: Vec<Option<SocketAddr>>,
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
            let (ids, links, cancel) = (ids.clone(), links.clone(), cancel.clone());
            t2.spawn(async move {
                let who = tokio::task::spawn_blocking(move || dialler(from, addr))
                    .await
                    .ok()
                    .flatten();
                let Some(name) = who else { return };
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

/// The `--name` of the process that dialled `listener` from `from`.
fn dialler(from: SocketAddr, listener: SocketAddr) -> Option<String> {
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
            let cmd = std::fs::read(proc_entry.path().join("cmdline")).ok()?;
            return name_arg(&cmd);
        }
    }
    None
}

/// The value after `--name` in a NUL-separated command line.
pub fn name_arg(cmdline: &[u8]) -> Option<String> {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    args.windows(2)
        .find(|w| w[0] == b"--name")
        .map(|w| String::from_utf8_lossy(w[1]).into_owned())
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
        assert_eq!(
            name_arg(b"/usr/bin/etcd\0--name\0n2\0--data-dir\0/x\0"),
            Some("n2".into())
        );
        assert_eq!(name_arg(b"/usr/bin/etcd\0"), None);
    }
}

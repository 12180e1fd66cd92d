//! The fault proxy: one TCP listener per directed link whose mode (pass,
//! blackhole, reject, delay, loss, bandwidth) changes at run time and applies
//! at once to the connections already open.
//!
//! A link `i→j` is the path node `i` dials to reach node `j`: node `i`'s
//! `--peer nj=` address is this proxy's listener, and the proxy dials node
//! `j`'s real peer address. The mode applies to both byte directions of the
//! connections `i` opened, so a one-way partition `i↛j` silences what `i`
//! sends on its own connections to `j` while `j`'s connections to `i` pass.
//!
//! What each mode means, precisely:
//! - `pass`: bytes are forwarded as they arrive.
//! - `blackhole`: like an iptables DROP. Bytes are read and discarded, nothing
//!   is reset, so senders see silence and time out. A connection that lost
//!   bytes cannot carry a framed stream any more, so when the link leaves
//!   blackhole such a connection is reset (TCP would have given up by then);
//!   connections that lost nothing continue.
//! - `reject`: every open connection is reset at once and new ones are reset
//!   as soon as they are accepted (like an iptables REJECT with tcp-reset).
//! - `delay`: every chunk is delivered `latency ± jitter` after it arrived,
//!   never reordered within a connection.
//! - `loss`: TCP cannot lose bytes silently, so loss is defined per chunk:
//!   each chunk read is, with the given probability, dropped together with
//!   its connection (both sides get a reset); the sender must reconnect.
//! - `bandwidth`: chunks are paced to at most the given bytes per second.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How a link treats the bytes that cross it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum LinkMode {
    /// Forward everything.
    Pass,
    /// Read and discard; never reset (senders time out).
    Blackhole,
    /// Reset every connection at once.
    Reject,
    /// Deliver each chunk `latency_ms ± jitter_ms` late, in order.
    Delay {
        /// Mean added latency in milliseconds.
        latency_ms: u64,
        /// Uniform jitter around the mean, in milliseconds.
        jitter_ms: u64,
    },
    /// Drop the connection with this probability per chunk read.
    Loss {
        /// Probability in [0, 1] that a chunk kills its connection.
        probability: f64,
    },
    /// Pace the link to this many bytes per second.
    Bandwidth {
        /// Bytes per second (at least 1).
        bytes_per_sec: u64,
    },
}

impl LinkMode {
    /// Whether this mode is the healthy default.
    pub fn is_pass(&self) -> bool {
        matches!(self, LinkMode::Pass)
    }
}

/// Counters of one link, for reports and tests.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Connections accepted on the listener.
    pub connections: AtomicU64,
    /// Bytes forwarded (both directions).
    pub bytes_forwarded: AtomicU64,
    /// Bytes read and discarded (blackhole).
    pub bytes_dropped: AtomicU64,
    /// Connections the proxy reset (reject, loss, healed blackhole).
    pub resets: AtomicU64,
}

/// A running proxy for one link. Dropping it does not stop it: cancel the
/// token it was started with.
#[derive(Debug)]
pub struct Proxy {
    listen: SocketAddr,
    target: SocketAddr,
    mode: watch::Sender<LinkMode>,
    stats: Arc<LinkStats>,
}

impl Proxy {
    /// Binds `127.0.0.1:0` and forwards every accepted connection to
    /// `target` until `cancel` fires. Tasks are spawned on `tracker`.
    pub async fn start(
        target: SocketAddr,
        seed: u64,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let listen = listener.local_addr()?;
        let (mode, mode_rx) = watch::channel(LinkMode::Pass);
        let stats = Arc::new(LinkStats::default());
        let rng = Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed)));
        let ctx = LinkCtx {
            target,
            mode: mode_rx,
            stats: stats.clone(),
            rng,
            cancel: cancel.clone(),
            tracker: tracker.clone(),
        };
        tracker.spawn(accept_loop(listener, ctx));
        Ok(Proxy {
            listen,
            target,
            mode,
            stats,
        })
    }

    /// The address to dial instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// The address this proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Changes the link's mode; open connections follow at once.
    pub fn set_mode(&self, mode: LinkMode) {
        self.mode.send_replace(mode);
    }

    /// The link's current mode.
    pub fn mode(&self) -> LinkMode {
        *self.mode.borrow()
    }

    /// The link's counters.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }
}

/// What every connection task of one link shares.
#[derive(Clone)]
struct LinkCtx {
    target: SocketAddr,
    mode: watch::Receiver<LinkMode>,
    stats: Arc<LinkStats>,
    rng: Arc<Mutex<ChaCha8Rng>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl LinkCtx {
    fn mode(&self) -> LinkMode {
        *self.mode.borrow()
    }

    /// A uniform draw in [0, 1) from the link's seeded generator.
    fn draw(&self) -> f64 {
        // A poisoned lock only means another task panicked mid-draw; the
        // generator state is still usable.
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        rng.random::<f64>()
    }
}

async fn accept_loop(listener: TcpListener, ctx: LinkCtx) {
    loop {
        let accepted = tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((inbound, _)) = accepted else {
            // Transient accept errors (EMFILE, aborted handshakes): keep serving.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        ctx.stats.connections.fetch_add(1, Ordering::Relaxed);
        let ctx2 = ctx.clone();
        ctx.tracker.spawn(serve(inbound, ctx2));
    }
}

/// Serves one accepted connection until it ends, is reset, or the proxy stops.
async fn serve(inbound: TcpStream, ctx: LinkCtx) {
    // Linger 0: dropping a socket sends a reset, which is what reject and
    // loss mean. Orderly ends still send FIN through `shutdown`.
    let _ = inbound.set_zero_linger();
    let _ = inbound.set_nodelay(true);
    let conn = ctx.cancel.child_token();
    let tainted = Arc::new(AtomicBool::new(false));
    let mut mode_rx = ctx.mode.clone();

    match ctx.mode() {
        LinkMode::Reject => {
            ctx.stats.resets.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Hold a connection accepted during a blackhole without dialing the
        // target; discard what arrives. When the link heals, reset if
        // anything was lost.
        LinkMode::Blackhole if !hold_blackholed(&inbound, &ctx, &conn, &mut mode_rx).await => {
            ctx.stats.resets.fetch_add(1, Ordering::Relaxed);
            return;
        }
        _ => {}
    }

    let upstream = tokio::select! {
        _ = conn.cancelled() => return,
        r = TcpStream::connect(ctx.target) => r,
    };
    let Ok(upstream) = upstream else {
        // The target is down: the dialer sees a reset, as from a closed port.
        return;
    };
    let _ = upstream.set_zero_linger();
    let _ = upstream.set_nodelay(true);

    let (in_r, in_w) = inbound.into_split();
    let (up_r, up_w) = upstream.into_split();
    let (tx_fwd, rx_fwd) = mpsc::channel(256);
    let (tx_back, rx_back) = mpsc::channel(256);
    let tasks = TaskTracker::new();
    tasks.spawn(read_side(
        in_r,
        tx_fwd,
        ctx.clone(),
        conn.clone(),
        tainted.clone(),
    ));
    tasks.spawn(write_side(
        up_w,
        rx_fwd,
        ctx.clone(),
        conn.clone(),
        tainted.clone(),
    ));
    tasks.spawn(read_side(
        up_r,
        tx_back,
        ctx.clone(),
        conn.clone(),
        tainted.clone(),
    ));
    tasks.spawn(write_side(
        in_w,
        rx_back,
        ctx.clone(),
        conn.clone(),
        tainted.clone(),
    ));
    tasks.close();

    // Watch the mode while the four pumps run: reject resets at once, and a
    // connection that lost bytes in a blackhole is reset when it heals.
    let watch_conn = conn.clone();
    let watcher = async {
        loop {
            if mode_rx.changed().await.is_err() {
                return;
            }
            let m = *mode_rx.borrow_and_update();
            let reset = match m {
                LinkMode::Reject => true,
                LinkMode::Blackhole => false,
                _ => tainted.load(Ordering::Relaxed),
            };
            if reset {
                ctx.stats.resets.fetch_add(1, Ordering::Relaxed);
                watch_conn.cancel();
                return;
            }
        }
    };
    tokio::select! {
        _ = tasks.wait() => {}
        _ = watcher => { tasks.wait().await; }
    }
}

/// Holds a connection accepted during a blackhole. Returns true when the link
/// healed before any byte was lost (the connection may proceed).
async fn hold_blackholed(
    inbound: &TcpStream,
    ctx: &LinkCtx,
    conn: &CancellationToken,
    mode_rx: &mut watch::Receiver<LinkMode>,
) -> bool {
    let mut lost = false;
    let mut buf = vec![0u8; 16 * 1024];
    mode_rx.mark_unchanged();
    loop {
        tokio::select! {
            _ = conn.cancelled() => return false,
            r = mode_rx.changed() => {
                if r.is_err() { return false; }
                match *mode_rx.borrow_and_update() {
                    LinkMode::Blackhole => {}
                    LinkMode::Reject => return false,
                    _ => return !lost,
                }
            }
            r = inbound.readable() => {
                if r.is_err() { return false; }
                match inbound.try_read(&mut buf) {
                    Ok(0) => return false,
                    Ok(n) => {
                        lost = true;
                        ctx.stats.bytes_dropped.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return false,
                }
            }
        }
    }
}

/// One chunk in flight, with the instant it may be written.
struct Chunk {
    at: Instant,
    data: Vec<u8>,
}

/// Reads from one side and queues chunks for the other, applying the mode
/// current at the time each chunk arrives.
async fn read_side(
    mut src: OwnedReadHalf,
    tx: mpsc::Sender<Chunk>,
    ctx: LinkCtx,
    conn: CancellationToken,
    tainted: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    // Delivery times never go backwards, so delay and pacing keep order.
    let mut last_at = Instant::now();
    loop {
        let n = tokio::select! {
            _ = conn.cancelled() => return,
            r = src.read(&mut buf) => match r {
                Ok(0) | Err(_) => return, // dropping tx ends the writer with FIN
                Ok(n) => n,
            },
        };
        let now = Instant::now();
        let at = match ctx.mode() {
            LinkMode::Pass => now.max(last_at),
            LinkMode::Blackhole => {
                tainted.store(true, Ordering::Relaxed);
                ctx.stats
                    .bytes_dropped
                    .fetch_add(n as u64, Ordering::Relaxed);
                continue;
            }
            LinkMode::Reject => {
                conn.cancel();
                return;
            }
            LinkMode::Delay {
                latency_ms,
                jitter_ms,
            } => {
                let jitter = (ctx.draw() * 2.0 - 1.0) * jitter_ms as f64;
                let ms = (latency_ms as f64 + jitter).max(0.0);
                (now + Duration::from_secs_f64(ms / 1000.0)).max(last_at)
            }
            LinkMode::Loss { probability } => {
                if ctx.draw() < probability {
                    ctx.stats.resets.fetch_add(1, Ordering::Relaxed);
                    conn.cancel();
                    return;
                }
                now.max(last_at)
            }
            LinkMode::Bandwidth { bytes_per_sec } => {
                let secs = n as f64 / bytes_per_sec.max(1) as f64;
                now.max(last_at) + Duration::from_secs_f64(secs)
            }
        };
        last_at = at;
        let chunk = Chunk {
            at,
            data: buf[..n].to_vec(),
        };
        tokio::select! {
            _ = conn.cancelled() => return,
            r = tx.send(chunk) => if r.is_err() { return },
        }
    }
}

/// Writes queued chunks to the other side when they are due; a chunk due
/// while the link is blackholed is discarded instead.
async fn write_side(
    mut dst: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Chunk>,
    ctx: LinkCtx,
    conn: CancellationToken,
    tainted: Arc<AtomicBool>,
) {
    loop {
        let chunk = tokio::select! {
            _ = conn.cancelled() => return,
            c = rx.recv() => c,
        };
        let Some(chunk) = chunk else {
            // The reading side ended in order: pass the FIN on.
            let _ = dst.shutdown().await;
            return;
        };
        if chunk.at > Instant::now() {
            tokio::select! {
                _ = conn.cancelled() => return,
                _ = tokio::time::sleep_until(chunk.at) => {}
            }
        }
        match ctx.mode() {
            LinkMode::Blackhole => {
                tainted.store(true, Ordering::Relaxed);
                ctx.stats
                    .bytes_dropped
                    .fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
                continue;
            }
            LinkMode::Reject => {
                conn.cancel();
                return;
            }
            _ => {}
        }
        tokio::select! {
            _ = conn.cancelled() => return,
            r = dst.write_all(&chunk.data) => {
                if r.is_err() {
                    conn.cancel();
                    return;
                }
                ctx.stats.bytes_forwarded.fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on an ephemeral port; returns its address.
    async fn echo_server(tracker: &TaskTracker, cancel: CancellationToken) -> SocketAddr {
        let l = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let t2 = tracker.clone();
        tracker.spawn(async move {
            loop {
                let (mut s, _) = tokio::select! {
                    _ = cancel.cancelled() => return,
                    a = l.accept() => match a { Ok(a) => a, Err(_) => return },
                };
                t2.spawn(async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn setup() -> (Proxy, CancellationToken, TaskTracker) {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let echo = echo_server(&tracker, cancel.clone()).await;
        let p = Proxy::start(echo, 7, cancel.clone(), &tracker)
            .await
            .expect("proxy");
        (p, cancel, tracker)
    }

    async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(msg).await?;
        let mut out = vec![0u8; msg.len()];
        s.read_exact(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn pass_forwards_bytes_both_ways() {
        let (p, cancel, _t) = setup().await;
        let mut s = TcpStream::connect(p.addr()).await.expect("connect");
        assert_eq!(roundtrip(&mut s, b"hello").await.expect("rt"), b"hello");
        assert!(p.stats().bytes_forwarded.load(Ordering::Relaxed) >= 10);
        cancel.cancel();
    }

    #[tokio::test]
    async fn reject_resets_an_open_connection_at_once() {
        let (p, cancel, _t) = setup().await;
        let mut s = TcpStream::connect(p.addr()).await.expect("connect");
        roundtrip(&mut s, b"x").await.expect("rt");
        p.set_mode(LinkMode::Reject);
        let mut buf = [0u8; 1];
        // The idle connection is reset without us sending anything.
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("reset must arrive promptly");
        assert!(matches!(r, Ok(0) | Err(_)), "got {r:?}");
        cancel.cancel();
    }

    #[tokio::test]
    async fn blackhole_stalls_without_reset_then_resets_on_heal() {
        let (p, cancel, _t) = setup().await;
        let mut s = TcpStream::connect(p.addr()).await.expect("connect");
        roundtrip(&mut s, b"x").await.expect("rt");
        p.set_mode(LinkMode::Blackhole);
        s.write_all(b"lost").await.expect("write is accepted");
        let mut buf = [0u8; 4];
        let r = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
        assert!(r.is_err(), "a blackhole must stall, got {r:?}");
        // Wait until the proxy has really discarded the bytes.
        let deadline = Instant::now() + Duration::from_secs(5);
        while p.stats().bytes_dropped.load(Ordering::Relaxed) < 4 {
            assert!(Instant::now() < deadline, "bytes never dropped");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        p.set_mode(LinkMode::Pass);
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("a tainted connection is reset on heal");
        assert!(matches!(r, Ok(0) | Err(_)), "got {r:?}");
        // A fresh connection passes again.
        let mut s2 = TcpStream::connect(p.addr()).await.expect("connect");
        assert_eq!(roundtrip(&mut s2, b"ok").await.expect("rt"), b"ok");
        cancel.cancel();
    }

    #[tokio::test]
    async fn delay_adds_latency_to_existing_connections() {
        let (p, cancel, _t) = setup().await;
        let mut s = TcpStream::connect(p.addr()).await.expect("connect");
        roundtrip(&mut s, b"x").await.expect("rt");
        p.set_mode(LinkMode::Delay {
            latency_ms: 100,
            jitter_ms: 0,
        });
        let t0 = Instant::now();
        roundtrip(&mut s, b"y").await.expect("rt");
        // Both directions are delayed: at least 2 × 100 ms, a lower bound
        // that holds however slow the machine is.
        assert!(t0.elapsed() >= Duration::from_millis(200));
        cancel.cancel();
    }

    #[tokio::test]
    async fn loss_of_one_drops_the_connection() {
        let (p, cancel, _t) = setup().await;
        let mut s = TcpStream::connect(p.addr()).await.expect("connect");
        roundtrip(&mut s, b"x").await.expect("rt");
        p.set_mode(LinkMode::Loss { probability: 1.0 });
        let r = tokio::time::timeout(Duration::from_secs(5), roundtrip(&mut s, b"y"))
            .await
            .expect("loss must reset promptly");
        assert!(r.is_err(), "got {r:?}");
        cancel.cancel();
    }

    #[tokio::test]
    async fn bandwidth_paces_bytes() {
        let (p, cancel, _t) = setup().await;
        let mut s = TcpStream::connect(p.addr()).await.expect("connect");
        p.set_mode(LinkMode::Bandwidth {
            bytes_per_sec: 10_000,
        });
        let t0 = Instant::now();
        let msg = vec![7u8; 2_000];
        roundtrip(&mut s, &msg).await.expect("rt");
        // 2,000 bytes each way at 10 kB/s is at least 0.2 s each way.
        assert!(t0.elapsed() >= Duration::from_millis(400));
        cancel.cancel();
    }
}

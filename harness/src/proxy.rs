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
//!
//! Two options of a proxy ([`ProxyOptions`]) serve systems whose peers do
//! more than dial a fixed address:
//! - `connect_patience`: the dialler's connect succeeds as soon as the proxy
//!   accepts, before the proxy reaches the target. When the target is not
//!   listening yet (a server that opens a port only once elected), closing
//!   at once would look to the dialler like an end of stream in the middle
//!   of its handshake rather than a refused connection, and some systems
//!   treat the two differently. So the proxy keeps trying the target every
//!   25 ms for this long (the dialler's bytes wait in the socket meanwhile)
//!   and only then resets the dialler's connection.
//! - `rewrite`: some systems write the dialler's own address into the first
//!   bytes of a connection, and the receiver may dial that address back,
//!   which would bypass the proxies. The proxy replaces the first occurrence
//!   of that address within the first [`REWRITE_WINDOW`] bytes the dialler
//!   sends with the address the receiver dials to reach the dialler (the
//!   proxy of the reverse link); both must have the same length, since the
//!   dialler's framing may count them. Only that direction and that window
//!   are searched; an address split across two reads is held back (at most
//!   [`REWRITE_HOLD`]) until the rest arrives.

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

/// The dialler's own address as it writes it, and what to write instead
/// (same length; see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// The bytes to find (the dialler's own address).
    pub from: Vec<u8>,
    /// The bytes that replace them (the address the receiver dials to reach
    /// the dialler).
    pub to: Vec<u8>,
}

/// How many first bytes of a connection are searched for a [`Rewrite`].
pub const REWRITE_WINDOW: usize = 1024;

/// How long a possible start of the address at the end of a read is held
/// back waiting for the rest, before it is forwarded as it is.
pub const REWRITE_HOLD: Duration = Duration::from_millis(100);

/// How often the target is tried again while it refuses.
const CONNECT_RETRY: Duration = Duration::from_millis(25);

/// Options of one proxy (the default: no patience, no rewrite).
#[derive(Clone, Debug, Default)]
pub struct ProxyOptions {
    /// How long to keep trying a target that refuses before resetting the
    /// dialler (zero: reset at once, as a closed port would).
    pub connect_patience: Duration,
    /// The dialler's own address to rewrite in the first bytes it sends.
    pub rewrite: Option<Rewrite>,
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
        Proxy::start_with(
            listener,
            target,
            seed,
            ProxyOptions::default(),
            cancel,
            tracker,
        )
        .await
    }

    /// [`Proxy::start`] on a listener bound beforehand (so its address can
    /// be handed out, e.g. in another link's rewrite), with options.
    pub async fn start_with(
        listener: TcpListener,
        target: SocketAddr,
        seed: u64,
        options: ProxyOptions,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> std::io::Result<Proxy> {
        let listen = listener.local_addr()?;
        let (mode, mode_rx) = watch::channel(LinkMode::Pass);
        let stats = Arc::new(LinkStats::default());
        let rng = Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed)));
        let ctx = LinkCtx {
            target,
            options: Arc::new(options),
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
    options: Arc<ProxyOptions>,
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

    let Some(upstream) = connect_upstream(&ctx, &conn).await else {
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
        ctx.options.rewrite.clone().map(Rewriter::new),
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
        None,
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

/// Dials the target, trying again every [`CONNECT_RETRY`] while it refuses
/// and the link's patience lasts (see the module docs). `None` when it
/// cannot be reached, the link rejects, or the connection is cancelled.
async fn connect_upstream(ctx: &LinkCtx, conn: &CancellationToken) -> Option<TcpStream> {
    let give_up = Instant::now() + ctx.options.connect_patience;
    loop {
        let r = tokio::select! {
            _ = conn.cancelled() => return None,
            r = TcpStream::connect(ctx.target) => r,
        };
        if let Ok(s) = r {
            return Some(s);
        }
        if Instant::now() + CONNECT_RETRY > give_up || ctx.mode() == LinkMode::Reject {
            return None;
        }
        tokio::select! {
            _ = conn.cancelled() => return None,
            _ = tokio::time::sleep(CONNECT_RETRY) => {}
        }
    }
}

/// Rewrites the dialler's own address in the first bytes of one connection.
#[derive(Debug)]
struct Rewriter {
    rw: Rewrite,
    /// Bytes handed on so far.
    passed: usize,
    /// A possible start of the address, waiting for the rest.
    held: Vec<u8>,
    /// Replaced, or past the window: pass everything from now on.
    done: bool,
}

impl Rewriter {
    fn new(rw: Rewrite) -> Rewriter {
        let done = rw.from.is_empty();
        Rewriter {
            rw,
            passed: 0,
            held: Vec::new(),
            done,
        }
    }

    /// Whether bytes are held back.
    fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Takes the next bytes read; returns what may be forwarded now.
    fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        if self.done {
            return data.to_vec();
        }
        let mut buf = std::mem::take(&mut self.held);
        buf.extend_from_slice(data);
        let from = &self.rw.from;
        if let Some(at) = buf.windows(from.len()).position(|w| w == from.as_slice())
            && self.passed + at < REWRITE_WINDOW
        {
            buf.splice(at..at + from.len(), self.rw.to.iter().copied());
            self.done = true;
            return buf;
        }
        if self.passed + buf.len() >= REWRITE_WINDOW {
            self.done = true;
            return buf;
        }
        // Hold back the longest end of `buf` that could begin the address.
        let keep = (1..from.len().min(buf.len() + 1))
            .rev()
            .find(|&k| buf[buf.len() - k..] == from[..k])
            .unwrap_or(0);
        self.held = buf.split_off(buf.len() - keep);
        self.passed += buf.len();
        buf
    }

    /// Gives up waiting: the held bytes, as they are.
    fn flush(&mut self) -> Vec<u8> {
        self.passed += self.held.len();
        std::mem::take(&mut self.held)
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
/// current at the time each chunk arrives (and, dialler to receiver, the
/// link's address rewrite).
async fn read_side(
    mut src: OwnedReadHalf,
    tx: mpsc::Sender<Chunk>,
    mut rewriter: Option<Rewriter>,
    ctx: LinkCtx,
    conn: CancellationToken,
    tainted: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    // Delivery times never go backwards, so delay and pacing keep order.
    let mut last_at = Instant::now();
    loop {
        let holding = rewriter.as_ref().is_some_and(Rewriter::holding);
        let data = tokio::select! {
            _ = conn.cancelled() => return,
            _ = tokio::time::sleep(REWRITE_HOLD), if holding => match rewriter.as_mut() {
                Some(r) => r.flush(),
                None => continue,
            },
            r = src.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    // The end of the stream: what was held back goes first.
                    if let Some(r) = rewriter.as_mut().filter(|r| r.holding()) {
                        let chunk = Chunk { at: Instant::now().max(last_at), data: r.flush() };
                        let _ = tx.send(chunk).await;
                    }
                    return; // dropping tx ends the writer with FIN
                }
                Ok(n) => match rewriter.as_mut() {
                    Some(r) => r.feed(&buf[..n]),
                    None => buf[..n].to_vec(),
                },
            },
        };
        if data.is_empty() {
            continue;
        }
        let n = data.len();
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
        let chunk = Chunk { at, data };
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

    #[test]
    fn the_rewriter_replaces_the_address_once_even_across_reads() {
        let rw = Rewrite {
            from: b"127.0.0.1:11111".to_vec(),
            to: b"127.0.0.1:22222".to_vec(),
        };
        let mut r = Rewriter::new(rw.clone());
        assert_eq!(
            r.feed(b"\x00\x0f127.0.0.1:11111 and 127.0.0.1:11111"),
            b"\x00\x0f127.0.0.1:22222 and 127.0.0.1:11111"
        );
        assert_eq!(
            r.feed(b"127.0.0.1:11111"),
            b"127.0.0.1:11111",
            "only the first"
        );

        // Split over three reads: the possible start is held back.
        let mut r = Rewriter::new(rw.clone());
        assert_eq!(r.feed(b"hello 127.0"), b"hello ");
        assert!(r.holding());
        assert_eq!(r.feed(b".0.1:1"), b"");
        assert_eq!(r.feed(b"1111!"), b"127.0.0.1:22222!");
        assert!(!r.holding());

        // A near miss is handed on when it turns out not to be the address,
        // and a flush gives up waiting.
        let mut r = Rewriter::new(rw.clone());
        assert_eq!(r.feed(b"x 127.0.0.1:1"), b"x ");
        assert_eq!(r.feed(b"9"), b"127.0.0.1:19");
        assert_eq!(r.feed(b"127"), b"");
        assert_eq!(r.flush(), b"127");

        // Past the window nothing is touched.
        let mut r = Rewriter::new(rw);
        let filler = vec![b'.'; REWRITE_WINDOW];
        assert_eq!(r.feed(&filler), filler);
        assert_eq!(r.feed(b"127.0.0.1:11111"), b"127.0.0.1:11111");
    }

    #[tokio::test]
    async fn a_rewrite_applies_to_what_the_dialler_sends() {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let echo = echo_server(&tracker, cancel.clone()).await;
        let options = ProxyOptions {
            connect_patience: Duration::ZERO,
            rewrite: Some(Rewrite {
                from: b"127.0.0.1:11111".to_vec(),
                to: b"127.0.0.1:22222".to_vec(),
            }),
        };
        let l = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let p = Proxy::start_with(l, echo, 7, options, cancel.clone(), &tracker)
            .await
            .expect("proxy");
        let mut s = TcpStream::connect(p.addr()).await.expect("connect");
        // The echo sends back what the receiver got; the way back is untouched.
        assert_eq!(
            roundtrip(&mut s, b"me=127.0.0.1:11111;").await.expect("rt"),
            b"me=127.0.0.1:22222;"
        );
        assert_eq!(
            roundtrip(&mut s, b"127.0.0.1:11111").await.expect("rt"),
            b"127.0.0.1:11111"
        );
        cancel.cancel();
    }

    #[tokio::test]
    async fn a_patient_proxy_waits_for_a_target_that_starts_late() {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let target = faultline_node::ports::reserve_loopback_ports(1).expect("port")[0];
        let options = ProxyOptions {
            connect_patience: Duration::from_secs(5),
            rewrite: None,
        };
        let l = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let p = Proxy::start_with(l, target, 7, options, cancel.clone(), &tracker)
            .await
            .expect("proxy");
        let mut s = TcpStream::connect(p.addr()).await.expect("connect");
        s.write_all(b"early").await.expect("write");
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The target comes up late: the bytes sent meanwhile reach it.
        let l = TcpListener::bind(target).await.expect("bind the target");
        let (mut up, _) = tokio::time::timeout(Duration::from_secs(5), l.accept())
            .await
            .expect("the proxy connects")
            .expect("accept");
        let mut got = [0u8; 5];
        up.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"early");

        // Without patience, a refusing target resets the dialler at once.
        let target2 = faultline_node::ports::reserve_loopback_ports(1).expect("port")[0];
        let p2 = Proxy::start(target2, 7, cancel.clone(), &tracker)
            .await
            .expect("proxy");
        let mut s2 = TcpStream::connect(p2.addr()).await.expect("connect");
        let mut buf = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(5), s2.read(&mut buf))
            .await
            .expect("closed promptly");
        assert!(matches!(r, Ok(0) | Err(_)), "got {r:?}");
        cancel.cancel();
    }
}

//! `faultline bench-proxy` (hidden): measures the latency the fault proxy
//! adds in pass mode, by timing small request/response round trips to a
//! local echo server directly and through a proxy, and printing p50/p99.

use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::proxy::Proxy;

/// Arguments of the proxy benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Round trips per measurement.
    #[arg(long, default_value_t = 20_000)]
    pub round_trips: usize,
    /// Bytes per message.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
}

/// Runs the benchmark and prints the figures.
pub fn run(args: &BenchArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(bench(args))
}

async fn bench(args: &BenchArgs) -> Result<()> {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let echo = TcpListener::bind("127.0.0.1:0").await?;
    let echo_addr = echo.local_addr()?;
    let c2 = cancel.clone();
    tracker.spawn(async move {
        loop {
            let (mut s, _) = tokio::select! {
                _ = c2.cancelled() => return,
                a = echo.accept() => match a { Ok(a) => a, Err(_) => return },
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
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
    let proxy = Proxy::start(echo_addr, 1, cancel.clone(), &tracker).await?;
    let size = args.size.max(1);
    let n = args.round_trips.max(100);
    // Interleave the two paths in rounds so drift of the machine hits both.
    let mut direct = Vec::with_capacity(n);
    let mut proxied = Vec::with_capacity(n);
    let mut d = TcpStream::connect(echo_addr).await?;
    let mut p = TcpStream::connect(proxy.addr()).await?;
    d.set_nodelay(true)?;
    p.set_nodelay(true)?;
    let msg = vec![42u8; size];
    let mut buf = vec![0u8; size];
    for _ in 0..200 {
        rt(&mut d, &msg, &mut buf).await?;
        rt(&mut p, &msg, &mut buf).await?;
    }
    for _ in 0..n {
        direct.push(rt(&mut d, &msg, &mut buf).await?);
        proxied.push(rt(&mut p, &msg, &mut buf).await?);
    }
    cancel.cancel();
    direct.sort();
    proxied.sort();
    let q = |v: &[Duration], x: f64| v[((v.len() - 1) as f64 * x) as usize].as_secs_f64() * 1e6;
    println!("proxy round-trip latency, {n} round trips of {size} B, pass mode");
    println!(
        "  direct   p50 {:>7.1} µs   p99 {:>7.1} µs",
        q(&direct, 0.5),
        q(&direct, 0.99)
    );
    println!(
        "  proxied  p50 {:>7.1} µs   p99 {:>7.1} µs",
        q(&proxied, 0.5),
        q(&proxied, 0.99)
    );
    println!(
        "  added    p50 {:>7.1} µs   p99 {:>7.1} µs  (per round trip, i.e. both directions)",
        q(&proxied, 0.5) - q(&direct, 0.5),
        q(&proxied, 0.99) - q(&direct, 0.99)
    );
    Ok(())
}

async fn rt(s: &mut TcpStream, msg: &[u8], buf: &mut [u8]) -> Result<Duration> {
    let t = Instant::now();
    s.write_all(msg).await?;
    s.read_exact(buf).await?;
    Ok(t.elapsed())
}

//! `node-bench`: starts a three-node `faultline-node` cluster on loopback,
//! drives it with closed-loop clients doing puts for a fixed time at several
//! concurrency levels, and prints throughput and latency percentiles. Used by
//! `ci/bench-node.sh`; a benchmark, not a test. With `--diskfs-bin`, each
//! node's data directory is a faultline-diskfs FUSE mount (the disk
//! nemesis's layer), served by one `faultline-diskfs` process per node, so
//! the two can be compared.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "Closed-loop put benchmark of a three-node faultline-node cluster")]
struct Args {
    /// The faultline-node binary.
    #[arg(long)]
    node_bin: PathBuf,
    /// Client counts to run, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Seconds per level.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Stop a level after this many acknowledged puts.
    #[arg(long, default_value_t = 10_000_000)]
    max_ops: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Extra arguments for every node (e.g. `--bug ack-before-fsync`).
    #[arg(long, allow_hyphen_values = true)]
    node_arg: Vec<String>,
    /// Put each node's data directory on a FUSE mount served by this
    /// `faultline-diskfs` binary (backing directory `<node>.disk` beside it).
    #[arg(long)]
    diskfs_bin: Option<PathBuf>,
    /// Extra arguments for every `faultline-diskfs` (e.g. `--threads=4`).
    #[arg(long, allow_hyphen_values = true)]
    diskfs_arg: Vec<String>,
}

/// One `faultline-diskfs` mount server and its control pipes.
struct DiskServer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: std::io::BufReader<ChildStdout>,
}

impl DiskServer {
    /// Mounts `mount` over `backing` and waits until the mount is live.
    fn start(bin: &Path, extra: &[String], backing: &Path, mount: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .arg("--backing")
            .arg(backing)
            .arg("--mount")
            .arg(mount)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting faultline-diskfs")?;
        let stdin = child.stdin.take();
        let mut stdout = std::io::BufReader::new(child.stdout.take().context("stdout")?);
        let mut ready = String::new();
        stdout.read_line(&mut ready)?;
        if ready.is_empty() {
            bail!(
                "faultline-diskfs exited before mounting {}",
                mount.display()
            );
        }
        Ok(DiskServer {
            child,
            stdin,
            stdout,
        })
    }

    /// The server's traffic counters, as its JSON reply line.
    fn stats(&mut self) -> anyhow::Result<String> {
        let stdin = self.stdin.as_mut().context("closed")?;
        writeln!(stdin, r#"{{"op":"stats"}}"#)?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(line.trim().to_string())
    }
}

/// Kills the cluster when dropped, whatever happened, then unmounts.
struct Cluster {
    children: Vec<Child>,
    disks: Vec<DiskServer>,
    dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The end of its stdin tells a mount server to unmount and exit.
        for d in &mut self.disks {
            d.stdin = None;
            let _ = d.child.wait();
        }
    }
}

fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let addrs = faultline_node::ports::reserve_loopback_ports(n)?;
    Ok(addrs.iter().map(|a| a.port()).collect())
}

fn start(args: &Args) -> anyhow::Result<(Cluster, Vec<String>)> {
    let dir = tempfile::tempdir()?;
    let ports = free_ports(6)?;
    let names = ["n1", "n2", "n3"];
    let mut cluster = Cluster {
        children: Vec::new(),
        disks: Vec::new(),
        dir,
    };
    let dir = cluster.dir.path().to_path_buf();
    let mut addrs = Vec::new();
    for i in 0..3 {
        if let Some(bin) = &args.diskfs_bin {
            cluster.disks.push(DiskServer::start(
                bin,
                &args.diskfs_arg,
                &dir.join(format!("{}.disk", names[i])),
                &dir.join(names[i]),
            )?);
        }
        let mut cmd = Command::new(&args.node_bin);
        cmd.arg("--id")
            .arg(names[i])
            .arg("--data-dir")
            .arg(dir.join(names[i]))
            .arg("--client-addr")
            .arg(format!("127.0.0.1:{}", ports[2 * i]))
            .arg("--peer-addr")
            .arg(format!("127.0.0.1:{}", ports[2 * i + 1]));
        for j in (0..3).filter(|&j| j != i) {
            cmd.arg("--peer")
                .arg(format!("{}=127.0.0.1:{}", names[j], ports[2 * j + 1]));
        }
        cmd.args(&args.node_arg);
        cmd.stdout(Stdio::null()).stderr(std::fs::File::create(
            dir.join(format!("{}.log", names[i])),
        )?);
        cluster
            .children
            .push(cmd.spawn().context("starting faultline-node")?);
        addrs.push(format!("127.0.0.1:{}", ports[2 * i]));
    }
    Ok((cluster, addrs))
}

/// A minimal keep-alive HTTP/1.1 client: the load generator must cost the
/// two shared cores as little as possible.
struct Conn {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    line: String,
    body: Vec<u8>,
    req: Vec<u8>,
}

impl Conn {
    async fn open(addr: &str) -> anyhow::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        Ok(Conn {
            r: BufReader::new(r),
            w,
            line: String::new(),
            body: Vec::new(),
            req: Vec::new(),
        })
    }

    /// Sends one request and returns the status code; the body is in `self.body`.
    async fn call(&mut self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<u16> {
        self.req.clear();
        self.req.extend_from_slice(
            format!(
                "{method} {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        self.req.extend_from_slice(body);
        self.w.write_all(&self.req).await?;
        self.line.clear();
        self.r.read_line(&mut self.line).await?;
        let status: u16 = self
            .line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {:?}", self.line))?;
        let mut len = 0usize;
        loop {
            self.line.clear();
            if self.r.read_line(&mut self.line).await? == 0 {
                bail!("connection closed");
            }
            let l = self.line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse()?;
            }
        }
        self.body.resize(len, 0);
        self.r.read_exact(&mut self.body).await?;
        Ok(status)
    }
}

async fn find_leader(addrs: &[String]) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        for a in addrs {
            if let Ok(mut c) = Conn::open(a).await
                && let Ok(200) = c.call("GET", "/status", b"").await
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&c.body)
                && v["role"] == "leader"
            {
                return Ok(a.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("no leader within 20 s")
}

struct Level {
    ok: u64,
    errors: u64,
    hist: Histogram<u64>,
    elapsed: Duration,
}

async fn run_level(leader: &str, clients: usize, args: &Args) -> anyhow::Result<Level> {
    let value = "x".repeat(args.value_bytes);
    let body = serde_json::to_vec(&serde_json::json!({ "value": value }))?;
    let start = Instant::now();
    let until = start + Duration::from_secs(args.seconds);
    let per_client = args.max_ops / clients as u64 + 1;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let leader = leader.to_string();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut conn = Conn::open(&leader).await?;
            let mut i = 0u64;
            while Instant::now() < until && ok < per_client {
                let path = format!("/kv/bench-{c}-{}", i % 1000);
                i += 1;
                let t = Instant::now();
                match conn.call("PUT", &path, &body).await {
                    Ok(200) => {
                        ok += 1;
                        let _ = hist.record(t.elapsed().as_micros() as u64);
                    }
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        conn = Conn::open(&leader).await?;
                    }
                }
            }
            anyhow::Ok((ok, errors, hist))
        }));
    }
    let mut level = Level {
        ok: 0,
        errors: 0,
        hist: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        let (ok, errors, hist) = t.await??;
        level.ok += ok;
        level.errors += errors;
        level.hist.add(hist)?;
    }
    level.elapsed = start.elapsed();
    Ok(level)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (mut cluster, addrs) = start(&args)?;
    let leader = find_leader(&addrs).await?;
    println!(
        "leader at {leader}; {} s per level, {}-byte values; data dirs on {}",
        args.seconds,
        args.value_bytes,
        if args.diskfs_bin.is_some() {
            "faultline-diskfs FUSE mounts"
        } else {
            "plain directories"
        }
    );
    println!(
        "{:>8} {:>10} {:>12} {:>10} {:>10} {:>10} {:>8}",
        "clients", "acked", "puts/s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    for &clients in &args.clients {
        let l = run_level(&leader, clients, &args).await?;
        println!(
            "{:>8} {:>10} {:>12.0} {:>10.2} {:>10.2} {:>10.2} {:>8}",
            clients,
            l.ok,
            l.ok as f64 / l.elapsed.as_secs_f64(),
            l.hist.value_at_quantile(0.50) as f64 / 1000.0,
            l.hist.value_at_quantile(0.99) as f64 / 1000.0,
            l.hist.max() as f64 / 1000.0,
            l.errors
        );
    }
    for (i, d) in cluster.disks.iter_mut().enumerate() {
        println!("diskfs n{}: {}", i + 1, d.stats()?);
    }
    Ok(())
}

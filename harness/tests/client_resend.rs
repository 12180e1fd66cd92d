//! How a worker treats an attempt whose outcome it cannot know, against two
//! scripted fake nodes: the first swallows requests without answering, the
//! second answers them. Without resends the op ends `info` at the first
//! node; with `--attempt-timeout-ms` it is resent to the second node with the
//! same client id and request sequence number and ends `ok`; a resent op
//! refused everywhere ends `info`, never `fail`.

mod run_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use faultline::client::{self, ClientCtx};
use faultline::recorder::Recorder;
use faultline::supervisor::Supervisor;
use faultline::sut::protocol::ProtocolEnv;
use faultline::sut::protocol::faultline_http::FaultlineHttp;
use faultline::sut::{Client, Endpoint, Protocol, ReadMode};
use faultline_workloads::{OpSpec, Reply};
use run_common::TestDir;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What a fake node does with each request.
#[derive(Clone, Copy)]
enum Script {
    /// Reads it and never answers (a node that took the request and hung).
    Swallow,
    /// Answers 200 `{}`.
    Answer,
    /// Answers 503 `not_leader` without a hint.
    Refuse,
}

/// `(node, X-Client-Id, X-Request-Seq)` of every request the fakes saw.
type Seen = Arc<Mutex<Vec<(usize, String, String)>>>;

async fn fake_node(index: usize, script: Script, seen: Seen) -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    let header = |name: &str| {
                        head.lines()
                            .find_map(|l| l.strip_prefix(name))
                            .map(|v| v.trim().to_string())
                            .unwrap_or_default()
                    };
                    let length: usize = header("content-length:").parse().unwrap_or(0);
                    if buf.len() < end + 4 + length {
                        continue;
                    }
                    buf.drain(..end + 4 + length);
                    seen.lock().expect("lock").push((
                        index,
                        header("x-client-id:"),
                        header("x-request-seq:"),
                    ));
                    let (status, body) = match script {
                        Script::Swallow => {
                            // Hold the connection open, never answer.
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                        Script::Answer => ("200 OK", "{}".to_string()),
                        Script::Refuse => (
                            "503 Service Unavailable",
                            json!({"error": "not_leader", "message": "fake"}).to_string(),
                        ),
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if sock.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Endpoint {
        id: format!("n{}", index + 1),
        addr,
        direct: addr,
    }
}

/// A context over the fake nodes through faultline's HTTP protocol, and one client.
async fn ctx(dir: &TestDir, nodes: Vec<Endpoint>, attempt_ms: u64) -> (ClientCtx, Box<dyn Client>) {
    let ids = nodes.iter().map(|n| n.id.clone()).collect();
    let protocol: Arc<dyn Protocol> = Arc::new(
        FaultlineHttp::new(ProtocolEnv {
            endpoints: nodes,
            read_mode: ReadMode::Linearizable,
            supervisor: Arc::new(Supervisor::new(vec![])),
            log_dir: dir.path().join("clients"),
        })
        .expect("protocol"),
    );
    let client = protocol.client(0).await.expect("client");
    let ctx = ClientCtx::new(
        faultline_workloads::by_name("register")
            .expect("register")
            .into(),
        Arc::new(
            Recorder::create(&dir.path().join("history.jsonl"), std::time::Instant::now())
                .expect("recorder"),
        ),
        protocol,
        ids,
        Duration::from_millis(1500),
        Duration::from_millis(attempt_ms),
        100,
    );
    (ctx, client)
}

fn write(v: u64) -> OpSpec {
    OpSpec {
        f: "write".into(),
        key: Some("r".into()),
        value: json!(v),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_attempt_is_resent_with_the_same_request_id() {
    let dir = TestDir::new("client_resend");
    let seen: Seen = Arc::default();
    let nodes = vec![
        fake_node(0, Script::Swallow, seen.clone()).await,
        fake_node(1, Script::Answer, seen.clone()).await,
    ];

    // No resends (attempt timeout = op timeout): the op is info at node 1.
    let (plain, mut c) = ctx(&dir, nodes.clone(), 1500).await;
    let mut s = client::session(7, 0);
    let reply = client::invoke(&plain, &mut s, &mut *c, &write(1)).await;
    assert!(matches!(reply, Reply::Info(_)), "{reply:?}");
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![(0, "p7".to_string(), "1".to_string())]
    );

    // Resends: the same id and seq go to node 2, which answers.
    seen.lock().expect("lock").clear();
    let (resending, mut c) = ctx(&dir, nodes, 200).await;
    let mut s = client::session(8, 0);
    let reply = client::invoke(&resending, &mut s, &mut *c, &write(2)).await;
    assert!(matches!(reply, Reply::Ok(_)), "{reply:?}");
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![
            (0, "p8".to_string(), "1".to_string()),
            (1, "p8".to_string(), "1".to_string()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_op_refused_everywhere_stays_info() {
    let dir = TestDir::new("client_resend_refused");
    let seen: Seen = Arc::default();
    let nodes = vec![
        fake_node(0, Script::Swallow, seen.clone()).await,
        fake_node(1, Script::Refuse, seen.clone()).await,
    ];
    let (resending, mut c) = ctx(&dir, nodes, 200).await;
    let mut s = client::session(9, 0);
    let reply = client::invoke(&resending, &mut s, &mut *c, &write(3)).await;
    // The first attempt may have taken effect: a later refusal cannot make
    // the op a definite failure.
    assert!(matches!(reply, Reply::Info(_)), "{reply:?}");
    let seen = seen.lock().expect("lock");
    assert!(
        seen.len() >= 3,
        "resent until the op's time ran out: {seen:?}"
    );
    assert!(
        seen.iter().all(|(_, id, seq)| id == "p9" && seq == "1"),
        "{seen:?}"
    );
}

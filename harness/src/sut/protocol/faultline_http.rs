//! faultline-node's HTTP API as a client protocol. Requests carry
//! `X-Client-Id`/`X-Request-Seq`, so a resent request is applied once.
//!
//! How answers end an attempt:
//! - 200 → ok (a read's `value`); 412 from a cas → a definite failure that
//!   reports the current value;
//! - `not_leader` and other 503s, and a connection that could not be
//!   opened → try elsewhere (the hinted leader first);
//! - 400, 404, 405, 413, 422 → a definite failure;
//! - 504 `indeterminate`, a timeout, a connection lost after sending, an
//!   unreadable answer, anything else → ambiguous.

use std::time::Duration;

use anyhow::{Context as _, Result};
use faultline_workloads::Command;
use serde_json::{Value, json};

use super::ProtocolEnv;
use crate::sut::{Attempt, BoxFuture, Client, Protocol, ReadMode, Request, Status, error_chain};

/// The protocol: one HTTP connection pool shared by every worker.
pub struct FaultlineHttp {
    http: reqwest::Client,
    env: ProtocolEnv,
}

impl FaultlineHttp {
    /// A protocol for the run's nodes.
    pub fn new(env: ProtocolEnv) -> Result<FaultlineHttp> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(FaultlineHttp { http, env })
    }
}

impl Protocol for FaultlineHttp {
    fn name(&self) -> &'static str {
        "faultline-http"
    }

    fn dedup(&self) -> bool {
        true
    }

    fn client<'a>(&'a self, _worker: usize) -> BoxFuture<'a, Result<Box<dyn Client>>> {
        Box::pin(async move {
            Ok(Box::new(HttpClient {
                http: self.http.clone(),
                urls: self
                    .env
                    .endpoints
                    .iter()
                    .map(|e| format!("http://{}", e.addr))
                    .collect(),
                ids: self.env.endpoints.iter().map(|e| e.id.clone()).collect(),
                read_mode: self.env.read_mode,
            }) as Box<dyn Client>)
        })
    }

    fn status<'a>(&'a self, node: usize) -> BoxFuture<'a, Option<Status>> {
        Box::pin(async move {
            let e = self.env.endpoints.get(node)?;
            let resp = self
                .http
                .get(format!("http://{}/status", e.direct))
                .timeout(Duration::from_millis(500))
                .send()
                .await
                .ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let v: Value = resp.json().await.ok()?;
            Some(Status {
                id: e.id.clone(),
                role: v["role"].as_str()?.to_string(),
                term: v["term"].as_u64(),
                leader: v["leader"].as_str().map(str::to_string),
            })
        })
    }
}

/// One worker's handle (the pool is shared).
struct HttpClient {
    http: reqwest::Client,
    urls: Vec<String>,
    ids: Vec<String>,
    read_mode: ReadMode,
}

/// Percent-encodes a key for a URL path segment.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The method, path and body of a command.
pub fn request_of(cmd: &Command, read_mode: ReadMode) -> (reqwest::Method, String, Option<Value>) {
    use reqwest::Method;
    let key = encode_key(cmd.key());
    match cmd {
        Command::Read { .. } => (
            Method::GET,
            format!("/kv/{key}?consistency={}", read_mode.name()),
            None,
        ),
        Command::Write { value, .. } => (
            Method::PUT,
            format!("/kv/{key}"),
            Some(json!({ "value": value })),
        ),
        Command::Cas { from, to, .. } => (
            Method::POST,
            format!("/kv/{key}/cas"),
            Some(json!({ "from": from, "to": to })),
        ),
        Command::Append { value, .. } => (
            Method::POST,
            format!("/kv/{key}/append"),
            Some(json!({ "value": value })),
        ),
        Command::Incr { delta, .. } => (
            Method::POST,
            format!("/kv/{key}/incr"),
            Some(json!({ "delta": delta })),
        ),
    }
}

/// How an answer ends an attempt (see the module docs).
pub fn classify(cmd: &Command, status: u16, body: &Value) -> Attempt {
    let kind = body.get("error").and_then(Value::as_str).unwrap_or("");
    let message = body.get("message").and_then(Value::as_str).unwrap_or("");
    match (status, kind) {
        (200..=299, _) => Attempt::Ok(match cmd {
            Command::Read { .. } => body.get("value").cloned().unwrap_or(Value::Null),
            _ => Value::Null,
        }),
        (412, _) if matches!(cmd, Command::Cas { .. }) => Attempt::Fail {
            current: body.get("value").cloned().unwrap_or(Value::Null),
            why: faultline_checkers::REFUSED_CAS.into(),
        },
        (503, "not_leader") => Attempt::Elsewhere {
            hint: body.get("leader").and_then(Value::as_str).map(String::from),
            why: "not_leader".into(),
        },
        (503, _) => Attempt::Elsewhere {
            hint: None,
            why: format!("unavailable: {message}"),
        },
        (400 | 404 | 405 | 412 | 413 | 422, _) => Attempt::Fail {
            current: Value::Null,
            why: format!("{kind}: {message}"),
        },
        (504, _) => Attempt::Ambiguous(format!("indeterminate: {message}")),
        _ => Attempt::Ambiguous(format!("status {status}: {message}")),
    }
}

impl Client for HttpClient {
    fn attempt<'a>(&'a mut self, req: Request<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let (method, path, body) = request_of(req.cmd, self.read_mode);
            let mut rb = self
                .http
                .request(method, format!("{}{path}", self.urls[req.node]))
                .timeout(req.timeout)
                .header("X-Client-Id", format!("p{}", req.client))
                .header("X-Request-Seq", req.seq.to_string());
            if let Some(b) = &body {
                rb = rb.json(b);
            }
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) if e.is_connect() && !e.is_timeout() => {
                    // Nothing was sent: definite.
                    return Attempt::Elsewhere {
                        hint: None,
                        why: format!("connect: {}", self.ids[req.node]),
                    };
                }
                Err(e) if e.is_timeout() => return Attempt::Ambiguous("timeout".into()),
                Err(e) => return Attempt::Ambiguous(format!("transport: {}", error_chain(&e))),
            };
            let status = resp.status().as_u16();
            match resp.json::<Value>().await {
                Ok(body) => classify(req.cmd, status, &body),
                Err(e) if e.is_timeout() => Attempt::Ambiguous("timeout".into()),
                Err(e) => {
                    Attempt::Ambiguous(format!("unreadable answer ({status}): {}", error_chain(&e)))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cas() -> Command {
        Command::Cas {
            key: "r".into(),
            from: json!(1),
            to: json!(2),
        }
    }

    #[test]
    fn commands_map_onto_the_http_api() {
        let (m, path, body) = request_of(&cas(), ReadMode::Linearizable);
        assert_eq!((m, path.as_str()), (reqwest::Method::POST, "/kv/r/cas"));
        assert_eq!(body, Some(json!({"from": 1, "to": 2})));
        let read = Command::Read { key: "a b".into() };
        let (m, path, body) = request_of(&read, ReadMode::Lease);
        assert_eq!(
            (m, path.as_str(), body),
            (reqwest::Method::GET, "/kv/a%20b?consistency=lease", None)
        );
        let incr = Command::Incr {
            key: "c".into(),
            delta: 3,
        };
        assert_eq!(
            request_of(&incr, ReadMode::Stale).2,
            Some(json!({"delta": 3}))
        );
    }

    #[test]
    fn answers_map_to_attempts() {
        let read = Command::Read { key: "r".into() };
        assert_eq!(
            classify(&read, 200, &json!({"value": 3})),
            Attempt::Ok(json!(3))
        );
        assert_eq!(
            classify(&cas(), 412, &json!({"ok": false, "value": 5})),
            Attempt::Fail {
                current: json!(5),
                why: "cas-mismatch".into()
            }
        );
        assert_eq!(
            classify(&read, 503, &json!({"error": "not_leader", "leader": "n2"})),
            Attempt::Elsewhere {
                hint: Some("n2".into()),
                why: "not_leader".into()
            }
        );
        assert!(matches!(
            classify(&cas(), 504, &json!({"error": "indeterminate"})),
            Attempt::Ambiguous(_)
        ));
        assert!(matches!(
            classify(&cas(), 400, &json!({"error": "bad_request"})),
            Attempt::Fail { .. }
        ));
    }
}

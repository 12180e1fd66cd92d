//! etcd 3.4's v3 JSON gateway as a client protocol (keys and values
//! base64, int64 fields as strings). The members themselves are described
//! by `harness/systems/etcd.toml`.
//!
//! The commands, the stored values (JSON text) and which etcd errors are
//! definite are shared with `etcd-grpc` and documented in
//! [`etcd_kv`](super::etcd_kv); the gateway adds its own transport:
//! - HTTP 400 (gRPC code 3, e.g. `key is not provided`, bad base64) and
//!   HTTP 429 (`too many requests`) are read as codes 3 and 8;
//! - an error body is classified by its gRPC `code` and `message`, as
//!   observed on etcd 3.4.23: `no leader`, `not capable`, code 8 → definite,
//!   try another member; `request timed out` (503, code 14, after ~7 s on a
//!   member cut from its quorum), `context deadline exceeded` (500, code 2,
//!   on a member with no leader), `server stopped` → indeterminate;
//! - a connection that could not be opened sent nothing (try elsewhere); a
//!   client timeout or a broken connection after sending is ambiguous for a
//!   command with effects;
//! - any error on a `read` (or on the read half of an append) → a definite
//!   failure: a read has no effect, so dropping it is always sound.

use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::ProtocolEnv;
use super::etcd_kv::{self, MemberNames, MemberStatus, Requests};
use crate::sut::{Attempt, BoxFuture, Client, Protocol, ReadMode, Request, Status, error_chain};

/// etcd's JSON gateway; member ids are learnt from the member list.
pub struct Etcd {
    http: reqwest::Client,
    env: ProtocolEnv,
    names: MemberNames,
}

impl Etcd {
    /// A protocol for the run's members.
    pub fn new(env: ProtocolEnv) -> Result<Etcd> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Etcd {
            http,
            env,
            names: MemberNames::default(),
        })
    }
}

impl Protocol for Etcd {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn dedup(&self) -> bool {
        false
    }

    fn client<'a>(&'a self, _worker: usize) -> BoxFuture<'a, Result<Box<dyn Client>>> {
        Box::pin(async move {
            Ok(Box::new(EtcdClient {
                http: self.http.clone(),
                urls: self
                    .env
                    .endpoints
                    .iter()
                    .map(|e| format!("http://{}", e.addr))
                    .collect(),
                ids: self.env.endpoints.iter().map(|e| e.id.clone()).collect(),
                serializable: self.env.read_mode == ReadMode::Stale,
            }) as Box<dyn Client>)
        })
    }

    fn status<'a>(&'a self, node: usize) -> BoxFuture<'a, Option<Status>> {
        Box::pin(async move {
            let e = self.env.endpoints.get(node)?;
            let base = format!("http://{}", e.direct);
            let t = Duration::from_millis(500);
            let url = format!("{base}/v3/maintenance/status");
            let (code, body) = post(&self.http, &url, &json!({}), t).await.ok()?;
            if code != 200 {
                return None;
            }
            let st = parse_status(&body)?;
            let list = async {
                let url = format!("{base}/v3/cluster/member/list");
                let (_, list) = post(&self.http, &url, &json!({}), t).await.ok()?;
                Some(parse_members(&list))
            };
            self.names.status(&e.id, &st, list).await
        })
    }
}

/// One worker's handle (the pool is shared).
struct EtcdClient {
    http: reqwest::Client,
    urls: Vec<String>,
    ids: Vec<String>,
    serializable: bool,
}

impl Client for EtcdClient {
    fn attempt<'a>(&'a mut self, req: Request<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let mut node = Node {
                http: &self.http,
                url: &self.urls[req.node],
                id: &self.ids[req.node],
            };
            let deadline = Instant::now() + req.timeout;
            etcd_kv::attempt(&mut node, req.cmd, self.serializable, deadline).await
        })
    }
}

/// One member, for one attempt.
struct Node<'a> {
    http: &'a reqwest::Client,
    url: &'a str,
    id: &'a str,
}

impl Node<'_> {
    /// POSTs `body` to `/v3/kv/{what}` and classifies errors.
    async fn call(
        &self,
        what: &str,
        body: &Value,
        deadline: Instant,
        effectful: bool,
    ) -> Result<Value, Attempt> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(etcd_kv::lost("timeout".into(), effectful));
        }
        let url = format!("{}/v3/kv/{what}", self.url);
        match post(self.http, &url, body, remaining).await {
            Ok((200, v)) => Ok(v),
            Ok((status, v)) => Err(classify_error(status, &v, effectful)),
            Err(e) => Err(transport_outcome(&e, self.id, effectful)),
        }
    }
}

impl Requests for Node<'_> {
    async fn range(
        &mut self,
        key: &str,
        serializable: bool,
        deadline: Instant,
    ) -> Result<(Option<Value>, i64), Attempt> {
        let resp = self
            .call("range", &range_body(key, serializable), deadline, false)
            .await?;
        range_value(&resp).map_err(|why| Attempt::Fail {
            current: Value::Null,
            why,
        })
    }

    async fn put(&mut self, key: &str, value: &Value, deadline: Instant) -> Result<(), Attempt> {
        self.call("put", &put_body(key, value), deadline, true)
            .await
            .map(|_| ())
    }

    async fn cas(
        &mut self,
        key: &str,
        from: &Value,
        to: &Value,
        deadline: Instant,
    ) -> Result<Result<(), Value>, Attempt> {
        let resp = self
            .call("txn", &cas_body(key, from, to), deadline, true)
            .await?;
        if txn_succeeded(&resp) {
            return Ok(Ok(()));
        }
        // The failure branch read the key: the value the cas saw.
        Ok(Err(txn_range_value(&resp)
            .unwrap_or(None)
            .unwrap_or(Value::Null)))
    }

    async fn put_if_unmodified(
        &mut self,
        key: &str,
        mod_rev: i64,
        value: &Value,
        deadline: Instant,
    ) -> Result<bool, Attempt> {
        let body = guarded_put_body(key, mod_rev, value);
        let resp = self.call("txn", &body, deadline, true).await?;
        Ok(txn_succeeded(&resp))
    }
}

/// How a transport error ends an attempt: a connection that could not be
/// opened sent nothing (try elsewhere); after sending, ambiguous for a
/// command with effects, a definite failure for a read.
fn transport_outcome(e: &reqwest::Error, node: &str, effectful: bool) -> Attempt {
    if e.is_connect() && !e.is_timeout() {
        return Attempt::Elsewhere {
            hint: None,
            why: format!("connect: {node}"),
        };
    }
    let why = if e.is_timeout() {
        "timeout".to_string()
    } else {
        format!("transport: {}", error_chain(e))
    };
    etcd_kv::lost(why, effectful)
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    timeout: Duration,
) -> reqwest::Result<(u16, Value)> {
    let resp = http.post(url).timeout(timeout).json(body).send().await?;
    let status = resp.status().as_u16();
    let v = resp.json::<Value>().await?;
    Ok((status, v))
}

/// How an etcd gateway error ends an attempt: by the gRPC code and message
/// in its body ([`etcd_kv::classify`]), HTTP 400 and 429 read as codes 3
/// and 8.
pub fn classify_error(status: u16, body: &Value, effectful: bool) -> Attempt {
    let message = body
        .get("message")
        .or_else(|| body.get("error"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let code = match status {
        400 => etcd_kv::INVALID_ARGUMENT,
        429 => etcd_kv::RESOURCE_EXHAUSTED,
        _ => body.get("code").and_then(Value::as_i64).unwrap_or(-1),
    };
    etcd_kv::classify(
        code,
        message,
        effectful,
        format!("etcd {status}: {message}"),
    )
}

/// Standard base64 with padding (what the gateway uses for bytes).
pub fn b64encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(T[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` on a bad character.
pub fn b64decode(text: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Some(out)
}

fn b64json(v: &Value) -> String {
    b64encode(etcd_kv::value_text(v).as_bytes())
}

/// `/v3/kv/range` body for one key.
pub fn range_body(key: &str, serializable: bool) -> Value {
    let mut b = json!({ "key": b64encode(key.as_bytes()) });
    if serializable {
        b["serializable"] = json!(true);
    }
    b
}

/// `/v3/kv/put` body: the value stored as JSON text.
pub fn put_body(key: &str, value: &Value) -> Value {
    json!({ "key": b64encode(key.as_bytes()), "value": b64json(value) })
}

/// `/v3/kv/txn` body for cas: compare the value with `from` (or, for
/// `null`, that the key does not exist), put `to`; otherwise read the key.
pub fn cas_body(key: &str, from: &Value, to: &Value) -> Value {
    let k = b64encode(key.as_bytes());
    let compare = if from.is_null() {
        json!({ "key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0" })
    } else {
        json!({ "key": k, "target": "VALUE", "result": "EQUAL", "value": b64json(from) })
    };
    json!({
        "compare": [compare],
        "success": [{ "requestPut": { "key": k, "value": b64json(to) } }],
        "failure": [{ "requestRange": { "key": k } }],
    })
}

/// `/v3/kv/txn` body: put `value` only if the key's `mod_revision` is still
/// `mod_rev` (0 for a key that does not exist).
pub fn guarded_put_body(key: &str, mod_rev: i64, value: &Value) -> Value {
    let k = b64encode(key.as_bytes());
    json!({
        "compare": [{ "key": k, "target": "MOD", "result": "EQUAL", "mod_revision": mod_rev.to_string() }],
        "success": [{ "requestPut": { "key": k, "value": b64json(value) } }],
    })
}

/// A txn answer's outcome: a failed txn omits `"succeeded"`.
pub fn txn_succeeded(resp: &Value) -> bool {
    resp.get("succeeded").and_then(Value::as_bool) == Some(true)
}

/// int64 fields come back as strings (and are omitted when zero).
fn int64(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// A range answer's value (`None` if the key is absent) and `mod_revision`
/// (0 if absent).
pub fn range_value(resp: &Value) -> Result<(Option<Value>, i64), String> {
    let Some(kv) = resp
        .get("kvs")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    else {
        return Ok((None, 0));
    };
    let mod_rev = int64(kv.get("mod_revision"));
    // An empty value is omitted from the JSON.
    let text = kv.get("value").and_then(Value::as_str).unwrap_or("");
    let bytes = b64decode(text).ok_or_else(|| format!("etcd: bad base64 value {text:?}"))?;
    Ok((Some(etcd_kv::parse_value(&bytes)?), mod_rev))
}

/// The value read by a txn's `requestRange` branch.
fn txn_range_value(resp: &Value) -> Result<Option<Value>, String> {
    let range = resp
        .get("responses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find_map(|r| r.get("response_range")));
    match range {
        Some(r) => range_value(r).map(|(v, _)| v),
        None => Ok(None),
    }
}

/// Parses `/v3/maintenance/status`; `None` if it names no member.
pub fn parse_status(body: &Value) -> Option<MemberStatus> {
    let member = body.get("header")?.get("member_id")?.as_str()?.to_string();
    let leader = body
        .get("leader")
        .and_then(Value::as_str)
        .filter(|l| *l != "0")
        .map(String::from);
    Some(MemberStatus {
        member,
        leader,
        term: int64(body.get("raftTerm")).max(0) as u64,
        raft_index: int64(body.get("raftIndex")).max(0) as u64,
    })
}

/// `(id, name)` of every member in `/v3/cluster/member/list`.
pub fn parse_members(body: &Value) -> Vec<(String, String)> {
    body.get("members")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .filter_map(|m| {
                    let id = m.get("ID")?.as_str()?.to_string();
                    let name = m.get("name").and_then(Value::as_str).unwrap_or("");
                    Some((id, name.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_the_gateway() {
        assert_eq!(b64encode(b"r"), "cg==");
        assert_eq!(b64encode(b"1"), "MQ==");
        assert_eq!(b64encode(b"ab"), "YWI=");
        assert_eq!(b64encode(b"abc"), "YWJj");
        assert_eq!(b64encode(b""), "");
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
            assert_eq!(b64decode(&b64encode(&data)).as_deref(), Some(&data[..]));
        }
        assert_eq!(b64decode("!!!"), None);
    }

    #[test]
    fn requests_are_encoded_as_the_gateway_expects() {
        assert_eq!(range_body("r", false), json!({"key": "cg=="}));
        assert_eq!(
            range_body("r", true),
            json!({"key": "cg==", "serializable": true})
        );
        assert_eq!(
            put_body("r", &json!(1)),
            json!({"key": "cg==", "value": "MQ=="})
        );
        let cas = cas_body("r", &json!(1), &json!(3));
        assert_eq!(cas["compare"][0]["target"], "VALUE");
        assert_eq!(cas["compare"][0]["value"], "MQ==");
        assert_eq!(cas["success"][0]["requestPut"]["value"], "Mw==");
        assert_eq!(cas["failure"][0]["requestRange"]["key"], "cg==");
        let absent = cas_body("r", &Value::Null, &json!(3));
        assert_eq!(absent["compare"][0]["target"], "CREATE");
        assert_eq!(absent["compare"][0]["create_revision"], "0");
        let g = guarded_put_body("a0", 7, &json!([1, 2]));
        assert_eq!(g["compare"][0]["mod_revision"], "7");
        assert_eq!(
            b64decode(g["success"][0]["requestPut"]["value"].as_str().unwrap()).unwrap(),
            b"[1,2]"
        );
    }

    #[test]
    fn answers_are_decoded() {
        // Copied from etcd 3.4.23's gateway.
        let hit = json!({"header":{"revision":"2"},"kvs":[{"key":"cg==","create_revision":"2","mod_revision":"2","version":"1","value":"MQ=="}],"count":"1"});
        assert_eq!(range_value(&hit), Ok((Some(json!(1)), 2)));
        let miss = json!({"header":{"revision":"2","raft_term":"2"}});
        assert_eq!(range_value(&miss), Ok((None, 0)));
        let junk = json!({"kvs":[{"key":"cg==","value":"eHl6"}]});
        assert!(range_value(&junk).is_err());
        let failed = json!({"header":{"revision":"2"},"responses":[{"response_range":{"header":{"revision":"2"},"kvs":[{"key":"cg==","mod_revision":"2","value":"MQ=="}],"count":"1"}}]});
        assert!(!txn_succeeded(&failed));
        assert_eq!(txn_range_value(&failed), Ok(Some(json!(1))));
        let ok = json!({"header":{"revision":"3"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"3"}}}]});
        assert!(txn_succeeded(&ok));
        let status = json!({"header":{"member_id":"399"},"version":"3.4.23","leader":"136","raftIndex":"11","raftTerm":"2"});
        assert_eq!(
            parse_status(&status),
            Some(MemberStatus {
                member: "399".into(),
                leader: Some("136".into()),
                term: 2,
                raft_index: 11
            })
        );
        let no_leader =
            json!({"header":{"member_id":"399"},"raftTerm":"2","errors":["etcdserver: no leader"]});
        assert_eq!(parse_status(&no_leader).unwrap().leader, None);
        let members = json!({"members":[{"ID":"185","name":"n2"},{"ID":"399","name":"n3"}]});
        assert_eq!(
            parse_members(&members),
            vec![("185".into(), "n2".into()), ("399".into(), "n3".into())]
        );
    }

    #[test]
    fn errors_map_to_definite_or_indeterminate() {
        let timed_out = json!({"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14});
        assert!(matches!(
            classify_error(503, &timed_out, true),
            Attempt::Ambiguous(_)
        ));
        assert!(matches!(
            classify_error(503, &timed_out, false),
            Attempt::Fail { .. }
        ));
        let deadline = json!({"error":"context deadline exceeded","message":"context deadline exceeded","code":2});
        assert!(matches!(
            classify_error(500, &deadline, true),
            Attempt::Ambiguous(_)
        ));
        let no_leader =
            json!({"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14});
        assert!(matches!(
            classify_error(503, &no_leader, true),
            Attempt::Elsewhere { .. }
        ));
        let bad = json!({"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3});
        assert!(matches!(
            classify_error(400, &bad, true),
            Attempt::Fail { .. }
        ));
        let busy = json!({"message":"etcdserver: too many requests","code":8});
        assert!(matches!(
            classify_error(429, &busy, true),
            Attempt::Elsewhere { .. }
        ));
    }
}

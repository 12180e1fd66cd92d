//! The HTTP client API (axum): routes, input validation and limits, and the
//! mapping of driver answers to status codes and JSON bodies.
//!
//! Error bodies are `{"error": KIND, "message", "leader", "leader_url"}`.
//! Definite failures (the operation did not and will not happen): `not_leader`
//! and `unavailable` 503, `bad_request` 400, `too_large` 413, `not_found` 404.
//! Indeterminate (proposed, outcome unknown): `indeterminate` 504.
//! Membership changes (`/admin/members`) add `unknown_node` 404, `conflict`
//! 409 and `last_voter` 422, all definite: nothing changed.

// Validation helpers return the finished error response; it is built once, on
// the failure path, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::config::NodeConfig;
use crate::driver::{Answer, Consistency, Event};
use crate::kv::{Command, Op, Outcome};

/// The ops of `POST /admin/members`, as clients spell them.
pub mod admin_op {
    /// Add a node as a learner.
    pub const ADD_LEARNER: &str = "add-learner";
    /// Make a caught-up learner a voter.
    pub const PROMOTE: &str = "promote";
    /// Remove a voter or learner.
    pub const REMOVE: &str = "remove";
    /// Promote a learner and remove a voter in one joint change.
    pub const REPLACE: &str = "replace";
}

/// Longest key, in bytes.
pub const MAX_KEY: usize = 1024;
/// Longest value (as JSON text), in bytes.
pub const MAX_VALUE: usize = 1 << 20;
/// Longest request body: a cas carries two values.
pub const MAX_BODY: usize = 2 * MAX_VALUE + 4096;
/// Longest client id, in bytes.
const MAX_CLIENT_ID: usize = 256;

/// What the handlers share.
pub struct ApiState {
    /// The event loop's queue.
    pub events: SyncSender<Event>,
    /// The node's configuration.
    pub cfg: Arc<NodeConfig>,
}

type Shared = State<Arc<ApiState>>;

/// The API's routes.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/kv/{key}", get(get_key).put(put_key).delete(delete_key))
        .route("/kv/{key}/cas", post(cas_key))
        .route("/kv/{key}/append", post(append_key))
        .route("/kv/{key}/incr", post(incr_key))
        .route("/status", get(status))
        .route("/admin/members", get(get_members).post(post_members))
        .route(
            "/health",
            get(|| async { (StatusCode::OK, axum::Json(json!({}))) }),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route".into()) })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "bad_request",
                "method not allowed on this route".into(),
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(refuse_oversized))
        .with_state(state)
}

/// Refuses a body whose announced length is over the limit before reading
/// any of it (the body-limit layer alone would read up to the limit first).
async fn refuse_oversized(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let announced = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body exceeds the limit of {MAX_BODY} bytes"),
        );
    }
    next.run(req).await
}

fn error(status: StatusCode, kind: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"error": kind, "message": message, "leader": null, "leader_url": null})),
    )
        .into_response()
}

fn bad(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", message.into())
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn key_of(path: Result<Path<String>, PathRejection>) -> Result<String, Response> {
    let Path(key) = path.map_err(|e| bad(format!("bad key: {e}")))?;
    if key.is_empty() {
        return Err(bad("empty key"));
    }
    if key.len() > MAX_KEY {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("key of {} bytes exceeds the limit of {MAX_KEY}", key.len()),
        ));
    }
    Ok(key)
}

fn body_of<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, Response> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request body exceeds the limit of {MAX_BODY} bytes"),
            )
        } else {
            bad(format!("cannot read the request body: {e}"))
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("bad JSON body: {e}")))
}

fn value_text(v: &Value) -> Result<String, Response> {
    let text = v.to_string();
    if text.len() > MAX_VALUE {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "value of {} bytes exceeds the limit of {MAX_VALUE}",
                text.len()
            ),
        ));
    }
    Ok(text)
}

fn session_of(headers: &HeaderMap) -> Result<Option<(String, u64)>, Response> {
    let id = headers.get("x-client-id");
    let seq = headers.get("x-request-seq");
    match (id, seq) {
        (None, None) => Ok(None),
        (Some(id), Some(seq)) => {
            let id = id
                .to_str()
                .map_err(|_| bad("X-Client-Id must be visible ASCII"))?;
            if id.is_empty() || id.len() > MAX_CLIENT_ID {
                return Err(bad(format!(
                    "X-Client-Id must be 1 to {MAX_CLIENT_ID} bytes"
                )));
            }
            let seq = seq
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| bad("X-Request-Seq must be an unsigned integer"))?;
            Ok(Some((id.to_string(), seq)))
        }
        _ => Err(bad("X-Client-Id and X-Request-Seq must be given together")),
    }
}

/// Sends an event and waits for the answer, within the request timeout.
async fn ask(
    st: &ApiState,
    make: impl FnOnce(oneshot::Sender<Answer>) -> Event,
    write: bool,
) -> Answer {
    ask_within(st, make, write, st.cfg.request_timeout).await
}

/// [`ask`] with its own deadline.
async fn ask_within(
    st: &ApiState,
    make: impl FnOnce(oneshot::Sender<Answer>) -> Event,
    write: bool,
    timeout: std::time::Duration,
) -> Answer {
    let (tx, rx) = oneshot::channel();
    match st.events.try_send(make(tx)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            return Answer::Unavailable("the node is overloaded; retry".into());
        }
        Err(TrySendError::Disconnected(_)) => {
            return Answer::Unavailable("the node is shutting down".into());
        }
    }
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(a)) => a,
        Ok(Err(_)) if write => {
            Answer::Indeterminate("the node stopped before the outcome was known".into())
        }
        Ok(Err(_)) => Answer::Unavailable("the node stopped before the read was served".into()),
        Err(_) => Answer::Indeterminate(format!("no outcome within {} ms", timeout.as_millis())),
    }
}

/// The write operations, for shaping success bodies.
#[derive(Clone, Copy)]
enum Kind {
    Plain,
    Cas,
    Incr,
}

fn respond(st: &ApiState, kind: Kind, answer: Answer) -> Response {
    match answer {
        Answer::Applied(Outcome::Done) => ok(json!({})),
        Answer::Applied(Outcome::Cas { ok: true, .. }) => ok(json!({"ok": true})),
        Answer::Applied(Outcome::Cas { ok: false, current }) => {
            let current: Value = serde_json::from_str(&current).unwrap_or(Value::Null);
            (StatusCode::PRECONDITION_FAILED, axum::Json(json!({"ok": false, "value": current}))).into_response()
        }
        Answer::Applied(Outcome::Incr(n)) => ok(json!({"value": n})),
        Answer::Applied(Outcome::Rejected(msg)) => bad(msg),
        Answer::Applied(Outcome::Forgotten) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "indeterminate",
            "X-Request-Seq is older than this client's last applied request; its outcome is no longer kept".into(),
        ),
        Answer::Early => match kind {
            Kind::Plain => ok(json!({})),
            Kind::Cas => ok(json!({"ok": true})),
            Kind::Incr => ok(json!({"value": null})),
        },
        Answer::Value(v) => ok(json!({"value": v})),
        Answer::NotLeader { leader, reason } => {
            let url = leader.and_then(|l| st.cfg.peer_urls.get(&l).cloned());
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({
                    "error": "not_leader",
                    "message": reason,
                    "leader": leader.map(|l| st.cfg.name_of(l)),
                    "leader_url": url,
                })),
            )
                .into_response()
        }
        Answer::Unavailable(msg) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", msg),
        Answer::Indeterminate(msg) => error(StatusCode::GATEWAY_TIMEOUT, "indeterminate", msg),
        Answer::Members(view) => ok(serde_json::to_value(view).expect("a view serialises")),
        Answer::Conflict(msg) => error(StatusCode::CONFLICT, "conflict", msg),
        Answer::LastVoter(msg) => error(StatusCode::UNPROCESSABLE_ENTITY, "last_voter", msg),
    }
}

async fn write(st: &ApiState, headers: &HeaderMap, kind: Kind, op: Op) -> Response {
    let session = match session_of(headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let data = Command { session, op }.encode();
    let answer = ask(st, |reply| Event::Write { data, reply }, true).await;
    respond(st, kind, answer)
}

/// `?consistency=` of a read.
#[derive(Deserialize)]
struct ReadParams {
    consistency: Option<String>,
}

async fn get_key(
    State(st): Shared,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> Response {
    let key = match key_of(path) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Query(params) = match query {
        Ok(q) => q,
        Err(e) => return bad(format!("bad query string: {e}")),
    };
    let consistency = match params.consistency.as_deref() {
        None | Some("linearizable") => Consistency::Linearizable,
        Some("lease") => Consistency::Lease,
        Some("stale") => Consistency::Stale,
        Some(other) => {
            return bad(format!(
                "unknown consistency {other:?}; expected linearizable, lease or stale"
            ));
        }
    };
    let answer = ask(
        &st,
        |reply| Event::Read {
            key,
            consistency,
            reply,
        },
        false,
    )
    .await;
    respond(&st, Kind::Plain, answer)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueBody {
    value: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasBody {
    from: Value,
    to: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncrBody {
    delta: i64,
}

/// Runs a write handler body, turning early `Err(Response)` into the answer.
macro_rules! try_or_respond {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

async fn put_key(
    State(st): Shared,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let key = try_or_respond!(key_of(path));
    let b: ValueBody = try_or_respond!(body_of(body));
    let value = try_or_respond!(value_text(&b.value));
    write(&st, &headers, Kind::Plain, Op::Put { key, value }).await
}

async fn delete_key(
    State(st): Shared,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let key = try_or_respond!(key_of(path));
    write(&st, &headers, Kind::Plain, Op::Delete { key }).await
}

async fn cas_key(
    State(st): Shared,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let key = try_or_respond!(key_of(path));
    let b: CasBody = try_or_respond!(body_of(body));
    let from = try_or_respond!(value_text(&b.from));
    let to = try_or_respond!(value_text(&b.to));
    write(&st, &headers, Kind::Cas, Op::Cas { key, from, to }).await
}

async fn append_key(
    State(st): Shared,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let key = try_or_respond!(key_of(path));
    let b: ValueBody = try_or_respond!(body_of(body));
    let value = try_or_respond!(value_text(&b.value));
    write(&st, &headers, Kind::Plain, Op::Append { key, value }).await
}

async fn incr_key(
    State(st): Shared,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let key = try_or_respond!(key_of(path));
    let b: IncrBody = try_or_respond!(body_of(body));
    write(
        &st,
        &headers,
        Kind::Incr,
        Op::Incr {
            key,
            delta: b.delta,
        },
    )
    .await
}

async fn get_members(State(st): Shared) -> Response {
    let (tx, rx) = oneshot::channel();
    if st.events.try_send(Event::Members(tx)).is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the node is overloaded or stopping".into(),
        );
    }
    match tokio::time::timeout(st.cfg.request_timeout, rx).await {
        Ok(Ok(view)) => ok(serde_json::to_value(view).expect("a view serialises")),
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no membership within the request timeout".into(),
        ),
    }
}

/// The body of `POST /admin/members`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    /// `add-learner`, `promote`, `remove` or `replace`.
    op: String,
    /// The node added, promoted or removed (for `replace`: promoted).
    node: String,
    /// For `replace`: the voter removed.
    #[serde(default)]
    remove: Option<String>,
}

/// A membership change, answered once it (for voters: the joint and then
/// the final configuration) committed. A change takes two commits, so it
/// may wait five request timeouts (at least 5 s) before `indeterminate`.
async fn post_members(State(st): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    use faultline_raft::MembershipChange as C;
    let b: ChangeBody = match body_of(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let id_of = |name: &str| {
        st.cfg
            .names
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(&i, _)| i)
            .ok_or_else(|| {
                error(
                    StatusCode::NOT_FOUND,
                    "unknown_node",
                    format!(
                        "no node named {name:?}; known: {}",
                        st.cfg
                            .names
                            .values()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
    };
    let node = match id_of(&b.node) {
        Ok(i) => i,
        Err(r) => return r,
    };
    if b.remove.is_some() && b.op != admin_op::REPLACE {
        return bad(format!(
            "\"remove\" belongs to op \"replace\" only, not {:?}",
            b.op
        ));
    }
    let change = match b.op.as_str() {
        admin_op::ADD_LEARNER => C::AddLearner(node),
        admin_op::PROMOTE => C::Promote(node),
        admin_op::REMOVE => C::Remove(node),
        admin_op::REPLACE => {
            let Some(r) = &b.remove else {
                return bad("op \"replace\" needs \"remove\": the voter to remove");
            };
            match id_of(r) {
                Ok(remove) => C::Replace {
                    promote: node,
                    remove,
                },
                Err(resp) => return resp,
            }
        }
        other => {
            return bad(format!(
                "unknown op {other:?}; expected add-learner, promote, remove or replace"
            ));
        }
    };
    let timeout = (st.cfg.request_timeout * 5).max(std::time::Duration::from_secs(5));
    let answer = ask_within(
        &st,
        |reply| Event::ChangeMembers { change, reply },
        true,
        timeout,
    )
    .await;
    respond(&st, Kind::Plain, answer)
}

async fn status(State(st): Shared) -> Response {
    let (tx, rx) = oneshot::channel();
    if st.events.try_send(Event::Status(tx)).is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the node is overloaded or stopping".into(),
        );
    }
    match tokio::time::timeout(st.cfg.request_timeout, rx).await {
        Ok(Ok(view)) => ok(serde_json::to_value(view).expect("status serialises")),
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no status within the request timeout".into(),
        ),
    }
}

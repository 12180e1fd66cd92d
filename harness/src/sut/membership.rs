//! Membership drivers: how the member nemesis asks a system to change its
//! configuration (add a learner, promote it, remove a member) and reads the
//! configuration back. One driver per client protocol, chosen in one place
//! ([`build`]): faultline-node's admin API (`/admin/members`) and etcd's v3
//! JSON gateway (`/v3/cluster/member/*`, learners since 3.4). A driver only
//! speaks to nodes; starting, stopping and wiping them is the cluster's.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use faultline_node::api::admin_op;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::spec::MembershipSpec;
use super::{BoxFuture, Db, Endpoint, NodeNames, error_chain};

/// The protocols that have a membership driver.
pub const DRIVERS: &[&str] = &["faultline-http", "etcd"];

/// A node's view of the configuration (faultline-node's `GET
/// /admin/members`; etcd's member list and status).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// The voters (of the new configuration, under joint consensus).
    pub voters: Vec<String>,
    /// The old voters while joint consensus is in force, else empty.
    #[serde(default)]
    pub outgoing: Vec<String>,
    /// Learners: receive the log, do not vote.
    #[serde(default)]
    pub learners: Vec<String>,
    /// The log index of the configuration entry (0: the initial one), when
    /// the system tells.
    #[serde(default)]
    pub index: u64,
    /// Whether that entry is committed as far as the node knows.
    #[serde(default)]
    pub committed: bool,
    /// The leader the node knows.
    #[serde(default)]
    pub leader: Option<String>,
}

impl MemberView {
    /// Every node the configuration names: voters, outgoing voters, learners.
    pub fn members(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .voters
            .iter()
            .chain(&self.outgoing)
            .chain(&self.learners)
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Whether `node` votes (in the new configuration).
    pub fn votes(&self, node: &str) -> bool {
        self.voters.iter().any(|v| v == node)
    }

    /// Whether `node` is a learner.
    pub fn learns(&self, node: &str) -> bool {
        self.learners.iter().any(|v| v == node)
    }
}

/// A configuration change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeOp {
    /// Add a node as a learner.
    AddLearner,
    /// Make a learner a voter.
    Promote,
    /// Remove a voter or learner.
    Remove,
}

impl ChangeOp {
    /// Its name in faultline-node's admin API.
    pub fn name(self) -> &'static str {
        match self {
            ChangeOp::AddLearner => admin_op::ADD_LEARNER,
            ChangeOp::Promote => admin_op::PROMOTE,
            ChangeOp::Remove => admin_op::REMOVE,
        }
    }
}

/// Why a change or a read of the configuration did not happen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemberError {
    /// Certainly not done, for now: another change in flight, a learner not
    /// caught up, the last voter, an unhealthy cluster. Try again later.
    #[error("refused ({kind}): {message}")]
    Refused {
        /// The system's error kind (`conflict`, `last_voter`, ...).
        kind: String,
        /// Its message.
        message: String,
    },
    /// The node asked does not lead; the leader, when it named one.
    #[error("not the leader{}", leader.as_ref().map(|l| format!(" (leader: {l})")).unwrap_or_default())]
    NotLeader {
        /// The leader it knows.
        leader: Option<String>,
    },
    /// No outcome in time: the change may still happen.
    #[error("indeterminate: {0}")]
    Indeterminate(String),
    /// The node could not be reached (nothing was sent).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The system says the request is wrong (an unknown node, a bad
    /// request): the spec and the system disagree.
    #[error("rejected: {0}")]
    Rejected(String),
}

/// One system's membership API.
pub trait Membership: Send + Sync {
    /// The configuration as node `node` sees it.
    fn members<'a>(&'a self, node: usize) -> BoxFuture<'a, Result<MemberView, MemberError>>;
    /// Asks `leader` to change the configuration for `node`; the
    /// configuration once the change took effect.
    fn change<'a>(
        &'a self,
        leader: usize,
        op: ChangeOp,
        node: usize,
    ) -> BoxFuture<'a, Result<MemberView, MemberError>>;
    /// Whether learner `node` has caught up with `leader`'s log, as far as
    /// the system tells (a system that does not tell says yes, and refuses
    /// the promotion until it has).
    fn caught_up<'a>(
        &'a self,
        _leader: usize,
        _node: usize,
    ) -> BoxFuture<'a, Result<bool, MemberError>> {
        Box::pin(async { Ok(true) })
    }
    /// Promotes learner `node` and removes voter `remove` in one change (a
    /// change of two voters at once), where the system offers it; `None`
    /// where it does not (then a replacement is a promotion, then a
    /// removal).
    fn replace<'a>(
        &'a self,
        _leader: usize,
        _node: usize,
        _remove: usize,
    ) -> Option<BoxFuture<'a, Result<MemberView, MemberError>>> {
        None
    }
}

/// Whether a spec's `[membership]` can work with its client protocol:
/// `Err` says why not, for the spec's error.
pub fn supports(protocol: &str, m: &MembershipSpec) -> Result<(), String> {
    match protocol {
        "faultline-http" => Ok(()),
        "etcd" if m.peer_url.is_none() => Err(
            "etcd's member add names the new member's peer URL: give peer_url (e.g. \
             \"http://{peer.addr.peer}\")"
                .into(),
        ),
        "etcd" => Ok(()),
        p => Err(format!(
            "client protocol {p:?} has no membership driver (known: {}), so spares cannot \
             join; remove [membership]",
            DRIVERS.join(", ")
        )),
    }
}

/// The membership driver of `db`'s client protocol, for the nodes in
/// `endpoints` (their own client addresses, never proxied); `None` when the
/// spec has no `[membership]`.
pub fn build(
    db: &Db,
    names: &NodeNames,
    endpoints: &[Endpoint],
) -> Result<Option<Arc<dyn Membership>>> {
    let Some(m) = &db.spec.membership else {
        return Ok(None);
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(2)
        .build()
        .context("cannot build the HTTP client")?;
    let urls: Vec<String> = endpoints
        .iter()
        .map(|e| format!("http://{}", e.direct))
        .collect();
    let ids = names.ids.clone();
    Ok(Some(match db.spec.client.protocol.as_str() {
        "faultline-http" => Arc::new(FaultlineAdmin { http, urls, ids }),
        "etcd" => {
            let tpl = m.peer_url.clone().unwrap_or_default();
            let mut peer_urls = Vec::with_capacity(ids.len());
            for j in 0..ids.len() {
                let mut look = |n: &str| names.peer_value(&db.spec, j, j, n);
                peer_urls.push(
                    super::template::render(&tpl, &mut look)
                        .map_err(|e| anyhow::anyhow!("{}: membership.peer_url: {e}", db.file()))?,
                );
            }
            Arc::new(EtcdMembers {
                http,
                urls,
                ids,
                peer_urls,
            })
        }
        p => anyhow::bail!(
            "{}: membership: {}",
            db.file(),
            supports(p, m).err().unwrap_or_default()
        ),
    }))
}

/// How long one admin request may take: a change commits twice (the joint
/// configuration, then the final one), and faultline-node answers
/// `indeterminate` only after five request timeouts (at least 5 s).
const CHANGE_WITHIN: Duration = Duration::from_secs(8);
/// How long a read of the configuration or of a node's status may take.
const READ_WITHIN: Duration = Duration::from_millis(1000);

/// faultline-node's admin API.
struct FaultlineAdmin {
    http: reqwest::Client,
    urls: Vec<String>,
    ids: Vec<String>,
}

/// How a reqwest error ends a request: nothing sent, or maybe done.
fn transport(e: &reqwest::Error, node: &str) -> MemberError {
    if e.is_connect() && !e.is_timeout() {
        MemberError::Unreachable(format!("{node}: {}", error_chain(e)))
    } else if e.is_timeout() {
        MemberError::Indeterminate(format!("{node}: no answer in time"))
    } else {
        MemberError::Indeterminate(format!("{node}: {}", error_chain(e)))
    }
}

/// Reads faultline-node's membership JSON.
fn parse_view(v: &Value) -> Option<MemberView> {
    let names = |k: &str| -> Option<Vec<String>> {
        match v.get(k) {
            None | Some(Value::Null) => Some(Vec::new()),
            Some(Value::Array(a)) => a.iter().map(|x| x.as_str().map(String::from)).collect(),
            Some(_) => None,
        }
    };
    Some(MemberView {
        voters: names("voters")?,
        outgoing: names("outgoing")?,
        learners: names("learners")?,
        index: v.get("index").and_then(Value::as_u64).unwrap_or(0),
        committed: v.get("committed").and_then(Value::as_bool).unwrap_or(false),
        leader: v.get("leader").and_then(Value::as_str).map(String::from),
    })
}

/// How faultline-node's admin answer ends a request (the contract's table).
pub fn classify_admin(status: u16, body: &Value) -> Result<MemberView, MemberError> {
    let kind = body.get("error").and_then(Value::as_str).unwrap_or("");
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match (status, kind) {
        (200, _) => parse_view(body).ok_or_else(|| {
            MemberError::Indeterminate(format!("an answer that is no membership: {body}"))
        }),
        (503, "not_leader") => Err(MemberError::NotLeader {
            leader: body.get("leader").and_then(Value::as_str).map(String::from),
        }),
        (409 | 422 | 503, _) => Err(MemberError::Refused {
            kind: if kind.is_empty() {
                format!("status {status}")
            } else {
                kind.to_string()
            },
            message,
        }),
        (400 | 404, _) => Err(MemberError::Rejected(format!("{kind}: {message}"))),
        (504, _) => Err(MemberError::Indeterminate(message)),
        _ => Err(MemberError::Indeterminate(format!(
            "status {status}: {kind} {message}"
        ))),
    }
}

impl FaultlineAdmin {
    async fn status(&self, node: usize) -> Result<Value, MemberError> {
        let id = &self.ids[node];
        let resp = self
            .http
            .get(format!("{}/status", self.urls[node]))
            .timeout(READ_WITHIN)
            .send()
            .await
            .map_err(|e| transport(&e, id))?;
        resp.json::<Value>()
            .await
            .map_err(|e| MemberError::Indeterminate(format!("{id}: {}", error_chain(&e))))
    }
}

impl FaultlineAdmin {
    /// One `POST /admin/members` to `leader`.
    async fn admin(&self, leader: usize, body: Value) -> Result<MemberView, MemberError> {
        let url = format!("{}/admin/members", self.urls[leader]);
        let (status, body) = post_json(&self.http, &url, &self.ids[leader], body).await?;
        classify_admin(status, &body)
    }
}

/// One membership request: POSTs `body` to `url` (node `id`) and reads the
/// answer's status and JSON body.
async fn post_json(
    http: &reqwest::Client,
    url: &str,
    id: &str,
    body: Value,
) -> Result<(u16, Value), MemberError> {
    let resp = http
        .post(url)
        .timeout(CHANGE_WITHIN)
        .json(&body)
        .send()
        .await
        .map_err(|e| transport(&e, id))?;
    let status = resp.status().as_u16();
    let v = resp.json::<Value>().await.map_err(|e| {
        MemberError::Indeterminate(format!("{id}: unreadable ({status}): {}", error_chain(&e)))
    })?;
    Ok((status, v))
}

impl Membership for FaultlineAdmin {
    fn members<'a>(&'a self, node: usize) -> BoxFuture<'a, Result<MemberView, MemberError>> {
        Box::pin(async move {
            let id = &self.ids[node];
            let resp = self
                .http
                .get(format!("{}/admin/members", self.urls[node]))
                .timeout(READ_WITHIN)
                .send()
                .await
                .map_err(|e| transport(&e, id))?;
            let status = resp.status().as_u16();
            let body = resp.json::<Value>().await.map_err(|e| {
                MemberError::Indeterminate(format!(
                    "{id}: unreadable ({status}): {}",
                    error_chain(&e)
                ))
            })?;
            classify_admin(status, &body)
        })
    }

    fn change<'a>(
        &'a self,
        leader: usize,
        op: ChangeOp,
        node: usize,
    ) -> BoxFuture<'a, Result<MemberView, MemberError>> {
        Box::pin(self.admin(leader, json!({"op": op.name(), "node": self.ids[node]})))
    }

    fn replace<'a>(
        &'a self,
        leader: usize,
        node: usize,
        remove: usize,
    ) -> Option<BoxFuture<'a, Result<MemberView, MemberError>>> {
        let body =
            json!({"op": admin_op::REPLACE, "node": self.ids[node], "remove": self.ids[remove]});
        Some(Box::pin(self.admin(leader, body)))
    }

    /// The learner has applied everything the leader had committed when
    /// asked.
    fn caught_up<'a>(
        &'a self,
        leader: usize,
        node: usize,
    ) -> BoxFuture<'a, Result<bool, MemberError>> {
        Box::pin(async move {
            let target = self.status(leader).await?["commit_index"]
                .as_u64()
                .unwrap_or(u64::MAX);
            let applied = self.status(node).await?["applied_index"]
                .as_u64()
                .unwrap_or(0);
            Ok(applied >= target)
        })
    }
}

/// etcd's cluster API through its v3 JSON gateway.
struct EtcdMembers {
    http: reqwest::Client,
    urls: Vec<String>,
    ids: Vec<String>,
    /// Each node's peer URL as the members reach it.
    peer_urls: Vec<String>,
}

/// One member of etcd's member list.
#[derive(Debug, Deserialize)]
struct EtcdMember {
    #[serde(rename = "ID", default)]
    id: Option<Value>,
    #[serde(default)]
    name: String,
    #[serde(rename = "peerURLs", default)]
    peer_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    is_learner: bool,
}

/// An etcd id (uint64, a string in the gateway's JSON) as text.
fn etcd_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// How an etcd gateway error ends a request, from its gRPC code and text.
pub fn classify_etcd(status: u16, body: &Value) -> MemberError {
    let message = body
        .get("message")
        .or_else(|| body.get("error"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let code = body.get("code").and_then(Value::as_u64);
    match code {
        // DeadlineExceeded, or etcd's own timeouts: may still happen.
        Some(4) => MemberError::Indeterminate(message),
        _ if message.contains("timed out") => MemberError::Indeterminate(message),
        // FailedPrecondition (a learner not in sync, too many learners),
        // Unavailable (unhealthy cluster, no leader), AlreadyExists.
        Some(9) | Some(14) | Some(6) => MemberError::Refused {
            kind: format!("grpc code {}", code.unwrap_or(0)),
            message,
        },
        Some(5) | Some(3) => MemberError::Rejected(message),
        _ => MemberError::Indeterminate(format!("status {status}: {message}")),
    }
}

impl EtcdMembers {
    async fn post(&self, node: usize, path: &str, body: Value) -> Result<Value, MemberError> {
        let url = format!("{}{path}", self.urls[node]);
        let (status, v) = post_json(&self.http, &url, &self.ids[node], body).await?;
        if status == 200 && v.get("error").is_none() {
            Ok(v)
        } else {
            Err(classify_etcd(status, &v))
        }
    }

    /// The node a member is: by name once it started, else by peer URL.
    fn node_of(&self, m: &EtcdMember) -> Option<String> {
        if self.ids.contains(&m.name) {
            return Some(m.name.clone());
        }
        self.peer_urls
            .iter()
            .position(|u| m.peer_urls.iter().any(|p| p == u))
            .map(|j| self.ids[j].clone())
    }

    async fn list(&self, node: usize) -> Result<Vec<EtcdMember>, MemberError> {
        let v = self
            .post(node, "/v3/cluster/member/list", json!({}))
            .await?;
        serde_json::from_value(v.get("members").cloned().unwrap_or(json!([]))).map_err(|e| {
            MemberError::Indeterminate(format!("a member list that does not read: {e}"))
        })
    }

    /// The etcd id of `node`, from `asked`'s member list.
    async fn id_of(&self, asked: usize, node: usize) -> Result<String, MemberError> {
        let list = self.list(asked).await?;
        list.iter()
            .find(|m| self.node_of(m).as_deref() == Some(self.ids[node].as_str()))
            .and_then(|m| m.id.as_ref().and_then(etcd_id))
            .ok_or_else(|| MemberError::Rejected(format!("{} is not a member", self.ids[node])))
    }

    async fn view(&self, node: usize) -> Result<MemberView, MemberError> {
        let list = self.list(node).await?;
        let status = self
            .post(node, "/v3/maintenance/status", json!({}))
            .await
            .ok();
        let leader_id = status
            .as_ref()
            .and_then(|s| s.get("leader"))
            .and_then(etcd_id);
        let mut view = MemberView {
            committed: true,
            ..MemberView::default()
        };
        for m in &list {
            let Some(name) = self.node_of(m) else {
                continue;
            };
            if leader_id.is_some() && m.id.as_ref().and_then(etcd_id) == leader_id {
                view.leader = Some(name.clone());
            }
            if m.is_learner {
                view.learners.push(name);
            } else {
                view.voters.push(name);
            }
        }
        view.voters.sort();
        view.learners.sort();
        Ok(view)
    }
}

impl Membership for EtcdMembers {
    fn members<'a>(&'a self, node: usize) -> BoxFuture<'a, Result<MemberView, MemberError>> {
        Box::pin(self.view(node))
    }

    fn change<'a>(
        &'a self,
        leader: usize,
        op: ChangeOp,
        node: usize,
    ) -> BoxFuture<'a, Result<MemberView, MemberError>> {
        Box::pin(async move {
            match op {
                ChangeOp::AddLearner => {
                    self.post(
                        leader,
                        "/v3/cluster/member/add",
                        json!({"peerURLs": [self.peer_urls[node]], "isLearner": true}),
                    )
                    .await?;
                }
                ChangeOp::Promote => {
                    let id = self.id_of(leader, node).await?;
                    self.post(leader, "/v3/cluster/member/promote", json!({"ID": id}))
                        .await?;
                }
                ChangeOp::Remove => {
                    let id = self.id_of(leader, node).await?;
                    self.post(leader, "/v3/cluster/member/remove", json!({"ID": id}))
                        .await?;
                }
            }
            // The leader may be the member just removed: ask it anyway (it
            // answers until it stops), and the caller asks again later.
            self.view(leader).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_answers_follow_the_contract() {
        let ok = json!({"voters":["n1","n2","n3"],"outgoing":[],"learners":["n4"],
                        "index":57,"committed":true,"leader":"n1"});
        let v = classify_admin(200, &ok).expect("a view");
        assert_eq!(v.voters, ["n1", "n2", "n3"]);
        assert_eq!(v.members(), ["n1", "n2", "n3", "n4"]);
        assert!(v.learns("n4") && !v.votes("n4") && v.committed && v.index == 57);
        assert_eq!(v.leader.as_deref(), Some("n1"));
        let err = |status, kind: &str| {
            classify_admin(
                status,
                &json!({"error": kind, "message": "m", "leader": "n2"}),
            )
            .expect_err(kind)
        };
        assert!(
            matches!(err(409, "conflict"), MemberError::Refused { kind, .. } if kind == "conflict")
        );
        assert!(matches!(
            err(422, "last_voter"),
            MemberError::Refused { .. }
        ));
        assert_eq!(
            err(503, "not_leader"),
            MemberError::NotLeader {
                leader: Some("n2".into())
            }
        );
        assert!(matches!(
            err(504, "indeterminate"),
            MemberError::Indeterminate(_)
        ));
        assert!(matches!(err(404, "unknown_node"), MemberError::Rejected(_)));
        assert!(matches!(err(400, "bad_request"), MemberError::Rejected(_)));
        // A 200 that is no membership is not taken for one.
        assert!(classify_admin(200, &json!({"voters": "n1"})).is_err());
        assert!(err(503, "not_leader").to_string().contains("leader: n2"));
    }

    #[test]
    fn etcd_errors_say_whether_to_retry() {
        let e = |code, msg: &str| classify_etcd(500, &json!({"code": code, "message": msg}));
        assert!(matches!(
            e(
                9,
                "etcdserver: can only promote a learner member which is in sync with leader"
            ),
            MemberError::Refused { .. }
        ));
        assert!(matches!(
            e(14, "etcdserver: unhealthy cluster"),
            MemberError::Refused { .. }
        ));
        assert!(matches!(
            e(2, "etcdserver: request timed out"),
            MemberError::Indeterminate(_)
        ));
        assert!(matches!(
            e(5, "etcdserver: member not found"),
            MemberError::Rejected(_)
        ));
        assert_eq!(etcd_id(&json!("123")), Some("123".into()));
        assert_eq!(etcd_id(&json!(7)), Some("7".into()));
    }

    #[test]
    fn only_protocols_with_a_driver_take_spares() {
        let m = MembershipSpec {
            spares: 2,
            join_args: vec![],
            peer_url: None,
        };
        assert!(supports("faultline-http", &m).is_ok());
        assert!(
            supports("etcd", &m)
                .expect_err("no url")
                .contains("peer_url")
        );
        let e = supports("zookeeper", &m).expect_err("no driver");
        assert!(e.contains("\"zookeeper\" has no membership driver"), "{e}");
    }
}

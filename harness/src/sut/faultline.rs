//! faultline-node behind the [`Db`] interface: its flags for a cluster
//! layout, its `/status`, and one attempt at an operation through the
//! workload's own HTTP mapping (the same mapping as [`crate::client`]).

use std::time::Duration;

use faultline_workloads::{Method, OpSpec, Reply, Workload};
use serde_json::Value;

use super::{Attempt, BoxFuture, ClusterPlan, Db, PeerRouting, Target, transport_outcome};
use crate::cluster::Status;
use crate::supervisor::NodeProgram;

/// faultline-node: a program (our own executable in node mode, or
/// `--node-bin`) and extra flags for every node (e.g. `--bug NAME`).
#[derive(Clone, Debug)]
pub struct FaultlineDb {
    /// The node program.
    pub program: NodeProgram,
    /// Extra flags for every node.
    pub extra_args: Vec<String>,
    /// Extra flags for single nodes, by node id (e.g. `--node-bug n2:NAME`).
    pub per_node_args: std::collections::BTreeMap<String, Vec<String>>,
}

impl Db for FaultlineDb {
    fn name(&self) -> &'static str {
        "faultline"
    }

    fn program(&self) -> NodeProgram {
        self.program.clone()
    }

    fn routing(&self) -> PeerRouting {
        PeerRouting::PerLink
    }

    fn node_args(&self, plan: &ClusterPlan, me: usize) -> Vec<String> {
        let mut args = vec![
            "--id".to_string(),
            plan.ids[me].clone(),
            "--data-dir".to_string(),
            plan.data_dirs[me].display().to_string(),
            "--client-addr".to_string(),
            plan.client_addrs[me].to_string(),
            "--peer-addr".to_string(),
            plan.peer_addrs[me].to_string(),
        ];
        for (j, id) in plan.ids.iter().enumerate() {
            if let Some(addr) = plan.dial[me][j] {
                args.push("--peer".to_string());
                args.push(format!("{id}={addr}"));
                args.push("--peer-client".to_string());
                args.push(format!("{id}={}", plan.client_urls[j]));
            }
        }
        args.extend(self.extra_args.iter().cloned());
        if let Some(own) = self.per_node_args.get(&plan.ids[me]) {
            args.extend(own.iter().cloned());
        }
        args
    }

    fn status<'a>(
        &'a self,
        http: &'a reqwest::Client,
        node: &'a Target,
        _ids: &'a [String],
    ) -> BoxFuture<'a, Option<Status>> {
        Box::pin(async move {
            let resp = http
                .get(format!("{}/status", node.direct_url))
                .send()
                .await
                .ok()?;
            if !resp.status().is_success() {
                return None;
            }
            resp.json::<Status>().await.ok()
        })
    }

    fn attempt<'a>(
        &'a self,
        http: &'a reqwest::Client,
        workload: &'a dyn Workload,
        node: &'a Target,
        op: &'a OpSpec,
        timeout: Duration,
    ) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let call = workload.request(op);
            let url = format!("{}{}", node.client_url, call.path);
            let mut req = match call.method {
                Method::Get => http.get(url),
                Method::Put => http.put(url),
                Method::Post => http.post(url),
                Method::Delete => http.delete(url),
            }
            .timeout(timeout);
            if let Some(body) = &call.body {
                req = req.json(body);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                // Kept as before: any timeout after sending is `info`.
                Err(e) => return transport_outcome(&e, &node.id, true),
            };
            let status = resp.status().as_u16();
            match resp.json::<Value>().await {
                Ok(body) => classify(workload, op, status, &body),
                Err(e) if e.is_timeout() => Attempt::Done(Reply::Info("timeout".into())),
                Err(e) => Attempt::Done(Reply::Info(format!(
                    "unreadable answer ({status}): {}",
                    super::error_chain(&e)
                ))),
            }
        })
    }
}

/// How faultline-node's answer ends an attempt: the workload's own answers
/// (2xx, 412) as the workload says; `not_leader` and other 503s are definite
/// (try elsewhere); 4xx are definite failures; 504 `indeterminate` and
/// anything unexpected are `info`.
pub fn classify(workload: &dyn Workload, op: &OpSpec, status: u16, body: &Value) -> Attempt {
    if (200..300).contains(&status) || status == 412 {
        return Attempt::Done(workload.interpret(op, status, body));
    }
    let kind = body.get("error").and_then(Value::as_str).unwrap_or("");
    let message = body.get("message").and_then(Value::as_str).unwrap_or("");
    match (status, kind) {
        (503, "not_leader") => Attempt::Elsewhere {
            hint: body.get("leader").and_then(Value::as_str).map(String::from),
            why: "not_leader".into(),
        },
        (503, _) => Attempt::Elsewhere {
            hint: None,
            why: format!("unavailable: {message}"),
        },
        (400 | 404 | 405 | 413 | 422, _) => {
            Attempt::Done(Reply::Fail(Value::Null, format!("{kind}: {message}")))
        }
        (504, _) => Attempt::Done(Reply::Info(format!("indeterminate: {message}"))),
        _ => Attempt::Done(Reply::Info(format!("status {status}: {message}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_workloads::RegisterWorkload;
    use serde_json::json;

    fn op(f: &str, value: Value) -> OpSpec {
        OpSpec {
            f: f.into(),
            key: Some("r".into()),
            value,
        }
    }

    #[test]
    fn answers_map_to_outcomes() {
        let w = RegisterWorkload;
        let read = op("read", Value::Null);
        assert_eq!(
            classify(&w, &read, 200, &json!({"value": 3})),
            Attempt::Done(Reply::Ok(json!(3)))
        );
        assert_eq!(
            classify(
                &w,
                &read,
                503,
                &json!({"error": "not_leader", "leader": "n2"})
            ),
            Attempt::Elsewhere {
                hint: Some("n2".into()),
                why: "not_leader".into()
            }
        );
        assert!(matches!(
            classify(
                &w,
                &op("write", json!(1)),
                504,
                &json!({"error": "indeterminate"})
            ),
            Attempt::Done(Reply::Info(_))
        ));
        assert!(matches!(
            classify(
                &w,
                &op("write", json!(1)),
                400,
                &json!({"error": "bad_request"})
            ),
            Attempt::Done(Reply::Fail(..))
        ));
        assert!(matches!(
            classify(&w, &op("cas", json!([1, 2])), 412, &json!({"value": 5})),
            Attempt::Done(Reply::Fail(v, _)) if v == json!(5)
        ));
    }

    #[test]
    fn node_args_name_every_peer_through_its_link() {
        let a = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
        let plan =
            ClusterPlan::two_for_tests(vec![vec![None, Some(a(21))], vec![Some(a(22)), None]]);
        let db = FaultlineDb {
            program: NodeProgram {
                exe: "/bin/true".into(),
                prefix_args: vec![],
            },
            extra_args: vec!["--bug".into(), "x".into()],
            per_node_args: [("n2".to_string(), vec!["--bug".into(), "y".into()])].into(),
        };
        let args = db.node_args(&plan, 0).join(" ");
        assert_eq!(
            args,
            "--id n1 --data-dir /d/n1 --client-addr 127.0.0.1:1 --peer-addr 127.0.0.1:11 \
             --peer n2=127.0.0.1:21 --peer-client n2=http://127.0.0.1:2 --bug x"
        );
        let args = db.node_args(&plan, 1).join(" ");
        assert!(args.ends_with("--bug x --bug y"), "{args}");
    }
}

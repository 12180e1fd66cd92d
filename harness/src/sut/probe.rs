//! The spec's probes, carried out: readiness (a TCP connect, an HTTP GET
//! answered 2xx, optionally with no error in its JSON, or a command exiting 0) and the leader probe (a GET or a
//! command whose JSON answer is read with JSON pointers, or the client
//! protocol's own status).

use std::time::Duration;

use serde_json::Value;

use super::spec::{LeaderSpec, ProbeSpec};
use super::{Db, NodeNames, Protocol, Status};

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// Runs node `me`'s readiness probe once: `Ok` when it passes, else why not.
pub async fn ready(
    db: &Db,
    names: &NodeNames,
    me: usize,
    http: &reqwest::Client,
) -> Result<(), String> {
    let p: &ProbeSpec = &db.spec.ready;
    let render =
        |field: &str, t: &str| db.render(names, me, field, t).map_err(|e| format!("{e:#}"));
    if let Some(t) = &p.tcp {
        let addr = render("ready.tcp", t)?;
        return match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&addr))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("tcp {addr}: {e}")),
            Err(_) => Err(format!("tcp {addr}: no answer within 1 s")),
        };
    }
    if let Some(t) = &p.http {
        let url = render("ready.http", t)?;
        let resp = match http.get(&url).timeout(PROBE_TIMEOUT).send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => return Err(format!("GET {url}: status {}", r.status().as_u16())),
            Err(e) => return Err(format!("GET {url}: {}", super::error_chain(&e))),
        };
        let Some(pointer) = &p.error else {
            return Ok(());
        };
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => return Err(format!("GET {url}: {}", super::error_chain(&e))),
        };
        return answer_error(&text, pointer).map_err(|why| format!("GET {url}: {why}"));
    }
    if let Some(cmd) = &p.command {
        let argv = render_all(db, names, me, "ready.command", cmd)?;
        let (ok, out) = run(&argv).await?;
        return if ok {
            Ok(())
        } else {
            Err(format!("{}: {}", argv.join(" "), out.trim()))
        };
    }
    Err("no probe".into())
}

/// Runs node `me`'s leader probe once; `None` when it does not answer.
pub async fn status(
    db: &Db,
    names: &NodeNames,
    me: usize,
    http: &reqwest::Client,
    protocol: &dyn Protocol,
) -> Option<Status> {
    let l: &LeaderSpec = db.spec.leader.as_ref()?;
    if l.via_client {
        return protocol.status(me).await;
    }
    let answer: Value = if let Some(t) = &l.http {
        let url = db.render(names, me, "leader.http", t).ok()?;
        let resp = http.get(&url).timeout(PROBE_TIMEOUT).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let text = resp.text().await.ok()?;
        parse_answer(&text)
    } else {
        let argv = render_all(db, names, me, "leader.command", l.command.as_ref()?).ok()?;
        let (ok, out) = run(&argv).await.ok()?;
        if !ok {
            return None;
        }
        parse_answer(&out)
    };
    read_status(l, &names.ids[me], &answer)
}

/// Whether a readiness answer reports an error at `pointer` (`ready.error`):
/// `Ok` when it is JSON with nothing or `null` there.
pub fn answer_error(text: &str, pointer: &str) -> Result<(), String> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("the answer is not JSON: {e}"))?;
    match v.pointer(pointer) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => Err(s.clone()),
        Some(other) => Err(other.to_string()),
    }
}

/// A probe's answer as JSON, or as a JSON string when it is text.
fn parse_answer(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.trim().to_string()))
}

/// Reads a [`Status`] out of a probe's answer with the spec's pointers. A
/// text answer (not JSON) says the node leads when one of its words is the
/// leader role (`Mode: leader`), and has no term or leader id.
pub fn read_status(l: &LeaderSpec, id: &str, answer: &Value) -> Option<Status> {
    let leader_role = l.leader_role.as_deref().unwrap_or("leader");
    if let Value::String(text) = answer {
        let leads = text
            .split(|c: char| c.is_whitespace() || c == ':' || c == ',')
            .any(|w| w == leader_role);
        return (!text.is_empty()).then(|| Status {
            id: id.to_string(),
            role: if leads { "leader" } else { "follower" }.to_string(),
            term: None,
            leader: None,
        });
    }
    let at = |p: &Option<String>| answer.pointer(p.as_deref()?);
    let role = match at(&l.role)? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let role = if role == leader_role {
        "leader".to_string()
    } else {
        role
    };
    let term = at(&l.term).and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
    let leader = at(&l.leader_id)
        .and_then(|v| v.as_str().map(str::to_string))
        .filter(|s| !s.is_empty());
    Some(Status {
        id: id.to_string(),
        role,
        term,
        leader,
    })
}

fn render_all(
    db: &Db,
    names: &NodeNames,
    me: usize,
    field: &str,
    cmd: &[String],
) -> Result<Vec<String>, String> {
    cmd.iter()
        .map(|t| db.render(names, me, field, t).map_err(|e| format!("{e:#}")))
        .collect()
}

/// Runs a probe command (bounded in time; killed when it overruns).
/// Returns whether it exited 0, and its output.
async fn run(argv: &[String]) -> Result<(bool, String), String> {
    let Some((prog, args)) = argv.split_first() else {
        return Err("an empty command".into());
    };
    let child = tokio::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{prog}: cannot run it: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(5), child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            Ok((out.status.success(), text))
        }
        Ok(Err(e)) => Err(format!("{prog}: {e}")),
        Err(_) => Err(format!("{prog}: no exit within 5 s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(role: &str, term: Option<&str>, leader: Option<&str>) -> LeaderSpec {
        LeaderSpec {
            http: Some("x".into()),
            command: None,
            via_client: false,
            role: Some(role.into()),
            leader_role: None,
            term: term.map(String::from),
            leader_id: leader.map(String::from),
        }
    }

    #[test]
    fn statuses_are_read_with_pointers() {
        let l = spec("/role", Some("/term"), Some("/leader"));
        let s = read_status(
            &l,
            "n1",
            &json!({"role": "leader", "term": 4, "leader": "n1"}),
        )
        .expect("status");
        assert!(s.leads());
        assert_eq!((s.term, s.leader.as_deref()), (Some(4), Some("n1")));
        let l = spec("/server_stats/server_state", None, None);
        let s = read_status(
            &l,
            "n2",
            &json!({"server_stats": {"server_state": "follower"}}),
        )
        .expect("status");
        assert!(!s.leads());
        assert_eq!(s.term, None);
        assert!(read_status(&l, "n2", &json!({"other": 1})).is_none());
    }

    #[test]
    fn a_readiness_answer_with_an_error_fails() {
        // ZooKeeper 3.8's admin server answers 200 either way.
        let serving = r#"{"server_stats": {"server_state": "leader"}, "error": null}"#;
        assert_eq!(answer_error(serving, "/error"), Ok(()));
        let not_serving = r#"{"command": "srvr", "error": "This ZooKeeper instance is not currently serving requests"}"#;
        assert_eq!(
            answer_error(not_serving, "/error"),
            Err("This ZooKeeper instance is not currently serving requests".into())
        );
        assert_eq!(answer_error(r#"{"ok": 1}"#, "/error"), Ok(()));
        assert!(answer_error("<html>", "/error").is_err());
        assert_eq!(answer_error(r#"{"error": 3}"#, "/error"), Err("3".into()));
    }

    #[test]
    fn a_text_answer_leads_when_it_names_the_leader_role() {
        let l = spec("/", None, None);
        let s = read_status(&l, "n1", &parse_answer("Zxid: 0x1\nMode: leader\n")).expect("status");
        assert!(s.leads());
        let s = read_status(&l, "n1", &parse_answer("Mode: follower")).expect("status");
        assert!(!s.leads());
    }
}

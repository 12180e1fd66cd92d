//! A user's client program as a client protocol: faultline starts the
//! spec's `client.command` once per worker and writes one JSON line per
//! attempt to its stdin; the program answers with one JSON line on stdout.
//!
//! Request: the [`Command`](faultline_workloads::Command) (`f`, `key`, and
//! `value`, `from`/`to` or `delta`) plus `node` (the node id to send it to),
//! `addr` (that node's client address, `host:port`), `client` and `seq`
//! (the logical client and its request number: a resend of an ambiguous
//! attempt keeps both) and `timeout_ms` (how long faultline waits).
//!
//! Reply, in the spirit of Maelstrom's error codes:
//! - `{"type": "ok", "value": V}`: done; `V` is what a read saw (`null`:
//!   absent), ignored otherwise.
//! - `{"type": "fail", "text": "..."}`: certainly not done. A refused cas
//!   may add `"value"`: the value it saw (the checker then reads the cas as
//!   an observation of it). With `"code": 11`
//!   (temporarily unavailable) or `1` (node not found) faultline tries
//!   another node, the one named by `"leader"` first if given.
//! - `{"type": "info", "text": "..."}`: may or may not have happened.
//! - `{"type": "error", "code": C, "text": "..."}`: Maelstrom's codes;
//!   definite (as `fail`): 1, 10, 11, 12, 14, 20, 21, 22, 30; every other
//!   code (0 timeout, 13 crash, custom codes ≥ 1000) is indeterminate (as
//!   `info`), since that is always safe.
//!
//! A program that exits, or gives no answer in time, leaves its operation
//! indeterminate and is restarted for the next one (each restart is
//! counted). A line that is not a reply stops the run with an error naming
//! the spec's `client.command`: the protocol cannot be trusted after it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use super::ProtocolEnv;
use crate::supervisor::{AuxChild, AuxCommand};
use crate::sut::{Attempt, BoxFuture, Client, Db, NodeNames, Protocol, Request};

/// Maelstrom's definite error codes: the operation certainly did not happen.
pub const DEFINITE_CODES: [i64; 9] = [1, 10, 11, 12, 14, 20, 21, 22, 30];

/// Codes after which another node may take the operation.
const ELSEWHERE_CODES: [i64; 2] = [1, 11];

/// The program protocol: what to start per worker.
pub struct Program {
    command: AuxCommand,
    dedup: bool,
    file: String,
    env: ProtocolEnv,
    restarts: Arc<AtomicU64>,
}

impl Program {
    /// Renders the spec's client command for this run.
    pub fn new(db: &Db, names: &NodeNames, env: ProtocolEnv) -> Result<Program> {
        let nodes = env
            .endpoints
            .iter()
            .map(|e| format!("{}={}", e.id, e.addr))
            .collect::<Vec<_>>()
            .join(",");
        let read_mode = env.read_mode.name();
        let mut look = |n: &str| -> Option<String> {
            match n {
                "nodes" => Some(nodes.clone()),
                "read_mode" => Some(read_mode.to_string()),
                _ => None,
            }
        };
        let spec = &db.spec.client;
        let mut argv = Vec::new();
        for (i, t) in spec.command.iter().enumerate() {
            argv.push(
                names
                    .render(&db.spec, 0, t, &mut look)
                    .map_err(|e| anyhow::anyhow!("{}: client.command[{i}]: {e}", db.file()))?,
            );
        }
        let mut vars = vec![
            ("FAULTLINE_NODES".to_string(), nodes.clone()),
            ("FAULTLINE_READ_MODE".to_string(), read_mode.to_string()),
        ];
        for (k, t) in &spec.env {
            vars.push((
                k.clone(),
                names
                    .render(&db.spec, 0, t, &mut look)
                    .map_err(|e| anyhow::anyhow!("{}: client.env.{k}: {e}", db.file()))?,
            ));
        }
        let program = db.find_program("client.command[0]", &argv[0])?;
        Ok(Program {
            command: AuxCommand {
                program,
                args: argv[1..].to_vec(),
                env: vars,
                cwd: db.spec_dir.clone(),
            },
            dedup: spec.dedup,
            file: db.file(),
            env,
            restarts: Arc::new(AtomicU64::new(0)),
        })
    }
}

impl Protocol for Program {
    fn name(&self) -> &'static str {
        "program"
    }

    fn dedup(&self) -> bool {
        self.dedup
    }

    fn client<'a>(&'a self, worker: usize) -> BoxFuture<'a, Result<Box<dyn Client>>> {
        Box::pin(async move {
            let mut c = ProgramClient {
                command: self.command.clone(),
                supervisor: self.env.supervisor.clone(),
                log: self.env.log_dir.join(format!("worker-{worker}.log")),
                file: self.file.clone(),
                ids: self.env.endpoints.iter().map(|e| e.id.clone()).collect(),
                addrs: self
                    .env
                    .endpoints
                    .iter()
                    .map(|e| e.addr.to_string())
                    .collect(),
                running: None,
                restarts: self.restarts.clone(),
                started_once: false,
            };
            c.start()?;
            Ok(Box::new(c) as Box<dyn Client>)
        })
    }

    fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }
}

/// A running client program.
struct Running {
    child: AuxChild,
    stdin: tokio::process::ChildStdin,
    stdout: BufReader<tokio::process::ChildStdout>,
}

/// One worker's program.
struct ProgramClient {
    command: AuxCommand,
    supervisor: Arc<crate::supervisor::Supervisor>,
    log: PathBuf,
    file: String,
    ids: Vec<String>,
    addrs: Vec<String>,
    running: Option<Running>,
    restarts: Arc<AtomicU64>,
    started_once: bool,
}

impl ProgramClient {
    fn start(&mut self) -> Result<()> {
        let mut child = self
            .supervisor
            .spawn_aux(&self.command, &self.log)
            .with_context(|| format!("{}: client.command: cannot start the client", self.file))?;
        let (stdin, stdout) = child.take_pipes()?;
        if self.started_once {
            self.restarts.fetch_add(1, Ordering::Relaxed);
        }
        self.started_once = true;
        self.running = Some(Running {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        });
        Ok(())
    }

    /// Why the program is gone (its exit status, if it exited).
    fn gone(&mut self, what: &str) -> String {
        let status = self
            .running
            .take()
            .and_then(|mut r| r.child.try_wait())
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        format!("client program {what}{status}")
    }
}

impl Client for ProgramClient {
    fn attempt<'a>(&'a mut self, req: Request<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let mut line = match serde_json::to_value(req.cmd) {
                Ok(v) => v,
                Err(e) => return Attempt::Fatal(format!("cannot encode a command: {e}")),
            };
            line["node"] = json!(self.ids[req.node]);
            line["addr"] = json!(self.addrs[req.node]);
            line["client"] = json!(req.client);
            line["seq"] = json!(req.seq);
            line["timeout_ms"] = json!(req.timeout.as_millis() as u64);
            let mut text = line.to_string();
            text.push('\n');
            // A program that died between operations sent nothing: restart
            // it and try once more before giving up on this attempt.
            for round in 0..2 {
                if self.running.is_none()
                    && let Err(e) = self.start()
                {
                    return Attempt::Fatal(format!("{e:#}"));
                }
                let Some(r) = self.running.as_mut() else {
                    continue;
                };
                if r.stdin.write_all(text.as_bytes()).await.is_ok() && r.stdin.flush().await.is_ok()
                {
                    break;
                }
                let why = self.gone("exited before it took the request");
                if round == 1 {
                    return Attempt::Elsewhere { hint: None, why };
                }
            }
            let Some(r) = self.running.as_mut() else {
                return Attempt::Fatal("client program not running".into());
            };
            let mut answer = String::new();
            // A little longer than the attempt's own budget: the program
            // gets to say "timeout" itself.
            let wait = req.timeout + Duration::from_millis(200);
            match tokio::time::timeout(wait, r.stdout.read_line(&mut answer)).await {
                Err(_) => {
                    let why = format!(
                        "client program gave no answer within {} ms; restarting it",
                        wait.as_millis()
                    );
                    // Its line protocol cannot be resumed: replace it.
                    self.running = None;
                    Attempt::Ambiguous(why)
                }
                Ok(Err(e)) => Attempt::Ambiguous(self.gone(&format!("failed: {e}"))),
                Ok(Ok(0)) => Attempt::Ambiguous(self.gone("exited during the operation")),
                Ok(Ok(_)) => match parse_reply(answer.trim_end()) {
                    Ok(a) => a,
                    Err(e) => Attempt::Fatal(format!(
                        "{}: client.command: the client program answered {:?}, which is not a \
                         reply line ({e}); see README.md, \"Client programs\"",
                        self.file,
                        truncate(answer.trim_end(), 200)
                    )),
                },
            }
        })
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// Reads one reply line (see the module docs).
pub fn parse_reply(line: &str) -> Result<Attempt, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let ty = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or("no \"type\" field (ok, fail, info or error)")?;
    let text = v
        .get("text")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_default();
    let code = v.get("code").and_then(Value::as_i64);
    let why = |default: &str| {
        let base = if text.is_empty() {
            default.to_string()
        } else {
            text.clone()
        };
        match code {
            Some(c) => format!("{base} (code {c})"),
            None => base,
        }
    };
    let definite = |default: &str| {
        if code.is_some_and(|c| ELSEWHERE_CODES.contains(&c)) {
            Attempt::Elsewhere {
                hint: v.get("leader").and_then(Value::as_str).map(str::to_string),
                why: why(default),
            }
        } else if let Some(current) = v.get("value") {
            // A refused cas that says what it saw (the checker reads it).
            Attempt::Fail {
                current: current.clone(),
                why: faultline_checkers::REFUSED_CAS.to_string(),
            }
        } else {
            Attempt::Fail {
                current: Value::Null,
                why: why(default),
            }
        }
    };
    Ok(match ty {
        "ok" => Attempt::Ok(v.get("value").cloned().unwrap_or(Value::Null)),
        "fail" => definite("failed"),
        "info" => Attempt::Ambiguous(why("indeterminate")),
        "error" => match code {
            None => return Err("an error needs a numeric \"code\"".into()),
            Some(c) if DEFINITE_CODES.contains(&c) => definite("error"),
            Some(_) => Attempt::Ambiguous(why("error")),
        },
        other => return Err(format!("unknown type {other:?} (ok, fail, info or error)")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_map_to_attempts() {
        assert_eq!(
            parse_reply(r#"{"type":"ok","value":[1,2]}"#),
            Ok(Attempt::Ok(json!([1, 2])))
        );
        assert_eq!(
            parse_reply(r#"{"type":"ok"}"#),
            Ok(Attempt::Ok(Value::Null))
        );
        assert_eq!(
            parse_reply(r#"{"type":"fail","code":22,"value":5,"text":"cas"}"#),
            Ok(Attempt::Fail {
                current: json!(5),
                why: "cas-mismatch".into()
            })
        );
        assert_eq!(
            parse_reply(r#"{"type":"fail","text":"nope"}"#),
            Ok(Attempt::Fail {
                current: Value::Null,
                why: "nope".into()
            })
        );
        assert_eq!(
            parse_reply(r#"{"type":"fail","code":11,"leader":"n3"}"#),
            Ok(Attempt::Elsewhere {
                hint: Some("n3".into()),
                why: "failed (code 11)".into()
            })
        );
        assert!(matches!(
            parse_reply(r#"{"type":"info","text":"timeout"}"#),
            Ok(Attempt::Ambiguous(_))
        ));
        assert!(matches!(
            parse_reply(r#"{"type":"error","code":0}"#),
            Ok(Attempt::Ambiguous(_))
        ));
        assert!(matches!(
            parse_reply(r#"{"type":"error","code":1000}"#),
            Ok(Attempt::Ambiguous(_))
        ));
        assert!(matches!(
            parse_reply(r#"{"type":"error","code":20}"#),
            Ok(Attempt::Fail { .. })
        ));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        for (line, says) in [
            ("hello", "not JSON"),
            ("{}", "no \"type\""),
            (r#"{"type":"maybe"}"#, "unknown type"),
            (r#"{"type":"error"}"#, "numeric \"code\""),
        ] {
            let e = parse_reply(line).expect_err(line);
            assert!(e.contains(says), "{line}: {e}");
        }
    }
}

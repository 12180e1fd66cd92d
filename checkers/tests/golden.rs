//! Golden tests: each `testdata/NAME.jsonl` history is checked and compared with
//! `testdata/NAME.expect` (`model:`, optional `initial:`, `verdict:`, and for
//! invalid ones the witness: `key:`, `op:` (index of the op that cannot be
//! linearized), `minimal:` (indices of the minimal op set), `state:`; for sets
//! `lost:` and `unexpected:`).

use faultline_checkers::{
    LinOptions, ModelKind, Verdict, check_counter, check_linearizable, check_set,
};
use faultline_history::{pair, parse_jsonl};
use std::collections::BTreeMap;
use std::path::Path;

fn check(path: &Path) -> Result<(), String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let expect_text = std::fs::read_to_string(path.with_extension("expect"))
        .map_err(|e| format!("{name}: no .expect: {e}"))?;
    let expect: BTreeMap<&str, &str> = expect_text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let history = parse_jsonl(&name, &text).map_err(|e| e.to_string())?;
    let ops = pair(&name, &history.events).map_err(|e| e.to_string())?;
    let model = expect.get("model").copied().ok_or("no model")?;
    let verdict = match model {
        "set" => {
            let r = check_set(&ops);
            if let Some(lost) = expect.get("lost") {
                let got = serde_json::Value::Array(r.lost.clone()).to_string();
                if got.replace(' ', "") != lost.replace(' ', "") {
                    return Err(format!("{name}: lost {got}, expected {lost}"));
                }
            }
            if let Some(unexpected) = expect.get("unexpected") {
                let got = serde_json::Value::Array(r.unexpected.clone()).to_string();
                if got.replace(' ', "") != unexpected.replace(' ', "") {
                    return Err(format!("{name}: unexpected {got}, expected {unexpected}"));
                }
            }
            r.verdict
        }
        "counter" => check_counter(&ops).verdict,
        m => {
            let kind = match m {
                "register" => ModelKind::Register,
                "cas-register" => ModelKind::CasRegister,
                "kv" => ModelKind::Kv,
                "append" => ModelKind::Append,
                "multi-register" => ModelKind::MultiRegister,
                "mutex" => ModelKind::Mutex,
                other => return Err(format!("{name}: unknown model {other}")),
            };
            let mut opts = LinOptions::new(kind);
            if let Some(init) = expect.get("initial") {
                opts.initial = serde_json::from_str(init).map_err(|e| e.to_string())?;
            }
            check_linearizable(&ops, &opts)
                .map_err(|e| e.to_string())?
                .verdict
        }
    };
    let want = expect.get("verdict").copied().ok_or("no verdict")?;
    if verdict.name() != want {
        return Err(format!("{name}: verdict {verdict:?}, expected {want}"));
    }
    if let Verdict::Invalid { key, witness } = &verdict {
        if witness.explanation.is_empty() {
            return Err(format!("{name}: empty explanation"));
        }
        if let Some(k) = expect.get("key")
            && key.as_deref() != Some(*k)
        {
            return Err(format!("{name}: key {key:?}, expected {k}"));
        }
        if let Some(op) = expect.get("op") {
            let got = witness
                .op
                .as_ref()
                .map(|o| o.index.to_string())
                .unwrap_or_default();
            if got != *op {
                return Err(format!(
                    "{name}: op {got}, expected {op}; {}",
                    witness.explanation
                ));
            }
        }
        if let Some(m) = expect.get("minimal") {
            let mut got: Vec<u64> = witness.minimal.iter().map(|o| o.index).collect();
            got.sort_unstable();
            let got = got.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
            if got != *m {
                return Err(format!(
                    "{name}: minimal {got}, expected {m}; {}",
                    witness.explanation
                ));
            }
        }
        if let Some(s) = expect.get("state")
            && witness.state != *s
        {
            return Err(format!("{name}: state {:?}, expected {s:?}", witness.state));
        }
    }
    Ok(())
}

#[test]
fn golden_histories() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 20,
        "expected the golden histories in {}",
        dir.display()
    );
    let failures: Vec<String> = paths.iter().filter_map(|p| check(p).err()).collect();
    for f in &failures {
        println!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden histories failed",
        failures.len(),
        paths.len()
    );
}

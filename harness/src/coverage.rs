//! What a run exercised, counted in the nodes' logs with the patterns of
//! the system's spec (`[coverage]`): elections, leader changes, log
//! truncations, snapshots taken, sent and installed, starts and what
//! recovery did, torn tails repaired, de-duplication hits... A count of
//! zero means the run never exercised that path.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result};

use crate::sut::Db;

/// Counts, per coverage item of `db`'s spec, the lines of every
/// `<nodes>/*.log` that match its pattern.
pub fn count(db: &Db, nodes: &Path) -> Result<BTreeMap<String, u64>> {
    let mut patterns = Vec::new();
    for (name, p) in &db.spec.coverage {
        let re = regex::Regex::new(p)
            .with_context(|| format!("{}: coverage.{name}: bad pattern", db.file()))?;
        patterns.push((name.clone(), re));
    }
    let mut counts: BTreeMap<String, u64> = patterns.iter().map(|(n, _)| (n.clone(), 0)).collect();
    if patterns.is_empty() {
        return Ok(counts);
    }
    let Ok(dir) = std::fs::read_dir(nodes) else {
        return Ok(counts);
    };
    let mut logs: Vec<_> = dir
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    for log in logs {
        let bytes =
            std::fs::read(&log).with_context(|| format!("cannot read {}", log.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines() {
            for (name, re) in &patterns {
                if re.is_match(line) {
                    *counts.entry(name.clone()).or_default() += 1;
                }
            }
        }
    }
    Ok(counts)
}

/// The items a run never exercised.
pub fn never(counts: &BTreeMap<String, u64>) -> Vec<&str> {
    counts
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| k.as_str())
        .collect()
}

/// `elections 4 · snapshots_installed 2 · ...` for the summary.
pub fn line(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_matching_lines_of_every_node_log() {
        let dir = std::env::temp_dir().join(format!("faultline-coverage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("n1.log"),
            "INFO role change node=n1 role=\"leader\" term=2\nINFO recovered snapshot_index=0\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("n2.log"),
            "INFO recovered snapshot_index=128\nINFO installed snapshot from leader index=64\n",
        )
        .unwrap();
        std::fs::write(dir.join("n2.data"), "role change role=leader\n").unwrap();
        let db = Db::resolve("faultline").unwrap();
        let c = count(&db, &dir).unwrap();
        assert_eq!(c["elections"], 1);
        assert_eq!(c["starts"], 2);
        assert_eq!(c["starts_from_snapshot"], 1);
        assert_eq!(c["snapshots_installed"], 1);
        assert!(never(&c).contains(&"dedup_hits"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! `faultline list`: every workload, system, nemesis kind and read mode,
//! one line each, from the tables that define them.

use crate::nemesis::{KINDS, SCRIPTS, script};
use crate::sut::{BUILT_IN, Db, ReadMode};

/// The text of `faultline list`.
pub fn list() -> String {
    let mut out = String::from("workloads (--workload):\n");
    for w in faultline_workloads::all() {
        out.push_str(&format!("  {:<10} {}\n", w.name(), w.description()));
    }
    out.push_str("systems (--db NAME, or --db PATH.toml for any system):\n");
    for (name, _) in BUILT_IN {
        let about = Db::resolve(name)
            .map(|d| d.spec.description.clone())
            .unwrap_or_else(|e| e.to_string());
        out.push_str(&format!("  {name:<10} {about}\n"));
    }
    out.push_str("nemeses (--nemesis, comma-separated; also `all` and `none`):\n");
    for k in &KINDS {
        out.push_str(&format!("  {:<10} {}\n", k.name, k.description));
        out.push_str(&format!("  {:<10}   {}:{}\n", "", k.name, k.variants));
    }
    out.push_str(&format!(
        "scripted schedules (--nemesis {}:NAME[+DELAY], alone; need a leader probe with a term):\n",
        script::PREFIX
    ));
    for s in &SCRIPTS {
        out.push_str(&format!("  {:<10} {}\n", s.name, s.description));
        out.push_str(&format!(
            "  {:<10}   at least {} nodes; peer links delayed {} ms; suits {}\n",
            "", s.min_nodes, s.delay_ms, s.suits
        ));
    }
    let modes: Vec<&str> = ReadMode::ALL.iter().map(|m| m.name()).collect();
    out.push_str(&format!("read modes (--read-mode): {}\n", modes.join(", ")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_names_every_workload_system_and_nemesis() {
        let text = list();
        for name in [
            "register",
            "kv",
            "set",
            "counter",
            "append",
            "faultline",
            "etcd",
            "zookeeper",
            "partition",
            "kill",
            "pause",
            "delay",
            "loss",
            "bandwidth",
            "vote-loss",
            "figure-8",
        ] {
            assert!(
                text.contains(&format!("  {name} ")),
                "{name} missing:\n{text}"
            );
        }
    }
}

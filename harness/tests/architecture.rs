//! The controller's shape, checked from its source (ARCHITECTURE.md states
//! these as invariants):
//! - its top-level modules depend on each other without a cycle;
//! - `run.rs`, the run's pipeline, fits in 300 lines;
//! - fault names (the kinds, the `f` of every fault, the scripted
//!   schedules) are written in the nemesis module only: everything else
//!   reads the fault and script tables.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read src").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A file's text without its `#[cfg(test)]` module (tests may name anything).
fn non_test(p: &Path) -> String {
    let text = std::fs::read_to_string(p).expect("read source");
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The top-level module a file belongs to (`sut` for `sut/protocol/etcd.rs`).
fn module_of(p: &Path) -> Option<String> {
    let rel = p.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (name != "main" && name != "lib").then_some(name)
}

#[test]
fn top_level_modules_form_no_cycle() {
    let files = rust_files(&src());
    let modules: BTreeSet<String> = files.iter().filter_map(|p| module_of(p)).collect();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in &files {
        let Some(m) = module_of(p) else { continue };
        let text = non_test(p);
        let entry = deps.entry(m.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name != m && modules.contains(&name) {
                entry.insert(name);
            }
        }
        // `use crate::{a, b::c}` lists.
        for (i, _) in text.match_indices("crate::{") {
            let rest = &text[i + "crate::{".len()..];
            let list = &rest[..rest.find('}').unwrap_or(0)];
            for item in list.split(',') {
                let name = item.trim().split("::").next().unwrap_or("").to_string();
                if name != m && modules.contains(&name) {
                    entry.insert(name);
                }
            }
        }
    }
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(
        m: &str,
        deps: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|x| x == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in deps.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, deps, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in &modules {
        if let Some(cycle) = visit(m, &deps, &mut Vec::new(), &mut done) {
            panic!("module cycle: {}\nall edges: {deps:#?}", cycle.join(" → "));
        }
    }
}

#[test]
fn the_run_pipeline_fits_in_300_lines() {
    let lines = std::fs::read_to_string(src().join("run.rs"))
        .expect("run.rs")
        .lines()
        .count();
    assert!(lines <= 300, "run.rs has {lines} lines");
}

#[test]
fn fault_names_are_written_only_in_the_nemesis_module() {
    let mut names: BTreeSet<&str> = faultline::nemesis::KINDS
        .iter()
        .flat_map(|k| {
            [k.name, k.start, k.end]
                .into_iter()
                .chain(k.steps.iter().copied())
        })
        // A kind of instant steps (member) has no start or end.
        .filter(|n| !n.is_empty())
        .collect();
    names.insert("clear");
    // Scripted schedules' names too: they live in the nemesis's script table.
    names.extend(faultline::nemesis::SCRIPTS.iter().map(|s| s.name));
    for p in rust_files(&src()) {
        if p.starts_with(src().join("nemesis")) {
            continue;
        }
        let text = non_test(&p);
        for n in &names {
            assert!(
                !text.contains(&format!("\"{n}\"")),
                "{} spells the fault name \"{n}\": read it from nemesis::KINDS",
                p.display()
            );
        }
    }
}

//! The engine reads from the bottom up: every module uses only modules listed before it here
//! (its own layer's earlier ones and the layers below), so no two modules use each other and
//! no layer reaches into one above it. The order is the one `src/lib.rs` describes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The engine's layers, bottom first; within a layer, the order its modules may use each other.
const LAYERS: &[(&str, &[&str])] = &[
    ("support", &["blob", "error", "crash", "perf"]),
    ("decisions", &["mapping", "push_plan"]),
    ("records", &["ledger", "operation"]),
    ("applying staged rows", &["apply"]),
    (
        "flows",
        &[
            "collections",
            "down",
            "up",
            "realtime",
            "edit",
            "resolve",
            "rollback",
            "xorosoft_import",
        ],
    ),
    (
        "driving operations",
        &[
            "review",
            "steps",
            "incremental",
            "sync",
            "jobs",
            "local_queue",
            "intake",
        ],
    ),
];

/// Each module's place in the order, and its layer's name.
fn ranks() -> BTreeMap<&'static str, (usize, &'static str)> {
    LAYERS
        .iter()
        .flat_map(|(layer, modules)| modules.iter().map(move |m| (*m, *layer)))
        .enumerate()
        .map(|(rank, (module, layer))| (module, (rank, layer)))
        .collect()
}

/// The engine modules `source` names through `crate::` (comments aside), in `use crate::x`,
/// `use crate::{x, y::z}` and `crate::x::item` form.
fn modules_used(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut used = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        // `shopsync_store::crate_name::` would not be this crate.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut at_item = true;
            let mut name = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 1 => break,
                    '}' => depth -= 1,
                    ',' if depth == 1 => at_item = true,
                    c if depth == 1 && at_item && (c.is_alphanumeric() || c == '_') => name.push(c),
                    _ if depth == 1 && at_item && !name.is_empty() => {
                        used.insert(std::mem::take(&mut name));
                        at_item = false;
                    }
                    _ => {}
                }
            }
            if !name.is_empty() {
                used.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            used.insert(name);
        }
    }
    used
}

#[test]
fn every_module_uses_only_modules_below_it() {
    let ranks = ranks();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut upward = Vec::new();
    let mut unplaced = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(&src).expect("the engine's src folder") {
        let path = entry.expect("a src entry").path();
        let Some(module) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if module == "lib" || path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let Some(&(rank, layer)) = ranks.get(module) else {
            unplaced.push(module.to_owned());
            continue;
        };
        seen += 1;
        let source = std::fs::read_to_string(&path).expect("a readable module");
        for used in modules_used(&source) {
            match ranks.get(used.as_str()) {
                Some(&(used_rank, used_layer)) if used_rank >= rank && used != module => upward
                    .push(format!(
                        "{module} ({layer}) uses {used} ({used_layer}), which is not below it"
                    )),
                Some(_) => {}
                None if used == "EngineError" => {}
                None => unplaced.push(format!("{used} (used by {module})")),
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules with no place in LAYERS: {unplaced:?}"
    );
    assert!(upward.is_empty(), "upward uses:\n{}", upward.join("\n"));
    assert_eq!(seen, ranks.len(), "every module in LAYERS has a file");
}

#[test]
fn uses_are_read_in_every_form() {
    let source = "use crate::down::{Planned, Planner};\n\
                  use crate::{apply::settle_row, operation};\n\
                  // crate::jobs in a comment is not a use\n\
                  let x = crate::steps::lease();\n\
                  let y = shopsync_store::item::Query::new();";
    let used: Vec<String> = modules_used(source).into_iter().collect();
    assert_eq!(used, ["apply", "down", "operation", "steps"]);
}

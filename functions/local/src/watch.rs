//! `serve`'s inbound folders: a file in `DATA/xorosoft/inbound/{stock,price,full}/` is
//! imported once it is complete (renamed into the folder, or unchanged for a moment).

use shopsync_engine::jobs::{Job, JobMessage, JobQueue};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the folders are looked at; a file unchanged between two looks is complete.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The folders watched under the data directory.
pub const INBOUND: [&str; 3] = [
    "xorosoft/inbound/stock",
    "xorosoft/inbound/price",
    "xorosoft/inbound/full",
];

/// A file as the last look saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    len: u64,
    modified: Option<SystemTime>,
    queued: bool,
}

/// Creates the inbound folders (so they are there to drop files into).
pub fn prepare(root: &Path) -> std::io::Result<()> {
    for folder in INBOUND {
        std::fs::create_dir_all(root.join(folder))?;
    }
    Ok(())
}

/// Whether a name is a file being written (hidden, or a partial copy), not one to import.
fn in_progress(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".partial") || name.ends_with(".tmp")
}

/// The complete files of the inbound folders not queued yet, as keys under `root`; `seen`
/// carries what earlier looks saw.
fn complete_files(root: &Path, seen: &mut HashMap<PathBuf, Seen>) -> Vec<(String, Seen)> {
    let mut present = HashMap::new();
    for folder in INBOUND {
        let Ok(entries) = std::fs::read_dir(root.join(folder)) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !meta.is_file() || in_progress(name) {
                continue;
            }
            present.insert(
                entry.path(),
                (
                    format!("{folder}/{name}"),
                    Seen {
                        len: meta.len(),
                        modified: meta.modified().ok(),
                        queued: false,
                    },
                ),
            );
        }
    }
    seen.retain(|path, _| present.contains_key(path));
    let mut ready = Vec::new();
    for (path, (key, now)) in present {
        match seen.get_mut(&path) {
            Some(before) if before.len == now.len && before.modified == now.modified => {
                if !before.queued {
                    before.queued = true;
                    ready.push((key, now));
                }
            }
            _ => {
                seen.insert(path, now);
            }
        }
    }
    ready
}

/// Looks at the inbound folders every [`LOOK_EVERY`] and queues an import of each file once
/// it is complete (one message per file version: its key, size and modification time).
pub async fn watch(root: PathBuf, queue: Arc<dyn JobQueue>) {
    let mut seen = HashMap::new();
    let mut ticks = tokio::time::interval(LOOK_EVERY);
    loop {
        ticks.tick().await;
        let looked = {
            let root = root.clone();
            let mut carried = std::mem::take(&mut seen);
            tokio::task::spawn_blocking(move || {
                let ready = complete_files(&root, &mut carried);
                (ready, carried)
            })
            .await
        };
        let Ok((ready, carried)) = looked else {
            continue;
        };
        seen = carried;
        for (key, file) in ready {
            let modified = file
                .modified
                .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let mut message =
                JobMessage::new(Job::ImportFile { key: key.clone() }, chrono::Utc::now());
            message.id = format!("import-file:{key}:{}:{modified}", file.len);
            match queue.send(vec![message]).await {
                Ok(()) => tracing::info!(key, "Xorosoft file queued for import"),
                Err(e) => tracing::error!(key, error = %e, "queueing a Xorosoft file failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_ready_once_it_is_unchanged_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path()).unwrap();
        let mut seen = HashMap::new();
        let file = dir.path().join("xorosoft/inbound/stock/a.csv");
        std::fs::write(&file, "x").unwrap();
        std::fs::write(dir.path().join("xorosoft/inbound/stock/.b.csv"), "x").unwrap();
        std::fs::write(dir.path().join("xorosoft/inbound/stock/c.csv.partial"), "x").unwrap();
        assert!(
            complete_files(dir.path(), &mut seen).is_empty(),
            "first seen"
        );
        let ready = complete_files(dir.path(), &mut seen);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].0, "xorosoft/inbound/stock/a.csv");
        assert!(
            complete_files(dir.path(), &mut seen).is_empty(),
            "queued once"
        );
        // Still growing: waits again.
        std::fs::write(&file, "xy").unwrap();
        assert!(complete_files(dir.path(), &mut seen).is_empty());
        assert_eq!(complete_files(dir.path(), &mut seen).len(), 1);
        std::fs::remove_file(&file).unwrap();
        assert!(complete_files(dir.path(), &mut seen).is_empty());
        assert!(seen.is_empty(), "a file gone is forgotten");
    }
}

//! Behaviour of the embedded store that the conformance suite does not cover.

use chrono::{Duration, Utc};
use shopsync_store::repo::IdempotencyState;
use shopsync_store::sqlite::DB_FILE;
use shopsync_store::{SqliteStore, Store};
use std::sync::Arc;

/// A migrated embedded store in a fresh directory (kept alive by the returned guard).
async fn migrated() -> (Arc<SqliteStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = SqliteStore::open(dir.path(), "t_").expect("open");
    shopsync_store::migrate::migrate(&backend, Default::default())
        .await
        .expect("migrate");
    (Arc::new(backend), dir)
}

/// Commits stay in the write-ahead log until a checkpoint copies them into the database
/// file. SQLite's own checkpoint would run inside a commit only past 16,384 log pages; the
/// store's background checkpoint copies them long before, beside the writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_copied_into_the_database_in_the_background() {
    let (backend, dir) = migrated().await;
    let store = Store::new(backend);
    let database = dir.path().join(DB_FILE);
    let size = || std::fs::metadata(&database).map(|m| m.len()).unwrap_or(0);
    let before = size();
    let now = Utc::now();
    for i in 0..1_000 {
        store
            .begin_idempotent(
                &format!("key-{i}"),
                "hash",
                now,
                now + Duration::seconds(60),
                now + Duration::hours(48),
            )
            .await
            .expect("write");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while size() <= before && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        size() > before,
        "the database file grew from {before} bytes: the log was checkpointed"
    );
    for i in [0, 499, 999] {
        assert_eq!(
            store
                .idempotency_state(&format!("key-{i}"), now)
                .await
                .expect("read"),
            IdempotencyState::InProgress
        );
    }
}

/// Concurrent transactions share commits (group commit), yet each is checked and answered on
/// its own and stays all or nothing: of many racing to claim one key, each with a second
/// write of its own, exactly one lands whole and the others leave nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_sharing_a_commit_are_each_all_or_nothing() {
    use shopsync_store::item::{Condition, Item, Key, Scalar, WriteOp};
    use shopsync_store::{ItemStore, StoreError, Table};
    let (backend, _dir) = migrated().await;
    let put = |key: &str| WriteOp::Put {
        table: Table::IdempotencyRecords,
        item: Item {
            attrs: [("key".to_owned(), Scalar::from(key))].into(),
            doc: Some(b"{}".to_vec()),
        },
        condition: Some(Condition::ItemAbsent),
    };
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let backend = backend.clone();
            let writes = vec![put(&format!("own-{i}")), put("contested")];
            tokio::spawn(async move { backend.transact(writes).await })
        })
        .collect();
    let mut won = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.expect("task") {
            Ok(()) => won.push(i),
            Err(StoreError::TransactionCanceled { .. }) => {}
            Err(e) => panic!("transaction {i} failed: {e}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one claims the contested key");
    for i in 0..64 {
        let own = backend
            .get(Table::IdempotencyRecords, &Key::pk(format!("own-{i}")))
            .await
            .expect("read");
        assert_eq!(own.is_some(), won.contains(&i), "own-{i}");
    }
}

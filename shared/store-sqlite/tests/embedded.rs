//! Behaviour of the embedded store that the conformance suite does not cover.

use chrono::{Duration, Utc};
use shopsync_store::repo::IdempotencyState;
use shopsync_store::{ItemStore, Store};
use shopsync_store_sqlite::SqliteStore;
use shopsync_store_sqlite::DB_FILE;
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

/// Batches of lookups run on reading connections beside the writer: many at once, while
/// writes commit, each sees every write that returned before it was asked, and the
/// connections go back to their pool (more batches than connections all get answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_lookups_read_beside_the_writer_and_see_every_returned_write() {
    use shopsync_store::item::{Item, Query, Scalar, WriteOp};
    use shopsync_store::{ItemStore, Table};
    let (backend, _dir) = migrated().await;
    let tasks: Vec<_> = (0..16)
        .map(|writer| {
            let backend = backend.clone();
            tokio::spawn(async move {
                for round in 0..20 {
                    let key = format!("w{writer}-r{round}");
                    backend
                        .transact(vec![WriteOp::Put {
                            table: Table::IdempotencyRecords,
                            item: Item {
                                attrs: [("key".to_owned(), Scalar::from(key.as_str()))].into(),
                                doc: Some(format!("{{\"round\":{round}}}").into_bytes()),
                            },
                            condition: None,
                        }])
                        .await
                        .expect("write");
                    // This writer's keys so far, and one not written yet.
                    let queries: Vec<Query> = (0..=round + 1)
                        .map(|r| {
                            Query::new(Table::IdempotencyRecords, None, format!("w{writer}-r{r}"))
                        })
                        .collect();
                    let pages = backend.query_each(&queries).await.expect("lookups");
                    assert_eq!(pages.len(), queries.len());
                    for (r, page) in pages.iter().enumerate() {
                        let doc = page.items.first().and_then(|i| i.doc.clone());
                        if r <= round {
                            assert_eq!(
                                doc,
                                Some(format!("{{\"round\":{r}}}").into_bytes()),
                                "writer {writer} round {round} reads its write {r}"
                            );
                        } else {
                            assert_eq!(doc, None, "not written yet");
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
}

/// Documents of a few hundred bytes and more are stored LZ4-compressed behind a marker byte,
/// smaller docs as they are; both read back unchanged, and so do documents written before
/// compression and binary documents that start with the marker byte.
#[tokio::test]
async fn documents_are_stored_compressed_and_read_back_unchanged() {
    use shopsync_store::item::{Item, Key, Scalar};
    use shopsync_store::{ItemStore, Table};
    let (backend, dir) = migrated().await;
    let item = |id: &str, doc: Vec<u8>| Item {
        attrs: [("id".to_owned(), Scalar::from(id.to_owned()))].into(),
        doc: Some(doc),
    };
    let large = serde_json::to_vec(&serde_json::json!({
        "variants": (0..40).map(|i| serde_json::json!({"sku": format!("SKU-{i:04}"), "price": "19.99"})).collect::<Vec<_>>()
    }))
    .expect("json");
    let small = br#"{"id":"small"}"#.to_vec();
    let mut binary = vec![0x04, 0xff, 0x00];
    binary.extend(std::iter::repeat_n(7u8, 500));
    // A document of more than a megabyte, and a smaller one written after it.
    let huge = serde_json::to_vec(&serde_json::json!({
        "notes": (0..120_000).map(|i| format!("note {i}")).collect::<Vec<_>>()
    }))
    .expect("json");
    assert!(huge.len() > 1_100_000, "{}", huge.len());
    let after = serde_json::to_vec(&serde_json::json!({"title": "y".repeat(300)})).expect("json");
    let written = [
        ("large", &large),
        ("small", &small),
        ("binary", &binary),
        ("huge", &huge),
        ("after", &after),
    ];
    for (id, doc) in written {
        backend
            .put(Table::Categories, item(id, doc.clone()), None)
            .await
            .expect("put");
    }
    let sql = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open");
    let stored = |id: &str| -> Vec<u8> {
        sql.query_row("SELECT doc FROM t_categories WHERE pk = ?1", [id], |row| {
            row.get(0)
        })
        .expect("row")
    };
    let packed = stored("large");
    assert_eq!(packed[0], 0x04, "a large document is stored packed");
    assert!(
        packed.len() * 3 < large.len(),
        "{} bytes stored for {}",
        packed.len(),
        large.len()
    );
    assert_eq!(
        stored("small"),
        small,
        "a small document is stored as it is"
    );
    assert_eq!(stored("binary")[0], 0x04);
    // Written before compression: plain JSON in the column.
    let legacy = serde_json::to_vec(&serde_json::json!({"note": "x".repeat(400)})).expect("json");
    sql.execute(
        "INSERT INTO t_categories (pk, sk, attrs, doc) VALUES ('legacy', '', '{\"id\":\"legacy\"}', ?1)",
        [&legacy],
    )
    .expect("legacy row");
    assert_eq!(stored("huge")[0], 0x04);
    assert_eq!(stored("after")[0], 0x04);
    for (id, doc) in written.into_iter().chain([("legacy", &legacy)]) {
        let read = backend
            .get(Table::Categories, &Key::pk(id.to_owned()))
            .await
            .expect("get")
            .expect("present");
        assert_eq!(read.doc.as_ref(), Some(doc), "{id} reads back unchanged");
    }
    // A damaged packed document is an error, not garbage.
    let mut damaged = packed.clone();
    damaged[1] = 0xff;
    damaged[2] = 0xff;
    sql.execute(
        "UPDATE t_categories SET doc = ?1 WHERE pk = 'large'",
        [&damaged],
    )
    .expect("damage");
    let err = backend
        .get(Table::Categories, &Key::pk("large".to_owned()))
        .await
        .expect_err("damaged");
    assert!(
        matches!(err, shopsync_store::StoreError::Corrupt(_)),
        "{err:?}"
    );
}

/// Items with a TTL go once their time has passed, as DynamoDB's TTL removes them, so a local
/// host running for weeks does not keep every dedupe mark and idempotency record: expired
/// ones are removed (more than one batch of them), live ones and other tables stay.
#[tokio::test]
async fn expired_ttl_items_are_removed_and_live_ones_stay() {
    let (backend, _dir) = migrated().await;
    let store = Store::new(backend.clone());
    let now = Utc::now();
    let expired = shopsync_store_sqlite::EXPIRY_BATCH + 250;
    for i in 0..expired {
        store
            .remember(&format!("old-{i}"), now - Duration::seconds(1 + i as i64))
            .await
            .expect("mark");
    }
    for i in 0..20 {
        store
            .remember(&format!("live-{i}"), now + Duration::hours(1))
            .await
            .expect("mark");
    }
    store
        .begin_idempotent(
            "job-done",
            "hash",
            now,
            now + Duration::seconds(60),
            now + Duration::hours(48),
        )
        .await
        .expect("idempotency record");
    let operation = shopsync_domain::SyncOperation::new(
        "full down-sync",
        shopsync_domain::OperationType::FullSync,
        shopsync_domain::SyncDirection::Down,
        shopsync_domain::Actor::new("system:test").expect("actor"),
        now,
    );
    store.insert(&operation).await.expect("an operation");

    assert_eq!(backend.expire(now).await.expect("expire"), expired as u64);
    let left = backend
        .scan(shopsync_store::Table::IdempotencyRecords, 1_000, None)
        .await
        .expect("scan");
    assert_eq!(
        left.items.len(),
        21,
        "the live marks and the idempotency record stay"
    );
    for i in 0..20 {
        assert!(store
            .remembered(&format!("live-{i}"), now)
            .await
            .expect("read"));
    }
    assert!(!store.remembered("old-0", now).await.expect("read"));
    let operations = backend
        .scan(shopsync_store::Table::SyncOperations, 10, None)
        .await
        .expect("scan");
    assert_eq!(
        operations.items.len(),
        1,
        "tables without a TTL are untouched"
    );
    assert_eq!(
        backend.expire(now).await.expect("again"),
        0,
        "nothing left to remove"
    );
    let later = now + Duration::hours(2);
    assert_eq!(backend.expire(later).await.expect("later"), 20);
}

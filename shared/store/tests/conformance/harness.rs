//! The two backends under test, each on fresh tables.

use shopsync_store::migrate::{migrate, MigrateOptions};
use shopsync_store::{ItemStore, Store};
use shopsync_store_dynamo::DynamoStore;
use shopsync_store_sqlite::SqliteStore;
use std::sync::Arc;

/// A repository on fresh tables, with its raw backend.
pub struct Harness {
    pub store: Store,
    pub raw: Arc<dyn ItemStore>,
    _dir: Option<tempfile::TempDir>,
}

/// The embedded store in a new temporary directory.
pub async fn embedded() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = SqliteStore::open(dir.path(), "shopsync_").expect("open embedded store");
    finish(Arc::new(backend), Some(dir)).await
}

/// The DynamoDB backend on `SHOPSYNC_TEST_DYNAMODB_ENDPOINT`, under a prefix unique to the test.
/// A missing endpoint is a failure, never a skip.
pub async fn dynamodb() -> Harness {
    let endpoint = std::env::var("SHOPSYNC_TEST_DYNAMODB_ENDPOINT")
        .expect("SHOPSYNC_TEST_DYNAMODB_ENDPOINT must point at a DynamoDB endpoint (scripts/test.sh starts one)");
    let prefix = format!("t{}_", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let backend = DynamoStore::connect(Some(&endpoint), &prefix).await;
    finish(Arc::new(backend), None).await
}

async fn finish(raw: Arc<dyn ItemStore>, dir: Option<tempfile::TempDir>) -> Harness {
    let report = migrate(raw.as_ref(), MigrateOptions::default())
        .await
        .expect("migrate creates the tables");
    assert!(
        report.drift.is_empty(),
        "fresh tables have no drift: {:?}",
        report.drift
    );
    Harness {
        store: Store::new(Arc::clone(&raw)),
        raw,
        _dir: dir,
    }
}

//! `shopsync migrate` driven as an operator would, on the embedded store and on DynamoDB.
//! The DynamoDB cases are `#[ignore]`d in a plain `cargo test`; `tests/run.sh` runs them
//! against moto's server.

use shopsync_domain::testing::sample_content;
use shopsync_domain::{Product, ProductId};
use shopsync_store::item::{Item, Scalar};
use shopsync_store::schema::{KeyAttr, KeySchema, KeyType, TableDef, PRODUCTS};
use shopsync_store::{ItemStore, Store, Table};
use shopsync_store_dynamo::DynamoStore;
use shopsync_store_sqlite::SqliteStore;
use std::process::{Command, Output};
use std::sync::Arc;

fn shopsync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shopsync"))
        .args(args)
        .env_remove("SHOPSYNC_STORE")
        .env_remove("SHOPSYNC_DYNAMODB_ENDPOINT")
        .output()
        .expect("run shopsync")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The products table as an older (or hand-made) deployment might have it: keyed by SKU.
const DRIFTED_PRODUCTS: TableDef = TableDef {
    key: KeySchema {
        pk: KeyAttr {
            name: "sku",
            kind: KeyType::S,
        },
        sk: None,
    },
    indexes: &[],
    ..PRODUCTS
};

/// The products table before its indexes existed.
const PRODUCTS_WITHOUT_INDEXES: TableDef = TableDef {
    indexes: &[],
    ..PRODUCTS
};

/// A product stored before versioning: no `version` attribute, no sync fields in the body.
fn legacy_product() -> (ProductId, Item) {
    let product = Product::new(ProductId::generate(), sample_content(2), chrono::Utc::now());
    let mut doc = serde_json::to_value(&product).expect("json");
    if let Some(object) = doc.as_object_mut() {
        for field in ["version", "last_sync_version", "sync_locked"] {
            object.remove(field);
        }
    }
    let item = Item {
        attrs: [("id".to_owned(), Scalar::S(product.id.to_string()))].into(),
        doc: Some(serde_json::to_vec(&doc).expect("json")),
    };
    (product.id, item)
}

async fn assert_backfilled(backend: Arc<dyn ItemStore>, id: ProductId) {
    let store = Store::new(backend);
    let product = store.product(id).await.expect("read").expect("present");
    assert_eq!((product.version, product.last_sync_version), (1, 0));
    let v1 = store
        .product_version(id, 1)
        .await
        .expect("read")
        .expect("first snapshot");
    assert_eq!(v1.change_source, shopsync_domain::ChangeSource::Migration);
    assert_eq!(v1.product_data, product.content);
}

#[test]
fn embedded_migrate_creates_everything_then_reports_no_changes() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().to_str().expect("utf-8 path");
    let first = shopsync(&["migrate", "--data", data]);
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(
        text(&first).matches("create table").count(),
        Table::ALL.len()
    );
    let second = shopsync(&["migrate", "--data", data]);
    assert!(second.status.success(), "{}", text(&second));
    assert!(text(&second).contains("no changes"), "{}", text(&second));
    let check = shopsync(&["migrate", "--data", data, "--check"]);
    assert!(check.status.success() && text(&check).contains("no changes"));
}

#[tokio::test]
async fn embedded_drift_is_reported_with_a_nonzero_exit_and_nothing_changes() {
    let dir = tempfile::tempdir().expect("dir");
    let backend = SqliteStore::open(dir.path(), "shopsync_").expect("open");
    backend
        .create_table(&DRIFTED_PRODUCTS)
        .await
        .expect("drifted table");
    drop(backend);
    let out = shopsync(&["migrate", "--data", dir.path().to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("shopsync_products: primary key is"),
        "{}",
        text(&out)
    );
    let backend = SqliteStore::open(dir.path(), "shopsync_").expect("open");
    assert_eq!(
        backend
            .describe_table(Table::Categories.def())
            .await
            .expect("describe"),
        None,
        "nothing created while drifted"
    );
}

#[tokio::test]
async fn embedded_missing_indexes_are_created_after_a_backup() {
    let dir = tempfile::tempdir().expect("dir");
    let backend = SqliteStore::open(dir.path(), "shopsync_").expect("open");
    backend
        .create_table(&PRODUCTS_WITHOUT_INDEXES)
        .await
        .expect("old table");
    drop(backend);
    let out = shopsync(&["migrate", "--data", dir.path().to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        text(&out).matches("create index").count(),
        PRODUCTS.indexes.len(),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("backed up"), "{}", text(&out));
    assert_eq!(
        std::fs::read_dir(dir.path().join("backups"))
            .expect("backups")
            .count(),
        1
    );
    let again = shopsync(&["migrate", "--data", dir.path().to_str().expect("utf-8")]);
    assert!(text(&again).contains("no changes"), "{}", text(&again));
}

/// A direct connection to the embedded store's database in `dir`.
fn database(dir: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join(shopsync_store_sqlite::DB_FILE)).expect("db")
}

/// The products table's index definitions as SQLite holds them.
fn product_index_sql(dir: &std::path::Path) -> Vec<String> {
    let conn = database(dir);
    let mut stmt = conn
        .prepare("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'shopsync_products' AND sql IS NOT NULL ORDER BY name")
        .expect("sql");
    let rows = stmt.query_map([], |r| r.get(0)).expect("rows");
    rows.collect::<Result<_, _>>().expect("rows")
}

/// Stores made before an index kept its rows in query order (the item key after the index
/// keys) answer correctly but sort every page, and those made before indexes were sparse
/// index every row; `migrate` rebuilds such indexes once, after a backup, and every product
/// is still found through them.
#[tokio::test]
async fn embedded_indexes_of_an_older_form_are_rebuilt_once() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().to_str().expect("utf-8").to_owned();
    assert!(shopsync(&["migrate", "--data", &data]).status.success());
    let store = Store::new(Arc::new(
        SqliteStore::open(dir.path(), "shopsync_").expect("open"),
    ));
    let actor = shopsync_domain::Actor::new("test").expect("actor");
    let mut mirrored = Vec::new();
    for n in 1..=3u64 {
        let shopify_id = shopsync_domain::ShopifyProductId::new(1_000 + n).expect("id");
        let mut product =
            Product::new(ProductId::generate(), sample_content(1), chrono::Utc::now());
        product.shopify_id = Some(shopify_id);
        store
            .create_product(
                &product,
                shopsync_domain::ChangeSource::Shopify,
                &actor,
                None,
            )
            .await
            .expect("create");
        mirrored.push((shopify_id, product.id));
    }
    let current = product_index_sql(dir.path());
    assert_eq!(current.len(), PRODUCTS.indexes.len());
    // The older forms: every row indexed (before indexes were sparse), and before that also
    // nothing after the index keys.
    fn dense(sql: &str) -> String {
        sql.split(" WHERE ").next().unwrap_or(sql).to_owned()
    }
    fn unordered(sql: &str) -> String {
        dense(sql).replace(", pk, sk)", ")")
    }
    for older in [dense as fn(&str) -> String, unordered] {
        {
            let conn = database(dir.path());
            for index in PRODUCTS.indexes {
                let name = format!("shopsync_products__{}", index.name);
                let sql: String = conn
                    .query_row(
                        "SELECT sql FROM sqlite_master WHERE name = ?1",
                        [&name],
                        |r| r.get(0),
                    )
                    .expect("index sql");
                conn.execute_batch(&format!("DROP INDEX \"{name}\"; {}", older(&sql)))
                    .expect("older index");
            }
        }
        assert!(product_index_sql(dir.path())
            .iter()
            .all(|sql| !current.contains(sql)));

        let out = shopsync(&["migrate", "--data", &data]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            text(&out).matches("rebuild index").count(),
            PRODUCTS.indexes.len(),
            "{}",
            text(&out)
        );
        assert!(text(&out).contains("backed up"), "{}", text(&out));
        assert_eq!(product_index_sql(dir.path()), current);
        for (shopify_id, id) in &mirrored {
            let found = store
                .product_by_shopify_id(*shopify_id)
                .await
                .expect("lookup")
                .map(|p| p.id);
            assert_eq!(found, Some(*id));
        }
    }
    let again = shopsync(&["migrate", "--data", &data]);
    assert!(text(&again).contains("no changes"), "{}", text(&again));
}

#[tokio::test]
async fn embedded_backfills_versions_on_legacy_products_once() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().to_str().expect("utf-8").to_owned();
    assert!(shopsync(&["migrate", "--data", &data]).status.success());
    let (id, item) = legacy_product();
    let backend = SqliteStore::open(dir.path(), "shopsync_").expect("open");
    backend
        .put_raw(Table::Products, item)
        .await
        .expect("legacy row");
    let out = shopsync(&["migrate", "--data", &data]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("backfill version/last_sync_version on 1 product(s)"),
        "{}",
        text(&out)
    );
    assert_backfilled(Arc::new(backend), id).await;
    let again = shopsync(&["migrate", "--data", &data]);
    assert!(text(&again).contains("no changes"), "{}", text(&again));
}

fn endpoint() -> String {
    std::env::var("SHOPSYNC_TEST_DYNAMODB_ENDPOINT")
        .expect("SHOPSYNC_TEST_DYNAMODB_ENDPOINT must point at a DynamoDB endpoint (tests/run.sh starts one)")
}

fn unique_prefix() -> String {
    format!("m{}_", &uuid_like())
}

/// 12 random hex digits: the tail of a new id (its head is a timestamp, shared by ids made
/// in the same millisecond).
fn uuid_like() -> String {
    let id = ProductId::generate().to_string().replace('-', "");
    id[id.len() - 12..].to_owned()
}

#[test]
#[ignore = "needs a DynamoDB endpoint: run tests/run.sh"]
fn dynamodb_migrate_twice_reports_no_changes() {
    let (endpoint, prefix) = (endpoint(), unique_prefix());
    let first = shopsync(&[
        "migrate",
        "--endpoint",
        &endpoint,
        "--table-prefix",
        &prefix,
    ]);
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(
        text(&first).matches("create table").count(),
        Table::on("dynamodb").count(),
        "{}",
        text(&first)
    );
    let second = shopsync(&[
        "migrate",
        "--endpoint",
        &endpoint,
        "--table-prefix",
        &prefix,
    ]);
    assert!(
        second.status.success() && text(&second).contains("no changes"),
        "{}",
        text(&second)
    );
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint: run tests/run.sh"]
async fn dynamodb_drift_is_reported_with_a_nonzero_exit() {
    let (endpoint, prefix) = (endpoint(), unique_prefix());
    let backend = DynamoStore::connect(Some(&endpoint), &prefix).await;
    backend
        .create_table(&DRIFTED_PRODUCTS)
        .await
        .expect("drifted table");
    let out = shopsync(&[
        "migrate",
        "--endpoint",
        &endpoint,
        "--table-prefix",
        &prefix,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{prefix}products: primary key is")),
        "{}",
        text(&out)
    );
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint: run tests/run.sh"]
async fn dynamodb_refuses_to_change_existing_tables_without_a_backup() {
    let (endpoint, prefix) = (endpoint(), unique_prefix());
    let args = [
        "migrate",
        "--endpoint",
        endpoint.as_str(),
        "--table-prefix",
        prefix.as_str(),
    ];
    assert!(shopsync(&args).status.success());
    let backend: Arc<dyn ItemStore> =
        Arc::new(DynamoStore::connect(Some(&endpoint), &prefix).await);
    let (id, item) = legacy_product();
    backend
        .put(Table::Products, item, None)
        .await
        .expect("legacy row");
    let refused = shopsync(&args);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(text(&refused).contains("--backup"), "{}", text(&refused));
    let store = Store::new(Arc::clone(&backend));
    assert!(
        store.product(id).await.is_err(),
        "still legacy: nothing was changed"
    );
    let with_backup = shopsync(&[&args[..], &["--backup"]].concat());
    assert!(with_backup.status.success(), "{}", text(&with_backup));
    assert!(
        text(&with_backup).contains("backed up"),
        "{}",
        text(&with_backup)
    );
    assert_backfilled(backend, id).await;
    let again = shopsync(&args);
    assert!(
        again.status.success() && text(&again).contains("no changes"),
        "{}",
        text(&again)
    );
}

/// A store from before the lookups table: its products get their SKU and barcode lookups
/// when `migrate` creates the table, so an import finds them; once.
#[tokio::test]
async fn embedded_products_stored_before_lookups_get_them_once() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().to_str().expect("utf-8").to_owned();
    assert!(shopsync(&["migrate", "--data", &data]).status.success());
    let store = Store::new(Arc::new(
        SqliteStore::open(dir.path(), "shopsync_").expect("open"),
    ));
    let product = Product::new(ProductId::generate(), sample_content(2), chrono::Utc::now());
    store
        .create_product(
            &product,
            shopsync_domain::ChangeSource::Local,
            &shopsync_domain::Actor::new("test").expect("actor"),
            None,
        )
        .await
        .expect("create");
    drop(store);
    // As the store was before the table existed.
    let conn = database(dir.path());
    conn.execute_batch(
        "DROP TABLE shopsync_product_lookups; DELETE FROM _shopsync_tables WHERE name = 'shopsync_product_lookups';",
    )
    .expect("drop the lookups table");
    drop(conn);
    let out = shopsync(&["migrate", "--data", &data]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("backfill SKU and barcode lookups"),
        "{}",
        text(&out)
    );
    let store = Store::new(Arc::new(
        SqliteStore::open(dir.path(), "shopsync_").expect("open"),
    ));
    let sku = product.content.variants[1].sku.as_ref().expect("a SKU");
    let found = store
        .lookups_of(&[shopsync_store::records::ProductLookup::sku_key(
            sku.as_str(),
        )])
        .await
        .expect("lookups");
    assert_eq!(found[0].len(), 1);
    assert_eq!(found[0][0].product_id, product.id);
    let again = shopsync(&["migrate", "--data", &data]);
    assert!(text(&again).contains("no changes"), "{}", text(&again));
}

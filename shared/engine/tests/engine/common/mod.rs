//! Shared setup of the engine's tests: a seeded simulator without throttling and a fresh
//! embedded store.

#![allow(dead_code)]

pub mod stale;

use shopsync_shopify::AdminClient;
use shopsync_shopify_sim::{Plan, SimConfig, SimHandle, Simulator};
use shopsync_store::Store;
use std::sync::Arc;

/// The backends a case runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded store, in a fresh directory.
    Embedded,
    /// DynamoDB at `SHOPSYNC_TEST_DYNAMODB_ENDPOINT`, under a table prefix of the case's own.
    Dynamodb,
}

tokio::task_local! {
    /// The backend the running case makes its stores on.
    static BACKEND: Backend;
}

/// Runs a case with its stores made on `backend`.
pub async fn on(backend: Backend, case: impl std::future::Future<Output = ()>) {
    BACKEND.scope(backend, case).await
}

/// A migrated store on the running case's backend (kept alive by the returned directory
/// on the embedded one).
pub async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend: Arc<dyn shopsync_store::ItemStore> = match BACKEND
        .try_with(|b| *b)
        .unwrap_or(Backend::Embedded)
    {
        Backend::Embedded => {
            Arc::new(shopsync_store_sqlite::SqliteStore::open(dir.path(), "t_").expect("store"))
        }
        Backend::Dynamodb => {
            let endpoint = std::env::var("SHOPSYNC_TEST_DYNAMODB_ENDPOINT").expect(
                    "SHOPSYNC_TEST_DYNAMODB_ENDPOINT must point at moto's server (tests/run.sh starts one)",
                );
            let prefix = format!("e{}_", &uuid::Uuid::new_v4().simple().to_string()[..12]);
            Arc::new(shopsync_store_dynamo::DynamoStore::connect(Some(&endpoint), &prefix).await)
        }
    };
    shopsync_store::migrate::migrate(backend.as_ref(), Default::default())
        .await
        .expect("migrate");
    (Store::new(backend), dir)
}

/// A simulator with `products` × `variants`, its client, and a migrated store on the running
/// case's backend.
pub async fn setup(
    products: usize,
    variants: usize,
) -> (SimHandle, AdminClient, Store, tempfile::TempDir) {
    let sim = Simulator::start(
        SimConfig {
            products,
            variants_per_product: variants,
            plan: Plan::UNLIMITED,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("address"),
    )
    .await
    .expect("simulator");
    let client = AdminClient::new(sim.client_config()).expect("client");
    let (store, dir) = store().await;
    (sim, client, store, dir)
}

/// Items in a table.
pub async fn count(store: &Store, table: shopsync_store::Table) -> usize {
    let mut n = 0;
    let mut next = None;
    loop {
        let page = store
            .backend()
            .scan(table, 500, next.as_ref())
            .await
            .expect("scan");
        n += page.items.len();
        match page.next {
            Some(t) => next = Some(t),
            None => return n,
        }
    }
}

/// The merchant editing a product in the local catalog.
pub async fn edit(
    store: &Store,
    product: &shopsync_domain::Product,
    f: impl FnOnce(&mut shopsync_domain::ProductContent),
) -> shopsync_domain::Product {
    let mut content = product.content.clone();
    f(&mut content);
    store
        .update_product_content(
            product,
            content,
            shopsync_domain::ChangeSource::Local,
            &shopsync_domain::Actor::new("merchant").expect("actor"),
            None,
            chrono::Utc::now(),
        )
        .await
        .expect("local edit")
}

/// Every conflict recorded on `product`.
pub async fn conflicts_on(
    store: &Store,
    product: shopsync_domain::ProductId,
) -> Vec<shopsync_domain::SyncConflict> {
    store
        .query_all(shopsync_store::item::Query::new(
            shopsync_store::Table::SyncConflicts,
            Some("by_product"),
            product.to_string(),
        ))
        .await
        .expect("conflicts of a product")
}

/// The simulator's first product: its Shopify id and its local mirror (after a down-sync).
pub async fn first_product(sim: &SimHandle, store: &Store) -> (u64, shopsync_domain::Product) {
    let id = sim.with_shop(|s| s.products().map(|p| p.id).next().expect("a product"));
    let shopify = shopsync_domain::ShopifyProductId::new(id).expect("a Shopify id");
    let local = store
        .product(shopsync_engine::down::local_id_for(shopify))
        .await
        .expect("read")
        .expect("mirrored locally");
    (id, local)
}

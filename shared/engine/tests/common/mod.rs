//! Shared setup of the engine's tests: a seeded simulator without throttling and a fresh
//! embedded store.

#![allow(dead_code)]

pub mod stale;

use shopsync_shopify::AdminClient;
use shopsync_shopify_sim::{Plan, SimConfig, SimHandle, Simulator};
use shopsync_store::Store;
use std::sync::Arc;

/// A simulator with `products` × `variants`, its client, and a migrated embedded store.
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
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = shopsync_store_sqlite::SqliteStore::open(dir.path(), "t_").expect("store");
    shopsync_store::migrate::migrate(&backend, Default::default())
        .await
        .expect("migrate");
    (sim, client, Store::new(Arc::new(backend)), dir)
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

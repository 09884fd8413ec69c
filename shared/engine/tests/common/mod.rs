//! Shared setup of the engine's tests: a seeded simulator without throttling and a fresh
//! embedded store.

#![allow(dead_code)]

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
    let backend = shopsync_store::SqliteStore::open(dir.path(), "t_").expect("store");
    shopsync_store::migrate::migrate(&backend, Default::default())
        .await
        .expect("migrate");
    (sim, client, Store::new(Arc::new(backend)), dir)
}

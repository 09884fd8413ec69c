//! `shopsync bench bulk-push` and `shopsync bench rollback`: a large up-sync through Shopify's
//! bulk mutations against the unthrottled simulator, and a full rollback of a large Xorosoft
//! stock import (wall time, calls, peak RSS; the simulator's own processing reported apart).

use crate::bench::{fresh_store, peak_rss_mb, stage_summary, CpuWindow};
use shopsync_domain::{Actor, ChangeSource, GuardRails, LocationId, Product, VersionStamp};
use shopsync_engine::blob::{Blobs, FolderBlobs};
use shopsync_engine::xorosoft_import::{ImportSettings, Importer, LocationMap};
use shopsync_shopify::AdminClient;
use shopsync_shopify_sim::{Plan, SimConfig, SimHandle, Simulator};
use shopsync_store::{ProductCommit, Store};
use std::time::Instant;

const HEADER: &str = "StoreCode,LocationCode,ItemNumber,BasePartNumber,ItemUPC,ItemDescription,OnHandQty,AllocatedQty,AvailableQty,QtyOnPO,UnitCost,StandardUnitPrice,WholesalePrice,CurrencyCode,LastModified";

/// Rails that let a change of the whole catalog through (the benchmarks change every product;
/// the default rails would hold them for approval).
fn open_rails() -> GuardRails {
    GuardRails {
        max_changed_share: 1.0,
        max_large_price_moves: u64::MAX,
        max_zero_stock: u64::MAX,
        ..GuardRails::default()
    }
}

/// The unthrottled simulator with `products` one-variant products, the embedded store in
/// `dir` filled by a full down-sync, and the client.
async fn seeded(
    dir: &std::path::Path,
    products: usize,
) -> anyhow::Result<(SimHandle, AdminClient, Store)> {
    let sim = Simulator::start(
        SimConfig {
            products,
            variants_per_product: 1,
            locations: 1,
            plan: Plan::UNLIMITED,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let client = AdminClient::new(sim.client_config())?;
    let store = fresh_store(dir).await?;
    shopsync_engine::sync::run_full_down(&store, &client, &Actor::system("bench"), &open_rails())
        .await?;
    Ok((sim, client, store))
}

/// A new price on every product of the catalog, as local edits (1,000 per store commit).
async fn reprice_everything(store: &Store) -> anyhow::Result<u64> {
    let actor = Actor::new("bench-merchant")?;
    // Every id first: a scan that went on while its products are rewritten could meet some
    // of them twice.
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = store.scan::<Product>(1000, after.as_ref()).await?;
        ids.extend(page.items.iter().map(|p| p.id));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut changed = 0;
    for chunk in ids.chunks(1000) {
        let now = chrono::Utc::now();
        let mut commits = Vec::with_capacity(chunk.len());
        for product in store.products(chunk).await?.into_iter().flatten() {
            let mut updated = product.clone();
            let mut content = updated.content.clone();
            for variant in &mut content.variants {
                variant.price = "12.35".parse()?;
            }
            let changes = updated.change_content(content, now);
            if changes.is_empty() {
                // Seeded at that price already.
                continue;
            }
            commits.push(ProductCommit {
                version: Some(VersionStamp::new(
                    shopsync_domain::fields::changed_fields(&changes),
                    ChangeSource::Local,
                    actor.clone(),
                    None,
                    now,
                )),
                product: updated,
                expected_version: Some(product.version),
                staging: None,
                actor: actor.clone(),
                now,
            });
        }
        for answer in store.commit_products(&mut commits).await? {
            answer?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// An up-sync of `products` changed products through bulk mutations.
pub async fn bulk_push(dir: &std::path::Path, products: usize) -> anyhow::Result<()> {
    let seeding = Instant::now();
    let (sim, client, store) = seeded(dir, products).await?;
    let changed = reprice_everything(&store).await?;
    println!(
        "bulk-push: {products} products seeded, down-synced and repriced locally in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let calls_before = client.counters().api_calls;
    let simulated_before = sim.with_shop(|s| s.bulk_mutation_time());
    let started = Instant::now();
    let cpu = CpuWindow::start();
    let operation = shopsync_engine::steps::Stepper {
        store: &store,
        client: &client,
        actor: &Actor::system("bench"),
        rails: &open_rails(),
    }
    .run_to_end(shopsync_engine::steps::SyncKind::Up)
    .await?;
    let cpu = cpu.summary();
    let seconds = started.elapsed().as_secs_f64();
    let simulated = (sim.with_shop(|s| s.bulk_mutation_time()) - simulated_before).as_secs_f64();
    let calls = client.counters().api_calls - calls_before;
    let (bulk_mutations, lines) = sim.with_shop(|s| s.bulk_mutations());
    let pushed = operation.statistics.updated;
    let stages = stage_summary(&store, operation.operation_uuid).await?;
    println!(
        "bulk-push: {pushed} of {changed} products pushed in {seconds:.1} s = {:.0} products/min end to end (goal above 22,700); {calls} calls ({bulk_mutations} bulk mutations of {lines} lines); status {}",
        pushed as f64 / seconds * 60.0,
        shopsync_domain::status::status_name(operation.status)
    );
    println!(
        "  the simulator ran the bulk mutations (Shopify's side) in {simulated:.1} s; shopsync's own time {:.1} s = {:.0} products/min{cpu}; {stages}; peak RSS {:.0} MB (simulator included)",
        seconds - simulated,
        pushed as f64 / (seconds - simulated).max(f64::EPSILON) * 60.0,
        peak_rss_mb().unwrap_or(0.0)
    );
    Ok(())
}

/// A stock import of every product's variant, then its full rollback.
pub async fn rollback(dir: &std::path::Path, products: usize) -> anyhow::Result<()> {
    let seeding = Instant::now();
    let (sim, client, store) = seeded(dir, products).await?;
    let location = LocationId::new(sim.with_shop(|s| s.locations()[0].id))?;
    let skus: Vec<(String, i64)> = sim.with_shop(|s| {
        s.products()
            .flat_map(|p| p.variants.iter())
            .filter_map(|v| {
                v.sku
                    .clone()
                    .map(|sku| (sku, v.levels.values().next().copied().unwrap_or(0)))
            })
            .collect()
    });
    let files = dir.join("files");
    let key = "xorosoft/inbound/stock/bench.csv";
    let mut body = format!("{HEADER}\n");
    for (sku, level) in &skus {
        let available = level + 100;
        body.push_str(&format!(
            "MAIN,A-01,{sku},BASE,,Item,{available},0,{available},0,,,,USD,11/05/2026 03:15:00 PM\n"
        ));
    }
    let blobs = FolderBlobs::new(&files, "local");
    blobs.put(key, body.into_bytes(), "text/csv").await?;
    let rails = open_rails();
    let settings = ImportSettings {
        locations: LocationMap::everything_to(location),
        ..ImportSettings::default()
    };
    let log = Importer {
        store: &store,
        client: Some(&client),
        blobs: &blobs,
        actor: &Actor::system("xorosoft-import"),
        rails: &rails,
        settings: &settings,
    }
    .run(key, None, false)
    .await?;
    let import = log
        .operation_id
        .ok_or_else(|| anyhow::anyhow!("the import recorded no operation: {log:?}"))?;
    println!(
        "rollback: {products} products seeded, down-synced and imported ({} stock levels pushed, status {}) in {:.1} s; peak RSS so far {:.0} MB",
        log.statistics.pushed,
        shopsync_domain::status::status_name(log.status),
        seeding.elapsed().as_secs_f64(),
        peak_rss_mb().unwrap_or(0.0)
    );
    let calls_before = client.counters().api_calls;
    let started = Instant::now();
    let cpu = CpuWindow::start();
    let (rollback, _) = shopsync_engine::rollback::open_rollback(
        &store,
        import,
        &shopsync_domain::RollbackRequest::default(),
        &Actor::new("bench-admin")?,
        chrono::Utc::now(),
    )
    .await?;
    let (record, operation) =
        shopsync_engine::rollback::run(&store, &client, &rails, rollback.id).await?;
    let cpu = cpu.summary();
    let seconds = started.elapsed().as_secs_f64();
    let calls = client.counters().api_calls - calls_before;
    let before: std::collections::HashMap<&str, i64> = skus
        .iter()
        .map(|(sku, level)| (sku.as_str(), *level))
        .collect();
    let back = sim.with_shop(|s| {
        s.products()
            .flat_map(|p| p.variants.iter())
            .filter(|v| {
                v.sku
                    .as_deref()
                    .and_then(|sku| before.get(sku))
                    .is_some_and(|level| v.levels.values().all(|l| l == level))
            })
            .count()
    });
    let stages = stage_summary(&store, operation.operation_uuid).await?;
    println!(
        "rollback: {} of {} products restored ({} skipped) in {seconds:.1} s = {:.0} products/s; Shopify holds the stock from before the import for {back}; {calls} calls; status {}{cpu}; {stages}; peak RSS {:.0} MB (simulator included)",
        record.restored_total,
        record.backup_data.products_total,
        record.skipped_total,
        record.restored_total as f64 / seconds,
        shopsync_domain::status::status_name(record.status),
        peak_rss_mb().unwrap_or(0.0)
    );
    Ok(())
}

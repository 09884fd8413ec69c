//! `shopsync bench xorosoft-import` and `shopsync bench xorosoft-push`: an import's own speed
//! and memory beside a raw parse of the same file, and a stock push's calls against the
//! Standard plan's bucket.

use crate::bench::{fresh_store, peak_rss_mb};
use shopsync_domain::{
    Actor, ChangeSource, GuardRails, LocationId, Product, ProductId, Quantity, Sku, VersionStamp,
};
use shopsync_engine::blob::{Blobs, FolderBlobs};
use shopsync_engine::xorosoft_import::{ImportSettings, Importer, LocationMap};
use shopsync_store::{ProductCommit, Store};
use std::io::Write;
use std::time::Instant;

const HEADER: &str = "StoreCode,LocationCode,ItemNumber,BasePartNumber,ItemUPC,ItemDescription,OnHandQty,AllocatedQty,AvailableQty,QtyOnPO,UnitCost,StandardUnitPrice,WholesalePrice,CurrencyCode,LastModified";

/// The SKU of variant `variant` of product `product` in the benchmark's catalog.
fn bench_sku(product: usize, variant: usize) -> String {
    format!("XB-{product:07}-{variant}")
}

/// Stores `products` products of `variants` variants each, SKUs from [`bench_sku`], stocked
/// at `location`, as a down-sync would (first versions and lookups with them).
async fn seed_catalog(
    store: &Store,
    products: usize,
    variants: usize,
    location: LocationId,
) -> anyhow::Result<()> {
    let actor = Actor::system("bench");
    let template = shopsync_domain::testing::sample_content(variants);
    let now = chrono::Utc::now();
    for start in (0..products).step_by(1000) {
        let mut commits = Vec::new();
        for product in start..(start + 1000).min(products) {
            let mut content = template.clone();
            content.handle = format!("bench-{product}");
            for (index, variant) in content.variants.iter_mut().enumerate() {
                variant.sku = Sku::parse(&bench_sku(product, index));
                variant.barcode = None;
                variant.inventory = [(location, Quantity(5))].into();
            }
            let product = Product::new(ProductId::generate(), content, now);
            commits.push(ProductCommit {
                version: Some(VersionStamp::first(
                    &product,
                    ChangeSource::Shopify,
                    actor.clone(),
                    None,
                )),
                product,
                expected_version: None,
                staging: None,
                actor: actor.clone(),
                now,
            });
        }
        for answer in store.commit_products(&mut commits).await? {
            answer?;
        }
    }
    Ok(())
}

/// Writes a stock file for every variant of the catalog (new available quantities).
fn write_stock_file(
    path: &std::path::Path,
    products: usize,
    variants: usize,
    rows: usize,
) -> anyhow::Result<u64> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "{HEADER}")?;
    let mut written = 0;
    'all: for product in 0..products {
        for variant in 0..variants {
            if written == rows {
                break 'all;
            }
            let available = 20 + (product + variant) % 50;
            writeln!(
                out,
                "MAIN,A-{:02},{},BASE,,Item {product} {variant},{},2,{available},0,21.50,59.00,30.00,USD,11/05/2026 03:15:00 PM",
                variant % 40,
                bench_sku(product, variant),
                available + 2
            )?;
            written += 1;
        }
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// `rows` rows into a fresh embedded store with no push, beside a raw parse of the same file
/// with the same reader; the import runs in a process of its own (see [`xorosoft_import_run`]).
pub async fn xorosoft_import(dir: &std::path::Path, rows: usize) -> anyhow::Result<()> {
    let variants = 3;
    let products = rows.div_ceil(variants);
    let location = LocationId::new(1)?;
    let store = fresh_store(dir).await?;
    let seeding = Instant::now();
    seed_catalog(&store, products, variants, location).await?;
    let files = dir.join("files");
    let key = "xorosoft/inbound/stock/bench.csv";
    let bytes = write_stock_file(&files.join(key), products, variants, rows)?;
    println!(
        "xorosoft-import: {products} products x {variants} variants seeded and a {rows}-row file ({:.1} MB) written in {:.1} s",
        bytes as f64 / 1e6,
        seeding.elapsed().as_secs_f64()
    );
    // The raw parse: the same reader over the same file, rows counted, nothing else.
    let path = files.join(key);
    let parsing = Instant::now();
    let (parsed, errors) = tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, u64)> {
        let file = std::io::BufReader::new(std::fs::File::open(path)?);
        let reader = shopsync_xorosoft::Reader::new(file, shopsync_xorosoft::Options::default())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (mut rows, mut errors) = (0, 0);
        for row in reader {
            match row {
                Ok(_) => rows += 1,
                Err(_) => errors += 1,
            }
        }
        Ok((rows, errors))
    })
    .await??;
    let parse_seconds = parsing.elapsed().as_secs_f64();
    let parse_rate = parsed as f64 / parse_seconds;
    println!("  raw parse: {parsed} rows ({errors} errors) in {parse_seconds:.2} s = {parse_rate:.0} rows/s");

    // The import runs in a process of its own, so its peak RSS is its own and not the
    // seeding's: the store is closed here and opened there.
    store.flush().await?;
    drop(store);
    let child = std::process::Command::new(std::env::current_exe()?)
        .args(["bench", "xorosoft-import-run", "--location"])
        .arg(location.get().to_string())
        .arg("--key")
        .arg(key)
        .arg("--dir")
        .arg(dir)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !child.status.success() {
        anyhow::bail!("the import's process failed ({})", child.status);
    }
    let run: ImportRun = serde_json::from_slice(&child.stdout)
        .map_err(|e| anyhow::anyhow!("the import's process answered no report: {e}"))?;
    let rate = run.rows as f64 / run.seconds;
    println!(
        "  import: {} rows ({} valid, {} matched) in {:.1} s = {rate:.0} rows/s ({:.0}% of the raw parse; goal 50%), {} products updated; status {}; peak RSS of the import's process {}",
        run.rows,
        run.valid,
        run.matched,
        run.seconds,
        100.0 * rate / parse_rate,
        run.updated,
        run.status,
        match run.peak_rss_mb {
            Some(mb) => format!("{mb:.0} MB (goal 128 MB or less)"),
            None => "unknown".into(),
        }
    );
    if !run.stages.is_empty() {
        println!("  stages: {}", run.stages);
    }
    Ok(())
}

/// What the import's own process reports to `bench xorosoft-import` (one JSON document).
#[derive(serde::Serialize, serde::Deserialize)]
struct ImportRun {
    rows: u64,
    valid: u64,
    matched: u64,
    updated: u64,
    status: String,
    seconds: f64,
    peak_rss_mb: Option<f64>,
    stages: String,
}

/// The import half of `bench xorosoft-import`, in its own process: imports `key` from
/// `dir`'s files into the store in `dir` with no push and prints an [`ImportRun`].
pub async fn xorosoft_import_run(
    dir: &std::path::Path,
    key: &str,
    location: LocationId,
) -> anyhow::Result<()> {
    let store = fresh_store(dir).await?;
    let blobs = FolderBlobs::new(dir.join("files"), "local");
    let settings = ImportSettings {
        locations: LocationMap::everything_to(location),
        ..ImportSettings::default()
    };
    let actor = Actor::system("bench");
    let rails = GuardRails::default();
    let importer = Importer {
        store: &store,
        client: None,
        blobs: &blobs,
        actor: &actor,
        rails: &rails,
        settings: &settings,
    };
    let started = Instant::now();
    let log = importer.run(key, None, false).await?;
    store.flush().await?;
    let seconds = started.elapsed().as_secs_f64();
    let statistics = &log.statistics;
    let stages = match log.operation_id {
        Some(operation) => crate::bench::stage_summary(&store, operation).await?,
        None => String::new(),
    };
    let run = ImportRun {
        rows: statistics.rows_valid + statistics.rows_invalid,
        valid: statistics.rows_valid,
        matched: statistics.matched,
        updated: statistics.records_updated,
        status: shopsync_domain::status::status_name(log.status).to_owned(),
        seconds,
        peak_rss_mb: peak_rss_mb(),
        stages,
    };
    println!("{}", serde_json::to_string(&run)?);
    Ok(())
}

/// A stock import of `items` variants pushed to the simulator on the Standard plan: calls
/// used against ceil(items / 250), and the push's time against what the bucket allows.
pub async fn xorosoft_push(dir: &std::path::Path, items: usize) -> anyhow::Result<()> {
    let variants = 2;
    let products = items.div_ceil(variants);
    let sim = shopsync_shopify_sim::Simulator::start(
        shopsync_shopify_sim::SimConfig {
            products,
            variants_per_product: variants,
            locations: 1,
            plan: shopsync_shopify_sim::Plan::STANDARD,
            ..shopsync_shopify_sim::SimConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let client = shopsync_shopify::AdminClient::new(sim.client_config())?;
    let store = fresh_store(dir).await?;
    let actor = Actor::system("bench");
    let rails = GuardRails::default();
    shopsync_engine::sync::run_full_down(&store, &client, &actor, &rails).await?;
    let location = LocationId::new(sim.with_shop(|s| s.locations()[0].id))?;
    let skus: Vec<(String, i64)> = sim.with_shop(|s| {
        s.products()
            .flat_map(|p| p.variants.iter())
            .filter_map(|v| {
                v.sku
                    .clone()
                    .map(|sku| (sku, v.levels.values().next().copied().unwrap_or(0)))
            })
            .take(items)
            .collect()
    });
    let files = dir.join("files");
    let key = "xorosoft/inbound/stock/push.csv";
    let mut body = format!("{HEADER}\n");
    for (sku, level) in &skus {
        body.push_str(&format!(
            "MAIN,A-01,{sku},BASE,,Item,{},0,{},0,,,,USD,11/05/2026 03:15:00 PM\n",
            level + 1000,
            level + 1000
        ));
    }
    let blobs = FolderBlobs::new(&files, "local");
    blobs.put(key, body.into_bytes(), "text/csv").await?;
    let settings = ImportSettings {
        locations: LocationMap::everything_to(location),
        ..ImportSettings::default()
    };
    let importer = Importer {
        store: &store,
        client: Some(&client),
        blobs: &blobs,
        actor: &actor,
        rails: &rails,
        settings: &settings,
    };
    let before = client.counters();
    let log = importer.run(key, None, false).await?;
    let after = client.counters();
    let push_ms = match log.operation_id {
        Some(operation) => shopsync_engine::operation::performance_of(&store, operation)
            .await?
            .and_then(|p| {
                p.stage_durations_ms
                    .get(&shopsync_domain::Stage::Push)
                    .copied()
            })
            .unwrap_or(0),
        None => 0,
    };
    let calls = after.api_calls - before.api_calls;
    let cost = after.cost_used - before.cost_used;
    let plan = shopsync_shopify_sim::Plan::STANDARD;
    // What the bucket allows: a full bucket spent at once, the rest at the restore rate; and
    // the restore rate alone (a bucket that starts empty).
    let ideal = (cost - plan.bucket).max(0.0) / plan.restore_rate;
    let from_empty = cost / plan.restore_rate;
    println!(
        "xorosoft-push: {} levels pushed ({} not) in {:.2} s with {calls} calls (goal {}), {cost:.0} cost points, {} THROTTLED; the bucket ({} points, {}/s) allows it in {ideal:.2} s{}, and {from_empty:.1} s from an empty bucket; status {}",
        log.statistics.pushed,
        log.statistics.push_failed,
        push_ms as f64 / 1000.0,
        skus.len().div_ceil(250),
        after.throttled - before.throttled,
        plan.bucket,
        plan.restore_rate,
        if ideal > 0.0 {
            format!(" (ratio {:.2})", push_ms as f64 / 1000.0 / ideal)
        } else {
            " (within the bucket: the push waits on nothing but the calls themselves)".into()
        },
        shopsync_domain::status::status_name(log.status),
    );
    Ok(())
}

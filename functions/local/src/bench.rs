//! `shopsync bench ...`: measured runs (not tests) whose numbers go into the session notes.

use anyhow::Context;
use shopsync_domain::ids::{InventoryItemId, LocationId};
use shopsync_engine::intake::WebhookIntake;
use shopsync_shopify::ops::{InventoryPlan, NoCheckpoint, QuantityChange};
use shopsync_shopify::webhook::{sign, verify_and_parse, WebhookConfig};
use shopsync_shopify::AdminClient;
use shopsync_shopify_sim::{Plan, SimConfig, Simulator};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Push throughput against the simulator on the Standard plan: cost points spent per second
/// after the initial bucket is drained, as a share of the restore rate, and THROTTLED answers.
pub async fn shopify_push(seconds: u64, tasks: usize) -> anyhow::Result<()> {
    let sim = Simulator::start(
        SimConfig {
            products: 400,
            variants_per_product: 3,
            locations: 2,
            plan: Plan::STANDARD,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let client = AdminClient::new(sim.client_config())?;
    let levels: Vec<(u64, u64, i64)> = sim.with_shop(|shop| {
        shop.products()
            .flat_map(|p| p.variants.iter())
            .flat_map(|v| v.levels.iter().map(move |(l, q)| (v.item_id, *l, *q)))
            .collect()
    });
    // One push = one inventorySetQuantities of 250 entries, each moving a level by +1. Each
    // task owns its batches and tracks their quantities, so compare-and-set always matches.
    let batches: Vec<Vec<(u64, u64, i64)>> = levels.chunks(250).map(<[_]>::to_vec).collect();
    let restore = Plan::STANDARD.restore_rate;
    println!(
        "shopify-push: Standard plan (bucket {}, restore {}/s), {tasks} task(s), {} levels in {} batches of ≤250",
        Plan::STANDARD.bucket,
        restore,
        levels.len(),
        batches.len()
    );
    let owned: Vec<Vec<Vec<(u64, u64, i64)>>> = (0..tasks)
        .map(|t| batches.iter().skip(t).step_by(tasks).cloned().collect())
        .collect();
    let owned = std::sync::Arc::new(std::sync::Mutex::new(owned));
    let round = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));

    let run = |deadline: Instant| {
        let mut handles = Vec::new();
        for task in 0..tasks {
            let client = client.clone();
            let owned = owned.clone();
            let round = round.clone();
            handles.push(tokio::spawn(async move {
                let mut mine = owned
                    .lock()
                    .map(|mut o| std::mem::take(&mut o[task]))
                    .unwrap_or_default();
                let mut pushes = 0u64;
                let mut result = Ok(());
                while Instant::now() < deadline && !mine.is_empty() {
                    let n = round.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let index = n as usize % mine.len();
                    let batch = &mut mine[index];
                    let changes = batch
                        .iter()
                        .filter_map(|(item, loc, current)| {
                            Some(QuantityChange {
                                item: InventoryItemId::new(*item).ok()?,
                                location: LocationId::new(*loc).ok()?,
                                expected: *current,
                                target: current + 1,
                            })
                        })
                        .collect();
                    let mut plan =
                        InventoryPlan::new(format!("bench:{n}"), "correction", None, changes);
                    if let Err(e) = client.set_inventory(&mut plan, &mut NoCheckpoint).await {
                        result = Err(e);
                        break;
                    }
                    for entry in batch.iter_mut() {
                        entry.2 += 1;
                    }
                    pushes += 1;
                }
                if let Ok(mut o) = owned.lock() {
                    o[task] = mine;
                }
                result.map(|()| pushes)
            }));
        }
        handles
    };

    // Warm-up: drain the initial full bucket (2,000 points) so what follows is steady state.
    let warm_up = Instant::now();
    while sim.stats().cost_charged < Plan::STANDARD.bucket * 0.95 {
        let handles = run(Instant::now() + Duration::from_millis(200));
        for h in handles {
            h.await??;
        }
    }
    println!(
        "  warm-up: drained the bucket in {:.1} s",
        warm_up.elapsed().as_secs_f64()
    );

    let before_sim = sim.stats();
    let before_client = client.counters();
    let started = Instant::now();
    let handles = run(started + Duration::from_secs(seconds));
    let mut pushes = 0;
    for h in handles {
        pushes += h.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after_sim = sim.stats();
    let after_client = client.counters();
    let points = after_sim.cost_charged - before_sim.cost_charged;
    let points_per_second = points / elapsed;
    println!(
        "  measured {elapsed:.1} s: {pushes} pushes ({} quantity changes)",
        pushes * 250
    );
    println!(
        "  cost points/s: {points_per_second:.1}  ratio to restore rate: {:.3} (goal ≥ 0.9)",
        points_per_second / restore
    );
    println!(
        "  THROTTLED after warm-up: {} (goal 0); client waited {:.1} s on the bucket (summed over tasks)",
        after_sim.throttled - before_sim.throttled,
        (after_client.throttle_wait - before_client.throttle_wait).as_secs_f64()
    );
    println!(
        "  quantity changes/s: {:.0}; API calls: {}",
        (pushes * 250) as f64 / elapsed,
        after_client.api_calls - before_client.api_calls
    );
    Ok(())
}

/// Webhook verify + parse throughput over realistic bodies.
pub fn webhook(count: usize) -> anyhow::Result<()> {
    let config = WebhookConfig {
        shop_domain: "bench.myshopify.com".into(),
        secret: "bench-secret".into(),
        previous_secret: Some("old-secret".into()),
    };
    let product = product_body(3);
    let big = product_body(100);
    let level = br#"{"inventory_item_id":9007199254740995,"location_id":24826418,"available":7,"updated_at":"2026-11-24T10:00:00Z","admin_graphql_api_id":"gid://shopify/InventoryLevel/24826418?inventory_item_id=9007199254740995"}"#.to_vec();
    for (name, topic, body) in [
        ("products/update, 3 variants", "products/update", product),
        ("products/update, 100 variants", "products/update", big),
        ("inventory_levels/update", "inventory_levels/update", level),
    ] {
        let hmac = sign(&config.secret, &body);
        let headers: Vec<(&str, &str)> = vec![
            ("X-Shopify-Topic", topic),
            ("X-Shopify-Hmac-Sha256", &hmac),
            ("X-Shopify-Shop-Domain", "bench.myshopify.com"),
            (
                "X-Shopify-Webhook-Id",
                "b2a4c6d8-0000-0000-0000-000000000000",
            ),
            ("X-Shopify-Event-Id", "e2a4c6d8-0000-0000-0000-000000000000"),
        ];
        let started = Instant::now();
        let mut parsed = 0usize;
        for _ in 0..count {
            let delivery = verify_and_parse(&config, headers.as_slice(), &body)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("bench body must verify")?;
            parsed += delivery.body_len;
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "webhook verify+parse, {name} ({} bytes): {:.0}/s, {:.1} MB/s, {:.1} µs each",
            body.len(),
            count as f64 / elapsed,
            parsed as f64 / elapsed / 1e6,
            elapsed * 1e6 / count as f64
        );
    }
    Ok(())
}

fn product_body(variants: usize) -> Vec<u8> {
    product_body_for(9_007_199_254_740_993, variants, "2026-11-24T10:00:00Z")
}

fn product_body_for(product_id: u64, variants: usize, updated_at: &str) -> Vec<u8> {
    let variants: Vec<serde_json::Value> = (0..variants)
        .map(|i| {
            serde_json::json!({
                "id": product_id + 1 + i as u64,
                "product_id": product_id,
                "title": format!("Size {i}"),
                "price": "19.99",
                "compare_at_price": null,
                "sku": format!("SKU-{i:05}"),
                "barcode": "0123456789012",
                "position": i + 1,
                "option1": format!("Size {i}"),
                "option2": null,
                "option3": null,
                "inventory_item_id": product_id + 500 + i as u64,
                "inventory_quantity": 12,
                "updated_at": "2026-11-24T10:00:00Z",
                "admin_graphql_api_id": format!("gid://shopify/ProductVariant/{}", product_id + 1 + i as u64),
            })
        })
        .collect();
    let gids: Vec<serde_json::Value> = variants
        .iter()
        .map(|v| serde_json::json!({"admin_graphql_api_id": v["admin_graphql_api_id"], "updated_at": "2026-11-24T10:00:00Z"}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "id": product_id,
        "title": "Bench product",
        "body_html": "<p>A product used for benchmarks, with a description of ordinary length.</p>",
        "vendor": "Acme",
        "product_type": "Shirts",
        "handle": "bench-product",
        "status": "active",
        "tags": "bench, mens, t-shirt",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": updated_at,
        "options": [{"name": "Size", "position": 1, "values": ["S", "M"]}],
        "variants": variants,
        "variant_gids": gids,
    }))
    .unwrap_or_default()
}

/// Peak resident memory of this process so far (Linux `VmHWM`), in MB.
pub(crate) fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU spent in a timed window: this process's (user + system) and the share of the host's
/// CPU time the hypervisor gave to other machines meanwhile (`steal`; Linux `/proc`). On a
/// shared virtual machine the same binary runs slower when much is stolen; the two figures
/// tell a slower build from a busier host.
pub(crate) struct CpuWindow {
    process_ticks: Option<u64>,
    host: Option<(u64, u64)>,
}

/// Clock ticks per second of `/proc`'s counters (`USER_HZ`, 100 on every Linux platform
/// shopsync builds for).
const TICKS_PER_SECOND: f64 = 100.0;

impl CpuWindow {
    pub(crate) fn start() -> Self {
        Self {
            process_ticks: process_cpu_ticks(),
            host: host_steal_ticks(),
        }
    }

    /// `; CPU x cpu-s, host steal y%` over the window, or nothing where `/proc` is missing.
    pub(crate) fn summary(&self) -> String {
        let mut out = String::new();
        if let (Some(before), Some(after)) = (self.process_ticks, process_cpu_ticks()) {
            let cpu = after.saturating_sub(before) as f64 / TICKS_PER_SECOND;
            out.push_str(&format!("; CPU {cpu:.2} cpu-s"));
        }
        if let (Some((steal0, total0)), Some((steal1, total1))) = (self.host, host_steal_ticks()) {
            let total = total1.saturating_sub(total0).max(1);
            let steal = steal1.saturating_sub(steal0);
            out.push_str(&format!(
                ", host steal {:.0}%",
                100.0 * steal as f64 / total as f64
            ));
        }
        out
    }
}

/// This process's user + system time so far, in clock ticks (`/proc/self/stat`).
pub(crate) fn process_cpu_ticks() -> Option<u64> {
    process_ticks_of(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// User + system ticks of a `/proc/<pid>/stat` line.
fn process_ticks_of(stat: &str) -> Option<u64> {
    // Counted after the command name, which may hold spaces and parentheses: state is the
    // first field after its last `)`, utime the 12th and stime the 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The host's stolen and total CPU time so far, in clock ticks (`/proc/stat`).
fn host_steal_ticks() -> Option<(u64, u64)> {
    host_ticks_of(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Stolen and total ticks of `/proc/stat`'s `cpu` line: user nice system idle iowait irq
/// softirq steal (guest time is counted in user already, so the rest is left out).
fn host_ticks_of(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|t| t.parse::<u64>().ok())
        .collect::<Option<Vec<u64>>>()?;
    Some((*ticks.get(7)?, ticks.iter().sum()))
}

pub(crate) async fn fresh_store(dir: &std::path::Path) -> anyhow::Result<shopsync_store::Store> {
    let backend = shopsync_store_sqlite::SqliteStore::open(dir, "bench_")?;
    shopsync_store::migrate::migrate(&backend, Default::default()).await?;
    Ok(shopsync_store::Store::new(std::sync::Arc::new(backend)))
}

/// A fresh directory for a benchmark's store inside `parent` (the system's temporary
/// directory when `None`), removed when dropped.
pub fn store_dir(parent: Option<&std::path::Path>) -> anyhow::Result<tempfile::TempDir> {
    match parent {
        None => Ok(tempfile::tempdir()?),
        Some(parent) => tempfile::tempdir_in(parent).map_err(|e| {
            anyhow::anyhow!(
                "--data {}: cannot make the benchmark's store directory there: {e}",
                parent.display()
            )
        }),
    }
}

/// A full down-sync of `products` × `variants` from the unthrottled simulator into a fresh
/// embedded store in `dir`, then a second one with nothing changed.
pub async fn down_sync(
    dir: &std::path::Path,
    products: usize,
    variants: usize,
) -> anyhow::Result<()> {
    let seeding = Instant::now();
    let sim = unthrottled_simulator(products, variants).await?;
    println!(
        "down-sync: simulator seeded with {products} products × {variants} variants in {:.1} s (RSS so far {:.0} MB); store in {}",
        seeding.elapsed().as_secs_f64(),
        peak_rss_mb().unwrap_or(0.0),
        dir.display()
    );
    let client = AdminClient::new(sim.client_config())?;
    let store = fresh_store(dir).await?;
    let actor = shopsync_domain::Actor::new("system:bench")?;
    let rails = shopsync_domain::GuardRails::default();
    for run in ["first (all new)", "second (nothing changed)"] {
        let built_before = sim.with_shop(|shop| shop.bulk_build_time());
        let started = Instant::now();
        let cpu = CpuWindow::start();
        let op = shopsync_engine::sync::run_full_down(&store, &client, &actor, &rails).await?;
        let cpu = cpu.summary();
        let seconds = started.elapsed().as_secs_f64();
        // Shopify builds a bulk export on its own servers; here the simulator builds it in
        // this process, on the same cores, while the sync waits for it.
        let (built_after, exports_held) =
            sim.with_shop(|shop| (shop.bulk_build_time(), shop.bulk_bytes_held()));
        let export_build = (built_after - built_before).as_secs_f64();
        let stages = stage_summary(&store, op.operation_uuid).await?;
        let s = &op.statistics;
        println!(
            "down-sync {run}: {} products in {seconds:.1} s = {:.0} products/s (created {}, updated {}, unchanged {}); {stages}; peak RSS {:.0} MB",
            s.processed,
            s.processed as f64 / seconds,
            s.created,
            s.updated,
            s.unchanged,
            peak_rss_mb().unwrap_or(0.0)
        );
        println!(
            "  of which the simulator built the export (Shopify's side) in {export_build:.1} s; shopsync's own time {:.1} s = {:.0} products/s{cpu}; the simulator holds {:.0} MB of exports in this process (in the RSS)",
            seconds - export_build,
            s.processed as f64 / (seconds - export_build).max(f64::EPSILON),
            exports_held as f64 / 1e6
        );
    }
    Ok(())
}

/// Time per stage of an operation, from its performance log (`stage 1.2 s, ...`; empty
/// without one).
pub(crate) async fn stage_summary(
    store: &shopsync_store::Store,
    operation: shopsync_domain::OperationId,
) -> anyhow::Result<String> {
    let log = shopsync_engine::operation::performance_of(store, operation).await?;
    Ok(log
        .map(|l| {
            l.stage_durations_ms
                .iter()
                .map(|(stage, ms)| {
                    format!(
                        "{} {:.1} s",
                        shopsync_domain::status::status_name(*stage),
                        *ms as f64 / 1000.0
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default())
}

/// The simulator seeded with `products` × `variants`, on the plan without a rate limit.
async fn unthrottled_simulator(
    products: usize,
    variants: usize,
) -> anyhow::Result<shopsync_shopify_sim::SimHandle> {
    Ok(Simulator::start(
        SimConfig {
            products,
            variants_per_product: variants,
            plan: Plan::UNLIMITED,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )
    .await?)
}

/// What a DynamoDB request is assumed to cost in the projection (a request within a region
/// answers in single-digit milliseconds; 10 ms is a conservative round figure).
const ASSUMED_REQUEST_MS: f64 = 10.0;

/// The down-sync on DynamoDB (`endpoint`: a local server such as moto, or the region's own):
/// how many requests a full down-sync (all new, then nothing changed), an incremental one
/// and a webhook delivery send per product, and the time a 100,000-product full down-sync
/// would spend in requests if each took [`ASSUMED_REQUEST_MS`] one after another (lookups
/// in flight together count whole, so this is an upper bound). Tables under a fresh prefix.
pub async fn down_sync_dynamodb(
    endpoint: Option<&str>,
    products: usize,
    variants: usize,
) -> anyhow::Result<()> {
    let sim = unthrottled_simulator(products, variants).await?;
    let prefix = format!("bench{}_", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let backend = Arc::new(shopsync_store_dynamo::DynamoStore::connect(endpoint, &prefix).await);
    shopsync_store::migrate::migrate(backend.as_ref(), Default::default())
        .await
        .context("creating the tables")?;
    let store = shopsync_store::Store::new(backend.clone());
    println!(
        "down-sync on DynamoDB ({}), tables {prefix}*: {products} products × {variants} variants",
        endpoint.unwrap_or("the region's endpoint")
    );
    let client = AdminClient::new(sim.client_config())?;
    let actor = shopsync_domain::Actor::new("system:bench")?;
    let rails = shopsync_domain::GuardRails::default();
    let report = |what: &str, requests: u64, items: u64, seconds: f64| {
        println!(
            "  {what}: {requests} requests for {items} products = {:.3} requests/product ({seconds:.1} s here)",
            requests as f64 / items.max(1) as f64
        );
    };
    let mut import_rate = 0.0;
    for run in ["full, first (all new)", "full, second (nothing changed)"] {
        let before = backend.requests();
        let started = Instant::now();
        let op = shopsync_engine::sync::run_full_down(&store, &client, &actor, &rails).await?;
        let requests = backend.requests() - before;
        report(
            run,
            requests,
            op.statistics.processed,
            started.elapsed().as_secs_f64(),
        );
        if import_rate == 0.0 {
            import_rate = requests as f64 / op.statistics.processed.max(1) as f64;
        }
    }
    // A hundredth of the catalog (at least one) renamed in Shopify, then an incremental sync.
    let changed = (products / 100).max(1);
    let ids: Vec<u64> = sim.with_shop(|shop| shop.products().take(changed).map(|p| p.id).collect());
    sim.with_shop(|shop| {
        for id in &ids {
            shop.edit_product(*id, |p| p.title = format!("{} (renamed)", p.title));
        }
    });
    let before = backend.requests();
    let started = Instant::now();
    let op = shopsync_engine::incremental::run_incremental_down_with(
        &store,
        &client,
        &actor,
        &rails,
        shopsync_engine::incremental::default_overlap(),
        false,
    )
    .await?;
    report(
        &format!("incremental ({changed} renamed)"),
        backend.requests() - before,
        op.statistics.processed,
        started.elapsed().as_secs_f64(),
    );
    // Webhook deliveries of products/update for products the store holds.
    let intake = WebhookIntake {
        ledger: Arc::new(shopsync_engine::ledger::StoreLedger::new(store.clone())),
        store: store.clone(),
        config: WebhookConfig {
            shop_domain: "bench.myshopify.com".into(),
            secret: "bench-secret".into(),
            previous_secret: None,
        },
        queue: Arc::new(shopsync_engine::jobs::LocalQueue::default()),
        client: None,
        actor: actor.clone(),
        realtime: Default::default(),
    };
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let deliveries: Deliveries = Arc::new(
        ids.iter()
            .enumerate()
            .map(|(i, id)| {
                let mut body: serde_json::Value =
                    serde_json::from_slice(&product_body_for(*id, variants, &later))?;
                body["title"] = format!("Webhook title {i}").into();
                let body = serde_json::to_vec(&body)?;
                let hmac = sign(&intake.config.secret, &body);
                Ok((body, format!("wh-dynamodb-{i}"), hmac))
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
    );
    let before = backend.requests();
    let started = Instant::now();
    let mut staged = 0;
    for i in 0..deliveries.len() {
        staged += usize::from(deliver(&intake, &deliveries, i).await);
    }
    report(
        &format!("webhook deliveries ({staged} staged)"),
        backend.requests() - before,
        deliveries.len() as u64,
        started.elapsed().as_secs_f64(),
    );
    let projected = import_rate * 100_000.0 * ASSUMED_REQUEST_MS / 1000.0;
    println!(
        "  a 100,000-product full down-sync (first) at {ASSUMED_REQUEST_MS:.0} ms a request, one after another: {:.0} requests, {:.1} minutes in requests",
        import_rate * 100_000.0,
        projected / 60.0
    );
    Ok(())
}

/// The webhook path on the embedded store: each delivery is verified, looked up in the
/// dedupe ledger, checked against the local product, staged as a pending row in one commit
/// with its dedupe marks, its apply step enqueued, and the store flushed (fsync) before the
/// answer. Latency per delivery, from senders sending back to back or (`rate`) from
/// deliveries arriving at a fixed rate. The store is made fresh in `dir`.
pub async fn webhook_path(
    dir: &std::path::Path,
    count: usize,
    products: usize,
    concurrency: usize,
    rate: Option<f64>,
) -> anyhow::Result<()> {
    let (intake, deliveries) = webhook_bench_setup(dir, count, products).await?;
    let started = Instant::now();
    let cpu = CpuWindow::start();
    let (mut latencies, staged) = match rate {
        Some(rate) => open_loop(&intake, &deliveries, rate).await?,
        None => closed_loop(&intake, &deliveries, concurrency).await?,
    };
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu.summary();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    let load = match rate {
        Some(rate) => {
            format!("offered {rate:.0}/s (open loop, latency from each delivery's due time)")
        }
        None => format!("{concurrency} sender(s) back to back"),
    };
    let flush = match shopsync_store_sqlite::Durability::from_env() {
        shopsync_store_sqlite::Durability::OnFlush => "durable flush",
        shopsync_store_sqlite::Durability::EveryCommit => "every commit fsynced",
        shopsync_store_sqlite::Durability::Relaxed => "no fsync before the answer",
    };
    let shown = dir.display();
    println!(
        "webhook path (verify + dedupe + stage + enqueue + {flush}) in {shown}, {load}, {products} products: {count} deliveries in {seconds:.1} s = {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms (p90 {:.2} ms); staged {staged}; peak RSS {:.0} MB{cpu}",
        count as f64 / seconds,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        pct(1.0),
        pct(0.90),
        peak_rss_mb().unwrap_or(0.0)
    );
    Ok(())
}

/// The intake on a fresh store in `dir` holding `products` products mirrored from Shopify,
/// and `count` signed deliveries: each a new title, a second later than the last one for
/// its product.
async fn webhook_bench_setup(
    dir: &std::path::Path,
    count: usize,
    products: usize,
) -> anyhow::Result<(Arc<WebhookIntake>, Deliveries)> {
    let store = fresh_store(dir).await?;
    let actor = shopsync_domain::Actor::new("system:bench")?;
    // The local catalog: products mirrored from Shopify, as a full sync leaves them.
    let now = chrono::Utc::now();
    let mut ids = Vec::with_capacity(products);
    for i in 0..products.max(1) {
        let shopify_id = 9_007_199_254_740_993u64 + (i as u64) * 1_000;
        let id = shopsync_domain::ShopifyProductId::new(shopify_id)?;
        let body: serde_json::Value =
            serde_json::from_slice(&product_body_for(shopify_id, 3, "2026-01-01T00:00:00Z"))?;
        let payload: shopsync_shopify::webhook::payloads::ProductPayload =
            serde_json::from_value(body)?;
        let content = shopsync_engine::realtime::content_from_payload(&payload, None)?;
        let mut product =
            shopsync_domain::Product::new(shopsync_engine::down::local_id_for(id), content, now);
        product.shopify_id = Some(id);
        product.shopify_updated_at = Some(now - chrono::Duration::days(1));
        product.last_sync_version = product.version;
        store
            .create_product(
                &product,
                shopsync_domain::ChangeSource::Shopify,
                &actor,
                None,
            )
            .await?;
        ids.push(shopify_id);
    }
    let config = WebhookConfig {
        shop_domain: "bench.myshopify.com".into(),
        secret: "bench-secret".into(),
        previous_secret: None,
    };
    // Signed here as Shopify signs on its side (not shopsync's work, so not timed).
    let deliveries = (0..count)
        .map(|i| {
            let shopify_id = ids[i % ids.len()];
            let round = i / ids.len();
            let at = (now + chrono::Duration::seconds(round as i64 + 1)).to_rfc3339();
            let mut body: serde_json::Value =
                serde_json::from_slice(&product_body_for(shopify_id, 3, &at))?;
            body["title"] = format!("Title {i}").into();
            let body = serde_json::to_vec(&body)?;
            let hmac = sign(&config.secret, &body);
            Ok((body, format!("wh-{i}"), hmac))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let intake = Arc::new(WebhookIntake {
        ledger: Arc::new(shopsync_engine::ledger::StoreLedger::new(store.clone())),
        store,
        config,
        queue: Arc::new(shopsync_engine::jobs::LocalQueue::default()),
        client: None,
        actor,
        realtime: Default::default(),
    });
    Ok((intake, Arc::new(deliveries)))
}

/// Bench deliveries: body, webhook id, signature.
type Deliveries = Arc<Vec<(Vec<u8>, String, String)>>;

/// Hands delivery `i` to the intake as Shopify sends it (a webhook id and an event id, two
/// dedupe keys); whether it was staged.
async fn deliver(intake: &WebhookIntake, deliveries: &Deliveries, i: usize) -> bool {
    let Some((body, id, hmac)) = deliveries.get(i) else {
        return false;
    };
    let event = format!("event-{i}");
    let headers: Vec<(&str, &str)> = vec![
        ("X-Shopify-Topic", "products/update"),
        ("X-Shopify-Hmac-Sha256", hmac),
        ("X-Shopify-Shop-Domain", "bench.myshopify.com"),
        ("X-Shopify-Webhook-Id", id),
        ("X-Shopify-Event-Id", &event),
    ];
    let reply = intake
        .receive(headers.as_slice(), body, chrono::Utc::now())
        .await;
    reply.body["outcome"] == "staged"
}

/// `concurrency` senders, each sending its next delivery when the last one is answered;
/// latency per delivery, and how many were staged.
async fn closed_loop(
    intake: &Arc<WebhookIntake>,
    deliveries: &Deliveries,
    concurrency: usize,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let intake = intake.clone();
        let deliveries = deliveries.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut staged = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= deliveries.len() {
                    break;
                }
                let t = Instant::now();
                staged += usize::from(deliver(&intake, &deliveries, i).await);
                latencies.push(t.elapsed());
            }
            (latencies, staged)
        }));
    }
    let mut latencies = Vec::with_capacity(deliveries.len());
    let mut staged = 0;
    for task in tasks {
        let (l, s) = task.await?;
        latencies.extend(l);
        staged += s;
    }
    Ok((latencies, staged))
}

/// Deliveries arriving at `rate` per second whether or not earlier ones were answered, as
/// Shopify sends them; each delivery's latency runs from when it was due, so a stall delays
/// (and counts against) every delivery due during it instead of hiding them (coordinated
/// omission). A thread of its own paces the arrivals: the runtime's timer rounds to the
/// millisecond.
async fn open_loop(
    intake: &Arc<WebhookIntake>,
    deliveries: &Deliveries,
    rate: f64,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let runtime = tokio::runtime::Handle::current();
    let intake = intake.clone();
    let all = deliveries.clone();
    // Answers come back through a channel so each finished delivery's task is freed at once
    // (held join handles would keep every task's memory to the end, and inflate peak RSS).
    let (answered, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let pacer = std::thread::spawn(move || {
        let start = Instant::now();
        for i in 0..all.len() {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let (intake, all, answered) = (intake.clone(), all.clone(), answered.clone());
            drop(runtime.spawn(async move {
                let staged = deliver(&intake, &all, i).await;
                // The receiver outlives every sender.
                let _ = answered.send((due.elapsed(), staged));
            }));
        }
    });
    let mut latencies = Vec::with_capacity(deliveries.len());
    let mut staged = 0;
    while let Some((latency, was_staged)) = answers.recv().await {
        latencies.push(latency);
        staged += usize::from(was_staged);
    }
    tokio::task::spawn_blocking(move || pacer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the pacing thread panicked"))?;
    Ok((latencies, staged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deliveries_arriving_at_a_rate_are_paced_and_all_answered_and_staged() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (intake, deliveries) = webhook_bench_setup(dir.path(), 30, 10)
            .await
            .expect("setup");
        let started = Instant::now();
        let (latencies, staged) = open_loop(&intake, &deliveries, 500.0).await.expect("run");
        // Delivery i is due at i/500 s: the last one no sooner than 29/500 s after the start.
        assert!(started.elapsed() >= Duration::from_secs_f64(29.0 / 500.0));
        assert_eq!(latencies.len(), 30);
        assert_eq!(
            staged, 30,
            "every delivery is a newer update of a known product"
        );
        // The same deliveries again are duplicates: answered, nothing staged.
        let (latencies, staged) = closed_loop(&intake, &deliveries, 3).await.expect("rerun");
        assert_eq!((latencies.len(), staged), (30, 0));
    }

    #[test]
    fn process_ticks_are_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (shop (sync) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    731 259 0 0 20 0 4 0 1234 5000000 2000 18446744073709551615";
        assert_eq!(process_ticks_of(stat), Some(731 + 259));
        assert_eq!(process_ticks_of("4242 (cut short) S 1 2"), None);
    }

    #[test]
    fn host_steal_is_the_eighth_counter_of_the_cpu_line_and_guest_time_is_not_counted_twice() {
        let stat = "cpu  100 5 40 800 20 0 3 32 7 0\ncpu0 50 2 20 400 10 0 1 16 3 0\n";
        assert_eq!(
            host_ticks_of(stat),
            Some((32, 100 + 5 + 40 + 800 + 20 + 3 + 32))
        );
        assert_eq!(host_ticks_of("cpu  1 2 three 4 5 6 7 8\n"), None);
        assert_eq!(host_ticks_of("intr 5\n"), None);
    }

    #[test]
    fn this_process_burning_cpu_shows_in_its_window() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let window = CpuWindow::start();
        let before = window.process_ticks.expect("Linux has /proc/self/stat");
        // Burn until the process has spent 0.2 cpu-s (however busy the machine is).
        let started = Instant::now();
        let mut x = 0u64;
        while process_cpu_ticks().unwrap_or(before) < before + 20
            && started.elapsed() < std::time::Duration::from_secs(30)
        {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        let summary = window.summary();
        let cpu: f64 = summary
            .strip_prefix("; CPU ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no CPU figure in {summary:?}"));
        assert!(cpu >= 0.2, "{summary}");
        assert!(summary.contains(", host steal "), "{summary}");
    }
}

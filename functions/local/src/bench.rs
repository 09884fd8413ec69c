//! `shopsync bench ...`: measured runs (not tests) whose numbers go into the session notes.

use anyhow::Context;
use shopsync_domain::ids::{InventoryItemId, LocationId};
use shopsync_shopify::ops::{InventoryPlan, NoCheckpoint, QuantityChange};
use shopsync_shopify::webhook::{sign, verify_and_parse, WebhookConfig};
use shopsync_shopify::AdminClient;
use shopsync_shopify_sim::{Plan, SimConfig, Simulator};
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
    let variants: Vec<serde_json::Value> = (0..variants)
        .map(|i| {
            serde_json::json!({
                "id": 9_007_199_254_740_993u64 + i as u64,
                "product_id": 9_007_199_254_740_993u64,
                "title": format!("Size {i}"),
                "price": "19.99",
                "compare_at_price": null,
                "sku": format!("SKU-{i:05}"),
                "barcode": "0123456789012",
                "position": i + 1,
                "option1": format!("Size {i}"),
                "option2": null,
                "option3": null,
                "inventory_item_id": 9_007_199_254_750_000u64 + i as u64,
                "inventory_quantity": 12,
                "updated_at": "2026-11-24T10:00:00Z",
                "admin_graphql_api_id": format!("gid://shopify/ProductVariant/{}", 9_007_199_254_740_993u64 + i as u64),
            })
        })
        .collect();
    let gids: Vec<serde_json::Value> = variants
        .iter()
        .map(|v| serde_json::json!({"admin_graphql_api_id": v["admin_graphql_api_id"], "updated_at": "2026-11-24T10:00:00Z"}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "id": 9_007_199_254_740_993u64,
        "title": "Bench product",
        "body_html": "<p>A product used for benchmarks, with a description of ordinary length.</p>",
        "vendor": "Acme",
        "product_type": "Shirts",
        "handle": "bench-product",
        "status": "active",
        "tags": "bench, mens, t-shirt",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-11-24T10:00:00Z",
        "options": [{"name": "Size", "position": 1, "values": ["S", "M"]}],
        "variants": variants,
        "variant_gids": gids,
    }))
    .unwrap_or_default()
}

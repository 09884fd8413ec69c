//! The Shopify client driven against the simulator: reads, writes, guards, throttling,
//! injected faults, bulk export and webhooks.

use serde_json::{json, Value};
use shopsync_domain::ids::{InventoryItemId, LocationId, ShopifyProductId, ShopifyVariantId};
use shopsync_shopify::cost::ProductPageShape;
use shopsync_shopify::ops::{
    InventoryPlan, NoCheckpoint, OptionSetInput, OptionValueName, PlanCheckpoint, ProductSetInput,
    ProductSetRequest, ProductUpdateInput, ProductsPageRequest, QuantityChange, VariantOptionValue,
    VariantSetInput, VariantUpdateInput,
};
use shopsync_shopify::{AdminClient, ShopifyError};
use shopsync_shopify_sim::{Fault, FaultRates, Plan, SimConfig, SimHandle, Simulator};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

async fn sim(config: SimConfig) -> SimHandle {
    Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn seeded(products: usize, variants: usize) -> SimConfig {
    SimConfig {
        products,
        variants_per_product: variants,
        plan: Plan::PLUS,
        ..SimConfig::default()
    }
}

fn client(sim: &SimHandle) -> AdminClient {
    AdminClient::new(sim.client_config()).unwrap()
}

async fn raw(sim: &SimHandle, query: &str, variables: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/admin/api/2026-07/graphql.json", sim.url))
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["extensions"]["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_simulator_refuses_what_shopify_refuses() {
    let sim = sim(seeded(3, 2)).await;
    let (status, body) = raw(
        &sim,
        "{ products(first: 1) { nodes { id colour } } }",
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(codes(&body), ["GRAPHQL_VALIDATION_FAILED"]);
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("colour"));
    assert!(body.get("data").is_none());

    let (_, body) = raw(
        &sim,
        "query P($id: ID!) { product(id: $id) { id } }",
        json!({}),
    )
    .await;
    assert_eq!(codes(&body), ["INVALID_VARIABLE"]);

    let (_, body) = raw(&sim, "{ products(first: 251) { nodes { id } } }", json!({})).await;
    assert_eq!(codes(&body), ["BAD_REQUEST"]);

    let (_, body) = raw(
        &sim,
        "{ products(first: 250) { nodes { id variants(first: 250) { nodes { id } } } } }",
        json!({}),
    )
    .await;
    assert_eq!(codes(&body), ["MAX_COST_EXCEEDED"]);

    let quantities: Vec<Value> = (0..251)
        .map(|i| json!({"inventoryItemId": format!("gid://shopify/InventoryItem/{i}"), "locationId": "gid://shopify/Location/1", "quantity": 1, "changeFromQuantity": 0}))
        .collect();
    let (_, body) = raw(
        &sim,
        shopsync_shopify::documents::INVENTORY_SET_QUANTITIES.text,
        json!({"input": {"name": "available", "reason": "correction", "quantities": quantities}, "idempotencyKey": "k"}),
    )
    .await;
    assert_eq!(codes(&body), ["MAX_INPUT_SIZE_EXCEEDED"]);

    let (_, body) = raw(
        &sim,
        "mutation { inventorySetQuantities(input: {name: \"available\", reason: \"correction\", quantities: []}) { userErrors { code } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        codes(&body),
        ["BAD_REQUEST"],
        "the idempotency key is required: {body}"
    );
}

#[tokio::test]
async fn pages_cover_every_product_once_and_stay_under_the_cost_limit() {
    let sim = sim(seeded(40, 3)).await;
    let client = client(&sim);
    let mut request = ProductsPageRequest::default();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = client.products_page(&request).await.unwrap();
        pages += 1;
        for product in &page.items {
            assert!(product.variants_complete());
            assert_eq!(product.variants.len(), 3);
            assert_eq!(product.variants[0].levels.len(), 2);
            seen.push(product.id);
        }
        match page.next {
            Some(next) => request.after = Some(next),
            None => break,
        }
    }
    let expected: Vec<ShopifyProductId> = sim.with_shop(|s| {
        s.products()
            .map(|p| ShopifyProductId::new(p.id).unwrap())
            .collect()
    });
    assert_eq!(seen.len(), 40);
    assert_eq!(
        seen.iter().collect::<BTreeSet<_>>(),
        expected.iter().collect::<BTreeSet<_>>()
    );
    assert!(pages >= 40 / ProductPageShape::default().page_size() as usize);
    assert!(
        seen.iter().all(|id| id.get() > (1u64 << 53)),
        "ids above 2^53 survive exactly"
    );

    // The incremental filter: only products updated after a cursor. Shopify compares whole
    // seconds, so the cursor sits a full second after the seeding and before the edit.
    let target = expected[7];
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let cursor = chrono::Utc::now() - chrono::Duration::seconds(1);
    sim.with_shop(|s| s.edit_product(target.get(), |p| p.title = "Edited".into()));
    let page = client
        .products_page(&ProductsPageRequest {
            updated_after: Some(cursor),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.items.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![target]
    );
    assert_eq!(page.items[0].title, "Edited");
}

fn big_product(variants: usize) -> ProductSetInput {
    ProductSetInput {
        title: "Many sizes".into(),
        vendor: Some("Acme".into()),
        tags: vec!["big".into()],
        product_options: vec![OptionSetInput {
            name: "Size".into(),
            values: (0..variants)
                .map(|i| OptionValueName {
                    name: format!("S{i}"),
                })
                .collect(),
        }],
        variants: (0..variants)
            .map(|i| VariantSetInput {
                sku: Some(format!("BIG-{i}")),
                price: Some(format!("{}.00", 10 + i)),
                option_values: vec![VariantOptionValue {
                    option_name: "Size".into(),
                    name: format!("S{i}"),
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn product_set_pages_past_100_variants_and_never_drops_variants_by_accident() {
    let sim = sim(seeded(0, 1)).await;
    let client = client(&sim);
    // 130 variants: asynchronous productSet with polling.
    let created = client
        .product_set(&ProductSetRequest {
            product: None,
            input: big_product(130),
            delete_variants: BTreeSet::new(),
        })
        .await
        .unwrap();
    assert!(created.asynchronous);
    assert_eq!(created.variants.len(), 130);

    // Reading it back pages past the first variants.
    let product = client
        .product(created.product_id, ProductPageShape::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(product.variants.len(), 130);
    assert_eq!(product.variants_count, Some(130));
    let skus: BTreeSet<String> = product
        .variants
        .iter()
        .filter_map(|v| v.sku.clone())
        .collect();
    assert_eq!(skus.len(), 130);

    // Leaving variants out without naming them for deletion is refused before sending.
    let mut input = big_product(130);
    for (v, existing) in input.variants.iter_mut().zip(&product.variants) {
        v.id = Some(existing.id.gid());
    }
    input.variants.truncate(129);
    let request = ProductSetRequest {
        product: Some(created.product_id),
        input: input.clone(),
        delete_variants: BTreeSet::new(),
    };
    let err = client.product_set(&request).await.unwrap_err();
    assert!(
        matches!(err, ShopifyError::Refused(ref m) if m.contains(&product.variants[129].id.to_string())),
        "{err}"
    );
    assert_eq!(
        sim.with_shop(|s| s.product(created.product_id.get()).unwrap().variants.len()),
        130
    );

    // Naming it deletes exactly that one.
    let doomed: ShopifyVariantId = product.variants[129].id;
    let mut request = request;
    request.delete_variants.insert(doomed);
    request.input.title = "Many sizes, one fewer".into();
    let updated = client.product_set(&request).await.unwrap();
    assert_eq!(updated.variants.len(), 129);
    let remaining = sim.with_shop(|s| s.product(created.product_id.get()).unwrap().clone());
    assert_eq!(remaining.variants.len(), 129);
    assert!(remaining.variants.iter().all(|v| v.id != doomed.get()));
    assert_eq!(remaining.title, "Many sizes, one fewer");
    // Kept variants keep their ids (and inventory items).
    let before: BTreeSet<u64> = product.variants[..129].iter().map(|v| v.id.get()).collect();
    let after: BTreeSet<u64> = remaining.variants.iter().map(|v| v.id).collect();
    assert_eq!(before, after);

    // A small product goes synchronously.
    let small = client
        .product_set(&ProductSetRequest {
            product: None,
            input: big_product(3),
            delete_variants: BTreeSet::new(),
        })
        .await
        .unwrap();
    assert!(!small.asynchronous);
    assert_eq!(small.variants.len(), 3);
    assert!(small.variants.iter().all(|v| v.inventory_item_id.is_some()));
}

#[tokio::test]
async fn updates_answer_user_errors_as_typed_errors() {
    let sim = sim(seeded(1, 300)).await;
    let client = client(&sim);
    let product = sim.with_shop(|s| s.products().next().unwrap().clone());
    let pid = ShopifyProductId::new(product.id).unwrap();

    let at = client
        .product_update(&ProductUpdateInput {
            id: pid.gid(),
            title: Some("New title".into()),
            tags: Some(vec!["a".into(), "b".into()]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(at.is_some());
    let stored = sim.with_shop(|s| s.product(product.id).unwrap().clone());
    assert_eq!(
        (stored.title.as_str(), stored.tags.clone()),
        ("New title", vec!["a".to_owned(), "b".to_owned()])
    );
    assert_eq!(
        stored.variants.len(),
        300,
        "productUpdate never touches variants"
    );

    let missing = client
        .product_update(&ProductUpdateInput {
            id: "gid://shopify/Product/1".into(),
            title: Some("x".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(missing, ShopifyError::UserErrors { .. }) && !missing.is_retryable(),
        "{missing}"
    );

    // 300 variants: two calls of at most 250.
    let updates: Vec<VariantUpdateInput> = product
        .variants
        .iter()
        .map(|v| VariantUpdateInput {
            id: ShopifyVariantId::new(v.id).unwrap().gid(),
            price: Some("9.99".into()),
            ..Default::default()
        })
        .collect();
    let before = client.counters().api_calls;
    let updated = client.variants_bulk_update(pid, &updates).await.unwrap();
    assert_eq!(updated.len(), 300);
    assert_eq!(client.counters().api_calls - before, 2);
    assert!(sim.with_shop(|s| s
        .product(product.id)
        .unwrap()
        .variants
        .iter()
        .all(|v| v.price == "9.99")));

    let bad = client
        .variants_bulk_update(
            pid,
            &[VariantUpdateInput {
                id: "gid://shopify/ProductVariant/5".into(),
                ..Default::default()
            }],
        )
        .await
        .unwrap_err();
    assert_eq!(bad.user_error_codes(), ["PRODUCT_VARIANT_DOES_NOT_EXIST"]);
}

/// Every level of the first `products` products, by (item, location).
fn levels(sim: &SimHandle) -> BTreeMap<(u64, u64), i64> {
    sim.with_shop(|s| {
        s.products()
            .flat_map(|p| p.variants.iter())
            .flat_map(|v| v.levels.iter().map(move |(l, q)| ((v.item_id, *l), *q)))
            .collect()
    })
}

fn plan_for(current: &BTreeMap<(u64, u64), i64>, key: &str) -> InventoryPlan {
    InventoryPlan::new(
        key,
        "correction",
        Some("gid://shopsync/SyncOperation/test".into()),
        current
            .iter()
            .enumerate()
            .map(|(i, ((item, loc), q))| QuantityChange {
                item: InventoryItemId::new(*item).unwrap(),
                location: LocationId::new(*loc).unwrap(),
                expected: *q,
                target: 1000 + i as i64,
            })
            .collect(),
    )
}

/// Keeps every checkpoint, as a step's store would.
#[derive(Default)]
struct Recorded(Vec<InventoryPlan>);

#[async_trait::async_trait]
impl PlanCheckpoint for Recorded {
    async fn save(&mut self, plan: &InventoryPlan) -> Result<(), ShopifyError> {
        self.0.push(plan.clone());
        Ok(())
    }
}

fn expected_after(plan: &InventoryPlan, sales: &[(u64, u64, i64)]) -> BTreeMap<(u64, u64), i64> {
    plan.changes
        .iter()
        .map(|c| {
            let sold: i64 = sales
                .iter()
                .filter(|(i, l, _)| *i == c.item.get() && *l == c.location.get())
                .map(|(_, _, u)| u)
                .sum();
            ((c.item.get(), c.location.get()), c.target - sold)
        })
        .collect()
}

#[tokio::test]
async fn inventory_writes_survive_scripted_faults_with_no_lost_or_doubled_change() {
    // 60 products × 3 variants × 2 locations = 360 levels: two batches.
    let sim = sim(seeded(60, 3)).await;
    let client = client(&sim);
    let before = levels(&sim);
    assert_eq!(before.len(), 360);
    let original = plan_for(&before, "op-1:step-1");
    let mut plan = original.clone();

    sim.push_fault(Fault::Throttle429);
    sim.push_fault(Fault::ServerError(503));
    // Applied, but the answer is lost: the retry must replay, not apply again.
    sim.push_fault(Fault::LoseResponse);
    // A sale of 2 lands between the read and the write of the first batch.
    sim.push_fault(Fault::Sale(2));
    let mut saved = Recorded::default();
    let outcome = client.set_inventory(&mut plan, &mut saved).await.unwrap();

    let sales = sim.with_shop(|s| s.sales.clone());
    assert_eq!(sales.len(), 1);
    assert_eq!(outcome.replanned, 1);
    assert_eq!(outcome.applied.len(), 360);
    assert_eq!(levels(&sim), expected_after(&original, &sales));
    let counters = client.counters();
    assert_eq!(counters.throttled, 1);
    assert_eq!(counters.retries, 2);
    assert!(plan.is_done());
    // Checkpoints were taken before each send: batch 1, its re-plan, batch 2, and the end.
    assert_eq!(saved.0.len(), 4);

    // A redelivered step resumes from its latest checkpoint: nothing is sent again.
    let mut resumed = saved.0.last().unwrap().clone();
    let again = client
        .set_inventory(&mut resumed, &mut NoCheckpoint)
        .await
        .unwrap();
    assert_eq!((again.already_done, again.batches), (2, 0));
    assert_eq!(levels(&sim), expected_after(&original, &sales));

    // Resuming from an older checkpoint than the latest (a bug in the caller) fails safely:
    // the re-plan differs from what was sent under that key, Shopify refuses, nothing doubles.
    let mut stale = saved.0[0].clone();
    let err = client
        .set_inventory(&mut stale, &mut NoCheckpoint)
        .await
        .unwrap_err();
    assert_eq!(
        err.user_error_codes(),
        ["IDEMPOTENCY_KEY_PARAMETER_MISMATCH"]
    );
    assert_eq!(levels(&sim), expected_after(&original, &sales));
}

#[tokio::test]
async fn a_step_that_dies_after_shopify_applied_resumes_without_doubling() {
    let sim = sim(seeded(10, 2)).await;
    let before = levels(&sim);
    let original = plan_for(&before, "op-3:step-1");
    // No transport retries: the lost answer ends the step, as a Lambda timeout would.
    let mut config = sim.client_config();
    config.max_retries = 0;
    let fragile = AdminClient::new(config).unwrap();
    sim.push_fault(Fault::LoseResponse);
    let mut plan = original.clone();
    let mut saved = Recorded::default();
    let err = fragile
        .set_inventory(&mut plan, &mut saved)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    // Shopify applied it although the step never heard back.
    assert_eq!(levels(&sim), expected_after(&original, &[]));

    // The redelivered step resumes from its last checkpoint: same key, same parameters, so
    // Shopify replays; without the key the compare-and-set would fail and a re-plan would
    // apply the change a second time.
    let mut resumed = saved.0.last().unwrap().clone();
    let outcome = client(&sim)
        .set_inventory(&mut resumed, &mut NoCheckpoint)
        .await
        .unwrap();
    assert_eq!(outcome.replanned, 0);
    assert_eq!(levels(&sim), expected_after(&original, &[]));
}

#[tokio::test]
async fn inventory_writes_survive_random_faults() {
    let sim = sim(seeded(50, 4)).await;
    let client = client(&sim);
    sim.set_fault_rates(FaultRates {
        seed: 7,
        throttle_429: 0.1,
        server_error: 0.1,
        lose_response: 0.1,
        slow: 0.05,
        slow_ms: 30,
        stale: 0.2,
    });
    let before = levels(&sim);
    let original = plan_for(&before, "op-2:step-1");
    let mut plan = original.clone();
    let outcome = client
        .set_inventory(&mut plan, &mut NoCheckpoint)
        .await
        .unwrap();
    sim.set_fault_rates(FaultRates::default());
    let sales = sim.with_shop(|s| s.sales.clone());
    assert_eq!(levels(&sim), expected_after(&original, &sales));
    assert!(sim.stats().faults > 0);
    assert_eq!(outcome.applied.len(), before.len());
}

#[tokio::test]
async fn throttled_answers_wait_and_retry_and_are_counted() {
    let sim = sim(SimConfig {
        products: 30,
        variants_per_product: 3,
        plan: Plan {
            bucket: 1000.0,
            restore_rate: 500.0,
        },
        ..SimConfig::default()
    })
    .await;
    // A client that believes it has a large bucket, so it overdraws and gets THROTTLED.
    let mut config = sim.client_config();
    config.assumed_bucket = 100_000.0;
    config.assumed_restore_rate = 100_000.0;
    let client = AdminClient::new(config).unwrap();
    let ids: Vec<ShopifyProductId> = sim.with_shop(|s| {
        s.products()
            .map(|p| ShopifyProductId::new(p.id).unwrap())
            .collect()
    });
    let tasks: Vec<_> = ids
        .iter()
        .take(12)
        .map(|id| {
            let client = client.clone();
            let id = *id;
            tokio::spawn(async move {
                client
                    .product(
                        id,
                        ProductPageShape {
                            variants_first: 50,
                            levels_first: 2,
                        },
                    )
                    .await
            })
        })
        .collect();
    for task in tasks {
        let product = task.await.unwrap().unwrap().unwrap();
        assert_eq!(product.variants.len(), 3);
    }
    let counters = client.counters();
    assert!(sim.stats().throttled > 0, "the bucket should have run dry");
    assert_eq!(counters.throttled, sim.stats().throttled);
    assert!(counters.throttle_wait > Duration::ZERO);
    assert!(counters.cost_used > 0.0);
}

#[tokio::test]
async fn bulk_export_streams_every_product_with_variants_and_levels() {
    let sim = sim(seeded(80, 3)).await;
    let client = client(&sim);
    let mut export = client
        .bulk_export_products(None, Duration::from_secs(30))
        .await
        .unwrap();
    let mut products = Vec::new();
    while let Some(product) = export.next_product().await.unwrap() {
        products.push(product);
    }
    // 80 products + 240 variants + 480 levels.
    assert_eq!(export.lines_read(), 80 + 240 + 480);
    assert_eq!(export.object_count, 800);
    // Only the products are top-level objects.
    let (status, body) = raw(
        &sim,
        "{ currentBulkOperation { id status objectCount rootObjectCount } }",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let op = &body["data"]["currentBulkOperation"];
    assert_eq!(
        (op["objectCount"].as_str(), op["rootObjectCount"].as_str()),
        (Some("800"), Some("80")),
        "{body}"
    );
    // Lines as Shopify writes them: fields in the query's order (so `id` first, as the
    // client's one-pass reader expects), `__parentId` last on child lines.
    let op_id: u64 = op["id"]
        .as_str()
        .and_then(|gid| gid.rsplit('/').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let data = sim.with_shop(|s| s.bulk_data(op_id)).unwrap();
    assert_eq!(
        sim.with_shop(|s| s.bulk_bytes_held()),
        data.len(),
        "the only result held is this one"
    );
    let text = std::str::from_utf8(&data).unwrap();
    let mut kinds = BTreeMap::new();
    for line in text.lines() {
        let value: Value = serde_json::from_str(line).unwrap();
        let id = value["id"].as_str().unwrap();
        let kind = id.split('/').nth(3).unwrap();
        *kinds.entry(kind.to_owned()).or_insert(0) += 1;
        assert!(line.starts_with(&format!(r#"{{"id":"{id}""#)), "{line}");
        match kind {
            "Product" => {
                assert!(!line.contains("__parentId"), "{line}");
                let title = line.find(r#""title":"#).unwrap();
                let updated = line.find(r#""updatedAt":"#).unwrap();
                assert!(title < updated, "fields in query order: {line}");
            }
            _ => {
                let parent = value["__parentId"].as_str().unwrap();
                assert!(
                    line.ends_with(&format!(r#","__parentId":"{parent}"}}"#)),
                    "{line}"
                );
            }
        }
    }
    assert_eq!(
        kinds,
        BTreeMap::from([
            ("Product".to_owned(), 80),
            ("ProductVariant".to_owned(), 240),
            ("InventoryLevel".to_owned(), 480),
        ])
    );
    let expected = sim.with_shop(|s| s.products().cloned().collect::<Vec<_>>());
    assert_eq!(products.len(), expected.len());
    for (got, want) in products.iter().zip(&expected) {
        assert_eq!(got.id.get(), want.id);
        assert_eq!(got.variants.len(), want.variants.len());
        for (gv, wv) in got.variants.iter().zip(&want.variants) {
            assert_eq!(gv.id.get(), wv.id);
            assert_eq!(gv.sku, wv.sku);
            let levels: BTreeMap<u64, i64> = gv
                .levels
                .iter()
                .map(|l| (l.location_id.get(), l.available.unwrap()))
                .collect();
            assert_eq!(levels, wv.levels);
        }
    }
}

#[tokio::test]
async fn locations_collections_and_webhook_subscriptions() {
    let sim = sim(seeded(2, 1)).await;
    let client = client(&sim);
    let locations = client.locations().await.unwrap();
    assert_eq!(locations.len(), 2);
    let collections = client.collections_page(None, None).await.unwrap();
    assert_eq!(collections.items.len(), 3);
    assert!(collections.next.is_none());

    let uri = "https://example.test/webhooks/shopify";
    let missing = client
        .missing_subscriptions(uri, &["PRODUCTS_UPDATE", "PRODUCTS_DELETE"])
        .await
        .unwrap();
    assert_eq!(missing, ["PRODUCTS_UPDATE", "PRODUCTS_DELETE"]);
    client
        .webhook_subscribe("PRODUCTS_UPDATE", uri)
        .await
        .unwrap();
    let again = client
        .webhook_subscribe("PRODUCTS_UPDATE", uri)
        .await
        .unwrap_err();
    assert!(matches!(again, ShopifyError::UserErrors { .. }));
    let missing = client
        .missing_subscriptions(uri, &["PRODUCTS_UPDATE", "PRODUCTS_DELETE"])
        .await
        .unwrap();
    assert_eq!(missing, ["PRODUCTS_DELETE"]);
}

#[tokio::test]
async fn changes_through_the_api_send_signed_webhooks() {
    use axum::{body::Bytes, extract::State, http::HeaderMap, routing::post, Router};
    use std::sync::{Arc, Mutex};
    type Inbox = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;
    let inbox: Inbox = Arc::default();
    async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> &'static str {
        inbox.lock().unwrap().push((headers, body));
        "ok"
    }
    let app = Router::new()
        .route("/hooks", post(receive))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let config = SimConfig {
        products: 1,
        webhook_url: Some(format!("http://{addr}/hooks")),
        ..SimConfig::default()
    };
    let secret = config.webhook_secret.clone();
    let shop = config.shop_domain.clone();
    let sim = sim(config).await;
    let client = client(&sim);
    let product = sim.with_shop(|s| s.products().next().unwrap().clone());
    client
        .product_update(&ProductUpdateInput {
            id: ShopifyProductId::new(product.id).unwrap().gid(),
            title: Some("Pushed".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let variant = &product.variants[0];
    let location = *variant.levels.keys().next().unwrap();
    sim.with_shop(|s| s.adjust_level(variant.item_id, location, -1));

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while inbox.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let received = inbox.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    let config = shopsync_shopify::webhook::WebhookConfig {
        shop_domain: shop,
        secret,
        previous_secret: None,
    };
    use shopsync_shopify::webhook::{verify_and_parse, Payload};
    let first = verify_and_parse(&config, &received[0].0, &received[0].1).unwrap();
    let Payload::ProductUpdate(payload) = first.payload else {
        panic!("{:?}", first.payload)
    };
    assert_eq!(payload.id.get(), product.id);
    assert_eq!(payload.title.as_deref(), Some("Pushed"));
    let second = verify_and_parse(&config, &received[1].0, &received[1].1).unwrap();
    let Payload::InventoryLevel(level) = second.payload else {
        panic!()
    };
    assert_eq!(level.inventory_item_id.get(), variant.item_id);
    assert_eq!(level.available, Some(variant.levels[&location] - 1));
    assert_eq!(sim.sent_webhooks().len(), 2);
}

#[tokio::test]
async fn the_clients_cost_estimates_match_the_simulators_requested_cost() {
    use shopsync_shopify::cost::{self, MAX_QUERY_COST};
    use shopsync_shopify::documents as doc;
    let sim = sim(seeded(2, 2)).await;
    for shape in [
        ProductPageShape::default(),
        ProductPageShape {
            variants_first: 50,
            levels_first: 2,
        },
        ProductPageShape {
            variants_first: 1,
            levels_first: 1,
        },
    ] {
        let first = shape.page_size();
        let (_, body) = raw(
            &sim,
            doc::PRODUCTS_PAGE.text,
            json!({"first": first, "variantsFirst": shape.variants_first, "levelsFirst": shape.levels_first}),
        )
        .await;
        let requested = body["extensions"]["cost"]["requestedQueryCost"]
            .as_f64()
            .unwrap();
        assert_eq!(
            requested,
            f64::from(shape.page_cost(first)),
            "{shape:?}: {body}"
        );
        assert!(requested <= f64::from(MAX_QUERY_COST));
    }
    let levels_first = 3;
    let first = ProductPageShape::variant_page_size(levels_first);
    let (_, body) = raw(
        &sim,
        doc::PRODUCT_VARIANTS_PAGE.text,
        json!({"id": "gid://shopify/Product/1", "first": first, "levelsFirst": levels_first}),
    )
    .await;
    let requested = body["extensions"]["cost"]["requestedQueryCost"]
        .as_f64()
        .unwrap();
    assert_eq!(
        requested,
        f64::from(1 + cost::connection(first, ProductPageShape::variant_cost(levels_first)))
    );
    assert!(requested <= f64::from(MAX_QUERY_COST));
}

#[tokio::test]
async fn a_bulk_push_runs_each_kind_as_a_bulk_mutation_and_answers_per_product() {
    use shopsync_shopify::ops::BulkPush;
    let sim = sim(seeded(3, 2)).await;
    let client = client(&sim);
    let ids: Vec<u64> = sim.with_shop(|s| s.products().map(|p| p.id).collect());
    let variant = sim.with_shop(|s| s.product(ids[1]).unwrap().variants[0].id);
    let mut refused = big_product(1);
    refused.product_options.clear();
    let pushes = vec![
        BulkPush::Create(big_product(2)),
        BulkPush::Update(ProductUpdateInput {
            id: ShopifyProductId::new(ids[0]).unwrap().gid(),
            title: Some("Renamed in bulk".into()),
            ..Default::default()
        }),
        BulkPush::Variants(
            ShopifyProductId::new(ids[1]).unwrap(),
            vec![VariantUpdateInput {
                id: ShopifyVariantId::new(variant).unwrap().gid(),
                price: Some("42.00".into()),
                ..Default::default()
            }],
        ),
        BulkPush::Update(ProductUpdateInput {
            id: ShopifyProductId::new(999_999_999).unwrap().gid(),
            title: Some("Nobody".into()),
            ..Default::default()
        }),
    ];
    let (answers, stats) = client
        .bulk_push(&pushes, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(stats.operations, 3, "one bulk mutation per kind");
    assert!(stats.uploaded_bytes > 0 && stats.result_bytes > 0);
    let created = answers[0].as_ref().expect("the create");
    assert_eq!(created.variants.len(), 2);
    assert!(created
        .variants
        .iter()
        .all(|v| v.inventory_item_id.is_some()));
    assert_eq!(answers[1].as_ref().unwrap().product_id.get(), ids[0]);
    assert_eq!(answers[2].as_ref().unwrap().product_id.get(), ids[1]);
    assert!(
        answers[3].is_err(),
        "a missing product is refused on its own line"
    );
    sim.with_shop(|s| {
        assert_eq!(s.product(ids[0]).unwrap().title, "Renamed in bulk");
        assert_eq!(s.product(ids[1]).unwrap().variants[0].price, "42.00");
        assert_eq!(
            s.product(created.product_id.get()).unwrap().title,
            "Many sizes"
        );
    });
    // Five at a time: a sixth waits for one to finish (the shop's rule since 2026-01).
    let (status, body) = raw(
        &sim,
        "{ currentBulkOperation(type: MUTATION) { type status } }",
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["currentBulkOperation"]["type"], "MUTATION",
        "{body}"
    );
}

#[tokio::test]
async fn a_shop_runs_five_bulk_mutations_at_a_time() {
    let sim = sim(seeded(1, 1)).await;
    let stage = "mutation S($input: [StagedUploadInput!]!) { stagedUploadsCreate(input: $input) { stagedTargets { url parameters { name value } } userErrors { message } } }";
    let run = "mutation R($m: String!, $p: String!) { bulkOperationRunMutation(mutation: $m, stagedUploadPath: $p) { bulkOperation { id } userErrors { code message } } }";
    let mutation = "mutation U($product: ProductUpdateInput!) { productUpdate(product: $product) { product { id } userErrors { message } } }";
    let id = sim.with_shop(|s| s.products().next().unwrap().id);
    let mut codes_seen = Vec::new();
    for _ in 0..6 {
        let (_, staged) = raw(
            &sim,
            stage,
            json!({"input": [{"resource": "BULK_MUTATION_VARIABLES", "filename": "v.jsonl", "mimeType": "text/jsonl", "httpMethod": "PUT"}]}),
        )
        .await;
        let target = &staged["data"]["stagedUploadsCreate"]["stagedTargets"][0];
        let key = target["parameters"][0]["value"]
            .as_str()
            .unwrap()
            .to_owned();
        let line = json!({"product": {"id": format!("gid://shopify/Product/{id}"), "title": "T"}});
        let put = reqwest::Client::new()
            .put(target["url"].as_str().unwrap())
            .body(format!("{line}\n"))
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success());
        let (_, ran) = raw(&sim, run, json!({"m": mutation, "p": key})).await;
        codes_seen.push(
            ran["data"]["bulkOperationRunMutation"]["userErrors"][0]["code"]
                .as_str()
                .map(str::to_owned),
        );
    }
    assert_eq!(&codes_seen[..5], &[None, None, None, None, None]);
    assert_eq!(codes_seen[5].as_deref(), Some("OPERATION_IN_PROGRESS"));
}

#[tokio::test]
async fn collections_are_read_with_their_rules_and_every_product() {
    let sim = sim(seeded(600, 1)).await;
    let client = client(&sim);
    let collections = client.collections(None).await.unwrap();
    assert_eq!(collections.len(), 3);
    let expected: BTreeMap<String, (usize, bool)> = sim.with_shop(|s| {
        s.collections()
            .map(|c| (c.title.clone(), (c.products.len(), c.rules.is_some())))
            .collect()
    });
    for collection in &collections {
        let (count, smart) = expected[&collection.title];
        assert_eq!(
            collection.products.len(),
            count,
            "{}: past 250, paged",
            collection.title
        );
        assert_eq!(collection.rule_set.is_some(), smart);
        assert!(!collection.sort_order.is_empty());
    }
    assert!(collections.iter().any(|c| c.products.len() > 250));
    // Only those updated since a moment: none.
    let later = chrono::Utc::now() + chrono::Duration::minutes(1);
    assert!(client.collections(Some(later)).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_collection_update_changes_fields_and_selections_and_refuses_what_shopify_refuses() {
    use shopsync_domain::ShopifyCollectionId;
    use shopsync_shopify::ops::CollectionChange;
    let sim = sim(seeded(600, 1)).await;
    let client = client(&sim);
    let (summer, members, outsiders, sale) = sim.with_shop(|s| {
        let summer = s.collections().find(|c| c.title == "Summer").unwrap();
        let outsiders: Vec<u64> = s
            .products()
            .map(|p| p.id)
            .filter(|id| !summer.products.contains(id))
            .take(300)
            .collect();
        let sale = s.collections().find(|c| c.rules.is_some()).unwrap().id;
        (summer.id, summer.products.clone(), outsiders, sale)
    });
    let product = |id: u64| ShopifyProductId::new(id).unwrap();
    let summer_id = ShopifyCollectionId::new(summer).unwrap();
    // 300 in and 2 out: two calls (250 selections each at most), the fields with the first.
    let change = CollectionChange {
        title: Some("Summer, revised".into()),
        sort_order: Some("ALPHA_ASC".into()),
        add: outsiders.iter().copied().map(product).collect(),
        remove: members[..2].iter().copied().map(product).collect(),
        ..CollectionChange::default()
    };
    let before = sim.stats().requests;
    let updated_at = client.update_collection(summer_id, &change).await.unwrap();
    assert_eq!(
        sim.stats().requests - before,
        3,
        "the sources read and two updates"
    );
    let remote = client.collection(summer_id).await.unwrap().unwrap();
    assert_eq!(Some(remote.updated_at), updated_at);
    assert_eq!(remote.title, "Summer, revised");
    assert_eq!(remote.sort_order, "ALPHA_ASC");
    assert_eq!(remote.products.len(), members.len() + 300 - 2);
    assert!(!remote.products.contains(&product(members[0])));
    assert!(remote.products.contains(&product(outsiders[299])));

    // A product Shopify does not have: refused whole, nothing changed.
    let refused = client
        .update_collection(
            summer_id,
            &CollectionChange {
                title: Some("Never".into()),
                add: vec![product(999_999_999)],
                ..CollectionChange::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, ShopifyError::UserErrors { errors, .. } if errors[0].message == "Product does not exist"),
        "{refused}"
    );
    assert_eq!(
        client.collection(summer_id).await.unwrap().unwrap().title,
        "Summer, revised"
    );
    // A smart collection's products follow its rules: no selection.
    let smart = client
        .update_collection(
            ShopifyCollectionId::new(sale).unwrap(),
            &CollectionChange {
                add: vec![product(outsiders[0])],
                ..CollectionChange::default()
            },
        )
        .await
        .unwrap_err();
    assert!(smart.to_string().contains("smart collection"), "{smart}");
    // A blank title is refused.
    let blank = client
        .update_collection(
            summer_id,
            &CollectionChange {
                title: Some(" ".into()),
                ..CollectionChange::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        blank.to_string().contains("Title can't be blank"),
        "{blank}"
    );
}

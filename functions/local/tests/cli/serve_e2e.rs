//! End to end through `shopsync serve` and its seeded simulator, as Shopify and a merchant
//! would drive it.

use crate::common;

use common::{get, post_webhook, start_with, Server};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SECRET: &str = "shopsync-dev-webhook-secret";

/// Waits for the first completed operation of `kind` (`operation_type`), newest first.
async fn completed(server: &Server, kind: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = get(server, "/api/v1/operations", Some("t0ken")).await;
        assert_eq!(status, 200, "{body}");
        if let Some(op) = body["operations"].as_array().and_then(|ops| {
            ops.iter()
                .find(|o| o["status"] == "completed" && o["operation_type"] == kind)
        }) {
            return op.clone();
        }
        assert!(Instant::now() < deadline, "no completed {kind}: {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn first_product(server: &Server, operation: &Value) -> Value {
    let (_, detail) = get(
        server,
        &format!(
            "/api/v1/operations/{}",
            operation["operation_uuid"].as_str().unwrap()
        ),
        Some("t0ken"),
    )
    .await;
    let local_id = detail["staging"][0]["source_product_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, product) = get(
        server,
        &format!("/api/v1/products/{local_id}"),
        Some("t0ken"),
    )
    .await;
    assert_eq!(status, 200);
    product["product"].clone()
}

async fn versions(server: &Server, id: &str) -> Vec<Value> {
    let (_, body) = get(
        server,
        &format!("/api/v1/products/{id}/versions"),
        Some("t0ken"),
    )
    .await;
    body["versions"].as_array().cloned().unwrap_or_default()
}

fn update_payload(product: &Value, title: &str, updated_at: &str) -> Value {
    let variants: Vec<Value> = product["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| json!({"id": v["shopify_id"], "title": v["title"], "price": v["price"], "sku": v["sku"], "inventory_item_id": v["inventory_item_id"], "option1": v["option_values"][0], "option2": v["option_values"][1]}))
        .collect();
    json!({
        "id": product["shopify_id"],
        "title": title,
        "updated_at": updated_at,
        "status": "active",
        "variants": variants,
        "variant_gids": variants.iter().map(|v| json!({"admin_graphql_api_id": format!("gid://shopify/ProductVariant/{}", v["id"])})).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn ten_thousand_products_sync_down_through_serve() {
    let started = Instant::now();
    let server = start_with(10_000, &[("SHOPSYNC_SYNC_INTERVAL_SECS", "0")]);
    let op = completed(&server, "full_sync", Duration::from_secs(600)).await;
    eprintln!(
        "10,000-product full down-sync through serve: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(op["statistics"]["created"], 10_000, "{op}");
    assert_eq!(op["statistics"]["failed"], 0, "{op}");
    let (_, detail) = get(
        &server,
        &format!(
            "/api/v1/operations/{}",
            op["operation_uuid"].as_str().unwrap()
        ),
        Some("t0ken"),
    )
    .await;
    assert_eq!(detail["performance"]["items_processed"], 10_000);
    assert!(detail["performance"]["bottleneck_stage"].is_string());
}

#[tokio::test]
async fn a_webhook_delivered_three_times_and_out_of_order_is_one_change() {
    let server = start_with(3, &[("SHOPSYNC_SYNC_INTERVAL_SECS", "0")]);
    let op = completed(&server, "full_sync", Duration::from_secs(60)).await;
    let product = first_product(&server, &op).await;
    let id = product["id"].as_str().unwrap().to_owned();
    let newer = update_payload(&product, "Newest title", "2030-01-01T00:00:02Z");
    let older = update_payload(&product, "Older title", "2030-01-01T00:00:01Z");

    let mut answers = Vec::new();
    for _ in 0..3 {
        let (status, body) =
            post_webhook(&server, "products/update", &newer, "wh-new", SECRET).await;
        answers.push((status, body["status"].as_str().unwrap_or("").to_owned()));
    }
    assert_eq!(
        answers,
        vec![
            (200, "handled".to_owned()),
            (200, "duplicate".to_owned()),
            (200, "duplicate".to_owned())
        ]
    );
    // The older change arrives last, as a delivery of its own: dropped as stale.
    let (status, body) = post_webhook(&server, "products/update", &older, "wh-old", SECRET).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("stale")),
        "{body}"
    );

    let history = versions(&server, &id).await;
    assert_eq!(history.len(), 2, "one change: {history:?}");
    assert_eq!(history[0]["product_data"]["title"], "Newest title");
    let (_, now) = get(&server, &format!("/api/v1/products/{id}"), Some("t0ken")).await;
    assert_eq!(now["product"]["title"], "Newest title", "{now}");

    // The day's realtime operation counts that one change, as of now.
    let (_, list) = get(&server, "/api/v1/operations", Some("t0ken")).await;
    let realtime = list["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["operation_type"] == "realtime")
        .unwrap_or_else(|| panic!("a realtime operation: {list}"));
    let (_, detail) = get(
        &server,
        &format!(
            "/api/v1/operations/{}",
            realtime["operation_uuid"].as_str().unwrap()
        ),
        Some("t0ken"),
    )
    .await;
    let stats = &detail["operation"]["statistics"];
    assert_eq!(
        (&stats["processed"], &stats["updated"], &stats["created"]),
        (&json!(1), &json!(1), &json!(0)),
        "{detail}"
    );
    assert_eq!(detail["operation"]["status"], "in_progress");
}

#[tokio::test]
async fn a_local_edit_is_pushed_by_the_scheduler_and_its_echo_is_not_staged_again() {
    let server = start_with(3, &[("SHOPSYNC_SYNC_INTERVAL_SECS", "1")]);
    let op = completed(&server, "full_sync", Duration::from_secs(60)).await;
    let product = first_product(&server, &op).await;
    let id: shopsync_domain::ProductId = product["id"].as_str().unwrap().parse().unwrap();

    // The merchant edits the product in the local catalog (the same store serve uses).
    let backend = shopsync_store_sqlite::SqliteStore::open(server.dir.path(), "shopsync_").unwrap();
    let store = shopsync_store::Store::new(std::sync::Arc::new(backend));
    let local = store.product(id).await.unwrap().unwrap();
    let mut content = local.content.clone();
    content.title = "Edited in the local catalog".into();
    let edited = store
        .update_product_content(
            &local,
            content,
            shopsync_domain::ChangeSource::Local,
            &shopsync_domain::Actor::new("merchant").unwrap(),
            None,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    assert!(edited.needs_push());
    let deliveries_before = webhook_deliveries(&store).await;

    // The scheduler's up-sync pushes it; Shopify (the simulator) sends the change back.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = store.product(id).await.unwrap().unwrap();
        if !now.needs_push() && webhook_deliveries(&store).await > deliveries_before {
            break;
        }
        assert!(Instant::now() < deadline, "pushed and echoed: {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let a few more scheduler rounds (incremental down-syncs) pass over it too.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let history = versions(&server, &id.to_string()).await;
    assert_eq!(
        history.len(),
        2,
        "the sync, the local edit; the echo added nothing: {history:?}"
    );
    let after = store.product(id).await.unwrap().unwrap();
    assert_eq!(after.content.title, "Edited in the local catalog");
    assert!(!after.needs_push());
}

/// Webhook deliveries serve has taken (its dedupe ledger).
async fn webhook_deliveries(store: &shopsync_store::Store) -> usize {
    let mut n = 0;
    let mut next = None;
    loop {
        let page = store
            .backend()
            .scan(
                shopsync_store::Table::IdempotencyRecords,
                500,
                next.as_ref(),
            )
            .await
            .unwrap();
        n += page
            .items
            .iter()
            .filter(|i| {
                i.attrs
                    .get("key")
                    .and_then(|k| k.as_str())
                    .is_some_and(|k| k.starts_with("webhook:id:"))
            })
            .count();
        match page.next {
            Some(t) => next = Some(t),
            None => return n,
        }
    }
}

#[tokio::test]
async fn a_guard_rail_holds_an_operation_for_approval_through_serve() {
    // Configured to hold every operation: serve's first full down-sync waits.
    let server = start_with(
        5,
        &[
            ("SHOPSYNC_SYNC_INTERVAL_SECS", "0"),
            ("SHOPSYNC_REQUIRE_APPROVAL", "true"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = loop {
        let (_, body) = get(&server, "/api/v1/operations", Some("t0ken")).await;
        if let Some(op) = body["operations"]
            .as_array()
            .and_then(|ops| ops.iter().find(|o| o["status"] == "awaiting_approval"))
        {
            break op.clone();
        }
        assert!(Instant::now() < deadline, "nothing held: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(held["operation_type"], "full_sync");
    assert!(
        held["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains("configured to wait for approval")),
        "{held}"
    );
    let id = held["operation_uuid"].as_str().unwrap().to_owned();
    let (_, detail) = get(&server, &format!("/api/v1/operations/{id}"), Some("t0ken")).await;
    let rows = detail["staging"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "{detail}");
    assert!(rows.iter().all(|r| r["status"] == "pending"), "{detail}");
    let shopify_id = rows[0]["shopify"]["product_id"].clone();
    let (status, _) = get(
        &server,
        &format!("/api/v1/products/{shopify_id}"),
        Some("t0ken"),
    )
    .await;
    assert_eq!(status, 404, "nothing is applied while it waits");

    // An operator approves it from the command line, against the store serve is using.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shopsync"))
        .args(["operation", "approve", &id, "--by", "alice", "--data"])
        .arg(server.dir.path())
        .env_remove("SHOPIFY_ACCESS_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, detail) = get(&server, &format!("/api/v1/operations/{id}"), Some("t0ken")).await;
    assert_eq!(detail["operation"]["status"], "completed", "{detail}");
    assert_eq!(detail["operation"]["statistics"]["created"], 5, "{detail}");
    let (status, product) = get(
        &server,
        &format!("/api/v1/products/{shopify_id}"),
        Some("t0ken"),
    )
    .await;
    assert_eq!(status, 200, "{product}");
}

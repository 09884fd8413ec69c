//! `shopsync serve` as a merchant and Shopify use it: the binary, real HTTP.

use crate::common;

use common::{get, post_webhook, start, start_with, stored};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test]
async fn serve_mirrors_the_simulator_takes_signed_webhooks_once_and_guards_its_api() {
    let server = start();
    assert_eq!(get(&server, "/api/v1/operations", None).await.0, 401);
    assert_eq!(
        get(&server, "/api/v1/operations", Some("wrong")).await.0,
        401
    );

    // The initial full down-sync of the seeded simulator.
    let deadline = Instant::now() + Duration::from_secs(60);
    let operation = loop {
        let (status, body) = get(&server, "/api/v1/operations", Some("t0ken")).await;
        assert_eq!(status, 200);
        if let Some(op) = body["operations"]
            .as_array()
            .and_then(|ops| ops.iter().find(|o| o["status"] == "completed"))
        {
            break op.clone();
        }
        assert!(Instant::now() < deadline, "no completed down-sync: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(operation["statistics"]["created"], 6);
    let (_, detail) = get(
        &server,
        &format!(
            "/api/v1/operations/{}",
            operation["operation_uuid"].as_str().unwrap()
        ),
        Some("t0ken"),
    )
    .await;
    assert_eq!(detail["performance"]["items_processed"], 6, "{detail}");
    let rows = detail["staging"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    let local_id = rows[0]["source_product_id"].as_str().unwrap().to_owned();
    let (status, product) = get(
        &server,
        &format!("/api/v1/products/{local_id}"),
        Some("t0ken"),
    )
    .await;
    assert_eq!(status, 200);
    let shopify_id = product["product"]["shopify_id"].as_u64().unwrap();
    assert!(shopify_id > 1 << 53);

    // The same product by Shopify id and by GID.
    for id in [
        shopify_id.to_string(),
        format!("gid://shopify/Product/{shopify_id}"),
    ] {
        let (status, by_shopify) = get(
            &server,
            &format!("/api/v1/products/{}", id.replace('/', "%2F")),
            Some("t0ken"),
        )
        .await;
        assert_eq!(status, 200, "{id}");
        assert_eq!(by_shopify["product"]["id"], local_id.as_str());
    }

    // A products/update signed as Shopify would: staged, applied, versioned.
    let variants: Vec<Value> = product["product"]["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| json!({"id": v["shopify_id"], "title": v["title"], "price": v["price"], "sku": v["sku"], "inventory_item_id": v["inventory_item_id"], "option1": v["option_values"][0], "option2": v["option_values"][1]}))
        .collect();
    let update = json!({
        "id": shopify_id,
        "title": "Renamed by a webhook",
        "updated_at": "2030-01-01T00:00:00Z",
        "status": "active",
        "tags": "a, b",
        "variants": variants,
        "variant_gids": variants.iter().map(|v| json!({"admin_graphql_api_id": format!("gid://shopify/ProductVariant/{}", v["id"])})).collect::<Vec<_>>(),
    });
    let secret = "shopsync-dev-webhook-secret";
    let (status, body) = post_webhook(&server, "products/update", &update, "wh-1", secret).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "handled");
    let (_, versions) = get(
        &server,
        &format!("/api/v1/products/{local_id}/versions"),
        Some("t0ken"),
    )
    .await;
    let versions = versions["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["product_data"]["title"], "Renamed by a webhook");

    // Delivered again: acknowledged, not handled again.
    let (status, body) = post_webhook(&server, "products/update", &update, "wh-1", secret).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")));
    // Forged: refused.
    let (status, body) = post_webhook(
        &server,
        "products/update",
        &update,
        "wh-2",
        "not-the-secret",
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("bad_hmac")));
    let (_, versions) = get(
        &server,
        &format!("/api/v1/products/{local_id}/versions"),
        Some("t0ken"),
    )
    .await;
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);

    // Missing headers: 400 with the reason.
    let response = reqwest::Client::new()
        .post(format!("{}/webhooks/shopify", server.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        get(&server, "/api/v1/products/not-an-id", Some("t0ken"))
            .await
            .0,
        400
    );

    // A GID as Shopify writes it, slashes and all.
    let gid = format!("gid://shopify/Product/{shopify_id}");
    let (status, by_gid) = get(&server, &format!("/api/v1/products/{gid}"), Some("t0ken")).await;
    assert_eq!(status, 200, "{by_gid}");
    assert_eq!(by_gid["product"]["id"], local_id.as_str());

    // Listings come in pages: `limit`, then `after` the `next` token.
    let versions_page = |query: String| {
        let path = format!("/api/v1/products/{gid}/versions?{query}");
        let server = &server;
        async move { get(server, &path, Some("t0ken")).await }
    };
    let (status, first) = versions_page("limit=1".into()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["versions"][0]["version_number"], 2, "{first}");
    let next = first["next"].as_str().expect("a next token").to_owned();
    let (_, second) = versions_page(format!("limit=1&after={next}")).await;
    assert_eq!(second["versions"][0]["version_number"], 1, "{second}");
    let (status, page) = get(&server, "/api/v1/operations?limit=1", Some("t0ken")).await;
    assert_eq!(status, 200);
    assert_eq!(page["operations"].as_array().unwrap().len(), 1);
    let next = page["next"].as_str().expect("more operations").to_owned();
    let (_, older) = get(
        &server,
        &format!("/api/v1/operations?limit=1&after={next}"),
        Some("t0ken"),
    )
    .await;
    assert_ne!(
        older["operations"][0]["operation_uuid"],
        page["operations"][0]["operation_uuid"]
    );
    for (query, code) in [
        ("limit=0", "bad_limit"),
        ("limit=1001", "bad_limit"),
        ("limit=many", "bad_query"),
        ("after=not-a-token", "bad_cursor"),
    ] {
        let (status, body) = get(
            &server,
            &format!("/api/v1/operations?{query}"),
            Some("t0ken"),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(code)),
            "{query}"
        );
    }
    let (status, body) = get(&server, "/api/v1/nowhere", Some("t0ken")).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
}

/// A host killed in the middle of its first full down-sync (aborted by the crash hook
/// right after its second batch of products was written, as `kill -9` would) loses no work:
/// the job it held is handed out again when it starts, the operation goes on from its
/// checkpoint under its own id, and ends with every product once.
#[tokio::test]
async fn a_host_killed_mid_sync_finishes_that_sync_when_it_starts_again() {
    const PRODUCTS: usize = 3_000;
    let quiet = ("SHOPSYNC_SYNC_INTERVAL_SECS", "0");
    let mut server = start_with(PRODUCTS, &[quiet, ("SHOPSYNC_CRASH_AT", "batch-written:2")]);
    let exit = server
        .wait_exit(Duration::from_secs(60))
        .expect("the crash hook stopped the host");
    assert!(!exit.success(), "aborted: {exit:?}");
    let (products, _, operations) = stored(server.dir.path()).await;
    assert_eq!(operations.len(), 1);
    let crashed = operations[0].clone();
    assert_eq!(crashed.status, shopsync_domain::OperationStatus::InProgress);
    assert!(
        products.len() >= 2 * 1_024 && products.len() < PRODUCTS,
        "{} products written before the crash",
        products.len()
    );
    assert!(
        !crashed.stalled(chrono::Utc::now()),
        "its lease still runs: not yet given up"
    );

    let server = server.restart(PRODUCTS, &[quiet]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let done = loop {
        let (status, body) = get(
            &server,
            &format!("/api/v1/operations/{}", crashed.operation_uuid),
            Some("t0ken"),
        )
        .await;
        assert_eq!(status, 200, "{}", body["error"]);
        if body["operation"]["status"] == "completed" {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "not completed: {}",
            body["operation"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        done["operation"]["statistics"]["created"], PRODUCTS as u64,
        "{done}"
    );
    assert_eq!(done["operation"]["stalled"], false);
    let (_, list) = get(&server, "/api/v1/operations", Some("t0ken")).await;
    assert_eq!(
        list["operations"].as_array().unwrap().len(),
        1,
        "the same operation went on; none was started over: {list}"
    );
    let dir = server.stop();
    let (products, versions, _) = stored(dir.path()).await;
    assert_eq!(products.len(), PRODUCTS, "every product");
    assert_eq!(versions, PRODUCTS, "once: one version each");
    assert!(products.iter().all(|p| p.version == 1));
}

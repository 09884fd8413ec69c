//! The handler driven with API Gateway / Function URL events in the shapes AWS sends
//! (aws_lambda_events' samples), carrying Shopify's real products/update payload.

use lambda_http::request::from_str;
use serde_json::Value;
use shopsync_domain::Actor;
use shopsync_engine::intake::WebhookIntake;
use shopsync_engine::jobs::{Job, LocalQueue};
use shopsync_engine::ledger::StoreLedger;
use shopsync_shopify::webhook::{sign, WebhookConfig};
use shopsync_store::Store;
use std::sync::Arc;

const SHOP: &str = "shop.myshopify.com";
const SECRET: &str = "hush";
const PAYLOAD: &str = include_str!("../../../tests/fixtures/shopify/webhooks/products-update.json");

async fn intake() -> (WebhookIntake, Arc<LocalQueue>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let backend = shopsync_store_sqlite::SqliteStore::open(dir.path(), "t_").unwrap();
    shopsync_store::migrate::migrate(&backend, Default::default())
        .await
        .unwrap();
    let store = Store::new(Arc::new(backend));
    let queue = Arc::new(LocalQueue::default());
    let intake = WebhookIntake {
        ledger: Arc::new(StoreLedger::new(store.clone())),
        store,
        config: WebhookConfig {
            shop_domain: SHOP.into(),
            secret: SECRET.into(),
            previous_secret: None,
        },
        queue: queue.clone(),
        client: None,
        actor: Actor::new("system:webhooks").unwrap(),
        realtime: Default::default(),
    };
    (intake, queue, dir)
}

/// The HTTP API (payload 2.0, also the Function URL format) sample with a signed delivery.
fn http_api_event(method: &str, body: &str, hmac: &str, webhook_id: &str) -> String {
    let mut event: Value = serde_json::from_str(include_str!(
        "fixtures/example-apigw-v2-request-no-authorizer.json"
    ))
    .unwrap();
    event["rawPath"] = "/webhooks/shopify".into();
    event["requestContext"]["http"]["method"] = method.into();
    event["requestContext"]["http"]["path"] = "/webhooks/shopify".into();
    let headers = event["headers"].as_object_mut().unwrap();
    headers.insert("content-type".into(), "application/json".into());
    headers.insert("content-length".into(), body.len().to_string().into());
    headers.insert("x-shopify-topic".into(), "products/update".into());
    headers.insert("x-shopify-hmac-sha256".into(), hmac.into());
    headers.insert("x-shopify-shop-domain".into(), SHOP.into());
    headers.insert("x-shopify-webhook-id".into(), webhook_id.into());
    headers.insert("x-shopify-api-version".into(), "2026-07".into());
    event["body"] = body.into();
    event.to_string()
}

fn answer(response: &lambda_http::Response<lambda_http::Body>) -> (u16, Value) {
    let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    (response.status().as_u16(), body)
}

#[tokio::test]
async fn a_signed_delivery_is_staged_enqueued_once_and_answered_200() {
    let (intake, queue, _dir) = intake().await;
    let hmac = sign(SECRET, PAYLOAD.as_bytes());
    let event = http_api_event(
        "POST",
        PAYLOAD,
        &hmac,
        "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
    );
    let response = shopify_webhook::handle(&intake, from_str(&event).unwrap()).await;
    let (status, body) = answer(&response);
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("staged")),
        "{body}"
    );
    assert_eq!(response.headers()["content-type"], "application/json");
    let message = queue.receive().await.unwrap();
    let Job::ApplyRows { rows, .. } = &message.job else {
        panic!("the apply step is enqueued, got {:?}", message.job);
    };
    assert_eq!(rows.len(), 1);

    // Shopify retries the same delivery: acknowledged, nothing staged or enqueued again.
    let response = shopify_webhook::handle(&intake, from_str(&event).unwrap()).await;
    let (status, body) = answer(&response);
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")));
    let rows = intake
        .store
        .backend()
        .scan(shopsync_store::Table::ProductsStaging, 10, None)
        .await
        .unwrap();
    assert_eq!(rows.items.len(), 1);
}

#[tokio::test]
async fn bad_signatures_and_methods_get_clear_errors() {
    let (intake, _queue, _dir) = intake().await;
    let forged = sign("not-the-secret", PAYLOAD.as_bytes());
    let response = shopify_webhook::handle(
        &intake,
        from_str(&http_api_event("POST", PAYLOAD, &forged, "w-1")).unwrap(),
    )
    .await;
    let (status, body) = answer(&response);
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].is_string() && body["message"].is_string());
    let hmac = sign(SECRET, PAYLOAD.as_bytes());
    let response = shopify_webhook::handle(
        &intake,
        from_str(&http_api_event("GET", PAYLOAD, &hmac, "w-2")).unwrap(),
    )
    .await;
    assert_eq!(answer(&response).0, 405);
}

#[tokio::test]
async fn a_rest_api_event_with_a_base64_body_verifies_over_the_decoded_bytes() {
    use base64::Engine;
    let (intake, queue, _dir) = intake().await;
    let hmac = sign(SECRET, PAYLOAD.as_bytes());
    let mut event: Value =
        serde_json::from_str(include_str!("fixtures/example-apigw-request.json")).unwrap();
    event["httpMethod"] = "POST".into();
    event["path"] = "/webhooks/shopify".into();
    event["resource"] = "/webhooks/shopify".into();
    event["requestContext"]["httpMethod"] = "POST".into();
    event["multiValueHeaders"] = serde_json::json!({});
    event["headers"] = serde_json::json!({
        "Content-Type": "application/json",
        "X-Shopify-Topic": "products/update",
        "X-Shopify-Hmac-Sha256": hmac,
        "X-Shopify-Shop-Domain": SHOP,
        "X-Shopify-Webhook-Id": "rest-1",
    });
    event["isBase64Encoded"] = true.into();
    event["body"] = base64::engine::general_purpose::STANDARD
        .encode(PAYLOAD)
        .into();
    let response = shopify_webhook::handle(&intake, from_str(&event.to_string()).unwrap()).await;
    let (status, body) = answer(&response);
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("staged")),
        "{body}"
    );
    assert!(queue.receive().await.is_some());
}

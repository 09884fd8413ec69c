//! People in the loop, end to end through `shopsync serve` and its simulator: an operator's
//! local edit meets a Shopify edit of the same field, a viewer may look but not decide, the
//! operator decides, and the sync they ask for pushes their choice.

use crate::common;

use common::{get, post_webhook, send, start_with, Server};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SECRET: &str = "shopsync-dev-webhook-secret";
const TOKENS: &str = "t0ken:alice:admin,op-token:otto:operator,view-token:vera:viewer";

async fn operation(server: &Server, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = get(
            server,
            &format!("/api/v1/operations/{id}"),
            Some("view-token"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let status = body["operation"]["status"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if ["completed", "failed", "awaiting_approval", "cancelled"].contains(&status.as_str()) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "operation {id} did not end: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The barcode the simulator holds for a variant, asked over its GraphQL Admin API.
async fn simulator_barcode(server: &Server, variant: u64) -> Option<String> {
    let url = server
        .banner
        .lines()
        .find_map(|l| l.split("Shopify simulator at ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("serve names its simulator")
        .to_owned();
    let version = shopsync_shopify::ClientConfig::new("x.myshopify.com", "t").api_version;
    let answer: Value = reqwest::Client::new()
        .post(format!("{url}/admin/api/{version}/graphql.json"))
        .header("X-Shopify-Access-Token", "simulator")
        .json(&json!({
            "query": "query Barcode($id: ID!) { productVariant(id: $id) { barcode } }",
            "variables": {"id": format!("gid://shopify/ProductVariant/{variant}")}
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["data"]["productVariant"]["barcode"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test]
async fn a_barcode_edited_here_and_in_shopify_is_settled_by_an_operator_and_pushed() {
    let server = start_with(
        2,
        &[
            ("SHOPSYNC_SYNC_INTERVAL_SECS", "0"),
            ("SHOPSYNC_API_TOKENS", TOKENS),
        ],
    );
    // The first down-sync.
    let deadline = Instant::now() + Duration::from_secs(60);
    let listed = loop {
        let (_, listed) = get(&server, "/api/v1/products?limit=10", Some("view-token")).await;
        if listed["products"].as_array().is_some_and(|p| p.len() == 2) {
            break listed;
        }
        assert!(Instant::now() < deadline, "no catalog: {listed}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let product = listed["products"][0]["product"].clone();
    let id = product["id"].as_str().unwrap().to_owned();
    let variant = product["variants"][0]["shopify_id"].as_u64().unwrap();

    // The operator sets the barcode locally.
    let (status, edited) = send(
        &server,
        Method::PATCH,
        &format!("/api/v1/products/{id}"),
        Some("op-token"),
        Some(&json!({"variants": [{"id": variant, "barcode": "4006381333931"}]})),
    )
    .await;
    assert_eq!(status, 200, "{edited}");
    // Shopify's own edit of the same barcode arrives by webhook before any push.
    let variants: Vec<Value> = product["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            json!({"id": v["shopify_id"], "title": v["title"], "price": v["price"], "sku": v["sku"],
                   "barcode": if v["shopify_id"].as_u64() == Some(variant) { json!("036000291452") } else { v["barcode"].clone() },
                   "inventory_item_id": v["inventory_item_id"], "option1": v["option_values"][0], "option2": v["option_values"][1]})
        })
        .collect();
    let update = json!({
        "id": product["shopify_id"],
        "title": product["title"],
        "body_html": product["body_html"],
        "vendor": product["vendor"],
        "product_type": product["product_type"],
        "handle": product["handle"],
        "tags": product["tags"].as_array().map(|t| t.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")),
        "updated_at": "2030-01-01T00:00:00Z",
        "status": product["status"],
        "variants": variants,
        "variant_gids": variants.iter().map(|v| json!({"admin_graphql_api_id": format!("gid://shopify/ProductVariant/{}", v["id"])})).collect::<Vec<_>>(),
    });
    let (status, delivered) =
        post_webhook(&server, "products/update", &update, "wh-barcode", SECRET).await;
    assert_eq!(status, 200, "{delivered}");

    // One open conflict on the barcode, with base, local and remote.
    let (_, conflicts) = get(
        &server,
        &format!("/api/v1/conflicts?product={id}"),
        Some("view-token"),
    )
    .await;
    let open: Vec<&Value> = conflicts["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "open")
        .collect();
    assert_eq!(open.len(), 1, "{conflicts}");
    let conflict = open[0];
    assert!(
        conflict["field_name"]
            .as_str()
            .unwrap()
            .ends_with("/barcode"),
        "{conflict}"
    );
    assert_eq!(conflict["local_value"], "4006381333931");
    assert_eq!(conflict["remote_value"], "036000291452");
    assert!(conflict.get("base_value").is_some(), "{conflict}");
    let conflict_id = conflict["conflict_uuid"].as_str().unwrap().to_owned();

    // A viewer may not settle it; the operator does.
    let resolve = format!("/api/v1/conflicts/{conflict_id}/resolve");
    let choice = json!({"strategy": "manual", "value": "96385074", "note": "read off the box"});
    let (status, _) = send(
        &server,
        Method::POST,
        &resolve,
        Some("view-token"),
        Some(&choice),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = send(&server, Method::POST, &resolve, None, Some(&choice)).await;
    assert_eq!(status, 401);
    let (status, resolved) = send(
        &server,
        Method::POST,
        &resolve,
        Some("op-token"),
        Some(&choice),
    )
    .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["conflict"]["resolution"]["resolved_by"], "otto");

    // Not pushed yet (the simulator holds what it was seeded with: the delivery above
    // stands for an edit in Shopify's admin); the up-sync the operator asks for pushes it.
    assert_eq!(
        simulator_barcode(&server, variant).await.as_deref(),
        product["variants"][0]["barcode"].as_str()
    );
    let (status, started) = send(
        &server,
        Method::POST,
        "/api/v1/sync",
        Some("op-token"),
        Some(&json!({"direction": "up"})),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let done = operation(
        &server,
        started["operation_id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done["operation"]["status"], "completed", "{done}");
    assert_eq!(done["operation"]["created_by"], "otto");
    assert_eq!(
        simulator_barcode(&server, variant).await.as_deref(),
        Some("96385074")
    );
    let (_, after) = get(
        &server,
        &format!("/api/v1/products/{id}"),
        Some("view-token"),
    )
    .await;
    assert_eq!(after["needs_push"], false, "{after}");
    let (_, shown) = get(
        &server,
        &format!("/api/v1/conflicts/{conflict_id}"),
        Some("view-token"),
    )
    .await;
    assert_eq!(shown["conflict"]["status"], "resolved");
    assert_eq!(shown["conflict"]["resolution"]["resolved_by"], "otto");
}

#[tokio::test]
async fn an_admin_rolls_a_pushed_edit_back_through_serve_and_the_simulator_has_it_back() {
    let server = start_with(
        1,
        &[
            ("SHOPSYNC_SYNC_INTERVAL_SECS", "0"),
            ("SHOPSYNC_API_TOKENS", TOKENS),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let product = loop {
        let (_, listed) = get(&server, "/api/v1/products?limit=10", Some("view-token")).await;
        if let Some(product) = listed["products"].get(0) {
            break product["product"].clone();
        }
        assert!(Instant::now() < deadline, "no catalog: {listed}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let id = product["id"].as_str().unwrap().to_owned();
    let variant = product["variants"][0]["shopify_id"].as_u64().unwrap();
    let seeded = simulator_barcode(&server, variant).await;

    let (status, edited) = send(
        &server,
        Method::PATCH,
        &format!("/api/v1/products/{id}"),
        Some("op-token"),
        Some(&json!({"variants": [{"id": variant, "barcode": "4006381333931"}]})),
    )
    .await;
    assert_eq!(status, 200, "{edited}");
    let edit = edited["operation_id"].as_str().unwrap().to_owned();
    let (_, started) = send(
        &server,
        Method::POST,
        "/api/v1/sync",
        Some("op-token"),
        Some(&json!({"direction": "up"})),
    )
    .await;
    operation(
        &server,
        started["operation_id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        simulator_barcode(&server, variant).await.as_deref(),
        Some("4006381333931")
    );

    let path = format!("/api/v1/operations/{edit}/rollback");
    let (status, _) = send(&server, Method::POST, &path, Some("op-token"), None).await;
    assert_eq!(status, 403, "an admin's");
    let (status, accepted) = send(&server, Method::POST, &path, Some("t0ken"), None).await;
    assert_eq!(status, 202, "{accepted}");
    let rollback = accepted["rollback_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let record = loop {
        let (_, record) = get(
            &server,
            &format!("/api/v1/rollbacks/{rollback}"),
            Some("view-token"),
        )
        .await;
        if record["completed_at"].is_string() {
            break record;
        }
        assert!(
            Instant::now() < deadline,
            "the rollback did not end: {record}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["requested_by"], "alice");
    assert_eq!(simulator_barcode(&server, variant).await, seeded);
}

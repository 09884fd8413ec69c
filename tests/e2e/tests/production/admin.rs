//! People in the loop on the production path: the admin API's Lambda functions invoked with
//! API Gateway HTTP API events whose JWT claims name the person and their groups (moto runs
//! no authorizer: the claims in the event are what the handler trusts, as behind API
//! Gateway's), over DynamoDB and SQS on moto, with the worker draining the jobs they queue.

use crate::aws::Deployment;
use crate::journeys::{drain, function_url_event, simulator, SHOP};
use lambda_http::http::Method;
use serde_json::{json, Value};
use shopsync_runtime::{WebhookHost, WorkerHost};
use std::time::Duration;

/// An HTTP API (payload 2.0) request as API Gateway sends it after its JWT authorizer passed
/// the token: `claims` as the authorizer hands them on (a list claim as `[a b]`).
fn api_event(
    method: &Method,
    path_and_query: &str,
    claims: Option<Value>,
    body: Option<&Value>,
) -> lambda_http::Request {
    let mut event: Value = serde_json::from_str(include_str!(
        "../../../../functions/shopify-webhook/tests/fixtures/example-apigw-v2-request-no-authorizer.json"
    ))
    .expect("sample");
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    event["rawPath"] = path.into();
    event["rawQueryString"] = query.into();
    event["routeKey"] = format!("{method} /api/v1/{{proxy+}}").into();
    event["requestContext"]["http"]["method"] = method.as_str().into();
    event["requestContext"]["http"]["path"] = path.into();
    if let Some(claims) = claims {
        event["requestContext"]["authorizer"] = json!({"jwt": {"claims": claims, "scopes": null}});
    }
    if let Some(body) = body {
        event["headers"]["content-type"] = "application/json".into();
        event["body"] = body.to_string().into();
    }
    lambda_http::request::from_str(&event.to_string()).expect("an HTTP API event")
}

fn person(email: &str, groups: &str) -> Option<Value> {
    Some(json!({"email": email, "cognito:groups": groups, "sub": "0000", "token_use": "access"}))
}

async fn answer(router: &axum::Router, request: lambda_http::Request) -> (u16, Value) {
    let response = admin_api::handle(router, request).await;
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto's server: run tests/run.sh"]
async fn an_operator_settles_a_conflict_through_the_lambda_handlers_and_the_worker_pushes_it() {
    let sim = simulator(2).await;
    let deployment = Deployment::provision(SHOP, &sim.url, 5).await;
    let worker = WorkerHost::from_env(&deployment.env)
        .await
        .expect("worker host");
    let webhook = WebhookHost::from_env(&deployment.env)
        .await
        .expect("webhook host");
    let state = admin_api::state_from_env(&deployment.env)
        .await
        .expect("admin api state");
    let admin = admin_api::router(state.clone());
    let conflicts = conflict_resolver::router(state);
    let operator = || person("otto@example.com", "[staff operator]");
    let viewer = || person("vera@example.com", "[viewer]");

    // No identity, no entry; the document is anyone's.
    let (status, _) = answer(
        &admin,
        api_event(&Method::GET, "/api/v1/operations", None, None),
    )
    .await;
    assert_eq!(status, 401);
    let (status, document) = answer(
        &admin,
        api_event(&Method::GET, "/api/v1/openapi.json", None, None),
    )
    .await;
    assert_eq!((status, document["openapi"].as_str()), (200, Some("3.1.0")));
    // Each function answers its own routes only.
    let (status, _) = answer(
        &conflicts,
        api_event(&Method::GET, "/api/v1/operations", viewer(), None),
    )
    .await;
    assert_eq!(status, 404);

    // The operator asks for the first sync: recorded pending by them, run by the worker.
    let (status, started) = answer(
        &admin,
        api_event(
            &Method::POST,
            "/api/v1/sync",
            operator(),
            Some(&json!({"direction": "down", "mode": "full"})),
        ),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    drain(&deployment, &worker, Duration::from_secs(120)).await;
    let id = started["operation_id"].as_str().unwrap().to_owned();
    let (_, done) = answer(
        &admin,
        api_event(
            &Method::GET,
            &format!("/api/v1/operations/{id}"),
            viewer(),
            None,
        ),
    )
    .await;
    assert_eq!(done["operation"]["status"], "completed", "{done}");
    assert_eq!(done["operation"]["created_by"], "otto@example.com");

    let (_, listed) = answer(
        &admin,
        api_event(&Method::GET, "/api/v1/products?limit=10", viewer(), None),
    )
    .await;
    let product = listed["products"][0]["product"].clone();
    let product_id = product["id"].as_str().unwrap().to_owned();
    let variant = product["variants"][0]["shopify_id"].as_u64().unwrap();
    assert!(
        product["variants"][0].get("cost").is_none(),
        "costs are hidden from viewers"
    );

    // A viewer may not edit; the operator edits the barcode locally.
    let edit = json!({"variants": [{"id": variant, "barcode": "4006381333931"}]});
    let path = format!("/api/v1/products/{product_id}");
    let (status, _) = answer(
        &admin,
        api_event(&Method::PATCH, &path, viewer(), Some(&edit)),
    )
    .await;
    assert_eq!(status, 403);
    let (status, edited) = answer(
        &admin,
        api_event(&Method::PATCH, &path, operator(), Some(&edit)),
    )
    .await;
    assert_eq!(status, 200, "{edited}");

    // Shopify's edit of the same barcode arrives by webhook before any push.
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
        "id": product["shopify_id"], "title": product["title"], "body_html": product["body_html"],
        "vendor": product["vendor"], "product_type": product["product_type"], "handle": product["handle"],
        "tags": product["tags"].as_array().map(|t| t.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")),
        "updated_at": "2030-01-01T00:00:00Z", "status": product["status"], "variants": variants,
        "variant_gids": variants.iter().map(|v| json!({"admin_graphql_api_id": format!("gid://shopify/ProductVariant/{}", v["id"])})).collect::<Vec<_>>(),
    });
    let event = function_url_event(&update.to_string(), "e2e-barcode");
    let request = lambda_http::request::from_str(&event).expect("a Function URL event");
    let response = shopify_webhook::handle_with(&webhook, request).await;
    assert_eq!(response.status().as_u16(), 200);
    drain(&deployment, &worker, Duration::from_secs(60)).await;

    // One open conflict, through the conflict-resolver.
    let (_, found) = answer(
        &conflicts,
        api_event(
            &Method::GET,
            &format!("/api/v1/conflicts?product={product_id}&status=open"),
            viewer(),
            None,
        ),
    )
    .await;
    let open = found["conflicts"].as_array().expect("conflicts");
    assert_eq!(open.len(), 1, "{found}");
    assert!(open[0]["field_name"]
        .as_str()
        .unwrap()
        .ends_with("/barcode"));
    assert_eq!(open[0]["remote_value"], "036000291452");
    let resolve = format!(
        "/api/v1/conflicts/{}/resolve",
        open[0]["conflict_uuid"].as_str().unwrap()
    );
    let choice = json!({"strategy": "manual", "value": "96385074"});
    let (status, _) = answer(
        &conflicts,
        api_event(&Method::POST, &resolve, viewer(), Some(&choice)),
    )
    .await;
    assert_eq!(status, 403);
    let (status, resolved) = answer(
        &conflicts,
        api_event(&Method::POST, &resolve, operator(), Some(&choice)),
    )
    .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(
        resolved["conflict"]["resolution"]["resolved_by"],
        "otto@example.com"
    );

    // The up-sync the operator asks for pushes the choice.
    let (status, _) = answer(
        &admin,
        api_event(
            &Method::POST,
            "/api/v1/sync",
            operator(),
            Some(&json!({"direction": "up"})),
        ),
    )
    .await;
    assert_eq!(status, 202);
    drain(&deployment, &worker, Duration::from_secs(60)).await;
    let shopify_id = product["shopify_id"].as_u64().unwrap();
    let pushed = sim.with_shop(|s| {
        s.product(shopify_id).and_then(|p| {
            p.variants
                .iter()
                .find(|v| v.id == variant)
                .and_then(|v| v.barcode.clone())
        })
    });
    assert_eq!(pushed.as_deref(), Some("96385074"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto's server: run tests/run.sh"]
async fn an_admin_rolls_an_edit_back_through_the_rollback_function_and_the_worker_pushes_it() {
    let sim = simulator(2).await;
    let deployment = Deployment::provision(SHOP, &sim.url, 5).await;
    let worker = WorkerHost::from_env(&deployment.env)
        .await
        .expect("worker host");
    let state = admin_api::state_from_env(&deployment.env)
        .await
        .expect("admin api state");
    let admin_routes = admin_api::router(state.clone());
    let rollbacks = rollback_function::router(state);
    let operator = || person("otto@example.com", "[operator]");
    let admin = || person("ada@example.com", "[viewer admin]");
    let viewer = || person("vera@example.com", "[viewer]");

    let (status, _) = answer(
        &admin_routes,
        api_event(
            &Method::POST,
            "/api/v1/sync",
            operator(),
            Some(&json!({"direction": "down", "mode": "full"})),
        ),
    )
    .await;
    assert_eq!(status, 202);
    drain(&deployment, &worker, Duration::from_secs(120)).await;
    let (_, listed) = answer(
        &admin_routes,
        api_event(&Method::GET, "/api/v1/products?limit=1", viewer(), None),
    )
    .await;
    let product = listed["products"][0]["product"].clone();
    let product_id = product["id"].as_str().unwrap().to_owned();
    let shopify_id = product["shopify_id"].as_u64().unwrap();
    let original = product["title"].as_str().unwrap().to_owned();

    // The operator's edit reaches Shopify with the next up-sync.
    let (status, edited) = answer(
        &admin_routes,
        api_event(
            &Method::PATCH,
            &format!("/api/v1/products/{product_id}"),
            operator(),
            Some(&json!({"title": "A regrettable title"})),
        ),
    )
    .await;
    assert_eq!(status, 200, "{edited}");
    let edit = edited["operation_id"].as_str().unwrap().to_owned();
    let (status, _) = answer(
        &admin_routes,
        api_event(
            &Method::POST,
            "/api/v1/sync",
            operator(),
            Some(&json!({"direction": "up"})),
        ),
    )
    .await;
    assert_eq!(status, 202);
    drain(&deployment, &worker, Duration::from_secs(60)).await;
    let title = || sim.with_shop(|s| s.product(shopify_id).map(|p| p.title.clone()));
    assert_eq!(title().as_deref(), Some("A regrettable title"));

    // Rollbacks are the rollback function's, and an admin's.
    let path = format!("/api/v1/operations/{edit}/rollback");
    let (status, _) = answer(
        &admin_routes,
        api_event(&Method::POST, &path, admin(), None),
    )
    .await;
    assert_eq!(status, 404, "not the admin-api's route");
    let (status, _) = answer(
        &rollbacks,
        api_event(&Method::POST, &path, operator(), None),
    )
    .await;
    assert_eq!(status, 403);
    let (status, accepted) = answer(
        &rollbacks,
        api_event(
            &Method::POST,
            &path,
            admin(),
            Some(&json!({"type": "full"})),
        ),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    drain(&deployment, &worker, Duration::from_secs(60)).await;
    let rollback = accepted["rollback_id"].as_str().unwrap();
    let (status, record) = answer(
        &rollbacks,
        api_event(
            &Method::GET,
            &format!("/api/v1/rollbacks/{rollback}"),
            viewer(),
            None,
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["requested_by"], "ada@example.com");
    assert_eq!(record["restored"][0]["shopify"], "pushed");
    assert_eq!(
        title().as_deref(),
        Some(original.as_str()),
        "Shopify has the title back"
    );
    let (_, operation) = answer(
        &admin_routes,
        api_event(
            &Method::GET,
            &format!("/api/v1/operations/{edit}"),
            viewer(),
            None,
        ),
    )
    .await;
    assert_eq!(
        operation["operation"]["status"], "rolled_back",
        "{operation}"
    );

    // The operator restores the edited title from its version, through the same function.
    let (status, restored) = answer(
        &rollbacks,
        api_event(
            &Method::POST,
            &format!("/api/v1/products/{product_id}/restore"),
            operator(),
            Some(&json!({"version": 2, "fields": ["title"]})),
        ),
    )
    .await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["product"]["title"], "A regrettable title");
    assert_eq!(restored["needs_push"], true);
}

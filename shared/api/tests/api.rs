//! The admin API on the embedded store, driven through its router as a host serves it.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use shopsync_api::{ApiState, Authenticator, VerifiedClaims};
use shopsync_domain::{
    Actor, ChangeSource, ConflictValues, Decision, FieldPath, OperationId, Product, ProductId,
    Role, SyncConflict, VersionStamp,
};
use shopsync_engine::jobs::{Job, JobMessage, JobQueue, QueueError};
use shopsync_store::{ProductCommit, Store};
use std::sync::Arc;
use tower::ServiceExt;

const TOKENS: &str = "view-token:vera:viewer,op-token:otto:operator,admin-token:ada:admin";

struct Api {
    _dir: tempfile::TempDir,
    store: Store,
    router: axum::Router,
    queued: Arc<Recorded>,
}

/// A jobs queue that keeps what it is sent.
#[derive(Default)]
struct Recorded(std::sync::Mutex<Vec<JobMessage>>);

#[async_trait::async_trait]
impl JobQueue for Recorded {
    async fn send(&self, messages: Vec<JobMessage>) -> Result<(), QueueError> {
        self.0.lock().unwrap().extend(messages);
        Ok(())
    }
}

impl Recorded {
    fn jobs(&self) -> Vec<JobMessage> {
        self.0.lock().unwrap().clone()
    }
}

async fn api_with(auth: Authenticator) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let backend = shopsync_store_sqlite::SqliteStore::open(dir.path(), "api_").unwrap();
    shopsync_store::migrate::migrate(&backend, Default::default())
        .await
        .unwrap();
    let store = Store::new(Arc::new(backend));
    let queued = Arc::new(Recorded::default());
    let router = shopsync_api::router(Arc::new(ApiState {
        store: store.clone(),
        auth,
        jobs: queued.clone(),
    }));
    Api {
        _dir: dir,
        store,
        router,
        queued,
    }
}

async fn api() -> Api {
    api_with(Authenticator::tokens(TOKENS).unwrap()).await
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        self.answer(request).await
    }

    async fn answer(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A product with a cost on its variants, stored as a down-sync would.
    async fn product(&self) -> Product {
        let mut content = shopsync_domain::testing::sample_content(2);
        for variant in &mut content.variants {
            variant.cost = Some("4.25".parse().unwrap());
        }
        let mut product = Product::new(ProductId::generate(), content, chrono::Utc::now());
        product.shopify_id = Some(shopsync_domain::ShopifyProductId::new(777).unwrap());
        let actor = Actor::system("test");
        let mut commits = vec![ProductCommit {
            version: Some(VersionStamp::first(
                &product,
                ChangeSource::Shopify,
                actor.clone(),
                None,
            )),
            product: product.clone(),
            expected_version: None,
            staging: None,
            actor,
            now: chrono::Utc::now(),
        }];
        for answer in self.store.commit_products(&mut commits).await.unwrap() {
            answer.unwrap();
        }
        product
    }
}

fn token_of(role: Option<Role>) -> Option<&'static str> {
    role.map(|role| match role {
        Role::Viewer => "view-token",
        Role::Operator => "op-token",
        Role::Admin => "admin-token",
    })
}

#[tokio::test]
async fn every_documented_route_answers_each_role_as_its_rule_says() {
    let api = api().await;
    let product = api.product().await;
    let document = serde_json::to_value(shopsync_api::openapi()).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 10, "{paths:?}");
    let mut walked = 0;
    for (template, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            // Every operation names its own rule: a role, or anyone.
            let security = operation["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {template} names no access rule"));
            let required: Option<Role> = match security.as_slice() {
                [requirement] if requirement.as_object().unwrap().is_empty() => None,
                [requirement] => {
                    let scopes = requirement["bearer"].as_array().unwrap();
                    assert_eq!(scopes.len(), 1, "{method} {template}: one role");
                    Some(Role::parse(scopes[0].as_str().unwrap()).unwrap())
                }
                _ => panic!("{method} {template}: one requirement"),
            };
            let path = template
                .replace("{id}", &product.id.to_string())
                .replace("{n}", "1");
            let body = matches!(method, Method::POST | Method::PATCH).then(|| json!({}));
            for caller in [
                None,
                Some(Role::Viewer),
                Some(Role::Operator),
                Some(Role::Admin),
            ] {
                let (status, answer) = api
                    .call(method.clone(), &path, token_of(caller), body.clone())
                    .await;
                let expected = match (required, caller) {
                    (None, _) => None,
                    (Some(_), None) => Some(StatusCode::UNAUTHORIZED),
                    (Some(needed), Some(role)) if !role.allows(needed) => {
                        Some(StatusCode::FORBIDDEN)
                    }
                    _ => None,
                };
                match expected {
                    Some(status_expected) => assert_eq!(
                        status, status_expected,
                        "{method} {path} as {caller:?}: {answer}"
                    ),
                    None => {
                        assert!(
                            status != StatusCode::UNAUTHORIZED
                                && status != StatusCode::FORBIDDEN
                                && status != StatusCode::METHOD_NOT_ALLOWED
                                && !(status == StatusCode::NOT_FOUND
                                    && answer["message"]
                                        .as_str()
                                        .is_some_and(|m| m.starts_with("no route"))),
                            "{method} {path} as {caller:?} is documented and allowed, but answered {status}: {answer}"
                        );
                    }
                }
                walked += 1;
            }
        }
    }
    assert!(walked >= 40, "{walked}");
}

#[tokio::test]
async fn the_openapi_document_is_served_to_anyone_as_json_the_same_each_time() {
    let api = api().await;
    let expected = serde_json::to_value(shopsync_api::openapi()).unwrap();
    for _ in 0..2 {
        let request = Request::builder()
            .uri("/api/v1/openapi.json")
            .body(Body::empty())
            .unwrap();
        let response = api.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "served as JSON"
        );
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        let served: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(served, expected);
    }
}

#[tokio::test]
async fn an_undocumented_route_is_refused_and_bad_paths_are_4xx() {
    let api = api().await;
    let (status, body) = api
        .call(
            Method::GET,
            "/api/v1/nothing-here",
            Some("admin-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = api
        .call(Method::PUT, "/api/v1/operations", Some("admin-token"), None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    for (path, code) in [
        ("/api/v1/operations/not-a-uuid", "bad_id"),
        ("/api/v1/conflicts/42", "bad_id"),
        ("/api/v1/products/what", "bad_id"),
        ("/api/v1/operations?limit=0", "bad_limit"),
        ("/api/v1/operations?limit=abc", "bad_query"),
        ("/api/v1/operations?after=%%%", "bad_cursor"),
        ("/api/v1/conflicts?severity=huge", "bad_query"),
        ("/api/v1/conflicts?product=nope", "bad_id"),
        ("/api/v1/products?needs_push=maybe", "bad_query"),
    ] {
        let (status, body) = api.call(Method::GET, path, Some("view-token"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"], code, "{path}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test]
async fn a_product_carries_its_version_as_etag_and_hides_costs_from_viewers() {
    let api = api().await;
    let product = api.product().await;
    let request = |token: &str| {
        Request::builder()
            .uri("/api/v1/products/gid://shopify/Product/777")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let response = api
        .router
        .clone()
        .oneshot(request("view-token"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let (_, as_viewer) = api.answer(request("view-token")).await;
    let (_, as_operator) = api.answer(request("op-token")).await;
    assert_eq!(as_viewer["product"]["id"], product.id.to_string());
    for variant in as_viewer["product"]["variants"].as_array().unwrap() {
        assert!(variant.get("cost").is_none(), "{variant}");
        assert!(variant.get("price").is_some(), "{variant}");
    }
    for variant in as_operator["product"]["variants"].as_array().unwrap() {
        assert_eq!(variant["cost"], "4.25", "{variant}");
    }
    // Listed as GET answers it, by SKU and by state.
    let sku = product.content.variants[0]
        .sku
        .as_ref()
        .unwrap()
        .as_str()
        .to_lowercase();
    let (status, listed) = api
        .call(
            Method::GET,
            &format!("/api/v1/products?sku={sku}"),
            Some("op-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["products"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["products"][0], as_operator);
    let (_, unsynced) = api
        .call(
            Method::GET,
            "/api/v1/products?needs_push=true",
            Some("op-token"),
            None,
        )
        .await;
    assert_eq!(
        unsynced["products"].as_array().unwrap().len(),
        1,
        "{unsynced}"
    );
    let (_, locked) = api
        .call(
            Method::GET,
            "/api/v1/products?locked=true",
            Some("op-token"),
            None,
        )
        .await;
    assert_eq!(locked["products"].as_array().unwrap().len(), 0, "{locked}");
}

#[tokio::test]
async fn locks_are_taken_refused_released_and_broken_only_by_an_admin() {
    let api = api_with(
        Authenticator::tokens(
            "op-token:otto:operator,op2-token:olga:operator,admin-token:ada:admin",
        )
        .unwrap(),
    )
    .await;
    let product = api.product().await;
    let lock_path = format!("/api/v1/products/{}/lock", product.id);
    let (status, taken) = api
        .call(
            Method::POST,
            &lock_path,
            Some("op-token"),
            Some(json!({"lease_secs": 600, "reason": "fixing the photos"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{taken}");
    assert_eq!(taken["locked_by"], "otto");
    assert_eq!(taken["reason"], "fixing the photos");
    let stored = api.store.product(product.id).await.unwrap().unwrap();
    assert_eq!(stored.sync_locked_by, Some(Actor::new("otto").unwrap()));
    // Another operator: 409 to take it, 409 to release it, 403 to force it.
    let (status, body) = api
        .call(Method::POST, &lock_path, Some("op2-token"), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["message"].as_str().unwrap().contains("otto"), "{body}");
    let (status, _) = api
        .call(Method::DELETE, &lock_path, Some("op2-token"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("{lock_path}?force=true"),
            Some("op2-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        api.store
            .product(product.id)
            .await
            .unwrap()
            .unwrap()
            .sync_locked,
        "refusals change nothing"
    );
    // Bad leases and bodies name what is wrong.
    for (body, status_expected) in [
        (json!({"lease_secs": 0}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"lease_secs": 100000}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"lease_secs": "ten"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"lease": 10}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (status, answer) = api
            .call(
                Method::POST,
                &lock_path,
                Some("op-token"),
                Some(body.clone()),
            )
            .await;
        assert!(
            status == status_expected || status == StatusCode::BAD_REQUEST,
            "{body}: {status} {answer}"
        );
        assert!(status.is_client_error());
    }
    // The admin breaks it, and the answer says whose it was.
    let (status, broken) = api
        .call(
            Method::DELETE,
            &format!("{lock_path}?force=true"),
            Some("admin-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{broken}");
    assert_eq!(broken["released_from"], "otto");
    assert_eq!(broken["locked"], false);
    let stored = api.store.product(product.id).await.unwrap().unwrap();
    assert!(!stored.sync_locked && stored.sync_lock_reason.is_none());
    // The holder releases their own.
    api.call(Method::POST, &lock_path, Some("op2-token"), None)
        .await;
    let (status, released) = api
        .call(Method::DELETE, &lock_path, Some("op2-token"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{released}");
    assert!(
        !api.store
            .product(product.id)
            .await
            .unwrap()
            .unwrap()
            .sync_locked
    );
}

#[tokio::test]
async fn conflicts_are_listed_by_status_product_and_severity_with_costs_hidden_from_viewers() {
    let api = api().await;
    let product = api.product().await;
    let operation = OperationId::generate();
    let make = |field: &str, local: Value, remote: Value| {
        let path = FieldPath::new_unchecked(field.to_owned());
        let values = ConflictValues {
            base: Some(json!("base")),
            local: Some(local),
            remote: Some(remote),
        };
        let decision: Decision =
            shopsync_domain::OwnershipPolicy::default().decide(&path, &values, None, None);
        SyncConflict::field(
            operation,
            product.id,
            path,
            values,
            &decision,
            chrono::Utc::now(),
        )
    };
    let variant_key = product.content.variants[0].key.clone();
    let cost_field = format!("variants/{variant_key}/cost");
    let on_title = make("title", json!("Local"), json!("Remote"));
    let on_cost = make(&cost_field, json!("4.25"), json!("5.00"));
    api.store
        .put_all(&[on_title.clone(), on_cost.clone()])
        .await
        .unwrap();
    let (status, open) = api
        .call(Method::GET, "/api/v1/conflicts", Some("view-token"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{open}");
    let listed = open["conflicts"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{open}");
    let cost_as_viewer = listed
        .iter()
        .find(|c| c["field_name"] == cost_field.as_str())
        .unwrap();
    assert_eq!(
        cost_as_viewer["local_value"],
        Value::Null,
        "{cost_as_viewer}"
    );
    let (_, cost_as_operator) = api
        .call(
            Method::GET,
            &format!("/api/v1/conflicts/{}", on_cost.conflict_uuid),
            Some("op-token"),
            None,
        )
        .await;
    assert_eq!(cost_as_operator["conflict"]["local_value"], "4.25");
    assert_eq!(cost_as_operator["conflict"]["base_value"], "base");
    let severity = shopsync_domain::status::status_name(on_title.severity);
    let (_, by_severity) = api
        .call(
            Method::GET,
            &format!(
                "/api/v1/conflicts?product={}&severity={severity}",
                product.id
            ),
            Some("view-token"),
            None,
        )
        .await;
    let expected = [&on_title, &on_cost]
        .iter()
        .filter(|c| c.severity == on_title.severity)
        .count();
    assert_eq!(
        by_severity["conflicts"].as_array().unwrap().len(),
        expected,
        "{by_severity}"
    );
    let (_, resolved) = api
        .call(
            Method::GET,
            "/api/v1/conflicts?status=resolved",
            Some("view-token"),
            None,
        )
        .await;
    assert_eq!(resolved["conflicts"].as_array().unwrap().len(), 0);
    let (status, missing) = api
        .call(
            Method::GET,
            &format!(
                "/api/v1/conflicts/{}",
                shopsync_domain::ConflictId::generate()
            ),
            Some("view-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
}

#[tokio::test]
async fn jwt_claims_identify_the_caller_and_their_highest_group() {
    let api = api_with(Authenticator::claims(None, None)).await;
    let request = |claims: Option<Value>| {
        let mut request = Request::builder()
            .uri("/api/v1/operations")
            .body(Body::empty())
            .unwrap();
        if let Some(claims) = claims {
            request
                .extensions_mut()
                .insert(VerifiedClaims(claims.as_object().cloned().unwrap()));
        }
        request
    };
    let (status, _) = api.answer(request(None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .answer(request(Some(
            json!({"email": "ana@x.io", "cognito:groups": "[staff viewer]"}),
        )))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .answer(request(Some(
            json!({"email": "ana@x.io", "cognito:groups": "[staff]"}),
        )))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // A bearer token means nothing here: only verified claims count.
    let (status, _) = api
        .call(Method::GET, "/api/v1/operations", Some("admin-token"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_operator_edits_a_product_as_a_local_edit_operation_that_records_them() {
    let api =
        api_with(Authenticator::tokens("op-token:otto:operator,op2-token:olga:operator").unwrap())
            .await;
    let product = api.product().await;
    let sku = product.content.variants[1].sku.clone().unwrap();
    let path = format!("/api/v1/products/{}", product.id);
    let patch = |body: Value, token: &'static str, if_match: Option<&str>| {
        let mut request = Request::builder()
            .method(Method::PATCH)
            .uri(path.clone())
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json");
        if let Some(version) = if_match {
            request = request.header("if-match", version);
        }
        request.body(Body::from(body.to_string())).unwrap()
    };
    let response = api
        .router
        .clone()
        .oneshot(patch(
            json!({
                "title": "Edited hat",
                "tags": ["summer", "sale"],
                "variants": [{"sku": sku.as_str(), "price": "12.50", "barcode": "4006381333931",
                              "inventory": [{"location": "gid://shopify/Location/5", "available": 7}]}]
            }),
            "op-token",
            Some("\"1\""),
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let edited: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(edited["product"]["title"], "Edited hat");
    assert_eq!(edited["product"]["version"], 2);
    assert_eq!(edited["needs_push"], true, "pushed by the next up-sync");
    let operation_id: OperationId = edited["operation_id"].as_str().unwrap().parse().unwrap();
    // One version, by the person, from a local edit.
    let stored = api.store.product(product.id).await.unwrap().unwrap();
    assert_eq!(stored.content.variants[1].price.to_string(), "12.50");
    assert_eq!(
        stored.content.variants[1].barcode.as_deref(),
        Some("4006381333931")
    );
    assert_eq!(
        stored.content.variants[1].inventory[&shopsync_domain::LocationId::new(5).unwrap()],
        shopsync_domain::Quantity(7)
    );
    assert_eq!(stored.content.variants[0], product.content.variants[0]);
    let versions = api
        .store
        .product_versions(product.id, true, 10, None)
        .await
        .unwrap()
        .items;
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].version_number, 2);
    assert_eq!(versions[0].change_source, ChangeSource::Local);
    assert_eq!(versions[0].changed_by.as_str(), "otto");
    assert_eq!(versions[0].sync_operation_id, Some(operation_id));
    // One operation of type local_edit by the person, with one applied row staged by them.
    let (status, shown) = api
        .call(
            Method::GET,
            &format!("/api/v1/operations/{operation_id}"),
            Some("op-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["operation"]["operation_type"], "local_edit");
    assert_eq!(shown["operation"]["created_by"], "otto");
    assert_eq!(shown["operation"]["status"], "completed");
    let rows = shown["staging"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{shown}");
    assert_eq!(rows[0]["status"], "applied");
    assert_eq!(rows[0]["staged_by"], "otto");
    assert!(rows[0]["change_data"]
        .as_object()
        .unwrap()
        .contains_key("title"));
    // A stale If-Match: 412 and nothing written.
    let (status, stale) = api
        .answer(patch(json!({"title": "Late"}), "op-token", Some("1")))
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{stale}");
    // Values it cannot take: 422 naming the field, nothing written.
    for (body, field) in [
        (
            json!({"variants": [{"sku": sku.as_str(), "price": "-1"}]}),
            "variants[0].price",
        ),
        (
            json!({"variants": [{"id": 999999, "price": "1"}]}),
            "variants[0].id",
        ),
        (
            json!({"variants": [{"sku": sku.as_str(), "barcode": "4006381333932"}]}),
            "variants[0].barcode",
        ),
        (
            json!({"variants": [{"sku": "NO-SUCH-SKU"}]}),
            "variants[0].sku",
        ),
        (json!({"status": "deleted"}), "status"),
        (json!({"handle": "x"}), "handle"),
        (json!({"title": 5}), "title"),
        (
            json!({"variants": [{"sku": sku.as_str(), "inventory": [{"location": 5, "available": 1.5}]}]}),
            "variants[0].inventory[0].available",
        ),
    ] {
        let (status, refused) = api.answer(patch(body.clone(), "op-token", None)).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {refused}"
        );
        assert_eq!(refused["field"], field, "{body}: {refused}");
    }
    let (status, _) = api
        .answer(
            Request::builder()
                .method(Method::PATCH)
                .uri(path.clone())
                .header("authorization", "Bearer op-token")
                .header("content-type", "application/json")
                .body(Body::from("{not json"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Locked by another: 423.
    api.call(
        Method::POST,
        &format!("{path}/lock"),
        Some("op2-token"),
        Some(json!({"lease_secs": 60})),
    )
    .await;
    let (status, locked) = api
        .answer(patch(json!({"title": "Mine"}), "op-token", None))
        .await;
    assert_eq!(status, StatusCode::LOCKED, "{locked}");
    let after = api.store.product(product.id).await.unwrap().unwrap();
    assert_eq!(
        (after.version, after.content.title.as_str()),
        (2, "Edited hat")
    );
    let operations = api
        .store
        .query_all::<shopsync_domain::SyncOperation>(shopsync_store::item::Query::new(
            shopsync_store::Table::SyncOperations,
            Some("by_created"),
            "operation",
        ))
        .await
        .unwrap();
    assert_eq!(operations.len(), 1, "refused edits start no operation");
}

#[tokio::test]
async fn an_edit_of_a_sku_shared_by_two_variants_is_refused() {
    let api = api().await;
    let mut content = shopsync_domain::testing::sample_content(2);
    content.variants[1].sku = content.variants[0].sku.clone();
    let product = Product::new(ProductId::generate(), content, chrono::Utc::now());
    api.store
        .create_product(&product, ChangeSource::Local, &Actor::system("test"), None)
        .await
        .unwrap();
    let sku = product.content.variants[0].sku.clone().unwrap();
    let (status, refused) = api
        .call(
            Method::PATCH,
            &format!("/api/v1/products/{}", product.id),
            Some("op-token"),
            Some(json!({"variants": [{"sku": sku.as_str(), "price": "3.00"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("2 variants"),
        "{refused}"
    );
}

/// A conflict on `field` of `product`, stored open.
async fn open_conflict(
    api: &Api,
    product: &Product,
    field: &str,
    local: Value,
    remote: Value,
) -> SyncConflict {
    let path = FieldPath::new_unchecked(field.to_owned());
    let values = ConflictValues {
        base: None,
        local: Some(local),
        remote: Some(remote),
    };
    let decision = shopsync_domain::OwnershipPolicy::default().decide(&path, &values, None, None);
    let conflict = SyncConflict::field(
        OperationId::generate(),
        product.id,
        path,
        values,
        &decision,
        chrono::Utc::now(),
    );
    api.store
        .put_all(std::slice::from_ref(&conflict))
        .await
        .unwrap();
    conflict
}

#[tokio::test]
async fn an_operator_resolves_a_conflict_once_and_bulk_resolves_by_filter() {
    let api = api().await;
    let product = api.product().await;
    let key = product.content.variants[0].key.clone();
    let barcode = open_conflict(
        &api,
        &product,
        &format!("variants/{key}/barcode"),
        json!("4006381333931"),
        json!("036000291452"),
    )
    .await;
    let path = format!("/api/v1/conflicts/{}/resolve", barcode.conflict_uuid);
    for (body, status_expected) in [
        (
            json!({"strategy": "coin_toss"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"strategy": "manual"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"strategy": "local_wins", "value": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"strategy": "manual", "value": 5}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"value": "x"}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (status, answer) = api
            .call(Method::POST, &path, Some("op-token"), Some(body.clone()))
            .await;
        assert_eq!(status, status_expected, "{body}: {answer}");
    }
    assert_eq!(
        api.store
            .product(product.id)
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    let (status, resolved) = api
        .call(
            Method::POST,
            &path,
            Some("op-token"),
            Some(json!({"strategy": "manual", "value": "96385074", "note": "from the box"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(resolved["conflict"]["status"], "resolved");
    assert_eq!(resolved["conflict"]["resolution"]["resolved_by"], "otto");
    assert_eq!(resolved["conflict"]["resolution"]["method"], "manual");
    assert_eq!(resolved["conflict"]["resolution"]["note"], "from the box");
    let after = api.store.product(product.id).await.unwrap().unwrap();
    assert_eq!(
        after.content.variants[0].barcode.as_deref(),
        Some("96385074")
    );
    assert_eq!(after.version, 2);
    let (status, again) = api
        .call(
            Method::POST,
            &path,
            Some("op-token"),
            Some(json!({"strategy": "remote_wins"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(
        api.store
            .product(product.id)
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );

    // Bulk: the open conflicts of the product, remote wins.
    let title = open_conflict(
        &api,
        &product,
        "title",
        json!("Local"),
        json!("Remote title"),
    )
    .await;
    let vendor = open_conflict(&api, &product, "vendor", json!("L"), json!("Remote vendor")).await;
    let (status, bulk) = api
        .call(
            Method::POST,
            "/api/v1/conflicts/resolve",
            Some("op-token"),
            Some(json!({"filter": {"product": product.id.to_string()}, "strategy": "remote_wins"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{bulk}");
    assert_eq!(
        (bulk["resolved"].as_u64(), bulk["skipped"].as_u64()),
        (Some(2), Some(0)),
        "{bulk}"
    );
    let after = api.store.product(product.id).await.unwrap().unwrap();
    assert_eq!(after.content.title, "Remote title");
    assert_eq!(after.content.vendor, "Remote vendor");
    // By ids: settled ones are skipped, with the reason.
    let (status, by_ids) = api
        .call(
            Method::POST,
            "/api/v1/conflicts/resolve",
            Some("op-token"),
            Some(json!({"ids": [title.conflict_uuid, vendor.conflict_uuid], "strategy": "local_wins"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{by_ids}");
    assert_eq!(
        (by_ids["resolved"].as_u64(), by_ids["skipped"].as_u64()),
        (Some(0), Some(2)),
        "{by_ids}"
    );
    for body in [
        json!({"strategy": "local_wins"}),
        json!({"ids": ["nope"], "strategy": "local_wins"}),
        json!({"ids": [], "filter": {}, "strategy": "local_wins"}),
    ] {
        let (status, answer) = api
            .call(
                Method::POST,
                "/api/v1/conflicts/resolve",
                Some("op-token"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
    }
}

#[tokio::test]
async fn a_sync_is_recorded_pending_by_its_requester_and_queued() {
    let api = api().await;
    let (status, started) = api
        .call(
            Method::POST,
            "/api/v1/sync",
            Some("op-token"),
            Some(json!({"direction": "down", "mode": "full"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let id: OperationId = started["operation_id"].as_str().unwrap().parse().unwrap();
    let stored = shopsync_engine::operation::load_operation(&api.store, id)
        .await
        .unwrap();
    assert_eq!(stored.status, shopsync_domain::OperationStatus::Pending);
    assert_eq!(stored.created_by.as_str(), "otto");
    let jobs = api.queued.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(shopsync_engine::jobs::operation_of_job(&jobs[0].id), id);
    assert!(matches!(
        jobs[0].job,
        Job::Sync {
            direction: shopsync_domain::SyncDirection::Down,
            mode: shopsync_engine::jobs::SyncMode::Full,
            dry_run: false
        }
    ));
    // Defaults: incremental, not a dry run.
    let (status, _) = api
        .call(
            Method::POST,
            "/api/v1/sync",
            Some("op-token"),
            Some(json!({"direction": "up"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(matches!(
        api.queued.jobs()[1].job,
        Job::Sync {
            mode: shopsync_engine::jobs::SyncMode::Incremental,
            dry_run: false,
            ..
        }
    ));
    for (body, status_expected) in [
        (
            json!({"direction": "sideways"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"direction": "up", "mode": "reconcile"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"direction": "down", "dry_run": "yes"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (status, answer) = api
            .call(
                Method::POST,
                "/api/v1/sync",
                Some("op-token"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, status_expected, "{body}: {answer}");
    }
    assert_eq!(api.queued.jobs().len(), 2, "refused requests queue nothing");
}

#[tokio::test]
async fn operations_are_approved_by_a_queued_job_and_rejected_cancelled_and_resumed_here() {
    let api = api().await;
    let mut held = shopsync_domain::SyncOperation::new(
        "held",
        shopsync_domain::OperationType::FullSync,
        shopsync_domain::SyncDirection::Down,
        Actor::system("scheduler"),
        chrono::Utc::now(),
    );
    held.move_to(
        shopsync_domain::OperationStatus::InProgress,
        None,
        chrono::Utc::now(),
    )
    .unwrap();
    held.move_to(
        shopsync_domain::OperationStatus::AwaitingApproval,
        Some("rails".into()),
        chrono::Utc::now(),
    )
    .unwrap();
    api.store.insert(&held).await.unwrap();
    let id = held.operation_uuid;
    let (status, approved) = api
        .call(
            Method::POST,
            &format!("/api/v1/operations/{id}/approve"),
            Some("op-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{approved}");
    let jobs = api.queued.jobs();
    assert_eq!(jobs.len(), 1);
    match &jobs[0].job {
        Job::ApplyOperation { operation, by } => {
            assert_eq!(*operation, id);
            assert_eq!(
                by.as_ref().map(Actor::as_str),
                Some("otto"),
                "the approver is recorded"
            );
        }
        other => panic!("{other:?}"),
    }
    // Reject needs a reason; it is recorded and applies nothing.
    let (status, refused) = api
        .call(
            Method::POST,
            &format!("/api/v1/operations/{id}/reject"),
            Some("op-token"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let (status, rejected) = api
        .call(
            Method::POST,
            &format!("/api/v1/operations/{id}/reject"),
            Some("op-token"),
            Some(json!({"reason": "too many price drops"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rejected}");
    assert_eq!(rejected["operation"]["status"], "cancelled");
    assert!(
        rejected["operation"]["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains("too many price drops") && r.contains("otto")),
        "{rejected}"
    );
    // Ended: nothing more can be decided, and a completed operation does not resume.
    for action in ["approve", "cancel", "resume"] {
        let (status, answer) = api
            .call(
                Method::POST,
                &format!("/api/v1/operations/{id}/{action}"),
                Some("op-token"),
                Some(json!({"reason": "again"})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{action}: {answer}");
    }
    let missing = OperationId::generate();
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/v1/operations/{missing}/cancel"),
            Some("op-token"),
            Some(json!({"reason": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/v1/operations/{id}/approve"),
            Some("op-token"),
            Some(json!({"rows": ["nope"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(api.queued.jobs().len(), 1);
}

#[tokio::test]
async fn a_bulk_resolve_past_a_thousand_conflicts_is_queued_as_an_operation_by_its_requester() {
    let api = api().await;
    let product = api.product().await;
    let many: Vec<SyncConflict> = (0..1001)
        .map(|i| {
            let path = FieldPath::new_unchecked(format!("variants/k{i}/title"));
            let values = ConflictValues {
                base: None,
                local: Some(json!("a")),
                remote: Some(json!("b")),
            };
            let decision =
                shopsync_domain::OwnershipPolicy::default().decide(&path, &values, None, None);
            SyncConflict::field(
                OperationId::generate(),
                product.id,
                path,
                values,
                &decision,
                chrono::Utc::now(),
            )
        })
        .collect();
    api.store.put_all(&many).await.unwrap();
    let (status, queued) = api
        .call(
            Method::POST,
            "/api/v1/conflicts/resolve",
            Some("op-token"),
            Some(json!({"filter": {"product": product.id.to_string()}, "strategy": "remote_wins", "note": "Shopify wins"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let id: OperationId = queued["operation_id"].as_str().unwrap().parse().unwrap();
    let pending = shopsync_engine::operation::load_operation(&api.store, id)
        .await
        .unwrap();
    assert_eq!(pending.status, shopsync_domain::OperationStatus::Pending);
    assert_eq!(pending.created_by.as_str(), "otto");
    let jobs = api.queued.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(shopsync_engine::jobs::operation_of_job(&jobs[0].id), id);
    match &jobs[0].job {
        Job::ResolveConflicts { filter, choice, by } => {
            assert_eq!(filter.product, Some(product.id));
            assert_eq!(choice.method, shopsync_domain::ResolutionMethod::RemoteWins);
            assert_eq!(choice.note.as_deref(), Some("Shopify wins"));
            assert_eq!(by.as_str(), "otto");
        }
        other => panic!("{other:?}"),
    }
    // Nothing was settled while the request waited.
    let (_, still) = api
        .call(
            Method::GET,
            &format!(
                "/api/v1/conflicts?product={}&status=open&limit=1000",
                product.id
            ),
            Some("view-token"),
            None,
        )
        .await;
    assert_eq!(still["conflicts"].as_array().unwrap().len(), 1000);
}

#[tokio::test]
async fn a_product_is_read_at_a_version_a_time_and_a_diff_and_restored_by_an_operator() {
    let api = api().await;
    let product = api.product().await;
    let path = format!("/api/v1/products/{}", product.id);
    let first_key = product.content.variants[0].key.to_string();
    let first_price = json!(product.content.variants[0].price);
    let stock_before = product.content.variants[0].inventory.clone();
    // A time between the two versions (`at` is read to the millisecond).
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // Version 2: a title and a price by an operator.
    let (status, _) = api
        .call(
            Method::PATCH,
            &path,
            Some("op-token"),
            Some(json!({"title": "Renamed", "variants": [{"id": first_key, "price": "99.00"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, version) = api
        .call(
            Method::GET,
            &format!("{path}/versions/1"),
            Some("view-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version["version_number"], 1);
    assert_eq!(version["product_data"]["title"], product.content.title);
    assert!(
        version["product_data"]["variants"][0].get("cost").is_none(),
        "a viewer sees no cost in a version: {version}"
    );
    let (status, _) = api
        .call(
            Method::GET,
            &format!("{path}/versions/9"),
            Some("view-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, refused) = api
        .call(
            Method::GET,
            &format!("{path}/versions/x"),
            Some("view-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");

    let (status, diff) = api
        .call(
            Method::GET,
            &format!("{path}/diff?from=1&to=2"),
            Some("view-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{diff}");
    assert_eq!(diff["fields"]["title"]["old"], product.content.title);
    assert_eq!(diff["fields"]["title"]["new"], "Renamed");
    assert_eq!(diff["variants"][&first_key]["change"], "changed");
    assert_eq!(
        diff["variants"][&first_key]["fields"]["price"]["new"],
        json!("99.00".parse::<shopsync_domain::Money>().unwrap())
    );
    assert_eq!(diff["fields"].as_object().map(|f| f.len()), Some(1));
    let (status, _) = api
        .call(
            Method::GET,
            &format!("{path}/diff?to=2"),
            Some("view-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "from is required");

    let (status, then) = api
        .call(
            Method::GET,
            &format!(
                "{path}?at={}",
                between.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ),
            Some("view-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{then}");
    assert_eq!(then["version"]["version_number"], 1);
    assert_eq!(
        then["version"]["product_data"]["title"],
        product.content.title
    );
    let (status, _) = api
        .call(
            Method::GET,
            &format!("{path}?at=2001-01-01T00:00:00Z"),
            Some("view-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no version yet then");
    let (status, _) = api
        .call(
            Method::GET,
            &format!("{path}?at=yesterday"),
            Some("view-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A viewer may not restore; stock and unknown fields are refused by name.
    let restore = format!("{path}/restore");
    let (status, _) = api
        .call(
            Method::POST,
            &restore,
            Some("view-token"),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for fields in [json!(["inventory"]), json!(["colour"])] {
        let (status, refused) = api
            .call(
                Method::POST,
                &restore,
                Some("op-token"),
                Some(json!({"version": 1, "fields": fields})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
        assert_eq!(refused["field"], "fields");
    }
    let (status, _) = api
        .call(
            Method::POST,
            &restore,
            Some("op-token"),
            Some(json!({"version": 7})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Only the price comes back: the title stays renamed.
    let (status, restored) = api
        .call(
            Method::POST,
            &restore,
            Some("op-token"),
            Some(json!({"version": 1, "fields": ["price"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert_eq!(restored["product"]["title"], "Renamed");
    assert_eq!(restored["product"]["variants"][0]["price"], first_price);
    assert_eq!(restored["needs_push"], true, "pushed by the next up-sync");
    let operation_id: OperationId =
        serde_json::from_value(restored["operation_id"].clone()).unwrap();
    let operation = shopsync_engine::operation::load_operation(&api.store, operation_id)
        .await
        .unwrap();
    assert_eq!(
        operation.operation_type,
        shopsync_domain::OperationType::Restore
    );
    assert_eq!(operation.created_by, Actor::new("otto").unwrap());
    let version = api
        .store
        .product_version(product.id, 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(version.change_source, ChangeSource::Rollback);
    assert_eq!(version.changed_by, Actor::new("otto").unwrap());
    assert_eq!(version.sync_operation_id, Some(operation_id));

    // Everything else (stock aside) with If-Match: a stale version is 412.
    let stale = Request::builder()
        .method(Method::POST)
        .uri(&restore)
        .header("authorization", "Bearer op-token")
        .header("content-type", "application/json")
        .header("if-match", "\"2\"")
        .body(Body::from(json!({"version": 1}).to_string()))
        .unwrap();
    assert_eq!(api.answer(stale).await.0, StatusCode::PRECONDITION_FAILED);
    let (status, restored) = api
        .call(
            Method::POST,
            &restore,
            Some("op-token"),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    let now = api.store.product(product.id).await.unwrap().unwrap();
    assert_eq!(now.content.title, product.content.title);
    assert_eq!(now.content.variants[0].inventory, stock_before);
    assert_eq!(now.version, 4);
    // Restoring to what it already holds changes nothing.
    let (status, again) = api
        .call(
            Method::POST,
            &restore,
            Some("op-token"),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["operation_id"], Value::Null);
}

#[tokio::test]
async fn an_admin_rolls_an_operation_back_through_the_queue_and_anyone_reads_the_record() {
    let api = api().await;
    let product = api.product().await;
    let (status, edited) = api
        .call(
            Method::PATCH,
            &format!("/api/v1/products/{}", product.id),
            Some("op-token"),
            Some(json!({"title": "Edited"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let operation = edited["operation_id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/operations/{operation}/rollback");

    let (status, _) = api
        .call(Method::POST, &path, Some("op-token"), Some(json!({})))
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "rollbacks need the admin role"
    );
    for (body, field) in [
        (json!({"type": "partial"}), "type"),
        (json!({"type": "selective", "fields": ["colour"]}), "fields"),
        (
            json!({"type": "partial", "products": ["not-a-product"]}),
            "products[0]",
        ),
    ] {
        let (status, refused) = api
            .call(Method::POST, &path, Some("admin-token"), Some(body))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
        assert_eq!(refused["field"], field);
    }
    let (status, refused) = api
        .call(
            Method::POST,
            &path,
            Some("admin-token"),
            Some(json!({"kind": "full"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown fields are refused: {refused}"
    );
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/v1/operations/{}/rollback", OperationId::generate()),
            Some("admin-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(api.queued.jobs().is_empty(), "nothing refused was queued");

    let (status, accepted) = api
        .call(
            Method::POST,
            &path,
            Some("admin-token"),
            Some(json!({"type": "selective", "fields": ["title"]})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let rollback_id = accepted["rollback_id"].as_str().unwrap().to_owned();
    let jobs = api.queued.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].job,
        Job::Rollback {
            rollback: rollback_id.parse().unwrap()
        }
    );
    let (status, busy) = api
        .call(Method::POST, &path, Some("admin-token"), Some(json!({})))
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "one rollback of an operation at a time: {busy}"
    );

    let (status, record) = api
        .call(
            Method::GET,
            &format!("/api/v1/rollbacks/{rollback_id}"),
            Some("view-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["status"], "pending");
    assert_eq!(record["requested_by"], "ada");
    assert_eq!(record["original_operation_id"], operation);
    assert_eq!(record["operation_id"], accepted["operation_id"]);
    assert_eq!(record["selected_fields"], json!(["title"]));
    let (status, listed) = api
        .call(
            Method::GET,
            &format!("/api/v1/rollbacks?operation={operation}"),
            Some("view-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["rollbacks"].as_array().map(Vec::len), Some(1));
    let (status, _) = api
        .call(Method::GET, "/api/v1/rollbacks", Some("view-token"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "operation is required");
    let (status, _) = api
        .call(
            Method::GET,
            &format!("/api/v1/rollbacks/{}", OperationId::generate()),
            Some("view-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The rollback's own operation is pending, by the admin, and cannot be rolled back yet.
    let (status, pending) = api
        .call(
            Method::POST,
            &format!(
                "/api/v1/operations/{}/rollback",
                accepted["operation_id"].as_str().unwrap()
            ),
            Some("admin-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{pending}");
}

#[tokio::test]
async fn a_bulk_resolve_whose_worker_is_gone_resumes_as_its_continuation() {
    let api = api().await;
    let mut running = shopsync_domain::SyncOperation::new(
        "bulk conflict resolution by otto",
        shopsync_domain::OperationType::ConflictResolution,
        shopsync_domain::SyncDirection::Bidirectional,
        Actor::new("otto").unwrap(),
        chrono::Utc::now(),
    );
    running
        .move_to(
            shopsync_domain::OperationStatus::InProgress,
            None,
            chrono::Utc::now(),
        )
        .unwrap();
    running.checkpoint = Some(
        serde_json::to_value(shopsync_engine::resolve::ResolveCheckpoint {
            filter: shopsync_engine::resolve::ConflictFilter::default(),
            choice: shopsync_engine::resolve::Choice {
                method: shopsync_domain::ResolutionMethod::RemoteWins,
                value: None,
                note: None,
            },
            by: Actor::new("otto").unwrap(),
            next: None,
            in_hand: None,
            skipped_reasons: Vec::new(),
        })
        .unwrap(),
    );
    // Its worker stopped renewing its lease a while ago.
    running.lease_expires_at = Some(chrono::Utc::now() - chrono::Duration::minutes(1));
    api.store.insert(&running).await.unwrap();
    let id = running.operation_uuid;
    let (status, answer) = api
        .call(
            Method::POST,
            &format!("/api/v1/operations/{id}/resume"),
            Some("op-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let jobs = api.queued.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job, Job::ContinueResolving { operation: id });
}

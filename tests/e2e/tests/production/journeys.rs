//! The journeys of the production path.

use crate::aws::{Deployment, TOKEN, WEBHOOK_SECRET};
use serde_json::Value;
use shopsync_domain::{OperationStatus, Product, ProductVersion};
use shopsync_engine::jobs::{Job, JobMessage};
use shopsync_runtime::{WebhookHost, WorkerHost};
use shopsync_shopify::webhook::sign;
use shopsync_shopify_sim::{Plan, SimConfig, SimHandle, Simulator};
use shopsync_store::{Store, Table};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) const SHOP: &str = "e2e-shop.myshopify.com";
const PAYLOAD: &str = include_str!("../../../fixtures/shopify/webhooks/products-update.json");

pub(crate) async fn simulator(products: usize) -> SimHandle {
    Simulator::start(
        SimConfig {
            shop_domain: SHOP.into(),
            access_token: Some(TOKEN.into()),
            products,
            variants_per_product: 2,
            plan: Plan::UNLIMITED,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("address"),
    )
    .await
    .expect("simulator")
}

/// A Function URL invocation (payload format 2.0, aws_lambda_events' sample) of a signed
/// products/update delivery.
pub(crate) fn function_url_event(body: &str, webhook_id: &str) -> String {
    let mut event: Value = serde_json::from_str(include_str!(
        "../../../../functions/shopify-webhook/tests/fixtures/example-apigw-v2-request-no-authorizer.json"
    ))
    .expect("sample");
    event["rawPath"] = "/".into();
    event["requestContext"]["http"]["method"] = "POST".into();
    event["requestContext"]["http"]["path"] = "/".into();
    let headers = event["headers"].as_object_mut().expect("headers");
    headers.insert("content-type".into(), "application/json".into());
    headers.insert("x-shopify-topic".into(), "products/update".into());
    headers.insert(
        "x-shopify-hmac-sha256".into(),
        sign(WEBHOOK_SECRET, body.as_bytes()).into(),
    );
    headers.insert("x-shopify-shop-domain".into(), SHOP.into());
    headers.insert("x-shopify-webhook-id".into(), webhook_id.into());
    headers.insert("x-shopify-api-version".into(), "2026-07".into());
    event["body"] = body.into();
    event.to_string()
}

pub(crate) async fn everything<R: shopsync_store::Record>(store: &Store) -> Vec<R> {
    let mut all = Vec::new();
    let mut start = None;
    loop {
        let page = store.scan::<R>(500, start.as_ref()).await.expect("scan");
        all.extend(page.items);
        match page.next {
            Some(next) => start = Some(next),
            None => return all,
        }
    }
}

/// Invokes the worker with what the queue holds until it holds nothing, as the event source
/// mapping would; each invocation's deadline leaves `work` to run before its reserve.
/// Returns the number of invocations.
pub(crate) async fn drain(deployment: &Deployment, worker: &WorkerHost, work: Duration) -> usize {
    let mut invocations = 0;
    let mut idle = 0;
    while idle < 2 {
        let Some((event, handles)) = deployment.receive(&deployment.queue_url, 5).await else {
            idle += 1;
            continue;
        };
        idle = 0;
        invocations += 1;
        assert!(invocations < 400, "the queue never drains");
        let reserve = Duration::from_secs(60);
        let now = SystemTime::now();
        let deadline_ms = (now + work + reserve)
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        let deadline = sync_worker::step_deadline_with(deadline_ms, now, reserve);
        let worker = worker
            .worker()
            .await
            .expect("the token from Secrets Manager");
        let response =
            sync_worker::handle(&worker, &event, deployment.max_receives, Some(deadline)).await;
        deployment.settle(&handles, &response).await;
    }
    invocations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto's server: run tests/run.sh"]
async fn a_signed_delivery_is_staged_queued_and_applied_once_on_dynamodb() {
    let sim = simulator(0).await;
    let deployment = Deployment::provision(SHOP, &sim.url, 5).await;
    let webhook = WebhookHost::from_env(&deployment.env)
        .await
        .expect("webhook host");
    let worker = WorkerHost::from_env(&deployment.env)
        .await
        .expect("worker host");

    let event = function_url_event(PAYLOAD, "e2e-delivery-1");
    let request = lambda_http::request::from_str(&event).expect("a Function URL event");
    let response = shopify_webhook::handle_with(&webhook, request).await;
    let body: Value = serde_json::from_slice(response.body().as_ref()).expect("json");
    assert_eq!(
        (response.status().as_u16(), body["outcome"].as_str()),
        (200, Some("staged")),
        "{body}"
    );

    // The apply step, received from SQS and run by the worker as Lambda would.
    let (sqs_event, handles) = deployment
        .receive(&deployment.queue_url, 10)
        .await
        .expect("the apply step is on the queue");
    assert_eq!(sqs_event.records.len(), 1);
    let message = JobMessage::decode(sqs_event.records[0].body.as_deref().unwrap_or_default())
        .expect("a job message");
    assert!(
        matches!(message.job, Job::ApplyRows { .. }),
        "{:?}",
        message.job
    );
    let worker_now = worker.worker().await.expect("worker");
    let answer = sync_worker::handle(&worker_now, &sqs_event, deployment.max_receives, None).await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    assert_eq!(deployment.settle(&handles, &answer).await, 1);

    let products: Vec<Product> = everything(&deployment.store).await;
    assert_eq!(products.len(), 1, "the delivered product is in DynamoDB");
    let product = &products[0];
    assert_eq!(product.content.title, "Example T-Shirt");
    assert_eq!(product.version, 1);
    let versions: Vec<ProductVersion> = everything(&deployment.store).await;
    assert_eq!(versions.len(), 1, "with its first version");

    // Shopify's retry of the same delivery changes nothing and queues nothing.
    let request = lambda_http::request::from_str(&event).expect("event");
    let response = shopify_webhook::handle_with(&webhook, request).await;
    let body: Value = serde_json::from_slice(response.body().as_ref()).expect("json");
    assert_eq!(
        (response.status().as_u16(), body["status"].as_str()),
        (200, Some("duplicate")),
        "{body}"
    );
    assert!(deployment
        .receive(&deployment.queue_url, 10)
        .await
        .is_none());
    let staged = deployment
        .store
        .backend()
        .scan(Table::ProductsStaging, 10, None)
        .await
        .expect("scan");
    assert_eq!(staged.items.len(), 1, "one staged row");
    let again: Vec<Product> = everything(&deployment.store).await;
    assert_eq!(again, products, "the product is as it was");
}

/// Each product's content, by Shopify id, with what the two stores may differ in left out.
fn catalog(products: Vec<Product>) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = products
        .into_iter()
        .map(|p| {
            let id = p.shopify_id.map(|s| s.to_string()).unwrap_or_default();
            let content = serde_json::to_value(&p.content).expect("content");
            (id, serde_json::json!({"local_id": p.id.to_string(), "version": p.version, "content": content}))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto's server: run tests/run.sh"]
async fn a_scheduled_full_down_sync_runs_in_continuations_and_matches_the_embedded_store() {
    // More than two of the 256-product batches a step with a deadline plans at a time.
    const PRODUCTS: usize = 600;
    let sim = simulator(PRODUCTS).await;
    let deployment = Deployment::provision(SHOP, &sim.url, 5).await;
    let queue = shopsync_runtime::queue(&deployment.env)
        .await
        .expect("queue");
    let worker = WorkerHost::from_env(&deployment.env)
        .await
        .expect("worker host");

    let mut schedule: Value = serde_json::from_str(include_str!(
        "../../../../functions/scheduled-sync/tests/fixtures/example-eventbridge-schedule.json"
    ))
    .expect("sample");
    schedule["detail"] = serde_json::json!({"type": "full_sync", "direction": "down"});
    let done = scheduled_sync::handle(
        queue.as_ref(),
        &schedule,
        "e2e-request-1",
        chrono::Utc::now(),
    )
    .await
    .expect("scheduled");
    assert_eq!(done.messages.len(), 1);

    // A tenth of a second of work per invocation: the sync is cut into several steps, each one's
    // successor read back from SQS.
    let invocations = drain(&deployment, &worker, Duration::from_millis(100)).await;
    assert!(
        invocations >= 3,
        "only {invocations} invocations: no continuation was forced"
    );

    let operations: Vec<shopsync_domain::SyncOperation> = everything(&deployment.store).await;
    assert_eq!(operations.len(), 1);
    let operation = &operations[0];
    assert_eq!(
        operation.status,
        OperationStatus::Completed,
        "{:?}",
        operation.status_reason
    );
    assert_eq!(operation.statistics.created, PRODUCTS as u64);
    let on_dynamodb = catalog(everything(&deployment.store).await);
    assert_eq!(on_dynamodb.len(), PRODUCTS);

    // The same sync on the embedded store, from the same simulator.
    let dir = tempfile::tempdir().expect("dir");
    let backend = shopsync_store_sqlite::SqliteStore::open(dir.path(), "e2e_").expect("open");
    shopsync_store::migrate::migrate(&backend, Default::default())
        .await
        .expect("migrate");
    let embedded = Store::new(std::sync::Arc::new(backend));
    let client = shopsync_shopify::AdminClient::new(sim.client_config()).expect("client");
    shopsync_engine::sync::run_full(
        &embedded,
        &client,
        &shopsync_domain::Actor::new("system:e2e").expect("actor"),
        &shopsync_domain::GuardRails::default(),
        shopsync_engine::sync::RunOptions {
            direction: shopsync_domain::SyncDirection::Down,
            dry_run: false,
        },
    )
    .await
    .expect("the embedded sync");
    assert_eq!(on_dynamodb, catalog(everything(&embedded).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto's server: run tests/run.sh"]
async fn a_job_that_cannot_run_fails_its_operation_and_lands_in_the_dead_letter_queue() {
    let sim = simulator(0).await;
    let deployment = Deployment::provision(SHOP, &sim.url, 2).await;
    let worker = WorkerHost::from_env(&deployment.env)
        .await
        .expect("worker host");
    let operation =
        shopsync_engine::realtime::realtime_operation(&deployment.store, chrono::Utc::now())
            .await
            .expect("an operation");
    // An apply step whose rows are not a list: it can never run.
    let poison = format!(
        r#"{{"v":1,"id":"p","enqueued_at":"2026-11-25T00:00:00Z","job":{{"kind":"apply_rows","operation":"{}","rows":7}}}}"#,
        operation.operation_uuid
    );
    deployment
        .sqs
        .send_message()
        .queue_url(&deployment.queue_url)
        .message_body(&poison)
        .send()
        .await
        .expect("SendMessage");

    let mut failed_deliveries = 0;
    for _ in 0..20 {
        let Some((event, handles)) = deployment.receive(&deployment.queue_url, 10).await else {
            if failed_deliveries >= 2 {
                break;
            }
            continue;
        };
        let worker = worker.worker().await.expect("worker");
        let response = sync_worker::handle(&worker, &event, deployment.max_receives, None).await;
        failed_deliveries += response.batch_item_failures.len();
        assert_eq!(
            deployment.settle(&handles, &response).await,
            0,
            "nothing succeeded"
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert_eq!(
        failed_deliveries, 2,
        "reported failed on each delivery the redrive policy allows"
    );
    let dead = deployment
        .receive(&deployment.dlq_url, 10)
        .await
        .expect("the message is in the dead-letter queue");
    assert_eq!(dead.0.records.len(), 1);
    assert_eq!(dead.0.records[0].body.as_deref(), Some(poison.as_str()));
    let failed =
        shopsync_engine::operation::load_operation(&deployment.store, operation.operation_uuid)
            .await
            .expect("operation");
    assert_eq!(failed.status, OperationStatus::Failed);
    assert!(
        failed
            .status_reason
            .as_deref()
            .is_some_and(|r| r.contains("poison message")),
        "{:?}",
        failed.status_reason
    );
}

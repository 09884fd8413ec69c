//! The handler driven with SQS events in the shape Lambda delivers them (aws_lambda_events'
//! sample), answering with a batch response in the shape SQS reads.

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::Value;
use shopsync_domain::{Actor, GuardRails};
use shopsync_engine::jobs::{Job, JobMessage, Worker};
use shopsync_shopify::AdminClient;
use shopsync_shopify_sim::{Plan, SimConfig, Simulator};
use shopsync_store::Store;
use std::sync::Arc;

fn event(bodies: &[(&str, String)]) -> SqsEvent {
    let sample: Value =
        serde_json::from_str(include_str!("fixtures/example-sqs-event.json")).unwrap();
    let template = sample["Records"][0].clone();
    let records: Vec<Value> = bodies
        .iter()
        .map(|(id, body)| {
            let mut record = template.clone();
            record["messageId"] = (*id).into();
            record["body"] = body.clone().into();
            record
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

#[tokio::test]
async fn a_batch_answers_with_only_the_failed_message_ids() {
    let sim = Simulator::start(
        SimConfig {
            products: 4,
            variants_per_product: 1,
            plan: Plan::UNLIMITED,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backend = shopsync_store_sqlite::SqliteStore::open(dir.path(), "t_").unwrap();
    shopsync_store::migrate::migrate(&backend, Default::default())
        .await
        .unwrap();
    let worker = Worker {
        store: Store::new(Arc::new(backend)),
        client: AdminClient::new(sim.client_config()).unwrap(),
        actor: Actor::new("system:worker").unwrap(),
        rails: GuardRails::default(),
        continuation: None,
        imports: None,
    };
    let sync = JobMessage::new(Job::FullDown, chrono::Utc::now()).encode();
    let sqs = event(&[
        ("m-1", sync.clone()),
        ("m-2", "{\"v\":9}".into()),
        ("m-3", sync),
    ]);
    let deliveries = sync_worker::deliveries(&sqs);
    assert_eq!(
        deliveries[0].receive_count, 2,
        "read from ApproximateReceiveCount"
    );
    let response = sync_worker::handle(&worker, &sqs, 5, None).await;
    let wire = serde_json::to_value(&response).unwrap();
    assert_eq!(
        wire,
        serde_json::json!({"batchItemFailures": [{"itemIdentifier": "m-2"}]})
    );
    // The answer has the shape of the batch response sample SQS reads.
    let sample: Value =
        serde_json::from_str(include_str!("fixtures/example-sqs-batch-response.json")).unwrap();
    let keys = |v: &Value| {
        v["batchItemFailures"][0]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&wire), keys(&sample));
    let products = worker
        .store
        .backend()
        .scan(shopsync_store::Table::Products, 10, None)
        .await
        .unwrap();
    assert_eq!(
        products.items.len(),
        4,
        "the sync ran once for two deliveries"
    );
}

#[test]
fn a_step_keeps_a_quarter_of_its_time_and_at_least_30_seconds() {
    let now = std::time::SystemTime::now();
    let now_ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let start = std::time::Instant::now();
    // 15 minutes left: work for 11:15.
    let d = sync_worker::step_deadline(now_ms + 900_000, now);
    let work = d.duration_since(start).as_secs_f64();
    assert!((674.0..=676.0).contains(&work), "{work}");
    // 60 s left: work for 30.
    let d = sync_worker::step_deadline(now_ms + 60_000, now);
    let work = d.duration_since(start).as_secs_f64();
    assert!((29.0..=31.0).contains(&work), "{work}");
    // Already late: stop at once.
    let d = sync_worker::step_deadline(now_ms.saturating_sub(5_000), now);
    assert!(d.duration_since(start).as_secs_f64() < 1.0);
}

//! Job messages, the local queue, and the worker's once-only handling.

mod common;

use shopsync_domain::{Actor, GuardRails, OperationType};
use shopsync_engine::jobs::{Job, JobError, JobMessage, JobQueue, LocalQueue, Worker};

#[test]
fn messages_round_trip_and_anything_else_is_poison() {
    let message = JobMessage::new(
        Job::ApplyOperation {
            operation: shopsync_domain::OperationId::random(),
        },
        chrono::Utc::now(),
    );
    assert_eq!(JobMessage::decode(&message.encode()).unwrap(), message);
    for body in [
        "not json".to_owned(),
        message.encode().replace("\"v\":1", "\"v\":2"),
        message.encode().replace("apply_operation", "format_disk"),
    ] {
        let err = JobMessage::decode(&body).unwrap_err();
        assert!(
            matches!(err, JobError::Poison(_)) && !err.is_retryable(),
            "{body}: {err}"
        );
    }
}

#[tokio::test]
async fn the_local_queue_delivers_in_order() {
    let queue = LocalQueue::default();
    let a = JobMessage::new(Job::FullDown, chrono::Utc::now());
    let b = JobMessage::new(Job::Up, chrono::Utc::now());
    queue.send(vec![a.clone(), b.clone()]).await.unwrap();
    assert_eq!(queue.receive().await, Some(a));
    assert_eq!(queue.receive().await, Some(b));
}

#[tokio::test]
async fn a_message_delivered_twice_runs_once() {
    let (_sim, client, store, _dir) = common::setup(5, 1).await;
    let worker = Worker {
        store: store.clone(),
        client,
        actor: Actor::new("system:worker").unwrap(),
        rails: GuardRails::default(),
    };
    let message = JobMessage::new(Job::FullDown, chrono::Utc::now());
    let first = worker.handle(&message).await.unwrap().expect("ran");
    assert_eq!(
        (first.operation_type, first.statistics.created),
        (OperationType::FullSync, 5)
    );
    assert!(
        worker.handle(&message).await.unwrap().is_none(),
        "the redelivery is a no-op"
    );

    // Another message with the same job is new work: an incremental run finds nothing new.
    let next = worker
        .handle(&JobMessage::new(Job::IncrementalDown, chrono::Utc::now()))
        .await
        .unwrap()
        .expect("ran");
    assert_eq!(
        (
            next.operation_type,
            next.statistics.created,
            next.statistics.updated
        ),
        (OperationType::IncrementalSync, 0, 0)
    );
}

#[tokio::test]
async fn the_redactions_job_carries_out_due_shop_redactions() {
    let (_sim, client, store, _dir) = common::setup(3, 1).await;
    let worker = Worker {
        store: store.clone(),
        client,
        actor: Actor::new("system:worker").unwrap(),
        rails: GuardRails::default(),
    };
    worker
        .handle(&JobMessage::new(Job::FullDown, chrono::Utc::now()))
        .await
        .unwrap();
    let request = shopsync_domain::ComplianceRequest::received(
        shopsync_domain::ComplianceTopic::ShopRedact,
        "w-1",
        "shop.myshopify.com",
        serde_json::json!({"shop_id": 1}),
        chrono::Utc::now() - chrono::Duration::seconds(1),
    );
    store.record_compliance(&request).await.unwrap();
    assert!(worker
        .handle(&JobMessage::new(Job::Redactions, chrono::Utc::now()))
        .await
        .unwrap()
        .is_none());
    let products = store
        .backend()
        .scan(shopsync_store::Table::Products, 10, None)
        .await
        .unwrap();
    assert!(products.items.is_empty(), "the shop's products are gone");
    assert!(store
        .due_redactions(chrono::Utc::now())
        .await
        .unwrap()
        .is_empty());
    let recorded = store.compliance_requests().await.unwrap();
    assert_eq!(
        recorded[0].status,
        shopsync_domain::ComplianceStatus::Redacted
    );
    assert_eq!(recorded[0].removed.get("products"), Some(&3));
}

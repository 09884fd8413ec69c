//! Job messages, the local queue, and the worker's once-only handling.

use crate::common;

use shopsync_domain::{Actor, GuardRails, OperationType};
use shopsync_engine::jobs::{
    Delivered, Job, JobError, JobMessage, JobOutcome, JobQueue, LocalQueue, ScheduleInput, Worker,
};

/// A worker that runs every step in-process.
fn worker(store: &shopsync_store::Store, client: shopsync_shopify::AdminClient) -> Worker {
    Worker {
        store: store.clone(),
        client,
        actor: Actor::new("system:worker").unwrap(),
        rails: GuardRails::default(),
        continuation: None,
        imports: None,
    }
}

#[test]
fn messages_round_trip_and_anything_else_is_poison() {
    let message = JobMessage::new(
        Job::ApplyOperation {
            operation: shopsync_domain::OperationId::generate(),
            by: Some(Actor::new("ana").unwrap()),
        },
        chrono::Utc::now(),
    );
    assert_eq!(JobMessage::decode(&message.encode()).unwrap(), message);
    // A message of a build before approvers were recorded names none, and still reads.
    let older = JobMessage::new(
        Job::ApplyOperation {
            operation: shopsync_domain::OperationId::generate(),
            by: None,
        },
        chrono::Utc::now(),
    );
    assert!(!older.encode().contains("\"by\""));
    assert_eq!(JobMessage::decode(&older.encode()).unwrap(), older);
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

on_both_stores! {
    async fn the_local_queue_delivers_in_order() {
        let queue = LocalQueue::default();
        let a = JobMessage::new(Job::FullDown, chrono::Utc::now());
        let b = JobMessage::new(Job::Up, chrono::Utc::now());
        queue.send(vec![a.clone(), b.clone()]).await.unwrap();
        assert_eq!(queue.receive().await, Some(a));
        assert_eq!(queue.receive().await, Some(b));
    }
}

on_both_stores! {
    async fn a_message_delivered_twice_runs_once() {
        let (_sim, client, store, _dir) = common::setup(5, 1).await;
        let worker = worker(&store, client);
        let message = JobMessage::new(Job::FullDown, chrono::Utc::now());
        let JobOutcome::Ran(Some(first)) = worker.handle(&message).await.unwrap() else {
            panic!("the first delivery runs the sync");
        };
        assert_eq!(
            (first.operation_type, first.statistics.created),
            (OperationType::FullSync, 5)
        );
        assert_eq!(
            worker.handle(&message).await.unwrap(),
            JobOutcome::Replay,
            "the redelivery is a no-op"
        );

        // Another message with the same job is new work: an incremental run finds nothing new.
        let JobOutcome::Ran(Some(next)) = worker
            .handle(&JobMessage::new(Job::IncrementalDown, chrono::Utc::now()))
            .await
            .unwrap()
        else {
            panic!("a new message runs");
        };
        assert_eq!(
            (
                next.operation_type,
                next.statistics.created,
                next.statistics.updated
            ),
            (OperationType::IncrementalSync, 0, 0)
        );
    }
}

on_both_stores! {
    async fn the_redactions_job_carries_out_due_shop_redactions() {
        let (_sim, client, store, _dir) = common::setup(3, 1).await;
        let worker = worker(&store, client);
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
        assert_eq!(
            worker
                .handle(&JobMessage::new(Job::Maintenance, chrono::Utc::now()))
                .await
                .unwrap(),
            JobOutcome::Ran(None)
        );
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
}

#[test]
fn schedule_inputs_choose_the_job_and_bad_ones_say_why() {
    let input = |text: &str| serde_json::from_str::<ScheduleInput>(text).unwrap();
    assert_eq!(
        input(r#"{"type":"incremental_sync","direction":"down"}"#)
            .job()
            .unwrap(),
        Job::IncrementalDown
    );
    assert_eq!(
        input(r#"{"type":"full_sync"}"#).job().unwrap(),
        Job::FullDown
    );
    assert_eq!(
        input(r#"{"type":"full_sync","direction":"up"}"#)
            .job()
            .unwrap(),
        Job::Up
    );
    assert_eq!(
        input(r#"{"type":"maintenance"}"#).job().unwrap(),
        Job::Maintenance
    );
    let err = input(r#"{"type":"full_sync","direction":"sideways"}"#)
        .job()
        .unwrap_err();
    assert!(err.to_string().contains("sideways"), "{err}");
    let err = input(r#"{"type":"nightly"}"#).job().unwrap_err();
    assert!(err.to_string().contains("unknown type `nightly`"), "{err}");
    assert!(serde_json::from_str::<ScheduleInput>(r#"{"type":"full_sync","extra":1}"#).is_err());
}

on_both_stores! {
    async fn a_batch_names_only_the_failed_messages_and_poison_fails_its_operation() {
        let (_sim, client, store, _dir) = common::setup(2, 1).await;
        let worker = worker(&store, client);
        let realtime = shopsync_engine::realtime::realtime_operation(&store, chrono::Utc::now())
            .await
            .unwrap();
        let good = JobMessage::new(Job::FullDown, chrono::Utc::now());
        // A message naming the operation whose job this build cannot read.
        let poison = format!(
            r#"{{"v":1,"id":"p-1","enqueued_at":"2026-11-25T00:00:00Z","job":{{"kind":"apply_rows","operation":"{}","rows":"not a list"}}}}"#,
            realtime.operation_uuid
        );
        let batch = vec![
            Delivered {
                message_id: "m-good".into(),
                body: good.encode(),
                receive_count: 1,
            },
            Delivered {
                message_id: "m-poison".into(),
                body: poison,
                receive_count: 1,
            },
            Delivered {
                message_id: "m-garbage".into(),
                body: "{".into(),
                receive_count: 1,
            },
            Delivered {
                message_id: "m-good-again".into(),
                body: good.encode(),
                receive_count: 2,
            },
        ];
        let report = worker.handle_batch(&batch, 5, None).await;
        assert_eq!(
            report.failed,
            vec!["m-poison".to_owned(), "m-garbage".to_owned()]
        );
        assert_eq!((report.ran, report.replayed, report.poison), (1, 1, 2));
        let failed: shopsync_domain::SyncOperation = store
            .get(&shopsync_store::item::Key::pk(
                realtime.operation_uuid.to_string(),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(failed.status, shopsync_domain::OperationStatus::Failed);
        assert!(
            failed
                .status_reason
                .as_deref()
                .is_some_and(|r| r.contains("poison message")),
            "{:?}",
            failed.status_reason
        );

        // An operation that cannot be applied (not awaiting approval) fails for good: reported
        // failed, and its operation marked failed with the reason.
        let waiting = JobMessage::new(
            Job::ApplyOperation {
                operation: shopsync_domain::OperationId::generate(),
                by: None,
            },
            chrono::Utc::now(),
        );
        let report = worker
            .handle_batch(
                &[Delivered {
                    message_id: "m-missing".into(),
                    body: waiting.encode(),
                    receive_count: 1,
                }],
                5,
                None,
            )
            .await;
        assert_eq!(report.failed, vec!["m-missing".to_owned()]);
    }
}

/// The local host's queue: its table is local-only (SQS holds the jobs on AWS), so these
/// run on the embedded store alone.
mod store_queue {
    use shopsync_engine::jobs::{Job, JobMessage, JobQueue};
    use shopsync_engine::local_queue::StoreQueue;
    use std::time::Duration;

    async fn queue(visibility: Duration) -> (StoreQueue, tempfile::TempDir) {
        let (store, dir) = crate::common::store().await;
        (StoreQueue::new(store, visibility), dir)
    }

    /// A job accepted is kept until it is done: handed out once at a time, oldest first, and
    /// gone once deleted; the same id sent again is queued once.
    #[tokio::test]
    async fn jobs_are_handed_out_in_order_one_holder_at_a_time_and_deleted_when_done() {
        let (queue, _dir) = queue(Duration::from_secs(60)).await;
        let now = chrono::Utc::now();
        let first = JobMessage::new(Job::IncrementalDown, now);
        let second = JobMessage::new(Job::Up, now);
        queue
            .send(vec![first.clone(), second.clone()])
            .await
            .unwrap();
        queue.send(vec![first.clone()]).await.unwrap();
        assert_eq!(queue.len().await.unwrap(), 2, "the same id is queued once");

        tokio::time::sleep(Duration::from_millis(5)).await;
        let a = queue.receive().await.unwrap();
        let b = queue.receive().await.unwrap();
        assert_eq!((&a.message, &b.message), (&first, &second));
        assert_eq!(a.receive_count, 1);
        assert!(
            queue
                .try_receive(chrono::Utc::now())
                .await
                .unwrap()
                .is_none(),
            "both are held"
        );
        assert!(queue.delete(&a).await.unwrap());
        assert!(!queue.delete(&a).await.unwrap(), "deleted once");
        assert_eq!(queue.len().await.unwrap(), 1);
    }

    /// A holder that does not finish in time loses the job: it is handed out again (counted),
    /// and the first holder can no longer delete it; a released job comes back after its
    /// delay; jobs held by a process that is gone come back at once on recovery.
    #[tokio::test]
    async fn a_job_not_finished_in_time_is_handed_out_again() {
        let (queue, _dir) = queue(Duration::from_millis(300)).await;
        let now = chrono::Utc::now();
        queue
            .send(vec![JobMessage::new(Job::Maintenance, now)])
            .await
            .unwrap();
        let first = queue.receive().await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let again = queue.receive().await.unwrap();
        assert_eq!(again.message, first.message);
        assert_eq!(again.receive_count, 2);
        assert!(
            !queue.delete(&first).await.unwrap(),
            "the old holder lost it"
        );

        assert!(queue
            .release(&again, Duration::from_millis(200))
            .await
            .unwrap());
        assert!(queue
            .try_receive(chrono::Utc::now())
            .await
            .unwrap()
            .is_none());
        tokio::time::sleep(Duration::from_millis(250)).await;
        let third = queue
            .try_receive(chrono::Utc::now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(third.receive_count, 3);

        // Held by a process that is gone: recovery makes it visible now.
        let recovered = queue.recover(chrono::Utc::now()).await.unwrap();
        assert_eq!(recovered, vec![third.message.clone()]);
        let fourth = queue
            .try_receive(chrono::Utc::now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fourth.receive_count, 4);
        assert!(queue.delete(&fourth).await.unwrap());
        assert_eq!(queue.len().await.unwrap(), 0);
    }
}

on_both_stores! {
    /// A sync a person asked for through the API is recorded as pending, by them, when it
    /// is queued; the worker opens that record, keeping who asked, and runs it to the end.
    async fn a_requested_sync_runs_as_the_pending_operation_its_requester_recorded() {
        use shopsync_engine::jobs::{operation_of_job, Job, JobMessage, JobOutcome, SyncMode, Worker};
        let (_sim, client, store, _dir) = common::setup(3, 1).await;
        let message = JobMessage::new(
            Job::Sync {
                direction: shopsync_domain::SyncDirection::Down,
                mode: SyncMode::Full,
                dry_run: false,
            },
            chrono::Utc::now(),
        );
        let ana = Actor::new("ana@example.com").unwrap();
        let mut pending = shopsync_domain::SyncOperation::new(
            "full down sync requested by ana",
            OperationType::FullSync,
            shopsync_domain::SyncDirection::Down,
            ana.clone(),
            chrono::Utc::now(),
        );
        pending.operation_uuid = operation_of_job(&message.id);
        store.insert(&pending).await.unwrap();
        let worker = Worker {
            store: store.clone(),
            client: client.clone(),
            actor: Actor::system("worker"),
            rails: GuardRails::default(),
            continuation: None,
            imports: None,
        };
        let JobOutcome::Ran(Some(done)) = worker.handle(&message).await.unwrap() else {
            panic!("the sync runs");
        };
        assert_eq!(done.operation_uuid, pending.operation_uuid);
        assert_eq!(done.status, shopsync_domain::OperationStatus::Completed);
        assert_eq!(done.created_by, ana);
        assert_eq!(done.statistics.created, 3);
        let stored = shopsync_engine::operation::load_operation(&store, pending.operation_uuid)
            .await
            .unwrap();
        assert_eq!(stored.created_by, ana);
    }
}

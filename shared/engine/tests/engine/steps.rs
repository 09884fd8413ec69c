//! Long operations in steps: each works until its deadline, checkpoints, and names its
//! successor; a step delivered twice, or cut short without saving (a Lambda timeout), leaves
//! nothing lost or doubled.

use crate::common;

use shopsync_domain::{Actor, GuardRails, OperationStatus, SyncDirection};
use shopsync_engine::jobs::{Job, JobMessage, JobOutcome, LocalQueue, Worker};
use shopsync_engine::operation::{Checkpoint, Phase};
use shopsync_engine::steps::{StepOutcome, Stepper, SyncKind};
use shopsync_store::{Store, Table};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn actor() -> Actor {
    Actor::new("system:worker").unwrap()
}

on_both_stores! {
    async fn a_step_cut_short_is_redelivered_and_a_repeated_step_does_nothing() {
        let (_sim, client, store, _dir) = common::setup(800, 2).await;
        let rails = GuardRails::default();
        let actor = actor();
        let stepper = Stepper {
            store: &store,
            client: &client,
            actor: &actor,
            rails: &rails,
        };
        let op = stepper
            .open(SyncKind::Full {
                direction: SyncDirection::Down,
                dry_run: false,
            })
            .await
            .unwrap();
        let id = op.operation_uuid;
        // A deadline already past: each step does the least it can (one poll, or one batch).
        let mut step = 1;
        let mut steps = 0;
        let mut cut = false;
        let finished = loop {
            steps += 1;
            assert!(steps < 100, "the operation ends");
            let phase = Checkpoint::of(&stepper_op(&store, id).await).map(|c| c.phase);
            if !cut && matches!(phase, Some(Phase::Read { done, .. }) if done >= 256) {
                // A Lambda timeout in the middle of a step: the step's future is dropped as soon
                // as it has written rows, before it could save its checkpoint.
                cut = true;
                let before = common::count(&store, Table::ProductsStaging).await;
                // A Lambda's step: its deadline is far off when the sandbox dies.
                let cut_short =
                    stepper.step(id, step, Some(Instant::now() + Duration::from_secs(3600)));
                tokio::pin!(cut_short);
                let written = async {
                    while common::count(&store, Table::ProductsStaging).await <= before {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                };
                tokio::select! {
                    _ = &mut cut_short => panic!("the step ended before it could be cut"),
                    _ = written => {}
                }
                assert!(common::count(&store, Table::ProductsStaging).await > before);
                // The queue redelivers the same step; it starts from the last checkpoint.
            }
            match stepper.step(id, step, Some(Instant::now())).await.unwrap() {
                StepOutcome::Continue(next) => {
                    // The same step delivered again: nothing happens, its successor is named.
                    assert_eq!(
                        stepper.step(id, step, Some(Instant::now())).await.unwrap(),
                        StepOutcome::AlreadyDone { next }
                    );
                    step = next;
                }
                StepOutcome::Finished(op) => break op,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert!(cut, "a step was cut short on the way");
        assert!(steps > 3, "{steps} steps");
        assert_eq!(finished.status, OperationStatus::Completed);
        assert_eq!(
            finished.statistics.created, 800,
            "{:?}",
            finished.statistics
        );
        assert!(finished.checkpoint.is_none());
        assert_eq!(common::count(&store, Table::Products).await, 800);
        assert_eq!(
            common::count(&store, Table::ProductVersions).await,
            800,
            "one version per product: nothing applied twice"
        );
        let log = shopsync_engine::operation::performance_of(&store, id)
            .await
            .unwrap()
            .unwrap();
        assert!(log.api_calls_count >= steps as u64 / 2, "{log:?}");
    }
}

async fn stepper_op(
    store: &Store,
    id: shopsync_domain::OperationId,
) -> shopsync_domain::SyncOperation {
    shopsync_engine::operation::load_operation(store, id)
        .await
        .unwrap()
}

on_both_stores! {
    async fn the_worker_chains_steps_through_the_queue_until_the_operation_ends() {
        let (_sim, client, store, _dir) = common::setup(800, 1).await;
        let queue = Arc::new(LocalQueue::default());
        let worker = Worker {
            store: store.clone(),
            client,
            actor: actor(),
            rails: GuardRails::default(),
            continuation: Some(queue.clone()),
            imports: None,
        };
        let first = JobMessage::new(Job::FullDown, chrono::Utc::now());
        let JobOutcome::Ran(Some(op)) = worker
            .handle_until(&first, Some(Instant::now()))
            .await
            .unwrap()
        else {
            panic!("the first step runs");
        };
        assert_eq!(op.status, OperationStatus::InProgress);
        let mut chained = 0;
        let finished = loop {
            let message = tokio::time::timeout(Duration::from_secs(5), queue.receive())
                .await
                .expect("a next step was enqueued")
                .unwrap();
            assert!(matches!(message.job, Job::Step { .. }), "{message:?}");
            assert_eq!(
                message.id,
                format!("{}:step:{}", op.operation_uuid, chained + 2)
            );
            chained += 1;
            match worker
                .handle_until(&message, Some(Instant::now()))
                .await
                .unwrap()
            {
                JobOutcome::Ran(Some(op)) if op.status == OperationStatus::Completed => break op,
                JobOutcome::Ran(_) => {}
                JobOutcome::Replay => panic!("each step message is new"),
            }
            // A redelivered step message is a replay.
            assert_eq!(
                worker
                    .handle_until(&message, Some(Instant::now()))
                    .await
                    .unwrap(),
                JobOutcome::Replay
            );
        };
        assert!(chained >= 3, "{chained} chained steps");
        assert_eq!(finished.statistics.created, 800);
        assert_eq!(common::count(&store, Table::Products).await, 800);
    }
}

on_both_stores! {
    async fn an_up_sync_pushes_a_page_per_step_and_ends() {
        let (sim, client, store, _dir) = common::setup(60, 1).await;
        // Every product changes: rails that let it through (the default ones hold it).
        let rails = GuardRails {
            max_changed_share: 1.0,
            ..GuardRails::default()
        };
        let actor = actor();
        shopsync_engine::sync::run_full_down(&store, &client, &actor, &rails)
            .await
            .unwrap();
        let ids: Vec<u64> = sim.with_shop(|s| s.products().map(|p| p.id).collect());
        for id in &ids {
            let local = store
                .product_by_shopify_id(shopsync_domain::ShopifyProductId::new(*id).unwrap())
                .await
                .unwrap()
                .unwrap();
            common::edit(&store, &local, |c| c.vendor = "Edited locally".into()).await;
        }
        let stepper = Stepper {
            store: &store,
            client: &client,
            actor: &actor,
            rails: &rails,
        };
        let op = stepper.open(SyncKind::Up).await.unwrap();
        let mut step = 1;
        let mut steps = 0;
        let done = loop {
            steps += 1;
            assert!(steps < 20, "the up-sync ends");
            match stepper
                .step(op.operation_uuid, step, Some(Instant::now()))
                .await
                .unwrap()
            {
                StepOutcome::Continue(next) => step = next,
                StepOutcome::Finished(op) => break op,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert!(steps >= 3, "{steps} steps for 60 products at 25 a page");
        assert_eq!(done.sync_direction, SyncDirection::Up);
        assert_eq!(done.status, OperationStatus::Completed);
        assert_eq!((done.statistics.updated, done.statistics.failed), (60, 0));
        for id in &ids {
            assert_eq!(
                sim.with_shop(|s| s.product(*id).unwrap().vendor.clone()),
                "Edited locally"
            );
        }
    }
}

//! Guard rails hold suspicious operations; approval applies them, rejection applies nothing;
//! applying twice changes nothing.

use crate::common;
use shopsync_domain::{Actor, GuardRails, OperationStatus, ShopifyProductId, StagingStatus};
use shopsync_engine::apply::apply_operation;
use shopsync_engine::down::local_id_for;
use shopsync_engine::operation::operation_rows;
use shopsync_engine::operation::Checkpoint;
use shopsync_engine::review::{
    approve_operation, approve_rows, cancel_operation, reject_operation, reject_rows,
    resume_operation,
};
use shopsync_engine::steps::{StepOutcome, Stepper, SyncKind};
use shopsync_engine::sync::run_full_down;
use shopsync_shopify::AdminClient;
use shopsync_shopify_sim::SimHandle;
use shopsync_store::Store;

async fn setup(products: usize) -> (SimHandle, AdminClient, Store, tempfile::TempDir) {
    common::setup(products, 2).await
}

fn actor() -> Actor {
    Actor::new("operator").unwrap()
}

/// Renames every product in Shopify and zeroes its stock.
async fn mass_edit(sim: &SimHandle) {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let ids: Vec<u64> = sim.with_shop(|s| s.products().map(|p| p.id).collect());
    sim.with_shop(|s| {
        for id in &ids {
            s.edit_product(*id, |p| {
                p.title = format!("{} (bulk rename)", p.title);
                for v in &mut p.variants {
                    for q in v.levels.values_mut() {
                        *q = 0;
                    }
                }
            });
        }
    });
}

/// Syncs the catalog down, mass-edits it in Shopify, and syncs again under `rails`.
async fn held_after_mass_edit(
    sim: &SimHandle,
    client: &AdminClient,
    store: &Store,
    rails: &GuardRails,
) -> shopsync_domain::SyncOperation {
    run_full_down(store, client, &actor(), rails).await.unwrap();
    mass_edit(sim).await;
    run_full_down(store, client, &actor(), rails).await.unwrap()
}

on_both_stores! {
    async fn a_mass_change_waits_for_approval_and_approval_applies_it_once() {
        let (sim, client, store, _dir) = setup(30).await;
        let rails = GuardRails {
            min_changes: 10,
            ..GuardRails::default()
        };
        let first = run_full_down(&store, &client, &actor(), &rails)
            .await
            .unwrap();
        assert_eq!(
            first.status,
            OperationStatus::Completed,
            "an import into an empty store is not held"
        );

        mass_edit(&sim).await;
        let held = run_full_down(&store, &client, &actor(), &rails)
            .await
            .unwrap();
        assert_eq!(held.status, OperationStatus::AwaitingApproval);
        let reason = held.status_reason.clone().unwrap();
        assert!(reason.contains("30 of 30 products"), "{reason}");
        // Nothing applied yet: the local products keep their names.
        let sid = sim.with_shop(|s| s.products().next().unwrap().id);
        let local_id = local_id_for(ShopifyProductId::new(sid).unwrap());
        assert!(!store
            .product(local_id)
            .await
            .unwrap()
            .unwrap()
            .content
            .title
            .ends_with("(bulk rename)"));
        let rows = operation_rows(&store, held.operation_uuid).await.unwrap();
        assert_eq!(rows.len(), 30);
        assert!(rows.iter().all(|r| r.status == StagingStatus::Pending));

        let approved = approve_operation(&store, held.operation_uuid, &actor())
            .await
            .unwrap();
        assert_eq!(approved.status, OperationStatus::Completed);
        assert_eq!(approved.statistics.updated, 30);
        let local = store.product(local_id).await.unwrap().unwrap();
        assert!(local.content.title.ends_with("(bulk rename)"));
        assert_eq!(local.version, 2);
        assert!(operation_rows(&store, held.operation_uuid)
            .await
            .unwrap()
            .iter()
            .all(|r| r.status == StagingStatus::Applied
                && r.reviewed_by.as_ref() == Some(&actor())
                && r.reviewed_at.is_some()),
            "each approved row names who approved it");

        // Applying again (a redelivered step) changes nothing; approving again is refused.
        let again = apply_operation(&store, &approved, &actor(), &mut Default::default())
            .await
            .unwrap();
        assert_eq!((again.created, again.updated), (0, 0));
        assert_eq!(store.product(local_id).await.unwrap().unwrap().version, 2);
        assert!(approve_operation(&store, held.operation_uuid, &actor())
            .await
            .is_err());
    }
}

on_both_stores! {
    async fn a_rejected_operation_applies_nothing() {
        let (sim, client, store, _dir) = setup(12).await;
        let rails = GuardRails {
            max_zero_stock: 5,
            ..GuardRails::default()
        };
        let held = held_after_mass_edit(&sim, &client, &store, &rails).await;
        assert_eq!(held.status, OperationStatus::AwaitingApproval);
        assert!(held
            .status_reason
            .as_deref()
            .unwrap()
            .contains("drop to zero"));

        let rejected = reject_operation(&store, held.operation_uuid, &actor(), "ERP feed was wrong")
            .await
            .unwrap();
        assert_eq!(rejected.status, OperationStatus::Cancelled);
        assert!(rejected
            .status_reason
            .unwrap()
            .contains("ERP feed was wrong"));
        let rows = operation_rows(&store, held.operation_uuid).await.unwrap();
        assert!(rows
            .iter()
            .all(|r| r.status == StagingStatus::Rejected && r.reviewed_by.is_some()));
        let sid = sim.with_shop(|s| s.products().next().unwrap().id);
        let local = store
            .product(local_id_for(ShopifyProductId::new(sid).unwrap()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(local.version, 1);
        assert!(local
            .content
            .variants
            .iter()
            .all(|v| v.inventory.values().any(|q| q.0 != 0) || v.inventory.is_empty()));
    }
}

on_both_stores! {
    async fn rows_are_approved_and_rejected_one_by_one_and_the_operation_completes_when_all_are_decided() {
        let (sim, client, store, _dir) = setup(12).await;
        let rails = GuardRails {
            min_changes: 5,
            ..GuardRails::default()
        };
        let held = held_after_mass_edit(&sim, &client, &store, &rails).await;
        assert_eq!(held.status, OperationStatus::AwaitingApproval);
        let id = held.operation_uuid;
        let rows = operation_rows(&store, id).await.unwrap();
        let (take, rest) = rows.split_at(4);
        let (refuse, last) = rest.split_at(7);
        let ids =
            |rows: &[shopsync_domain::ProductsStaging]| rows.iter().map(|r| r.id).collect::<Vec<_>>();

        let after = approve_rows(&store, id, &ids(take), &actor())
            .await
            .unwrap();
        assert_eq!(
            after.status,
            OperationStatus::AwaitingApproval,
            "rows still wait"
        );
        assert_eq!(after.statistics.updated, 4);
        for row in take {
            let product = store.product(row.source_product_id).await.unwrap().unwrap();
            assert!(product.content.title.ends_with("(bulk rename)"));
        }
        let after = reject_rows(&store, id, &ids(refuse), &actor(), "not these")
            .await
            .unwrap();
        assert_eq!(after.status, OperationStatus::AwaitingApproval);
        for row in refuse {
            let product = store.product(row.source_product_id).await.unwrap().unwrap();
            assert!(!product.content.title.ends_with("(bulk rename)"));
        }
        // A row id from elsewhere is refused by name, and nothing is applied.
        let stranger = shopsync_domain::StagingId::generate();
        let err = approve_rows(&store, id, &[last[0].id, stranger], &actor())
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&stranger.to_string()), "{err}");
        let done = approve_rows(&store, id, &ids(last), &actor())
            .await
            .unwrap();
        assert_eq!(done.status, OperationStatus::Completed);
        assert_eq!(done.statistics.updated, 5);
        let statuses: Vec<StagingStatus> = operation_rows(&store, id)
            .await
            .unwrap()
            .iter()
            .map(|r| r.status)
            .collect();
        assert_eq!(
            statuses
                .iter()
                .filter(|s| **s == StagingStatus::Applied)
                .count(),
            5
        );
        assert_eq!(
            statuses
                .iter()
                .filter(|s| **s == StagingStatus::Rejected)
                .count(),
            7
        );
    }
}

on_both_stores! {
    async fn a_cancelled_operation_applies_nothing_more_and_a_failed_one_resumes_from_its_checkpoint() {
        let (sim, client, store, _dir) = setup(8).await;
        let rails = GuardRails {
            min_changes: 3,
            ..GuardRails::default()
        };
        let held = held_after_mass_edit(&sim, &client, &store, &rails).await;
        let cancelled = cancel_operation(&store, held.operation_uuid, &actor(), "wrong day")
            .await
            .unwrap();
        assert_eq!(cancelled.status, OperationStatus::Cancelled);
        assert!(operation_rows(&store, held.operation_uuid)
            .await
            .unwrap()
            .iter()
            .all(|r| r.status == StagingStatus::Rejected));
        let err = approve_operation(&store, held.operation_uuid, &actor())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cancelled"), "{err}");
        let err = cancel_operation(&store, held.operation_uuid, &actor(), "again")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cannot be cancelled"), "{err}");

        // A step fails for good (Shopify answers 5xx past every retry), mid-operation.
        let stepper = Stepper {
            store: &store,
            client: &client,
            actor: &actor(),
            rails: &GuardRails::default(),
        };
        let op = stepper
            .open(SyncKind::Full {
                direction: shopsync_domain::SyncDirection::Down,
                dry_run: false,
            })
            .await
            .unwrap();
        let first = stepper
            .step(op.operation_uuid, 1, Some(std::time::Instant::now()))
            .await
            .unwrap();
        assert_eq!(first, StepOutcome::Continue(2));
        let failing = AdminClient::new(shopsync_shopify::ClientConfig {
            max_retries: 0,
            ..sim.client_config()
        })
        .unwrap();
        for _ in 0..3 {
            sim.push_fault(shopsync_shopify_sim::Fault::ServerError(503));
        }
        let broken = Stepper {
            client: &failing,
            ..stepper
        };
        let err = broken.step(op.operation_uuid, 2, None).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        // Still in progress at its checkpoint: the queue would redeliver the step.
        let waiting = shopsync_engine::operation::load_operation(&store, op.operation_uuid)
            .await
            .unwrap();
        assert_eq!(waiting.status, OperationStatus::InProgress);
        assert_eq!(Checkpoint::of(&waiting).unwrap().next_step, 2);
        let err = resume_operation(&store, op.operation_uuid, &actor())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("only a failed or paused"), "{err}");
        // The queue gave up on it (its last delivery failed too): the operation is failed.
        let worker = shopsync_engine::jobs::Worker {
            store: store.clone(),
            client: client.clone(),
            actor: actor(),
            rails: GuardRails::default(),
            continuation: None,
            imports: None,
        };
        worker
            .fail_operation(
                op.operation_uuid,
                "gave up after 5 deliveries: shopify unavailable",
            )
            .await;
        let failed = shopsync_engine::operation::load_operation(&store, op.operation_uuid)
            .await
            .unwrap();
        assert_eq!(failed.status, OperationStatus::Failed);
        // Resumed, it runs on from step 2 and ends: the renames rejected earlier arrive now.
        let resumed = resume_operation(&store, op.operation_uuid, &actor())
            .await
            .unwrap();
        assert_eq!(resumed.status, OperationStatus::InProgress);
        let done = stepper.resume_to_end(op.operation_uuid).await.unwrap();
        assert_eq!(
            done.status,
            OperationStatus::Completed,
            "{:?}",
            done.status_reason
        );
        assert_eq!(done.statistics.updated, 8);
    }
}

on_both_stores! {
    async fn approving_a_held_operation_applies_its_deletes_and_keeps_the_last_content_as_a_version() {
        let (sim, client, store, _dir) = setup(30).await;
        let rails = GuardRails {
            min_changes: 10,
            ..GuardRails::default()
        };
        let held = held_after_mass_edit(&sim, &client, &store, &rails).await;
        assert_eq!(held.status, OperationStatus::AwaitingApproval);
        // Two local-only products, each with a delete waiting in the held operation; the second
        // is edited after its delete was staged.
        let template = store
            .product(local_id_for(
                ShopifyProductId::new(sim.with_shop(|s| s.products().next().unwrap().id)).unwrap(),
            ))
            .await
            .unwrap()
            .unwrap();
        let now = chrono::Utc::now();
        let mut doomed = Vec::new();
        for title in ["Discontinued", "Edited after"] {
            let mut content = template.content.clone();
            content.title = title.into();
            let product =
                shopsync_domain::Product::new(shopsync_domain::ProductId::generate(), content, now);
            store
                .create_product(
                    &product,
                    shopsync_domain::ChangeSource::Local,
                    &actor(),
                    None,
                )
                .await
                .unwrap();
            let row = shopsync_engine::realtime::delete_row(&held, &product, None, &actor(), now);
            store.insert(&row).await.unwrap();
            doomed.push((product, row));
        }
        common::edit(&store, &doomed[1].0, |c| {
            c.vendor = "Changed meanwhile".into()
        })
        .await;

        let approved = approve_operation(&store, held.operation_uuid, &actor())
            .await
            .unwrap();
        assert_eq!(approved.status, OperationStatus::Completed);
        assert_eq!(approved.statistics.deleted, 1, "{:?}", approved.statistics);
        assert_eq!(approved.statistics.failed, 1, "{:?}", approved.statistics);
        let (gone, kept) = (&doomed[0].0, &doomed[1].0);
        assert!(store.product(gone.id).await.unwrap().is_none(), "removed");
        let last = store
            .product_version(gone.id, 2)
            .await
            .unwrap()
            .expect("a final version");
        assert_eq!(
            last.product_data.title, "Discontinued",
            "its last content is kept"
        );
        assert_eq!(
            last.changed_fields
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>(),
            vec!["deleted"]
        );
        assert_eq!(last.sync_operation_id, Some(held.operation_uuid));
        assert!(
            store.product(kept.id).await.unwrap().is_some(),
            "changed since: kept"
        );
        let rows = operation_rows(&store, held.operation_uuid).await.unwrap();
        let status_of = |id| rows.iter().find(|r| r.id == id).map(|r| r.status);
        assert_eq!(status_of(doomed[0].1.id), Some(StagingStatus::Applied));
        assert_eq!(status_of(doomed[1].1.id), Some(StagingStatus::Failed));
        let reason = rows
            .iter()
            .find(|r| r.id == doomed[1].1.id)
            .and_then(|r| r.error.clone())
            .unwrap_or_default();
        assert!(reason.contains("kept"), "{reason}");

        // Applying again changes nothing: the delete is not counted twice.
        let again = apply_operation(&store, &approved, &actor(), &mut Default::default())
            .await
            .unwrap();
        assert_eq!(again.deleted, 0);
    }
}

on_both_stores! {
    async fn an_unattended_apply_never_deletes() {
        let (sim, client, store, _dir) = setup(3).await;
        run_full_down(&store, &client, &actor(), &GuardRails::default())
            .await
            .unwrap();
        let id = local_id_for(
            ShopifyProductId::new(sim.with_shop(|s| s.products().next().unwrap().id)).unwrap(),
        );
        let product = store.product(id).await.unwrap().unwrap();
        let op = shopsync_engine::realtime::realtime_operation(&store, chrono::Utc::now())
            .await
            .unwrap();
        let row =
            shopsync_engine::realtime::delete_row(&op, &product, None, &actor(), chrono::Utc::now());
        store.insert(&row).await.unwrap();
        let stats = shopsync_engine::apply::apply_rows(
            &store,
            &op,
            vec![row.clone()],
            &actor(),
            &mut Default::default(),
        )
        .await
        .unwrap();
        assert_eq!(stats.deleted, 0);
        assert!(store.product(id).await.unwrap().is_some());
        let rows = operation_rows(&store, op.operation_uuid).await.unwrap();
        assert_eq!(
            rows.iter().find(|r| r.id == row.id).map(|r| r.status),
            Some(StagingStatus::Pending),
            "waits for a person"
        );
    }
}

on_both_stores! {
    async fn an_incremental_sync_judges_its_share_of_the_whole_catalog_however_long_ago_it_was_read() {
        let (sim, client, store, _dir) = setup(200).await;
        let rails = GuardRails::default();
        run_full_down(&store, &client, &actor(), &rails)
            .await
            .unwrap();
        // Hours of scheduled work since the full read: incremental down-syncs that found nothing,
        // each followed by an up-sync, until the full read is older than the last 200 operations.
        let stepper = Stepper {
            store: &store,
            client: &client,
            actor: &actor(),
            rails: &rails,
        };
        for _ in 0..105 {
            let quiet = stepper
                .run_to_end(SyncKind::Incremental {
                    overlap: chrono::Duration::zero(),
                    dry_run: false,
                })
                .await
                .unwrap();
            assert_eq!(
                quiet.operation_type,
                shopsync_domain::OperationType::IncrementalSync
            );
            let now = chrono::Utc::now();
            let mut up = shopsync_domain::SyncOperation::new(
                "up-sync",
                shopsync_domain::OperationType::IncrementalSync,
                shopsync_domain::SyncDirection::Up,
                actor(),
                now,
            );
            up.move_to(OperationStatus::InProgress, None, now).unwrap();
            up.move_to(OperationStatus::Completed, None, now).unwrap();
            store.insert(&up).await.unwrap();
        }
        let overlap = chrono::Duration::minutes(5);

        // 60 of 200 products renamed in Shopify: 30%, under the 50% rail.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let ids: Vec<u64> = sim.with_shop(|s| s.products().map(|p| p.id).take(60).collect());
        sim.with_shop(|s| {
            for id in &ids {
                s.edit_product(*id, |p| p.title = format!("{} (renamed)", p.title));
            }
        });
        let second = stepper
            .run_to_end(SyncKind::Incremental {
                overlap,
                dry_run: false,
            })
            .await
            .unwrap();
        assert_eq!(
            second.status,
            OperationStatus::Completed,
            "{:?}",
            second.status_reason
        );
        assert_eq!(second.statistics.updated, 60);
    }
}

//! The up-sync stages what it will push before anything is sent, and the guard rails (and
//! `require_approval`) judge it like any other operation: a held up-sync pushes only once a
//! person approves it, and only what was staged, at the version staged.

use crate::common;
use shopsync_domain::{
    Actor, GuardRails, OperationStatus, ShopifyProductId, StagingStatus, SyncDirection,
};
use shopsync_engine::down::local_id_for;
use shopsync_engine::jobs::{Job, JobMessage, JobOutcome, Worker};
use shopsync_engine::operation::operation_rows;
use shopsync_engine::steps::{Stepper, SyncKind};
use shopsync_engine::sync::run_full_down;

fn person() -> Actor {
    Actor::new("ana@example.com").unwrap()
}

on_both_stores! {
    async fn an_up_sync_stages_each_push_and_settles_its_row() {
        let (sim, client, store, _dir) = common::setup(4, 1).await;
        let rails = GuardRails::default();
        run_full_down(&store, &client, &person(), &rails).await.unwrap();
        let shopify_ids: Vec<u64> = sim.with_shop(|s| s.products().map(|p| p.id).collect());
        let local = store
            .product(local_id_for(ShopifyProductId::new(shopify_ids[0]).unwrap()))
            .await
            .unwrap()
            .unwrap();
        common::edit(&store, &local, |c| c.title = "Staged, then pushed".into()).await;
        let done = Stepper { store: &store, client: &client, actor: &person(), rails: &rails }
            .run_to_end(SyncKind::Up)
            .await
            .unwrap();
        assert_eq!(done.status, OperationStatus::Completed);
        assert_eq!(done.sync_direction, SyncDirection::Up);
        assert_eq!(done.statistics.updated, 1);
        let rows = operation_rows(&store, done.operation_uuid).await.unwrap();
        assert_eq!(rows.len(), 1, "one row per pushed product");
        assert_eq!(rows[0].status, StagingStatus::Applied);
        assert!(rows[0].change_data.contains_key(&shopsync_domain::FieldPath::new_unchecked("title".into())));
        assert_eq!(sim.with_shop(|s| s.product(shopify_ids[0]).unwrap().title.clone()), "Staged, then pushed");
    }
}

on_both_stores! {
    async fn a_held_up_sync_sends_nothing_until_approved_and_then_only_what_it_staged() {
        let (sim, client, store, _dir) = common::setup(3, 1).await;
        let rails = GuardRails { require_approval: true, ..GuardRails::default() };
        run_full_down(&store, &client, &person(), &GuardRails::default()).await.unwrap();
        let shopify_ids: Vec<u64> = sim.with_shop(|s| s.products().map(|p| p.id).collect());
        let local = |i: usize| local_id_for(ShopifyProductId::new(shopify_ids[i]).unwrap());
        for i in 0..2 {
            let product = store.product(local(i)).await.unwrap().unwrap();
            common::edit(&store, &product, |c| c.vendor = format!("Local vendor {i}")).await;
        }
        let worker = Worker {
            store: store.clone(),
            client: client.clone(),
            actor: Actor::system("worker"),
            rails: rails.clone(),
            continuation: None,
            imports: None,
        };
        let held = Stepper { store: &store, client: &client, actor: &Actor::system("scheduler"), rails: &rails }
            .run_to_end(SyncKind::Up)
            .await
            .unwrap();
        assert_eq!(held.status, OperationStatus::AwaitingApproval, "{held:?}");
        assert!(held.status_reason.as_deref().unwrap_or("").contains("approval"));
        let vendor = |i: usize| sim.with_shop(|s| s.product(shopify_ids[i]).unwrap().vendor.clone());
        assert!(!vendor(0).starts_with("Local vendor") && !vendor(1).starts_with("Local vendor"), "nothing sent while held");
        let rows = operation_rows(&store, held.operation_uuid).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.status == StagingStatus::Pending && !r.change_data.is_empty()));
        // A row of an up-sync is not approved alone.
        assert!(shopsync_engine::review::approve_rows(&store, held.operation_uuid, &[rows[0].id], &person()).await.is_err());

        // Product 1 changes again after it was staged: its newer version was never judged.
        let second = store.product(local(1)).await.unwrap().unwrap();
        common::edit(&store, &second, |c| c.vendor = "Changed after staging".into()).await;

        let message = JobMessage::new(Job::ApplyOperation { operation: held.operation_uuid, by: Some(person()) }, chrono::Utc::now());
        let JobOutcome::Ran(Some(done)) = worker.handle(&message).await.unwrap() else {
            panic!("the approval runs the push");
        };
        assert_eq!(done.status, OperationStatus::Completed, "{done:?}");
        assert_eq!(vendor(0), "Local vendor 0", "the staged product is pushed");
        assert!(!vendor(1).starts_with("Local vendor") && vendor(1) != "Changed after staging", "the one that changed since staging is not");
        assert!(store.product(local(1)).await.unwrap().unwrap().needs_push(), "it waits for the next up-sync");
        let rows = operation_rows(&store, held.operation_uuid).await.unwrap();
        let status_of = |id| rows.iter().find(|r| r.source_product_id == id).unwrap().status;
        assert_eq!(status_of(local(0)), StagingStatus::Applied);
        assert_eq!(status_of(local(1)), StagingStatus::Superseded);

        // The next up-sync (unheld rails) stages and pushes it.
        let next = Stepper { store: &store, client: &client, actor: &person(), rails: &GuardRails::default() }
            .run_to_end(SyncKind::Up)
            .await
            .unwrap();
        assert_eq!(next.status, OperationStatus::Completed);
        assert_eq!(vendor(1), "Changed after staging");
    }
}

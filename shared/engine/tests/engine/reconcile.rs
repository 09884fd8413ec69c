//! Reconcile: a full read that catches changes webhooks missed and reports local products
//! Shopify no longer has, as conflicts for a person; nothing is deleted.

use crate::common;

use shopsync_domain::{
    Actor, ConflictStatus, ConflictType, GuardRails, OperationType, Severity, ShopifyProductId,
    StagingStatus, SyncConflict,
};
use shopsync_engine::down::local_id_for;
use shopsync_engine::steps::{Stepper, SyncKind};
use shopsync_engine::sync::run_full_down;
use shopsync_store::Table;

on_both_stores! {
    async fn reconcile_reports_products_gone_from_shopify_and_takes_missed_changes() {
        let (sim, client, store, _dir) = common::setup(5, 1).await;
        let actor = Actor::new("system:reconcile").unwrap();
        let rails = GuardRails::default();
        run_full_down(&store, &client, &actor, &rails)
            .await
            .unwrap();
        let ids: Vec<u64> = sim.with_shop(|s| s.products().map(|p| p.id).collect());
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        // Nobody told shopsync: a product deleted and another edited in Shopify.
        sim.with_shop(|s| {
            s.delete_product(ids[0]);
            s.edit_product(ids[1], |p| {
                p.title = "Edited while webhooks were down".into()
            });
        });
        let stepper = Stepper {
            store: &store,
            client: &client,
            actor: &actor,
            rails: &rails,
        };
        let op = stepper
            .run_to_end(SyncKind::Reconcile { dry_run: false })
            .await
            .unwrap();
        assert_eq!(op.operation_type, OperationType::Reconcile);
        assert_eq!((op.statistics.updated, op.statistics.conflicts), (1, 1));
        let gone = local_id_for(ShopifyProductId::new(ids[0]).unwrap());
        assert!(
            store.product(gone).await.unwrap().is_some(),
            "never deleted silently"
        );
        let edited = store
            .product(local_id_for(ShopifyProductId::new(ids[1]).unwrap()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(edited.content.title, "Edited while webhooks were down");
        let conflicts: Vec<SyncConflict> = common::conflicts_on(&store, gone).await;
        assert_eq!(conflicts.len(), 1);
        let c = &conflicts[0];
        assert_eq!(
            (c.conflict_type, c.status, c.severity, c.auto_resolvable),
            (
                ConflictType::MissingRemotely,
                ConflictStatus::Open,
                Severity::Critical,
                false
            )
        );
        assert!(c.remote_value.is_none() && c.local_value.is_some());
        let rows = shopsync_engine::operation::operation_rows(&store, op.operation_uuid)
            .await
            .unwrap();
        let delete = rows
            .iter()
            .find(|r| r.source_product_id == gone)
            .expect("a delete row for review");
        assert_eq!(delete.status, StagingStatus::Pending);
        assert!(delete.has_conflicts);

        // Again: the open conflict is not reported twice.
        let again = stepper
            .run_to_end(SyncKind::Reconcile { dry_run: false })
            .await
            .unwrap();
        assert_eq!(again.statistics.conflicts, 0);
        let all: Vec<SyncConflict> = common::conflicts_on(&store, gone).await;
        assert_eq!(all.len(), 1);
    }
}

/// A catalog of six products taken down from Shopify, three of which Shopify has since lost
/// (nobody told shopsync).
struct ThreeGone {
    _sim: shopsync_shopify_sim::SimHandle,
    client: shopsync_shopify::AdminClient,
    store: shopsync_store::Store,
    _dir: tempfile::TempDir,
    actor: Actor,
    rails: GuardRails,
    /// The local ids of the three.
    gone: Vec<shopsync_domain::ProductId>,
}

impl ThreeGone {
    async fn new(rails: GuardRails) -> Self {
        let (sim, client, store, dir) = common::setup(6, 1).await;
        let actor = Actor::new("system:reconcile").unwrap();
        run_full_down(&store, &client, &actor, &rails)
            .await
            .unwrap();
        let ids: Vec<u64> = sim.with_shop(|s| s.products().map(|p| p.id).collect());
        sim.with_shop(|s| {
            for id in &ids[..3] {
                s.delete_product(*id);
            }
        });
        let gone = ids[..3]
            .iter()
            .map(|id| local_id_for(ShopifyProductId::new(*id).unwrap()))
            .collect();
        Self {
            _sim: sim,
            client,
            store,
            _dir: dir,
            actor,
            rails,
            gone,
        }
    }

    fn stepper(&self) -> Stepper<'_> {
        Stepper {
            store: &self.store,
            client: &self.client,
            actor: &self.actor,
            rails: &self.rails,
        }
    }
}

on_both_stores! {
    async fn many_products_gone_from_shopify_hold_the_reconcile_for_approval() {
        let catalog = ThreeGone::new(GuardRails {
            max_deletes: 2,
            ..GuardRails::default()
        })
        .await;
        let (store, actor, stepper) = (&catalog.store, &catalog.actor, catalog.stepper());
        let held = stepper
            .run_to_end(SyncKind::Reconcile { dry_run: false })
            .await
            .unwrap();
        assert_eq!(
            held.status,
            shopsync_domain::OperationStatus::AwaitingApproval
        );
        let reason = held.status_reason.clone().unwrap_or_default();
        assert!(reason.contains("3 products would be deleted"), "{reason}");

        // Approving the operation deletes nothing: each missing product waits for its conflict.
        let approved = shopsync_engine::review::approve_operation(store, held.operation_uuid, actor)
            .await
            .unwrap();
        assert_eq!(approved.status, shopsync_domain::OperationStatus::Completed);
        for product in &catalog.gone {
            assert!(store.product(*product).await.unwrap().is_some());
        }

        // The next reconcile proposes nothing new (the conflicts are open already): not held.
        let next = stepper
            .run_to_end(SyncKind::Reconcile { dry_run: false })
            .await
            .unwrap();
        assert_eq!(next.status, shopsync_domain::OperationStatus::Completed);
    }
}

/// Runs a reconcile of a catalog missing three products from Shopify step by step; the step
/// that records them loses its checkpoint (a Lambda timeout after its writes), so the queue
/// redelivers it. Returns the finished operation and the catalog.
async fn reconcile_cut_while_recording_missing(
    dry_run: bool,
    rails: GuardRails,
) -> (shopsync_domain::SyncOperation, ThreeGone) {
    use shopsync_engine::operation::{Checkpoint, Phase};
    use shopsync_engine::steps::StepOutcome;
    use std::time::Instant;
    let catalog = ThreeGone::new(rails).await;
    let (store, stepper) = (&catalog.store, catalog.stepper());
    let id = stepper
        .open(SyncKind::Reconcile { dry_run })
        .await
        .unwrap()
        .operation_uuid;
    let (mut step, mut cut) = (1, false);
    let finished = loop {
        assert!(step < 1000, "the operation ends");
        let operation = shopsync_engine::operation::load_operation(store, id)
            .await
            .unwrap();
        let phase = Checkpoint::of(&operation).map(|c| c.phase);
        if !cut && matches!(phase, Some(Phase::Missing { .. })) {
            // The step records every missing product, then its sandbox dies before the
            // checkpoint is saved: the operation is as it was before the step.
            cut = true;
            let before = common::count(store, Table::ProductsStaging).await;
            let outcome = stepper.step(id, step, Some(Instant::now())).await.unwrap();
            assert!(matches!(outcome, StepOutcome::Continue(_)), "{outcome:?}");
            assert_eq!(
                common::count(store, Table::ProductsStaging).await,
                before + 3
            );
            store
                .replace_if(&operation, shopsync_store::item::Condition::ItemPresent)
                .await
                .unwrap();
        }
        match stepper.step(id, step, Some(Instant::now())).await.unwrap() {
            StepOutcome::Continue(next) => step = next,
            StepOutcome::Finished(op) => break op,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(cut, "the missing products' step was cut short on the way");
    (*finished, catalog)
}

on_both_stores! {
    async fn a_redelivered_reconcile_step_records_each_missing_product_once() {
        let rails = GuardRails {
            max_deletes: 2,
            ..GuardRails::default()
        };
        let (op, catalog) = reconcile_cut_while_recording_missing(false, rails).await;
        let (store, gone) = (&catalog.store, &catalog.gone);
        // Counted once each, all three: past the delete rail.
        assert_eq!(
            op.status,
            shopsync_domain::OperationStatus::AwaitingApproval
        );
        let reason = op.status_reason.clone().unwrap_or_default();
        assert!(reason.contains("3 products would be deleted"), "{reason}");
        let rows = shopsync_engine::operation::operation_rows(store, op.operation_uuid)
            .await
            .unwrap();
        for product in gone {
            let deletes = rows
                .iter()
                .filter(|r| r.source_product_id == *product)
                .count();
            assert_eq!(deletes, 1, "one delete row for {product}");
            let conflicts: Vec<SyncConflict> = common::conflicts_on(store, *product).await;
            assert_eq!(conflicts.len(), 1, "one conflict for {product}");
            assert!(store.product(*product).await.unwrap().is_some());
        }
        assert_eq!(rows.len(), 3, "nothing else changed");
    }
}

on_both_stores! {
    async fn a_redelivered_dry_run_reconcile_counts_each_missing_product_once() {
        let (op, catalog) = reconcile_cut_while_recording_missing(true, GuardRails::default()).await;
        let (store, gone) = (&catalog.store, &catalog.gone);
        assert_eq!(op.status, shopsync_domain::OperationStatus::Completed);
        let reason = op.status_reason.clone().unwrap_or_default();
        assert!(
            reason.contains("3 change(s) staged, nothing applied (0 new, 0 updated, 3 to delete)"),
            "{reason}"
        );
        let rows = shopsync_engine::operation::operation_rows(store, op.operation_uuid)
            .await
            .unwrap();
        assert_eq!(rows.len(), 3);
        for product in gone {
            assert_eq!(
                rows.iter()
                    .filter(|r| r.source_product_id == *product)
                    .count(),
                1
            );
        }
        assert_eq!(common::count(store, Table::SyncConflicts).await, 0);
    }
}

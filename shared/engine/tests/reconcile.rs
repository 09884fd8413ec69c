//! Reconcile: a full read that catches changes webhooks missed and reports local products
//! Shopify no longer has, as conflicts for a person; nothing is deleted.

mod common;

use shopsync_domain::{
    Actor, ConflictStatus, ConflictType, GuardRails, OperationType, Severity, ShopifyProductId,
    StagingStatus, SyncConflict,
};
use shopsync_engine::down::local_id_for;
use shopsync_engine::steps::{Stepper, SyncKind};
use shopsync_engine::sync::run_full_down;
use shopsync_store::item::Query;
use shopsync_store::Table;

#[tokio::test]
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
    let conflicts: Vec<SyncConflict> = store
        .query_all(Query::new(
            Table::SyncConflicts,
            Some("by_product"),
            gone.to_string(),
        ))
        .await
        .unwrap();
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
    let rows = shopsync_engine::plan::operation_rows(&store, op.operation_uuid)
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
    let all: Vec<SyncConflict> = store
        .query_all(Query::new(
            Table::SyncConflicts,
            Some("by_product"),
            gone.to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

//! Guard rails hold suspicious operations; approval applies them, rejection applies nothing;
//! applying twice changes nothing.

mod common;
use shopsync_domain::{Actor, GuardRails, OperationStatus, ShopifyProductId, StagingStatus};
use shopsync_engine::down::local_id_for;
use shopsync_engine::plan::{apply_operation, approve_operation, operation_rows, reject_operation};
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

#[tokio::test]
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
        .all(|r| r.status == StagingStatus::Applied));

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

#[tokio::test]
async fn a_rejected_operation_applies_nothing() {
    let (sim, client, store, _dir) = setup(12).await;
    let rails = GuardRails {
        max_zero_stock: 5,
        ..GuardRails::default()
    };
    run_full_down(&store, &client, &actor(), &rails)
        .await
        .unwrap();
    mass_edit(&sim).await;
    let held = run_full_down(&store, &client, &actor(), &rails)
        .await
        .unwrap();
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

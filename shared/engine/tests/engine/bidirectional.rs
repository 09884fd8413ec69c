//! Edits on both sides: a three-way merge per field against the base, the ownership policy
//! settling what it owns, the rest waiting for a person (and never pushed over).

use crate::common;
use common::edit;

use shopsync_domain::conflict::{ConflictStatus, ConflictType};
use shopsync_domain::merge::Side;
use shopsync_domain::policy::{Severity, Strategy};
use shopsync_domain::{
    Actor, ChangeSource, GuardRails, Money, OperationStatus, ShopifyProductId, SyncConflict,
    SyncDirection,
};
use shopsync_engine::down::local_id_for;
use shopsync_engine::sync::{run_bidirectional, run_full_down};
use shopsync_store::item::Query;
use shopsync_store::{Store, Table};

fn merchant() -> Actor {
    Actor::new("merchant").unwrap()
}

async fn conflicts_of(store: &Store, op: shopsync_domain::OperationId) -> Vec<SyncConflict> {
    store
        .query_all(Query::new(
            Table::SyncConflicts,
            Some("by_operation"),
            op.to_string(),
        ))
        .await
        .unwrap()
}

on_both_stores! {
    async fn edits_on_both_sides_merge_by_field_and_the_policy_settles_what_it_owns() {
        let (sim, client, store, _dir) = common::setup(2, 2).await;
        run_full_down(&store, &client, &merchant(), &GuardRails::default())
            .await
            .unwrap();
        let ids: Vec<u64> = sim.with_shop(|s| s.products().map(|p| p.id).collect());
        let (a, b) = (ids[0], ids[1]);
        let local_a = store
            .product(local_id_for(ShopifyProductId::new(a).unwrap()))
            .await
            .unwrap()
            .unwrap();
        let local_b = store
            .product(local_id_for(ShopifyProductId::new(b).unwrap()))
            .await
            .unwrap()
            .unwrap();
        let base_price = local_a.content.variants[0].price;
        let base_title = local_a.content.title.clone();
        let base_sku = local_b.content.variants[0].sku.clone();

        // Locally first: A's title, A's first price, A's description; B's first SKU.
        edit(&store, &local_a, |c| {
            c.title = "Local title".into();
            c.variants[0].price = "30".parse::<Money>().unwrap();
            c.body_html = "<p>Local description</p>".into();
        })
        .await;
        edit(&store, &local_b, |c| {
            c.variants[0].sku = shopsync_domain::product::Sku::parse("LOCAL-SKU");
        })
        .await;
        // Then in Shopify, a whole second later: A's title, A's first price, A's vendor; B's SKU.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        sim.with_shop(|s| {
            s.edit_product(a, |p| {
                p.title = "Remote title".into();
                p.variants[0].price = "35.00".into();
                p.vendor = "Remote vendor".into();
            });
            s.edit_product(b, |p| p.variants[0].sku = Some("REMOTE-SKU".into()));
        });

        let op = run_bidirectional(&store, &client, &merchant(), &GuardRails::default())
            .await
            .unwrap();
        assert_eq!(op.sync_direction, SyncDirection::Bidirectional);
        assert_eq!(
            op.status,
            OperationStatus::Completed,
            "{:?}",
            op.status_reason
        );
        assert_eq!(
            (op.statistics.auto_resolved, op.statistics.conflicts),
            (2, 1)
        );

        let conflicts = conflicts_of(&store, op.operation_uuid).await;
        let on = |field: &str| {
            conflicts
                .iter()
                .find(|c| c.field_name.as_str().ends_with(field))
                .unwrap_or_else(|| panic!("a conflict on {field}: {conflicts:#?}"))
        };
        // Title: newest wins, and Shopify's edit came later.
        let title = on("title");
        assert_eq!(
            (
                title.base_value.clone(),
                title.local_value.clone(),
                title.remote_value.clone()
            ),
            (
                Some(serde_json::json!(base_title)),
                Some(serde_json::json!("Local title")),
                Some(serde_json::json!("Remote title"))
            )
        );
        assert_eq!(title.status, ConflictStatus::Resolved);
        let resolution = title.resolution.as_ref().unwrap();
        assert_eq!(
            (resolution.resolution_strategy, resolution.chosen_side),
            (Strategy::NewestWins, Some(Side::Remote))
        );
        // Price: the local catalog owns it.
        let price = on("/price");
        assert_eq!(price.base_value, Some(serde_json::json!(base_price)));
        assert_eq!(price.status, ConflictStatus::Resolved);
        assert_eq!(
            price.resolution.as_ref().unwrap().resolution_strategy,
            Strategy::LocalWins
        );
        assert_eq!(price.severity, Severity::Medium, "30 vs 35 is under 20%");
        // SKU: identity waits for a person.
        let sku = on("/sku");
        assert_eq!(
            (sku.status, sku.conflict_type, sku.auto_resolvable),
            (ConflictStatus::Open, ConflictType::FieldMismatch, false)
        );
        assert_eq!(sku.base_value, Some(serde_json::json!(base_sku)));
        assert_eq!(sku.local_value, Some(serde_json::json!("LOCAL-SKU")));
        assert_eq!(sku.remote_value, Some(serde_json::json!("REMOTE-SKU")));

        // A is merged both ways: one-sided edits flowed, the policy's winners are on both sides.
        let remote_a = sim.with_shop(|s| s.product(a).unwrap().clone());
        assert_eq!(remote_a.title, "Remote title");
        assert_eq!(remote_a.vendor, "Remote vendor");
        assert_eq!(remote_a.description_html, "<p>Local description</p>");
        assert_eq!(remote_a.variants[0].price, "30");
        assert_eq!(remote_a.variants.len(), 2, "no variant dropped");
        let merged_a = store.product(local_a.id).await.unwrap().unwrap();
        assert_eq!(merged_a.content.title, "Remote title");
        assert_eq!(merged_a.content.vendor, "Remote vendor");
        assert_eq!(merged_a.content.body_html, "<p>Local description</p>");
        assert!(!merged_a.needs_push(), "pushed and confirmed");
        let history = store
            .product_versions(local_a.id, true, 10, None)
            .await
            .unwrap()
            .items;
        assert!(
            history
                .iter()
                .any(|v| v.change_source == ChangeSource::ConflictResolution),
            "the merge is a version of its own"
        );

        // B waits: neither side was overwritten.
        let remote_b = sim.with_shop(|s| s.product(b).unwrap().clone());
        assert_eq!(remote_b.variants[0].sku.as_deref(), Some("REMOTE-SKU"));
        let held_b = store.product(local_b.id).await.unwrap().unwrap();
        assert_eq!(
            held_b.content.variants[0].sku.as_ref().map(|s| s.as_str()),
            Some("LOCAL-SKU")
        );
        assert!(held_b.needs_push(), "still to push once a person decides");

        // An up-sync meanwhile does not push B over Shopify's value either.
        let up = shopsync_engine::sync::run_up(&store, &client, &merchant())
            .await
            .unwrap();
        assert_eq!(up.statistics.skipped, 1);
        let remote_b = sim.with_shop(|s| s.product(b).unwrap().clone());
        assert_eq!(remote_b.variants[0].sku.as_deref(), Some("REMOTE-SKU"));
    }
}

on_both_stores! {
    async fn a_held_bidirectional_sync_pushes_once_it_is_approved() {
        let (sim, client, store, _dir) = common::setup(2, 1).await;
        run_full_down(&store, &client, &merchant(), &GuardRails::default())
            .await
            .unwrap();
        let id = sim.with_shop(|s| s.products().next().unwrap().id);
        let local = store
            .product(local_id_for(ShopifyProductId::new(id).unwrap()))
            .await
            .unwrap()
            .unwrap();
        edit(&store, &local, |c| c.vendor = "Local vendor".into()).await;
        // A change in Shopify too, so the plan has something to approve.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let other = sim.with_shop(|s| s.products().nth(1).unwrap().id);
        sim.with_shop(|s| s.edit_product(other, |p| p.title = "Renamed in Shopify".into()));
        let rails = GuardRails {
            require_approval: true,
            ..GuardRails::default()
        };
        let held = run_bidirectional(&store, &client, &merchant(), &rails)
            .await
            .unwrap();
        assert_eq!(held.status, OperationStatus::AwaitingApproval);
        assert_ne!(
            sim.with_shop(|s| s.product(id).unwrap().vendor.clone()),
            "Local vendor",
            "nothing pushed while it waits"
        );
        let worker = shopsync_engine::jobs::Worker {
            store: store.clone(),
            client: client.clone(),
            actor: merchant(),
            rails,
            continuation: None,
            imports: None,
        };
        let message = shopsync_engine::jobs::JobMessage::new(
            shopsync_engine::jobs::Job::ApplyOperation {
                operation: held.operation_uuid,
                by: None,
            },
            chrono::Utc::now(),
        );
        let shopsync_engine::jobs::JobOutcome::Ran(Some(done)) = worker.handle(&message).await.unwrap()
        else {
            panic!("the approval runs");
        };
        assert_eq!(done.status, OperationStatus::Completed);
        assert_eq!(
            done.statistics.updated, 2,
            "the Shopify rename applied and the local edit pushed: {:?}",
            done.statistics
        );
        assert_eq!(
            sim.with_shop(|s| s.product(id).unwrap().vendor.clone()),
            "Local vendor"
        );
        assert!(!store.product(local.id).await.unwrap().unwrap().needs_push());
    }
}

/// The product's open conflicts and its rows waiting for a person.
async fn waiting_on(
    store: &Store,
    product: shopsync_domain::ProductId,
) -> (Vec<SyncConflict>, usize) {
    let conflicts: Vec<SyncConflict> = common::conflicts_on(store, product).await;
    let rows: Vec<shopsync_domain::ProductsStaging> = store
        .query_all(Query::new(
            Table::ProductsStaging,
            Some("by_product"),
            product.to_string(),
        ))
        .await
        .unwrap();
    (
        conflicts
            .into_iter()
            .filter(|c| c.status == ConflictStatus::Open)
            .collect(),
        rows.iter()
            .filter(|r| r.status == shopsync_domain::StagingStatus::Pending && r.has_conflicts)
            .count(),
    )
}

on_both_stores! {
    async fn a_conflict_still_open_is_recorded_once_and_replaced_when_a_side_moves_on() {
        let (sim, client, store, _dir) = common::setup(1, 1).await;
        let rails = GuardRails::default();
        run_full_down(&store, &client, &merchant(), &rails)
            .await
            .unwrap();
        let (id, local) = common::first_product(&sim, &store).await;
        edit(&store, &local, |c| {
            c.variants[0].sku = shopsync_domain::product::Sku::parse("LOCAL-SKU");
        })
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        sim.with_shop(|s| s.edit_product(id, |p| p.variants[0].sku = Some("REMOTE-SKU".into())));

        // A preview first: its row is no merge waiting for a person.
        let actor = merchant();
        let stepper = shopsync_engine::steps::Stepper {
            store: &store,
            client: &client,
            actor: &actor,
            rails: &rails,
        };
        let preview = stepper
            .run_to_end(shopsync_engine::steps::SyncKind::Full {
                direction: SyncDirection::Bidirectional,
                dry_run: true,
            })
            .await
            .unwrap();
        let preview_rows = shopsync_engine::operation::operation_rows(&store, preview.operation_uuid)
            .await
            .unwrap();
        assert_eq!(preview_rows.len(), 1);

        let first = run_bidirectional(&store, &client, &merchant(), &rails)
            .await
            .unwrap();
        assert_eq!(first.statistics.conflicts, 1);
        let (open, rows) = waiting_on(&store, local.id).await;
        assert_eq!(
            (open.len(), rows),
            (1, 2),
            "the preview's row and the real one"
        );
        let preview_rows = shopsync_engine::operation::operation_rows(&store, preview.operation_uuid)
            .await
            .unwrap();
        assert_eq!(
            preview_rows[0].status,
            shopsync_domain::StagingStatus::Pending,
            "a preview is left as it is"
        );
        let recorded = open[0].conflict_uuid;

        // Seen again, nothing new: the same merge waits already; nothing is recorded twice.
        for round in 0..2 {
            let again = run_bidirectional(&store, &client, &merchant(), &rails)
                .await
                .unwrap();
            assert_eq!(again.status, OperationStatus::Completed);
            // Skipped twice: held on the way down, and held back from the push.
            assert_eq!(
                (again.statistics.conflicts, again.statistics.skipped),
                (0, 2),
                "round {round}: {:?}",
                again.statistics
            );
            let (open, rows) = waiting_on(&store, local.id).await;
            assert_eq!((open.len(), rows), (1, 2), "round {round}");
            assert_eq!(open[0].conflict_uuid, recorded);
        }

        // Shopify edits another field: a new merge replaces the waiting one; the SKU conflict,
        // with the same values, stands as it was recorded.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        sim.with_shop(|s| s.edit_product(id, |p| p.vendor = "Remote vendor".into()));
        run_bidirectional(&store, &client, &merchant(), &rails)
            .await
            .unwrap();
        let (open, rows) = waiting_on(&store, local.id).await;
        assert_eq!((open.len(), rows), (1, 2));
        assert_eq!(open[0].conflict_uuid, recorded);

        // Shopify changes the SKU again: the conflict is replaced by one with the new value.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        sim.with_shop(|s| s.edit_product(id, |p| p.variants[0].sku = Some("REMOTE-SKU-2".into())));
        let moved = run_bidirectional(&store, &client, &merchant(), &rails)
            .await
            .unwrap();
        assert_eq!(moved.statistics.conflicts, 1);
        let (open, rows) = waiting_on(&store, local.id).await;
        assert_eq!((open.len(), rows), (1, 2));
        assert_eq!(
            open[0].remote_value,
            Some(serde_json::json!("REMOTE-SKU-2"))
        );
        assert_eq!(open[0].local_value, Some(serde_json::json!("LOCAL-SKU")));
        let old: SyncConflict = store
            .get(&shopsync_store::Key::pk(recorded.to_string()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(old.status, ConflictStatus::Superseded);

        // Neither side was overwritten meanwhile.
        let held = store.product(local.id).await.unwrap().unwrap();
        assert_eq!(
            held.content.variants[0].sku.as_ref().map(|s| s.as_str()),
            Some("LOCAL-SKU")
        );
        let remote = sim.with_shop(|s| s.product(id).unwrap().clone());
        assert_eq!(remote.variants[0].sku.as_deref(), Some("REMOTE-SKU-2"));
    }
}

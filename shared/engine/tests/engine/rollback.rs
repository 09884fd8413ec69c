//! Rollbacks: an operation's changes taken back locally and in Shopify as new versions, what
//! changed since skipped (or forced, on request), stock moved back by the difference the
//! operation made, and every rollback recorded with what it restored and skipped.

use crate::common;
use shopsync_domain::{
    Actor, ChangeSource, OperationStatus, ProductEdit, ProductId, RollbackRequest, RollbackStatus,
    RollbackType, ShopifyProductId, StagingStatus, VariantEdit, VariantRef,
};
use shopsync_engine::down::local_id_for;
use shopsync_engine::edit::edit_product;
use shopsync_engine::operation::load_operation;
use shopsync_engine::rollback::{open_rollback, run, RollbackError};
use shopsync_engine::sync::{run_full_down, run_up};

fn admin() -> Actor {
    Actor::new("ada@example.com").unwrap()
}

fn full() -> RollbackRequest {
    RollbackRequest {
        rollback_type: Some(RollbackType::Full),
        ..RollbackRequest::default()
    }
}

/// Local ids of the simulator's products, in its order.
fn local_ids(sim: &shopsync_shopify_sim::SimHandle) -> Vec<(u64, ProductId)> {
    sim.with_shop(|s| {
        s.products()
            .map(|p| (p.id, local_id_for(ShopifyProductId::new(p.id).unwrap())))
            .collect()
    })
}

on_both_stores! {
    async fn a_full_rollback_restores_what_the_operation_changed_and_skips_what_changed_since() {
        let (sim, client, store, _dir) = common::setup(3, 2).await;
        let rails = Default::default();
        let system = Actor::system("test");
        let import = run_full_down(&store, &client, &system, &rails).await.unwrap();
        let ids = local_ids(&sim);
        let before: Vec<_> = {
            let mut found = Vec::new();
            for (_, id) in &ids {
                found.push(store.product(*id).await.unwrap().unwrap());
            }
            found
        };
        // A bad day in Shopify, brought down by a second sync (Shopify's times are to the
        // second).
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        sim.with_shop(|s| {
            s.edit_product(ids[0].0, |p| {
                p.title = "Bad feed title".into();
                p.variants[0].price = "1.00".into();
            });
            s.edit_product(ids[1].0, |p| p.vendor = "Bad feed vendor".into());
        });
        let bad = run_full_down(&store, &client, &system, &rails).await.unwrap();
        assert_eq!(bad.statistics.updated, 2);
        // Since then, a person edited the second product.
        let changed = store.product(ids[1].1).await.unwrap().unwrap();
        common::edit(&store, &changed, |c| c.body_html = "<p>Edited since</p>".into()).await;

        // The import created everything from Shopify: nothing of it is archived or deleted.
        let (rollback, _) = open_rollback(&store, import.operation_uuid, &full(), &admin(), chrono::Utc::now())
            .await
            .unwrap();
        let (record, _) = run(&store, &client, &rails, rollback.id).await.unwrap();
        assert_eq!(record.restored_total, 0);
        assert_eq!(record.skipped_total, 3);
        assert!(record.skipped.iter().all(|(_, why)| why.starts_with("created from Shopify")), "{:?}", record.skipped);

        let (rollback, operation) = open_rollback(&store, bad.operation_uuid, &full(), &admin(), chrono::Utc::now())
            .await
            .unwrap();
        assert_eq!(rollback.status, RollbackStatus::Pending);
        assert_eq!(operation.status, OperationStatus::Pending);
        let (record, operation) = run(&store, &client, &rails, rollback.id).await.unwrap();
        assert_eq!(operation.status, OperationStatus::Completed, "{:?}", operation.status_reason);
        assert_eq!(record.status, RollbackStatus::CompletedWithSkips);
        assert_eq!(record.backup_data.products_total, 2);
        assert_eq!(record.restored_total, 1);
        assert_eq!(record.restored[0].product_id, ids[0].1);
        assert_eq!(record.restored[0].shopify, "pushed");
        assert_eq!(record.skipped.len(), 1);
        assert_eq!(record.skipped[0].0, ids[1].1);
        assert!(
            record.skipped[0].1.starts_with("changed since: version") && record.skipped[0].1.contains("by merchant via local"),
            "{}",
            record.skipped[0].1
        );

        // Restored locally as a new version by the admin, and in Shopify.
        let restored = store.product(ids[0].1).await.unwrap().unwrap();
        assert_eq!(restored.content.title, before[0].content.title);
        assert_eq!(restored.content.variants[0].price, before[0].content.variants[0].price);
        assert!(!restored.needs_push(), "Shopify confirmed it");
        let newest = store.product_versions(ids[0].1, true, 1, None).await.unwrap().items;
        assert_eq!(newest[0].change_source, ChangeSource::Rollback);
        assert_eq!(newest[0].changed_by, admin());
        assert_eq!(newest[0].sync_operation_id, Some(operation.operation_uuid));
        let remote = sim.with_shop(|s| s.product(ids[0].0).unwrap().clone());
        assert_eq!(remote.title, before[0].content.title);
        // Skipped: left as it is.
        let kept = store.product(ids[1].1).await.unwrap().unwrap();
        assert_eq!(kept.content.vendor, "Bad feed vendor");
        assert_eq!(kept.content.body_html, "<p>Edited since</p>");
        let original = load_operation(&store, bad.operation_uuid).await.unwrap();
        assert_eq!(original.status, OperationStatus::PartiallyRolledBack);
        assert!(original.is_rollbackable, "the rest can still be rolled back");

        // Run again (a redelivery): nothing is restored twice.
        let versions = store.product(ids[0].1).await.unwrap().unwrap().version;
        run(&store, &client, &rails, rollback.id).await.unwrap();
        assert_eq!(store.product(ids[0].1).await.unwrap().unwrap().version, versions);

        // Forced, the skipped product's vendor comes back; the edit since stays.
        let forced = RollbackRequest {
            rollback_type: Some(RollbackType::Partial),
            products: vec![ids[1].1],
            force: true,
            ..RollbackRequest::default()
        };
        let (rollback, _) = open_rollback(&store, bad.operation_uuid, &forced, &admin(), chrono::Utc::now())
            .await
            .unwrap();
        let (record, _) = run(&store, &client, &rails, rollback.id).await.unwrap();
        assert_eq!(record.restored_total, 1, "{:?}", record.skipped);
        assert!(record.restored[0].forced.as_deref().is_some_and(|f| f.contains("by merchant via local")));
        let forced_back = store.product(ids[1].1).await.unwrap().unwrap();
        assert_eq!(forced_back.content.vendor, before[1].content.vendor);
        assert_eq!(forced_back.content.body_html, "<p>Edited since</p>");
        assert_eq!(
            load_operation(&store, bad.operation_uuid).await.unwrap().status,
            OperationStatus::PartiallyRolledBack
        );
    }
}

on_both_stores! {
    async fn a_dry_run_reports_and_changes_nothing_and_a_rollback_can_be_rolled_back() {
        let (sim, client, store, _dir) = common::setup(2, 1).await;
        let rails = Default::default();
        let system = Actor::system("test");
        run_full_down(&store, &client, &system, &rails).await.unwrap();
        let ids = local_ids(&sim);
        let original_title = store.product(ids[0].1).await.unwrap().unwrap().content.title;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        sim.with_shop(|s| s.edit_product(ids[0].0, |p| p.title = "Renamed in Shopify".into()));
        let renamed = run_full_down(&store, &client, &system, &rails).await.unwrap();

        let preview = RollbackRequest { dry_run: true, ..full() };
        let (rollback, _) = open_rollback(&store, renamed.operation_uuid, &preview, &admin(), chrono::Utc::now())
            .await
            .unwrap();
        let (record, operation) = run(&store, &client, &rails, rollback.id).await.unwrap();
        assert_eq!(record.restored_total, 1);
        assert_eq!(record.restored[0].shopify, "would_push");
        assert!(operation.status_reason.unwrap_or_default().starts_with("dry run"));
        assert!(!operation.is_rollbackable);
        assert_eq!(store.product(ids[0].1).await.unwrap().unwrap().content.title, "Renamed in Shopify");
        assert_eq!(sim.with_shop(|s| s.product(ids[0].0).unwrap().title.clone()), "Renamed in Shopify");
        assert_eq!(load_operation(&store, renamed.operation_uuid).await.unwrap().status, OperationStatus::Completed);

        let (rollback, _) = open_rollback(&store, renamed.operation_uuid, &full(), &admin(), chrono::Utc::now())
            .await
            .unwrap();
        let (record, undo) = run(&store, &client, &rails, rollback.id).await.unwrap();
        assert_eq!(record.status, RollbackStatus::Completed);
        assert_eq!(store.product(ids[0].1).await.unwrap().unwrap().content.title, original_title);
        assert_eq!(load_operation(&store, renamed.operation_uuid).await.unwrap().status, OperationStatus::RolledBack);
        // Rolled back whole: it cannot be rolled back again.
        let again = open_rollback(&store, renamed.operation_uuid, &full(), &admin(), chrono::Utc::now()).await;
        assert!(matches!(again, Err(RollbackError::NotRollbackable(_))), "{again:?}");

        // The rollback is rolled back: the rename returns, locally and in Shopify.
        let (redo, _) = open_rollback(&store, undo.operation_uuid, &full(), &admin(), chrono::Utc::now())
            .await
            .unwrap();
        let (record, _) = run(&store, &client, &rails, redo.id).await.unwrap();
        assert_eq!(record.restored_total, 1, "{:?}", record.skipped);
        assert_eq!(store.product(ids[0].1).await.unwrap().unwrap().content.title, "Renamed in Shopify");
        assert_eq!(sim.with_shop(|s| s.product(ids[0].0).unwrap().title.clone()), "Renamed in Shopify");
    }
}

on_both_stores! {
    async fn stock_is_restored_by_the_difference_the_operation_made_keeping_sales_since() {
        let (sim, client, store, _dir) = common::setup(1, 1).await;
        let rails = Default::default();
        let system = Actor::system("test");
        run_full_down(&store, &client, &system, &rails).await.unwrap();
        let ids = local_ids(&sim);
        let product = store.product(ids[0].1).await.unwrap().unwrap();
        let variant = &product.content.variants[0];
        let (location, start) = variant.inventory.iter().next().map(|(l, q)| (*l, q.0)).unwrap();
        let item = variant.inventory_item_id.unwrap().get();
        // An operator adds 10 to stock; the up-sync sends it.
        let edit = ProductEdit {
            variants: vec![VariantEdit {
                variant: Some(VariantRef::Shopify(variant.shopify_id.unwrap())),
                inventory: vec![(location, shopsync_domain::Quantity(start + 10))],
                ..VariantEdit::default()
            }],
            ..ProductEdit::default()
        };
        let edited = edit_product(&store, ids[0].1, &edit, None, &Actor::new("otto").unwrap(), chrono::Utc::now())
            .await
            .unwrap();
        run_up(&store, &client, &system).await.unwrap();
        assert_eq!(sim.with_shop(|s| s.level(item, location.get())), Some(start + 10));
        // Three sell in Shopify (not yet seen here).
        sim.with_shop(|s| s.adjust_level(item, location.get(), -3));

        let partial = RollbackRequest {
            rollback_type: Some(RollbackType::Selective),
            fields: vec!["inventory".into()],
            ..RollbackRequest::default()
        };
        let (rollback, _) = open_rollback(&store, edited.operation_id.unwrap(), &partial, &admin(), chrono::Utc::now())
            .await
            .unwrap();
        let (record, _) = run(&store, &client, &rails, rollback.id).await.unwrap();
        assert_eq!(record.restored_total, 1, "{:?}", record.skipped);
        // Locally the 10 are taken back from what it holds; in Shopify from what it holds
        // now, so the sale is kept.
        let now = store.product(ids[0].1).await.unwrap().unwrap();
        assert_eq!(now.content.variants[0].inventory[&location].0, start);
        assert_eq!(sim.with_shop(|s| s.level(item, location.get())), Some(start - 3), "the sale is kept");
        let rows = shopsync_engine::operation::operation_rows(&store, record.operation_id.unwrap()).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, StagingStatus::Applied);
        assert_eq!(rows[0].rolls_back.as_ref().map(|r| r.product_id), Some(ids[0].1));
    }
}

on_both_stores! {
    async fn a_held_rollback_is_pushed_once_approved_and_fails_when_rejected() {
        let (sim, client, store, _dir) = common::setup(2, 1).await;
        let system = Actor::system("test");
        run_full_down(&store, &client, &system, &Default::default()).await.unwrap();
        let ids = local_ids(&sim);
        let original_vendor = store.product(ids[0].1).await.unwrap().unwrap().content.vendor;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        sim.with_shop(|s| {
            s.edit_product(ids[0].0, |p| p.vendor = "Feed vendor".into());
            s.edit_product(ids[1].0, |p| p.vendor = "Feed vendor".into());
        });
        let feed = run_full_down(&store, &client, &system, &Default::default()).await.unwrap();
        let held_rails = shopsync_domain::GuardRails {
            require_approval: true,
            ..Default::default()
        };

        // Rejected: nothing changes and the record says why.
        let (rollback, _) = open_rollback(&store, feed.operation_uuid, &full(), &admin(), chrono::Utc::now())
            .await
            .unwrap();
        let (record, held) = run(&store, &client, &held_rails, rollback.id).await.unwrap();
        assert_eq!(held.status, OperationStatus::AwaitingApproval);
        assert_eq!(record.status, RollbackStatus::InProgress);
        assert!(record.status_reason.unwrap_or_default().contains("waiting for approval"));
        let busy = open_rollback(&store, feed.operation_uuid, &full(), &admin(), chrono::Utc::now()).await;
        assert!(matches!(busy, Err(RollbackError::NotRollbackable(_))), "one at a time: {busy:?}");
        shopsync_engine::review::reject_operation(&store, held.operation_uuid, &admin(), "not today")
            .await
            .unwrap();
        let record = shopsync_engine::rollback::load_rollback(&store, rollback.id).await.unwrap();
        assert_eq!(record.status, RollbackStatus::Failed);
        assert!(record.status_reason.unwrap_or_default().contains("not today"));
        assert_eq!(store.product(ids[0].1).await.unwrap().unwrap().content.vendor, "Feed vendor");

        // Approved: applied, pushed, settled.
        let (rollback, _) = open_rollback(&store, feed.operation_uuid, &full(), &admin(), chrono::Utc::now())
            .await
            .unwrap();
        let (_, held) = run(&store, &client, &held_rails, rollback.id).await.unwrap();
        let approver = Actor::new("otto").unwrap();
        let approved = shopsync_engine::review::approve_operation(&store, held.operation_uuid, &approver)
            .await
            .unwrap();
        shopsync_engine::review::push_after_approval(&store, &client, &approver, approved)
            .await
            .unwrap();
        let record = shopsync_engine::rollback::load_rollback(&store, rollback.id).await.unwrap();
        assert_eq!(record.status, RollbackStatus::Completed, "{:?}", record.skipped);
        assert_eq!(record.restored_total, 2);
        assert!(record.restored.iter().all(|r| r.shopify == "pushed"));
        assert_eq!(store.product(ids[0].1).await.unwrap().unwrap().content.vendor, original_vendor);
        assert_eq!(sim.with_shop(|s| s.product(ids[0].0).unwrap().vendor.clone()), original_vendor);
        assert_eq!(load_operation(&store, feed.operation_uuid).await.unwrap().status, OperationStatus::RolledBack);
    }
}

on_both_stores! {
    async fn an_up_sync_rolled_back_returns_shopify_and_the_catalog_to_what_shopify_held_before() {
        let (sim, client, store, _dir) = common::setup(2, 1).await;
        let rails = Default::default();
        let system = Actor::system("test");
        run_full_down(&store, &client, &system, &rails).await.unwrap();
        let ids = local_ids(&sim);
        let before = store.product(ids[0].1).await.unwrap().unwrap();
        let retitle = ProductEdit {
            title: Some("Pushed by mistake".into()),
            ..ProductEdit::default()
        };
        edit_product(&store, ids[0].1, &retitle, None, &Actor::new("otto").unwrap(), chrono::Utc::now())
            .await
            .unwrap();
        let push = run_up(&store, &client, &system).await.unwrap();
        assert_eq!(sim.with_shop(|s| s.product(ids[0].0).unwrap().title.clone()), "Pushed by mistake");

        let (rollback, _) = open_rollback(&store, push.operation_uuid, &full(), &admin(), chrono::Utc::now())
            .await
            .unwrap();
        let (record, _) = run(&store, &client, &rails, rollback.id).await.unwrap();
        assert_eq!(record.status, RollbackStatus::Completed, "{:?}", record.skipped);
        assert_eq!(record.backup_data.products_total, 1);
        assert!(record.backup_data.products[0].pushed);
        assert_eq!(record.restored[0].shopify, "pushed");
        assert_eq!(sim.with_shop(|s| s.product(ids[0].0).unwrap().title.clone()), before.content.title);
        let now = store.product(ids[0].1).await.unwrap().unwrap();
        assert_eq!(now.content.title, before.content.title);
        assert!(!now.needs_push());
        assert_eq!(load_operation(&store, push.operation_uuid).await.unwrap().status, OperationStatus::RolledBack);
    }
}

on_both_stores! {
    async fn a_product_an_operation_removed_comes_back_new_to_shopify() {
        use shopsync_engine::realtime::{handle_delivery, Handled};
        use shopsync_shopify::webhook::{sign, verify_and_parse, WebhookConfig};
        let (sim, client, store, _dir) = common::setup(2, 1).await;
        let rails = Default::default();
        let webhooks = Actor::new("system:webhooks").unwrap();
        run_full_down(&store, &client, &webhooks, &rails).await.unwrap();
        let ids = local_ids(&sim);
        let gone = store.product(ids[0].1).await.unwrap().unwrap();
        // Deleted in Shopify; the webhook's delete is staged, then approved by a person.
        sim.with_shop(|s| s.delete_product(ids[0].0));
        let body = serde_json::to_vec(&serde_json::json!({ "id": ids[0].0 })).unwrap();
        let hmac = sign("s", &body);
        let headers = [
            ("X-Shopify-Topic", "products/delete"),
            ("X-Shopify-Hmac-Sha256", hmac.as_str()),
            ("X-Shopify-Shop-Domain", "shop.myshopify.com"),
            ("X-Shopify-Webhook-Id", "delete-1"),
        ];
        let config = WebhookConfig {
            shop_domain: "shop.myshopify.com".into(),
            secret: "s".into(),
            previous_secret: None,
        };
        let delivery = verify_and_parse(&config, headers.as_slice(), &body).unwrap();
        let now = chrono::Utc::now();
        let handled = handle_delivery(&store, Some(&client), &delivery, &webhooks, now).await.unwrap();
        assert_eq!(handled, Handled::DeleteStaged);
        let day = shopsync_engine::realtime::realtime_operation(&store, now).await.unwrap();
        let row = shopsync_engine::operation::operation_rows(&store, day.operation_uuid)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.change_type == shopsync_domain::staging::ChangeType::Delete)
            .unwrap();
        shopsync_engine::review::approve_rows(&store, day.operation_uuid, &[row.id], &Actor::new("otto").unwrap())
            .await
            .unwrap();
        assert!(store.product(ids[0].1).await.unwrap().is_none(), "removed");

        // A realtime day rolls back product by product.
        let whole = open_rollback(&store, day.operation_uuid, &full(), &admin(), chrono::Utc::now()).await;
        assert!(matches!(whole, Err(RollbackError::Invalid { field: "products", .. })), "{whole:?}");
        let request = RollbackRequest {
            rollback_type: Some(RollbackType::Partial),
            products: vec![ids[0].1],
            ..RollbackRequest::default()
        };
        let (rollback, _) = open_rollback(&store, day.operation_uuid, &request, &admin(), chrono::Utc::now())
            .await
            .unwrap();
        let (record, _) = run(&store, &client, &rails, rollback.id).await.unwrap();
        assert_eq!(record.restored_total, 1, "{:?}", record.skipped);
        assert_eq!(record.restored[0].shopify, "recreated");
        let back = store.product(ids[0].1).await.unwrap().expect("back");
        assert_eq!(back.content.title, gone.content.title);
        assert!(!back.needs_push(), "Shopify confirmed it");
        let new_id = back.shopify_id.expect("linked to its new Shopify product").get();
        assert_ne!(new_id, ids[0].0, "a new Shopify id");
        assert_eq!(sim.with_shop(|s| s.product(new_id).map(|p| p.title.clone())), Some(gone.content.title.clone()));
        // The version that brought it back (after the one recording its removal), then
        // Shopify's confirmation with its new ids.
        let versions = store.product_versions(ids[0].1, true, 3, None).await.unwrap().items;
        assert_eq!(versions[0].version_number, back.version);
        assert!(versions[0]
            .changed_fields
            .iter()
            .all(|f| matches!(f.leaf(), "shopify_id" | "inventory_item_id")));
        assert_eq!(versions[1].change_source, ChangeSource::Rollback);
        assert_eq!(versions[1].changed_by, admin());
        assert_eq!(versions[2].changed_fields[0].as_str(), "deleted");
    }
}

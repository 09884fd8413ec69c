//! Down-sync through the simulator into the embedded store.

use crate::common;
use common::count;
use shopsync_domain::{Actor, ChangeSource, OperationStatus, ProductId, ShopifyProductId};
use shopsync_engine::down::local_id_for;
use shopsync_engine::sync::run_full_down;
use shopsync_shopify::AdminClient;
use shopsync_shopify_sim::SimHandle;
use shopsync_store::item::Query;
use shopsync_store::{Store, Table};

async fn setup(products: usize) -> (SimHandle, AdminClient, Store, tempfile::TempDir) {
    common::setup(products, 3).await
}

fn actor() -> Actor {
    Actor::new("system:down-sync").unwrap()
}

on_both_stores! {
    async fn a_full_down_sync_mirrors_the_shop_and_a_rerun_changes_nothing() {
        let (sim, client, store, _dir) = setup(25).await;
        let op = run_full_down(
            &store,
            &client,
            &actor(),
            &shopsync_domain::GuardRails::default(),
        )
        .await
        .unwrap();
        assert_eq!(op.status, OperationStatus::Completed);
        assert_eq!((op.statistics.processed, op.statistics.created), (25, 25));
        assert_eq!(count(&store, Table::Products).await, 25);
        assert_eq!(count(&store, Table::ProductVersions).await, 25);
        assert_eq!(count(&store, Table::ProductsStaging).await, 25);

        let remote = sim.with_shop(|s| s.products().next().unwrap().clone());
        let shopify_id = ShopifyProductId::new(remote.id).unwrap();
        let local = store
            .product_by_shopify_id(shopify_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(local.id, local_id_for(shopify_id));
        assert_eq!((local.version, local.last_sync_version), (1, 1));
        assert!(!local.needs_push());
        assert_eq!(local.content.title, remote.title);
        assert_eq!(local.content.variants.len(), 3);
        for (lv, rv) in local.content.variants.iter().zip(&remote.variants) {
            assert_eq!(lv.shopify_id.map(|v| v.get()), Some(rv.id));
            assert_eq!(lv.sku.as_ref().map(|s| s.as_str().to_owned()), rv.sku);
            assert_eq!(lv.price.to_string(), rv.price);
            let stock: Vec<i64> = lv.inventory.values().map(|q| q.0).collect();
            assert_eq!(stock, rv.levels.values().copied().collect::<Vec<_>>());
        }
        let stored = store
            .get::<shopsync_domain::SyncOperation>(&shopsync_store::item::Key::pk(
                op.operation_uuid.to_string(),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.statistics, op.statistics);

        // Nothing changed in Shopify: a second run stages and versions nothing.
        let again = run_full_down(
            &store,
            &client,
            &actor(),
            &shopsync_domain::GuardRails::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            (again.statistics.processed, again.statistics.unchanged),
            (25, 25)
        );
        assert_eq!(count(&store, Table::ProductVersions).await, 25);
        assert_eq!(count(&store, Table::ProductsStaging).await, 25);
    }
}

on_both_stores! {
    async fn a_shopify_edit_becomes_a_new_version_and_merges_with_unpushed_local_edits() {
        let (sim, client, store, _dir) = setup(4).await;
        run_full_down(
            &store,
            &client,
            &actor(),
            &shopsync_domain::GuardRails::default(),
        )
        .await
        .unwrap();
        let ids: Vec<u64> = sim.with_shop(|s| s.products().map(|p| p.id).collect());
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

        // Product A: edited in Shopify only.
        sim.with_shop(|s| s.edit_product(ids[0], |p| p.title = "Edited in Shopify".into()));
        // Product B: edited in Shopify and locally (not yet pushed), in different fields.
        let b = local_id_for(ShopifyProductId::new(ids[1]).unwrap());
        let mut local_b = store.product(b).await.unwrap().unwrap();
        let mut content = local_b.content.clone();
        content.vendor = "Local vendor".into();
        local_b = store
            .update_product_content(
                &local_b,
                content,
                ChangeSource::Local,
                &Actor::new("merchant").unwrap(),
                None,
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        assert!(local_b.needs_push());
        sim.with_shop(|s| s.edit_product(ids[1], |p| p.title = "Also edited in Shopify".into()));

        let op = run_full_down(
            &store,
            &client,
            &actor(),
            &shopsync_domain::GuardRails::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            (
                op.statistics.updated,
                op.statistics.conflicts,
                op.statistics.unchanged
            ),
            (2, 0, 2)
        );

        let a = store
            .product(local_id_for(ShopifyProductId::new(ids[0]).unwrap()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.content.title.as_str(), a.version, a.last_sync_version),
            ("Edited in Shopify", 2, 2)
        );
        let versions = store
            .product_versions(a.id, true, 10, None)
            .await
            .unwrap()
            .items;
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[0].change_source, ChangeSource::Shopify);
        assert!(versions[0]
            .changed_fields
            .iter()
            .any(|f| f.to_string() == "title"));

        // B: the edits met in different fields, so both are kept; the local one still waits
        // for the push (the base did not move).
        let b_after = store.product(b).await.unwrap().unwrap();
        assert_eq!(
            b_after.content.vendor, "Local vendor",
            "the local edit is kept"
        );
        assert_eq!(b_after.content.title, "Also edited in Shopify");
        assert_eq!(b_after.version, local_b.version + 1);
        assert_eq!(b_after.last_sync_version, local_b.last_sync_version);
        assert!(b_after.needs_push());
        let rows = store
            .query_all::<shopsync_domain::ProductsStaging>(Query::new(
                Table::ProductsStaging,
                Some("by_operation"),
                op.operation_uuid.to_string(),
            ))
            .await
            .unwrap();
        let merged: Vec<_> = rows.iter().filter(|r| r.merged).collect();
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].source_product_id, b);
        assert!(!merged[0].has_conflicts);
        assert!(merged[0]
            .change_data
            .keys()
            .any(|f| f.to_string() == "title"));
        assert!(
            !merged[0]
                .change_data
                .keys()
                .any(|f| f.to_string() == "vendor"),
            "the local vendor is not a change"
        );
        let _: ProductId = b;
    }
}

on_both_stores! {
    async fn an_incremental_sync_reads_only_what_changed_since_the_last_down_sync() {
        use shopsync_engine::incremental::run_incremental_down;
        let (sim, client, store, _dir) = setup(20).await;
        let rails = shopsync_domain::GuardRails::default();
        run_full_down(&store, &client, &actor(), &rails)
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        let ids: Vec<u64> = sim.with_shop(|s| s.products().map(|p| p.id).take(2).collect());
        for id in &ids {
            sim.with_shop(|s| s.edit_product(*id, |p| p.vendor = "Changed in Shopify".into()));
        }
        let op = run_incremental_down(&store, &client, &actor(), &rails, chrono::Duration::zero())
            .await
            .unwrap();
        assert_eq!(
            op.operation_type,
            shopsync_domain::OperationType::IncrementalSync
        );
        assert_eq!(op.status, OperationStatus::Completed);
        assert_eq!(
            (op.statistics.processed, op.statistics.updated),
            (2, 2),
            "{op:?}"
        );
        for id in &ids {
            let local = store
                .product_by_shopify_id(ShopifyProductId::new(*id).unwrap())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(local.content.vendor, "Changed in Shopify");
        }
        // With the default overlap the same products are read again, and nothing is applied twice.
        let again = run_incremental_down(
            &store,
            &client,
            &actor(),
            &rails,
            shopsync_engine::incremental::default_overlap(),
        )
        .await
        .unwrap();
        assert_eq!(again.statistics.updated, 0, "{again:?}");
        assert!(again.statistics.unchanged >= 2);
    }
}

on_both_stores! {
    async fn a_locked_product_is_skipped_and_reported() {
        let (sim, client, store, _dir) = setup(3).await;
        let rails = shopsync_domain::GuardRails::default();
        run_full_down(&store, &client, &actor(), &rails)
            .await
            .unwrap();
        let ids: Vec<u64> = sim.with_shop(|s| s.products().map(|p| p.id).collect());
        let locked = local_id_for(ShopifyProductId::new(ids[0]).unwrap());
        store
            .lock_product(
                locked,
                &Actor::new("merchant").unwrap(),
                chrono::Utc::now(),
                chrono::Duration::hours(1),
            )
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        for id in &ids[..2] {
            sim.with_shop(|s| s.edit_product(*id, |p| p.title = "Renamed in Shopify".into()));
        }
        let op = run_full_down(&store, &client, &actor(), &rails)
            .await
            .unwrap();
        assert_eq!((op.statistics.updated, op.statistics.skipped), (1, 1));
        assert!(
            op.status_reason
                .as_deref()
                .is_some_and(|r| r.contains("1 product(s) skipped: locked")),
            "{:?}",
            op.status_reason
        );
        let kept = store.product(locked).await.unwrap().unwrap();
        assert_ne!(kept.content.title, "Renamed in Shopify");
        assert_eq!(kept.version, 1);
    }
}

on_both_stores! {
    async fn an_import_into_an_empty_catalog_applies_creates_as_it_plans_them() {
        use shopsync_engine::operation::{Checkpoint, Phase};
use shopsync_engine::steps::{StepOutcome, Stepper, SyncKind};
        use std::time::Instant;
        let (sim, client, store, _dir) = common::setup(600, 1).await;
        let rails = shopsync_domain::GuardRails::default();
        let actor = actor();
        let stepper = Stepper {
            store: &store,
            client: &client,
            actor: &actor,
            rails: &rails,
        };
        let full = SyncKind::Full {
            direction: shopsync_domain::SyncDirection::Down,
            dry_run: false,
        };
        let op = stepper.open(full).await.unwrap();
        assert!(Checkpoint::of(&op).unwrap().import, "the catalog is empty");
        // Step until one batch is read: its products exist while the operation still runs.
        let mut step = 1;
        loop {
            match stepper
                .step(op.operation_uuid, step, Some(Instant::now()))
                .await
                .unwrap()
            {
                StepOutcome::Continue(next) => step = next,
                other => panic!("the operation ends only after every batch: {other:?}"),
            }
            let now = shopsync_engine::operation::load_operation(&store, op.operation_uuid)
                .await
                .unwrap();
            if matches!(Checkpoint::of(&now).unwrap().phase, Phase::Read { done, .. } if done > 0) {
                assert_eq!(now.status, OperationStatus::InProgress);
                break;
            }
        }
        let applied_early = count(&store, Table::Products).await;
        assert!(applied_early > 0 && applied_early < 600, "{applied_early}");
        let done = stepper.resume_to_end(op.operation_uuid).await.unwrap();
        assert_eq!(done.status, OperationStatus::Completed);
        assert_eq!(
            (done.statistics.created, done.statistics.processed),
            (600, 600)
        );
        assert_eq!(count(&store, Table::ProductVersions).await, 600);
        let rows: Vec<shopsync_domain::ProductsStaging> =
            shopsync_engine::operation::operation_rows(&store, op.operation_uuid)
                .await
                .unwrap();
        assert_eq!(rows.len(), 600, "every create has its staging row");
        assert!(rows.iter().all(
            |r| r.status == shopsync_domain::staging::StagingStatus::Applied && r.applied_at.is_some()
        ));

        // The catalog is no longer empty: the next full sync stages first and judges the plan.
        let new_id = sim.with_shop(|s| s.products().next().unwrap().id);
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        sim.with_shop(|s| s.edit_product(new_id, |p| p.title = "Renamed".into()));
        let next = stepper.open(full).await.unwrap();
        assert!(!Checkpoint::of(&next).unwrap().import);
        let next = stepper.resume_to_end(next.operation_uuid).await.unwrap();
        assert_eq!(next.statistics.updated, 1, "{:?}", next.statistics);
    }
}

on_both_stores! {
    async fn an_import_that_must_be_approved_applies_nothing_until_it_is() {
        let (_sim, client, store, _dir) = setup(30).await;
        let rails = shopsync_domain::GuardRails {
            require_approval: true,
            ..shopsync_domain::GuardRails::default()
        };
        let held = run_full_down(&store, &client, &actor(), &rails)
            .await
            .unwrap();
        assert_eq!(held.status, OperationStatus::AwaitingApproval);
        assert_eq!(count(&store, Table::Products).await, 0, "nothing applied");
        let rows = shopsync_engine::operation::operation_rows(&store, held.operation_uuid)
            .await
            .unwrap();
        assert_eq!(rows.len(), 30);
        assert!(rows
            .iter()
            .all(|r| r.status == shopsync_domain::staging::StagingStatus::Pending));
    }
}

on_both_stores! {
    /// A local product found through the Shopify-id index is read again by key before it is
    /// used: an index that lags behind the table (DynamoDB's) may still name a product whose
    /// Shopify id has moved on, or hold an older copy of one that has not.
    async fn a_product_found_through_a_lagging_index_is_read_again_by_key() {
        use shopsync_domain::{Product, ProductId, ShopifyProductId};
        let (_sim, _client, store, _dir) = common::setup(0, 1).await;
        let shopify = |n: u64| ShopifyProductId::new(7_000_000_000_000 + n).unwrap();
        // Created locally and pushed: stored under an id of its own, not the one its Shopify id
        // gives, so only the index finds it.
        let mut pushed = Product::new(
            ProductId::generate(),
            shopsync_domain::testing::sample_content(1),
            chrono::Utc::now(),
        );
        pushed.shopify_id = Some(shopify(1));
        store.insert(&pushed).await.unwrap();
        let lagging = std::sync::Arc::new(common::stale::StaleIndexes::new(store.backend().clone()));
        lagging.freeze().await;
        let stale_view = Store::new(lagging.clone());

        let edited = common::edit(&store, &pushed, |c| {
            c.title = "Edited after the index's copy".into()
        })
        .await;
        let found = shopsync_engine::down::local_product(&stale_view, shopify(1))
            .await
            .unwrap()
            .expect("found through the index");
        assert_eq!(found, edited, "the table's copy, not the index's");

        // Its Shopify id moves on (the index still names it under the old one).
        let mut moved = edited.clone();
        moved.shopify_id = Some(shopify(2));
        store
            .commit_product(shopsync_store::ProductCommit {
                product: moved,
                expected_version: Some(edited.version),
                version: None,
                staging: None,
                actor: Actor::new("merchant").unwrap(),
                now: chrono::Utc::now(),
            })
            .await
            .unwrap();
        assert_eq!(
            shopsync_engine::down::local_product(&stale_view, shopify(1))
                .await
                .unwrap(),
            None
        );
    }
}

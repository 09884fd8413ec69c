//! Up-sync through the simulator: pushes, base advance, variant-deletion guard, echoes.

use crate::common;
use common::edit;
use shopsync_domain::{Actor, ChangeSource, Money, Product, ShopifyProductId};
use shopsync_engine::down::local_id_for;
use shopsync_engine::realtime::{handle_delivery, Handled};
use shopsync_engine::sync::{run_full_down, run_up};
use shopsync_engine::up::{push_product, Pushed};
use shopsync_shopify::webhook::{sign, verify_and_parse, Delivery, WebhookConfig};
use shopsync_shopify::AdminClient;
use shopsync_shopify_sim::shop::rest_product;
use shopsync_shopify_sim::SimHandle;
use shopsync_store::Store;

fn delivery(body: &serde_json::Value, id: &str) -> Delivery {
    let body = serde_json::to_vec(body).unwrap();
    let config = WebhookConfig {
        shop_domain: "s.myshopify.com".into(),
        secret: "k".into(),
        previous_secret: None,
    };
    let hmac = sign("k", &body);
    let headers = [
        ("X-Shopify-Topic", "products/update"),
        ("X-Shopify-Hmac-Sha256", hmac.as_str()),
        ("X-Shopify-Shop-Domain", "s.myshopify.com"),
        ("X-Shopify-Webhook-Id", id),
    ];
    verify_and_parse(&config, headers.as_slice(), &body).unwrap()
}

async fn setup() -> (SimHandle, AdminClient, Store, tempfile::TempDir) {
    let (sim, client, store, dir) = common::setup(3, 3).await;
    run_full_down(
        &store,
        &client,
        &merchant(),
        &shopsync_domain::GuardRails::default(),
    )
    .await
    .unwrap();
    (sim, client, store, dir)
}

fn merchant() -> Actor {
    Actor::new("merchant").unwrap()
}

on_both_stores! {
    async fn a_local_edit_is_pushed_its_base_advances_and_its_echo_is_not_staged() {
        let (sim, client, store, _dir) = setup().await;
        let sid = sim.with_shop(|s| s.products().next().unwrap().id);
        let id = local_id_for(ShopifyProductId::new(sid).unwrap());
        let product = store.product(id).await.unwrap().unwrap();
        let edited = edit(&store, &product, |c| {
            c.title = "Edited locally".into();
            c.variants[1].price = "42.50".parse::<Money>().unwrap();
        })
        .await;
        assert!(edited.needs_push());

        let op = run_up(&store, &client, &merchant()).await.unwrap();
        assert_eq!(
            (
                op.statistics.processed,
                op.statistics.updated,
                op.statistics.failed
            ),
            (1, 1, 0)
        );
        let remote = sim.with_shop(|s| s.product(sid).unwrap().clone());
        assert_eq!(remote.title, "Edited locally");
        assert_eq!(remote.variants[1].price, "42.5");
        assert_eq!(remote.variants.len(), 3, "no variant dropped");
        let after = store.product(id).await.unwrap().unwrap();
        assert!(!after.needs_push(), "base advanced after Shopify confirmed");
        assert_eq!(after.last_sync_version, after.version);

        // The merchant edits again before Shopify's echo of the push arrives.
        let again = edit(&store, &after, |c| c.vendor = "Newer vendor".into()).await;
        let staged_before = store
            .backend()
            .scan(shopsync_store::Table::ProductsStaging, 100, None)
            .await
            .unwrap()
            .items
            .len();
        let echo = sim.with_shop(|s| rest_product(s.product(sid).unwrap()));
        let mut late_echo = echo.clone();
        // Make it look newer than anything seen, so only the fingerprint can tell it is an echo.
        late_echo["updated_at"] = serde_json::json!("2031-01-01T00:00:00Z");
        let handled = handle_delivery(
            &store,
            Some(&client),
            &delivery(&late_echo, "e1"),
            &merchant(),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        assert_eq!(handled, Handled::Echo);
        let staged_after = store
            .backend()
            .scan(shopsync_store::Table::ProductsStaging, 100, None)
            .await
            .unwrap()
            .items
            .len();
        assert_eq!(staged_before, staged_after, "the echo staged nothing");
        assert_eq!(
            store.product(id).await.unwrap().unwrap(),
            again,
            "the newer local edit is untouched"
        );
    }
}

on_both_stores! {
    async fn only_deliberately_dropped_variants_are_deleted_in_shopify() {
        let (sim, client, store, _dir) = setup().await;
        let sids: Vec<u64> = sim.with_shop(|s| s.products().map(|p| p.id).collect());

        // Dropped locally since the last sync: deleted in Shopify.
        let a = store
            .product(local_id_for(ShopifyProductId::new(sids[0]).unwrap()))
            .await
            .unwrap()
            .unwrap();
        let dropped = a.content.variants[2].shopify_id.unwrap();
        let a = edit(&store, &a, |c| {
            c.variants.pop();
        })
        .await;
        assert!(matches!(
            push_product(
                &store,
                &client,
                &a,
                &merchant(),
                chrono::Utc::now(),
                &mut Default::default()
            )
            .await
            .unwrap(),
            Pushed::Pushed(..)
        ));
        let remote = sim.with_shop(|s| s.product(sids[0]).unwrap().clone());
        assert_eq!(remote.variants.len(), 2);
        assert!(remote.variants.iter().all(|v| v.id != dropped.get()));

        // Added in Shopify after the last sync and unknown locally: the push is refused.
        sim.with_shop(|s| {
            s.edit_product(sids[1], |p| {
                let mut v = p.variants[0].clone();
                v.id = 7_000_000_000_000_000_001;
                v.item_id = 7_000_000_000_000_000_002;
                v.options = vec![
                    ("Size".into(), "New".into()),
                    ("Colour".into(), "New".into()),
                ];
                p.variants.push(v);
            })
        });
        let b = store
            .product(local_id_for(ShopifyProductId::new(sids[1]).unwrap()))
            .await
            .unwrap()
            .unwrap();
        // A product-and-variant edit needs productSet, which would drop that variant: refused.
        let b = edit(&store, &b, |c| {
            c.title = "Local title".into();
            c.variants[0].price = "1.50".parse::<Money>().unwrap();
        })
        .await;
        let pushed = push_product(
            &store,
            &client,
            &b,
            &merchant(),
            chrono::Utc::now(),
            &mut Default::default(),
        )
        .await
        .unwrap();
        assert!(
            matches!(pushed, Pushed::Refused(_, ref reason) if reason.contains("7000000000000000001")),
            "{pushed:?}"
        );
        let remote = sim.with_shop(|s| s.product(sids[1]).unwrap().clone());
        assert_eq!(remote.variants.len(), 4, "nothing deleted");
        assert_ne!(remote.title, "Local title");
        assert!(
            store.product(b.id).await.unwrap().unwrap().needs_push(),
            "still pending"
        );
        // With the price put back, only the title differs from what Shopify had: productUpdate,
        // which sends no variants, pushes it, and Shopify's new variant stays.
        let c = store
            .product(local_id_for(ShopifyProductId::new(sids[1]).unwrap()))
            .await
            .unwrap()
            .unwrap();
        let base_price = store
            .product_version(c.id, c.last_sync_version)
            .await
            .unwrap()
            .unwrap()
            .product_data
            .variants[0]
            .price;
        let c = edit(&store, &c, |content| content.variants[0].price = base_price).await;
        let pushed = push_product(
            &store,
            &client,
            &c,
            &merchant(),
            chrono::Utc::now(),
            &mut Default::default(),
        )
        .await
        .unwrap();
        assert!(matches!(pushed, Pushed::Pushed(..)), "{pushed:?}");
        let remote = sim.with_shop(|s| s.product(sids[1]).unwrap().clone());
        assert_eq!(remote.title, "Local title");
        assert_eq!(remote.variants.len(), 4, "nothing deleted");
    }
}

on_both_stores! {
    async fn a_product_created_locally_is_created_in_shopify_and_gets_its_ids() {
        let (sim, client, store, _dir) = setup().await;
        let mut content = shopsync_domain::testing::sample_content(2);
        // Stocked where the shop has a location.
        let location = shopsync_domain::LocationId::new(sim.with_shop(|s| s.locations()[0].id)).unwrap();
        for (index, variant) in content.variants.iter_mut().enumerate() {
            variant.inventory = [(location, shopsync_domain::Quantity(10 + index as i64))].into();
        }
        let product = Product::new(
            shopsync_domain::ProductId::generate(),
            content,
            chrono::Utc::now(),
        );
        store
            .create_product(&product, ChangeSource::Local, &merchant(), None)
            .await
            .unwrap();
        let op = run_up(&store, &client, &merchant()).await.unwrap();
        assert_eq!(op.statistics.updated, 1, "{op:?}");
        let stored = store.product(product.id).await.unwrap().unwrap();
        let shopify_id = stored.shopify_id.expect("Shopify id recorded");
        assert!(stored
            .content
            .variants
            .iter()
            .all(|v| v.shopify_id.is_some() && v.inventory_item_id.is_some()));
        assert!(!stored.needs_push());
        let remote = sim
            .with_shop(|s| s.product(shopify_id.get()).cloned())
            .unwrap();
        assert_eq!(remote.title, product.content.title);
        assert_eq!(remote.variants.len(), 2);
    }
}

on_both_stores! {
    async fn each_push_uses_the_narrowest_mutation() {
        let (sim, client, store, _dir) = setup().await;
        let ids: Vec<u64> = sim.with_shop(|s| s.products().map(|p| p.id).collect());
        let local = |i: usize| {
            let store = store.clone();
            let id = ids[i];
            async move {
                store
                    .product(local_id_for(ShopifyProductId::new(id).unwrap()))
                    .await
                    .unwrap()
                    .unwrap()
            }
        };
        let calls = |client: &AdminClient| client.counters().api_calls;
        // Title only: productUpdate, one call, no variant sent.
        edit(&store, &local(0).await, |c| {
            c.title = "Only the title".into()
        })
        .await;
        let before = calls(&client);
        let op = run_up(&store, &client, &merchant()).await.unwrap();
        assert_eq!(op.statistics.updated, 1);
        assert_eq!(calls(&client) - before, 1, "productUpdate alone");
        assert_eq!(
            sim.with_shop(|s| s.product(ids[0]).unwrap().title.clone()),
            "Only the title"
        );
        // A price only: productVariantsBulkUpdate, one call.
        edit(&store, &local(1).await, |c| {
            c.variants[2].price = "12.34".parse::<Money>().unwrap()
        })
        .await;
        let before = calls(&client);
        run_up(&store, &client, &merchant()).await.unwrap();
        assert_eq!(
            calls(&client) - before,
            1,
            "productVariantsBulkUpdate alone"
        );
        let remote = sim.with_shop(|s| s.product(ids[1]).unwrap().clone());
        assert_eq!(remote.variants[2].price, "12.34");
        assert_eq!(remote.variants.len(), 3);
        // Both: productSet (its variant ids read first), in one write.
        edit(&store, &local(2).await, |c| {
            c.vendor = "Both at once".into();
            c.variants[0].price = "5".parse::<Money>().unwrap();
        })
        .await;
        let before = calls(&client);
        run_up(&store, &client, &merchant()).await.unwrap();
        assert_eq!(calls(&client) - before, 2, "variant ids, then productSet");
        let remote = sim.with_shop(|s| s.product(ids[2]).unwrap().clone());
        assert_eq!(
            (remote.vendor.as_str(), remote.variants[0].price.as_str()),
            ("Both at once", "5")
        );
        for i in 0..3 {
            assert!(!local(i).await.needs_push(), "every base advanced");
        }
    }
}

on_both_stores! {
    async fn an_up_sync_preview_stages_what_would_be_pushed_and_sends_nothing() {
        use shopsync_engine::steps::{Stepper, SyncKind};
        let (sim, client, store, _dir) = setup().await;
        let ids: Vec<u64> = sim.with_shop(|s| s.products().map(|p| p.id).collect());
        let local = |sid: u64| local_id_for(ShopifyProductId::new(sid).unwrap());
        let first = store.product(local(ids[0])).await.unwrap().unwrap();
        edit(&store, &first, |c| c.title = "Previewed title".into()).await;
        let second = store.product(local(ids[1])).await.unwrap().unwrap();
        edit(&store, &second, |c| c.vendor = "Held vendor".into()).await;
        // Someone else holds the second product: its push would be skipped.
        store
            .lock_product(
                second.id,
                &Actor::new("someone-else").unwrap(),
                chrono::Utc::now(),
                chrono::Duration::minutes(10),
            )
            .await
            .unwrap();
        let calls_before = client.counters();
        let rails = shopsync_domain::GuardRails::default();
        let actor = merchant();
        let preview = Stepper {
            store: &store,
            client: &client,
            actor: &actor,
            rails: &rails,
        }
        .run_to_end(SyncKind::UpPreview)
        .await
        .unwrap();
        assert!(preview.dry_run);
        assert_eq!(preview.status, shopsync_domain::OperationStatus::Completed);
        assert_eq!(
            (
                preview.statistics.processed,
                preview.statistics.updated,
                preview.statistics.skipped
            ),
            (2, 1, 1)
        );
        assert!(
            preview
                .status_reason
                .as_deref()
                .is_some_and(|r| r.contains("1 product(s) would be pushed")),
            "{:?}",
            preview.status_reason
        );
        assert_eq!(
            client.counters().api_calls,
            calls_before.api_calls,
            "nothing sent to Shopify"
        );
        let rows = shopsync_engine::operation::operation_rows(&store, preview.operation_uuid)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].source_product_id, first.id);
        let changed: Vec<String> = rows[0].change_data.keys().map(|k| k.to_string()).collect();
        assert_eq!(
            changed,
            vec!["title".to_owned()],
            "only what changed since Shopify confirmed"
        );
        let remote = sim.with_shop(|s| s.product(ids[0]).unwrap().title.clone());
        assert_ne!(remote, "Previewed title");
        assert!(store.product(first.id).await.unwrap().unwrap().needs_push());
        // The real up-sync then pushes it.
        let op = run_up(&store, &client, &merchant()).await.unwrap();
        assert_eq!(op.statistics.updated, 1);
        assert_eq!(
            sim.with_shop(|s| s.product(ids[0]).unwrap().title.clone()),
            "Previewed title"
        );
    }
}

on_both_stores! {
    async fn a_local_edit_of_a_product_gone_from_shopify_becomes_a_conflict_not_a_failure_each_time() {
        let (sim, client, store, _dir) = setup().await;
        let (id, local) = common::first_product(&sim, &store).await;
        edit(&store, &local, |c| c.title = "Edited locally".into()).await;
        sim.with_shop(|s| s.delete_product(id));
        let in_shopify = sim.with_shop(|s| s.products().count());

        let op = run_up(&store, &client, &merchant()).await.unwrap();
        assert_eq!(
            (op.statistics.conflicts, op.statistics.failed),
            (1, 0),
            "{:?}",
            op.statistics
        );
        let reason = op.status_reason.clone().unwrap_or_default();
        assert!(reason.contains("1 product(s) not pushed"), "{reason}");
        assert!(reason.contains("no longer in Shopify"), "{reason}");
        let conflicts = common::conflicts_on(&store, local.id).await;
        assert_eq!(conflicts.len(), 1);
        let conflict = &conflicts[0];
        assert_eq!(
            (conflict.conflict_type, conflict.status, conflict.severity),
            (
                shopsync_domain::ConflictType::DeletedRemotely,
                shopsync_domain::ConflictStatus::Open,
                shopsync_domain::Severity::Critical
            )
        );
        assert_eq!(conflict.sync_operation_id, op.operation_uuid);
        assert_eq!(
            conflict.local_value.as_ref().unwrap()["title"],
            "Edited locally"
        );

        // The next up-sync holds it back: nothing sent, nothing recreated, nothing lost.
        let next = run_up(&store, &client, &merchant()).await.unwrap();
        assert_eq!(
            (
                next.statistics.skipped,
                next.statistics.failed,
                next.statistics.conflicts
            ),
            (1, 0, 0)
        );
        assert_eq!(common::conflicts_on(&store, local.id).await.len(), 1);
        assert_eq!(sim.with_shop(|s| s.products().count()), in_shopify);
        let kept = store.product(local.id).await.unwrap().unwrap();
        assert_eq!(kept.content.title, "Edited locally");
        assert!(kept.needs_push());
    }
}

on_both_stores! {
    /// An up-sync finds pending products through an index that lags behind the table on
    /// DynamoDB. A product edited again after the index's answer is pushed as it stands now,
    /// not as the index last saw it; a product a push already confirmed is not pushed again
    /// from the index's old copy (which would undo what changed in Shopify since) and its base
    /// does not move back.
    async fn a_lagging_pending_push_index_never_pushes_old_content_or_moves_the_base_back() {
        let (sim, client, store, _dir) = setup().await;
        let ids: Vec<u64> = sim.with_shop(|s| s.products().take(2).map(|p| p.id).collect());
        let local = |sid: u64| local_id_for(ShopifyProductId::new(sid).unwrap());
        let title = |sid: u64| sim.with_shop(|s| s.product(sid).unwrap().title.clone());
        let a = store.product(local(ids[0])).await.unwrap().unwrap();
        let b = store.product(local(ids[1])).await.unwrap().unwrap();
        let a = edit(&store, &a, |c| c.title = "A, first edit".into()).await;
        let b = edit(&store, &b, |c| c.title = "B, edited".into()).await;

        let lagging = std::sync::Arc::new(common::stale::StaleIndexes::new(store.backend().clone()));
        lagging.freeze().await;
        let a = edit(&store, &a, |c| c.title = "A, second edit".into()).await;
        // B is pushed and confirmed, then changes in Shopify: the index still lists B pending.
        let pushed = push_product(
            &store,
            &client,
            &b,
            &merchant(),
            chrono::Utc::now(),
            &mut Default::default(),
        )
        .await
        .unwrap();
        assert!(matches!(pushed, Pushed::Pushed(..)));
        sim.with_shop(|s| s.edit_product(ids[1], |p| p.title = "B, renamed in Shopify".into()));

        let operation = run_up(&Store::new(lagging.clone()), &client, &merchant())
            .await
            .unwrap();
        assert_eq!(title(ids[0]), "A, second edit", "pushed as it stands");
        assert_eq!(title(ids[1]), "B, renamed in Shopify", "not pushed back");
        assert_eq!(
            operation.statistics.updated, 1,
            "one push: {:?}",
            operation.statistics
        );
        let a_now = store.product(a.id).await.unwrap().unwrap();
        assert_eq!(a_now.last_sync_version, a.version);
        let b_now = store.product(b.id).await.unwrap().unwrap();
        assert_eq!(
            b_now.last_sync_version, b.version,
            "the base did not move back"
        );
    }
}

on_both_stores! {
    /// A conflict opened moments ago may not show yet in the index of a product's conflicts
    /// (DynamoDB's lags behind the table); an up-sync reading that index still holds the
    /// product back, because the conflict's mark, read by key, says one was just opened.
    async fn a_conflict_a_lagging_index_does_not_show_yet_still_holds_the_push() {
        let (sim, client, store, _dir) = common::setup(1, 1).await;
        run_full_down(
            &store,
            &client,
            &merchant(),
            &shopsync_domain::GuardRails::default(),
        )
        .await
        .unwrap();
        let (id, local) = common::first_product(&sim, &store).await;
        edit(&store, &local, |c| {
            c.variants[0].sku = shopsync_domain::product::Sku::parse("LOCAL-SKU");
        })
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        sim.with_shop(|s| s.edit_product(id, |p| p.variants[0].sku = Some("REMOTE-SKU".into())));

        let lagging =
            std::sync::Arc::new(common::stale::StaleIndexes::new(store.backend().clone()));
        lagging.freeze().await;
        shopsync_engine::sync::run_bidirectional(
            &store,
            &client,
            &merchant(),
            &shopsync_domain::GuardRails::default(),
        )
        .await
        .unwrap();
        let open = common::conflicts_on(&store, local.id)
            .await
            .into_iter()
            .filter(|c| c.status == shopsync_domain::ConflictStatus::Open)
            .count();
        assert_eq!(open, 1, "the SKU conflict waits for a person");
        assert!(
            common::conflicts_on(&Store::new(lagging.clone()), local.id)
                .await
                .is_empty(),
            "the lagging index does not show it yet"
        );

        let operation = run_up(&Store::new(lagging.clone()), &client, &merchant())
            .await
            .unwrap();
        let sku = sim.with_shop(|s| s.product(id).unwrap().variants[0].sku.clone());
        assert_eq!(sku.as_deref(), Some("REMOTE-SKU"), "not pushed over");
        assert_eq!(operation.statistics.updated, 0, "{:?}", operation.statistics);
        assert_eq!(operation.statistics.skipped, 1, "{:?}", operation.statistics);
    }
}

on_both_stores! {
    async fn stock_and_cost_go_out_with_a_structural_change_and_the_base_moves_only_then() {
        let (sim, client, store, _dir) = setup().await;
        let sid = sim.with_shop(|s| s.products().next().unwrap().id);
        let id = local_id_for(ShopifyProductId::new(sid).unwrap());
        let product = store.product(id).await.unwrap().unwrap();
        let location = *product.content.variants[0].inventory.keys().next().unwrap();
        let dropped = product.content.variants[2].shopify_id.unwrap().get();
        // Stock and cost edited together with a change only productSet can carry (a variant
        // dropped), so the narrow mutations cannot be chosen.
        let edited = edit(&store, &product, |c| {
            c.variants[0].inventory.insert(location, shopsync_domain::Quantity(4321));
            c.variants[1].cost = Some("7.25".parse::<Money>().unwrap());
            c.variants.pop();
        })
        .await;
        assert!(edited.needs_push());
        let op = run_up(&store, &client, &merchant()).await.unwrap();
        assert_eq!((op.statistics.updated, op.statistics.failed), (1, 0), "{op:?}");
        let remote = sim.with_shop(|s| s.product(sid).unwrap().clone());
        assert_eq!(remote.variants.len(), 2, "the structural change");
        assert!(remote.variants.iter().all(|v| v.id != dropped));
        let item = product.content.variants[0].inventory_item_id.unwrap().get();
        assert_eq!(sim.with_shop(|s| s.level(item, location.get())), Some(4321), "the stock");
        assert_eq!(remote.variants[1].unit_cost.as_deref(), Some("7.25"), "the cost");
        let after = store.product(id).await.unwrap().unwrap();
        assert_eq!(after.last_sync_version, after.version, "all of it confirmed");
        assert!(after.stock_synced_at.is_some());

        // Stock alone: no product mutation, only the inventory set (and only once: a push
        // of the same version again sets nothing).
        let stocked = edit(&store, &after, |c| {
            c.variants[0].inventory.insert(location, shopsync_domain::Quantity(12));
        })
        .await;
        let calls = client.counters().api_calls;
        run_up(&store, &client, &merchant()).await.unwrap();
        assert_eq!(sim.with_shop(|s| s.level(item, location.get())), Some(12));
        assert_eq!(
            sim.with_shop(|s| s.product(sid).unwrap().updated_at),
            remote.updated_at,
            "the product itself was not sent again"
        );
        assert!(client.counters().api_calls > calls);
        let done = store.product(id).await.unwrap().unwrap();
        assert_eq!(done.last_sync_version, stocked.version);
    }
}

/// Every product in the store (the tests here hold at most 1,000).
async fn stored_products(store: &shopsync_store::Store) -> Vec<shopsync_domain::Product> {
    store
        .scan::<shopsync_domain::Product>(1000, None)
        .await
        .unwrap()
        .items
}

/// An up-sync run to its end, under rails that let a catalog-wide price change through (the
/// default ones hold it for approval).
async fn push_catalog_wide(
    store: &shopsync_store::Store,
    client: &shopsync_shopify::AdminClient,
    actor: &Actor,
) -> shopsync_domain::SyncOperation {
    let rails = shopsync_domain::GuardRails {
        max_changed_share: 1.0,
        max_large_price_moves: u64::MAX,
        ..Default::default()
    };
    shopsync_engine::steps::Stepper {
        store,
        client,
        actor,
        rails: &rails,
    }
    .run_to_end(shopsync_engine::steps::SyncKind::Up)
    .await
    .unwrap()
}

/// A push of at least `SHOPSYNC_BULK_PUSH_MIN` (500) products goes through Shopify's bulk
/// mutations: every price and stock level reaches Shopify, each product is confirmed, and the
/// calls are a handful instead of one or two per product.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_up_sync_goes_through_bulk_mutations_and_confirms_each_product() {
    const PRODUCTS: usize = 600;
    let (sim, client, store, _dir) = common::setup(PRODUCTS, 1).await;
    let system = Actor::system("test");
    run_full_down(&store, &client, &system, &Default::default())
        .await
        .unwrap();
    let products: Vec<shopsync_domain::Product> = stored_products(&store).await;
    assert_eq!(products.len(), PRODUCTS);
    for product in &products {
        common::edit(&store, product, |c| {
            c.variants[0].price = "77.70".parse().unwrap();
            for level in c.variants[0].inventory.values_mut() {
                level.0 = 4_321;
            }
        })
        .await;
    }
    let calls_before = client.counters().api_calls;
    let push = push_catalog_wide(&store, &client, &system).await;
    assert_eq!(
        push.statistics.updated, PRODUCTS as u64,
        "{:?}",
        push.status_reason
    );
    let (bulk_mutations, lines) = sim.with_shop(|s| s.bulk_mutations());
    assert!(bulk_mutations >= 1, "the push went through bulk mutations");
    assert_eq!(lines, PRODUCTS as u64, "one line per product");
    let calls = client.counters().api_calls - calls_before;
    assert!(calls < 100, "{calls} calls for {PRODUCTS} products");
    sim.with_shop(|s| {
        assert!(s
            .products()
            .all(|p| p.variants[0].price.parse::<f64>().ok() == Some(77.7)));
        assert!(
            s.products()
                .all(|p| p.variants[0].levels.values().all(|level| *level == 4_321)),
            "stock too, pooled into shared inventory plans"
        );
    });
    for product in stored_products(&store).await {
        assert!(!product.needs_push(), "each product confirmed");
    }
}

/// In a bulk push, stock goes out pooled into shared inventory plans; a level Shopify refuses
/// (here, at a location it does not have) holds back only its own product's stock: the rest
/// is set, and that product stays queued with the refusal reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_level_in_a_bulk_push_holds_back_only_its_own_products_stock() {
    const PRODUCTS: usize = 520;
    let (sim, client, store, _dir) = common::setup(PRODUCTS, 1).await;
    let system = Actor::system("test");
    run_full_down(&store, &client, &system, &Default::default())
        .await
        .unwrap();
    let products: Vec<shopsync_domain::Product> = stored_products(&store).await;
    let nowhere = shopsync_domain::LocationId::new(999_999).unwrap();
    let bad = products[PRODUCTS / 2].id;
    for product in &products {
        common::edit(&store, product, |c| {
            c.variants[0].price = "77.70".parse().unwrap();
            for level in c.variants[0].inventory.values_mut() {
                level.0 = 4_321;
            }
            if product.id == bad {
                c.variants[0]
                    .inventory
                    .insert(nowhere, shopsync_domain::Quantity(5));
            }
        })
        .await;
    }
    let push = push_catalog_wide(&store, &client, &system).await;
    assert!(sim.with_shop(|s| s.bulk_mutations()).0 >= 1, "a bulk push");
    let bad_shopify = store
        .product(bad)
        .await
        .unwrap()
        .unwrap()
        .shopify_id
        .unwrap()
        .get();
    sim.with_shop(|s| {
        for product in s.products() {
            assert_eq!(product.variants[0].price.parse::<f64>().ok(), Some(77.7));
            let stocked = product.variants[0]
                .levels
                .values()
                .all(|level| *level == 4_321);
            assert_eq!(stocked, product.id != bad_shopify, "product {}", product.id);
        }
    });
    let mut queued = Vec::new();
    for product in stored_products(&store).await {
        if product.needs_push() {
            queued.push(product.id);
        }
    }
    assert_eq!(queued, vec![bad], "only the refused product stays queued");
    assert!(
        push.status_reason
            .as_deref()
            .is_some_and(|r| r.contains("stock not set")),
        "{:?}",
        push.status_reason
    );
}

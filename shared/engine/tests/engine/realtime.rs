//! Webhooks through the realtime path, with payloads exactly as the simulator sends them.

use crate::common;

use shopsync_domain::{Actor, ShopifyProductId};
use shopsync_engine::down::local_id_for;
use shopsync_engine::realtime::{apply_staged, handle_delivery, Handled};
use shopsync_engine::sync::run_full_down;
use shopsync_shopify::webhook::{sign, verify_and_parse, Delivery, WebhookConfig};
use shopsync_shopify_sim::shop::rest_product;

pub(crate) fn delivery(topic: &str, body: &serde_json::Value, id: &str) -> Delivery {
    let body = serde_json::to_vec(body).unwrap();
    let config = WebhookConfig {
        shop_domain: "shop.myshopify.com".into(),
        secret: "s".into(),
        previous_secret: None,
    };
    let hmac = sign("s", &body);
    let headers = [
        ("X-Shopify-Topic", topic),
        ("X-Shopify-Hmac-Sha256", hmac.as_str()),
        ("X-Shopify-Shop-Domain", "shop.myshopify.com"),
        ("X-Shopify-Webhook-Id", id),
    ];
    verify_and_parse(&config, headers.as_slice(), &body).unwrap()
}

on_both_stores! {
    async fn webhooks_stage_and_apply_drop_stale_and_never_delete_silently() {
        let (sim, client, store, _dir) = common::setup(3, 2).await;
        let actor = Actor::new("system:webhooks").unwrap();
        run_full_down(
            &store,
            &client,
            &actor,
            &shopsync_domain::GuardRails::default(),
        )
        .await
        .unwrap();

        let ids: Vec<u64> = sim.with_shop(|s| s.products().map(|p| p.id).collect());
        let before = sim.with_shop(|s| rest_product(s.product(ids[0]).unwrap()));
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        sim.with_shop(|s| s.edit_product(ids[0], |p| p.title = "Renamed in Shopify".into()));
        let after = sim.with_shop(|s| rest_product(s.product(ids[0]).unwrap()));

        let now = chrono::Utc::now();
        let update = delivery("products/update", &after, "w1");
        let handled = handle_delivery(&store, Some(&client), &update, &actor, now)
            .await
            .unwrap();
        let local_id = local_id_for(ShopifyProductId::new(ids[0]).unwrap());
        let Handled::Staged { operation, row } = handled else {
            panic!("staged, got {handled:?}");
        };
        // Staged, not yet applied: the apply step does that.
        assert_eq!(store.product(local_id).await.unwrap().unwrap().version, 1);
        let applied = apply_staged(&store, operation, &[row], &actor)
            .await
            .unwrap();
        assert_eq!((applied.updated, applied.failed), (1, 0));
        // Applying the same row again (a redelivered apply step) changes nothing.
        let again = apply_staged(&store, operation, &[row], &actor)
            .await
            .unwrap();
        assert_eq!(again.updated, 0);
        let local = store.product(local_id).await.unwrap().unwrap();
        assert_eq!(
            (local.content.title.as_str(), local.version),
            ("Renamed in Shopify", 2)
        );
        // Stock is not in product webhooks: it stays as the down-sync read it.
        assert!(local
            .content
            .variants
            .iter()
            .all(|v| !v.inventory.is_empty()));

        // The same payload again, and an older one arriving late: dropped.
        assert_eq!(
            handle_delivery(&store, Some(&client), &update, &actor, now)
                .await
                .unwrap(),
            Handled::Stale
        );
        let late = delivery("products/update", &before, "w0");
        assert_eq!(
            handle_delivery(&store, Some(&client), &late, &actor, now)
                .await
                .unwrap(),
            Handled::Stale
        );
        assert_eq!(store.product(local_id).await.unwrap().unwrap().version, 2);

        // A delete is staged for review; the product stays.
        let delete = delivery("products/delete", &serde_json::json!({"id": ids[1]}), "w2");
        assert_eq!(
            handle_delivery(&store, Some(&client), &delete, &actor, now)
                .await
                .unwrap(),
            Handled::DeleteStaged
        );
        assert!(store
            .product(local_id_for(ShopifyProductId::new(ids[1]).unwrap()))
            .await
            .unwrap()
            .is_some());

        // A product unknown locally becomes a new local product.
        let mut new = after.clone();
        new["id"] = serde_json::json!(4_611_686_018_427_387_904u64);
        let created = delivery("products/create", &new, "w3");
        let handled = handle_delivery(&store, Some(&client), &created, &actor, now)
            .await
            .unwrap();
        let Handled::Staged { operation, row } = handled else {
            panic!("staged, got {handled:?}");
        };
        assert_eq!(
            apply_staged(&store, operation, &[row], &actor)
                .await
                .unwrap()
                .created,
            1
        );

        // More variants than the payload carries: re-fetched in full through the Admin API.
        let big_id = sim.with_shop(|s| {
            let id = ids[2];
            s.edit_product(id, |p| {
                let template = p.variants[0].clone();
                for i in 0..130u64 {
                    let mut v = template.clone();
                    v.id = 8_000_000_000_000_000_000 + i;
                    v.item_id = 8_100_000_000_000_000_000 + i;
                    v.options = vec![
                        ("Size".into(), format!("N{i}")),
                        ("Colour".into(), "Red".into()),
                    ];
                    p.variants.push(v);
                }
            });
            id
        });
        let big = sim.with_shop(|s| rest_product(s.product(big_id).unwrap()));
        assert_eq!(big["variants"].as_array().unwrap().len(), 100);
        let refetch = delivery("products/update", &big, "w4");
        let handled = handle_delivery(&store, Some(&client), &refetch, &actor, now)
            .await
            .unwrap();
        let Handled::Staged { operation, row } = handled else {
            panic!("staged, got {handled:?}");
        };
        apply_staged(&store, operation, &[row], &actor)
            .await
            .unwrap();
        let local_big = store
            .product(local_id_for(ShopifyProductId::new(big_id).unwrap()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(local_big.content.variants.len(), 132);

        // Compliance topics are recorded.
        let redact = delivery(
            "shop/redact",
            &serde_json::json!({"shop_id": 1, "shop_domain": "shop.myshopify.com"}),
            "w5",
        );
        assert_eq!(
            handle_delivery(&store, None, &redact, &actor, now)
                .await
                .unwrap(),
            Handled::ComplianceRecorded
        );
        assert_eq!(store.due_redactions(now).await.unwrap().len(), 1);
    }
}

on_both_stores! {
    async fn rows_staged_together_apply_in_any_order_and_keep_the_newest() {
        let (sim, client, store, _dir) = common::setup(1, 1).await;
        let actor = Actor::new("system:webhooks").unwrap();
        run_full_down(
            &store,
            &client,
            &actor,
            &shopsync_domain::GuardRails::default(),
        )
        .await
        .unwrap();
        let id = sim.with_shop(|s| s.products().map(|p| p.id).next().unwrap());
        let mut payloads = Vec::new();
        for title in ["First", "Second"] {
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            sim.with_shop(|s| s.edit_product(id, |p| p.title = title.into()));
            payloads.push(sim.with_shop(|s| rest_product(s.product(id).unwrap())));
        }
        let now = chrono::Utc::now();
        // Both arrive before either is applied; the newer one is applied first.
        let mut staged = Vec::new();
        for (i, payload) in payloads.iter().enumerate() {
            let d = delivery("products/update", payload, &format!("x{i}"));
            match handle_delivery(&store, Some(&client), &d, &actor, now)
                .await
                .unwrap()
            {
                Handled::Staged { operation, row } => staged.push((operation, row)),
                other => panic!("staged, got {other:?}"),
            }
        }
        let (op, newer) = staged[1];
        let first = apply_staged(&store, op, &[newer], &actor).await.unwrap();
        assert_eq!(first.updated, 1);
        let (op, older) = staged[0];
        let second = apply_staged(&store, op, &[older], &actor).await.unwrap();
        assert_eq!((second.updated, second.unchanged, second.failed), (0, 1, 0));
        let local = store
            .product(local_id_for(ShopifyProductId::new(id).unwrap()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((local.content.title.as_str(), local.version), ("Second", 2));
        let rows = shopsync_engine::operation::operation_rows(&store, op)
            .await
            .unwrap();
        let status_of = |row| rows.iter().find(|r| r.id == row).unwrap().status;
        assert_eq!(
            status_of(newer),
            shopsync_domain::staging::StagingStatus::Applied
        );
        assert_eq!(
            status_of(older),
            shopsync_domain::staging::StagingStatus::Superseded
        );
    }
}

on_both_stores! {
    async fn inventory_level_webhooks_are_taken_at_once_and_older_ones_are_dropped() {
        let (sim, client, store, _dir) = common::setup(2, 2).await;
        let actor = Actor::new("system:webhooks").unwrap();
        run_full_down(
            &store,
            &client,
            &actor,
            &shopsync_domain::GuardRails::default(),
        )
        .await
        .unwrap();
        let (product, item, location) = sim.with_shop(|s| {
            let p = s.products().next().unwrap();
            let v = &p.variants[1];
            (p.id, v.item_id, *v.levels.keys().next().unwrap())
        });
        let level = |available: i64, at: &str, id: &str| {
            delivery(
                "inventory_levels/update",
                &serde_json::json!({
                    "inventory_item_id": item,
                    "location_id": location,
                    "available": available,
                    "updated_at": at,
                    "admin_graphql_api_id": format!("gid://shopify/InventoryLevel/{location}?inventory_item_id={item}"),
                }),
                id,
            )
        };
        let now = chrono::Utc::now();
        let local_id = local_id_for(ShopifyProductId::new(product).unwrap());
        let stock = |p: &shopsync_domain::Product| {
            p.content.variants[1].inventory[&shopsync_domain::LocationId::new(location).unwrap()].0
        };
        let before = store.product(local_id).await.unwrap().unwrap();

        let newer = level(7, "2026-11-25T10:00:05Z", "l1");
        let handled = handle_delivery(&store, Some(&client), &newer, &actor, now)
            .await
            .unwrap();
        assert_eq!(handled.name(), "updated", "{handled:?}");
        let after = store.product(local_id).await.unwrap().unwrap();
        assert_eq!((stock(&after), after.version), (7, before.version + 1));
        assert!(!after.needs_push(), "taken from Shopify: nothing to push");
        let versions = store
            .product_versions(local_id, true, 10, None)
            .await
            .unwrap()
            .items;
        assert!(
            versions[0]
                .changed_fields
                .iter()
                .any(|f| f.as_str().ends_with(&format!("/inventory/{location}"))),
            "{:?}",
            versions[0].changed_fields
        );

        // An older level arriving late is dropped; the stock stays at the newer figure.
        let older = level(9, "2026-11-25T10:00:01Z", "l0");
        assert_eq!(
            handle_delivery(&store, Some(&client), &older, &actor, now)
                .await
                .unwrap(),
            Handled::Stale
        );
        assert_eq!(stock(&store.product(local_id).await.unwrap().unwrap()), 7);

        // The same delivery retried (after a failure) passes the ordering again and is a no-op.
        assert_eq!(
            handle_delivery(&store, Some(&client), &newer, &actor, now)
                .await
                .unwrap()
                .name(),
            "unchanged"
        );

        // An item Shopify does not know is acknowledged and ignored.
        let unknown = delivery(
            "inventory_levels/update",
            &serde_json::json!({"inventory_item_id": 5, "location_id": location, "available": 1}),
            "l9",
        );
        assert_eq!(
            handle_delivery(&store, Some(&client), &unknown, &actor, now)
                .await
                .unwrap()
                .name(),
            "ignored"
        );
    }
}

on_both_stores! {
    async fn webhooks_seen_while_a_conflict_waits_record_it_once_and_replace_it_when_shopify_moves_on() {
        let (sim, client, store, _dir) = common::setup(1, 1).await;
        let actor = Actor::new("system:webhooks").unwrap();
        run_full_down(
            &store,
            &client,
            &actor,
            &shopsync_domain::GuardRails::default(),
        )
        .await
        .unwrap();
        let (id, local) = common::first_product(&sim, &store).await;
        let local_id = local.id;
        common::edit(&store, &local, |c| {
            c.variants[0].sku = shopsync_domain::product::Sku::parse("LOCAL-SKU");
        })
        .await;
        let open_conflicts = || async {
            let all: Vec<shopsync_domain::SyncConflict> = common::conflicts_on(&store, local_id).await;
            all.into_iter()
                .filter(|c| c.status == shopsync_domain::ConflictStatus::Open)
                .collect::<Vec<_>>()
        };
        let remote_edit = |sku: &'static str| {
            sim.with_shop(|s| {
                s.edit_product(id, |p| p.variants[0].sku = Some(sku.into()));
                rest_product(s.product(id).unwrap())
            })
        };
        let now = chrono::Utc::now;

        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let first = delivery("products/update", &remote_edit("REMOTE-SKU"), "c1");
        let handled = handle_delivery(&store, Some(&client), &first, &actor, now())
            .await
            .unwrap();
        assert_eq!(handled.name(), "conflict");
        let recorded = open_conflicts().await;
        assert_eq!(recorded.len(), 1);

        // Another delivery of the same state (Shopify sends one per save): nothing new.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let same = delivery("products/update", &remote_edit("REMOTE-SKU"), "c2");
        let handled = handle_delivery(&store, Some(&client), &same, &actor, now())
            .await
            .unwrap();
        assert_eq!(handled.name(), "held_by_conflict");
        assert_eq!(open_conflicts().await, recorded);

        // Shopify's SKU moves on: the new conflict replaces the old one in the same commit.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let moved = delivery("products/update", &remote_edit("REMOTE-SKU-2"), "c3");
        let handled = handle_delivery(&store, Some(&client), &moved, &actor, now())
            .await
            .unwrap();
        assert_eq!(handled.name(), "conflict");
        let open = open_conflicts().await;
        assert_eq!(open.len(), 1);
        assert_eq!(
            open[0].remote_value,
            Some(serde_json::json!("REMOTE-SKU-2"))
        );
        let old: shopsync_domain::SyncConflict = store
            .get(&shopsync_store::Key::pk(
                recorded[0].conflict_uuid.to_string(),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(old.status, shopsync_domain::ConflictStatus::Superseded);
        let local = store.product(local_id).await.unwrap().unwrap();
        assert_eq!(
            local.content.variants[0].sku.as_ref().map(|s| s.as_str()),
            Some("LOCAL-SKU"),
            "never overwritten"
        );
    }
}

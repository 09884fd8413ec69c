//! Shopify's collections read into categories by the down-syncs: membership on the category
//! (no product changes for it), smart ones read with their rules, each change a new version
//! under the operation that read it.

use crate::common;
use shopsync_domain::version::CategoryVersion;
use shopsync_domain::{Actor, Category, CategoryKind, ShopifyCollectionId};
use shopsync_engine::collections::category_id_for;
use shopsync_engine::sync::run_full_down;
use shopsync_store::item::{Key, Query};
use shopsync_store::Table;

on_both_stores! {
    async fn collections_become_versioned_categories_holding_their_membership() {
        let (sim, client, store, _dir) = common::setup(12, 1).await;
        let actor = Actor::system("test");
        let first = run_full_down(&store, &client, &actor, &Default::default()).await.unwrap();
        let collections: Vec<(u64, String, usize, bool)> = sim.with_shop(|s| {
            s.collections()
                .map(|c| (c.id, c.title.clone(), c.products.len(), c.rules.is_some()))
                .collect()
        });
        assert_eq!(collections.len(), 3);
        for (id, title, members, smart) in &collections {
            let category: Category = store
                .get(&Key::pk(category_id_for(ShopifyCollectionId::new(*id).unwrap()).to_string()))
                .await
                .unwrap()
                .expect("a category per collection");
            assert_eq!(&category.content.title, title);
            assert_eq!(category.content.products.len(), *members);
            assert_eq!(category.content.kind == CategoryKind::Smart, *smart);
            assert_eq!(category.content.rules.is_some(), *smart);
            assert_eq!(category.version, 1);
        }
        let versions: Vec<CategoryVersion> = store
            .query_all(Query::new(Table::CategoryVersions, Some("by_operation"), first.operation_uuid.to_string()))
            .await
            .unwrap();
        assert_eq!(versions.len(), 3, "one version each, under the operation that read them");
        // Membership lives on the category: no product took a version for it.
        let products: Vec<shopsync_domain::Product> = store.scan(100, None).await.unwrap().items;
        assert!(products.iter().all(|p| p.version == 1));

        // A collection retitled and a product taken out: a second version; read again, none.
        let (summer, _, members, _) = collections[0].clone();
        sim.with_shop(|s| {
            s.edit_collection(summer, |c| {
                c.title = "Summer sale".into();
                c.products.pop();
            })
        });
        let second = run_full_down(&store, &client, &actor, &Default::default()).await.unwrap();
        let id = category_id_for(ShopifyCollectionId::new(summer).unwrap());
        let category: Category = store.get(&Key::pk(id.to_string())).await.unwrap().unwrap();
        assert_eq!(category.version, 2);
        assert_eq!(category.content.title, "Summer sale");
        assert_eq!(category.content.products.len(), members - 1);
        let version: CategoryVersion = store
            .get(&Key::pk_sk(id.to_string(), shopsync_store::item::Scalar::N(2)))
            .await
            .unwrap()
            .unwrap();
        let changed: Vec<&str> = version.changed_fields.iter().map(|f| f.as_str()).collect();
        assert_eq!(changed, ["products", "title"]);
        assert_eq!(version.sync_operation_id, Some(second.operation_uuid));
        run_full_down(&store, &client, &actor, &Default::default()).await.unwrap();
        let category: Category = store.get(&Key::pk(id.to_string())).await.unwrap().unwrap();
        assert_eq!(category.version, 2, "nothing changed: no new version");
    }
}

on_both_stores! {
    async fn a_collections_webhook_queues_its_read_and_the_worker_versions_the_change() {
        use shopsync_engine::intake::WebhookIntake;
        use shopsync_engine::jobs::{Job, JobOutcome, LocalQueue, Worker};
        use shopsync_shopify::webhook::{sign, WebhookConfig};
        use std::sync::Arc;
        let (sim, client, store, _dir) = common::setup(6, 1).await;
        let actor = Actor::system("test");
        run_full_down(&store, &client, &actor, &Default::default()).await.unwrap();
        let winter = sim.with_shop(|s| s.collections().find(|c| c.title == "Winter").unwrap().id);
        sim.with_shop(|s| s.edit_collection(winter, |c| c.title = "Winter warmers".into()));
        // The collections/update Shopify sends (the simulator's, as its outbox holds it).
        let body = sim.with_shop(|s| {
            let c = s.collections().find(|c| c.id == winter).unwrap();
            serde_json::to_vec(&serde_json::json!({
                "id": c.id,
                "title": c.title,
                "handle": c.handle,
                "updated_at": c.updated_at.to_rfc3339(),
            }))
            .unwrap()
        });
        let queue = Arc::new(LocalQueue::default());
        let intake = WebhookIntake {
            ledger: Arc::new(shopsync_engine::ledger::StoreLedger::new(store.clone())),
            store: store.clone(),
            config: WebhookConfig {
                shop_domain: "shop.myshopify.com".into(),
                secret: "hush".into(),
                previous_secret: None,
            },
            queue: queue.clone(),
            client: Some(client.clone()),
            actor: Actor::new("system:webhooks").unwrap(),
            realtime: Default::default(),
        };
        let hmac = sign("hush", &body);
        let headers: Vec<(&str, &str)> = vec![
            ("X-Shopify-Topic", "collections/update"),
            ("X-Shopify-Hmac-Sha256", &hmac),
            ("X-Shopify-Shop-Domain", "shop.myshopify.com"),
            ("X-Shopify-Webhook-Id", "collection-1"),
        ];
        let reply = intake.receive(headers.as_slice(), &body, chrono::Utc::now()).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(reply.body["outcome"], "collection_changed");
        let message = queue.receive().await.expect("a queued read");
        assert_eq!(
            message.job,
            Job::SyncCollection { collection: ShopifyCollectionId::new(winter).unwrap() }
        );
        let worker = Worker {
            store: store.clone(),
            client: client.clone(),
            actor: Actor::system("worker"),
            rails: Default::default(),
            continuation: None,
            imports: None,
        };
        assert!(matches!(worker.handle(&message).await.unwrap(), JobOutcome::Ran(_)));
        let id = category_id_for(ShopifyCollectionId::new(winter).unwrap());
        let category: Category = store.get(&Key::pk(id.to_string())).await.unwrap().unwrap();
        assert_eq!(category.content.title, "Winter warmers");
        assert_eq!(category.version, 2);
        let version: CategoryVersion = store
            .get(&Key::pk_sk(id.to_string(), shopsync_store::item::Scalar::N(2)))
            .await
            .unwrap()
            .unwrap();
        let day = shopsync_engine::realtime::realtime_operation(&store, chrono::Utc::now()).await.unwrap();
        assert_eq!(version.sync_operation_id, Some(day.operation_uuid), "under the day's realtime operation");
        // The day's statistics, brought up to date by maintenance, count the collection.
        assert_eq!(day.statistics.categories_changed, 0);
        let refreshed = shopsync_engine::realtime::refresh_realtime_operations(&store, chrono::Utc::now()).await.unwrap();
        let day = refreshed.iter().find(|op| op.operation_uuid == day.operation_uuid).expect("the day is refreshed");
        assert_eq!(day.statistics.categories_changed, 1);
        assert_eq!(day.statistics.updated, 0, "no product changed");
    }
}

/// The simulator's collection titled `title`: (id, its products).
fn collection(sim: &shopsync_shopify_sim::SimHandle, title: &str) -> (u64, Vec<u64>) {
    sim.with_shop(|s| {
        let found = s.collections().find(|c| c.title == title).unwrap();
        (found.id, found.products.clone())
    })
}

async fn category(store: &shopsync_store::Store, collection: u64) -> Category {
    let id = category_id_for(ShopifyCollectionId::new(collection).unwrap());
    store.get(&Key::pk(id.to_string())).await.unwrap().unwrap()
}

fn full_rollback() -> shopsync_domain::RollbackRequest {
    shopsync_domain::RollbackRequest {
        rollback_type: Some(shopsync_domain::RollbackType::Full),
        ..Default::default()
    }
}

on_both_stores! {
    async fn a_full_rollback_restores_custom_collections_in_shopify_and_skips_smart_and_changed_since() {
        use shopsync_domain::{ChangeSource, OperationStatus, RollbackStatus};
        use shopsync_engine::operation::load_operation;
        use shopsync_engine::rollback::{open_rollback, run};
        let (sim, client, store, _dir) = common::setup(12, 1).await;
        let actor = Actor::system("test");
        let admin = Actor::new("ada@example.com").unwrap();
        let rails = Default::default();
        run_full_down(&store, &client, &actor, &rails).await.unwrap();
        let (summer, summer_products) = collection(&sim, "Summer");
        let (winter, _) = collection(&sim, "Winter");
        let (sale, _) = collection(&sim, "Sale");
        let outsider = sim.with_shop(|s| {
            s.products().map(|p| p.id).find(|id| !summer_products.contains(id)).unwrap()
        });
        let summer_before = category(&store, summer).await;
        // A bad day in Shopify's collections, read by a second sync (Shopify's times are to
        // the second).
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        sim.with_shop(|s| {
            s.edit_collection(summer, |c| {
                c.title = "Bad summer".into();
                c.description_html = "<p>bad</p>".into();
                c.products.remove(0);
                c.products.push(outsider);
            });
            s.edit_collection(winter, |c| c.title = "Bad winter".into());
            s.edit_collection(sale, |c| c.title = "Bad sale".into());
        });
        let bad = run_full_down(&store, &client, &actor, &rails).await.unwrap();
        assert_eq!(category(&store, summer).await.content.title, "Bad summer");
        // Winter changed again since, by a later read.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        sim.with_shop(|s| s.edit_collection(winter, |c| c.title = "Winter, fixed by hand".into()));
        run_full_down(&store, &client, &actor, &rails).await.unwrap();

        // A dry run reports what it would restore and changes nothing.
        let dry = shopsync_domain::RollbackRequest { dry_run: true, ..full_rollback() };
        let (rollback, _) = open_rollback(&store, bad.operation_uuid, &dry, &admin, chrono::Utc::now())
            .await
            .unwrap();
        let (record, _) = run(&store, &client, &rails, rollback.id).await.unwrap();
        assert_eq!(record.categories_restored.len(), 1, "{:?}", record.categories_skipped);
        assert_eq!(record.categories_restored[0].shopify, "would_push");
        assert_eq!(record.categories_restored[0].title, "Summer");
        assert_eq!(category(&store, summer).await.version, 2);
        assert_eq!(collection(&sim, "Bad summer").1.len(), summer_products.len());

        let (rollback, _) = open_rollback(&store, bad.operation_uuid, &full_rollback(), &admin, chrono::Utc::now())
            .await
            .unwrap();
        let (record, operation) = run(&store, &client, &rails, rollback.id).await.unwrap();
        assert_eq!(record.backup_data.categories.len(), 3);
        assert_eq!(record.categories_restored.len(), 1, "{:?}", record.categories_skipped);
        let restored = &record.categories_restored[0];
        assert_eq!((restored.title.as_str(), restored.shopify.as_str(), restored.version), ("Summer", "pushed", 3));
        let mut skipped: Vec<(String, String)> = Vec::new();
        for (id, why) in &record.categories_skipped {
            let category: Category = store.get(&Key::pk(id.to_string())).await.unwrap().unwrap();
            skipped.push((category.content.title, why.clone()));
        }
        skipped.sort();
        assert_eq!(skipped.len(), 2);
        assert_eq!(skipped[0].0, "Bad sale");
        assert!(skipped[0].1.starts_with("a smart collection"), "{}", skipped[0].1);
        assert_eq!(skipped[1].0, "Winter, fixed by hand");
        assert!(skipped[1].1.starts_with("changed since: version 3 by system:test via shopify"), "{}", skipped[1].1);
        assert_eq!(record.status, RollbackStatus::CompletedWithSkips);
        assert_eq!(
            load_operation(&store, bad.operation_uuid).await.unwrap().status,
            OperationStatus::PartiallyRolledBack
        );

        // Restored locally as a new version by the admin, confirmed by Shopify...
        let now = category(&store, summer).await;
        assert_eq!(now.content, summer_before.content);
        assert_eq!((now.version, now.last_sync_version), (3, 3));
        let version: CategoryVersion = store
            .get(&Key::pk_sk(now.id.to_string(), shopsync_store::item::Scalar::N(3)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(version.change_source, ChangeSource::Rollback);
        assert_eq!(version.changed_by, admin);
        assert_eq!(version.sync_operation_id, Some(operation.operation_uuid));
        // ...and in Shopify: the title, description and products as they were.
        let (id, products) = collection(&sim, "Summer");
        assert_eq!(id, summer);
        let mut expected = summer_products.clone();
        expected.sort();
        let mut found = products.clone();
        found.sort();
        assert_eq!(found, expected);
        assert_eq!(sim.with_shop(|s| s.collections().find(|c| c.id == summer).unwrap().description_html.clone()), summer_before.content.body_html);

        // Read again, Shopify's copy is the one pushed: no new version.
        run_full_down(&store, &client, &actor, &rails).await.unwrap();
        assert_eq!(category(&store, summer).await.version, 3);

        // Forced, the changed-since collection comes back too; the smart one never does.
        let forced = shopsync_domain::RollbackRequest { force: true, ..full_rollback() };
        let (rollback, _) = open_rollback(&store, bad.operation_uuid, &forced, &admin, chrono::Utc::now())
            .await
            .unwrap();
        let (record, _) = run(&store, &client, &rails, rollback.id).await.unwrap();
        let winter_back = record.categories_restored.iter().find(|c| c.title == "Winter").expect("winter forced back");
        assert!(winter_back.forced.as_deref().is_some_and(|f| f.contains("forced past a change since (version 3")), "{:?}", winter_back.forced);
        assert_eq!(winter_back.shopify, "pushed");
        assert_eq!(sim.with_shop(|s| s.collections().find(|c| c.id == winter).unwrap().title.clone()), "Winter");
        assert_eq!(record.categories_skipped.len(), 2, "{:?}", record.categories_skipped);
        assert!(record.categories_skipped.iter().any(|(_, why)| why.starts_with("a smart collection")));
        assert!(record.categories_skipped.iter().any(|(_, why)| why.starts_with("nothing to restore")));
    }
}

on_both_stores! {
    async fn a_restored_collection_shopify_did_not_take_is_pushed_later_and_restored_once() {
        use shopsync_engine::rollback::{open_rollback, run};
        use shopsync_shopify_sim::Fault;
        let (sim, client, store, _dir) = common::setup(6, 1).await;
        let actor = Actor::system("test");
        let admin = Actor::new("ada@example.com").unwrap();
        let rails = Default::default();
        run_full_down(&store, &client, &actor, &rails).await.unwrap();
        let (summer, _) = collection(&sim, "Summer");
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        sim.with_shop(|s| s.edit_collection(summer, |c| c.title = "Bad summer".into()));
        let bad = run_full_down(&store, &client, &actor, &rails).await.unwrap();
        let (rollback, _) = open_rollback(&store, bad.operation_uuid, &full_rollback(), &admin, chrono::Utc::now())
            .await
            .unwrap();
        // Shopify is down while the rollback pushes: the run fails with the restore made.
        for _ in 0..8 {
            sim.push_fault(Fault::ServerError(503));
        }
        assert!(run(&store, &client, &rails, rollback.id).await.is_err());
        let restored = category(&store, summer).await;
        assert_eq!((restored.content.title.as_str(), restored.version, restored.last_sync_version), ("Summer", 3, 2));
        assert_eq!(collection(&sim, "Bad summer").0, summer, "not in Shopify yet");

        // A read of Shopify meanwhile keeps the unpushed restore.
        run_full_down(&store, &client, &actor, &rails).await.unwrap();
        assert_eq!(category(&store, summer).await.content.title, "Summer");

        // The next up-sync pushes it.
        shopsync_engine::sync::run_up(&store, &client, &actor).await.unwrap();
        assert_eq!(collection(&sim, "Summer").0, summer);
        let pushed = category(&store, summer).await;
        assert_eq!((pushed.version, pushed.last_sync_version), (3, 3));

        // The rollback redelivered: the category is not restored twice.
        let (record, _) = run(&store, &client, &rails, rollback.id).await.unwrap();
        assert_eq!(record.categories_restored.len(), 1, "{:?}", record.categories_skipped);
        assert_eq!(record.categories_restored[0].shopify, "in_step");
        assert_eq!(category(&store, summer).await.version, 3);
        let versions: Vec<CategoryVersion> = store
            .query_all(Query::new(Table::CategoryVersions, None, restored.id.to_string()))
            .await
            .unwrap();
        assert_eq!(versions.len(), 3, "one restore, whatever the redeliveries");
    }
}

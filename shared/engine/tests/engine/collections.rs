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
    }
}

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

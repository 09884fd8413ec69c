//! A person's edit: staged and applied as a `local_edit` operation under their name,
//! refused when stale or locked by another, and pushed by the next up-sync.

use crate::common;
use shopsync_domain::{
    Actor, ChangeSource, OperationStatus, OperationType, ProductEdit, ShopifyProductId,
    StagingStatus, SyncOperation, VariantEdit, VariantRef,
};
use shopsync_engine::down::local_id_for;
use shopsync_engine::edit::{edit_product, EditError};
use shopsync_engine::sync::run_full_down;
use shopsync_engine::sync::run_up;
use shopsync_store::item::Key;

fn person(name: &str) -> Actor {
    Actor::new(name).unwrap()
}

on_both_stores! {
    async fn an_edit_is_one_version_by_its_author_and_the_next_up_sync_pushes_it() {
        let (sim, client, store, _dir) = common::setup(2, 2).await;
        run_full_down(&store, &client, &Actor::system("test"), &Default::default())
            .await
            .unwrap();
        let shopify_id = sim.with_shop(|s| s.products().next().unwrap().id);
        let id = local_id_for(ShopifyProductId::new(shopify_id).unwrap());
        let before = store.product(id).await.unwrap().unwrap();
        let variant = before.content.variants[1].shopify_id.unwrap();
        let edit = ProductEdit {
            title: Some("Edited by Ana".into()),
            variants: vec![VariantEdit {
                variant: Some(VariantRef::Shopify(variant)),
                barcode: Some(Some("4006381333931".into())),
                price: Some("33.00".parse().unwrap()),
                ..VariantEdit::default()
            }],
            ..ProductEdit::default()
        };
        let ana = person("ana@example.com");
        let edited = edit_product(&store, id, &edit, Some(before.version), &ana, chrono::Utc::now())
            .await
            .unwrap();
        let operation_id = edited.operation_id.expect("an operation");
        assert_eq!(edited.product.version, before.version + 1);
        assert!(edited.product.needs_push());
        let versions = store.product_versions(id, true, 5, None).await.unwrap().items;
        assert_eq!(versions[0].change_source, ChangeSource::Local);
        assert_eq!(versions[0].changed_by, ana);
        assert_eq!(versions.len() as u64, before.version + 1, "one version");
        let op: SyncOperation = store
            .get(&Key::pk(operation_id.to_string()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (op.operation_type, op.status, op.created_by.clone()),
            (OperationType::LocalEdit, OperationStatus::Completed, ana.clone())
        );
        let rows = shopsync_engine::operation::operation_rows(&store, operation_id).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, StagingStatus::Applied);
        assert_eq!(rows[0].staged_by, ana);

        // Stale and locked edits change nothing.
        let stale = edit_product(&store, id, &edit, Some(before.version), &ana, chrono::Utc::now()).await;
        assert!(matches!(stale, Err(EditError::Stale { .. })), "{stale:?}");
        store
            .lock_product(id, &person("bo"), chrono::Utc::now(), chrono::Duration::seconds(60))
            .await
            .unwrap();
        let retitle = ProductEdit { title: Some("Mine".into()), ..ProductEdit::default() };
        let locked = edit_product(&store, id, &retitle, None, &ana, chrono::Utc::now()).await;
        assert!(matches!(locked, Err(EditError::Locked { .. })), "{locked:?}");
        store.unlock_product(id, &person("bo"), chrono::Utc::now()).await.unwrap();
        assert_eq!(store.product(id).await.unwrap().unwrap().version, edited.product.version);

        // Nothing was sent yet; the up-sync sends it.
        let remote = sim.with_shop(|s| s.product(shopify_id).unwrap().clone());
        assert_ne!(remote.title, "Edited by Ana");
        run_up(&store, &client, &Actor::system("scheduler")).await.unwrap();
        let remote = sim.with_shop(|s| s.product(shopify_id).unwrap().clone());
        assert_eq!(remote.title, "Edited by Ana");
        let pushed = remote.variants.iter().find(|v| v.id == variant.get()).unwrap();
        assert_eq!(pushed.barcode.as_deref(), Some("4006381333931"));
        assert_eq!(pushed.price.parse::<f64>().unwrap(), 33.0);
        assert!(!store.product(id).await.unwrap().unwrap().needs_push());
    }
}

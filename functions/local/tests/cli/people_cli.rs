//! `shopsync product edit|lock|unlock` and `shopsync conflicts list|show|resolve` from the
//! command line, on the embedded store a down-sync filled.

use crate::common;
use common::run_in as shopsync;
use serde_json::json;
use shopsync_domain::{
    ConflictValues, FieldPath, OperationId, OwnershipPolicy, Product, SyncConflict,
};

#[tokio::test]
async fn a_person_edits_locks_and_settles_conflicts_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = shopsync(
        dir.path(),
        &[
            "sync",
            "--direction",
            "down",
            "--full",
            "--sim-products",
            "2",
        ],
    );
    assert!(ok, "{out}{err}");
    let store = common::open_store(dir.path());
    let products: Vec<Product> = common::all(&store).await;
    let product = products[0].clone();
    let id = product.id.to_string();
    let gid = format!(
        "gid://shopify/Product/{}",
        product.shopify_id.unwrap().get()
    );
    drop(store);

    // An edit by Shopify GID, with a stale --if-match refused.
    let sku = product.content.variants[0].sku.clone().unwrap();
    let changes = json!({"title": "Edited on the command line", "variants": [{"sku": sku.as_str(), "price": "19.99"}]}).to_string();
    let (ok, _, err) = shopsync(
        dir.path(),
        &[
            "product",
            "edit",
            &gid,
            "--set",
            &changes,
            "--if-match",
            "9",
            "--by",
            "ana",
        ],
    );
    assert!(!ok && err.contains("version"), "{err}");
    let (ok, out, err) = shopsync(
        dir.path(),
        &["product", "edit", &gid, "--set", &changes, "--by", "ana"],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("version 2") && out.contains("next up-sync"),
        "{out}"
    );
    let (ok, _, err) = shopsync(
        dir.path(),
        &[
            "product",
            "edit",
            &id,
            "--set",
            r#"{"variants": [{"sku": "NOPE", "price": "1"}]}"#,
            "--by",
            "ana",
        ],
    );
    assert!(!ok && err.contains("variants[0].sku"), "{err}");

    // Bo locks it; Ana's edit is refused until an override releases it.
    let (ok, out, err) = shopsync(
        dir.path(),
        &[
            "product",
            "lock",
            &id,
            "--reason",
            "photo shoot",
            "--by",
            "bo",
        ],
    );
    assert!(
        ok && out.contains("locked by bo") && out.contains("photo shoot"),
        "{out}{err}"
    );
    let (ok, _, err) = shopsync(
        dir.path(),
        &[
            "product",
            "edit",
            &id,
            "--set",
            r#"{"title": "Mine"}"#,
            "--by",
            "ana",
        ],
    );
    assert!(!ok && err.contains("bo"), "{err}");
    let (ok, _, err) = shopsync(dir.path(), &["product", "unlock", &id, "--by", "ana"]);
    assert!(!ok, "only the holder releases without --force: {err}");
    let (ok, out, err) = shopsync(
        dir.path(),
        &["product", "unlock", &id, "--force", "--by", "ana"],
    );
    assert!(ok && out.contains("unlocked"), "{out}{err}");

    // A conflict on the title waits; it is listed, shown, settled once.
    let store = common::open_store(dir.path());
    let path = FieldPath::new_unchecked("title".into());
    let values = ConflictValues {
        base: Some(json!("Base")),
        local: Some(json!("Edited on the command line")),
        remote: Some(json!("Shopify's title")),
    };
    let decision = OwnershipPolicy::default().decide(&path, &values, None, None);
    let conflict = SyncConflict::field(
        OperationId::generate(),
        product.id,
        path,
        values,
        &decision,
        chrono::Utc::now(),
    );
    store
        .put_all(std::slice::from_ref(&conflict))
        .await
        .unwrap();
    store.flush().await.unwrap();
    drop(store);
    let conflict_id = conflict.conflict_uuid.to_string();
    let (ok, out, err) = shopsync(dir.path(), &["conflicts", "list"]);
    assert!(
        ok && out.contains(&conflict_id) && out.contains("1 conflict(s)"),
        "{out}{err}"
    );
    let (ok, out, _) = shopsync(
        dir.path(),
        &["conflicts", "list", "--product", &id, "--json"],
    );
    let listed: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(ok && listed.as_array().unwrap().len() == 1, "{out}");
    let (ok, out, _) = shopsync(dir.path(), &["conflicts", "show", &conflict_id]);
    assert!(ok && out.contains("Shopify's title"), "{out}");
    let (ok, _, err) = shopsync(
        dir.path(),
        &[
            "conflicts",
            "resolve",
            &conflict_id,
            "--strategy",
            "manual",
            "--value",
            "not json",
            "--by",
            "ana",
        ],
    );
    assert!(!ok && err.contains("JSON"), "{err}");
    let (ok, out, err) = shopsync(
        dir.path(),
        &[
            "conflicts",
            "resolve",
            &conflict_id,
            "--strategy",
            "remote_wins",
            "--note",
            "Shopify is right",
            "--by",
            "ana",
        ],
    );
    assert!(ok && out.contains("resolved"), "{out}{err}");
    let (ok, _, err) = shopsync(
        dir.path(),
        &[
            "conflicts",
            "resolve",
            &conflict_id,
            "--strategy",
            "local_wins",
            "--by",
            "ana",
        ],
    );
    assert!(!ok && err.contains("already"), "{err}");
    let store = common::open_store(dir.path());
    let after = store.product(product.id).await.unwrap().unwrap();
    assert_eq!(after.content.title, "Shopify's title");
    let versions = store
        .product_versions(product.id, true, 5, None)
        .await
        .unwrap()
        .items;
    assert_eq!(versions[0].changed_by.as_str(), "ana");
    assert_eq!(
        versions[0].change_source,
        shopsync_domain::ChangeSource::ConflictResolution
    );
    assert_eq!(
        versions[1].change_source,
        shopsync_domain::ChangeSource::Local
    );
}

#[tokio::test]
async fn an_admin_rolls_an_edit_back_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = shopsync(
        dir.path(),
        &[
            "sync",
            "--direction",
            "down",
            "--full",
            "--sim-products",
            "2",
        ],
    );
    assert!(ok, "{out}{err}");
    let store = common::open_store(dir.path());
    let product = common::all::<Product>(&store).await[0].clone();
    drop(store);
    let id = product.id.to_string();
    let (ok, out, err) = shopsync(
        dir.path(),
        &[
            "product",
            "edit",
            &id,
            "--set",
            r#"{"title": "Regretted"}"#,
            "--by",
            "ana",
        ],
    );
    assert!(ok, "{out}{err}");
    let store = common::open_store(dir.path());
    let edits: Vec<shopsync_domain::SyncOperation> = common::all(&store).await;
    let edit = edits
        .iter()
        .find(|op| op.operation_type == shopsync_domain::OperationType::LocalEdit)
        .expect("the edit's operation")
        .operation_uuid
        .to_string();
    drop(store);

    let (ok, _, err) = shopsync(
        dir.path(),
        &[
            "operation",
            "rollback",
            &edit,
            "--type",
            "sideways",
            "--sim-products",
            "2",
        ],
    );
    assert!(!ok && err.contains("full, partial or selective"), "{err}");
    let (ok, _, err) = shopsync(
        dir.path(),
        &[
            "operation",
            "rollback",
            &edit,
            "--type",
            "partial",
            "--sim-products",
            "2",
        ],
    );
    assert!(!ok && err.contains("names its products"), "{err}");
    let (ok, out, err) = shopsync(
        dir.path(),
        &[
            "operation",
            "rollback",
            &edit,
            "--dry-run",
            "--by",
            "ada",
            "--sim-products",
            "2",
        ],
    );
    assert!(
        ok && out.contains("1 product(s) restored") && out.contains("would_push"),
        "{out}{err}"
    );
    let (ok, out, err) = shopsync(
        dir.path(),
        &[
            "operation",
            "rollback",
            &edit,
            "--by",
            "ada",
            "--sim-products",
            "2",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("completed: 1 product(s) restored, 0 skipped"),
        "{out}"
    );
    let store = common::open_store(dir.path());
    let restored: Product = common::all::<Product>(&store)
        .await
        .into_iter()
        .find(|p| p.id == product.id)
        .unwrap();
    assert_eq!(restored.content.title, product.content.title);
    let edit_op: OperationId = edit.parse().unwrap();
    let original = shopsync_engine::operation::load_operation(&store, edit_op)
        .await
        .unwrap();
    assert_eq!(
        original.status,
        shopsync_domain::OperationStatus::RolledBack
    );
}

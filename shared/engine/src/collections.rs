//! Shopify's collections → local categories. Each collection (custom or smart) becomes a
//! category whose content holds its membership (the Shopify ids of its products), so the
//! first sync that reads collections changes no product; every change of a category is a new
//! version (`category_versions`), written in one transaction with it.

use crate::error::EngineError;
use chrono::{DateTime, Utc};
use shopsync_domain::fields::changed_fields;
use shopsync_domain::version::CategoryVersion;
use shopsync_domain::{
    Actor, Category, CategoryContent, CategoryId, CategoryKind, ChangeSource, OperationId,
    ShopifyCollectionId, VersionStamp,
};
use shopsync_shopify::model::RemoteCollection;
use shopsync_shopify::AdminClient;
use shopsync_store::item::{Condition, Key, Scalar};
use shopsync_store::Store;

/// What reading the collections did to the categories.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectionsSynced {
    /// Categories new locally.
    pub created: u64,
    /// Categories that took Shopify's changes (a new version each).
    pub updated: u64,
    /// Categories already as Shopify has them (or holding a copy at least as new).
    pub unchanged: u64,
    /// Categories another writer changed meanwhile (the next sync takes them).
    pub skipped: u64,
}

/// The local id of the category mirroring a Shopify collection: derived from its id, so it is
/// found by key (never through an index that may lag).
pub fn category_id_for(collection: ShopifyCollectionId) -> CategoryId {
    let id = collection.get();
    let high = (id >> 48) as u128;
    let low = (id & 0xffff_ffff_ffff) as u128;
    // Fixed prefix c011ec70-0000, version nibble 8 (custom), then the 64-bit id.
    let bits: u128 = (0xc011_ec70_u128 << 96) | (0x8000_u128 << 64) | (high << 48) | low;
    CategoryId::from_uuid(uuid::Uuid::from_u128(bits))
}

/// A collection's content as a category holds it.
pub fn category_content(remote: &RemoteCollection) -> CategoryContent {
    CategoryContent {
        title: remote.title.clone(),
        handle: remote.handle.clone(),
        body_html: remote.description_html.clone(),
        sort_order: remote.sort_order.clone(),
        kind: if remote.rule_set.is_some() {
            CategoryKind::Smart
        } else {
            CategoryKind::Custom
        },
        rules: remote.rule_set.clone(),
        products: remote.products.iter().copied().collect(),
    }
}

/// What taking one collection did to its category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// A new category.
    Created,
    /// A new version of the category.
    Updated,
    /// Already as Shopify has it (or holding a copy at least as new).
    Unchanged,
    /// Another writer changed it meanwhile (the next read takes it).
    Skipped,
}

/// Reads Shopify's collections (only those updated after `updated_after`, when given) into
/// categories, each change versioned under `operation` by `actor`.
pub async fn sync_collections(
    store: &Store,
    client: &AdminClient,
    operation: Option<OperationId>,
    actor: &Actor,
    updated_after: Option<DateTime<Utc>>,
) -> Result<CollectionsSynced, EngineError> {
    let mut synced = CollectionsSynced::default();
    for remote in client.collections(updated_after).await? {
        match take_collection(store, &remote, operation, actor).await? {
            Taken::Created => synced.created += 1,
            Taken::Updated => synced.updated += 1,
            Taken::Unchanged => synced.unchanged += 1,
            Taken::Skipped => synced.skipped += 1,
        }
    }
    Ok(synced)
}

/// Reads one collection (a webhook said it changed) into its category; `None` when Shopify
/// no longer has it.
pub async fn sync_collection(
    store: &Store,
    client: &AdminClient,
    id: ShopifyCollectionId,
    operation: Option<OperationId>,
    actor: &Actor,
) -> Result<Option<Taken>, EngineError> {
    match client.collection(id).await? {
        Some(remote) => Ok(Some(
            take_collection(store, &remote, operation, actor).await?,
        )),
        None => Ok(None),
    }
}

/// Takes one collection as Shopify has it into its category: created, or a new version when
/// it changed, written in one transaction with its version.
pub async fn take_collection(
    store: &Store,
    remote: &RemoteCollection,
    operation: Option<OperationId>,
    actor: &Actor,
) -> Result<Taken, EngineError> {
    let content = category_content(remote);
    let id = category_id_for(remote.id);
    let now = Utc::now();
    let current = store.get::<Category>(&Key::pk(id.to_string())).await?;
    let (category, stamp, condition, created) = match current {
        None => {
            let category = Category {
                id,
                shopify_id: Some(remote.id),
                content: content.clone(),
                version: 1,
                last_sync_version: 1,
                shopify_updated_at: Some(remote.updated_at),
                created_at: now,
                updated_at: now,
            };
            let fields = content.to_fields().into_keys().collect();
            (category, fields, Condition::ItemAbsent, true)
        }
        Some(current)
            if current
                .shopify_updated_at
                .is_some_and(|seen| remote.updated_at <= seen)
                || current.content == content =>
        {
            return Ok(Taken::Unchanged);
        }
        Some(current) => {
            let changes =
                shopsync_domain::fields::diff(&current.content.to_fields(), &content.to_fields());
            let mut category = current.clone();
            category.content = content;
            category.version += 1;
            category.last_sync_version = category.version;
            category.shopify_updated_at = Some(remote.updated_at);
            category.updated_at = now;
            let expected = Condition::Eq("version", Scalar::N(current.version as i64));
            (category, changed_fields(&changes), expected, false)
        }
    };
    let version = CategoryVersion::of(
        &category,
        VersionStamp::new(stamp, ChangeSource::Shopify, actor.clone(), operation, now),
    );
    let writes = vec![
        match condition {
            Condition::ItemAbsent => Store::insert_write(&category)?,
            expected => Store::replace_write(&category, expected)?,
        },
        Store::insert_write(&version)?,
    ];
    Ok(match store.commit_writes(writes).await? {
        Ok(()) if created => Taken::Created,
        Ok(()) => Taken::Updated,
        // Written by another read meanwhile: the next one takes it.
        Err(_) => Taken::Skipped,
    })
}

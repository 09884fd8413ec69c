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
    /// Categories another writer changed meanwhile, or holding a local change Shopify has not
    /// confirmed yet (their push reconciles them; the next read takes the rest).
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
    /// Another writer changed it meanwhile (the next read takes it), or it holds a local
    /// change Shopify has not confirmed (kept; its push reconciles the two).
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
    match current {
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
            let version = CategoryVersion::of(
                &category,
                VersionStamp::new(
                    content.to_fields().into_keys().collect(),
                    ChangeSource::Shopify,
                    actor.clone(),
                    operation,
                    now,
                ),
            );
            let written =
                commit_category(store, &category, Condition::ItemAbsent, &version).await?;
            // Written by another read meanwhile: the next one takes it.
            Ok(if written {
                Taken::Created
            } else {
                Taken::Skipped
            })
        }
        // A local change Shopify has not confirmed (a rollback's restore waiting for its
        // push): kept, never overwritten; its push reconciles the two.
        Some(current) if current.version > current.last_sync_version => Ok(Taken::Skipped),
        Some(current)
            if current
                .shopify_updated_at
                .is_some_and(|seen| remote.updated_at <= seen)
                || current.content == content =>
        {
            Ok(Taken::Unchanged)
        }
        Some(current) => {
            let (mut category, version) = next_version(
                &current,
                content,
                ChangeSource::Shopify,
                operation,
                actor,
                now,
            );
            category.last_sync_version = category.version;
            category.shopify_updated_at = Some(remote.updated_at);
            let written =
                commit_category(store, &category, same_version(&current), &version).await?;
            Ok(if written {
                Taken::Updated
            } else {
                Taken::Skipped
            })
        }
    }
}

/// `current` with `content` as its next version, and that version's record (made by `source`
/// under `operation`, naming the fields that changed).
fn next_version(
    current: &Category,
    content: CategoryContent,
    source: ChangeSource,
    operation: Option<OperationId>,
    actor: &Actor,
    now: chrono::DateTime<Utc>,
) -> (Category, CategoryVersion) {
    let changes = shopsync_domain::fields::diff(&current.content.to_fields(), &content.to_fields());
    let mut category = current.clone();
    category.content = content;
    category.version += 1;
    category.updated_at = now;
    let version = CategoryVersion::of(
        &category,
        VersionStamp::new(
            changed_fields(&changes),
            source,
            actor.clone(),
            operation,
            now,
        ),
    );
    (category, version)
}

/// The condition that a category still is at `current`'s version.
fn same_version(current: &Category) -> Condition {
    Condition::Eq("version", Scalar::N(current.version as i64))
}

/// Writes `category` (if `condition` holds) and its `version` in one transaction; `false`
/// when the condition failed (another writer came first).
async fn commit_category(
    store: &Store,
    category: &Category,
    condition: Condition,
    version: &CategoryVersion,
) -> Result<bool, EngineError> {
    let write = match condition {
        Condition::ItemAbsent => Store::insert_write(category)?,
        expected => Store::replace_write(category, expected)?,
    };
    Ok(store
        .commit_writes(vec![write, Store::insert_write(version)?])
        .await?
        .is_ok())
}

/// What pushing a category to its collection came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CategoryPushed {
    /// Shopify took it; the category is marked synced.
    Pushed,
    /// Nothing to push: Shopify has it as the category holds it.
    InStep,
    /// Not pushed, and why (a smart collection, a category Shopify has no collection for, or
    /// Shopify's refusal); the category stays unsynced.
    NotPushed(String),
}

/// The collection a category is pushed to, or why it never is: shopsync pushes custom
/// collections only, and only those Shopify has.
fn push_target(category: &Category) -> Result<ShopifyCollectionId, String> {
    if category.content.kind == CategoryKind::Smart {
        return Err("a smart collection: Shopify chooses its products by its rules; shopsync reads and versions it and never pushes it".to_owned());
    }
    category
        .shopify_id
        .ok_or_else(|| "Shopify has no collection for it".to_owned())
}

/// Pushes category `id` to its collection when it holds a change Shopify has not confirmed
/// (`version` past `last_sync_version`): its fields, and the products selected into or out of
/// it, worked out against the collection as Shopify has it now. Confirmed, the category is
/// marked synced at the version pushed (conditionally: a change since waits for the next push).
pub async fn push_category(
    store: &Store,
    client: &AdminClient,
    id: CategoryId,
) -> Result<CategoryPushed, EngineError> {
    let Some(category) = store.get::<Category>(&Key::pk(id.to_string())).await? else {
        return Ok(CategoryPushed::NotPushed("no such category".to_owned()));
    };
    if category.version <= category.last_sync_version {
        return Ok(CategoryPushed::InStep);
    }
    let collection = match push_target(&category) {
        Ok(collection) => collection,
        Err(why) => return Ok(CategoryPushed::NotPushed(why)),
    };
    let Some(remote) = client.collection(collection).await? else {
        return Ok(CategoryPushed::NotPushed(format!(
            "Shopify no longer has collection {}",
            collection.gid()
        )));
    };
    let change = collection_change(&category.content, &category_content(&remote));
    let updated_at = if change.is_empty() {
        Some(remote.updated_at)
    } else {
        match client.update_collection(collection, &change).await {
            Ok(at) => at,
            Err(e) if !e.is_retryable() => {
                tracing::warn!(category = %id, collection = %collection.gid(), error = %e, "category not pushed");
                return Ok(CategoryPushed::NotPushed(e.to_string()));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut synced = category.clone();
    synced.last_sync_version = category.version;
    synced.shopify_updated_at = updated_at.or(category.shopify_updated_at);
    match store
        .commit_writes(vec![Store::replace_write(
            &synced,
            same_version(&category),
        )?])
        .await?
    {
        Ok(()) => {}
        // Changed meanwhile: that change is pushed next time.
        Err(_) => {
            tracing::info!(category = %id, "category changed while pushed; pushed again next time")
        }
    }
    Ok(if change.is_empty() {
        CategoryPushed::InStep
    } else {
        CategoryPushed::Pushed
    })
}

/// What turns collection content `remote` into `local`: the fields that differ, the
/// products to select into it and out of it.
pub fn collection_change(
    local: &CategoryContent,
    remote: &CategoryContent,
) -> shopsync_shopify::ops::CollectionChange {
    let differs = |l: &String, r: &String| (l != r).then(|| l.clone());
    shopsync_shopify::ops::CollectionChange {
        title: differs(&local.title, &remote.title),
        handle: differs(&local.handle, &remote.handle),
        description_html: differs(&local.body_html, &remote.body_html),
        sort_order: differs(&local.sort_order, &remote.sort_order),
        add: local
            .products
            .difference(&remote.products)
            .copied()
            .collect(),
        remove: remote
            .products
            .difference(&local.products)
            .copied()
            .collect(),
    }
}

/// What pushing the categories with unpushed changes did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategoriesPushed {
    /// Categories Shopify took.
    pub pushed: u64,
    /// Categories already as Shopify has them.
    pub in_step: u64,
    /// Categories not pushed, with the reason.
    pub not_pushed: Vec<(CategoryId, String)>,
}

/// Pushes every custom category holding a change Shopify has not confirmed (an up-sync's
/// last step; a rollback pushes what it restored itself). Categories are few: the table is
/// read whole, a page at a time.
pub async fn push_pending_categories(
    store: &Store,
    client: &AdminClient,
) -> Result<CategoriesPushed, EngineError> {
    let mut outcome = CategoriesPushed::default();
    let mut start = None;
    loop {
        let page = store.scan::<Category>(500, start.as_ref()).await?;
        for category in page.items {
            if category.version <= category.last_sync_version || push_target(&category).is_err() {
                continue;
            }
            match push_category(store, client, category.id).await? {
                CategoryPushed::Pushed => outcome.pushed += 1,
                CategoryPushed::InStep => outcome.in_step += 1,
                CategoryPushed::NotPushed(why) => outcome.not_pushed.push((category.id, why)),
            }
        }
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(outcome),
        }
    }
}

/// Writes `content` into category `id` as a new version made by `source` under `operation`
/// (conditional on the version read: `None` when another writer changed it meanwhile). The
/// category is left unsynced; [`push_category`] sends it.
pub async fn write_category(
    store: &Store,
    current: &Category,
    content: CategoryContent,
    source: ChangeSource,
    operation: Option<OperationId>,
    actor: &Actor,
) -> Result<Option<Category>, EngineError> {
    let (category, version) = next_version(current, content, source, operation, actor, Utc::now());
    let written = commit_category(store, &category, same_version(current), &version).await?;
    Ok(written.then_some(category))
}

//! Shopify → local. Each remote product becomes a staged row; when the local product has no
//! unpushed change the row is applied at once (product + version snapshot + staging status in
//! one transaction). A product with local changes not yet pushed is never overwritten: its row
//! waits, flagged as conflicting, for the bidirectional merge or a reviewer.

use crate::error::EngineError;
use crate::mapping::content_from_remote;
use crate::perf::StageTimes;
use chrono::{DateTime, Utc};
use shopsync_domain::fields::{changed_fields, diff, Fields};
use shopsync_domain::product::ProductContent;
use shopsync_domain::staging::{ChangeType, ProductsStaging, ShopifySource, StagingStatus};
use shopsync_domain::Stage;
use shopsync_domain::{
    Actor, ChangeSource, OperationStatistics, Product, ProductId, ProductVersion, ShopifyProductId,
    StagingId, SyncOperation,
};
use shopsync_shopify::model::RemoteProduct;
use shopsync_store::{ProductCommit, RepoError, Store};
use std::time::Instant;

/// What ingesting one remote product did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// A new local product.
    Created(ProductId),
    /// The local product took Shopify's changes.
    Updated(ProductId),
    /// Shopify's content equals the local content.
    Unchanged(ProductId),
    /// Shopify's copy is not newer than what was last taken from it.
    Stale(ProductId),
    /// Someone holds the product's lock; nothing was written.
    Locked(ProductId),
    /// The local product has unpushed changes: the row waits as a conflict.
    Conflict(ProductId),
}

impl Ingested {
    /// Adds this outcome to `stats`.
    pub fn count(&self, stats: &mut OperationStatistics) {
        stats.processed += 1;
        match self {
            Ingested::Created(_) => stats.created += 1,
            Ingested::Updated(_) => stats.updated += 1,
            Ingested::Unchanged(_) | Ingested::Stale(_) => stats.unchanged += 1,
            Ingested::Locked(_) => stats.skipped += 1,
            Ingested::Conflict(_) => stats.conflicts += 1,
        }
    }
}

/// The local id of the product that mirrors a Shopify product: derived from the Shopify id, so
/// two workers ingesting the same new product race on one key and cannot create two.
pub fn local_id_for(shopify: ShopifyProductId) -> ProductId {
    let id = shopify.get();
    let high = (id >> 48) as u128;
    let low = (id & 0xffff_ffff_ffff) as u128;
    // Fixed prefix 5b0b1f1e-0000, version nibble 8 (custom), then the 64-bit id.
    let bits: u128 = (0x5b0b_1f1e_u128 << 96) | (0x8000_u128 << 64) | (high << 48) | low;
    ProductId::from_uuid(uuid_from_u128(bits))
}

fn uuid_from_u128(bits: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(bits)
}

/// What a staged row records about one change.
struct Change {
    product: ProductId,
    change_type: ChangeType,
    change_data: shopsync_domain::ChangeData,
    base_version: u64,
    status: StagingStatus,
    source: Shopify,
}

fn row(
    operation: &SyncOperation,
    change: Change,
    proposed: &shopsync_domain::product::ProductContent,
    actor: &Actor,
    now: DateTime<Utc>,
) -> ProductsStaging {
    ProductsStaging {
        id: StagingId::random(),
        source_product_id: change.product,
        sku: proposed.variants.iter().find_map(|v| v.sku.clone()),
        name: proposed.title.clone(),
        change_type: change.change_type,
        change_data: change.change_data,
        base_version: change.base_version,
        proposed: Some(proposed.clone()),
        has_conflicts: change.status == StagingStatus::Pending,
        sync_operation_id: operation.operation_uuid,
        status: change.status,
        staged_by: actor.clone(),
        staged_at: now,
        reviewed_by: None,
        reviewed_at: None,
        applied_at: (change.status == StagingStatus::Applied).then_some(now),
        error: None,
        shopify: Some(ShopifySource {
            product_id: change.source.id,
            updated_at: change.source.updated_at,
        }),
    }
}

/// Stages (and, when safe, applies) one remote product within `operation`.
pub async fn ingest(
    store: &Store,
    operation: &SyncOperation,
    remote: &RemoteProduct,
    actor: &Actor,
    now: DateTime<Utc>,
    times: &mut StageTimes,
) -> Result<Ingested, EngineError> {
    let content = content_from_remote(remote)?;
    ingest_content(
        store,
        operation,
        Shopify {
            id: remote.id,
            updated_at: remote.updated_at,
        },
        content,
        actor,
        now,
        times,
    )
    .await
}

/// Which Shopify product some content came from, and as of when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shopify {
    /// The product.
    pub id: ShopifyProductId,
    /// Shopify's `updatedAt` of this copy.
    pub updated_at: DateTime<Utc>,
}

/// What to do with one product's content from Shopify.
pub(crate) enum Decision {
    /// Write this (product + version + applied staging row); the outcome if it lands; the
    /// content before (absent for a create).
    Commit(Box<ProductCommit>, Ingested, Option<Box<ProductContent>>),
    /// Nothing to write.
    Done(Ingested),
    /// Store this waiting row (the product has unpushed local changes).
    Conflict(Box<ProductsStaging>, ProductId),
}

/// Reads the local product and decides, writing nothing.
pub(crate) async fn decide(
    store: &Store,
    operation: &SyncOperation,
    source: Shopify,
    content: &shopsync_domain::product::ProductContent,
    actor: &Actor,
    now: DateTime<Utc>,
    times: &mut StageTimes,
) -> Result<Decision, EngineError> {
    let diffing = Instant::now();
    let found = store.product_by_shopify_id(source.id).await;
    times.add(Stage::Diff, diffing);
    let Some(local) = found? else {
        let mut product = Product::new(local_id_for(source.id), content.clone(), now);
        product.shopify_id = Some(source.id);
        product.shopify_updated_at = Some(source.updated_at);
        // Taken from Shopify: nothing to push back.
        product.last_sync_version = product.version;
        let changes = diff(&Fields::new(), &content.to_fields());
        let staged = row(
            operation,
            Change {
                product: product.id,
                change_type: ChangeType::Create,
                change_data: changes,
                base_version: 0,
                status: StagingStatus::Applied,
                source,
            },
            content,
            actor,
            now,
        );
        let id = product.id;
        let commit = ProductCommit {
            version: Some(ProductVersion::first(
                &product,
                ChangeSource::Shopify,
                actor.clone(),
                Some(operation.operation_uuid),
            )),
            product,
            expected_version: None,
            staging: Some((staged, None)),
            actor: actor.clone(),
            now,
        };
        return Ok(Decision::Commit(
            Box::new(commit),
            Ingested::Created(id),
            None,
        ));
    };
    if local
        .shopify_updated_at
        .is_some_and(|seen| source.updated_at <= seen)
    {
        return Ok(Decision::Done(Ingested::Stale(local.id)));
    }
    if local.writable_by(actor, now).is_err() {
        return Ok(Decision::Done(Ingested::Locked(local.id)));
    }
    let mut updated = local.clone();
    let changes = updated.change_content(content.clone(), now);
    if changes.is_empty() {
        return Ok(Decision::Done(Ingested::Unchanged(local.id)));
    }
    if local.needs_push() {
        // Local edits not yet in Shopify: never overwrite them here.
        let staged = row(
            operation,
            Change {
                product: local.id,
                change_type: ChangeType::Update,
                change_data: changes,
                base_version: local.version,
                status: StagingStatus::Pending,
                source,
            },
            content,
            actor,
            now,
        );
        return Ok(Decision::Conflict(Box::new(staged), local.id));
    }
    updated.shopify_updated_at = Some(source.updated_at);
    updated.last_sync_version = updated.version;
    let fields = changed_fields(&changes);
    let staged = row(
        operation,
        Change {
            product: local.id,
            change_type: ChangeType::Update,
            change_data: changes,
            base_version: local.version,
            status: StagingStatus::Applied,
            source,
        },
        content,
        actor,
        now,
    );
    let commit = ProductCommit {
        version: Some(ProductVersion::snapshot(
            &updated,
            fields,
            ChangeSource::Shopify,
            actor.clone(),
            Some(operation.operation_uuid),
            now,
        )),
        product: updated,
        expected_version: Some(local.version),
        staging: Some((staged, None)),
        actor: actor.clone(),
        now,
    };
    Ok(Decision::Commit(
        Box::new(commit),
        Ingested::Updated(local.id),
        Some(Box::new(local.content)),
    ))
}

/// Stores a waiting row.
pub(crate) async fn stage_conflict(
    store: &Store,
    staged: &ProductsStaging,
    times: &mut StageTimes,
) -> Result<(), EngineError> {
    let staging = Instant::now();
    let inserted = store.insert(staged).await;
    times.add(Stage::Stage, staging);
    Ok(inserted?)
}

/// Stages (and, when safe, applies) Shopify's `content` of one product within `operation`.
pub async fn ingest_content(
    store: &Store,
    operation: &SyncOperation,
    source: Shopify,
    content: shopsync_domain::product::ProductContent,
    actor: &Actor,
    now: DateTime<Utc>,
    times: &mut StageTimes,
) -> Result<Ingested, EngineError> {
    // At most two rounds: a lost race (a create, or a write in between) is decided again.
    for _ in 0..2 {
        match decide(store, operation, source, &content, actor, now, times).await? {
            Decision::Done(outcome) => return Ok(outcome),
            Decision::Conflict(staged, id) => {
                stage_conflict(store, &staged, times).await?;
                return Ok(Ingested::Conflict(id));
            }
            Decision::Commit(commit, outcome, _) => {
                let applying = Instant::now();
                let committed = store.commit_product(*commit).await;
                times.add(Stage::Apply, applying);
                match committed {
                    Ok(()) => return Ok(outcome),
                    Err(RepoError::AlreadyExists { .. } | RepoError::VersionConflict { .. }) => {
                        continue
                    }
                    Err(RepoError::Locked(_)) => {
                        return Ok(Ingested::Locked(local_id_for(source.id)))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Err(EngineError::Store(RepoError::Store(
        shopsync_store::StoreError::Unavailable(format!(
            "product {} kept changing while it was ingested",
            source.id
        )),
    )))
}

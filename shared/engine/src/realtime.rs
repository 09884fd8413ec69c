//! Webhooks into the realtime operation: each verified, first-time delivery is staged (and
//! applied when safe) through the same path as a down-sync; stale payloads are dropped;
//! deletes are staged for review, never applied silently.

use crate::apply::apply_rows;
use crate::down::{Ingested, Shopify};
use crate::down::{Planned, Planner};
use crate::error::EngineError;
use crate::operation::rows_by_id;
use crate::perf::StageTimes;
use crate::push_plan::echo_key;
use chrono::{DateTime, Utc};
use shopsync_domain::fields::diff;
use shopsync_domain::product::{ProductContent, ProductOption, ProductStatus, Sku, Variant};
use shopsync_domain::staging::{ChangeType, ProductsStaging, StagingStatus};
use shopsync_domain::{
    Actor, GuardRails, Money, OperationId, OperationStatistics, OperationStatus, OperationType,
    PlanSummary, Product, ShopifyProductId, StagingId, SyncDirection, SyncOperation,
};
use shopsync_shopify::cost::ProductPageShape;
use shopsync_shopify::webhook::payloads::ProductPayload;
use shopsync_shopify::webhook::{compliance_request, Delivery, Payload};
use shopsync_shopify::AdminClient;
use shopsync_store::item::{Key, WriteOp};
use shopsync_store::{RepoError, Store};
use std::ops::Not;
use std::sync::Arc;

/// What handling a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// A product change, staged as a pending row: the apply step applies it.
    Staged {
        /// The realtime operation.
        operation: OperationId,
        /// The pending row.
        row: StagingId,
    },
    /// A product delivery that needed no write (unchanged, locked) or waits as a conflict.
    Product(Ingested),
    /// Older than what shopsync already has: dropped.
    Stale,
    /// The echo of shopsync's own push: dropped.
    Echo,
    /// A delete, staged for review.
    DeleteStaged,
    /// A delete of a product shopsync does not have.
    UnknownDeleted,
    /// A compliance request, recorded.
    ComplianceRecorded,
    /// A collection changed: its category is read again (the intake queues that).
    CollectionChanged(shopsync_domain::ShopifyCollectionId),
    /// A collection removed in Shopify: its category and versions are kept, and the removal
    /// reported.
    CollectionRemoved(shopsync_domain::ShopifyCollectionId),
    /// A topic shopsync does not act on (yet): acknowledged.
    Ignored(String),
}

impl Handled {
    /// A short stable name of the outcome (for answers and logs).
    pub fn name(&self) -> &'static str {
        match self {
            Handled::Staged { .. } => "staged",
            Handled::Product(Ingested::Created(_)) => "created",
            Handled::Product(Ingested::Updated(_)) => "updated",
            Handled::Product(Ingested::Unchanged(_)) => "unchanged",
            Handled::Product(Ingested::Stale(_)) | Handled::Stale => "stale",
            Handled::Product(Ingested::Locked(_)) => "locked",
            Handled::Product(Ingested::Conflict(_)) => "conflict",
            Handled::Product(Ingested::Held(_)) => "held_by_conflict",
            Handled::Product(Ingested::Merged(_)) => "merged",
            Handled::Echo => "echo",
            Handled::DeleteStaged => "delete_staged",
            Handled::UnknownDeleted => "unknown_deleted",
            Handled::ComplianceRecorded => "compliance_recorded",
            Handled::CollectionChanged(_) => "collection_changed",
            Handled::CollectionRemoved(_) => "collection_removed_category_kept",
            Handled::Ignored(_) => "ignored",
        }
    }
}

/// The realtime operation of the UTC day of `now`, created on first use. Its id is derived
/// from the day, so concurrent first webhooks agree on one operation.
pub async fn realtime_operation(
    store: &Store,
    now: DateTime<Utc>,
) -> Result<SyncOperation, EngineError> {
    let id = realtime_operation_id(now);
    let key = Key::pk(id.to_string());
    if let Some(op) = store.get::<SyncOperation>(&key).await? {
        return Ok(op);
    }
    let mut op = SyncOperation::new(
        &format!("realtime {}", now.format("%Y-%m-%d")),
        OperationType::Realtime,
        SyncDirection::Down,
        Actor::new("system:webhooks").map_err(|e| EngineError::Mapping {
            product: "-".into(),
            reason: e.to_string(),
        })?,
        now,
    );
    op.operation_uuid = id;
    op.move_to(OperationStatus::InProgress, None, now)?;
    match store.insert(&op).await {
        Ok(()) => Ok(op),
        Err(RepoError::AlreadyExists { .. }) => {
            store.get::<SyncOperation>(&key).await?.ok_or_else(|| {
                EngineError::Store(RepoError::NotFound {
                    table: shopsync_store::Table::SyncOperations,
                    key: id.to_string(),
                })
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// The id of the realtime operation of the UTC day of `now`.
fn realtime_operation_id(now: DateTime<Utc>) -> OperationId {
    let day = now.timestamp().div_euclid(86_400) as u128;
    OperationId::from_uuid(uuid::Uuid::from_u128(
        (0x5b0b_1f1e_0001_u128 << 80) | (0x8000_u128 << 64) | day,
    ))
}

/// The realtime operation of the current day, remembered once read or created (one store
/// per instance; clones share it). What staging a delivery uses of the operation (its id,
/// that it is not a dry run) never changes once it exists, so a delivery need not read it
/// again: one lookup and decode fewer per webhook (about 5% of the webhook path's CPU).
#[derive(Debug, Clone, Default)]
pub struct RealtimeOperations {
    today: Arc<std::sync::Mutex<Option<Arc<SyncOperation>>>>,
}

impl RealtimeOperations {
    /// The realtime operation of the UTC day of `now` ([`realtime_operation`]).
    pub async fn of_day(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<Arc<SyncOperation>, EngineError> {
        let id = realtime_operation_id(now);
        if let Some(known) = self
            .remembered()
            .as_ref()
            .filter(|op| op.operation_uuid == id)
        {
            return Ok(Arc::clone(known));
        }
        let operation = Arc::new(realtime_operation(store, now).await?);
        *self.remembered() = Some(Arc::clone(&operation));
        Ok(operation)
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, Option<Arc<SyncOperation>>> {
        self.today.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn money(product: ShopifyProductId, text: &str) -> Result<Money, EngineError> {
    text.parse().map_err(|e| EngineError::Mapping {
        product: product.to_string(),
        reason: format!("`{text}`: {e}"),
    })
}

/// The content a products/create|update payload describes. Fields a webhook does not carry
/// (per-location stock, unit cost) are kept from the local product.
pub fn content_from_payload(
    payload: &ProductPayload,
    local: Option<&Product>,
) -> Result<ProductContent, EngineError> {
    let base = local.map(|p| &p.content);
    let mut variants = Vec::with_capacity(payload.variants.len());
    for (index, v) in payload.variants.iter().enumerate() {
        let key = shopsync_domain::VariantKey::of_shopify(v.id);
        let existing = base.and_then(|c| c.variants.iter().find(|x| x.shopify_id == Some(v.id)));
        variants.push(Variant {
            key,
            shopify_id: Some(v.id),
            inventory_item_id: v
                .inventory_item_id
                .or(existing.and_then(|e| e.inventory_item_id)),
            title: v.title.clone().unwrap_or_default(),
            sku: v.sku.as_deref().and_then(Sku::parse),
            barcode: v.barcode.clone().filter(|b| !b.is_empty()),
            price: match v.price.as_deref() {
                Some(p) => money(payload.id, p)?,
                None => existing.map(|e| e.price).unwrap_or(Money::from_cents(0)),
            },
            compare_at_price: v
                .compare_at_price
                .as_deref()
                .map(|p| money(payload.id, p))
                .transpose()?,
            cost: existing.and_then(|e| e.cost),
            option_values: [&v.option1, &v.option2, &v.option3]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
            position: v
                .position
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or(index as u32 + 1),
            inventory: existing.map(|e| e.inventory.clone()).unwrap_or_default(),
        });
    }
    let status = match payload.status.as_deref() {
        Some("active") => ProductStatus::Active,
        Some("archived") => ProductStatus::Archived,
        Some("unlisted") => ProductStatus::Unlisted,
        Some(_) => ProductStatus::Draft,
        None => base.map(|c| c.status).unwrap_or_default(),
    };
    let text = |v: &Option<String>, old: Option<&String>| {
        v.clone().or_else(|| old.cloned()).unwrap_or_default()
    };
    Ok(ProductContent {
        title: text(&payload.title, base.map(|c| &c.title)),
        body_html: text(&payload.body_html, base.map(|c| &c.body_html)),
        vendor: text(&payload.vendor, base.map(|c| &c.vendor)),
        product_type: text(&payload.product_type, base.map(|c| &c.product_type)),
        handle: text(&payload.handle, base.map(|c| &c.handle)),
        status,
        tags: payload.tags.iter().cloned().collect(),
        options: payload
            .options
            .iter()
            .map(|o| ProductOption {
                name: o.name.clone(),
                values: o.values.clone(),
            })
            .collect(),
        variants,
    })
}

/// Whether a delivery's handling is prepared without writing ([`prepare_delivery`]): its
/// writes then commit in one transaction with the delivery's dedupe marks.
pub fn deferrable(delivery: &Delivery) -> bool {
    matches!(
        delivery.payload,
        Payload::ProductCreate(_) | Payload::ProductUpdate(_) | Payload::ProductDelete(_)
    )
}

/// Handles one verified, first-time delivery. `client` re-fetches products whose payload
/// does not carry every variant.
pub async fn handle_delivery(
    store: &Store,
    client: Option<&AdminClient>,
    delivery: &Delivery,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Handled, EngineError> {
    if deferrable(delivery) {
        let realtime = RealtimeOperations::default();
        let mut prepared = prepare_delivery(store, &realtime, client, delivery, actor, now).await?;
        let writes = std::mem::take(&mut prepared.writes);
        if !writes.is_empty() {
            if let Err(reasons) = store.commit_writes(writes).await? {
                if refused_as_echo(prepared.echo_checked, &reasons) {
                    return Ok(Handled::Echo);
                }
                return Err(EngineError::Store(RepoError::Store(
                    shopsync_store::StoreError::TransactionCanceled { reasons },
                )));
            }
        }
        return Ok(prepared.handled);
    }
    if let Some(request) = compliance_request(delivery, now) {
        store.record_compliance(&request).await?;
        return Ok(Handled::ComplianceRecorded);
    }
    match &delivery.payload {
        Payload::InventoryLevel(level) => {
            take_inventory_level(store, client, level, actor, now).await
        }
        Payload::Collection(collection) => Ok(Handled::CollectionChanged(collection.id)),
        Payload::CollectionDelete(gone) => {
            tracing::warn!(collection = %gone.id, "a collection was removed in Shopify; its category and its versions are kept");
            Ok(Handled::CollectionRemoved(gone.id))
        }
        _ => Ok(Handled::Ignored(delivery.topic.as_str().to_owned())),
    }
}

/// A product delivery handled up to its writes (see [`prepare_delivery`]).
#[derive(Debug)]
pub struct PreparedDelivery {
    /// What handling it does once its writes commit.
    pub handled: Handled,
    /// The writes that store it (a pending row, a delete row, conflicts), to commit in one
    /// transaction.
    pub writes: Vec<WriteOp>,
    /// Whether `writes` begins with the check that the payload is not the echo of
    /// shopsync's own push (see [`Store::not_remembered`]): when that check alone is
    /// refused, the delivery is an echo ([`Handled::Echo`]) and nothing of it is written.
    pub echo_checked: bool,
}

impl PreparedDelivery {
    fn without_writes(handled: Handled) -> Self {
        Self {
            handled,
            writes: Vec::new(),
            echo_checked: false,
        }
    }
}

/// Whether a refusal of a [`PreparedDelivery`]'s writes (`reasons`: one per write, in order)
/// is its echo check's alone, i.e. the delivery is an echo.
pub fn refused_as_echo(echo_checked: bool, reasons: &[shopsync_store::CancelReason]) -> bool {
    use shopsync_store::CancelReason;
    let refused = |r: &CancelReason| matches!(r, CancelReason::ConditionFailed(_));
    echo_checked && reasons.first().is_some_and(refused) && !reasons.iter().skip(1).any(refused)
}

/// Writes past which the echo check is a read of its own instead of riding along (the
/// writes, their check and the delivery's marks must fit one transaction).
const ECHO_CHECK_ROOM: usize = shopsync_store::backend::MAX_TRANSACTION_ITEMS - 8;

/// Handles a product delivery ([`deferrable`]) up to its writes, to commit in one transaction.
/// Nothing else is written but the day's realtime operation on its first use. Whether the
/// payload is the echo of shopsync's own push is checked by the commit itself (the mark is
/// looked up inside the transaction, no read first), unless its writes are too many to
/// carry the check.
pub async fn prepare_delivery(
    store: &Store,
    realtime: &RealtimeOperations,
    client: Option<&AdminClient>,
    delivery: &Delivery,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<PreparedDelivery, EngineError> {
    match &delivery.payload {
        Payload::ProductCreate(p) | Payload::ProductUpdate(p) => {
            let local = crate::down::local_product(store, p.id).await?;
            let updated_at = p.updated_at.map(|t| t.with_timezone(&Utc)).unwrap_or(now);
            if local
                .as_ref()
                .and_then(|l| l.shopify_updated_at)
                .is_some_and(|seen| updated_at <= seen)
            {
                return Ok(PreparedDelivery::without_writes(Handled::Stale));
            }
            let operation = realtime.of_day(store, now).await?;
            // A payload without every variant (past 100, or none at all) is never trusted to
            // say which variants exist: the product is read in full instead.
            let (source, content) = if p.needs_full_refetch() || p.variants.is_empty() {
                let Some(client) = client else {
                    return Err(EngineError::Mapping {
                        product: p.id.to_string(),
                        reason: "payload lists more variants than it carries and no Shopify client is available to re-fetch".into(),
                    });
                };
                let Some(remote) = client.product(p.id, ProductPageShape::default()).await? else {
                    return Ok(PreparedDelivery::without_writes(Handled::Stale));
                };
                let content = crate::mapping::content_from_remote(&remote)?;
                let source = Shopify {
                    id: remote.id,
                    updated_at: remote.updated_at,
                };
                (source, content)
            } else {
                let content = content_from_payload(p, local.as_ref())?;
                let source = Shopify {
                    id: p.id,
                    updated_at,
                };
                (source, content)
            };
            let echo = echo_key(p.id, &content);
            let (handled, mut writes) =
                stage(store, &operation, (source, &local), content, actor, now).await?;
            if writes.is_empty() {
                // Nothing to write: an echo of content already held changes nothing either.
                return Ok(PreparedDelivery::without_writes(handled));
            }
            if writes.len() > ECHO_CHECK_ROOM {
                if store.remembered(&echo, now).await? {
                    return Ok(PreparedDelivery::without_writes(Handled::Echo));
                }
                return Ok(PreparedDelivery {
                    handled,
                    writes,
                    echo_checked: false,
                });
            }
            writes.insert(0, Store::not_remembered(&echo, now));
            Ok(PreparedDelivery {
                handled,
                writes,
                echo_checked: true,
            })
        }
        Payload::ProductDelete(d) => {
            let Some(local) = crate::down::local_product(store, d.id).await? else {
                return Ok(PreparedDelivery::without_writes(Handled::UnknownDeleted));
            };
            let operation = realtime.of_day(store, now).await?;
            let row = delete_row(&operation, &local, Some(d.id), actor, now);
            Ok(PreparedDelivery {
                handled: Handled::DeleteStaged,
                writes: vec![Store::insert_write(&row)?],
                echo_checked: false,
            })
        }
        _ => Err(EngineError::Mapping {
            product: "-".into(),
            reason: format!("{} is not a product delivery", delivery.topic.as_str()),
        }),
    }
}

/// Plans one product's change in the realtime operation (one change never trips the rails'
/// minimums, so nothing is held); returns the writes that stage it.
async fn stage(
    store: &Store,
    operation: &SyncOperation,
    (source, local): (Shopify, &Option<Product>),
    content: ProductContent,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<(Handled, Vec<WriteOp>), EngineError> {
    let planner = Planner {
        store,
        operation,
        actor,
        rails: &GuardRails::default(),
        import: false,
        known_local: Some(local),
    };
    let (planned, writes) = planner
        .plan_deferred(
            vec![(source, content)],
            now,
            &mut PlanSummary::default(),
            &mut StageTimes::default(),
        )
        .await?;
    let handled = match planned.into_iter().next() {
        Some(Planned::Staged(row)) => Handled::Staged {
            operation: operation.operation_uuid,
            row,
        },
        Some(Planned::Settled(outcome)) => Handled::Product(outcome),
        None => Handled::Stale,
    };
    Ok((handled, writes))
}

/// The apply step of the realtime path: applies the given pending rows of an operation
/// (rows already applied, or no longer pending, are left as they are).
pub async fn apply_staged(
    store: &Store,
    operation: OperationId,
    rows: &[StagingId],
    actor: &Actor,
) -> Result<OperationStatistics, EngineError> {
    let Some(op) = store
        .get::<SyncOperation>(&Key::pk(operation.to_string()))
        .await?
    else {
        return Err(EngineError::Store(RepoError::NotFound {
            table: shopsync_store::Table::SyncOperations,
            key: operation.to_string(),
        }));
    };
    let rows = rows_by_id(store, rows).await?;
    apply_rows(store, &op, rows, actor, &mut StageTimes::default()).await
}

/// A pending row proposing to delete `product` (for a person to review; never applied by
/// itself).
pub fn delete_row(
    operation: &SyncOperation,
    product: &Product,
    shopify: Option<ShopifyProductId>,
    actor: &Actor,
    now: DateTime<Utc>,
) -> ProductsStaging {
    ProductsStaging {
        id: StagingId::generate(),
        source_product_id: product.id,
        sku: product.content.variants.iter().find_map(|v| v.sku.clone()),
        name: product.content.title.clone(),
        change_type: ChangeType::Delete,
        change_data: diff(&product.content.to_fields(), &Default::default()),
        base_version: product.version,
        proposed: None,
        has_conflicts: false,
        sync_operation_id: operation.operation_uuid,
        status: StagingStatus::Pending,
        staged_by: actor.clone(),
        staged_at: now,
        reviewed_by: None,
        reviewed_at: None,
        applied_at: None,
        error: None,
        shopify: shopify.map(|id| shopsync_domain::ShopifySource {
            product_id: id,
            updated_at: now,
        }),
        merged: false,
        origin: None,
        contributions: Default::default(),
        rolls_back: None,
        agreed_version: None,
    }
}

/// How long the last-seen time of an inventory level is kept (well past Shopify's 48 h of
/// retries).
const LEVEL_MARK_DAYS: i64 = 7;

/// An `inventory_levels/update`: the level is taken into the local product at once (the
/// product, its version and an applied row in one transaction, retried when another write
/// wins), because a stock figure must never wait behind other work or be lost to a race. A
/// delivery older than the last one taken for the same item and location is dropped.
async fn take_inventory_level(
    store: &Store,
    client: Option<&AdminClient>,
    level: &shopsync_shopify::webhook::payloads::InventoryLevelPayload,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Handled, EngineError> {
    let Some(available) = level.available else {
        return Ok(Handled::Ignored(
            "inventory_levels/update without `available` (not tracked at this location)".into(),
        ));
    };
    let Some(client) = client else {
        return Err(EngineError::Mapping {
            product: "-".into(),
            reason: format!(
                "inventory item {} cannot be traced to its product without a Shopify client",
                level.inventory_item_id
            ),
        });
    };
    let Some(product_id) = client
        .product_of_inventory_item(level.inventory_item_id)
        .await?
    else {
        return Ok(Handled::Ignored(format!(
            "inventory item {} is not on a product",
            level.inventory_item_id
        )));
    };
    let at = level
        .updated_at
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(now);
    let mark = format!("level:{}:{}", level.inventory_item_id, level.location_id);
    for _ in 0..3 {
        let Some(local) = crate::down::local_product(store, product_id).await? else {
            // Not mirrored yet: the next sync brings the product with its stock.
            return Ok(Handled::Ignored(format!(
                "product {product_id} is not local yet"
            )));
        };
        let mut content = local.content.clone();
        let Some(variant) = content
            .variants
            .iter_mut()
            .find(|v| v.inventory_item_id == Some(level.inventory_item_id))
        else {
            return Ok(Handled::Ignored(format!(
                "no local variant holds inventory item {}",
                level.inventory_item_id
            )));
        };
        variant
            .inventory
            .insert(level.location_id, shopsync_domain::Quantity(available));
        if content == local.content {
            store
                .advance_mark(&mark, at, now + chrono::Duration::days(LEVEL_MARK_DAYS))
                .await?;
            return Ok(Handled::Product(Ingested::Unchanged(local.id)));
        }
        if local.writable_by(actor, now).is_err() {
            return Ok(Handled::Product(Ingested::Locked(local.id)));
        }
        let operation = realtime_operation(store, now).await?;
        let mut updated = local.clone();
        let changes = updated.change_content(content.clone(), now);
        if !local.needs_push() {
            updated.last_sync_version = updated.version;
        }
        let staged = ProductsStaging {
            id: StagingId::generate(),
            source_product_id: local.id,
            sku: content.variants.iter().find_map(|v| v.sku.clone()),
            name: content.title.clone(),
            change_type: ChangeType::Update,
            change_data: changes.clone(),
            base_version: local.version,
            proposed: Some(content),
            has_conflicts: false,
            sync_operation_id: operation.operation_uuid,
            status: StagingStatus::Applied,
            staged_by: actor.clone(),
            staged_at: now,
            reviewed_by: None,
            reviewed_at: None,
            applied_at: Some(now),
            error: None,
            shopify: None,
            merged: false,
            origin: None,
            contributions: Default::default(),
            rolls_back: None,
            agreed_version: None,
        };
        // Ordering first: a late, older delivery must not write. The same delivery retried
        // (after a failure below) carries the same time and passes again.
        if store
            .advance_mark(&mark, at, now + chrono::Duration::days(LEVEL_MARK_DAYS))
            .await?
            .not()
        {
            return Ok(Handled::Stale);
        }
        let commit = shopsync_store::ProductCommit {
            version: Some(shopsync_domain::VersionStamp::new(
                shopsync_domain::fields::changed_fields(&changes),
                shopsync_domain::ChangeSource::Shopify,
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
        match store.commit_product(commit).await {
            Ok(()) => return Ok(Handled::Product(Ingested::Updated(local.id))),
            Err(RepoError::VersionConflict { .. }) => continue,
            Err(RepoError::Locked(_)) => return Ok(Handled::Product(Ingested::Locked(local.id))),
            Err(e) => return Err(e.into()),
        }
    }
    Err(EngineError::Store(RepoError::Store(
        shopsync_store::StoreError::Unavailable(format!(
            "product {product_id} kept changing while its stock was taken"
        )),
    )))
}

/// How long after its UTC day ends a realtime operation stays open, for apply steps still on
/// the queue (redeliveries), before it is concluded.
pub const REALTIME_CLOSE_GRACE_MINUTES: i64 = 60;

/// The statistics of a realtime operation, counted from what it holds. Its deliveries are
/// staged by many instances at once, so none of them keeps the operation's counts (a counter
/// on the one item would also be a hot key on DynamoDB); the rows are the record. Every row
/// is processed; applied rows count as created, updated or deleted by their change type;
/// failed rows as failed; rejected and superseded rows as skipped; conflicts as in every
/// operation (open ones, and those the policy settled); and the categories (collections) its
/// `collections/*` webhooks changed, `categories_changed` ([`categories_changed_by`]).
/// Deliveries that needed no row (unchanged, stale, echoes, duplicates) are not counted.
pub fn realtime_statistics(
    rows: &[ProductsStaging],
    conflicts: &[shopsync_domain::SyncConflict],
    categories_changed: u64,
) -> OperationStatistics {
    let mut stats = OperationStatistics {
        processed: rows.len() as u64,
        categories_changed,
        ..OperationStatistics::default()
    };
    for row in rows {
        match (row.status, row.change_type) {
            (StagingStatus::Applied, ChangeType::Create) => stats.created += 1,
            (StagingStatus::Applied, ChangeType::Update) => stats.updated += 1,
            (StagingStatus::Applied, ChangeType::Delete) => stats.deleted += 1,
            (StagingStatus::Failed, _) => stats.failed += 1,
            (StagingStatus::Rejected | StagingStatus::Superseded, _) => stats.skipped += 1,
            (StagingStatus::Pending | StagingStatus::Approved, _) => {}
        }
    }
    stats.conflicts = conflicts
        .iter()
        .filter(|c| c.status == shopsync_domain::ConflictStatus::Open)
        .count() as u64;
    stats.auto_resolved = conflicts
        .iter()
        .filter(|c| c.status == shopsync_domain::ConflictStatus::Resolved)
        .count() as u64;
    stats
}

/// Whether `operation` is a realtime operation whose day (and grace) ended before `now`.
pub fn realtime_day_over(operation: &SyncOperation, now: DateTime<Utc>) -> bool {
    operation.operation_type == OperationType::Realtime
        && realtime_operation_id(now) != operation.operation_uuid
        && day_end(operation.created_at) + chrono::Duration::minutes(REALTIME_CLOSE_GRACE_MINUTES)
            <= now
}

/// The midnight (UTC) that ends the day of `at`.
fn day_end(at: DateTime<Utc>) -> DateTime<Utc> {
    let day = at.timestamp().div_euclid(86_400);
    DateTime::from_timestamp((day + 1) * 86_400, 0).unwrap_or(at)
}

/// The rows and conflicts of an operation, and how many categories it changed.
async fn holdings(
    store: &Store,
    operation: OperationId,
) -> Result<
    (
        Vec<ProductsStaging>,
        Vec<shopsync_domain::SyncConflict>,
        u64,
    ),
    EngineError,
> {
    let rows = crate::operation::operation_rows(store, operation).await?;
    let conflicts = store
        .query_all(shopsync_store::item::Query::new(
            shopsync_store::Table::SyncConflicts,
            Some("by_operation"),
            operation.to_string(),
        ))
        .await?;
    let categories = categories_changed_by(store, operation).await?;
    Ok((rows, conflicts, categories))
}

/// How many categories an operation changed: those with a version it wrote.
pub async fn categories_changed_by(
    store: &Store,
    operation: OperationId,
) -> Result<u64, EngineError> {
    let versions: Vec<shopsync_domain::CategoryVersion> = store
        .query_all(shopsync_store::item::Query::new(
            shopsync_store::Table::CategoryVersions,
            Some("by_operation"),
            operation.to_string(),
        ))
        .await?;
    let categories: std::collections::BTreeSet<_> =
        versions.iter().map(|version| version.category_id).collect();
    Ok(categories.len() as u64)
}

/// Brings one realtime operation in progress up to date: its statistics recounted from its
/// rows ([`realtime_statistics`]) and, once its day is over, concluded: completed when no
/// row waits, otherwise awaiting approval with what waits named (deletes and conflicts
/// staged from webhooks are decided by a person). The write is conditional on the operation
/// as read; when someone else wrote it meanwhile, theirs stands and `None` is returned, as
/// when nothing changed.
pub async fn refresh_realtime(
    store: &Store,
    operation: &SyncOperation,
    now: DateTime<Utc>,
) -> Result<Option<SyncOperation>, EngineError> {
    if operation.operation_type != OperationType::Realtime
        || operation.status != OperationStatus::InProgress
    {
        return Ok(None);
    }
    let (rows, conflicts, categories) = holdings(store, operation.operation_uuid).await?;
    let mut updated = operation.clone();
    updated.statistics = realtime_statistics(&rows, &conflicts, categories);
    if realtime_day_over(operation, now) {
        let waiting = rows
            .iter()
            .filter(|r| matches!(r.status, StagingStatus::Pending | StagingStatus::Approved))
            .count();
        if waiting == 0 {
            updated.move_to(
                OperationStatus::Completed,
                Some("the day's webhooks are all applied".into()),
                now,
            )?;
        } else {
            updated.move_to(
                OperationStatus::AwaitingApproval,
                Some(format!(
                    "the day is over; {waiting} staged change(s) wait for review (deletes and conflicts from webhooks)"
                )),
                now,
            )?;
        }
    } else if updated.statistics == operation.statistics {
        return Ok(None);
    } else {
        updated.updated_at = now;
    }
    let expected = shopsync_store::item::Condition::And(vec![
        shopsync_store::item::Condition::Eq("status", "in_progress".into()),
        shopsync_store::item::Condition::Eq(
            "updated_at",
            operation.updated_at.timestamp_millis().into(),
        ),
    ]);
    match store.replace_if(&updated, expected).await {
        Ok(()) => Ok(Some(updated)),
        Err(shopsync_store::ReplaceError::Changed(current)) => {
            tracing::debug!(
                operation = %current.operation_uuid,
                "realtime operation written meanwhile; its writer's counts stand"
            );
            Ok(None)
        }
        Err(shopsync_store::ReplaceError::Repo(e)) => Err(e.into()),
    }
}

/// [`refresh_realtime`] for every realtime operation in progress (maintenance: the
/// scheduler runs it with due redactions). Returns the operations written.
pub async fn refresh_realtime_operations(
    store: &Store,
    now: DateTime<Utc>,
) -> Result<Vec<SyncOperation>, EngineError> {
    let mut query = shopsync_store::item::Query::new(
        shopsync_store::Table::SyncOperations,
        Some("by_status"),
        "in_progress",
    );
    query.limit = 100;
    let open: Vec<SyncOperation> = store.query_all(query).await?;
    let mut written = Vec::new();
    for operation in open
        .iter()
        .filter(|op| op.operation_type == OperationType::Realtime)
    {
        if let Some(op) = refresh_realtime(store, operation, now).await? {
            written.push(op);
        }
    }
    Ok(written)
}

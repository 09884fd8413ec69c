//! Rolling back an operation: the chosen products return to the values they had before it,
//! locally and in Shopify, as new versions (history is never rewritten).
//!
//! What an operation changed is read from the versions it wrote: a product's versions are
//! immutable and numbered without gaps, so the version before the first one the operation made
//! is the product as it was before (a reference, never a copy). A rollback is an operation of
//! its own (type `rollback`): one staged row per product it restores (carrying that
//! reference), judged by the guard rails (held for approval when it would change much of the
//! catalog), applied, then pushed product by product (the narrowest mutation; stock by the
//! inventory plan, as the difference the operation made). Its `sync_rollbacks` record says
//! what was restored and what was skipped, and why.
//!
//! Never restored: a product changed since by anyone else (unless forced, which is recorded),
//! and a product the operation created from Shopify (it exists there: never archived or
//! deleted). A product the operation created otherwise is archived; one it removed comes back
//! (new to Shopify, which gives it a new id).

use crate::apply::{apply_rows, still};
use crate::collections::CategoryPushed;
use crate::error::EngineError;
use crate::operation::{last_down, load_operation, record_performance, save};
use crate::perf::StageTimes;
use chrono::{DateTime, Utc};
use shopsync_domain::product::{ProductContent, ProductStatus};
use shopsync_domain::restore::{undo, FieldSelection};
use shopsync_domain::staging::{ChangeType, ProductsStaging, StagingStatus};
use shopsync_domain::version::CategoryVersion;
use shopsync_domain::{
    Actor, BackupRef, Category, CategoryId, CategoryKind, CategoryRef, ChangeFacts, ChangeSource,
    GuardRails, OperationId, OperationStatus, OperationType, PlanSummary, Product, ProductId,
    ProductVersion, RestoredCategory, RestoredProduct, RollbackId, RollbackRequest, RollbackStatus,
    RollbackType, StagingId, SyncDirection, SyncOperation, SyncRollback, Verdict,
};
use shopsync_shopify::AdminClient;
use shopsync_store::item::{Key, Query};
use shopsync_store::{RepoError, Store, Table};
use std::collections::BTreeMap;
use std::time::Instant;

/// Why a rollback was not started.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// No such operation.
    #[error("no operation {0}")]
    NoOperation(OperationId),
    /// The operation cannot be rolled back (now).
    #[error("{0}")]
    NotRollbackable(String),
    /// A request the rollback cannot take (the field is named).
    #[error("{field}: {message}")]
    Invalid {
        /// The request's field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<RepoError> for RollbackError {
    fn from(e: RepoError) -> Self {
        RollbackError::Engine(e.into())
    }
}

/// Records a rollback of operation `original` as `request` asks, for `actor`: its
/// `sync_rollbacks` record and its own operation, both pending (run them with [`run`]).
/// Refused when the operation cannot be rolled back, another rollback of it is under way, or
/// the request does not fit the operation.
pub async fn open_rollback(
    store: &Store,
    original: OperationId,
    request: &RollbackRequest,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<(SyncRollback, SyncOperation), RollbackError> {
    let rollback_type = request
        .checked_type()
        .map_err(|message| RollbackError::Invalid {
            field: "type",
            message,
        })?;
    FieldSelection::parse(&request.fields).map_err(|message| RollbackError::Invalid {
        field: "fields",
        message,
    })?;
    let target = match load_operation(store, original).await {
        Ok(found) => found,
        Err(EngineError::Store(RepoError::NotFound { .. })) => {
            return Err(RollbackError::NoOperation(original))
        }
        Err(e) => return Err(e.into()),
    };
    if !target.can_roll_back() {
        return Err(RollbackError::NotRollbackable(why_not(&target)));
    }
    if target.operation_type == OperationType::Realtime && request.products.is_empty() {
        return Err(RollbackError::Invalid {
            field: "products",
            message: "a realtime operation records a day of webhooks; it is rolled back product by product: name the products (type partial or selective)".to_owned(),
        });
    }
    if !request.dry_run {
        if let Some(running) = rollbacks_of(store, original).await?.into_iter().find(|r| {
            !r.dry_run
                && matches!(
                    r.status,
                    RollbackStatus::Pending | RollbackStatus::InProgress
                )
        }) {
            return Err(RollbackError::NotRollbackable(format!(
                "rollback {} of operation {original} is under way",
                running.id
            )));
        }
    }
    let kind = shopsync_domain::status::status_name(rollback_type);
    let mut operation = SyncOperation::new(
        &format!("Rollback ({kind}) of {} by {actor}", target.name),
        OperationType::Rollback,
        SyncDirection::Up,
        actor.clone(),
        now,
    );
    operation.dry_run = request.dry_run;
    let rollback = SyncRollback {
        id: RollbackId::generate(),
        original_operation_id: original,
        operation_id: Some(operation.operation_uuid),
        rollback_type,
        selected_products: request.products.clone(),
        selected_fields: request.fields.clone(),
        force: request.force,
        dry_run: request.dry_run,
        backup_data: Default::default(),
        status: RollbackStatus::Pending,
        status_reason: None,
        restored: Vec::new(),
        restored_total: 0,
        skipped: Vec::new(),
        skipped_total: 0,
        categories_restored: Vec::new(),
        categories_skipped: Vec::new(),
        requested_by: actor.clone(),
        created_at: now,
        completed_at: None,
    };
    operation.rollback_id = Some(rollback.id);
    store.insert(&rollback).await?;
    store.insert(&operation).await?;
    tracing::info!(rollback = %rollback.id, operation = %operation.operation_uuid, original = %original, by = %actor, kind, "rollback requested");
    Ok((rollback, operation))
}

/// Why `operation` cannot be rolled back.
fn why_not(operation: &SyncOperation) -> String {
    let id = operation.operation_uuid;
    let applied =
        operation.statistics.created + operation.statistics.updated + operation.statistics.deleted;
    if operation.dry_run {
        format!("operation {id} is a dry run: it changed nothing")
    } else if operation.status == OperationStatus::RolledBack {
        format!("operation {id} is rolled back already")
    } else if applied == 0 {
        format!("operation {id} applied nothing")
    } else {
        format!(
            "operation {id} is {}; completed and failed operations (for what they applied) are rolled back",
            shopsync_domain::status::status_name(operation.status)
        )
    }
}

/// Every rollback of `original`.
pub async fn rollbacks_of(
    store: &Store,
    original: OperationId,
) -> Result<Vec<SyncRollback>, EngineError> {
    Ok(store
        .query_all(Query::new(
            Table::SyncRollbacks,
            Some("by_original_operation"),
            original.to_string(),
        ))
        .await?)
}

/// A rollback record.
pub async fn load_rollback(store: &Store, id: RollbackId) -> Result<SyncRollback, EngineError> {
    store
        .get::<SyncRollback>(&Key::pk(id.to_string()))
        .await?
        .ok_or_else(|| {
            EngineError::Store(RepoError::NotFound {
                table: Table::SyncRollbacks,
                key: id.to_string(),
            })
        })
}

/// Stores `rollback` if it is still in `previous`'s status.
async fn save_rollback(
    store: &Store,
    rollback: &SyncRollback,
    previous: RollbackStatus,
) -> Result<(), EngineError> {
    match store.replace_if(rollback, still(previous)).await {
        Ok(()) => Ok(()),
        Err(shopsync_store::ReplaceError::Changed(now)) => Err(EngineError::Refused(format!(
            "rollback {} is {} now",
            now.id,
            shopsync_domain::status::status_name(now.status)
        ))),
        Err(shopsync_store::ReplaceError::Repo(e)) => Err(e.into()),
    }
}

/// What the operation changed: per product, the version before it and the last it made, read
/// from the versions it wrote (a page at a time; only the references are kept); for an
/// up-sync, which writes no version of its own, from the rows it pushed (the version Shopify
/// held before and the one pushed).
pub async fn footprint(
    store: &Store,
    operation: &SyncOperation,
) -> Result<BTreeMap<ProductId, BackupRef>, EngineError> {
    // An up-sync (a Xorosoft import is not one, whatever way its stock goes).
    let up_sync = operation.sync_direction == SyncDirection::Up
        && operation.xorosoft_log_id.is_none()
        && matches!(
            operation.operation_type,
            OperationType::FullSync | OperationType::IncrementalSync
        );
    if up_sync {
        return pushed(store, operation.operation_uuid).await;
    }
    let mut query = Query::new(
        Table::ProductVersions,
        Some("by_operation"),
        operation.operation_uuid.to_string(),
    );
    query.limit = 500;
    // Per product: the first and last version the operation made, and whether the last
    // records the product's removal.
    let mut made: BTreeMap<ProductId, (u64, u64, bool)> = BTreeMap::new();
    loop {
        let page = store.query::<ProductVersion>(query.clone()).await?;
        for version in page.items {
            let number = version.version_number;
            let removal = is_removal(&version);
            let entry = made
                .entry(version.product_id)
                .or_insert((number, number, removal));
            entry.0 = entry.0.min(number);
            if number >= entry.1 {
                entry.1 = number;
                entry.2 = removal;
            }
        }
        match page.next {
            Some(next) => query.start = Some(next),
            None => break,
        }
    }
    Ok(made
        .into_iter()
        .map(|(product_id, (first, last, deleted))| {
            (
                product_id,
                BackupRef {
                    product_id,
                    before_version: first.checked_sub(1).filter(|n| *n > 0),
                    after_version: last,
                    deleted,
                    created: first == 1,
                    pushed: false,
                },
            )
        })
        .collect())
}

/// What an up-sync pushed: its rows Shopify confirmed (applied), each the version pushed and
/// the version both sides agreed on before.
async fn pushed(
    store: &Store,
    operation: OperationId,
) -> Result<BTreeMap<ProductId, BackupRef>, EngineError> {
    let mut found = BTreeMap::new();
    for row in crate::operation::operation_rows(store, operation).await? {
        if row.status != StagingStatus::Applied {
            continue;
        }
        found.insert(
            row.source_product_id,
            BackupRef {
                product_id: row.source_product_id,
                before_version: row.agreed_version,
                after_version: row.base_version,
                deleted: false,
                created: row.change_type == ChangeType::Create,
                pushed: true,
            },
        );
    }
    Ok(found)
}

/// Whether a version records the product's removal.
fn is_removal(version: &ProductVersion) -> bool {
    version.changed_fields.len() == 1 && version.changed_fields[0].as_str() == "deleted"
}

/// Whether a version only records ids Shopify assigned (its confirmation of a push).
fn only_shopify_ids(version: &ProductVersion) -> bool {
    !version.changed_fields.is_empty()
        && version
            .changed_fields
            .iter()
            .all(|f| matches!(f.leaf(), "shopify_id" | "inventory_item_id"))
}

/// A change made since an operation, as a rollback reports it: "version N by X via Y".
fn named_change(version: u64, by: &Actor, source: ChangeSource) -> String {
    format!(
        "version {version} by {by} via {}",
        shopsync_domain::status::status_name(source)
    )
}

/// The staged row of `product` in rollback `operation`: its id derived from both, so a
/// redelivered run finds the row it staged instead of staging it twice.
fn row_id(operation: OperationId, product: ProductId) -> StagingId {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"shopsync/rollback-row\0")
        .chain_update(operation.uuid().as_bytes())
        .chain_update(product.uuid().as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    StagingId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// What restoring one product comes to.
enum Plan {
    /// Stage this row; its facts for the rails.
    Row(Box<ProductsStaging>, ChangeFacts),
    /// Not restored, and why.
    Skip(String),
}

/// What a rollback works with.
struct Planning<'a> {
    store: &'a Store,
    operation: &'a SyncOperation,
    original: OperationId,
    selection: FieldSelection,
    force: bool,
    actor: &'a Actor,
    rails: &'a GuardRails,
    now: DateTime<Utc>,
}

impl Planning<'_> {
    /// The newest version of `product` after `after` not made by the operation, its rollback,
    /// or Shopify's confirmation of ids: a change since the operation.
    async fn change_since(
        &self,
        product: &Product,
        after: u64,
    ) -> Result<Option<ProductVersion>, EngineError> {
        for number in (after + 1..=product.version).rev() {
            let Some(version) = self.store.product_version(product.id, number).await? else {
                continue;
            };
            let ours = version.sync_operation_id == Some(self.original)
                || version.sync_operation_id == Some(self.operation.operation_uuid);
            if !ours && !only_shopify_ids(&version) {
                return Ok(Some(version));
            }
        }
        Ok(None)
    }

    /// The content of version `number` of `product`.
    async fn content_at(
        &self,
        product: ProductId,
        number: u64,
    ) -> Result<Option<ProductVersion>, EngineError> {
        Ok(self.store.product_version(product, number).await?)
    }

    /// Plans restoring one product.
    async fn plan(&self, reference: &BackupRef) -> Result<Plan, EngineError> {
        let id = reference.product_id;
        let current = self.store.product(id).await?;
        let Some(current) = current else {
            if !reference.deleted {
                return Ok(Plan::Skip("removed since the operation".to_owned()));
            }
            return self.recreate(reference).await;
        };
        if reference.created && !reference.pushed {
            let first = self.content_at(id, 1).await?;
            if first.is_none_or(|v| v.change_source == ChangeSource::Shopify) {
                return Ok(Plan::Skip(
                    "created from Shopify by the operation: it exists in Shopify, and a rollback never archives or deletes what Shopify has".to_owned(),
                ));
            }
        }
        if !reference.created && reference.before_version.is_none() {
            return Ok(Plan::Skip(
                "what Shopify held before this push is not known (pushed before shopsync kept it): restore the product from one of its versions instead".to_owned(),
            ));
        }
        let mut forced = None;
        if let Some(since) = self.change_since(&current, reference.after_version).await? {
            let change = named_change(since.version_number, &since.changed_by, since.change_source);
            if !self.force {
                return Ok(Plan::Skip(format!("changed since: {change}")));
            }
            forced = Some(format!("forced past a change since ({change})"));
        }
        let proposed = match reference.before_version {
            None => {
                // Created by the operation (locally, or in Shopify by its push): archived,
                // never deleted.
                if current.content.status == ProductStatus::Archived {
                    return Ok(Plan::Skip("archived already".to_owned()));
                }
                let mut archived = current.content.clone();
                archived.status = ProductStatus::Archived;
                archived
            }
            Some(before) => {
                let (Some(was), Some(made)) = (
                    self.content_at(id, before).await?,
                    self.content_at(id, reference.after_version).await?,
                ) else {
                    return Ok(Plan::Skip(
                        "its versions before and after the operation are not both kept".to_owned(),
                    ));
                };
                match undo(
                    &current.content,
                    &was.product_data,
                    &made.product_data,
                    &self.selection,
                ) {
                    Ok(content) => content,
                    Err(e) => {
                        return Ok(Plan::Skip(format!(
                            "its values before the operation no longer fit it: {e}"
                        )))
                    }
                }
            }
        };
        if proposed == current.content {
            return Ok(Plan::Skip(
                "nothing to restore: it holds its values from before the operation".to_owned(),
            ));
        }
        let facts = ChangeFacts::of(Some(&current.content), &proposed, self.rails);
        let mut row = ProductsStaging::pending(
            row_id(self.operation.operation_uuid, id),
            &current,
            self.operation.operation_uuid,
            self.actor,
            self.now,
        );
        row.change_data = current.content.diff_to(&proposed);
        row.proposed = Some(proposed);
        row.origin = Some(ChangeSource::Rollback);
        row.rolls_back = Some(reference.clone());
        row.error = forced;
        Ok(Plan::Row(Box::new(row), facts))
    }

    /// Plans bringing back a product the operation removed: the content of the version the
    /// operation replaced, new to Shopify (no Shopify ids), as the version after its removal.
    async fn recreate(&self, reference: &BackupRef) -> Result<Plan, EngineError> {
        let id = reference.product_id;
        let Some(before) = reference.before_version else {
            return Ok(Plan::Skip(
                "created and removed by the operation: nothing to bring back".to_owned(),
            ));
        };
        let Some(was) = self.content_at(id, before).await? else {
            return Ok(Plan::Skip(
                "its version before the operation is not kept".to_owned(),
            ));
        };
        let mut content: ProductContent = was.product_data;
        for variant in &mut content.variants {
            variant.shopify_id = None;
            variant.inventory_item_id = None;
        }
        let mut gone = Product::new(id, content.clone(), self.now);
        gone.version = reference.after_version;
        let mut row = ProductsStaging::pending(
            row_id(self.operation.operation_uuid, id),
            &gone,
            self.operation.operation_uuid,
            self.actor,
            self.now,
        );
        row.change_type = ChangeType::Create;
        row.change_data = shopsync_domain::fields::created(content.to_fields());
        row.origin = Some(ChangeSource::Rollback);
        row.rolls_back = Some(reference.clone());
        Ok(Plan::Row(Box::new(row), ChangeFacts::default()))
    }
}

/// Runs rollback `id`, as the person who asked for it, as far as it can go now: stages a row per product it
/// restores (skips recorded with their reasons), lets the rails judge them, and applies and
/// pushes them, or leaves the rollback awaiting approval (a dry run stops after staging).
/// Run again (a redelivery, a resumed run) it restores each product once: its rows are found
/// by id, applying a row is conditional on its status, and a product pushed already has
/// nothing left to push.
pub async fn run(
    store: &Store,
    client: &AdminClient,
    rails: &GuardRails,
    id: RollbackId,
) -> Result<(SyncRollback, SyncOperation), EngineError> {
    let started_at = Instant::now();
    let counters_before = client.counters();
    let mut rollback = load_rollback(store, id).await?;
    // The person who asked restores, versions and pushes (their lock is theirs).
    let requested_by = rollback.requested_by.clone();
    let actor = &requested_by;
    let operation_id = rollback
        .operation_id
        .ok_or_else(|| EngineError::Refused(format!("rollback {id} has no operation")))?;
    let mut operation = load_operation(store, operation_id).await?;
    let now = Utc::now();
    match operation.status {
        OperationStatus::Pending => {
            let before = operation.clone();
            operation.move_to(OperationStatus::InProgress, None, now)?;
            operation.lease_expires_at = Some(now + crate::operation::lease());
            save(store, &operation, &before).await?;
        }
        OperationStatus::InProgress => {}
        _ => return Ok((rollback, operation)),
    }
    if rollback.status == RollbackStatus::Pending {
        rollback.status = RollbackStatus::InProgress;
        save_rollback(store, &rollback, RollbackStatus::Pending).await?;
    }
    let mut times = StageTimes::default();
    let (rows, summary) = stage(store, &mut rollback, &operation, actor, rails, &mut times).await?;
    save_rollback(store, &rollback, RollbackStatus::InProgress).await?;
    let verdict = rails.judge(&summary);
    operation.catalog_size = Some(summary.catalog_size);
    operation.statistics.processed = summary.changes;
    let running = operation.clone();
    if operation.dry_run {
        let held = match &verdict {
            Verdict::Hold(reasons) => format!("; would wait for approval: {}", reasons.join("; ")),
            Verdict::Proceed => String::new(),
        };
        settle(
            store,
            client,
            actor,
            &mut rollback,
            &operation,
            rows,
            &mut times,
        )
        .await?;
        operation.move_to(
            OperationStatus::Completed,
            Some(format!(
                "dry run: {} product(s) would be restored, {} skipped{held}",
                rollback.restored_total, rollback.skipped_total
            )),
            Utc::now(),
        )?;
    } else if let Verdict::Hold(reasons) = verdict {
        operation.move_to(
            OperationStatus::AwaitingApproval,
            Some(reasons.join("; ")),
            Utc::now(),
        )?;
        rollback.status_reason = Some(format!(
            "waiting for approval of operation {}: {}",
            operation.operation_uuid,
            reasons.join("; ")
        ));
        save_rollback(store, &rollback, RollbackStatus::InProgress).await?;
    } else {
        // A chunk at a time, each row read again by key: a large rollback's rows never sit
        // in memory all at once.
        for ids in rows.chunks(SETTLE_CHUNK) {
            let chunk = crate::operation::rows_by_id(store, ids).await?;
            let applied = apply_rows(store, &operation, chunk, actor, &mut times).await?;
            operation.statistics.absorb(&applied);
        }
        crate::crash::point("rollback-applied");
        let reason = settle(
            store,
            client,
            actor,
            &mut rollback,
            &operation,
            rows,
            &mut times,
        )
        .await?;
        operation.statistics.failed += rollback_push_failures(&rollback);
        operation.statistics.categories_changed = rollback.categories_restored.len() as u64;
        operation.move_to(OperationStatus::Completed, reason, Utc::now())?;
    }
    save(store, &operation, &running).await?;
    record_performance(
        store,
        &operation,
        &times,
        started_at,
        counters_before,
        client.counters(),
    )
    .await?;
    Ok((rollback, operation))
}

/// Products whose push Shopify did not confirm, as the record lists them.
fn rollback_push_failures(rollback: &SyncRollback) -> u64 {
    rollback
        .restored
        .iter()
        .filter(|r| r.shopify.starts_with("not_pushed"))
        .count() as u64
}

/// Stages the rollback's rows (a row staged before is taken as it is) and records what is
/// skipped; returns the rows and their sums for the rails.
async fn stage(
    store: &Store,
    rollback: &mut SyncRollback,
    operation: &SyncOperation,
    actor: &Actor,
    rails: &GuardRails,
    times: &mut StageTimes,
) -> Result<(Vec<StagingId>, PlanSummary), EngineError> {
    let staging = Instant::now();
    let original = rollback.original_operation_id;
    let references = footprint(store, &load_operation(store, original).await?).await?;
    rollback.backup_data = shopsync_domain::BackupData {
        products: references
            .values()
            .take(shopsync_domain::rollback::LISTED)
            .cloned()
            .collect(),
        products_total: references.len() as u64,
        categories: category_footprint(store, original).await?,
    };
    rollback.skipped.clear();
    rollback.skipped_total = 0;
    let planning = Planning {
        store,
        operation,
        original,
        selection: FieldSelection::parse(&rollback.selected_fields)
            .map_err(EngineError::Refused)?,
        force: rollback.force,
        actor,
        rails,
        now: Utc::now(),
    };
    let chosen: Vec<BackupRef> = match rollback.rollback_type {
        RollbackType::Full => references.values().cloned().collect(),
        _ if rollback.selected_products.is_empty() => references.values().cloned().collect(),
        _ => {
            let mut chosen = Vec::new();
            for product in rollback.selected_products.clone() {
                match references.get(&product) {
                    Some(reference) => chosen.push(reference.clone()),
                    None => rollback.skip(product, format!("not changed by operation {original}")),
                }
            }
            chosen
        }
    };
    let (_, catalog) = last_down(store).await?;
    let mut summary = PlanSummary {
        catalog_size: catalog,
        ..PlanSummary::default()
    };
    let mut rows = Vec::new();
    for reference in &chosen {
        let id = row_id(operation.operation_uuid, reference.product_id);
        if let Some(row) = store
            .get::<ProductsStaging>(&Key::pk(id.to_string()))
            .await?
        {
            // Staged by an earlier run: taken as it is (applied rows stay applied).
            summary.add(
                ChangeFacts::default(),
                row.change_type == ChangeType::Update,
            );
            rows.push(row.id);
            continue;
        }
        match planning.plan(reference).await? {
            Plan::Skip(why) => rollback.skip(reference.product_id, why),
            Plan::Row(row, facts) => {
                summary.add(facts, row.change_type == ChangeType::Update);
                match store.insert(row.as_ref()).await {
                    Ok(()) | Err(RepoError::AlreadyExists { .. }) => rows.push(row.id),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    summary.catalog_size = summary.catalog_size.max(summary.changes);
    times.add(shopsync_domain::Stage::Stage, staging);
    Ok((rows, summary))
}

/// After the rollback's rows were applied (or, for a dry run, staged): pushes each restored
/// product to Shopify and records the outcome in the rollback record, which is completed (with
/// skips when any product was skipped or not confirmed by Shopify); the original operation
/// becomes rolled back, or partially rolled back. Returns a reason when some product was not
/// pushed.
async fn settle(
    store: &Store,
    client: &AdminClient,
    actor: &Actor,
    rollback: &mut SyncRollback,
    operation: &SyncOperation,
    rows: Vec<StagingId>,
    times: &mut StageTimes,
) -> Result<Option<String>, EngineError> {
    rollback.restored.clear();
    rollback.restored_total = 0;
    let mut not_pushed = 0u64;
    let mut last_failure = None;
    // Many products go through Shopify's bulk mutations, a chunk at a time.
    let bulk = rows.len() as u64 >= crate::up::bulk_push_min();
    for ids in rows.chunks(SETTLE_CHUNK) {
        // Read again by key: the status each row has now.
        let mut applied = Vec::new();
        for row in crate::operation::rows_by_id(store, ids).await? {
            let product = row.source_product_id;
            let recreated = row.change_type == ChangeType::Create;
            let archived = row.rolls_back.as_ref().is_some_and(|r| r.created);
            if operation.dry_run {
                let would = match (recreated, archived) {
                    (true, _) => "would_recreate",
                    (_, true) => "would_archive",
                    _ => "would_push",
                };
                rollback.restored(RestoredProduct {
                    product_id: product,
                    version: row.base_version,
                    shopify: would.to_owned(),
                    forced: row.error.clone(),
                });
                continue;
            }
            match row.status {
                StagingStatus::Applied => applied.push(row),
                StagingStatus::Pending => {
                    rollback.skip(product, "still waiting to be applied".to_owned())
                }
                _ => {
                    let why = row
                        .error
                        .clone()
                        .unwrap_or_else(|| shopsync_domain::status::status_name(row.status));
                    rollback.skip(product, why);
                }
            }
        }
        let ids: Vec<ProductId> = applied.iter().map(|r| r.source_product_id).collect();
        let current = store.products(&ids).await?;
        // Pushed already by an earlier run (a redelivery): nothing left to send.
        let to_push: Vec<Product> = current
            .iter()
            .flatten()
            .filter(|p| p.needs_push())
            .cloned()
            .collect();
        let outcomes = crate::up::push_many(store, client, &to_push, actor, bulk, times).await?;
        let mut refused: BTreeMap<ProductId, String> = BTreeMap::new();
        for (product, outcome) in to_push.iter().zip(outcomes) {
            match outcome? {
                crate::up::Pushed::Pushed(..) => {}
                crate::up::Pushed::Refused(_, why) => {
                    refused.insert(product.id, why);
                }
                crate::up::Pushed::Locked(_) => {
                    refused.insert(product.id, "another holds the product's lock".to_owned());
                }
            }
        }
        let after_push = store.products(&ids).await?;
        for ((row, before), now) in applied.iter().zip(current).zip(after_push) {
            let product = row.source_product_id;
            let Some(before) = before else {
                rollback.skip(product, "removed after it was restored".to_owned());
                continue;
            };
            crate::crash::point("rollback-pushed");
            let recreated = row.change_type == ChangeType::Create;
            let archived = row.rolls_back.as_ref().is_some_and(|r| r.created);
            let shopify = match refused.remove(&product) {
                Some(why) => {
                    not_pushed += 1;
                    last_failure = Some(format!("{product}: {why}"));
                    format!("not_pushed: {why} (the next up-sync pushes it)")
                }
                None if recreated => "recreated".to_owned(),
                None if archived => "archived".to_owned(),
                None => "pushed".to_owned(),
            };
            rollback.restored(RestoredProduct {
                product_id: product,
                version: now.map_or(before.version, |p| p.version),
                shopify,
                forced: row.error.clone(),
            });
        }
    }
    settle_categories(store, client, actor, rollback, operation).await?;
    let categories_not_pushed = rollback
        .categories_restored
        .iter()
        .filter(|c| c.shopify.starts_with("not_pushed"))
        .count() as u64;
    if let Some(failed) = rollback
        .categories_restored
        .iter()
        .rfind(|c| c.shopify.starts_with("not_pushed"))
    {
        not_pushed += categories_not_pushed;
        last_failure = Some(format!(
            "category {}: {}",
            failed.category_id, failed.shopify
        ));
    }
    let reason = last_failure.map(|last| {
        format!(
            "{not_pushed} restored product(s) or categories not confirmed by Shopify; last: {last}"
        )
    });
    rollback.status =
        if rollback.skipped_total == 0 && rollback.categories_skipped.is_empty() && not_pushed == 0
        {
            RollbackStatus::Completed
        } else {
            RollbackStatus::CompletedWithSkips
        };
    rollback.status_reason = reason.clone();
    rollback.completed_at = Some(Utc::now());
    if !operation.dry_run {
        mark_original(store, rollback).await?;
    }
    save_rollback(store, rollback, RollbackStatus::InProgress).await?;
    tracing::info!(rollback = %rollback.id, restored = rollback.restored_total, skipped = rollback.skipped_total, not_pushed, "rollback settled");
    Ok(reason)
}

/// What the operation changed in categories (collections): per category, the version before
/// its first and its last, read from the category versions it wrote.
async fn category_footprint(
    store: &Store,
    operation: OperationId,
) -> Result<Vec<CategoryRef>, EngineError> {
    let versions: Vec<CategoryVersion> = store
        .query_all(Query::new(
            Table::CategoryVersions,
            Some("by_operation"),
            operation.to_string(),
        ))
        .await?;
    let mut made: BTreeMap<CategoryId, (u64, u64)> = BTreeMap::new();
    for version in versions {
        let number = version.version_number;
        let entry = made.entry(version.category_id).or_insert((number, number));
        entry.0 = entry.0.min(number);
        entry.1 = entry.1.max(number);
    }
    Ok(made
        .into_iter()
        .map(|(category_id, (first, last))| CategoryRef {
            category_id,
            before_version: first.checked_sub(1).filter(|n| *n > 0),
            after_version: last,
        })
        .collect())
}

/// A full rollback's categories: each category the operation changed returns to its content
/// before it, as a new version (change source `rollback`, under the rollback's operation),
/// and is pushed to its collection. Skipped and reported: a category the operation created
/// (it came from Shopify: never deleted), a smart collection (Shopify chooses its products
/// by its rules; only custom collections are restored), and one changed since by anyone else
/// (unless forced). Run again, a category this rollback restored is not restored twice; only
/// its push is retried. A partial or selective rollback names products and leaves categories.
async fn settle_categories(
    store: &Store,
    client: &AdminClient,
    actor: &Actor,
    rollback: &mut SyncRollback,
    operation: &SyncOperation,
) -> Result<(), EngineError> {
    rollback.categories_restored.clear();
    rollback.categories_skipped.clear();
    if rollback.rollback_type != RollbackType::Full {
        return Ok(());
    }
    let mine = operation.operation_uuid;
    for reference in rollback.backup_data.categories.clone() {
        let id = reference.category_id;
        let skip = |rollback: &mut SyncRollback, why: String| {
            rollback.categories_skipped.push((id, why));
        };
        let Some(current) = store.get::<Category>(&Key::pk(id.to_string())).await? else {
            skip(rollback, "removed since the operation".to_owned());
            continue;
        };
        let Some(before) = reference.before_version else {
            skip(rollback, "created from Shopify by the operation: it exists in Shopify, and a rollback never deletes what Shopify has".to_owned());
            continue;
        };
        if current.content.kind == CategoryKind::Smart {
            skip(rollback, "a smart collection: Shopify chooses its products by its rules; only custom collections are restored".to_owned());
            continue;
        }
        // The newest version since the operation not made by it: this rollback's own (a run
        // cut short after restoring it), or someone else's change.
        let mut restored_by_me = None;
        let mut since = None;
        for number in (reference.after_version + 1..=current.version).rev() {
            let Some(version) = store
                .get::<CategoryVersion>(&Key::pk_sk(id.to_string(), number as i64))
                .await?
            else {
                continue;
            };
            if version.sync_operation_id == Some(mine) {
                restored_by_me = Some(number);
                break;
            }
            if version.sync_operation_id != Some(rollback.original_operation_id) {
                since = Some(version);
                break;
            }
        }
        let mut forced = None;
        if let Some(since) = since {
            let change = named_change(since.version_number, &since.changed_by, since.change_source);
            if !rollback.force {
                skip(rollback, format!("changed since: {change}"));
                continue;
            }
            forced = Some(format!("forced past a change since ({change})"));
        }
        let restored = match restored_by_me {
            Some(_) => current,
            None => {
                let Some(was) = store
                    .get::<CategoryVersion>(&Key::pk_sk(id.to_string(), before as i64))
                    .await?
                else {
                    skip(
                        rollback,
                        "its version before the operation is not kept".to_owned(),
                    );
                    continue;
                };
                if was.category_data == current.content {
                    skip(
                        rollback,
                        "nothing to restore: it holds its values from before the operation"
                            .to_owned(),
                    );
                    continue;
                }
                if operation.dry_run {
                    rollback.categories_restored.push(RestoredCategory {
                        category_id: id,
                        title: was.category_data.title.clone(),
                        version: current.version,
                        shopify: "would_push".to_owned(),
                        forced,
                    });
                    continue;
                }
                match crate::collections::write_category(
                    store,
                    &current,
                    was.category_data,
                    ChangeSource::Rollback,
                    Some(mine),
                    actor,
                )
                .await?
                {
                    Some(restored) => restored,
                    None => {
                        skip(rollback, "changed while it was restored".to_owned());
                        continue;
                    }
                }
            }
        };
        let shopify = match crate::collections::push_category(store, client, id).await? {
            CategoryPushed::Pushed => "pushed".to_owned(),
            CategoryPushed::InStep => "in_step".to_owned(),
            CategoryPushed::NotPushed(why) => {
                format!("not_pushed: {why} (the next up-sync pushes it)")
            }
        };
        rollback.categories_restored.push(RestoredCategory {
            category_id: id,
            title: restored.content.title.clone(),
            version: restored.version,
            shopify,
            forced,
        });
    }
    Ok(())
}

/// Restored products a rollback reads, pushes and records at a time.
const SETTLE_CHUNK: usize = 2_500;

/// The original operation after its rollback: rolled back when every product it changed was
/// restored, partially rolled back otherwise (a realtime day still recording keeps its status).
async fn mark_original(store: &Store, rollback: &SyncRollback) -> Result<(), EngineError> {
    let mut original = load_operation(store, rollback.original_operation_id).await?;
    let before = original.clone();
    if original.status == OperationStatus::InProgress
        || (rollback.restored_total == 0 && rollback.categories_restored.is_empty())
    {
        return Ok(());
    }
    let whole = rollback.rollback_type == RollbackType::Full
        && rollback.skipped_total == 0
        && rollback.categories_skipped.is_empty()
        && rollback.restored_total >= rollback.backup_data.products_total;
    let to = if whole {
        OperationStatus::RolledBack
    } else {
        OperationStatus::PartiallyRolledBack
    };
    if original.status == OperationStatus::RolledBack
        || (original.status == to
            && original
                .status_reason
                .as_deref()
                .is_some_and(|r| r.contains(&rollback.id.to_string())))
    {
        // Marked by this rollback's run that was cut short before it recorded its end (or
        // rolled back whole already): nothing more to mark.
        return Ok(());
    }
    let reason = format!(
        "{} by rollback {} ({} of {} product(s), {} of {} categories restored)",
        shopsync_domain::status::status_name(to),
        rollback.id,
        rollback.restored_total,
        rollback.backup_data.products_total,
        rollback.categories_restored.len(),
        rollback.backup_data.categories.len()
    );
    original.move_to(to, Some(reason), Utc::now())?;
    save(store, &original, &before).await
}

/// A held rollback approved and applied: pushes and settles it (see [`settle`]).
pub async fn after_approval(
    store: &Store,
    client: &AdminClient,
    actor: &Actor,
    operation: &mut SyncOperation,
    times: &mut StageTimes,
) -> Result<Option<String>, EngineError> {
    let Some(id) = operation.rollback_id else {
        return Ok(None);
    };
    let mut rollback = load_rollback(store, id).await?;
    if rollback.status != RollbackStatus::InProgress {
        return Ok(None);
    }
    // Staged by an earlier run: the index names them (a row missing from a lagging index
    // read is listed by the next settle; each is read again by key).
    let rows = crate::operation::operation_rows(store, operation.operation_uuid)
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let reason = settle(store, client, actor, &mut rollback, operation, rows, times).await?;
    operation.statistics.failed += rollback_push_failures(&rollback);
    operation.statistics.categories_changed = rollback.categories_restored.len() as u64;
    Ok(reason)
}

/// A rollback rejected or cancelled before it applied: its record fails with the reason.
pub async fn abandon(
    store: &Store,
    operation: &SyncOperation,
    reason: &str,
) -> Result<(), EngineError> {
    let Some(id) = operation.rollback_id else {
        return Ok(());
    };
    let mut rollback = load_rollback(store, id).await?;
    let previous = rollback.status;
    if !matches!(
        previous,
        RollbackStatus::Pending | RollbackStatus::InProgress
    ) {
        return Ok(());
    }
    rollback.status = RollbackStatus::Failed;
    rollback.status_reason = Some(reason.to_owned());
    rollback.completed_at = Some(Utc::now());
    save_rollback(store, &rollback, previous).await
}

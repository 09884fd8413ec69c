//! Applying staged rows: each pending row becomes its product's new content and version, with
//! the row's status, in one transaction (batched). Applying a row twice changes nothing: its
//! status is part of the write's condition. A row whose product moved since it was staged is
//! decided again against the product as it is now.

use crate::error::EngineError;
use crate::perf::StageTimes;
use chrono::{DateTime, Utc};
use shopsync_domain::product::ProductContent;
use shopsync_domain::staging::{ChangeType, ProductsStaging, StagingStatus};
use shopsync_domain::{
    Actor, ChangeSource, OperationStatistics, Product, ProductId, Stage, SyncOperation,
    VersionStamp,
};
use shopsync_store::item::{Condition, Key, Query};
use shopsync_store::{ProductCommit, RepoError, Store, Table};
use std::collections::HashMap;
use std::time::Instant;

/// Rows applied per store commit (the embedded store writes them in one disk commit).
const APPLY_BATCH: usize = 256;

/// Applies an operation's pending rows (conflict rows and deletes keep waiting for review).
pub async fn apply_operation(
    store: &Store,
    operation: &SyncOperation,
    actor: &Actor,
    times: &mut StageTimes,
) -> Result<OperationStatistics, EngineError> {
    apply_operation_as(store, operation, actor, times, Review::Unattended).await
}

/// Who applies rows: the engine on its own, or a person who approved them (only then are
/// deletes applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Review {
    /// The engine applies what no rail or person holds.
    Unattended,
    /// A person approved the rows.
    Approved,
}

/// As [`apply_operation`], applied as `review` says (an approval also applies deletes).
pub(crate) async fn apply_operation_as(
    store: &Store,
    operation: &SyncOperation,
    actor: &Actor,
    times: &mut StageTimes,
    review: Review,
) -> Result<OperationStatistics, EngineError> {
    // Page by page: a large operation's rows never sit in memory all at once.
    let mut query = Query::new(
        Table::ProductsStaging,
        Some("by_operation"),
        operation.operation_uuid.to_string(),
    );
    query.limit = 500;
    let mut stats = OperationStatistics::default();
    loop {
        let reading = Instant::now();
        let page = store.query::<ProductsStaging>(query.clone()).await?;
        times.add(Stage::Apply, reading);
        let applied =
            apply_rows_as(store, operation, page.items, actor, times, (review, None)).await?;
        stats.absorb(&applied);
        match page.next {
            Some(next) => query.start = Some(next),
            None => return Ok(stats),
        }
    }
}

/// Whether a row is applied without a person: pending, not conflicting, not a delete.
pub(crate) fn applies_unattended(row: &ProductsStaging) -> bool {
    row.status == StagingStatus::Pending
        && !row.has_conflicts
        && row.change_type != ChangeType::Delete
}

/// Applies the given rows of `operation` that are pending (others are left as they are), in
/// batches: product + version snapshot + row status in one transaction each.
///
/// A row staged from Shopify whose product moved on since it was staged is decided again
/// against the product as it is now: superseded when the product already holds a copy at
/// least as new, applied over it when nothing local is waiting to be pushed, and otherwise
/// left waiting as a conflict. Any other row whose base moved fails with the reason.
pub async fn apply_rows(
    store: &Store,
    operation: &SyncOperation,
    rows: Vec<ProductsStaging>,
    actor: &Actor,
    times: &mut StageTimes,
) -> Result<OperationStatistics, EngineError> {
    apply_import_rows(store, operation, rows, actor, times, None).await
}

/// As [`apply_rows`], for the rows of a Xorosoft import whose approver accepted setting back
/// stock that files written up to `accepted_until` set (the newer files its hold named):
/// what an import of a file written after that set since a row was staged is kept.
pub async fn apply_import_rows(
    store: &Store,
    operation: &SyncOperation,
    rows: Vec<ProductsStaging>,
    actor: &Actor,
    times: &mut StageTimes,
    accepted_until: Option<DateTime<Utc>>,
) -> Result<OperationStatistics, EngineError> {
    apply_rows_as(
        store,
        operation,
        rows,
        actor,
        times,
        (Review::Unattended, accepted_until),
    )
    .await
}

/// As [`apply_rows`], applied as `review` says (with, for an import's rows, the newest file
/// time its approver accepted going back from, as [`apply_import_rows`] takes it).
pub(crate) async fn apply_rows_as(
    store: &Store,
    operation: &SyncOperation,
    rows: Vec<ProductsStaging>,
    actor: &Actor,
    times: &mut StageTimes,
    review: (Review, Option<DateTime<Utc>>),
) -> Result<OperationStatistics, EngineError> {
    apply_rows_read(
        store,
        operation,
        (rows, HashMap::new()),
        actor,
        times,
        review,
    )
    .await
}

/// As [`apply_import_rows`], with the products of the rows already read (`read`, by id), as
/// an import reads a page's ahead of applying it.
pub async fn apply_import_rows_read(
    store: &Store,
    operation: &SyncOperation,
    (rows, read): (Vec<ProductsStaging>, HashMap<ProductId, Product>),
    actor: &Actor,
    times: &mut StageTimes,
    accepted_until: Option<DateTime<Utc>>,
) -> Result<OperationStatistics, EngineError> {
    let review = (Review::Unattended, accepted_until);
    apply_rows_read(store, operation, (rows, read), actor, times, review).await
}

/// As [`apply_rows_as`], with products of the rows already read (`read`, by id: a product
/// the map lacks is read here; one that changed since it was read is decided again, as
/// for any product that moves between its read and its commit).
async fn apply_rows_read(
    store: &Store,
    operation: &SyncOperation,
    (rows, mut read): (Vec<ProductsStaging>, HashMap<ProductId, Product>),
    actor: &Actor,
    times: &mut StageTimes,
    (review, accepted_until): (Review, Option<DateTime<Utc>>),
) -> Result<OperationStatistics, EngineError> {
    let mut stats = OperationStatistics::default();
    if operation.dry_run {
        // A dry run's rows are a preview; they are never applied.
        return Ok(stats);
    }
    let approved_delete = |r: &ProductsStaging| {
        review == Review::Approved
            && r.status == StagingStatus::Pending
            && !r.has_conflicts
            && r.change_type == ChangeType::Delete
    };
    let mut todo: Vec<ProductsStaging> = rows
        .into_iter()
        .filter(|r| {
            r.sync_operation_id == operation.operation_uuid
                && (applies_unattended(r) || approved_delete(r))
        })
        .collect();
    // A row that lost a race with another writer of its product is decided again (at most
    // three rounds), so concurrent workers never turn a good change into a failure.
    for round in 0..3 {
        let mut retry = Vec::new();
        for chunk in todo.chunks(APPLY_BATCH) {
            retry.extend(
                apply_chunk(
                    store,
                    operation,
                    (chunk, &mut read),
                    actor,
                    times,
                    &mut stats,
                    (review, accepted_until),
                )
                .await?,
            );
            // Other tasks get their turn between batches (the embedded store never yields).
            tokio::task::yield_now().await;
        }
        if retry.is_empty() {
            break;
        }
        if round == 2 {
            for row in &retry {
                settle_row(store, row, StagingStatus::Failed, "the product kept changing while this change was applied; the next sync stages it again", Utc::now()).await?;
            }
            stats.processed += retry.len() as u64;
            stats.failed += retry.len() as u64;
            break;
        }
        todo = retry;
    }
    Ok(stats)
}

/// Applies one batch; returns the rows whose product changed under them meanwhile. Rows a
/// person approved record them as their reviewer.
async fn apply_chunk(
    store: &Store,
    operation: &SyncOperation,
    (chunk, read): (&[ProductsStaging], &mut HashMap<ProductId, Product>),
    actor: &Actor,
    times: &mut StageTimes,
    stats: &mut OperationStatistics,
    (review, accepted_until): (Review, Option<DateTime<Utc>>),
) -> Result<Vec<ProductsStaging>, EngineError> {
    let mut retry = Vec::new();
    let mut file_times = FileTimes::default();
    {
        let now = Utc::now();
        let mut commits = Vec::with_capacity(chunk.len());
        let mut kinds: Vec<(ChangeType, &ProductsStaging)> = Vec::with_capacity(chunk.len());
        let mut deletes: Vec<(ProductCommit, &ProductsStaging)> = Vec::new();
        // The products the batch updates, read together (by key) unless read already. Each
        // is taken from `read` once: a row decided again reads its product afresh.
        let reading = Instant::now();
        let mut currents: HashMap<ProductId, Product> = HashMap::with_capacity(chunk.len());
        let mut unread: Vec<ProductId> = Vec::new();
        for row in chunk.iter().filter(|r| r.change_type == ChangeType::Update) {
            match read.remove(&row.source_product_id) {
                Some(product) => {
                    currents.insert(product.id, product);
                }
                None => unread.push(row.source_product_id),
            }
        }
        if !unread.is_empty() {
            currents.extend(products_by_id(store, &unread).await?);
        }
        times.add(Stage::Diff, reading);
        for row in chunk {
            if row.change_type == ChangeType::Delete {
                // Only rows a person approved get here.
                if let Some(commit) = removal(store, operation, row, actor, now, stats).await? {
                    deletes.push((commit, row));
                }
                continue;
            }
            let Some(proposed) = row.proposed.clone() else {
                continue;
            };
            let mut applied = row.clone();
            applied.status = StagingStatus::Applied;
            applied.applied_at = Some(now);
            if review == Review::Approved {
                applied.reviewed_by = Some(actor.clone());
                applied.reviewed_at = Some(now);
            }
            if row.change_type == ChangeType::Create {
                let mut product = Product::new(row.source_product_id, proposed, now);
                let stamp = match row.origin {
                    // A product brought back by a rollback: the version after its removal,
                    // every field listed, new to Shopify (the push creates it there).
                    Some(origin) => {
                        product.version = row.base_version + 1;
                        product.last_sync_version = 0;
                        VersionStamp::new(
                            product.content.to_fields().into_keys().collect(),
                            origin,
                            actor.clone(),
                            Some(operation.operation_uuid),
                            now,
                        )
                    }
                    None => {
                        product.shopify_id = row.shopify.map(|s| s.product_id);
                        product.shopify_updated_at = row.shopify.map(|s| s.updated_at);
                        product.last_sync_version = product.version;
                        VersionStamp::first(
                            &product,
                            ChangeSource::Shopify,
                            actor.clone(),
                            Some(operation.operation_uuid),
                        )
                    }
                };
                commits.push(ProductCommit {
                    version: Some(stamp),
                    product,
                    expected_version: None,
                    staging: Some((applied, Some(StagingStatus::Pending))),
                    actor: actor.clone(),
                    now,
                });
                kinds.push((ChangeType::Create, row));
                continue;
            }
            let Some(current) = currents.get(&row.source_product_id).cloned() else {
                settle_row(
                    store,
                    row,
                    StagingStatus::Failed,
                    "the product no longer exists locally",
                    now,
                )
                .await?;
                stats.failed += 1;
                continue;
            };
            // A rollback restores values decided against the product as it was staged: one
            // that moved since is left as it is now (never clobbered).
            if current.version != row.base_version && row.origin == Some(ChangeSource::Rollback) {
                settle_row(
                    store,
                    row,
                    StagingStatus::Failed,
                    "the product changed after this rollback was staged; it was kept (roll back again to restore it)",
                    now,
                )
                .await?;
                stats.failed += 1;
                continue;
            }
            // A patch (a Xorosoft import, a local edit) sets its fields on the product as
            // it is now, whatever moved meanwhile; a Xorosoft stock figure keeps the moves
            // Shopify made since it was staged.
            let moved = current.version != row.base_version;
            if moved && row.origin == Some(ChangeSource::Xorosoft) {
                let kept = rebase_xorosoft_patch(
                    store,
                    (operation, accepted_until),
                    (row.base_version, &current),
                    &mut applied.change_data,
                    &mut file_times,
                )
                .await?;
                let kept: Vec<&str> = kept.iter().map(|path| path.as_str()).collect();
                if !kept.is_empty() && applied.change_data.is_empty() {
                    settle_row(store, row, StagingStatus::Superseded, &format!("an import of a newer Xorosoft file set all of it since this row was staged; kept: {}", kept.join(", ")), now).await?;
                    stats.processed += 1;
                    stats.unchanged += 1;
                    continue;
                }
                if !kept.is_empty() {
                    applied.error = Some(format!(
                        "not applied, as an import of a newer Xorosoft file set them since this row was staged: {}",
                        kept.join(", ")
                    ));
                }
            }
            let proposed = match (row.origin, moved) {
                (Some(_), true) => match patched(&current.content, &applied.change_data) {
                    Ok(content) => content,
                    Err(reason) => {
                        settle_row(store, row, StagingStatus::Failed, &reason, now).await?;
                        stats.failed += 1;
                        continue;
                    }
                },
                _ => proposed,
            };
            if current.version != row.base_version && row.merged {
                settle_row(
                    store,
                    row,
                    StagingStatus::Failed,
                    "the product changed after this merge was staged; the next sync merges again",
                    now,
                )
                .await?;
                stats.failed += 1;
                continue;
            }
            if current.version != row.base_version && row.origin.is_none() {
                match (row.shopify, current.needs_push()) {
                    (Some(source), _)
                        if current
                            .shopify_updated_at
                            .is_some_and(|seen| source.updated_at <= seen) =>
                    {
                        settle_row(
                            store,
                            row,
                            StagingStatus::Superseded,
                            "the product already holds a Shopify copy at least this new",
                            now,
                        )
                        .await?;
                        stats.processed += 1;
                        stats.unchanged += 1;
                        continue;
                    }
                    (Some(_), false) => {}
                    (Some(_), true) => {
                        flag_conflict(store, row).await?;
                        stats.processed += 1;
                        stats.conflicts += 1;
                        continue;
                    }
                    (None, _) => {
                        settle_row(store, row, StagingStatus::Failed, "the product changed after this change was staged; the next sync stages it again", now).await?;
                        stats.failed += 1;
                        continue;
                    }
                }
            }
            let mut updated = current.clone();
            let changes = updated.change_content(proposed, now);
            if let Some(source) = row.shopify {
                updated.shopify_updated_at = Some(source.updated_at);
            }
            // A merge still holds local changes Shopify lacks, and a patch from elsewhere is
            // Shopify's news still: either stays queued for the push.
            if !row.merged && row.origin.is_none() {
                updated.last_sync_version = updated.version;
            }
            if updated.xorosoft_id.is_none() {
                updated.xorosoft_id = linked_item(row);
            }
            let source = match row.origin {
                Some(origin) => origin,
                None if row.merged => ChangeSource::ConflictResolution,
                None => ChangeSource::Shopify,
            };
            commits.push(ProductCommit {
                version: (!changes.is_empty()).then(|| {
                    VersionStamp::new(
                        shopsync_domain::fields::changed_fields(&changes),
                        source,
                        actor.clone(),
                        Some(operation.operation_uuid),
                        now,
                    )
                }),
                product: updated,
                expected_version: Some(current.version),
                staging: Some((applied, Some(StagingStatus::Pending))),
                actor: actor.clone(),
                now,
            });
            kinds.push((ChangeType::Update, row));
        }
        let applying = Instant::now();
        let answers = store.commit_products(&mut commits).await?;
        for (commit, row) in deletes {
            match store.remove_product(commit).await {
                Ok(()) => {
                    stats.processed += 1;
                    stats.deleted += 1;
                }
                // Changed meanwhile: decided again (and kept, since its version moved).
                Err(RepoError::VersionConflict { .. }) => retry.push(row.clone()),
                Err(RepoError::StagingStatusConflict { .. }) => {
                    stats.processed += 1;
                    stats.unchanged += 1;
                }
                Err(RepoError::Locked(_)) => {
                    stats.processed += 1;
                    stats.skipped += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        times.add(Stage::Apply, applying);
        for ((kind, row), answer) in kinds.into_iter().zip(answers) {
            if matches!(
                answer,
                Err(RepoError::VersionConflict { .. } | RepoError::AlreadyExists { .. })
            ) {
                // Someone else wrote the product first: decide again against theirs.
                let mut again = row.clone();
                if again.change_type == ChangeType::Create {
                    again.change_type = ChangeType::Update;
                }
                retry.push(again);
                continue;
            }
            stats.processed += 1;
            match (kind, answer) {
                (ChangeType::Create, Ok(())) => stats.created += 1,
                (_, Ok(())) => stats.updated += 1,
                // Applied before (a redelivered step): nothing changes.
                (_, Err(RepoError::StagingStatusConflict { .. })) => stats.unchanged += 1,
                (_, Err(RepoError::Locked(_))) => stats.skipped += 1,
                (_, Err(e)) => return Err(e.into()),
            }
        }
    }
    Ok(retry)
}

/// The products of these ids that exist, by id.
pub(crate) async fn products_by_id(
    store: &Store,
    ids: &[ProductId],
) -> Result<HashMap<ProductId, Product>, EngineError> {
    Ok(store
        .products(ids)
        .await?
        .into_iter()
        .flatten()
        .map(|p| (p.id, p))
        .collect())
}

/// The contribution key under which a row names the Xorosoft item it links its product to.
pub const LINKED_ITEM: &str = "xorosoft_id";

/// The Xorosoft item a row links its product to, if it does.
fn linked_item(row: &ProductsStaging) -> Option<String> {
    row.contributions
        .get(LINKED_ITEM)?
        .values()
        .find_map(|v| v.as_str().map(str::to_owned))
}

/// When the files of Xorosoft imports were written (their objects' last-modified times), by
/// operation, each read once a batch and only when a moved product needs it.
#[derive(Default)]
struct FileTimes(std::collections::HashMap<shopsync_domain::OperationId, Option<DateTime<Utc>>>);

impl FileTimes {
    async fn of(
        &mut self,
        store: &Store,
        operation: shopsync_domain::OperationId,
    ) -> Result<Option<DateTime<Utc>>, EngineError> {
        if let Some(written) = self.0.get(&operation) {
            return Ok(*written);
        }
        let log = match store
            .get::<SyncOperation>(&Key::pk(operation.to_string()))
            .await?
            .and_then(|op| op.xorosoft_log_id)
        {
            Some(log) => {
                store
                    .get::<shopsync_domain::XorosoftSyncLog>(&Key::pk(log.to_string()))
                    .await?
            }
            None => None,
        };
        let written = log.and_then(|l| l.object).and_then(|o| o.last_modified);
        self.0.insert(operation, written);
        Ok(written)
    }
}

/// A Xorosoft patch applied after its product moved since it was staged, brought up to what
/// happened meanwhile (the product's versions since say it):
///
/// - a field an import of a file written after this one (and after `accepted_until`, when
///   its approver accepted going back from newer files) set since is kept as that import
///   left it (an older snapshot never overwrites a newer one unasked, however the two
///   imports interleave): it is dropped from `changes`, and returned;
/// - a stock figure keeps what Shopify moved since (sales, an adjustment made there), as the
///   push keeps a sale it finds there, and its old value becomes the level it replaces now,
///   so local and Shopify end at the same level; a move made elsewhere (another import, a
///   person) is not taken for a sale.
async fn rebase_xorosoft_patch(
    store: &Store,
    (operation, accepted_until): (&SyncOperation, Option<DateTime<Utc>>),
    (base_version, current): (u64, &Product),
    changes: &mut shopsync_domain::ChangeData,
    file_times: &mut FileTimes,
) -> Result<Vec<shopsync_domain::FieldPath>, EngineError> {
    // The versions from the one it was staged against to the current one, oldest first.
    let mut query = Query::new(Table::ProductVersions, None, current.id.to_string());
    query.sk = Some(shopsync_store::item::SortCondition::Between(
        (base_version as i64).into(),
        (current.version as i64).into(),
    ));
    let versions: Vec<shopsync_domain::ProductVersion> = store.query_all(query).await?;
    let mut kept_newer = std::collections::BTreeSet::new();
    // Files written up to the newest its approver accepted going back from count as older.
    let written = match (
        file_times.of(store, operation.operation_uuid).await?,
        accepted_until,
    ) {
        (Some(this), Some(accepted)) => Some(this.max(accepted)),
        (this, accepted) => this.or(accepted),
    };
    for version in versions.iter().skip(1) {
        let Some(other) = version.sync_operation_id.filter(|o| {
            *o != operation.operation_uuid && version.change_source == ChangeSource::Xorosoft
        }) else {
            continue;
        };
        let newer = match (written, file_times.of(store, other).await?) {
            (Some(this), Some(that)) => that > this,
            _ => false,
        };
        if newer {
            kept_newer.extend(
                version
                    .changed_fields
                    .iter()
                    .filter(|path| changes.contains_key(*path))
                    .cloned(),
            );
        }
    }
    for path in &kept_newer {
        changes.remove(path);
    }
    let levels = current.content.to_fields();
    let moved: Vec<shopsync_domain::FieldPath> = changes
        .iter()
        .filter(|(path, change)| {
            path.leaf() == "inventory"
                && change.old.is_some()
                && change.new.is_some()
                && levels.get(*path) != change.old.as_ref()
        })
        .map(|(path, _)| path.clone())
        .collect();
    let mut from_shopify: std::collections::BTreeMap<&shopsync_domain::FieldPath, i64> =
        std::collections::BTreeMap::new();
    let level = |fields: &shopsync_domain::Fields, path: &shopsync_domain::FieldPath| {
        fields
            .get(path)
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0)
    };
    for pair in versions.windows(2) {
        if moved.is_empty() || pair[1].change_source != ChangeSource::Shopify {
            continue;
        }
        let (before, after) = (
            pair[0].product_data.to_fields(),
            pair[1].product_data.to_fields(),
        );
        for path in &moved {
            *from_shopify.entry(path).or_default() += level(&after, path) - level(&before, path);
        }
    }
    for path in &moved {
        let Some(change) = changes.get_mut(path) else {
            continue;
        };
        let figure = change
            .new
            .as_ref()
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0);
        let kept = from_shopify.get(path).copied().unwrap_or(0);
        change.old = levels.get(path).cloned();
        change.new = Some(serde_json::json!(figure + kept));
    }
    Ok(kept_newer.into_iter().collect())
}

/// `content` with the new value of every field of `changes` set, whatever it held before.
fn patched(
    content: &ProductContent,
    changes: &shopsync_domain::ChangeData,
) -> Result<ProductContent, String> {
    let mut fields = content.to_fields();
    for (path, change) in changes {
        match &change.new {
            Some(value) => {
                fields.insert(path.clone(), value.clone());
            }
            None => {
                fields.remove(path);
            }
        }
    }
    ProductContent::from_fields(&fields)
        .map_err(|e| format!("the change no longer fits the product: {e}"))
}

/// The removal an approved delete row asks for, or `None` when there is nothing to remove
/// (the row is then settled: the product is gone already, or it changed since the delete
/// was staged and is kept).
async fn removal(
    store: &Store,
    operation: &SyncOperation,
    row: &ProductsStaging,
    actor: &Actor,
    now: DateTime<Utc>,
    stats: &mut OperationStatistics,
) -> Result<Option<ProductCommit>, EngineError> {
    let Some(current) = store.product(row.source_product_id).await? else {
        settle_row(
            store,
            row,
            StagingStatus::Superseded,
            "the product was gone already",
            now,
        )
        .await?;
        stats.processed += 1;
        stats.unchanged += 1;
        return Ok(None);
    };
    if current.version != row.base_version {
        settle_row(
            store,
            row,
            StagingStatus::Failed,
            "the product changed after this delete was staged; it was kept",
            now,
        )
        .await?;
        stats.failed += 1;
        return Ok(None);
    }
    // The last content stays in the history as the product's final version.
    let mut gone = current.clone();
    gone.version += 1;
    gone.updated_at = now;
    let source = if row.shopify.is_some() {
        ChangeSource::Shopify
    } else {
        ChangeSource::Local
    };
    let mut applied = row.clone();
    applied.status = StagingStatus::Applied;
    applied.applied_at = Some(now);
    applied.reviewed_by = Some(actor.clone());
    applied.reviewed_at = Some(now);
    Ok(Some(ProductCommit {
        version: Some(VersionStamp::new(
            vec![shopsync_domain::fields::FieldPath::new_unchecked(
                "deleted".to_owned(),
            )],
            source,
            actor.clone(),
            Some(operation.operation_uuid),
            now,
        )),
        product: gone,
        expected_version: Some(current.version),
        staging: Some((applied, Some(StagingStatus::Pending))),
        actor: actor.clone(),
        now,
    }))
}

async fn flag_conflict(store: &Store, row: &ProductsStaging) -> Result<(), EngineError> {
    let mut waiting = row.clone();
    waiting.has_conflicts = true;
    waiting.error = Some("local changes are waiting to be pushed; review or merge".into());
    ignore_changed(store.replace_if(&waiting, pending_condition()).await)
}

pub(crate) async fn settle_row(
    store: &Store,
    row: &ProductsStaging,
    status: StagingStatus,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), EngineError> {
    let mut failed = row.clone();
    failed.status = status;
    failed.error = Some(reason.to_owned());
    failed.reviewed_at = Some(now);
    ignore_changed(store.replace_if(&failed, pending_condition()).await)
}

fn pending_condition() -> Condition {
    still(StagingStatus::Pending)
}

/// Rejects the rows that are still pending (a row decided meanwhile is left as it is).
pub(crate) async fn reject_pending(
    store: &Store,
    rows: Vec<ProductsStaging>,
    actor: &Actor,
    why: &str,
    now: DateTime<Utc>,
) -> Result<(), EngineError> {
    for row in rows
        .into_iter()
        .filter(|r| r.status == StagingStatus::Pending)
    {
        let mut rejected = row;
        rejected.status = StagingStatus::Rejected;
        rejected.reviewed_by = Some(actor.clone());
        rejected.reviewed_at = Some(now);
        rejected.error = Some(why.to_owned());
        ignore_changed(store.replace_if(&rejected, pending_condition()).await)?;
    }
    Ok(())
}

/// The condition that a record's status is still `status`.
pub(crate) fn still<S: serde::Serialize + std::fmt::Debug>(
    status: S,
) -> shopsync_store::item::Condition {
    shopsync_store::item::Condition::Eq(
        "status",
        shopsync_store::item::Scalar::from(shopsync_domain::status::status_name(status).as_str()),
    )
}

/// A replacement refused because the record was decided meanwhile is not an error.
pub(crate) fn ignore_changed<R: std::fmt::Debug>(
    answer: Result<(), shopsync_store::ReplaceError<R>>,
) -> Result<(), EngineError> {
    match answer {
        Ok(()) | Err(shopsync_store::ReplaceError::Changed(_)) => Ok(()),
        Err(shopsync_store::ReplaceError::Repo(e)) => Err(e.into()),
    }
}

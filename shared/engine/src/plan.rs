//! Two-phase operations: plan (every change becomes a pending staging row), judge the plan
//! with the guard rails, then apply the rows (product + version snapshot + row status in one
//! transaction, batched) or wait for approval. Applying a row twice changes nothing: its
//! status is part of the write's condition.

use crate::down::{
    create_decision, decide, locals_of, stage_conflict, Decision, Ingested, Shopify,
};
use crate::error::EngineError;
use crate::perf::StageTimes;
use chrono::{DateTime, Utc};
use shopsync_domain::product::ProductContent;
use shopsync_domain::staging::{ChangeType, ProductsStaging, StagingStatus};
use shopsync_domain::{
    Actor, ChangeFacts, ChangeSource, GuardRails, OperationStatistics, OperationStatus,
    PlanSummary, Product, Stage, SyncOperation, VersionStamp,
};
use shopsync_store::item::{Condition, Key, Query, WriteOp};
use shopsync_store::{ProductCommit, RepoError, Store, Table};
use std::time::Instant;

/// Rows applied per store commit (the embedded store writes them in one disk commit).
const APPLY_BATCH: usize = 256;

/// What planning one product did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// A pending row waits to be applied.
    Staged(shopsync_domain::StagingId),
    /// Nothing to apply (stale, unchanged, locked) or a conflict row was stored.
    Settled(Ingested),
}

/// What plans an operation's changes.
pub struct Planner<'a> {
    /// The store.
    pub store: &'a Store,
    /// The operation the rows belong to.
    pub operation: &'a SyncOperation,
    /// Who stages.
    pub actor: &'a Actor,
    /// The rails whose facts are summed.
    pub rails: &'a GuardRails,
    /// An import into a catalog that was empty when the sync began (see
    /// `Checkpoint::import`): creates are applied as they are planned (product + version +
    /// applied row in one transaction) instead of staged pending, as no rail can hold a
    /// create; and a product is looked for only under the local id its Shopify id gives,
    /// since none can have come in any other way.
    pub import: bool,
    /// The local product of a one-item batch, when the caller has just read it (a webhook
    /// checked it for staleness): not read again.
    pub known_local: Option<&'a Option<Product>>,
}

impl Planner<'_> {
    /// Plans a batch: decides each product and stores pending rows for the changes (creates
    /// are applied at once in an import).
    pub async fn plan_batch(
        &self,
        items: Vec<(Shopify, ProductContent)>,
        now: DateTime<Utc>,
        summary: &mut PlanSummary,
        times: &mut StageTimes,
    ) -> Result<Vec<Planned>, EngineError> {
        let (mut planned, created_meanwhile) = self
            .plan_items(
                items,
                (self.import, self.known_local),
                (now, None),
                summary,
                times,
            )
            .await?;
        if !created_meanwhile.is_empty() {
            // Another writer created these products while this batch was planned: decided
            // again against them, as pending rows. When that writer was this operation (the
            // same step delivered twice at once), they count as created by it.
            let (more, _) = self
                .plan_items(
                    created_meanwhile,
                    (self.import, None),
                    (now, None),
                    summary,
                    times,
                )
                .await?;
            planned.extend(more);
        }
        Ok(planned)
    }

    /// Plans a batch without writing: returns what was planned and the writes that store it
    /// (pending rows, conflict rows and conflicts), for the caller to commit in one
    /// transaction with its own (a webhook's dedupe marks). Creates are staged, never applied.
    pub async fn plan_deferred(
        &self,
        items: Vec<(Shopify, ProductContent)>,
        now: DateTime<Utc>,
        summary: &mut PlanSummary,
        times: &mut StageTimes,
    ) -> Result<(Vec<Planned>, Vec<WriteOp>), EngineError> {
        let mut writes = Vec::new();
        let (planned, _) = self
            .plan_items(
                items,
                (false, self.known_local),
                (now, Some(&mut writes)),
                summary,
                times,
            )
            .await?;
        Ok((planned, writes))
    }

    /// Plans `items` (`known`: the local product of a one-item batch, already read); returns
    /// what was planned and the creates that found their product created meanwhile (only
    /// when `apply_creates`), to be planned again. With `deferred`, the rows and conflicts
    /// are not written but added there as writes.
    async fn plan_items(
        &self,
        items: Vec<(Shopify, ProductContent)>,
        (import, known): (bool, Option<&Option<Product>>),
        (now, mut deferred): (DateTime<Utc>, Option<&mut Vec<WriteOp>>),
        summary: &mut PlanSummary,
        times: &mut StageTimes,
    ) -> Result<(Vec<Planned>, Vec<(Shopify, ProductContent)>), EngineError> {
        let Planner {
            store,
            operation,
            actor,
            rails,
            ..
        } = *self;
        let apply_creates = import && !operation.dry_run;
        let mut planned = Vec::with_capacity(items.len());
        let mut rows = Vec::new();
        let mut settled_conflicts = Vec::new();
        let mut creates = Vec::new();
        let mut created = Vec::new();
        let mut locals = match known.filter(|_| items.len() == 1) {
            Some(known) => vec![known.clone()],
            None => {
                let sources: Vec<Shopify> = items.iter().map(|(source, _)| *source).collect();
                locals_of(store, &sources, !import, times).await?
            }
        };
        for (index, (source, content)) in items.into_iter().enumerate() {
            let found = locals.get_mut(index).and_then(Option::take);
            // A create takes the content itself (nothing else needs it); any other decision
            // reads it, and it stays here for the rails' facts.
            let (decision, content) = match found {
                None => (
                    create_decision(operation, source, content, actor, now),
                    None,
                ),
                found => (
                    decide(store, operation, (source, found), &content, actor, now).await?,
                    Some(content),
                ),
            };
            match decision {
                // A step cut short after its creates landed is run again (a redelivery, a
                // host started again after a crash, a fresh export read anew): what it
                // created is counted as created, not as unchanged.
                Decision::Done(Ingested::Stale(id) | Ingested::Unchanged(id))
                    if apply_creates && created_by(store, operation, id).await? =>
                {
                    planned.push(Planned::Settled(Ingested::Created(id)))
                }
                Decision::Done(outcome) => planned.push(Planned::Settled(outcome)),
                Decision::Conflict(staged, id, conflicts, replaced) => {
                    // A preview records no conflict and replaces nothing.
                    let (conflicts, replaced) = if operation.dry_run {
                        (Vec::new(), Default::default())
                    } else {
                        (conflicts, replaced)
                    };
                    match deferred.as_deref_mut() {
                        Some(writes) => {
                            writes.push(Store::insert_write(staged.as_ref())?);
                            for conflict in &conflicts {
                                writes.push(Store::insert_write(conflict)?);
                            }
                            if let Some(opened) = conflicts
                                .iter()
                                .find(|c| c.status == shopsync_domain::ConflictStatus::Open)
                            {
                                writes.push(Store::conflict_opened_write(id, opened.detected_at));
                            }
                            writes.extend(replaced.writes()?);
                        }
                        None => {
                            stage_conflict(store, &staged, &conflicts, &replaced, times).await?
                        }
                    }
                    planned.push(Planned::Settled(Ingested::Conflict(id)));
                }
                Decision::Commit(commit, _, None, _) if apply_creates => {
                    created.push(source);
                    creates.push(*commit);
                }
                Decision::Commit(commit, _, old, conflicts) => {
                    if !operation.dry_run {
                        settled_conflicts.extend(conflicts);
                    }
                    let commit = *commit;
                    let Some((mut row, _)) = commit.staging else {
                        continue;
                    };
                    // Shopify's content (a create's is its product's).
                    let remote = content.as_ref().unwrap_or(&commit.product.content);
                    summary.add(
                        ChangeFacts::of(old.as_deref(), remote, rails),
                        old.is_some(),
                    );
                    // A create's row leaves its content to the product's first version; staged
                    // on its own, it carries the content itself.
                    if row.proposed.is_none() && row.change_type == ChangeType::Create {
                        row.proposed = Some(commit.product.content);
                    }
                    row.status = StagingStatus::Pending;
                    row.applied_at = None;
                    row.has_conflicts = false;
                    planned.push(Planned::Staged(row.id));
                    rows.push(row);
                }
            }
        }
        let mut created_meanwhile = Vec::new();
        if !creates.is_empty() {
            let applying = Instant::now();
            let answers = store.commit_products(&mut creates).await;
            times.add(Stage::Apply, applying);
            for ((source, answer), commit) in created.into_iter().zip(answers?).zip(creates) {
                match answer {
                    Ok(()) => planned.push(Planned::Settled(Ingested::Created(commit.product.id))),
                    Err(RepoError::AlreadyExists { .. }) => {
                        created_meanwhile.push((source, commit.product.content))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if let Some(writes) = deferred {
            for row in &rows {
                writes.push(Store::insert_write(row)?);
            }
            for conflict in &settled_conflicts {
                writes.push(Store::insert_write(conflict)?);
            }
            return Ok((planned, created_meanwhile));
        }
        let staging = Instant::now();
        let inserted = match store.insert_all(&rows).await {
            Ok(()) => store.insert_all(&settled_conflicts).await,
            Err(e) => Err(e),
        };
        times.add(Stage::Stage, staging);
        inserted?;
        Ok((planned, created_meanwhile))
    }
}

/// Whether `operation` created `product` (its newest staged rows hold that applied create).
async fn created_by(
    store: &Store,
    operation: &SyncOperation,
    product: shopsync_domain::ProductId,
) -> Result<bool, EngineError> {
    let mut query = Query::new(
        Table::ProductsStaging,
        Some("by_product"),
        product.to_string(),
    );
    query.ascending = false;
    query.limit = 10;
    let rows = store.query::<ProductsStaging>(query).await?.items;
    Ok(rows.iter().any(|row| {
        row.sync_operation_id == operation.operation_uuid
            && row.change_type == ChangeType::Create
            && row.status == StagingStatus::Applied
    }))
}

/// Every row of an operation, in staging order.
pub async fn operation_rows(
    store: &Store,
    operation: shopsync_domain::OperationId,
) -> Result<Vec<ProductsStaging>, EngineError> {
    let mut query = Query::new(
        Table::ProductsStaging,
        Some("by_operation"),
        operation.to_string(),
    );
    query.limit = 500;
    Ok(store.query_all(query).await?)
}

/// Applies an operation's pending rows (conflict rows and deletes keep waiting for review).
pub async fn apply_operation(
    store: &Store,
    operation: &SyncOperation,
    actor: &Actor,
    times: &mut StageTimes,
) -> Result<OperationStatistics, EngineError> {
    apply_operation_as(store, operation, actor, times, Review::Unattended).await
}

/// Whether an operation is an up-sync that staged what it pushes: approved, it goes on
/// from its push instead of applying rows.
pub fn staged_up_sync(operation: &SyncOperation) -> bool {
    operation.sync_direction == shopsync_domain::SyncDirection::Up
        && crate::steps::Checkpoint::of(operation).is_some_and(|c| c.staged_up)
}

/// Who applies rows: the engine on its own, or a person who approved them (only then are
/// deletes applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Review {
    Unattended,
    Approved,
}

async fn apply_operation_as(
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
        let applied = apply_rows_as(store, operation, page.items, actor, times, review).await?;
        stats.absorb(&applied);
        match page.next {
            Some(next) => query.start = Some(next),
            None => return Ok(stats),
        }
    }
}

/// Whether a row is applied without a person: pending, not conflicting, not a delete.
fn applies_unattended(row: &ProductsStaging) -> bool {
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
    apply_rows_as(store, operation, rows, actor, times, Review::Unattended).await
}

async fn apply_rows_as(
    store: &Store,
    operation: &SyncOperation,
    rows: Vec<ProductsStaging>,
    actor: &Actor,
    times: &mut StageTimes,
    review: Review,
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
                apply_chunk(store, operation, chunk, actor, times, &mut stats, review).await?,
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
    chunk: &[ProductsStaging],
    actor: &Actor,
    times: &mut StageTimes,
    stats: &mut OperationStatistics,
    review: Review,
) -> Result<Vec<ProductsStaging>, EngineError> {
    let mut retry = Vec::new();
    {
        let now = Utc::now();
        let mut commits = Vec::with_capacity(chunk.len());
        let mut kinds: Vec<(ChangeType, &ProductsStaging)> = Vec::with_capacity(chunk.len());
        let mut deletes: Vec<(ProductCommit, &ProductsStaging)> = Vec::new();
        // The products the batch updates, read together (by key).
        let reading = Instant::now();
        let updated_ids: Vec<shopsync_domain::ProductId> = chunk
            .iter()
            .filter(|r| r.change_type == ChangeType::Update)
            .map(|r| r.source_product_id)
            .collect();
        let currents: std::collections::HashMap<shopsync_domain::ProductId, Product> = store
            .products(&updated_ids)
            .await?
            .into_iter()
            .flatten()
            .map(|p| (p.id, p))
            .collect();
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
                product.shopify_id = row.shopify.map(|s| s.product_id);
                product.shopify_updated_at = row.shopify.map(|s| s.updated_at);
                product.last_sync_version = product.version;
                commits.push(ProductCommit {
                    version: Some(VersionStamp::first(
                        &product,
                        ChangeSource::Shopify,
                        actor.clone(),
                        Some(operation.operation_uuid),
                    )),
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
            // A patch (a Xorosoft import, a local edit) sets its fields on the product as
            // it is now, whatever moved meanwhile.
            let proposed = match (row.origin, current.version != row.base_version) {
                (Some(_), true) => match patched(&current.content, &row.change_data) {
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

/// The contribution key under which a row names the Xorosoft item it links its product to.
pub const LINKED_ITEM: &str = "xorosoft_id";

/// The Xorosoft item a row links its product to, if it does.
fn linked_item(row: &ProductsStaging) -> Option<String> {
    row.contributions
        .get(LINKED_ITEM)?
        .values()
        .find_map(|v| v.as_str().map(str::to_owned))
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

/// Loads rows by id (missing ones are skipped: a row is never deleted, so a missing id was
/// never staged).
pub async fn rows_by_id(
    store: &Store,
    ids: &[shopsync_domain::StagingId],
) -> Result<Vec<ProductsStaging>, EngineError> {
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(row) = store
            .get::<ProductsStaging>(&Key::pk(id.to_string()))
            .await?
        {
            rows.push(row);
        }
    }
    Ok(rows)
}

async fn flag_conflict(store: &Store, row: &ProductsStaging) -> Result<(), EngineError> {
    let mut waiting = row.clone();
    waiting.has_conflicts = true;
    waiting.error = Some("local changes are waiting to be pushed; review or merge".into());
    crate::down::ignore_changed(store.replace_if(&waiting, pending_condition()).await)
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
    crate::down::ignore_changed(store.replace_if(&failed, pending_condition()).await)
}

fn pending_condition() -> Condition {
    crate::down::still(StagingStatus::Pending)
}

/// Rejects the rows that are still pending (a row decided meanwhile is left as it is).
async fn reject_pending(
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
        crate::down::ignore_changed(store.replace_if(&rejected, pending_condition()).await)?;
    }
    Ok(())
}

/// Why an operation could not be approved or rejected.
fn not_waiting(operation: &SyncOperation) -> EngineError {
    let hint = if operation.operation_type == shopsync_domain::OperationType::Realtime
        && operation.status == OperationStatus::InProgress
    {
        " (its day is still open: decide its rows one by one with --rows)"
    } else {
        ""
    };
    invalid(format!(
        "operation {} is {}, not awaiting approval{hint}",
        operation.operation_uuid,
        shopsync_domain::status::status_name(operation.status)
    ))
}

/// An operation whose rows can be decided one by one: one waiting for approval, or the
/// realtime operation of a day still open (its webhook deletes and conflicts wait for review
/// while the day's deliveries keep coming).
async fn load_deciding(
    store: &Store,
    id: shopsync_domain::OperationId,
) -> Result<SyncOperation, EngineError> {
    let operation = load(store, id).await?;
    let open_realtime = operation.operation_type == shopsync_domain::OperationType::Realtime
        && operation.status == OperationStatus::InProgress;
    if operation.status != OperationStatus::AwaitingApproval && !open_realtime {
        return Err(not_waiting(&operation));
    }
    Ok(operation)
}

/// After rows of an open realtime operation were decided: its counts recounted from its rows
/// (it stays in progress until its day is over).
async fn recount_realtime(
    store: &Store,
    id: shopsync_domain::OperationId,
) -> Result<SyncOperation, EngineError> {
    let current = load(store, id).await?;
    Ok(
        crate::realtime::refresh_realtime(store, &current, Utc::now())
            .await?
            .unwrap_or(current),
    )
}

/// An operation that waits for approval (anything else is refused with its status).
async fn load_waiting(
    store: &Store,
    id: shopsync_domain::OperationId,
) -> Result<SyncOperation, EngineError> {
    let operation = load(store, id).await?;
    if operation.status != OperationStatus::AwaitingApproval {
        return Err(not_waiting(&operation));
    }
    Ok(operation)
}

async fn load(
    store: &Store,
    id: shopsync_domain::OperationId,
) -> Result<SyncOperation, EngineError> {
    store
        .get::<SyncOperation>(&Key::pk(id.to_string()))
        .await?
        .ok_or_else(|| {
            EngineError::Store(RepoError::NotFound {
                table: Table::SyncOperations,
                key: id.to_string(),
            })
        })
}

/// Approves an operation waiting for approval: applies its rows and completes it.
pub async fn approve_operation(
    store: &Store,
    id: shopsync_domain::OperationId,
    actor: &Actor,
) -> Result<SyncOperation, EngineError> {
    let mut operation = load_waiting(store, id).await?;
    let waiting = operation.clone();
    operation.move_to(
        OperationStatus::InProgress,
        Some(format!("approved by {actor}")),
        Utc::now(),
    )?;
    if staged_up_sync(&operation) {
        // An up-sync's rows are what it will push, not changes to apply here: approved, it
        // goes on from its push (the caller runs its steps), each row settled as its
        // product is pushed.
        operation.lease_expires_at = Some(Utc::now() + crate::steps::lease());
        crate::sync::save(store, &operation, &waiting).await?;
        return Ok(operation);
    }
    crate::sync::save(store, &operation, &waiting).await?;
    let applying = operation.clone();
    let stats = apply_operation_as(
        store,
        &operation,
        actor,
        &mut StageTimes::default(),
        Review::Approved,
    )
    .await?;
    operation.statistics.created += stats.created;
    operation.statistics.updated += stats.updated;
    operation.statistics.deleted += stats.deleted;
    operation.statistics.failed += stats.failed;
    operation.statistics.skipped += stats.skipped;
    operation.move_to(
        OperationStatus::Completed,
        Some(format!("approved by {actor}")),
        Utc::now(),
    )?;
    crate::sync::save(store, &operation, &applying).await?;
    Ok(operation)
}

/// Rejects an operation waiting for approval: its pending rows are rejected, nothing applied.
pub async fn reject_operation(
    store: &Store,
    id: shopsync_domain::OperationId,
    actor: &Actor,
    reason: &str,
) -> Result<SyncOperation, EngineError> {
    let mut operation = load_waiting(store, id).await?;
    let now = Utc::now();
    let rows = operation_rows(store, id).await?;
    reject_pending(
        store,
        rows,
        actor,
        &format!("rejected by {actor}: {reason}"),
        now,
    )
    .await?;
    let waiting = operation.clone();
    operation.move_to(
        OperationStatus::Cancelled,
        Some(format!("rejected by {actor}: {reason}")),
        now,
    )?;
    crate::sync::save(store, &operation, &waiting).await?;
    Ok(operation)
}

/// What ending a planned operation needs: where it runs and how it started.
pub(crate) struct Conclusion<'a> {
    pub store: &'a Store,
    pub client: &'a shopsync_shopify::AdminClient,
    pub actor: &'a Actor,
    pub rails: &'a GuardRails,
    /// The operation as stored when it started running.
    pub started: SyncOperation,
    pub started_at: Instant,
    pub counters_before: shopsync_shopify::ClientCounters,
    /// The plan staged no pending row (an import applied every create as it went): there
    /// is nothing to read back and apply.
    pub nothing_pending: bool,
}

impl Conclusion<'_> {
    /// The rails judge the plan; the operation is applied or left awaiting approval with the
    /// reasons, then stored (if still as it started) with its performance log.
    pub(crate) async fn conclude(
        self,
        mut operation: SyncOperation,
        summary: &PlanSummary,
        mut times: StageTimes,
    ) -> Result<SyncOperation, EngineError> {
        let verdict = self.rails.judge(summary);
        // A full read saw the whole catalog; an incremental one adds what it creates to the
        // size it started from.
        operation.catalog_size = Some(match operation.operation_type {
            shopsync_domain::OperationType::IncrementalSync => {
                summary.catalog_size + summary.changes.saturating_sub(summary.updates)
            }
            _ => summary.catalog_size,
        });
        match verdict {
            verdict if operation.dry_run => {
                // A preview: the rows show what would change; nothing is applied.
                operation.statistics.processed += summary.changes;
                let would = match verdict {
                    shopsync_domain::Verdict::Hold(reasons) => {
                        format!("would wait for approval: {}", reasons.join("; "))
                    }
                    shopsync_domain::Verdict::Proceed => {
                        "would apply (no guard rail trips)".to_owned()
                    }
                };
                operation.move_to(
                    OperationStatus::Completed,
                    Some(format!(
                        "dry run: {} change(s) staged, nothing applied ({} new, {} updated, {} to delete); {would}",
                        summary.changes + summary.deletes,
                        summary.changes.saturating_sub(summary.updates),
                        summary.updates,
                        summary.deletes,
                    )),
                    Utc::now(),
                )?;
            }
            shopsync_domain::Verdict::Hold(reasons) => {
                operation.statistics.processed += summary.changes;
                operation.move_to(
                    OperationStatus::AwaitingApproval,
                    Some(reasons.join("; ")),
                    Utc::now(),
                )?;
            }
            shopsync_domain::Verdict::Proceed => {
                if !self.nothing_pending {
                    let applied =
                        apply_operation(self.store, &operation, self.actor, &mut times).await?;
                    operation.statistics.absorb(&applied);
                }
                let reason = finish_both_ways(
                    self.store,
                    self.client,
                    self.actor,
                    &mut operation,
                    &mut times,
                )
                .await?;
                let skipped = operation.statistics.skipped;
                let reason = match (reason, skipped) {
                    (reason, 0) => reason,
                    (reason, n) => Some(
                        reason
                            .map(|r| format!("{r}; "))
                            .unwrap_or_default()
                            + &format!(
                                "{n} product(s) skipped: locked (sync_locked), or held by open conflicts"
                            ),
                    ),
                };
                operation.move_to(OperationStatus::Completed, reason, Utc::now())?;
            }
        }
        count_conflicts(self.store, &mut operation).await?;
        let persisting = Instant::now();
        crate::sync::save(self.store, &operation, &self.started).await?;
        times.add(Stage::Persist, persisting);
        crate::sync::record_performance(
            self.store,
            &operation,
            &times,
            self.started_at,
            self.counters_before,
            self.client.counters(),
        )
        .await?;
        Ok(operation)
    }
}

/// The second half of a bidirectional operation, once its rows are applied: push every
/// product with local changes (open conflicts hold theirs back). Returns a reason when some
/// were not pushed. Other directions have nothing to do here.
pub(crate) async fn finish_both_ways(
    store: &Store,
    client: &shopsync_shopify::AdminClient,
    actor: &Actor,
    operation: &mut SyncOperation,
    times: &mut StageTimes,
) -> Result<Option<String>, EngineError> {
    if operation.sync_direction != shopsync_domain::SyncDirection::Bidirectional {
        return Ok(None);
    }
    let mut pushed = OperationStatistics::default();
    let last = crate::up::push_pending(
        store,
        client,
        actor,
        operation.operation_uuid,
        times,
        &mut pushed,
    )
    .await?;
    operation.statistics.updated += pushed.updated;
    operation.statistics.skipped += pushed.skipped;
    operation.statistics.failed += pushed.failed;
    // A product found gone from Shopify is counted with the operation's conflicts, when it
    // concludes.
    let not_pushed = pushed.failed + pushed.conflicts;
    Ok(last.map(|last| format!("{not_pushed} product(s) not pushed; last: {last}")))
}

/// An approved operation finishes as it would have unheld: a bidirectional one pushes the
/// local changes it merged (others have nothing to push). The operation is stored with what
/// the push did.
pub async fn push_after_approval(
    store: &Store,
    client: &shopsync_shopify::AdminClient,
    actor: &Actor,
    approved: SyncOperation,
) -> Result<SyncOperation, EngineError> {
    if approved.status != OperationStatus::Completed {
        return Ok(approved);
    }
    let mut done = approved.clone();
    let reason =
        finish_both_ways(store, client, actor, &mut done, &mut StageTimes::default()).await?;
    if done == approved {
        return Ok(approved);
    }
    if reason.is_some() {
        done.status_reason = reason;
    }
    done.updated_at = Utc::now();
    crate::sync::save(store, &done, &approved).await?;
    Ok(done)
}

/// Sets the operation's conflict counts from its recorded conflicts: open ones wait for a
/// person, resolved ones were settled by the policy.
async fn count_conflicts(store: &Store, operation: &mut SyncOperation) -> Result<(), EngineError> {
    let conflicts: Vec<shopsync_domain::SyncConflict> = store
        .query_all(Query::new(
            Table::SyncConflicts,
            Some("by_operation"),
            operation.operation_uuid.to_string(),
        ))
        .await?;
    operation.statistics.conflicts = conflicts
        .iter()
        .filter(|c| c.status == shopsync_domain::ConflictStatus::Open)
        .count() as u64;
    operation.statistics.auto_resolved = conflicts
        .iter()
        .filter(|c| c.status == shopsync_domain::ConflictStatus::Resolved)
        .count() as u64;
    Ok(())
}

fn invalid(message: String) -> EngineError {
    EngineError::Store(RepoError::Store(shopsync_store::StoreError::Invalid(
        message,
    )))
}

/// The named rows of an operation; an id that is not one of its rows is an error naming it.
async fn named_rows(
    store: &Store,
    operation: shopsync_domain::OperationId,
    ids: &[shopsync_domain::StagingId],
) -> Result<Vec<ProductsStaging>, EngineError> {
    let rows = rows_by_id(store, ids).await?;
    let unknown: Vec<String> = ids
        .iter()
        .filter(|id| {
            !rows
                .iter()
                .any(|r| r.id == **id && r.sync_operation_id == operation)
        })
        .map(|id| id.to_string())
        .collect();
    if !unknown.is_empty() {
        return Err(invalid(format!(
            "not rows of operation {operation}: {}",
            unknown.join(", ")
        )));
    }
    Ok(rows)
}

/// Completes a held operation once none of its rows waits to be applied or rejected
/// (conflict rows and deletes wait for their own review and do not hold it).
async fn complete_if_decided(
    store: &Store,
    mut operation: SyncOperation,
    actor: &Actor,
) -> Result<SyncOperation, EngineError> {
    // A held operation's deletes wait for a person like its other rows.
    let waiting = operation_rows(store, operation.operation_uuid)
        .await?
        .iter()
        .filter(|r| {
            applies_unattended(r)
                || (r.change_type == ChangeType::Delete
                    && r.status == StagingStatus::Pending
                    && !r.has_conflicts)
        })
        .count();
    if waiting > 0 {
        return Ok(operation);
    }
    let held = operation.clone();
    let reason = format!("every row reviewed (last by {actor})");
    operation.move_to(
        OperationStatus::InProgress,
        Some(reason.clone()),
        Utc::now(),
    )?;
    operation.move_to(OperationStatus::Completed, Some(reason), Utc::now())?;
    crate::sync::save(store, &operation, &held).await?;
    Ok(operation)
}

/// Approves some rows of an operation waiting for approval, or of the open realtime operation
/// of the day: they are applied (deletes included); a held operation completes once no row
/// waits, a realtime one is recounted and stays open until its day is over.
pub async fn approve_rows(
    store: &Store,
    id: shopsync_domain::OperationId,
    rows: &[shopsync_domain::StagingId],
    actor: &Actor,
) -> Result<SyncOperation, EngineError> {
    let operation = load_deciding(store, id).await?;
    if staged_up_sync(&operation) {
        return Err(invalid(format!(
            "operation {id} is an up-sync: it is approved whole (its rows are what it pushes)"
        )));
    }
    let rows = named_rows(store, id, rows).await?;
    if operation.status == OperationStatus::InProgress {
        apply_rows_as(
            store,
            &operation,
            rows,
            actor,
            &mut StageTimes::default(),
            Review::Approved,
        )
        .await?;
        return recount_realtime(store, id).await;
    }
    let stats = apply_rows_as(
        store,
        &operation,
        rows,
        actor,
        &mut StageTimes::default(),
        Review::Approved,
    )
    .await?;
    let mut counted = operation.clone();
    counted.statistics.created += stats.created;
    counted.statistics.updated += stats.updated;
    counted.statistics.deleted += stats.deleted;
    counted.statistics.failed += stats.failed;
    counted.statistics.skipped += stats.skipped;
    counted.updated_at = Utc::now();
    crate::sync::save(store, &counted, &operation).await?;
    complete_if_decided(store, counted, actor).await
}

/// Rejects some rows of an operation waiting for approval, or of the open realtime operation
/// of the day (nothing of them is applied); a held operation completes once no row waits.
pub async fn reject_rows(
    store: &Store,
    id: shopsync_domain::OperationId,
    rows: &[shopsync_domain::StagingId],
    actor: &Actor,
    reason: &str,
) -> Result<SyncOperation, EngineError> {
    let operation = load_deciding(store, id).await?;
    let rows = named_rows(store, id, rows).await?;
    let why = format!("rejected by {actor}: {reason}");
    reject_pending(store, rows, actor, &why, Utc::now()).await?;
    if operation.status == OperationStatus::InProgress {
        return recount_realtime(store, id).await;
    }
    complete_if_decided(store, operation, actor).await
}

/// Cancels an operation that has not ended: it stops at its next checkpoint (a running step
/// notices when it saves), and its rows still waiting are rejected. Nothing applied is undone.
pub async fn cancel_operation(
    store: &Store,
    id: shopsync_domain::OperationId,
    actor: &Actor,
    reason: &str,
) -> Result<SyncOperation, EngineError> {
    let mut operation = load(store, id).await?;
    if operation.operation_type == shopsync_domain::OperationType::Realtime {
        return Err(invalid(format!(
            "operation {id} is a realtime operation: it records the day's webhooks, which keep coming; reject its waiting rows instead (--rows)"
        )));
    }
    let before = operation.clone();
    operation
        .move_to(
            OperationStatus::Cancelled,
            Some(format!("cancelled by {actor}: {reason}")),
            Utc::now(),
        )
        .map_err(|_| {
            invalid(format!(
                "operation {id} is {} and cannot be cancelled",
                shopsync_domain::status::status_name(before.status)
            ))
        })?;
    crate::sync::save(store, &operation, &before).await?;
    let rows = operation_rows(store, id).await?;
    let why = format!("operation cancelled by {actor}");
    reject_pending(store, rows, actor, &why, Utc::now()).await?;
    Ok(operation)
}

/// Puts a failed (or paused) operation back in progress from its checkpoint; the caller runs
/// or enqueues its next step ([`crate::steps::Checkpoint::next_step`]).
pub async fn resume_operation(
    store: &Store,
    id: shopsync_domain::OperationId,
    actor: &Actor,
) -> Result<SyncOperation, EngineError> {
    let mut operation = load(store, id).await?;
    let now = Utc::now();
    let stalled = operation.stalled(now);
    if !stalled
        && !matches!(
            operation.status,
            OperationStatus::Failed | OperationStatus::Paused
        )
    {
        let running = if operation.status == OperationStatus::InProgress {
            match operation.lease_expires_at {
                Some(lease) => format!(" and its worker holds it until {}", lease.to_rfc3339()),
                None => String::new(),
            }
        } else {
            String::new()
        };
        return Err(invalid(format!(
            "operation {id} is {}{running}; only a failed or paused operation, or one in progress whose worker is gone (its lease ran out), resumes",
            shopsync_domain::status::status_name(operation.status)
        )));
    }
    if crate::steps::Checkpoint::of(&operation).is_none() && operation.xorosoft_log_id.is_none() {
        return Err(invalid(format!(
            "operation {id} has no checkpoint to resume from; start a new sync instead"
        )));
    }
    let before = operation.clone();
    if stalled {
        // Still in progress: this worker takes it over.
        operation.status_reason = Some(format!("resumed by {actor} after its worker was gone"));
        operation.updated_at = now;
    } else {
        operation.move_to(
            OperationStatus::InProgress,
            Some(format!("resumed by {actor}")),
            now,
        )?;
    }
    operation.lease_expires_at = Some(now + crate::steps::lease());
    crate::sync::save(store, &operation, &before).await?;
    Ok(operation)
}

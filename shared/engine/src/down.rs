//! Shopify → local. Each remote product is decided against its local product (`decide`) and
//! planned as staged rows ([`Planner`]); when the local product has no unpushed change the
//! row is applied at once (product + version snapshot + staging status in one transaction). A
//! product with local changes not yet pushed is never overwritten: its row waits, flagged as
//! conflicting, for the bidirectional merge or a reviewer.

use crate::apply::{ignore_changed, still};
use crate::error::EngineError;
use crate::mapping::content_from_remote;
use crate::perf::StageTimes;
use chrono::{DateTime, Utc};
use shopsync_domain::fields::changed_fields;
use shopsync_domain::merge::{three_way, Side};
use shopsync_domain::policy::OwnershipPolicy;
use shopsync_domain::product::ProductContent;
use shopsync_domain::staging::{ChangeType, ProductsStaging, ShopifySource, StagingStatus};
use shopsync_domain::{
    Actor, ChangeSource, OperationStatistics, Product, ProductId, ShopifyProductId, StagingId,
    SyncConflict, SyncOperation, VersionStamp,
};
use shopsync_domain::{ChangeFacts, ConflictStatus, GuardRails, PlanSummary, Stage, StatusMachine};
use shopsync_shopify::model::RemoteProduct;
use shopsync_store::item::{Query, WriteOp};
use shopsync_store::{ProductCommit, RepoError, Store, Table};
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
    /// The same merge already waits for a person (its row pending, its conflicts open):
    /// nothing new was recorded.
    Held(ProductId),
    /// Both sides changed the product and every conflicting field was settled by the policy:
    /// the merge was taken locally and waits for the next push.
    Merged(ProductId),
}

impl Ingested {
    /// Adds this outcome to `stats`.
    pub fn count(&self, stats: &mut OperationStatistics) {
        stats.processed += 1;
        match self {
            Ingested::Created(_) => stats.created += 1,
            Ingested::Updated(_) | Ingested::Merged(_) => stats.updated += 1,
            Ingested::Unchanged(_) | Ingested::Stale(_) => stats.unchanged += 1,
            Ingested::Locked(_) | Ingested::Held(_) => stats.skipped += 1,
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
    let mut row = summary_row(operation, change, proposed, actor, now);
    row.proposed = Some(proposed.clone());
    row
}

/// A row as [`row`] makes it, but without its copy of the content: an applied create's, which
/// its product's first version holds (see `ProductsStaging::content_implied`).
fn summary_row(
    operation: &SyncOperation,
    change: Change,
    proposed: &shopsync_domain::product::ProductContent,
    actor: &Actor,
    now: DateTime<Utc>,
) -> ProductsStaging {
    ProductsStaging {
        id: StagingId::generate(),
        source_product_id: change.product,
        sku: proposed.variants.iter().find_map(|v| v.sku.clone()),
        name: proposed.title.clone(),
        change_type: change.change_type,
        change_data: change.change_data,
        base_version: change.base_version,
        proposed: None,
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
        merged: false,
        origin: None,
        contributions: Default::default(),
        rolls_back: None,
        agreed_version: None,
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
    /// content before (absent for a create); conflicts the policy settled on the way.
    Commit(
        Box<ProductCommit>,
        Ingested,
        Option<Box<ProductContent>>,
        Vec<SyncConflict>,
    ),
    /// Nothing to write.
    Done(Ingested),
    /// Store this waiting row and these conflicts (some are open: a person decides), and
    /// mark what they replace superseded.
    Conflict(Box<ProductsStaging>, ProductId, Vec<SyncConflict>, Replaced),
}

/// What a new waiting merge replaces, already marked superseded: the product's older merges
/// waiting for a person, and its open conflicts on fields that now conflict with other
/// values. Each is written only while it is still pending or open.
#[derive(Debug, Default)]
pub(crate) struct Replaced {
    rows: Vec<ProductsStaging>,
    conflicts: Vec<SyncConflict>,
}

impl Replaced {
    /// The conditional writes that mark them superseded.
    pub(crate) fn writes(&self) -> Result<Vec<shopsync_store::WriteOp>, EngineError> {
        let mut writes = Vec::with_capacity(self.rows.len() + self.conflicts.len());
        for row in &self.rows {
            writes.push(Store::replace_write(row, still(StagingStatus::Pending))?);
        }
        for conflict in &self.conflicts {
            writes.push(Store::replace_write(conflict, still(ConflictStatus::Open))?);
        }
        Ok(writes)
    }

    /// Marks them superseded, one by one; one decided meanwhile is left as it is.
    async fn write(&self, store: &Store) -> Result<(), EngineError> {
        for row in &self.rows {
            ignore_changed(store.replace_if(row, still(StagingStatus::Pending)).await)?;
        }
        for conflict in &self.conflicts {
            ignore_changed(
                store
                    .replace_if(conflict, still(ConflictStatus::Open))
                    .await,
            )?;
        }
        Ok(())
    }
}

/// The local product mirroring `source` (timed as diffing).
pub(crate) async fn local_of(
    store: &Store,
    source: Shopify,
    times: &mut StageTimes,
) -> Result<Option<Product>, EngineError> {
    let diffing = Instant::now();
    let found = local_product(store, source.id).await;
    times.add(Stage::Diff, diffing);
    found
}

/// The local product mirroring the Shopify product `shopify`: read by key under the id its
/// Shopify id gives (a consistent read), else found through the Shopify-id index and read
/// again by key (see [`Store::products_of_shopify`]).
pub async fn local_product(
    store: &Store,
    shopify: ShopifyProductId,
) -> Result<Option<Product>, EngineError> {
    Ok(store
        .products_of_shopify(&[(shopify, local_id_for(shopify))], true)
        .await?
        .pop()
        .flatten())
}

/// The local product mirroring each of `sources`, in order, read together (timed as
/// diffing): under the local id its Shopify id gives first (consistent reads by key), and only
/// where none is there through the Shopify-id index, unless `search_index` is false.
pub(crate) async fn locals_of(
    store: &Store,
    sources: &[Shopify],
    search_index: bool,
    times: &mut StageTimes,
) -> Result<Vec<Option<Product>>, EngineError> {
    let diffing = Instant::now();
    let wanted: Vec<(ShopifyProductId, ProductId)> =
        sources.iter().map(|s| (s.id, local_id_for(s.id))).collect();
    let found = store.products_of_shopify(&wanted, search_index).await;
    times.add(Stage::Diff, diffing);
    Ok(found?)
}

/// A product new locally: created from Shopify's `content`, with its first version and an
/// applied row, all in one commit.
pub(crate) fn create_decision(
    operation: &SyncOperation,
    source: Shopify,
    content: ProductContent,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Decision {
    let id = local_id_for(source.id);
    // Stored without its content, which the first version holds: not copied to be dropped.
    let staged = summary_row(
        operation,
        Change {
            product: id,
            change_type: ChangeType::Create,
            change_data: shopsync_domain::ChangeData::new(),
            base_version: 0,
            status: StagingStatus::Applied,
            source,
        },
        &content,
        actor,
        now,
    );
    let mut product = Product::new(id, content, now);
    product.shopify_id = Some(source.id);
    product.shopify_updated_at = Some(source.updated_at);
    // Taken from Shopify: nothing to push back.
    product.last_sync_version = product.version;
    // Every field is new: the row's changes and the first version's changed fields are left
    // implied (listed when read back), not built and stored per field.
    let version = VersionStamp::first(
        &product,
        ChangeSource::Shopify,
        actor.clone(),
        Some(operation.operation_uuid),
    );
    let commit = ProductCommit {
        version: Some(version),
        product,
        expected_version: None,
        staging: Some((staged, None)),
        actor: actor.clone(),
        now,
    };
    Decision::Commit(Box::new(commit), Ingested::Created(id), None, Vec::new())
}

/// Decides what Shopify's content means for the local product `found` (as just read),
/// writing nothing.
pub(crate) async fn decide(
    store: &Store,
    operation: &SyncOperation,
    (source, found): (Shopify, Option<Product>),
    content: &shopsync_domain::product::ProductContent,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Decision, EngineError> {
    let Some(local) = found else {
        return Ok(create_decision(
            operation,
            source,
            content.clone(),
            actor,
            now,
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
    // The same content: unchanged, found without copying the product to diff it.
    if local.content == *content {
        return Ok(Decision::Done(Ingested::Unchanged(local.id)));
    }
    let mut updated = local.clone();
    let changes = updated.change_content(content.clone(), now);
    if changes.is_empty() {
        return Ok(Decision::Done(Ingested::Unchanged(local.id)));
    }
    if local.needs_push() {
        // Local edits not yet in Shopify: never overwritten; merged field by field instead.
        return merge_decision(store, operation, source, content, local, actor, now).await;
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
        version: Some(VersionStamp::new(
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
        Vec::new(),
    ))
}

/// Who settles conflicts by policy.
fn policy_actor() -> Actor {
    Actor::system("policy")
}

/// Both sides changed a product since they last agreed: a three-way merge against the base
/// (the version at `last_sync_version`). Fields changed on one side flow to the other; fields
/// changed on both are settled by the ownership policy where it may, and otherwise wait for
/// a person (the row waits, flagged, and nothing is applied).
async fn merge_decision(
    store: &Store,
    operation: &SyncOperation,
    source: Shopify,
    content: &ProductContent,
    local: Product,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Decision, EngineError> {
    let policy = OwnershipPolicy::default();
    let base = if local.last_sync_version > 0 {
        store
            .product_version(local.id, local.last_sync_version)
            .await?
            .map(|v| v.product_data.to_fields())
    } else {
        None
    };
    let local_fields = local.content.to_fields();
    let remote_fields = content.to_fields();
    let merge = three_way(base.as_ref(), &local_fields, &remote_fields);
    let mut conflicts = Vec::new();
    let (merged, open) = merge.resolve(
        &local_fields,
        &remote_fields,
        Side::Local,
        |path, values| {
            let decision = policy.decide(
                path,
                values,
                Some(local.updated_at),
                Some(source.updated_at),
            );
            let mut conflict = SyncConflict::field(
                operation.operation_uuid,
                local.id,
                path.clone(),
                values.clone(),
                &decision,
                now,
            );
            let winner = decision.winner.filter(|_| decision.auto_resolvable);
            if let Some(side) = winner {
                // Open → resolved is always allowed on a new conflict.
                let _ = conflict.resolve(decision.strategy, side, policy_actor(), now);
            }
            conflicts.push(conflict);
            winner
        },
    );
    let merged = ProductContent::from_fields(&merged).map_err(|e| EngineError::Mapping {
        product: source.id.to_string(),
        reason: format!("the merged product is not valid: {e}"),
    })?;
    let replaced = if open.is_empty() {
        Replaced::default()
    } else {
        match against_waiting(store, &local, &merged, &mut conflicts, now).await? {
            Some(replaced) => replaced,
            None => return Ok(Decision::Done(Ingested::Held(local.id))),
        }
    };
    let mut updated = local.clone();
    let changes = updated.change_content(merged.clone(), now);
    if !open.is_empty() {
        let mut staged = row(
            operation,
            Change {
                product: local.id,
                change_type: ChangeType::Update,
                change_data: changes,
                base_version: local.version,
                status: StagingStatus::Pending,
                source,
            },
            &merged,
            actor,
            now,
        );
        staged.merged = true;
        staged.error = Some(format!(
            "{} field(s) changed on both sides wait for a decision: {}",
            open.len(),
            open.iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return Ok(Decision::Conflict(
            Box::new(staged),
            local.id,
            conflicts,
            replaced,
        ));
    }
    // Everything settled: take the merge locally; it still holds local changes, so the
    // product stays queued for the push (last_sync_version does not move).
    updated.shopify_updated_at = Some(source.updated_at);
    let fields = changed_fields(&changes);
    let change_source = if conflicts.is_empty() {
        ChangeSource::Shopify
    } else {
        ChangeSource::ConflictResolution
    };
    let version = (!changes.is_empty()).then(|| {
        VersionStamp::new(
            fields,
            change_source,
            actor.clone(),
            Some(operation.operation_uuid),
            now,
        )
    });
    let mut staged = row(
        operation,
        Change {
            product: local.id,
            change_type: ChangeType::Update,
            change_data: changes,
            base_version: local.version,
            status: StagingStatus::Applied,
            source,
        },
        &merged,
        actor,
        now,
    );
    staged.merged = true;
    let commit = ProductCommit {
        version,
        product: updated,
        expected_version: Some(local.version),
        staging: Some((staged, None)),
        actor: actor.clone(),
        now,
    };
    Ok(Decision::Commit(
        Box::new(commit),
        Ingested::Merged(local.id),
        Some(Box::new(local.content)),
        conflicts,
    ))
}

/// Weighs a merge that leaves conflicts open against what already waits for a person on the
/// product (dry runs' rows aside). `None`: the same merge waits already (a pending row staged against the current
/// version proposes the same content, and every conflict left open here is open already with
/// the same values), so nothing new is recorded; each sync that saw the product again (a
/// full or bidirectional sync, a reconcile, another webhook) would otherwise record it all
/// once more. Otherwise the conflicts already open with the same values are dropped from
/// `conflicts` (the open ones stand), and what the new merge replaces is returned: the
/// product's older waiting merges, and the open conflicts on its fields with other values.
async fn against_waiting(
    store: &Store,
    local: &Product,
    merged: &ProductContent,
    conflicts: &mut Vec<SyncConflict>,
    now: DateTime<Utc>,
) -> Result<Option<Replaced>, EngineError> {
    let mut query = Query::new(
        shopsync_store::Table::ProductsStaging,
        Some("by_product"),
        local.id.to_string(),
    );
    query.ascending = false;
    query.limit = 50;
    let mut waiting = Vec::new();
    // A dry run's rows are a preview: nothing waits on them, and they are left as they are.
    let mut previews = std::collections::HashMap::new();
    for row in store.query::<ProductsStaging>(query).await?.items {
        if row.status != StagingStatus::Pending || !row.has_conflicts || !row.merged {
            continue;
        }
        let preview = match previews.get(&row.sync_operation_id) {
            Some(preview) => *preview,
            None => {
                let operation = store
                    .get::<SyncOperation>(&shopsync_store::Key::pk(
                        row.sync_operation_id.to_string(),
                    ))
                    .await?;
                let preview = operation.is_some_and(|o| o.dry_run);
                previews.insert(row.sync_operation_id, preview);
                preview
            }
        };
        if !preview {
            waiting.push(row);
        }
    }
    let open = crate::operation::open_conflicts(store, local.id).await?;
    let same_values = |new: &SyncConflict, old: &SyncConflict| {
        old.field_name == new.field_name
            && old.local_value == new.local_value
            && old.remote_value == new.remote_value
    };
    let repeated = |new: &SyncConflict| {
        new.status == ConflictStatus::Open && open.iter().any(|old| same_values(new, old))
    };
    let all_repeated = conflicts
        .iter()
        .filter(|c| c.status == ConflictStatus::Open)
        .all(repeated);
    let same_merge_waits = waiting
        .iter()
        .any(|r| r.base_version == local.version && r.proposed.as_ref() == Some(merged));
    if all_repeated && same_merge_waits {
        return Ok(None);
    }
    conflicts.retain(|c| !repeated(c));
    let reason = "a newer merge of the product replaced it";
    let rows = waiting
        .into_iter()
        .map(|mut row| {
            row.status = StagingStatus::Superseded;
            row.error = Some(reason.to_owned());
            row.reviewed_at = Some(now);
            row
        })
        .collect();
    let conflicts = open
        .into_iter()
        .filter(|old| {
            conflicts.iter().any(|new| {
                new.status == ConflictStatus::Open
                    && new.field_name == old.field_name
                    && !same_values(new, old)
            })
        })
        .filter_map(|mut old| {
            old.status
                .transition(ConflictStatus::Superseded)
                .ok()
                .map(|()| old)
        })
        .collect();
    Ok(Some(Replaced { rows, conflicts }))
}

/// Stores a waiting row and the conflicts found with it.
pub(crate) async fn stage_conflict(
    store: &Store,
    staged: &ProductsStaging,
    conflicts: &[SyncConflict],
    replaced: &Replaced,
    times: &mut StageTimes,
) -> Result<(), EngineError> {
    let staging = Instant::now();
    store.insert(staged).await?;
    if let Some(opened) = conflicts.iter().find(|c| c.status == ConflictStatus::Open) {
        // Before the conflicts: an up-sync that reads the mark but not yet the conflicts
        // (the index lags) holds the product back rather than pushing over them.
        store
            .mark_conflict_opened(staged.source_product_id, opened.detected_at)
            .await?;
    }
    store.insert_all(conflicts).await?;
    replaced.write(store).await?;
    times.add(Stage::Stage, staging);
    Ok(())
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
        let found = local_of(store, source, times).await?;
        match decide(store, operation, (source, found), &content, actor, now).await? {
            Decision::Done(outcome) => return Ok(outcome),
            Decision::Conflict(staged, id, conflicts, replaced) => {
                stage_conflict(store, &staged, &conflicts, &replaced, times).await?;
                return Ok(Ingested::Conflict(id));
            }
            Decision::Commit(commit, outcome, _, conflicts) => {
                let applying = Instant::now();
                let committed = store.commit_product(*commit).await;
                times.add(Stage::Apply, applying);
                match committed {
                    Ok(()) => {
                        store.insert_all(&conflicts).await?;
                        return Ok(outcome);
                    }
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

//! A person settles a conflict: the value they chose becomes a new version of the product
//! (change source `conflict_resolution`), written together with the settled conflict, so a
//! conflict is settled once and its value never lands without it. Once a product's last
//! open conflict is settled, its pushes resume (the up-sync holds back products with open
//! conflicts).

use crate::error::EngineError;
use chrono::{DateTime, Utc};
use serde_json::Value;
use shopsync_domain::status::StatusMachine;
use shopsync_domain::{
    Actor, ChangeSource, ConflictId, ConflictStatus, ConflictType, LockState, ProductContent,
    ResolutionMethod, SyncConflict, VersionStamp,
};
use shopsync_store::item::{Condition, Key, Scalar};
use shopsync_store::{ProductCommit, RepoError, Store, StoreError};

/// Why a conflict was not settled.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No such conflict.
    #[error("no conflict {0}")]
    NotFound(ConflictId),
    /// It was settled already (by someone else, or before); nothing changed.
    #[error("conflict {id} is {status} already")]
    Settled {
        /// The conflict.
        id: ConflictId,
        /// Its status now.
        status: String,
    },
    /// The choice cannot settle this conflict (a manual value that does not fit the field,
    /// merge of a field that cannot merge, a product deleted on one side).
    #[error("{0}")]
    Refused(String),
    /// Another person holds the product's lock.
    #[error("{by} holds this product's lock until {}", until.to_rfc3339())]
    Locked {
        /// The holder.
        by: Actor,
        /// Until when.
        until: DateTime<Utc>,
    },
    /// The product kept changing while the choice was applied (try again).
    #[error("the product kept changing while the conflict was settled; try again")]
    Busy,
    /// The store failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<RepoError> for ResolveError {
    fn from(e: RepoError) -> Self {
        ResolveError::Engine(e.into())
    }
}

/// What a person chose for a conflict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Choice {
    /// How.
    pub method: ResolutionMethod,
    /// The value to keep, for `manual`.
    pub value: Option<Value>,
    /// What they said.
    pub note: Option<String>,
}

/// Which conflicts a list shows: of a product, of an operation, or (without either) those
/// of a status, open by default; every condition given must hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConflictSelection {
    /// Of this status.
    pub status: Option<ConflictStatus>,
    /// Of this product.
    pub product: Option<shopsync_domain::ProductId>,
    /// Found by this operation.
    pub operation: Option<shopsync_domain::OperationId>,
    /// Of this severity.
    pub severity: Option<shopsync_domain::Severity>,
}

impl ConflictSelection {
    /// The status asked for: open when neither a product nor an operation is given.
    fn status(&self) -> Option<ConflictStatus> {
        self.status.or(match (self.product, self.operation) {
            (None, None) => Some(ConflictStatus::Open),
            _ => None,
        })
    }

    /// The index query that finds its candidates (filter them with [`Self::takes`]).
    pub fn query(&self) -> shopsync_store::item::Query {
        use shopsync_store::item::Query;
        use shopsync_store::Table;
        match (self.product, self.operation) {
            (Some(product), _) => Query::new(
                Table::SyncConflicts,
                Some("by_product"),
                product.to_string(),
            ),
            (None, Some(operation)) => Query::new(
                Table::SyncConflicts,
                Some("by_operation"),
                operation.to_string(),
            ),
            (None, None) => Query::new(
                Table::SyncConflicts,
                Some("by_status"),
                shopsync_domain::status::status_name(self.status().unwrap_or(ConflictStatus::Open)),
            ),
        }
    }

    /// Whether a conflict the query found is one the selection takes.
    pub fn takes(&self, conflict: &SyncConflict) -> bool {
        self.status().is_none_or(|s| conflict.status == s)
            && self.product.is_none_or(|p| conflict.product_id == p)
            && self
                .operation
                .is_none_or(|o| conflict.sync_operation_id == o)
            && self.severity.is_none_or(|s| conflict.severity == s)
    }
}

/// Which open conflicts a bulk resolve takes (every condition given must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConflictFilter {
    /// Of this product.
    pub product: Option<shopsync_domain::ProductId>,
    /// Found by this operation.
    pub operation: Option<shopsync_domain::OperationId>,
    /// Of this severity.
    pub severity: Option<shopsync_domain::Severity>,
    /// On this field: a whole path (`variants/k/price`) or its last part (`price`).
    pub field: Option<String>,
}

impl ConflictFilter {
    /// Whether an open conflict is one the filter takes.
    pub fn takes(&self, conflict: &SyncConflict) -> bool {
        self.selection().takes(conflict)
            && self.field.as_deref().is_none_or(|f| {
                conflict.field_name.as_str() == f || conflict.field_name.leaf() == f
            })
    }

    /// The open conflicts of its product, operation and severity.
    fn selection(&self) -> ConflictSelection {
        ConflictSelection {
            status: Some(ConflictStatus::Open),
            product: self.product,
            operation: self.operation,
            severity: self.severity,
        }
    }

    /// The index query that finds its candidates: by product, by operation, or the open
    /// conflicts.
    fn query(&self) -> shopsync_store::item::Query {
        self.selection().query()
    }

    /// The open conflicts it takes, at most `limit` (the index may lag: each is read again
    /// by key when it is settled).
    pub async fn open_conflicts(
        &self,
        store: &Store,
        limit: usize,
    ) -> Result<Vec<ConflictId>, EngineError> {
        let mut query = self.query();
        query.limit = 500;
        let mut found = Vec::new();
        loop {
            let page = store.query::<SyncConflict>(query.clone()).await?;
            found.extend(
                page.items
                    .iter()
                    .filter(|c| self.takes(c))
                    .map(|c| c.conflict_uuid),
            );
            if found.len() >= limit {
                found.truncate(limit);
                return Ok(found);
            }
            match page.next {
                Some(next) => query.start = Some(next),
                None => return Ok(found),
            }
        }
    }
}

/// Open conflicts a bulk resolve reads and settles between two saves of its operation.
const RESOLVE_PAGE: u32 = 100;

/// Where a bulk resolve stands between its pages, kept in its operation's checkpoint: what
/// it settles, as whom, and where its next page of candidates starts.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ResolveCheckpoint {
    /// Which conflicts.
    pub filter: ConflictFilter,
    /// What the person chose.
    pub choice: Choice,
    /// Who.
    pub by: Actor,
    /// Where the page after the one in hand starts (`None` with no page in hand: at the
    /// first; with one: that page is the last).
    pub next: Option<shopsync_store::item::PageToken>,
    /// The conflicts of the page being settled, saved before the first is settled, so a
    /// delivery after a crash settles and counts that page again whole (what the crashed
    /// run settled is found by its resolution naming this operation).
    #[serde(default)]
    pub in_hand: Option<Vec<ConflictId>>,
    /// Why conflicts were skipped (the first [`SKIPPED_REASONS`]).
    #[serde(default)]
    pub skipped_reasons: Vec<String>,
}

/// How many reasons for skipped conflicts an operation keeps.
const SKIPPED_REASONS: usize = 20;

impl ResolveCheckpoint {
    /// The checkpoint an operation holds, if it is a bulk resolve's.
    pub fn of(operation: &shopsync_domain::SyncOperation) -> Option<Self> {
        operation
            .checkpoint
            .as_ref()
            .and_then(|value| serde_json::from_value(value.clone()).ok())
    }
}

/// Where a bulk resolve stands when it returns.
#[derive(Debug)]
pub enum ResolveOutcome {
    /// It ended (completed, or its operation was cancelled or taken over meanwhile).
    Ended(Box<shopsync_domain::SyncOperation>),
    /// It reached its deadline with conflicts still to read: whoever runs it sends its
    /// continuation.
    Stopped(Box<shopsync_domain::SyncOperation>),
}

/// Settles every open conflict `filter` takes as `actor` chose, within operation
/// `operation_id` (recorded as pending by whoever asked), whose statistics count what was
/// resolved (`updated`) and skipped (and why, in its reason).
///
/// It reads the candidates a page at a time and saves the operation after each page (its
/// counts, and where the next page starts), so a crash loses no count and a cancel stops it
/// at the next page. A conflict this operation settled before a crash, found again, counts
/// once (its resolution names the operation). With a deadline it stops there, after at least
/// one page, [`ResolveOutcome::Stopped`]; its continuation goes on from the checkpoint.
pub async fn resolve_all(
    store: &Store,
    operation_id: shopsync_domain::OperationId,
    filter: &ConflictFilter,
    choice: &Choice,
    actor: &Actor,
    deadline: Option<std::time::Instant>,
) -> Result<ResolveOutcome, EngineError> {
    use shopsync_domain::OperationStatus;
    let ended = |op| Ok(ResolveOutcome::Ended(Box::new(op)));
    let mut operation = crate::operation::load_operation(store, operation_id).await?;
    if operation.status.is_terminal() {
        return ended(operation);
    }
    let mut checkpoint = match ResolveCheckpoint::of(&operation) {
        Some(checkpoint) => checkpoint,
        None => ResolveCheckpoint {
            filter: filter.clone(),
            choice: choice.clone(),
            by: actor.clone(),
            next: None,
            in_hand: None,
            skipped_reasons: Vec::new(),
        },
    };
    if operation.status == OperationStatus::Pending {
        let before = operation.clone();
        operation.move_to(OperationStatus::InProgress, None, Utc::now())?;
        operation.checkpoint = serde_json::to_value(&checkpoint).ok();
        operation.lease_expires_at = Some(Utc::now() + crate::operation::lease());
        if let Some(current) =
            crate::operation::save_unless_moved(store, &mut operation, &before, Utc::now()).await?
        {
            return ended(current);
        }
    }
    let ResolveCheckpoint {
        filter,
        choice,
        by: actor,
        ..
    } = checkpoint.clone();
    let mut query = filter.query();
    query.limit = RESOLVE_PAGE;
    let mut pages = 0;
    loop {
        if pages > 0 && deadline.is_some_and(|at| std::time::Instant::now() >= at) {
            tracing::info!(operation = %operation_id, resolved = operation.statistics.updated, "bulk resolve stopped at the deadline");
            return Ok(ResolveOutcome::Stopped(Box::new(operation)));
        }
        let in_hand = match checkpoint.in_hand.take() {
            Some(in_hand) => in_hand,
            None => {
                query.start = checkpoint.next.clone();
                let page = store.query::<SyncConflict>(query.clone()).await?;
                let in_hand: Vec<ConflictId> = page
                    .items
                    .iter()
                    .filter(|c| filter.takes(c))
                    .map(|c| c.conflict_uuid)
                    .collect();
                checkpoint.next = page.next;
                checkpoint.in_hand = Some(in_hand.clone());
                let before = operation.clone();
                operation.checkpoint = serde_json::to_value(&checkpoint).ok();
                if let Some(current) =
                    crate::operation::save_unless_moved(store, &mut operation, &before, Utc::now())
                        .await?
                {
                    return ended(stopped(current));
                }
                checkpoint.in_hand = None;
                in_hand
            }
        };
        let before = operation.clone();
        for id in in_hand {
            operation.statistics.processed += 1;
            match resolve_conflict_in(store, id, &choice, &actor, Utc::now(), Some(operation_id))
                .await
            {
                Ok(_) => operation.statistics.updated += 1,
                Err(ResolveError::Engine(e)) => return Err(e),
                Err(ResolveError::Settled { .. })
                    if settled_by(store, id, operation_id).await? =>
                {
                    // Settled by this operation before a crash cut it short.
                    operation.statistics.updated += 1
                }
                Err(e) => {
                    operation.statistics.skipped += 1;
                    if checkpoint.skipped_reasons.len() < SKIPPED_REASONS {
                        checkpoint.skipped_reasons.push(format!("{id}: {e}"));
                    }
                }
            }
        }
        pages += 1;
        let finished = checkpoint.next.is_none();
        operation.checkpoint = serde_json::to_value(&checkpoint).ok();
        // Held while it works: a worker gone for longer lets a person resume it.
        operation.lease_expires_at = Some(Utc::now() + crate::operation::lease());
        if finished {
            let reason = format!(
                "{} conflict(s) resolved by {actor}, {} skipped{}",
                operation.statistics.updated,
                operation.statistics.skipped,
                if checkpoint.skipped_reasons.is_empty() {
                    String::new()
                } else {
                    format!(": {}", checkpoint.skipped_reasons.join("; "))
                }
            );
            operation.checkpoint = None;
            operation.lease_expires_at = None;
            operation.move_to(OperationStatus::Completed, Some(reason), Utc::now())?;
        }
        if let Some(current) =
            crate::operation::save_unless_moved(store, &mut operation, &before, Utc::now()).await?
        {
            return ended(stopped(current));
        }
        if finished {
            return ended(operation);
        }
    }
}

/// A bulk resolve whose operation moved on under it (cancelled, or another delivery of the
/// same work went on ahead) stops: the operation as it is now.
fn stopped(current: shopsync_domain::SyncOperation) -> shopsync_domain::SyncOperation {
    tracing::info!(operation = %current.operation_uuid, status = %shopsync_domain::status::status_name(current.status), "bulk resolve stopped: its operation moved on");
    current
}

/// Whether operation `operation` settled conflict `id`.
async fn settled_by(
    store: &Store,
    id: ConflictId,
    operation: shopsync_domain::OperationId,
) -> Result<bool, EngineError> {
    let conflict: Option<SyncConflict> = store.get(&Key::pk(id.to_string())).await?;
    Ok(conflict
        .and_then(|c| c.resolution)
        .is_some_and(|r| r.resolved_in == Some(operation)))
}

fn still_open() -> Condition {
    Condition::Eq(
        "status",
        Scalar::from(shopsync_domain::status::status_name(ConflictStatus::Open).as_str()),
    )
}

/// `content` with `field` set to `value` (removed for `None`), or why it does not fit.
fn with_field(
    content: &ProductContent,
    field: &shopsync_domain::FieldPath,
    value: Option<&Value>,
) -> Result<ProductContent, String> {
    let mut fields = content.to_fields();
    match value {
        Some(value) => {
            fields.insert(field.clone(), value.clone());
        }
        None => {
            fields.remove(field);
        }
    }
    ProductContent::from_fields(&fields)
        .map_err(|e| format!("the chosen value does not fit {}: {e}", field.as_str()))
}

/// The side that changed the conflict's field last: the newest local version that changed
/// it against the Shopify state the product last took; `None` when either is unknown.
async fn newest_side(
    store: &Store,
    conflict: &SyncConflict,
) -> Result<Option<shopsync_domain::Side>, ResolveError> {
    let Some(product) = store.product(conflict.product_id).await? else {
        return Ok(None);
    };
    let Some(remote_at) = product.shopify_updated_at else {
        return Ok(None);
    };
    let versions = store
        .product_versions(conflict.product_id, true, 100, None)
        .await?
        .items;
    let local_at = versions
        .iter()
        .find(|v| {
            v.change_source != ChangeSource::Shopify
                && v.changed_fields.contains(&conflict.field_name)
        })
        .map(|v| v.created_at);
    Ok(
        local_at.and_then(|local_at| match local_at.cmp(&remote_at) {
            std::cmp::Ordering::Greater => Some(shopsync_domain::Side::Local),
            std::cmp::Ordering::Less => Some(shopsync_domain::Side::Remote),
            std::cmp::Ordering::Equal => None,
        }),
    )
}

/// Once a product's last open conflict is settled, lets its push go at once: the mark that
/// holds a product back for a while after a conflict is opened (for the index of conflicts
/// to catch up) is cleared, when it was set for this conflict's opening or an earlier one.
async fn release_push(
    store: &Store,
    settled: &SyncConflict,
    now: DateTime<Utc>,
) -> Result<(), ResolveError> {
    if !crate::operation::open_conflicts(store, settled.product_id)
        .await?
        .is_empty()
    {
        return Ok(());
    }
    if let Some(opened) = store.conflict_opened_at(settled.product_id, now).await? {
        if opened <= settled.detected_at + chrono::Duration::seconds(1) {
            store
                .clear_conflict_opened(settled.product_id, opened)
                .await?;
        }
    }
    Ok(())
}

/// Settles conflict `id` as `actor` chose.
pub async fn resolve_conflict(
    store: &Store,
    id: ConflictId,
    choice: &Choice,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<SyncConflict, ResolveError> {
    resolve_conflict_in(store, id, choice, actor, now, None).await
}

/// As [`resolve_conflict`], within bulk resolve `operation` when one is given (its
/// resolution names it).
pub async fn resolve_conflict_in(
    store: &Store,
    id: ConflictId,
    choice: &Choice,
    actor: &Actor,
    now: DateTime<Utc>,
    operation: Option<shopsync_domain::OperationId>,
) -> Result<SyncConflict, ResolveError> {
    for _ in 0..3 {
        let conflict: SyncConflict = store
            .get(&Key::pk(id.to_string()))
            .await?
            .ok_or(ResolveError::NotFound(id))?;
        if conflict.status != ConflictStatus::Open {
            return Err(ResolveError::Settled {
                id,
                status: shopsync_domain::status::status_name(conflict.status),
            });
        }
        if conflict.conflict_type != ConflictType::FieldMismatch {
            return Err(ResolveError::Refused(format!(
                "a {} conflict is about the whole product, not one field: it is settled on its operation (approve or reject its rows), not here",
                shopsync_domain::status::status_name(conflict.conflict_type)
            )));
        }
        let newest = match choice.method {
            ResolutionMethod::NewestWins => newest_side(store, &conflict).await?,
            _ => None,
        };
        let (value, side) = conflict
            .chosen_value(choice.method, choice.value.as_ref(), newest)
            .map_err(ResolveError::Refused)?;
        let mut settled = conflict.clone();
        settled
            .settle(
                choice.method,
                side,
                value.clone(),
                actor.clone(),
                choice.note.clone(),
                now,
            )
            .map_err(EngineError::from)?;
        if let Some(resolution) = settled.resolution.as_mut() {
            resolution.resolved_in = operation;
        }
        let product = store.product(conflict.product_id).await?;
        let Some(product) = product else {
            return Err(ResolveError::Refused(format!(
                "product {} no longer exists locally",
                conflict.product_id
            )));
        };
        if let LockState::Held { by, until } = product.lock_state(now) {
            if &by != actor {
                return Err(ResolveError::Locked { by, until });
            }
        }
        let content = with_field(&product.content, &conflict.field_name, value.as_ref())
            .map_err(ResolveError::Refused)?;
        let mut updated = product.clone();
        let changes = updated.change_content(content, now);
        let written = if changes.is_empty() {
            // The product holds the chosen value already: only the conflict changes.
            match store.replace_if(&settled, still_open()).await {
                Ok(()) => Ok(()),
                Err(shopsync_store::ReplaceError::Changed(current)) => {
                    return Err(ResolveError::Settled {
                        id,
                        status: shopsync_domain::status::status_name(current.status),
                    })
                }
                Err(shopsync_store::ReplaceError::Repo(e)) => Err(e),
            }
        } else {
            let mut commit = ProductCommit {
                version: Some(VersionStamp::new(
                    shopsync_domain::fields::changed_fields(&changes),
                    ChangeSource::ConflictResolution,
                    actor.clone(),
                    Some(conflict.sync_operation_id),
                    now,
                )),
                product: updated,
                expected_version: Some(product.version),
                staging: None,
                actor: actor.clone(),
                now,
            };
            store
                .commit_product_with(&mut commit, &settled, still_open())
                .await
        };
        match written {
            Ok(()) => {
                tracing::info!(conflict = %id, product = %conflict.product_id, by = %actor, method = ?choice.method, "conflict resolved");
                release_push(store, &settled, now).await?;
                return Ok(settled);
            }
            Err(RepoError::Store(StoreError::ConditionFailed { .. })) => {
                let status = store
                    .get::<SyncConflict>(&Key::pk(id.to_string()))
                    .await?
                    .map(|c| shopsync_domain::status::status_name(c.status))
                    .unwrap_or_else(|| "gone".into());
                return Err(ResolveError::Settled { id, status });
            }
            Err(RepoError::Locked(shopsync_domain::LockError::HeldByOther { by, until })) => {
                return Err(ResolveError::Locked { by, until })
            }
            // The product moved between the read and the write: decide again on it.
            Err(RepoError::VersionConflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ResolveError::Busy)
}

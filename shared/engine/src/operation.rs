//! An operation's record and what every layer reads of it: loading and saving it (a save is
//! conditional on the status it was read in), its lease, its checkpoint (where its next step
//! starts), its rows and its open conflicts, progress events and its performance log.

use crate::error::EngineError;
use crate::perf::{emf_line, performance_log, StageTimes};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shopsync_domain::staging::ProductsStaging;
use shopsync_domain::{
    OperationId, OperationStatus, OperationType, PlanSummary, Stage, SyncDirection, SyncOperation,
};
use shopsync_shopify::ClientCounters;
use shopsync_store::item::{Condition, Key, Query, Scalar};
use shopsync_store::{ReplaceError, RepoError, Store, Table};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a step run here (the CLI, `serve`) works before it saves its checkpoint and the
/// next one starts: what a crash can cost at most, since every step ends in a checkpoint.
pub const LOCAL_STEP: Duration = Duration::from_secs(30);

/// How long an operation's lease lasts from its last step: longer than any step (a Lambda's
/// at most) and the wait for the next step's message.
pub fn lease() -> chrono::Duration {
    chrono::Duration::minutes(10)
}

/// Where an operation's next step starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// A full read: Shopify's bulk export is started (`bulk`: its id) or being waited for.
    Export {
        /// The bulk operation, once started.
        bulk: Option<String>,
    },
    /// A full read: the export file, of which `done` products are planned.
    Read {
        /// The bulk operation.
        bulk: String,
        /// The file (`None`: the export matched nothing).
        url: Option<String>,
        /// Products in the file.
        objects: u64,
        /// Products already planned.
        done: u64,
    },
    /// An incremental read: pages of products updated after `since`, from `cursor`.
    Pages {
        /// The `updated_at` the filter starts from (overlap included).
        since: DateTime<Utc>,
        /// Where the next page starts.
        cursor: Option<String>,
    },
    /// A reconcile: the export file is read again for which products Shopify still has;
    /// local products it lacks become conflicts for a person (never silent deletes).
    Missing {
        /// The bulk operation.
        bulk: String,
        /// The file.
        url: Option<String>,
        /// Products in the file.
        objects: u64,
    },
    /// An up-sync, before anything is sent: products with local changes staged as rows
    /// (what it will push), a page at a time from `after`; then judged by the rails.
    StageUp {
        /// Where the next page of the pending-push index starts.
        after: Option<shopsync_store::PageToken>,
    },
    /// An up-sync: products with local changes, a page at a time from `after`.
    Push {
        /// Where the next page of the pending-push index starts.
        after: Option<shopsync_store::PageToken>,
        /// The last product that could not be pushed, and why.
        last_failure: Option<String>,
    },
    /// Everything is planned: judge, then apply (and push, both ways) or wait for approval.
    Conclude,
}

/// Shopify calls across steps (each step may run in another process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiTotals {
    /// Requests.
    pub calls: u64,
    /// Cost points.
    pub cost: f64,
    /// THROTTLED answers.
    pub throttled: u64,
    /// Retries.
    pub retries: u64,
    /// Waiting for the bucket, in ms.
    pub throttle_wait_ms: u64,
}

impl ApiTotals {
    pub(crate) fn add(&mut self, before: ClientCounters, after: ClientCounters) {
        self.calls += after.api_calls.saturating_sub(before.api_calls);
        self.cost += (after.cost_used - before.cost_used).max(0.0);
        self.throttled += after.throttled.saturating_sub(before.throttled);
        self.retries += after.retries.saturating_sub(before.retries);
        self.throttle_wait_ms += u64::try_from(
            after
                .throttle_wait
                .saturating_sub(before.throttle_wait)
                .as_millis(),
        )
        .unwrap_or(u64::MAX);
    }

    fn as_counters(&self) -> ClientCounters {
        ClientCounters {
            api_calls: self.calls,
            cost_used: self.cost,
            throttled: self.throttled,
            retries: self.retries,
            throttle_wait: Duration::from_millis(self.throttle_wait_ms),
        }
    }
}

/// An operation's resume point, stored in [`SyncOperation::checkpoint`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The step that runs next (from 1).
    pub next_step: u32,
    /// Where it starts.
    pub phase: Phase,
    /// The plan so far, for the rails.
    pub summary: PlanSummary,
    /// Time per stage so far, in ms.
    pub stage_ms: BTreeMap<Stage, u64>,
    /// Time in steps so far, in ms.
    pub elapsed_ms: u64,
    /// Shopify calls so far.
    pub api: ApiTotals,
    /// An up-sync's last product not pushed, and why (for the operation's reason).
    #[serde(default)]
    pub push_failure: Option<String>,
    /// The local catalog was empty when the operation opened, and it neither needs approval
    /// nor is a dry run: no rail can hold a create (creates never count toward the changed
    /// share, and the stock and price rails judge updates), so creates are applied as they
    /// are planned, each with its applied staging row, instead of being staged pending and
    /// written a second time at the end.
    #[serde(default)]
    pub import: bool,
    /// Rows staged pending so far (counted when `import`: none means nothing to apply).
    #[serde(default)]
    pub pending: u64,
    /// An up-sync that staged what it pushes (every one opened now): its push takes only
    /// the staged products, at the version staged. An up-sync checkpointed without it
    /// pushes what is pending, as it began.
    #[serde(default)]
    pub staged_up: bool,
    /// Why the rails hold the operation (an up-sync judged after staging).
    #[serde(default)]
    pub held: Option<String>,
}

impl Checkpoint {
    pub(crate) fn new(phase: Phase, summary: PlanSummary) -> Self {
        Self {
            next_step: 1,
            phase,
            summary,
            stage_ms: BTreeMap::new(),
            elapsed_ms: 0,
            api: ApiTotals::default(),
            push_failure: None,
            import: false,
            pending: 0,
            staged_up: false,
            held: None,
        }
    }

    /// The checkpoint of an operation, if it has one this build can read.
    pub fn of(operation: &SyncOperation) -> Option<Checkpoint> {
        operation
            .checkpoint
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    pub(crate) fn store_in(&self, operation: &mut SyncOperation) {
        operation.checkpoint = serde_json::to_value(self).ok();
    }
}

fn not_found(id: OperationId) -> EngineError {
    EngineError::Store(RepoError::NotFound {
        table: Table::SyncOperations,
        key: id.to_string(),
    })
}

/// Loads an operation.
pub async fn load_operation(store: &Store, id: OperationId) -> Result<SyncOperation, EngineError> {
    store
        .get::<SyncOperation>(&Key::pk(id.to_string()))
        .await?
        .ok_or_else(|| not_found(id))
}

/// Stores `operation` if the stored one is still in `previous`'s status.
pub(crate) async fn save(
    store: &Store,
    operation: &SyncOperation,
    previous: &SyncOperation,
) -> Result<(), EngineError> {
    let expected = Condition::Eq(
        "status",
        Scalar::from(shopsync_domain::status::status_name(previous.status).as_str()),
    );
    // Whether it can be rolled back follows from what it did and where it stands.
    let mut operation = operation.clone();
    operation.is_rollbackable = operation.can_roll_back();
    match store.replace_if(&operation, expected).await {
        Ok(()) => Ok(()),
        Err(ReplaceError::Changed(current)) => Err(EngineError::Store(
            shopsync_store::RepoError::Store(shopsync_store::StoreError::Invalid(format!(
                "operation {} is now {} (cancelled or taken over)",
                current.operation_uuid,
                shopsync_domain::status::status_name(current.status)
            ))),
        )),
        Err(ReplaceError::Repo(e)) => Err(e.into()),
    }
}

/// The condition that an operation is still as `previous` was: its status and `updated_at`
/// (every save moves `updated_at` strictly on).
pub(crate) fn unmoved(previous: &SyncOperation) -> Condition {
    Condition::And(vec![
        Condition::Eq(
            "status",
            Scalar::from(shopsync_domain::status::status_name(previous.status).as_str()),
        ),
        Condition::Eq(
            "updated_at",
            Scalar::from(previous.updated_at.timestamp_millis()),
        ),
    ])
}

/// Stores `operation` if the stored one is still as `previous` left it (its status and its
/// `updated_at`, which this save moves on by at least a millisecond): `Ok(None)` when saved,
/// `Ok(Some(current))` when another writer (a cancel, a second delivery of the same work)
/// moved it on meanwhile. For work saved piece by piece, where only one runner's count of a
/// piece may land.
pub(crate) async fn save_unless_moved(
    store: &Store,
    operation: &mut SyncOperation,
    previous: &SyncOperation,
    now: DateTime<Utc>,
) -> Result<Option<SyncOperation>, EngineError> {
    let expected = unmoved(previous);
    operation.updated_at = now.max(previous.updated_at + chrono::Duration::milliseconds(1));
    operation.is_rollbackable = operation.can_roll_back();
    match store.replace_if(&*operation, expected).await {
        Ok(()) => Ok(None),
        Err(ReplaceError::Changed(current)) => Ok(Some(*current)),
        Err(ReplaceError::Repo(e)) => Err(e.into()),
    }
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

/// Whether a product has a conflict waiting for a person (its push would overwrite the
/// Shopify value nobody has decided on yet).
pub async fn has_open_conflicts(
    store: &Store,
    product: shopsync_domain::ProductId,
) -> Result<bool, EngineError> {
    Ok(!open_conflicts(store, product).await?.is_empty())
}

/// The open conflicts of `product`.
pub async fn open_conflicts(
    store: &Store,
    product: shopsync_domain::ProductId,
) -> Result<Vec<shopsync_domain::SyncConflict>, EngineError> {
    let conflicts: Vec<shopsync_domain::SyncConflict> = store
        .query_all(Query::new(
            Table::SyncConflicts,
            Some("by_product"),
            product.to_string(),
        ))
        .await?;
    Ok(conflicts
        .into_iter()
        .filter(|c| c.status == shopsync_domain::ConflictStatus::Open)
        .collect())
}

/// Stores an operation's performance log and emits it as an EMF line (at info level, under
/// the `shopsync::metrics` target).
pub async fn record_performance(
    store: &Store,
    operation: &SyncOperation,
    times: &StageTimes,
    started_at: std::time::Instant,
    before: shopsync_shopify::ClientCounters,
    after: shopsync_shopify::ClientCounters,
) -> Result<shopsync_domain::SyncPerformanceLog, EngineError> {
    let log = performance_log(
        operation.operation_uuid,
        times,
        started_at.elapsed(),
        operation.statistics.processed,
        before,
        after,
        Utc::now(),
    );
    store.insert(&log).await?;
    tracing::info!(target: "shopsync::metrics", "{}", emf_line(&log, operation));
    Ok(log)
}

/// The performance log of an operation, if one was recorded.
pub async fn performance_of(
    store: &Store,
    operation: shopsync_domain::OperationId,
) -> Result<Option<shopsync_domain::SyncPerformanceLog>, EngineError> {
    let mut query = shopsync_store::item::Query::new(
        shopsync_store::Table::SyncPerformanceLogs,
        Some("by_operation"),
        operation.to_string(),
    );
    query.ascending = false;
    query.limit = 1;
    Ok(store.query(query).await?.items.into_iter().next())
}

/// Client counters as they would have been at the operation's start, had all its steps run
/// on this client (so a performance log over "now − before" covers every step).
pub(crate) fn rebase(now: ClientCounters, totals: ApiTotals) -> ClientCounters {
    let spent = totals.as_counters();
    ClientCounters {
        api_calls: now.api_calls.saturating_sub(spent.api_calls),
        cost_used: now.cost_used - spent.cost_used,
        throttled: now.throttled.saturating_sub(spent.throttled),
        retries: now.retries.saturating_sub(spent.retries),
        throttle_wait: now.throttle_wait.saturating_sub(spent.throttle_wait),
    }
}

/// As `progress`, counting `unit`s.
pub(crate) fn progress_in(
    operation: &SyncOperation,
    phase: &'static str,
    done: u64,
    total: Option<u64>,
    unit: &'static str,
) {
    tracing::info!(
        target: "shopsync::progress",
        operation = %operation.operation_uuid,
        phase,
        done,
        total = total.unwrap_or(0),
        unit,
        "progress"
    );
}

/// An invalid request about an operation (refused with `message`).
pub(crate) fn invalid(message: String) -> EngineError {
    EngineError::Store(RepoError::Store(shopsync_store::StoreError::Invalid(
        message,
    )))
}

/// The last completed down-sync: when it started, and the catalog's size as the newest one
/// that counted it left it (the size the rails judge a share of changes against); records
/// from before sizes were kept fall back to what the last full read saw.
pub(crate) async fn last_down(store: &Store) -> Result<(Option<DateTime<Utc>>, u64), EngineError> {
    let mut query =
        shopsync_store::item::Query::new(Table::SyncOperations, Some("by_created"), "operation");
    query.ascending = false;
    query.limit = 200;
    let recent: Vec<SyncOperation> = store.query(query).await?.items;
    // An import is an operation of the same types but reads no Shopify
    // catalog, so it never moves the incremental cursor.
    let down = |op: &&SyncOperation| {
        op.xorosoft_log_id.is_none()
            && op.sync_direction != SyncDirection::Up
            && op.status == OperationStatus::Completed
            && !op.dry_run
            && matches!(
                op.operation_type,
                OperationType::FullSync | OperationType::IncrementalSync
            )
    };
    let since = recent.iter().find(down).and_then(|op| op.started_at);
    let counted = recent.iter().filter(down).find_map(|op| op.catalog_size);
    let catalog = counted
        .or_else(|| {
            recent
                .iter()
                .filter(down)
                .find(|op| op.operation_type == OperationType::FullSync)
                .map(|op| op.statistics.processed)
        })
        .unwrap_or(0);
    Ok((since, catalog))
}

/// The default overlap window of an incremental read: it reads what changed since the last
/// down-sync began, less this (a change saved while that sync read is not missed).
pub fn default_overlap() -> chrono::Duration {
    chrono::Duration::minutes(5)
}

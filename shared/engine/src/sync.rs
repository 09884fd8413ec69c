//! Running whole syncs in this process (the CLI, `serve`, tests): the steps of
//! [`crate::steps`] one after another; plus the pieces every operation shares (saving with a
//! status condition, performance logs).

use crate::error::EngineError;
use crate::perf::{emf_line, performance_log, StageTimes};
use crate::steps::{Stepper, SyncKind};
use chrono::Utc;
use shopsync_domain::{Actor, GuardRails, SyncDirection, SyncOperation};
use shopsync_shopify::AdminClient;
use shopsync_store::item::{Condition, Scalar};
use shopsync_store::{ReplaceError, Store};

/// Runs a full down-sync in this process: plan every product (bulk export), judge the plan
/// with the guard rails, then apply it, or leave the operation awaiting approval with the
/// reasons. The operation is stored with its statistics and performance log.
pub async fn run_full_down(
    store: &Store,
    client: &AdminClient,
    actor: &Actor,
    rails: &GuardRails,
) -> Result<SyncOperation, EngineError> {
    run_full(store, client, actor, rails, RunOptions::default()).await
}

/// How an operation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Down, or bidirectional (down with merges, then push).
    pub direction: SyncDirection,
    /// Plan and stage only: the rows show what would change; nothing is applied, pushed, or
    /// recorded as a conflict.
    pub dry_run: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            direction: SyncDirection::Down,
            dry_run: false,
        }
    }
}

/// Runs a full bidirectional sync: the down-sync's plan, where a product changed on both
/// sides is merged field by field against its base (conflicts the ownership policy settles
/// are resolved and recorded; the rest wait for a person and hold that product back), then,
/// once applied, every product with local changes is pushed to Shopify.
pub async fn run_bidirectional(
    store: &Store,
    client: &AdminClient,
    actor: &Actor,
    rails: &GuardRails,
) -> Result<SyncOperation, EngineError> {
    let options = RunOptions {
        direction: SyncDirection::Bidirectional,
        dry_run: false,
    };
    run_full(store, client, actor, rails, options).await
}

/// Runs a full sync (down or bidirectional, for real or as a dry run) in this process: the
/// same steps a worker chains through the queue, one after another.
pub async fn run_full(
    store: &Store,
    client: &AdminClient,
    actor: &Actor,
    rails: &GuardRails,
    options: RunOptions,
) -> Result<SyncOperation, EngineError> {
    Stepper {
        store,
        client,
        actor,
        rails,
    }
    .run_to_end(SyncKind::Full {
        direction: options.direction,
        dry_run: options.dry_run,
    })
    .await
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
    match store.replace_if(operation, expected).await {
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

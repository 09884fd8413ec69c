//! Running a down-sync: page through Shopify, ingest each product, count, and checkpoint the
//! cursor so a step cut short (a Lambda deadline) continues where it stopped.

use crate::down::{ingest, Ingested, Shopify};
use crate::mapping::content_from_remote;
use crate::plan::{Conclusion, Planned, Planner};
use shopsync_domain::{GuardRails, PlanSummary};

/// Products decided and committed together in a full down-sync.
const BATCH: usize = 64;
use crate::error::EngineError;
use crate::perf::{emf_line, performance_log, StageTimes};
use chrono::Utc;
use shopsync_domain::Stage;
use shopsync_domain::{
    Actor, OperationStatistics, OperationStatus, OperationType, SyncDirection, SyncOperation,
};
use shopsync_shopify::cost::ProductPageShape;
use shopsync_shopify::ops::ProductsPageRequest;
use shopsync_shopify::AdminClient;
use shopsync_store::item::{Condition, Scalar};
use shopsync_store::{ReplaceError, Store};
use tokio::time::Instant;

/// Where a down-sync step stopped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepOutcome {
    /// The cursor to continue from; `None` when the catalog was read to the end.
    pub cursor: Option<String>,
    /// What this step did.
    pub stats: OperationStatistics,
    /// Pages read.
    pub pages: u64,
    /// Time per stage.
    pub times: StageTimes,
}

/// Reads pages from `cursor` until the end or `deadline`, ingesting every product into
/// `operation`. Re-running a step from the same cursor is harmless: products already taken
/// come out stale or unchanged.
pub async fn down_step(
    store: &Store,
    client: &AdminClient,
    operation: &SyncOperation,
    cursor: Option<String>,
    actor: &Actor,
    deadline: Instant,
) -> Result<StepOutcome, EngineError> {
    let shape = ProductPageShape::default();
    let mut request = ProductsPageRequest {
        after: cursor,
        updated_after: None,
        shape,
    };
    let mut outcome = StepOutcome::default();
    loop {
        let fetching = std::time::Instant::now();
        let page = client.products_page(&request).await?;
        outcome.times.add(Stage::Fetch, fetching);
        outcome.pages += 1;
        for mut remote in page.items {
            if !remote.variants_complete() {
                let fetching = std::time::Instant::now();
                client
                    .complete_variants(&mut remote, shape.levels_first)
                    .await?;
                outcome.times.add(Stage::Fetch, fetching);
            }
            let done: Ingested = ingest(
                store,
                operation,
                &remote,
                actor,
                Utc::now(),
                &mut outcome.times,
            )
            .await?;
            done.count(&mut outcome.stats);
        }
        match page.next {
            Some(next) => {
                request.after = Some(next.clone());
                outcome.cursor = Some(next);
                if Instant::now() >= deadline {
                    return Ok(outcome);
                }
            }
            None => {
                outcome.cursor = None;
                return Ok(outcome);
            }
        }
    }
}

/// Reads the whole catalog with a bulk export (outside the cost bucket: a page-by-page read
/// of nested variants and levels runs at a few products per second on the Standard plan) and
/// plans every product: changes become pending rows, summed into `summary` for the rails.
pub async fn down_bulk_plan(
    store: &Store,
    client: &AdminClient,
    operation: &SyncOperation,
    actor: &Actor,
    rails: &GuardRails,
    summary: &mut PlanSummary,
) -> Result<StepOutcome, EngineError> {
    let mut outcome = StepOutcome::default();
    let fetching = std::time::Instant::now();
    let mut export = client
        .bulk_export_products(None, std::time::Duration::from_secs(3600))
        .await?;
    outcome.times.add(Stage::Fetch, fetching);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let fetching = std::time::Instant::now();
        let next = export.next_product().await?;
        outcome.times.add(Stage::Fetch, fetching);
        let finished = next.is_none();
        if let Some(remote) = next {
            summary.catalog_size += 1;
            let content = content_from_remote(&remote)?;
            let source = Shopify {
                id: remote.id,
                updated_at: remote.updated_at,
            };
            batch.push((source, content));
        }
        if batch.len() >= BATCH || (finished && !batch.is_empty()) {
            let planner = Planner {
                store,
                operation,
                actor,
                rails,
            };
            let planned = planner
                .plan_batch(
                    std::mem::take(&mut batch),
                    Utc::now(),
                    summary,
                    &mut outcome.times,
                )
                .await?;
            for p in &planned {
                if let Planned::Settled(ingested) = p {
                    ingested.count(&mut outcome.stats);
                }
            }
        }
        if finished {
            break;
        }
    }
    outcome.pages = 1;
    Ok(outcome)
}

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

/// Runs a full sync (down or bidirectional, for real or as a dry run).
pub async fn run_full(
    store: &Store,
    client: &AdminClient,
    actor: &Actor,
    rails: &GuardRails,
    options: RunOptions,
) -> Result<SyncOperation, EngineError> {
    let now = Utc::now();
    let name = match (options.direction, options.dry_run) {
        (SyncDirection::Bidirectional, false) => "full bidirectional sync",
        (SyncDirection::Bidirectional, true) => "full bidirectional sync (dry run)",
        (_, false) => "full down-sync",
        (_, true) => "full down-sync (dry run)",
    };
    let mut operation = SyncOperation::new(
        name,
        OperationType::FullSync,
        options.direction,
        actor.clone(),
        now,
    );
    operation.dry_run = options.dry_run;
    store.insert(&operation).await?;
    let started_at = std::time::Instant::now();
    let counters_before = client.counters();
    let pending = operation.clone();
    operation.move_to(OperationStatus::InProgress, None, Utc::now())?;
    save(store, &operation, &pending).await?;
    let started = operation.clone();
    let mut summary = PlanSummary::default();
    let planned = down_bulk_plan(store, client, &operation, actor, rails, &mut summary).await;
    let step = match planned {
        Ok(step) => step,
        Err(e) => {
            operation.move_to(OperationStatus::Failed, Some(e.to_string()), Utc::now())?;
            save(store, &operation, &started).await?;
            return Err(e);
        }
    };
    operation.statistics.absorb(&step.stats);
    Conclusion {
        store,
        client,
        actor,
        rails,
        started,
        started_at,
        counters_before,
    }
    .conclude(operation, &summary, step.times)
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

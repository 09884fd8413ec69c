//! Incremental down-sync: only products Shopify updated since the last down-sync started,
//! less an overlap window (second-granular `updated_at`, clock skew, writes in flight). The
//! overlap re-reads a few products; they come out stale or unchanged, never twice applied.
//! No cursor is stored: the last down operation's start is the cursor.

use crate::down::Shopify;
use crate::error::EngineError;
use crate::mapping::content_from_remote;
use crate::perf::StageTimes;
use crate::plan::{Conclusion, Planned, Planner};
use crate::sync::{run_full, save, RunOptions};
use chrono::{DateTime, Duration, Utc};
use shopsync_domain::{
    Actor, GuardRails, OperationStatus, OperationType, PlanSummary, Stage, SyncDirection,
    SyncOperation,
};
use shopsync_shopify::cost::ProductPageShape;
use shopsync_shopify::ops::ProductsPageRequest;
use shopsync_shopify::AdminClient;
use shopsync_store::item::Query;
use shopsync_store::{Store, Table};

/// The default overlap window.
pub fn default_overlap() -> Duration {
    Duration::minutes(5)
}

/// The last completed down-sync (full or incremental): when it started, and how many
/// products the last full one saw (the catalog size for the rails).
async fn last_down(store: &Store) -> Result<(Option<DateTime<Utc>>, u64), EngineError> {
    let mut query = Query::new(Table::SyncOperations, Some("by_created"), "operation");
    query.ascending = false;
    query.limit = 200;
    let recent: Vec<SyncOperation> = store.query(query).await?.items;
    let down = |op: &&SyncOperation| {
        op.sync_direction == SyncDirection::Down
            && op.status == OperationStatus::Completed
            && matches!(
                op.operation_type,
                OperationType::FullSync | OperationType::IncrementalSync
            )
    };
    let since = recent.iter().find(down).and_then(|op| op.started_at);
    let catalog = recent
        .iter()
        .filter(down)
        .find(|op| op.operation_type == OperationType::FullSync)
        .map(|op| op.statistics.processed)
        .unwrap_or(0);
    Ok((since, catalog))
}

/// Runs an incremental down-sync (a full one when there was none before).
pub async fn run_incremental_down(
    store: &Store,
    client: &AdminClient,
    actor: &Actor,
    rails: &GuardRails,
    overlap: Duration,
) -> Result<SyncOperation, EngineError> {
    run_incremental_down_with(store, client, actor, rails, overlap, false).await
}

/// Runs an incremental down-sync, or previews it (`dry_run`: rows staged, nothing applied).
pub async fn run_incremental_down_with(
    store: &Store,
    client: &AdminClient,
    actor: &Actor,
    rails: &GuardRails,
    overlap: Duration,
    dry_run: bool,
) -> Result<SyncOperation, EngineError> {
    let (since, catalog) = last_down(store).await?;
    let Some(since) = since else {
        let options = RunOptions {
            direction: SyncDirection::Down,
            dry_run,
        };
        return run_full(store, client, actor, rails, options).await;
    };
    let mut operation = SyncOperation::new(
        if dry_run {
            "incremental down-sync (dry run)"
        } else {
            "incremental down-sync"
        },
        OperationType::IncrementalSync,
        SyncDirection::Down,
        actor.clone(),
        Utc::now(),
    );
    operation.dry_run = dry_run;
    operation.move_to(OperationStatus::InProgress, None, Utc::now())?;
    store.insert(&operation).await?;
    let started = operation.clone();
    let started_at = std::time::Instant::now();
    let counters_before = client.counters();
    let mut times = StageTimes::default();
    let mut summary = PlanSummary {
        catalog_size: catalog,
        ..PlanSummary::default()
    };
    let shape = ProductPageShape::default();
    let mut request = ProductsPageRequest {
        after: None,
        updated_after: Some(since - overlap),
        shape,
    };
    let planner = Planner {
        store,
        operation: &operation,
        actor,
        rails,
    };
    let mut stats = shopsync_domain::OperationStatistics::default();
    loop {
        let fetching = std::time::Instant::now();
        let page = match client.products_page(&request).await {
            Ok(page) => page,
            Err(e) => {
                let mut failed = started.clone();
                failed.move_to(OperationStatus::Failed, Some(e.to_string()), Utc::now())?;
                save(store, &failed, &started).await?;
                return Err(e.into());
            }
        };
        let mut items = Vec::with_capacity(page.items.len());
        for mut remote in page.items {
            if !remote.variants_complete() {
                client
                    .complete_variants(&mut remote, shape.levels_first)
                    .await?;
            }
            let content = content_from_remote(&remote)?;
            items.push((
                Shopify {
                    id: remote.id,
                    updated_at: remote.updated_at,
                },
                content,
            ));
        }
        times.add(Stage::Fetch, fetching);
        for planned in planner
            .plan_batch(items, Utc::now(), &mut summary, &mut times)
            .await?
        {
            if let Planned::Settled(ingested) = planned {
                ingested.count(&mut stats);
            }
        }
        match page.next {
            Some(next) => request.after = Some(next),
            None => break,
        }
    }
    summary.catalog_size = summary.catalog_size.max(summary.changes);
    operation.statistics.absorb(&stats);
    Conclusion {
        store,
        client,
        actor,
        rails,
        started,
        started_at,
        counters_before,
    }
    .conclude(operation, &summary, times)
    .await
}

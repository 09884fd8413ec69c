//! The `sync-worker` function: an SQS batch in, each job run by the engine's worker, an SQS
//! batch response out naming only the messages that failed (the event source mapping needs
//! `ReportBatchItemFailures`). Messages that fail too often go to the dead-letter queue by
//! the queue's redrive policy; their operations are marked failed with the reason.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use shopsync_engine::jobs::{Delivered, Worker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The deliveries of an SQS event. A record without an id cannot be named in a batch
/// response; it is skipped with an error log (SQS always sends ids).
pub fn deliveries(event: &SqsEvent) -> Vec<Delivered> {
    event
        .records
        .iter()
        .filter_map(|record| {
            let Some(message_id) = record.message_id.clone() else {
                tracing::error!("an SQS record without a message id");
                return None;
            };
            Some(Delivered {
                message_id,
                body: record.body.clone().unwrap_or_default(),
                receive_count: record
                    .attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
            })
        })
        .collect()
}

/// The least time a step keeps before the invocation's deadline to save its checkpoint,
/// enqueue its successor and answer.
pub const DEFAULT_RESERVE: Duration = Duration::from_secs(30);

/// The reserve from `SHOPSYNC_STEP_RESERVE_SECS` (default 30 s; tests set it low to force
/// continuations without waiting).
pub fn reserve_from_env(
    env: &dyn shopsync_runtime::Env,
) -> Result<Duration, shopsync_runtime::SettingsError> {
    match env.var("SHOPSYNC_STEP_RESERVE_SECS") {
        None => Ok(DEFAULT_RESERVE),
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or(shopsync_runtime::SettingsError::Invalid {
                name: "SHOPSYNC_STEP_RESERVE_SECS",
                reason: format!("`{v}` is not a number of seconds"),
            }),
    }
}

/// When a step should stop working so that it can save its checkpoint, enqueue its successor
/// and answer before the invocation's deadline (`deadline_ms`: Lambda's, epoch milliseconds):
/// a quarter of the time left, at least 30 s, is kept for that.
pub fn step_deadline(deadline_ms: u64, now: SystemTime) -> Instant {
    step_deadline_with(deadline_ms, now, DEFAULT_RESERVE)
}

/// As [`step_deadline`], keeping a quarter of the time left but at least `reserve`.
pub fn step_deadline_with(deadline_ms: u64, now: SystemTime, reserve: Duration) -> Instant {
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    let margin = (left / 4).max(reserve);
    Instant::now() + left.saturating_sub(margin)
}

/// Runs the batch until `deadline` and answers with the failed message ids.
pub async fn handle(
    worker: &Worker,
    event: &SqsEvent,
    max_receives: u32,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    let report = worker
        .handle_batch(&deliveries(event), max_receives, deadline)
        .await;
    tracing::info!(
        ran = report.ran,
        replayed = report.replayed,
        poison = report.poison,
        failed = report.failed.len(),
        "batch done"
    );
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = report
        .failed
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

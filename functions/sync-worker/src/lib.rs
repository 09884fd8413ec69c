//! The `sync-worker` function: an SQS batch in, each job run by the engine's worker, an SQS
//! batch response out naming only the messages that failed (the event source mapping needs
//! `ReportBatchItemFailures`). Messages that fail too often go to the dead-letter queue by
//! the queue's redrive policy; their operations are marked failed with the reason.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use shopsync_engine::jobs::Worker;
use std::time::Instant;

pub use shopsync_runtime::sqs::deliveries;
pub use shopsync_runtime::{reserve_from_env, step_deadline, step_deadline_with, DEFAULT_RESERVE};

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
    shopsync_runtime::sqs::batch_response(report.failed)
}

//! The `sync-worker` function: an SQS batch in, each job run by the engine's worker, an SQS
//! batch response out naming only the messages that failed (the event source mapping needs
//! `ReportBatchItemFailures`). Messages that fail too often go to the dead-letter queue by
//! the queue's redrive policy; their operations are marked failed with the reason.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use shopsync_engine::jobs::{Delivered, Worker};
use std::time::Instant;

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

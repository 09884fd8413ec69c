//! SQS batches as the functions that consume a queue see them: the deliveries of an event,
//! and the batch response naming only the messages that failed (the event source mapping
//! needs `ReportBatchItemFailures`).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use shopsync_engine::jobs::Delivered;

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

/// The batch response naming each failed message once.
pub fn batch_response(mut failed: Vec<String>) -> SqsBatchResponse {
    failed.sort();
    failed.dedup();
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

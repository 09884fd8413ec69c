//! The SQS adapter of the job queue port: messages go out in batches of at most 10 (SQS's
//! limit), each entry with its job id so a partial failure names what was not sent. The
//! dead-letter queue is the queue's redrive policy (infrastructure), not code here.

use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use shopsync_engine::jobs::{JobMessage, JobQueue, QueueError};

/// SQS takes at most this many messages per batch.
pub const MAX_BATCH: usize = 10;

/// A job queue on one SQS queue.
#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    /// The queue at `url`, with the standard AWS configuration (`endpoint` overrides it,
    /// e.g. a local server).
    pub async fn connect(url: &str, endpoint: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let config = loader.load().await;
        Self {
            client: Client::new(&config),
            url: url.to_owned(),
        }
    }

    /// Wraps an existing client.
    pub fn from_client(client: Client, url: &str) -> Self {
        Self {
            client,
            url: url.to_owned(),
        }
    }
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn send(&self, messages: Vec<JobMessage>) -> Result<(), QueueError> {
        for chunk in messages.chunks(MAX_BATCH) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (index, message) in chunk.iter().enumerate() {
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(format!("m{index}"))
                    .message_body(message.encode())
                    .build()
                    .map_err(|e| QueueError(format!("message {}: {e}", message.id)))?;
                entries.push(entry);
            }
            let answer = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    QueueError(format!(
                        "SendMessageBatch: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    ))
                })?;
            let failed: Vec<String> = answer
                .failed()
                .iter()
                .map(|f| {
                    let index: usize = f.id().trim_start_matches('m').parse().unwrap_or(usize::MAX);
                    let job = chunk.get(index).map(|m| m.id.as_str()).unwrap_or("?");
                    format!("{job}: {}", f.message().unwrap_or(f.code()))
                })
                .collect();
            if !failed.is_empty() {
                return Err(QueueError(format!("not sent: {}", failed.join("; "))));
            }
        }
        Ok(())
    }
}

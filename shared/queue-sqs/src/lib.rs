//! The SQS adapter of the job queue port: messages go out in batches of at most 10 (SQS's
//! limit), each entry with its job id so a partial failure names what was not sent. The
//! dead-letter queue is the queue's redrive policy (infrastructure), not code here.

use async_trait::async_trait;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
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

/// How a jobs queue is set up: the same settings the infrastructure declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// The queue's name; its dead-letter queue is `{name}-dlq`.
    pub name: String,
    /// How long a received message stays hidden: at least the worker's timeout, so a step
    /// still running is never delivered twice at once.
    pub visibility_timeout_secs: u32,
    /// Deliveries before a message moves to the dead-letter queue (the worker's
    /// `SHOPSYNC_MAX_RECEIVES` must say the same).
    pub max_receives: u32,
}

impl SqsQueue {
    /// Creates the queue and its dead-letter queue (or finds them, when they exist with the
    /// same settings) with the redrive policy; returns the queue and the dead-letter queue's URL.
    pub async fn provision(client: Client, spec: &QueueSpec) -> Result<(Self, String), QueueError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| QueueError(format!("{what}: {e}"));
        let dlq_url = client
            .create_queue()
            .queue_name(format!("{}-dlq", spec.name))
            .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
            .send()
            .await
            .map_err(|e| {
                fail(
                    "CreateQueue (dead letters)",
                    &aws_sdk_sqs::error::DisplayErrorContext(&e),
                )
            })?
            .queue_url()
            .unwrap_or_default()
            .to_owned();
        let dlq_arn = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| {
                fail(
                    "GetQueueAttributes",
                    &aws_sdk_sqs::error::DisplayErrorContext(&e),
                )
            })?
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or_else(|| QueueError("the dead-letter queue has no ARN".into()))?;
        let redrive = format!(
            r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{}"}}"#,
            spec.max_receives
        );
        let url = client
            .create_queue()
            .queue_name(&spec.name)
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                spec.visibility_timeout_secs.to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .send()
            .await
            .map_err(|e| fail("CreateQueue", &aws_sdk_sqs::error::DisplayErrorContext(&e)))?
            .queue_url()
            .unwrap_or_default()
            .to_owned();
        Ok((Self::from_client(client, &url), dlq_url))
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
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

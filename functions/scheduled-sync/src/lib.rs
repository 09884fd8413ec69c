//! The `scheduled-sync` function: an EventBridge schedule fires, the job its input names is
//! enqueued for the sync worker. The rule's input is either the event itself (a constant
//! input such as `{"type": "incremental_sync", "direction": "down"}`) or, with no input
//! configured, the standard "Scheduled Event" envelope whose `detail` may carry it (an empty
//! detail means an incremental down-sync).

use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde_json::Value;
use shopsync_engine::jobs::{JobError, JobMessage, JobQueue, ScheduleInput};

/// What a scheduled invocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    /// The enqueued messages, in the order they were sent (one, or a round's three).
    pub messages: Vec<JobMessage>,
}

/// Why a schedule enqueued nothing.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The input does not say what to run.
    #[error("schedule input: {0}")]
    Input(String),
    /// The queue refused the message (Lambda's async retry sends it again).
    #[error(transparent)]
    Queue(#[from] shopsync_engine::jobs::QueueError),
}

fn input_of(event: &Value) -> Result<ScheduleInput, ScheduleError> {
    let bad = |e: serde_json::Error| ScheduleError::Input(e.to_string());
    if event.get("detail-type").is_some() {
        let envelope: EventBridgeEvent<Value> =
            serde_json::from_value(event.clone()).map_err(bad)?;
        match envelope.detail {
            Value::Object(map) if map.is_empty() => Ok(ScheduleInput {
                operation_type: "incremental_sync".into(),
                direction: None,
            }),
            Value::Null => Ok(ScheduleInput {
                operation_type: "incremental_sync".into(),
                direction: None,
            }),
            detail => serde_json::from_value(detail).map_err(bad),
        }
    } else {
        serde_json::from_value(event.clone()).map_err(bad)
    }
}

/// Enqueues the jobs the schedule asks for, in their order, in one send. The message ids come
/// from the invocation's request id (Lambda keeps it across its own retries of an asynchronous
/// invocation), so a retried invocation enqueues messages the worker recognises as already run.
pub async fn handle(
    queue: &dyn JobQueue,
    event: &Value,
    request_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Scheduled, ScheduleError> {
    let input = input_of(event)?;
    let jobs = input.jobs().map_err(|e| match e {
        JobError::Poison(reason) => ScheduleError::Input(reason),
        other => ScheduleError::Input(other.to_string()),
    })?;
    let several = jobs.len() > 1;
    let messages: Vec<JobMessage> = jobs
        .into_iter()
        .enumerate()
        .map(|(index, job)| {
            let mut message = JobMessage::new(job, now);
            message.id = if several {
                format!("schedule:{request_id}:{index}")
            } else {
                format!("schedule:{request_id}")
            };
            message
        })
        .collect();
    queue.send(messages.clone()).await?;
    for message in &messages {
        tracing::info!(job = ?message.job, message = %message.id, "scheduled job enqueued");
    }
    Ok(Scheduled { messages })
}

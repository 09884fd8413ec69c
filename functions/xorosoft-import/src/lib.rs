//! The `xorosoft-import` function: the import bucket notifies an SQS queue when a file lands
//! under `xorosoft/inbound/`, and this function consumes that queue (S3 -> SQS -> Lambda). Each
//! record becomes a job for the engine's worker: a new object is imported (once per bucket,
//! key and ETag), a continuation (a long file that reached the deadline, an approved import)
//! goes on. It also accepts S3's event when invoked directly, and ignores `s3:TestEvent`.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use serde_json::Value;
use shopsync_engine::jobs::{Delivered, Job, JobMessage, Worker};
use std::time::Instant;

/// The folder whose files are imported.
pub const INBOUND: &str = "xorosoft/inbound/";

/// What one S3 event record asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectEvent {
    /// Import this object (its key decoded).
    Import {
        /// The bucket.
        bucket: String,
        /// The key, as written.
        key: String,
        /// What tells this event from another of the same object: S3's `sequencer` (a
        /// redelivered notification repeats it, a new upload does not), else the ETag.
        event: String,
    },
    /// Nothing to do, and why (another folder, a deletion, a folder marker).
    Ignore(String),
}

/// The object records of an S3 event notification (`{"Records": [...]}`); `None` when
/// `body` is not one. `s3:TestEvent` has no records: it asks for nothing.
pub fn object_events(body: &Value) -> Option<Vec<ObjectEvent>> {
    if body.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Some(Vec::new());
    }
    let records = body.get("Records")?.as_array()?;
    let mut events = Vec::with_capacity(records.len());
    for record in records {
        if record.get("eventSource").and_then(Value::as_str) != Some("aws:s3") {
            return None;
        }
        let name = record
            .get("eventName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let s3 = record.get("s3");
        let bucket = s3
            .and_then(|s| s.pointer("/bucket/name"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let raw_key = s3
            .and_then(|s| s.pointer("/object/key"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let key = shopsync_blob_s3::decode_event_key(raw_key);
        let event = s3
            .and_then(|s| s.pointer("/object/sequencer"))
            .or_else(|| s3.and_then(|s| s.pointer("/object/eTag")))
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim_matches('"')
            .to_owned();
        events.push(if !name.starts_with("ObjectCreated:") {
            ObjectEvent::Ignore(format!("{name} of {key}"))
        } else if !key.starts_with(INBOUND) || key.ends_with('/') {
            ObjectEvent::Ignore(format!("{key} is not a file under {INBOUND}"))
        } else {
            ObjectEvent::Import { bucket, key, event }
        });
    }
    Some(events)
}

/// The job of an object to import: its message id is the event's, so a notification
/// delivered twice runs once (the same object uploaded again is a new event, and the import
/// logs it as a duplicate).
pub fn import_job(bucket: &str, key: &str, event: &str) -> JobMessage {
    let mut message = JobMessage::new(
        Job::ImportFile {
            key: key.to_owned(),
        },
        chrono::Utc::now(),
    );
    message.id = format!("s3:{bucket}/{key}:{event}");
    message
}

/// The deliveries of an SQS batch: S3 notifications turned into import jobs (records for
/// another bucket or folder, and test events, are dropped with a log line), job messages as
/// they are.
pub fn deliveries(event: &SqsEvent, bucket: &str) -> Vec<Delivered> {
    let mut out = Vec::new();
    for Delivered {
        message_id,
        body,
        receive_count,
    } in shopsync_runtime::sqs::deliveries(event)
    {
        let parsed: Option<Value> = serde_json::from_str(&body).ok();
        match parsed.as_ref().and_then(object_events) {
            Some(events) => {
                for object in events {
                    match object {
                        ObjectEvent::Import {
                            bucket: from,
                            key,
                            event,
                        } if from == bucket => out.push(Delivered {
                            message_id: message_id.clone(),
                            body: import_job(&from, &key, &event).encode(),
                            receive_count,
                        }),
                        ObjectEvent::Import {
                            bucket: from, key, ..
                        } => tracing::error!(
                            bucket = %from,
                            key,
                            "a notification from another bucket than the import bucket: ignored"
                        ),
                        ObjectEvent::Ignore(why) => tracing::info!(why, "S3 record ignored"),
                    }
                }
            }
            // A job message (a continuation), or something the worker reports as poison.
            None => out.push(Delivered {
                message_id,
                body,
                receive_count,
            }),
        }
    }
    out
}

/// Runs an SQS batch until `deadline` and names the messages that failed.
pub async fn handle(
    worker: &Worker,
    bucket: &str,
    event: &SqsEvent,
    max_receives: u32,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    let report = worker
        .handle_batch(&deliveries(event, bucket), max_receives, deadline)
        .await;
    tracing::info!(
        ran = report.ran,
        replayed = report.replayed,
        poison = report.poison,
        failed = report.failed.len(),
        "import batch done"
    );
    shopsync_runtime::sqs::batch_response(report.failed)
}

/// Runs an S3 event delivered directly (not through the queue); an error makes Lambda retry
/// the invocation.
pub async fn handle_direct(
    worker: &Worker,
    bucket: &str,
    event: &Value,
    deadline: Option<Instant>,
) -> Result<(), String> {
    let Some(events) = object_events(event) else {
        return Err("not an S3 event notification".into());
    };
    for object in events {
        match object {
            ObjectEvent::Import {
                bucket: from,
                key,
                event,
            } if from == bucket => {
                worker
                    .handle_until(&import_job(&from, &key, &event), deadline)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            ObjectEvent::Import {
                bucket: from, key, ..
            } => {
                tracing::error!(bucket = %from, key, "a direct event from another bucket: ignored")
            }
            ObjectEvent::Ignore(why) => tracing::info!(why, "S3 record ignored"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_become_imports_of_decoded_keys_and_test_events_nothing() {
        let body = serde_json::json!({"Records": [
            {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
             "s3": {"bucket": {"name": "b"}, "object": {"key": "xorosoft/inbound/stock/Day+1%2C+Main.csv", "eTag": "\"abc\"", "sequencer": "0A1B"}}},
            {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
             "s3": {"bucket": {"name": "b"}, "object": {"key": "xorosoft/archive/x.csv", "eTag": "e"}}},
            {"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete",
             "s3": {"bucket": {"name": "b"}, "object": {"key": "xorosoft/inbound/stock/x.csv"}}}
        ]});
        let events = object_events(&body).unwrap();
        assert_eq!(
            events[0],
            ObjectEvent::Import {
                bucket: "b".into(),
                key: "xorosoft/inbound/stock/Day 1, Main.csv".into(),
                event: "0A1B".into()
            }
        );
        assert!(matches!(events[1], ObjectEvent::Ignore(_)));
        assert!(matches!(events[2], ObjectEvent::Ignore(_)));
        let test =
            serde_json::json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"});
        assert_eq!(object_events(&test), Some(Vec::new()));
        assert_eq!(
            object_events(&serde_json::json!({"version": 1, "job": {}})),
            None
        );
    }
}

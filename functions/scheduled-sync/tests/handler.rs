//! The handler driven with EventBridge's scheduled event (aws_lambda_events' sample) and with
//! rule inputs, as EventBridge invokes it.

use serde_json::{json, Value};
use shopsync_engine::jobs::{Job, JobQueue, LocalQueue};

fn envelope(detail: Value) -> Value {
    let mut event: Value =
        serde_json::from_str(include_str!("fixtures/example-eventbridge-schedule.json")).unwrap();
    event["detail"] = detail;
    event
}

#[tokio::test]
async fn the_schedule_input_chooses_the_job_and_the_request_id_names_the_message() {
    let queue = LocalQueue::default();
    let now = chrono::Utc::now();
    for (event, job) in [
        (envelope(json!({})), Job::IncrementalDown),
        (
            envelope(json!({"type": "full_sync", "direction": "down"})),
            Job::FullDown,
        ),
        (
            json!({"type": "incremental_sync", "direction": "up"}),
            Job::Up,
        ),
        (json!({"type": "maintenance"}), Job::Maintenance),
    ] {
        let done = scheduled_sync::handle(&queue, &event, "req-7", now)
            .await
            .unwrap();
        assert_eq!(done.messages.len(), 1, "{event}");
        assert_eq!(done.messages[0].job, job, "{event}");
        assert_eq!(done.messages[0].id, "schedule:req-7");
        let sent = queue.receive().await.unwrap();
        assert_eq!(sent, done.messages[0]);
    }
}

#[tokio::test]
async fn a_round_enqueues_down_then_up_then_maintenance_as_serve_does() {
    let queue = LocalQueue::default();
    let done = scheduled_sync::handle(
        &queue,
        &json!({"type": "round"}),
        "req-9",
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let jobs: Vec<Job> = done.messages.iter().map(|m| m.job.clone()).collect();
    assert_eq!(jobs, [Job::IncrementalDown, Job::Up, Job::Maintenance]);
    for (index, expected) in done.messages.iter().enumerate() {
        assert_eq!(expected.id, format!("schedule:req-9:{index}"));
        assert_eq!(&queue.receive().await.unwrap(), expected, "sent in order");
    }
    let err = scheduled_sync::handle(
        &queue,
        &json!({"type": "round", "direction": "up"}),
        "req-10",
        chrono::Utc::now(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("takes no direction"), "{err}");
}

#[tokio::test]
async fn a_bad_input_is_refused_with_the_reason_and_nothing_is_queued() {
    let queue = LocalQueue::default();
    let now = chrono::Utc::now();
    for (event, words) in [
        (json!({"type": "weekly"}), "unknown type `weekly`"),
        (
            json!({"type": "full_sync", "direction": "sideways"}),
            "sideways",
        ),
        (json!({"direction": "down"}), "missing field `type`"),
        (
            envelope(json!({"type": "full_sync", "surprise": 1})),
            "unknown field `surprise`",
        ),
    ] {
        let err = scheduled_sync::handle(&queue, &event, "req-8", now)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(words), "{event}: {err}");
    }
    queue.send(vec![]).await.unwrap();
    let nothing = tokio::time::timeout(std::time::Duration::from_millis(50), queue.receive()).await;
    assert!(nothing.is_err(), "nothing was queued");
}

//! The SQS adapter against a real SQS API (moto's server in the test run).

use shopsync_engine::jobs::{Job, JobMessage, JobQueue};
use shopsync_queue_sqs::SqsQueue;

#[tokio::test]
#[ignore = "needs an SQS endpoint: run tests/run.sh"]
async fn jobs_go_out_in_batches_and_come_back_intact() {
    let endpoint = std::env::var("SHOPSYNC_TEST_DYNAMODB_ENDPOINT")
        .expect("SHOPSYNC_TEST_DYNAMODB_ENDPOINT (moto serves SQS on the same endpoint)");
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .load()
        .await;
    let client = aws_sdk_sqs::Client::new(&config);
    let name = format!("jobs-{}", uuid::Uuid::new_v4().simple());
    let url = client
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let queue = SqsQueue::from_client(client.clone(), &url);
    let now = chrono::Utc::now();
    let sent: Vec<JobMessage> = (0..23)
        .map(|i| {
            JobMessage::new(
                if i % 2 == 0 {
                    Job::IncrementalDown
                } else {
                    Job::Up
                },
                now,
            )
        })
        .collect();
    queue.send(sent.clone()).await.unwrap();

    let mut received = Vec::new();
    for _ in 0..20 {
        let answer = client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        for message in answer.messages() {
            received.push(JobMessage::decode(message.body().unwrap()).unwrap());
        }
        if received.len() >= sent.len() {
            break;
        }
    }
    received.sort_by(|a, b| a.id.cmp(&b.id));
    let mut expected = sent;
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(received, expected);

    // A queue that does not exist: a clear error, not a panic.
    let missing = SqsQueue::from_client(client, &format!("{endpoint}/123456789012/nope"));
    let err = missing
        .send(vec![JobMessage::new(Job::Up, now)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("SendMessageBatch"), "{err}");
}

/// The worker on a real queue: a message that can never run is reported failed on every
/// delivery, its operation is marked failed with the reason, and after the redrive policy's
/// receive count SQS moves it to the dead-letter queue; a good message is done and deleted.
#[tokio::test]
#[ignore = "needs an SQS endpoint: run tests/run.sh"]
async fn a_poison_message_ends_in_the_dead_letter_queue_and_fails_its_operation() {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    use shopsync_engine::jobs::{Delivered, Worker};
    use shopsync_queue_sqs::QueueSpec;
    use std::sync::Arc;

    let endpoint = std::env::var("SHOPSYNC_TEST_DYNAMODB_ENDPOINT")
        .expect("SHOPSYNC_TEST_DYNAMODB_ENDPOINT (moto serves SQS on the same endpoint)");
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .load()
        .await;
    let client = aws_sdk_sqs::Client::new(&config);
    let spec = QueueSpec {
        name: format!("jobs-{}", uuid::Uuid::new_v4().simple()),
        visibility_timeout_secs: 1,
        max_receives: 2,
    };
    let (queue, dlq_url) = SqsQueue::provision(client.clone(), &spec).await.unwrap();
    // Provisioning again with the same settings finds the same queues.
    let (again, dlq_again) = SqsQueue::provision(client.clone(), &spec).await.unwrap();
    assert_eq!(
        (again.url(), dlq_again.as_str()),
        (queue.url(), dlq_url.as_str())
    );

    let dir = tempfile::tempdir().unwrap();
    let backend = shopsync_store_sqlite::SqliteStore::open(dir.path(), "t_").unwrap();
    shopsync_store::migrate::migrate(&backend, Default::default())
        .await
        .unwrap();
    let store = shopsync_store::Store::new(Arc::new(backend));
    let operation = shopsync_engine::realtime::realtime_operation(&store, chrono::Utc::now())
        .await
        .unwrap();
    let worker = Worker {
        store: store.clone(),
        client: shopsync_shopify::AdminClient::new(shopsync_shopify::ClientConfig::new(
            "unused.myshopify.com",
            "unused",
        ))
        .unwrap(),
        actor: shopsync_domain::Actor::new("system:worker").unwrap(),
        rails: shopsync_domain::GuardRails::default(),
        continuation: Some(Arc::new(queue.clone())),
        imports: None,
    };
    let poison = format!(
        r#"{{"v":1,"id":"p","enqueued_at":"2026-11-25T00:00:00Z","job":{{"kind":"apply_rows","operation":"{}","rows":7}}}}"#,
        operation.operation_uuid
    );
    client
        .send_message()
        .queue_url(queue.url())
        .message_body(&poison)
        .send()
        .await
        .unwrap();
    queue
        .send(vec![JobMessage::new(Job::Maintenance, chrono::Utc::now())])
        .await
        .unwrap();

    // The Lambda event source mapping's part, by hand: receive, run, delete what succeeded.
    let mut poison_deliveries = 0;
    let mut done = 0;
    for _ in 0..30 {
        let answer = client
            .receive_message()
            .queue_url(queue.url())
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .unwrap();
        let messages = answer.messages();
        if messages.is_empty() {
            if poison_deliveries >= 2 && done == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            continue;
        }
        let batch: Vec<Delivered> = messages
            .iter()
            .map(|m| Delivered {
                message_id: m.message_id().unwrap().to_owned(),
                body: m.body().unwrap().to_owned(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
            })
            .collect();
        let report = worker.handle_batch(&batch, spec.max_receives, None).await;
        for m in messages {
            let id = m.message_id().unwrap();
            if report.failed.iter().any(|f| f == id) {
                poison_deliveries += 1;
            } else {
                done += 1;
                client
                    .delete_message()
                    .queue_url(queue.url())
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
    assert_eq!(
        poison_deliveries, 2,
        "delivered as often as the redrive policy allows"
    );
    assert_eq!(done, 1);
    // Once its last invisibility ends, the next receive finds it past the receive count and
    // moves it to the dead-letter queue instead of delivering it.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let after = client
        .receive_message()
        .queue_url(queue.url())
        .send()
        .await
        .unwrap();
    assert!(after.messages().is_empty(), "not delivered a third time");
    let dead = client
        .receive_message()
        .queue_url(&dlq_url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert_eq!(dead.messages().len(), 1);
    assert_eq!(dead.messages()[0].body(), Some(poison.as_str()));
    let failed = shopsync_engine::operation::load_operation(&store, operation.operation_uuid)
        .await
        .unwrap();
    assert_eq!(failed.status, shopsync_domain::OperationStatus::Failed);
    assert!(failed
        .status_reason
        .as_deref()
        .is_some_and(|r| r.contains("poison message")));
}

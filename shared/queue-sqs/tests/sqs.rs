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

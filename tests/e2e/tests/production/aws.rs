//! One isolated deployment on moto per test: its own table prefix, queues and secrets.

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde_json::Value;
use shopsync_queue_sqs::{QueueSpec, SqsQueue};
use shopsync_runtime::Env;
use shopsync_store::migrate::{migrate, MigrateOptions};
use shopsync_store::Store;
use shopsync_store_dynamo::DynamoStore;
use std::collections::HashMap;
use std::sync::Arc;

/// The Admin API token the simulator accepts, kept in Secrets Manager.
pub const TOKEN: &str = "shpat_e2e_token";
/// The webhook secret, kept in Secrets Manager.
pub const WEBHOOK_SECRET: &str = "e2e-webhook-secret";

/// The variables a deployed function sees (the template's, pointed at moto).
pub struct Environment(pub HashMap<String, String>);

impl Env for Environment {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|v| !v.is_empty()).cloned()
    }
}

/// A deployment on moto.
pub struct Deployment {
    pub env: Environment,
    pub store: Store,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub dlq_url: String,
    pub max_receives: u32,
}

fn endpoint() -> String {
    std::env::var("SHOPSYNC_TEST_AWS_ENDPOINT")
        .or_else(|_| std::env::var("SHOPSYNC_TEST_DYNAMODB_ENDPOINT"))
        .expect("SHOPSYNC_TEST_AWS_ENDPOINT must point at moto's server (tests/run.sh starts one)")
}

impl Deployment {
    /// Tables, queues and secrets under names of their own, and the environment that names
    /// them. `shop`/`admin`: the simulator standing in for Shopify.
    pub async fn provision(shop: &str, admin: &str, max_receives: u32) -> Self {
        let endpoint = endpoint();
        let unique = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let prefix = format!("e2e{unique}_");
        let backend = DynamoStore::connect(Some(&endpoint), &prefix).await;
        let report = migrate(&backend, MigrateOptions::default())
            .await
            .expect("migrate creates the tables on moto");
        assert!(report.drift.is_empty(), "{:?}", report.drift);

        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .load()
            .await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let spec = QueueSpec {
            name: format!("jobs-{unique}"),
            visibility_timeout_secs: 1,
            max_receives,
        };
        let (queue, dlq_url) = SqsQueue::provision(sqs.clone(), &spec)
            .await
            .expect("the jobs queue and its dead-letter queue");
        let secrets = aws_sdk_secretsmanager::Client::new(&config);
        let token_arn = secrets
            .create_secret()
            .name(format!("{unique}/shopify-access-token"))
            .secret_string(TOKEN)
            .send()
            .await
            .expect("token secret")
            .arn()
            .expect("arn")
            .to_owned();
        let webhook_arn = secrets
            .create_secret()
            .name(format!("{unique}/shopify-webhook-secret"))
            .secret_string(
                serde_json::json!({"current": WEBHOOK_SECRET, "previous": ""}).to_string(),
            )
            .send()
            .await
            .expect("webhook secret")
            .arn()
            .expect("arn")
            .to_owned();
        let env = Environment(HashMap::from(
            [
                ("SHOPIFY_SHOP", shop),
                ("SHOPIFY_ADMIN_ENDPOINT", admin),
                ("SHOPIFY_ACCESS_TOKEN_SECRET_ARN", token_arn.as_str()),
                ("SHOPIFY_WEBHOOK_SECRET_ARN", webhook_arn.as_str()),
                ("SHOPSYNC_SECRETS_ENDPOINT", endpoint.as_str()),
                ("SHOPSYNC_TABLE_PREFIX", prefix.as_str()),
                ("SHOPSYNC_DYNAMODB_ENDPOINT", endpoint.as_str()),
                ("SHOPSYNC_QUEUE_URL", queue.url()),
                ("SHOPSYNC_SQS_ENDPOINT", endpoint.as_str()),
                ("SHOPSYNC_MAX_RECEIVES", &max_receives.to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        ));
        Self {
            env,
            store: Store::new(Arc::new(backend)),
            sqs,
            queue_url: queue.url().to_owned(),
            dlq_url,
            max_receives,
        }
    }

    /// The import bucket and its queue, as the template makes them: the bucket (versioned)
    /// notifies the queue of every object created under `xorosoft/inbound/`. Adds their
    /// names to the environment; returns the bucket and the queue's URL.
    pub async fn provision_imports(&mut self) -> (String, String) {
        let endpoint = endpoint();
        let unique = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .load()
            .await;
        let spec = QueueSpec {
            name: format!("imports-{unique}"),
            visibility_timeout_secs: 1,
            max_receives: self.max_receives,
        };
        let (queue, _) = SqsQueue::provision(self.sqs.clone(), &spec)
            .await
            .expect("the import queue");
        let queue_arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue.url())
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes()
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .cloned()
            })
            .expect("the queue's ARN");
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        let bucket = format!("imports-{unique}");
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("CreateBucket");
        use aws_sdk_s3::types::{
            BucketVersioningStatus, Event, FilterRule, FilterRuleName, NotificationConfiguration,
            NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
            VersioningConfiguration,
        };
        s3.put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("PutBucketVersioning");
        let filter = NotificationConfigurationFilter::builder()
            .key(
                S3KeyFilter::builder()
                    .filter_rules(
                        FilterRule::builder()
                            .name(FilterRuleName::Prefix)
                            .value("xorosoft/inbound/")
                            .build(),
                    )
                    .build(),
            )
            .build();
        s3.put_bucket_notification_configuration()
            .bucket(&bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(
                        QueueConfiguration::builder()
                            .queue_arn(queue_arn)
                            .events(Event::S3ObjectCreated)
                            .filter(filter)
                            .build()
                            .expect("a queue configuration"),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("PutBucketNotificationConfiguration");
        for (name, value) in [
            ("SHOPSYNC_IMPORT_BUCKET", bucket.clone()),
            ("SHOPSYNC_IMPORT_QUEUE_URL", queue.url().to_owned()),
            ("SHOPSYNC_S3_ENDPOINT", endpoint.clone()),
        ] {
            self.env.0.insert(name.to_owned(), value);
        }
        (bucket, queue.url().to_owned())
    }

    /// What the event source mapping receives next from `url` (up to `max` messages, waiting
    /// up to a second): the SQS event Lambda would be invoked with, and each message's
    /// receipt handle by id.
    pub async fn receive(
        &self,
        url: &str,
        max: i32,
    ) -> Option<(SqsEvent, HashMap<String, String>)> {
        let answer = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("ReceiveMessage");
        let messages = answer.messages();
        if messages.is_empty() {
            return None;
        }
        let sample: Value = serde_json::from_str(include_str!(
            "../../../../functions/sync-worker/tests/fixtures/example-sqs-event.json"
        ))
        .expect("sample");
        let mut handles = HashMap::new();
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let mut record = sample["Records"][0].clone();
                let id = m.message_id().unwrap_or_default().to_owned();
                handles.insert(
                    id.clone(),
                    m.receipt_handle().unwrap_or_default().to_owned(),
                );
                record["messageId"] = id.into();
                record["receiptHandle"] = m.receipt_handle().unwrap_or_default().into();
                record["body"] = m.body().unwrap_or_default().into();
                record["attributes"] = serde_json::to_value(
                    m.attributes()
                        .map(|a| {
                            a.iter()
                                .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                                .collect::<HashMap<_, _>>()
                        })
                        .unwrap_or_default(),
                )
                .expect("attributes");
                record["messageAttributes"] = serde_json::json!({});
                record
            })
            .collect();
        let event = serde_json::from_value(serde_json::json!({ "Records": records }))
            .expect("an SQS event in Lambda's shape");
        Some((event, handles))
    }

    /// What the event source mapping does with a batch response: deletes every message the
    /// function did not name as failed.
    pub async fn settle(
        &self,
        handles: &HashMap<String, String>,
        response: &aws_lambda_events::event::sqs::SqsBatchResponse,
    ) -> usize {
        let url = self.queue_url.clone();
        self.settle_on(&url, handles, response).await
    }

    /// As [`Deployment::settle`], for the queue at `url`.
    pub async fn settle_on(
        &self,
        url: &str,
        handles: &HashMap<String, String>,
        response: &aws_lambda_events::event::sqs::SqsBatchResponse,
    ) -> usize {
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let mut deleted = 0;
        for (id, handle) in handles {
            if failed.contains(&id.as_str()) {
                continue;
            }
            self.sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(handle)
                .send()
                .await
                .expect("DeleteMessage");
            deleted += 1;
        }
        deleted
    }
}

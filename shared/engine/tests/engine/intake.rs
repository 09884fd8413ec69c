//! The webhook intake's one-commit path for product deliveries: a delivery's change and its
//! dedupe marks commit together, racing duplicates write nothing, and a delivery whose apply
//! step could not be queued is queued by Shopify's retry.

use crate::common;
mod ledger;

use async_trait::async_trait;
use shopsync_domain::staging::{ProductsStaging, StagingStatus};
use shopsync_domain::Actor;
use shopsync_engine::intake::{IntakeReply, WebhookIntake};
use shopsync_engine::jobs::{Job, JobMessage, JobQueue, LocalQueue, QueueError};
use shopsync_engine::ledger::StoreLedger;
use shopsync_engine::realtime::apply_staged;
use shopsync_shopify::webhook::{sign, WebhookConfig};
use shopsync_store::{Store, Table};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const SHOP: &str = "shop.myshopify.com";
const SECRET: &str = "hush";
const PAYLOAD: &str =
    include_str!("../../../../tests/fixtures/shopify/webhooks/products-update.json");

/// A queue that refuses its first `failures` sends, then delivers to a local queue.
#[derive(Default)]
struct FlakyQueue {
    failures: AtomicUsize,
    inner: LocalQueue,
}

#[async_trait]
impl JobQueue for FlakyQueue {
    async fn send(&self, messages: Vec<JobMessage>) -> Result<(), QueueError> {
        let refused = self
            .failures
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            return Err(QueueError("queue unavailable".into()));
        }
        self.inner.send(messages).await
    }
}

fn intake(store: &Store, queue: Arc<FlakyQueue>) -> WebhookIntake {
    WebhookIntake {
        ledger: Arc::new(StoreLedger::new(store.clone())),
        store: store.clone(),
        config: WebhookConfig {
            shop_domain: SHOP.into(),
            secret: SECRET.into(),
            previous_secret: None,
        },
        queue,
        client: None,
        actor: Actor::new("system:webhooks").expect("actor"),
        realtime: Default::default(),
    }
}

async fn deliver(intake: &WebhookIntake, webhook_id: &str, event_id: &str) -> IntakeReply {
    deliver_at(intake, webhook_id, event_id, chrono::Utc::now()).await
}

async fn deliver_at(
    intake: &WebhookIntake,
    webhook_id: &str,
    event_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> IntakeReply {
    let hmac = sign(SECRET, PAYLOAD.as_bytes());
    let headers: Vec<(&str, &str)> = vec![
        ("X-Shopify-Topic", "products/update"),
        ("X-Shopify-Hmac-Sha256", &hmac),
        ("X-Shopify-Shop-Domain", SHOP),
        ("X-Shopify-Webhook-Id", webhook_id),
        ("X-Shopify-Event-Id", event_id),
    ];
    intake
        .receive(headers.as_slice(), PAYLOAD.as_bytes(), now)
        .await
}

async fn staged_rows(store: &Store) -> Vec<ProductsStaging> {
    let page = store
        .backend()
        .scan(Table::ProductsStaging, 100, None)
        .await
        .expect("scan");
    page.items
        .iter()
        .map(|item| serde_json::from_slice(item.doc.as_deref().expect("doc")).expect("row"))
        .collect()
}

on_both_stores! {
    async fn racing_attempts_of_one_delivery_stage_one_row() {
        let (_sim, _client, store, _dir) = common::setup(0, 1).await;
        let queue = Arc::new(FlakyQueue::default());
        let intake = Arc::new(intake(&store, queue.clone()));
        let attempts: Vec<_> = (0..8)
            .map(|_| {
                let intake = intake.clone();
                tokio::spawn(async move { deliver(&intake, "w-race", "e-race").await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for attempt in attempts {
            let reply = attempt.await.expect("task");
            assert_eq!(reply.status, 200, "{}", reply.body);
            outcomes.push(
                reply.body["outcome"]
                    .as_str()
                    .or(reply.body["status"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        let staged = outcomes.iter().filter(|o| *o == "staged").count();
        let duplicates = outcomes.iter().filter(|o| *o == "duplicate").count();
        assert_eq!((staged, duplicates), (1, 7), "{outcomes:?}");
        assert_eq!(staged_rows(&store).await.len(), 1);
        let message = queue.inner.receive().await.expect("one apply step");
        assert!(matches!(message.job, Job::ApplyRows { .. }));
    }
}

on_both_stores! {
    async fn the_event_id_dedupes_a_resend_under_a_new_webhook_id() {
        let (_sim, _client, store, _dir) = common::setup(0, 1).await;
        let intake = intake(&store, Arc::new(FlakyQueue::default()));
        let first = deliver(&intake, "w-1", "e-1").await;
        assert_eq!(first.body["outcome"], "staged", "{}", first.body);
        let resent = deliver(&intake, "w-2", "e-1").await;
        assert_eq!(
            (resent.status, resent.body["status"].as_str()),
            (200, Some("duplicate"))
        );
        assert_eq!(staged_rows(&store).await.len(), 1);
    }
}

on_both_stores! {
    async fn a_delivery_whose_apply_step_was_not_queued_is_queued_by_the_retry() {
        let (_sim, _client, store, _dir) = common::setup(0, 1).await;
        let queue = Arc::new(FlakyQueue {
            failures: AtomicUsize::new(1),
            inner: LocalQueue::default(),
        });
        let intake = intake(&store, queue.clone());

        // The change is staged and recorded, but its apply step could not be queued: Shopify is
        // told to retry.
        let first = deliver(&intake, "w-1", "e-1").await;
        assert_eq!(first.status, 500, "{}", first.body);
        let rows = staged_rows(&store).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, StagingStatus::Pending);

        // The retry is a duplicate, and queues the pending row's apply step.
        let retry = deliver(&intake, "w-1", "e-1").await;
        assert_eq!(
            (retry.status, retry.body["status"].as_str()),
            (200, Some("duplicate")),
            "{}",
            retry.body
        );
        let message = queue.inner.receive().await.expect("apply step queued");
        let Job::ApplyRows {
            operation,
            rows: ids,
        } = message.job
        else {
            panic!("an apply step, got {:?}", message.job);
        };
        assert_eq!(ids, vec![rows[0].id]);
        let actor = Actor::new("system:worker").expect("actor");
        let stats = apply_staged(&store, operation, &ids, &actor)
            .await
            .expect("apply");
        assert_eq!(stats.created, 1);
        assert_eq!(staged_rows(&store).await[0].status, StagingStatus::Applied);

        // Once applied, a further retry queues nothing.
        let again = deliver(&intake, "w-1", "e-1").await;
        assert_eq!(again.body["status"], "duplicate");
        let nothing =
            tokio::time::timeout(std::time::Duration::from_millis(50), queue.inner.receive()).await;
        assert!(nothing.is_err(), "no second apply step");
    }
}

on_both_stores! {
    async fn each_day_stages_into_its_own_realtime_operation() {
        let (_sim, _client, store, _dir) = common::setup(0, 1).await;
        let intake = intake(&store, Arc::new(FlakyQueue::default()));
        let today = chrono::Utc::now();
        let tomorrow = today + chrono::Duration::days(1);
        for (i, now) in [today, today, tomorrow].into_iter().enumerate() {
            let reply = deliver_at(&intake, &format!("w-{i}"), &format!("e-{i}"), now).await;
            assert_eq!(reply.body["outcome"], "staged", "{}", reply.body);
        }
        let mut operations: Vec<_> = staged_rows(&store)
            .await
            .iter()
            .map(|row| row.sync_operation_id)
            .collect();
        operations.sort();
        operations.dedup();
        let mut expected = Vec::new();
        for day in [today, tomorrow] {
            let op = shopsync_engine::realtime::realtime_operation(&store, day)
                .await
                .expect("the day's operation");
            assert_eq!(op.operation_type, shopsync_domain::OperationType::Realtime);
            expected.push(op.operation_uuid);
        }
        expected.sort();
        // The intake remembers the day's operation, and moves on to the next day's.
        assert_eq!(operations, expected);
    }
}

on_both_stores! {
    async fn the_echo_of_our_own_push_is_checked_by_its_commit_and_stages_nothing() {
        let (_sim, _client, store, _dir) = common::setup(0, 1).await;
        let queue = Arc::new(FlakyQueue::default());
        let intake = intake(&store, queue.clone());
        let payload: shopsync_shopify::webhook::payloads::ProductPayload =
            serde_json::from_str(PAYLOAD).expect("payload");
        let content = shopsync_engine::realtime::content_from_payload(&payload, None).expect("content");
        // What shopsync remembers before pushing this content to Shopify.
        let now = chrono::Utc::now();
        let echo = shopsync_engine::push_plan::echo_key(payload.id, &content);
        store
            .remember(&echo, now + chrono::Duration::minutes(10))
            .await
            .expect("remember");

        let reply = deliver_at(&intake, "w-echo", "e-echo", now).await;
        assert_eq!(
            (reply.status, reply.body["outcome"].as_str()),
            (200, Some("echo")),
            "{}",
            reply.body
        );
        assert!(
            staged_rows(&store).await.is_empty(),
            "the echo staged nothing"
        );
        let queued =
            tokio::time::timeout(std::time::Duration::from_millis(20), queue.inner.receive()).await;
        assert!(queued.is_err(), "no apply step for an echo: {queued:?}");
        // Its marks were written: the retry is a duplicate.
        let retried = deliver_at(&intake, "w-echo", "e-echo", now).await;
        assert_eq!(retried.body["status"], "duplicate", "{}", retried.body);

        // Once the mark has expired, the same content is a change from Shopify like any other.
        let later = now + chrono::Duration::minutes(11);
        let after = deliver_at(&intake, "w-later", "e-later", later).await;
        assert_eq!(after.body["outcome"], "staged", "{}", after.body);
        assert_eq!(staged_rows(&store).await.len(), 1);
    }
}

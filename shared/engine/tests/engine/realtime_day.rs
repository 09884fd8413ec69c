//! The realtime operation over its day: counted from its rows, its webhook deletes decided
//! while the day is open, and concluded by maintenance once the day is over.

use crate::common;

use chrono::{Duration, Utc};
use shopsync_domain::staging::{ChangeType, StagingStatus};
use shopsync_domain::{Actor, GuardRails, OperationId, OperationStatus, ShopifyProductId};
use shopsync_engine::down::local_id_for;
use shopsync_engine::jobs::{Job, JobMessage, JobOutcome, Worker};
use shopsync_engine::operation::operation_rows;
use shopsync_engine::realtime::{
    apply_staged, handle_delivery, realtime_operation, refresh_realtime_operations, Handled,
};
use shopsync_engine::review::{approve_operation, approve_rows, cancel_operation, reject_rows};
use shopsync_engine::sync::run_full_down;
use shopsync_shopify::webhook::{sign, verify_and_parse, Delivery, WebhookConfig};
use shopsync_shopify::AdminClient;
use shopsync_shopify_sim::shop::rest_product;
use shopsync_shopify_sim::SimHandle;
use shopsync_store::Store;

fn delivery(topic: &str, body: &serde_json::Value, id: &str) -> Delivery {
    let body = serde_json::to_vec(body).unwrap();
    let config = WebhookConfig {
        shop_domain: "shop.myshopify.com".into(),
        secret: "s".into(),
        previous_secret: None,
    };
    let hmac = sign("s", &body);
    let headers = [
        ("X-Shopify-Topic", topic),
        ("X-Shopify-Hmac-Sha256", hmac.as_str()),
        ("X-Shopify-Shop-Domain", "shop.myshopify.com"),
        ("X-Shopify-Webhook-Id", id),
    ];
    verify_and_parse(&config, headers.as_slice(), &body).unwrap()
}

fn actor() -> Actor {
    Actor::new("system:webhooks").unwrap()
}

/// A catalog of `n` products read from the simulator, and their Shopify ids.
async fn synced(n: usize) -> (SimHandle, AdminClient, Store, tempfile::TempDir, Vec<u64>) {
    let (sim, client, store, dir) = common::setup(n, 2).await;
    run_full_down(&store, &client, &actor(), &GuardRails::default())
        .await
        .unwrap();
    let ids = sim.with_shop(|s| s.products().map(|p| p.id).collect());
    (sim, client, store, dir, ids)
}

/// A title edit in Shopify delivered as a webhook at `at` and applied; its operation.
async fn applied_update(
    sim: &SimHandle,
    client: &AdminClient,
    store: &Store,
    id: u64,
    webhook: &str,
    at: chrono::DateTime<Utc>,
) -> OperationId {
    // Shopify's updated_at has whole seconds: the edit must be newer than what was read.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    sim.with_shop(|s| s.edit_product(id, |p| p.title = format!("Renamed by {webhook}")));
    let payload = sim.with_shop(|s| rest_product(s.product(id).unwrap()));
    let handled = handle_delivery(
        store,
        Some(client),
        &delivery("products/update", &payload, webhook),
        &actor(),
        at,
    )
    .await
    .unwrap();
    let Handled::Staged { operation, row } = handled else {
        panic!("staged, got {handled:?}");
    };
    apply_staged(store, operation, &[row], &actor())
        .await
        .unwrap();
    operation
}

/// A products/delete delivered at `at`: staged for review.
async fn staged_delete(
    client: &AdminClient,
    store: &Store,
    id: u64,
    webhook: &str,
    at: chrono::DateTime<Utc>,
) {
    let handled = handle_delivery(
        store,
        Some(client),
        &delivery("products/delete", &serde_json::json!({ "id": id }), webhook),
        &actor(),
        at,
    )
    .await
    .unwrap();
    assert_eq!(handled, Handled::DeleteStaged);
}

async fn delete_row_of(store: &Store, operation: OperationId) -> shopsync_domain::StagingId {
    operation_rows(store, operation)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.change_type == ChangeType::Delete)
        .expect("a delete row")
        .id
}

async fn operation(store: &Store, id: OperationId) -> shopsync_domain::SyncOperation {
    store
        .get::<shopsync_domain::SyncOperation>(&shopsync_store::item::Key::pk(id.to_string()))
        .await
        .unwrap()
        .unwrap()
}

on_both_stores! {
    async fn the_days_operation_counts_its_rows_and_its_deletes_are_decided_while_it_is_open() {
        let (sim, client, store, _dir, ids) = synced(3).await;
        let now = Utc::now();
        let op = applied_update(&sim, &client, &store, ids[0], "w1", now).await;
        staged_delete(&client, &store, ids[1], "w2", now).await;
        staged_delete(&client, &store, ids[2], "w3", now).await;

        // Nobody counts while staging; maintenance counts from the rows.
        assert_eq!(operation(&store, op).await.statistics.processed, 0);
        let written = refresh_realtime_operations(&store, Utc::now())
            .await
            .unwrap();
        assert_eq!(written.len(), 1);
        let counted = operation(&store, op).await;
        assert_eq!(
            counted.status,
            OperationStatus::InProgress,
            "the day is open"
        );
        let s = counted.statistics;
        assert_eq!(
            (s.processed, s.updated, s.deleted, s.created, s.failed),
            (3, 1, 0, 0, 0),
            "{s:?}"
        );
        // Nothing changed since: nothing written.
        assert!(refresh_realtime_operations(&store, Utc::now())
            .await
            .unwrap()
            .is_empty());

        // The whole operation cannot be approved while its day is open; the error says how.
        let err = approve_operation(&store, op, &actor()).await.unwrap_err();
        assert!(err.to_string().contains("--rows"), "{err}");
        let err = cancel_operation(&store, op, &actor(), "stop")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("realtime"), "{err}");

        // One delete approved: the product goes (its last content kept as a version); the other
        // rejected: the product stays.
        let rows = operation_rows(&store, op).await.unwrap();
        let delete_of = |shopify: u64| {
            rows.iter()
                .find(|r| {
                    r.change_type == ChangeType::Delete
                        && r.source_product_id == local_id_for(ShopifyProductId::new(shopify).unwrap())
                })
                .unwrap()
                .id
        };
        let approved = approve_rows(&store, op, &[delete_of(ids[1])], &actor())
            .await
            .unwrap();
        assert_eq!(approved.status, OperationStatus::InProgress);
        assert_eq!(approved.statistics.deleted, 1, "{:?}", approved.statistics);
        let gone = local_id_for(ShopifyProductId::new(ids[1]).unwrap());
        assert!(store.product(gone).await.unwrap().is_none());
        let last = store.product_version(gone, 2).await.unwrap().unwrap();
        let changed: Vec<&str> = last.changed_fields.iter().map(|f| f.as_str()).collect();
        assert_eq!(changed, vec!["deleted"]);
        assert_eq!(last.sync_operation_id, Some(op));

        let rejected = reject_rows(&store, op, &[delete_of(ids[2])], &actor(), "still sold")
            .await
            .unwrap();
        assert_eq!(rejected.statistics.skipped, 1, "{:?}", rejected.statistics);
        assert!(store
            .product(local_id_for(ShopifyProductId::new(ids[2]).unwrap()))
            .await
            .unwrap()
            .is_some());
        let statuses: Vec<StagingStatus> = operation_rows(&store, op)
            .await
            .unwrap()
            .iter()
            .map(|r| r.status)
            .collect();
        assert!(!statuses.contains(&StagingStatus::Pending), "{statuses:?}");
    }
}

on_both_stores! {
    async fn maintenance_concludes_past_days_and_leaves_today_open() {
        let (sim, client, store, _dir, ids) = synced(3).await;
        let now = Utc::now();
        let worker = Worker {
            store: store.clone(),
            client: client.clone(),
            actor: Actor::new("system:worker").unwrap(),
            rails: GuardRails::default(),
            continuation: None,
            imports: None,
        };
        // Three days ago: one update, applied. Two days ago: a delete still waiting. Today: an
        // update.
        let settled_day =
            applied_update(&sim, &client, &store, ids[0], "w1", now - Duration::days(3)).await;
        staged_delete(&client, &store, ids[1], "w2", now - Duration::days(2)).await;
        let waiting_day = realtime_operation(&store, now - Duration::days(2))
            .await
            .unwrap()
            .operation_uuid;
        let today = applied_update(&sim, &client, &store, ids[2], "w3", now).await;
        assert_ne!(settled_day, waiting_day);

        let message = JobMessage::new(Job::Maintenance, Utc::now());
        assert_eq!(
            worker.handle(&message).await.unwrap(),
            JobOutcome::Ran(None)
        );

        let settled = operation(&store, settled_day).await;
        assert_eq!(settled.status, OperationStatus::Completed);
        assert!(settled.completed_at.is_some());
        assert_eq!(
            (settled.statistics.processed, settled.statistics.updated),
            (1, 1)
        );
        let waiting = operation(&store, waiting_day).await;
        assert_eq!(waiting.status, OperationStatus::AwaitingApproval);
        let reason = waiting.status_reason.clone().unwrap_or_default();
        assert!(reason.contains("1 staged change"), "{reason}");
        let open = operation(&store, today).await;
        assert_eq!(open.status, OperationStatus::InProgress);
        assert_eq!(open.statistics.updated, 1);

        // Run again (the scheduler's next tick, or a redelivery): nothing changes.
        worker
            .handle(&JobMessage::new(Job::Maintenance, Utc::now()))
            .await
            .unwrap();
        assert_eq!(operation(&store, settled_day).await, settled);
        assert_eq!(operation(&store, waiting_day).await, waiting);

        // The held day is approved like any held operation: its delete is applied.
        let row = delete_row_of(&store, waiting_day).await;
        let approved = approve_operation(&store, waiting_day, &actor())
            .await
            .unwrap();
        assert_eq!(approved.status, OperationStatus::Completed);
        assert_eq!(approved.statistics.deleted, 1, "{:?}", approved.statistics);
        assert!(store
            .product(local_id_for(ShopifyProductId::new(ids[1]).unwrap()))
            .await
            .unwrap()
            .is_none());
        let rows = operation_rows(&store, waiting_day).await.unwrap();
        assert_eq!(
            rows.iter().find(|r| r.id == row).unwrap().status,
            StagingStatus::Applied
        );
    }
}

#[test]
fn older_builds_maintenance_messages_still_run() {
    let body = format!(
        r#"{{"v":{},"id":"m-1","job":{{"kind":"redactions"}},"enqueued_at":"2026-12-01T00:00:00Z"}}"#,
        shopsync_engine::jobs::JOB_VERSION
    );
    assert_eq!(JobMessage::decode(&body).unwrap().job, Job::Maintenance);
    let encoded = JobMessage::new(Job::Maintenance, Utc::now()).encode();
    assert!(encoded.contains(r#""kind":"maintenance""#), "{encoded}");
}

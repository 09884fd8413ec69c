//! The delivery ledgers: dedupe by webhook id and by event id, claims that block a concurrent
//! attempt, expiry after the TTL, and compliance deliveries recorded once.

use chrono::{DateTime, TimeZone, Utc};
use shopsync_engine::ledger::{receive, DeliveryLedger, MemoryLedger, Received, StoreLedger};
use shopsync_shopify::webhook::{
    compliance_request, sign, verify_and_parse, Delivery, Rejection, WebhookConfig,
};

const LEDGER_SHOP: &str = "example.myshopify.com";

fn config() -> WebhookConfig {
    WebhookConfig {
        shop_domain: LEDGER_SHOP.into(),
        secret: "current-secret".into(),
        previous_secret: Some("previous-secret".into()),
    }
}

fn headers(topic: &str, body: &[u8], secret: &str, id: &str) -> Vec<(String, String)> {
    vec![
        ("X-Shopify-Topic".into(), topic.into()),
        ("X-Shopify-Hmac-Sha256".into(), sign(secret, body)),
        ("X-Shopify-Shop-Domain".into(), LEDGER_SHOP.into()),
        ("X-Shopify-Webhook-Id".into(), id.into()),
        ("X-Shopify-Event-Id".into(), format!("event-{id}")),
        ("X-Shopify-API-Version".into(), "2026-07".into()),
        (
            "X-Shopify-Triggered-At".into(),
            "2026-11-24T10:00:00Z".into(),
        ),
    ]
}

fn check(h: &[(String, String)], body: &[u8]) -> Result<Delivery, Rejection> {
    let pairs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    verify_and_parse(&config(), pairs.as_slice(), body)
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap()
}

async fn deliver(
    ledger: &dyn DeliveryLedger,
    h: &[(String, String)],
    body: &[u8],
    at: DateTime<Utc>,
) -> Result<Received, Rejection> {
    let pairs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    receive(&config(), ledger, pairs.as_slice(), body, at).await
}

async fn dedupe_contract(ledger: &dyn DeliveryLedger) {
    let body = br#"{"id": 42}"#;
    let first = headers("products/delete", body, "current-secret", "wh-1");

    // A forged delivery stores nothing: the genuine one after it is still fresh.
    let mut forged = first.clone();
    forged[1].1 = sign("wrong", body);
    assert_eq!(
        deliver(ledger, &forged, body, now())
            .await
            .unwrap_err()
            .status,
        401
    );

    let Received::Fresh(_, claim) = deliver(ledger, &first, body, now()).await.unwrap() else {
        panic!("first delivery must be fresh")
    };
    // A retry while the first attempt is still being handled must come back later.
    assert_eq!(
        deliver(ledger, &first, body, now())
            .await
            .unwrap_err()
            .status,
        409
    );
    ledger.complete(claim, now()).await.unwrap();
    assert!(matches!(
        deliver(ledger, &first, body, now()).await.unwrap(),
        Received::Duplicate(_)
    ));

    // Same event delivered under another webhook id: still a duplicate.
    let mut again = headers("products/delete", body, "current-secret", "wh-2");
    again[4].1 = "event-wh-1".into();
    assert!(matches!(
        deliver(ledger, &again, body, now()).await.unwrap(),
        Received::Duplicate(_)
    ));

    // A failed attempt releases its claim, so Shopify's retry is handled.
    let other = headers("products/delete", body, "current-secret", "wh-3");
    let Received::Fresh(_, claim) = deliver(ledger, &other, body, now()).await.unwrap() else {
        panic!()
    };
    ledger.release(claim).await.unwrap();
    assert!(matches!(
        deliver(ledger, &other, body, now()).await.unwrap(),
        Received::Fresh(..)
    ));

    // Remembered for at least 24 h, forgotten after the TTL.
    let later = now() + chrono::Duration::hours(24);
    assert!(matches!(
        deliver(ledger, &first, body, later).await.unwrap(),
        Received::Duplicate(_)
    ));
    let much_later = now() + chrono::Duration::hours(49);
    assert!(matches!(
        deliver(ledger, &first, body, much_later).await.unwrap(),
        Received::Fresh(..)
    ));
}

on_both_stores! {
    async fn memory_ledger_dedupes_by_webhook_id_and_event_id() {
        dedupe_contract(&MemoryLedger::default()).await;
    }
}

on_both_stores! {
    async fn store_ledger_dedupes_by_webhook_id_and_event_id() {
        let (store, _dir) = crate::common::store().await;
        dedupe_contract(&StoreLedger::new(store)).await;
    }
}

on_both_stores! {
    async fn compliance_deliveries_are_recorded_and_shop_redact_is_scheduled() {
        let (store, _dir) = crate::common::store().await;
        let ledger = StoreLedger::new(store.clone());
        let cases = [
            (
                "customers/data_request",
                r#"{"shop_id": 1, "shop_domain": "example.myshopify.com", "customer": {"id": 2, "email": "a@b.c"}, "orders_requested": [3]}"#,
                "c-1",
            ),
            (
                "customers/redact",
                r#"{"shop_id": 1, "shop_domain": "example.myshopify.com", "customer": {"id": 2}, "orders_to_redact": [3]}"#,
                "c-2",
            ),
            (
                "shop/redact",
                r#"{"shop_id": 1, "shop_domain": "example.myshopify.com"}"#,
                "c-3",
            ),
        ];
        for (topic, body, id) in cases {
            let h = headers(topic, body.as_bytes(), "current-secret", id);
            let Received::Fresh(delivery, claim) =
                deliver(&ledger, &h, body.as_bytes(), now()).await.unwrap()
            else {
                panic!("{topic} must be fresh")
            };
            let request = compliance_request(&delivery, now()).expect("a compliance topic");
            assert!(store.record_compliance(&request).await.unwrap());
            ledger.complete(claim, now()).await.unwrap();
            // Shopify's retry of the same delivery is acknowledged and records nothing new.
            assert!(matches!(
                deliver(&ledger, &h, body.as_bytes(), now()).await.unwrap(),
                Received::Duplicate(_)
            ));
            assert!(!store.record_compliance(&request).await.unwrap());
        }
        let all = store.compliance_requests().await.unwrap();
        assert_eq!(all.len(), 3);
        let due = store.due_redactions(now()).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].topic, shopsync_domain::ComplianceTopic::ShopRedact);
        assert_eq!(due[0].shop_domain, LEDGER_SHOP);
        // Other topics are not compliance requests.
        let body = br#"{"id": 1}"#;
        let d = check(
            &headers("products/delete", body, "current-secret", "x"),
            body,
        )
        .unwrap();
        assert!(compliance_request(&d, now()).is_none());
    }
}

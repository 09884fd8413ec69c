//! Webhook intake: HMAC vectors, header rules, payloads, dedupe ledgers, compliance records.

use chrono::{DateTime, TimeZone, Utc};
use shopsync_shopify::webhook::payloads;
use shopsync_shopify::webhook::*;

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/shopify")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap()
}

const SHOP: &str = "example.myshopify.com";

fn config() -> WebhookConfig {
    WebhookConfig {
        shop_domain: SHOP.into(),
        secret: "current-secret".into(),
        previous_secret: Some("previous-secret".into()),
    }
}

fn headers(topic: &str, body: &[u8], secret: &str, id: &str) -> Vec<(String, String)> {
    vec![
        ("X-Shopify-Topic".into(), topic.into()),
        ("X-Shopify-Hmac-Sha256".into(), sign(secret, body)),
        ("X-Shopify-Shop-Domain".into(), SHOP.into()),
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

#[test]
fn every_hmac_vector_verifies_and_a_one_byte_change_fails() {
    let vectors: serde_json::Value = serde_json::from_slice(&fixture("hmac-vectors.json")).unwrap();
    let vectors = vectors["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 4);
    for v in vectors {
        let secret = v["secret"].as_str().unwrap();
        let body = v["body"].as_str().unwrap().as_bytes().to_vec();
        let expected = v["expected_hmac_base64"].as_str().unwrap();
        assert!(verify(secret, &body, expected), "{}", v["id"]);
        assert_eq!(sign(secret, &body), expected, "{}", v["id"]);
        let mut changed = body.clone();
        match changed.first_mut() {
            Some(b) => *b ^= 0x01,
            None => changed.push(b' '),
        }
        assert!(
            !verify(secret, &changed, expected),
            "{} with one byte changed",
            v["id"]
        );
        assert!(
            !verify(&format!("{secret}x"), &body, expected),
            "{} other secret",
            v["id"]
        );
    }
}

#[test]
fn sample_payloads_parse_with_exact_64_bit_ids() {
    let body = fixture("webhooks/products-update.json");
    let delivery = check(
        &headers("products/update", &body, "current-secret", "w1"),
        &body,
    )
    .unwrap();
    let Payload::ProductUpdate(product) = delivery.payload else {
        panic!("wrong payload {:?}", delivery.payload)
    };
    assert_eq!(product.id.get(), 788_032_119_674_292_922);
    assert_eq!(product.variants[0].id.get(), 642_667_041_472_713_922);
    assert_eq!(product.variants[0].price.as_deref(), Some("19.99"));
    assert_eq!(product.variants[0].sku, None);
    assert_eq!(product.tags, vec!["example", "mens", "t-shirt"]);
    assert_eq!(delivery.event_id.as_deref(), Some("event-w1"));
    assert!(!delivery.verified_with_previous_secret);

    let body = fixture("webhooks/inventory-levels-update.json");
    let delivery = check(
        &headers("inventory_levels/update", &body, "current-secret", "w2"),
        &body,
    )
    .unwrap();
    let Payload::InventoryLevel(level) = delivery.payload else {
        panic!("wrong payload")
    };
    assert_eq!(level.inventory_item_id.get(), 271_878_346_596_884_015);
    assert_eq!(level.location_id.get(), 24_826_418);
    assert_eq!(level.available, None);
}

#[test]
fn variant_gids_beyond_the_carried_variants_flag_a_full_refetch() {
    let mut product: serde_json::Value =
        serde_json::from_slice(&fixture("webhooks/products-update.json")).unwrap();
    let carried = product["variants"].as_array().unwrap().len();
    let gids: Vec<serde_json::Value> = (0..=carried)
        .map(|i| serde_json::json!({"admin_graphql_api_id": format!("gid://shopify/ProductVariant/{}", 100 + i)}))
        .collect();
    product["variant_gids"] = serde_json::Value::Array(gids.clone());
    let body = serde_json::to_vec(&product).unwrap();
    let delivery = check(
        &headers("products/update", &body, "current-secret", "w"),
        &body,
    )
    .unwrap();
    let Payload::ProductUpdate(p) = delivery.payload else {
        panic!()
    };
    assert!(p.needs_full_refetch());

    product["variant_gids"] = serde_json::Value::Array(gids[..carried].to_vec());
    let body = serde_json::to_vec(&product).unwrap();
    let delivery = check(
        &headers("products/update", &body, "current-secret", "w"),
        &body,
    )
    .unwrap();
    let Payload::ProductUpdate(p) = delivery.payload else {
        panic!()
    };
    assert!(!p.needs_full_refetch());
}

#[test]
fn every_required_header_is_required_in_either_form() {
    let body = br#"{"id": 1}"#;
    for missing in [
        "X-Shopify-Topic",
        "X-Shopify-Hmac-Sha256",
        "X-Shopify-Shop-Domain",
        "X-Shopify-Webhook-Id",
    ] {
        let h: Vec<_> = headers("products/delete", body, "current-secret", "w")
            .into_iter()
            .filter(|(k, _)| k != missing)
            .collect();
        let err = check(&h, body).unwrap_err();
        assert_eq!((err.status, err.code), (400, "missing_header"), "{missing}");
        assert!(
            err.message.contains(&missing["X-Shopify-".len()..]),
            "{}",
            err.message
        );
    }
    // The events form: unprefixed, lower case.
    let h: Vec<_> = headers("products/delete", body, "current-secret", "w")
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("X-").to_ascii_lowercase(), v))
        .collect();
    let delivery = check(&h, body).unwrap();
    assert_eq!(
        delivery.payload,
        Payload::ProductDelete(payloads::DeletedProduct {
            id: shopsync_domain::ids::ShopifyProductId::new(1).unwrap()
        })
    );
    assert_eq!(delivery.webhook_id, "w");
}

#[test]
fn bad_signature_wrong_shop_size_and_json_are_refused_clearly() {
    let body = br#"{"id": 1}"#;
    let mut h = headers("products/delete", body, "someone-else", "w");
    assert_eq!(check(&h, body).unwrap_err().status, 401);
    h[1].1 = "not base64 !!".into();
    assert_eq!(check(&h, body).unwrap_err().code, "bad_hmac");

    let h = headers("products/delete", body, "previous-secret", "w");
    assert!(check(&h, body).unwrap().verified_with_previous_secret);

    let mut h = headers("products/delete", body, "current-secret", "w");
    h[2].1 = "attacker.myshopify.com".into();
    let err = check(&h, body).unwrap_err();
    assert_eq!((err.status, err.code), (401, "unknown_shop"));
    h[2].1 = "EXAMPLE.myshopify.com".into();
    assert!(
        check(&h, body).is_ok(),
        "domains compare case-insensitively"
    );

    let big = vec![b' '; MAX_BODY_BYTES + 1];
    let err = check(
        &headers("products/delete", &big, "current-secret", "w"),
        &big,
    )
    .unwrap_err();
    assert_eq!((err.status, err.code), (413, "body_too_large"));

    let bad = br#"{"id": 1"#;
    let err = check(&headers("products/delete", bad, "current-secret", "w"), bad).unwrap_err();
    assert_eq!((err.status, err.code), (400, "malformed_json"));
    let err = check(&headers("some/topic", bad, "current-secret", "w"), bad).unwrap_err();
    assert_eq!(err.code, "malformed_json");

    let wrong = br#"{"id": "not-an-id"}"#;
    let err = check(
        &headers("products/delete", wrong, "current-secret", "w"),
        wrong,
    )
    .unwrap_err();
    assert_eq!((err.status, err.code), (400, "unexpected_payload"));
    assert!(err.message.contains("products/delete"));
}

#[test]
fn every_handled_topic_parses_its_payload() {
    let cases: &[(&str, &str)] = &[
        (
            "products/create",
            r#"{"id": 9007199254740993, "title": "T", "tags": "", "variants": []}"#,
        ),
        ("products/delete", r#"{"id": 9007199254740993}"#),
        (
            "inventory_items/update",
            r#"{"id": 9007199254740995, "sku": "A", "cost": "1.50", "tracked": true}"#,
        ),
        (
            "collections/create",
            r#"{"id": 5, "title": "C", "handle": "c"}"#,
        ),
        ("collections/update", r#"{"id": 5, "title": "C2"}"#),
        ("collections/delete", r#"{"id": 5}"#),
        (
            "app/uninstalled",
            r#"{"id": 1, "domain": "shop.example", "myshopify_domain": "example.myshopify.com"}"#,
        ),
        (
            "bulk_operations/finish",
            r#"{"admin_graphql_api_id": "gid://shopify/BulkOperation/1", "status": "completed", "error_code": null, "type": "query"}"#,
        ),
        (
            "customers/data_request",
            r#"{"shop_id": 1, "shop_domain": "example.myshopify.com", "customer": {"id": 2}, "orders_requested": [3]}"#,
        ),
        (
            "customers/redact",
            r#"{"shop_id": 1, "shop_domain": "example.myshopify.com", "customer": {"id": 2}, "orders_to_redact": [3]}"#,
        ),
        (
            "shop/redact",
            r#"{"shop_id": 1, "shop_domain": "example.myshopify.com"}"#,
        ),
        ("orders/create", r#"{"id": 1}"#),
    ];
    for (topic, body) in cases {
        let d = check(
            &headers(topic, body.as_bytes(), "current-secret", "w"),
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{topic}: {e}"));
        let ok = match (&d.topic, &d.payload) {
            (Topic::ProductsCreate, Payload::ProductCreate(p)) => {
                p.id.get() == 9_007_199_254_740_993
            }
            (Topic::ProductsDelete, Payload::ProductDelete(p)) => {
                p.id.get() == 9_007_199_254_740_993
            }
            (Topic::InventoryItemsUpdate, Payload::InventoryItem(i)) => {
                i.id.get() == 9_007_199_254_740_995
            }
            (Topic::CollectionsCreate | Topic::CollectionsUpdate, Payload::Collection(c)) => {
                c.id.get() == 5
            }
            (Topic::CollectionsDelete, Payload::CollectionDelete(c)) => c.id.get() == 5,
            (Topic::AppUninstalled, Payload::AppUninstalled(a)) => {
                a.myshopify_domain.as_deref() == Some(SHOP)
            }
            (Topic::BulkOperationsFinish, Payload::BulkFinish(b)) => b.status == "completed",
            (Topic::CustomersDataRequest, Payload::CustomersDataRequest(c)) => {
                c.orders_requested == Some(vec![3])
            }
            (Topic::CustomersRedact, Payload::CustomersRedact(c)) => {
                c.orders_to_redact == Some(vec![3])
            }
            (Topic::ShopRedact, Payload::ShopRedact(s)) => s.shop_id == 1,
            (Topic::Other(name), Payload::Unhandled) => name == "orders/create",
            _ => false,
        };
        assert!(ok, "{topic}: {:?}", d.payload);
        assert_eq!(
            d.topic.is_compliance(),
            topic.starts_with("customers/") || *topic == "shop/redact"
        );
    }
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

#[tokio::test]
async fn memory_ledger_dedupes_by_webhook_id_and_event_id() {
    dedupe_contract(&MemoryLedger::default()).await;
}

#[tokio::test]
async fn store_ledger_dedupes_by_webhook_id_and_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let backend = shopsync_store::SqliteStore::open(dir.path(), "t_").unwrap();
    shopsync_store::migrate::migrate(&backend, Default::default())
        .await
        .unwrap();
    let store = Store::new(std::sync::Arc::new(backend));
    dedupe_contract(&StoreLedger::new(store)).await;
}

use shopsync_store::repo::Store;

#[tokio::test]
async fn compliance_deliveries_are_recorded_and_shop_redact_is_scheduled() {
    let dir = tempfile::tempdir().unwrap();
    let backend = shopsync_store::SqliteStore::open(dir.path(), "t_").unwrap();
    shopsync_store::migrate::migrate(&backend, Default::default())
        .await
        .unwrap();
    let store = Store::new(std::sync::Arc::new(backend));
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
    assert_eq!(due[0].shop_domain, SHOP);
    // Other topics are not compliance requests.
    let body = br#"{"id": 1}"#;
    let d = check(
        &headers("products/delete", body, "current-secret", "x"),
        body,
    )
    .unwrap();
    assert!(compliance_request(&d, now()).is_none());
}

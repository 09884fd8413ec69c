//! Webhook intake: HMAC vectors, header rules, payloads, compliance records.

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

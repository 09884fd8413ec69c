//! Webhook intake, shared by the `shopify-webhook` function and the local server.
//!
//! Order of checks (each answer is final; nothing is stored before the HMAC passes):
//! 1. required headers present (400), body at most [`MAX_BODY_BYTES`] (413);
//! 2. HMAC-SHA256 of the **raw body bytes** against the current or previous secret, constant
//!    time (401);
//! 3. the shop domain is the configured shop (401);
//! 4. the topic's payload parses (400 with the reason);
//!
//! The delivery ledger (a delivery already handled, by webhook id or by topic and event id, is
//! acknowledged without being handled again) lives with the engine, beside the store it
//! writes to (`shopsync_engine::ledger`).

pub mod payloads;

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use payloads::*;
use sha2::Sha256;
use std::time::Duration;

/// Largest body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a delivery is remembered for dedupe (Shopify retries for 4 hours; 48 h covers
/// late manual re-sends).
pub const DEDUPE_TTL: Duration = Duration::from_secs(48 * 3600);

/// Who may send webhooks.
#[derive(Clone)]
pub struct WebhookConfig {
    /// The shop domain deliveries must come from (`example.myshopify.com`).
    pub shop_domain: String,
    /// The app's current client secret.
    pub secret: String,
    /// The previous secret, accepted during rotation.
    pub previous_secret: Option<String>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("shop_domain", &self.shop_domain)
            .field("secret", &"***")
            .field(
                "previous_secret",
                &self.previous_secret.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

/// A refused delivery: the HTTP status to answer and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct Rejection {
    /// HTTP status.
    pub status: u16,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What was wrong (never echoes the body or a secret).
    pub message: String,
}

impl Rejection {
    /// A rejection with its HTTP status, stable code and message.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

/// Topics shopsync handles.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// products/create
    ProductsCreate,
    /// products/update
    ProductsUpdate,
    /// products/delete
    ProductsDelete,
    /// inventory_levels/update
    InventoryLevelsUpdate,
    /// inventory_items/update
    InventoryItemsUpdate,
    /// collections/create
    CollectionsCreate,
    /// collections/update
    CollectionsUpdate,
    /// collections/delete
    CollectionsDelete,
    /// app/uninstalled
    AppUninstalled,
    /// bulk_operations/finish
    BulkOperationsFinish,
    /// customers/data_request (compliance)
    CustomersDataRequest,
    /// customers/redact (compliance)
    CustomersRedact,
    /// shop/redact (compliance)
    ShopRedact,
    /// A topic shopsync does not handle (acknowledged and recorded).
    Other(String),
}

impl Topic {
    /// Parses Shopify's `resource/event` topic name.
    pub fn parse(name: &str) -> Self {
        match name {
            "products/create" => Self::ProductsCreate,
            "products/update" => Self::ProductsUpdate,
            "products/delete" => Self::ProductsDelete,
            "inventory_levels/update" => Self::InventoryLevelsUpdate,
            "inventory_items/update" => Self::InventoryItemsUpdate,
            "collections/create" => Self::CollectionsCreate,
            "collections/update" => Self::CollectionsUpdate,
            "collections/delete" => Self::CollectionsDelete,
            "app/uninstalled" => Self::AppUninstalled,
            "bulk_operations/finish" => Self::BulkOperationsFinish,
            "customers/data_request" => Self::CustomersDataRequest,
            "customers/redact" => Self::CustomersRedact,
            "shop/redact" => Self::ShopRedact,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Shopify's name for the topic.
    pub fn as_str(&self) -> &str {
        match self {
            Self::ProductsCreate => "products/create",
            Self::ProductsUpdate => "products/update",
            Self::ProductsDelete => "products/delete",
            Self::InventoryLevelsUpdate => "inventory_levels/update",
            Self::InventoryItemsUpdate => "inventory_items/update",
            Self::CollectionsCreate => "collections/create",
            Self::CollectionsUpdate => "collections/update",
            Self::CollectionsDelete => "collections/delete",
            Self::AppUninstalled => "app/uninstalled",
            Self::BulkOperationsFinish => "bulk_operations/finish",
            Self::CustomersDataRequest => "customers/data_request",
            Self::CustomersRedact => "customers/redact",
            Self::ShopRedact => "shop/redact",
            Self::Other(name) => name,
        }
    }

    /// Whether this is one of the mandatory compliance topics.
    pub fn is_compliance(&self) -> bool {
        matches!(
            self,
            Self::CustomersDataRequest | Self::CustomersRedact | Self::ShopRedact
        )
    }
}

/// A parsed payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// products/create
    ProductCreate(Box<ProductPayload>),
    /// products/update
    ProductUpdate(Box<ProductPayload>),
    /// products/delete
    ProductDelete(DeletedProduct),
    /// inventory_levels/update
    InventoryLevel(InventoryLevelPayload),
    /// inventory_items/update
    InventoryItem(InventoryItemPayload),
    /// collections/create or update
    Collection(CollectionPayload),
    /// collections/delete
    CollectionDelete(DeletedCollection),
    /// app/uninstalled
    AppUninstalled(AppUninstalledPayload),
    /// bulk_operations/finish
    BulkFinish(BulkFinishPayload),
    /// customers/data_request
    CustomersDataRequest(CustomerCompliancePayload),
    /// customers/redact
    CustomersRedact(CustomerCompliancePayload),
    /// shop/redact: the shop's data must be removed (or its removal scheduled).
    ShopRedact(ShopRedactPayload),
    /// A topic shopsync does not handle.
    Unhandled,
}

/// A verified, parsed delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Topic.
    pub topic: Topic,
    /// Sending shop.
    pub shop_domain: String,
    /// `X-Shopify-Webhook-Id`: the same for every retry of one delivery.
    pub webhook_id: String,
    /// `X-Shopify-Event-Id`: the same for every delivery of one event.
    pub event_id: Option<String>,
    /// `X-Shopify-API-Version`.
    pub api_version: Option<String>,
    /// `X-Shopify-Triggered-At`.
    pub triggered_at: Option<DateTime<Utc>>,
    /// Which secret verified it.
    pub verified_with_previous_secret: bool,
    /// Body size in bytes.
    pub body_len: usize,
    /// The payload.
    pub payload: Payload,
}

impl Delivery {
    /// The dedupe keys of this delivery: the webhook id, and (topic, event id) when present.
    pub fn dedupe_keys(&self) -> Vec<String> {
        let mut keys = vec![format!("webhook:id:{}", self.webhook_id)];
        if let Some(event) = &self.event_id {
            keys.push(format!("webhook:event:{}:{event}", self.topic.as_str()));
        }
        keys
    }
}

/// Case-insensitive header lookup over either header form (`X-Shopify-Topic` or
/// `shopify-topic`).
pub trait HeaderSource {
    /// The value of `name` (lower case), if present.
    fn header(&self, name: &str) -> Option<&str>;
}

impl HeaderSource for http::HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }
}

impl HeaderSource for [(&str, &str)] {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

impl HeaderSource for std::collections::HashMap<String, String> {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn shopify_header<'a, H: HeaderSource + ?Sized>(headers: &'a H, suffix: &str) -> Option<&'a str> {
    headers
        .header(&format!("x-shopify-{suffix}"))
        .or_else(|| headers.header(&format!("shopify-{suffix}")))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The base64 HMAC-SHA256 Shopify would send for `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac_for(secret);
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn hmac_for(secret: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; this cannot fail.
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    }
}

/// Whether `header` is the HMAC of `body` under `secret`, compared in constant time.
pub fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(header.trim()) else {
        return false;
    };
    let mut mac = hmac_for(secret);
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Verifies and parses one delivery (no dedupe: the engine's ledger does that).
pub fn verify_and_parse<H: HeaderSource + ?Sized>(
    config: &WebhookConfig,
    headers: &H,
    body: &[u8],
) -> Result<Delivery, Rejection> {
    let missing = |name: &str| {
        Rejection::new(
            400,
            "missing_header",
            format!(
                "missing header X-Shopify-{name} (or shopify-{})",
                name.to_ascii_lowercase()
            ),
        )
    };
    let topic = shopify_header(headers, "topic").ok_or_else(|| missing("Topic"))?;
    let hmac = shopify_header(headers, "hmac-sha256").ok_or_else(|| missing("Hmac-Sha256"))?;
    let shop = shopify_header(headers, "shop-domain").ok_or_else(|| missing("Shop-Domain"))?;
    let webhook_id = shopify_header(headers, "webhook-id").ok_or_else(|| missing("Webhook-Id"))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(Rejection::new(
            413,
            "body_too_large",
            format!(
                "body is {} bytes; the limit is {MAX_BODY_BYTES}",
                body.len()
            ),
        ));
    }
    let with_current = verify(&config.secret, body, hmac);
    let with_previous = !with_current
        && config
            .previous_secret
            .as_deref()
            .is_some_and(|secret| verify(secret, body, hmac));
    if !with_current && !with_previous {
        return Err(Rejection::new(
            401,
            "bad_hmac",
            "X-Shopify-Hmac-Sha256 does not match the body",
        ));
    }
    if !shop.eq_ignore_ascii_case(config.shop_domain.trim()) {
        return Err(Rejection::new(
            401,
            "unknown_shop",
            format!("deliveries are accepted only from {}", config.shop_domain),
        ));
    }
    let topic = Topic::parse(topic);
    let payload = parse_payload(&topic, body)?;
    Ok(Delivery {
        shop_domain: shop.to_ascii_lowercase(),
        webhook_id: webhook_id.to_owned(),
        event_id: shopify_header(headers, "event-id").map(str::to_owned),
        api_version: shopify_header(headers, "api-version").map(str::to_owned),
        triggered_at: shopify_header(headers, "triggered-at")
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc)),
        verified_with_previous_secret: with_previous,
        body_len: body.len(),
        topic,
        payload,
    })
}

fn parse_payload(topic: &Topic, body: &[u8]) -> Result<Payload, Rejection> {
    fn parse<T: serde::de::DeserializeOwned>(topic: &Topic, body: &[u8]) -> Result<T, Rejection> {
        serde_json::from_slice(body).map_err(|e| {
            let code = if e.is_syntax() || e.is_eof() {
                "malformed_json"
            } else {
                "unexpected_payload"
            };
            Rejection::new(400, code, format!("{} payload: {e}", topic.as_str()))
        })
    }
    Ok(match topic {
        Topic::ProductsCreate => Payload::ProductCreate(Box::new(parse(topic, body)?)),
        Topic::ProductsUpdate => Payload::ProductUpdate(Box::new(parse(topic, body)?)),
        Topic::ProductsDelete => Payload::ProductDelete(parse(topic, body)?),
        Topic::InventoryLevelsUpdate => Payload::InventoryLevel(parse(topic, body)?),
        Topic::InventoryItemsUpdate => Payload::InventoryItem(parse(topic, body)?),
        Topic::CollectionsCreate | Topic::CollectionsUpdate => {
            Payload::Collection(parse(topic, body)?)
        }
        Topic::CollectionsDelete => Payload::CollectionDelete(parse(topic, body)?),
        Topic::AppUninstalled => Payload::AppUninstalled(parse(topic, body)?),
        Topic::BulkOperationsFinish => Payload::BulkFinish(parse(topic, body)?),
        Topic::CustomersDataRequest => Payload::CustomersDataRequest(parse(topic, body)?),
        Topic::CustomersRedact => Payload::CustomersRedact(parse(topic, body)?),
        Topic::ShopRedact => Payload::ShopRedact(parse(topic, body)?),
        Topic::Other(_) => {
            // Still must be JSON: a malformed body is refused whatever the topic.
            parse::<serde::de::IgnoredAny>(topic, body)?;
            Payload::Unhandled
        }
    })
}

/// The audit record of a compliance delivery, or `None` for other topics. shopsync holds no
/// customer data, so customer requests are complete on arrival; a shop/redact is scheduled
/// (the store's `redact_shop` carries it out).
pub fn compliance_request(
    delivery: &Delivery,
    now: DateTime<Utc>,
) -> Option<shopsync_domain::ComplianceRequest> {
    use shopsync_domain::ComplianceTopic;
    let (topic, payload) = match &delivery.payload {
        Payload::CustomersDataRequest(p) => (
            ComplianceTopic::CustomersDataRequest,
            serde_json::to_value(p).ok()?,
        ),
        Payload::CustomersRedact(p) => (
            ComplianceTopic::CustomersRedact,
            serde_json::to_value(p).ok()?,
        ),
        Payload::ShopRedact(p) => (ComplianceTopic::ShopRedact, serde_json::to_value(p).ok()?),
        _ => return None,
    };
    Some(shopsync_domain::ComplianceRequest::received(
        topic,
        &delivery.webhook_id,
        &delivery.shop_domain,
        payload,
        now,
    ))
}

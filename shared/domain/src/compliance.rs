//! Shopify's mandatory compliance requests (customers/data_request, customers/redact,
//! shop/redact), kept as an audit record.
//!
//! shopsync holds catalog and stock data only, never customer data: customer requests are
//! recorded and answered by having nothing to report or erase. A shop/redact (sent 48 hours
//! after the app is uninstalled) schedules the removal of every record the shop has in shopsync.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComplianceTopic {
    /// customers/data_request.
    CustomersDataRequest,
    /// customers/redact.
    CustomersRedact,
    /// shop/redact.
    ShopRedact,
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComplianceStatus {
    /// Recorded; nothing to do (shopsync holds no customer data).
    Recorded,
    /// The shop's data is to be removed at `redact_after`.
    RedactionScheduled,
    /// The shop's data was removed.
    Redacted,
}

/// One compliance request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplianceRequest {
    /// Stable id: the topic and the webhook id, so a redelivery records nothing new.
    pub id: String,
    /// Kind.
    pub topic: ComplianceTopic,
    /// The shop.
    pub shop_domain: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// What Shopify sent (customer references only; shopsync adds nothing).
    pub payload: serde_json::Value,
    /// Where it stands.
    pub status: ComplianceStatus,
    /// When the shop's data is due for removal (shop/redact).
    pub redact_after: Option<DateTime<Utc>>,
    /// When the removal finished.
    pub completed_at: Option<DateTime<Utc>>,
    /// Items removed per table, once redacted.
    #[serde(default)]
    pub removed: std::collections::BTreeMap<String, u64>,
}

impl ComplianceRequest {
    /// A request as it arrives: customer requests are complete on arrival; a shop/redact is
    /// scheduled for `now` (Shopify already waited 48 hours after the uninstall).
    pub fn received(
        topic: ComplianceTopic,
        webhook_id: &str,
        shop_domain: &str,
        payload: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Self {
        let (status, redact_after) = match topic {
            ComplianceTopic::ShopRedact => (ComplianceStatus::RedactionScheduled, Some(now)),
            _ => (ComplianceStatus::Recorded, None),
        };
        Self {
            id: format!("{}:{webhook_id}", topic_name(topic)),
            topic,
            shop_domain: shop_domain.to_owned(),
            received_at: now,
            payload,
            status,
            redact_after,
            completed_at: (status == ComplianceStatus::Recorded).then_some(now),
            removed: Default::default(),
        }
    }

    /// Whether the shop's data is due for removal at `now`.
    pub fn redaction_due(&self, now: DateTime<Utc>) -> bool {
        self.status == ComplianceStatus::RedactionScheduled
            && self.redact_after.is_some_and(|at| at <= now)
    }
}

fn topic_name(topic: ComplianceTopic) -> &'static str {
    match topic {
        ComplianceTopic::CustomersDataRequest => "customers_data_request",
        ComplianceTopic::CustomersRedact => "customers_redact",
        ComplianceTopic::ShopRedact => "shop_redact",
    }
}

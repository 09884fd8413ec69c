//! The webhook intake, shared by `shopsync serve` and the `shopify-webhook` function:
//! verify → dedupe (claim) → drop stale and echoes → stage → enqueue the apply step →
//! answer. A failure releases the claim and answers 500, so Shopify's retry is handled.

use crate::jobs::{Job, JobMessage, JobQueue};
use crate::realtime::{handle_delivery, Handled};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use shopsync_domain::Actor;
use shopsync_shopify::webhook::{receive, DeliveryLedger, HeaderSource, Received, WebhookConfig};
use shopsync_shopify::AdminClient;
use shopsync_store::Store;
use std::sync::Arc;

/// Everything the intake needs.
#[derive(Clone)]
pub struct WebhookIntake {
    /// The store.
    pub store: Store,
    /// Where deliveries are claimed (dedupe).
    pub ledger: Arc<dyn DeliveryLedger>,
    /// The shop and secrets deliveries are verified against.
    pub config: WebhookConfig,
    /// Where the apply step goes.
    pub queue: Arc<dyn JobQueue>,
    /// Shopify, to re-read a product a payload does not fully carry.
    pub client: Option<AdminClient>,
    /// Who stages.
    pub actor: Actor,
}

/// The HTTP answer to a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct IntakeReply {
    /// HTTP status.
    pub status: u16,
    /// JSON body (never echoes the payload or a secret).
    pub body: Value,
}

impl IntakeReply {
    fn new(status: u16, body: Value) -> Self {
        Self { status, body }
    }
}

impl WebhookIntake {
    /// Handles one delivery, raw bytes as they arrived.
    pub async fn receive<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> IntakeReply {
        let received = match receive(&self.config, self.ledger.as_ref(), headers, body, now).await {
            Ok(r) => r,
            Err(rejection) => {
                tracing::warn!(
                    code = rejection.code,
                    status = rejection.status,
                    "webhook rejected"
                );
                return IntakeReply::new(
                    rejection.status,
                    json!({"error": rejection.code, "message": rejection.message}),
                );
            }
        };
        let (delivery, claim) = match received {
            Received::Duplicate(d) => {
                return IntakeReply::new(
                    200,
                    json!({"status": "duplicate", "topic": d.topic.as_str()}),
                )
            }
            Received::Fresh(d, claim) => (d, claim),
        };
        let topic = delivery.topic.as_str().to_owned();
        let outcome = async {
            let handled = handle_delivery(
                &self.store,
                self.client.as_ref(),
                &delivery,
                &self.actor,
                now,
            )
            .await
            .map_err(|e| e.to_string())?;
            if let Handled::Staged { operation, row } = &handled {
                let job = Job::ApplyRows {
                    operation: *operation,
                    rows: vec![*row],
                };
                self.queue
                    .send(vec![JobMessage::new(job, now)])
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(handled)
        }
        .await;
        match outcome {
            Ok(handled) => {
                if let Err(e) = self.ledger.complete(claim, now).await {
                    // Handled and enqueued: a redelivery would be staged again and come out
                    // stale or superseded, so this is logged, not failed.
                    tracing::error!(error = %e, "could not mark the delivery handled");
                }
                // Durable before Shopify hears 200 (it will not send this delivery again);
                // one flush covers the staged change and the ledger's mark.
                if let Err(e) = self.store.flush().await {
                    tracing::error!(topic, webhook_id = %delivery.webhook_id, error = %e, "webhook not durable; Shopify will retry");
                    return IntakeReply::new(
                        500,
                        json!({"error": "handling_failed", "message": "the delivery could not be stored durably; retry later"}),
                    );
                }
                tracing::info!(topic, webhook_id = %delivery.webhook_id, outcome = handled.name(), "webhook handled");
                IntakeReply::new(
                    200,
                    json!({"status": "handled", "topic": topic, "outcome": handled.name()}),
                )
            }
            Err(e) => {
                let _ = self.ledger.release(claim).await;
                tracing::error!(topic, webhook_id = %delivery.webhook_id, error = %e, "webhook failed; Shopify will retry");
                IntakeReply::new(
                    500,
                    json!({"error": "handling_failed", "message": "the delivery could not be handled; retry later"}),
                )
            }
        }
    }
}

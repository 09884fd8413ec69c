//! The webhook intake, shared by `shopsync serve` and the `shopify-webhook` function:
//! verify → dedupe → drop stale and echoes → stage → enqueue the apply step → answer.
//!
//! Product deliveries (the bulk of the traffic) take one store commit: the change is
//! prepared without writing, and its rows commit in one transaction with the ledger's marks,
//! whose conditions make a duplicate (a retry, or a racing attempt) write nothing. Other topics are
//! claimed first, handled, then marked; a failure releases the claim. Either way a failure
//! answers 500, so Shopify's retry is handled.

use crate::jobs::{Job, JobMessage, JobQueue};
use crate::ledger::{ledger_rejection, DeliveryLedger, LedgerError, Seen};
use crate::operation::rows_by_id;
use crate::realtime::{
    deferrable, handle_delivery, prepare_delivery, refused_as_echo, Handled, PreparedDelivery,
    RealtimeOperations,
};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use shopsync_domain::staging::StagingStatus;
use shopsync_domain::Actor;
use shopsync_domain::{OperationId, StagingId};
use shopsync_shopify::webhook::{
    verify_and_parse, Delivery, HeaderSource, Rejection, WebhookConfig,
};
use shopsync_shopify::AdminClient;
use shopsync_store::backend::MAX_TRANSACTION_ITEMS;
use shopsync_store::item::WriteOp;
use shopsync_store::CancelReason;
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
    /// Where the apply step (and a changed collection's read) goes.
    pub queue: Arc<dyn JobQueue>,
    /// Shopify, to re-read a product a payload does not fully carry.
    pub client: Option<AdminClient>,
    /// Who stages.
    pub actor: Actor,
    /// The day's realtime operation, once known.
    pub realtime: RealtimeOperations,
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
        let delivery = match verify_and_parse(&self.config, headers, body) {
            Ok(d) => d,
            Err(rejection) => return rejected(&rejection),
        };
        let keys = delivery.dedupe_keys();
        if deferrable(&delivery) {
            // Only a ledger in the store can commit its marks with the handling's writes.
            if self
                .ledger
                .handled_writes(&keys, &Value::Null, now)
                .is_some()
            {
                return self.receive_in_one_commit(&delivery, &keys, now).await;
            }
        }
        let claim = match self.ledger.claim(&keys, now).await {
            Ok(Some(claim)) => claim,
            Ok(None) => return duplicate(&delivery),
            Err(e) => return rejected(&ledger_rejection(e)),
        };
        let topic = delivery.topic.as_str();
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
                self.enqueue_apply(*operation, *row, now).await?;
            }
            if let Handled::CollectionChanged(collection) = &handled {
                // Read by the worker (a collection's products may take many calls).
                let job = Job::SyncCollection {
                    collection: *collection,
                };
                self.queue
                    .send(vec![JobMessage::new(job, now)])
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(handled)
        }
        .await;
        let handled = match outcome {
            Ok(handled) => handled,
            Err(e) => {
                let _ = self.ledger.release(claim).await;
                return failed(&delivery, &e);
            }
        };
        if let Err(e) = self.ledger.complete(claim, now).await {
            // Handled and enqueued: a redelivery would be handled again and come out stale or
            // superseded, so this is logged, not failed.
            tracing::error!(error = %e, "could not mark the delivery handled");
        }
        // Durable before Shopify hears 200 (it will not send this delivery again); one flush
        // covers the handling's writes and the ledger's mark.
        if let Some(reply) = self.flushed(&delivery).await {
            return reply;
        }
        tracing::info!(topic, webhook_id = %delivery.webhook_id, outcome = handled.name(), "webhook handled");
        IntakeReply::new(
            200,
            json!({"status": "handled", "topic": topic, "outcome": handled.name()}),
        )
    }

    /// A product delivery, with the ledger in the store: handled up to its writes, which
    /// commit in one transaction with the dedupe marks (one commit per delivery, no claim,
    /// no ledger read first). The marks' conditions are the dedupe: a delivery recorded
    /// before, or by a racing attempt, has its marks refused and writes nothing; only then is
    /// the ledger read, to answer it as a duplicate.
    async fn receive_in_one_commit(
        &self,
        delivery: &Delivery,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> IntakeReply {
        let topic = delivery.topic.as_str();
        let prepared = prepare_delivery(
            &self.store,
            &self.realtime,
            self.client.as_ref(),
            delivery,
            &self.actor,
            now,
        )
        .await;
        let PreparedDelivery {
            mut handled,
            writes,
            echo_checked,
        } = match prepared {
            Ok(p) => p,
            Err(e) => {
                // A redelivery of a handled delivery is acknowledged even when it cannot be
                // prepared again (Shopify unreachable for a re-read, say).
                let failure = || failed(delivery, &e.to_string());
                return self.if_recorded(delivery, keys, now, failure).await;
            }
        };
        let mut committed = self
            .commit_recorded(delivery, &handled, keys, (writes, echo_checked), now)
            .await;
        if let Ok(Committed::Echo) = committed {
            // The echo of shopsync's own push: nothing of it is written but its marks.
            handled = Handled::Echo;
            committed = self
                .commit_recorded(delivery, &handled, keys, (Vec::new(), false), now)
                .await;
        }
        match committed {
            // Recorded before, or by a racing attempt with its own writes.
            Ok(Committed::Recorded) => {
                let unknown =
                    || failed(delivery, "the delivery's marks were refused but not found");
                return self.if_recorded(delivery, keys, now, unknown).await;
            }
            // (A commit without the echo check never answers `Echo`.)
            Ok(Committed::Done | Committed::Echo) => {}
            Err(reply) => return reply,
        }
        if let Handled::Staged { operation, row } = &handled {
            if let Err(e) = self.enqueue_apply(*operation, *row, now).await {
                // Staged and recorded: Shopify's retry finds the row pending and queues it.
                return failed(delivery, &e);
            }
        }
        if let Some(reply) = self.flushed(delivery).await {
            return reply;
        }
        tracing::info!(topic, webhook_id = %delivery.webhook_id, outcome = handled.name(), "webhook handled");
        IntakeReply::new(
            200,
            json!({"status": "handled", "topic": topic, "outcome": handled.name()}),
        )
    }

    /// Commits a delivery's `writes` with the ledger's marks recording it as `handled`; the
    /// answer to give when that failed.
    async fn commit_recorded(
        &self,
        delivery: &Delivery,
        handled: &Handled,
        keys: &[String],
        (writes, echo_checked): (Vec<WriteOp>, bool),
        now: DateTime<Utc>,
    ) -> Result<Committed, IntakeReply> {
        let marks = match self
            .ledger
            .handled_writes(keys, &recorded_result(handled), now)
        {
            Some(Ok(marks)) => marks,
            Some(Err(e)) => return Err(rejected(&ledger_rejection(e))),
            None => return Err(failed(delivery, "the ledger stopped offering its writes")),
        };
        self.commit(writes, echo_checked, marks)
            .await
            .map_err(|e| failed(delivery, &e))
    }

    /// Commits a delivery's `writes` (beginning with its echo check when `echo_checked`, see
    /// [`PreparedDelivery`]) with its dedupe `marks`; when refused, nothing is written. A
    /// handling with more writes than one transaction holds (never one with the echo check)
    /// commits them first, in parts, then the marks.
    async fn commit(
        &self,
        mut writes: Vec<WriteOp>,
        echo_checked: bool,
        marks: Vec<WriteOp>,
    ) -> Result<Committed, String> {
        if writes.len() + marks.len() > MAX_TRANSACTION_ITEMS {
            if echo_checked {
                return Err("the writes are too many to carry the echo check".into());
            }
            let parts: Vec<Vec<WriteOp>> = writes
                .chunks(MAX_TRANSACTION_ITEMS)
                .map(<[WriteOp]>::to_vec)
                .collect();
            for answer in self
                .store
                .backend()
                .transact_each(parts)
                .await
                .map_err(|e| e.to_string())?
            {
                answer.map_err(|e| e.to_string())?;
            }
            writes.clear();
        }
        let own = writes.len();
        let mut all = writes;
        all.extend(marks);
        match self.store.commit_writes(all).await {
            Ok(Ok(())) => Ok(Committed::Done),
            Ok(Err(reasons)) => {
                let mark_refused = reasons
                    .iter()
                    .skip(own)
                    .any(|r| matches!(r, CancelReason::ConditionFailed(_)));
                let echo_refused = refused_as_echo(echo_checked, reasons.get(..own).unwrap_or(&[]));
                if mark_refused {
                    Ok(Committed::Recorded)
                } else if echo_refused {
                    Ok(Committed::Echo)
                } else {
                    Err(format!("the staged writes were refused: {reasons:?}"))
                }
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// The answer to a delivery the ledger already records (a duplicate, or 409 while a
    /// claim on it is live); `otherwise()` when it records nothing.
    async fn if_recorded(
        &self,
        delivery: &Delivery,
        keys: &[String],
        now: DateTime<Utc>,
        otherwise: impl FnOnce() -> IntakeReply,
    ) -> IntakeReply {
        match self.ledger.seen(keys, now).await {
            Ok(Seen::Handled(result)) => self.redelivered(delivery, &result, now).await,
            Ok(Seen::InProgress) => rejected(&ledger_rejection(LedgerError::InProgress)),
            Ok(Seen::New) => otherwise(),
            Err(e) => rejected(&ledger_rejection(e)),
        }
    }

    /// A delivery handled before. If it staged a row that is still pending (its apply step
    /// could not be queued the first time), the step is queued now.
    async fn redelivered(
        &self,
        delivery: &Delivery,
        result: &Value,
        now: DateTime<Utc>,
    ) -> IntakeReply {
        let ids = (
            result["operation"]
                .as_str()
                .and_then(|s| s.parse::<OperationId>().ok()),
            result["row"]
                .as_str()
                .and_then(|s| s.parse::<StagingId>().ok()),
        );
        if let (Some(operation), Some(row)) = ids {
            let pending = match rows_by_id(&self.store, &[row]).await {
                Ok(rows) => rows.iter().any(|r| r.status == StagingStatus::Pending),
                Err(e) => return failed(delivery, &e.to_string()),
            };
            if pending {
                if let Err(e) = self.enqueue_apply(operation, row, now).await {
                    return failed(delivery, &e);
                }
                tracing::info!(webhook_id = %delivery.webhook_id, "redelivery queued the apply step of its pending row");
            }
        }
        duplicate(delivery)
    }

    async fn enqueue_apply(
        &self,
        operation: OperationId,
        row: StagingId,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let job = Job::ApplyRows {
            operation,
            rows: vec![row],
        };
        self.queue
            .send(vec![JobMessage::new(job, now)])
            .await
            .map_err(|e| e.to_string())
    }

    /// Makes everything written so far durable; the 500 to answer when that failed.
    async fn flushed(&self, delivery: &Delivery) -> Option<IntakeReply> {
        let e = self.store.flush().await.err()?;
        tracing::error!(topic = delivery.topic.as_str(), webhook_id = %delivery.webhook_id, error = %e, "webhook not durable; Shopify will retry");
        Some(IntakeReply::new(
            500,
            json!({"error": "handling_failed", "message": "the delivery could not be stored durably; retry later"}),
        ))
    }
}

/// How a delivery's commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Committed {
    /// Its writes and marks are written.
    Done,
    /// A mark was refused: another attempt recorded the delivery. Nothing written.
    Recorded,
    /// Only the echo check was refused: the payload is shopsync's own push. Nothing written.
    Echo,
}

/// What the ledger records of a handled delivery: its outcome and, for a staged change, the
/// operation and row (so a redelivery can queue the row's apply step again).
fn recorded_result(handled: &Handled) -> Value {
    match handled {
        Handled::Staged { operation, row } => json!({
            "outcome": handled.name(),
            "operation": operation.to_string(),
            "row": row.to_string(),
        }),
        other => json!({"outcome": other.name()}),
    }
}

fn rejected(rejection: &Rejection) -> IntakeReply {
    tracing::warn!(
        code = rejection.code,
        status = rejection.status,
        "webhook rejected"
    );
    IntakeReply::new(
        rejection.status,
        json!({"error": rejection.code, "message": rejection.message}),
    )
}

fn duplicate(delivery: &Delivery) -> IntakeReply {
    IntakeReply::new(
        200,
        json!({"status": "duplicate", "topic": delivery.topic.as_str()}),
    )
}

fn failed(delivery: &Delivery, error: &str) -> IntakeReply {
    tracing::error!(topic = delivery.topic.as_str(), webhook_id = %delivery.webhook_id, error, "webhook failed; Shopify will retry");
    IntakeReply::new(
        500,
        json!({"error": "handling_failed", "message": "the delivery could not be handled; retry later"}),
    )
}

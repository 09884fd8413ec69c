//! The delivery ledger: remembers handled deliveries (with a TTL) so retries and duplicate
//! events are acknowledged without being handled twice.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use shopsync_shopify::webhook::{
    verify_and_parse, Delivery, HeaderSource, Rejection, WebhookConfig, DEDUPE_TTL,
};
use shopsync_store::item::WriteOp;
use shopsync_store::repo::{IdempotencyStart, IdempotencyState, RepoError, Store};
use std::collections::HashMap;
use std::sync::Mutex;

/// How long a claim blocks a concurrent duplicate before it counts as abandoned.
const CLAIM_LEASE: chrono::Duration = chrono::Duration::seconds(60);
const CLAIM_MARK: &str = "webhook-delivery";

/// A claim on a delivery's dedupe keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryClaim {
    keys: Vec<String>,
}

impl DeliveryClaim {
    /// The keys held.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }
}

/// Why the ledger could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Another attempt of this delivery holds the claim (retry later).
    #[error("delivery is being handled by another attempt")]
    InProgress,
    /// The ledger's storage failed (retry later).
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
}

/// What the ledger knows of a delivery, read without claiming it.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// Neither handled nor being handled.
    New,
    /// Handled before: the result recorded with it.
    Handled(serde_json::Value),
    /// Another attempt holds a live claim on it.
    InProgress,
}

/// Where handled deliveries are remembered.
#[async_trait]
pub trait DeliveryLedger: Send + Sync {
    /// What the ledger knows of `keys` at `now` (no claim is taken).
    async fn seen(&self, keys: &[String], now: DateTime<Utc>) -> Result<Seen, LedgerError>;
    /// The writes that record `keys` handled with `result`, to commit in one transaction
    /// with the handling's own writes (no claim first): each is refused when its key was
    /// recorded, or claimed by a live attempt, meanwhile. `None`: this ledger does not live
    /// in the store, so a delivery is claimed, handled and completed instead.
    fn handled_writes(
        &self,
        _keys: &[String],
        _result: &serde_json::Value,
        _now: DateTime<Utc>,
    ) -> Option<Result<Vec<WriteOp>, LedgerError>> {
        None
    }
    /// Claims every key: `Some(claim)` if none was handled before, `None` if one was.
    async fn claim(
        &self,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> Result<Option<DeliveryClaim>, LedgerError>;
    /// Marks the delivery handled (remembered for the TTL).
    async fn complete(&self, claim: DeliveryClaim, now: DateTime<Utc>) -> Result<(), LedgerError>;
    /// Gives the claim up after a failure, so Shopify's retry is handled.
    async fn release(&self, claim: DeliveryClaim) -> Result<(), LedgerError>;
}

fn ttl() -> chrono::Duration {
    chrono::Duration::from_std(DEDUPE_TTL).unwrap_or(chrono::Duration::hours(48))
}

/// The ledger on the `idempotency_records` table (TTL attribute `expires_at`).
#[derive(Clone)]
pub struct StoreLedger {
    store: Store,
}

impl StoreLedger {
    /// A ledger over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn unavailable(e: RepoError) -> LedgerError {
    LedgerError::Unavailable(e.to_string())
}

#[async_trait]
impl DeliveryLedger for StoreLedger {
    async fn seen(&self, keys: &[String], now: DateTime<Utc>) -> Result<Seen, LedgerError> {
        let mut seen = Seen::New;
        for key in keys {
            match self
                .store
                .idempotency_state(key, now)
                .await
                .map_err(unavailable)?
            {
                IdempotencyState::Completed { result, .. } => return Ok(Seen::Handled(result)),
                IdempotencyState::InProgress => seen = Seen::InProgress,
                IdempotencyState::Absent => {}
            }
        }
        Ok(seen)
    }

    fn handled_writes(
        &self,
        keys: &[String],
        result: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Option<Result<Vec<WriteOp>, LedgerError>> {
        Some(
            keys.iter()
                .map(|key| {
                    Store::completion_write(key, CLAIM_MARK, result.clone(), now, now + ttl())
                        .map_err(unavailable)
                })
                .collect(),
        )
    }

    async fn claim(
        &self,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> Result<Option<DeliveryClaim>, LedgerError> {
        let mut held = Vec::new();
        for key in keys {
            let started = self
                .store
                .begin_idempotent(key, CLAIM_MARK, now, now + CLAIM_LEASE, now + ttl())
                .await;
            let outcome = match started {
                Ok(IdempotencyStart::Started) => {
                    held.push(key.clone());
                    continue;
                }
                Ok(IdempotencyStart::Replay(_)) => Ok(None),
                Err(RepoError::IdempotencyInProgress { .. }) => Err(LedgerError::InProgress),
                Err(e) => Err(unavailable(e)),
            };
            self.release(DeliveryClaim { keys: held }).await?;
            return outcome;
        }
        Ok(Some(DeliveryClaim { keys: held }))
    }

    async fn complete(&self, claim: DeliveryClaim, now: DateTime<Utc>) -> Result<(), LedgerError> {
        for key in &claim.keys {
            self.store
                .complete_idempotent(key, CLAIM_MARK, serde_json::Value::Null, now + ttl())
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn release(&self, claim: DeliveryClaim) -> Result<(), LedgerError> {
        for key in &claim.keys {
            self.store
                .abandon_idempotent(key, CLAIM_MARK)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    InProgress(DateTime<Utc>),
    Done(DateTime<Utc>),
}

/// An in-memory ledger (tests, benchmarks, single-process use).
#[derive(Debug, Default)]
pub struct MemoryLedger {
    marks: Mutex<HashMap<String, Mark>>,
}

impl MemoryLedger {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Mark>> {
        self.marks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl DeliveryLedger for MemoryLedger {
    async fn seen(&self, keys: &[String], now: DateTime<Utc>) -> Result<Seen, LedgerError> {
        let marks = self.lock();
        let mut seen = Seen::New;
        for key in keys {
            match marks.get(key) {
                Some(Mark::Done(until)) if *until > now => {
                    return Ok(Seen::Handled(serde_json::Value::Null))
                }
                Some(Mark::InProgress(until)) if *until > now => seen = Seen::InProgress,
                _ => {}
            }
        }
        Ok(seen)
    }

    async fn claim(
        &self,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> Result<Option<DeliveryClaim>, LedgerError> {
        let mut marks = self.lock();
        for key in keys {
            match marks.get(key) {
                Some(Mark::Done(until)) if *until > now => return Ok(None),
                Some(Mark::InProgress(until)) if *until > now => {
                    return Err(LedgerError::InProgress)
                }
                _ => {}
            }
        }
        for key in keys {
            marks.insert(key.clone(), Mark::InProgress(now + CLAIM_LEASE));
        }
        Ok(Some(DeliveryClaim {
            keys: keys.to_vec(),
        }))
    }

    async fn complete(&self, claim: DeliveryClaim, now: DateTime<Utc>) -> Result<(), LedgerError> {
        let mut marks = self.lock();
        for key in claim.keys {
            marks.insert(key, Mark::Done(now + ttl()));
        }
        Ok(())
    }

    async fn release(&self, claim: DeliveryClaim) -> Result<(), LedgerError> {
        let mut marks = self.lock();
        for key in claim.keys {
            if matches!(marks.get(&key), Some(Mark::InProgress(_))) {
                marks.remove(&key);
            }
        }
        Ok(())
    }
}

/// The outcome of receiving a delivery.
#[derive(Debug)]
pub enum Received {
    /// First time: handle it, then [`DeliveryLedger::complete`] the claim (or
    /// [`DeliveryLedger::release`] it on failure so Shopify's retry is handled).
    Fresh(Box<Delivery>, DeliveryClaim),
    /// Already handled: acknowledge with 200 and do nothing.
    Duplicate(Box<Delivery>),
}

/// Verifies, parses and claims a delivery.
///
/// A delivery whose first attempt is still being handled answers 409 (retryable for Shopify),
/// so a crash mid-handling never loses it.
pub async fn receive<H: HeaderSource + ?Sized>(
    config: &WebhookConfig,
    ledger: &dyn DeliveryLedger,
    headers: &H,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Received, Rejection> {
    let delivery = verify_and_parse(config, headers, body)?;
    let keys = delivery.dedupe_keys();
    match ledger.claim(&keys, now).await {
        Ok(Some(claim)) => Ok(Received::Fresh(Box::new(delivery), claim)),
        Ok(None) => Ok(Received::Duplicate(Box::new(delivery))),
        Err(e) => Err(ledger_rejection(e)),
    }
}

/// The answer to a delivery the ledger could not take: 409 while another attempt holds it
/// (Shopify retries), 503 when the ledger is unavailable.
pub fn ledger_rejection(error: LedgerError) -> Rejection {
    match error {
        LedgerError::InProgress => Rejection::new(
            409,
            "in_progress",
            "this delivery is being handled; retry later",
        ),
        LedgerError::Unavailable(reason) => {
            tracing::error!(%reason, "delivery ledger unavailable");
            Rejection::new(503, "ledger_unavailable", "try again later")
        }
    }
}

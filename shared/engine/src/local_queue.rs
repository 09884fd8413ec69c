//! The local host's job queue, kept in the store (`local_jobs`), with SQS's promise: a job
//! accepted is stored until it is done, handed out under a visibility timeout, handed out
//! again when its holder does not finish in time, and deleted when done. A job sent again
//! under an id already queued is queued once (as a FIFO queue's deduplication would).

use crate::jobs::{JobMessage, JobQueue, QueueError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use shopsync_store::item::{Condition, Item, Key, Query, Scalar, SortCondition};
use shopsync_store::{Store, StoreError, Table};
use std::time::Duration;
use tokio::sync::Notify;

/// The partition every queued job is indexed under (one queue).
const QUEUE: &str = "jobs";
const VISIBLE_AT: &str = "visible_at";
const RECEIVES: &str = "receive_count";

/// How long a job handed out stays hidden from other receives unless told otherwise.
pub const DEFAULT_VISIBILITY: Duration = Duration::from_secs(15 * 60);

/// A job handed out by [`StoreQueue::receive`].
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// The job.
    pub message: JobMessage,
    /// How many times it has been handed out, this time included.
    pub receive_count: u32,
    /// When it becomes visible again unless deleted or extended (epoch ms): the receipt that
    /// proves this holder still has it.
    visible_at: i64,
}

/// The queue on the store's `local_jobs` table.
pub struct StoreQueue {
    store: Store,
    visibility: Duration,
    arrived: Notify,
}

fn queue_error(e: impl std::fmt::Display) -> QueueError {
    QueueError(format!("the local job queue: {e}"))
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn item_of(message: &JobMessage, visible_at: i64, receives: u32) -> Item {
    Item {
        attrs: [
            ("id".to_owned(), Scalar::S(message.id.clone())),
            ("queue".to_owned(), Scalar::S(QUEUE.into())),
            (VISIBLE_AT.to_owned(), Scalar::N(visible_at)),
            (RECEIVES.to_owned(), Scalar::N(i64::from(receives))),
        ]
        .into(),
        doc: Some(message.encode().into_bytes()),
    }
}

impl StoreQueue {
    /// The queue on `store`; a job handed out stays hidden for `visibility`.
    pub fn new(store: Store, visibility: Duration) -> Self {
        Self {
            store,
            visibility,
            arrived: Notify::new(),
        }
    }

    fn hidden_until(&self, now: DateTime<Utc>) -> i64 {
        millis(now) + self.visibility.as_millis() as i64
    }

    /// Makes every job handed out before visible now: the local host calls it when it
    /// starts, when any job still hidden was held by a process that is gone. Returns the
    /// jobs made visible again.
    pub async fn recover(&self, now: DateTime<Utc>) -> Result<Vec<JobMessage>, QueueError> {
        let mut query = jobs(Some(SortCondition::Gt(Scalar::N(millis(now)))), 1000);
        let mut recovered = Vec::new();
        loop {
            let page = self
                .store
                .backend()
                .query(&query)
                .await
                .map_err(queue_error)?;
            for item in &page.items {
                let Some(message) = decode(item)? else {
                    continue;
                };
                let previous = item.attrs.get(VISIBLE_AT).cloned();
                if self
                    .reschedule(&message, millis(now), receive_count(item), previous)
                    .await?
                {
                    recovered.push(message);
                }
            }
            match page.next {
                Some(next) => query.start = Some(next),
                None => break,
            }
        }
        if !recovered.is_empty() {
            self.arrived.notify_one();
        }
        Ok(recovered)
    }

    /// The next visible job, oldest first, handed out under the visibility timeout; waits
    /// until there is one (a send wakes it; a job whose timeout ends is found within a
    /// second).
    pub async fn receive(&self) -> Result<Lease, QueueError> {
        loop {
            if let Some(lease) = self.try_receive(Utc::now()).await? {
                return Ok(lease);
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), self.arrived.notified()).await;
        }
    }

    /// The next job visible at `now`, if any, handed out.
    pub async fn try_receive(&self, now: DateTime<Utc>) -> Result<Option<Lease>, QueueError> {
        let query = jobs(Some(SortCondition::Le(Scalar::N(millis(now)))), 10);
        let page = self
            .store
            .backend()
            .query(&query)
            .await
            .map_err(queue_error)?;
        for item in &page.items {
            let Some(message) = decode(item)? else {
                continue;
            };
            let receive_count = receive_count(item) + 1;
            let visible_at = self.hidden_until(now);
            // The claim: only if nobody took it since it was read.
            let previous = item.attrs.get(VISIBLE_AT).cloned();
            if self
                .reschedule(&message, visible_at, receive_count, previous)
                .await?
            {
                return Ok(Some(Lease {
                    message,
                    receive_count,
                    visible_at,
                }));
            }
        }
        Ok(None)
    }

    /// Removes a job that is done. `false`: the lease had run out and the job was handed
    /// out again (or removed) meanwhile; it stays for its new holder.
    pub async fn delete(&self, lease: &Lease) -> Result<bool, QueueError> {
        let answer = self
            .store
            .backend()
            .delete(
                Table::LocalJobs,
                &Key::pk(lease.message.id.as_str()),
                Some(Condition::Eq(VISIBLE_AT, Scalar::N(lease.visible_at))),
            )
            .await;
        match answer {
            Ok(()) => {
                self.store.flush().await.map_err(queue_error)?;
                Ok(true)
            }
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(e) => Err(queue_error(e)),
        }
    }

    /// Gives a job back, visible again after `delay` (a failed attempt, to be tried later).
    pub async fn release(&self, lease: &Lease, delay: Duration) -> Result<bool, QueueError> {
        let visible_at = millis(Utc::now()) + delay.as_millis() as i64;
        self.reschedule(
            &lease.message,
            visible_at,
            lease.receive_count,
            Some(Scalar::N(lease.visible_at)),
        )
        .await
    }

    /// Stores a job as visible from `visible_at` after `receives` deliveries, if its
    /// visibility time is still `previous` (nobody took or moved it since it was read);
    /// `false` when somebody did.
    async fn reschedule(
        &self,
        message: &JobMessage,
        visible_at: i64,
        receives: u32,
        previous: Option<Scalar>,
    ) -> Result<bool, QueueError> {
        let answer = self
            .store
            .backend()
            .put(
                Table::LocalJobs,
                item_of(message, visible_at, receives),
                previous.map(|v| Condition::Eq(VISIBLE_AT, v)),
            )
            .await;
        match answer {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(e) => Err(queue_error(e)),
        }
    }

    /// Whether no job waits or is in flight.
    pub async fn is_empty(&self) -> Result<bool, QueueError> {
        Ok(self.len().await? == 0)
    }

    /// The jobs waiting or in flight (for status pages and tests).
    pub async fn len(&self) -> Result<usize, QueueError> {
        let mut query = jobs(None, 1000);
        let mut count = 0;
        loop {
            let page = self
                .store
                .backend()
                .query(&query)
                .await
                .map_err(queue_error)?;
            count += page.items.len();
            match page.next {
                Some(next) => query.start = Some(next),
                None => return Ok(count),
            }
        }
    }
}

/// The queued jobs whose visibility time meets `visible`, in visibility order, `limit` a page.
fn jobs(visible: Option<SortCondition>, limit: u32) -> Query {
    let mut query = Query::new(Table::LocalJobs, Some("by_visible"), QUEUE);
    query.sk = visible;
    query.limit = limit;
    query
}

fn receive_count(item: &Item) -> u32 {
    match item.attrs.get(RECEIVES) {
        Some(Scalar::N(n)) => u32::try_from(*n).unwrap_or(u32::MAX),
        _ => 0,
    }
}

/// The job of a stored item; a job that no longer decodes (written by a newer build) is
/// left where it is, logged, and skipped.
fn decode(item: &Item) -> Result<Option<JobMessage>, QueueError> {
    let Some(doc) = item.doc.as_deref() else {
        return Err(queue_error("a stored job without its message"));
    };
    let text = String::from_utf8_lossy(doc);
    match JobMessage::decode(&text) {
        Ok(message) => Ok(Some(message)),
        Err(e) => {
            tracing::error!(error = %e, "a stored job that cannot be read is skipped");
            Ok(None)
        }
    }
}

#[async_trait]
impl JobQueue for StoreQueue {
    /// Stores each job, visible now, in the order given (a millisecond apart, so they are
    /// handed out in that order); a job whose id is already queued stays as it is.
    async fn send(&self, messages: Vec<JobMessage>) -> Result<(), QueueError> {
        let now = millis(Utc::now());
        for (index, message) in messages.iter().enumerate() {
            let answer = self
                .store
                .backend()
                .put(
                    Table::LocalJobs,
                    item_of(message, now + index as i64, 0),
                    Some(Condition::ItemAbsent),
                )
                .await;
            match answer {
                Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
                Err(e) => return Err(queue_error(e)),
            }
        }
        // Accepted means kept: durable before the sender hears so.
        self.store.flush().await.map_err(queue_error)?;
        if !messages.is_empty() {
            self.arrived.notify_one();
        }
        Ok(())
    }
}

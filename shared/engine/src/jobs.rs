//! Chained work: a typed, versioned job message on a queue port, and the worker that runs
//! it. A message delivered twice is harmless: the worker claims it by id in the idempotency
//! table first, and every step is idempotent on its own as well.

use crate::error::EngineError;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use shopsync_domain::{Actor, GuardRails, OperationId, SyncOperation};
use shopsync_shopify::AdminClient;
use shopsync_store::{IdempotencyStart, RepoError, Store};
use tokio::sync::{mpsc, Mutex};

/// The message format version this build writes and reads.
pub const JOB_VERSION: u32 = 1;

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// A full down-sync.
    FullDown,
    /// An incremental down-sync.
    IncrementalDown,
    /// Push pending local changes.
    Up,
    /// Apply an approved operation's rows.
    ApplyOperation {
        /// The operation.
        operation: OperationId,
    },
    /// Carry out shop redactions that are due (Shopify's shop/redact).
    Redactions,
}

/// One message on the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    /// Format version.
    pub v: u32,
    /// Unique id (the idempotency key of the work).
    pub id: String,
    /// The job.
    pub job: Job,
    /// When it was enqueued.
    pub enqueued_at: DateTime<Utc>,
}

impl JobMessage {
    /// A new message for `job`.
    pub fn new(job: Job, now: DateTime<Utc>) -> Self {
        Self {
            v: JOB_VERSION,
            id: uuid::Uuid::new_v4().to_string(),
            job,
            enqueued_at: now,
        }
    }

    /// Encodes for a queue body.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes a queue body; anything this build cannot run is poison (never retried).
    pub fn decode(body: &str) -> Result<Self, JobError> {
        #[derive(Deserialize)]
        struct Head {
            v: u32,
        }
        let head: Head = serde_json::from_str(body)
            .map_err(|e| JobError::Poison(format!("not a job message: {e}")))?;
        if head.v != JOB_VERSION {
            return Err(JobError::Poison(format!(
                "job message version {} (this build reads {JOB_VERSION})",
                head.v
            )));
        }
        serde_json::from_str(body).map_err(|e| JobError::Poison(format!("bad job message: {e}")))
    }
}

/// Why a job did not run.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The message can never run: send it to the dead-letter queue.
    #[error("poison message: {0}")]
    Poison(String),
    /// The same message is being run by another worker: retry later.
    #[error("message {0} is already being handled")]
    InProgress(String),
    /// The work failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl JobError {
    /// Whether redelivering the message can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            JobError::Poison(_) => false,
            JobError::InProgress(_) => true,
            JobError::Engine(e) => e.is_retryable(),
        }
    }
}

/// Why a queue refused messages.
#[derive(Debug, thiserror::Error)]
#[error("queue: {0}")]
pub struct QueueError(pub String);

/// Where jobs are sent.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Sends messages (all or an error).
    async fn send(&self, messages: Vec<JobMessage>) -> Result<(), QueueError>;
}

/// The in-process queue of the local host.
pub struct LocalQueue {
    sender: mpsc::UnboundedSender<JobMessage>,
    receiver: Mutex<mpsc::UnboundedReceiver<JobMessage>>,
}

impl Default for LocalQueue {
    fn default() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Self {
            sender,
            receiver: Mutex::new(receiver),
        }
    }
}

impl LocalQueue {
    /// The next message, waiting for one.
    pub async fn receive(&self) -> Option<JobMessage> {
        self.receiver.lock().await.recv().await
    }
}

#[async_trait]
impl JobQueue for LocalQueue {
    async fn send(&self, messages: Vec<JobMessage>) -> Result<(), QueueError> {
        for message in messages {
            self.sender
                .send(message)
                .map_err(|_| QueueError("the local worker has stopped".into()))?;
        }
        Ok(())
    }
}

/// Runs jobs.
pub struct Worker {
    /// The store.
    pub store: Store,
    /// Shopify.
    pub client: AdminClient,
    /// Who the work is done as.
    pub actor: Actor,
    /// The rails operations are judged by.
    pub rails: GuardRails,
}

/// How long a claimed message blocks a concurrent delivery of itself.
const CLAIM: i64 = 15 * 60;

impl Worker {
    /// Runs one message once: a redelivery of a message already run returns `None`; so does
    /// a job that is not a sync operation (redactions).
    pub async fn handle(&self, message: &JobMessage) -> Result<Option<SyncOperation>, JobError> {
        if message.job == Job::Redactions {
            self.redact_due().await?;
            return Ok(None);
        }
        let now = Utc::now();
        let key = format!("job:{}", message.id);
        let fingerprint = message.encode();
        match self
            .store
            .begin_idempotent(
                &key,
                &fingerprint,
                now,
                now + Duration::seconds(CLAIM),
                now + Duration::days(2),
            )
            .await
        {
            Ok(IdempotencyStart::Replay(_)) => return Ok(None),
            Ok(IdempotencyStart::Started) => {}
            Err(RepoError::IdempotencyInProgress { .. }) => {
                return Err(JobError::InProgress(message.id.clone()))
            }
            Err(e) => return Err(JobError::Engine(e.into())),
        }
        let result = self.run(&message.job).await;
        match &result {
            Ok(op) => {
                let summary = serde_json::json!({ "operation": op.operation_uuid.to_string() });
                self.store
                    .complete_idempotent(
                        &key,
                        &fingerprint,
                        summary,
                        Utc::now() + Duration::days(2),
                    )
                    .await
                    .map_err(EngineError::from)?;
            }
            Err(_) => {
                let _ = self.store.abandon_idempotent(&key, &fingerprint).await;
            }
        }
        Ok(Some(result?))
    }

    async fn run(&self, job: &Job) -> Result<SyncOperation, EngineError> {
        match job {
            Job::FullDown => {
                crate::sync::run_full_down(&self.store, &self.client, &self.actor, &self.rails)
                    .await
            }
            Job::IncrementalDown => {
                crate::incremental::run_incremental_down(
                    &self.store,
                    &self.client,
                    &self.actor,
                    &self.rails,
                    crate::incremental::default_overlap(),
                )
                .await
            }
            Job::Up => crate::up::run_up(&self.store, &self.client, &self.actor).await,
            Job::ApplyOperation { operation } => {
                crate::plan::approve_operation(&self.store, *operation, &self.actor).await
            }
            Job::Redactions => Err(EngineError::Store(RepoError::Store(
                shopsync_store::StoreError::Invalid("redactions are not an operation".into()),
            ))),
        }
    }

    /// Carries out every shop redaction that is due; each is idempotent on its own (a
    /// finished one is no longer due).
    async fn redact_due(&self) -> Result<(), EngineError> {
        let now = Utc::now();
        for request in self.store.due_redactions(now).await? {
            let done = self.store.redact_shop(&request.id, now).await?;
            tracing::warn!(
                request = %done.id,
                shop = %done.shop_domain,
                removed = ?done.removed,
                "shop data redacted (shop/redact)"
            );
        }
        Ok(())
    }
}

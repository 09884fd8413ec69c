//! Chained work: a typed, versioned job message on a queue port, and the worker that runs
//! it. A message delivered twice is harmless: the worker claims it by id in the idempotency
//! table first, and every step is idempotent on its own as well.

use crate::error::EngineError;
use crate::steps::{StepOutcome, Stepper, SyncKind};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use shopsync_domain::{Actor, GuardRails, OperationId, OperationStatus, StagingId, SyncOperation};
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
    /// A full bidirectional sync: merge both sides, then push.
    Bidirectional,
    /// A full down read that also finds local products Shopify no longer has.
    Reconcile,
    /// Apply an approved operation's rows.
    ApplyOperation {
        /// The operation.
        operation: OperationId,
        /// Who approved it (recorded as its approver; the worker's own actor when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<shopsync_domain::Actor>,
    },
    /// Settle every open conflict a filter takes, as a person chose (a bulk resolve too
    /// large to answer at once; its operation is recorded as pending when it is queued).
    ResolveConflicts {
        /// Which conflicts.
        filter: crate::resolve::ConflictFilter,
        /// What the person chose.
        choice: crate::resolve::Choice,
        /// Who.
        by: shopsync_domain::Actor,
    },
    /// The rest of a bulk resolve that stopped at its deadline (what it settles is in its
    /// operation's checkpoint).
    ContinueResolving {
        /// The bulk resolve's operation.
        operation: OperationId,
    },
    /// A sync a person asked for (its operation is recorded as pending when it is queued).
    Sync {
        /// Which way.
        direction: shopsync_domain::SyncDirection,
        /// How much it reads.
        mode: SyncMode,
        /// Stage only.
        dry_run: bool,
    },
    /// Maintenance: carry out shop redactions that are due (Shopify's shop/redact), and bring
    /// the realtime operations up to date (statistics counted from their rows; a day that is
    /// over concluded). Messages of older builds name it `redactions`.
    #[serde(alias = "redactions")]
    Maintenance,
    /// The next step of a long operation (see [`crate::steps`]).
    Step {
        /// The operation.
        operation: OperationId,
        /// The step number.
        step: u32,
    },
    /// Import the file at `key` in the host's file store (a file dropped into a watched
    /// folder).
    ImportFile {
        /// The object's key.
        key: String,
    },
    /// Go on with a Xorosoft import (its next piece of work, after a deadline or approval).
    Import {
        /// The import's operation.
        operation: OperationId,
    },
    /// Run a rollback a person asked for (its record and operation are pending when it is
    /// queued).
    Rollback {
        /// The rollback.
        rollback: shopsync_domain::RollbackId,
    },
    /// Read a collection a webhook said changed into its category (versioned under the
    /// day's realtime operation).
    SyncCollection {
        /// The collection.
        collection: shopsync_domain::ShopifyCollectionId,
    },
    /// Apply rows staged by the realtime path (webhooks).
    ApplyRows {
        /// The operation the rows belong to.
        operation: OperationId,
        /// The rows.
        rows: Vec<StagingId>,
    },
}

/// How much a sync reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// The whole catalog.
    Full,
    /// What changed since the last down-sync (down only; an up-sync pushes what changed
    /// locally in any mode).
    Incremental,
    /// The whole catalog, also reporting local products Shopify no longer has (down only).
    Reconcile,
}

/// The kind of step-machine sync a person's request runs: `None` for a mode the direction
/// does not take (an up or bidirectional reconcile). A bidirectional sync reads the whole
/// catalog whatever its mode, and an up-sync pushes whatever changed locally.
pub fn sync_kind(
    direction: shopsync_domain::SyncDirection,
    mode: SyncMode,
    dry_run: bool,
    overlap: chrono::Duration,
) -> Option<SyncKind> {
    use shopsync_domain::SyncDirection as Direction;
    match (direction, mode) {
        (Direction::Down, SyncMode::Full) => Some(SyncKind::Full {
            direction: Direction::Down,
            dry_run,
        }),
        (Direction::Down, SyncMode::Incremental) => {
            Some(SyncKind::Incremental { overlap, dry_run })
        }
        (Direction::Down, SyncMode::Reconcile) => Some(SyncKind::Reconcile { dry_run }),
        (Direction::Bidirectional, SyncMode::Full | SyncMode::Incremental) => {
            Some(SyncKind::Full {
                direction: Direction::Bidirectional,
                dry_run,
            })
        }
        (Direction::Up, SyncMode::Full | SyncMode::Incremental) => Some(if dry_run {
            SyncKind::UpPreview
        } else {
            SyncKind::Up
        }),
        (_, SyncMode::Reconcile) => None,
    }
}

impl Job {
    /// The operation this job works on, when it names one.
    pub fn operation(&self) -> Option<OperationId> {
        match self {
            Job::ApplyOperation { operation, .. }
            | Job::Import { operation }
            | Job::ApplyRows { operation, .. }
            | Job::Step { operation, .. } => Some(*operation),
            _ => None,
        }
    }
}

/// What an EventBridge schedule asks for (the rule's input): `{"type": "incremental_sync",
/// "direction": "down"}`. Types: `full_sync`, `incremental_sync`, `reconcile`, `maintenance` (due shop
/// redactions; realtime operations brought up to date), and `round`: what `shopsync serve`'s
/// scheduler starts each interval, an incremental down-sync, then an up-sync, then
/// maintenance; directions: `down`, `up`, `bidirectional`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleInput {
    /// The operation type.
    #[serde(rename = "type")]
    pub operation_type: String,
    /// The direction (default `down`).
    #[serde(default)]
    pub direction: Option<String>,
}

impl ScheduleInput {
    /// The job this schedule starts, or why it cannot start one.
    pub fn job(&self) -> Result<Job, JobError> {
        if self.operation_type == "round" {
            return Err(JobError::Poison(
                "schedule input: a round is several jobs (see ScheduleInput::jobs)".into(),
            ));
        }
        let direction = self.direction.as_deref().unwrap_or("down");
        match (self.operation_type.as_str(), direction) {
            ("full_sync", "down") => Ok(Job::FullDown),
            ("incremental_sync", "down") => Ok(Job::IncrementalDown),
            ("full_sync" | "incremental_sync", "up") => Ok(Job::Up),
            ("full_sync" | "incremental_sync", "bidirectional") => Ok(Job::Bidirectional),
            ("maintenance", _) => Ok(Job::Maintenance),
            ("reconcile", "down") => Ok(Job::Reconcile),
            (t @ ("full_sync" | "incremental_sync"), d) => Err(JobError::Poison(format!(
                "schedule input: {t} cannot run in direction `{d}` (use down, up or bidirectional)"
            ))),
            (t @ "reconcile", d) => Err(JobError::Poison(format!(
                "schedule input: {t} runs in direction down, not `{d}`"
            ))),
            (t, _) => Err(JobError::Poison(format!(
                "schedule input: unknown type `{t}` (use full_sync, incremental_sync, reconcile, maintenance or round)"
            ))),
        }
    }

    /// The jobs the input asks for, in the order they are to run: one, or for a `round` the
    /// incremental down-sync, the up-sync and maintenance (a round takes no direction).
    pub fn jobs(&self) -> Result<Vec<Job>, JobError> {
        if self.operation_type != "round" {
            return self.job().map(|job| vec![job]);
        }
        match self.direction.as_deref() {
            None => Ok(vec![Job::IncrementalDown, Job::Up, Job::Maintenance]),
            Some(d) => Err(JobError::Poison(format!(
                "schedule input: a round runs down, then up, then maintenance; it takes no direction (`{d}`)"
            ))),
        }
    }
}

/// What running a message came to.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// It ran; the operation it ran, when it was one.
    Ran(Option<Box<SyncOperation>>),
    /// It ran before: nothing was done again.
    Replay,
}

/// One message as a queue delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The queue's id of the message (what a batch response names).
    pub message_id: String,
    /// The body.
    pub body: String,
    /// How many times the queue has delivered it, this time included.
    pub receive_count: u32,
}

/// What a batch of deliveries came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Message ids to report as failed (redelivered, then dead-lettered by the redrive policy).
    pub failed: Vec<String>,
    /// Messages run to the end.
    pub ran: usize,
    /// Messages run before (nothing done again).
    pub replayed: usize,
    /// Messages that can never run.
    pub poison: usize,
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
    /// Where the next step of a long operation goes when a step reaches its deadline (`None`:
    /// steps run one after another in this process, whatever the deadline).
    pub continuation: Option<std::sync::Arc<dyn JobQueue>>,
    /// How this worker takes part in Xorosoft imports (`None`: it has nothing to do with
    /// them, and an import job it receives fails as one it cannot run).
    pub imports: Option<std::sync::Arc<ImportHost>>,
}

/// How a worker takes part in Xorosoft imports.
pub enum ImportHost {
    /// It runs them: it reads their files here.
    Runs {
        /// Where the files are.
        blobs: std::sync::Arc<dyn crate::blob::Blobs>,
        /// How they are read, judged and pushed.
        settings: crate::xorosoft_import::ImportSettings,
    },
    /// Another function runs them: an approved import is approved here and handed on to
    /// its queue as a [`Job::Import`].
    HandsOn(std::sync::Arc<dyn JobQueue>),
}

/// A continuation of an import, with an id of its own: the piece of work it goes on with
/// (the operation's `updated_at`), so a continuation sent twice for one piece runs once.
pub fn import_message(operation: &SyncOperation) -> JobMessage {
    let mut message = JobMessage::new(
        Job::Import {
            operation: operation.operation_uuid,
        },
        Utc::now(),
    );
    message.id = format!(
        "{}:import:{}",
        operation.operation_uuid,
        operation.updated_at.timestamp_micros()
    );
    message
}

/// The id of the operation a job's message opens: derived from the message id, so every
/// delivery of one message works on one operation.
pub fn operation_of_job(message_id: &str) -> OperationId {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"shopsync/job-operation\0")
        .chain_update(message_id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    OperationId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// How long a claimed message blocks a concurrent delivery of itself.
const CLAIM: i64 = 15 * 60;

impl Worker {
    /// Runs one message once, to the end: a redelivery of a message already run is a replay.
    pub async fn handle(&self, message: &JobMessage) -> Result<JobOutcome, JobError> {
        self.handle_until(message, None).await
    }

    /// Runs one message once; a long operation works until `deadline` and enqueues its next
    /// step.
    pub async fn handle_until(
        &self,
        message: &JobMessage,
        deadline: Option<std::time::Instant>,
    ) -> Result<JobOutcome, JobError> {
        if message.job == Job::Maintenance {
            // Idempotent on its own, and it clears the idempotency table a claim would be in.
            self.maintain().await?;
            return Ok(JobOutcome::Ran(None));
        }
        let now = Utc::now();
        let key = format!("job:{}", message.id);
        // The job, not the envelope: the same step enqueued twice (at different times) is the
        // same work.
        let fingerprint = serde_json::to_string(&message.job).unwrap_or_default();
        // A claim lasts as long as this invocation can (its deadline, plus the time a step
        // keeps to finish), so a redelivery after a crash is not blocked for long.
        let claim = deadline
            .map(|d| {
                Duration::from_std(d.saturating_duration_since(std::time::Instant::now()))
                    .unwrap_or_default()
                    + Duration::minutes(5)
            })
            .unwrap_or_else(|| Duration::seconds(CLAIM));
        match self
            .store
            .begin_idempotent(
                &key,
                &fingerprint,
                now,
                now + claim,
                now + Duration::days(2),
            )
            .await
        {
            Ok(IdempotencyStart::Replay(_)) => return Ok(JobOutcome::Replay),
            Ok(IdempotencyStart::Started) => {}
            Err(RepoError::IdempotencyInProgress { .. }) => {
                return Err(JobError::InProgress(message.id.clone()))
            }
            Err(e) => return Err(JobError::Engine(e.into())),
        }
        let result = self
            .run(&message.job, deadline, operation_of_job(&message.id))
            .await;
        if result.is_ok() {
            // What the job wrote is durable before its message counts as done.
            self.store.flush().await.map_err(EngineError::from)?;
        }
        match &result {
            Ok(op) => {
                let summary = serde_json::json!({
                    "operation": op.as_ref().map(|o| o.operation_uuid.to_string())
                });
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
        Ok(JobOutcome::Ran(result?.map(Box::new)))
    }

    fn stepper(&self) -> Stepper<'_> {
        Stepper {
            store: &self.store,
            client: &self.client,
            actor: &self.actor,
            rails: &self.rails,
        }
    }

    /// Opens the job's operation under `id` and runs its first step (all of them without a
    /// deadline or a continuation queue). When the job was delivered before and its worker
    /// is gone, the operation it opened then is found under the same id and goes on from
    /// its checkpoint instead of starting over.
    async fn start(
        &self,
        kind: SyncKind,
        deadline: Option<std::time::Instant>,
        id: OperationId,
    ) -> Result<Option<SyncOperation>, EngineError> {
        let (operation, fresh) = self.stepper().open_as(kind, Some(id)).await?;
        if !fresh {
            if operation.status != shopsync_domain::OperationStatus::InProgress {
                return Ok(Some(operation));
            }
            tracing::info!(operation = %id, "the job's operation was opened before; it goes on from its checkpoint");
        }
        let step = crate::operation::Checkpoint::of(&operation)
            .map(|c| c.next_step)
            .unwrap_or(1);
        self.continue_from(operation.operation_uuid, step, deadline)
            .await
    }

    /// Gives up the claim a delivery of `message` holds, when the process that held it is
    /// gone (the local host, starting again after a crash), so its redelivery runs at once
    /// instead of waiting for the claim to run out.
    pub async fn forget_claim(&self, message: &JobMessage) -> Result<(), EngineError> {
        let fingerprint = serde_json::to_string(&message.job).unwrap_or_default();
        self.store
            .abandon_idempotent(&format!("job:{}", message.id), &fingerprint)
            .await?;
        Ok(())
    }

    /// Runs a bulk resolve; when it stops at the deadline, its continuation is enqueued. It
    /// stops only with both a deadline and a continuation queue (otherwise it runs to its
    /// end here).
    async fn resolve(
        &self,
        operation: OperationId,
        filter: &crate::resolve::ConflictFilter,
        choice: &crate::resolve::Choice,
        by: &shopsync_domain::Actor,
        deadline: Option<std::time::Instant>,
    ) -> Result<Option<SyncOperation>, EngineError> {
        use crate::resolve::{resolve_all, ResolveOutcome};
        let deadline = deadline.filter(|_| self.continuation.is_some());
        match resolve_all(&self.store, operation, filter, choice, by, deadline).await? {
            ResolveOutcome::Ended(op) => Ok(Some(*op)),
            ResolveOutcome::Stopped(op) => {
                let Some(queue) = &self.continuation else {
                    return Ok(Some(*op));
                };
                let mut message = JobMessage::new(Job::ContinueResolving { operation }, Utc::now());
                // One id per piece: a continuation sent twice for one piece runs once.
                message.id = format!("{operation}:resolve:{}", op.updated_at.timestamp_micros());
                queue
                    .send(vec![message])
                    .await
                    .map_err(|e| EngineError::Queue(e.0))?;
                tracing::info!(%operation, "bulk resolve stopped at the deadline; its continuation is enqueued");
                Ok(Some(*op))
            }
        }
    }

    /// Runs step `step`; when it stops at the deadline, its successor is enqueued.
    async fn continue_from(
        &self,
        operation: OperationId,
        step: u32,
        deadline: Option<std::time::Instant>,
    ) -> Result<Option<SyncOperation>, EngineError> {
        let (Some(queue), Some(deadline)) = (&self.continuation, deadline) else {
            return self.stepper().resume_to_end(operation).await.map(Some);
        };
        match self.stepper().step(operation, step, Some(deadline)).await? {
            StepOutcome::Finished(op) => Ok(Some(*op)),
            StepOutcome::Skipped(why) => {
                tracing::info!(%operation, step, %why, "step skipped");
                Ok(None)
            }
            StepOutcome::Continue(next) | StepOutcome::AlreadyDone { next } => {
                let mut message = JobMessage::new(
                    Job::Step {
                        operation,
                        step: next,
                    },
                    Utc::now(),
                );
                // One id per step: a step enqueued twice (a redelivered predecessor) runs once.
                message.id = format!("{operation}:step:{next}");
                queue
                    .send(vec![message])
                    .await
                    .map_err(|e| EngineError::Queue(e.0))?;
                tracing::info!(%operation, next, "step stopped at the deadline; next step enqueued");
                crate::operation::load_operation(&self.store, operation)
                    .await
                    .map(Some)
            }
        }
    }

    async fn run(
        &self,
        job: &Job,
        deadline: Option<std::time::Instant>,
        operation: OperationId,
    ) -> Result<Option<SyncOperation>, EngineError> {
        let id = operation;
        let overlap = crate::incremental::default_overlap();
        let op = match job {
            Job::FullDown => {
                let kind = SyncKind::Full {
                    direction: shopsync_domain::SyncDirection::Down,
                    dry_run: false,
                };
                return self.start(kind, deadline, id).await;
            }
            Job::Bidirectional => {
                let kind = SyncKind::Full {
                    direction: shopsync_domain::SyncDirection::Bidirectional,
                    dry_run: false,
                };
                return self.start(kind, deadline, id).await;
            }
            Job::Reconcile => {
                return self
                    .start(SyncKind::Reconcile { dry_run: false }, deadline, id)
                    .await;
            }
            Job::IncrementalDown => {
                let kind = SyncKind::Incremental {
                    overlap,
                    dry_run: false,
                };
                return self.start(kind, deadline, id).await;
            }
            Job::Step { operation, step } => {
                return self.continue_from(*operation, *step, deadline).await;
            }
            Job::Up => return self.start(SyncKind::Up, deadline, id).await,
            Job::ApplyOperation { operation, by }
                if crate::operation::load_operation(&self.store, *operation)
                    .await?
                    .xorosoft_log_id
                    .is_some() =>
            {
                let approver = by.as_ref().unwrap_or(&self.actor);
                crate::xorosoft_import::approve_import(&self.store, *operation, approver).await?;
                return self.continue_import(*operation, deadline).await;
            }
            Job::ResolveConflicts { filter, choice, by } => {
                return self.resolve(id, filter, choice, by, deadline).await;
            }
            Job::ContinueResolving { operation } => {
                let current = crate::operation::load_operation(&self.store, *operation).await?;
                let Some(checkpoint) = crate::resolve::ResolveCheckpoint::of(&current) else {
                    // Finished (its checkpoint is cleared at the end) or not a bulk resolve.
                    return Ok(Some(current));
                };
                return self
                    .resolve(
                        *operation,
                        &checkpoint.filter,
                        &checkpoint.choice,
                        &checkpoint.by,
                        deadline,
                    )
                    .await;
            }
            Job::Sync {
                direction,
                mode,
                dry_run,
            } => {
                let Some(kind) = sync_kind(*direction, *mode, *dry_run, overlap) else {
                    return Err(EngineError::Refused(format!(
                        "a {} sync cannot run in {} mode",
                        shopsync_domain::status::status_name(*direction),
                        shopsync_domain::status::status_name(*mode)
                    )));
                };
                return self.start(kind, deadline, id).await;
            }
            Job::Import { operation } => {
                return self.continue_import(*operation, deadline).await;
            }
            Job::ImportFile { key } => {
                let Some(importer) = self.importer() else {
                    return Err(EngineError::Refused(format!(
                        "{key}: this worker runs no imports (it reads no import files)"
                    )));
                };
                return match importer.begin(key, None, false).await {
                    Ok(crate::xorosoft_import::Begun::Import { operation, .. }) => {
                        self.continue_import(operation, deadline).await
                    }
                    Ok(crate::xorosoft_import::Begun::Busy(log)) => {
                        Err(EngineError::Busy(format!(
                            "{key} is being imported by another worker (import {})",
                            log.id
                        )))
                    }
                    Ok(crate::xorosoft_import::Begun::Settled(_)) => Ok(None),
                    // Gone meanwhile (imported and archived by another delivery).
                    Err(EngineError::Blob(crate::blob::BlobError::NotFound(_))) => Ok(None),
                    Err(e) => Err(e),
                };
            }
            Job::ApplyOperation { operation, by } => {
                let approver = by.as_ref().unwrap_or(&self.actor);
                let approved =
                    crate::review::approve_operation(&self.store, *operation, approver).await?;
                if crate::review::staged_up_sync(&approved)
                    && approved.status == OperationStatus::InProgress
                {
                    let step = crate::operation::Checkpoint::of(&approved)
                        .map(|c| c.next_step)
                        .unwrap_or(1);
                    return self
                        .continue_from(approved.operation_uuid, step, deadline)
                        .await;
                }
                crate::review::push_after_approval(&self.store, &self.client, approver, approved)
                    .await
            }
            Job::Maintenance => {
                self.maintain().await?;
                return Ok(None);
            }
            Job::Rollback { rollback } => {
                let (_, operation) =
                    crate::rollback::run(&self.store, &self.client, &self.rails, *rollback).await?;
                return Ok(Some(operation));
            }
            Job::SyncCollection { collection } => {
                let day = crate::realtime::realtime_operation(&self.store, Utc::now()).await?;
                let taken = crate::collections::sync_collection(
                    &self.store,
                    &self.client,
                    *collection,
                    Some(day.operation_uuid),
                    &self.actor,
                )
                .await?;
                tracing::info!(%collection, ?taken, "collection read");
                return Ok(None);
            }
            Job::ApplyRows { operation, rows } => {
                crate::realtime::apply_staged(&self.store, *operation, rows, &self.actor).await?;
                return Ok(None);
            }
        };
        op.map(Some)
    }

    /// The importer of a worker that runs imports.
    fn importer(&self) -> Option<crate::xorosoft_import::Importer<'_>> {
        let Some(ImportHost::Runs { blobs, settings }) = self.imports.as_deref() else {
            return None;
        };
        Some(crate::xorosoft_import::Importer {
            store: &self.store,
            client: Some(&self.client),
            blobs: blobs.as_ref(),
            actor: &self.actor,
            rails: &self.rails,
            settings,
        })
    }

    /// Goes on with an import until it ends or `deadline` passes, then hands the rest on
    /// (as a [`Job::Import`] on the continuation queue); a worker that hands imports on
    /// sends it there at once.
    pub async fn continue_import(
        &self,
        operation: OperationId,
        deadline: Option<std::time::Instant>,
    ) -> Result<Option<SyncOperation>, EngineError> {
        let importer = match self.imports.as_deref() {
            Some(ImportHost::Runs { .. }) => self.importer(),
            Some(ImportHost::HandsOn(queue)) => {
                let current = crate::operation::load_operation(&self.store, operation).await?;
                queue
                    .send(vec![import_message(&current)])
                    .await
                    .map_err(|e| EngineError::Queue(e.0))?;
                return Ok(Some(current));
            }
            None => None,
        };
        let Some(importer) = importer else {
            return Err(EngineError::Refused(format!(
                "operation {operation} is an import and this worker runs no imports"
            )));
        };
        let deadline = match (&self.continuation, deadline) {
            (Some(_), Some(deadline)) => Some(deadline),
            _ => None,
        };
        let (_, more) = importer.advance(operation, deadline).await?;
        let current = crate::operation::load_operation(&self.store, operation).await?;
        if more {
            if let Some(queue) = &self.continuation {
                queue
                    .send(vec![import_message(&current)])
                    .await
                    .map_err(|e| EngineError::Queue(e.0))?;
            }
        }
        Ok(Some(current))
    }

    /// Runs a batch of deliveries one by one and names the messages to redeliver: those that
    /// failed and may succeed later, and those that can never run (so the redrive policy moves
    /// them to the dead-letter queue). When a message's operation can go no further (poison,
    /// a permanent error, or the last delivery the queue allows) the operation is marked
    /// failed with the reason.
    pub async fn handle_batch(
        &self,
        messages: &[Delivered],
        max_receives: u32,
        deadline: Option<std::time::Instant>,
    ) -> BatchReport {
        let mut report = BatchReport::default();
        for delivered in messages {
            let message = match JobMessage::decode(&delivered.body) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(message_id = %delivered.message_id, error = %e, "poison message");
                    if let Some(operation) = operation_named_in(&delivered.body) {
                        self.fail_operation(operation, &e.to_string()).await;
                    }
                    report.poison += 1;
                    report.failed.push(delivered.message_id.clone());
                    continue;
                }
            };
            match self.handle_until(&message, deadline).await {
                Ok(JobOutcome::Ran(_)) => report.ran += 1,
                Ok(JobOutcome::Replay) => report.replayed += 1,
                Err(JobError::InProgress(_)) => {
                    report.failed.push(delivered.message_id.clone());
                }
                Err(e) => {
                    let last = delivered.receive_count >= max_receives;
                    tracing::error!(
                        message_id = %delivered.message_id,
                        job = %message.id,
                        error = %e,
                        retryable = e.is_retryable(),
                        receive_count = delivered.receive_count,
                        "job failed"
                    );
                    if !e.is_retryable() || last {
                        if let Some(operation) = message.job.operation() {
                            let reason = if e.is_retryable() {
                                format!("gave up after {} deliveries: {e}", delivered.receive_count)
                            } else {
                                e.to_string()
                            };
                            self.fail_operation(operation, &reason).await;
                        }
                    }
                    if !e.is_retryable() {
                        report.poison += 1;
                    }
                    report.failed.push(delivered.message_id.clone());
                }
            }
        }
        report
    }

    /// Marks an operation failed with `reason` if its status allows it (best effort: the
    /// message itself still goes to the dead-letter queue).
    pub async fn fail_operation(&self, id: OperationId, reason: &str) {
        let key = shopsync_store::item::Key::pk(id.to_string());
        let Ok(Some(current)) = self.store.get::<SyncOperation>(&key).await else {
            tracing::warn!(operation = %id, "a failed message names an operation that is not stored");
            return;
        };
        let mut failed = current.clone();
        if failed
            .move_to(OperationStatus::Failed, Some(reason.to_owned()), Utc::now())
            .is_err()
        {
            return;
        }
        if let Err(e) = crate::operation::save(&self.store, &failed, &current).await {
            tracing::error!(operation = %id, error = %e, "could not mark the operation failed");
            return;
        }
        if let Err(e) = crate::xorosoft_import::mark_import_failed(&self.store, &failed).await {
            tracing::error!(operation = %id, error = %e, "could not mark the import failed");
        }
    }

    /// Carries out every shop redaction that is due; each is idempotent on its own (a
    /// finished one is no longer due).
    /// Maintenance: due shop redactions, then the realtime operations brought up to date.
    async fn maintain(&self) -> Result<(), EngineError> {
        self.redact_due().await?;
        self.clear_expired_locks().await?;
        for op in crate::realtime::refresh_realtime_operations(&self.store, Utc::now()).await? {
            tracing::info!(
                operation = %op.operation_uuid,
                status = %shopsync_domain::status::status_name(op.status),
                processed = op.statistics.processed,
                "realtime operation brought up to date"
            );
        }
        Ok(())
    }

    /// Clears the locks whose lease has ended (a lock that ended blocks nobody, but it
    /// would still show as held).
    async fn clear_expired_locks(&self) -> Result<(), EngineError> {
        const PAGE: u32 = 100;
        let now = Utc::now();
        for _ in 0..10 {
            let expired = self.store.expired_locks(now, PAGE).await?;
            for product in &expired {
                if let Some(held_by) = self.store.clear_expired_lock(product.id, now).await? {
                    tracing::info!(product = %product.id, %held_by, "expired lock cleared");
                }
            }
            if (expired.len() as u32) < PAGE {
                break;
            }
        }
        Ok(())
    }

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

/// The operation a message names, read loosely (for messages that do not decode).
fn operation_named_in(body: &str) -> Option<OperationId> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value.get("job")?.get("operation")?.as_str()?.parse().ok()
}

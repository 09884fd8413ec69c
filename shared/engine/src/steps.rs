//! Long operations in steps. A step works until its deadline (a Lambda's, less a margin),
//! stores where it stopped in the operation's checkpoint, and says which step comes next; the
//! worker enqueues that step as a message of its own. Without a deadline the steps simply run
//! one after another in-process (the CLI, `serve`).
//!
//! A step delivered twice is harmless: the worker claims each message by an id derived from
//! the operation and the step number, a step whose number the checkpoint has passed does
//! nothing, and re-planning products already planned yields rows that come out superseded.
//! A step cut short without saving (a Lambda timeout) is redelivered by the queue and starts
//! again from the last saved checkpoint.

use crate::down::Shopify;
use crate::down::{Planned, Planner};
use crate::error::EngineError;
use crate::mapping::into_content;
use crate::operation::{
    last_down, lease, load_operation, progress_in, rebase, record_performance, save, Checkpoint,
    Phase, LOCAL_STEP,
};
use crate::perf::StageTimes;
use crate::review::Conclusion;
use chrono::{DateTime, Utc};
use shopsync_domain::{
    Actor, GuardRails, OperationId, OperationStatistics, OperationStatus, OperationType,
    PlanSummary, Product, Stage, SyncDirection, SyncOperation,
};
use shopsync_shopify::cost::ProductPageShape;
use shopsync_shopify::ops::ProductsPageRequest;
use shopsync_shopify::AdminClient;
use shopsync_store::item::Key;
use shopsync_store::{RepoError, Store, Table};
use std::time::{Duration, Instant};

/// Export products planned and stored together by a step without a deadline (the CLI,
/// `serve`). Measured on a 100k import (first run): 128 a batch 6.8-7.5 s, 256 6.7-6.8 s,
/// 512 6.2-6.6 s, 1,024 5.8-6.2 s, 2,048 5.8-6.7 s. Such a batch's writes hold the
/// embedded store's connection for about 20 ms.
const BATCH: usize = 1024;
/// The same for a step close to its deadline (a Lambda's last minute): smaller, so the step
/// checks its deadline often and stops close to it.
const DEADLINE_BATCH: usize = 256;

/// Time left before a step's deadline below which it plans [`DEADLINE_BATCH`]es.
const NEAR_DEADLINE: Duration = Duration::from_secs(20);

/// Products an up-sync pushes per page, one call per product.
const PUSH_PAGE: u32 = 25;

/// Products an up-sync pushes per page through Shopify's bulk mutations (when it pushes at
/// least `SHOPSYNC_BULK_PUSH_MIN`): one bulk mutation per kind of change each page.
const BULK_PUSH_PAGE: u32 = 1_000;

/// Export batches planned at once, each on a task of its own: while one batch writes, the
/// next is decided and encoded on the other core. Every product is decided against the store
/// as it stands, so batches never depend on each other; a create that loses a race (the same
/// product twice in one file) is decided again against the winner, as with any writer.
const BATCHES_IN_FLIGHT: usize = 2;

/// A batch planned on its own task: what became of its products, and its sums.
struct PlannedBatch {
    planned: Vec<Planned>,
    summary: PlanSummary,
    times: StageTimes,
}

type PlanTask = tokio::task::JoinHandle<Result<PlannedBatch, EngineError>>;

/// What to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// The whole catalog (bulk export), down or both ways.
    Full {
        /// Down or bidirectional.
        direction: SyncDirection,
        /// Stage only.
        dry_run: bool,
    },
    /// Push every product with local changes to Shopify.
    Up,
    /// What an up-sync would push, staged as rows of a dry-run operation; nothing is sent
    /// to Shopify and no product changes.
    UpPreview,
    /// A full down read that also looks for local products Shopify no longer has.
    Reconcile {
        /// Stage only.
        dry_run: bool,
    },
    /// What changed since the last down-sync started, less `overlap` (a full read when there
    /// was none).
    Incremental {
        /// The overlap window.
        overlap: chrono::Duration,
        /// Stage only.
        dry_run: bool,
    },
}

/// What a step came to.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    /// More to do: this step runs next.
    Continue(u32),
    /// The operation reached its end (completed, or waiting for approval).
    Finished(Box<SyncOperation>),
    /// Nothing was done: this step ran before and the operation is at step `next` (which is
    /// enqueued again, in case the first enqueue was lost).
    AlreadyDone {
        /// The step the operation is at.
        next: u32,
    },
    /// Nothing was done: the operation was cancelled or stopped, or is not at this step.
    Skipped(String),
}

/// A batch read ahead from an export: the products, mapped, and the time reading them took.
type ReadAhead = Result<
    (
        Vec<(Shopify, shopsync_domain::product::ProductContent)>,
        Duration,
    ),
    EngineError,
>;

/// Reads `export` past its first `skip` products (planned by an earlier step), then sends the
/// rest in mapped batches of `size`, at most two ahead of the reader. A failure is sent as the
/// last item; the end of the file closes the channel. Dropping the receiver stops the reading.
fn read_ahead(
    mut export: shopsync_shopify::bulk::BulkProducts,
    skip: u64,
    size: usize,
) -> tokio::sync::mpsc::Receiver<ReadAhead> {
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let read = async {
            let started = Instant::now();
            let mut skipped = 0;
            while skipped < skip {
                if export.next_product().await?.is_none() {
                    break;
                }
                skipped += 1;
            }
            let mut spent = started.elapsed();
            loop {
                let reading = Instant::now();
                let mut batch = Vec::with_capacity(size);
                let mut finished = false;
                while batch.len() < size {
                    let Some(remote) = export.next_product().await? else {
                        finished = true;
                        break;
                    };
                    let source = Shopify {
                        id: remote.id,
                        updated_at: remote.updated_at,
                    };
                    batch.push((source, into_content(remote)?));
                }
                spent += reading.elapsed();
                if !batch.is_empty()
                    && sender
                        .send(Ok((batch, std::mem::take(&mut spent))))
                        .await
                        .is_err()
                {
                    // The planner stopped (deadline or failure): nothing more is wanted.
                    return Ok(());
                }
                if finished {
                    return Ok(());
                }
            }
        };
        let result: Result<(), EngineError> = read.await;
        if let Err(e) = result {
            let _ = sender.send(Err(e)).await;
        }
    });
    receiver
}

/// Counts what a batch's planning settled (into `stats`) and staged (pending rows).
fn count_planned(
    planned: Vec<Planned>,
    checkpoint: &mut Checkpoint,
    stats: &mut OperationStatistics,
) {
    for planned in planned {
        match planned {
            Planned::Settled(ingested) => ingested.count(stats),
            Planned::Staged(_) => checkpoint.pending += 1,
        }
    }
}

/// Runs operations step by step.
pub struct Stepper<'a> {
    /// The store.
    pub store: &'a Store,
    /// Shopify.
    pub client: &'a AdminClient,
    /// Who the work is done as.
    pub actor: &'a Actor,
    /// The rails the plan is judged by.
    pub rails: &'a GuardRails,
}

impl Stepper<'_> {
    /// Opens an operation, in progress, with its first checkpoint.
    pub async fn open(&self, kind: SyncKind) -> Result<SyncOperation, EngineError> {
        self.open_as(kind, None)
            .await
            .map(|(operation, _)| operation)
    }

    /// Opens an operation under `id` (a new one when `None`). When one is stored under that
    /// id already (a job redelivered after the worker that opened it was gone), it is
    /// returned as it stands, with `false`.
    pub async fn open_as(
        &self,
        kind: SyncKind,
        id: Option<OperationId>,
    ) -> Result<(SyncOperation, bool), EngineError> {
        // An operation a person asked for is recorded as pending when its job is queued;
        // the job opens it (keeping who asked). Any other record under the id stands.
        let mut announced = None;
        if let Some(id) = id {
            if let Some(existing) = self
                .store
                .get::<SyncOperation>(&Key::pk(id.to_string()))
                .await?
            {
                if existing.status != OperationStatus::Pending || existing.checkpoint.is_some() {
                    return Ok((existing, false));
                }
                announced = Some(existing);
            }
        }
        let now = Utc::now();
        let (operation_type, direction, dry_run, checkpoint) = match kind {
            SyncKind::Full { direction, dry_run } => (
                OperationType::FullSync,
                direction,
                dry_run,
                Checkpoint::new(Phase::Export { bulk: None }, PlanSummary::default()),
            ),
            SyncKind::Up => {
                // The changed-share rail judges against the catalog the last down-sync saw.
                let (_, catalog) = last_down(self.store).await?;
                let mut checkpoint = Checkpoint::new(
                    Phase::StageUp { after: None },
                    PlanSummary {
                        catalog_size: catalog,
                        ..PlanSummary::default()
                    },
                );
                checkpoint.staged_up = true;
                (
                    OperationType::IncrementalSync,
                    SyncDirection::Up,
                    false,
                    checkpoint,
                )
            }
            SyncKind::UpPreview => (
                OperationType::IncrementalSync,
                SyncDirection::Up,
                true,
                Checkpoint::new(
                    Phase::Push {
                        after: None,
                        last_failure: None,
                    },
                    PlanSummary::default(),
                ),
            ),
            SyncKind::Reconcile { dry_run } => (
                OperationType::Reconcile,
                SyncDirection::Down,
                dry_run,
                Checkpoint::new(Phase::Export { bulk: None }, PlanSummary::default()),
            ),
            SyncKind::Incremental { overlap, dry_run } => match last_down(self.store).await? {
                (Some(since), catalog) => (
                    OperationType::IncrementalSync,
                    SyncDirection::Down,
                    dry_run,
                    Checkpoint::new(
                        Phase::Pages {
                            since: since - overlap,
                            cursor: None,
                        },
                        PlanSummary {
                            catalog_size: catalog,
                            ..PlanSummary::default()
                        },
                    ),
                ),
                // Nothing read before: the whole catalog.
                (None, _) => (
                    OperationType::FullSync,
                    SyncDirection::Down,
                    dry_run,
                    Checkpoint::new(Phase::Export { bulk: None }, PlanSummary::default()),
                ),
            },
        };
        let name = if direction == SyncDirection::Up {
            "up-sync".to_owned()
        } else {
            format!(
                "{} {}{}",
                match operation_type {
                    OperationType::FullSync => "full",
                    OperationType::Reconcile => "reconciling",
                    _ => "incremental",
                },
                match direction {
                    SyncDirection::Bidirectional => "bidirectional sync",
                    SyncDirection::Up => "up-sync",
                    SyncDirection::Down => "down-sync",
                },
                if dry_run { " (dry run)" } else { "" }
            )
        };
        let mut checkpoint = checkpoint;
        checkpoint.import = matches!(checkpoint.phase, Phase::Export { .. })
            && direction == SyncDirection::Down
            && !dry_run
            && !self.rails.require_approval
            && self.store.scan::<Product>(1, None).await?.items.is_empty();
        let mut operation =
            SyncOperation::new(&name, operation_type, direction, self.actor.clone(), now);
        operation.dry_run = dry_run;
        if let Some(id) = id {
            operation.operation_uuid = id;
        }
        checkpoint.store_in(&mut operation);
        operation.move_to(OperationStatus::InProgress, None, now)?;
        operation.lease_expires_at = Some(now + lease());
        if let Some(announced) = announced {
            operation.created_by = announced.created_by.clone();
            operation.created_at = announced.created_at;
            let pending = shopsync_store::item::Condition::Eq(
                "status",
                shopsync_store::item::Scalar::from(
                    shopsync_domain::status::status_name(OperationStatus::Pending).as_str(),
                ),
            );
            return match self.store.replace_if(&operation, pending).await {
                Ok(()) => Ok((operation, true)),
                // Opened (or cancelled) meanwhile: that one stands.
                Err(shopsync_store::ReplaceError::Changed(current)) => Ok((*current, false)),
                Err(shopsync_store::ReplaceError::Repo(e)) => Err(e.into()),
            };
        }
        match self.store.insert(&operation).await {
            Ok(()) => Ok((operation, true)),
            // Opened meanwhile under the same id: that one stands.
            Err(RepoError::AlreadyExists { .. }) => Ok((
                load_operation(self.store, operation.operation_uuid).await?,
                false,
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs step `step` of an operation until `deadline` (`None`: to the end of its phase
    /// chain).
    pub async fn step(
        &self,
        id: OperationId,
        step: u32,
        deadline: Option<Instant>,
    ) -> Result<StepOutcome, EngineError> {
        let mut operation = load_operation(self.store, id).await?;
        if operation.status != OperationStatus::InProgress {
            return Ok(StepOutcome::Skipped(format!(
                "operation {id} is {}",
                shopsync_domain::status::status_name(operation.status)
            )));
        }
        let Some(mut checkpoint) = Checkpoint::of(&operation) else {
            return Err(EngineError::Mapping {
                product: "-".into(),
                reason: format!("operation {id} has no checkpoint this build can read"),
            });
        };
        if checkpoint.next_step > step {
            return Ok(StepOutcome::AlreadyDone {
                next: checkpoint.next_step,
            });
        }
        if checkpoint.next_step != step {
            return Ok(StepOutcome::Skipped(format!(
                "operation {id} is at step {}, not {step}",
                checkpoint.next_step
            )));
        }
        let started = operation.clone();
        // A step that starts at the conclusion concludes, whatever its deadline: that is its
        // whole work.
        let concluding = checkpoint.phase == Phase::Conclude;
        let began = Instant::now();
        let counters_before = self.client.counters();
        let mut times = StageTimes::default();
        let mut stats = OperationStatistics::default();
        let result = self
            .advance(
                &operation,
                &mut checkpoint,
                &mut times,
                &mut stats,
                deadline,
            )
            .await;
        if let Err(e) = result {
            // Retrying may help: the checkpoint stays as it was, the message is redelivered.
            if e.is_retryable() {
                return Err(e);
            }
            let mut failed = started.clone();
            failed.move_to(OperationStatus::Failed, Some(e.to_string()), Utc::now())?;
            save(self.store, &failed, &started).await?;
            return Err(e);
        }
        operation.statistics.absorb(&stats);
        checkpoint.api.add(counters_before, self.client.counters());
        checkpoint.elapsed_ms += u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        for (stage, ms) in times.millis() {
            *checkpoint.stage_ms.entry(stage).or_default() += ms;
        }
        checkpoint.next_step = step + 1;
        let out_of_time = !concluding && deadline.is_some_and(|d| Instant::now() >= d);
        if checkpoint.phase == Phase::Conclude && !out_of_time {
            return self.conclude(operation, started, checkpoint).await;
        }
        checkpoint.store_in(&mut operation);
        operation.updated_at = Utc::now();
        // Held for the next step (its message, or the loop running here).
        operation.lease_expires_at = Some(operation.updated_at + lease());
        match save(self.store, &operation, &started).await {
            Ok(()) => Ok(StepOutcome::Continue(step + 1)),
            Err(e) => {
                // Cancelled (or stopped) while this step ran: its work stays staged, unapplied.
                let now = load_operation(self.store, id).await?;
                if now.status != OperationStatus::InProgress {
                    return Ok(StepOutcome::Skipped(format!(
                        "operation {id} became {} during step {step}",
                        shopsync_domain::status::status_name(now.status)
                    )));
                }
                Err(e)
            }
        }
    }

    /// A down read's collections, into categories (versioned under the operation): every
    /// collection for a full read, those updated since the last down-sync began (less the
    /// overlap) for an incremental one. Shopify's refusal or absence is logged and the read
    /// left to the next sync (the products' sync stands); the store's failure fails the step.
    async fn read_collections(&self, operation: &mut SyncOperation) -> Result<(), EngineError> {
        let since = match operation.operation_type {
            OperationType::IncrementalSync => last_down(self.store)
                .await?
                .0
                .map(|at| at - crate::operation::default_overlap()),
            _ => None,
        };
        match crate::collections::sync_collections(
            self.store,
            self.client,
            Some(operation.operation_uuid),
            self.actor,
            since,
        )
        .await
        {
            Ok(synced) => {
                operation.statistics.categories_changed += synced.created + synced.updated;
                tracing::info!(operation = %operation.operation_uuid, created = synced.created, updated = synced.updated, unchanged = synced.unchanged, skipped = synced.skipped, "collections read");
                Ok(())
            }
            Err(EngineError::Shopify(e)) => {
                tracing::warn!(operation = %operation.operation_uuid, error = %e, "collections not read; the next down-sync reads them");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// An up-sync's last step: custom categories holding a change Shopify has not confirmed
    /// (a rollback's restore whose push failed) are pushed to their collections. Shopify's
    /// failure is logged and left to the next up-sync; the store's fails the step.
    async fn push_categories(&self, operation: &SyncOperation) -> Result<(), EngineError> {
        match crate::collections::push_pending_categories(self.store, self.client).await {
            Ok(pushed) => {
                for (category, why) in &pushed.not_pushed {
                    tracing::warn!(operation = %operation.operation_uuid, %category, why, "category not pushed");
                }
                if pushed.pushed + pushed.in_step > 0 || !pushed.not_pushed.is_empty() {
                    tracing::info!(operation = %operation.operation_uuid, pushed = pushed.pushed, in_step = pushed.in_step, not_pushed = pushed.not_pushed.len(), "categories pushed");
                }
                Ok(())
            }
            Err(EngineError::Shopify(e)) => {
                tracing::warn!(operation = %operation.operation_uuid, error = %e, "categories not pushed; the next up-sync pushes them");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Judges and ends the operation (the Conclude phase).
    async fn conclude(
        &self,
        mut operation: SyncOperation,
        started: SyncOperation,
        checkpoint: Checkpoint,
    ) -> Result<StepOutcome, EngineError> {
        operation.checkpoint = None;
        if let (SyncDirection::Up, Some(reason)) =
            (operation.sync_direction, checkpoint.held.clone())
        {
            // Held by the rails: nothing was sent; the staged rows wait for a person, and
            // an approval goes on from the push.
            let mut waiting = checkpoint.clone();
            waiting.held = None;
            waiting.phase = Phase::Push {
                after: None,
                last_failure: None,
            };
            waiting.store_in(&mut operation);
            operation.statistics.processed = checkpoint.summary.changes;
            operation.lease_expires_at = None;
            operation.move_to(OperationStatus::AwaitingApproval, Some(reason), Utc::now())?;
            save(self.store, &operation, &started).await?;
            tracing::warn!(operation = %operation.operation_uuid, "up-sync held for approval; nothing sent");
            return Ok(StepOutcome::Finished(Box::new(operation)));
        }
        if operation.sync_direction == SyncDirection::Up {
            if !operation.dry_run {
                self.push_categories(&operation).await?;
            }
            // Nothing staged to judge: an up-sync ends with what it pushed.
            let reason = if operation.dry_run {
                let s = &operation.statistics;
                Some(format!(
                    "dry run: {} product(s) would be pushed, staged for review; {} held back (open conflicts or locked); nothing sent to Shopify",
                    s.updated, s.skipped
                ))
            } else {
                checkpoint.push_failure.as_ref().map(|last| {
                    format!(
                        "{} product(s) not pushed; last: {last}",
                        operation.statistics.failed + operation.statistics.conflicts
                    )
                })
            };
            operation.move_to(OperationStatus::Completed, reason, Utc::now())?;
            save(self.store, &operation, &started).await?;
            record_performance(
                self.store,
                &operation,
                &StageTimes::from_millis(&checkpoint.stage_ms),
                Instant::now()
                    .checked_sub(Duration::from_millis(checkpoint.elapsed_ms))
                    .unwrap_or_else(Instant::now),
                rebase(self.client.counters(), checkpoint.api),
                self.client.counters(),
            )
            .await?;
            return Ok(StepOutcome::Finished(Box::new(operation)));
        }
        if !operation.dry_run {
            self.read_collections(&mut operation).await?;
        }
        let times = StageTimes::from_millis(&checkpoint.stage_ms);
        let elapsed = Duration::from_millis(checkpoint.elapsed_ms);
        let mut summary = checkpoint.summary;
        summary.catalog_size = summary.catalog_size.max(summary.changes);
        let finished = Conclusion {
            nothing_pending: checkpoint.import && checkpoint.pending == 0,
            store: self.store,
            client: self.client,
            actor: self.actor,
            rails: self.rails,
            started,
            started_at: Instant::now()
                .checked_sub(elapsed)
                .unwrap_or_else(Instant::now),
            counters_before: rebase(self.client.counters(), checkpoint.api),
        }
        .conclude(operation, &summary, times)
        .await?;
        Ok(StepOutcome::Finished(Box::new(finished)))
    }

    /// Works through phases until the plan is complete or the deadline passes.
    async fn advance(
        &self,
        operation: &SyncOperation,
        checkpoint: &mut Checkpoint,
        times: &mut StageTimes,
        stats: &mut OperationStatistics,
        deadline: Option<Instant>,
    ) -> Result<(), EngineError> {
        let past = |d: Option<Instant>| d.is_some_and(|d| Instant::now() >= d);
        loop {
            match checkpoint.phase.clone() {
                Phase::Conclude => return Ok(()),
                Phase::Export { bulk } => {
                    let fetching = Instant::now();
                    let id = match bulk {
                        Some(id) => id,
                        None => {
                            let id = self.client.start_bulk_products(None).await?;
                            checkpoint.phase = Phase::Export {
                                bulk: Some(id.clone()),
                            };
                            id
                        }
                    };
                    let wait = match deadline {
                        Some(d) => d.saturating_duration_since(Instant::now()),
                        None => Duration::from_secs(3600),
                    };
                    let done = self.client.bulk_result(&id, wait).await?;
                    times.add(Stage::Fetch, fetching);
                    match done {
                        Some((url, objects)) => {
                            checkpoint.phase = Phase::Read {
                                bulk: id,
                                url,
                                objects,
                                done: 0,
                            }
                        }
                        None => return Ok(()),
                    }
                }
                Phase::Read {
                    bulk,
                    url,
                    objects,
                    done,
                } => {
                    let read = self
                        .read_export(
                            operation,
                            (&bulk, url.as_deref(), objects),
                            done,
                            checkpoint,
                            times,
                            stats,
                            deadline,
                        )
                        .await?;
                    checkpoint.phase = match read {
                        Some(done) => Phase::Read {
                            bulk,
                            url,
                            objects,
                            done,
                        },
                        None if operation.operation_type == OperationType::Reconcile => {
                            Phase::Missing { bulk, url, objects }
                        }
                        None => Phase::Conclude,
                    };
                    if past(deadline) {
                        return Ok(());
                    }
                }
                Phase::Missing { bulk, url, objects } => {
                    // The deletes it proposes are judged with the rest of the plan (the
                    // delete rail), counted again in full when the phase is redelivered.
                    checkpoint.summary.deletes += self
                        .find_missing(operation, (&bulk, url.as_deref(), objects), times)
                        .await?;
                    checkpoint.phase = Phase::Conclude;
                    if past(deadline) {
                        return Ok(());
                    }
                }
                Phase::StageUp { after } => {
                    let next = self
                        .stage_page(operation, after, checkpoint, times, stats)
                        .await?;
                    checkpoint.phase = match next {
                        Some(after) => Phase::StageUp { after: Some(after) },
                        None => match self.rails.judge(&checkpoint.summary) {
                            shopsync_domain::Verdict::Proceed => Phase::Push {
                                after: None,
                                last_failure: None,
                            },
                            shopsync_domain::Verdict::Hold(reasons) => {
                                checkpoint.held = Some(reasons.join("; "));
                                Phase::Conclude
                            }
                        },
                    };
                    if past(deadline) {
                        return Ok(());
                    }
                }
                Phase::Push {
                    after,
                    mut last_failure,
                } => {
                    let staged = checkpoint.staged_up;
                    // A large push goes through Shopify's bulk mutations, a page at a time.
                    let page = if checkpoint.summary.changes >= crate::up::bulk_push_min() {
                        BULK_PUSH_PAGE
                    } else {
                        PUSH_PAGE
                    };
                    let next = self
                        .push_page(
                            operation,
                            after,
                            page,
                            &mut last_failure,
                            times,
                            stats,
                            staged,
                        )
                        .await?;
                    checkpoint.phase = match next {
                        Some(after) => Phase::Push {
                            after: Some(after),
                            last_failure,
                        },
                        None => {
                            checkpoint.push_failure = last_failure;
                            Phase::Conclude
                        }
                    };
                    if past(deadline) {
                        return Ok(());
                    }
                }
                Phase::Pages { since, cursor } => {
                    let next = self
                        .read_pages(operation, since, cursor, checkpoint, times, stats, deadline)
                        .await?;
                    checkpoint.phase = match next {
                        Some(cursor) => Phase::Pages {
                            since,
                            cursor: Some(cursor),
                        },
                        None => Phase::Conclude,
                    };
                    if past(deadline) {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn plan(
        &self,
        operation: &SyncOperation,
        items: Vec<(Shopify, shopsync_domain::product::ProductContent)>,
        checkpoint: &mut Checkpoint,
        times: &mut StageTimes,
        stats: &mut OperationStatistics,
    ) -> Result<(), EngineError> {
        let planner = Planner {
            store: self.store,
            operation,
            actor: self.actor,
            rails: self.rails,
            import: checkpoint.import,
            known_local: None,
        };
        let planned = planner
            .plan_batch(items, Utc::now(), &mut checkpoint.summary, times)
            .await?;
        count_planned(planned, checkpoint, stats);
        // The embedded store answers without awaiting anything: give other tasks (webhooks
        // on the same host) their turn between batches.
        tokio::task::yield_now().await;
        Ok(())
    }

    /// Plans a batch on a task of its own (see [`BATCHES_IN_FLIGHT`]).
    fn spawn_plan(
        &self,
        operation: &SyncOperation,
        items: Vec<(Shopify, shopsync_domain::product::ProductContent)>,
        import: bool,
    ) -> PlanTask {
        let store = self.store.clone();
        let operation = operation.clone();
        let actor = self.actor.clone();
        let rails = self.rails.clone();
        tokio::spawn(async move {
            let planner = Planner {
                store: &store,
                operation: &operation,
                actor: &actor,
                rails: &rails,
                import,
                known_local: None,
            };
            let mut summary = PlanSummary::default();
            let mut times = StageTimes::default();
            let planned = planner
                .plan_batch(items, Utc::now(), &mut summary, &mut times)
                .await?;
            Ok(PlannedBatch {
                planned,
                summary,
                times,
            })
        })
    }

    /// Waits for a batch planned on its own task and counts what became of it.
    async fn settle(
        task: PlanTask,
        checkpoint: &mut Checkpoint,
        times: &mut StageTimes,
        stats: &mut OperationStatistics,
    ) -> Result<(), EngineError> {
        let batch = task.await.map_err(|e| EngineError::Task(e.to_string()))??;
        crate::crash::point("batch-written");
        checkpoint.summary.absorb(&batch.summary);
        times.absorb(&batch.times);
        count_planned(batch.planned, checkpoint, stats);
        Ok(())
    }

    /// Plans products of the export file from the `done`-th on; returns how many are done
    /// when the deadline stopped it, `None` at the end of the file.
    #[allow(clippy::too_many_arguments)]
    async fn read_export(
        &self,
        operation: &SyncOperation,
        (bulk, url, objects): (&str, Option<&str>, u64),
        mut done: u64,
        checkpoint: &mut Checkpoint,
        times: &mut StageTimes,
        stats: &mut OperationStatistics,
        deadline: Option<Instant>,
    ) -> Result<Option<u64>, EngineError> {
        let fetching = Instant::now();
        let export = self.client.open_bulk_result(bulk, url, objects).await?;
        times.add(Stage::Fetch, fetching);
        // Reading and mapping run ahead on another task, and batches are planned on tasks of
        // their own, so reading, deciding and writing share both cores.
        let size = if deadline
            .is_some_and(|d| d.saturating_duration_since(Instant::now()) < NEAR_DEADLINE)
        {
            DEADLINE_BATCH
        } else {
            BATCH
        };
        let mut batches = read_ahead(export, done, size);
        let mut in_flight = std::collections::VecDeque::with_capacity(BATCHES_IN_FLIGHT);
        let read = async {
            while let Some(next) = batches.recv().await {
                let (items, reading) = next?;
                times.add_spent(Stage::Fetch, reading);
                checkpoint.summary.catalog_size += items.len() as u64;
                done += items.len() as u64;
                in_flight.push_back(self.spawn_plan(operation, items, checkpoint.import));
                if in_flight.len() >= BATCHES_IN_FLIGHT {
                    if let Some(oldest) = in_flight.pop_front() {
                        Self::settle(oldest, checkpoint, times, stats).await?;
                    }
                }
                // (Shopify's object count includes variant and level lines: no total here.)
                progress(operation, "planned", done, None);
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(Some(done));
                }
            }
            Ok(None)
        };
        let mut result: Result<Option<u64>, EngineError> = read.await;
        // Every batch handed out is finished before the step saves where it stopped (or
        // fails): nothing planned is left running behind the checkpoint.
        for task in in_flight {
            if let Err(e) = Self::settle(task, checkpoint, times, stats).await {
                if result.is_ok() {
                    result = Err(e);
                } else {
                    tracing::warn!(error = %e, "a batch planned beside a failed one failed too");
                }
            }
        }
        result
    }

    /// Reads which products the export holds and records every local product mirrored from
    /// Shopify that it lacks: an open `missing_remotely` conflict and a delete row waiting
    /// for review, in one transaction. Nothing is deleted. A product with another open
    /// conflict is left to that one. Returns how many deletes this operation proposes,
    /// those it recorded before a redelivery included (recorded once).
    async fn find_missing(
        &self,
        operation: &SyncOperation,
        (bulk, url, objects): (&str, Option<&str>, u64),
        times: &mut StageTimes,
    ) -> Result<u64, EngineError> {
        let fetching = Instant::now();
        let mut export = self.client.open_bulk_result(bulk, url, objects).await?;
        let mut present = std::collections::HashSet::new();
        while let Some(remote) = export.next_product().await? {
            present.insert(remote.id);
        }
        times.add(Stage::Fetch, fetching);
        let diffing = Instant::now();
        let mut missing = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .store
                .scan::<shopsync_domain::Product>(500, start.as_ref())
                .await?;
            missing.extend(
                page.items
                    .into_iter()
                    .filter(|p| p.shopify_id.is_some_and(|id| !present.contains(&id))),
            );
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        times.add(Stage::Diff, diffing);
        let staging = Instant::now();
        let now = Utc::now();
        let mut recorded = 0;
        for product in missing {
            let (row_id, conflict_id) = missing_record_ids(operation.operation_uuid, product.id);
            let open = crate::operation::open_conflicts(self.store, product.id).await?;
            if open.iter().any(|c| c.conflict_uuid == conflict_id) {
                // Recorded by this operation before the step was redelivered.
                recorded += 1;
                continue;
            }
            if !open.is_empty() {
                continue;
            }
            let mut row = crate::realtime::delete_row(
                operation,
                &product,
                product.shopify_id,
                self.actor,
                now,
            );
            row.id = row_id;
            row.has_conflicts = true;
            row.error = Some("no longer in Shopify; nobody deleted it here: review".into());
            let mut writes = vec![Store::insert_write(&row)?];
            if !operation.dry_run {
                let mut conflict = shopsync_domain::SyncConflict::gone_remotely(
                    operation.operation_uuid,
                    &product,
                    shopsync_domain::ConflictType::MissingRemotely,
                    now,
                );
                conflict.conflict_uuid = conflict_id;
                writes.push(Store::insert_write(&conflict)?);
                writes.push(Store::conflict_opened_write(product.id, now));
            }
            match self.store.commit_writes(writes).await? {
                Ok(()) => recorded += 1,
                // The row exists: this operation recorded it before the step was redelivered
                // (a dry run's, which records no conflict to find above).
                Err(reasons)
                    if matches!(
                        reasons.first(),
                        Some(shopsync_store::CancelReason::ConditionFailed(_))
                    ) =>
                {
                    recorded += 1
                }
                Err(reasons) => {
                    return Err(EngineError::Store(RepoError::Store(
                        shopsync_store::StoreError::Invalid(format!(
                            "recording product {} as missing from Shopify was refused: {reasons:?}",
                            product.id
                        )),
                    )))
                }
            }
        }
        times.add(Stage::Stage, staging);
        Ok(recorded)
    }

    /// Pushes one page of products with local changes; returns where the next page starts,
    /// `None` after the last. Products that are held back or refused stay in the index but
    /// behind the cursor, so a long up-sync never loops over them.
    /// Stages a page of the products an up-sync will push (see [`crate::up::stage_push`]);
    /// returns where the next page starts, `None` after the last.
    async fn stage_page(
        &self,
        operation: &SyncOperation,
        after: Option<shopsync_store::PageToken>,
        checkpoint: &mut Checkpoint,
        times: &mut StageTimes,
        stats: &mut OperationStatistics,
    ) -> Result<Option<shopsync_store::PageToken>, EngineError> {
        let mut query =
            shopsync_store::item::Query::new(Table::Products, Some("by_pending_push"), "1");
        query.limit = 100;
        query.start = after;
        let staging = Instant::now();
        let page = self.store.query::<shopsync_domain::Product>(query).await?;
        crate::up::stage_push(
            self.store,
            operation,
            self.actor,
            self.rails,
            &page.items,
            &mut checkpoint.summary,
            stats,
        )
        .await?;
        times.add(Stage::Stage, staging);
        progress(operation, "staged", checkpoint.summary.changes, None);
        Ok(page.next)
    }

    #[allow(clippy::too_many_arguments)]
    async fn push_page(
        &self,
        operation: &SyncOperation,
        after: Option<shopsync_store::PageToken>,
        size: u32,
        last_failure: &mut Option<String>,
        times: &mut StageTimes,
        stats: &mut OperationStatistics,
        staged: bool,
    ) -> Result<Option<shopsync_store::PageToken>, EngineError> {
        let mut query =
            shopsync_store::item::Query::new(Table::Products, Some("by_pending_push"), "1");
        query.limit = size;
        query.start = after;
        let fetching = Instant::now();
        let page = self.store.query::<shopsync_domain::Product>(query).await?;
        times.add(Stage::Fetch, fetching);
        if operation.dry_run {
            crate::up::preview_products(self.store, operation, self.actor, &page.items, stats)
                .await?;
            progress(operation, "previewed", stats.processed, None);
            return Ok(page.next);
        }
        if let Some(failure) = crate::up::push_products(
            self.store,
            self.client,
            self.actor,
            operation.operation_uuid,
            &page.items,
            times,
            stats,
            staged,
        )
        .await?
        {
            *last_failure = Some(failure);
        }
        progress(operation, "pushed", stats.processed, None);
        Ok(page.next)
    }

    /// Plans pages from `cursor`; returns the cursor to continue from when the deadline
    /// stopped it, `None` after the last page.
    #[allow(clippy::too_many_arguments)]
    async fn read_pages(
        &self,
        operation: &SyncOperation,
        since: DateTime<Utc>,
        cursor: Option<String>,
        checkpoint: &mut Checkpoint,
        times: &mut StageTimes,
        stats: &mut OperationStatistics,
        deadline: Option<Instant>,
    ) -> Result<Option<String>, EngineError> {
        let shape = ProductPageShape::default();
        let mut request = ProductsPageRequest {
            after: cursor,
            updated_after: Some(since),
            shape,
        };
        loop {
            let fetching = Instant::now();
            let page = self.client.products_page(&request).await?;
            let mut items = Vec::with_capacity(page.items.len());
            for mut remote in page.items {
                if !remote.variants_complete() {
                    self.client
                        .complete_variants(&mut remote, shape.levels_first)
                        .await?;
                }
                let source = Shopify {
                    id: remote.id,
                    updated_at: remote.updated_at,
                };
                items.push((source, into_content(remote)?));
            }
            times.add(Stage::Fetch, fetching);
            self.plan(operation, items, checkpoint, times, stats)
                .await?;
            progress(
                operation,
                "planned",
                checkpoint.summary.changes + stats.processed,
                None,
            );
            match page.next {
                Some(next) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(Some(next));
                    }
                    request.after = Some(next);
                }
                None => return Ok(None),
            }
        }
    }

    /// Opens an operation and runs all its steps here, one after another.
    pub async fn run_to_end(&self, kind: SyncKind) -> Result<SyncOperation, EngineError> {
        let operation = self.open(kind).await?;
        self.resume_to_end(operation.operation_uuid).await
    }

    /// Runs the remaining steps of an operation here, one after another, each at most
    /// [`LOCAL_STEP`] long (so a crash costs at most one step, and the lease is renewed).
    pub async fn resume_to_end(&self, id: OperationId) -> Result<SyncOperation, EngineError> {
        let mut step = Checkpoint::of(&load_operation(self.store, id).await?)
            .map(|c| c.next_step)
            .unwrap_or(1);
        loop {
            match self
                .step(id, step, Some(Instant::now() + LOCAL_STEP))
                .await?
            {
                StepOutcome::Continue(next) | StepOutcome::AlreadyDone { next } => step = next,
                StepOutcome::Finished(op) => return Ok(*op),
                StepOutcome::Skipped(_) => return load_operation(self.store, id).await,
            }
        }
    }
}

/// Reports progress as a `shopsync::progress` event (the CLI draws it; logs may keep it).
fn progress(operation: &SyncOperation, phase: &'static str, done: u64, total: Option<u64>) {
    progress_in(operation, phase, done, total, "products");
}

/// The ids of the delete row and the conflict a reconcile records for a product missing from
/// Shopify: derived from the operation and the product, so a redelivered step finds what it
/// recorded (an insert refused as present) instead of recording it twice.
fn missing_record_ids(
    operation: OperationId,
    product: shopsync_domain::ProductId,
) -> (shopsync_domain::StagingId, shopsync_domain::ConflictId) {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"shopsync/reconcile/missing\0")
        .chain_update(operation.uuid().as_bytes())
        .chain_update(product.uuid().as_bytes())
        .finalize();
    let half = |from: usize| {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[from..from + 16]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    };
    (
        shopsync_domain::StagingId::from_uuid(half(0)),
        shopsync_domain::ConflictId::from_uuid(half(16)),
    )
}

//! Judging and deciding operations: the guard rails' verdict on a planned operation (apply it,
//! or hold it for approval), and what a person decides of an operation (approve or reject it
//! whole or row by row, cancel it, resume it).

use crate::apply::{
    applies_unattended, apply_operation, apply_operation_as, apply_rows_as, reject_pending, Review,
};
use crate::error::EngineError;
use crate::operation::{
    invalid, lease, load_operation, operation_rows, record_performance, rows_by_id, save,
    Checkpoint,
};
use crate::perf::StageTimes;
use chrono::Utc;
use shopsync_domain::staging::{ChangeType, ProductsStaging, StagingStatus};
use shopsync_domain::{
    Actor, GuardRails, OperationStatistics, OperationStatus, PlanSummary, Stage, SyncOperation,
};
use shopsync_store::item::Query;
use shopsync_store::{Store, Table};
use std::time::Instant;

/// Whether an operation is an up-sync that staged what it pushes: approved, it goes on
/// from its push instead of applying rows.
pub fn staged_up_sync(operation: &SyncOperation) -> bool {
    operation.sync_direction == shopsync_domain::SyncDirection::Up
        && Checkpoint::of(operation).is_some_and(|c| c.staged_up)
}

/// Why an operation could not be approved or rejected.
fn not_waiting(operation: &SyncOperation) -> EngineError {
    let hint = if operation.operation_type == shopsync_domain::OperationType::Realtime
        && operation.status == OperationStatus::InProgress
    {
        " (its day is still open: decide its rows one by one with --rows)"
    } else {
        ""
    };
    invalid(format!(
        "operation {} is {}, not awaiting approval{hint}",
        operation.operation_uuid,
        shopsync_domain::status::status_name(operation.status)
    ))
}

/// An operation whose rows can be decided one by one: one waiting for approval, or the
/// realtime operation of a day still open (its webhook deletes and conflicts wait for review
/// while the day's deliveries keep coming).
async fn load_deciding(
    store: &Store,
    id: shopsync_domain::OperationId,
) -> Result<SyncOperation, EngineError> {
    let operation = load_operation(store, id).await?;
    let open_realtime = operation.operation_type == shopsync_domain::OperationType::Realtime
        && operation.status == OperationStatus::InProgress;
    if operation.status != OperationStatus::AwaitingApproval && !open_realtime {
        return Err(not_waiting(&operation));
    }
    Ok(operation)
}

/// After rows of an open realtime operation were decided: its counts recounted from its rows
/// (it stays in progress until its day is over).
async fn recount_realtime(
    store: &Store,
    id: shopsync_domain::OperationId,
) -> Result<SyncOperation, EngineError> {
    let current = load_operation(store, id).await?;
    Ok(
        crate::realtime::refresh_realtime(store, &current, Utc::now())
            .await?
            .unwrap_or(current),
    )
}

/// An operation that waits for approval (anything else is refused with its status).
async fn load_waiting(
    store: &Store,
    id: shopsync_domain::OperationId,
) -> Result<SyncOperation, EngineError> {
    let operation = load_operation(store, id).await?;
    if operation.status != OperationStatus::AwaitingApproval {
        return Err(not_waiting(&operation));
    }
    Ok(operation)
}

/// Approves an operation waiting for approval: applies its rows and completes it.
pub async fn approve_operation(
    store: &Store,
    id: shopsync_domain::OperationId,
    actor: &Actor,
) -> Result<SyncOperation, EngineError> {
    let mut operation = load_waiting(store, id).await?;
    let waiting = operation.clone();
    operation.move_to(
        OperationStatus::InProgress,
        Some(format!("approved by {actor}")),
        Utc::now(),
    )?;
    if staged_up_sync(&operation) {
        // An up-sync's rows are what it will push, not changes to apply here: approved, it
        // goes on from its push (the caller runs its steps), each row settled as its
        // product is pushed.
        operation.lease_expires_at = Some(Utc::now() + lease());
        save(store, &operation, &waiting).await?;
        return Ok(operation);
    }
    save(store, &operation, &waiting).await?;
    let applying = operation.clone();
    let stats = apply_operation_as(
        store,
        &operation,
        actor,
        &mut StageTimes::default(),
        Review::Approved,
    )
    .await?;
    operation.statistics.created += stats.created;
    operation.statistics.updated += stats.updated;
    operation.statistics.deleted += stats.deleted;
    operation.statistics.failed += stats.failed;
    operation.statistics.skipped += stats.skipped;
    operation.move_to(
        OperationStatus::Completed,
        Some(format!("approved by {actor}")),
        Utc::now(),
    )?;
    save(store, &operation, &applying).await?;
    Ok(operation)
}

/// Rejects an operation waiting for approval: its pending rows are rejected, nothing applied.
pub async fn reject_operation(
    store: &Store,
    id: shopsync_domain::OperationId,
    actor: &Actor,
    reason: &str,
) -> Result<SyncOperation, EngineError> {
    let mut operation = load_waiting(store, id).await?;
    let now = Utc::now();
    let rows = operation_rows(store, id).await?;
    reject_pending(
        store,
        rows,
        actor,
        &format!("rejected by {actor}: {reason}"),
        now,
    )
    .await?;
    let waiting = operation.clone();
    operation.move_to(
        OperationStatus::Cancelled,
        Some(format!("rejected by {actor}: {reason}")),
        now,
    )?;
    save(store, &operation, &waiting).await?;
    crate::rollback::abandon(store, &operation, &format!("rejected by {actor}: {reason}")).await?;
    crate::xorosoft_import::mark_import_failed(store, &operation).await?;
    Ok(operation)
}

/// What ending a planned operation needs: where it runs and how it started.
pub(crate) struct Conclusion<'a> {
    pub store: &'a Store,
    pub client: &'a shopsync_shopify::AdminClient,
    pub actor: &'a Actor,
    pub rails: &'a GuardRails,
    /// The operation as stored when it started running.
    pub started: SyncOperation,
    pub started_at: Instant,
    pub counters_before: shopsync_shopify::ClientCounters,
    /// The plan staged no pending row (an import applied every create as it went): there
    /// is nothing to read back and apply.
    pub nothing_pending: bool,
}

impl Conclusion<'_> {
    /// The rails judge the plan; the operation is applied or left awaiting approval with the
    /// reasons, then stored (if still as it started) with its performance log.
    pub(crate) async fn conclude(
        self,
        mut operation: SyncOperation,
        summary: &PlanSummary,
        mut times: StageTimes,
    ) -> Result<SyncOperation, EngineError> {
        let verdict = self.rails.judge(summary);
        // A full read saw the whole catalog; an incremental one adds what it creates to the
        // size it started from.
        operation.catalog_size = Some(match operation.operation_type {
            shopsync_domain::OperationType::IncrementalSync => {
                summary.catalog_size + summary.changes.saturating_sub(summary.updates)
            }
            _ => summary.catalog_size,
        });
        match verdict {
            verdict if operation.dry_run => {
                // A preview: the rows show what would change; nothing is applied.
                operation.statistics.processed += summary.changes;
                let would = match verdict {
                    shopsync_domain::Verdict::Hold(reasons) => {
                        format!("would wait for approval: {}", reasons.join("; "))
                    }
                    shopsync_domain::Verdict::Proceed => {
                        "would apply (no guard rail trips)".to_owned()
                    }
                };
                operation.move_to(
                    OperationStatus::Completed,
                    Some(format!(
                        "dry run: {} change(s) staged, nothing applied ({} new, {} updated, {} to delete); {would}",
                        summary.changes + summary.deletes,
                        summary.changes.saturating_sub(summary.updates),
                        summary.updates,
                        summary.deletes,
                    )),
                    Utc::now(),
                )?;
            }
            shopsync_domain::Verdict::Hold(reasons) => {
                operation.statistics.processed += summary.changes;
                operation.move_to(
                    OperationStatus::AwaitingApproval,
                    Some(reasons.join("; ")),
                    Utc::now(),
                )?;
            }
            shopsync_domain::Verdict::Proceed => {
                if !self.nothing_pending {
                    let applied =
                        apply_operation(self.store, &operation, self.actor, &mut times).await?;
                    operation.statistics.absorb(&applied);
                }
                let reason = finish_both_ways(
                    self.store,
                    self.client,
                    self.actor,
                    &mut operation,
                    &mut times,
                )
                .await?;
                let skipped = operation.statistics.skipped;
                let reason = match (reason, skipped) {
                    (reason, 0) => reason,
                    (reason, n) => Some(
                        reason
                            .map(|r| format!("{r}; "))
                            .unwrap_or_default()
                            + &format!(
                                "{n} product(s) skipped: locked (sync_locked), or held by open conflicts"
                            ),
                    ),
                };
                operation.move_to(OperationStatus::Completed, reason, Utc::now())?;
            }
        }
        count_conflicts(self.store, &mut operation).await?;
        let persisting = Instant::now();
        save(self.store, &operation, &self.started).await?;
        times.add(Stage::Persist, persisting);
        record_performance(
            self.store,
            &operation,
            &times,
            self.started_at,
            self.counters_before,
            self.client.counters(),
        )
        .await?;
        Ok(operation)
    }
}

/// What follows applying an operation's rows: a bidirectional operation pushes every product
/// with local changes (open conflicts hold theirs back), a rollback pushes what it restored
/// and settles its record. Returns a reason when some were not pushed. Other operations have
/// nothing to do here.
pub(crate) async fn finish_both_ways(
    store: &Store,
    client: &shopsync_shopify::AdminClient,
    actor: &Actor,
    operation: &mut SyncOperation,
    times: &mut StageTimes,
) -> Result<Option<String>, EngineError> {
    if operation.operation_type == shopsync_domain::OperationType::Rollback {
        // A rollback pushes what it restored, and its record says how that went.
        return crate::rollback::after_approval(store, client, actor, operation, times).await;
    }
    if operation.sync_direction != shopsync_domain::SyncDirection::Bidirectional {
        return Ok(None);
    }
    let mut pushed = OperationStatistics::default();
    let last = crate::up::push_pending(
        store,
        client,
        actor,
        operation.operation_uuid,
        times,
        &mut pushed,
    )
    .await?;
    operation.statistics.updated += pushed.updated;
    operation.statistics.skipped += pushed.skipped;
    operation.statistics.failed += pushed.failed;
    // A product found gone from Shopify is counted with the operation's conflicts, when it
    // concludes.
    let not_pushed = pushed.failed + pushed.conflicts;
    Ok(last.map(|last| format!("{not_pushed} product(s) not pushed; last: {last}")))
}

/// An approved operation finishes as it would have unheld: a bidirectional one pushes the
/// local changes it merged (others have nothing to push). The operation is stored with what
/// the push did.
pub async fn push_after_approval(
    store: &Store,
    client: &shopsync_shopify::AdminClient,
    actor: &Actor,
    approved: SyncOperation,
) -> Result<SyncOperation, EngineError> {
    if approved.status != OperationStatus::Completed {
        return Ok(approved);
    }
    let mut done = approved.clone();
    let reason =
        finish_both_ways(store, client, actor, &mut done, &mut StageTimes::default()).await?;
    if done == approved {
        return Ok(approved);
    }
    if reason.is_some() {
        done.status_reason = reason;
    }
    done.updated_at = Utc::now();
    save(store, &done, &approved).await?;
    Ok(done)
}

/// Sets the operation's conflict counts from its recorded conflicts: open ones wait for a
/// person, resolved ones were settled by the policy.
async fn count_conflicts(store: &Store, operation: &mut SyncOperation) -> Result<(), EngineError> {
    let conflicts: Vec<shopsync_domain::SyncConflict> = store
        .query_all(Query::new(
            Table::SyncConflicts,
            Some("by_operation"),
            operation.operation_uuid.to_string(),
        ))
        .await?;
    operation.statistics.conflicts = conflicts
        .iter()
        .filter(|c| c.status == shopsync_domain::ConflictStatus::Open)
        .count() as u64;
    operation.statistics.auto_resolved = conflicts
        .iter()
        .filter(|c| c.status == shopsync_domain::ConflictStatus::Resolved)
        .count() as u64;
    Ok(())
}

/// The named rows of an operation; an id that is not one of its rows is an error naming it.
async fn named_rows(
    store: &Store,
    operation: shopsync_domain::OperationId,
    ids: &[shopsync_domain::StagingId],
) -> Result<Vec<ProductsStaging>, EngineError> {
    let rows = rows_by_id(store, ids).await?;
    let unknown: Vec<String> = ids
        .iter()
        .filter(|id| {
            !rows
                .iter()
                .any(|r| r.id == **id && r.sync_operation_id == operation)
        })
        .map(|id| id.to_string())
        .collect();
    if !unknown.is_empty() {
        return Err(invalid(format!(
            "not rows of operation {operation}: {}",
            unknown.join(", ")
        )));
    }
    Ok(rows)
}

/// Completes a held operation once none of its rows waits to be applied or rejected
/// (conflict rows and deletes wait for their own review and do not hold it).
async fn complete_if_decided(
    store: &Store,
    mut operation: SyncOperation,
    actor: &Actor,
) -> Result<SyncOperation, EngineError> {
    // A held operation's deletes wait for a person like its other rows.
    let waiting = operation_rows(store, operation.operation_uuid)
        .await?
        .iter()
        .filter(|r| {
            applies_unattended(r)
                || (r.change_type == ChangeType::Delete
                    && r.status == StagingStatus::Pending
                    && !r.has_conflicts)
        })
        .count();
    if waiting > 0 {
        return Ok(operation);
    }
    let held = operation.clone();
    let reason = format!("every row reviewed (last by {actor})");
    operation.move_to(
        OperationStatus::InProgress,
        Some(reason.clone()),
        Utc::now(),
    )?;
    operation.move_to(OperationStatus::Completed, Some(reason), Utc::now())?;
    save(store, &operation, &held).await?;
    Ok(operation)
}

/// Approves some rows of an operation waiting for approval, or of the open realtime operation
/// of the day: they are applied (deletes included); a held operation completes once no row
/// waits, a realtime one is recounted and stays open until its day is over.
pub async fn approve_rows(
    store: &Store,
    id: shopsync_domain::OperationId,
    rows: &[shopsync_domain::StagingId],
    actor: &Actor,
) -> Result<SyncOperation, EngineError> {
    let operation = load_deciding(store, id).await?;
    if staged_up_sync(&operation) {
        return Err(invalid(format!(
            "operation {id} is an up-sync: it is approved whole (its rows are what it pushes)"
        )));
    }
    let rows = named_rows(store, id, rows).await?;
    let stats = apply_rows_as(
        store,
        &operation,
        rows,
        actor,
        &mut StageTimes::default(),
        (Review::Approved, None),
    )
    .await?;
    if operation.status == OperationStatus::InProgress {
        return recount_realtime(store, id).await;
    }
    let mut counted = operation.clone();
    counted.statistics.created += stats.created;
    counted.statistics.updated += stats.updated;
    counted.statistics.deleted += stats.deleted;
    counted.statistics.failed += stats.failed;
    counted.statistics.skipped += stats.skipped;
    counted.updated_at = Utc::now();
    save(store, &counted, &operation).await?;
    complete_if_decided(store, counted, actor).await
}

/// Rejects some rows of an operation waiting for approval, or of the open realtime operation
/// of the day (nothing of them is applied); a held operation completes once no row waits.
pub async fn reject_rows(
    store: &Store,
    id: shopsync_domain::OperationId,
    rows: &[shopsync_domain::StagingId],
    actor: &Actor,
    reason: &str,
) -> Result<SyncOperation, EngineError> {
    let operation = load_deciding(store, id).await?;
    let rows = named_rows(store, id, rows).await?;
    let why = format!("rejected by {actor}: {reason}");
    reject_pending(store, rows, actor, &why, Utc::now()).await?;
    if operation.status == OperationStatus::InProgress {
        return recount_realtime(store, id).await;
    }
    complete_if_decided(store, operation, actor).await
}

/// Cancels an operation that has not ended: it stops at its next checkpoint (a running step
/// notices when it saves), and its rows still waiting are rejected. Nothing applied is undone.
pub async fn cancel_operation(
    store: &Store,
    id: shopsync_domain::OperationId,
    actor: &Actor,
    reason: &str,
) -> Result<SyncOperation, EngineError> {
    let mut operation = load_operation(store, id).await?;
    if operation.operation_type == shopsync_domain::OperationType::Realtime {
        return Err(invalid(format!(
            "operation {id} is a realtime operation: it records the day's webhooks, which keep coming; reject its waiting rows instead (--rows)"
        )));
    }
    let before = operation.clone();
    operation
        .move_to(
            OperationStatus::Cancelled,
            Some(format!("cancelled by {actor}: {reason}")),
            Utc::now(),
        )
        .map_err(|_| {
            invalid(format!(
                "operation {id} is {} and cannot be cancelled",
                shopsync_domain::status::status_name(before.status)
            ))
        })?;
    save(store, &operation, &before).await?;
    let rows = operation_rows(store, id).await?;
    let why = format!("operation cancelled by {actor}");
    reject_pending(store, rows, actor, &why, Utc::now()).await?;
    crate::rollback::abandon(
        store,
        &operation,
        &format!("cancelled by {actor}: {reason}"),
    )
    .await?;
    crate::xorosoft_import::mark_import_failed(store, &operation).await?;
    Ok(operation)
}

/// Puts a failed (or paused) operation back in progress from its checkpoint; the caller runs
/// or enqueues its next step ([`Checkpoint::next_step`]).
pub async fn resume_operation(
    store: &Store,
    id: shopsync_domain::OperationId,
    actor: &Actor,
) -> Result<SyncOperation, EngineError> {
    let mut operation = load_operation(store, id).await?;
    let now = Utc::now();
    let stalled = operation.stalled(now);
    if !stalled
        && !matches!(
            operation.status,
            OperationStatus::Failed | OperationStatus::Paused
        )
    {
        let running = if operation.status == OperationStatus::InProgress {
            match operation.lease_expires_at {
                Some(lease) => format!(" and its worker holds it until {}", lease.to_rfc3339()),
                None => String::new(),
            }
        } else {
            String::new()
        };
        return Err(invalid(format!(
            "operation {id} is {}{running}; only a failed or paused operation, or one in progress whose worker is gone (its lease ran out), resumes",
            shopsync_domain::status::status_name(operation.status)
        )));
    }
    if Checkpoint::of(&operation).is_none()
        && crate::resolve::ResolveCheckpoint::of(&operation).is_none()
        && operation.xorosoft_log_id.is_none()
        && operation.rollback_id.is_none()
    {
        return Err(invalid(format!(
            "operation {id} has no checkpoint to resume from; start a new sync instead"
        )));
    }
    let before = operation.clone();
    if stalled {
        // Still in progress: this worker takes it over.
        operation.status_reason = Some(format!("resumed by {actor} after its worker was gone"));
        operation.updated_at = now;
    } else {
        operation.move_to(
            OperationStatus::InProgress,
            Some(format!("resumed by {actor}")),
            now,
        )?;
    }
    operation.lease_expires_at = Some(now + lease());
    save(store, &operation, &before).await?;
    crate::xorosoft_import::reopen_import(store, &operation).await?;
    Ok(operation)
}

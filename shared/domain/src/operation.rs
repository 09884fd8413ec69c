//! Sync operations (`sync_operations`): what ran, in which direction, how it went.

use crate::ids::{Actor, OperationId};
use crate::status::StatusMachine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The kind of work an operation does (the spec's `operation_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationType {
    /// Every product.
    FullSync,
    /// Products changed since a cursor.
    IncrementalSync,
    /// Find what drifted or went missing between the sides.
    Reconcile,
    /// Changes arriving by webhook.
    Realtime,
    /// Stock figures (Xorosoft).
    StockUpdate,
    /// Prices.
    PriceUpdate,
    /// A person's edit of a local product.
    LocalEdit,
    /// Many conflicts settled at once by a person (a bulk resolve too large to answer at once).
    ConflictResolution,
    /// A person restoring a product's fields to one of its versions.
    Restore,
    /// Undoing another operation's changes (see `sync_rollbacks`).
    Rollback,
}

/// Which way data flows (the spec's `sync_direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncDirection {
    /// Shopify to the local catalog.
    Down,
    /// The local catalog to Shopify.
    Up,
    /// Both ways, merged field by field.
    Bidirectional,
}

/// The lifecycle of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    /// Created, not started.
    Pending,
    /// Running.
    InProgress,
    /// Staged and held for a person's approval.
    AwaitingApproval,
    /// Stopped by an operator; may be resumed.
    Paused,
    /// Finished.
    Completed,
    /// Stopped by an error; may be resumed.
    Failed,
    /// Stopped for good.
    Cancelled,
    /// Undone entirely by a rollback.
    RolledBack,
    /// Undone in part.
    PartiallyRolledBack,
}

impl StatusMachine for OperationStatus {
    const MACHINE: &'static str = "sync operation";

    fn allows(self, to: Self) -> bool {
        use OperationStatus::*;
        matches!(
            (self, to),
            (Pending, InProgress | AwaitingApproval | Cancelled | Failed)
                | (
                    InProgress,
                    AwaitingApproval | Paused | Completed | Failed | Cancelled
                )
                | (AwaitingApproval, InProgress | Cancelled)
                | (Paused, InProgress | Cancelled)
                | (Failed, InProgress | Cancelled)
                | (Completed | Failed, RolledBack | PartiallyRolledBack)
                | (PartiallyRolledBack, RolledBack | PartiallyRolledBack)
        )
    }

    fn is_terminal(self) -> bool {
        matches!(
            self,
            OperationStatus::Cancelled | OperationStatus::RolledBack
        )
    }
}

/// Counts of items an operation processed (the spec's `statistics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OperationStatistics {
    /// Items looked at.
    pub processed: u64,
    /// Created.
    pub created: u64,
    /// Updated.
    pub updated: u64,
    /// Deleted (staged deletes that were applied).
    pub deleted: u64,
    /// Already in step.
    pub unchanged: u64,
    /// Skipped (locked, stale, echo).
    pub skipped: u64,
    /// Failed.
    pub failed: u64,
    /// Conflicts found.
    pub conflicts: u64,
    /// Conflicts the policy settled.
    pub auto_resolved: u64,
    /// Categories (Shopify collections) created or changed.
    #[serde(default)]
    pub categories_changed: u64,
}

impl OperationStatistics {
    /// Adds another step's counts to these.
    pub fn absorb(&mut self, other: &OperationStatistics) {
        self.processed += other.processed;
        self.created += other.created;
        self.updated += other.updated;
        self.deleted += other.deleted;
        self.unchanged += other.unchanged;
        self.skipped += other.skipped;
        self.failed += other.failed;
        self.conflicts += other.conflicts;
        self.auto_resolved += other.auto_resolved;
        self.categories_changed += other.categories_changed;
    }
}

/// A sync operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncOperation {
    /// The spec's `operation_uuid`.
    pub operation_uuid: OperationId,
    /// Human name, e.g. "Daily Product Sync".
    pub name: String,
    /// Type.
    pub operation_type: OperationType,
    /// Direction.
    pub sync_direction: SyncDirection,
    /// Status.
    pub status: OperationStatus,
    /// Counts.
    pub statistics: OperationStatistics,
    /// Whether a rollback can undo it (false once history it relies on is gone).
    pub is_rollbackable: bool,
    /// Preview only: plans and stages, applies nothing.
    pub dry_run: bool,
    /// Who started it.
    pub created_by: Actor,
    /// Why it failed, was cancelled or is held.
    pub status_reason: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Started running.
    pub started_at: Option<DateTime<Utc>>,
    /// Reached a final status.
    pub completed_at: Option<DateTime<Utc>>,
    /// Last change of this record.
    pub updated_at: DateTime<Utc>,
    /// Where a long operation stands between its steps (the engine's resume point: what was
    /// read, the plan so far); absent once it has nothing left to resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<serde_json::Value>,
    /// Products in the catalog as a down-sync left it (a full read counts Shopify's; an
    /// incremental one carries the last count forward with what it created): what the next
    /// incremental sync's guard rails judge its share of changes against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_size: Option<u64>,
    /// Until when the worker running it holds it: renewed at every step, cleared when it
    /// stops running. Past this while still in progress, its worker is gone (see
    /// [`SyncOperation::stalled`]) and it can be resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The Xorosoft import this operation stages and applies (an import is not a Shopify
    /// read: it never counts as the last down-sync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xorosoft_log_id: Option<crate::ids::XorosoftLogId>,
    /// The rollback this operation carries out (its `sync_rollbacks` record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_id: Option<crate::ids::RollbackId>,
}

impl SyncOperation {
    /// A new pending operation.
    pub fn new(
        name: &str,
        operation_type: OperationType,
        sync_direction: SyncDirection,
        created_by: Actor,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            operation_uuid: OperationId::generate(),
            name: name.to_owned(),
            operation_type,
            sync_direction,
            status: OperationStatus::Pending,
            statistics: OperationStatistics::default(),
            is_rollbackable: false,
            dry_run: false,
            created_by,
            status_reason: None,
            created_at: now,
            started_at: None,
            completed_at: None,
            updated_at: now,
            checkpoint: None,
            catalog_size: None,
            lease_expires_at: None,
            xorosoft_log_id: None,
            rollback_id: None,
        }
    }

    /// In progress with its lease run out at `now`: the worker that ran it is gone, and the
    /// operation waits to be resumed (by the redelivery of its job, or by a person).
    pub fn stalled(&self, now: DateTime<Utc>) -> bool {
        self.status == OperationStatus::InProgress
            && self.lease_expires_at.is_some_and(|lease| lease <= now)
    }

    /// Moves to `to`, stamping start and end times.
    pub fn move_to(
        &mut self,
        to: OperationStatus,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), crate::status::IllegalTransition> {
        self.status.transition(to)?;
        if to == OperationStatus::InProgress && self.started_at.is_none() {
            self.started_at = Some(now);
        }
        if matches!(
            to,
            OperationStatus::Completed | OperationStatus::Failed | OperationStatus::Cancelled
        ) {
            self.completed_at = Some(now);
        }
        if to != OperationStatus::InProgress {
            // Nobody runs it any more.
            self.lease_expires_at = None;
        }
        self.status_reason = reason;
        self.updated_at = now;
        self.is_rollbackable = self.can_roll_back();
        Ok(())
    }

    /// Whether a rollback can undo it now: it applied something (it is no preview), and it
    /// is completed, failed (for what it applied), rolled back only in part, or a realtime day
    /// still recording (rolled back product by product).
    pub fn can_roll_back(&self) -> bool {
        let applied = self.statistics.created
            + self.statistics.updated
            + self.statistics.deleted
            + self.statistics.categories_changed;
        let open_day = self.operation_type == OperationType::Realtime
            && self.status == OperationStatus::InProgress;
        !self.dry_run
            && applied > 0
            && (open_day
                || matches!(
                    self.status,
                    OperationStatus::Completed
                        | OperationStatus::Failed
                        | OperationStatus::PartiallyRolledBack
                ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_operations_do_not_restart() {
        let now = Utc::now();
        let mut op = SyncOperation::new(
            "Daily",
            OperationType::FullSync,
            SyncDirection::Down,
            Actor::system("test"),
            now,
        );
        op.move_to(OperationStatus::InProgress, None, now).unwrap();
        op.move_to(OperationStatus::Completed, None, now).unwrap();
        let err = op
            .move_to(OperationStatus::InProgress, None, now)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "illegal sync operation transition: completed -> in_progress"
        );
        assert_eq!(op.status, OperationStatus::Completed);
        assert_eq!(op.completed_at, Some(now));
        op.move_to(OperationStatus::RolledBack, None, now).unwrap();
        assert!(op.status.is_terminal());
    }

    #[test]
    fn statistics_add_up() {
        let mut a = OperationStatistics {
            processed: 2,
            created: 1,
            ..Default::default()
        };
        a.absorb(&OperationStatistics {
            processed: 3,
            failed: 1,
            ..Default::default()
        });
        assert_eq!((a.processed, a.created, a.failed), (5, 1, 1));
    }
}

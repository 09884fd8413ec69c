//! Rollbacks (`sync_rollbacks`): undoing an operation as new versions, never rewriting history.

use crate::ids::{Actor, OperationId, ProductId, RollbackId};
use crate::product::Product;
use crate::status::StatusMachine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The spec's `rollback_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackType {
    /// Every product the operation changed.
    Full,
    /// The products the operation changed, except those changed since.
    Partial,
    /// Only the products (and fields) chosen.
    Selective,
}

/// Where a rollback stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackStatus {
    /// Requested.
    Pending,
    /// Running.
    InProgress,
    /// Done for every product.
    Completed,
    /// Done, with products skipped (changed since, locked) and reported.
    CompletedWithSkips,
    /// Stopped by an error.
    Failed,
}

impl StatusMachine for RollbackStatus {
    const MACHINE: &'static str = "rollback";

    fn allows(self, to: Self) -> bool {
        use RollbackStatus::*;
        matches!(
            (self, to),
            (Pending, InProgress | Failed)
                | (InProgress, Completed | CompletedWithSkips | Failed)
                | (Failed, InProgress)
        )
    }

    fn is_terminal(self) -> bool {
        matches!(
            self,
            RollbackStatus::Completed | RollbackStatus::CompletedWithSkips
        )
    }
}

/// The state of products before an operation changed them (the spec's `backup_data`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BackupData {
    /// Each product as it was, with the version it had.
    pub products: Vec<Product>,
    /// Products the operation created (a rollback stages their deletion).
    pub created: Vec<ProductId>,
}

/// A rollback of a sync operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRollback {
    /// Id.
    pub id: RollbackId,
    /// The operation being rolled back.
    pub original_operation_id: OperationId,
    /// Type.
    pub rollback_type: RollbackType,
    /// For a selective rollback, the products chosen.
    pub selected_products: Vec<ProductId>,
    /// The state before the original operation.
    pub backup_data: BackupData,
    /// Status.
    pub status: RollbackStatus,
    /// Products not restored, with the reason.
    pub skipped: Vec<(ProductId, String)>,
    /// Who asked (needs elevated permissions).
    pub requested_by: Actor,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
}

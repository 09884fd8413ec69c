//! Rollbacks (`sync_rollbacks`): undoing an operation as new versions, never rewriting history.

use crate::ids::{Actor, CategoryId, OperationId, ProductId, RollbackId};
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

/// Where a product's state before an operation is read: the versions the operation wrote. A
/// product's history is immutable and numbered without gaps, so the version just before the
/// first one the operation made is exactly what it replaced; no copy is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRef {
    /// The product.
    pub product_id: ProductId,
    /// The version it had before the operation (`None`: the operation created it, or, for a
    /// push, Shopify's state before is not known).
    pub before_version: Option<u64>,
    /// The last version the operation made.
    pub after_version: u64,
    /// The operation removed the product (its last version records the removal).
    #[serde(default)]
    pub deleted: bool,
    /// The operation created the product.
    #[serde(default)]
    pub created: bool,
    /// The operation pushed the product to Shopify (an up-sync): `before_version` is what
    /// Shopify held until the push, `after_version` the version pushed.
    #[serde(default)]
    pub pushed: bool,
}

/// Where a category's state before an operation is read: the category versions it wrote
/// (numbered without gaps, like a product's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryRef {
    /// The category.
    pub category_id: CategoryId,
    /// The version it had before the operation (`None`: the operation created it).
    pub before_version: Option<u64>,
    /// The last version the operation made.
    pub after_version: u64,
}

/// The state of products before an operation changed them (the spec's `backup_data`), kept
/// as references to their versions: the first [`LISTED`] products, and how many there are.
/// Each of the rollback's staged rows carries its product's reference as well.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BackupData {
    /// The first products the operation changed, with the versions before and after it.
    pub products: Vec<BackupRef>,
    /// How many products the operation changed.
    #[serde(default)]
    pub products_total: u64,
    /// The categories (collections) the operation changed, with their versions before and
    /// after it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<CategoryRef>,
}

/// The most products a rollback record lists in each of its lists (its rows hold them all).
pub const LISTED: usize = 1000;

/// What a rollback did to one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredProduct {
    /// The product.
    pub product_id: ProductId,
    /// The version the rollback made (for a dry run, the version it would have replaced).
    pub version: u64,
    /// What happened in Shopify: `pushed`, `archived`, `recreated`, `not_pushed: <why>`, or
    /// for a dry run `would_push`, `would_archive` or `would_recreate`.
    pub shopify: String,
    /// Restored past a change made since the operation (`force`): that change, named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced: Option<String>,
}

/// What a full rollback did to one category (a Shopify collection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredCategory {
    /// The category.
    pub category_id: CategoryId,
    /// Its title after the rollback.
    pub title: String,
    /// The version the rollback made (for a dry run, the version it would have replaced).
    pub version: u64,
    /// What happened in Shopify: `pushed`, `in_step` (Shopify had it so already),
    /// `not_pushed: <why>`, or for a dry run `would_push`.
    pub shopify: String,
    /// Restored past a change made since the operation (`force`): that change, named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced: Option<String>,
}

/// What a person asks a rollback to do.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RollbackRequest {
    /// Full, partial or selective.
    pub rollback_type: Option<RollbackType>,
    /// The products (partial: required; selective: optional, all by default).
    pub products: Vec<ProductId>,
    /// The fields (selective: required).
    pub fields: Vec<String>,
    /// Restore products changed since the operation too (recorded as forced).
    pub force: bool,
    /// Report what would be restored and skipped; change nothing.
    pub dry_run: bool,
}

impl RollbackRequest {
    /// The rollback type, checked against what it names: a partial rollback names products,
    /// a selective one fields, a full one neither.
    pub fn checked_type(&self) -> Result<RollbackType, String> {
        let kind = self.rollback_type.unwrap_or(RollbackType::Full);
        match kind {
            RollbackType::Full if !self.products.is_empty() || !self.fields.is_empty() => Err(
                "a full rollback restores every product the operation changed, every field: name products with type partial, fields with type selective".to_owned(),
            ),
            RollbackType::Partial if self.products.is_empty() => {
                Err("a partial rollback names its products".to_owned())
            }
            RollbackType::Partial if !self.fields.is_empty() => Err(
                "a partial rollback restores whole products: name fields with type selective"
                    .to_owned(),
            ),
            RollbackType::Selective if self.fields.is_empty() => {
                Err("a selective rollback names its fields".to_owned())
            }
            kind => Ok(kind),
        }
    }
}

/// A rollback of a sync operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRollback {
    /// Id.
    pub id: RollbackId,
    /// The operation being rolled back.
    pub original_operation_id: OperationId,
    /// The rollback's own operation (its staged rows, rails and performance log).
    #[serde(default)]
    pub operation_id: Option<OperationId>,
    /// Type.
    pub rollback_type: RollbackType,
    /// The products chosen (partial; selective when it names any).
    pub selected_products: Vec<ProductId>,
    /// The fields chosen (selective).
    #[serde(default)]
    pub selected_fields: Vec<String>,
    /// Products changed since the operation are restored too.
    #[serde(default)]
    pub force: bool,
    /// Reported only: nothing changes.
    #[serde(default)]
    pub dry_run: bool,
    /// The state before the original operation.
    pub backup_data: BackupData,
    /// Status.
    pub status: RollbackStatus,
    /// Why it failed or waits, when it does.
    #[serde(default)]
    pub status_reason: Option<String>,
    /// Products restored (the first [`LISTED`]).
    #[serde(default)]
    pub restored: Vec<RestoredProduct>,
    /// How many were restored.
    #[serde(default)]
    pub restored_total: u64,
    /// Products not restored, with the reason (the first [`LISTED`]).
    pub skipped: Vec<(ProductId, String)>,
    /// How many were skipped.
    #[serde(default)]
    pub skipped_total: u64,
    /// Categories (collections) restored; a full rollback restores the categories the
    /// operation changed, a partial or selective one only the products it names.
    #[serde(default)]
    pub categories_restored: Vec<RestoredCategory>,
    /// Categories not restored, with the reason.
    #[serde(default)]
    pub categories_skipped: Vec<(CategoryId, String)>,
    /// Who asked (needs elevated permissions).
    pub requested_by: Actor,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
}

impl SyncRollback {
    /// Records a product restored (listed while the list has room).
    pub fn restored(&mut self, product: RestoredProduct) {
        self.restored_total += 1;
        if self.restored.len() < LISTED {
            self.restored.push(product);
        }
    }

    /// Records a product skipped, and why (listed while the list has room).
    pub fn skip(&mut self, product: ProductId, why: String) {
        self.skipped_total += 1;
        if self.skipped.len() < LISTED {
            self.skipped.push((product, why));
        }
    }
}

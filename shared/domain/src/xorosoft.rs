//! Xorosoft, the ERP: its stock and cost figures (`xorosoft_products`) and the log of its
//! imports and exports (`xorosoft_sync_logs`).

use crate::ids::{Actor, ProductId, XorosoftLogId};
use crate::money::{Money, Quantity};
use crate::product::Sku;
use crate::status::StatusMachine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Stock and cost of one Xorosoft item at one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XorosoftProduct {
    /// Xorosoft's item id.
    pub xorosoft_id: String,
    /// The item's SKU (how it is matched to a variant).
    pub sku: Sku,
    /// The warehouse (mapped to a Shopify location by configuration).
    pub warehouse_code: String,
    /// Physically on hand.
    pub stock_on_hand: Quantity,
    /// Available for sale (on hand less allocations).
    pub stock_available: Quantity,
    /// Current unit cost.
    pub cost_price: Option<Money>,
    /// The matched local product, once matched.
    pub product_id: Option<ProductId>,
    /// The import that last wrote this record.
    pub last_log_id: Option<XorosoftLogId>,
    /// When Xorosoft says the figures were taken.
    pub source_timestamp: Option<DateTime<Utc>>,
    /// When shopsync stored them.
    pub updated_at: DateTime<Utc>,
}

/// The spec's `sync_type` of a Xorosoft sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XorosoftSyncType {
    /// Stock figures.
    StockUpdate,
    /// Costs.
    PriceUpdate,
    /// Everything.
    FullSync,
}

/// Where a Xorosoft sync stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XorosoftSyncStatus {
    /// Received.
    Pending,
    /// Reading and applying.
    InProgress,
    /// Every record applied.
    Completed,
    /// Finished with some records failed (see statistics and errors).
    CompletedWithErrors,
    /// Stopped.
    Failed,
}

impl StatusMachine for XorosoftSyncStatus {
    const MACHINE: &'static str = "xorosoft sync";

    fn allows(self, to: Self) -> bool {
        use XorosoftSyncStatus::*;
        matches!(
            (self, to),
            (Pending, InProgress | Failed)
                | (InProgress, Completed | CompletedWithErrors | Failed)
                | (Failed, InProgress)
        )
    }

    fn is_terminal(self) -> bool {
        matches!(
            self,
            XorosoftSyncStatus::Completed | XorosoftSyncStatus::CompletedWithErrors
        )
    }
}

/// Counts of a Xorosoft sync (the spec's `statistics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct XorosoftStatistics {
    /// Records read.
    pub records_processed: u64,
    /// Records that changed something.
    pub records_updated: u64,
    /// Records that failed (bad row, unknown SKU).
    pub records_failed: u64,
    /// Records already in step.
    pub records_unchanged: u64,
}

/// A Xorosoft sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XorosoftSyncLog {
    /// Id.
    pub id: XorosoftLogId,
    /// Type.
    pub sync_type: XorosoftSyncType,
    /// Status.
    pub status: XorosoftSyncStatus,
    /// Counts.
    pub statistics: XorosoftStatistics,
    /// The file imported (bucket/key), if any.
    pub import_file: Option<String>,
    /// The file exported, if any.
    pub export_file: Option<String>,
    /// The first errors, for the operator (bounded).
    pub errors: Vec<String>,
    /// Who or what started it.
    pub started_by: Actor,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Ended.
    pub completed_at: Option<DateTime<Utc>>,
}

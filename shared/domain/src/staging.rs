//! Staged changes (`products_staging`): every change waits here before it touches products.

use crate::fields::ChangeData;
use crate::ids::{Actor, OperationId, ProductId, StagingId};
use crate::product::{ProductContent, Sku};
use crate::status::StatusMachine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The spec's `change_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeType {
    /// A new product.
    Create,
    /// Fields of an existing product.
    Update,
    /// Removal of a product.
    Delete,
}

/// Where a staged row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StagingStatus {
    /// Waiting (for the apply step or for approval).
    Pending,
    /// Approved by a person; waiting to be applied.
    Approved,
    /// Refused; never applied.
    Rejected,
    /// Applied to the product.
    Applied,
    /// A newer staged change for the same product replaced it.
    Superseded,
    /// Applying failed (see `error`).
    Failed,
}

impl StatusMachine for StagingStatus {
    const MACHINE: &'static str = "staged change";

    fn allows(self, to: Self) -> bool {
        use StagingStatus::*;
        matches!(
            (self, to),
            (Pending, Approved | Rejected | Applied | Superseded | Failed)
                | (Approved, Applied | Failed | Superseded)
                | (Failed, Pending | Rejected)
        )
    }

    fn is_terminal(self) -> bool {
        matches!(
            self,
            StagingStatus::Rejected | StagingStatus::Applied | StagingStatus::Superseded
        )
    }
}

/// A staged product change (a `products_staging` row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductsStaging {
    /// Row id.
    pub id: StagingId,
    /// The product changed (for a create, the id it will get).
    pub source_product_id: ProductId,
    /// The product's first SKU, for review screens.
    pub sku: Option<Sku>,
    /// The product's title after the change, for review screens.
    pub name: String,
    /// Create, update or delete.
    pub change_type: ChangeType,
    /// `{field: {old, new}}`.
    pub change_data: ChangeData,
    /// The product version the change was computed against (0 for a create).
    pub base_version: u64,
    /// The full content after the change (absent for a delete).
    pub proposed: Option<ProductContent>,
    /// Whether any field conflicts.
    pub has_conflicts: bool,
    /// The operation it belongs to.
    pub sync_operation_id: OperationId,
    /// Status.
    pub status: StagingStatus,
    /// Who staged it.
    pub staged_by: Actor,
    /// When.
    pub staged_at: DateTime<Utc>,
    /// Who approved or rejected it.
    pub reviewed_by: Option<Actor>,
    /// When.
    pub reviewed_at: Option<DateTime<Utc>>,
    /// When it was applied.
    pub applied_at: Option<DateTime<Utc>>,
    /// Why applying failed.
    pub error: Option<String>,
    /// The Shopify copy the change came from, when it came from Shopify.
    #[serde(default)]
    pub shopify: Option<ShopifySource>,
    /// The proposed content is a three-way merge that still holds local changes Shopify
    /// lacks: applying it leaves the product queued for the next push.
    #[serde(default)]
    pub merged: bool,
}

/// The Shopify copy a staged change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopifySource {
    /// The Shopify product.
    pub product_id: crate::ids::ShopifyProductId,
    /// Shopify's `updatedAt` of that copy.
    pub updated_at: DateTime<Utc>,
}

//! Version history (`product_versions`, `category_versions`): one immutable snapshot per version.

use crate::category::CategoryContent;
use crate::fields::FieldPath;
use crate::ids::{Actor, CategoryId, OperationId, ProductId};
use crate::product::{Product, ProductContent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a change came from (the spec's `change_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeSource {
    /// An edit in the merchant's catalog.
    Local,
    /// Shopify (webhook or pull).
    Shopify,
    /// A Xorosoft import.
    Xorosoft,
    /// A person settling a conflict.
    ConflictResolution,
    /// A rollback restoring an earlier state.
    Rollback,
    /// The migration that introduced versioning.
    Migration,
}

/// One version of a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductVersion {
    /// The product.
    pub product_id: ProductId,
    /// Sequential, from 1, without gaps.
    pub version_number: u64,
    /// The complete content at this version (the spec's `product_data`).
    pub product_data: ProductContent,
    /// Fields that changed from the previous version. Version 1 changes every field of
    /// `product_data`; it is made with this left empty (implied) and stored so, and
    /// [`ProductVersion::spell_out`] lists them when it is read back.
    pub changed_fields: Vec<FieldPath>,
    /// Where the change came from.
    pub change_source: ChangeSource,
    /// Who made it.
    pub changed_by: Actor,
    /// The operation that made it, if any.
    pub sync_operation_id: Option<OperationId>,
    /// When.
    #[serde(serialize_with = "crate::time::write_utc")]
    pub created_at: DateTime<Utc>,
}

/// What a new version records beside its content: a commit writes it with the product it
/// versions, whose content is the snapshot's (so the content is never copied to be stored
/// twice, nor compared to find it the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionStamp {
    /// Fields that changed from the previous version (empty for version 1: implied).
    pub changed_fields: Vec<FieldPath>,
    /// Where the change came from.
    pub change_source: ChangeSource,
    /// Who made it.
    pub changed_by: Actor,
    /// The operation that made it, if any.
    pub sync_operation_id: Option<OperationId>,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl VersionStamp {
    /// The stamp of a version changing `changed_fields`.
    pub fn new(
        changed_fields: Vec<FieldPath>,
        change_source: ChangeSource,
        changed_by: Actor,
        sync_operation_id: Option<OperationId>,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            changed_fields,
            change_source,
            changed_by,
            sync_operation_id,
            created_at,
        }
    }

    /// The stamp of `product`'s first version: every field counts as changed, left implied
    /// (see [`ProductVersion::changed_fields`]); made when the product was.
    pub fn first(
        product: &Product,
        change_source: ChangeSource,
        changed_by: Actor,
        sync_operation_id: Option<OperationId>,
    ) -> Self {
        Self::new(
            Vec::new(),
            change_source,
            changed_by,
            sync_operation_id,
            product.created_at,
        )
    }
}

impl ProductVersion {
    /// The snapshot of `product` at its current version, as `stamp` records it.
    pub fn of(product: &Product, stamp: VersionStamp) -> Self {
        let VersionStamp {
            changed_fields,
            change_source,
            changed_by,
            sync_operation_id,
            created_at,
        } = stamp;
        Self {
            product_id: product.id,
            version_number: product.version,
            product_data: product.content.clone(),
            changed_fields,
            change_source,
            changed_by,
            sync_operation_id,
            created_at,
        }
    }

    /// Whether `changed_fields` is left implied (version 1: every field).
    pub fn changes_implied(&self) -> bool {
        self.version_number == 1 && self.changed_fields.is_empty()
    }

    /// Lists implied `changed_fields` (see the field); other versions stay as they are.
    pub fn spell_out(&mut self) {
        if self.changes_implied() {
            self.changed_fields = self.product_data.to_fields().into_keys().collect();
        }
    }
}

impl CategoryVersion {
    /// The snapshot of `category` at its current version, as `stamp` records it.
    pub fn of(category: &crate::category::Category, stamp: VersionStamp) -> Self {
        Self {
            category_id: category.id,
            version_number: category.version,
            category_data: category.content.clone(),
            changed_fields: stamp.changed_fields,
            change_source: stamp.change_source,
            changed_by: stamp.changed_by,
            sync_operation_id: stamp.sync_operation_id,
            created_at: stamp.created_at,
        }
    }
}

/// One version of a category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryVersion {
    /// The category.
    pub category_id: CategoryId,
    /// Sequential, from 1, without gaps.
    pub version_number: u64,
    /// The complete content at this version.
    pub category_data: CategoryContent,
    /// Fields that changed from the previous version.
    pub changed_fields: Vec<FieldPath>,
    /// Where the change came from.
    pub change_source: ChangeSource,
    /// Who made it.
    pub changed_by: Actor,
    /// The operation that made it, if any.
    pub sync_operation_id: Option<OperationId>,
    /// When.
    #[serde(serialize_with = "crate::time::write_utc")]
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample_content;

    #[test]
    fn the_first_version_implies_every_field_and_spells_them_out() {
        let product = Product::new(ProductId::generate(), sample_content(2), Utc::now());
        let stamp =
            VersionStamp::first(&product, ChangeSource::Shopify, Actor::system("test"), None);
        let mut first = ProductVersion::of(&product, stamp);
        assert!(first.changes_implied());
        first.spell_out();
        let every: Vec<FieldPath> = product.content.to_fields().into_keys().collect();
        assert_eq!(first.changed_fields, every);
        let mut second = first.clone();
        second.version_number = 2;
        second.changed_fields.clear();
        second.spell_out();
        assert!(
            second.changed_fields.is_empty(),
            "a later version lists its own changes"
        );
    }
}

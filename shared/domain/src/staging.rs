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
    /// `{field: {old, new}}`. A create from Shopify changes every field of `proposed`: it is
    /// made with this left empty (implied) and stored so, and [`ProductsStaging::spell_out`]
    /// lists every field as new when the row is read back (a bulk import stages one per
    /// product, and spelling each out there cost a third of the import's time).
    pub change_data: ChangeData,
    /// The product version the change was computed against (0 for a create).
    pub base_version: u64,
    /// The full content after the change (absent for a delete). An applied create stores
    /// none: it is its product's first version's snapshot (see
    /// [`ProductsStaging::content_implied`]), read back in its place.
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
    #[serde(serialize_with = "crate::time::write_utc")]
    pub staged_at: DateTime<Utc>,
    /// Who approved or rejected it.
    pub reviewed_by: Option<Actor>,
    /// When.
    #[serde(serialize_with = "crate::time::write_utc_opt")]
    pub reviewed_at: Option<DateTime<Utc>>,
    /// When it was applied.
    #[serde(serialize_with = "crate::time::write_utc_opt")]
    pub applied_at: Option<DateTime<Utc>>,
    /// Why applying failed, or what of the change was not applied (an applied row).
    pub error: Option<String>,
    /// The Shopify copy the change came from, when it came from Shopify.
    #[serde(default)]
    pub shopify: Option<ShopifySource>,
    /// The proposed content is a three-way merge that still holds local changes Shopify
    /// lacks: applying it leaves the product queued for the next push.
    #[serde(default)]
    pub merged: bool,
    /// Where a change that did not come from Shopify came from (a Xorosoft import, a local
    /// edit). Such a row is a patch: applying it sets the fields of `change_data` to their new
    /// values on the product as it is then, versions the change under this source, and
    /// leaves the product queued for the next push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<crate::version::ChangeSource>,
    /// What each source gave the fields such a row sets, by field and source
    /// (`variants/{key}/inventory/{location}` by StoreCode: a location several StoreCodes
    /// map to holds their sum), so the rows of one import that touch one product, read apart,
    /// build one row however often each is staged.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub contributions:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, serde_json::Value>>,
    /// A rollback's row: the versions of the operation it takes back (before and after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolls_back: Option<crate::rollback::BackupRef>,
    /// An up-sync's row: the version both sides last agreed on (what Shopify held before the
    /// push; absent for a product new to Shopify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreed_version: Option<u64>,
}

impl ProductsStaging {
    /// A pending update of `product` as it stands (its content proposed, nothing listed as
    /// changed yet), staged by `actor` in `operation`: callers set what they change.
    pub fn pending(
        id: StagingId,
        product: &crate::product::Product,
        operation: OperationId,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            source_product_id: product.id,
            sku: product.content.variants.iter().find_map(|v| v.sku.clone()),
            name: product.content.title.clone(),
            change_type: ChangeType::Update,
            change_data: ChangeData::new(),
            base_version: product.version,
            proposed: Some(product.content.clone()),
            has_conflicts: false,
            sync_operation_id: operation,
            status: StagingStatus::Pending,
            staged_by: actor.clone(),
            staged_at: now,
            reviewed_by: None,
            reviewed_at: None,
            applied_at: None,
            error: None,
            shopify: None,
            merged: false,
            origin: None,
            contributions: Default::default(),
            rolls_back: None,
            agreed_version: None,
        }
    }

    /// Whether `change_data` is left implied (a create: every field of `proposed` new).
    pub fn changes_implied(&self) -> bool {
        self.change_type == ChangeType::Create
            && self.change_data.is_empty()
            && self.proposed.is_some()
    }

    /// The version a create makes: the one whose snapshot an applied create's `proposed`
    /// equals.
    pub const CREATED_VERSION: u64 = 1;

    /// Whether `proposed` is left implied: a create stored with its product's first version
    /// holds no copy of the content, which is that version's snapshot (a bulk import stores
    /// each product's content in the product and its first version; a third copy here was a
    /// fifth of the import's writes). The store reads the snapshot back in its place.
    pub fn content_implied(&self) -> bool {
        self.change_type == ChangeType::Create && self.proposed.is_none()
    }

    /// Lists implied `change_data` (see the field); other rows stay as they are.
    pub fn spell_out(&mut self) {
        if !self.changes_implied() {
            return;
        }
        if let Some(proposed) = &self.proposed {
            self.change_data = crate::fields::created(proposed.to_fields());
        }
    }
}

/// The Shopify copy a staged change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopifySource {
    /// The Shopify product.
    pub product_id: crate::ids::ShopifyProductId,
    /// Shopify's `updatedAt` of that copy.
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{diff, Fields};
    use crate::testing::{sample_content, sample_row};

    fn create_row(change_data: ChangeData) -> ProductsStaging {
        let mut row = sample_row(
            OperationId::generate(),
            ProductId::generate(),
            Actor::system("test"),
            Utc::now(),
        );
        row.change_type = ChangeType::Create;
        row.change_data = change_data;
        row.base_version = 0;
        row.proposed = Some(sample_content(2));
        row
    }

    #[test]
    fn an_implied_create_spells_out_every_field_as_new() {
        let mut row = create_row(ChangeData::new());
        assert!(row.changes_implied());
        row.spell_out();
        let fields = sample_content(2).to_fields();
        assert_eq!(row.change_data, diff(&Fields::new(), &fields));
        assert!(row.change_data.contains_key("variants/v0002/price"));
        assert!(!row.changes_implied());
    }

    #[test]
    fn listed_changes_and_other_rows_are_kept_as_they_are() {
        let title = diff(
            &Fields::new(),
            &sample_content(1)
                .to_fields()
                .into_iter()
                .filter(|(path, _)| path.as_str() == "title")
                .collect(),
        );
        let mut row = create_row(title.clone());
        row.spell_out();
        assert_eq!(row.change_data, title, "a listed create is not widened");
        let mut update = create_row(ChangeData::new());
        update.change_type = ChangeType::Update;
        update.spell_out();
        assert!(
            update.change_data.is_empty(),
            "only a create implies its changes"
        );
    }
}

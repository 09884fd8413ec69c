//! How each entity is stored: its table, key and the scalar attributes its indexes and
//! conditions need. The entity itself is the item's JSON document.

use crate::item::{Attrs, Key, Scalar};
use crate::schema::Table;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shopsync_domain::status::status_name;
use shopsync_domain::{
    Category, CategoryVersion, ComplianceRequest, OperationId, Product, ProductContent, ProductId,
    ProductVersion, ProductsStaging, SyncConflict, SyncOperation, SyncPerformanceLog, SyncRollback,
    XorosoftProduct, XorosoftSyncLog,
};

/// An entity stored as one item.
pub trait Record: Serialize + DeserializeOwned + Send + Sync + std::fmt::Debug {
    /// Its table.
    const TABLE: Table;
    /// Its primary key.
    fn key(&self) -> Key;
    /// Every scalar attribute: the keys, index keys and condition fields.
    fn attrs(&self) -> Attrs;
    /// Completes a record just read: lists what its stored form leaves implied.
    fn loaded(&mut self) {}
    /// The product version whose snapshot is this record's content, when its stored form
    /// leaves the content implied (an applied create's staged row); the repository reads
    /// that snapshot back and hands it to [`Record::fill_content`] before [`Record::loaded`].
    fn implied_content(&self) -> Option<(ProductId, u64)> {
        None
    }
    /// Takes the content [`Record::implied_content`] named.
    fn fill_content(&mut self, _snapshot: ProductContent) {}
}

/// Epoch milliseconds, the form of every time in a sort key.
pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A string attribute.
fn string_attr(value: impl ToString) -> Scalar {
    Scalar::S(value.to_string())
}

/// A number attribute (saturating at `i64::MAX`).
fn number_attr(value: impl TryInto<i64>) -> Scalar {
    Scalar::N(value.try_into().unwrap_or(i64::MAX))
}

fn attrs<const N: usize>(pairs: [(&str, Option<Scalar>); N]) -> Attrs {
    pairs
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect()
}

/// Condition attributes of products.
pub mod product_attrs {
    /// Current version.
    pub const VERSION: &str = "version";
    /// Lock holder (present while `sync_locked`).
    pub const LOCK_OWNER: &str = "lock_owner";
    /// Lock lease end, epoch milliseconds.
    pub const LOCK_EXPIRES_AT: &str = "lock_expires_at";
}

impl Record for Product {
    const TABLE: Table = Table::Products;
    fn key(&self) -> Key {
        Key::pk(self.id.to_string())
    }
    fn attrs(&self) -> Attrs {
        let locked = self.sync_locked && self.sync_locked_by.is_some();
        attrs([
            ("id", Some(string_attr(self.id))),
            (product_attrs::VERSION, Some(number_attr(self.version))),
            (
                "last_sync_version",
                Some(number_attr(self.last_sync_version)),
            ),
            ("shopify_product_id", self.shopify_id.map(string_attr)),
            ("xorosoft_id", self.xorosoft_id.as_deref().map(string_attr)),
            ("pending_push", self.needs_push().then(|| string_attr("1"))),
            ("updated_at", Some(number_attr(millis(self.updated_at)))),
            (
                product_attrs::LOCK_OWNER,
                self.sync_locked_by
                    .as_ref()
                    .filter(|_| locked)
                    .map(string_attr),
            ),
            ("lock_held", locked.then(|| string_attr("1"))),
            (
                product_attrs::LOCK_EXPIRES_AT,
                self.sync_lock_expires_at
                    .filter(|_| locked)
                    .map(|t| number_attr(millis(t))),
            ),
        ])
    }
}

impl Record for Category {
    const TABLE: Table = Table::Categories;
    fn key(&self) -> Key {
        Key::pk(self.id.to_string())
    }
    fn attrs(&self) -> Attrs {
        attrs([
            ("id", Some(string_attr(self.id))),
            ("version", Some(number_attr(self.version))),
            ("shopify_collection_id", self.shopify_id.map(string_attr)),
        ])
    }
}

impl Record for ProductsStaging {
    const TABLE: Table = Table::ProductsStaging;
    fn key(&self) -> Key {
        Key::pk(self.id.to_string())
    }
    fn attrs(&self) -> Attrs {
        attrs([
            ("id", Some(string_attr(self.id))),
            (
                "sync_operation_id",
                Some(string_attr(self.sync_operation_id)),
            ),
            (
                "source_product_id",
                Some(string_attr(self.source_product_id)),
            ),
            ("status", Some(string_attr(status_name(self.status)))),
            ("staged_at", Some(number_attr(millis(self.staged_at)))),
        ])
    }
    fn loaded(&mut self) {
        self.spell_out();
    }
    fn implied_content(&self) -> Option<(ProductId, u64)> {
        self.content_implied()
            .then_some((self.source_product_id, ProductsStaging::CREATED_VERSION))
    }
    fn fill_content(&mut self, snapshot: ProductContent) {
        self.proposed = Some(snapshot);
    }
}

impl Record for SyncOperation {
    const TABLE: Table = Table::SyncOperations;
    fn key(&self) -> Key {
        Key::pk(self.operation_uuid.to_string())
    }
    fn attrs(&self) -> Attrs {
        attrs([
            ("id", Some(string_attr(self.operation_uuid))),
            ("status", Some(string_attr(status_name(self.status)))),
            ("entity", Some(string_attr("operation"))),
            ("created_at", Some(number_attr(millis(self.created_at)))),
            ("updated_at", Some(number_attr(millis(self.updated_at)))),
        ])
    }
}

impl Record for SyncConflict {
    const TABLE: Table = Table::SyncConflicts;
    fn key(&self) -> Key {
        Key::pk(self.conflict_uuid.to_string())
    }
    fn attrs(&self) -> Attrs {
        attrs([
            ("id", Some(string_attr(self.conflict_uuid))),
            ("status", Some(string_attr(status_name(self.status)))),
            ("product_id", Some(string_attr(self.product_id))),
            (
                "sync_operation_id",
                Some(string_attr(self.sync_operation_id)),
            ),
            ("detected_at", Some(number_attr(millis(self.detected_at)))),
        ])
    }
}

impl Record for SyncRollback {
    const TABLE: Table = Table::SyncRollbacks;
    fn key(&self) -> Key {
        Key::pk(self.id.to_string())
    }
    fn attrs(&self) -> Attrs {
        attrs([
            ("id", Some(string_attr(self.id))),
            (
                "original_operation_id",
                Some(string_attr(self.original_operation_id)),
            ),
            ("status", Some(string_attr(status_name(self.status)))),
            ("created_at", Some(number_attr(millis(self.created_at)))),
        ])
    }
}

impl Record for ProductVersion {
    const TABLE: Table = Table::ProductVersions;
    fn key(&self) -> Key {
        Key::pk_sk(
            self.product_id.to_string(),
            number_attr(self.version_number),
        )
    }
    fn attrs(&self) -> Attrs {
        version_attrs(
            self.product_id,
            self.version_number,
            self.sync_operation_id,
            self.created_at,
        )
    }
    fn loaded(&mut self) {
        self.spell_out();
    }
}

/// The attributes of a product's version (see [`ProductVersion`]'s `Record`), from its parts.
pub(crate) fn version_attrs(
    product_id: ProductId,
    version_number: u64,
    sync_operation_id: Option<OperationId>,
    created_at: DateTime<Utc>,
) -> Attrs {
    attrs([
        ("product_id", Some(string_attr(product_id))),
        ("version_number", Some(number_attr(version_number))),
        ("sync_operation_id", sync_operation_id.map(string_attr)),
        ("created_at", Some(number_attr(millis(created_at)))),
    ])
}

impl Record for CategoryVersion {
    const TABLE: Table = Table::CategoryVersions;
    fn key(&self) -> Key {
        Key::pk_sk(
            self.category_id.to_string(),
            number_attr(self.version_number),
        )
    }
    fn attrs(&self) -> Attrs {
        attrs([
            ("category_id", Some(string_attr(self.category_id))),
            ("version_number", Some(number_attr(self.version_number))),
            ("sync_operation_id", self.sync_operation_id.map(string_attr)),
            ("created_at", Some(number_attr(millis(self.created_at)))),
        ])
    }
}

impl Record for XorosoftProduct {
    const TABLE: Table = Table::XorosoftProducts;
    fn key(&self) -> Key {
        Key::pk_sk(self.xorosoft_id.clone(), self.warehouse_code.clone())
    }
    fn attrs(&self) -> Attrs {
        attrs([
            ("xorosoft_id", Some(string_attr(&self.xorosoft_id))),
            ("warehouse_code", Some(string_attr(&self.warehouse_code))),
            ("sku", Some(string_attr(self.sku.as_str()))),
            ("product_id", self.product_id.map(string_attr)),
        ])
    }
}

/// One lookup of a product's variants (see [`crate::schema::PRODUCT_LOOKUPS`]): the product
/// that held `lookup` when it was written, and which of its variants.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProductLookup {
    /// `sku:<normalised SKU>`, `barcode:<normalised barcode>` or `xorosoft:<item number>`.
    pub lookup: String,
    /// The product.
    pub product_id: ProductId,
    /// Its variants holding the key.
    pub variant_keys: Vec<shopsync_domain::VariantKey>,
}

impl ProductLookup {
    /// The lookup key of a SKU.
    pub fn sku_key(sku: &str) -> String {
        format!("sku:{}", shopsync_domain::normalise_sku(sku))
    }
    /// The lookup key of a barcode.
    pub fn barcode_key(barcode: &str) -> String {
        format!("barcode:{}", shopsync_domain::normalise_barcode(barcode))
    }
    /// The lookup key of a Xorosoft item.
    pub fn xorosoft_key(item_number: &str) -> String {
        format!("xorosoft:{}", shopsync_domain::normalise_sku(item_number))
    }

    /// The SKU and barcode lookups of a product's content.
    pub fn of_product(id: ProductId, content: &ProductContent) -> Vec<ProductLookup> {
        let mut by_key: std::collections::BTreeMap<String, Vec<shopsync_domain::VariantKey>> =
            Default::default();
        for variant in &content.variants {
            if let Some(sku) = &variant.sku {
                by_key
                    .entry(Self::sku_key(sku.as_str()))
                    .or_default()
                    .push(variant.key.clone());
            }
            if let Some(barcode) = variant.barcode.as_deref().filter(|b| !b.trim().is_empty()) {
                by_key
                    .entry(Self::barcode_key(barcode))
                    .or_default()
                    .push(variant.key.clone());
            }
        }
        by_key
            .into_iter()
            .map(|(lookup, variant_keys)| ProductLookup {
                lookup,
                product_id: id,
                variant_keys,
            })
            .collect()
    }
}

impl Record for ProductLookup {
    const TABLE: Table = Table::ProductLookups;
    fn key(&self) -> Key {
        Key::pk_sk(self.lookup.clone(), self.product_id.to_string())
    }
    fn attrs(&self) -> Attrs {
        attrs([
            ("lookup", Some(string_attr(&self.lookup))),
            ("product_id", Some(string_attr(self.product_id))),
        ])
    }
}

impl Record for shopsync_domain::ImportChunk {
    const TABLE: Table = Table::XorosoftImportChunks;
    fn key(&self) -> Key {
        Key::pk_sk(self.log_id.to_string(), Scalar::N(self.chunk as i64))
    }
    fn attrs(&self) -> Attrs {
        attrs([
            ("log_id", Some(string_attr(self.log_id))),
            ("chunk", Some(number_attr(self.chunk))),
            ("expires_at", Some(Scalar::N(self.expires_at.timestamp()))),
        ])
    }
}

impl Record for XorosoftSyncLog {
    const TABLE: Table = Table::XorosoftSyncLogs;
    fn key(&self) -> Key {
        Key::pk(self.id.to_string())
    }
    fn attrs(&self) -> Attrs {
        attrs([
            ("id", Some(string_attr(self.id))),
            ("entity", Some(string_attr("import"))),
            ("sync_type", Some(string_attr(status_name(self.sync_type)))),
            ("started_at", Some(number_attr(millis(self.started_at)))),
            ("import_file", self.import_file.as_deref().map(string_attr)),
            ("status", Some(string_attr(status_name(self.status)))),
            // The version a writer read (every write sets it anew).
            (
                "updated_at",
                self.updated_at.map(|at| number_attr(at.timestamp_micros())),
            ),
        ])
    }
}

impl Record for SyncPerformanceLog {
    const TABLE: Table = Table::SyncPerformanceLogs;
    fn key(&self) -> Key {
        Key::pk(self.id.to_string())
    }
    fn attrs(&self) -> Attrs {
        attrs([
            ("id", Some(string_attr(self.id))),
            (
                "sync_operation_id",
                Some(string_attr(self.sync_operation_id)),
            ),
            ("recorded_at", Some(number_attr(millis(self.recorded_at)))),
            (
                "bottleneck_stage",
                self.bottleneck_stage.map(|st| string_attr(status_name(st))),
            ),
        ])
    }
}

impl Record for ComplianceRequest {
    const TABLE: Table = Table::ComplianceRequests;
    fn key(&self) -> Key {
        Key::pk(self.id.clone())
    }
    fn attrs(&self) -> Attrs {
        attrs([
            ("id", Some(string_attr(&self.id))),
            ("status", Some(string_attr(status_name(self.status)))),
            (
                "redact_after",
                self.redact_after.map(|t| number_attr(millis(t))),
            ),
        ])
    }
}

//! Xorosoft, the ERP: its stock and cost figures (`xorosoft_products`) and the log of its
//! imports and exports (`xorosoft_sync_logs`).

use crate::ids::{Actor, OperationId, ProductId, VariantKey, XorosoftLogId};
use crate::money::{Money, Quantity};
use crate::product::Sku;
use crate::status::StatusMachine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Stock, cost and prices of one Xorosoft item at one warehouse (StoreCode), as the last
/// import that named it left them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XorosoftProduct {
    /// Xorosoft's item id (ItemNumber).
    pub xorosoft_id: String,
    /// The item's SKU (ItemNumber as the file spells it).
    pub sku: Sku,
    /// The warehouse (StoreCode; mapped to a Shopify location by configuration).
    pub warehouse_code: String,
    /// The bin location inside the warehouse (LocationCode).
    #[serde(default)]
    pub bin_location: Option<String>,
    /// Physically on hand.
    pub stock_on_hand: Quantity,
    /// Available for sale (on hand less allocations): what Shopify's "available" becomes.
    pub stock_available: Quantity,
    /// Allocated to orders.
    #[serde(default)]
    pub stock_allocated: Quantity,
    /// On open purchase orders.
    #[serde(default)]
    pub stock_on_order: Quantity,
    /// Current unit cost.
    pub cost_price: Option<Money>,
    /// Retail price (StandardUnitPrice).
    #[serde(default)]
    pub standard_price: Option<Money>,
    /// Wholesale price (kept here only; never sent to Shopify).
    #[serde(default)]
    pub wholesale_price: Option<Money>,
    /// The prices' currency.
    #[serde(default)]
    pub currency: Option<String>,
    /// The item's barcode (ItemUPC), as text.
    #[serde(default)]
    pub barcode: Option<String>,
    /// The matched local product, once matched.
    pub product_id: Option<ProductId>,
    /// The matched variant of that product.
    #[serde(default)]
    pub variant_key: Option<VariantKey>,
    /// The import that last wrote this record.
    pub last_log_id: Option<XorosoftLogId>,
    /// The file that import read (`bucket/key`).
    #[serde(default)]
    pub import_file: Option<String>,
    /// When Xorosoft says the figures were taken (LastModified).
    pub source_timestamp: Option<DateTime<Utc>>,
    /// When a snapshot of its StoreCode last lacked it (reported missing then, never zeroed);
    /// cleared when a file names it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_since: Option<DateTime<Utc>>,
    /// When the file its stock last came from was written (that object's last-modified
    /// time): a stock file written before it is held for a person before it is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock_snapshot_at: Option<DateTime<Utc>>,
    /// When shopsync stored them.
    pub updated_at: DateTime<Utc>,
}

impl XorosoftProduct {
    /// A record of `xorosoft_id` at `warehouse_code` with no figures yet.
    pub fn new(xorosoft_id: &str, sku: Sku, warehouse_code: &str, now: DateTime<Utc>) -> Self {
        Self {
            xorosoft_id: xorosoft_id.to_owned(),
            sku,
            warehouse_code: warehouse_code.to_owned(),
            bin_location: None,
            stock_on_hand: Quantity(0),
            stock_available: Quantity(0),
            stock_allocated: Quantity(0),
            stock_on_order: Quantity(0),
            cost_price: None,
            standard_price: None,
            wholesale_price: None,
            currency: None,
            barcode: None,
            product_id: None,
            variant_key: None,
            last_log_id: None,
            import_file: None,
            source_timestamp: None,
            missing_since: None,
            stock_snapshot_at: None,
            updated_at: now,
        }
    }
}

/// The spec's `sync_type` of a Xorosoft sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XorosoftSyncType {
    /// Stock figures (and cost).
    StockUpdate,
    /// Prices.
    PriceUpdate,
    /// Stock, cost and prices.
    FullSync,
}

impl XorosoftSyncType {
    /// The type an object key's folder chooses: `xorosoft/inbound/stock/...`,
    /// `.../price/...` or `.../full/...` (any prefix before `xorosoft/`).
    pub fn of_key(key: &str) -> Option<Self> {
        let rest = key.split_once("xorosoft/inbound/").map(|(_, rest)| rest)?;
        let (folder, name) = rest.split_once('/')?;
        if name.is_empty() || name.ends_with('/') {
            return None;
        }
        match folder {
            "stock" => Some(Self::StockUpdate),
            "price" => Some(Self::PriceUpdate),
            "full" => Some(Self::FullSync),
            _ => None,
        }
    }

    /// Whether rows of this type carry stock (and cost).
    pub fn takes_stock(self) -> bool {
        matches!(self, Self::StockUpdate | Self::FullSync)
    }

    /// Whether rows of this type carry prices.
    pub fn takes_prices(self) -> bool {
        matches!(self, Self::PriceUpdate | Self::FullSync)
    }

    /// The folder under `xorosoft/inbound/` of this type.
    pub fn folder(self) -> &'static str {
        match self {
            Self::StockUpdate => "stock",
            Self::PriceUpdate => "price",
            Self::FullSync => "full",
        }
    }
}

/// Where a Xorosoft sync stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XorosoftSyncStatus {
    /// Received.
    Pending,
    /// Reading and applying.
    InProgress,
    /// Held by a guard rail (or by the price policy) until a person approves its operation.
    AwaitingApproval,
    /// Every record applied.
    Completed,
    /// Finished with some records failed (see statistics and the errors report).
    CompletedWithErrors,
    /// Stopped.
    Failed,
    /// The file cannot be an import (empty, no rows, no item number column): nothing of it
    /// was taken.
    Refused,
    /// The same object (bucket, key and ETag) was imported before: nothing was done.
    Duplicate,
}

impl StatusMachine for XorosoftSyncStatus {
    const MACHINE: &'static str = "xorosoft sync";

    fn allows(self, to: Self) -> bool {
        use XorosoftSyncStatus::*;
        matches!(
            (self, to),
            (Pending, InProgress | Failed | Refused | Duplicate)
                | (
                    InProgress,
                    AwaitingApproval | Completed | CompletedWithErrors | Failed | Refused
                )
                | (AwaitingApproval, InProgress | Failed)
                | (Failed, InProgress)
        )
    }

    fn is_terminal(self) -> bool {
        matches!(
            self,
            XorosoftSyncStatus::Completed
                | XorosoftSyncStatus::CompletedWithErrors
                | XorosoftSyncStatus::Refused
                | XorosoftSyncStatus::Duplicate
        )
    }
}

/// Counts of a Xorosoft sync (the spec's `statistics`, and what an import adds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct XorosoftStatistics {
    /// Rows read (valid or not).
    pub records_processed: u64,
    /// Rows whose figures changed a record or a product.
    pub records_updated: u64,
    /// Rows that failed (invalid, duplicate, unmatched, ambiguous, locked, not pushed).
    pub records_failed: u64,
    /// Rows already in step.
    pub records_unchanged: u64,
    /// Rows that parsed.
    pub rows_valid: u64,
    /// Rows that did not (each in the errors report).
    pub rows_invalid: u64,
    /// Rows naming an item another row of the file names too (all of them refused).
    pub duplicates: u64,
    /// Rows linked to exactly one local variant.
    pub matched: u64,
    /// Rows no local variant matches.
    pub unmatched: u64,
    /// Rows several local variants match (never guessed).
    pub ambiguous: u64,
    /// Items the previous snapshot of a StoreCode had and this file lacks (never zeroed).
    pub missing: u64,
    /// Rows whose product is locked by someone (skipped).
    pub locked: u64,
    /// Stock levels Shopify confirmed.
    pub pushed: u64,
    /// Stock levels not pushed (Shopify refused, or no location for the StoreCode).
    pub push_failed: u64,
    /// Rows whose cost or prices are in a currency other than the shop's: their money is not
    /// taken (each is in the errors report), their stock is.
    pub price_errors: u64,
}

/// The object an import read: where, and which version of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImportObject {
    /// Bucket (`local` for a folder).
    pub bucket: String,
    /// Key, decoded.
    pub key: String,
    /// The object's version id, when the bucket keeps versions.
    #[serde(default)]
    pub version_id: Option<String>,
    /// Its ETag (a folder's: the file's SHA-256).
    pub etag: String,
    /// Its size in bytes.
    #[serde(default)]
    pub size: u64,
    /// When it was written (S3's `LastModified`, a file's modification time): the time of
    /// the snapshot it holds, which an older file's stock never overwrites unasked.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::time::write_utc_opt"
    )]
    pub last_modified: Option<DateTime<Utc>>,
}

impl ImportObject {
    /// `bucket/key`, the spec's `import_file`.
    pub fn path(&self) -> String {
        format!("{}/{}", self.bucket, self.key)
    }

    /// The id of the import of this object (bucket, key and ETag): the same object always
    /// gets the same id, so a conditional write of its log decides whether it was imported.
    pub fn log_id(&self) -> XorosoftLogId {
        // FNV-1a over the identity, twice with different offsets, as a UUID (version 8).
        let identity = format!("{}\u{0}{}\u{0}{}", self.bucket, self.key, self.etag);
        let hash = |offset: u64| {
            identity.bytes().fold(offset, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
            })
        };
        let (high, low) = (hash(0xcbf2_9ce4_8422_2325), hash(0x8422_2325_cbf2_9ce4));
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&high.to_be_bytes());
        bytes[8..].copy_from_slice(&low.to_be_bytes());
        XorosoftLogId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }
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
    /// The file imported (`bucket/key`), if any.
    pub import_file: Option<String>,
    /// The file exported (`bucket/key`), if any.
    pub export_file: Option<String>,
    /// The first errors and notes, for the operator (bounded; every row error is in the
    /// errors report).
    pub errors: Vec<String>,
    /// Who or what started it.
    pub started_by: Actor,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Ended.
    pub completed_at: Option<DateTime<Utc>>,
    /// The object read (bucket, key, version, ETag).
    #[serde(default)]
    pub object: Option<ImportObject>,
    /// The row-errors report (`bucket/key`): line, column, value, reason.
    #[serde(default)]
    pub errors_report: Option<String>,
    /// Where the file was archived (`bucket/key`).
    #[serde(default)]
    pub archive_file: Option<String>,
    /// The operation that staged and applied its changes.
    #[serde(default)]
    pub operation_id: Option<OperationId>,
    /// For a duplicate: the import of the same object that counts.
    #[serde(default)]
    pub duplicate_of: Option<XorosoftLogId>,
    /// Why it was refused, failed or is held.
    #[serde(default)]
    pub status_reason: Option<String>,
    /// The file's encoding as read (`utf-8` or `windows-1252`).
    #[serde(default)]
    pub encoding: Option<String>,
    /// Last change of this record.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// How many errors a log keeps inline.
pub const LOG_ERRORS_KEPT: usize = 20;

impl XorosoftSyncLog {
    /// A new pending log of importing `object`.
    pub fn new(
        object: ImportObject,
        sync_type: XorosoftSyncType,
        started_by: Actor,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: object.log_id(),
            sync_type,
            status: XorosoftSyncStatus::Pending,
            statistics: XorosoftStatistics::default(),
            import_file: Some(object.path()),
            export_file: None,
            errors: Vec::new(),
            started_by,
            started_at: now,
            completed_at: None,
            object: Some(object),
            errors_report: None,
            archive_file: None,
            operation_id: None,
            duplicate_of: None,
            status_reason: None,
            encoding: None,
            updated_at: Some(now),
        }
    }

    /// Keeps an error inline while there is room.
    pub fn note(&mut self, error: impl Into<String>) {
        if self.errors.len() < LOG_ERRORS_KEPT {
            self.errors.push(error.into());
        }
    }
}

/// How an import row found its local variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkedBy {
    /// The variant was linked to this item before (`xorosoft_id`).
    XorosoftId,
    /// Its SKU, normalised, is the item number, normalised.
    Sku,
    /// Its barcode, normalised, is the row's UPC, normalised.
    Barcode,
}

/// What an import row links to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "link", rename_all = "snake_case")]
pub enum ItemLink {
    /// One local variant.
    Matched {
        /// The product.
        product_id: ProductId,
        /// Its variant.
        variant_key: VariantKey,
        /// How it was found.
        by: LinkedBy,
    },
    /// No local variant: reported, never guessed.
    Unmatched,
    /// Several local variants hold the item's SKU or barcode: reported, never guessed.
    Ambiguous {
        /// The products holding them.
        candidates: Vec<ProductId>,
    },
}

/// A valid row of an import file, as the import keeps it between reading and applying.
/// Stored as one JSON object: the row's fields and its link's (`link` the tag) side by side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportedItem {
    /// The file's line.
    pub line: u64,
    /// `StoreCode`.
    pub store_code: String,
    /// `LocationCode` (the bin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin_location: Option<String>,
    /// `ItemNumber`.
    pub item_number: String,
    /// `ItemUPC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barcode: Option<String>,
    /// `OnHandQty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_hand: Option<i64>,
    /// `AllocatedQty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated: Option<i64>,
    /// `AvailableQty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<i64>,
    /// `QtyOnPO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_order: Option<i64>,
    /// `UnitCost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_cost: Option<Money>,
    /// `StandardUnitPrice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard_price: Option<Money>,
    /// `WholesalePrice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wholesale_price: Option<Money>,
    /// `CurrencyCode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// `LastModified`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<DateTime<Utc>>,
    /// Why the row's cost and prices are not taken (its stock still is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_error: Option<String>,
    /// The local variant it links to.
    #[serde(flatten)]
    pub link: ItemLink,
}

impl ImportedItem {
    /// Why the cost and prices this row carries are not taken (another currency than the
    /// shop's), when it carries any.
    pub fn refused_money(&self) -> Option<&str> {
        let carries_money = self.unit_cost.is_some()
            || self.standard_price.is_some()
            || self.wholesale_price.is_some();
        self.price_error.as_deref().filter(|_| carries_money)
    }
}

impl<'de> Deserialize<'de> for ImportedItem {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ImportedItemVisitor)
    }
}

/// The names of an [`ImportedItem`]'s fields and of its link's.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum ImportedItemField {
    Line,
    StoreCode,
    BinLocation,
    ItemNumber,
    Barcode,
    OnHand,
    Allocated,
    Available,
    OnOrder,
    UnitCost,
    StandardPrice,
    WholesalePrice,
    Currency,
    LastModified,
    PriceError,
    Link,
    ProductId,
    VariantKey,
    By,
    Candidates,
    #[serde(other)]
    Other,
}

/// [`ItemLink`]'s tag.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ItemLinkTag {
    Matched,
    Unmatched,
    Ambiguous,
}

/// Reads an [`ImportedItem`] in one pass, its link's fields included. (The derived form
/// buffers every field of the object to find the flattened link's; an import reads each of
/// its items several times.)
struct ImportedItemVisitor;

impl<'de> serde::de::Visitor<'de> for ImportedItemVisitor {
    type Value = ImportedItem;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("an imported Xorosoft row")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ImportedItem, A::Error> {
        use serde::de::Error;
        let (mut line, mut store_code, mut item_number) = (None, None, None);
        let mut item = ImportedItem {
            line: 0,
            store_code: String::new(),
            bin_location: None,
            item_number: String::new(),
            barcode: None,
            on_hand: None,
            allocated: None,
            available: None,
            on_order: None,
            unit_cost: None,
            standard_price: None,
            wholesale_price: None,
            currency: None,
            last_modified: None,
            price_error: None,
            link: ItemLink::Unmatched,
        };
        let (mut tag, mut product_id, mut variant_key, mut by, mut candidates) =
            (None, None, None, None, None);
        while let Some(field) = map.next_key::<ImportedItemField>()? {
            match field {
                ImportedItemField::Line => line = Some(map.next_value()?),
                ImportedItemField::StoreCode => store_code = Some(map.next_value()?),
                ImportedItemField::BinLocation => item.bin_location = map.next_value()?,
                ImportedItemField::ItemNumber => item_number = Some(map.next_value()?),
                ImportedItemField::Barcode => item.barcode = map.next_value()?,
                ImportedItemField::OnHand => item.on_hand = map.next_value()?,
                ImportedItemField::Allocated => item.allocated = map.next_value()?,
                ImportedItemField::Available => item.available = map.next_value()?,
                ImportedItemField::OnOrder => item.on_order = map.next_value()?,
                ImportedItemField::UnitCost => item.unit_cost = map.next_value()?,
                ImportedItemField::StandardPrice => item.standard_price = map.next_value()?,
                ImportedItemField::WholesalePrice => item.wholesale_price = map.next_value()?,
                ImportedItemField::Currency => item.currency = map.next_value()?,
                ImportedItemField::LastModified => item.last_modified = map.next_value()?,
                ImportedItemField::PriceError => item.price_error = map.next_value()?,
                ImportedItemField::Link => tag = Some(map.next_value::<ItemLinkTag>()?),
                ImportedItemField::ProductId => product_id = Some(map.next_value()?),
                ImportedItemField::VariantKey => variant_key = Some(map.next_value()?),
                ImportedItemField::By => by = Some(map.next_value()?),
                ImportedItemField::Candidates => candidates = Some(map.next_value()?),
                ImportedItemField::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        item.line = line.ok_or_else(|| A::Error::missing_field("line"))?;
        item.store_code = store_code.ok_or_else(|| A::Error::missing_field("store_code"))?;
        item.item_number = item_number.ok_or_else(|| A::Error::missing_field("item_number"))?;
        item.link = match tag.ok_or_else(|| A::Error::missing_field("link"))? {
            ItemLinkTag::Matched => ItemLink::Matched {
                product_id: product_id.ok_or_else(|| A::Error::missing_field("product_id"))?,
                variant_key: variant_key.ok_or_else(|| A::Error::missing_field("variant_key"))?,
                by: by.ok_or_else(|| A::Error::missing_field("by"))?,
            },
            ItemLinkTag::Unmatched => ItemLink::Unmatched,
            ItemLinkTag::Ambiguous => ItemLink::Ambiguous {
                candidates: candidates.ok_or_else(|| A::Error::missing_field("candidates"))?,
            },
        };
        Ok(item)
    }
}

/// A row of an import file that was not taken, for the errors report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRowError {
    /// The file's line.
    pub line: u64,
    /// The column, or `row`.
    pub column: String,
    /// The value as the file has it.
    pub value: String,
    /// Why.
    pub reason: String,
    /// The row's StoreCode, where it was read (a valid row withdrawn afterwards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_code: Option<String>,
}

/// A run of an import file's rows, read and linked, kept until the import is applied
/// (`xorosoft_import_chunks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportChunk {
    /// The import.
    pub log_id: XorosoftLogId,
    /// Its number, from 0, in file order.
    pub chunk: u64,
    /// The valid rows.
    pub items: Vec<ImportedItem>,
    /// The rows that were not.
    pub errors: Vec<ImportRowError>,
    /// Rows read as valid and then refused because a later row named their item again
    /// (each is in `errors` too), kept as they were read so the counts can move them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withdrawn: Vec<ImportedItem>,
    /// Items (StoreCode, ItemNumber) the previous snapshot of their StoreCode had and the
    /// file lacks (chunks after the file's own hold these).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<(String, String)>,
    /// When the store may drop it.
    #[serde(serialize_with = "crate::time::write_utc")]
    pub expires_at: DateTime<Utc>,
}

/// An item number or SKU as matching compares it: case, whitespace and the hyphen's variants
/// (hyphen, non-breaking hyphen, dashes, minus, underscore) do not count.
pub fn normalise_sku(text: &str) -> String {
    text.chars()
        .filter(|c| {
            !c.is_whitespace()
                && !matches!(
                    c,
                    '-' | '_'
                        | '\u{2010}'
                        | '\u{2011}'
                        | '\u{2012}'
                        | '\u{2013}'
                        | '\u{2014}'
                        | '\u{2212}'
                )
        })
        .flat_map(char::to_uppercase)
        .collect()
}

/// A barcode as matching compares it: its digits without leading zeros (a UPC-A and the
/// EAN-13 that is it with a leading zero are one code); a code with anything but digits,
/// spaces and hyphens is compared as [`normalise_sku`] compares text.
pub fn normalise_barcode(text: &str) -> String {
    let compact: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if !compact.is_empty() && compact.bytes().all(|b| b.is_ascii_digit()) {
        let trimmed = compact.trim_start_matches('0');
        if trimmed.is_empty() {
            "0".into()
        } else {
            trimmed.into()
        }
    } else {
        normalise_sku(&compact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item_linked(link: ItemLink) -> ImportedItem {
        ImportedItem {
            line: 7,
            store_code: "MAIN".into(),
            bin_location: Some("A-01".into()),
            item_number: "00123-X".into(),
            barcode: Some("012345678905".into()),
            on_hand: Some(12),
            allocated: Some(-2),
            available: Some(14),
            on_order: None,
            unit_cost: Some("21.50".parse().unwrap()),
            standard_price: Some("59.00".parse().unwrap()),
            wholesale_price: None,
            currency: Some("USD".into()),
            last_modified: Some("2026-11-05T15:15:00Z".parse().unwrap()),
            price_error: Some("currency EUR is not the shop's".into()),
            link,
        }
    }

    #[test]
    fn an_imported_item_reads_back_as_written_whatever_its_link() {
        let links = [
            ItemLink::Matched {
                product_id: ProductId::generate(),
                variant_key: VariantKey::parse("s42").unwrap(),
                by: LinkedBy::Barcode,
            },
            ItemLink::Unmatched,
            ItemLink::Ambiguous {
                candidates: vec![ProductId::generate(), ProductId::generate()],
            },
        ];
        for link in links {
            let item = item_linked(link);
            let json = serde_json::to_string(&item).unwrap();
            assert_eq!(serde_json::from_str::<ImportedItem>(&json).unwrap(), item);
            let value = serde_json::to_value(&item).unwrap();
            assert_eq!(serde_json::from_value::<ImportedItem>(value).unwrap(), item);
        }
    }

    #[test]
    fn an_imported_item_is_read_in_any_field_order_and_ignores_unknown_fields() {
        let product = ProductId::generate();
        let json = format!(
            r#"{{"by":"sku","variant_key":"k1","later":{{"x":[1,2]}},"item_number":"A-1","link":"matched","store_code":"W2","product_id":"{product}","line":3}}"#
        );
        let item: ImportedItem = serde_json::from_str(&json).unwrap();
        assert_eq!(item.line, 3);
        assert_eq!(item.store_code, "W2");
        assert_eq!(item.item_number, "A-1");
        assert_eq!(item.available, None);
        assert_eq!(
            item.link,
            ItemLink::Matched {
                product_id: product,
                variant_key: VariantKey::parse("k1").unwrap(),
                by: LinkedBy::Sku,
            }
        );
    }

    #[test]
    fn an_imported_item_without_its_link_or_the_links_fields_is_an_error() {
        let no_tag = r#"{"line":1,"store_code":"W","item_number":"A"}"#;
        let error = serde_json::from_str::<ImportedItem>(no_tag).unwrap_err();
        assert!(
            error.to_string().contains("missing field `link`"),
            "{error}"
        );
        let half = r#"{"line":1,"store_code":"W","item_number":"A","link":"matched","by":"sku"}"#;
        let error = serde_json::from_str::<ImportedItem>(half).unwrap_err();
        assert!(error.to_string().contains("product_id"), "{error}");
        let unknown = r#"{"line":1,"store_code":"W","item_number":"A","link":"guessed"}"#;
        assert!(serde_json::from_str::<ImportedItem>(unknown).is_err());
        let no_line = r#"{"store_code":"W","item_number":"A","link":"unmatched"}"#;
        let error = serde_json::from_str::<ImportedItem>(no_line).unwrap_err();
        assert!(
            error.to_string().contains("missing field `line`"),
            "{error}"
        );
    }

    #[test]
    fn the_key_chooses_the_type() {
        use XorosoftSyncType::*;
        assert_eq!(
            XorosoftSyncType::of_key("xorosoft/inbound/stock/a.csv"),
            Some(StockUpdate)
        );
        assert_eq!(
            XorosoftSyncType::of_key("x/xorosoft/inbound/price/b c.csv"),
            Some(PriceUpdate)
        );
        assert_eq!(
            XorosoftSyncType::of_key("xorosoft/inbound/full/2026/c.csv"),
            Some(FullSync)
        );
        assert_eq!(
            XorosoftSyncType::of_key("xorosoft/inbound/other/a.csv"),
            None
        );
        assert_eq!(XorosoftSyncType::of_key("xorosoft/inbound/stock/"), None);
        assert_eq!(
            XorosoftSyncType::of_key("xorosoft/archive/stock/a.csv"),
            None
        );
    }

    #[test]
    fn an_objects_identity_is_its_bucket_key_and_etag() {
        let object = ImportObject {
            bucket: "b".into(),
            key: "xorosoft/inbound/stock/a.csv".into(),
            version_id: None,
            etag: "\"abc\"".into(),
            size: 10,
            last_modified: None,
        };
        let same = ImportObject {
            version_id: Some("v2".into()),
            size: 11,
            ..object.clone()
        };
        assert_eq!(object.log_id(), same.log_id());
        let changed = ImportObject {
            etag: "\"abd\"".into(),
            ..object.clone()
        };
        assert_ne!(object.log_id(), changed.log_id());
        let moved = ImportObject {
            key: "xorosoft/inbound/stock/b.csv".into(),
            ..object.clone()
        };
        assert_ne!(object.log_id(), moved.log_id());
    }

    #[test]
    fn skus_and_barcodes_normalise() {
        assert_eq!(normalise_sku(" abc-12 x "), "ABC12X");
        assert_eq!(normalise_sku("ABC\u{2013}12_X"), "ABC12X");
        assert_eq!(normalise_barcode("012345678905"), "12345678905");
        assert_eq!(normalise_barcode("0012345678905"), "12345678905");
        assert_eq!(normalise_barcode("0000"), "0");
        assert_eq!(normalise_barcode("ab-12"), "AB12");
    }

    #[test]
    fn held_imports_resume_and_duplicates_end_at_once() {
        use XorosoftSyncStatus::*;
        assert!(Pending.allows(Duplicate) && Duplicate.is_terminal());
        assert!(InProgress.allows(AwaitingApproval) && AwaitingApproval.allows(InProgress));
        assert!(!Completed.allows(InProgress));
        assert!(Pending.allows(Refused) && Refused.is_terminal());
    }
}

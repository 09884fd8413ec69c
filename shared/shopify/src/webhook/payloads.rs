//! Typed webhook payloads. Ids are exact 64-bit integers (they exceed 2^53); every field
//! Shopify may send as null is optional.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Deserializer, Serialize};
use shopsync_domain::ids::{
    InventoryItemId, LocationId, ShopifyCollectionId, ShopifyProductId, ShopifyVariantId,
};

/// `products/create` and `products/update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductPayload {
    /// Product id.
    pub id: ShopifyProductId,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// Description HTML.
    #[serde(default)]
    pub body_html: Option<String>,
    /// Vendor.
    #[serde(default)]
    pub vendor: Option<String>,
    /// Product type.
    #[serde(default)]
    pub product_type: Option<String>,
    /// Handle.
    #[serde(default)]
    pub handle: Option<String>,
    /// active, draft, archived.
    #[serde(default)]
    pub status: Option<String>,
    /// Tags, split from Shopify's comma-separated string.
    #[serde(default, deserialize_with = "comma_separated")]
    pub tags: Vec<String>,
    /// Created at.
    #[serde(default)]
    pub created_at: Option<DateTime<FixedOffset>>,
    /// Updated at (the staleness check compares it with what is stored).
    #[serde(default)]
    pub updated_at: Option<DateTime<FixedOffset>>,
    /// Options.
    #[serde(default)]
    pub options: Vec<OptionPayload>,
    /// The first 100 variants in full.
    #[serde(default)]
    pub variants: Vec<VariantPayload>,
    /// Every variant's GID and update time (may list more than `variants`).
    #[serde(default)]
    pub variant_gids: Vec<VariantGid>,
}

impl ProductPayload {
    /// True when `variant_gids` lists variants the payload does not carry in full: the
    /// product must be re-fetched through the Admin API before it is trusted.
    pub fn needs_full_refetch(&self) -> bool {
        self.variant_gids.len() > self.variants.len()
    }
}

/// A product option in a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionPayload {
    /// Option name.
    pub name: String,
    /// Position.
    #[serde(default)]
    pub position: Option<i64>,
    /// Values.
    #[serde(default)]
    pub values: Vec<String>,
}

/// A variant in a product webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantPayload {
    /// Variant id.
    pub id: ShopifyVariantId,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// Price as a decimal string.
    #[serde(default)]
    pub price: Option<String>,
    /// Compare-at price.
    #[serde(default)]
    pub compare_at_price: Option<String>,
    /// SKU (null and duplicates happen).
    #[serde(default)]
    pub sku: Option<String>,
    /// Barcode.
    #[serde(default)]
    pub barcode: Option<String>,
    /// Position.
    #[serde(default)]
    pub position: Option<i64>,
    /// Option values 1..3.
    #[serde(default)]
    pub option1: Option<String>,
    /// Second option value.
    #[serde(default)]
    pub option2: Option<String>,
    /// Third option value.
    #[serde(default)]
    pub option3: Option<String>,
    /// Inventory item.
    #[serde(default)]
    pub inventory_item_id: Option<InventoryItemId>,
    /// Total quantity (may be negative).
    #[serde(default)]
    pub inventory_quantity: Option<i64>,
    /// Updated at.
    #[serde(default)]
    pub updated_at: Option<DateTime<FixedOffset>>,
}

/// An entry of `variant_gids`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantGid {
    /// The variant's GID.
    pub admin_graphql_api_id: String,
    /// Its update time, as Shopify wrote it.
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// `products/delete` and `collections/delete`: only the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedProduct {
    /// Product id.
    pub id: ShopifyProductId,
}

/// `inventory_levels/update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryLevelPayload {
    /// Inventory item.
    pub inventory_item_id: InventoryItemId,
    /// Location.
    pub location_id: LocationId,
    /// Available quantity (null in Shopify's own example).
    #[serde(default)]
    pub available: Option<i64>,
    /// Updated at.
    #[serde(default)]
    pub updated_at: Option<DateTime<FixedOffset>>,
}

/// `inventory_items/update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryItemPayload {
    /// Inventory item id.
    pub id: InventoryItemId,
    /// SKU.
    #[serde(default)]
    pub sku: Option<String>,
    /// Unit cost as a decimal string.
    #[serde(default)]
    pub cost: Option<String>,
    /// Whether Shopify tracks quantities.
    #[serde(default)]
    pub tracked: Option<bool>,
    /// Updated at.
    #[serde(default)]
    pub updated_at: Option<DateTime<FixedOffset>>,
}

/// `collections/create` and `collections/update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionPayload {
    /// Collection id.
    pub id: ShopifyCollectionId,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// Handle.
    #[serde(default)]
    pub handle: Option<String>,
    /// Description HTML.
    #[serde(default)]
    pub body_html: Option<String>,
    /// Updated at.
    #[serde(default)]
    pub updated_at: Option<DateTime<FixedOffset>>,
}

/// `collections/delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedCollection {
    /// Collection id.
    pub id: ShopifyCollectionId,
}

/// `app/uninstalled` (the shop object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppUninstalledPayload {
    /// Shop id.
    #[serde(default)]
    pub id: Option<u64>,
    /// Shop domain.
    #[serde(default)]
    pub domain: Option<String>,
    /// myshopify domain.
    #[serde(default)]
    pub myshopify_domain: Option<String>,
}

/// `bulk_operations/finish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkFinishPayload {
    /// Bulk operation GID.
    pub admin_graphql_api_id: String,
    /// completed, failed, canceled...
    pub status: String,
    /// Error code when failed.
    #[serde(default)]
    pub error_code: Option<String>,
    /// query or mutation.
    #[serde(default, rename = "type")]
    pub operation_type: Option<String>,
}

/// `customers/data_request` and `customers/redact`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerCompliancePayload {
    /// Shop id.
    pub shop_id: u64,
    /// Shop domain.
    pub shop_domain: String,
    /// Customer reference.
    #[serde(default)]
    pub customer: Option<serde_json::Value>,
    /// Orders concerned.
    #[serde(default)]
    pub orders_requested: Option<Vec<u64>>,
    /// Orders to redact.
    #[serde(default)]
    pub orders_to_redact: Option<Vec<u64>>,
}

/// `shop/redact`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopRedactPayload {
    /// Shop id.
    pub shop_id: u64,
    /// Shop domain.
    pub shop_domain: String,
}

fn comma_separated<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tags {
        Text(String),
        List(Vec<String>),
    }
    Ok(match Option::<Tags>::deserialize(d)? {
        None => Vec::new(),
        Some(Tags::Text(text)) => text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Tags::List(list)) => list,
    })
}

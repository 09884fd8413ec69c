//! What shopsync reads from Shopify, typed. Ids are exact 64-bit values parsed from GIDs;
//! money stays the decimal string Shopify sends.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shopsync_domain::ids::{
    InventoryItemId, LocationId, ShopifyCollectionId, ShopifyProductId, ShopifyVariantId,
};

/// A product as Shopify has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteProduct {
    /// Product id.
    pub id: ShopifyProductId,
    /// Title.
    pub title: String,
    /// Handle.
    #[serde(default)]
    pub handle: Option<String>,
    /// Description HTML.
    #[serde(default)]
    pub description_html: Option<String>,
    /// Vendor.
    #[serde(default)]
    pub vendor: Option<String>,
    /// Product type.
    #[serde(default)]
    pub product_type: Option<String>,
    /// ACTIVE, DRAFT, ARCHIVED or UNLISTED.
    #[serde(default)]
    pub status: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Created at.
    #[serde(default, deserialize_with = "shopsync_domain::time::utc_opt")]
    pub created_at: Option<DateTime<Utc>>,
    /// Last update in Shopify (the incremental cursor).
    #[serde(deserialize_with = "shopsync_domain::time::utc")]
    pub updated_at: DateTime<Utc>,
    /// Options with their values.
    #[serde(default)]
    pub options: Vec<RemoteOption>,
    /// How many variants Shopify says the product has.
    #[serde(default)]
    pub variants_count: Option<u64>,
    /// Variants read so far (all of them once `variants_cursor` is `None`).
    #[serde(default)]
    pub variants: Vec<RemoteVariant>,
    /// Where the next page of variants starts, if the product has more than were read.
    #[serde(default)]
    pub variants_cursor: Option<String>,
}

impl RemoteProduct {
    /// Whether every variant has been read.
    pub fn variants_complete(&self) -> bool {
        self.variants_cursor.is_none()
    }
}

/// A product option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteOption {
    /// Option name.
    pub name: String,
    /// Its values.
    #[serde(default)]
    pub values: Vec<String>,
}

/// A variant as Shopify has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteVariant {
    /// Variant id.
    pub id: ShopifyVariantId,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// SKU (may be absent and is not unique).
    #[serde(default)]
    pub sku: Option<String>,
    /// Barcode.
    #[serde(default)]
    pub barcode: Option<String>,
    /// Price, a decimal string.
    #[serde(default)]
    pub price: Option<String>,
    /// Compare-at price.
    #[serde(default)]
    pub compare_at_price: Option<String>,
    /// Position (1-based).
    #[serde(default)]
    pub position: Option<i64>,
    /// Last update.
    #[serde(default, deserialize_with = "shopsync_domain::time::utc_opt")]
    pub updated_at: Option<DateTime<Utc>>,
    /// Option name/value pairs.
    #[serde(default)]
    pub selected_options: Vec<SelectedOption>,
    /// Its inventory item.
    #[serde(default)]
    pub inventory_item_id: Option<InventoryItemId>,
    /// Unit cost, a decimal string.
    #[serde(default)]
    pub unit_cost: Option<String>,
    /// Available quantity per location.
    #[serde(default)]
    pub levels: Vec<RemoteLevel>,
}

/// One option value of a variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectedOption {
    /// Option name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// The available quantity of one inventory item at one location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteLevel {
    /// Location.
    pub location_id: LocationId,
    /// Available quantity (absent when Shopify does not report it).
    pub available: Option<i64>,
}

/// A location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteLocation {
    /// Location id.
    pub id: LocationId,
    /// Name.
    pub name: String,
    /// Whether it is active.
    pub is_active: bool,
}

/// A collection (a shopsync category).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteCollection {
    /// Collection id.
    pub id: ShopifyCollectionId,
    /// Title.
    pub title: String,
    /// Handle.
    pub handle: String,
    /// Description HTML.
    #[serde(default)]
    pub description_html: String,
    /// Sort order.
    #[serde(default)]
    pub sort_order: String,
    /// A smart collection's rules (`None`: a custom collection).
    #[serde(default)]
    pub rule_set: Option<serde_json::Value>,
    /// Last update.
    #[serde(deserialize_with = "shopsync_domain::time::utc")]
    pub updated_at: DateTime<Utc>,
    /// Its products (every one, once [`crate::AdminClient::collections`] has read them).
    #[serde(default, skip)]
    pub products: Vec<shopsync_domain::ShopifyProductId>,
}

/// One page of a connection, with the cursor of the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// Items.
    pub items: Vec<T>,
    /// Cursor of the next page, if any.
    pub next: Option<String>,
}

// ---- Wire shapes of the GraphQL answers (private) ----

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PageInfo {
    pub has_next_page: bool,
    #[serde(default)]
    pub end_cursor: Option<String>,
}

impl PageInfo {
    pub(crate) fn next(self) -> Option<String> {
        if self.has_next_page {
            self.end_cursor
        } else {
            None
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Connection<T> {
    pub page_info: PageInfo,
    pub nodes: Vec<T>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Nodes<T> {
    pub nodes: Vec<T>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Count {
    pub count: u64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Amount {
    pub amount: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct IdOnly<T> {
    pub id: T,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireQuantity {
    pub name: String,
    pub quantity: i64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireLevel {
    /// The variant it belongs to, in a bulk export line.
    #[serde(rename = "__parentId", default)]
    pub parent: Option<String>,
    pub location: IdOnly<LocationId>,
    #[serde(default)]
    pub quantities: Vec<WireQuantity>,
}

impl WireLevel {
    pub(crate) fn into_model(self) -> RemoteLevel {
        RemoteLevel {
            location_id: self.location.id,
            available: self
                .quantities
                .into_iter()
                .find(|q| q.name == "available")
                .map(|q| q.quantity),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireInventoryItem {
    pub id: InventoryItemId,
    #[serde(default)]
    pub unit_cost: Option<Amount>,
    #[serde(default)]
    pub inventory_levels: Option<Nodes<WireLevel>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireVariant {
    pub id: ShopifyVariantId,
    /// The product it belongs to, in a bulk export line.
    #[serde(rename = "__parentId", default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub barcode: Option<String>,
    #[serde(default)]
    pub price: Option<String>,
    #[serde(default)]
    pub compare_at_price: Option<String>,
    #[serde(default)]
    pub position: Option<i64>,
    #[serde(default, deserialize_with = "shopsync_domain::time::utc_opt")]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub selected_options: Vec<SelectedOption>,
    #[serde(default)]
    pub inventory_item: Option<WireInventoryItem>,
}

impl WireVariant {
    pub(crate) fn into_model(self) -> RemoteVariant {
        let (inventory_item_id, unit_cost, levels) = match self.inventory_item {
            Some(item) => (
                Some(item.id),
                item.unit_cost.map(|c| c.amount),
                item.inventory_levels
                    .map(|l| l.nodes.into_iter().map(WireLevel::into_model).collect())
                    .unwrap_or_default(),
            ),
            None => (None, None, Vec::new()),
        };
        RemoteVariant {
            id: self.id,
            title: self.title,
            sku: self.sku,
            barcode: self.barcode,
            price: self.price,
            compare_at_price: self.compare_at_price,
            position: self.position,
            updated_at: self.updated_at,
            selected_options: self.selected_options,
            inventory_item_id,
            unit_cost,
            levels,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireProduct {
    pub id: ShopifyProductId,
    pub title: String,
    #[serde(default)]
    pub handle: Option<String>,
    #[serde(default)]
    pub description_html: Option<String>,
    #[serde(default)]
    pub vendor: Option<String>,
    #[serde(default)]
    pub product_type: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "shopsync_domain::time::utc_opt")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "shopsync_domain::time::utc")]
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub options: Vec<RemoteOption>,
    #[serde(default)]
    pub variants_count: Option<Count>,
    #[serde(default)]
    pub variants: Option<Connection<WireVariant>>,
}

impl WireProduct {
    pub(crate) fn into_model(self) -> RemoteProduct {
        let (variants, variants_cursor) = match self.variants {
            Some(conn) => (
                conn.nodes
                    .into_iter()
                    .map(WireVariant::into_model)
                    .collect(),
                conn.page_info.next(),
            ),
            None => (Vec::new(), None),
        };
        RemoteProduct {
            id: self.id,
            title: self.title,
            handle: self.handle,
            description_html: self.description_html,
            vendor: self.vendor,
            product_type: self.product_type,
            status: self.status,
            tags: self.tags,
            created_at: self.created_at,
            updated_at: self.updated_at,
            options: self.options,
            variants_count: self.variants_count.map(|c| c.count),
            variants,
            variants_cursor,
        }
    }
}

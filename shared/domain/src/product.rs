//! The merchant's product (the local side), with the spec's sync fields.

use crate::fields::{FieldPath, Fields, FieldsError};
use crate::ids::{
    Actor, InventoryItemId, LocationId, ProductId, ShopifyProductId, ShopifyVariantId, VariantKey,
};
use crate::money::{Money, Quantity};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A product's publication status (Shopify's `ProductStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatus {
    /// On sale.
    Active,
    /// Not yet published.
    #[default]
    Draft,
    /// Retired.
    Archived,
    /// Reachable by link, not listed.
    Unlisted,
}

/// A stock-keeping unit: trimmed, non-empty. Not unique in Shopify.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sku(String);

impl Sku {
    /// Parses a SKU; blank text is no SKU.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        (!text.is_empty()).then(|| Self(text.to_owned()))
    }
    /// The SKU's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sku {
    type Error = FieldsError;
    fn try_from(text: String) -> Result<Self, FieldsError> {
        Sku::parse(&text).ok_or(FieldsError::Invalid {
            path: "sku".into(),
            reason: "blank SKU".into(),
        })
    }
}

impl From<Sku> for String {
    fn from(sku: Sku) -> String {
        sku.0
    }
}

/// A product option (e.g. Size: S, M, L).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductOption {
    /// The option's name.
    pub name: String,
    /// Its values, in display order.
    pub values: Vec<String>,
}

/// One variant of a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// Stable local key.
    pub key: VariantKey,
    /// Shopify's variant id, once the variant exists in Shopify.
    pub shopify_id: Option<ShopifyVariantId>,
    /// Shopify's inventory item id for this variant.
    pub inventory_item_id: Option<InventoryItemId>,
    /// Display title (e.g. "S / Red").
    pub title: String,
    /// SKU, if any.
    pub sku: Option<Sku>,
    /// Barcode (EAN, UPC, ...), if any.
    pub barcode: Option<String>,
    /// Selling price.
    pub price: Money,
    /// Price shown struck through, if any.
    pub compare_at_price: Option<Money>,
    /// Unit cost (owned by Xorosoft by default).
    pub cost: Option<Money>,
    /// The variant's option values, in the order of the product's options.
    pub option_values: Vec<String>,
    /// 1-based position among the product's variants.
    pub position: u32,
    /// Available quantity per Shopify location.
    pub inventory: BTreeMap<LocationId, Quantity>,
}

/// The merchant-visible content of a product: everything that syncs and is versioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductContent {
    /// Title.
    pub title: String,
    /// Description (HTML).
    pub body_html: String,
    /// Vendor.
    pub vendor: String,
    /// Product type.
    pub product_type: String,
    /// URL handle.
    pub handle: String,
    /// Publication status.
    pub status: ProductStatus,
    /// Tags, as a set (Shopify sends one comma-separated string).
    pub tags: BTreeSet<String>,
    /// Options.
    pub options: Vec<ProductOption>,
    /// Variants, ordered by position.
    pub variants: Vec<Variant>,
}

impl Variant {
    /// This variant's fields, under `variants/{key}/` (see [`crate::fields`]).
    fn to_fields(&self) -> Fields {
        let mut fields = Fields::new();
        let mut put = |name: &str, value: Value| {
            fields.insert(
                FieldPath::new_unchecked(format!("variants/{}/{name}", self.key)),
                value,
            );
        };
        put("shopify_id", json!(self.shopify_id));
        put("inventory_item_id", json!(self.inventory_item_id));
        put("title", json!(self.title));
        put("sku", json!(self.sku));
        put("barcode", json!(self.barcode));
        put("price", json!(self.price));
        put("compare_at_price", json!(self.compare_at_price));
        put("cost", json!(self.cost));
        put("option_values", json!(self.option_values));
        put("position", json!(self.position));
        for (location, quantity) in &self.inventory {
            put(&format!("inventory/{location}"), json!(quantity));
        }
        fields
    }
}

/// The product-level fields of content (variants' fields are under `variants/{key}/`).
pub const PRODUCT_FIELDS: [&str; 8] = [
    "title",
    "body_html",
    "vendor",
    "product_type",
    "handle",
    "status",
    "tags",
    "options",
];

impl ProductContent {
    /// Parses Shopify's comma-separated tag string into a set of trimmed, non-empty tags.
    pub fn parse_tags(text: &str) -> BTreeSet<String> {
        text.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The content as a flat map of field paths to values (see [`crate::fields`]).
    pub fn to_fields(&self) -> Fields {
        let mut fields = Fields::new();
        let mut put = |path: String, value: Value| {
            fields.insert(FieldPath::new_unchecked(path), value);
        };
        put("title".into(), json!(self.title));
        put("body_html".into(), json!(self.body_html));
        put("vendor".into(), json!(self.vendor));
        put("product_type".into(), json!(self.product_type));
        put("handle".into(), json!(self.handle));
        put("status".into(), json!(self.status));
        put("tags".into(), json!(self.tags));
        put("options".into(), json!(self.options));
        for v in &self.variants {
            fields.extend(v.to_fields());
        }
        fields
    }

    /// The field changes from `self` to `to`: exactly `diff(&self.to_fields(), &to.to_fields())`,
    /// without flattening what is equal. Equal values serialize alike (money is normalized), so
    /// a field, or a whole variant, equal on both sides is skipped; one that differs is
    /// flattened and compared as JSON.
    pub fn diff_to(&self, to: &ProductContent) -> crate::fields::ChangeData {
        let mut changes = crate::fields::ChangeData::new();
        if self == to {
            return changes;
        }
        fn field<T: Serialize + PartialEq>(
            changes: &mut crate::fields::ChangeData,
            path: &str,
            old: &T,
            new: &T,
        ) {
            if old == new {
                return;
            }
            let (old, new) = (json!(old), json!(new));
            if old != new {
                changes.insert(
                    FieldPath::new_unchecked(path.to_owned()),
                    crate::fields::FieldChange {
                        old: Some(old),
                        new: Some(new),
                    },
                );
            }
        }
        field(&mut changes, "title", &self.title, &to.title);
        field(&mut changes, "body_html", &self.body_html, &to.body_html);
        field(&mut changes, "vendor", &self.vendor, &to.vendor);
        field(
            &mut changes,
            "product_type",
            &self.product_type,
            &to.product_type,
        );
        field(&mut changes, "handle", &self.handle, &to.handle);
        field(&mut changes, "status", &self.status, &to.status);
        field(&mut changes, "tags", &self.tags, &to.tags);
        field(&mut changes, "options", &self.options, &to.options);
        // By key, the last variant of a key winning, as in the flat map.
        fn by_key(variants: &[Variant]) -> BTreeMap<&VariantKey, &Variant> {
            variants.iter().map(|v| (&v.key, v)).collect()
        }
        let (old, new) = (by_key(&self.variants), by_key(&to.variants));
        for (key, before) in &old {
            match new.get(key) {
                Some(after) if before == after => {}
                after => changes.extend(crate::fields::diff(
                    &before.to_fields(),
                    &after.map(|a| a.to_fields()).unwrap_or_default(),
                )),
            }
        }
        for (key, after) in &new {
            if !old.contains_key(key) {
                changes.extend(crate::fields::created(after.to_fields()));
            }
        }
        changes
    }

    /// Rebuilds content from a flat field map; every required field must be present.
    pub fn from_fields(fields: &Fields) -> Result<Self, FieldsError> {
        let top = |name: &str| -> Result<&Value, FieldsError> {
            fields
                .get(name)
                .ok_or_else(|| FieldsError::Missing(name.to_owned()))
        };
        let mut variants: BTreeMap<&str, Vec<(&str, &Value)>> = BTreeMap::new();
        for (path, value) in fields.iter() {
            match path.as_str().strip_prefix("variants/") {
                Some(rest) => {
                    let (key, field) = rest
                        .split_once('/')
                        .ok_or_else(|| FieldsError::Unknown(path.to_string()))?;
                    variants.entry(key).or_default().push((field, value));
                }
                None if PRODUCT_FIELDS.contains(&path.as_str()) => {}
                None => return Err(FieldsError::Unknown(path.to_string())),
            }
        }
        let mut content = ProductContent {
            title: decode("title", top("title")?)?,
            body_html: decode("body_html", top("body_html")?)?,
            vendor: decode("vendor", top("vendor")?)?,
            product_type: decode("product_type", top("product_type")?)?,
            handle: decode("handle", top("handle")?)?,
            status: decode("status", top("status")?)?,
            tags: decode("tags", top("tags")?)?,
            options: decode("options", top("options")?)?,
            variants: Vec::with_capacity(variants.len()),
        };
        for (key, entries) in variants {
            content.variants.push(variant_from_fields(key, &entries)?);
        }
        content
            .variants
            .sort_by(|a, b| (a.position, &a.key).cmp(&(b.position, &b.key)));
        Ok(content)
    }
}

fn decode<T: serde::de::DeserializeOwned>(path: &str, value: &Value) -> Result<T, FieldsError> {
    serde_json::from_value(value.clone()).map_err(|e| FieldsError::Invalid {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn variant_from_fields(key: &str, entries: &[(&str, &Value)]) -> Result<Variant, FieldsError> {
    let path = |name: &str| format!("variants/{key}/{name}");
    let get = |name: &str| -> Result<&Value, FieldsError> {
        entries
            .iter()
            .find(|(f, _)| *f == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| FieldsError::Missing(path(name)))
    };
    let mut inventory = BTreeMap::new();
    for (field, value) in entries {
        if let Some(location) = field.strip_prefix("inventory/") {
            let location: LocationId =
                location
                    .parse()
                    .map_err(|e: crate::ids::IdError| FieldsError::Invalid {
                        path: path(field),
                        reason: e.to_string(),
                    })?;
            inventory.insert(location, decode(&path(field), value)?);
        } else if !matches!(
            *field,
            "shopify_id"
                | "inventory_item_id"
                | "title"
                | "sku"
                | "barcode"
                | "price"
                | "compare_at_price"
                | "cost"
                | "option_values"
                | "position"
        ) {
            return Err(FieldsError::Unknown(path(field)));
        }
    }
    Ok(Variant {
        key: VariantKey::parse(key).map_err(|e| FieldsError::Invalid {
            path: path(""),
            reason: e.to_string(),
        })?,
        shopify_id: decode(&path("shopify_id"), get("shopify_id")?)?,
        inventory_item_id: decode(&path("inventory_item_id"), get("inventory_item_id")?)?,
        title: decode(&path("title"), get("title")?)?,
        sku: decode(&path("sku"), get("sku")?)?,
        barcode: decode(&path("barcode"), get("barcode")?)?,
        price: decode(&path("price"), get("price")?)?,
        compare_at_price: decode(&path("compare_at_price"), get("compare_at_price")?)?,
        cost: decode(&path("cost"), get("cost")?)?,
        option_values: decode(&path("option_values"), get("option_values")?)?,
        position: decode(&path("position"), get("position")?)?,
        inventory,
    })
}

/// Who holds a product's sync lock, as seen at a given instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// Nobody.
    Free,
    /// Held until the lease ends.
    Held {
        /// The holder.
        by: Actor,
        /// When the lease ends.
        until: DateTime<Utc>,
    },
    /// Was held, but the lease has ended: anyone may take it over.
    Expired {
        /// The former holder.
        by: Actor,
    },
}

/// Why a lock could not be taken or released.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// Someone else holds an unexpired lease.
    #[error("product is locked by {by} until {until}")]
    HeldByOther {
        /// The holder.
        by: Actor,
        /// When the lease ends.
        until: DateTime<Utc>,
    },
    /// Only the holder may release a lock.
    #[error("{actor} does not hold the lock on this product")]
    NotHolder {
        /// Who tried.
        actor: Actor,
    },
    /// A lease must be positive.
    #[error("lock lease must be positive")]
    BadLease,
}

/// A product of the merchant's catalog with the spec's sync fields.
///
/// Stored as one JSON object, the content's fields beside the sync fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    /// Local id.
    pub id: ProductId,
    /// Shopify's id, once the product exists in Shopify.
    pub shopify_id: Option<ShopifyProductId>,
    /// The synced content.
    #[serde(flatten)]
    pub content: ProductContent,
    /// Current version number (1 for a new product; +1 per content change).
    pub version: u64,
    /// The version both sides agreed on at the last sync (0: never synced).
    pub last_sync_version: u64,
    /// Whether a sync lock is held (see `sync_lock_expires_at`).
    pub sync_locked: bool,
    /// Who holds the sync lock.
    pub sync_locked_by: Option<Actor>,
    /// When the lock's lease ends; an expired lock may be taken over.
    #[serde(serialize_with = "crate::time::write_utc_opt")]
    pub sync_lock_expires_at: Option<DateTime<Utc>>,
    /// Why the lock was taken, as its holder said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_lock_reason: Option<String>,
    /// Link to the Xorosoft item.
    pub xorosoft_id: Option<String>,
    /// Last time stock was updated from Xorosoft.
    #[serde(serialize_with = "crate::time::write_utc_opt")]
    pub stock_synced_at: Option<DateTime<Utc>>,
    /// Shopify's `updated_at` of the last remote state applied (orders webhooks).
    #[serde(serialize_with = "crate::time::write_utc_opt")]
    pub shopify_updated_at: Option<DateTime<Utc>>,
    /// Created.
    #[serde(serialize_with = "crate::time::write_utc")]
    pub created_at: DateTime<Utc>,
    /// Last content change.
    #[serde(serialize_with = "crate::time::write_utc")]
    pub updated_at: DateTime<Utc>,
}

/// A product's stored form, read field by field. `#[serde(flatten)]` would read the object
/// into an intermediate buffer first, which cost most of a product's decoding.
#[derive(Deserialize)]
struct StoredProduct {
    id: ProductId,
    shopify_id: Option<ShopifyProductId>,
    title: String,
    body_html: String,
    vendor: String,
    product_type: String,
    handle: String,
    status: ProductStatus,
    tags: BTreeSet<String>,
    options: Vec<ProductOption>,
    variants: Vec<Variant>,
    version: u64,
    last_sync_version: u64,
    sync_locked: bool,
    sync_locked_by: Option<Actor>,
    #[serde(default, deserialize_with = "crate::time::utc_opt")]
    sync_lock_expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    sync_lock_reason: Option<String>,
    xorosoft_id: Option<String>,
    #[serde(default, deserialize_with = "crate::time::utc_opt")]
    stock_synced_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "crate::time::utc_opt")]
    shopify_updated_at: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "crate::time::utc")]
    created_at: DateTime<Utc>,
    #[serde(deserialize_with = "crate::time::utc")]
    updated_at: DateTime<Utc>,
}

impl<'de> Deserialize<'de> for Product {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = StoredProduct::deserialize(deserializer)?;
        Ok(Product {
            id: stored.id,
            shopify_id: stored.shopify_id,
            content: ProductContent {
                title: stored.title,
                body_html: stored.body_html,
                vendor: stored.vendor,
                product_type: stored.product_type,
                handle: stored.handle,
                status: stored.status,
                tags: stored.tags,
                options: stored.options,
                variants: stored.variants,
            },
            version: stored.version,
            last_sync_version: stored.last_sync_version,
            sync_locked: stored.sync_locked,
            sync_locked_by: stored.sync_locked_by,
            sync_lock_expires_at: stored.sync_lock_expires_at,
            sync_lock_reason: stored.sync_lock_reason,
            xorosoft_id: stored.xorosoft_id,
            stock_synced_at: stored.stock_synced_at,
            shopify_updated_at: stored.shopify_updated_at,
            created_at: stored.created_at,
            updated_at: stored.updated_at,
        })
    }
}

impl Product {
    /// A new local product at version 1, never synced.
    pub fn new(id: ProductId, content: ProductContent, now: DateTime<Utc>) -> Self {
        Self {
            id,
            shopify_id: None,
            content,
            version: 1,
            last_sync_version: 0,
            sync_locked: false,
            sync_locked_by: None,
            sync_lock_expires_at: None,
            sync_lock_reason: None,
            xorosoft_id: None,
            stock_synced_at: None,
            shopify_updated_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether local changes wait to be pushed to Shopify.
    pub fn needs_push(&self) -> bool {
        self.version > self.last_sync_version
    }

    /// Replaces the content and bumps the version; returns the field changes (empty: nothing
    /// changed and the version stays).
    pub fn change_content(
        &mut self,
        content: ProductContent,
        now: DateTime<Utc>,
    ) -> crate::fields::ChangeData {
        let changes = self.content.diff_to(&content);
        if !changes.is_empty() {
            self.content = content;
            self.version += 1;
            self.updated_at = now;
        }
        changes
    }

    /// The lock as seen at `now`.
    pub fn lock_state(&self, now: DateTime<Utc>) -> LockState {
        match (
            &self.sync_locked,
            &self.sync_locked_by,
            self.sync_lock_expires_at,
        ) {
            (true, Some(by), Some(until)) if until > now => LockState::Held {
                by: by.clone(),
                until,
            },
            (true, Some(by), _) => LockState::Expired { by: by.clone() },
            _ => LockState::Free,
        }
    }

    /// Takes (or renews) the lock for `actor` for `lease`; an expired lease is taken over.
    pub fn lock(
        &mut self,
        actor: &Actor,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<(), LockError> {
        if lease <= Duration::zero() {
            return Err(LockError::BadLease);
        }
        if let LockState::Held { by, until } = self.lock_state(now) {
            if &by != actor {
                return Err(LockError::HeldByOther { by, until });
            }
        }
        self.sync_locked = true;
        self.sync_locked_by = Some(actor.clone());
        self.sync_lock_expires_at = Some(now + lease);
        Ok(())
    }

    /// Releases the lock whoever holds it (an admin's override); returns who held it.
    pub fn break_lock(&mut self) -> Option<Actor> {
        let held_by = self.sync_locked_by.take().filter(|_| self.sync_locked);
        self.sync_locked = false;
        self.sync_lock_expires_at = None;
        self.sync_lock_reason = None;
        held_by
    }

    /// Releases the lock; only its holder may (an expired lease too, so a holder can tidy up).
    pub fn unlock(&mut self, actor: &Actor) -> Result<(), LockError> {
        if !self.sync_locked || self.sync_locked_by.as_ref() != Some(actor) {
            return Err(LockError::NotHolder {
                actor: actor.clone(),
            });
        }
        self.sync_locked = false;
        self.sync_locked_by = None;
        self.sync_lock_expires_at = None;
        self.sync_lock_reason = None;
        Ok(())
    }

    /// Whether `actor` may change this product now (no one else holds an unexpired lock).
    pub fn writable_by(&self, actor: &Actor, now: DateTime<Utc>) -> Result<(), LockError> {
        match self.lock_state(now) {
            LockState::Held { by, until } if &by != actor => {
                Err(LockError::HeldByOther { by, until })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample_content;

    #[test]
    fn content_round_trips_through_fields() {
        let content = sample_content(3);
        let back = ProductContent::from_fields(&content.to_fields()).unwrap();
        assert_eq!(back, content);
    }

    #[test]
    fn from_fields_names_what_is_missing_or_unknown() {
        let mut fields = sample_content(1).to_fields();
        fields.remove("title");
        assert_eq!(
            ProductContent::from_fields(&fields),
            Err(FieldsError::Missing("title".into()))
        );
        let mut fields = sample_content(1).to_fields();
        fields.insert(FieldPath::new_unchecked("colour".into()), json!("red"));
        assert!(matches!(
            ProductContent::from_fields(&fields),
            Err(FieldsError::Unknown(_))
        ));
    }

    #[test]
    fn changing_content_bumps_version_only_when_something_changed() {
        let now = Utc::now();
        let mut product = Product::new(ProductId::generate(), sample_content(1), now);
        assert!(product.change_content(sample_content(1), now).is_empty());
        assert_eq!(product.version, 1);
        let mut edited = sample_content(1);
        edited.title = "New title".into();
        let changes = product.change_content(edited, now);
        assert_eq!(changes.len(), 1);
        assert_eq!(product.version, 2);
        assert!(product.needs_push());
    }

    /// Edits that touch every kind of field, alone and in pairs on both sides.
    type Edit = (&'static str, fn(&mut ProductContent));

    fn edits() -> Vec<Edit> {
        vec![
            ("none", |_| {}),
            ("title", |c| c.title = "Other".into()),
            ("status", |c| c.status = ProductStatus::Draft),
            ("tags", |c| {
                c.tags.insert("sale".into());
            }),
            ("options", |c| c.options[0].values.push("XL".into())),
            ("price", |c| c.variants[0].price = Money::from_cents(1)),
            ("same price, other scale", |c| {
                c.variants[0].price = "60.000".parse().unwrap_or(Money::ZERO)
            }),
            ("sku removed", |c| c.variants[1].sku = None),
            ("stock", |c| {
                c.variants[0].inventory.values_mut().for_each(|q| q.0 += 1)
            }),
            ("new location", |c| {
                c.variants[2]
                    .inventory
                    .insert(LocationId::new(9).unwrap(), Quantity(0));
            }),
            ("variant removed", |c| {
                c.variants.remove(1);
            }),
            ("variant added", |c| {
                let mut extra = c.variants[0].clone();
                extra.key = VariantKey::parse("v9999").unwrap();
                extra.position = 9;
                c.variants.push(extra);
            }),
            ("variants reordered", |c| c.variants.reverse()),
            ("a key twice", |c| {
                let mut twin = c.variants[0].clone();
                twin.title = "Twin".into();
                c.variants.push(twin);
            }),
        ]
    }

    #[test]
    fn the_structural_diff_is_the_flat_maps_diff() {
        let edits = edits();
        for (from_name, from_edit) in &edits {
            for (to_name, to_edit) in &edits {
                let (mut from, mut to) = (sample_content(3), sample_content(3));
                from_edit(&mut from);
                to_edit(&mut to);
                assert_eq!(
                    from.diff_to(&to),
                    crate::fields::diff(&from.to_fields(), &to.to_fields()),
                    "from `{from_name}` to `{to_name}`"
                );
            }
        }
        // The same amount at another scale is the same field; a real change is seen.
        let mut rescaled = sample_content(3);
        rescaled.variants[0].price = "60.000".parse().unwrap();
        assert!(sample_content(3).diff_to(&rescaled).is_empty());
        let mut edited = sample_content(3);
        edited.variants[0].inventory.clear();
        assert_eq!(sample_content(3).diff_to(&edited).len(), 2);
    }

    /// What `#[derive(Deserialize)]` with a flattened content read (the reference).
    #[derive(Deserialize)]
    struct FlattenedProduct {
        id: ProductId,
        shopify_id: Option<ShopifyProductId>,
        #[serde(flatten)]
        content: ProductContent,
        version: u64,
        last_sync_version: u64,
        sync_locked: bool,
        sync_locked_by: Option<Actor>,
        sync_lock_expires_at: Option<DateTime<Utc>>,
        #[serde(default)]
        sync_lock_reason: Option<String>,
        xorosoft_id: Option<String>,
        stock_synced_at: Option<DateTime<Utc>>,
        shopify_updated_at: Option<DateTime<Utc>>,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    }

    impl From<FlattenedProduct> for Product {
        fn from(p: FlattenedProduct) -> Self {
            Product {
                id: p.id,
                shopify_id: p.shopify_id,
                content: p.content,
                version: p.version,
                last_sync_version: p.last_sync_version,
                sync_locked: p.sync_locked,
                sync_locked_by: p.sync_locked_by,
                sync_lock_expires_at: p.sync_lock_expires_at,
                sync_lock_reason: p.sync_lock_reason,
                xorosoft_id: p.xorosoft_id,
                stock_synced_at: p.stock_synced_at,
                shopify_updated_at: p.shopify_updated_at,
                created_at: p.created_at,
                updated_at: p.updated_at,
            }
        }
    }

    #[test]
    fn products_read_back_as_the_flattened_form_read_them() {
        let now = Utc::now();
        let mut product = Product::new(ProductId::generate(), sample_content(3), now);
        product.shopify_id = ShopifyProductId::new(7_001).ok();
        product.xorosoft_id = Some("XS-1".into());
        product
            .lock(&Actor::new("alice").unwrap(), now, Duration::seconds(30))
            .unwrap();
        let stored = serde_json::to_value(&product).unwrap();
        assert_eq!(
            stored["title"],
            json!("Merino Crew Sweater"),
            "content is flattened"
        );
        let back: Product = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(back, product);

        // Optional fields absent, and a field this release does not know: read as before.
        let mut sparse = stored;
        let object = sparse.as_object_mut().unwrap();
        for optional in [
            "shopify_id",
            "sync_locked_by",
            "sync_lock_expires_at",
            "xorosoft_id",
        ] {
            object.remove(optional);
        }
        object.insert("from_a_later_release".into(), json!({"any": [1, 2]}));
        let text = sparse.to_string();
        let read: Product = serde_json::from_str(&text).unwrap();
        let reference: FlattenedProduct = serde_json::from_str(&text).unwrap();
        assert_eq!(read.shopify_id, None);
        assert_eq!(read, Product::from(reference));

        // A required field missing is an error naming it, in both.
        let mut broken = serde_json::to_value(&product).unwrap();
        broken.as_object_mut().unwrap().remove("handle");
        let error = serde_json::from_value::<Product>(broken.clone()).unwrap_err();
        assert!(error.to_string().contains("handle"), "{error}");
        assert!(serde_json::from_value::<FlattenedProduct>(broken).is_err());
    }

    #[test]
    fn locks_have_an_owner_and_a_lease() {
        let now = Utc::now();
        let alice = Actor::new("alice").unwrap();
        let bob = Actor::new("bob").unwrap();
        let mut product = Product::new(ProductId::generate(), sample_content(1), now);
        product.lock(&alice, now, Duration::seconds(30)).unwrap();
        assert!(matches!(
            product.lock(&bob, now, Duration::seconds(30)),
            Err(LockError::HeldByOther { .. })
        ));
        assert!(product.writable_by(&bob, now).is_err());
        assert_eq!(
            product.unlock(&bob),
            Err(LockError::NotHolder { actor: bob.clone() })
        );
        let later = now + Duration::seconds(31);
        assert_eq!(
            product.lock_state(later),
            LockState::Expired { by: alice.clone() }
        );
        product.lock(&bob, later, Duration::seconds(30)).unwrap();
        assert_eq!(product.sync_locked_by, Some(bob.clone()));
        product.unlock(&bob).unwrap();
        assert_eq!(product.lock_state(later), LockState::Free);
        assert_eq!(
            product.lock(&alice, now, Duration::zero()),
            Err(LockError::BadLease)
        );
    }
}

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
            let p = |name: &str| format!("variants/{}/{name}", v.key);
            put(p("shopify_id"), json!(v.shopify_id));
            put(p("inventory_item_id"), json!(v.inventory_item_id));
            put(p("title"), json!(v.title));
            put(p("sku"), json!(v.sku));
            put(p("barcode"), json!(v.barcode));
            put(p("price"), json!(v.price));
            put(p("compare_at_price"), json!(v.compare_at_price));
            put(p("cost"), json!(v.cost));
            put(p("option_values"), json!(v.option_values));
            put(p("position"), json!(v.position));
            for (location, quantity) in &v.inventory {
                put(p(&format!("inventory/{location}")), json!(quantity));
            }
        }
        fields
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
                None if [
                    "title",
                    "body_html",
                    "vendor",
                    "product_type",
                    "handle",
                    "status",
                    "tags",
                    "options",
                ]
                .contains(&path.as_str()) => {}
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    pub sync_lock_expires_at: Option<DateTime<Utc>>,
    /// Link to the Xorosoft item.
    pub xorosoft_id: Option<String>,
    /// Last time stock was updated from Xorosoft.
    pub stock_synced_at: Option<DateTime<Utc>>,
    /// Shopify's `updated_at` of the last remote state applied (orders webhooks).
    pub shopify_updated_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last content change.
    pub updated_at: DateTime<Utc>,
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
        let changes = crate::fields::diff(&self.content.to_fields(), &content.to_fields());
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

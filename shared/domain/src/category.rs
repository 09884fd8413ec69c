//! Categories: the merchant's grouping of products, a Shopify collection remotely.

use crate::fields::{FieldPath, Fields, FieldsError};
use crate::ids::{CategoryId, ShopifyCollectionId, ShopifyProductId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeSet;

/// Whether a collection's products are chosen by hand or by rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CategoryKind {
    /// A custom collection: its products are listed (shopsync pushes and restores these).
    #[default]
    Custom,
    /// A smart collection: Shopify chooses its products by its rules (read and versioned only).
    Smart,
}

/// The synced content of a category. Its membership lives here (the Shopify ids of its
/// products), not in the products' content, so a product's versions never change because a
/// collection did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryContent {
    /// Title.
    pub title: String,
    /// URL handle.
    pub handle: String,
    /// Description (HTML).
    pub body_html: String,
    /// Shopify's sort order name (e.g. `BEST_SELLING`, `MANUAL`).
    pub sort_order: String,
    /// Custom or smart.
    #[serde(default)]
    pub kind: CategoryKind,
    /// A smart collection's rules, as Shopify gives them (`appliedDisjunctively`, `rules`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<serde_json::Value>,
    /// The products in it.
    #[serde(default)]
    pub products: BTreeSet<ShopifyProductId>,
}

/// The fields of a category's content.
const CATEGORY_FIELDS: [&str; 7] = [
    "title",
    "handle",
    "body_html",
    "sort_order",
    "kind",
    "rules",
    "products",
];

impl CategoryContent {
    /// The content as a flat field map.
    pub fn to_fields(&self) -> Fields {
        [
            ("title", json!(self.title)),
            ("handle", json!(self.handle)),
            ("body_html", json!(self.body_html)),
            ("sort_order", json!(self.sort_order)),
            ("kind", json!(self.kind)),
            ("rules", json!(self.rules)),
            ("products", json!(self.products)),
        ]
        .into_iter()
        .map(|(p, v)| (FieldPath::new_unchecked(p.into()), v))
        .collect()
    }

    /// Rebuilds content from a flat field map.
    pub fn from_fields(fields: &Fields) -> Result<Self, FieldsError> {
        if let Some(unknown) = fields
            .keys()
            .find(|p| !CATEGORY_FIELDS.contains(&p.as_str()))
        {
            return Err(FieldsError::Unknown(unknown.to_string()));
        }
        fn field<T: serde::de::DeserializeOwned>(
            fields: &Fields,
            name: &str,
        ) -> Result<T, FieldsError> {
            let value = fields
                .get(name)
                .ok_or_else(|| FieldsError::Missing(name.into()))?;
            serde_json::from_value(value.clone()).map_err(|e| FieldsError::Invalid {
                path: name.into(),
                reason: e.to_string(),
            })
        }
        Ok(Self {
            title: field(fields, "title")?,
            handle: field(fields, "handle")?,
            body_html: field(fields, "body_html")?,
            sort_order: field(fields, "sort_order")?,
            kind: field(fields, "kind")?,
            rules: field(fields, "rules")?,
            products: field(fields, "products")?,
        })
    }
}

/// A category with its sync fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// Local id.
    pub id: CategoryId,
    /// Shopify's collection id, once it exists there.
    pub shopify_id: Option<ShopifyCollectionId>,
    /// Content.
    #[serde(flatten)]
    pub content: CategoryContent,
    /// Current version.
    pub version: u64,
    /// Version at the last sync (0: never).
    pub last_sync_version: u64,
    /// Shopify's `updatedAt` of the copy last taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shopify_updated_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last content change.
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_content_round_trips_through_fields() {
        let c = CategoryContent {
            title: "Shoes".into(),
            handle: "shoes".into(),
            body_html: String::new(),
            sort_order: "MANUAL".into(),
            kind: CategoryKind::Smart,
            rules: Some(
                json!({"appliedDisjunctively": false, "rules": [{"column": "TAG", "relation": "EQUALS", "condition": "shoe"}]}),
            ),
            products: [ShopifyProductId::new(7).unwrap()].into(),
        };
        assert_eq!(CategoryContent::from_fields(&c.to_fields()).unwrap(), c);
        let mut f = c.to_fields();
        f.remove("handle");
        assert_eq!(
            CategoryContent::from_fields(&f),
            Err(FieldsError::Missing("handle".into()))
        );
    }
}

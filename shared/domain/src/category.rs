//! Categories: the merchant's grouping of products, a Shopify collection remotely.

use crate::fields::{FieldPath, Fields, FieldsError};
use crate::ids::{CategoryId, ShopifyCollectionId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The synced content of a category.
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
}

impl CategoryContent {
    /// The content as a flat field map.
    pub fn to_fields(&self) -> Fields {
        [
            ("title", json!(self.title)),
            ("handle", json!(self.handle)),
            ("body_html", json!(self.body_html)),
            ("sort_order", json!(self.sort_order)),
        ]
        .into_iter()
        .map(|(p, v)| (FieldPath::new_unchecked(p.into()), v))
        .collect()
    }

    /// Rebuilds content from a flat field map.
    pub fn from_fields(fields: &Fields) -> Result<Self, FieldsError> {
        if let Some(unknown) = fields
            .keys()
            .find(|p| !["title", "handle", "body_html", "sort_order"].contains(&p.as_str()))
        {
            return Err(FieldsError::Unknown(unknown.to_string()));
        }
        let text = |name: &str| -> Result<String, FieldsError> {
            let value = fields
                .get(name)
                .ok_or_else(|| FieldsError::Missing(name.into()))?;
            value
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| FieldsError::Invalid {
                    path: name.into(),
                    reason: "expected a string".into(),
                })
        };
        Ok(Self {
            title: text("title")?,
            handle: text("handle")?,
            body_html: text("body_html")?,
            sort_order: text("sort_order")?,
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

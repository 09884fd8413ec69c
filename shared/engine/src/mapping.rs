//! Shopify's product shape to the domain's.
//!
//! Variant keys are derived from Shopify's variant id (`s{id}`), so reading the same product
//! twice gives the same content and a re-run stages nothing new.

use crate::error::EngineError;
use shopsync_domain::product::{ProductContent, ProductOption, ProductStatus, Sku, Variant};
use shopsync_domain::{Money, Quantity, ShopifyProductId, VariantKey};
use shopsync_shopify::model::{RemoteProduct, RemoteVariant};
use std::collections::BTreeMap;

/// The key of the local variant that mirrors a Shopify variant.
pub fn variant_key(variant: &RemoteVariant) -> VariantKey {
    VariantKey::of_shopify(variant.id)
}

fn status(text: Option<&str>) -> ProductStatus {
    match text.map(str::to_ascii_uppercase).as_deref() {
        Some("ACTIVE") => ProductStatus::Active,
        Some("ARCHIVED") => ProductStatus::Archived,
        Some("UNLISTED") => ProductStatus::Unlisted,
        _ => ProductStatus::Draft,
    }
}

fn money(product: ShopifyProductId, field: &str, text: &str) -> Result<Money, EngineError> {
    text.parse().map_err(|e| EngineError::Mapping {
        product: product.to_string(),
        reason: format!("{field} `{text}`: {e}"),
    })
}

/// The domain content of a Shopify product. Every variant must have been read
/// ([`RemoteProduct::variants_complete`]); an incomplete product is refused rather than
/// mistaken for one whose variants were deleted.
pub fn content_from_remote(remote: &RemoteProduct) -> Result<ProductContent, EngineError> {
    into_content(remote.clone())
}

/// [`content_from_remote`] for a product that is not needed afterwards: its strings move
/// into the content instead of being copied (a bulk import maps every product once).
pub fn into_content(remote: RemoteProduct) -> Result<ProductContent, EngineError> {
    if !remote.variants_complete() {
        return Err(EngineError::Mapping {
            product: remote.id.to_string(),
            reason: "not every variant was read; page the rest before mapping".into(),
        });
    }
    let id = remote.id;
    let mut variants = Vec::with_capacity(remote.variants.len());
    for (index, v) in remote.variants.into_iter().enumerate() {
        let price = match v.price.as_deref() {
            Some(p) => money(id, "price", p)?,
            None => Money::from_cents(0),
        };
        let compare_at_price = v
            .compare_at_price
            .as_deref()
            .map(|p| money(id, "compareAtPrice", p))
            .transpose()?;
        let cost = v
            .unit_cost
            .as_deref()
            .map(|p| money(id, "unitCost", p))
            .transpose()?;
        let inventory: BTreeMap<_, _> = v
            .levels
            .iter()
            .filter_map(|l| l.available.map(|q| (l.location_id, Quantity(q))))
            .collect();
        variants.push(Variant {
            key: variant_key(&v),
            shopify_id: Some(v.id),
            inventory_item_id: v.inventory_item_id,
            sku: v.sku.as_deref().and_then(Sku::parse),
            title: v.title.unwrap_or_default(),
            barcode: v.barcode.filter(|b| !b.is_empty()),
            price,
            compare_at_price,
            cost,
            option_values: v.selected_options.into_iter().map(|o| o.value).collect(),
            position: v
                .position
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or(index as u32 + 1),
            inventory,
        });
    }
    Ok(ProductContent {
        title: remote.title,
        body_html: remote.description_html.unwrap_or_default(),
        vendor: remote.vendor.unwrap_or_default(),
        product_type: remote.product_type.unwrap_or_default(),
        handle: remote.handle.unwrap_or_default(),
        status: status(remote.status.as_deref()),
        tags: remote
            .tags
            .into_iter()
            .map(|t| match t.trim() {
                trimmed if trimmed.len() == t.len() => t,
                trimmed => trimmed.to_owned(),
            })
            .filter(|t| !t.is_empty())
            .collect(),
        options: remote
            .options
            .into_iter()
            .map(|o| ProductOption {
                name: o.name,
                values: o.values,
            })
            .collect(),
        variants,
    })
}

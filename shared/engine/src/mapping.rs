//! Shopify's product shape to the domain's.
//!
//! Variant keys are derived from Shopify's variant id (`s{id}`), so reading the same product
//! twice gives the same content and a re-run stages nothing new.

use crate::error::EngineError;
use shopsync_domain::product::{ProductContent, ProductOption, ProductStatus, Sku, Variant};
use shopsync_domain::{Money, Quantity, VariantKey};
use shopsync_shopify::model::{RemoteProduct, RemoteVariant};
use std::collections::BTreeMap;

/// The key of the local variant that mirrors a Shopify variant.
pub fn variant_key(variant: &RemoteVariant) -> Result<VariantKey, EngineError> {
    VariantKey::parse(&format!("s{}", variant.id)).map_err(|e| EngineError::Mapping {
        product: variant.id.to_string(),
        reason: e.to_string(),
    })
}

fn status(text: Option<&str>) -> ProductStatus {
    match text.map(str::to_ascii_uppercase).as_deref() {
        Some("ACTIVE") => ProductStatus::Active,
        Some("ARCHIVED") => ProductStatus::Archived,
        Some("UNLISTED") => ProductStatus::Unlisted,
        _ => ProductStatus::Draft,
    }
}

fn money(product: &RemoteProduct, field: &str, text: &str) -> Result<Money, EngineError> {
    text.parse().map_err(|e| EngineError::Mapping {
        product: product.id.to_string(),
        reason: format!("{field} `{text}`: {e}"),
    })
}

/// The domain content of a Shopify product. Every variant must have been read
/// ([`RemoteProduct::variants_complete`]); an incomplete product is refused rather than
/// mistaken for one whose variants were deleted.
pub fn content_from_remote(remote: &RemoteProduct) -> Result<ProductContent, EngineError> {
    if !remote.variants_complete() {
        return Err(EngineError::Mapping {
            product: remote.id.to_string(),
            reason: "not every variant was read; page the rest before mapping".into(),
        });
    }
    let mut variants = Vec::with_capacity(remote.variants.len());
    for (index, v) in remote.variants.iter().enumerate() {
        let price = match v.price.as_deref() {
            Some(p) => money(remote, "price", p)?,
            None => Money::from_cents(0),
        };
        let compare_at_price = v
            .compare_at_price
            .as_deref()
            .map(|p| money(remote, "compareAtPrice", p))
            .transpose()?;
        let cost = v
            .unit_cost
            .as_deref()
            .map(|p| money(remote, "unitCost", p))
            .transpose()?;
        let inventory: BTreeMap<_, _> = v
            .levels
            .iter()
            .filter_map(|l| l.available.map(|q| (l.location_id, Quantity(q))))
            .collect();
        variants.push(Variant {
            key: variant_key(v)?,
            shopify_id: Some(v.id),
            inventory_item_id: v.inventory_item_id,
            title: v.title.clone().unwrap_or_default(),
            sku: v.sku.as_deref().and_then(Sku::parse),
            barcode: v.barcode.clone().filter(|b| !b.is_empty()),
            price,
            compare_at_price,
            cost,
            option_values: v.selected_options.iter().map(|o| o.value.clone()).collect(),
            position: v
                .position
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or(index as u32 + 1),
            inventory,
        });
    }
    Ok(ProductContent {
        title: remote.title.clone(),
        body_html: remote.description_html.clone().unwrap_or_default(),
        vendor: remote.vendor.clone().unwrap_or_default(),
        product_type: remote.product_type.clone().unwrap_or_default(),
        handle: remote.handle.clone().unwrap_or_default(),
        status: status(remote.status.as_deref()),
        tags: remote
            .tags
            .iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
        options: remote
            .options
            .iter()
            .map(|o| ProductOption {
                name: o.name.clone(),
                values: o.values.clone(),
            })
            .collect(),
        variants,
    })
}

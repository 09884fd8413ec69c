//! Builders of realistic sample data, for tests and benchmarks of every crate.

use crate::fields::ChangeData;
use crate::ids::{
    Actor, InventoryItemId, LocationId, OperationId, ProductId, ShopifyVariantId, StagingId,
    VariantKey,
};
use crate::money::{Money, Quantity};
use crate::product::{ProductContent, ProductOption, ProductStatus, Sku, Variant};
use crate::staging::{ChangeType, ProductsStaging, StagingStatus};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// A product with `variants` sizes, prices, SKUs, barcodes and stock at two locations.
pub fn sample_content(variants: usize) -> ProductContent {
    let sizes: Vec<String> = (0..variants).map(|i| format!("Size {i}")).collect();
    ProductContent {
        title: "Merino Crew Sweater".into(),
        body_html: "<p>Soft, warm, machine washable.</p>".into(),
        vendor: "Northwind".into(),
        product_type: "Sweaters".into(),
        handle: "merino-crew-sweater".into(),
        status: ProductStatus::Active,
        tags: ProductContent::parse_tags("wool, winter, bestseller"),
        options: vec![ProductOption {
            name: "Size".into(),
            values: sizes.clone(),
        }],
        variants: (0..variants)
            .map(|i| sample_variant(i, &sizes[i]))
            .collect(),
    }
}

fn sample_variant(i: usize, size: &str) -> Variant {
    let n = i as u64 + 1;
    let location = |id: u64| LocationId::new(id).unwrap_or_else(|_| unreachable!("non-zero"));
    Variant {
        key: VariantKey::parse(&format!("v{n:04}")).unwrap_or_else(|_| unreachable!("valid key")),
        shopify_id: ShopifyVariantId::new(44_000_000_000_000 + n).ok(),
        inventory_item_id: InventoryItemId::new(46_000_000_000_000 + n).ok(),
        title: size.to_owned(),
        sku: Sku::parse(&format!("MCS-{n:04}")),
        barcode: Some(format!("40000000{n:05}")),
        price: Money::from_cents(5900 + 100 * (n % 5)),
        compare_at_price: None,
        cost: Some(Money::from_cents(2150)),
        option_values: vec![size.to_owned()],
        position: n as u32,
        inventory: BTreeMap::from([
            (location(61_000_000_001), Quantity(10 + n as i64)),
            (location(61_000_000_002), Quantity(3)),
        ]),
    }
}

/// A pending update of `product` in `operation` (base version 1, nothing proposed, no field
/// listed), staged by `staged_by` at `staged_at`: tests set what they need on top.
pub fn sample_row(
    operation: OperationId,
    product: ProductId,
    staged_by: Actor,
    staged_at: DateTime<Utc>,
) -> ProductsStaging {
    ProductsStaging {
        id: StagingId::generate(),
        source_product_id: product,
        sku: Sku::parse("MCS-0001"),
        name: "Merino Crew Sweater".into(),
        change_type: ChangeType::Update,
        change_data: ChangeData::new(),
        base_version: 1,
        proposed: None,
        has_conflicts: false,
        sync_operation_id: operation,
        status: StagingStatus::Pending,
        staged_by,
        staged_at,
        reviewed_by: None,
        reviewed_at: None,
        applied_at: None,
        error: None,
        shopify: None,
        merged: false,
        origin: None,
        contributions: Default::default(),
        rolls_back: None,
        agreed_version: None,
    }
}

//! A person's edit of a local product: which fields, which variants, and the checks that
//! refuse an edit naming the field at fault.

use crate::{LocationId, Money, ProductContent, ProductStatus, Quantity, ShopifyVariantId};
use std::collections::BTreeSet;

/// How an edit names a variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariantRef {
    /// Its Shopify id (a number or a `gid://shopify/ProductVariant/N`).
    Shopify(ShopifyVariantId),
    /// Its local key.
    Key(String),
    /// Its SKU (it must name exactly one variant of the product).
    Sku(String),
}

/// The changes to one variant; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VariantEdit {
    /// Which variant (`variants[i].id` or `variants[i].sku`).
    pub variant: Option<VariantRef>,
    /// New price.
    pub price: Option<Money>,
    /// New compare-at price (`Some(None)` removes it).
    pub compare_at_price: Option<Option<Money>>,
    /// New barcode (`Some(None)` removes it).
    pub barcode: Option<Option<String>>,
    /// New cost (`Some(None)` removes it).
    pub cost: Option<Option<Money>>,
    /// New available quantities, per location.
    pub inventory: Vec<(LocationId, Quantity)>,
}

/// The changes to a product; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProductEdit {
    /// New title.
    pub title: Option<String>,
    /// New description (HTML).
    pub body_html: Option<String>,
    /// New vendor.
    pub vendor: Option<String>,
    /// New product type.
    pub product_type: Option<String>,
    /// New tags (the whole set).
    pub tags: Option<BTreeSet<String>>,
    /// New status.
    pub status: Option<ProductStatus>,
    /// Variant changes.
    pub variants: Vec<VariantEdit>,
}

/// Why an edit is refused: the field at fault (a JSON path such as `variants[1].barcode`)
/// and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct EditRefused {
    /// The field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn refuse(field: impl Into<String>, message: impl Into<String>) -> EditRefused {
    EditRefused {
        field: field.into(),
        message: message.into(),
    }
}

/// Checks a barcode: printable, without spaces, at most 64 characters, not a number a
/// spreadsheet wrote in scientific notation; a GS1 code (8, 12, 13 or 14 digits) must carry
/// its check digit.
pub fn check_barcode(barcode: &str) -> Result<(), String> {
    if barcode.is_empty() || barcode.chars().count() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    if !barcode.chars().all(|c| c.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".into());
    }
    let lower = barcode.to_ascii_lowercase();
    if lower.contains("e+") && lower.chars().any(|c| c == '.') {
        return Err("looks like a number in scientific notation (what a spreadsheet makes of a long barcode); give its digits".into());
    }
    if barcode.bytes().all(|b| b.is_ascii_digit()) && matches!(barcode.len(), 8 | 12 | 13 | 14) {
        let digits: Vec<u32> = barcode.bytes().map(|b| u32::from(b - b'0')).collect();
        let (body, check) = digits.split_at(digits.len() - 1);
        let sum: u32 = body
            .iter()
            .rev()
            .enumerate()
            .map(|(i, d)| if i % 2 == 0 { d * 3 } else { *d })
            .sum();
        if (10 - sum % 10) % 10 != check[0] {
            return Err(format!(
                "{barcode} is a {}-digit GS1 code with a wrong check digit",
                barcode.len()
            ));
        }
    }
    Ok(())
}

/// The content an edit makes of `content`, or the first field it cannot take.
pub fn apply_edit(
    content: &ProductContent,
    edit: &ProductEdit,
) -> Result<ProductContent, EditRefused> {
    let mut next = content.clone();
    if let Some(title) = &edit.title {
        if title.trim().is_empty() {
            return Err(refuse("title", "must not be empty"));
        }
        if title.chars().count() > 255 {
            return Err(refuse("title", "must be at most 255 characters"));
        }
        next.title = title.clone();
    }
    if let Some(body) = &edit.body_html {
        next.body_html = body.clone();
    }
    if let Some(vendor) = &edit.vendor {
        next.vendor = vendor.clone();
    }
    if let Some(product_type) = &edit.product_type {
        next.product_type = product_type.clone();
    }
    if let Some(tags) = &edit.tags {
        if let Some(bad) = tags.iter().find(|t| t.trim().is_empty() || t.contains(',')) {
            return Err(refuse(
                "tags",
                format!("`{bad}` is not a tag (tags are non-empty and hold no comma)"),
            ));
        }
        next.tags = tags.iter().map(|t| t.trim().to_owned()).collect();
    }
    if let Some(status) = edit.status {
        if status == ProductStatus::Unlisted {
            return Err(refuse("status", "must be active, draft or archived"));
        }
        next.status = status;
    }
    for (index, change) in edit.variants.iter().enumerate() {
        let at = |field: &str| format!("variants[{index}].{field}");
        let position = match &change.variant {
            None => {
                return Err(refuse(
                    format!("variants[{index}]"),
                    "names no variant (give `id` or `sku`)",
                ))
            }
            Some(VariantRef::Shopify(id)) => next
                .variants
                .iter()
                .position(|v| v.shopify_id == Some(*id))
                .ok_or_else(|| {
                    refuse(
                        at("id"),
                        format!("no variant of this product has Shopify id {}", id.get()),
                    )
                })?,
            Some(VariantRef::Key(key)) => next
                .variants
                .iter()
                .position(|v| v.key.as_str() == key)
                .ok_or_else(|| {
                    refuse(at("id"), format!("no variant of this product is `{key}`"))
                })?,
            Some(VariantRef::Sku(sku)) => {
                let named: Vec<usize> = next
                    .variants
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.sku.as_ref().is_some_and(|s| s.as_str() == sku))
                    .map(|(i, _)| i)
                    .collect();
                match named.as_slice() {
                    [one] => *one,
                    [] => {
                        return Err(refuse(
                            at("sku"),
                            format!("no variant of this product has SKU `{sku}`"),
                        ))
                    }
                    many => {
                        return Err(refuse(
                            at("sku"),
                            format!(
                                "SKU `{sku}` names {} variants of this product; name one by `id`",
                                many.len()
                            ),
                        ))
                    }
                }
            }
        };
        let variant = &mut next.variants[position];
        if let Some(price) = change.price {
            variant.price = price;
        }
        if let Some(compare_at) = change.compare_at_price {
            variant.compare_at_price = compare_at;
        }
        if let Some(barcode) = &change.barcode {
            if let Some(code) = barcode {
                check_barcode(code).map_err(|message| refuse(at("barcode"), message))?;
            }
            variant.barcode = barcode.clone();
        }
        if let Some(cost) = change.cost {
            variant.cost = cost;
        }
        for (level, (location, available)) in change.inventory.iter().enumerate() {
            if available.0 < 0 {
                return Err(refuse(
                    format!("variants[{index}].inventory[{level}].available"),
                    "must be 0 or more",
                ));
            }
            variant.inventory.insert(*location, *available);
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample_content;

    #[test]
    fn an_edit_changes_only_what_it_names() {
        let content = sample_content(2);
        let sku = content.variants[1].sku.clone().unwrap();
        let edit = ProductEdit {
            title: Some("New title".into()),
            variants: vec![VariantEdit {
                variant: Some(VariantRef::Sku(sku.as_str().to_owned())),
                price: Some("12.50".parse().unwrap()),
                barcode: Some(Some("4006381333931".into())),
                inventory: vec![(LocationId::new(9).unwrap(), Quantity(4))],
                ..VariantEdit::default()
            }],
            ..ProductEdit::default()
        };
        let next = apply_edit(&content, &edit).unwrap();
        assert_eq!(next.title, "New title");
        assert_eq!(next.variants[0], content.variants[0]);
        assert_eq!(next.variants[1].price.to_string(), "12.50");
        assert_eq!(next.variants[1].barcode.as_deref(), Some("4006381333931"));
        assert_eq!(
            next.variants[1].inventory[&LocationId::new(9).unwrap()],
            Quantity(4)
        );
        assert_eq!(next.body_html, content.body_html);
        assert_eq!(
            apply_edit(&content, &ProductEdit::default()).unwrap(),
            content
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let mut content = sample_content(2);
        content.variants[1].sku = content.variants[0].sku.clone();
        let shared = content.variants[0].sku.clone().unwrap();
        let variant = |variant: VariantRef| VariantEdit {
            variant: Some(variant),
            ..VariantEdit::default()
        };
        let cases = [
            (
                ProductEdit {
                    variants: vec![variant(VariantRef::Sku(shared.as_str().into()))],
                    ..ProductEdit::default()
                },
                "variants[0].sku",
            ),
            (
                ProductEdit {
                    variants: vec![variant(VariantRef::Key("nope".into()))],
                    ..ProductEdit::default()
                },
                "variants[0].id",
            ),
            (
                ProductEdit {
                    variants: vec![VariantEdit {
                        barcode: Some(Some("4006381333932".into())),
                        ..variant(VariantRef::Key(content.variants[0].key.as_str().into()))
                    }],
                    ..ProductEdit::default()
                },
                "variants[0].barcode",
            ),
            (
                ProductEdit {
                    variants: vec![VariantEdit {
                        inventory: vec![(LocationId::new(1).unwrap(), Quantity(-1))],
                        ..variant(VariantRef::Key(content.variants[0].key.as_str().into()))
                    }],
                    ..ProductEdit::default()
                },
                "variants[0].inventory[0].available",
            ),
            (
                ProductEdit {
                    title: Some("  ".into()),
                    ..ProductEdit::default()
                },
                "title",
            ),
            (
                ProductEdit {
                    tags: Some(["a,b".to_owned()].into()),
                    ..ProductEdit::default()
                },
                "tags",
            ),
        ];
        for (edit, field) in cases {
            assert_eq!(apply_edit(&content, &edit).unwrap_err().field, field);
        }
    }

    #[test]
    fn barcodes_are_checked_as_gs1_codes_when_they_are_one() {
        for good in [
            "4006381333931",
            "036000291452",
            "96385074",
            "INT-CODE-7",
            "123",
        ] {
            assert!(check_barcode(good).is_ok(), "{good}");
        }
        for bad in [
            "4006381333932",
            "1.23457E+11",
            "has space",
            "",
            &"9".repeat(65),
        ] {
            assert!(check_barcode(bad).is_err(), "{bad}");
        }
    }
}

//! The body of `PATCH /api/v1/products/{id}`, read into a [`ProductEdit`]; a value of the
//! wrong kind is a 422 naming its field.

use crate::ApiError;
use serde_json::{Map, Value};
use shopsync_domain::{
    LocationId, Money, ProductEdit, ProductStatus, Quantity, ShopifyVariantId, VariantEdit,
    VariantRef,
};

const PRODUCT_FIELDS: [&str; 7] = [
    "title",
    "body_html",
    "vendor",
    "product_type",
    "tags",
    "status",
    "variants",
];
const VARIANT_FIELDS: [&str; 7] = [
    "id",
    "sku",
    "price",
    "compare_at_price",
    "barcode",
    "cost",
    "inventory",
];

/// A 422 naming `field`.
pub fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::invalid(field, message)
}

fn text(value: &Value, field: &str) -> Result<String, ApiError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid(field, "must be a string"))
}

/// Money from a string (`"19.99"`, as Shopify writes it) or a number.
fn money(value: &Value, field: &str) -> Result<Money, ApiError> {
    let written = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(invalid(field, "must be an amount such as \"19.99\"")),
    };
    written
        .parse::<Money>()
        .map_err(|e| invalid(field, &e.to_string()))
}

/// Money, or `null` to remove it.
fn optional_money(value: &Value, field: &str) -> Result<Option<Money>, ApiError> {
    match value {
        Value::Null => Ok(None),
        other => money(other, field).map(Some),
    }
}

fn check_fields(object: &Map<String, Value>, known: &[&str], at: &str) -> Result<(), ApiError> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(invalid(
            &format!("{at}{unknown}"),
            &format!(
                "is not a field that can be edited (one of: {})",
                known.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// The variant an entry names: `id` (a number or GID of a Shopify variant, or a local key)
/// or `sku`.
fn variant_ref(entry: &Map<String, Value>, at: &str) -> Result<VariantRef, ApiError> {
    match (entry.get("id"), entry.get("sku")) {
        (Some(Value::Number(n)), _) => n
            .as_u64()
            .and_then(|id| ShopifyVariantId::new(id).ok())
            .map(VariantRef::Shopify)
            .ok_or_else(|| invalid(&format!("{at}id"), "must be a positive Shopify variant id")),
        (Some(Value::String(id)), _) if id.starts_with("gid://") => id
            .parse::<ShopifyVariantId>()
            .map(VariantRef::Shopify)
            .map_err(|_| invalid(&format!("{at}id"), "is not a ProductVariant GID")),
        (Some(Value::String(id)), _) => match id.parse::<u64>() {
            Ok(number) => ShopifyVariantId::new(number)
                .map(VariantRef::Shopify)
                .map_err(|_| invalid(&format!("{at}id"), "must be a positive Shopify variant id")),
            Err(_) => Ok(VariantRef::Key(id.clone())),
        },
        (Some(_), _) => Err(invalid(&format!("{at}id"), "must be a number or a string")),
        (None, Some(sku)) => Ok(VariantRef::Sku(text(sku, &format!("{at}sku"))?)),
        (None, None) => Err(invalid(
            at.trim_end_matches('.'),
            "names no variant (give `id` or `sku`)",
        )),
    }
}

fn variant_edit(entry: &Value, index: usize) -> Result<VariantEdit, ApiError> {
    let at = format!("variants[{index}].");
    let entry = entry
        .as_object()
        .ok_or_else(|| invalid(&format!("variants[{index}]"), "must be an object"))?;
    check_fields(entry, &VARIANT_FIELDS, &at)?;
    let mut edit = VariantEdit {
        variant: Some(variant_ref(entry, &at)?),
        ..VariantEdit::default()
    };
    if entry.contains_key("id") && entry.contains_key("sku") {
        // Named by id, a SKU is its new value: not editable here.
        return Err(invalid(
            &format!("{at}sku"),
            "name a variant by `id` or by `sku`, not both (a SKU is not edited here)",
        ));
    }
    if let Some(price) = entry.get("price") {
        edit.price = Some(money(price, &format!("{at}price"))?);
    }
    if let Some(compare_at) = entry.get("compare_at_price") {
        edit.compare_at_price = Some(optional_money(
            compare_at,
            &format!("{at}compare_at_price"),
        )?);
    }
    if let Some(cost) = entry.get("cost") {
        edit.cost = Some(optional_money(cost, &format!("{at}cost"))?);
    }
    if let Some(barcode) = entry.get("barcode") {
        edit.barcode = Some(match barcode {
            Value::Null => None,
            other => Some(text(other, &format!("{at}barcode"))?),
        });
    }
    if let Some(levels) = entry.get("inventory") {
        let levels = levels.as_array().ok_or_else(|| {
            invalid(
                &format!("{at}inventory"),
                "must be a list of {\"location\", \"available\"}",
            )
        })?;
        for (number, level) in levels.iter().enumerate() {
            let at = format!("{at}inventory[{number}]");
            let level = level
                .as_object()
                .ok_or_else(|| invalid(&at, "must be an object {\"location\", \"available\"}"))?;
            check_fields(level, &["location", "available"], &format!("{at}."))?;
            let location = match level.get("location") {
                Some(Value::Number(n)) => n.as_u64().and_then(|id| LocationId::new(id).ok()),
                Some(Value::String(s)) => s.parse::<LocationId>().ok(),
                _ => None,
            }
            .ok_or_else(|| {
                invalid(
                    &format!("{at}.location"),
                    "must be a Shopify location id (a number or a Location GID)",
                )
            })?;
            let available = level
                .get("available")
                .and_then(Value::as_i64)
                .ok_or_else(|| invalid(&format!("{at}.available"), "must be a whole number"))?;
            edit.inventory.push((location, Quantity(available)));
        }
    }
    Ok(edit)
}

/// Reads the body into an edit.
pub fn parse(body: &Value) -> Result<ProductEdit, ApiError> {
    let object = body.as_object().ok_or_else(|| {
        ApiError::bad_request(
            "bad_body",
            "the body must be a JSON object of the fields to change",
        )
    })?;
    check_fields(object, &PRODUCT_FIELDS, "")?;
    let mut edit = ProductEdit::default();
    let string = |name: &str| object.get(name).map(|v| text(v, name)).transpose();
    edit.title = string("title")?;
    edit.body_html = string("body_html")?;
    edit.vendor = string("vendor")?;
    edit.product_type = string("product_type")?;
    if let Some(tags) = object.get("tags") {
        let tags = tags
            .as_array()
            .ok_or_else(|| invalid("tags", "must be a list of strings"))?;
        edit.tags = Some(
            tags.iter()
                .enumerate()
                .map(|(i, tag)| text(tag, &format!("tags[{i}]")))
                .collect::<Result<_, _>>()?,
        );
    }
    if let Some(status) = object.get("status") {
        edit.status = Some(match status.as_str() {
            Some("active") => ProductStatus::Active,
            Some("draft") => ProductStatus::Draft,
            Some("archived") => ProductStatus::Archived,
            _ => return Err(invalid("status", "must be active, draft or archived")),
        });
    }
    if let Some(variants) = object.get("variants") {
        let variants = variants
            .as_array()
            .ok_or_else(|| invalid("variants", "must be a list of variant changes"))?;
        edit.variants = variants
            .iter()
            .enumerate()
            .map(|(index, entry)| variant_edit(entry, index))
            .collect::<Result<_, _>>()?;
    }
    Ok(edit)
}

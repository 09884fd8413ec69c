//! What a push sends, decided without I/O: the narrowest mutation that carries a product's
//! change from what Shopify holds to the local content, the productSet input, the stock
//! changes (as differences from what Shopify was last confirmed to hold), and the fingerprint
//! that recognises the webhook echo of shopsync's own write.

use sha2::{Digest, Sha256};
use shopsync_domain::product::{ProductContent, ProductStatus};
use shopsync_domain::{InventoryItemId, LocationId, Money, ShopifyProductId};
use shopsync_shopify::ops::{
    InventoryItemInput, OptionSetInput, OptionValueName, ProductSetInput, ProductUpdateInput,
    QuantityChange, VariantOptionValue, VariantSetInput, VariantUpdateInput,
};

fn money(m: Money) -> String {
    m.amount().normalize().to_string()
}

fn status(s: ProductStatus) -> &'static str {
    match s {
        ProductStatus::Active => "ACTIVE",
        ProductStatus::Archived => "ARCHIVED",
        ProductStatus::Unlisted => "UNLISTED",
        ProductStatus::Draft => "DRAFT",
    }
}

/// The fingerprint of the fields a push sets, computed the same way on what shopsync pushes
/// and on what a webhook reports, so an echo of shopsync's own write is recognised: the
/// SHA-256, in hex, of the JSON array `[title, body_html, vendor, product_type, handle,
/// status, tags, options, variants]` (fingerprints stored before an upgrade still match).
pub fn fingerprint(content: &ProductContent) -> String {
    let variants: Vec<_> = content
        .variants
        .iter()
        .map(|v| {
            (
                v.sku.as_ref().map(|s| s.as_str()),
                &v.barcode,
                money(v.price),
                v.compare_at_price.map(money),
                &v.option_values,
            )
        })
        .collect();
    let options: Vec<(&String, &Vec<String>)> = content
        .options
        .iter()
        .map(|o| (&o.name, &o.values))
        .collect();
    let fields = (
        &content.title,
        &content.body_html,
        &content.vendor,
        &content.product_type,
        &content.handle,
        status(content.status),
        &content.tags,
        options,
        variants,
    );
    // Serialized straight into the digest (a tuple is a JSON array, a set a sorted list).
    // Neither can fail: a digest accepts every write, and strings, lists and options always
    // serialize.
    let mut digest = DigestWriter(Sha256::new());
    if let Err(e) = serde_json::to_writer(&mut digest, &fields) {
        tracing::error!(error = %e, "a fingerprint could not be serialized");
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(64);
    for byte in digest.0.finalize() {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    text
}

/// Feeds what is written to it into a SHA-256.
struct DigestWriter(Sha256);

impl std::io::Write for DigestWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The mark key of an echo of `content` for `product`.
pub fn echo_key(product: ShopifyProductId, content: &ProductContent) -> String {
    format!("echo:{product}:{}", fingerprint(content))
}

/// The productSet input for `content`. A product new to Shopify is sent without variant ids
/// (any it carries cannot name variants of a product that does not exist yet).
pub fn product_set_input(content: &ProductContent, existing: bool) -> ProductSetInput {
    let names: Vec<&String> = content.options.iter().map(|o| &o.name).collect();
    ProductSetInput {
        title: content.title.clone(),
        description_html: Some(content.body_html.clone()),
        vendor: Some(content.vendor.clone()),
        product_type: Some(content.product_type.clone()),
        handle: Some(content.handle.clone()).filter(|h| !h.is_empty()),
        status: Some(status(content.status).to_owned()),
        tags: content.tags.iter().cloned().collect(),
        product_options: content
            .options
            .iter()
            .map(|o| OptionSetInput {
                name: o.name.clone(),
                values: o
                    .values
                    .iter()
                    .map(|v| OptionValueName { name: v.clone() })
                    .collect(),
            })
            .collect(),
        variants: content
            .variants
            .iter()
            .map(|v| VariantSetInput {
                id: v.shopify_id.filter(|_| existing).map(|id| id.gid()),
                sku: v.sku.as_ref().map(|s| s.as_str().to_owned()),
                barcode: v.barcode.clone(),
                price: Some(money(v.price)),
                compare_at_price: v.compare_at_price.map(money),
                position: Some(i64::from(v.position)),
                inventory_item: v.cost.map(|cost| InventoryItemInput {
                    sku: None,
                    cost: Some(money(cost)),
                }),
                option_values: names
                    .iter()
                    .zip(&v.option_values)
                    .map(|(name, value)| VariantOptionValue {
                        option_name: (*name).clone(),
                        name: value.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The mutation a push needs.
pub(crate) enum Mutation {
    /// productSet: the product whole (new products, and any change to options, the variant
    /// list, or both product and variant fields at once).
    Set,
    /// productUpdate: product-level fields only (the variants are not sent, so none can be
    /// touched).
    Update(ShopifyProductId, ProductUpdateInput),
    /// productVariantsBulkUpdate: fields of existing variants only.
    Variants(ShopifyProductId, Vec<VariantUpdateInput>),
    /// Nothing but stock changed: the inventory plan alone carries it.
    StockOnly(ShopifyProductId),
}

/// The narrowest mutation that carries the change from `base` (what Shopify has) to
/// `current`: productUpdate when only product fields changed, productVariantsBulkUpdate
/// when only fields of existing variants did, productSet otherwise.
pub(crate) fn choose_mutation(
    id: ShopifyProductId,
    base: &ProductContent,
    current: &ProductContent,
) -> Mutation {
    let same_variants = base.variants.len() == current.variants.len()
        && base.variants.iter().zip(&current.variants).all(|(b, c)| {
            b.key == c.key
                && c.shopify_id.is_some()
                && b.shopify_id == c.shopify_id
                && b.option_values == c.option_values
                && b.position == c.position
                && b.title == c.title
        });
    // A SKU or cost cleared locally: the narrow mutations cannot say "none".
    let clears = base.variants.iter().zip(&current.variants).any(|(b, c)| {
        (b.sku.is_some() && c.sku.is_none()) || (b.cost.is_some() && c.cost.is_none())
    });
    if !same_variants || clears || base.options != current.options {
        return Mutation::Set;
    }
    let product_changed = base.title != current.title
        || base.body_html != current.body_html
        || base.vendor != current.vendor
        || base.product_type != current.product_type
        || base.handle != current.handle
        || base.status != current.status
        || base.tags != current.tags;
    let changed: Vec<VariantUpdateInput> = base
        .variants
        .iter()
        .zip(&current.variants)
        .filter(|(b, c)| {
            b.price != c.price
                || b.compare_at_price != c.compare_at_price
                || b.barcode != c.barcode
                || b.sku != c.sku
                || b.cost != c.cost
        })
        .filter_map(|(b, c)| {
            let id = c.shopify_id?;
            let sku = (b.sku != c.sku).then(|| c.sku.as_ref().map(|s| s.as_str().to_owned()));
            let cost = (b.cost != c.cost).then(|| c.cost.map(money));
            Some(VariantUpdateInput {
                id: id.gid(),
                price: (b.price != c.price).then(|| money(c.price)),
                compare_at_price: (b.compare_at_price != c.compare_at_price)
                    .then(|| c.compare_at_price.map(money)),
                barcode: (b.barcode != c.barcode).then(|| c.barcode.clone().unwrap_or_default()),
                inventory_item: (sku.is_some() || cost.is_some()).then(|| InventoryItemInput {
                    sku: sku.flatten(),
                    cost: cost.flatten(),
                }),
            })
        })
        .collect();
    match (product_changed, changed.is_empty()) {
        (true, true) => Mutation::Update(
            id,
            ProductUpdateInput {
                id: id.gid(),
                title: Some(current.title.clone()),
                description_html: Some(current.body_html.clone()),
                vendor: Some(current.vendor.clone()),
                product_type: Some(current.product_type.clone()),
                handle: Some(current.handle.clone()).filter(|h| !h.is_empty()),
                status: Some(status(current.status).to_owned()),
                tags: Some(current.tags.iter().cloned().collect()),
            },
        ),
        (false, false) => Mutation::Variants(id, changed),
        // Stock goes out as inventory quantities, after whatever mutation the rest needs.
        (false, true) if stock_differs(base, current) => Mutation::StockOnly(id),
        // Both at once (one call, atomic), or nothing to say (whatever differs, the whole
        // product carries it).
        _ => Mutation::Set,
    }
}

/// Whether any stock level differs between `base` and `current` (variants by key).
fn stock_differs(base: &ProductContent, current: &ProductContent) -> bool {
    current.variants.iter().any(|c| {
        base.variants
            .iter()
            .find(|b| b.key == c.key)
            .is_none_or(|b| b.inventory != c.inventory)
    })
}

/// The stock levels a push sets: every level of `current` that `base` (what Shopify was
/// last confirmed to hold) lacks or holds otherwise, from the base's quantity (compared by
/// Shopify, so a sale since is kept) to the local one; and the (item, location) pairs the
/// base has no level for, to activate first. A variant new to Shopify takes its inventory
/// item from `created` (what productSet answered).
pub(crate) fn stock_plan(
    base: Option<&ProductContent>,
    current: &ProductContent,
    created: &[shopsync_shopify::ops::SetVariant],
) -> (Vec<QuantityChange>, Vec<(InventoryItemId, LocationId)>) {
    let mut changes = Vec::new();
    let mut activate = Vec::new();
    for variant in &current.variants {
        // A variant Shopify already had keeps its item; any other takes the one productSet
        // answered (ids a new product carries cannot name anything in Shopify yet).
        let known = base.is_some() && variant.shopify_id.is_some();
        let item = variant.inventory_item_id.filter(|_| known).or_else(|| {
            created
                .iter()
                .find(|set| {
                    set.selected_options
                        .iter()
                        .map(|o| &o.value)
                        .eq(variant.option_values.iter())
                })
                .and_then(|set| set.inventory_item_id)
        });
        let Some(item) = item else { continue };
        let before = base.and_then(|b| b.variants.iter().find(|v| v.key == variant.key));
        for (location, quantity) in &variant.inventory {
            let was = before.and_then(|b| b.inventory.get(location)).map(|q| q.0);
            if was == Some(quantity.0) {
                continue;
            }
            if was.is_none() {
                activate.push((item, *location));
            }
            changes.push(QuantityChange {
                item,
                location: *location,
                expected: was.unwrap_or(0),
                target: quantity.0,
            });
        }
    }
    (changes, activate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopsync_domain::testing::sample_content;

    /// The fingerprint as first written (through a JSON value): what marks stored by earlier
    /// releases hold.
    fn fingerprint_through_a_value(content: &ProductContent) -> String {
        let variants: Vec<_> = content
            .variants
            .iter()
            .map(|v| {
                (
                    v.sku.as_ref().map(|s| s.as_str().to_owned()),
                    v.barcode.clone(),
                    money(v.price),
                    v.compare_at_price.map(money),
                    v.option_values.clone(),
                )
            })
            .collect();
        let tags: Vec<&String> = content.tags.iter().collect();
        let options: Vec<(&String, &Vec<String>)> = content
            .options
            .iter()
            .map(|o| (&o.name, &o.values))
            .collect();
        let value = serde_json::json!([
            content.title,
            content.body_html,
            content.vendor,
            content.product_type,
            content.handle,
            status(content.status),
            tags,
            options,
            variants,
        ]);
        let digest = Sha256::digest(value.to_string().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn fingerprints_match_those_stored_by_earlier_releases() {
        let mut contents = vec![sample_content(0), sample_content(1), sample_content(3)];
        let mut unusual = sample_content(2);
        unusual.title = "Quote \" backslash \\ tab \t é 雪 \u{1F600}".into();
        unusual.body_html = "<p>\u{0}\u{1f}</p>".into();
        unusual.tags.clear();
        unusual.variants[0].sku = None;
        unusual.variants[0].barcode = None;
        unusual.variants[1].compare_at_price = Some(Money::from_cents(12_345));
        unusual.status = ProductStatus::Archived;
        contents.push(unusual);
        for content in &contents {
            let fingerprint = fingerprint(content);
            assert_eq!(fingerprint, fingerprint_through_a_value(content));
            assert_eq!(fingerprint.len(), 64);
        }
        assert_ne!(fingerprint(&contents[1]), fingerprint(&contents[2]));
    }
}

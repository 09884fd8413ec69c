//! Returning content to earlier values, field by field: an operation's changes undone (a
//! rollback) and a product restored to one of its versions.
//!
//! Stock is never set back to an older absolute level: undoing an operation takes back the
//! difference it made to each level (sales since are kept), and restoring a version leaves
//! stock as it is. Shopify's ids are never restored (they are Shopify's confirmation of what
//! exists there); a variant brought back is new to Shopify and carries none.

use crate::fields::{FieldPath, Fields, FieldsError};
use crate::product::{ProductContent, PRODUCT_FIELDS};
use serde_json::Value;
use std::collections::BTreeSet;

/// The variant fields a selection may name (for every variant).
const VARIANT_FIELDS: [&str; 8] = [
    "sku",
    "barcode",
    "price",
    "compare_at_price",
    "cost",
    "option_values",
    "position",
    "inventory",
];

/// Variant fields that are Shopify's ids: kept as they are now.
const ID_FIELDS: [&str; 2] = ["shopify_id", "inventory_item_id"];

/// Which fields a rollback or restore takes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldSelection {
    /// Every field, and the variant list itself (variants added are removed, removed ones
    /// come back).
    All,
    /// Only these: product fields by name (`title`, `tags`), variant fields by name for
    /// every variant (`price`, `inventory`), `variant_title` for variants' titles, one
    /// variant whole (`variants/{key}`) or one of its fields (`variants/{key}/price`).
    Named(BTreeSet<String>),
}

impl FieldSelection {
    /// The selection `names` make (none: every field); an unknown name is refused, naming it
    /// and the names there are.
    pub fn parse(names: &[String]) -> Result<Self, String> {
        if names.is_empty() {
            return Ok(FieldSelection::All);
        }
        let mut chosen = BTreeSet::new();
        for name in names {
            let name = name.trim();
            let known = PRODUCT_FIELDS.contains(&name)
                || VARIANT_FIELDS.contains(&name)
                || name == "variant_title"
                || name == "variants"
                || name.strip_prefix("variants/").is_some_and(|rest| {
                    let mut parts = rest.splitn(2, '/');
                    let key = parts.next().unwrap_or_default();
                    !key.is_empty()
                        && parts.next().is_none_or(|leaf| {
                            VARIANT_FIELDS.contains(&leaf)
                                || leaf == "title"
                                || leaf
                                    .strip_prefix("inventory/")
                                    .is_some_and(|location| !location.is_empty())
                        })
                });
            if !known {
                return Err(format!(
                    "unknown field `{name}`; fields are {}, {}, variant_title, variants, variants/{{key}} and variants/{{key}}/{{field}}",
                    PRODUCT_FIELDS.join(", "),
                    VARIANT_FIELDS.join(", ")
                ));
            }
            chosen.insert(name.to_owned());
        }
        Ok(FieldSelection::Named(chosen))
    }

    /// Whether the selection takes back `path`.
    pub fn matches(&self, path: &FieldPath) -> bool {
        let FieldSelection::Named(names) = self else {
            return true;
        };
        let text = path.as_str();
        match path.variant_key() {
            None => names.contains(text),
            Some(key) => {
                let leaf = path.leaf();
                names.contains("variants")
                    || names.contains(&format!("variants/{key}"))
                    || (leaf == "title" && names.contains("variant_title"))
                    || (leaf != "title" && names.contains(leaf))
                    || names.contains(text)
                    || (leaf == "inventory" && names.contains(&format!("variants/{key}/inventory")))
            }
        }
    }

    /// Whether the selection takes back variant `key` whole (its presence in the list).
    fn takes_whole_variant(&self, key: &str) -> bool {
        match self {
            FieldSelection::All => true,
            FieldSelection::Named(names) => {
                names.contains("variants") || names.contains(&format!("variants/{key}"))
            }
        }
    }

    /// Whether the selection names stock.
    pub fn names_stock(&self) -> bool {
        match self {
            FieldSelection::All => true,
            FieldSelection::Named(names) => names.iter().any(|n| {
                n == "inventory"
                    || n == "variants"
                    || n.ends_with("/inventory")
                    || n.contains("/inventory/")
                    || (n.starts_with("variants/") && n.matches('/').count() == 1)
            }),
        }
    }
}

/// The fields of `fields` under variant `key`.
fn variant_paths<'a>(fields: &'a Fields, key: &'a str) -> impl Iterator<Item = &'a FieldPath> {
    fields.keys().filter(move |p| p.variant_key() == Some(key))
}

/// The variant keys of `fields`.
fn variant_keys(fields: &Fields) -> BTreeSet<String> {
    fields
        .keys()
        .filter_map(|p| p.variant_key().map(str::to_owned))
        .collect()
}

/// A stock level's value (absent: none).
fn level(value: Option<&Value>) -> i64 {
    value.and_then(Value::as_i64).unwrap_or(0)
}

/// `current` with the changes from `before` to `after` that `selection` names taken back:
/// each such field gets its value from `before`, except stock, which moves by the difference
/// `before − after` from where it is now. Fields `after` did not change from `before` are left
/// as they are now. A variant `after` added is removed and one it removed comes back (only
/// when the selection takes whole variants); a variant gone since is left gone.
pub fn undo(
    current: &ProductContent,
    before: &ProductContent,
    after: &ProductContent,
    selection: &FieldSelection,
) -> Result<ProductContent, FieldsError> {
    let (was, made) = (before.to_fields(), after.to_fields());
    let mut now = current.to_fields();
    let (keys_before, keys_after, keys_now) =
        (variant_keys(&was), variant_keys(&made), variant_keys(&now));
    for (path, change) in crate::fields::diff(&was, &made) {
        if !selection.matches(&path) {
            continue;
        }
        match path.variant_key() {
            None => {
                if let Some(old) = change.old {
                    now.insert(path, old);
                }
            }
            Some(key) => {
                let key = key.to_owned();
                let (in_before, in_after) = (keys_before.contains(&key), keys_after.contains(&key));
                if !(in_before && in_after && keys_now.contains(&key)) {
                    // Whole variants are handled below.
                    continue;
                }
                let leaf = path.leaf();
                if ID_FIELDS.contains(&leaf) {
                    continue;
                }
                if leaf == "inventory" {
                    let delta = level(change.old.as_ref()) - level(change.new.as_ref());
                    if let Some(held) = now.get_mut(&path) {
                        *held = Value::from(level(Some(held)) + delta);
                    }
                    continue;
                }
                match change.old {
                    Some(old) => now.insert(path, old),
                    None => now.remove(&path),
                };
            }
        }
    }
    for key in keys_after.difference(&keys_before) {
        // Added by the change: removed, if it is still there.
        if selection.takes_whole_variant(key) && keys_now.contains(key) {
            let paths: Vec<FieldPath> = variant_paths(&now, key).cloned().collect();
            for path in paths {
                now.remove(&path);
            }
        }
    }
    for key in keys_before.difference(&keys_after) {
        // Removed by the change: back, new to Shopify, unless it came back meanwhile.
        if selection.takes_whole_variant(key) && !keys_now.contains(key) {
            for path in variant_paths(&was, key) {
                let value = if ID_FIELDS.contains(&path.leaf()) {
                    Value::Null
                } else {
                    was[path].clone()
                };
                now.insert(path.clone(), value);
            }
        }
    }
    ProductContent::from_fields(&now)
}

/// `current` with the fields `selection` names as they were in `earlier` (one of the
/// product's versions). Stock is left as it is now: naming it is refused, since an older
/// level would sell what is no longer there (undo the operation that changed it instead).
pub fn restore(
    current: &ProductContent,
    earlier: &ProductContent,
    selection: &FieldSelection,
) -> Result<ProductContent, String> {
    if matches!(selection, FieldSelection::Named(_)) && selection.names_stock() {
        return Err(
            "stock is not restored from a version (an older level would sell what is gone); roll back the operation that changed it, which takes back the difference it made"
                .to_owned(),
        );
    }
    let mut earlier_with_current_stock = earlier.clone();
    for variant in &mut earlier_with_current_stock.variants {
        variant.inventory = current
            .variants
            .iter()
            .find(|v| v.key == variant.key)
            .map(|v| v.inventory.clone())
            .unwrap_or_default();
    }
    undo(current, &earlier_with_current_stock, current, selection).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Quantity;
    use crate::testing::sample_content;
    use crate::Money;
    use std::str::FromStr;

    fn names(list: &[&str]) -> FieldSelection {
        FieldSelection::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("known fields")
    }

    fn stock(content: &ProductContent, variant: usize) -> i64 {
        content.variants[variant]
            .inventory
            .values()
            .next()
            .expect("a level")
            .0
    }

    fn set_stock(content: &mut ProductContent, variant: usize, to: i64) {
        for level in content.variants[variant].inventory.values_mut() {
            *level = Quantity(to);
        }
    }

    #[test]
    fn undo_takes_back_what_the_change_made_and_keeps_what_came_after() {
        let before = sample_content(2);
        let mut after = before.clone();
        after.title = "Bad feed title".into();
        after.variants[0].price = Money::from_str("1.00").expect("money");
        set_stock(&mut after, 0, stock(&before, 0) + 50);
        // Since the change: the vendor was edited and 3 units sold.
        let mut current = after.clone();
        current.vendor = "Edited later".into();
        set_stock(&mut current, 0, stock(&after, 0) - 3);

        let undone = undo(&current, &before, &after, &FieldSelection::All).expect("undo");
        assert_eq!(undone.title, before.title);
        assert_eq!(undone.variants[0].price, before.variants[0].price);
        assert_eq!(
            undone.vendor, "Edited later",
            "a field the change did not make stays"
        );
        assert_eq!(
            stock(&undone, 0),
            stock(&before, 0) - 3,
            "stock moves back by the difference; the sale since is kept"
        );
    }

    #[test]
    fn a_selection_takes_back_only_the_named_fields() {
        let before = sample_content(2);
        let mut after = before.clone();
        after.title = "Changed".into();
        after.variants[1].price = Money::from_str("2.00").expect("money");
        after.variants[1].barcode = Some("4006381333931".into());
        let undone = undo(&after, &before, &after, &names(&["price"])).expect("undo");
        assert_eq!(undone.title, "Changed");
        assert_eq!(undone.variants[1].price, before.variants[1].price);
        assert_eq!(undone.variants[1].barcode.as_deref(), Some("4006381333931"));
    }

    #[test]
    fn variants_added_go_and_variants_removed_come_back_without_shopify_ids() {
        let before = sample_content(3);
        let mut after = before.clone();
        let removed = after.variants.remove(2);
        let mut added = sample_content(4).variants.remove(3);
        added.key = crate::VariantKey::parse("added-by-the-change").expect("a key");
        after.variants.push(added);
        let undone = undo(&after, &before, &after, &FieldSelection::All).expect("undo");
        let keys: Vec<&str> = undone.variants.iter().map(|v| v.key.as_str()).collect();
        assert!(!keys.contains(&"added-by-the-change"));
        let back = undone
            .variants
            .iter()
            .find(|v| v.key == removed.key)
            .expect("the removed variant is back");
        assert_eq!(back.shopify_id, None);
        assert_eq!(back.inventory_item_id, None);
        assert_eq!(back.price, removed.price);
        // Named fields leave the variant list alone.
        let undone = undo(&after, &before, &after, &names(&["price"])).expect("undo");
        assert_eq!(undone.variants.len(), after.variants.len());
    }

    #[test]
    fn restore_keeps_stock_and_refuses_to_name_it() {
        let earlier = sample_content(1);
        let mut current = earlier.clone();
        current.title = "Now".into();
        set_stock(&mut current, 0, 999);
        let restored = restore(&current, &earlier, &FieldSelection::All).expect("restore");
        assert_eq!(restored.title, earlier.title);
        assert_eq!(stock(&restored, 0), 999);
        assert!(restore(&current, &earlier, &names(&["inventory"])).is_err());
        assert!(restore(&current, &earlier, &names(&["title"])).is_ok());
    }

    #[test]
    fn unknown_field_names_are_refused_by_name() {
        let refused = FieldSelection::parse(&["colour".into()]).expect_err("unknown");
        assert!(refused.contains("`colour`"), "{refused}");
        assert!(FieldSelection::parse(&["variants/abc/price".into()]).is_ok());
        assert!(FieldSelection::parse(&["variants/abc/inventory/12".into()]).is_ok());
        assert!(FieldSelection::parse(&["variants//price".into()]).is_err());
        assert_eq!(FieldSelection::parse(&[]), Ok(FieldSelection::All));
    }
}

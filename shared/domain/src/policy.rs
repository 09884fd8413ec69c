//! Field ownership policy: per kind of field, who owns it and how a conflict on it is settled,
//! and how severe a conflict is.

use crate::fields::FieldPath;
use crate::merge::{ConflictValues, Side};
use crate::money::Money;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The kinds of field a product has, as the policy sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// Product title.
    Title,
    /// Description.
    BodyHtml,
    /// Vendor.
    Vendor,
    /// Product type.
    ProductType,
    /// URL handle.
    Handle,
    /// Publication status.
    Status,
    /// Tags.
    Tags,
    /// Options.
    Options,
    /// A whole variant (existence).
    Variant,
    /// Ids Shopify assigns (variant and inventory item ids).
    ShopifyIdentity,
    /// Variant title.
    VariantTitle,
    /// SKU.
    Sku,
    /// Barcode.
    Barcode,
    /// Selling price.
    Price,
    /// Compare-at price.
    CompareAtPrice,
    /// Unit cost.
    Cost,
    /// Variant option values.
    OptionValues,
    /// Variant position.
    Position,
    /// Stock at a location.
    Inventory,
}

impl FieldKind {
    /// The kind of the field at `path` (`None` for a path no product has).
    pub fn of(path: &FieldPath) -> Option<FieldKind> {
        if path.variant_key().is_some() {
            return Some(match path.leaf() {
                "" => FieldKind::Variant,
                "shopify_id" | "inventory_item_id" => FieldKind::ShopifyIdentity,
                "title" => FieldKind::VariantTitle,
                "sku" => FieldKind::Sku,
                "barcode" => FieldKind::Barcode,
                "price" => FieldKind::Price,
                "compare_at_price" => FieldKind::CompareAtPrice,
                "cost" => FieldKind::Cost,
                "option_values" => FieldKind::OptionValues,
                "position" => FieldKind::Position,
                "inventory" => FieldKind::Inventory,
                _ => return None,
            });
        }
        Some(match path.as_str() {
            "title" => FieldKind::Title,
            "body_html" => FieldKind::BodyHtml,
            "vendor" => FieldKind::Vendor,
            "product_type" => FieldKind::ProductType,
            "handle" => FieldKind::Handle,
            "status" => FieldKind::Status,
            "tags" => FieldKind::Tags,
            "options" => FieldKind::Options,
            _ => return None,
        })
    }
}

/// The system that is the source of truth for a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    /// The merchant's catalog.
    Local,
    /// Shopify.
    Shopify,
    /// The ERP; its figures enter shopsync through the local catalog.
    Xorosoft,
}

/// How a conflict is settled (the spec's `resolution_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The local value wins.
    LocalWins,
    /// The remote (Shopify) value wins.
    RemoteWins,
    /// The side changed most recently wins (needs both change times).
    NewestWins,
    /// A person decides.
    Manual,
}

/// The impact of a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Cosmetic.
    Low,
    /// Visible to shoppers.
    Medium,
    /// Money, stock or identity.
    High,
    /// Data would disappear.
    Critical,
}

/// The policy for one kind of field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldRule {
    /// Source of truth.
    pub owner: Owner,
    /// How conflicts are settled.
    pub strategy: Strategy,
}

/// What the policy says of one conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The strategy that applies.
    pub strategy: Strategy,
    /// Whether the policy settles it without a person.
    pub auto_resolvable: bool,
    /// The winning side, when auto-resolvable; otherwise the suggested one, if any.
    pub winner: Option<Side>,
    /// Impact.
    pub severity: Severity,
}

/// The field ownership policy, with its severity thresholds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnershipPolicy {
    /// Rules per kind; a kind without a rule is settled by hand.
    pub rules: BTreeMap<FieldKind, FieldRule>,
    /// A price conflict whose sides differ by at least this percentage is high severity.
    pub price_high_percent: Decimal,
    /// A stock conflict whose sides differ by at least this many units is medium severity.
    pub stock_medium_units: i64,
}

impl Default for OwnershipPolicy {
    /// Local owns price and content edits settle by recency; Xorosoft owns stock and cost
    /// (imported into the local catalog, so the local side wins); Shopify owns its ids;
    /// identity (SKU, barcode), status and whole-variant conflicts go to a person.
    fn default() -> Self {
        use FieldKind::*;
        let rule = |owner, strategy| FieldRule { owner, strategy };
        let mut rules = BTreeMap::new();
        for kind in [
            Title,
            BodyHtml,
            Vendor,
            ProductType,
            Tags,
            Options,
            VariantTitle,
            OptionValues,
            Position,
            Handle,
        ] {
            rules.insert(kind, rule(Owner::Local, Strategy::NewestWins));
        }
        for kind in [Price, CompareAtPrice] {
            rules.insert(kind, rule(Owner::Local, Strategy::LocalWins));
        }
        for kind in [Cost, Inventory] {
            rules.insert(kind, rule(Owner::Xorosoft, Strategy::LocalWins));
        }
        rules.insert(ShopifyIdentity, rule(Owner::Shopify, Strategy::RemoteWins));
        for kind in [Sku, Barcode, Status, Variant] {
            rules.insert(kind, rule(Owner::Local, Strategy::Manual));
        }
        Self {
            rules,
            price_high_percent: Decimal::from(20),
            stock_medium_units: 10,
        }
    }
}

impl OwnershipPolicy {
    /// The rule for a path (manual, owned locally, when the policy has none).
    pub fn rule(&self, path: &FieldPath) -> FieldRule {
        FieldKind::of(path)
            .and_then(|kind| self.rules.get(&kind).copied())
            .unwrap_or(FieldRule {
                owner: Owner::Local,
                strategy: Strategy::Manual,
            })
    }

    /// Decides a conflict. `local_changed_at` / `remote_changed_at` feed `newest_wins`; without
    /// both, a newest-wins conflict is left to a person.
    pub fn decide(
        &self,
        path: &FieldPath,
        values: &ConflictValues,
        local_changed_at: Option<DateTime<Utc>>,
        remote_changed_at: Option<DateTime<Utc>>,
    ) -> Decision {
        let rule = self.rule(path);
        let severity = self.severity(path, values);
        let winner = match rule.strategy {
            Strategy::LocalWins => Some(Side::Local),
            Strategy::RemoteWins => Some(Side::Remote),
            Strategy::NewestWins => match (local_changed_at, remote_changed_at) {
                (Some(l), Some(r)) if l != r => {
                    Some(if l > r { Side::Local } else { Side::Remote })
                }
                _ => None,
            },
            Strategy::Manual => None,
        };
        // A conflict that would delete data is never settled without a person.
        let deletes = values.local.is_none() || values.remote.is_none();
        let auto_resolvable = winner.is_some() && !(deletes && severity == Severity::Critical);
        let suggested = winner.or(match rule.owner {
            Owner::Shopify => Some(Side::Remote),
            Owner::Local | Owner::Xorosoft => Some(Side::Local),
        });
        Decision {
            strategy: rule.strategy,
            auto_resolvable,
            winner: suggested,
            severity,
        }
    }

    /// The severity of a conflict on `path`.
    pub fn severity(&self, path: &FieldPath, values: &ConflictValues) -> Severity {
        let Some(kind) = FieldKind::of(path) else {
            return Severity::High;
        };
        match kind {
            FieldKind::Variant => Severity::Critical,
            FieldKind::Price | FieldKind::CompareAtPrice | FieldKind::Cost => {
                let money = |v: &Option<Value>| {
                    v.as_ref()
                        .and_then(|v| serde_json::from_value::<Option<Money>>(v.clone()).ok())
                        .flatten()
                };
                match (money(&values.local), money(&values.remote)) {
                    (Some(l), Some(r)) => match l.percent_change_to(r) {
                        Some(p) if p < self.price_high_percent => Severity::Medium,
                        _ => Severity::High,
                    },
                    _ => Severity::High,
                }
            }
            FieldKind::Inventory => {
                let qty = |v: &Option<Value>| v.as_ref().and_then(Value::as_i64);
                match (qty(&values.local), qty(&values.remote)) {
                    (Some(l), Some(r)) if (l <= 0) != (r <= 0) => Severity::High,
                    (Some(l), Some(r)) if (l - r).abs() >= self.stock_medium_units => {
                        Severity::Medium
                    }
                    (Some(_), Some(_)) => Severity::Low,
                    _ => Severity::High,
                }
            }
            FieldKind::Status | FieldKind::Sku | FieldKind::Barcode => Severity::High,
            FieldKind::Title
            | FieldKind::Handle
            | FieldKind::VariantTitle
            | FieldKind::OptionValues
            | FieldKind::Options => Severity::Medium,
            FieldKind::BodyHtml
            | FieldKind::Vendor
            | FieldKind::ProductType
            | FieldKind::Tags
            | FieldKind::Position
            | FieldKind::ShopifyIdentity => Severity::Low,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use serde_json::json;

    fn path(p: &str) -> FieldPath {
        FieldPath::new_unchecked(p.into())
    }

    fn values(b: Value, l: Value, r: Value) -> ConflictValues {
        ConflictValues {
            base: Some(b),
            local: Some(l),
            remote: Some(r),
        }
    }

    #[test]
    fn price_is_owned_locally_and_big_moves_are_high_severity() {
        let policy = OwnershipPolicy::default();
        let d = policy.decide(
            &path("variants/k/price"),
            &values(json!("20"), json!("21"), json!("30")),
            None,
            None,
        );
        assert_eq!(
            d,
            Decision {
                strategy: Strategy::LocalWins,
                auto_resolvable: true,
                winner: Some(Side::Local),
                severity: Severity::High
            }
        );
        let d = policy.decide(
            &path("variants/k/price"),
            &values(json!("20"), json!("21"), json!("22")),
            None,
            None,
        );
        assert_eq!(d.severity, Severity::Medium);
    }

    #[test]
    fn newest_wins_needs_both_times() {
        let policy = OwnershipPolicy::default();
        let now = Utc::now();
        let v = values(json!("a"), json!("b"), json!("c"));
        let d = policy.decide(
            &path("title"),
            &v,
            Some(now),
            Some(now + Duration::seconds(1)),
        );
        assert_eq!((d.auto_resolvable, d.winner), (true, Some(Side::Remote)));
        let d = policy.decide(&path("title"), &v, Some(now), None);
        assert!(!d.auto_resolvable);
    }

    #[test]
    fn stock_going_to_zero_on_one_side_is_high_and_identity_is_manual() {
        let policy = OwnershipPolicy::default();
        let d = policy.decide(
            &path("variants/k/inventory/5"),
            &values(json!(5), json!(0), json!(4)),
            None,
            None,
        );
        assert_eq!(
            (d.severity, d.winner, d.auto_resolvable),
            (Severity::High, Some(Side::Local), true)
        );
        let d = policy.decide(
            &path("variants/k/sku"),
            &values(json!("A"), json!("B"), json!("C")),
            None,
            None,
        );
        assert_eq!(
            (d.strategy, d.auto_resolvable, d.severity),
            (Strategy::Manual, false, Severity::High)
        );
        let d = policy.decide(
            &path("variants/k"),
            &ConflictValues {
                base: Some(json!({})),
                local: None,
                remote: Some(json!({})),
            },
            None,
            None,
        );
        assert_eq!((d.severity, d.auto_resolvable), (Severity::Critical, false));
        assert_eq!(FieldKind::of(&path("variants/k/colour")), None);
    }
}

//! Guard rails: an operation whose planned changes look like a mistake (most of the catalog
//! changing, many deletes, stock zeroed, prices jumping) waits for approval instead of being
//! applied. Rails judge the operation as a whole and only trip past absolute minimums, so one
//! webhook on a small catalog is never held.

use crate::money::Quantity;
use crate::product::ProductContent;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardRails {
    /// Hold every operation for approval.
    pub require_approval: bool,
    /// Hold when more than this share of the catalog changes...
    pub max_changed_share: f64,
    /// ...and at least this many products change.
    pub min_changes: u64,
    /// Hold when more than this many products would be deleted.
    pub max_deletes: u64,
    /// Hold when more than this many variant stock levels would drop to zero from above zero.
    pub max_zero_stock: u64,
    /// A price move larger than this (percent) is large...
    pub max_price_move_pct: Decimal,
    /// ...and more than this many large moves hold the operation.
    pub max_large_price_moves: u64,
}

impl Default for GuardRails {
    fn default() -> Self {
        Self {
            require_approval: false,
            max_changed_share: 0.5,
            min_changes: 50,
            max_deletes: 10,
            max_zero_stock: 50,
            max_price_move_pct: Decimal::from(50),
            max_large_price_moves: 10,
        }
    }
}

/// What one planned change does, as far as the rails care.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeFacts {
    /// Stock levels going from above zero to zero (or below).
    pub zero_stock: u64,
    /// Variant prices moving more than the rail's percentage.
    pub large_price_moves: u64,
}

impl ChangeFacts {
    /// The facts of changing `old` (absent for a create) into `new`.
    pub fn of(old: Option<&ProductContent>, new: &ProductContent, rails: &GuardRails) -> Self {
        let Some(old) = old else {
            return Self::default();
        };
        let mut facts = Self::default();
        for variant in &new.variants {
            let Some(before) = old.variants.iter().find(|v| v.key == variant.key) else {
                continue;
            };
            if before
                .price
                .percent_change_to(variant.price)
                .is_some_and(|pct| pct > rails.max_price_move_pct)
            {
                facts.large_price_moves += 1;
            }
            for (location, now) in &variant.inventory {
                let was = before
                    .inventory
                    .get(location)
                    .copied()
                    .unwrap_or(Quantity(0));
                if was.0 > 0 && now.0 <= 0 {
                    facts.zero_stock += 1;
                }
            }
        }
        facts
    }
}

/// An operation's planned changes, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// Products in the catalog (before the operation).
    pub catalog_size: u64,
    /// Products created or updated.
    pub changes: u64,
    /// Of those, products that already existed locally (creates never count toward the
    /// changed share: importing into an empty catalog is not a mass edit).
    pub updates: u64,
    /// Products deleted.
    pub deletes: u64,
    /// Stock levels zeroed.
    pub zero_stock: u64,
    /// Large price moves.
    pub large_price_moves: u64,
}

impl PlanSummary {
    /// Adds the sums of a part of the operation planned apart (a batch on its own task).
    pub fn absorb(&mut self, part: &PlanSummary) {
        self.catalog_size += part.catalog_size;
        self.changes += part.changes;
        self.updates += part.updates;
        self.deletes += part.deletes;
        self.zero_stock += part.zero_stock;
        self.large_price_moves += part.large_price_moves;
    }

    /// Adds one change (`update`: the product existed locally).
    pub fn add(&mut self, facts: ChangeFacts, update: bool) {
        self.changes += 1;
        self.updates += u64::from(update);
        self.zero_stock += facts.zero_stock;
        self.large_price_moves += facts.large_price_moves;
    }
}

/// The rails' answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Apply.
    Proceed,
    /// Wait for approval, for these reasons.
    Hold(Vec<String>),
}

/// The settings that configure the rails, by name, each overriding one default.
pub const RAIL_SETTINGS: [&str; 7] = [
    "SHOPSYNC_REQUIRE_APPROVAL",
    "SHOPSYNC_RAIL_MAX_CHANGED_PCT",
    "SHOPSYNC_RAIL_MIN_CHANGES",
    "SHOPSYNC_RAIL_MAX_DELETES",
    "SHOPSYNC_RAIL_MAX_ZERO_STOCK",
    "SHOPSYNC_RAIL_MAX_PRICE_MOVE_PCT",
    "SHOPSYNC_RAIL_MAX_LARGE_PRICE_MOVES",
];

impl GuardRails {
    /// The rails from settings (`lookup` gives a setting's value, if set): the defaults,
    /// each overridden by its setting in [`RAIL_SETTINGS`]. `SHOPSYNC_REQUIRE_APPROVAL` is
    /// `true` or `false`; percentages are numbers from 0 (`SHOPSYNC_RAIL_MAX_CHANGED_PCT`
    /// at most 100); the rest are whole numbers. A bad value is an error naming the setting.
    pub fn from_settings(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut rails = Self::default();
        let bad = |name: &str, value: &str, want: &str| format!("{name}=`{value}`: {want}");
        let count = |name: &str, into: &mut u64| -> Result<(), String> {
            if let Some(v) = lookup(name) {
                *into = v
                    .trim()
                    .parse()
                    .map_err(|_| bad(name, &v, "expected a whole number"))?;
            }
            Ok(())
        };
        if let Some(v) = lookup("SHOPSYNC_REQUIRE_APPROVAL") {
            rails.require_approval = match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(bad(
                        "SHOPSYNC_REQUIRE_APPROVAL",
                        &v,
                        "expected true or false",
                    ))
                }
            };
        }
        if let Some(v) = lookup("SHOPSYNC_RAIL_MAX_CHANGED_PCT") {
            let pct: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|p: &f64| (0.0..=100.0).contains(p))
                .ok_or_else(|| {
                    bad(
                        "SHOPSYNC_RAIL_MAX_CHANGED_PCT",
                        &v,
                        "expected a percentage from 0 to 100",
                    )
                })?;
            rails.max_changed_share = pct / 100.0;
        }
        count("SHOPSYNC_RAIL_MIN_CHANGES", &mut rails.min_changes)?;
        count("SHOPSYNC_RAIL_MAX_DELETES", &mut rails.max_deletes)?;
        count("SHOPSYNC_RAIL_MAX_ZERO_STOCK", &mut rails.max_zero_stock)?;
        count(
            "SHOPSYNC_RAIL_MAX_LARGE_PRICE_MOVES",
            &mut rails.max_large_price_moves,
        )?;
        if let Some(v) = lookup("SHOPSYNC_RAIL_MAX_PRICE_MOVE_PCT") {
            rails.max_price_move_pct = v
                .trim()
                .parse::<Decimal>()
                .ok()
                .filter(|p| !p.is_sign_negative())
                .ok_or_else(|| {
                    bad(
                        "SHOPSYNC_RAIL_MAX_PRICE_MOVE_PCT",
                        &v,
                        "expected a percentage of 0 or more",
                    )
                })?;
        }
        Ok(rails)
    }

    /// Judges a whole operation.
    pub fn judge(&self, plan: &PlanSummary) -> Verdict {
        let mut reasons = Vec::new();
        if self.require_approval && (plan.changes > 0 || plan.deletes > 0) {
            reasons.push("this operation is configured to wait for approval".to_owned());
        }
        let share = if plan.catalog_size == 0 {
            0.0
        } else {
            plan.updates as f64 / plan.catalog_size as f64
        };
        if plan.updates >= self.min_changes
            && plan.catalog_size > 0
            && share > self.max_changed_share
        {
            reasons.push(format!(
                "{} of {} products ({:.0}%) would change; the limit is {:.0}%",
                plan.updates,
                plan.catalog_size,
                share * 100.0,
                self.max_changed_share * 100.0
            ));
        }
        if plan.deletes > self.max_deletes {
            reasons.push(format!(
                "{} products would be deleted; the limit is {}",
                plan.deletes, self.max_deletes
            ));
        }
        if plan.zero_stock > self.max_zero_stock {
            reasons.push(format!(
                "{} stock levels would drop to zero; the limit is {}",
                plan.zero_stock, self.max_zero_stock
            ));
        }
        if plan.large_price_moves > self.max_large_price_moves {
            reasons.push(format!(
                "{} prices would move more than {}%; the limit is {}",
                plan.large_price_moves, self.max_price_move_pct, self.max_large_price_moves
            ));
        }
        if reasons.is_empty() {
            Verdict::Proceed
        } else {
            Verdict::Hold(reasons)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample_content;

    #[test]
    fn rails_come_from_settings_and_a_bad_value_names_its_setting() {
        let none = GuardRails::from_settings(|_| None).unwrap();
        assert_eq!(none, GuardRails::default());
        let set = |pairs: &'static [(&'static str, &'static str)]| {
            GuardRails::from_settings(move |name| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            })
        };
        let rails = set(&[
            ("SHOPSYNC_REQUIRE_APPROVAL", "true"),
            ("SHOPSYNC_RAIL_MAX_CHANGED_PCT", "20"),
            ("SHOPSYNC_RAIL_MIN_CHANGES", "5"),
            ("SHOPSYNC_RAIL_MAX_DELETES", "0"),
            ("SHOPSYNC_RAIL_MAX_ZERO_STOCK", "3"),
            ("SHOPSYNC_RAIL_MAX_PRICE_MOVE_PCT", "12.5"),
            ("SHOPSYNC_RAIL_MAX_LARGE_PRICE_MOVES", "2"),
        ])
        .unwrap();
        assert!(rails.require_approval);
        assert!((rails.max_changed_share - 0.2).abs() < 1e-9);
        assert_eq!(
            (
                rails.min_changes,
                rails.max_deletes,
                rails.max_zero_stock,
                rails.max_large_price_moves
            ),
            (5, 0, 3, 2)
        );
        assert_eq!(rails.max_price_move_pct.to_string(), "12.5");
        // One delete now trips the delete rail.
        let plan = PlanSummary {
            catalog_size: 100,
            deletes: 1,
            ..Default::default()
        };
        assert!(matches!(rails.judge(&plan), Verdict::Hold(_)));
        for (name, value) in [
            ("SHOPSYNC_REQUIRE_APPROVAL", "maybe"),
            ("SHOPSYNC_RAIL_MAX_CHANGED_PCT", "150"),
            ("SHOPSYNC_RAIL_MIN_CHANGES", "-1"),
            ("SHOPSYNC_RAIL_MAX_PRICE_MOVE_PCT", "-5"),
        ] {
            let err =
                GuardRails::from_settings(|n| (n == name).then(|| value.to_owned())).unwrap_err();
            assert!(err.contains(name) && err.contains(value), "{err}");
        }
    }

    #[test]
    fn a_small_change_on_a_small_catalog_is_never_held() {
        let rails = GuardRails::default();
        let plan = PlanSummary {
            catalog_size: 2,
            changes: 2,
            updates: 2,
            ..Default::default()
        };
        assert_eq!(rails.judge(&plan), Verdict::Proceed);
        // Importing a whole catalog into an empty store is not a mass edit.
        let import = PlanSummary {
            catalog_size: 1000,
            changes: 1000,
            ..Default::default()
        };
        assert_eq!(rails.judge(&import), Verdict::Proceed);
    }

    #[test]
    fn each_rail_trips_past_its_limit_only() {
        let rails = GuardRails::default();
        let at = |changes, deletes, zero_stock, large_price_moves| PlanSummary {
            catalog_size: 200,
            changes,
            updates: changes,
            deletes,
            zero_stock,
            large_price_moves,
        };
        assert_eq!(rails.judge(&at(100, 10, 50, 10)), Verdict::Proceed);
        for (plan, word) in [
            (at(101, 0, 0, 0), "would change"),
            (at(0, 11, 0, 0), "deleted"),
            (at(0, 0, 51, 0), "zero"),
            (at(0, 0, 0, 11), "prices"),
        ] {
            match rails.judge(&plan) {
                Verdict::Hold(reasons) => assert!(
                    reasons.len() == 1 && reasons[0].contains(word),
                    "{reasons:?}"
                ),
                Verdict::Proceed => panic!("{plan:?} should be held"),
            }
        }
        let strict = GuardRails {
            require_approval: true,
            ..GuardRails::default()
        };
        assert!(matches!(strict.judge(&at(1, 0, 0, 0)), Verdict::Hold(_)));
        assert_eq!(strict.judge(&at(0, 0, 0, 0)), Verdict::Proceed);
    }

    #[test]
    fn facts_count_zeroed_stock_and_large_price_moves() {
        let rails = GuardRails::default();
        let old = sample_content(3);
        let mut new = old.clone();
        new.variants[0].price =
            crate::money::Money::new(old.variants[0].price.amount() * Decimal::from(3)).unwrap();
        for q in new.variants[1].inventory.values_mut() {
            *q = Quantity(0);
        }
        let facts = ChangeFacts::of(Some(&old), &new, &rails);
        let stocked = old.variants[1]
            .inventory
            .values()
            .filter(|q| q.0 > 0)
            .count() as u64;
        assert_eq!(
            facts,
            ChangeFacts {
                zero_stock: stocked,
                large_price_moves: 1
            }
        );
        assert_eq!(ChangeFacts::of(None, &new, &rails), ChangeFacts::default());
    }
}

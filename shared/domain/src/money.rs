//! Exact money amounts and stock quantities.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why an amount could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not a decimal number.
    #[error("`{0}` is not a decimal amount")]
    NotADecimal(String),
    /// Prices and costs cannot be negative.
    #[error("amount {0} is negative")]
    Negative(String),
}

/// A non-negative money amount in the shop's currency, exact (never `f64`).
///
/// Serialized as a string, as Shopify does (`"19.99"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Money(#[serde(with = "rust_decimal::serde::str")] Decimal);

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Wraps a decimal; negative amounts are refused.
    pub fn new(amount: Decimal) -> Result<Self, MoneyError> {
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(MoneyError::Negative(amount.to_string()));
        }
        Ok(Self(amount.normalize()))
    }

    /// An amount in cents (minor units, two decimals).
    pub fn from_cents(cents: u64) -> Self {
        Self(Decimal::new(cents as i64, 2).normalize())
    }

    /// The decimal value.
    pub fn amount(self) -> Decimal {
        self.0
    }

    /// The relative change from `self` to `to`, in percent (`None` when `self` is zero).
    pub fn percent_change_to(self, to: Money) -> Option<Decimal> {
        if self.0.is_zero() {
            return None;
        }
        Some(((to.0 - self.0) / self.0 * Decimal::ONE_HUNDRED).abs())
    }
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(text: &str) -> Result<Self, MoneyError> {
        let amount =
            Decimal::from_str(text.trim()).map_err(|_| MoneyError::NotADecimal(text.to_owned()))?;
        Self::new(amount)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Integer(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
            Raw::Integer(n) => Ok(Money(Decimal::from(n))),
        }
    }
}

/// A stock quantity. Signed: Shopify's `available` goes negative when a shop oversells.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Quantity(pub i64);

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact_and_round_trips_as_a_string() {
        let a: Money = "19.99".parse().unwrap();
        let b: Money = "0.01".parse().unwrap();
        assert_eq!(
            Money::new(a.amount() + b.amount()).unwrap(),
            "20.00".parse().unwrap()
        );
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"19.99\"");
        let back: Money = serde_json::from_str("\"19.990\"").unwrap();
        assert_eq!(back, a, "trailing zeros do not make a different price");
        assert_eq!(a.to_string(), "19.99");
        assert_eq!(Money::from_cents(1999), a);
    }

    #[test]
    fn money_refuses_negative_and_junk() {
        assert!(matches!(
            "-1".parse::<Money>(),
            Err(MoneyError::Negative(_))
        ));
        assert!(matches!(
            "1,5".parse::<Money>(),
            Err(MoneyError::NotADecimal(_))
        ));
        assert!(
            serde_json::from_str::<Money>("19.99").is_err(),
            "a float is never money"
        );
    }

    #[test]
    fn percent_change_is_exact() {
        let from: Money = "20".parse().unwrap();
        let to: Money = "25".parse().unwrap();
        assert_eq!(from.percent_change_to(to), Some(Decimal::from(25)));
        assert_eq!(Money::ZERO.percent_change_to(to), None);
    }
}

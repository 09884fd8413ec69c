//! The backend-neutral item model: scalar attributes (keys, index keys, fields used in
//! conditions) plus an opaque JSON document, with DynamoDB's condition and query semantics.

use crate::schema::{KeyType, Table, TableDef};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A scalar attribute value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(untagged)]
pub enum Scalar {
    /// A number (integer).
    N(i64),
    /// A string.
    S(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Visited directly (an untagged enum would buffer each value and build an error for
        // every string it first tried as a number).
        struct ScalarVisitor;
        impl serde::de::Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Scalar, E> {
                Ok(Scalar::N(n))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Scalar, E> {
                i64::try_from(n)
                    .map(Scalar::N)
                    .map_err(|_| E::custom(format!("{n} is out of range")))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar::S(s.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Scalar, E> {
                Ok(Scalar::S(s))
            }
        }
        d.deserialize_any(ScalarVisitor)
    }
}

impl Scalar {
    /// The DynamoDB type of this value.
    pub fn kind(&self) -> KeyType {
        match self {
            Scalar::S(_) => KeyType::S,
            Scalar::N(_) => KeyType::N,
        }
    }
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::S(s) => Some(s),
            Scalar::N(_) => None,
        }
    }
    /// The number, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Scalar::N(n) => Some(*n),
            Scalar::S(_) => None,
        }
    }
}

impl From<&str> for Scalar {
    fn from(s: &str) -> Self {
        Scalar::S(s.to_owned())
    }
}
impl From<String> for Scalar {
    fn from(s: String) -> Self {
        Scalar::S(s)
    }
}
impl From<i64> for Scalar {
    fn from(n: i64) -> Self {
        Scalar::N(n)
    }
}

/// Named scalar attributes.
pub type Attrs = BTreeMap<String, Scalar>;

/// A stored item: scalar attributes and a JSON document (the entity).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Item {
    /// Keys, index keys and the fields conditions look at.
    pub attrs: Attrs,
    /// The entity as JSON bytes.
    pub doc: Option<Vec<u8>>,
}

impl Item {
    /// The item's primary key under `def`.
    pub fn key(&self, def: &TableDef) -> Option<Key> {
        Some(Key {
            pk: self.attrs.get(def.key.pk.name)?.clone(),
            sk: match def.key.sk {
                Some(sk) => Some(self.attrs.get(sk.name)?.clone()),
                None => None,
            },
        })
    }
}

/// A primary key value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Partition key value.
    pub pk: Scalar,
    /// Sort key value (tables with a sort key only).
    pub sk: Option<Scalar>,
}

impl Key {
    /// A partition-only key.
    pub fn pk(pk: impl Into<Scalar>) -> Self {
        Self {
            pk: pk.into(),
            sk: None,
        }
    }
    /// A partition + sort key.
    pub fn pk_sk(pk: impl Into<Scalar>, sk: impl Into<Scalar>) -> Self {
        Self {
            pk: pk.into(),
            sk: Some(sk.into()),
        }
    }
}

/// A write condition, evaluated atomically with the write (DynamoDB semantics: a comparison
/// on a missing attribute, or between different types, is false).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The item does not exist.
    ItemAbsent,
    /// The item exists.
    ItemPresent,
    /// The attribute exists.
    Exists(&'static str),
    /// The attribute does not exist.
    NotExists(&'static str),
    /// `attr = value`.
    Eq(&'static str, Scalar),
    /// `attr < value`.
    Lt(&'static str, Scalar),
    /// `attr <= value`.
    Le(&'static str, Scalar),
    /// `attr > value`.
    Gt(&'static str, Scalar),
    /// All hold.
    And(Vec<Condition>),
    /// One holds.
    Or(Vec<Condition>),
    /// Does not hold.
    Not(Box<Condition>),
}

impl Condition {
    /// Evaluates against the current item (`None`: absent) of a table keyed by `pk_name`.
    pub fn holds(&self, current: Option<&Attrs>, pk_name: &str) -> bool {
        let get = |a: &str| current.and_then(|c| c.get(a));
        let cmp = |a: &str, v: &Scalar, ok: fn(std::cmp::Ordering) -> bool| match get(a) {
            Some(x) if x.kind() == v.kind() => ok(x.cmp(v)),
            _ => false,
        };
        match self {
            Condition::ItemAbsent => get(pk_name).is_none(),
            Condition::ItemPresent => get(pk_name).is_some(),
            Condition::Exists(a) => get(a).is_some(),
            Condition::NotExists(a) => get(a).is_none(),
            Condition::Eq(a, v) => cmp(a, v, |o| o.is_eq()),
            Condition::Lt(a, v) => cmp(a, v, |o| o.is_lt()),
            Condition::Le(a, v) => cmp(a, v, |o| o.is_le()),
            Condition::Gt(a, v) => cmp(a, v, |o| o.is_gt()),
            Condition::And(all) => all.iter().all(|c| c.holds(current, pk_name)),
            Condition::Or(any) => any.iter().any(|c| c.holds(current, pk_name)),
            Condition::Not(c) => !c.holds(current, pk_name),
        }
    }
}

/// One write of an atomic multi-item write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Create or replace an item.
    Put {
        /// Table.
        table: Table,
        /// The item.
        item: Item,
        /// Condition on the current item.
        condition: Option<Condition>,
    },
    /// Delete an item.
    Delete {
        /// Table.
        table: Table,
        /// Its key.
        key: Key,
        /// Condition on the current item.
        condition: Option<Condition>,
    },
    /// Only check a condition.
    Check {
        /// Table.
        table: Table,
        /// Key.
        key: Key,
        /// Condition that must hold.
        condition: Condition,
    },
}

/// A condition on the sort key of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortCondition {
    /// `sk = v`.
    Eq(Scalar),
    /// `sk < v`.
    Lt(Scalar),
    /// `sk <= v`.
    Le(Scalar),
    /// `sk > v`.
    Gt(Scalar),
    /// `sk >= v`.
    Ge(Scalar),
    /// `lo <= sk <= hi`.
    Between(Scalar, Scalar),
    /// `begins_with(sk, prefix)` (string sort keys).
    BeginsWith(String),
}

impl SortCondition {
    /// Whether `value` satisfies the condition.
    pub fn matches(&self, value: &Scalar) -> bool {
        let same = |v: &Scalar| v.kind() == value.kind();
        match self {
            SortCondition::Eq(v) => same(v) && value == v,
            SortCondition::Lt(v) => same(v) && value < v,
            SortCondition::Le(v) => same(v) && value <= v,
            SortCondition::Gt(v) => same(v) && value > v,
            SortCondition::Ge(v) => same(v) && value >= v,
            SortCondition::Between(lo, hi) => same(lo) && same(hi) && value >= lo && value <= hi,
            SortCondition::BeginsWith(p) => {
                value.as_str().is_some_and(|s| s.starts_with(p.as_str()))
            }
        }
    }
}

/// A query on a table's primary key or one of its indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Table.
    pub table: Table,
    /// Index name (`None`: the table's own key).
    pub index: Option<&'static str>,
    /// Partition key value.
    pub pk: Scalar,
    /// Sort key condition.
    pub sk: Option<SortCondition>,
    /// Ascending by sort key.
    pub ascending: bool,
    /// Page size (1..=1000).
    pub limit: u32,
    /// Where the previous page ended.
    pub start: Option<PageToken>,
}

impl Query {
    /// A query for all items with partition key `pk`, ascending, 100 a page.
    pub fn new(table: Table, index: Option<&'static str>, pk: impl Into<Scalar>) -> Self {
        Self {
            table,
            index,
            pk: pk.into(),
            sk: None,
            ascending: true,
            limit: 100,
            start: None,
        }
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// The items.
    pub items: Vec<Item>,
    /// Where to continue (`None`: no more).
    pub next: Option<PageToken>,
}

/// An opaque continuation token (the last key seen, encoded); serialisable, so a step can
/// keep it in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PageToken(String);

impl PageToken {
    /// Encodes the key attributes where a page ended.
    pub fn encode(last_key: &Attrs) -> Self {
        let json = serde_json::to_vec(last_key).unwrap_or_default();
        Self(URL_SAFE_NO_PAD.encode(json))
    }
    /// Decodes a token; `None` if it was not made by [`PageToken::encode`].
    pub fn decode(&self) -> Option<Attrs> {
        let bytes = URL_SAFE_NO_PAD.decode(&self.0).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
    /// Wraps a token received from a client.
    pub fn from_string(token: String) -> Self {
        Self(token)
    }
    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_follow_dynamodb_semantics_on_missing_and_mistyped_attributes() {
        let attrs: Attrs = [
            ("id".to_owned(), Scalar::from("a")),
            ("version".to_owned(), Scalar::N(3)),
        ]
        .into();
        let cur = Some(&attrs);
        assert!(Condition::Eq("version", Scalar::N(3)).holds(cur, "id"));
        assert!(!Condition::Eq("version", Scalar::from("3")).holds(cur, "id"));
        assert!(!Condition::Lt("missing", Scalar::N(3)).holds(cur, "id"));
        assert!(Condition::Not(Box::new(Condition::Lt("missing", Scalar::N(3)))).holds(cur, "id"));
        assert!(Condition::ItemAbsent.holds(None, "id"));
        assert!(!Condition::ItemAbsent.holds(cur, "id"));
        assert!(Condition::Or(vec![
            Condition::NotExists("lock"),
            Condition::Eq("lock", "me".into())
        ])
        .holds(cur, "id"));
    }

    #[test]
    fn page_tokens_round_trip_and_reject_junk() {
        let attrs: Attrs = [
            ("id".to_owned(), Scalar::from("a")),
            ("n".to_owned(), Scalar::N(-4)),
        ]
        .into();
        assert_eq!(PageToken::encode(&attrs).decode(), Some(attrs));
        assert_eq!(PageToken::from_string("%%%".into()).decode(), None);
    }
}

//! Identifiers: Shopify's 64-bit ids (with their GID form) and shopsync's own ids.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Why an identifier could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The text is neither a positive integer nor a GID of the expected kind.
    #[error("`{text}` is not a Shopify {kind} id (expected a number or gid://shopify/{kind}/N)")]
    NotAShopifyId {
        /// What was given.
        text: String,
        /// The resource kind expected.
        kind: &'static str,
    },
    /// The text is not a UUID.
    #[error("`{0}` is not a UUID")]
    NotAUuid(String),
    /// An empty identifier.
    #[error("identifier must not be empty")]
    Empty,
}

/// The kinds of Shopify resource shopsync refers to by id.
pub trait ShopifyResource {
    /// The resource name as it appears in a GID, e.g. `Product`.
    const KIND: &'static str;
}

macro_rules! shopify_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        ///
        /// Shopify ids exceed 2^53: they are kept as `u64` and never pass through a float.
        /// Serialized as a JSON number; parsed from a number or a `gid://shopify/...` string.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(u64);

        impl ShopifyResource for $name {
            const KIND: &'static str = $kind;
        }

        impl $name {
            /// Wraps a numeric Shopify id; zero is not an id.
            pub fn new(id: u64) -> Result<Self, IdError> {
                if id == 0 {
                    return Err(IdError::NotAShopifyId { text: "0".into(), kind: $kind });
                }
                Ok(Self(id))
            }
            /// The numeric id.
            pub fn get(self) -> u64 {
                self.0
            }
            /// The GraphQL global id, e.g. `gid://shopify/Product/123`.
            pub fn gid(self) -> String {
                format!("gid://shopify/{}/{}", $kind, self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                parse_shopify_id(text, $kind).map(Self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // A number or a string (a GID or digits), visited directly: an untagged enum
                // would build and drop an error message for every GID it tried as a number.
                struct IdVisitor;
                impl serde::de::Visitor<'_> for IdVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a {} id (a number or a GID)", $kind)
                    }
                    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<$name, E> {
                        $name::new(n).map_err(E::custom)
                    }
                    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<$name, E> {
                        u64::try_from(n)
                            .map_err(|_| E::custom(format!("{n} is not a {} id", $kind)))
                            .and_then(|n| $name::new(n).map_err(E::custom))
                    }
                    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<$name, E> {
                        text.parse().map_err(E::custom)
                    }
                }
                d.deserialize_any(IdVisitor)
            }
        }
    };
}

fn parse_shopify_id(text: &str, kind: &'static str) -> Result<u64, IdError> {
    let bad = || IdError::NotAShopifyId {
        text: text.to_owned(),
        kind,
    };
    // Read byte by byte: a bulk export holds several ids per line, and searching them as
    // strings cost more than the rest of reading them.
    let trimmed = text.trim().as_bytes();
    let digits = match trimmed.strip_prefix(b"gid://shopify/") {
        Some(rest) => {
            let slash = rest.iter().position(|&b| b == b'/').ok_or_else(bad)?;
            let (found_kind, id) = (&rest[..slash], &rest[slash + 1..]);
            if found_kind != kind.as_bytes() {
                return Err(bad());
            }
            // GIDs may carry a query string (e.g. `?inventory_item_id=`); the id ends before it.
            let end = id.iter().position(|&b| b == b'?').unwrap_or(id.len());
            &id[..end]
        }
        None => trimmed,
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let mut id: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return Err(bad());
        }
        id = id
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or_else(bad)?;
    }
    if id == 0 {
        return Err(bad());
    }
    Ok(id)
}

shopify_id!(
    /// A Shopify product id.
    ShopifyProductId, "Product");
shopify_id!(
    /// A Shopify product variant id.
    ShopifyVariantId, "ProductVariant");
shopify_id!(
    /// A Shopify inventory item id (one per variant).
    InventoryItemId, "InventoryItem");
shopify_id!(
    /// A Shopify location id.
    LocationId, "Location");
shopify_id!(
    /// A Shopify collection id (a shopsync category).
    ShopifyCollectionId, "Collection");

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new id, time-ordered (UUIDv7: a millisecond timestamp, then 74 random
            /// bits). Ids made one after another sort together, so the embedded store's key
            /// indexes append to their last page instead of dirtying a random page per insert
            /// (measured: the largest share of a bulk import's writes to disk).
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }
            /// Wraps an existing UUID.
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            /// The UUID.
            pub fn uuid(self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                Uuid::parse_str(text.trim()).map(Self).map_err(|_| IdError::NotAUuid(text.to_owned()))
            }
        }
    };
}

uuid_id!(
    /// shopsync's id of a product in the merchant's own catalog.
    ProductId);
uuid_id!(
    /// shopsync's id of a category.
    CategoryId);
uuid_id!(
    /// The `operation_uuid` of a sync operation.
    OperationId);
uuid_id!(
    /// The id of a staged change (a `products_staging` row).
    StagingId);
uuid_id!(
    /// The `conflict_uuid` of a sync conflict.
    ConflictId);
uuid_id!(
    /// The id of a rollback.
    RollbackId);
uuid_id!(
    /// The id of a Xorosoft sync log.
    XorosoftLogId);
uuid_id!(
    /// The id of a performance log.
    PerformanceLogId);

/// A stable key of one variant inside a product (local; survives SKU and Shopify id changes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VariantKey(String);

impl VariantKey {
    /// A new random key.
    pub fn random() -> Self {
        Self(Uuid::new_v4().simple().to_string())
    }
    /// Parses a key: non-empty, without `/` (it appears inside field paths).
    pub fn parse(text: &str) -> Result<Self, IdError> {
        if text.is_empty() {
            return Err(IdError::Empty);
        }
        if text.contains('/') {
            return Err(IdError::NotAUuid(text.to_owned()));
        }
        Ok(Self(text.to_owned()))
    }
    /// The key of the local variant that mirrors a Shopify variant: `s{id}` (built without
    /// the formatter: a bulk import makes one per variant).
    pub fn of_shopify(id: ShopifyVariantId) -> Self {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut rest = id.get();
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        let mut key = String::with_capacity(1 + digits.len() - start);
        key.push('s');
        key.extend(digits[start..].iter().map(|d| char::from(*d)));
        Self(key)
    }
    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VariantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who did something: a user name, or a system actor such as `system:webhook`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Actor(String);

impl Actor {
    /// A named actor; the name is trimmed and must not be empty.
    pub fn new(name: &str) -> Result<Self, IdError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(IdError::Empty);
        }
        Ok(Self(name.to_owned()))
    }
    /// The system actor for a named component (e.g. `system("migrate")`).
    pub fn system(component: &str) -> Self {
        Self(format!("system:{component}"))
    }
    /// The actor's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shopify_ids_keep_all_64_bits_from_numbers_and_gids() {
        let big = 9_007_199_254_740_993_u64; // 2^53 + 1: a float would round it
        let from_json: ShopifyProductId = serde_json::from_str(&big.to_string()).unwrap();
        assert_eq!(from_json.get(), big);
        let from_gid: ShopifyProductId = format!("gid://shopify/Product/{big}").parse().unwrap();
        assert_eq!(from_gid, from_json);
        assert_eq!(from_gid.gid(), format!("gid://shopify/Product/{big}"));
        let with_query: InventoryItemId = "gid://shopify/InventoryItem/42?x=1".parse().unwrap();
        assert_eq!(with_query.get(), 42);
    }

    #[test]
    fn shopify_ids_reject_wrong_kinds_and_junk() {
        assert!("gid://shopify/ProductVariant/1"
            .parse::<ShopifyProductId>()
            .is_err());
        assert!("12a".parse::<ShopifyProductId>().is_err());
        assert!("0".parse::<ShopifyProductId>().is_err());
        assert!("".parse::<ShopifyProductId>().is_err());
        assert!("99999999999999999999999"
            .parse::<ShopifyProductId>()
            .is_err());
        assert!(serde_json::from_str::<ShopifyProductId>("-1").is_err());
        // From JSON: a GID string, a digit string, a number; not another kind, a float or
        // a boolean.
        let gid: ShopifyProductId = serde_json::from_str("\"gid://shopify/Product/7\"").unwrap();
        let digits: ShopifyProductId = serde_json::from_str("\"7\"").unwrap();
        assert_eq!((gid.get(), digits.get()), (7, 7));
        for junk in ["\"gid://shopify/Location/7\"", "7.5", "true", "null", "0"] {
            let err = serde_json::from_str::<ShopifyProductId>(junk).unwrap_err();
            assert!(!err.to_string().is_empty(), "{junk}");
        }
        assert!(VariantKey::parse("a/b").is_err());
        for id in [1, 9, 10, 4_070_261_129_263, u64::MAX] {
            let key = VariantKey::of_shopify(ShopifyVariantId::new(id).expect("id"));
            assert_eq!(key.as_str(), format!("s{id}"));
            assert_eq!(VariantKey::parse(key.as_str()).ok(), Some(key));
        }
        assert!(Actor::new("  ").is_err());
    }

    /// The byte-wise reading answers as reading the id with string searches and `u64`'s own
    /// parser does, for every edge of the format.
    #[test]
    fn shopify_ids_read_as_the_string_form_reads_them() {
        fn by_strings(text: &str, kind: &str) -> Option<u64> {
            let trimmed = text.trim();
            let digits = match trimmed.strip_prefix("gid://shopify/") {
                Some(rest) => {
                    let (found, id) = rest.split_once('/')?;
                    if found != kind {
                        return None;
                    }
                    id.split('?').next().unwrap_or_default()
                }
                None => trimmed,
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse::<u64>().ok().filter(|&n| n != 0)
        }
        let max = u64::MAX.to_string();
        let past_max = "18446744073709551616";
        let mut texts: Vec<String> = [
            "1",
            " 42 ",
            "007",
            "0",
            "00",
            "",
            " ",
            "+1",
            "-1",
            "1 2",
            "١٢",
            "12a",
            past_max,
            "gid://shopify/Product/7",
            "gid://shopify/Product/007",
            "gid://shopify/Product/",
            "gid://shopify/Product",
            "gid://shopify/Product/0",
            "gid://shopify/Product/1/2",
            "gid://shopify/Product/3?x=1",
            "gid://shopify/Product/?x=1",
            "gid://shopify/Product/4?",
            "gid://shopify/Products/5",
            "gid://shopify//6",
            "gid://shopify/product/7",
            "GID://shopify/Product/8",
            "\tgid://shopify/Product/9\n",
            "gid://shopify/Product/+1",
            "gid://shopify/Product/ 1",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        texts.push(max.clone());
        texts.push(format!("gid://shopify/Product/{max}"));
        texts.push(format!("gid://shopify/Product/{past_max}"));
        for text in &texts {
            assert_eq!(
                parse_shopify_id(text, "Product").ok(),
                by_strings(text, "Product"),
                "{text:?}"
            );
        }
    }
}

//! Field-level view of versioned content: flat maps of field paths to JSON values, their
//! diff (the spec's `change_data` and `changed_fields`) and applying a diff.
//!
//! Paths: top-level fields by name (`title`, `tags`), variant fields as
//! `variants/{key}/{field}`, stock as `variants/{key}/inventory/{location_id}`.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;

/// A path naming one field of versioned content.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FieldPath(String);

impl FieldPath {
    /// Wraps a path produced by this crate's flatteners.
    pub fn new_unchecked(path: String) -> Self {
        Self(path)
    }
    /// The path's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The variant key, for a path under `variants/`.
    pub fn variant_key(&self) -> Option<&str> {
        self.0
            .strip_prefix("variants/")
            .map(|rest| rest.split('/').next().unwrap_or(rest))
    }
    /// The field's name within its entity (`price` for `variants/k/price`; `inventory` for stock).
    pub fn leaf(&self) -> &str {
        match self.0.strip_prefix("variants/") {
            Some(rest) => {
                let mut parts = rest.splitn(3, '/');
                parts.next();
                parts.next().unwrap_or("")
            }
            None => &self.0,
        }
    }
}

impl Borrow<str> for FieldPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Content as a flat map of field paths to values.
pub type Fields = BTreeMap<FieldPath, Value>;

/// Why a flat field map could not be turned back into content, or a change applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldsError {
    /// A required field is absent.
    #[error("field `{0}` is missing")]
    Missing(String),
    /// A path no content has.
    #[error("unknown field `{0}`")]
    Unknown(String),
    /// A value of the wrong shape.
    #[error("field `{path}` is invalid: {reason}")]
    Invalid {
        /// The field.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Applying a change whose `old` value is not the current one.
    #[error("field `{0}` no longer has the value the change was made against")]
    Stale(String),
}

/// One field's change: `old` and `new` values, either absent when the field did not exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The value before (absent: the field did not exist).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub old: Option<Value>,
    /// The value after (absent: the field was removed).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub new: Option<Value>,
}

/// Keeps an explicit JSON `null` as `Some(Null)`; only a missing key is `None`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The spec's `change_data`: `{field: {old, new}}` for every field that differs.
pub type ChangeData = BTreeMap<FieldPath, FieldChange>;

/// The fields that differ between `from` and `to`.
pub fn diff(from: &Fields, to: &Fields) -> ChangeData {
    let mut changes = ChangeData::new();
    for (path, old) in from {
        match to.get(path) {
            Some(new) if new == old => {}
            new => {
                changes.insert(
                    path.clone(),
                    FieldChange {
                        old: Some(old.clone()),
                        new: new.cloned(),
                    },
                );
            }
        }
    }
    for (path, new) in to {
        if !from.contains_key(path) {
            changes.insert(
                path.clone(),
                FieldChange {
                    old: None,
                    new: Some(new.clone()),
                },
            );
        }
    }
    changes
}

/// The change that creates `fields`: every field new. Takes the values instead of copying
/// them (a create's change holds the whole content).
pub fn created(fields: Fields) -> ChangeData {
    fields
        .into_iter()
        .map(|(path, new)| {
            (
                path,
                FieldChange {
                    old: None,
                    new: Some(new),
                },
            )
        })
        .collect()
}

/// The spec's `changed_fields`: the paths a change touches, in order.
pub fn changed_fields(changes: &ChangeData) -> Vec<FieldPath> {
    changes.keys().cloned().collect()
}

/// Applies `changes` to `fields`, checking that each field still has the change's `old` value.
pub fn apply(fields: &Fields, changes: &ChangeData) -> Result<Fields, FieldsError> {
    let mut out = fields.clone();
    for (path, change) in changes {
        if out.get(path) != change.old.as_ref() {
            return Err(FieldsError::Stale(path.to_string()));
        }
        match &change.new {
            Some(value) => {
                out.insert(path.clone(), value.clone());
            }
            None => {
                out.remove(path);
            }
        }
    }
    Ok(out)
}

/// The inverse of a change set (to undo it).
pub fn invert(changes: &ChangeData) -> ChangeData {
    changes
        .iter()
        .map(|(path, c)| {
            (
                path.clone(),
                FieldChange {
                    old: c.new.clone(),
                    new: c.old.clone(),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(pairs: &[(&str, Value)]) -> Fields {
        pairs
            .iter()
            .map(|(p, v)| (FieldPath::new_unchecked((*p).into()), v.clone()))
            .collect()
    }

    #[test]
    fn change_data_keeps_null_apart_from_absent() {
        let change = FieldChange {
            old: Some(Value::Null),
            new: None,
        };
        let text = serde_json::to_string(&change).unwrap();
        assert_eq!(text, r#"{"old":null}"#);
        let back: FieldChange = serde_json::from_str(&text).unwrap();
        assert_eq!(back, change);
    }

    #[test]
    fn apply_refuses_a_stale_change() {
        let a = fields(&[("title", json!("A"))]);
        let b = fields(&[("title", json!("B"))]);
        let c = fields(&[("title", json!("C"))]);
        let changes = diff(&a, &b);
        assert_eq!(apply(&a, &changes).unwrap(), b);
        assert_eq!(apply(&c, &changes), Err(FieldsError::Stale("title".into())));
        assert_eq!(apply(&b, &invert(&changes)).unwrap(), a);
    }

    #[test]
    fn a_create_is_the_diff_from_nothing() {
        let content = fields(&[("title", json!("A")), ("tags", json!(["x", null]))]);
        let changes = created(content.clone());
        assert_eq!(changes, diff(&Fields::new(), &content));
        assert_eq!(apply(&Fields::new(), &changes).unwrap(), content);
    }

    #[test]
    fn paths_know_their_variant_and_leaf() {
        let p = FieldPath::new_unchecked("variants/k1/inventory/77".into());
        assert_eq!(p.variant_key(), Some("k1"));
        assert_eq!(p.leaf(), "inventory");
        assert_eq!(FieldPath::new_unchecked("title".into()).leaf(), "title");
    }
}

//! Three-way merge of field maps: base (the state both sides agreed on at the last sync),
//! local and remote. Pure and symmetric; the ownership policy ([`crate::policy`]) decides what
//! to do with the conflicts it finds.

use crate::fields::{FieldPath, Fields};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One side of a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The merchant's catalog (shopsync's store).
    Local,
    /// Shopify.
    Remote,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Local => Side::Remote,
            Side::Remote => Side::Local,
        }
    }
}

/// The three values of a conflicting field; `None` means the field (or variant) is absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictValues {
    /// The agreed value at the last sync (`None` also when there is no base).
    pub base: Option<Value>,
    /// The local value.
    pub local: Option<Value>,
    /// The remote value.
    pub remote: Option<Value>,
}

impl ConflictValues {
    /// The value of one side.
    pub fn side(&self, side: Side) -> Option<&Value> {
        match side {
            Side::Local => self.local.as_ref(),
            Side::Remote => self.remote.as_ref(),
        }
    }
}

/// What the merge decided for one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum FieldOutcome {
    /// Neither side changed it.
    Unchanged,
    /// Only local changed it: the remote side should take the local value.
    TakeLocal,
    /// Only remote changed it: the local side should take the remote value.
    TakeRemote,
    /// Both changed it to the same value.
    BothSame,
    /// Both changed it to different values (or, with no base, the sides differ).
    Conflict(ConflictValues),
}

/// The per-field result of a three-way merge. A conflict on a whole variant (deleted on one
/// side, edited on the other) is reported once, under the path `variants/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Merge {
    /// Every field of base, local and remote with its outcome.
    pub outcomes: BTreeMap<FieldPath, FieldOutcome>,
}

/// Merges `local` and `remote` against `base` (`None`: never synced, so any difference is a
/// conflict).
pub fn three_way(base: Option<&Fields>, local: &Fields, remote: &Fields) -> Merge {
    let empty = Fields::new();
    let base_fields = base.unwrap_or(&empty);
    let paths: BTreeSet<&FieldPath> = base_fields
        .keys()
        .chain(local.keys())
        .chain(remote.keys())
        .collect();
    let mut outcomes = BTreeMap::new();
    for path in paths {
        let (b, l, r) = (base_fields.get(path), local.get(path), remote.get(path));
        let outcome = if l == r {
            if base.is_some() && l == b {
                FieldOutcome::Unchanged
            } else {
                FieldOutcome::BothSame
            }
        } else if base.is_some() && l == b {
            FieldOutcome::TakeRemote
        } else if base.is_some() && r == b {
            FieldOutcome::TakeLocal
        } else {
            FieldOutcome::Conflict(ConflictValues {
                base: b.cloned(),
                local: l.cloned(),
                remote: r.cloned(),
            })
        };
        outcomes.insert(path.clone(), outcome);
    }
    if let Some(base) = base {
        fold_variant_deletions(base, local, remote, &mut outcomes);
    }
    Merge { outcomes }
}

/// A variant deleted on one side and edited on the other is one conflict on the whole variant,
/// never a half-deleted variant.
fn fold_variant_deletions(
    base: &Fields,
    local: &Fields,
    remote: &Fields,
    outcomes: &mut BTreeMap<FieldPath, FieldOutcome>,
) {
    let keys: BTreeSet<String> = base
        .keys()
        .filter_map(|p| p.variant_key().map(str::to_owned))
        .collect();
    for key in keys {
        let in_local = variant_subtree(local, &key);
        let in_remote = variant_subtree(remote, &key);
        let prefix = format!("variants/{key}/");
        let edited = |side: Side| {
            outcomes.iter().any(|(p, o)| {
                p.as_str().starts_with(&prefix)
                    && matches!(
                        (side, o),
                        (Side::Local, FieldOutcome::TakeLocal)
                            | (Side::Remote, FieldOutcome::TakeRemote)
                            | (_, FieldOutcome::Conflict(_))
                    )
            })
        };
        let conflict = match (&in_local, &in_remote) {
            (None, Some(_)) => edited(Side::Remote),
            (Some(_), None) => edited(Side::Local),
            _ => false,
        };
        if conflict {
            outcomes.retain(|p, _| !p.as_str().starts_with(&prefix));
            outcomes.insert(
                FieldPath::new_unchecked(format!("variants/{key}")),
                FieldOutcome::Conflict(ConflictValues {
                    base: variant_subtree(base, &key),
                    local: in_local,
                    remote: in_remote,
                }),
            );
        }
    }
}

/// A variant's fields as one JSON object (`None` when the variant is absent).
fn variant_subtree(fields: &Fields, key: &str) -> Option<Value> {
    let prefix = format!("variants/{key}/");
    let map: Map<String, Value> = fields
        .range::<str, _>((
            std::ops::Bound::Included(prefix.as_str()),
            std::ops::Bound::Unbounded,
        ))
        .take_while(|(p, _)| p.as_str().starts_with(&prefix))
        .map(|(p, v)| (p.as_str()[prefix.len()..].to_owned(), v.clone()))
        .collect();
    (!map.is_empty()).then_some(Value::Object(map))
}

impl Merge {
    /// The conflicts, by path.
    pub fn conflicts(&self) -> impl Iterator<Item = (&FieldPath, &ConflictValues)> {
        self.outcomes.iter().filter_map(|(p, o)| match o {
            FieldOutcome::Conflict(values) => Some((p, values)),
            _ => None,
        })
    }

    /// Whether any field conflicts.
    pub fn has_conflicts(&self) -> bool {
        self.conflicts().next().is_some()
    }

    /// The merged state. Conflicts are settled by `decide` (the winning side); a conflict it
    /// leaves open keeps the `keep_open` side's value and is returned in the second list.
    pub fn resolve(
        &self,
        local: &Fields,
        remote: &Fields,
        keep_open: Side,
        mut decide: impl FnMut(&FieldPath, &ConflictValues) -> Option<Side>,
    ) -> (Fields, Vec<FieldPath>) {
        let mut merged = Fields::new();
        let mut open = Vec::new();
        let take = |merged: &mut Fields, path: &FieldPath, side: Side| {
            let source = match side {
                Side::Local => local,
                Side::Remote => remote,
            };
            if let Some(key) = path
                .as_str()
                .strip_prefix("variants/")
                .filter(|k| !k.contains('/'))
            {
                let prefix = format!("variants/{key}/");
                for (p, v) in source
                    .iter()
                    .filter(|(p, _)| p.as_str().starts_with(&prefix))
                {
                    merged.insert(p.clone(), v.clone());
                }
            } else if let Some(v) = source.get(path) {
                merged.insert(path.clone(), v.clone());
            }
        };
        for (path, outcome) in &self.outcomes {
            match outcome {
                FieldOutcome::Unchanged | FieldOutcome::BothSame | FieldOutcome::TakeLocal => {
                    take(&mut merged, path, Side::Local)
                }
                FieldOutcome::TakeRemote => take(&mut merged, path, Side::Remote),
                FieldOutcome::Conflict(values) => match decide(path, values) {
                    Some(side) => take(&mut merged, path, side),
                    None => {
                        open.push(path.clone());
                        take(&mut merged, path, keep_open);
                    }
                },
            }
        }
        (merged, open)
    }

    /// The same merge seen with the sides swapped.
    pub fn mirrored(&self) -> Merge {
        let outcomes = self
            .outcomes
            .iter()
            .map(|(p, o)| {
                let o = match o {
                    FieldOutcome::TakeLocal => FieldOutcome::TakeRemote,
                    FieldOutcome::TakeRemote => FieldOutcome::TakeLocal,
                    FieldOutcome::Conflict(v) => FieldOutcome::Conflict(ConflictValues {
                        base: v.base.clone(),
                        local: v.remote.clone(),
                        remote: v.local.clone(),
                    }),
                    other => other.clone(),
                };
                (p.clone(), o)
            })
            .collect();
        Merge { outcomes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::product::ProductContent;
    use crate::testing::sample_content;
    use serde_json::json;

    #[test]
    fn one_sided_changes_flow_and_two_sided_ones_conflict() {
        let base = sample_content(2);
        let mut local = base.clone();
        let mut remote = base.clone();
        local.title = "Local title".into();
        remote.vendor = "Remote vendor".into();
        local.variants[0].price = "30".parse().unwrap();
        remote.variants[0].price = "35".parse().unwrap();
        let merge = three_way(
            Some(&base.to_fields()),
            &local.to_fields(),
            &remote.to_fields(),
        );
        assert_eq!(merge.outcomes["title"], FieldOutcome::TakeLocal);
        assert_eq!(merge.outcomes["vendor"], FieldOutcome::TakeRemote);
        let price_path = format!("variants/{}/price", base.variants[0].key);
        let conflict = &merge.outcomes[price_path.as_str()];
        assert_eq!(
            conflict,
            &FieldOutcome::Conflict(ConflictValues {
                base: Some(json!(base.variants[0].price)),
                local: Some(json!("30")),
                remote: Some(json!("35")),
            })
        );
        let (merged, open) = merge.resolve(
            &local.to_fields(),
            &remote.to_fields(),
            Side::Local,
            |_, _| None,
        );
        assert_eq!(open, vec![FieldPath::new_unchecked(price_path)]);
        let merged = ProductContent::from_fields(&merged).unwrap();
        assert_eq!(merged.title, "Local title");
        assert_eq!(merged.vendor, "Remote vendor");
        assert_eq!(merged.variants[0].price, "30".parse().unwrap());
    }

    #[test]
    fn a_variant_deleted_on_one_side_and_edited_on_the_other_is_one_conflict() {
        let base = sample_content(2);
        let mut local = base.clone();
        let mut remote = base.clone();
        let gone = remote.variants.remove(1);
        local.variants[1].price = "99".parse().unwrap();
        let merge = three_way(
            Some(&base.to_fields()),
            &local.to_fields(),
            &remote.to_fields(),
        );
        let path = format!("variants/{}", gone.key);
        let prefix = format!("{path}/");
        assert!(
            matches!(merge.outcomes[path.as_str()], FieldOutcome::Conflict(ref v) if v.remote.is_none() && v.local.is_some())
        );
        assert!(merge
            .outcomes
            .keys()
            .all(|p| !p.as_str().starts_with(&prefix)));
        let (merged, _) = merge.resolve(
            &local.to_fields(),
            &remote.to_fields(),
            Side::Local,
            |_, _| Some(Side::Remote),
        );
        assert_eq!(ProductContent::from_fields(&merged).unwrap(), remote);
    }

    #[test]
    fn a_variant_deleted_on_one_side_and_untouched_on_the_other_is_deleted() {
        let base = sample_content(2);
        let local = base.clone();
        let mut remote = base.clone();
        remote.variants.remove(0);
        let merge = three_way(
            Some(&base.to_fields()),
            &local.to_fields(),
            &remote.to_fields(),
        );
        assert!(!merge.has_conflicts());
        let (merged, _) = merge.resolve(
            &local.to_fields(),
            &remote.to_fields(),
            Side::Local,
            |_, _| None,
        );
        assert_eq!(ProductContent::from_fields(&merged).unwrap(), remote);
    }

    #[test]
    fn without_a_base_every_difference_is_a_conflict() {
        let local = sample_content(1);
        let mut remote = local.clone();
        remote.title = "Other".into();
        let merge = three_way(None, &local.to_fields(), &remote.to_fields());
        assert_eq!(merge.conflicts().count(), 1);
        assert_eq!(merge.outcomes["vendor"], FieldOutcome::BothSame);
    }
}

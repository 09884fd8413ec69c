//! Sync conflicts (`sync_conflicts`): fields both sides changed differently.

use crate::fields::FieldPath;
use crate::ids::{Actor, ConflictId, OperationId, ProductId};
use crate::merge::{ConflictValues, Side};
use crate::policy::{Decision, Severity, Strategy};
use crate::status::StatusMachine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The spec's `conflict_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictType {
    /// Both sides changed a field to different values.
    FieldMismatch,
    /// Deleted in Shopify, changed locally.
    DeletedRemotely,
    /// Deleted locally, changed in Shopify.
    DeletedLocally,
    /// Exists locally, no longer in Shopify, and nobody deleted it here.
    MissingRemotely,
    /// Two products claim the same identity (SKU, handle).
    DuplicateIdentity,
}

/// Where a conflict stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictStatus {
    /// Waiting for a decision.
    Open,
    /// Settled (by policy or by a person).
    Resolved,
    /// Dismissed without changing anything.
    Ignored,
    /// A newer conflict on the same field replaced it.
    Superseded,
}

impl StatusMachine for ConflictStatus {
    const MACHINE: &'static str = "sync conflict";

    fn allows(self, to: Self) -> bool {
        use ConflictStatus::*;
        matches!((self, to), (Open, Resolved | Ignored | Superseded))
    }

    fn is_terminal(self) -> bool {
        !matches!(self, ConflictStatus::Open)
    }
}

/// How a conflict was settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// The spec's `resolution_strategy`.
    pub resolution_strategy: Strategy,
    /// The side whose value was kept (`None` when a person typed a value).
    pub chosen_side: Option<Side>,
    /// The value kept.
    pub resolved_value: Option<Value>,
    /// Who settled it (`system:policy` when automatic).
    pub resolved_by: Actor,
    /// When.
    pub resolved_at: DateTime<Utc>,
    /// What a person chose (absent for the policy's own settlements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<ResolutionMethod>,
    /// What the person who settled it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The bulk resolve (a `conflict_resolution` operation) that settled it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_in: Option<OperationId>,
}

/// How a person settles a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolutionMethod {
    /// Keep the local value.
    LocalWins,
    /// Keep Shopify's value.
    RemoteWins,
    /// Go back to the value both sides agreed on at the last sync.
    Base,
    /// Keep the side changed last (when the change times are known).
    NewestWins,
    /// A value the person gives.
    Manual,
    /// Both sides' changes together: tags united, stock moved by both sides' deltas.
    Merge,
}

impl ResolutionMethod {
    /// The spec's `resolution_strategy` this method is recorded under.
    pub fn strategy(self) -> Strategy {
        match self {
            ResolutionMethod::LocalWins => Strategy::LocalWins,
            ResolutionMethod::RemoteWins => Strategy::RemoteWins,
            ResolutionMethod::NewestWins => Strategy::NewestWins,
            ResolutionMethod::Base | ResolutionMethod::Manual | ResolutionMethod::Merge => {
                Strategy::Manual
            }
        }
    }
}

/// A sync conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncConflict {
    /// The spec's `conflict_uuid`.
    pub conflict_uuid: ConflictId,
    /// The operation that found it.
    pub sync_operation_id: OperationId,
    /// The product.
    pub product_id: ProductId,
    /// Type.
    pub conflict_type: ConflictType,
    /// The field (a path such as `variants/{key}/price`).
    pub field_name: FieldPath,
    /// The agreed value at the last sync.
    pub base_value: Option<Value>,
    /// The local value.
    pub local_value: Option<Value>,
    /// The remote value.
    pub remote_value: Option<Value>,
    /// The policy's strategy for this field.
    pub suggested_strategy: Strategy,
    /// The side the policy would keep, if any.
    pub suggested_side: Option<Side>,
    /// Whether the policy may settle it alone.
    pub auto_resolvable: bool,
    /// Impact.
    pub severity: Severity,
    /// Status.
    pub status: ConflictStatus,
    /// How it was settled.
    pub resolution: Option<Resolution>,
    /// When it was found.
    pub detected_at: DateTime<Utc>,
}

impl SyncConflict {
    /// A new open conflict on one field, as the policy judged it.
    pub fn field(
        operation: OperationId,
        product: ProductId,
        field: FieldPath,
        values: ConflictValues,
        decision: &Decision,
        now: DateTime<Utc>,
    ) -> Self {
        let conflict_type = match (&values.local, &values.remote) {
            (Some(_), None) => ConflictType::DeletedRemotely,
            (None, Some(_)) => ConflictType::DeletedLocally,
            _ => ConflictType::FieldMismatch,
        };
        Self {
            conflict_uuid: ConflictId::generate(),
            sync_operation_id: operation,
            product_id: product,
            conflict_type,
            field_name: field,
            base_value: values.base,
            local_value: values.local,
            remote_value: values.remote,
            suggested_strategy: decision.strategy,
            suggested_side: decision.winner,
            auto_resolvable: decision.auto_resolvable,
            severity: decision.severity,
            status: ConflictStatus::Open,
            resolution: None,
            detected_at: now,
        }
    }

    /// A product Shopify no longer has, as a whole-product conflict for a person (recreate it
    /// in Shopify, or remove it here): `MissingRemotely` when nobody here deleted it,
    /// `DeletedRemotely` when it changed here since. Critical, never settled by policy; its
    /// local value names the product as it stands here.
    pub fn gone_remotely(
        operation: OperationId,
        product: &crate::product::Product,
        conflict_type: ConflictType,
        now: DateTime<Utc>,
    ) -> Self {
        let mut conflict = Self::field(
            operation,
            product.id,
            FieldPath::new_unchecked("product".into()),
            ConflictValues {
                base: None,
                local: Some(serde_json::json!({
                    "title": product.content.title,
                    "shopify_id": product.shopify_id,
                    "version": product.version,
                })),
                remote: None,
            },
            &Decision {
                strategy: Strategy::Manual,
                auto_resolvable: false,
                winner: None,
                severity: Severity::Critical,
            },
            now,
        );
        conflict.conflict_type = conflict_type;
        conflict
    }

    /// Settles it by keeping one side's value.
    pub fn resolve(
        &mut self,
        strategy: Strategy,
        side: Side,
        by: Actor,
        now: DateTime<Utc>,
    ) -> Result<(), crate::status::IllegalTransition> {
        self.status.transition(ConflictStatus::Resolved)?;
        let value = match side {
            Side::Local => self.local_value.clone(),
            Side::Remote => self.remote_value.clone(),
        };
        self.resolution = Some(Resolution {
            resolution_strategy: strategy,
            chosen_side: Some(side),
            resolved_value: value,
            resolved_by: by,
            resolved_at: now,
            method: None,
            note: None,
            resolved_in: None,
        });
        Ok(())
    }

    /// The value a person's choice keeps (`None`: the field is removed), and the side it
    /// comes from; or why this conflict cannot be settled that way. `newest` is the side
    /// that changed the field last, where that is known.
    pub fn chosen_value(
        &self,
        method: ResolutionMethod,
        manual: Option<&Value>,
        newest: Option<Side>,
    ) -> Result<(Option<Value>, Option<Side>), String> {
        match method {
            ResolutionMethod::LocalWins => Ok((self.local_value.clone(), Some(Side::Local))),
            ResolutionMethod::RemoteWins => Ok((self.remote_value.clone(), Some(Side::Remote))),
            ResolutionMethod::Base => Ok((self.base_value.clone(), None)),
            ResolutionMethod::NewestWins => match newest {
                Some(Side::Local) => self.chosen_value(ResolutionMethod::LocalWins, None, None),
                Some(Side::Remote) => self.chosen_value(ResolutionMethod::RemoteWins, None, None),
                None => Err("newest_wins needs to know when each side changed this field, and that is not known here; choose local_wins or remote_wins".into()),
            },
            ResolutionMethod::Manual => match manual {
                Some(value) => Ok((Some(value.clone()), None)),
                None => Err("manual takes the value to keep in `value`".into()),
            },
            ResolutionMethod::Merge => self.merged_value().map(|value| (Some(value), None)),
        }
    }

    /// Both sides' changes together: the union of both tag sets, or the base stock moved
    /// by both sides' changes (so a sale on either side is kept).
    fn merged_value(&self) -> Result<Value, String> {
        let path = self.field_name.as_str();
        if path == "tags" {
            let mut tags = std::collections::BTreeSet::new();
            for side in [&self.local_value, &self.remote_value] {
                if let Some(Value::Array(items)) = side {
                    tags.extend(items.iter().filter_map(Value::as_str).map(str::to_owned));
                }
            }
            return Ok(Value::from(tags.into_iter().collect::<Vec<_>>()));
        }
        if path.starts_with("variants/") && path.contains("/inventory/") {
            let number = |v: &Option<Value>| v.as_ref().and_then(Value::as_i64).unwrap_or(0);
            let base = number(&self.base_value);
            let moved = number(&self.local_value) - base + number(&self.remote_value) - base;
            return Ok(Value::from(base + moved));
        }
        Err(format!(
            "merge applies to tags and stock levels, not to {path}; choose another strategy"
        ))
    }

    /// Settles it as a person chose: `value` is what the product keeps for the field.
    #[allow(clippy::too_many_arguments)]
    pub fn settle(
        &mut self,
        method: ResolutionMethod,
        side: Option<Side>,
        value: Option<Value>,
        by: Actor,
        note: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), crate::status::IllegalTransition> {
        self.status.transition(ConflictStatus::Resolved)?;
        self.resolution = Some(Resolution {
            resolution_strategy: method.strategy(),
            chosen_side: side,
            resolved_value: value,
            resolved_by: by,
            resolved_at: now,
            method: Some(method),
            note,
            resolved_in: None,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::OwnershipPolicy;
    use serde_json::json;

    #[test]
    fn a_conflict_is_resolved_once() {
        let path = FieldPath::new_unchecked("variants/k/price".into());
        let values = ConflictValues {
            base: Some(json!("10")),
            local: Some(json!("12")),
            remote: Some(json!("11")),
        };
        let decision = OwnershipPolicy::default().decide(&path, &values, None, None);
        let now = Utc::now();
        let mut c = SyncConflict::field(
            OperationId::generate(),
            ProductId::generate(),
            path,
            values,
            &decision,
            now,
        );
        assert_eq!(c.conflict_type, ConflictType::FieldMismatch);
        assert!(c.auto_resolvable);
        c.resolve(
            Strategy::LocalWins,
            Side::Local,
            Actor::system("policy"),
            now,
        )
        .unwrap();
        assert_eq!(
            c.resolution.as_ref().and_then(|r| r.resolved_value.clone()),
            Some(json!("12"))
        );
        assert!(c
            .resolve(Strategy::Manual, Side::Remote, Actor::system("policy"), now)
            .is_err());
    }
}

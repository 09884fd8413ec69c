//! A person settles a conflict: the value they chose becomes a new version of the product
//! (change source `conflict_resolution`), written together with the settled conflict, so a
//! conflict is settled once and its value never lands without it. Once a product's last
//! open conflict is settled, its pushes resume (the up-sync holds back products with open
//! conflicts).

use crate::error::EngineError;
use chrono::{DateTime, Utc};
use serde_json::Value;
use shopsync_domain::{
    Actor, ChangeSource, ConflictId, ConflictStatus, ConflictType, LockState, ProductContent,
    ResolutionMethod, SyncConflict, VersionStamp,
};
use shopsync_store::item::{Condition, Key, Scalar};
use shopsync_store::{ProductCommit, RepoError, Store, StoreError};

/// Why a conflict was not settled.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No such conflict.
    #[error("no conflict {0}")]
    NotFound(ConflictId),
    /// It was settled already (by someone else, or before); nothing changed.
    #[error("conflict {id} is {status} already")]
    Settled {
        /// The conflict.
        id: ConflictId,
        /// Its status now.
        status: String,
    },
    /// The choice cannot settle this conflict (a manual value that does not fit the field,
    /// merge of a field that cannot merge, a product deleted on one side).
    #[error("{0}")]
    Refused(String),
    /// Another person holds the product's lock.
    #[error("{by} holds this product's lock until {}", until.to_rfc3339())]
    Locked {
        /// The holder.
        by: Actor,
        /// Until when.
        until: DateTime<Utc>,
    },
    /// The product kept changing while the choice was applied (try again).
    #[error("the product kept changing while the conflict was settled; try again")]
    Busy,
    /// The store failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<RepoError> for ResolveError {
    fn from(e: RepoError) -> Self {
        ResolveError::Engine(e.into())
    }
}

/// What a person chose for a conflict.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// How.
    pub method: ResolutionMethod,
    /// The value to keep, for `manual`.
    pub value: Option<Value>,
    /// What they said.
    pub note: Option<String>,
}

fn still_open() -> Condition {
    Condition::Eq(
        "status",
        Scalar::from(shopsync_domain::status::status_name(ConflictStatus::Open).as_str()),
    )
}

/// `content` with `field` set to `value` (removed for `None`), or why it does not fit.
fn with_field(
    content: &ProductContent,
    field: &shopsync_domain::FieldPath,
    value: Option<&Value>,
) -> Result<ProductContent, String> {
    let mut fields = content.to_fields();
    match value {
        Some(value) => {
            fields.insert(field.clone(), value.clone());
        }
        None => {
            fields.remove(field);
        }
    }
    ProductContent::from_fields(&fields)
        .map_err(|e| format!("the chosen value does not fit {}: {e}", field.as_str()))
}

/// The side that changed the conflict's field last: the newest local version that changed
/// it against the Shopify state the product last took; `None` when either is unknown.
async fn newest_side(
    store: &Store,
    conflict: &SyncConflict,
) -> Result<Option<shopsync_domain::Side>, ResolveError> {
    let Some(product) = store.product(conflict.product_id).await? else {
        return Ok(None);
    };
    let Some(remote_at) = product.shopify_updated_at else {
        return Ok(None);
    };
    let versions = store
        .product_versions(conflict.product_id, true, 100, None)
        .await?
        .items;
    let local_at = versions
        .iter()
        .find(|v| {
            v.change_source != ChangeSource::Shopify
                && v.changed_fields.contains(&conflict.field_name)
        })
        .map(|v| v.created_at);
    Ok(
        local_at.and_then(|local_at| match local_at.cmp(&remote_at) {
            std::cmp::Ordering::Greater => Some(shopsync_domain::Side::Local),
            std::cmp::Ordering::Less => Some(shopsync_domain::Side::Remote),
            std::cmp::Ordering::Equal => None,
        }),
    )
}

/// Once a product's last open conflict is settled, lets its push go at once: the mark that
/// holds a product back for a while after a conflict is opened (for the index of conflicts
/// to catch up) is cleared, when it was set for this conflict's opening or an earlier one.
async fn release_push(
    store: &Store,
    settled: &SyncConflict,
    now: DateTime<Utc>,
) -> Result<(), ResolveError> {
    if !crate::up::open_conflicts(store, settled.product_id)
        .await?
        .is_empty()
    {
        return Ok(());
    }
    if let Some(opened) = store.conflict_opened_at(settled.product_id, now).await? {
        if opened <= settled.detected_at + chrono::Duration::seconds(1) {
            store
                .clear_conflict_opened(settled.product_id, opened)
                .await?;
        }
    }
    Ok(())
}

/// Settles conflict `id` as `actor` chose.
pub async fn resolve_conflict(
    store: &Store,
    id: ConflictId,
    choice: &Choice,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<SyncConflict, ResolveError> {
    for _ in 0..3 {
        let conflict: SyncConflict = store
            .get(&Key::pk(id.to_string()))
            .await?
            .ok_or(ResolveError::NotFound(id))?;
        if conflict.status != ConflictStatus::Open {
            return Err(ResolveError::Settled {
                id,
                status: shopsync_domain::status::status_name(conflict.status),
            });
        }
        if conflict.conflict_type != ConflictType::FieldMismatch {
            return Err(ResolveError::Refused(format!(
                "a {} conflict is about the whole product, not one field: it is settled on its operation (approve or reject its rows), not here",
                shopsync_domain::status::status_name(conflict.conflict_type)
            )));
        }
        let newest = match choice.method {
            ResolutionMethod::NewestWins => newest_side(store, &conflict).await?,
            _ => None,
        };
        let (value, side) = conflict
            .chosen_value(choice.method, choice.value.as_ref(), newest)
            .map_err(ResolveError::Refused)?;
        let mut settled = conflict.clone();
        settled
            .settle(
                choice.method,
                side,
                value.clone(),
                actor.clone(),
                choice.note.clone(),
                now,
            )
            .map_err(EngineError::from)?;
        let product = store.product(conflict.product_id).await?;
        let Some(product) = product else {
            return Err(ResolveError::Refused(format!(
                "product {} no longer exists locally",
                conflict.product_id
            )));
        };
        if let LockState::Held { by, until } = product.lock_state(now) {
            if &by != actor {
                return Err(ResolveError::Locked { by, until });
            }
        }
        let content = with_field(&product.content, &conflict.field_name, value.as_ref())
            .map_err(ResolveError::Refused)?;
        let mut updated = product.clone();
        let changes = updated.change_content(content, now);
        let written = if changes.is_empty() {
            // The product holds the chosen value already: only the conflict changes.
            match store.replace_if(&settled, still_open()).await {
                Ok(()) => Ok(()),
                Err(shopsync_store::ReplaceError::Changed(current)) => {
                    return Err(ResolveError::Settled {
                        id,
                        status: shopsync_domain::status::status_name(current.status),
                    })
                }
                Err(shopsync_store::ReplaceError::Repo(e)) => Err(e),
            }
        } else {
            let mut commit = ProductCommit {
                version: Some(VersionStamp::new(
                    shopsync_domain::fields::changed_fields(&changes),
                    ChangeSource::ConflictResolution,
                    actor.clone(),
                    Some(conflict.sync_operation_id),
                    now,
                )),
                product: updated,
                expected_version: Some(product.version),
                staging: None,
                actor: actor.clone(),
                now,
            };
            store
                .commit_product_with(&mut commit, &settled, still_open())
                .await
        };
        match written {
            Ok(()) => {
                tracing::info!(conflict = %id, product = %conflict.product_id, by = %actor, method = ?choice.method, "conflict resolved");
                release_push(store, &settled, now).await?;
                return Ok(settled);
            }
            Err(RepoError::Store(StoreError::ConditionFailed { .. })) => {
                let status = store
                    .get::<SyncConflict>(&Key::pk(id.to_string()))
                    .await?
                    .map(|c| shopsync_domain::status::status_name(c.status))
                    .unwrap_or_else(|| "gone".into());
                return Err(ResolveError::Settled { id, status });
            }
            Err(RepoError::Locked(shopsync_domain::LockError::HeldByOther { by, until })) => {
                return Err(ResolveError::Locked { by, until })
            }
            // The product moved between the read and the write: decide again on it.
            Err(RepoError::VersionConflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ResolveError::Busy)
}

//! A person's change to a local product, staged and applied as an operation of its own: one
//! staged row, one version with the person as its author, pushed by the next up-sync. An edit
//! is a `local_edit` operation (change source `local`); a restore of fields from one of the
//! product's versions is a `restore` operation (change source `rollback`).

use crate::error::EngineError;
use chrono::{DateTime, Utc};
use shopsync_domain::restore::{restore, FieldSelection};
use shopsync_domain::{
    apply_edit, Actor, ChangeSource, EditRefused, LockError, LockState, OperationId,
    OperationStatus, OperationType, Product, ProductEdit, ProductId, ProductsStaging, StagingId,
    StagingStatus, SyncDirection, SyncOperation, VersionStamp,
};
use shopsync_store::{ProductCommit, RepoError, Store};

/// Why an edit was not applied.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// No such product.
    #[error("no product {0}")]
    NotFound(ProductId),
    /// The product has a newer version than the one the edit was made against.
    #[error("the product is at version {current}, not {expected}")]
    Stale {
        /// The version the caller saw.
        expected: u64,
        /// The product's version now.
        current: u64,
    },
    /// Another person holds the product's lock.
    #[error("{by} holds this product's lock until {}", until.to_rfc3339())]
    Locked {
        /// The holder.
        by: Actor,
        /// Until when.
        until: DateTime<Utc>,
    },
    /// The product has no such version.
    #[error("product {product} has no version {version}")]
    NoVersion {
        /// The product.
        product: ProductId,
        /// The version asked for.
        version: u64,
    },
    /// A value the edit cannot take (the field is named).
    #[error(transparent)]
    Refused(#[from] EditRefused),
    /// The product kept changing under the edit (try again).
    #[error("the product kept changing while the edit was applied; try again")]
    Busy,
    /// The store or the operation failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<shopsync_domain::IllegalTransition> for EditError {
    fn from(e: shopsync_domain::IllegalTransition) -> Self {
        EditError::Engine(e.into())
    }
}

impl From<RepoError> for EditError {
    fn from(e: RepoError) -> Self {
        EditError::Engine(e.into())
    }
}

/// What an edit did.
#[derive(Debug, Clone)]
pub struct Edited {
    /// The product as it is now.
    pub product: Product,
    /// The `local_edit` operation that applied it (`None`: the edit changed nothing).
    pub operation_id: Option<OperationId>,
}

/// Applies `edit` to product `id` for `actor`: refused while another holds its lock, and
/// (given `expected_version`) when the product has moved past that version; otherwise the
/// edit applies to the current version. A product that changes between the read and the
/// write is read again (at most three times), unless a version was expected.
pub async fn edit_product(
    store: &Store,
    id: ProductId,
    edit: &ProductEdit,
    expected_version: Option<u64>,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Edited, EditError> {
    let change = PersonsChange {
        operation_type: OperationType::LocalEdit,
        source: ChangeSource::Local,
        name: "Local edit",
    };
    commit_change(store, id, expected_version, actor, now, change, |current| {
        Ok(apply_edit(&current.content, edit)?)
    })
    .await
}

/// Restores the fields `selection` names (every field but stock, by default) of product `id`
/// to their values at `version`, for `actor`, as a new version (change source `rollback`);
/// refused as an edit is (another's lock, a newer version than `expected_version`).
pub async fn restore_product(
    store: &Store,
    id: ProductId,
    version: u64,
    selection: &FieldSelection,
    expected_version: Option<u64>,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Edited, EditError> {
    let earlier = store
        .product_version(id, version)
        .await?
        .ok_or(EditError::NoVersion {
            product: id,
            version,
        })?;
    let change = PersonsChange {
        operation_type: OperationType::Restore,
        source: ChangeSource::Rollback,
        name: "Restore",
    };
    commit_change(store, id, expected_version, actor, now, change, |current| {
        restore(&current.content, &earlier.product_data, selection).map_err(|message| {
            EditError::Refused(EditRefused {
                field: "fields".to_owned(),
                message,
            })
        })
    })
    .await
}

/// What kind of change a person makes.
struct PersonsChange {
    operation_type: OperationType,
    source: ChangeSource,
    name: &'static str,
}

/// Commits the content `change` makes of product `id` as an operation of one row and one
/// version by `actor` (see [`edit_product`]).
async fn commit_change(
    store: &Store,
    id: ProductId,
    expected_version: Option<u64>,
    actor: &Actor,
    now: DateTime<Utc>,
    kind: PersonsChange,
    change: impl Fn(&Product) -> Result<shopsync_domain::ProductContent, EditError>,
) -> Result<Edited, EditError> {
    for _ in 0..3 {
        let current = store.product(id).await?.ok_or(EditError::NotFound(id))?;
        if let Some(expected) = expected_version {
            if current.version != expected {
                return Err(EditError::Stale {
                    expected,
                    current: current.version,
                });
            }
        }
        if let LockState::Held { by, until } = current.lock_state(now) {
            if &by != actor {
                return Err(EditError::Locked { by, until });
            }
        }
        let content = change(&current)?;
        let mut updated = current.clone();
        let changes = updated.change_content(content, now);
        if changes.is_empty() {
            return Ok(Edited {
                product: current,
                operation_id: None,
            });
        }
        let mut op = SyncOperation::new(
            &format!("{} of {} by {actor}", kind.name, current.content.title),
            kind.operation_type,
            SyncDirection::Up,
            actor.clone(),
            now,
        );
        op.move_to(OperationStatus::InProgress, None, now)?;
        store.insert(&op).await?;
        let mut row = ProductsStaging::pending(
            StagingId::generate(),
            &current,
            op.operation_uuid,
            actor,
            now,
        );
        row.change_data = changes.clone();
        row.proposed = Some(updated.content.clone());
        row.origin = Some(kind.source);
        store.insert(&row).await?;
        let mut applied = row.clone();
        applied.status = StagingStatus::Applied;
        applied.reviewed_by = Some(actor.clone());
        applied.reviewed_at = Some(now);
        applied.applied_at = Some(now);
        let mut commits = vec![ProductCommit {
            version: Some(VersionStamp::new(
                shopsync_domain::fields::changed_fields(&changes),
                kind.source,
                actor.clone(),
                Some(op.operation_uuid),
                now,
            )),
            product: updated,
            expected_version: Some(current.version),
            staging: Some((applied, Some(StagingStatus::Pending))),
            actor: actor.clone(),
            now,
        }];
        let answer = store.commit_products(&mut commits).await?.pop();
        let before = op.clone();
        match answer {
            Some(Ok(())) | None => {
                op.statistics.processed = 1;
                op.statistics.updated = 1;
                op.move_to(OperationStatus::Completed, None, now)?;
                crate::operation::save(store, &op, &before).await?;
                let product = store.product(id).await?.ok_or(EditError::NotFound(id))?;
                tracing::info!(product = %id, operation = %op.operation_uuid, by = %actor, version = product.version, kind = kind.name, "a person's change applied");
                return Ok(Edited {
                    product,
                    operation_id: Some(op.operation_uuid),
                });
            }
            Some(Err(e)) => {
                let (reason, outcome) = match e {
                    RepoError::VersionConflict { current: moved } => (
                        format!(
                            "the product moved to version {} before the edit was applied",
                            moved.version
                        ),
                        expected_version.map(|expected| EditError::Stale {
                            expected,
                            current: moved.version,
                        }),
                    ),
                    RepoError::Locked(LockError::HeldByOther { by, until }) => (
                        format!("{by} took the product's lock before the edit was applied"),
                        Some(EditError::Locked { by, until }),
                    ),
                    e => return Err(e.into()),
                };
                crate::apply::settle_row(store, &row, StagingStatus::Failed, &reason, now).await?;
                op.statistics.processed = 1;
                op.statistics.failed = 1;
                op.move_to(OperationStatus::Failed, Some(reason), now)?;
                crate::operation::save(store, &op, &before).await?;
                if let Some(outcome) = outcome {
                    return Err(outcome);
                }
            }
        }
    }
    Err(EditError::Busy)
}

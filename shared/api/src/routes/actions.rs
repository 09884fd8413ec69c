//! Acting on operations: start a sync, and approve, reject, cancel or resume an operation.
//! Work that talks to Shopify goes on the jobs queue (the worker records the person who
//! asked); decisions that only change the store are made here and answered at once.

use crate::routes::operations::operation_json;
use crate::routes::parse_id;
use crate::{ApiError, ApiState};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use shopsync_domain::{
    Identity, OperationId, OperationStatus, OperationType, StagingId, SyncDirection, SyncOperation,
};
use shopsync_engine::error::EngineError;
use shopsync_engine::jobs::{operation_of_job, sync_kind, Job, JobMessage, SyncMode};
use shopsync_store::{RepoError, StoreError};
use std::sync::Arc;

/// What an engine refusal answers: 404 for an unknown operation, 409 for one whose state
/// does not allow it, 500 otherwise.
fn refused(e: EngineError) -> ApiError {
    match e {
        EngineError::Store(RepoError::NotFound { key, .. }) => {
            ApiError::not_found(format!("no operation {key}"))
        }
        EngineError::Store(RepoError::Store(StoreError::Invalid(message))) => {
            ApiError::new(StatusCode::CONFLICT, "not_allowed", message)
        }
        EngineError::Transition(e) => {
            ApiError::new(StatusCode::CONFLICT, "not_allowed", e.to_string())
        }
        e => ApiError::internal(e),
    }
}

/// Sends `messages` to the jobs queue; a refusal is a 503.
pub async fn queue(state: &ApiState, messages: Vec<JobMessage>) -> Result<(), ApiError> {
    state.jobs.send(messages).await.map_err(|e| {
        tracing::error!(error = %e.0, "the jobs queue refused a message");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_unavailable",
            "the jobs queue could not take the work; try again",
        )
    })
}

/// `{"direction", "mode", "dry_run"}` of starting a sync.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    direction: SyncDirection,
    #[serde(default = "incremental")]
    mode: SyncMode,
    #[serde(default)]
    dry_run: bool,
}

fn incremental() -> SyncMode {
    SyncMode::Incremental
}

/// Starts a sync: its operation is recorded as pending, by the caller, when its job is
/// queued; the worker runs it.
#[utoipa::path(
    post,
    operation_id = "start_sync",
    path = "/api/v1/sync",
    tag = "operations",
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"direction\": \"down|up|bidirectional\", \"mode\": \"full|incremental|reconcile\" (default incremental), \"dry_run\": false}`; reconcile is a down mode; a bidirectional sync reads the whole catalog in either other mode"),
    responses(
        (status = 202, description = "`{operation_id, operation}`: recorded as pending and queued"),
        (status = 400, description = "A malformed body"),
        (status = 422, description = "An unknown direction or mode, or one the direction does not take"),
        (status = 503, description = "The jobs queue could not take it (nothing was recorded as running)")
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn start_sync(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Identity>,
    body: Result<Json<SyncRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = crate::body::required(
        body,
        "{\"direction\": \"down|up|bidirectional\", \"mode\": \"full|incremental|reconcile\", \"dry_run\": false}",
    )?;
    if sync_kind(
        request.direction,
        request.mode,
        request.dry_run,
        chrono::Duration::zero(),
    )
    .is_none()
    {
        return Err(ApiError::invalid(
            "mode",
            "reconcile is a down-sync mode (up and bidirectional syncs take full or incremental)",
        ));
    }
    let now = chrono::Utc::now();
    let message = JobMessage::new(
        Job::Sync {
            direction: request.direction,
            mode: request.mode,
            dry_run: request.dry_run,
        },
        now,
    );
    let operation_type = match request.mode {
        SyncMode::Full => OperationType::FullSync,
        SyncMode::Incremental => OperationType::IncrementalSync,
        SyncMode::Reconcile => OperationType::Reconcile,
    };
    let mut pending = SyncOperation::new(
        &format!(
            "{} {} sync requested by {}{}",
            shopsync_domain::status::status_name(request.mode),
            shopsync_domain::status::status_name(request.direction),
            caller.actor,
            if request.dry_run { " (dry run)" } else { "" }
        ),
        operation_type,
        request.direction,
        caller.actor.clone(),
        now,
    );
    pending.operation_uuid = operation_of_job(&message.id);
    pending.dry_run = request.dry_run;
    state
        .store
        .insert(&pending)
        .await
        .map_err(ApiError::internal)?;
    if let Err(e) = queue(&state, vec![message]).await {
        // Not queued: the record says so rather than waiting for ever.
        let mut failed = pending.clone();
        if failed
            .move_to(
                OperationStatus::Failed,
                Some("the jobs queue could not take it".into()),
                chrono::Utc::now(),
            )
            .is_ok()
        {
            let _ = state.store.put_all(std::slice::from_ref(&failed)).await;
        }
        return Err(e);
    }
    tracing::info!(operation = %pending.operation_uuid, by = %caller.actor, "sync queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "operation_id": pending.operation_uuid,
            "operation": operation_json(&pending, now),
        })),
    )
        .into_response())
}

/// `{"rows": [...], "reason": "..."}` of deciding an operation.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    #[serde(default)]
    rows: Vec<String>,
    #[serde(default)]
    reason: Option<String>,
}

const DECISION: &str = "{\"rows\": [row ids], \"reason\": \"...\"}, both optional";

fn row_ids(rows: &[String]) -> Result<Vec<StagingId>, ApiError> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            r.trim()
                .parse()
                .map_err(|_| ApiError::invalid(&format!("rows[{i}]"), "is not a row id (a UUID)"))
        })
        .collect()
}

fn reason_of(decision: &Decision) -> Result<String, ApiError> {
    decision
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::invalid(
                "reason",
                "say why (it is recorded on the operation and its rows)",
            )
        })
}

async fn load(state: &ApiState, id: OperationId) -> Result<SyncOperation, ApiError> {
    shopsync_engine::operation::load_operation(&state.store, id)
        .await
        .map_err(refused)
}

fn answered(op: &SyncOperation) -> Response {
    Json(json!({ "operation_id": op.operation_uuid, "operation": operation_json(op, chrono::Utc::now()) })).into_response()
}

/// Approves a held operation: all its rows (queued: the worker applies them, then pushes
/// what a bidirectional sync merged, or goes on with an import), or the rows named
/// (applied at once).
#[utoipa::path(
    post,
    operation_id = "approve_operation",
    path = "/api/v1/operations/{id}/approve",
    tag = "operations",
    params(("id" = String, Path, description = "The operation's id")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "Optional `{\"rows\": [row ids]}`: approve only these (not for an import, which is approved whole)"),
    responses(
        (status = 200, description = "Named rows approved and applied: `{operation_id, operation}`"),
        (status = 202, description = "The whole operation approved; its apply job is queued"),
        (status = 404, description = "No such operation"),
        (status = 409, description = "It is not waiting for approval"),
        (status = 422, description = "A malformed row id, or rows of an import")
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn approve(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Identity>,
    Path(id): Path<String>,
    body: Result<Json<Decision>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id: OperationId = parse_id(&id, "an operation id (a UUID)")?;
    let decision = crate::body::optional(body, DECISION)?;
    let operation = load(&state, id).await?;
    if !decision.rows.is_empty() {
        if operation.xorosoft_log_id.is_some() {
            return Err(ApiError::invalid(
                "rows",
                "an import is approved whole: send no rows",
            ));
        }
        let approved = shopsync_engine::review::approve_rows(
            &state.store,
            id,
            &row_ids(&decision.rows)?,
            &caller.actor,
        )
        .await
        .map_err(refused)?;
        return Ok(answered(&approved));
    }
    if operation.status != OperationStatus::AwaitingApproval {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_allowed",
            format!(
                "operation {id} is {}, not waiting for approval",
                shopsync_domain::status::status_name(operation.status)
            ),
        ));
    }
    let mut message = JobMessage::new(
        Job::ApplyOperation {
            operation: id,
            by: Some(caller.actor.clone()),
        },
        chrono::Utc::now(),
    );
    // One apply per approval, however often it is asked for.
    message.id = format!("{id}:approve");
    queue(&state, vec![message]).await?;
    tracing::info!(operation = %id, by = %caller.actor, "approval queued");
    Ok((StatusCode::ACCEPTED, answered(&operation)).into_response())
}

/// Rejects a held operation (all its waiting rows, or the rows named); `reason` is required.
#[utoipa::path(
    post,
    operation_id = "reject_operation",
    path = "/api/v1/operations/{id}/reject",
    tag = "operations",
    params(("id" = String, Path, description = "The operation's id")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"reason\": \"...\", \"rows\": [row ids] (optional)}`"),
    responses(
        (status = 200, description = "`{operation_id, operation}`: nothing of the rejected rows is applied"),
        (status = 404, description = "No such operation"),
        (status = 409, description = "It is not waiting for a decision"),
        (status = 422, description = "No reason, or a malformed row id")
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn reject(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Identity>,
    Path(id): Path<String>,
    body: Result<Json<Decision>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id: OperationId = parse_id(&id, "an operation id (a UUID)")?;
    let decision = crate::body::optional(body, DECISION)?;
    let reason = reason_of(&decision)?;
    let rejected = if decision.rows.is_empty() {
        shopsync_engine::review::reject_operation(&state.store, id, &caller.actor, &reason)
            .await
            .map_err(refused)?
    } else {
        shopsync_engine::review::reject_rows(
            &state.store,
            id,
            &row_ids(&decision.rows)?,
            &caller.actor,
            &reason,
        )
        .await
        .map_err(refused)?
    };
    Ok(answered(&rejected))
}

/// Cancels an operation: its waiting rows are rejected and it applies nothing more;
/// `reason` is required.
#[utoipa::path(
    post,
    operation_id = "cancel_operation",
    path = "/api/v1/operations/{id}/cancel",
    tag = "operations",
    params(("id" = String, Path, description = "The operation's id")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"reason\": \"...\"}`"),
    responses(
        (status = 200, description = "`{operation_id, operation}`, cancelled"),
        (status = 404, description = "No such operation"),
        (status = 409, description = "It has ended already"),
        (status = 422, description = "No reason")
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn cancel(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Identity>,
    Path(id): Path<String>,
    body: Result<Json<Decision>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id: OperationId = parse_id(&id, "an operation id (a UUID)")?;
    let decision = crate::body::optional(body, DECISION)?;
    if !decision.rows.is_empty() {
        return Err(ApiError::invalid(
            "rows",
            "an operation is cancelled whole: send no rows",
        ));
    }
    let reason = reason_of(&decision)?;
    let cancelled =
        shopsync_engine::review::cancel_operation(&state.store, id, &caller.actor, &reason)
            .await
            .map_err(refused)?;
    Ok(answered(&cancelled))
}

/// Resumes a failed or paused operation, or one whose worker is gone, from its checkpoint:
/// taken over here and its next step queued.
#[utoipa::path(
    post,
    operation_id = "resume_operation",
    path = "/api/v1/operations/{id}/resume",
    tag = "operations",
    params(("id" = String, Path, description = "The operation's id")),
    responses(
        (status = 202, description = "`{operation_id, operation}`: in progress again, its next step queued"),
        (status = 404, description = "No such operation"),
        (status = 409, description = "It is running, has ended, or has no checkpoint to resume from")
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn resume(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Identity>,
    Path(id): Path<String>,
    body: Result<Json<Decision>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id: OperationId = parse_id(&id, "an operation id (a UUID)")?;
    let decision = crate::body::optional(body, DECISION)?;
    if !decision.rows.is_empty() {
        return Err(ApiError::invalid(
            "rows",
            "an operation is resumed whole: send no rows",
        ));
    }
    let resumed = shopsync_engine::review::resume_operation(&state.store, id, &caller.actor)
        .await
        .map_err(refused)?;
    let now = chrono::Utc::now();
    let bulk_resolve = resumed.operation_type == shopsync_domain::OperationType::ConflictResolution
        && shopsync_engine::resolve::ResolveCheckpoint::of(&resumed).is_some();
    let job = match (
        resumed.xorosoft_log_id,
        resumed.rollback_id,
        shopsync_engine::operation::Checkpoint::of(&resumed),
    ) {
        _ if bulk_resolve => Job::ContinueResolving { operation: id },
        (Some(_), _, _) => Job::Import { operation: id },
        (None, Some(rollback), _) => Job::Rollback { rollback },
        (None, None, Some(checkpoint)) => Job::Step {
            operation: id,
            step: checkpoint.next_step,
        },
        (None, None, None) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_allowed",
                format!(
                    "operation {id} has no checkpoint to resume from; start a new sync instead"
                ),
            ))
        }
    };
    queue(&state, vec![JobMessage::new(job, now)]).await?;
    tracing::info!(operation = %id, by = %caller.actor, "operation resumed");
    Ok((StatusCode::ACCEPTED, answered(&resumed)).into_response())
}

//! `GET /api/v1/operations` and `GET /api/v1/operations/{id}`.

use crate::page::{requested, PageParams};
use crate::redact::hide_costs;
use crate::routes::parse_id;
use crate::{ApiError, ApiState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use shopsync_domain::{Identity, OperationId, Role, SyncConflict, SyncOperation};
use shopsync_store::item::{Key, Query};
use shopsync_store::Table;
use std::sync::Arc;

/// An operation as the API shows it: as stored, and `stalled` when it is in progress but
/// its worker is gone (its lease ran out; resuming takes it over).
pub fn operation_json(op: &SyncOperation, now: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    let mut value = serde_json::to_value(op).unwrap_or_else(|_| json!({}));
    if let Some(object) = value.as_object_mut() {
        object.insert("stalled".into(), op.stalled(now).into());
    }
    value
}

/// Operations, newest first.
#[utoipa::path(
    get,
    operation_id = "list_operations",
    path = "/api/v1/operations",
    tag = "operations",
    params(
        ("limit" = Option<u32>, Query, description = "Items in the page, 1 to 1000 (default 100)"),
        ("after" = Option<String>, Query, description = "The `next` token of the page before")
    ),
    responses(
        (status = 200, description = "`{operations, next}`: a page of operations, newest first"),
        (status = 400, description = "A malformed limit or cursor")
    ),
    security(("bearer" = ["viewer"]))
)]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    params: Result<UrlQuery<PageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (limit, after) = requested(params)?;
    let mut query = Query::new(Table::SyncOperations, Some("by_created"), "operation");
    query.ascending = false;
    query.limit = limit;
    query.start = after;
    let page = state
        .store
        .query::<SyncOperation>(query)
        .await
        .map_err(ApiError::internal)?;
    let now = chrono::Utc::now();
    let operations: Vec<serde_json::Value> = page
        .items
        .iter()
        .map(|op| operation_json(op, now))
        .collect();
    Ok(Json(json!({ "operations": operations, "next": page.next })).into_response())
}

/// One operation with its staged rows, conflicts and performance log.
#[utoipa::path(
    get,
    operation_id = "get_operation",
    path = "/api/v1/operations/{id}",
    tag = "operations",
    params(("id" = String, Path, description = "The operation's id (a UUID)")),
    responses(
        (status = 200, description = "`{operation, staging, conflicts, performance}`; cost values are hidden from viewers"),
        (status = 400, description = "Not an operation id"),
        (status = 404, description = "No such operation")
    ),
    security(("bearer" = ["viewer"]))
)]
pub async fn show(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let op_id: OperationId = parse_id(&id, "an operation id (a UUID)")?;
    let store = &state.store;
    let mut op = store
        .get::<SyncOperation>(&Key::pk(op_id.to_string()))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no operation {op_id}")))?;
    let staging = shopsync_engine::operation::operation_rows(store, op_id)
        .await
        .map_err(ApiError::internal)?;
    let conflicts = store
        .query_all::<SyncConflict>(Query::new(
            Table::SyncConflicts,
            Some("by_operation"),
            op_id.to_string(),
        ))
        .await
        .map_err(ApiError::internal)?;
    let performance = shopsync_engine::operation::performance_of(store, op_id)
        .await
        .map_err(ApiError::internal)?;
    if op.operation_type == shopsync_domain::OperationType::Realtime
        && op.status == shopsync_domain::OperationStatus::InProgress
    {
        // The day's counts as of now (the stored ones are brought up to date by the
        // scheduler's maintenance).
        let categories = shopsync_engine::realtime::categories_changed_by(store, op_id)
            .await
            .map_err(ApiError::internal)?;
        op.statistics =
            shopsync_engine::realtime::realtime_statistics(&staging, &conflicts, categories);
    }
    let mut answer = json!({
        "operation": operation_json(&op, chrono::Utc::now()),
        "staging": staging,
        "conflicts": conflicts,
        "performance": performance,
    });
    if !caller.allows(Role::Operator) {
        hide_costs(&mut answer);
    }
    Ok(Json(answer).into_response())
}

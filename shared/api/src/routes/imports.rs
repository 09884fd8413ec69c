//! `GET /api/v1/xorosoft/imports` and `GET /api/v1/xorosoft/imports/{id}`.

use crate::page::{requested, PageParams};
use crate::redact::hide_costs;
use crate::routes::parse_id;
use crate::{ApiError, ApiState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use shopsync_domain::{Identity, Role, XorosoftLogId, XorosoftSyncLog};
use shopsync_store::item::{Key, Query};
use shopsync_store::Table;
use std::sync::Arc;

/// How many row errors an import's answer lists (`row_errors_total` counts them all).
const ROW_ERRORS_SHOWN: usize = 1000;

/// Xorosoft imports, newest first.
#[utoipa::path(
    get,
    operation_id = "list_imports",
    path = "/api/v1/xorosoft/imports",
    tag = "xorosoft",
    params(
        ("limit" = Option<u32>, Query, description = "Imports in the page, 1 to 1000 (default 100)"),
        ("after" = Option<String>, Query, description = "The `next` token of the page before")
    ),
    responses(
        (status = 200, description = "`{imports, next}`: their `xorosoft_sync_logs` records, newest first"),
        (status = 400, description = "A malformed limit or cursor")
    ),
    security(("bearer" = ["viewer"]))
)]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    params: Result<UrlQuery<PageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (limit, after) = requested(params)?;
    let mut query = Query::new(Table::XorosoftSyncLogs, Some("by_started"), "import");
    query.ascending = false;
    query.limit = limit;
    query.start = after;
    let page = state
        .store
        .query::<XorosoftSyncLog>(query)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "imports": page.items, "next": page.next })).into_response())
}

/// One import: its log record, the file's first row errors and its operation.
#[utoipa::path(
    get,
    operation_id = "get_import",
    path = "/api/v1/xorosoft/imports/{id}",
    tag = "xorosoft",
    params(("id" = String, Path, description = "The import's id (its log's UUID)")),
    responses(
        (status = 200, description = "`{import, row_errors, row_errors_total, operation_id}`: the first 1,000 row errors (line, column, value, reason; line 0 for an item missing from the snapshot); all are in the log's `errors_report` file; cost values are hidden from viewers"),
        (status = 400, description = "Not an import id"),
        (status = 404, description = "No such import")
    ),
    security(("bearer" = ["viewer"]))
)]
pub async fn show(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let log_id: XorosoftLogId = parse_id(&id, "an import id (a UUID)")?;
    let log = state
        .store
        .get::<XorosoftSyncLog>(&Key::pk(log_id.to_string()))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no import {log_id}")))?;
    // A duplicate's rows are its first import's.
    let rows_of = log.duplicate_of.unwrap_or(log.id);
    let mut errors = Vec::new();
    let mut total = 0u64;
    shopsync_engine::xorosoft_import::each_row_error(&state.store, rows_of, |error| {
        total += 1;
        if errors.len() < ROW_ERRORS_SHOWN {
            errors.push(error);
        }
    })
    .await
    .map_err(ApiError::internal)?;
    let mut answer = json!({
        "import": log,
        "row_errors": errors,
        "row_errors_total": total,
        "operation_id": log.operation_id,
    });
    if !caller.allows(Role::Operator) {
        hide_costs(&mut answer);
    }
    Ok(Json(answer).into_response())
}

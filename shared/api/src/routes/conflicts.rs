//! `GET /api/v1/conflicts` and `GET /api/v1/conflicts/{id}`.

use crate::page::page_of;
use crate::redact::hide_costs;
use crate::routes::parse_id;
use crate::{ApiError, ApiState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use shopsync_domain::{
    ConflictId, ConflictStatus, Identity, OperationId, Role, Severity, SyncConflict,
};
use shopsync_store::item::{Key, Query};
use shopsync_store::Table;
use std::sync::Arc;

/// `?status=&product=&operation=&severity=&limit=&after=` of the conflict list.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListParams {
    status: Option<ConflictStatus>,
    product: Option<String>,
    operation: Option<String>,
    severity: Option<Severity>,
    limit: Option<u32>,
    after: Option<String>,
}

/// A conflict as the API shows it (costs hidden from viewers).
fn conflict_json(conflict: &SyncConflict, caller: &Identity) -> serde_json::Value {
    let mut value = serde_json::to_value(conflict).unwrap_or_else(|_| json!({}));
    if !caller.allows(Role::Operator) {
        hide_costs(&mut value);
    }
    value
}

/// Conflicts, oldest first: of a product, of an operation, or (without either) those of a
/// status, open by default.
#[utoipa::path(
    get,
    operation_id = "list_conflicts",
    path = "/api/v1/conflicts",
    tag = "conflicts",
    params(
        ("status" = Option<String>, Query, description = "open, resolved, ignored or superseded (default open when neither product nor operation is given)"),
        ("product" = Option<String>, Query, description = "A product's local id (UUID)"),
        ("operation" = Option<String>, Query, description = "The operation that found them"),
        ("severity" = Option<String>, Query, description = "low, medium, high or critical"),
        ("limit" = Option<u32>, Query, description = "Conflicts read for the page, 1 to 1000 (default 100); a filtered page may hold fewer and still have a `next`"),
        ("after" = Option<String>, Query, description = "The `next` token of the page before")
    ),
    responses(
        (status = 200, description = "`{conflicts, next}`, each as stored (`conflict_uuid`, `field_name`, base, local and remote values, `status`, `resolution`); cost values are hidden from viewers"),
        (status = 400, description = "A malformed filter, limit or cursor")
    ),
    security(("bearer" = ["viewer"]))
)]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Identity>,
    params: Result<UrlQuery<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let UrlQuery(params) = params.map_err(|e| {
        ApiError::bad_request(
            "bad_query",
            format!(
                "{} (expected ?status=open|resolved|ignored|superseded&product=UUID&operation=UUID&severity=low|medium|high|critical&limit=&after=)",
                e.body_text()
            ),
        )
    })?;
    let (limit, after) = page_of(params.limit, params.after.clone())?;
    let product = params
        .product
        .as_deref()
        .map(|p| parse_id::<shopsync_domain::ProductId>(p, "a local product id (a UUID)"))
        .transpose()?;
    let operation = params
        .operation
        .as_deref()
        .map(|o| parse_id::<OperationId>(o, "an operation id (a UUID)"))
        .transpose()?;
    let status = params.status.or(match (product, operation) {
        (None, None) => Some(ConflictStatus::Open),
        _ => None,
    });
    let mut query = match (product, operation) {
        (Some(product), _) => Query::new(
            Table::SyncConflicts,
            Some("by_product"),
            product.to_string(),
        ),
        (None, Some(operation)) => Query::new(
            Table::SyncConflicts,
            Some("by_operation"),
            operation.to_string(),
        ),
        (None, None) => Query::new(
            Table::SyncConflicts,
            Some("by_status"),
            shopsync_domain::status::status_name(status.unwrap_or(ConflictStatus::Open)),
        ),
    };
    query.limit = limit;
    query.start = after;
    let page = state
        .store
        .query::<SyncConflict>(query)
        .await
        .map_err(ApiError::internal)?;
    let conflicts: Vec<serde_json::Value> = page
        .items
        .iter()
        .filter(|c| status.is_none_or(|s| c.status == s))
        .filter(|c| operation.is_none_or(|o| c.sync_operation_id == o))
        .filter(|c| params.severity.is_none_or(|s| c.severity == s))
        .map(|c| conflict_json(c, &caller))
        .collect();
    Ok(Json(json!({ "conflicts": conflicts, "next": page.next })).into_response())
}

/// One conflict.
#[utoipa::path(
    get,
    operation_id = "get_conflict",
    path = "/api/v1/conflicts/{id}",
    tag = "conflicts",
    params(("id" = String, Path, description = "The conflict's `conflict_uuid`")),
    responses(
        (status = 200, description = "`{conflict}` as stored; cost values are hidden from viewers"),
        (status = 400, description = "Not a conflict id"),
        (status = 404, description = "No such conflict")
    ),
    security(("bearer" = ["viewer"]))
)]
pub async fn show(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let conflict_id: ConflictId = parse_id(&id, "a conflict id (a UUID)")?;
    let conflict = state
        .store
        .get::<SyncConflict>(&Key::pk(conflict_id.to_string()))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no conflict {conflict_id}")))?;
    Ok(Json(json!({ "conflict": conflict_json(&conflict, &caller) })).into_response())
}

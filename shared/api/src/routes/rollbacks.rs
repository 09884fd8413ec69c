//! Rollbacks: an admin rolls an operation back (its record and operation are recorded as
//! pending and the worker runs it from the jobs queue); anyone who reads sees its record.

use crate::page::page_of;
use crate::routes::parse_id;
use crate::{ApiError, ApiState};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use shopsync_domain::{
    Identity, OperationId, ProductId, RollbackId, RollbackRequest, RollbackType, ShopifyProductId,
    SyncRollback,
};
use shopsync_engine::jobs::{Job, JobMessage};
use shopsync_engine::rollback::RollbackError;
use shopsync_store::item::Query;
use shopsync_store::Table;
use std::sync::Arc;

/// `{"type", "products", "fields", "force", "dry_run"}` of a rollback, all optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    #[serde(rename = "type", default)]
    rollback_type: Option<RollbackType>,
    #[serde(default)]
    products: Vec<String>,
    #[serde(default)]
    fields: Vec<String>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    dry_run: bool,
}

const ROLLBACK_BODY: &str = "{\"type\": \"full|partial|selective\", \"products\": [ids], \"fields\": [names], \"force\": false, \"dry_run\": false}, all optional";

/// The local ids `named` name: local ids (UUIDs), Shopify ids or GIDs of local products.
async fn product_ids(state: &ApiState, named: &[String]) -> Result<Vec<ProductId>, ApiError> {
    let mut ids = Vec::with_capacity(named.len());
    for (index, text) in named.iter().enumerate() {
        let text = text.trim();
        if let Ok(local) = text.parse::<ProductId>() {
            ids.push(local);
            continue;
        }
        let field = format!("products[{index}]");
        let Ok(shopify) = text.parse::<ShopifyProductId>() else {
            return Err(ApiError::invalid(
                &field,
                format!(
                    "`{text}` is neither a local product id (UUID) nor a Shopify product id or GID"
                ),
            ));
        };
        let found = state
            .store
            .product_by_shopify_id(shopify)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::invalid(&field, format!("no product {text}")))?;
        ids.push(found.id);
    }
    Ok(ids)
}

/// Rolls an operation back: its changes return to the values before it, locally and in
/// Shopify, as new versions; products changed since are skipped (unless forced) and reported.
#[utoipa::path(
    post,
    operation_id = "rollback_operation",
    path = "/api/v1/operations/{id}/rollback",
    tag = "rollbacks",
    params(("id" = String, Path, description = "The operation rolled back")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"type\": \"full|partial|selective\" (default full), \"products\": [local ids, Shopify ids or GIDs] (partial: required; selective: optional), \"fields\": [names] (selective: required; as a restore names them), \"force\": false, \"dry_run\": false}`; a realtime operation is rolled back product by product"),
    responses(
        (status = 202, description = "`{rollback_id, operation_id, rollback}`: recorded as pending and queued; `GET /api/v1/rollbacks/{rollback_id}` follows it"),
        (status = 400, description = "A malformed id or body"),
        (status = 404, description = "No such operation"),
        (status = 409, description = "The operation cannot be rolled back (a dry run, nothing applied, rolled back already, still running) or a rollback of it is under way"),
        (status = 422, description = "A type that does not fit what it names, an unknown field or product; `field` names it"),
        (status = 503, description = "The jobs queue could not take it (the rollback is recorded as failed)")
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn rollback(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Identity>,
    Path(id): Path<String>,
    body: Result<Json<RollbackBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let original: OperationId = parse_id(&id, "an operation id (a UUID)")?;
    let body = crate::body::optional(body, ROLLBACK_BODY)?;
    let request = RollbackRequest {
        rollback_type: body.rollback_type,
        products: product_ids(&state, &body.products).await?,
        fields: body.fields,
        force: body.force,
        dry_run: body.dry_run,
    };
    let now = chrono::Utc::now();
    let (rollback, operation) = shopsync_engine::rollback::open_rollback(
        &state.store,
        original,
        &request,
        &caller.actor,
        now,
    )
    .await
    .map_err(|e| match e {
        RollbackError::NoOperation(id) => ApiError::not_found(format!("no operation {id}")),
        RollbackError::NotRollbackable(message) => {
            ApiError::new(StatusCode::CONFLICT, "not_rollbackable", message)
        }
        RollbackError::Invalid { field, message } => ApiError::invalid(field, message),
        RollbackError::Engine(e) => ApiError::internal(e),
    })?;
    let message = JobMessage::new(
        Job::Rollback {
            rollback: rollback.id,
        },
        now,
    );
    if let Err(e) = crate::routes::actions::queue(&state, vec![message]).await {
        // Not queued: recorded as cancelled (its rollback as failed), not left pending.
        let _ = shopsync_engine::review::cancel_operation(
            &state.store,
            operation.operation_uuid,
            &caller.actor,
            "the jobs queue could not take it",
        )
        .await;
        return Err(e);
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "rollback_id": rollback.id,
            "operation_id": operation.operation_uuid,
            "rollback": rollback,
        })),
    )
        .into_response())
}

/// One rollback: what it restored and skipped, and why.
#[utoipa::path(
    get,
    operation_id = "get_rollback",
    path = "/api/v1/rollbacks/{id}",
    tag = "rollbacks",
    params(("id" = String, Path, description = "The rollback")),
    responses(
        (status = 200, description = "The `sync_rollbacks` record: `original_operation_id`, `operation_id` (its own), `rollback_type`, `requested_by`, `status`, `backup_data` (references to the versions before and after the operation), `restored` and `skipped` (the first 1,000 each, with `restored_total` and `skipped_total`), and for a full rollback `categories_restored` and `categories_skipped` (collections)"),
        (status = 400, description = "Not a rollback id"),
        (status = 404, description = "No such rollback")
    ),
    security(("bearer" = ["viewer"]))
)]
pub async fn show(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: RollbackId = parse_id(&id, "a rollback id (a UUID)")?;
    let found: SyncRollback = state
        .store
        .get(&shopsync_store::item::Key::pk(id.to_string()))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no rollback {id}")))?;
    Ok(Json(found).into_response())
}

/// `?operation=&limit=&after=` of the rollback list.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListParams {
    operation: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

/// The rollbacks of an operation, newest first.
#[utoipa::path(
    get,
    operation_id = "list_rollbacks",
    path = "/api/v1/rollbacks",
    tag = "rollbacks",
    params(
        ("operation" = String, Query, description = "The operation rolled back (required)"),
        ("limit" = Option<u32>, Query, description = "Rollbacks in the page, 1 to 1000 (default 100)"),
        ("after" = Option<String>, Query, description = "The `next` token of the page before")
    ),
    responses(
        (status = 200, description = "`{rollbacks, next}`"),
        (status = 400, description = "No or a malformed operation, limit or cursor")
    ),
    security(("bearer" = ["viewer"]))
)]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    params: Result<UrlQuery<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let UrlQuery(params) = params.map_err(|e| {
        ApiError::bad_request(
            "bad_query",
            format!("{} (expected ?operation=ID&limit=&after=)", e.body_text()),
        )
    })?;
    let (limit, after) = page_of(params.limit, params.after)?;
    let Some(operation) = params.operation else {
        return Err(ApiError::bad_request(
            "bad_query",
            "operation is required: the rollbacks of which operation (?operation=ID)",
        ));
    };
    let operation: OperationId = parse_id(&operation, "an operation id (a UUID)")?;
    let mut query = Query::new(
        Table::SyncRollbacks,
        Some("by_original_operation"),
        operation.to_string(),
    );
    query.ascending = false;
    query.limit = limit;
    query.start = after;
    let page = state
        .store
        .query::<SyncRollback>(query)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "rollbacks": page.items, "next": page.next })).into_response())
}

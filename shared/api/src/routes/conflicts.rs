//! The conflict routes: list, one conflict, and settling one or many.

use crate::page::page_of;
use crate::redact::hide_costs;
use crate::routes::parse_id;
use crate::{ApiError, ApiState};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use shopsync_domain::{
    ConflictId, ConflictStatus, Identity, OperationId, ResolutionMethod, Role, Severity,
    SyncConflict,
};
use shopsync_engine::jobs::{operation_of_job, Job, JobMessage};
use shopsync_engine::resolve::{
    resolve_conflict, Choice, ConflictFilter, ConflictSelection, ResolveError,
};
use shopsync_store::item::Key;
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
    let selection = ConflictSelection {
        status: params.status,
        product,
        operation,
        severity: params.severity,
    };
    let mut query = selection.query();
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
        .filter(|c| selection.takes(c))
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

/// How the resolve routes name a strategy.
fn method_of(name: &str) -> Result<ResolutionMethod, ApiError> {
    serde_json::from_value(json!(name)).map_err(|_| {
        ApiError::invalid(
            "strategy",
            "must be local_wins, remote_wins, base, newest_wins, manual or merge",
        )
    })
}

/// `{"strategy", "value", "note"}` of settling a conflict.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    strategy: String,
    #[serde(default)]
    value: Option<serde_json::Value>,
    #[serde(default)]
    note: Option<String>,
}

fn choice_of(
    strategy: &str,
    value: Option<serde_json::Value>,
    note: Option<String>,
) -> Result<Choice, ApiError> {
    let method = method_of(strategy)?;
    if value.is_some() && method != ResolutionMethod::Manual {
        return Err(ApiError::invalid(
            "value",
            "is taken only with the manual strategy",
        ));
    }
    let note = note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if note.as_ref().is_some_and(|n| n.chars().count() > 1000) {
        return Err(ApiError::invalid(
            "note",
            "must be at most 1,000 characters",
        ));
    }
    Ok(Choice {
        method,
        value,
        note,
    })
}

fn refusal(e: ResolveError) -> ApiError {
    match e {
        ResolveError::NotFound(id) => ApiError::not_found(format!("no conflict {id}")),
        ResolveError::Settled { .. } => {
            ApiError::new(StatusCode::CONFLICT, "already_settled", e.to_string())
        }
        ResolveError::Refused(message) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
        }
        ResolveError::Locked { .. } => ApiError::new(StatusCode::LOCKED, "locked", e.to_string()),
        ResolveError::Busy => ApiError::new(StatusCode::CONFLICT, "busy", e.to_string()),
        ResolveError::Engine(e) => ApiError::internal(e),
    }
}

/// Settles one conflict: the chosen value becomes a new version of the product (change
/// source `conflict_resolution`), and its pushes resume once its last open conflict is
/// settled.
#[utoipa::path(
    post,
    operation_id = "resolve_conflict",
    path = "/api/v1/conflicts/{id}/resolve",
    tag = "conflicts",
    params(("id" = String, Path, description = "The conflict's `conflict_uuid`")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"strategy\": \"local_wins|remote_wins|base|newest_wins|manual|merge\", \"value\": ... (manual only), \"note\": \"...\"}`; merge unites tags and applies both sides' stock changes"),
    responses(
        (status = 200, description = "`{conflict}`: resolved, its `resolution` naming the strategy, the person, the time and the note"),
        (status = 400, description = "A malformed id or body"),
        (status = 404, description = "No such conflict"),
        (status = 409, description = "Settled already; nothing changed"),
        (status = 422, description = "A choice that cannot settle it (a manual value that does not fit the field, merge of another field, a conflict about a whole product)"),
        (status = 423, description = "Another holds the product's lock")
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn resolve(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Identity>,
    Path(id): Path<String>,
    body: Result<Json<ResolveRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let conflict_id: ConflictId = parse_id(&id, "a conflict id (a UUID)")?;
    let request = crate::body::required(
        body,
        "{\"strategy\": \"local_wins\", \"value\": ..., \"note\": \"...\"}",
    )?;
    let choice = choice_of(&request.strategy, request.value, request.note)?;
    let settled = resolve_conflict(
        &state.store,
        conflict_id,
        &choice,
        &caller.actor,
        chrono::Utc::now(),
    )
    .await
    .map_err(refusal)?;
    Ok(Json(json!({ "conflict": conflict_json(&settled, &caller) })).into_response())
}

/// Which conflicts a bulk resolve takes.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkFilter {
    product: Option<String>,
    operation: Option<String>,
    severity: Option<Severity>,
    field: Option<String>,
}

/// `{"ids": [...]}` or `{"filter": {...}}`, with the strategy.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    #[serde(default)]
    ids: Option<Vec<String>>,
    #[serde(default)]
    filter: Option<BulkFilter>,
    strategy: String,
    #[serde(default)]
    value: Option<serde_json::Value>,
    #[serde(default)]
    note: Option<String>,
}

/// The most conflicts one bulk resolve settles while the request waits; a filter that takes
/// more is settled by the worker.
const BULK_LIMIT: usize = 1000;

/// Queues a bulk resolve too large to answer at once: its operation is recorded as pending
/// by the caller, and the worker settles every open conflict the filter takes.
async fn queue_resolve(
    state: &ApiState,
    caller: &Identity,
    filter: ConflictFilter,
    choice: Choice,
) -> Result<Response, ApiError> {
    let now = chrono::Utc::now();
    let message = JobMessage::new(
        Job::ResolveConflicts {
            filter,
            choice,
            by: caller.actor.clone(),
        },
        now,
    );
    let mut pending = shopsync_domain::SyncOperation::new(
        &format!("bulk conflict resolution by {}", caller.actor),
        shopsync_domain::OperationType::ConflictResolution,
        shopsync_domain::SyncDirection::Bidirectional,
        caller.actor.clone(),
        now,
    );
    pending.operation_uuid = operation_of_job(&message.id);
    state
        .store
        .insert(&pending)
        .await
        .map_err(ApiError::internal)?;
    state.jobs.send(vec![message]).await.map_err(|e| {
        tracing::error!(error = %e.0, "the jobs queue refused a bulk resolve");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_unavailable",
            "the jobs queue could not take the work; try again",
        )
    })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "operation_id": pending.operation_uuid, "queued": true })),
    )
        .into_response())
}

/// Settles many conflicts with one strategy: listed by id, or the open conflicts a filter
/// selects.
#[utoipa::path(
    post,
    operation_id = "resolve_conflicts",
    path = "/api/v1/conflicts/resolve",
    tag = "conflicts",
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"ids\": [..]}` (at most 1,000) or `{\"filter\": {\"product\", \"operation\", \"severity\", \"field\"}}` (open conflicts; more than 1,000 are settled by the worker), with `strategy`, `value` (manual only) and `note` as for one conflict"),
    responses(
        (status = 200, description = "`{resolved, skipped, skipped_conflicts: [{id, reason}]}`"),
        (status = 202, description = "A filter taking more than 1,000 open conflicts: `{operation_id}`, recorded as pending by the caller and settled by the worker; its statistics count what was resolved (updated) and skipped"),
        (status = 400, description = "A malformed body"),
        (status = 422, description = "A bad strategy, neither ids nor filter, or more than 1,000 ids")
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn resolve_many(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Identity>,
    body: Result<Json<BulkRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = crate::body::required(
        body,
        "{\"ids\": [..]} or {\"filter\": {..}}, with \"strategy\"",
    )?;
    let choice = choice_of(&request.strategy, request.value, request.note)?;
    let ids: Vec<ConflictId> = match (request.ids, request.filter) {
        (Some(ids), None) => {
            if ids.len() > BULK_LIMIT {
                return Err(ApiError::invalid("ids", "at most 1,000 ids at once"));
            }
            ids.iter()
                .enumerate()
                .map(|(i, id)| {
                    id.parse::<ConflictId>().map_err(|_| {
                        ApiError::invalid(&format!("ids[{i}]"), "is not a conflict id (a UUID)")
                    })
                })
                .collect::<Result<_, _>>()?
        }
        (None, Some(filter)) => {
            let product = filter
                .product
                .as_deref()
                .map(|p| {
                    p.parse::<shopsync_domain::ProductId>().map_err(|_| {
                        ApiError::invalid("filter.product", "is not a local product id (a UUID)")
                    })
                })
                .transpose()?;
            let operation = filter
                .operation
                .as_deref()
                .map(|o| {
                    o.parse::<OperationId>().map_err(|_| {
                        ApiError::invalid("filter.operation", "is not an operation id (a UUID)")
                    })
                })
                .transpose()?;
            let filter = ConflictFilter {
                product,
                operation,
                severity: filter.severity,
                field: filter.field,
            };
            let matching = filter
                .open_conflicts(&state.store, BULK_LIMIT + 1)
                .await
                .map_err(ApiError::internal)?;
            if matching.len() > BULK_LIMIT {
                return queue_resolve(&state, &caller, filter, choice).await;
            }
            matching
        }
        _ => {
            return Err(ApiError::invalid(
                "ids",
                "give either `ids` or `filter` (one of them)",
            ))
        }
    };
    let now = chrono::Utc::now();
    let mut resolved = 0u64;
    let mut skipped = Vec::new();
    for id in ids {
        match resolve_conflict(&state.store, id, &choice, &caller.actor, now).await {
            Ok(_) => resolved += 1,
            Err(ResolveError::Engine(e)) => return Err(ApiError::internal(e)),
            Err(e) => skipped.push(json!({ "id": id, "reason": e.to_string() })),
        }
    }
    Ok(Json(json!({
        "resolved": resolved,
        "skipped": skipped.len(),
        "skipped_conflicts": skipped,
    }))
    .into_response())
}

//! The product routes: list, one product (with its `ETag`), its versions, and its lock.
//!
//! A product is named by its local id (a UUID) or its Shopify id (a number or a GID, whose
//! slashes may come unencoded), so one router route takes everything under
//! `/api/v1/products/` and dispatches on the suffix.

use crate::page::{page_of, requested, PageParams};
use crate::redact::hide_costs;
use crate::{ApiError, ApiState};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use shopsync_domain::{Identity, LockError, Product, ProductId, Role, ShopifyProductId};
use shopsync_store::item::{PageToken, Query};
use shopsync_store::records::ProductLookup;
use shopsync_store::{RepoError, Table};
use std::sync::Arc;

/// The longest lease a lock may be taken for (a day); a longer hold is renewed.
const MAX_LEASE_SECS: u64 = 86_400;
/// A lock's lease when none is asked for.
const DEFAULT_LEASE_SECS: u64 = 900;

/// A product as the API shows it (and its `needs_push`), costs hidden from viewers.
fn product_json(product: &Product, caller: &Identity) -> serde_json::Value {
    let mut value = json!({ "product": product, "needs_push": product.needs_push() });
    if !caller.allows(Role::Operator) {
        hide_costs(&mut value);
    }
    value
}

/// A product's answer with `ETag: "<version>"`.
fn with_etag(product: &Product, caller: &Identity) -> Response {
    let mut response = Json(product_json(product, caller)).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", product.version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// The product an id names: a local id (UUID) or a Shopify id (number or GID).
pub async fn find_product(state: &ApiState, id: &str) -> Result<Product, ApiError> {
    let found = if let Ok(local) = id.parse::<ProductId>() {
        state.store.product(local).await
    } else if let Ok(shopify) = id.parse::<ShopifyProductId>() {
        state.store.product_by_shopify_id(shopify).await
    } else {
        return Err(ApiError::bad_request(
            "bad_id",
            format!("`{id}` is neither a local product id (UUID) nor a Shopify product id or GID"),
        ));
    };
    found
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no product {id}")))
}

/// `?sku=&xorosoft_id=&needs_push=&locked=&limit=&after=` of the product list.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListParams {
    sku: Option<String>,
    xorosoft_id: Option<String>,
    needs_push: Option<bool>,
    locked: Option<bool>,
    limit: Option<u32>,
    after: Option<String>,
}

/// Products, filtered.
#[utoipa::path(
    get,
    operation_id = "list_products",
    path = "/api/v1/products",
    tag = "products",
    params(
        ("sku" = Option<String>, Query, description = "Products with a variant of this SKU (compared as Xorosoft links do: case, spaces and hyphens aside)"),
        ("xorosoft_id" = Option<String>, Query, description = "Products linked to this Xorosoft item"),
        ("needs_push" = Option<bool>, Query, description = "Products with (true) or without (false) local changes waiting for the up-sync"),
        ("locked" = Option<bool>, Query, description = "Products whose sync lock is (true) or is not (false) held now"),
        ("limit" = Option<u32>, Query, description = "Products in the page, 1 to 1000 (default 100); a filtered page may hold fewer and still have a `next`"),
        ("after" = Option<String>, Query, description = "The `next` token of the page before")
    ),
    responses(
        (status = 200, description = "`{products, next}`: each as `GET /api/v1/products/{id}` answers it"),
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
                "{} (expected ?sku=&xorosoft_id=&needs_push=true|false&locked=true|false&limit=&after=)",
                e.body_text()
            ),
        )
    })?;
    let (limit, after) = page_of(params.limit, params.after.clone())?;
    let now = chrono::Utc::now();
    let keep = |p: &Product| {
        params.needs_push.is_none_or(|wanted| p.needs_push() == wanted)
            && params.locked.is_none_or(|wanted| {
                matches!(
                    p.lock_state(now),
                    shopsync_domain::LockState::Held { .. }
                ) == wanted
            })
            // Listed by SKU, a Xorosoft item narrows the list to the products linked to it.
            && params.xorosoft_id.as_deref().is_none_or(|item| {
                params.sku.is_none() || p.xorosoft_id.as_deref() == Some(item)
            })
    };
    // By lookup (a SKU, a Xorosoft item): every match in one answer.
    let lookup = match (&params.sku, &params.xorosoft_id) {
        (Some(sku), _) => Some(ProductLookup::sku_key(sku)),
        (None, Some(item)) => Some(ProductLookup::xorosoft_key(item)),
        _ => None,
    };
    if let Some(key) = lookup {
        if after.is_some() {
            return Err(ApiError::bad_request(
                "bad_cursor",
                "a list by sku or xorosoft_id is one page; it takes no `after`",
            ));
        }
        let mut ids: Vec<ProductId> = state
            .store
            .lookups_of(&[key])
            .await
            .map_err(ApiError::internal)?
            .into_iter()
            .flatten()
            .map(|lookup| lookup.product_id)
            .collect();
        if let (None, Some(item)) = (&params.sku, &params.xorosoft_id) {
            // Products linked before lookups were kept carry the link on themselves.
            let linked = state
                .store
                .query_all::<Product>(Query::new(
                    Table::Products,
                    Some("by_xorosoft_id"),
                    item.clone(),
                ))
                .await
                .map_err(ApiError::internal)?;
            ids.extend(linked.iter().map(|p| p.id));
        }
        ids.sort();
        ids.dedup();
        let products: Vec<serde_json::Value> = state
            .store
            .products(&ids)
            .await
            .map_err(ApiError::internal)?
            .into_iter()
            .flatten()
            .filter(|p| keep(p))
            .take(limit as usize)
            .map(|p| product_json(&p, &caller))
            .collect();
        return Ok(Json(json!({ "products": products, "next": null })).into_response());
    }
    // Waiting for the push: the sparse index of exactly those; otherwise a page of the table.
    let (items, next): (Vec<Product>, Option<PageToken>) = if params.needs_push == Some(true) {
        let mut query = Query::new(Table::Products, Some("by_pending_push"), "1");
        query.limit = limit;
        query.start = after;
        let page = state
            .store
            .query::<Product>(query)
            .await
            .map_err(ApiError::internal)?;
        (page.items, page.next)
    } else {
        let page = state
            .store
            .scan::<Product>(limit, after.as_ref())
            .await
            .map_err(ApiError::internal)?;
        (page.items, page.next)
    };
    let products: Vec<serde_json::Value> = items
        .iter()
        .filter(|p| keep(p))
        .map(|p| product_json(p, &caller))
        .collect();
    Ok(Json(json!({ "products": products, "next": next })).into_response())
}

/// `GET /api/v1/products/{id}` and `GET /api/v1/products/{id}/versions`.
pub async fn read(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Identity>,
    Path(path): Path<String>,
    params: Result<UrlQuery<PageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    match path.strip_suffix("/versions") {
        Some(id) => versions(&state, id, params).await,
        None => show(&state, &caller, &path).await,
    }
}

/// `POST /api/v1/products/{id}/lock`.
pub async fn post(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Identity>,
    Path(path): Path<String>,
    body: Result<Json<LockRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    match path.strip_suffix("/lock") {
        Some(id) => lock(&state, &caller, id, body).await,
        None => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("/api/v1/products/{path} does not take POST"),
        )),
    }
}

/// `?force=true` of releasing a lock.
#[derive(Debug, Default, serde::Deserialize)]
pub struct UnlockParams {
    force: Option<bool>,
}

/// `DELETE /api/v1/products/{id}/lock`.
pub async fn delete(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Identity>,
    Path(path): Path<String>,
    params: Result<UrlQuery<UnlockParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let UrlQuery(params) = params.map_err(|e| {
        ApiError::bad_request(
            "bad_query",
            format!("{} (expected ?force=true|false)", e.body_text()),
        )
    })?;
    match path.strip_suffix("/lock") {
        Some(id) => unlock(&state, &caller, id, params.force.unwrap_or(false)).await,
        None => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("/api/v1/products/{path} does not take DELETE"),
        )),
    }
}

/// One product, with `ETag: "<version>"`.
#[utoipa::path(
    get,
    operation_id = "get_product",
    path = "/api/v1/products/{id}",
    tag = "products",
    params(("id" = String, Path, description = "The product's local id (a UUID), or its Shopify id as a number or a GID (`gid://shopify/Product/7`, its slashes encoded or not)")),
    responses(
        (status = 200, description = "`{product, needs_push}`, with `ETag: \"<version>\"`; cost values are hidden from viewers"),
        (status = 400, description = "Not a product id"),
        (status = 404, description = "No such product")
    ),
    security(("bearer" = ["viewer"]))
)]
pub async fn show(state: &ApiState, caller: &Identity, id: &str) -> Result<Response, ApiError> {
    let product = find_product(state, id).await?;
    Ok(with_etag(&product, caller))
}

/// A product's versions, newest first.
#[utoipa::path(
    get,
    operation_id = "list_product_versions",
    path = "/api/v1/products/{id}/versions",
    tag = "products",
    params(
        ("id" = String, Path, description = "The product's local id, Shopify id or GID"),
        ("limit" = Option<u32>, Query, description = "Versions in the page, 1 to 1000 (default 100)"),
        ("after" = Option<String>, Query, description = "The `next` token of the page before")
    ),
    responses(
        (status = 200, description = "`{product_id, versions, next}`"),
        (status = 400, description = "Not a product id, or a malformed limit or cursor"),
        (status = 404, description = "No such product")
    ),
    security(("bearer" = ["viewer"]))
)]
pub async fn versions(
    state: &ApiState,
    id: &str,
    params: Result<UrlQuery<PageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (limit, after) = requested(params)?;
    let product = find_product(state, id).await?;
    let page = state
        .store
        .product_versions(product.id, true, limit, after)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({
        "product_id": product.id,
        "versions": page.items,
        "next": page.next,
    }))
    .into_response())
}

/// `{"lease_secs", "reason"}` of taking a lock.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockRequest {
    /// Seconds the lock holds unless renewed (1 to 86,400; default 900).
    lease_secs: Option<u64>,
    /// Why, for the others who find the product locked.
    reason: Option<String>,
}

/// The lock as the API shows it.
fn lock_json(product: &Product) -> serde_json::Value {
    json!({
        "product_id": product.id,
        "locked": product.sync_locked,
        "locked_by": product.sync_locked_by,
        "expires_at": product.sync_lock_expires_at,
        "reason": product.sync_lock_reason,
    })
}

/// What a failed lock change answers.
fn lock_refused(e: RepoError) -> ApiError {
    match e {
        RepoError::Locked(LockError::HeldByOther { by, until }) => ApiError::new(
            StatusCode::CONFLICT,
            "locked",
            format!("{by} holds this product's lock until {}", until.to_rfc3339()),
        ),
        RepoError::Locked(LockError::NotHolder { actor }) => ApiError::new(
            StatusCode::CONFLICT,
            "not_holder",
            format!("{actor} does not hold this product's lock (an admin may release it with ?force=true)"),
        ),
        RepoError::Locked(LockError::BadLease) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_lease",
            "lease_secs must be positive",
        ),
        RepoError::NotFound { key, .. } => ApiError::not_found(format!("no product {key}")),
        RepoError::VersionConflict { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "busy",
            "the product kept changing while its lock was changed; try again",
        ),
        e => ApiError::internal(e),
    }
}

/// Takes (or renews) a product's sync lock: no sync, import or edit by anyone else changes
/// the product until it is released or its lease ends.
#[utoipa::path(
    post,
    operation_id = "lock_product",
    path = "/api/v1/products/{id}/lock",
    tag = "products",
    params(("id" = String, Path, description = "The product's local id, Shopify id or GID")),
    request_body(content = serde_json::Value, description = "`{\"lease_secs\": 1..86400 (default 900), \"reason\": \"...\"}`; both optional", content_type = "application/json"),
    responses(
        (status = 200, description = "`{product_id, locked, locked_by, expires_at, reason}`"),
        (status = 400, description = "A malformed id or body"),
        (status = 404, description = "No such product"),
        (status = 409, description = "Another holds the lock"),
        (status = 422, description = "A lease out of range")
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn lock(
    state: &ApiState,
    caller: &Identity,
    id: &str,
    body: Result<Json<LockRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = crate::body::optional(body, "{\"lease_secs\": 900, \"reason\": \"...\"}")?;
    let lease = request.lease_secs.unwrap_or(DEFAULT_LEASE_SECS);
    if !(1..=MAX_LEASE_SECS).contains(&lease) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_lease",
            format!("lease_secs must be 1 to {MAX_LEASE_SECS}, not {lease}"),
        ));
    }
    let reason = request
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.chars().count() > 500) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_reason",
            "reason must be at most 500 characters",
        ));
    }
    let product = find_product(state, id).await?;
    let lease = chrono::Duration::seconds(i64::try_from(lease).unwrap_or(i64::MAX));
    let locked = state
        .store
        .lock_product_because(product.id, &caller.actor, chrono::Utc::now(), lease, reason)
        .await
        .map_err(lock_refused)?;
    tracing::info!(product = %locked.id, by = %caller.actor, "product lock taken");
    Ok(Json(lock_json(&locked)).into_response())
}

/// Releases a product's sync lock: its holder, or an admin with `?force=true`.
#[utoipa::path(
    delete,
    operation_id = "unlock_product",
    path = "/api/v1/products/{id}/lock",
    tag = "products",
    params(
        ("id" = String, Path, description = "The product's local id, Shopify id or GID"),
        ("force" = Option<bool>, Query, description = "Release another's lock (admin only)")
    ),
    responses(
        (status = 200, description = "`{product_id, locked: false, ...}`, and `released_from` when forced"),
        (status = 400, description = "A malformed id or query"),
        (status = 403, description = "`force` without the admin role"),
        (status = 404, description = "No such product"),
        (status = 409, description = "The caller does not hold the lock")
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn unlock(
    state: &ApiState,
    caller: &Identity,
    id: &str,
    force: bool,
) -> Result<Response, ApiError> {
    if force && !caller.allows(Role::Admin) {
        return Err(ApiError::forbidden(format!(
            "{} is a {}; releasing another's lock needs the admin role",
            caller.actor, caller.role
        )));
    }
    let product = find_product(state, id).await?;
    let now = chrono::Utc::now();
    if force {
        let held_by = product
            .sync_locked_by
            .clone()
            .filter(|_| product.sync_locked);
        let released = state
            .store
            .break_product_lock(product.id, now)
            .await
            .map_err(lock_refused)?;
        tracing::warn!(product = %released.id, by = %caller.actor, held_by = ?held_by, "product lock released by force");
        let mut answer = lock_json(&released);
        answer["released_from"] = json!(held_by);
        return Ok(Json(answer).into_response());
    }
    let released = state
        .store
        .unlock_product(product.id, &caller.actor, now)
        .await
        .map_err(lock_refused)?;
    Ok(Json(lock_json(&released)).into_response())
}

/// `PATCH /api/v1/products/{id}`.
pub async fn patch(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Identity>,
    Path(path): Path<String>,
    headers: axum::http::HeaderMap,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    if path.ends_with("/lock") || path.ends_with("/versions") {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("/api/v1/products/{path} does not take PATCH"),
        ));
    }
    edit(&state, &caller, &path, &headers, body).await
}

/// The version an `If-Match` header names (`"7"`, `W/"7"` or `7`); `None` without one.
fn if_match(headers: &axum::http::HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let bare = text.trim_start_matches("W/").trim_matches('"');
    bare.parse::<u64>().map(Some).map_err(|_| {
        ApiError::bad_request(
            "bad_if_match",
            format!("If-Match must name one product version (\"7\" or 7), not `{text}`"),
        )
    })
}

/// Edits a local product: staged and applied as a `local_edit` operation (one row, one
/// version by the caller), then pushed to Shopify by the next up-sync.
#[utoipa::path(
    patch,
    operation_id = "edit_product",
    path = "/api/v1/products/{id}",
    tag = "products",
    params(
        ("id" = String, Path, description = "The product's local id, Shopify id or GID"),
        ("If-Match" = Option<String>, Header, description = "The version the edit was made against (`\"7\"` or `7`): 412 when the product has a newer one; without it the edit applies to the current version")
    ),
    request_body(content = serde_json::Value, content_type = "application/json", description = "Any subset of `{\"title\", \"body_html\", \"vendor\", \"product_type\", \"tags\": [..], \"status\": \"active|draft|archived\", \"variants\": [{\"id\" (Shopify id, GID or local key) or \"sku\", \"price\", \"compare_at_price\", \"barcode\", \"cost\", \"inventory\": [{\"location\", \"available\"}]}]}`"),
    responses(
        (status = 200, description = "`{product, needs_push, operation_id}` with the new `ETag` (`operation_id` null when the edit changed nothing)"),
        (status = 400, description = "A malformed id, body or If-Match"),
        (status = 404, description = "No such product"),
        (status = 412, description = "The product has a newer version than If-Match names"),
        (status = 422, description = "A value the edit cannot take; `field` names it"),
        (status = 423, description = "Another holds the product's lock")
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn edit(
    state: &ApiState,
    caller: &Identity,
    id: &str,
    headers: &axum::http::HeaderMap,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let expected = if_match(headers)?;
    let Json(body) = body.map_err(|e| {
        ApiError::bad_request(
            "bad_body",
            format!(
                "{} (expected a JSON object of the fields to change)",
                e.body_text()
            ),
        )
    })?;
    let edit = crate::edit_body::parse(&body)?;
    let product = find_product(state, id).await?;
    let edited = shopsync_engine::edit::edit_product(
        &state.store,
        product.id,
        &edit,
        expected,
        &caller.actor,
        chrono::Utc::now(),
    )
    .await
    .map_err(|e| {
        use shopsync_engine::edit::EditError;
        match e {
            EditError::NotFound(id) => ApiError::not_found(format!("no product {id}")),
            EditError::Stale { .. } => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, "stale", e.to_string())
            }
            EditError::Locked { .. } => ApiError::new(StatusCode::LOCKED, "locked", e.to_string()),
            EditError::Refused(refused) => {
                crate::edit_body::invalid(&refused.field, &refused.message)
            }
            EditError::Busy => ApiError::new(StatusCode::CONFLICT, "busy", e.to_string()),
            EditError::Engine(e) => ApiError::internal(e),
        }
    })?;
    let mut response = with_etag(&edited.product, caller);
    let mut answer = product_json(&edited.product, caller);
    answer["operation_id"] = json!(edited.operation_id);
    *response.body_mut() = axum::body::Body::from(answer.to_string());
    Ok(response)
}

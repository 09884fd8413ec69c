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
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    if let Some(id) = path.strip_suffix("/versions") {
        return versions(&state, &caller, id, UrlQuery::try_from_uri(&uri)).await;
    }
    if let Some(id) = path.strip_suffix("/diff") {
        return diff(&state, &caller, id, UrlQuery::try_from_uri(&uri)).await;
    }
    if let Some((id, number)) = path.rsplit_once("/versions/") {
        return version(&state, &caller, id, number).await;
    }
    show(&state, &caller, &path, UrlQuery::try_from_uri(&uri)).await
}

/// `POST /api/v1/products/{id}/lock`.
pub async fn post(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Identity>,
    Path(path): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    use axum::extract::FromRequest;
    if let Some(id) = path.strip_suffix("/lock") {
        let body = Json::<LockRequest>::from_request(request, &()).await;
        return lock(&state, &caller, id, body).await;
    }
    if let Some(id) = path.strip_suffix("/restore") {
        let headers = request.headers().clone();
        let body = Json::<RestoreRequest>::from_request(request, &()).await;
        return restore(&state, &caller, id, &headers, body).await;
    }
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("/api/v1/products/{path} does not take POST"),
    ))
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
    params(
        ("id" = String, Path, description = "The product's local id (a UUID), or its Shopify id as a number or a GID (`gid://shopify/Product/7`, its slashes encoded or not)"),
        ("at" = Option<String>, Query, description = "An RFC 3339 time: the product as it was then (its newest version made at or before it)")
    ),
    responses(
        (status = 200, description = "`{product, needs_push}`, with `ETag: \"<version>\"`; with `at`, `{at, product_id, version}` (the version it had then); cost values are hidden from viewers"),
        (status = 400, description = "Not a product id, or `at` not an RFC 3339 time"),
        (status = 404, description = "No such product, or it had no version yet at `at`")
    ),
    security(("bearer" = ["viewer"]))
)]
pub async fn show(
    state: &ApiState,
    caller: &Identity,
    id: &str,
    params: Result<UrlQuery<ShowParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let UrlQuery(params) = params.map_err(|e| {
        ApiError::bad_request(
            "bad_query",
            format!("{} (expected ?at=<RFC 3339 time>)", e.body_text()),
        )
    })?;
    let product = find_product(state, id).await?;
    let Some(at) = params.at else {
        return Ok(with_etag(&product, caller));
    };
    let at = chrono::DateTime::parse_from_rfc3339(at.trim())
        .map_err(|e| {
            ApiError::bad_request(
                "bad_at",
                format!("at must be an RFC 3339 time (2026-12-07T10:00:00Z), not `{at}`: {e}"),
            )
        })?
        .with_timezone(&chrono::Utc);
    let then = version_at(state, product.id, at).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "product {} had no version yet at {}",
            product.id,
            at.to_rfc3339()
        ))
    })?;
    let mut answer = json!({ "at": at, "product_id": product.id, "version": then });
    if !caller.allows(Role::Operator) {
        hide_costs(&mut answer);
    }
    Ok(Json(answer).into_response())
}

/// `?at=` of one product.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ShowParams {
    at: Option<String>,
}

/// The version product `id` had at `at`: its newest one made at or before then.
async fn version_at(
    state: &ApiState,
    id: ProductId,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Option<shopsync_domain::ProductVersion>, ApiError> {
    let mut after = None;
    loop {
        let page = state
            .store
            .product_versions(id, true, crate::page::MAX_PAGE, after)
            .await
            .map_err(ApiError::internal)?;
        if let Some(found) = page.items.into_iter().find(|v| v.created_at <= at) {
            return Ok(Some(found));
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(None),
        }
    }
}

/// One version of a product.
#[utoipa::path(
    get,
    operation_id = "get_product_version",
    path = "/api/v1/products/{id}/versions/{n}",
    tag = "products",
    params(
        ("id" = String, Path, description = "The product's local id, Shopify id or GID"),
        ("n" = u64, Path, description = "The version number (from 1)")
    ),
    responses(
        (status = 200, description = "The version: `{product_id, version_number, product_data, changed_fields, change_source, changed_by, sync_operation_id, created_at}`; cost values are hidden from viewers"),
        (status = 400, description = "Not a product id or a version number"),
        (status = 404, description = "No such product or version")
    ),
    security(("bearer" = ["viewer"]))
)]
pub async fn version(
    state: &ApiState,
    caller: &Identity,
    id: &str,
    number: &str,
) -> Result<Response, ApiError> {
    let number = version_number("n", number)?;
    let product = find_product(state, id).await?;
    let found = stored_version(state, product.id, number).await?;
    let mut answer = json!(found);
    if !caller.allows(Role::Operator) {
        hide_costs(&mut answer);
    }
    Ok(Json(answer).into_response())
}

/// A version number given as `name`; anything but a positive integer is a 400 naming it.
fn version_number(name: &str, text: &str) -> Result<u64, ApiError> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_version",
                format!("{name} must be a version number (1 or more), not `{text}`"),
            )
        })
}

/// Version `number` of product `id` (404 when it has none).
async fn stored_version(
    state: &ApiState,
    id: ProductId,
    number: u64,
) -> Result<shopsync_domain::ProductVersion, ApiError> {
    state
        .store
        .product_version(id, number)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("product {id} has no version {number}")))
}

/// `?from=N&to=M` of a diff.
#[derive(Debug, Default, serde::Deserialize)]
pub struct DiffParams {
    from: Option<String>,
    to: Option<String>,
}

/// What changed between two versions of a product, field by field, variants by key.
#[utoipa::path(
    get,
    operation_id = "diff_product_versions",
    path = "/api/v1/products/{id}/diff",
    tag = "products",
    params(
        ("id" = String, Path, description = "The product's local id, Shopify id or GID"),
        ("from" = u64, Query, description = "The version compared from"),
        ("to" = Option<u64>, Query, description = "The version compared to (default: the product's current version)")
    ),
    responses(
        (status = 200, description = "`{product_id, from, to, fields: {field: {old, new}}, variants: {key: {change: added|removed|changed, fields: {field: {old, new}}}}}`; stock fields are `inventory/{location}`; cost values are hidden from viewers"),
        (status = 400, description = "Not a product id, or `from`/`to` missing or not version numbers"),
        (status = 404, description = "No such product or version")
    ),
    security(("bearer" = ["viewer"]))
)]
pub async fn diff(
    state: &ApiState,
    caller: &Identity,
    id: &str,
    params: Result<UrlQuery<DiffParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let UrlQuery(params) = params.map_err(|e| {
        ApiError::bad_request(
            "bad_query",
            format!("{} (expected ?from=N&to=M)", e.body_text()),
        )
    })?;
    let from = params
        .from
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("bad_version", "from is required (?from=N&to=M)"))
        .and_then(|text| version_number("from", text))?;
    let to = params
        .to
        .as_deref()
        .map(|text| version_number("to", text))
        .transpose()?;
    let product = find_product(state, id).await?;
    let to = to.unwrap_or(product.version);
    let (older, newer) = (
        stored_version(state, product.id, from).await?,
        stored_version(state, product.id, to).await?,
    );
    let mut answer = json!({
        "product_id": product.id,
        "from": from,
        "to": to,
        "fields": {},
        "variants": {},
    });
    let before_keys: std::collections::BTreeSet<String> = older
        .product_data
        .variants
        .iter()
        .map(|v| v.key.to_string())
        .collect();
    let after_keys: std::collections::BTreeSet<String> = newer
        .product_data
        .variants
        .iter()
        .map(|v| v.key.to_string())
        .collect();
    for (path, change) in older.product_data.diff_to(&newer.product_data) {
        let entry = json!({ "old": change.old, "new": change.new });
        match path.variant_key() {
            None => answer["fields"][path.as_str()] = entry,
            Some(key) => {
                let field = path
                    .as_str()
                    .strip_prefix(&format!("variants/{key}/"))
                    .unwrap_or(path.as_str())
                    .to_owned();
                let kind = match (before_keys.contains(key), after_keys.contains(key)) {
                    (false, _) => "added",
                    (_, false) => "removed",
                    _ => "changed",
                };
                let variant = &mut answer["variants"][key];
                variant["change"] = json!(kind);
                variant["fields"][field] = entry;
            }
        }
    }
    if !caller.allows(Role::Operator) {
        hide_costs(&mut answer);
    }
    Ok(Json(answer).into_response())
}

/// `{"version", "fields"}` of a restore.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The version whose values come back.
    version: u64,
    /// The fields restored (default: every field but stock).
    #[serde(default)]
    fields: Vec<String>,
}

/// Restores fields of a product to their values at one of its versions: a `restore`
/// operation (one row, one version with change source `rollback`), pushed by the next up-sync.
#[utoipa::path(
    post,
    operation_id = "restore_product",
    path = "/api/v1/products/{id}/restore",
    tag = "products",
    params(
        ("id" = String, Path, description = "The product's local id, Shopify id or GID"),
        ("If-Match" = Option<String>, Header, description = "The version the restore was decided against: 412 when the product has a newer one")
    ),
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"version\": N, \"fields\": [..]}`: `fields` names product fields (`title`, `tags`), variant fields for every variant (`price`, `barcode`), `variant_title`, `variants/{key}` or `variants/{key}/{field}`; without it every field but stock comes back. Stock is never set to an older level (roll back the operation that changed it)"),
    responses(
        (status = 200, description = "`{product, needs_push, operation_id}` with the new `ETag` (`operation_id` null when nothing changed)"),
        (status = 400, description = "A malformed id, body or If-Match"),
        (status = 404, description = "No such product or version"),
        (status = 412, description = "The product has a newer version than If-Match names"),
        (status = 422, description = "An unknown field, or stock named; `field` names it"),
        (status = 423, description = "Another holds the product's lock")
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn restore(
    state: &ApiState,
    caller: &Identity,
    id: &str,
    headers: &axum::http::HeaderMap,
    body: Result<Json<RestoreRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let expected = if_match(headers)?;
    let request = crate::body::required(
        body,
        "{\"version\": N, \"fields\": [\"title\", \"price\", ...]}",
    )?;
    if request.version == 0 {
        return Err(crate::edit_body::invalid(
            "version",
            "version must be 1 or more",
        ));
    }
    let selection = shopsync_domain::restore::FieldSelection::parse(&request.fields)
        .map_err(|message| crate::edit_body::invalid("fields", &message))?;
    let product = find_product(state, id).await?;
    let restored = shopsync_engine::edit::restore_product(
        &state.store,
        product.id,
        request.version,
        &selection,
        expected,
        &caller.actor,
        chrono::Utc::now(),
    )
    .await
    .map_err(edit_refused)?;
    let mut response = with_etag(&restored.product, caller);
    let mut answer = product_json(&restored.product, caller);
    answer["operation_id"] = json!(restored.operation_id);
    *response.body_mut() = axum::body::Body::from(answer.to_string());
    Ok(response)
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
    caller: &Identity,
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
    let mut answer = json!({
        "product_id": product.id,
        "versions": page.items,
        "next": page.next,
    });
    if !caller.allows(Role::Operator) {
        hide_costs(&mut answer);
    }
    Ok(Json(answer).into_response())
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
    if ["/lock", "/versions", "/diff", "/restore"]
        .iter()
        .any(|suffix| path.ends_with(suffix))
        || path.contains("/versions/")
    {
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
    .map_err(edit_refused)?;

    let mut response = with_etag(&edited.product, caller);
    let mut answer = product_json(&edited.product, caller);
    answer["operation_id"] = json!(edited.operation_id);
    *response.body_mut() = axum::body::Body::from(answer.to_string());
    Ok(response)
}

/// What a refused edit or restore answers.
fn edit_refused(e: shopsync_engine::edit::EditError) -> ApiError {
    use shopsync_engine::edit::EditError;
    match e {
        EditError::NotFound(id) => ApiError::not_found(format!("no product {id}")),
        EditError::NoVersion { .. } => ApiError::not_found(e.to_string()),
        EditError::Stale { .. } => {
            ApiError::new(StatusCode::PRECONDITION_FAILED, "stale", e.to_string())
        }
        EditError::Locked { .. } => ApiError::new(StatusCode::LOCKED, "locked", e.to_string()),
        EditError::Refused(refused) => crate::edit_body::invalid(&refused.field, &refused.message),
        EditError::Busy => ApiError::new(StatusCode::CONFLICT, "busy", e.to_string()),
        EditError::Engine(e) => ApiError::internal(e),
    }
}

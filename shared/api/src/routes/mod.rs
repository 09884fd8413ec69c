//! The admin routes, each documented where it is written (its `#[utoipa::path]` names its
//! path, parameters, answers and the role it needs).

pub mod actions;
pub mod conflicts;
pub mod imports;
pub mod operations;
pub mod products;
pub mod rollbacks;

use crate::ApiError;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;

/// The document's parts that are no route: the API's description and its bearer scheme.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "shopsync admin API",
        version = "1",
        description = "Read and act on the sync: products (their versions, diffs and restores), operations, conflicts, locks, rollbacks and Xorosoft imports. Every operation names the role it needs as the scope of its `bearer` requirement (viewer < operator < admin); errors are `{\"error\", \"message\"}`. Locally the bearer token is one of SHOPSYNC_API_TOKENS; on AWS it is a JWT that API Gateway verifies."
    ),
    paths(
        openapi_document,
        operations::list,
        operations::show,
        actions::start_sync,
        actions::approve,
        actions::reject,
        actions::cancel,
        actions::resume,
        products::list,
        products::show,
        products::edit,
        products::versions,
        products::version,
        products::diff,
        products::restore,
        products::lock,
        products::unlock,
        conflicts::list,
        conflicts::show,
        conflicts::resolve,
        conflicts::resolve_many,
        imports::list,
        imports::show,
        rollbacks::rollback,
        rollbacks::list,
        rollbacks::show,
    ),
    modifiers(&BearerScheme)
)]
struct Document;

/// Adds the `bearer` security scheme the operations' requirements name.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token of SHOPSYNC_API_TOKENS (local) or a JWT API Gateway verified; its scope here is the role an operation needs",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document, generated from the annotations.
pub fn document() -> utoipa::openapi::OpenApi {
    Document::openapi()
}

/// This document.
#[utoipa::path(
    get,
    operation_id = "get_openapi",
    path = "/api/v1/openapi.json",
    tag = "api",
    responses((status = 200, description = "The OpenAPI 3.1 document of the admin API")),
    security(())
)]
pub async fn openapi_document() -> Response {
    // Built once per process: the document never changes while it runs.
    static DOCUMENT: std::sync::OnceLock<axum::body::Bytes> = std::sync::OnceLock::new();
    let body = DOCUMENT.get_or_init(|| serde_json::to_vec(&document()).unwrap_or_default().into());
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.clone(),
    )
        .into_response()
}

/// No such route: 404 naming the path.
pub async fn no_route(method: Method, uri: Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {method} {}", uri.path()),
    )
    .into_response()
}

/// A route that exists but not for this method: 405 naming it.
pub async fn wrong_method(method: Method, uri: Uri) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}", uri.path()),
    )
    .into_response()
}

/// Parses a path id, or a 400 naming what it should be.
pub fn parse_id<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request("bad_id", format!("`{text}` is not {what}")))
}

//! The admin API of shopsync: one axum [`Router`] that `shopsync serve` mounts and the admin
//! Lambda functions run, its roles, and its OpenAPI document.
//!
//! Access is decided by the document: every operation of [`openapi`] names the role it needs
//! (a `bearer` security requirement whose scope is `viewer`, `operator` or `admin`), or an
//! empty requirement for a route anyone may call. A layer in front of every route finds the
//! documented operation a request is for, answers 401 without an identity and 403 when the
//! role is too low, and hands the handler the caller's [`Identity`]. A route the document
//! does not describe is refused to everyone, so a route cannot be added without its rule.

pub mod auth;
mod body;
mod edit_body;
mod error;
#[cfg(feature = "lambda")]
pub mod lambda;
mod page;
mod redact;
mod routes;
mod rules;

pub use auth::{AuthError, Authenticator, TokensError, VerifiedClaims};
pub use error::ApiError;

/// Reads the body of `PATCH /api/v1/products/{id}` (also `shopsync product edit`'s) into an
/// edit; a field of the wrong kind is an error naming it.
pub fn parse_edit(body: &serde_json::Value) -> Result<shopsync_domain::ProductEdit, ApiError> {
    edit_body::parse(body)
}

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use shopsync_domain::Identity;
use shopsync_store::Store;
use std::sync::Arc;

/// What the routes work with.
pub struct ApiState {
    /// The store.
    pub store: Store,
    /// How callers are identified.
    pub auth: Authenticator,
    /// Where work that talks to Shopify goes (syncs, approved applies, resumed operations).
    pub jobs: Arc<dyn shopsync_engine::jobs::JobQueue>,
}

/// Which routes a host serves: all of them (`shopsync serve`), or the part one Lambda
/// function answers behind API Gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Every admin route.
    All,
    /// The conflict routes (`functions/conflict-resolver`).
    Conflicts,
    /// The rollback routes and a product's restore (`functions/rollback`).
    Rollbacks,
    /// Every other admin route (`functions/admin-api`).
    Admin,
}

/// The admin routes with their access layer, for a host to serve (and to merge its own
/// routes into, such as a health check or webhooks, which are not admin routes).
pub fn router(state: Arc<ApiState>) -> Router {
    router_part(state, Part::All)
}

/// The routes of `part`, with the access layer; any other path answers 404.
pub fn router_part(state: Arc<ApiState>, part: Part) -> Router {
    let mut routes = Router::new();
    if matches!(part, Part::All | Part::Rollbacks) {
        routes = routes
            .route(
                "/api/v1/operations/{id}/rollback",
                post(routes::rollbacks::rollback),
            )
            .route("/api/v1/rollbacks", get(routes::rollbacks::list))
            .route("/api/v1/rollbacks/{id}", get(routes::rollbacks::show));
    }
    if part == Part::Rollbacks {
        // A product's restore (`POST /api/v1/products/{id}/restore`, where a GID may come
        // with its slashes unencoded).
        routes = routes.route("/api/v1/products/{*path}", post(routes::products::post));
    }
    if matches!(part, Part::All | Part::Admin) {
        routes = routes
            .route("/api/v1/openapi.json", get(routes::openapi_document))
            .route("/api/v1/operations", get(routes::operations::list))
            .route("/api/v1/operations/{id}", get(routes::operations::show))
            .route(
                "/api/v1/operations/{id}/approve",
                post(routes::actions::approve),
            )
            .route(
                "/api/v1/operations/{id}/reject",
                post(routes::actions::reject),
            )
            .route(
                "/api/v1/operations/{id}/cancel",
                post(routes::actions::cancel),
            )
            .route(
                "/api/v1/operations/{id}/resume",
                post(routes::actions::resume),
            )
            .route("/api/v1/sync", post(routes::actions::start_sync))
            .route("/api/v1/products", get(routes::products::list))
            // `{id}`, `{id}/versions` and `{id}/lock`, where a GID may come with its slashes
            // unencoded.
            .route(
                "/api/v1/products/{*path}",
                get(routes::products::read)
                    .patch(routes::products::patch)
                    .post(routes::products::post)
                    .delete(routes::products::delete),
            )
            .route("/api/v1/xorosoft/imports", get(routes::imports::list))
            .route("/api/v1/xorosoft/imports/{id}", get(routes::imports::show));
    }
    if matches!(part, Part::All | Part::Conflicts) {
        routes = routes
            .route("/api/v1/conflicts", get(routes::conflicts::list))
            .route(
                "/api/v1/conflicts/resolve",
                post(routes::conflicts::resolve_many),
            )
            .route("/api/v1/conflicts/{id}", get(routes::conflicts::show))
            .route(
                "/api/v1/conflicts/{id}/resolve",
                post(routes::conflicts::resolve),
            );
    }
    routes
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), enforce))
        .fallback(routes::no_route)
        .method_not_allowed_fallback(routes::wrong_method)
        .with_state(state)
}

/// The API's OpenAPI 3.1 document (generated from the handlers' annotations).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::document()
}

/// Identifies the caller and checks their role against the documented rule of the route
/// the request is for; the identity goes on to the handler.
async fn enforce(State(state): State<Arc<ApiState>>, mut request: Request, next: Next) -> Response {
    let required = match rules::rules().find(request.method(), request.uri().path()) {
        rules::Found::Operation(Some(rules::Access::Anyone)) => return next.run(request).await,
        rules::Found::Operation(Some(rules::Access::Role(role))) => role,
        rules::Found::Operation(None) => {
            tracing::error!(
                method = %request.method(),
                path = request.uri().path(),
                "an admin route has no access rule in the OpenAPI document; refused"
            );
            return ApiError::forbidden("this route has no access rule; it is refused to everyone")
                .into_response();
        }
        // Undocumented: refused to everyone as no route.
        rules::Found::OtherMethods => {
            return routes::wrong_method(request.method().clone(), request.uri().clone()).await
        }
        rules::Found::Nothing => {
            return routes::no_route(request.method().clone(), request.uri().clone()).await
        }
    };
    let authorization = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let claims = request.extensions().get::<VerifiedClaims>();
    let identity: Identity = match state.auth.identify(authorization, claims) {
        Ok(identity) => identity,
        Err(AuthError::Unauthenticated(message)) => {
            return ApiError::unauthorized(message).into_response()
        }
        Err(AuthError::NoRole(message)) => return ApiError::forbidden(message).into_response(),
    };
    if !identity.allows(required) {
        return ApiError::forbidden(format!(
            "{} is a {}; this needs the {required} role",
            identity.actor, identity.role
        ))
        .into_response();
    }
    request.extensions_mut().insert(identity);
    next.run(request).await
}

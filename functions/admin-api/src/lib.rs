//! The `admin-api` function: the admin routes other than the conflicts' (products, edits,
//! locks, operations, syncs, imports, the OpenAPI document), behind API Gateway's HTTP API
//! and its JWT authorizer. Thin: the routes, their roles and their answers are
//! `shopsync_api`'s.

use std::sync::Arc;

/// The routes this function answers.
pub fn router(state: Arc<shopsync_api::ApiState>) -> axum::Router {
    shopsync_api::router_part(state, shopsync_api::Part::Admin)
}

pub use shopsync_api::lambda::{handle, state_from_env};

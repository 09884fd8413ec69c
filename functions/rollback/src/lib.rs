//! The `rollback` function: the rollback routes (roll an operation back, read rollbacks) and
//! a product's restore, behind API Gateway's HTTP API and its JWT authorizer. Thin: the routes,
//! their roles and their answers are `shopsync_api`'s; a rollback is queued for sync-worker,
//! which runs it (the engine's).

use std::sync::Arc;

/// The routes this function answers.
pub fn router(state: Arc<shopsync_api::ApiState>) -> axum::Router {
    shopsync_api::router_part(state, shopsync_api::Part::Rollbacks)
}

pub use shopsync_api::lambda::{handle, state_from_env};

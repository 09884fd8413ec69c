//! The `conflict-resolver` function: the conflict routes (list, show, resolve one or many),
//! behind API Gateway's HTTP API and its JWT authorizer. Thin: the routes, their roles and
//! their answers are `shopsync_api`'s, and a resolution is the engine's.

use std::sync::Arc;

/// The routes this function answers.
pub fn router(state: Arc<shopsync_api::ApiState>) -> axum::Router {
    shopsync_api::router_part(state, shopsync_api::Part::Conflicts)
}

pub use shopsync_api::lambda::{handle, state_from_env};

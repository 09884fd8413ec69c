//! The admin API in Lambda: an API Gateway HTTP API event in, the router's answer out.
//!
//! API Gateway's JWT authorizer has verified the token before the function runs; the claims
//! it passes on in the request context are the caller's identity ([`VerifiedClaims`]). A
//! request without them (a route left without the authorizer) has no identity.

use crate::{ApiState, Authenticator, VerifiedClaims};
use axum::Router;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, Response};
use shopsync_runtime::{Env, SettingsError};
use std::sync::Arc;
use tower::ServiceExt;

/// The largest answer the API gives (API Gateway's own limit is 10 MB).
const MAX_ANSWER: usize = 10 * 1024 * 1024;

/// The JWT claims API Gateway verified, from the request's context.
fn verified_claims(context: Option<&RequestContext>) -> Option<VerifiedClaims> {
    let RequestContext::ApiGatewayV2(context) = context? else {
        return None;
    };
    let jwt = context.authorizer.as_ref()?.jwt.as_ref()?;
    Some(VerifiedClaims(
        jwt.claims
            .iter()
            .map(|(name, value)| (name.clone(), serde_json::Value::String(value.clone())))
            .collect(),
    ))
}

/// Answers one API Gateway request with `router`.
pub async fn handle(router: &Router, request: Request) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    let claims = verified_claims(parts.extensions.get::<RequestContext>());
    if let Some(claims) = claims {
        parts.extensions.insert(claims);
    }
    let body = match body {
        Body::Empty => axum::body::Body::empty(),
        Body::Text(text) => axum::body::Body::from(text),
        Body::Binary(bytes) => axum::body::Body::from(bytes),
        _ => axum::body::Body::empty(),
    };
    let answer = match router
        .clone()
        .oneshot(axum::http::Request::from_parts(parts, body))
        .await
    {
        Ok(answer) => answer,
        Err(never) => match never {},
    };
    let (parts, body) = answer.into_parts();
    let body = match axum::body::to_bytes(body, MAX_ANSWER).await {
        Ok(bytes) => match String::from_utf8(bytes.to_vec()) {
            Ok(text) => Body::Text(text),
            Err(bytes) => Body::Binary(bytes.into_bytes()),
        },
        Err(e) => {
            tracing::error!(error = %e, "an answer could not be read");
            let mut failed = Response::new(Body::Text(
                r#"{"error":"internal","message":"the answer could not be sent"}"#.into(),
            ));
            *failed.status_mut() = lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR;
            return failed;
        }
    };
    Response::from_parts(parts, body)
}

/// The API's state as a function's environment describes it: the DynamoDB store, the jobs
/// queue, and identities from verified JWT claims (`SHOPSYNC_JWT_USER_CLAIM`, default
/// `email`; `SHOPSYNC_JWT_ROLE_CLAIM`, default `cognito:groups`).
pub async fn state_from_env(env: &dyn Env) -> Result<Arc<ApiState>, SettingsError> {
    let settings = shopsync_runtime::Settings::from_env(env)?;
    Ok(Arc::new(ApiState {
        store: settings.store().await,
        auth: Authenticator::claims(
            env.var("SHOPSYNC_JWT_USER_CLAIM"),
            env.var("SHOPSYNC_JWT_ROLE_CLAIM"),
        ),
        jobs: shopsync_runtime::queue(env).await?,
    }))
}

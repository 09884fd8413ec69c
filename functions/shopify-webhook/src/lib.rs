//! The `shopify-webhook` function: an HTTP event (Function URL or API Gateway, via
//! lambda_http) in, the engine's webhook intake, an HTTP answer out. Thin on purpose: every
//! decision is the intake's.

use lambda_http::{Body, Request, Response};
use shopsync_engine::intake::WebhookIntake;

/// Handles one HTTP request: `POST` with the raw body (lambda_http has already undone any
/// base64 transport encoding); anything else is 405.
pub async fn handle(intake: &WebhookIntake, request: Request) -> Response<Body> {
    let reply = if request.method() != lambda_http::http::Method::POST {
        shopsync_engine::intake::IntakeReply {
            status: 405,
            body: serde_json::json!({"error": "method_not_allowed", "message": "Shopify webhooks are POSTed"}),
        }
    } else {
        intake
            .receive(
                request.headers(),
                request.body().as_ref(),
                chrono::Utc::now(),
            )
            .await
    };
    let mut response = Response::new(Body::Text(reply.body.to_string()));
    *response.status_mut() = lambda_http::http::StatusCode::from_u16(reply.status)
        .unwrap_or(lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        lambda_http::http::header::CONTENT_TYPE,
        lambda_http::http::HeaderValue::from_static("application/json"),
    );
    response
}

//! The `shopify-webhook` function: an HTTP event (Function URL or API Gateway, via
//! lambda_http) in, the engine's webhook intake, an HTTP answer out. Thin on purpose: every
//! decision is the intake's.

use lambda_http::{Body, Request, Response};
use shopsync_engine::intake::WebhookIntake;

/// Handles one HTTP request with the host's intake as its secrets stand now; when a secret
/// cannot be read (and none was read before), the answer is 503 and Shopify retries.
pub async fn handle_with(host: &shopsync_runtime::WebhookHost, request: Request) -> Response<Body> {
    match host.intake().await {
        Ok(intake) => handle(&intake, request).await,
        Err(e) => {
            tracing::error!(error = %e, "the webhook intake is not available");
            http_reply(shopsync_engine::intake::IntakeReply {
                status: 503,
                body: serde_json::json!({"error": "unavailable", "message": "try again later"}),
            })
        }
    }
}

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
    http_reply(reply)
}

fn http_reply(reply: shopsync_engine::intake::IntakeReply) -> Response<Body> {
    let mut response = Response::new(Body::Text(reply.body.to_string()));
    *response.status_mut() = lambda_http::http::StatusCode::from_u16(reply.status)
        .unwrap_or(lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        lambda_http::http::header::CONTENT_TYPE,
        lambda_http::http::HeaderValue::from_static("application/json"),
    );
    response
}

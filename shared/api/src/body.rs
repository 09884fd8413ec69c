//! Reading a route's JSON body: a body that is not JSON (or not sent as JSON) is a 400, a
//! field of the wrong kind or an unknown field a 422, each naming what was expected.

use crate::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::Json;

fn refused(e: JsonRejection, expected: &str) -> ApiError {
    let status = match e {
        JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(
        status,
        "bad_body",
        format!("{} (expected {expected})", e.body_text()),
    )
}

/// A body the route needs.
pub fn required<T>(body: Result<Json<T>, JsonRejection>, expected: &str) -> Result<T, ApiError> {
    body.map(|Json(body)| body)
        .map_err(|e| refused(e, expected))
}

/// A body the route may go without (none sent: the defaults).
pub fn optional<T: Default>(
    body: Result<Json<T>, JsonRejection>,
    expected: &str,
) -> Result<T, ApiError> {
    match body {
        Ok(Json(body)) => Ok(body),
        Err(JsonRejection::MissingJsonContentType(_)) => Ok(T::default()),
        Err(e) => Err(refused(e, expected)),
    }
}

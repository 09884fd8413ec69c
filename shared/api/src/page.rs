//! `?limit=N&after=TOKEN` of the listing routes.

use crate::ApiError;
use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use shopsync_store::item::PageToken;

/// The most items a page holds.
pub const MAX_PAGE: u32 = 1000;
/// Items in a page when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 100;

/// `?limit=N&after=TOKEN`: at most `limit` items (1..=1000, default 100) after the page that
/// answered `next: TOKEN`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct PageParams {
    limit: Option<u32>,
    after: Option<String>,
}

/// The page asked for; a bad parameter is a 400 naming it.
pub fn requested(
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<(u32, Option<PageToken>), ApiError> {
    let Query(params) = params.map_err(|e| {
        ApiError::bad_request(
            "bad_query",
            format!(
                "{} (expected ?limit=1..{MAX_PAGE}&after=TOKEN)",
                e.body_text()
            ),
        )
    })?;
    page_of(params.limit, params.after)
}

/// Checks a limit and a cursor given some other way (with a route's own filters).
pub fn page_of(
    limit: Option<u32>,
    after: Option<String>,
) -> Result<(u32, Option<PageToken>), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "bad_limit",
            format!("limit must be 1 to {MAX_PAGE}, not {limit}"),
        ));
    }
    let after = match after {
        None => None,
        Some(text) => {
            let token = PageToken::from_string(text);
            if token.decode().is_none() {
                return Err(ApiError::bad_request(
                    "bad_cursor",
                    "after must be a `next` token this route answered",
                ));
            }
            Some(token)
        }
    };
    Ok((limit, after))
}

//! Errors of the Shopify layer. Each variant says whether retrying can help.

use serde::{Deserialize, Serialize};

/// One `userErrors` entry of a mutation payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserError {
    /// Shopify's error code, when the payload type has one.
    #[serde(default)]
    pub code: Option<String>,
    /// Path to the offending input field.
    #[serde(default)]
    pub field: Option<Vec<String>>,
    /// Human-readable message.
    pub message: String,
}

/// What went wrong talking to Shopify.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ShopifyError {
    /// Still throttled after the retry budget; try again later.
    #[error("{operation}: still throttled after {attempts} attempts")]
    Throttled {
        /// Document name.
        operation: &'static str,
        /// Attempts made.
        attempts: u32,
    },
    /// 5xx or a network failure that persisted through the retry budget.
    #[error("{operation}: Shopify unavailable after {attempts} attempts: {reason}")]
    Unavailable {
        /// Document name.
        operation: &'static str,
        /// Attempts made.
        attempts: u32,
        /// Last failure seen.
        reason: String,
    },
    /// A 4xx other than 429 (bad token, missing scope, unknown shop): retrying will not help.
    #[error("{operation}: HTTP {status}: {body}")]
    Http {
        /// Document name.
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// Top-level GraphQL errors (invalid document, access denied, cost over the maximum).
    #[error("{operation}: GraphQL errors: {}", messages.join("; "))]
    GraphQl {
        /// Document name.
        operation: &'static str,
        /// Error codes from `extensions.code`, where present.
        codes: Vec<String>,
        /// Error messages.
        messages: Vec<String>,
    },
    /// The mutation answered with `userErrors`.
    #[error("{operation}: {}", errors.iter().map(|e| format!("{} ({})", e.message, e.code.as_deref().unwrap_or("-"))).collect::<Vec<_>>().join("; "))]
    UserErrors {
        /// Document name.
        operation: &'static str,
        /// The errors.
        errors: Vec<UserError>,
    },
    /// The response did not have the expected shape.
    #[error("{operation}: unexpected response: {reason}")]
    Decode {
        /// Document name.
        operation: &'static str,
        /// What did not fit.
        reason: String,
    },
    /// The request itself is not something shopsync will send (over a Shopify limit, or it
    /// would delete data nobody asked to delete).
    #[error("refused before sending: {0}")]
    Refused(String),
    /// Waiting on a background job (product operation, bulk operation) ran out of time.
    #[error("{what} did not finish within {seconds} s")]
    TimedOut {
        /// What was being waited for.
        what: String,
        /// How long.
        seconds: u64,
    },
    /// A bulk operation ended in a state other than COMPLETED.
    #[error("bulk operation {id} ended {status}{}", error_code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    BulkFailed {
        /// Bulk operation GID.
        id: String,
        /// Final status.
        status: String,
        /// Shopify's error code.
        error_code: Option<String>,
    },
    /// Configuration refused at construction.
    #[error("configuration: {0}")]
    Config(String),
}

impl ShopifyError {
    /// Whether trying the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ShopifyError::Throttled { .. }
                | ShopifyError::Unavailable { .. }
                | ShopifyError::TimedOut { .. }
        )
    }

    /// The user error codes, if this is a `userErrors` answer.
    pub fn user_error_codes(&self) -> Vec<&str> {
        match self {
            ShopifyError::UserErrors { errors, .. } => {
                errors.iter().filter_map(|e| e.code.as_deref()).collect()
            }
            _ => Vec::new(),
        }
    }
}

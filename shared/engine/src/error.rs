//! Engine errors; each says whether retrying the step can help.

use shopsync_shopify::ShopifyError;
use shopsync_store::RepoError;

/// What stopped a step.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] RepoError),
    /// Shopify failed.
    #[error("shopify: {0}")]
    Shopify(#[from] ShopifyError),
    /// Shopify sent something that cannot be a product (bad money, blank option).
    #[error("product {product}: {reason}")]
    Mapping {
        /// Shopify product id.
        product: String,
        /// What was wrong.
        reason: String,
    },
    /// An operation was asked to move where its status machine forbids.
    #[error(transparent)]
    Transition(#[from] shopsync_domain::IllegalTransition),
    /// The queue refused the next step (the step's own message is redelivered).
    #[error("queue: {0}")]
    Queue(String),
    /// The blob store (import files) failed.
    #[error("files: {0}")]
    Blob(#[from] crate::blob::BlobError),
    /// An import file that cannot be imported at all.
    #[error("import refused: {0}")]
    Refused(String),
    /// Another worker holds the work now (its lease runs): try again later, to take it over
    /// if that worker is gone.
    #[error("busy: {0}")]
    Busy(String),
    /// A task the step ran its work on stopped without an answer (it panicked: a bug).
    #[error("a planning task stopped: {0}")]
    Task(String),
}

impl EngineError {
    /// Whether running the same step again can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            EngineError::Store(e) => e.is_retryable(),
            EngineError::Shopify(e) => e.is_retryable(),
            EngineError::Queue(_) => true,
            EngineError::Blob(e) => e.is_retryable(),
            EngineError::Refused(_) => false,
            EngineError::Busy(_) => true,
            EngineError::Mapping { .. } | EngineError::Transition(_) | EngineError::Task(_) => {
                false
            }
        }
    }
}

//! Shopify layer of shopsync.
//!
//! - [`client`]: the Admin GraphQL client, with a cost-aware leaky-bucket [`limiter`], bounded
//!   retries, and counters for performance logs.
//! - [`documents`]: every GraphQL document the client can send, in one place (a test validates
//!   each against Shopify's real 2026-07 schema).
//! - [`ops`]: typed operations (product pages, productSet with variant-deletion guard,
//!   inventory compare-and-set with idempotency keys, bulk export, webhook subscriptions).
//! - [`bulk`]: streaming JSONL stitching by `__parentId`.
//! - [`webhook`]: intake (HMAC over raw bytes, header rules, dedupe ledger, typed payloads).

pub mod bulk;
pub mod client;
pub mod cost;
pub mod documents;
pub mod error;
pub mod limiter;
pub mod model;
pub mod ops;
pub mod version;
pub mod webhook;

pub use client::{AdminClient, ClientConfig, ClientCounters};
pub use error::ShopifyError;
pub use version::ApiVersion;

//! The sync engine: moves changes between the local catalog and Shopify through staging, with
//! every applied change versioned and every operation counted.
//!
//! - [`mapping`]: Shopify's product shape to the domain's (deterministic variant keys).
//! - [`down`]: Shopify → local: each remote product becomes a staged row and, when nothing
//!   local is pending, an applied version.

pub mod blob;
pub mod crash;
pub mod down;
pub mod edit;
pub mod error;
pub mod incremental;
pub mod intake;
pub mod jobs;
pub mod ledger;
pub mod local_queue;
pub mod mapping;
pub mod perf;
pub mod plan;
pub mod realtime;
pub mod resolve;
pub mod steps;
pub mod sync;
pub mod up;
pub mod xorosoft_import;

pub use error::EngineError;

//! A Shopify Admin GraphQL simulator for tests and for running shopsync without a store.
//!
//! - Every incoming document is validated against Shopify's real Admin 2026-07 schema
//!   (embedded) and refused as Shopify does when invalid.
//! - The subset the client uses runs over an in-memory shop ([`shop`]) with Shopify's semantics
//!   where they bite.
//! - Query cost and a leaky bucket per plan; THROTTLED answers like Shopify's.
//! - Signed webhooks for every change, also those made through the API.
//! - Faults on demand, scripted or at seeded random rates: 429, 5xx, slow answers, lost
//!   answers (applied but the response never arrives), stale quantities (a sale between read
//!   and write).

pub mod exec;
pub mod schema;
pub mod server;
pub mod shop;

pub use server::{Fault, FaultRates, Plan, SentWebhook, SimConfig, SimHandle, SimStats, Simulator};

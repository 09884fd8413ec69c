//! The sync engine: moves changes between the local catalog and Shopify through staging, with
//! every applied change versioned and every operation counted.
//!
//! Read it from the bottom up. Each module uses only modules of its own layer listed before it
//! and modules of the layers below (the test `tests/layers.rs` holds every module to this):
//!
//! 1. **Support**: [`blob`] (the file port), [`error`], [`crash`] (test crash points), [`perf`]
//!    (stage times and performance logs).
//! 2. **Decisions**, pure: [`mapping`] (Shopify's shapes to the domain's), [`push_plan`] (what
//!    a push sends: the narrowest mutation, the stock changes, the echo fingerprint). What
//!    changes, the three-way merge and the guard rails are pure too, in `shopsync_domain`.
//! 3. **Records**: [`ledger`] (webhook deliveries seen), [`operation`] (an operation's record,
//!    checkpoint, rows, conflicts and performance log).
//! 4. **Applying staged rows**: [`apply`].
//! 5. **Flows**: [`collections`] (Shopify's collections → categories, versioned), [`down`]
//!    (Shopify → local, planned as rows), [`up`] (local → Shopify),
//!    [`realtime`] (webhooks), [`edit`] (a person's edit or restore), [`resolve`] (settling
//!    conflicts), [`rollback`] (undoing an operation), [`xorosoft_import`] (ERP files).
//! 6. **Driving operations**: [`review`] (the rails' verdict; approvals, rejections,
//!    cancellations, resumptions), [`steps`] (the step machine), [`incremental`], [`sync`]
//!    (whole syncs in-process), [`jobs`] (the worker), [`local_queue`], [`intake`] (the
//!    webhook front door).

pub mod blob;
pub mod crash;
pub mod error;
pub mod perf;

pub mod mapping;
pub mod push_plan;

pub mod ledger;
pub mod operation;

pub mod apply;

pub mod collections;
pub mod down;
pub mod edit;
pub mod realtime;
pub mod resolve;
pub mod rollback;
pub mod up;
pub mod xorosoft_import;

pub mod incremental;
pub mod intake;
pub mod jobs;
pub mod local_queue;
pub mod review;
pub mod steps;
pub mod sync;

pub use error::EngineError;

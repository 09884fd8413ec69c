//! Running whole syncs in this process (the CLI, `serve`, tests): the steps of
//! [`crate::steps`] one after another; plus the pieces every operation shares (saving with a
//! status condition, performance logs).

use crate::error::EngineError;
use crate::steps::{Stepper, SyncKind};
use shopsync_domain::{Actor, GuardRails, SyncDirection, SyncOperation};
use shopsync_shopify::AdminClient;
use shopsync_store::Store;

/// Runs a full down-sync in this process: plan every product (bulk export), judge the plan
/// with the guard rails, then apply it, or leave the operation awaiting approval with the
/// reasons. The operation is stored with its statistics and performance log.
pub async fn run_full_down(
    store: &Store,
    client: &AdminClient,
    actor: &Actor,
    rails: &GuardRails,
) -> Result<SyncOperation, EngineError> {
    run_full(store, client, actor, rails, RunOptions::default()).await
}

/// How an operation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Down, or bidirectional (down with merges, then push).
    pub direction: SyncDirection,
    /// Plan and stage only: the rows show what would change; nothing is applied, pushed, or
    /// recorded as a conflict.
    pub dry_run: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            direction: SyncDirection::Down,
            dry_run: false,
        }
    }
}

/// Runs a full bidirectional sync: the down-sync's plan, where a product changed on both
/// sides is merged field by field against its base (conflicts the ownership policy settles
/// are resolved and recorded; the rest wait for a person and hold that product back), then,
/// once applied, every product with local changes is pushed to Shopify.
pub async fn run_bidirectional(
    store: &Store,
    client: &AdminClient,
    actor: &Actor,
    rails: &GuardRails,
) -> Result<SyncOperation, EngineError> {
    let options = RunOptions {
        direction: SyncDirection::Bidirectional,
        dry_run: false,
    };
    run_full(store, client, actor, rails, options).await
}

/// Runs a full sync (down or bidirectional, for real or as a dry run) in this process: the
/// same steps a worker chains through the queue, one after another.
pub async fn run_full(
    store: &Store,
    client: &AdminClient,
    actor: &Actor,
    rails: &GuardRails,
    options: RunOptions,
) -> Result<SyncOperation, EngineError> {
    Stepper {
        store,
        client,
        actor,
        rails,
    }
    .run_to_end(SyncKind::Full {
        direction: options.direction,
        dry_run: options.dry_run,
    })
    .await
}

/// Pushes every product that needs it and stores the operation with its statistics.
pub async fn run_up(
    store: &Store,
    client: &AdminClient,
    actor: &Actor,
) -> Result<SyncOperation, EngineError> {
    crate::steps::Stepper {
        store,
        client,
        actor,
        rails: &shopsync_domain::GuardRails::default(),
    }
    .run_to_end(crate::steps::SyncKind::Up)
    .await
}

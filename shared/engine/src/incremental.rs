//! Incremental down-sync: only products Shopify updated since the last down-sync started,
//! less an overlap window (second-granular `updated_at`, clock skew, writes in flight). The
//! overlap re-reads a few products; they come out stale or unchanged, never twice applied.
//! The last completed down operation's start is where the next one reads from; within an
//! operation, the page cursor is its checkpoint ([`crate::steps`]).

use crate::error::EngineError;
use crate::steps::{Stepper, SyncKind};
use chrono::Duration;
use shopsync_domain::{Actor, GuardRails, SyncOperation};
use shopsync_shopify::AdminClient;
use shopsync_store::Store;

pub use crate::operation::default_overlap;

/// Runs an incremental down-sync (a full one when there was none before).
pub async fn run_incremental_down(
    store: &Store,
    client: &AdminClient,
    actor: &Actor,
    rails: &GuardRails,
    overlap: Duration,
) -> Result<SyncOperation, EngineError> {
    run_incremental_down_with(store, client, actor, rails, overlap, false).await
}

/// Runs an incremental down-sync, or previews it (`dry_run`: rows staged, nothing applied).
pub async fn run_incremental_down_with(
    store: &Store,
    client: &AdminClient,
    actor: &Actor,
    rails: &GuardRails,
    overlap: Duration,
    dry_run: bool,
) -> Result<SyncOperation, EngineError> {
    Stepper {
        store,
        client,
        actor,
        rails,
    }
    .run_to_end(SyncKind::Incremental { overlap, dry_run })
    .await
}

//! `shopsync operation approve|reject|cancel|resume`: an operator's decisions on an
//! operation, as the admin API's operation routes make them.

use crate::config::{ShopifyArgs, StoreArgs};
use crate::{import, rails_from_env, EXIT_USAGE};
use anyhow::Context;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum OperationAction {
    /// Apply its staged changes (all, or the `--rows` given) and complete it.
    Approve {
        #[command(flatten)]
        store: StoreArgs,
        /// Where an approved bidirectional operation pushes its merged local changes.
        #[command(flatten)]
        shopify: ShopifyArgs,
        /// Operation id.
        id: String,
        /// Only these staged rows (comma-separated ids); the operation completes once no row
        /// waits. The day's realtime operation (webhooks) takes its rows this way while its
        /// day is open.
        #[arg(long, value_delimiter = ',')]
        rows: Vec<String>,
        /// Who approves.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Reject its staged changes (all, or the `--rows` given); nothing of them is applied.
    Reject {
        #[command(flatten)]
        store: StoreArgs,
        /// Operation id.
        id: String,
        /// Only these staged rows (comma-separated ids).
        #[arg(long, value_delimiter = ',')]
        rows: Vec<String>,
        /// Why (kept with the operation or the rows).
        #[arg(long)]
        reason: String,
        /// Who rejects.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Stop an operation that has not ended; its waiting rows are rejected.
    Cancel {
        #[command(flatten)]
        store: StoreArgs,
        /// Operation id.
        id: String,
        /// Why (kept with the operation).
        #[arg(long)]
        reason: String,
        /// Who cancels.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Run a failed operation on from its last checkpoint, to the end.
    Resume {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        shopify: ShopifyArgs,
        /// Operation id.
        id: String,
        /// Who resumes.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
}

/// Runs an operation's steps from its checkpoint to the end, against the Shopify target.
async fn run_steps(
    repo: &shopsync_store::Store,
    shopify: &ShopifyArgs,
    actor: &shopsync_domain::Actor,
    id: shopsync_domain::OperationId,
) -> anyhow::Result<shopsync_domain::SyncOperation> {
    let target = shopify.connect(None).await?;
    let rails = rails_from_env()?;
    Ok(shopsync_engine::steps::Stepper {
        store: repo,
        client: &target.client,
        actor,
        rails: &rails,
    }
    .resume_to_end(id)
    .await?)
}

/// Runs an operation action.
pub async fn run(action: OperationAction) -> anyhow::Result<ExitCode> {
    let (store, id, by) = match &action {
        OperationAction::Approve { store, id, by, .. }
        | OperationAction::Reject { store, id, by, .. }
        | OperationAction::Cancel { store, id, by, .. }
        | OperationAction::Resume { store, id, by, .. } => (store, id, by),
    };
    let backend = store.open().await.context("opening the store")?;
    let repo = shopsync_store::Store::new(backend);
    let id: shopsync_domain::OperationId = id
        .parse()
        .map_err(|e| anyhow::anyhow!("`{id}` is not an operation id: {e}"))?;
    let actor = shopsync_domain::Actor::new(by).context("actor")?;
    let row_ids = |rows: &[String]| -> anyhow::Result<Vec<shopsync_domain::StagingId>> {
        rows.iter()
            .map(|r| {
                r.trim()
                    .parse()
                    .map_err(|e| anyhow::anyhow!("`{r}` is not a row id: {e}"))
            })
            .collect()
    };
    use shopsync_engine::review;
    let operation = match &action {
        OperationAction::Approve { rows, shopify, .. }
            if shopsync_engine::operation::load_operation(&repo, id)
                .await?
                .xorosoft_log_id
                .is_some() =>
        {
            if !rows.is_empty() {
                eprintln!("error: an import is approved whole: drop --rows");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            shopsync_engine::xorosoft_import::approve_import(&repo, id, &actor).await?;
            let target = shopify.connect(None).await?;
            let (settings, rails) = import::local_settings(&target).await?;
            let blobs = shopsync_engine::blob::FolderBlobs::new(store.data_dir(), "local");
            let log = shopsync_engine::xorosoft_import::Importer {
                store: &repo,
                client: Some(&target.client),
                blobs: &blobs,
                actor: &actor,
                rails: &rails,
                settings: &settings,
            }
            .run_operation(id)
            .await?;
            println!(
                "import {} {}",
                log.id,
                shopsync_domain::status::status_name(log.status)
            );
            shopsync_engine::operation::load_operation(&repo, id).await?
        }
        OperationAction::Approve { rows, shopify, .. } => {
            let approved = if rows.is_empty() {
                review::approve_operation(&repo, id, &actor).await?
            } else {
                review::approve_rows(&repo, id, &row_ids(rows)?, &actor).await?
            };
            // An up-sync goes on from its push; both ways, approval ends as an unheld run
            // would: with the pushes.
            if review::staged_up_sync(&approved)
                && approved.status == shopsync_domain::OperationStatus::InProgress
            {
                println!("pushing the approved changes");
                run_steps(&repo, shopify, &actor, id).await?
            } else if approved.sync_direction == shopsync_domain::SyncDirection::Bidirectional
                && approved.status == shopsync_domain::OperationStatus::Completed
            {
                let target = shopify.connect(None).await?;
                println!("pushing merged local changes to {}", target.description);
                review::push_after_approval(&repo, &target.client, &actor, approved).await?
            } else {
                approved
            }
        }
        OperationAction::Reject { rows, reason, .. } if rows.is_empty() => {
            let rejected = review::reject_operation(&repo, id, &actor, reason).await?;
            shopsync_engine::xorosoft_import::reject_import(&repo, &rejected).await?;
            rejected
        }
        OperationAction::Reject { rows, reason, .. } => {
            review::reject_rows(&repo, id, &row_ids(rows)?, &actor, reason).await?
        }
        OperationAction::Cancel { reason, .. } => {
            let cancelled = review::cancel_operation(&repo, id, &actor, reason).await?;
            shopsync_engine::xorosoft_import::reject_import(&repo, &cancelled).await?;
            cancelled
        }
        OperationAction::Resume { shopify, .. } => {
            review::resume_operation(&repo, id, &actor).await?;
            run_steps(&repo, shopify, &actor, id).await?
        }
    };
    repo.flush().await.context("making the decision durable")?;
    let s = &operation.statistics;
    println!(
        "operation {} {}: created {}, updated {}, failed {}",
        operation.operation_uuid,
        shopsync_domain::status::status_name(operation.status),
        s.created,
        s.updated,
        s.failed
    );
    if let Some(reason) = &operation.status_reason {
        println!("  {reason}");
    }
    Ok(ExitCode::SUCCESS)
}

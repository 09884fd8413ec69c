//! `shopsync operation approve|reject|cancel|resume|rollback`: an operator's decisions on an
//! operation, and an admin's rollback of one, as the admin API's operation routes make them.

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
    /// Roll an operation back: its changes return to the values before it, locally and in
    /// Shopify, as new versions; products changed since are skipped (unless `--force`) and
    /// reported.
    Rollback {
        #[command(flatten)]
        store: StoreArgs,
        /// Where the restored products are pushed.
        #[command(flatten)]
        shopify: ShopifyArgs,
        /// Operation id.
        id: String,
        /// full (every product it changed), partial (the `--products`) or selective (the
        /// `--fields` of the `--products`, or of every product).
        #[arg(long = "type", default_value = "full")]
        rollback_type: String,
        /// Products (comma-separated local ids, Shopify ids or GIDs).
        #[arg(long, value_delimiter = ',')]
        products: Vec<String>,
        /// Fields (comma-separated: title, price, inventory, variants/{key}/price, ...).
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        /// Restore products changed since the operation too (recorded as forced).
        #[arg(long)]
        force: bool,
        /// Report what would be restored and skipped; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who rolls it back.
        #[arg(long, env = "USER", default_value = "admin")]
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
        | OperationAction::Resume { store, id, by, .. }
        | OperationAction::Rollback { store, id, by, .. } => (store, id, by),
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
            } else if (approved.sync_direction == shopsync_domain::SyncDirection::Bidirectional
                || approved.rollback_id.is_some())
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
            review::reject_operation(&repo, id, &actor, reason).await?
        }
        OperationAction::Reject { rows, reason, .. } => {
            review::reject_rows(&repo, id, &row_ids(rows)?, &actor, reason).await?
        }
        OperationAction::Cancel { reason, .. } => {
            review::cancel_operation(&repo, id, &actor, reason).await?
        }
        OperationAction::Resume { shopify, .. } => {
            let resumed = review::resume_operation(&repo, id, &actor).await?;
            match resumed.rollback_id {
                Some(rollback) => {
                    let target = shopify.connect(None).await?;
                    let rails = rails_from_env()?;
                    shopsync_engine::rollback::run(&repo, &target.client, &rails, rollback)
                        .await?
                        .1
                }
                None => run_steps(&repo, shopify, &actor, id).await?,
            }
        }
        OperationAction::Rollback {
            shopify,
            rollback_type,
            products,
            fields,
            force,
            dry_run,
            ..
        } => {
            let Some(request) =
                rollback_request(&repo, rollback_type, products, fields, *force, *dry_run).await?
            else {
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            let opened = shopsync_engine::rollback::open_rollback(
                &repo,
                id,
                &request,
                &actor,
                chrono::Utc::now(),
            )
            .await;
            let (rollback, _) = match opened {
                Ok(opened) => opened,
                Err(shopsync_engine::rollback::RollbackError::Engine(e)) => return Err(e.into()),
                Err(refused) => {
                    eprintln!("error: {refused}");
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            };
            let target = shopify.connect(None).await?;
            let rails = rails_from_env()?;
            let (record, operation) =
                shopsync_engine::rollback::run(&repo, &target.client, &rails, rollback.id).await?;
            print_rollback(&record);
            operation
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

/// The rollback the options ask for; `None` (after saying why) when they name an unknown type
/// or product.
async fn rollback_request(
    repo: &shopsync_store::Store,
    rollback_type: &str,
    products: &[String],
    fields: &[String],
    force: bool,
    dry_run: bool,
) -> anyhow::Result<Option<shopsync_domain::RollbackRequest>> {
    use shopsync_domain::RollbackType;
    let rollback_type = match rollback_type.trim() {
        "full" => RollbackType::Full,
        "partial" => RollbackType::Partial,
        "selective" => RollbackType::Selective,
        other => {
            eprintln!("error: --type is full, partial or selective, not `{other}`");
            return Ok(None);
        }
    };
    let mut ids = Vec::with_capacity(products.len());
    for text in products {
        let text = text.trim();
        if let Ok(local) = text.parse::<shopsync_domain::ProductId>() {
            ids.push(local);
            continue;
        }
        let found = match text.parse::<shopsync_domain::ShopifyProductId>() {
            Ok(shopify) => repo.product_by_shopify_id(shopify).await?,
            Err(_) => None,
        };
        match found {
            Some(product) => ids.push(product.id),
            None => {
                eprintln!("error: --products: no product `{text}` (a local id, Shopify id or GID)");
                return Ok(None);
            }
        }
    }
    Ok(Some(shopsync_domain::RollbackRequest {
        rollback_type: Some(rollback_type),
        products: ids,
        fields: fields.to_vec(),
        force,
        dry_run,
    }))
}

/// Prints what a rollback restored and skipped.
fn print_rollback(record: &shopsync_domain::SyncRollback) {
    println!(
        "rollback {} {}: {} product(s) restored, {} skipped",
        record.id,
        shopsync_domain::status::status_name(record.status),
        record.restored_total,
        record.skipped_total
    );
    for restored in &record.restored {
        let forced = restored
            .forced
            .as_deref()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        println!(
            "  restored {} as version {}: {}{forced}",
            restored.product_id, restored.version, restored.shopify
        );
    }
    for (product, why) in &record.skipped {
        println!("  skipped {product}: {why}");
    }
    for category in &record.categories_restored {
        let forced = category
            .forced
            .as_deref()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        println!(
            "  restored collection {} \"{}\" as version {}: {}{forced}",
            category.category_id, category.title, category.version, category.shopify
        );
    }
    for (category, why) in &record.categories_skipped {
        println!("  skipped collection {category}: {why}");
    }
}

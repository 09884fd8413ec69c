//! `shopsync product edit|lock|unlock`: a person's edit of a local product and its sync
//! lock, as the admin API's product routes make them.

use crate::config::StoreArgs;
use anyhow::Context;
use clap::Subcommand;
use shopsync_domain::{Actor, Identity, Product, ProductId, Role, ShopifyProductId};
use shopsync_store::Store;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ProductAction {
    /// Edit a local product: applied as a `local_edit` operation (one version, yours) and
    /// pushed by the next up-sync.
    Edit {
        #[command(flatten)]
        store: StoreArgs,
        /// The product's local id, Shopify id or GID.
        id: String,
        /// The fields to change, as `PATCH /api/v1/products/{id}` takes them:
        /// '{"title": "...", "variants": [{"sku": "A-1", "price": "12.50"}]}'.
        #[arg(long = "set", value_name = "JSON")]
        changes: String,
        /// The version the edit was made against: refused if the product has moved past it.
        #[arg(long)]
        if_match: Option<u64>,
        /// Who edits.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Take (or renew) the product's sync lock: nothing else changes it until it is released
    /// or the lease ends.
    Lock {
        #[command(flatten)]
        store: StoreArgs,
        /// The product's local id, Shopify id or GID.
        id: String,
        /// Seconds the lock holds (1 to 86,400).
        #[arg(long, default_value_t = 900)]
        lease_secs: u64,
        /// Why, for the others who find it locked.
        #[arg(long)]
        reason: Option<String>,
        /// Who locks.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Release the product's sync lock (yours; `--force` releases anyone's).
    Unlock {
        #[command(flatten)]
        store: StoreArgs,
        /// The product's local id, Shopify id or GID.
        id: String,
        /// Release another's lock.
        #[arg(long)]
        force: bool,
        /// Who unlocks.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
}

async fn find(store: &Store, id: &str) -> anyhow::Result<Product> {
    let found = if let Ok(local) = id.parse::<ProductId>() {
        store.product(local).await?
    } else if let Ok(shopify) = id.parse::<ShopifyProductId>() {
        store.product_by_shopify_id(shopify).await?
    } else {
        anyhow::bail!(
            "`{id}` is neither a local product id (UUID) nor a Shopify product id or GID"
        );
    };
    found.ok_or_else(|| anyhow::anyhow!("no product {id}"))
}

fn person(by: &str) -> anyhow::Result<Actor> {
    Ok(Identity::person(by, Role::Operator)
        .map_err(|e| anyhow::anyhow!("--by: {e}"))?
        .actor)
}

fn lock_line(product: &Product) -> String {
    match (&product.sync_locked_by, product.sync_lock_expires_at) {
        (Some(by), Some(until)) if product.sync_locked => format!(
            "product {} locked by {by} until {}{}",
            product.id,
            until.to_rfc3339(),
            product
                .sync_lock_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        _ => format!("product {} unlocked", product.id),
    }
}

/// Runs a product action.
pub async fn run(action: ProductAction) -> anyhow::Result<ExitCode> {
    match action {
        ProductAction::Edit {
            store,
            id,
            changes,
            if_match,
            by,
        } => {
            let repo = Store::new(store.open().await.context("opening the store")?);
            let body: serde_json::Value = serde_json::from_str(&changes)
                .map_err(|e| anyhow::anyhow!("--set must be a JSON object: {e}"))?;
            let edit =
                shopsync_api::parse_edit(&body).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let product = find(&repo, &id).await?;
            let edited = shopsync_engine::edit::edit_product(
                &repo,
                product.id,
                &edit,
                if_match,
                &person(&by)?,
                chrono::Utc::now(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            repo.flush().await.context("making the edit durable")?;
            match edited.operation_id {
                Some(operation) => println!(
                    "product {} is at version {} (operation {operation}); the next up-sync pushes it",
                    edited.product.id, edited.product.version
                ),
                None => println!(
                    "product {} unchanged at version {}",
                    edited.product.id, edited.product.version
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        ProductAction::Lock {
            store,
            id,
            lease_secs,
            reason,
            by,
        } => {
            if !(1..=86_400).contains(&lease_secs) {
                anyhow::bail!("--lease-secs must be 1 to 86400, not {lease_secs}");
            }
            let repo = Store::new(store.open().await.context("opening the store")?);
            let product = find(&repo, &id).await?;
            let lease = chrono::Duration::seconds(i64::try_from(lease_secs)?);
            let locked = repo
                .lock_product_because(
                    product.id,
                    &person(&by)?,
                    chrono::Utc::now(),
                    lease,
                    reason.as_deref().map(str::trim).filter(|r| !r.is_empty()),
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            repo.flush().await.context("making the lock durable")?;
            println!("{}", lock_line(&locked));
            Ok(ExitCode::SUCCESS)
        }
        ProductAction::Unlock {
            store,
            id,
            force,
            by,
        } => {
            let repo = Store::new(store.open().await.context("opening the store")?);
            let product = find(&repo, &id).await?;
            let now = chrono::Utc::now();
            let released = if force {
                repo.break_product_lock(product.id, now).await
            } else {
                repo.unlock_product(product.id, &person(&by)?, now).await
            }
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            repo.flush().await.context("making the release durable")?;
            println!("{}", lock_line(&released));
            Ok(ExitCode::SUCCESS)
        }
    }
}

//! `shopsync conflicts list|show|resolve`: the conflicts waiting for a person, and settling
//! one, as the admin API's conflict routes do.

use crate::config::StoreArgs;
use anyhow::Context;
use clap::Subcommand;
use shopsync_domain::{ConflictId, ConflictStatus, ResolutionMethod, Severity, SyncConflict};
use shopsync_store::item::Key;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ConflictsAction {
    /// Conflicts, oldest first: of a product, of an operation, or of a status (open when
    /// neither is given).
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// open, resolved, ignored or superseded.
        #[arg(long, value_parser = parse_status)]
        status: Option<ConflictStatus>,
        /// A product's local id.
        #[arg(long)]
        product: Option<String>,
        /// The operation that found them.
        #[arg(long)]
        operation: Option<String>,
        /// low, medium, high or critical.
        #[arg(long, value_parser = parse_severity)]
        severity: Option<Severity>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print them as one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// One conflict, as stored (JSON).
    Show {
        #[command(flatten)]
        store: StoreArgs,
        /// The conflict's id.
        id: String,
    },
    /// Settle a conflict: the chosen value becomes a new version of the product, recorded as
    /// yours, and its pushes resume once its last open conflict is settled.
    Resolve {
        #[command(flatten)]
        store: StoreArgs,
        /// The conflict's id.
        id: String,
        /// local_wins, remote_wins, base, newest_wins, manual or merge.
        #[arg(long, value_parser = parse_method)]
        strategy: ResolutionMethod,
        /// The value to keep, as JSON (manual only): '"0123456789012"', '12', '["a","b"]'.
        #[arg(long)]
        value: Option<String>,
        /// Why (kept with the resolution).
        #[arg(long)]
        note: Option<String>,
        /// Who settles it.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
}

fn parse_named<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(text.trim().to_owned()))
        .map_err(|_| format!("`{text}` is not {what}"))
}

fn parse_status(text: &str) -> Result<ConflictStatus, String> {
    parse_named(text, "open, resolved, ignored or superseded")
}

fn parse_severity(text: &str) -> Result<Severity, String> {
    parse_named(text, "low, medium, high or critical")
}

fn parse_method(text: &str) -> Result<ResolutionMethod, String> {
    parse_named(
        text,
        "local_wins, remote_wins, base, newest_wins, manual or merge",
    )
}

fn line(conflict: &SyncConflict) -> String {
    let value = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "(none)".into())
    };
    format!(
        "{} {} {} product {} {}: local {} / remote {} / base {}",
        conflict.conflict_uuid,
        shopsync_domain::status::status_name(conflict.status),
        shopsync_domain::status::status_name(conflict.severity),
        conflict.product_id,
        conflict.field_name.as_str(),
        value(&conflict.local_value),
        value(&conflict.remote_value),
        value(&conflict.base_value),
    )
}

/// Runs a conflicts action.
pub async fn run(action: ConflictsAction) -> anyhow::Result<ExitCode> {
    match action {
        ConflictsAction::List {
            store,
            status,
            product,
            operation,
            severity,
            limit,
            json,
        } => {
            let repo = shopsync_store::Store::new(store.open().await.context("opening the store")?);
            let product = product
                .map(|p| p.parse::<shopsync_domain::ProductId>())
                .transpose()
                .map_err(|e| anyhow::anyhow!("--product: {e}"))?;
            let operation = operation
                .map(|o| o.parse::<shopsync_domain::OperationId>())
                .transpose()
                .map_err(|e| anyhow::anyhow!("--operation: {e}"))?;
            let selection = shopsync_engine::resolve::ConflictSelection {
                status,
                product,
                operation,
                severity,
            };
            let found: Vec<SyncConflict> = repo
                .query_all::<SyncConflict>(selection.query())
                .await?
                .into_iter()
                .filter(|c| selection.takes(c))
                .take(limit)
                .collect();
            if json {
                println!("{}", serde_json::to_string(&found)?);
            } else {
                for conflict in &found {
                    println!("{}", line(conflict));
                }
                println!("{} conflict(s)", found.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        ConflictsAction::Show { store, id } => {
            let repo = shopsync_store::Store::new(store.open().await.context("opening the store")?);
            let id: ConflictId = id
                .parse()
                .map_err(|e| anyhow::anyhow!("`{id}` is not a conflict id: {e}"))?;
            let conflict = repo
                .get::<SyncConflict>(&Key::pk(id.to_string()))
                .await?
                .ok_or_else(|| anyhow::anyhow!("no conflict {id}"))?;
            println!("{}", serde_json::to_string_pretty(&conflict)?);
            Ok(ExitCode::SUCCESS)
        }
        ConflictsAction::Resolve {
            store,
            id,
            strategy,
            value,
            note,
            by,
        } => {
            let repo = shopsync_store::Store::new(store.open().await.context("opening the store")?);
            let id: ConflictId = id
                .parse()
                .map_err(|e| anyhow::anyhow!("`{id}` is not a conflict id: {e}"))?;
            let value = value
                .map(|text| {
                    serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
                        anyhow::anyhow!("--value must be JSON (a string in quotes: '\"abc\"'): {e}")
                    })
                })
                .transpose()?;
            let actor = shopsync_domain::Identity::person(&by, shopsync_domain::Role::Operator)
                .map_err(|e| anyhow::anyhow!("--by: {e}"))?
                .actor;
            let choice = shopsync_engine::resolve::Choice {
                method: strategy,
                value,
                note,
            };
            let settled = shopsync_engine::resolve::resolve_conflict(
                &repo,
                id,
                &choice,
                &actor,
                chrono::Utc::now(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            repo.flush()
                .await
                .context("making the resolution durable")?;
            println!("{}", line(&settled));
            Ok(ExitCode::SUCCESS)
        }
    }
}

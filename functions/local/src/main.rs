//! `shopsync`: the local host and operator CLI.

#[global_allocator]
static ALLOCATOR: shopsync_alloc::MiMalloc = shopsync_alloc::MiMalloc;

mod bench;
mod bench_import;
mod bench_push;
mod commands;
mod import;
mod progress;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;
mod config;
mod serve;
mod watch;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use config::{ShopifyArgs, StoreArgs};
use shopsync_store::migrate::{migrate, MigrateError, MigrateOptions};
use std::process::ExitCode;

/// Exit code when existing tables differ from their definitions.
const EXIT_DRIFT: u8 = 2;
/// Exit code when a change to existing tables needs `--backup` or `--no-backup`.
const EXIT_NEEDS_BACKUP: u8 = 3;
/// Exit code for a command combination that is not available.
const EXIT_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "shopsync",
    version,
    about = "Keeps a merchant's catalog, Shopify store and Xorosoft stock in step"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create missing tables and indexes, verify existing ones, backfill product versions.
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
        /// Take an on-demand backup of each existing table before changing it.
        #[arg(long, conflicts_with = "no_backup")]
        backup: bool,
        /// Change existing DynamoDB tables without taking a backup first.
        #[arg(long)]
        no_backup: bool,
        /// Only report what would change.
        #[arg(long)]
        check: bool,
    },
    /// Host shopsync locally: webhooks, admin routes, embedded store, Shopify simulator.
    Serve(serve::ServeArgs),
    /// Print the admin API's OpenAPI 3.1 document (as `GET /api/v1/openapi.json` answers it).
    Openapi,
    /// Run one sync operation and print its statistics.
    Sync {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        shopify: ShopifyArgs,
        /// Which way changes flow.
        #[arg(long, value_enum)]
        direction: Direction,
        /// Read the whole catalog (the default).
        #[arg(long, conflicts_with = "incremental")]
        full: bool,
        /// Read only what changed since the last sync.
        #[arg(long)]
        incremental: bool,
        /// Read everything and also report local products Shopify no longer has (as
        /// conflicts for review; nothing is deleted). Down only.
        #[arg(long, conflicts_with = "incremental")]
        reconcile: bool,
        /// Plan and stage only; apply nothing (up: stage what would be pushed, send nothing).
        #[arg(long)]
        dry_run: bool,
    },
    /// Import a file (a Xorosoft stock, price or full file) and print its log.
    Import {
        #[command(subcommand)]
        source: import::ImportSource,
    },
    /// Approve or reject an operation that waits for approval.
    Operation {
        #[command(subcommand)]
        action: commands::operation::OperationAction,
    },
    /// The conflicts waiting for a person: list, show, resolve.
    Conflicts {
        #[command(subcommand)]
        action: commands::conflicts::ConflictsAction,
    },
    /// A local product: edit it, take or release its sync lock.
    Product {
        #[command(subcommand)]
        action: commands::product::ProductAction,
    },
    /// Measured runs whose numbers go into the notes (not tests).
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

/// Sync directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Direction {
    /// Shopify → local.
    Down,
    /// Local → Shopify.
    Up,
    /// Both, with three-way merge.
    Bidirectional,
}

/// `--data`, shared by the benchmarks that make a store.
#[derive(Debug, Args)]
struct BenchStore {
    /// Where the benchmark's store goes: a fresh directory inside this one, removed
    /// afterwards (default: the system's temporary directory). Name the disk a deployment
    /// would write to, or a RAM disk such as /dev/shm to leave the disk's flushes out.
    #[arg(long, value_name = "DIR")]
    data: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Push throughput against the simulator on the Standard plan (cost points/s vs restore rate).
    ShopifyPush {
        /// Measured seconds after warm-up.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Concurrent push tasks sharing one client.
        #[arg(long, default_value_t = 2)]
        tasks: usize,
    },
    /// Webhook HMAC verification + payload parsing throughput.
    Webhook {
        /// Deliveries per body kind.
        #[arg(long, default_value_t = 50_000)]
        count: usize,
    },
    /// The whole webhook path on the embedded store: verify, dedupe, stage (and enqueue),
    /// with latency percentiles.
    WebhookPath {
        /// Deliveries.
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        /// Products in the local catalog the deliveries touch.
        #[arg(long, default_value_t = 1_000)]
        products: usize,
        /// Concurrent senders, each sending when its last delivery is answered.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Instead of senders: deliveries arriving at this many per second whether or not
        /// earlier ones were answered (open loop; latency from each delivery's due time).
        #[arg(long, conflicts_with = "concurrency")]
        rate: Option<f64>,
        #[command(flatten)]
        store: BenchStore,
    },
    /// A Xorosoft stock file into a fresh embedded store with no push, beside a raw parse of
    /// the same file (rows/s both, and the import's peak RSS).
    XorosoftImport {
        /// Rows in the file (one per variant of a seeded catalog of 3-variant products).
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        #[command(flatten)]
        store: BenchStore,
    },
    /// The import half of `xorosoft-import`, run by it in a process of its own.
    #[command(hide = true)]
    XorosoftImportRun {
        /// The store and files `xorosoft-import` prepared.
        #[arg(long)]
        dir: std::path::PathBuf,
        /// The file's key under the files folder.
        #[arg(long)]
        key: String,
        /// The Shopify location every StoreCode maps to.
        #[arg(long)]
        location: u64,
    },
    /// A stock import of this many items pushed to the simulator on the Standard plan: calls
    /// used (goal: one per 250 levels) and time against what the bucket allows.
    XorosoftPush {
        /// Items in the file.
        #[arg(long, default_value_t = 10_000)]
        items: usize,
        #[command(flatten)]
        store: BenchStore,
    },
    /// An up-sync of this many changed products through Shopify's bulk mutations against the
    /// unthrottled simulator: products per minute end to end, calls, the simulator's own time.
    BulkPush {
        /// Products (one variant each), every one repriced locally before the push.
        #[arg(long, default_value_t = 100_000)]
        products: usize,
        #[command(flatten)]
        store: BenchStore,
    },
    /// A stock import of this many products, then its full rollback: wall time, calls and
    /// peak RSS of the rollback.
    Rollback {
        /// Products (one variant each) the import changes.
        #[arg(long, default_value_t = 100_000)]
        products: usize,
        #[command(flatten)]
        store: BenchStore,
    },
    /// A full down-sync from the unthrottled simulator into a fresh embedded store, then the
    /// same again with nothing changed.
    DownSync {
        /// Products in the simulator (default: 100,000 on the embedded store, 2,000 on
        /// DynamoDB, where a local server such as moto takes a few hundred writes a second).
        #[arg(long)]
        products: Option<usize>,
        /// Variants per product.
        #[arg(long, default_value_t = 3)]
        variants: usize,
        /// The backend: the embedded store (throughput), or DynamoDB (requests per product
        /// for a full and an incremental down-sync and a webhook, and the time a 100,000-product
        /// down-sync would spend in requests).
        #[arg(long, value_enum, default_value = "embedded")]
        store: config::StoreKind,
        /// DynamoDB's endpoint (a local server); the region's own when not given.
        #[arg(long)]
        endpoint: Option<String>,
        #[command(flatten)]
        data: BenchStore,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOPSYNC_LOG")
                .unwrap_or_else(|_| "warn".into()),
        );
    // `sync` draws a progress line from the engine's progress events.
    let progress =
        matches!(cli.command, Command::Sync { .. } | Command::Import { .. }).then(|| {
            progress::ProgressLine.with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("shopsync::progress", tracing::Level::INFO),
            )
        });
    tracing_subscriber::registry()
        .with(logs)
        .with(progress)
        .init();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Import { source } => import::run(source).await,
        Command::Serve(args) => {
            serve::serve(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync {
            store,
            shopify,
            direction,
            full: _,
            incremental,
            reconcile,
            dry_run,
        } => {
            if reconcile && direction != Direction::Down {
                eprintln!(
                    "error: --reconcile reads Shopify into the local catalog: use --direction down"
                );
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            if direction == Direction::Bidirectional && incremental {
                eprintln!(
                    "error: a bidirectional sync reads the whole catalog; drop --incremental"
                );
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            if let Err(e) = shopsync_engine::up::bulk_push_min_from(|name| std::env::var(name).ok())
            {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            let backend = store.open().await.context("opening the store")?;
            prepare_tables(backend.as_ref()).await?;
            let target = shopify.connect(None).await?;
            println!(
                "shopsync sync: {} <- {}",
                store.describe(),
                target.description
            );
            let repo = shopsync_store::Store::new(backend);
            let actor = shopsync_domain::Actor::new("system:cli").context("actor")?;
            let started = std::time::Instant::now();
            let operation = match direction {
                Direction::Up if !dry_run => {
                    shopsync_engine::sync::run_up(&repo, &target.client, &actor).await?
                }
                _ if reconcile || direction == Direction::Up => {
                    let rails = rails_from_env()?;
                    let kind = if reconcile {
                        shopsync_engine::steps::SyncKind::Reconcile { dry_run }
                    } else {
                        shopsync_engine::steps::SyncKind::UpPreview
                    };
                    shopsync_engine::steps::Stepper {
                        store: &repo,
                        client: &target.client,
                        actor: &actor,
                        rails: &rails,
                    }
                    .run_to_end(kind)
                    .await?
                }
                _ if incremental => {
                    shopsync_engine::incremental::run_incremental_down_with(
                        &repo,
                        &target.client,
                        &actor,
                        &rails_from_env()?,
                        shopsync_engine::incremental::default_overlap(),
                        dry_run,
                    )
                    .await?
                }
                _ => {
                    let options = shopsync_engine::sync::RunOptions {
                        direction: if direction == Direction::Bidirectional {
                            shopsync_domain::SyncDirection::Bidirectional
                        } else {
                            shopsync_domain::SyncDirection::Down
                        },
                        dry_run,
                    };
                    shopsync_engine::sync::run_full(
                        &repo,
                        &target.client,
                        &actor,
                        &rails_from_env()?,
                        options,
                    )
                    .await?
                }
            };
            repo.flush().await.context("making the sync durable")?;
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprintln!();
            }
            let s = &operation.statistics;
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "operation {} {}: processed {}, created {}, updated {}, unchanged {}, skipped {}, conflicts {}, auto-resolved {}, failed {}",
                operation.operation_uuid,
                shopsync_domain::status::status_name(operation.status),
                s.processed, s.created, s.updated, s.unchanged, s.skipped, s.conflicts, s.auto_resolved, s.failed
            );
            if let Some(reason) = &operation.status_reason {
                println!("  {reason}");
            }
            if operation.status == shopsync_domain::OperationStatus::AwaitingApproval {
                println!(
                    "  waiting for approval: shopsync operation approve {id} (or reject {id} --reason ...)",
                    id = operation.operation_uuid
                );
            }
            if let Some(log) =
                shopsync_engine::operation::performance_of(&repo, operation.operation_uuid).await?
            {
                let stages: Vec<String> = log
                    .stage_durations_ms
                    .iter()
                    .map(|(stage, ms)| {
                        format!("{} {ms} ms", shopsync_domain::status::status_name(*stage))
                    })
                    .collect();
                println!(
                    "stages: {}; bottleneck: {}",
                    stages.join(", "),
                    log.bottleneck_stage
                        .map(shopsync_domain::status::status_name)
                        .unwrap_or_else(|| "-".into())
                );
            }
            let api = target.client.counters();
            println!(
                "took {seconds:.1} s ({:.0} products/s); Shopify: {} calls, {:.0} cost points, {:.1} s waiting on the rate limit",
                s.processed as f64 / seconds.max(1e-9),
                api.api_calls,
                api.cost_used,
                api.throttle_wait.as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Operation { action } => commands::operation::run(action).await,
        Command::Conflicts { action } => commands::conflicts::run(action).await,
        Command::Product { action } => commands::product::run(action).await,
        Command::Bench { which } => {
            match which {
                BenchCommand::ShopifyPush { seconds, tasks } => {
                    bench::shopify_push(seconds, tasks.max(1)).await?
                }
                BenchCommand::Webhook { count } => bench::webhook(count.max(1))?,
                BenchCommand::XorosoftImport { rows, store } => {
                    let dir = bench::store_dir(store.data.as_deref())?;
                    bench_import::xorosoft_import(dir.path(), rows.max(1)).await?
                }
                BenchCommand::XorosoftImportRun { dir, key, location } => {
                    let location = shopsync_domain::LocationId::new(location)?;
                    bench_import::xorosoft_import_run(&dir, &key, location).await?
                }
                BenchCommand::BulkPush { products, store } => {
                    let dir = bench::store_dir(store.data.as_deref())?;
                    bench_push::bulk_push(dir.path(), products.max(1)).await?
                }
                BenchCommand::Rollback { products, store } => {
                    let dir = bench::store_dir(store.data.as_deref())?;
                    bench_push::rollback(dir.path(), products.max(1)).await?
                }
                BenchCommand::XorosoftPush { items, store } => {
                    let dir = bench::store_dir(store.data.as_deref())?;
                    bench_import::xorosoft_push(dir.path(), items.max(1)).await?
                }
                BenchCommand::WebhookPath {
                    count,
                    products,
                    concurrency,
                    rate,
                    store,
                } => {
                    if let Some(rate) = rate.filter(|r| !(r.is_finite() && *r > 0.0)) {
                        anyhow::bail!(
                            "--rate must be a positive number of deliveries per second, not {rate}"
                        );
                    }
                    let dir = bench::store_dir(store.data.as_deref())?;
                    bench::webhook_path(
                        dir.path(),
                        count.max(1),
                        products.max(1),
                        concurrency.max(1),
                        rate,
                    )
                    .await?
                }
                BenchCommand::DownSync {
                    products,
                    variants,
                    store: config::StoreKind::Dynamodb,
                    endpoint,
                    ..
                } => {
                    bench::down_sync_dynamodb(
                        endpoint.as_deref(),
                        products.unwrap_or(2_000).max(1),
                        variants.max(1),
                    )
                    .await?
                }
                BenchCommand::DownSync {
                    products,
                    variants,
                    endpoint,
                    data,
                    ..
                } => {
                    if endpoint.is_some() {
                        anyhow::bail!("--endpoint is DynamoDB's: give it with --store dynamodb");
                    }
                    let dir = bench::store_dir(data.data.as_deref())?;
                    bench::down_sync(
                        dir.path(),
                        products.unwrap_or(100_000).max(1),
                        variants.max(1),
                    )
                    .await?
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi => {
            println!(
                "{}",
                serde_json::to_string_pretty(&shopsync_api::openapi())?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate {
            store,
            backup,
            no_backup,
            check,
        } => {
            let backend = store.open().await.context("opening the store")?;
            println!("shopsync migrate: {}", store.describe());
            let options = MigrateOptions {
                backup,
                no_backup,
                check,
            };
            let report = match migrate(backend.as_ref(), options).await {
                Ok(report) => report,
                Err(e @ MigrateError::NeedsBackup(_)) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(EXIT_NEEDS_BACKUP));
                }
                Err(MigrateError::Store(e)) => return Err(e).context("migrating"),
            };
            backend
                .flush()
                .await
                .context("making the migration durable")?;
            if !report.drift.is_empty() {
                eprintln!(
                    "error: existing tables differ from their definitions; nothing was changed:"
                );
                for d in &report.drift {
                    eprintln!("  drift: {d}");
                }
                return Ok(ExitCode::from(EXIT_DRIFT));
            }
            let verb = if check { "would" } else { "did" };
            for change in &report.changes {
                println!("  {verb}: {change}");
            }
            if report.changes.is_empty() {
                println!("no changes: every table matches its definition");
            }
            if !report.unreadable.is_empty() {
                for u in &report.unreadable {
                    eprintln!("  unreadable: {u}");
                }
                anyhow::bail!(
                    "{} product(s) could not be backfilled; they were left as they are",
                    report.unreadable.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Creates missing tables (a fresh data directory works at once); tables that differ from
/// their definitions stop the command with the way out.
pub(crate) async fn prepare_tables(backend: &dyn shopsync_store::ItemStore) -> anyhow::Result<()> {
    let report = migrate(backend, MigrateOptions::default()).await;
    if let Ok(report) = &report {
        if !report.drift.is_empty() {
            anyhow::bail!("the tables differ from their definitions: run `shopsync migrate`");
        }
    }
    report.context("preparing the tables")?;
    Ok(())
}

/// The guard rails from the environment (`SHOPSYNC_REQUIRE_APPROVAL`, `SHOPSYNC_RAIL_*`):
/// the defaults where a setting is absent; a bad value stops the command with its name.
/// `SHOPSYNC_BULK_PUSH_MIN` is checked with them (a push of that many products goes through
/// Shopify's bulk mutations).
pub(crate) fn rails_from_env() -> anyhow::Result<shopsync_domain::GuardRails> {
    shopsync_engine::up::bulk_push_min_from(|name| std::env::var(name).ok())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    shopsync_domain::GuardRails::from_settings(|name| {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    })
    .map_err(|e| anyhow::anyhow!("guard rails: {e}"))
}

//! `shopsync import xorosoft FILE`: a Xorosoft file imported as if dropped into
//! `DATA/xorosoft/inbound/<type>/` (where `serve` watches), through the same importer.

use crate::config::{ShopifyArgs, StoreArgs};
use anyhow::Context;
use clap::{Args, Subcommand};
use shopsync_domain::{XorosoftSyncLog, XorosoftSyncStatus, XorosoftSyncType};
use shopsync_engine::blob::FolderBlobs;
use shopsync_engine::xorosoft_import::{ImportSettings, Importer, LocationMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit code when the file is refused whole (nothing written).
const EXIT_REFUSED: u8 = 3;

/// What to import.
#[derive(Subcommand)]
pub enum ImportSource {
    /// A Xorosoft stock, price or full file.
    Xorosoft(XorosoftArgs),
}

/// The kinds of Xorosoft file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FileType {
    /// Stock (available per StoreCode) and cost: a stock_update.
    Stock,
    /// Retail prices: a price_update.
    Price,
    /// Both: a full_sync, which also writes an export for Xorosoft.
    Full,
}

impl FileType {
    fn sync_type(self) -> XorosoftSyncType {
        match self {
            FileType::Stock => XorosoftSyncType::StockUpdate,
            FileType::Price => XorosoftSyncType::PriceUpdate,
            FileType::Full => XorosoftSyncType::FullSync,
        }
    }
}

/// `shopsync import xorosoft` options.
#[derive(Args)]
pub struct XorosoftArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    shopify: ShopifyArgs,
    /// The CSV file.
    file: PathBuf,
    /// What the file holds.
    #[arg(long = "type", value_enum, default_value = "stock")]
    file_type: FileType,
    /// Read, link and stage only: nothing is applied, pushed or archived.
    #[arg(long)]
    dry_run: bool,
    /// Print the import's log record as one JSON object.
    #[arg(long)]
    json: bool,
    /// Who imports.
    #[arg(long, env = "USER", default_value = "operator")]
    by: String,
}

/// The import settings from the environment (`SHOPSYNC_XOROSOFT_*`, `SHOPSYNC_SHOP_CURRENCY`,
/// `SHOPSYNC_RAIL_MAX_*`); a bad value stops the command with its name.
pub fn settings_from_env() -> anyhow::Result<ImportSettings> {
    ImportSettings::from_settings(|name| std::env::var(name).ok())
        .map_err(|e| anyhow::anyhow!("Xorosoft import settings: {e}"))
}

/// With the simulator and no location map, every StoreCode goes to the shop's first
/// location; the line saying so is returned for printing.
pub async fn default_locations(
    settings: &mut ImportSettings,
    client: &shopsync_shopify::AdminClient,
    simulated: bool,
) -> anyhow::Result<Option<String>> {
    if !settings.locations.is_empty() || !simulated {
        return Ok(None);
    }
    let locations = client
        .locations()
        .await
        .context("reading the shop's locations")?;
    let Some(first) = locations.first() else {
        return Ok(None);
    };
    settings.locations = LocationMap::everything_to(first.id);
    Ok(Some(format!(
        "Xorosoft StoreCodes -> {} ({}, the simulator's first location; set SHOPSYNC_XOROSOFT_LOCATIONS to map them)",
        first.id.gid(),
        first.name
    )))
}

/// The import settings and guard rails from the environment, with the simulator's first
/// location standing in for an unset location map (the line saying so is printed).
pub async fn local_settings(
    target: &crate::config::ShopifyTarget,
) -> anyhow::Result<(ImportSettings, shopsync_domain::GuardRails)> {
    let mut settings = settings_from_env()?;
    if let Some(line) =
        default_locations(&mut settings, &target.client, target._simulator.is_some()).await?
    {
        eprintln!("{line}");
    }
    Ok((settings, crate::rails_from_env()?))
}

/// Runs `shopsync import`.
pub async fn run(source: ImportSource) -> anyhow::Result<ExitCode> {
    let ImportSource::Xorosoft(args) = source;
    let metadata = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    if !metadata.is_file() {
        anyhow::bail!("{} is not a file", args.file.display());
    }
    let name = args
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| anyhow::anyhow!("{} names no file", args.file.display()))?
        .to_owned();
    let backend = args.store.open().await.context("opening the store")?;
    crate::prepare_tables(backend.as_ref()).await?;
    let repo = shopsync_store::Store::new(backend);
    let target = args.shopify.connect(None).await?;
    eprintln!(
        "shopsync import: {} -> {}",
        args.file.display(),
        target.description
    );
    let (settings, rails) = local_settings(&target).await?;
    let actor = shopsync_domain::Actor::new(&args.by).context("actor")?;
    // A dry run reads a copy outside the watched folder and leaves nothing behind there.
    let scratch;
    let root: &Path = if args.dry_run {
        scratch = tempfile::tempdir().context("a scratch folder")?;
        scratch.path()
    } else {
        args.store.data_dir()
    };
    let blobs = FolderBlobs::new(root, "local");
    let key = format!(
        "xorosoft/inbound/{}/{name}",
        args.file_type.sync_type().folder()
    );
    // Copied as a stream, keeping its own modification time: the time of its snapshot.
    blobs
        .place_file(&key, &args.file)
        .await
        .context("placing the file")?;
    let importer = Importer {
        store: &repo,
        client: Some(&target.client),
        blobs: &blobs,
        actor: &actor,
        rails: &rails,
        settings: &settings,
    };
    let log = match importer
        .run(&key, Some(args.file_type.sync_type()), args.dry_run)
        .await
    {
        Ok(log) => log,
        Err(e) => {
            repo.flush().await.ok();
            return Err(e).context("importing");
        }
    };
    repo.flush().await.context("making the import durable")?;
    if args.dry_run {
        keep_dry_run_report(&log, root, args.store.data_dir())?;
    }
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
    print_log(&log, args.json, args.store.data_dir())?;
    Ok(exit_code(&log))
}

/// Copies a dry run's row-errors report from its scratch folder to the same place under
/// `data` (`xorosoft/reports/`, which nothing watches), where its log says it is: the point
/// of a dry run is to see what the file would do, its errors included.
fn keep_dry_run_report(log: &XorosoftSyncLog, scratch: &Path, data: &Path) -> anyhow::Result<()> {
    let Some(report) = &log.errors_report else {
        return Ok(());
    };
    let relative = report.trim_start_matches("local/");
    let kept = data.join(relative);
    if let Some(folder) = kept.parent() {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("creating {}", folder.display()))?;
    }
    std::fs::copy(scratch.join(relative), &kept)
        .with_context(|| format!("keeping the dry run's report as {}", kept.display()))?;
    Ok(())
}

/// 0 when the import completed, waits for approval or was a duplicate; 3 when the file was
/// refused; 1 otherwise.
fn exit_code(log: &XorosoftSyncLog) -> ExitCode {
    match log.status {
        XorosoftSyncStatus::Completed
        | XorosoftSyncStatus::CompletedWithErrors
        | XorosoftSyncStatus::AwaitingApproval
        | XorosoftSyncStatus::Duplicate => ExitCode::SUCCESS,
        XorosoftSyncStatus::Refused => ExitCode::from(EXIT_REFUSED),
        _ => ExitCode::FAILURE,
    }
}

fn print_log(log: &XorosoftSyncLog, json: bool, root: &Path) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(log)?);
        return Ok(());
    }
    let s = &log.statistics;
    println!(
        "import {} {}: {} rows ({} valid, {} invalid, {} repeated, {} in another currency); {} matched, {} unmatched, {} ambiguous; {} updated, {} missing, {} locked; {} pushed, {} not",
        log.id,
        shopsync_domain::status::status_name(log.status),
        s.rows_valid + s.rows_invalid,
        s.rows_valid,
        s.rows_invalid,
        s.duplicates,
        s.price_errors,
        s.matched,
        s.unmatched,
        s.ambiguous,
        s.records_updated,
        s.missing,
        s.locked,
        s.pushed,
        s.push_failed,
    );
    if let Some(reason) = &log.status_reason {
        println!("  {reason}");
    }
    for error in &log.errors {
        println!("  note: {error}");
    }
    let local = |path: &str| {
        root.join(path.trim_start_matches("local/"))
            .display()
            .to_string()
    };
    if let Some(report) = &log.errors_report {
        println!("  row errors: {}", local(report));
    }
    if let Some(archive) = &log.archive_file {
        println!("  archived: {}", local(archive));
    }
    if let Some(export) = &log.export_file {
        println!("  export for Xorosoft: {}", local(export));
    }
    if let Some(operation) = log.operation_id {
        println!("  operation: {operation}");
        if log.status == XorosoftSyncStatus::AwaitingApproval {
            println!("  waiting for approval: shopsync operation approve {operation} (or reject {operation} --reason ...)");
        }
    }
    Ok(())
}

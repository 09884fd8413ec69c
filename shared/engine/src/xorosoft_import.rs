//! Xorosoft imports: a stock, price or full file in the blob store becomes one operation.
//!
//! Phases, each resumable from the operation's checkpoint (saved after every chunk, so a
//! worker that dies loses at most the chunk it was on, which is written again the same way):
//!
//! 1. **Parse**: the file is read as a stream, a chunk of rows at a time; each valid row is
//!    linked to a local variant (by `xorosoft_id`, then normalised SKU, then barcode) and the
//!    chunk is stored (`xorosoft_import_chunks`) with its row errors.
//! 2. **Missing**: items the previous snapshot of each StoreCode had and this file lacks.
//! 3. **Stage**: the chunks become one pending row per product (a patch of stock, cost and
//!    prices under the ownership policy); locked products are skipped and reported.
//! 4. **Files**: the errors report is written and the file archived (then removed from the
//!    inbound folder).
//! 5. **Judge**: the guard rails (snapshot drop, zero stock, row errors, price review, approval)
//!    apply or hold the operation. A held import has changed no record.
//! 6. **Apply**: the rows become versions; `xorosoft_products` are upserted; links recorded.
//! 7. **Push**: stock as inventory plans (250 a call, checkpointed before each send), cost and
//!    prices per product; `stock_synced_at` set when Shopify confirms.
//! 8. **Finish**: a full file's export, and the log's final status.

use crate::blob::{BlobError, Blobs};
use crate::error::EngineError;
use crate::operation::save;
use crate::perf::StageTimes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shopsync_domain::product::ProductContent;
use shopsync_domain::staging::{ProductsStaging, StagingStatus};
use shopsync_domain::{
    Actor, ChangeData, ChangeSource, FieldChange, FieldPath, GuardRails, ImportChunk, ImportObject,
    ImportRowError, ImportedItem, ItemLink, LinkedBy, LocationId, Money, OperationId,
    OperationStatus, OperationType, PlanSummary, Product, ProductId, Quantity, StagingId,
    SyncDirection, SyncOperation, VariantKey, Verdict, XorosoftLogId, XorosoftProduct,
    XorosoftStatistics, XorosoftSyncLog, XorosoftSyncStatus, XorosoftSyncType,
};
use shopsync_shopify::ops::{InventoryPlan, PlanCheckpoint, QuantityChange, VariantUpdateInput};
use shopsync_shopify::{AdminClient, ShopifyError};
use shopsync_store::item::{Key, Query};
use shopsync_store::records::ProductLookup;
use shopsync_store::{RepoError, Store, Table};
use shopsync_xorosoft::{Options, Reader, ResumePoint, SeenItems, XorosoftRow};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

/// Applied rows pushed together: a page's stock goes out in inventory plans of up to 250
/// levels a call.
const PUSH_PAGE: usize = 250;

/// Rows kept per chunk: small enough for one DynamoDB item (400 KB), large enough that a
/// million-row file is two thousand of them.
pub const CHUNK_ROWS: usize = 500;

/// How long an import's chunks are kept after they were written.
fn chunk_lifetime() -> chrono::Duration {
    chrono::Duration::days(30)
}

/// The metric an alarm watches: imports held for approval or refused.
pub const HELD_OR_REFUSED_METRIC: &str = "XorosoftImportsHeldOrRefused";

// ---------------------------------------------------------------- settings

/// Which Shopify location each StoreCode's stock goes to (`SHOPSYNC_XOROSOFT_LOCATIONS`:
/// `CODE=gid://shopify/Location/N,...`, `*` for every other code). Codes match in any case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocationMap {
    codes: BTreeMap<String, LocationId>,
    other: Option<LocationId>,
}

impl LocationMap {
    /// Parses the setting; an entry that is not `CODE=location`, or a code (or `*`) given
    /// twice, is an error naming it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut map = Self::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (code, location) = entry.split_once('=').ok_or_else(|| {
                format!(
                    "SHOPSYNC_XOROSOFT_LOCATIONS: `{entry}` is not CODE=gid://shopify/Location/N"
                )
            })?;
            let location = location.trim();
            let number = location
                .strip_prefix("gid://shopify/Location/")
                .unwrap_or(location);
            let id = number
                .parse::<u64>()
                .ok()
                .and_then(|n| LocationId::new(n).ok())
                .ok_or_else(|| {
                    format!("SHOPSYNC_XOROSOFT_LOCATIONS: `{location}` is not a location id (gid://shopify/Location/N)")
                })?;
            let twice = || {
                format!(
                    "SHOPSYNC_XOROSOFT_LOCATIONS: `{}` is mapped twice",
                    code.trim()
                )
            };
            match code.trim() {
                "*" if map.other.is_some() => return Err(twice()),
                "*" => map.other = Some(id),
                "" => {
                    return Err(format!(
                        "SHOPSYNC_XOROSOFT_LOCATIONS: `{entry}` names no StoreCode"
                    ))
                }
                code => {
                    if map.codes.insert(code.to_uppercase(), id).is_some() {
                        return Err(twice());
                    }
                }
            }
        }
        Ok(map)
    }

    /// Every StoreCode to one location (the simulator's first, when nothing is set).
    pub fn everything_to(location: LocationId) -> Self {
        Self {
            codes: BTreeMap::new(),
            other: Some(location),
        }
    }

    /// The location of a StoreCode, if it is mapped.
    pub fn location(&self, code: &str) -> Option<LocationId> {
        if self.codes.is_empty() {
            return self.other;
        }
        self.codes.get(&code.to_uppercase()).copied().or(self.other)
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty() && self.other.is_none()
    }
}

/// How imports are read, judged and pushed.
#[derive(Debug, Clone)]
pub struct ImportSettings {
    /// Xorosoft's prices are applied without review (`SHOPSYNC_XOROSOFT_OWNS_PRICE`).
    pub owns_price: bool,
    /// The zone of Xorosoft's `MM/DD/YYYY` times (`SHOPSYNC_XOROSOFT_TZ`).
    pub timezone: chrono_tz::Tz,
    /// The shop's currency (`SHOPSYNC_SHOP_CURRENCY`): rows priced in another have their
    /// prices refused.
    pub shop_currency: Option<String>,
    /// StoreCode to location.
    pub locations: LocationMap,
    /// The StoreCode whose prices and cost are taken when several StoreCodes of one file name
    /// an item (`SHOPSYNC_XOROSOFT_PRICE_STORE`); unset, they are taken when all agree.
    pub price_store: Option<String>,
    /// Hold a snapshot lacking more than this share (percent) of a StoreCode's previous items.
    pub max_snapshot_drop_pct: f64,
    /// Hold a file whose rows are more than this share (percent) errors.
    pub max_row_error_pct: f64,
    /// Rows per chunk.
    pub chunk_rows: usize,
}

impl Default for ImportSettings {
    fn default() -> Self {
        Self {
            owns_price: false,
            timezone: chrono_tz::UTC,
            shop_currency: Some("USD".into()),
            locations: LocationMap::default(),
            price_store: None,
            max_snapshot_drop_pct: 20.0,
            max_row_error_pct: 10.0,
            chunk_rows: CHUNK_ROWS,
        }
    }
}

/// The settings that configure imports, by name.
pub const IMPORT_SETTINGS: [&str; 7] = [
    "SHOPSYNC_XOROSOFT_OWNS_PRICE",
    "SHOPSYNC_XOROSOFT_TZ",
    "SHOPSYNC_SHOP_CURRENCY",
    "SHOPSYNC_XOROSOFT_LOCATIONS",
    "SHOPSYNC_XOROSOFT_PRICE_STORE",
    "SHOPSYNC_RAIL_MAX_SNAPSHOT_DROP_PCT",
    "SHOPSYNC_RAIL_MAX_ROW_ERROR_PCT",
];

impl ImportSettings {
    /// The settings from `lookup` (a setting's value, if set); a bad value is an error
    /// naming its setting.
    pub fn from_settings(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut settings = Self::default();
        if let Some(v) = lookup("SHOPSYNC_XOROSOFT_OWNS_PRICE") {
            settings.owns_price = match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" | "" => false,
                _ => {
                    return Err(format!(
                        "SHOPSYNC_XOROSOFT_OWNS_PRICE=`{v}`: expected true or false"
                    ))
                }
            };
        }
        if let Some(v) = lookup("SHOPSYNC_XOROSOFT_TZ").filter(|v| !v.trim().is_empty()) {
            settings.timezone = v.trim().parse().map_err(|_| {
                format!("SHOPSYNC_XOROSOFT_TZ=`{v}`: expected an IANA time zone such as America/New_York")
            })?;
        }
        if let Some(v) = lookup("SHOPSYNC_SHOP_CURRENCY").filter(|v| !v.trim().is_empty()) {
            let code = v.trim().to_ascii_uppercase();
            if code.len() != 3 || !code.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(format!(
                    "SHOPSYNC_SHOP_CURRENCY=`{v}`: expected a three-letter currency code"
                ));
            }
            settings.shop_currency = Some(code);
        }
        if let Some(v) = lookup("SHOPSYNC_XOROSOFT_LOCATIONS") {
            settings.locations = LocationMap::parse(&v)?;
        }
        if let Some(v) = lookup("SHOPSYNC_XOROSOFT_PRICE_STORE").filter(|v| !v.trim().is_empty()) {
            settings.price_store = Some(v.trim().to_owned());
        }
        let pct = |name: &str, into: &mut f64| -> Result<(), String> {
            if let Some(v) = lookup(name) {
                *into = v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(|| format!("{name}=`{v}`: expected a percentage from 0 to 100"))?;
            }
            Ok(())
        };
        pct(
            "SHOPSYNC_RAIL_MAX_SNAPSHOT_DROP_PCT",
            &mut settings.max_snapshot_drop_pct,
        )?;
        pct(
            "SHOPSYNC_RAIL_MAX_ROW_ERROR_PCT",
            &mut settings.max_row_error_pct,
        )?;
        Ok(settings)
    }

    fn reader_options(&self) -> Options {
        Options {
            shop_currency: self.shop_currency.clone(),
            timezone: self.timezone,
            ..Options::default()
        }
    }
}

// ---------------------------------------------------------------- checkpoint

/// Where an import's reader stopped (a [`ResumePoint`] as stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredPoint {
    offset: u64,
    line: u64,
    headers: Vec<String>,
    encoding: String,
}

impl StoredPoint {
    fn of(point: &ResumePoint) -> Self {
        Self {
            offset: point.offset,
            line: point.line,
            headers: point.headers.clone(),
            encoding: point.encoding.name().to_owned(),
        }
    }

    fn point(&self) -> ResumePoint {
        ResumePoint {
            offset: self.offset,
            line: self.line,
            headers: self.headers.clone(),
            encoding: shopsync_xorosoft::Encoding::of_name(&self.encoding)
                .unwrap_or(shopsync_xorosoft::Encoding::Utf8),
        }
    }
}

/// The phase an import's next step starts in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum ImportPhase {
    /// Reading the file: `chunk` is the next chunk's number, `from` where it starts (`None`:
    /// the file's start).
    Parse {
        chunk: u64,
        from: Option<StoredPoint>,
    },
    /// Comparing each StoreCode with its previous snapshot.
    Missing,
    /// Staging chunk `chunk` on.
    Stage { chunk: u64 },
    /// Writing the errors report and archiving the file.
    Files,
    /// Judging the plan.
    Judge,
    /// Applying the rows and records.
    Apply,
    /// Pushing the applied rows from the `next`-th on (in row id order, a page at a time);
    /// `plan`: the stock plan of the page being pushed, saved before each send.
    Push {
        next: u64,
        plan: Option<InventoryPlan>,
    },
    /// Export (a full file) and final status.
    Finish,
}

/// An import's state between steps, stored in its operation's checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ImportCheckpoint {
    /// Marks the checkpoint as an import's.
    xorosoft_import: XorosoftLogId,
    phase: ImportPhase,
    /// Chunks written.
    chunks: u64,
    /// Lines of rows withdrawn because a later row named their item again.
    withdrawn: BTreeSet<u64>,
    /// The StoreCodes the file names.
    store_codes: BTreeSet<String>,
    /// Per StoreCode: items its previous snapshot had, and how many of them this one lacks.
    snapshots: BTreeMap<String, (u64, u64)>,
    /// Per StoreCode of a file that takes stock: its items whose stock came from a file
    /// written after this one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    newer: BTreeMap<String, NewerSnapshot>,
    /// Whether it waited for approval (it checks for newer stock again before it applies).
    #[serde(default)]
    held: bool,
    /// Counts.
    stats: XorosoftStatistics,
    /// The file's encoding.
    encoding: Option<String>,
    /// Fields of a UTF-8 file read as Windows-1252.
    fallbacks: u64,
    /// Time so far, per stage, in ms.
    #[serde(default)]
    stage_ms: BTreeMap<shopsync_domain::Stage, u64>,
    /// Shopify calls so far.
    #[serde(default)]
    api: crate::operation::ApiTotals,
    /// Whether the phases after staging take the rows in product order (true for every
    /// import begun now); an import checkpointed without it keeps the order it began in
    /// (by row id), so a push resumed at a position skips and repeats nothing.
    #[serde(default)]
    rows_in_product_order: bool,
}

/// Counts `record` into `newer` when its stock came from a file written after `log`'s (by
/// another import: this one has written none before it applies).
fn note_newer(
    newer: &mut BTreeMap<String, NewerSnapshot>,
    log: &XorosoftSyncLog,
    record: &XorosoftProduct,
) {
    let this = log.object.as_ref().and_then(|o| o.last_modified);
    let Some(at) = record
        .stock_snapshot_at
        .filter(|at| this.is_some_and(|this| *at > this))
        .filter(|_| record.last_log_id != Some(log.id))
    else {
        return;
    };
    let entry = newer
        .entry(record.warehouse_code.clone())
        .or_insert(NewerSnapshot {
            items: 0,
            file: None,
            written_at: at,
        });
    entry.items += 1;
    if at >= entry.written_at {
        entry.written_at = at;
        entry.file = record.import_file.clone();
    }
}

/// Why a file is held when items of `code` hold stock from a newer file.
fn newer_reason(code: &str, newer: &NewerSnapshot, log: &XorosoftSyncLog) -> String {
    let written = |at: Option<DateTime<Utc>>| {
        at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "unknown".into())
    };
    format!(
        "{} item(s) of store {code} hold stock from a newer file ({}, written {}) than this one (written {}): applying it would set their stock back to an older snapshot",
        newer.items,
        newer.file.as_deref().unwrap_or("unknown"),
        written(Some(newer.written_at)),
        written(log.object.as_ref().and_then(|o| o.last_modified)),
    )
}

/// The items of a StoreCode whose stock came from a file written after the one imported: how
/// many, and the newest such file (`bucket/key`) and when it was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct NewerSnapshot {
    items: u64,
    file: Option<String>,
    written_at: DateTime<Utc>,
}

impl ImportCheckpoint {
    fn new(log: XorosoftLogId) -> Self {
        Self {
            xorosoft_import: log,
            phase: ImportPhase::Parse {
                chunk: 0,
                from: None,
            },
            chunks: 0,
            withdrawn: BTreeSet::new(),
            store_codes: BTreeSet::new(),
            snapshots: BTreeMap::new(),
            newer: BTreeMap::new(),
            held: false,
            stats: XorosoftStatistics::default(),
            encoding: None,
            fallbacks: 0,
            stage_ms: BTreeMap::new(),
            api: crate::operation::ApiTotals::default(),
            rows_in_product_order: true,
        }
    }

    fn of(operation: &SyncOperation) -> Option<Self> {
        serde_json::from_value(operation.checkpoint.clone()?).ok()
    }
}

// ---------------------------------------------------------------- importer

/// What began an import.
#[derive(Debug, Clone, PartialEq)]
pub enum Begun {
    /// An import to run (new, or one begun before and not finished).
    Import {
        /// Its log.
        log: Box<XorosoftSyncLog>,
        /// Its operation.
        operation: OperationId,
    },
    /// Nothing to run: the file was refused, or is a duplicate (its log says which).
    Settled(Box<XorosoftSyncLog>),
    /// The import of this object is running elsewhere (its operation's lease has not run
    /// out); try again later to take it over if that worker is gone.
    Busy(Box<XorosoftSyncLog>),
}

/// Runs imports.
pub struct Importer<'a> {
    /// The store.
    pub store: &'a Store,
    /// Shopify (`None`: nothing is pushed; the import ends once applied).
    pub client: Option<&'a AdminClient>,
    /// Where files are.
    pub blobs: &'a dyn Blobs,
    /// Who imports.
    pub actor: &'a Actor,
    /// The rails.
    pub rails: &'a GuardRails,
    /// Import settings.
    pub settings: &'a ImportSettings,
}

fn invalid(message: String) -> EngineError {
    EngineError::Store(RepoError::Store(shopsync_store::StoreError::Invalid(
        message,
    )))
}

/// The log of an import.
pub async fn load_log(store: &Store, id: XorosoftLogId) -> Result<XorosoftSyncLog, EngineError> {
    store
        .get::<XorosoftSyncLog>(&Key::pk(id.to_string()))
        .await?
        .ok_or_else(|| {
            EngineError::Store(RepoError::NotFound {
                table: Table::XorosoftSyncLogs,
                key: id.to_string(),
            })
        })
}

/// The name an import's files are kept under: its start time and the file's name.
fn kept_name(log: &XorosoftSyncLog) -> String {
    let key = log
        .object
        .as_ref()
        .map(|o| o.key.as_str())
        .unwrap_or("file");
    let file = key.rsplit('/').next().unwrap_or(key);
    format!("{}-{file}", log.started_at.format("%Y%m%dT%H%M%SZ"))
}

/// Why a file is a duplicate of `first` (whose operation is `running`, if it has one), and,
/// when that import stopped unfinished, its reason and the way on.
fn duplicate_reason(first: &XorosoftSyncLog, running: Option<&SyncOperation>) -> String {
    let resumable = running.filter(|op| op.status == OperationStatus::Failed);
    let failed = first.status == XorosoftSyncStatus::Failed || resumable.is_some();
    let status = if failed {
        XorosoftSyncStatus::Failed
    } else {
        first.status
    };
    let mut reason = format!(
        "this object (same key and ETag) was imported before by import {} ({}); nothing changed",
        first.id,
        shopsync_domain::status::status_name(status)
    );
    if failed {
        let why = first
            .status_reason
            .as_deref()
            .or(running.and_then(|op| op.status_reason.as_deref()))
            .unwrap_or("none given");
        reason.push_str(&format!(" (its reason: {why}); "));
        if let Some(op) = resumable {
            reason.push_str(&format!(
                "`shopsync operation resume {}` goes on with it, or ",
                op.operation_uuid
            ));
        }
        reason.push_str("the file dropped under another name is imported afresh");
    }
    reason
}

/// Stores the log if it is still as `previous` left it (its `updated_at`).
async fn save_log(
    store: &Store,
    log: &XorosoftSyncLog,
    previous: &XorosoftSyncLog,
) -> Result<(), EngineError> {
    use shopsync_store::item::{Condition, Scalar};
    let condition = match previous.updated_at {
        Some(at) => Condition::Eq("updated_at", Scalar::N(at.timestamp_micros())),
        None => Condition::NotExists("updated_at"),
    };
    match store.replace_if(log, condition).await {
        Ok(()) => Ok(()),
        Err(shopsync_store::ReplaceError::Changed(current)) => Err(invalid(format!(
            "import {} changed meanwhile (it is {})",
            current.id,
            shopsync_domain::status::status_name(current.status)
        ))),
        Err(shopsync_store::ReplaceError::Repo(e)) => Err(e.into()),
    }
}

/// The staged row id of a product in an operation (one row per product, however many of
/// the file's rows name it). In product order (every import begun now), the id starts with
/// the product id's first half, so the rows of products made together are stored together;
/// its second half is a digest of both ids. An import checkpointed before keeps the ids it
/// staged (a digest of both ids only).
fn row_id(operation: OperationId, product: ProductId, in_product_order: bool) -> StagingId {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(operation.to_string())
        .chain_update(b":")
        .chain_update(product.to_string())
        .finalize();
    let mut bytes = [0u8; 16];
    if in_product_order {
        bytes[..8].copy_from_slice(&product.uuid().as_bytes()[..8]);
        bytes[8..].copy_from_slice(&digest[..8]);
    } else {
        bytes.copy_from_slice(&digest[..16]);
    }
    StagingId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

impl Importer<'_> {
    /// Begins importing the object `key`: refused (nothing written but its log), a
    /// duplicate of an import of the same object (logged as such, nothing changed), or an
    /// operation to run. The same object begun twice is one import (its log id is the
    /// object's identity, written with a condition).
    pub async fn begin(
        &self,
        key: &str,
        sync_type: Option<XorosoftSyncType>,
        dry_run: bool,
    ) -> Result<Begun, EngineError> {
        let info = self
            .blobs
            .head(key)
            .await?
            .ok_or_else(|| BlobError::NotFound(key.to_owned()))?;
        let sync_type = sync_type
            .or_else(|| XorosoftSyncType::of_key(key))
            .ok_or_else(|| {
                EngineError::Refused(format!(
                    "`{key}` is not under xorosoft/inbound/stock/, price/ or full/, so its type is unknown"
                ))
            })?;
        let now = Utc::now();
        let object = ImportObject {
            bucket: self.blobs.bucket().to_owned(),
            key: key.to_owned(),
            version_id: info.version_id,
            etag: info.etag,
            size: info.size,
            last_modified: info.last_modified.map(DateTime::<Utc>::from),
        };
        let mut log = XorosoftSyncLog::new(object, sync_type, self.actor.clone(), now);
        if dry_run {
            log.id = XorosoftLogId::generate();
        }
        match self.store.insert(&log).await {
            Ok(()) => {}
            Err(RepoError::AlreadyExists { .. }) => {
                let first = load_log(self.store, log.id).await?;
                use shopsync_domain::StatusMachine;
                let running = match first.operation_id {
                    Some(operation) => {
                        Some(crate::operation::load_operation(self.store, operation).await?)
                    }
                    None => None,
                };
                // An import whose operation has stopped (failed, rejected, cancelled) is not
                // begun again by its file: a failed one is resumed by a person.
                let stopped = running.as_ref().is_some_and(|op| {
                    !matches!(
                        op.status,
                        OperationStatus::Pending | OperationStatus::InProgress
                    )
                });
                if first.status.is_terminal()
                    || matches!(
                        first.status,
                        XorosoftSyncStatus::AwaitingApproval | XorosoftSyncStatus::Failed
                    )
                    || stopped
                {
                    let mut duplicate = log.clone();
                    duplicate.id = XorosoftLogId::generate();
                    duplicate.status = XorosoftSyncStatus::Duplicate;
                    duplicate.duplicate_of = Some(first.id);
                    duplicate.operation_id = first.operation_id;
                    duplicate.completed_at = Some(now);
                    duplicate.status_reason = Some(duplicate_reason(&first, running.as_ref()));
                    // Out of the inbound folder, unless the first import may still read it
                    // (it stopped before it archived it, and may be resumed).
                    if first.archive_file.is_some() || first.status.is_terminal() {
                        duplicate.archive_file = self.archive(&duplicate).await?;
                    }
                    self.store.insert(&duplicate).await?;
                    tracing::info!(import = %duplicate.id, first = %first.id, key, "duplicate Xorosoft file: nothing changed");
                    return Ok(Begun::Settled(Box::new(duplicate)));
                }
                log = first;
                if let (Some(operation), Some(running)) = (log.operation_id, running) {
                    let held = running.status == OperationStatus::InProgress
                        && running.lease_expires_at.is_some_and(|until| until > now);
                    if held {
                        // Another worker imports it now (its lease runs): left to it.
                        return Ok(Begun::Busy(Box::new(log)));
                    }
                    return Ok(Begun::Import {
                        log: Box::new(log),
                        operation,
                    });
                }
            }
            Err(e) => return Err(e.into()),
        }
        // The header decides whether the file can be an import at all.
        let reader = self.blobs.open(key, 0).await?;
        let options = self.settings.reader_options();
        let judged = tokio::task::spawn_blocking(move || {
            Reader::new(reader, options).map(|r| r.encoding().name().to_owned())
        })
        .await
        .map_err(|e| EngineError::Task(e.to_string()))?;
        let encoding = match judged {
            Ok(encoding) => encoding,
            Err(refusal) => {
                let before = log.clone();
                if !dry_run {
                    // Out of the inbound folder: a refused file is settled, not waiting.
                    log.archive_file = self.archive(&log).await?;
                }
                log.status = XorosoftSyncStatus::Refused;
                log.status_reason = Some(refusal.to_string());
                log.completed_at = Some(Utc::now());
                log.updated_at = log.completed_at;
                save_log(self.store, &log, &before).await?;
                tracing::warn!(
                    import = %log.id,
                    key,
                    reason = %refusal,
                    metric = HELD_OR_REFUSED_METRIC,
                    "Xorosoft file refused: nothing imported"
                );
                emit_held_or_refused(&log);
                return Ok(Begun::Settled(Box::new(log)));
            }
        };
        let operation_type = match sync_type {
            XorosoftSyncType::StockUpdate => OperationType::StockUpdate,
            XorosoftSyncType::PriceUpdate => OperationType::PriceUpdate,
            XorosoftSyncType::FullSync => OperationType::FullSync,
        };
        let mut operation = SyncOperation::new(
            &format!(
                "Xorosoft {} import of {key}{}",
                sync_type.folder(),
                if dry_run { " (dry run)" } else { "" }
            ),
            operation_type,
            SyncDirection::Up,
            self.actor.clone(),
            now,
        );
        operation.operation_uuid = OperationId::from_uuid(log.id.uuid());
        operation.dry_run = dry_run;
        operation.xorosoft_log_id = Some(log.id);
        let mut checkpoint = ImportCheckpoint::new(log.id);
        checkpoint.encoding = Some(encoding.clone());
        operation.checkpoint = serde_json::to_value(&checkpoint).ok();
        operation.move_to(OperationStatus::InProgress, None, now)?;
        operation.lease_expires_at = Some(now + crate::operation::lease());
        match self.store.insert(&operation).await {
            Ok(()) | Err(RepoError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let before = log.clone();
        log.status = XorosoftSyncStatus::InProgress;
        log.operation_id = Some(operation.operation_uuid);
        log.encoding = Some(encoding);
        log.updated_at = Some(Utc::now());
        save_log(self.store, &log, &before).await?;
        Ok(Begun::Import {
            log: Box::new(log),
            operation: operation.operation_uuid,
        })
    }

    /// Runs an import until it ends (completed, held for approval, failed) or `deadline`
    /// passes; returns its log, and whether it has more to do.
    pub async fn advance(
        &self,
        operation: OperationId,
        deadline: Option<Instant>,
    ) -> Result<(XorosoftSyncLog, bool), EngineError> {
        let mut op = crate::operation::load_operation(self.store, operation).await?;
        let Some(log_id) = op.xorosoft_log_id else {
            return Err(invalid(format!("operation {operation} is not an import")));
        };
        if op.status != OperationStatus::InProgress {
            return Ok((load_log(self.store, log_id).await?, false));
        }
        let Some(mut checkpoint) = ImportCheckpoint::of(&op) else {
            return Err(invalid(format!(
                "operation {operation} has no import checkpoint this build can read"
            )));
        };
        let past = |d: Option<Instant>| d.is_some_and(|d| Instant::now() >= d);
        // The ids of the staged rows (fixed once staging is done), read once a call when a
        // phase needs them.
        let mut staged: Option<Vec<StagingId>> = None;
        loop {
            let began = Instant::now();
            let calls_before = self.client.map(AdminClient::counters).unwrap_or_default();
            let stage = match &checkpoint.phase {
                ImportPhase::Parse { .. } | ImportPhase::Missing => shopsync_domain::Stage::Fetch,
                ImportPhase::Stage { .. } => shopsync_domain::Stage::Stage,
                ImportPhase::Files | ImportPhase::Judge => shopsync_domain::Stage::Diff,
                ImportPhase::Apply => shopsync_domain::Stage::Apply,
                ImportPhase::Push { .. } => shopsync_domain::Stage::Push,
                ImportPhase::Finish => shopsync_domain::Stage::Persist,
            };
            let more = match checkpoint.phase.clone() {
                ImportPhase::Parse { chunk, from } => {
                    self.parse(&mut op, &mut checkpoint, chunk, from, deadline)
                        .await?
                }
                ImportPhase::Missing => {
                    self.find_missing(&mut checkpoint).await?;
                    checkpoint.phase = ImportPhase::Stage { chunk: 0 };
                    true
                }
                ImportPhase::Stage { chunk } => {
                    self.stage(&mut op, &mut checkpoint, chunk, deadline)
                        .await?
                }
                ImportPhase::Files => {
                    self.files(&op, &checkpoint).await?;
                    checkpoint.phase = ImportPhase::Judge;
                    true
                }
                ImportPhase::Judge => {
                    if staged.is_none() {
                        staged = Some(self.staged_rows(&op, &checkpoint).await?);
                    }
                    let rows = staged.as_deref().unwrap_or_default();
                    if let Some(done) = self.judge(&mut op, &mut checkpoint, rows).await? {
                        return Ok((done, false));
                    }
                    true
                }
                ImportPhase::Apply => {
                    if let Some(held) = self.hold_if_overtaken(&mut op, &mut checkpoint).await? {
                        return Ok((held, false));
                    }
                    if staged.is_none() {
                        staged = Some(self.staged_rows(&op, &checkpoint).await?);
                    }
                    let rows = staged.as_deref().unwrap_or_default();
                    self.apply(&mut op, &mut checkpoint, rows).await?;
                    checkpoint.phase = ImportPhase::Push {
                        next: 0,
                        plan: None,
                    };
                    true
                }
                ImportPhase::Push { next, plan } => {
                    if staged.is_none() {
                        staged = Some(self.staged_rows(&op, &checkpoint).await?);
                    }
                    let rows = staged.as_deref().unwrap_or_default();
                    self.push(&mut op, &mut checkpoint, rows, next, plan, deadline)
                        .await?
                }
                ImportPhase::Finish => {
                    let log = self.finish(&mut op, &checkpoint).await?;
                    return Ok((log, false));
                }
            };
            *checkpoint.stage_ms.entry(stage).or_default() +=
                u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
            if let Some(client) = self.client {
                checkpoint.api.add(calls_before, client.counters());
            }
            op = self.save_checkpoint(&op, &checkpoint).await?;
            if !more || past(deadline) {
                let log = load_log(self.store, log_id).await?;
                return Ok((log, true));
            }
        }
    }

    /// Begins and runs an import to its end here.
    pub async fn run(
        &self,
        key: &str,
        sync_type: Option<XorosoftSyncType>,
        dry_run: bool,
    ) -> Result<XorosoftSyncLog, EngineError> {
        match self.begin(key, sync_type, dry_run).await? {
            Begun::Settled(log) | Begun::Busy(log) => Ok(*log),
            Begun::Import { operation, .. } => self.run_operation(operation).await,
        }
    }

    /// Runs an import's remaining steps here.
    pub async fn run_operation(
        &self,
        operation: OperationId,
    ) -> Result<XorosoftSyncLog, EngineError> {
        loop {
            let (log, more) = self
                .advance(
                    operation,
                    Some(Instant::now() + crate::operation::LOCAL_STEP),
                )
                .await?;
            if !more {
                return Ok(log);
            }
        }
    }

    /// Stores the checkpoint, if the operation is still as this worker last saw it (its
    /// status and `updated_at`): a worker that was taken over stops here.
    async fn save_checkpoint(
        &self,
        op: &SyncOperation,
        checkpoint: &ImportCheckpoint,
    ) -> Result<SyncOperation, EngineError> {
        let mut next = op.clone();
        next.checkpoint = serde_json::to_value(checkpoint).ok();
        // Strictly later, so the next save's condition tells this one from the last.
        next.updated_at = Utc::now().max(op.updated_at + chrono::Duration::milliseconds(1));
        next.lease_expires_at = Some(next.updated_at + crate::operation::lease());
        match self
            .store
            .replace_if(&next, crate::operation::unmoved(op))
            .await
        {
            Ok(()) => Ok(next),
            Err(shopsync_store::ReplaceError::Changed(current)) => Err(invalid(format!(
                "import operation {} changed under this worker (now {}): another worker took it over, or it was cancelled",
                current.operation_uuid,
                shopsync_domain::status::status_name(current.status)
            ))),
            Err(shopsync_store::ReplaceError::Repo(e)) => Err(e.into()),
        }
    }

    // ------------------------------------------------------------ parse

    /// Reads chunks from `from` until the end of the file or the deadline; returns whether
    /// there is more to do in this step.
    async fn parse(
        &self,
        op: &mut SyncOperation,
        checkpoint: &mut ImportCheckpoint,
        chunk: u64,
        from: Option<StoredPoint>,
        deadline: Option<Instant>,
    ) -> Result<bool, EngineError> {
        let log = load_log(self.store, checkpoint.xorosoft_import).await?;
        let Some(object) = log.object.clone() else {
            return Err(invalid(format!("import {} names no file", log.id)));
        };
        let seen = match &from {
            Some(_) => self.seen_before(log.id, chunk).await?,
            None => SeenItems::new(),
        };
        let offset = from.as_ref().map(|p| p.offset).unwrap_or(0);
        let input = self.blobs.open(&object.key, offset).await?;
        let options = self.settings.reader_options();
        let rows = self.settings.chunk_rows.max(1);
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<ReadChunk>(2);
        let point = from.as_ref().map(StoredPoint::point);
        let reading = tokio::task::spawn_blocking(move || {
            read_chunks(input, point, options, seen, rows, sender)
        });
        let mut next_chunk = chunk;
        let mut stopped = false;
        while let Some(read) = receiver.recv().await {
            let read = read.map_err(EngineError::Refused)?;
            self.keep_chunk(op, checkpoint, next_chunk, read).await?;
            next_chunk += 1;
            *op = self.save_checkpoint(op, checkpoint).await?;
            crate::crash::point("import-chunk");
            if deadline.is_some_and(|d| Instant::now() >= d) {
                stopped = true;
                break;
            }
        }
        drop(receiver);
        reading
            .await
            .map_err(|e| EngineError::Task(e.to_string()))?;
        if !stopped {
            // The reader sent its last chunk (or had no row left to send): the file is read.
            checkpoint.phase = ImportPhase::Missing;
        }
        Ok(!stopped)
    }

    /// The items the chunks before `chunk` named (for a reader that resumes there).
    async fn seen_before(&self, log: XorosoftLogId, chunk: u64) -> Result<SeenItems, EngineError> {
        let mut seen = SeenItems::new();
        self.each_chunk(log, |stored| {
            if stored.chunk < chunk {
                for item in &stored.items {
                    seen.observe(&item.store_code, &item.item_number, item.line);
                }
            }
        })
        .await?;
        Ok(seen)
    }

    /// Calls `visit` with each stored chunk of an import, in order.
    async fn each_chunk(
        &self,
        log: XorosoftLogId,
        mut visit: impl FnMut(&ImportChunk),
    ) -> Result<(), EngineError> {
        let mut pages = ChunkPages::of(log);
        while let Some(chunks) = pages.next(self.store).await? {
            chunks.iter().for_each(&mut visit);
        }
        Ok(())
    }

    /// Links a chunk's rows, stores it and counts it into the checkpoint.
    async fn keep_chunk(
        &self,
        op: &SyncOperation,
        checkpoint: &mut ImportCheckpoint,
        number: u64,
        read: ChunkRead,
    ) -> Result<(), EngineError> {
        let links = self.link(&read.rows).await?;
        let mut stats = XorosoftStatistics::default();
        let mut items = Vec::with_capacity(read.rows.len());
        for (row, link) in read.rows.into_iter().zip(links) {
            match &link {
                ItemLink::Matched { .. } => stats.matched += 1,
                ItemLink::Unmatched => stats.unmatched += 1,
                ItemLink::Ambiguous { .. } => stats.ambiguous += 1,
            }
            checkpoint.store_codes.insert(row.store_code.clone());
            let item = imported(row, link);
            if item.refused_money().is_some() {
                stats.price_errors += 1;
            }
            items.push(item);
        }
        stats.rows_valid = items.len() as u64;
        stats.rows_invalid = read.errors.len() as u64;
        stats.duplicates = read.duplicate_errors;
        let chunk = ImportChunk {
            log_id: checkpoint.xorosoft_import,
            chunk: number,
            items,
            errors: read
                .errors
                .into_iter()
                .map(|e| ImportRowError {
                    line: e.line,
                    column: e.column,
                    value: e.value,
                    reason: e.reason,
                    store_code: None,
                })
                .collect(),
            withdrawn: Vec::new(),
            missing: Vec::new(),
            expires_at: Utc::now() + chunk_lifetime(),
        };
        self.store.put_all(std::slice::from_ref(&chunk)).await?;
        add_stats(&mut checkpoint.stats, &stats);
        progress(
            op,
            "read",
            checkpoint.stats.rows_valid + checkpoint.stats.rows_invalid,
            None,
        );
        checkpoint.withdrawn.extend(read.repeated_first_lines);
        checkpoint.fallbacks += read.fallbacks;
        checkpoint.chunks = checkpoint.chunks.max(number + 1);
        checkpoint.phase = match read.next {
            Some(point) => ImportPhase::Parse {
                chunk: number + 1,
                from: Some(StoredPoint::of(&point)),
            },
            None => ImportPhase::Missing,
        };
        Ok(())
    }

    /// Links each row to a local variant: by a link made before (`xorosoft:`), then by SKU,
    /// then by barcode. Each candidate is read back and checked against the product as it
    /// is (a lookup can outlive the SKU it was written for).
    async fn link(&self, rows: &[XorosoftRow]) -> Result<Vec<ItemLink>, EngineError> {
        let mut keys: Vec<String> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut want = |key: String, keys: &mut Vec<String>| {
            let next = keys.len();
            *index.entry(key.clone()).or_insert_with(|| {
                keys.push(key);
                next
            })
        };
        let mut per_row = Vec::with_capacity(rows.len());
        for row in rows {
            let xorosoft = want(ProductLookup::xorosoft_key(&row.item_number), &mut keys);
            let sku = want(ProductLookup::sku_key(&row.item_number), &mut keys);
            let barcode = row
                .upc
                .as_deref()
                .filter(|u| !shopsync_domain::normalise_barcode(u).is_empty())
                .map(|u| want(ProductLookup::barcode_key(u), &mut keys));
            per_row.push((xorosoft, sku, barcode));
        }
        let found = self.store.lookups_of(&keys).await?;
        let mut products: BTreeSet<ProductId> = BTreeSet::new();
        for lookups in &found {
            products.extend(lookups.iter().map(|l| l.product_id));
        }
        let ids: Vec<ProductId> = products.into_iter().collect();
        let current = crate::apply::products_by_id(self.store, &ids).await?;
        let mut links = Vec::with_capacity(rows.len());
        for (row, (xorosoft, sku, barcode)) in rows.iter().zip(per_row) {
            let candidates = |at: usize, by: LinkedBy| -> Vec<(ProductId, VariantKey)> {
                let mut out = Vec::new();
                for lookup in &found[at] {
                    let Some(product) = current.get(&lookup.product_id) else {
                        continue;
                    };
                    for key in &lookup.variant_keys {
                        let Some(variant) = product.content.variants.iter().find(|v| &v.key == key)
                        else {
                            continue;
                        };
                        let holds = match by {
                            LinkedBy::XorosoftId => true,
                            LinkedBy::Sku => variant.sku.as_ref().is_some_and(|s| {
                                shopsync_domain::normalise_sku(s.as_str())
                                    == shopsync_domain::normalise_sku(&row.item_number)
                            }),
                            LinkedBy::Barcode => variant.barcode.as_deref().is_some_and(|b| {
                                row.upc.as_deref().is_some_and(|u| {
                                    shopsync_domain::normalise_barcode(b)
                                        == shopsync_domain::normalise_barcode(u)
                                })
                            }),
                        };
                        if holds && !out.contains(&(product.id, key.clone())) {
                            out.push((product.id, key.clone()));
                        }
                    }
                }
                out
            };
            let mut link = ItemLink::Unmatched;
            let ways = [
                (Some(xorosoft), LinkedBy::XorosoftId),
                (Some(sku), LinkedBy::Sku),
                (barcode, LinkedBy::Barcode),
            ];
            for (at, by) in ways {
                let Some(at) = at else { continue };
                let found = candidates(at, by);
                match <[_; 1]>::try_from(found) {
                    Ok([(product_id, variant_key)]) => {
                        link = ItemLink::Matched {
                            product_id,
                            variant_key,
                            by,
                        };
                    }
                    Err(found) if found.is_empty() => continue,
                    Err(found) => {
                        let mut products: Vec<ProductId> =
                            found.into_iter().map(|(p, _)| p).collect();
                        products.dedup();
                        link = ItemLink::Ambiguous {
                            candidates: products,
                        };
                    }
                }
                break;
            }
            links.push(link);
        }
        Ok(links)
    }

    // ------------------------------------------------------------ missing

    /// Counts, per StoreCode of a stock or full file, the items its previous snapshot had
    /// and this file lacks, and keeps them (for the report and to mark them on apply).
    async fn find_missing(&self, checkpoint: &mut ImportCheckpoint) -> Result<(), EngineError> {
        let log = load_log(self.store, checkpoint.xorosoft_import).await?;
        let withdrawn_items = self.withdraw_repeated(checkpoint).await?;
        if !log.sync_type.takes_stock() {
            return Ok(());
        }
        // What the file names, read once a StoreCode has a previous snapshot to compare.
        let mut seen: Option<SeenItems> = None;
        let mut missing: Vec<(String, String)> = Vec::new();
        checkpoint.snapshots.clear();
        checkpoint.newer.clear();
        for code in checkpoint.store_codes.clone() {
            let mut query = Query::new(Table::XorosoftProducts, Some("by_warehouse"), code.clone());
            query.limit = 500;
            let mut previous = 0u64;
            let mut lacking = 0u64;
            loop {
                let page = self.store.query::<XorosoftProduct>(query.clone()).await?;
                for record in &page.items {
                    note_newer(&mut checkpoint.newer, &log, record);
                }
                if seen.is_none() && page.items.iter().any(|r| r.missing_since.is_none()) {
                    seen = Some(self.seen_before(log.id, u64::MAX).await?);
                }
                for record in page.items.iter().filter(|r| r.missing_since.is_none()) {
                    previous += 1;
                    let named = seen
                        .as_ref()
                        .is_some_and(|seen| seen.contains(&code, &record.xorosoft_id))
                        || withdrawn_items.contains(&(code.clone(), record.xorosoft_id.clone()));
                    if !named {
                        lacking += 1;
                        missing.push((code.clone(), record.xorosoft_id.clone()));
                    }
                }
                match page.next {
                    Some(next) => query.start = Some(next),
                    None => break,
                }
            }
            checkpoint.snapshots.insert(code, (previous, lacking));
        }
        checkpoint.stats.missing = missing.len() as u64;
        // Kept after the row chunks, a chunk of them at a time.
        for (index, part) in missing.chunks(2_000).enumerate() {
            let chunk = ImportChunk {
                log_id: log.id,
                chunk: MISSING_CHUNKS + index as u64,
                items: Vec::new(),
                errors: Vec::new(),
                withdrawn: Vec::new(),
                missing: part.to_vec(),
                expires_at: Utc::now() + chunk_lifetime(),
            };
            self.store.put_all(std::slice::from_ref(&chunk)).await?;
        }
        Ok(())
    }

    /// Turns the first rows of items the file names again into row errors, in the chunks
    /// that hold them (the later rows were errors when read), and moves them from the valid
    /// rows' counts to the invalid and repeated ones. Returns the (StoreCode, item) of the
    /// withdrawn rows: the file names them, though neither row is taken.
    ///
    /// Doing it again writes nothing new, and the counts come from the chunks as they end,
    /// so a step that stops after some chunks are written and before the checkpoint is saved
    /// counts each row once when it runs again.
    async fn withdraw_repeated(
        &self,
        checkpoint: &mut ImportCheckpoint,
    ) -> Result<BTreeSet<(String, String)>, EngineError> {
        let mut items = BTreeSet::new();
        if checkpoint.withdrawn.is_empty() {
            return Ok(items);
        }
        let lines = &checkpoint.withdrawn;
        let mut changed = Vec::new();
        let mut moved = XorosoftStatistics::default();
        self.each_chunk(checkpoint.xorosoft_import, |chunk| {
            // Rows another build withdrew keep their StoreCode in their error.
            for error in chunk.errors.iter().filter(|e| lines.contains(&e.line)) {
                if let Some(code) = &error.store_code {
                    items.insert((code.clone(), error.value.clone()));
                }
            }
            if chunk.withdrawn.is_empty() && !chunk.items.iter().any(|i| lines.contains(&i.line)) {
                return;
            }
            let mut chunk = chunk.clone();
            let (withdrawn, kept): (Vec<ImportedItem>, Vec<ImportedItem>) = chunk
                .items
                .into_iter()
                .partition(|i| lines.contains(&i.line));
            chunk.items = kept;
            let newly = !withdrawn.is_empty();
            for item in withdrawn {
                chunk.errors.push(ImportRowError {
                    line: item.line,
                    column: "ItemNumber".into(),
                    value: item.item_number.clone(),
                    reason: format!(
                        "is named again for store {} later in the file: both rows are refused",
                        item.store_code
                    ),
                    store_code: Some(item.store_code.clone()),
                });
                chunk.withdrawn.push(item);
            }
            for item in &chunk.withdrawn {
                moved.rows_valid += 1;
                match item.link {
                    ItemLink::Matched { .. } => moved.matched += 1,
                    ItemLink::Unmatched => moved.unmatched += 1,
                    ItemLink::Ambiguous { .. } => moved.ambiguous += 1,
                }
                if item.refused_money().is_some() {
                    moved.price_errors += 1;
                }
                items.insert((item.store_code.clone(), item.item_number.clone()));
            }
            if newly {
                chunk.errors.sort_by_key(|e| e.line);
                changed.push(chunk);
            }
        })
        .await?;
        self.store.put_all(&changed).await?;
        let stats = &mut checkpoint.stats;
        stats.rows_valid = stats.rows_valid.saturating_sub(moved.rows_valid);
        stats.rows_invalid += moved.rows_valid;
        stats.duplicates += moved.rows_valid;
        stats.matched = stats.matched.saturating_sub(moved.matched);
        stats.unmatched = stats.unmatched.saturating_sub(moved.unmatched);
        stats.ambiguous = stats.ambiguous.saturating_sub(moved.ambiguous);
        stats.price_errors = stats.price_errors.saturating_sub(moved.price_errors);
        Ok(items)
    }

    // ------------------------------------------------------------ stage

    /// Stages chunks from `chunk` on; returns whether there is more to do in this step.
    async fn stage(
        &self,
        op: &mut SyncOperation,
        checkpoint: &mut ImportCheckpoint,
        chunk: u64,
        deadline: Option<Instant>,
    ) -> Result<bool, EngineError> {
        let log = load_log(self.store, checkpoint.xorosoft_import).await?;
        let chunks = checkpoint.chunks;
        let read = |number: u64| {
            (number < chunks)
                .then(|| ReadAhead::start(stage_input(self.store.clone(), log.id, number)))
        };
        let mut number = chunk;
        let mut ahead = read(number);
        while let Some(reading) = ahead.take() {
            let input = reading.finish().await?;
            // The next chunk and its products are read while this one is staged (staging
            // writes neither).
            ahead = read(number + 1);
            if let Some(stored) = input.chunk {
                self.stage_chunk(op, &log, checkpoint, stored, input.products)
                    .await?;
            }
            number += 1;
            progress(op, "staged", number, Some(checkpoint.chunks));
            checkpoint.phase = ImportPhase::Stage { chunk: number };
            *op = self.save_checkpoint(op, checkpoint).await?;
            crate::crash::point("import-stage");
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
        checkpoint.phase = ImportPhase::Files;
        Ok(true)
    }

    async fn stage_chunk(
        &self,
        op: &SyncOperation,
        log: &XorosoftSyncLog,
        checkpoint: &mut ImportCheckpoint,
        mut chunk: ImportChunk,
        mut products: HashMap<ProductId, Product>,
    ) -> Result<(), EngineError> {
        let now = Utc::now();
        let mut skipped = Vec::new();
        let mut by_product: BTreeMap<ProductId, Vec<&ImportedItem>> = BTreeMap::new();
        for item in &chunk.items {
            if checkpoint.withdrawn.contains(&item.line) {
                continue;
            }
            if let ItemLink::Matched { product_id, .. } = &item.link {
                by_product.entry(*product_id).or_default().push(item);
            }
        }
        if by_product.is_empty() {
            return Ok(());
        }
        let ids: Vec<ProductId> = by_product.keys().copied().collect();
        let products: Vec<Option<Product>> = ids.iter().map(|id| products.remove(id)).collect();
        let row_keys: Vec<Key> = ids
            .iter()
            .map(|id| {
                Key::pk(
                    row_id(op.operation_uuid, *id, checkpoint.rows_in_product_order).to_string(),
                )
            })
            .collect();
        let existing: Vec<Option<ProductsStaging>> = self.store.get_each(&row_keys).await?;
        let mut rows = Vec::new();
        for ((id, items), (product, existing)) in by_product
            .into_iter()
            .zip(products.into_iter().zip(existing))
        {
            let skip = |reason: String| {
                items.iter().map(move |item| ImportRowError {
                    line: item.line,
                    column: "ItemNumber".into(),
                    value: item.item_number.clone(),
                    reason: reason.clone(),
                    store_code: Some(item.store_code.clone()),
                })
            };
            let Some(product) = product else {
                checkpoint.stats.records_failed += items.len() as u64;
                skipped.extend(skip(format!(
                    "its product {id} is no longer in the catalog: skipped, its Xorosoft record is kept"
                )));
                continue;
            };
            if let shopsync_domain::product::LockState::Held { by, until } = product.lock_state(now)
            {
                checkpoint.stats.locked += items.len() as u64;
                skipped.extend(skip(format!(
                    "its product {id} is locked by {by} until {}: skipped, nothing of the row applied (its Xorosoft record is kept)",
                    until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )));
                continue;
            }
            let mut row = match existing {
                Some(row) => row,
                None => {
                    let mut row = ProductsStaging::pending(
                        row_id(op.operation_uuid, id, checkpoint.rows_in_product_order),
                        &product,
                        op.operation_uuid,
                        self.actor,
                        now,
                    );
                    row.origin = Some(ChangeSource::Xorosoft);
                    row
                }
            };
            let before = row
                .proposed
                .clone()
                .unwrap_or_else(|| product.content.clone());
            for item in items {
                contribute(&mut row, item, log.sync_type, &self.settings.locations);
            }
            let after = self.settle_contributions(&before, &row);
            let changes = before.diff_to(&after);
            compose(&mut row.change_data, changes);
            row.proposed = Some(after);
            rows.push(row);
        }
        self.store.put_all(&rows).await?;
        // The rows skipped join the chunk's errors (once, if this chunk is staged again).
        skipped.retain(|error| {
            !chunk.errors.iter().any(|kept| {
                (kept.line, &kept.column, &kept.store_code)
                    == (error.line, &error.column, &error.store_code)
            })
        });
        if !skipped.is_empty() {
            chunk.errors.extend(skipped);
            chunk.errors.sort_by_key(|e| e.line);
            self.store.put_all(std::slice::from_ref(&chunk)).await?;
        }
        Ok(())
    }

    /// The content a row's contributions make of `content`.
    fn settle_contributions(
        &self,
        content: &ProductContent,
        row: &ProductsStaging,
    ) -> ProductContent {
        let mut out = content.clone();
        for variant in &mut out.variants {
            let prefix = format!("variants/{}/", variant.key);
            for (field, sources) in row.contributions.range(prefix.clone()..) {
                let Some(name) = field.strip_prefix(&prefix) else {
                    break;
                };
                if let Some(location) = name.strip_prefix("inventory/") {
                    let Some(location) = location
                        .parse::<u64>()
                        .ok()
                        .and_then(|n| LocationId::new(n).ok())
                    else {
                        continue;
                    };
                    let total: i64 = sources.values().filter_map(|v| v.as_i64()).sum();
                    variant.inventory.insert(location, Quantity(total));
                    continue;
                }
                let chosen = match &self.settings.price_store {
                    Some(store) => sources.get(store).cloned(),
                    None => {
                        let mut values = sources.values();
                        let first = values.next().cloned();
                        first.filter(|f| values.all(|v| v == f))
                    }
                };
                let Some(money) = chosen.and_then(|v| serde_json::from_value::<Money>(v).ok())
                else {
                    continue;
                };
                match name {
                    "price" => variant.price = money,
                    "cost" => variant.cost = Some(money),
                    _ => {}
                }
            }
        }
        out
    }

    /// The ids of the rows this import staged, in order: one per product its chunks link a
    /// taken row to, read from the chunks (by key: what a lagging index could miss, this
    /// cannot).
    async fn staged_rows(
        &self,
        op: &SyncOperation,
        checkpoint: &ImportCheckpoint,
    ) -> Result<Vec<StagingId>, EngineError> {
        let mut products = BTreeSet::new();
        self.each_chunk(checkpoint.xorosoft_import, |chunk| {
            for item in &chunk.items {
                if let ItemLink::Matched { product_id, .. } = &item.link {
                    if !checkpoint.withdrawn.contains(&item.line) {
                        products.insert(*product_id);
                    }
                }
            }
        })
        .await?;
        // In product order: products are stored in the order they were made, so reading
        // and writing them in that order touches neighbouring pages.
        let mut ids: Vec<StagingId> = products
            .into_iter()
            .map(|product| row_id(op.operation_uuid, product, checkpoint.rows_in_product_order))
            .collect();
        if !checkpoint.rows_in_product_order {
            ids.sort_by_cached_key(|id| id.to_string());
        }
        Ok(ids)
    }

    /// The rows of these ids that exist (a product skipped as locked has none).
    async fn rows(&self, ids: &[StagingId]) -> Result<Vec<ProductsStaging>, EngineError> {
        staged_rows_of(self.store, ids).await
    }

    // ------------------------------------------------------------ files

    /// Writes the errors report and archives the file (removed from the inbound folder once
    /// the copy exists, unless another file took its key meanwhile). A dry run leaves the
    /// file where it is.
    async fn files(
        &self,
        op: &SyncOperation,
        checkpoint: &ImportCheckpoint,
    ) -> Result<(), EngineError> {
        let mut log = load_log(self.store, checkpoint.xorosoft_import).await?;
        let before = log.clone();
        let name = kept_name(&log);
        // Written a page of chunks at a time: a report of a million rows is never in memory
        // whole, and there is none when there is nothing to report.
        let key = format!("xorosoft/reports/{name}.errors.csv");
        let mut report: Option<Box<dyn crate::blob::BlobWriter>> = None;
        let mut pages = RowErrorPages::of(log.id);
        while let Some(errors) = pages.next(self.store).await? {
            if errors.is_empty() {
                continue;
            }
            let mut piece = String::new();
            let writer = match report.as_mut() {
                Some(writer) => writer,
                None => {
                    piece.push_str(&csv_line(&["line", "column", "value", "reason"]));
                    report.insert(self.blobs.create(&key, "text/csv").await?)
                }
            };
            for error in errors {
                let line = if error.line == 0 {
                    String::new()
                } else {
                    error.line.to_string()
                };
                piece.push_str(&csv_line(&[
                    &line,
                    &error.column,
                    &error.value,
                    &error.reason,
                ]));
            }
            writer.write(piece.into_bytes()).await?;
        }
        if let Some(writer) = report {
            writer.finish().await?;
            log.errors_report = Some(format!("{}/{key}", self.blobs.bucket()));
        }
        if !op.dry_run {
            log.archive_file = self.archive(&log).await?;
        }
        let unmapped: Vec<&str> = checkpoint
            .store_codes
            .iter()
            .filter(|code| self.settings.locations.location(code).is_none())
            .map(String::as_str)
            .collect();
        if !unmapped.is_empty() && log.sync_type.takes_stock() {
            log.note(format!(
                "no Shopify location for store(s) {}: their stock is recorded, not pushed (map them in SHOPSYNC_XOROSOFT_LOCATIONS)",
                unmapped.join(", ")
            ));
        }
        log.encoding = checkpoint.encoding.clone();
        if checkpoint.fallbacks > 0 {
            log.note(format!(
                "{} field(s) were not valid UTF-8 and were read as Windows-1252",
                checkpoint.fallbacks
            ));
        }
        log.statistics = checkpoint.stats;
        log.updated_at = Some(Utc::now());
        save_log(self.store, &log, &before).await
    }

    /// Copies the object `log` read to `xorosoft/archive/<time>-<name>`, then removes it
    /// from the inbound folder if it is still that object (never before the copy is there);
    /// returns the copy's path. Done again, it finds the copy made and the object gone.
    async fn archive(&self, log: &XorosoftSyncLog) -> Result<Option<String>, EngineError> {
        let Some(object) = &log.object else {
            return Ok(None);
        };
        let archive = format!("xorosoft/archive/{}", kept_name(log));
        self.blobs
            .copy(&object.key, &archive)
            .await
            .or_else(|e| match e {
                // Archived and removed by an earlier delivery of this step.
                BlobError::NotFound(_) => Ok(()),
                e => Err(e),
            })?;
        if self.blobs.head(&archive).await?.is_none() {
            return Ok(None);
        }
        let still_ours = self
            .blobs
            .head(&object.key)
            .await?
            .is_some_and(|now| now.etag == object.etag);
        if still_ours {
            self.blobs.delete(&object.key).await?;
        }
        Ok(Some(format!("{}/{archive}", self.blobs.bucket())))
    }

    // ------------------------------------------------------------ judge

    /// Judges the plan; returns the log when the import ends here (a dry run, or held).
    async fn judge(
        &self,
        op: &mut SyncOperation,
        checkpoint: &mut ImportCheckpoint,
        staged: &[StagingId],
    ) -> Result<Option<XorosoftSyncLog>, EngineError> {
        // The staged rows' facts, counted once, from the rows as they stand.
        let mut summary = PlanSummary::default();
        let mut price_changes = 0u64;
        for part in staged.chunks(100) {
            for row in self.rows(part).await? {
                let (zero, moves, prices) = facts(&row.change_data, self.rails);
                summary.changes += 1;
                summary.updates += 1;
                summary.zero_stock += zero;
                summary.large_price_moves += moves;
                price_changes += prices;
            }
        }
        let mut reasons = match self.rails.judge(&summary) {
            Verdict::Proceed => Vec::new(),
            Verdict::Hold(reasons) => reasons,
        };
        for (code, (previous, lacking)) in &checkpoint.snapshots {
            if *previous > 0 {
                let pct = *lacking as f64 * 100.0 / *previous as f64;
                if pct > self.settings.max_snapshot_drop_pct {
                    reasons.push(format!(
                        "the snapshot of store {code} lacks {lacking} of the {previous} items its previous one had ({pct:.0}%); the limit is {}%",
                        self.settings.max_snapshot_drop_pct
                    ));
                }
            }
        }
        let mut log = load_log(self.store, checkpoint.xorosoft_import).await?;
        for (code, newer) in &checkpoint.newer {
            reasons.push(newer_reason(code, newer, &log));
        }
        let stats = &checkpoint.stats;
        let rows = stats.rows_valid + stats.rows_invalid;
        // A price file's row whose prices are refused gives nothing: it counts as an error.
        let refused_prices = if log.sync_type == XorosoftSyncType::PriceUpdate {
            stats.price_errors
        } else {
            0
        };
        let bad = stats.rows_invalid + refused_prices;
        if rows > 0 {
            let pct = bad as f64 * 100.0 / rows as f64;
            if pct > self.settings.max_row_error_pct {
                reasons.push(format!(
                    "{bad} of {rows} rows ({pct:.0}%) are errors; the limit is {}%",
                    self.settings.max_row_error_pct
                ));
            }
        }
        if price_changes > 0 && !self.settings.owns_price {
            reasons.push(format!(
                "{price_changes} price change(s) from Xorosoft wait for review (prices are the local catalog's; set SHOPSYNC_XOROSOFT_OWNS_PRICE=true to take them unattended)"
            ));
        }
        let log_before = log.clone();
        let now = Utc::now();
        if op.dry_run {
            let would = if reasons.is_empty() {
                "would apply (no guard rail trips)".to_owned()
            } else {
                format!("would wait for approval: {}", reasons.join("; "))
            };
            let reason = format!(
                "dry run: {} product(s) would change from {} valid row(s), nothing applied; {would}",
                summary.changes, stats.rows_valid
            );
            let before = op.clone();
            op.checkpoint = None;
            op.statistics.processed = summary.changes;
            op.move_to(OperationStatus::Completed, Some(reason.clone()), now)?;
            save(self.store, op, &before).await?;
            log.status = XorosoftSyncStatus::Completed;
            log.status_reason = Some(reason);
            log.statistics = checkpoint.stats;
            log.completed_at = Some(now);
            log.updated_at = Some(now);
            save_log(self.store, &log, &log_before).await?;
            return Ok(Some(log));
        }
        if reasons.is_empty() {
            checkpoint.phase = ImportPhase::Apply;
            return Ok(None);
        }
        op.statistics.processed = summary.changes;
        self.hold(op, checkpoint, log, &reasons).await.map(Some)
    }

    /// Holds the import for approval with `reasons`: nothing is applied or pushed until a
    /// person approves it, which goes on with the apply. Logged at warn and counted in the
    /// metric an alarm watches.
    async fn hold(
        &self,
        op: &mut SyncOperation,
        checkpoint: &mut ImportCheckpoint,
        mut log: XorosoftSyncLog,
        reasons: &[String],
    ) -> Result<XorosoftSyncLog, EngineError> {
        let log_before = log.clone();
        let now = Utc::now();
        let reason = reasons.join("; ");
        checkpoint.phase = ImportPhase::Apply;
        checkpoint.held = true;
        let before = op.clone();
        op.checkpoint = serde_json::to_value(&*checkpoint).ok();
        op.move_to(OperationStatus::AwaitingApproval, Some(reason.clone()), now)?;
        save(self.store, op, &before).await?;
        log.status = XorosoftSyncStatus::AwaitingApproval;
        log.status_reason = Some(reason.clone());
        log.statistics = checkpoint.stats;
        log.updated_at = Some(now);
        save_log(self.store, &log, &log_before).await?;
        tracing::warn!(
            import = %log.id,
            operation = %op.operation_uuid,
            reason = %reason,
            metric = HELD_OR_REFUSED_METRIC,
            "Xorosoft import held for approval: nothing applied or pushed"
        );
        emit_held_or_refused(&log);
        Ok(log)
    }

    /// Per StoreCode of the file, its items whose stock came from a file written after this
    /// one (by another import).
    async fn newer_snapshots(
        &self,
        log: &XorosoftSyncLog,
        checkpoint: &ImportCheckpoint,
    ) -> Result<BTreeMap<String, NewerSnapshot>, EngineError> {
        let mut newer = BTreeMap::new();
        for code in &checkpoint.store_codes {
            let mut query = Query::new(Table::XorosoftProducts, Some("by_warehouse"), code.clone());
            query.limit = 500;
            loop {
                let page = self.store.query::<XorosoftProduct>(query.clone()).await?;
                for record in &page.items {
                    note_newer(&mut newer, log, record);
                }
                match page.next {
                    Some(next) => query.start = Some(next),
                    None => break,
                }
            }
        }
        Ok(newer)
    }

    /// Before a stock import that waited for approval applies: when stock from a file
    /// written after this one came in since it was judged, it is held again, so a person
    /// decides knowing it. (One that applies right after it is judged needs no second look:
    /// a newer import that interleaves with it is kept as it applies, see
    /// `apply::apply_import_rows`.) Returns the log when it was held.
    async fn hold_if_overtaken(
        &self,
        op: &mut SyncOperation,
        checkpoint: &mut ImportCheckpoint,
    ) -> Result<Option<XorosoftSyncLog>, EngineError> {
        if !checkpoint.held {
            return Ok(None);
        }
        let log = load_log(self.store, checkpoint.xorosoft_import).await?;
        if !log.sync_type.takes_stock() || op.dry_run {
            return Ok(None);
        }
        let newer = self.newer_snapshots(&log, checkpoint).await?;
        let overtaken: Vec<String> = newer
            .iter()
            .filter(|(code, now)| {
                checkpoint
                    .newer
                    .get(*code)
                    .is_none_or(|judged| now.written_at > judged.written_at)
            })
            .map(|(code, now)| {
                format!(
                    "since this import was judged, {}",
                    newer_reason(code, now, &log)
                )
            })
            .collect();
        if overtaken.is_empty() {
            return Ok(None);
        }
        checkpoint.newer = newer;
        self.hold(op, checkpoint, log, &overtaken).await.map(Some)
    }

    // ------------------------------------------------------------ apply

    async fn apply(
        &self,
        op: &mut SyncOperation,
        checkpoint: &mut ImportCheckpoint,
        staged: &[StagingId],
    ) -> Result<(), EngineError> {
        let mut times = StageTimes::default();
        let mut applied = shopsync_domain::OperationStatistics::default();
        // Held for stock from newer files and approved, it sets back what those files set
        // (the newest its hold named); anything newer still is kept.
        let accepted_until = checkpoint.newer.values().map(|n| n.written_at).max();
        let parts: Vec<&[StagingId]> = staged.chunks(256).collect();
        let read = |index: usize| {
            parts.get(index).map(|part| {
                let (store, ids) = (self.store.clone(), part.to_vec());
                ReadAhead::start(async move {
                    let rows = staged_rows_of(&store, &ids).await?;
                    let products = products_of(&store, &rows).await?;
                    Ok((rows, products))
                })
            })
        };
        let mut ahead = read(0);
        for index in 0..parts.len() {
            let Some(reading) = ahead.take() else { break };
            let page = reading.finish().await?;
            // The next page's rows and products are read while this one applies (it writes
            // only its own; a product that moves after its read is decided again).
            ahead = read(index + 1);
            let done = crate::apply::apply_import_rows_read(
                self.store,
                op,
                page,
                self.actor,
                &mut times,
                accepted_until,
            )
            .await?;
            applied.absorb(&done);
        }
        op.statistics.absorb(&applied);
        checkpoint.stats.records_updated = op.statistics.updated;
        checkpoint.stats.records_failed += applied.failed;
        checkpoint.stats.records_processed = op.statistics.processed;
        let log = load_log(self.store, checkpoint.xorosoft_import).await?;
        let now = Utc::now();
        // A page of chunks at a time, with the records its rows name: the next page is read
        // while this one is kept (the file names each record once, so no page reads what
        // another writes).
        let withdrawn = std::sync::Arc::new(checkpoint.withdrawn.clone());
        let read = |pages: ChunkPages| {
            let (store, withdrawn) = (self.store.clone(), withdrawn.clone());
            ReadAhead::start(async move {
                let mut pages = pages;
                let Some(chunks) = pages.next(&store).await? else {
                    return Ok(None);
                };
                let mut page = Vec::with_capacity(chunks.len());
                for chunk in chunks {
                    let mut records = Vec::new();
                    for part in record_keys(&chunk, &withdrawn).chunks(100) {
                        records.extend(store.get_each::<XorosoftProduct>(part).await?);
                    }
                    page.push((chunk, records));
                }
                Ok(Some((pages, page)))
            })
        };
        // Small pages: two are in memory at once, with their records.
        let mut ahead = read(ChunkPages::sized(log.id, 4));
        while let Some((pages, page)) = ahead.finish().await? {
            ahead = read(pages);
            for (chunk, records) in &page {
                self.keep_records(&log, checkpoint, chunk, records, now)
                    .await?;
            }
        }
        Ok(())
    }

    /// Upserts the records of a chunk's rows (and marks its missing items), and records the
    /// links its rows made.
    async fn keep_records(
        &self,
        log: &XorosoftSyncLog,
        checkpoint: &ImportCheckpoint,
        chunk: &ImportChunk,
        records: &[Option<XorosoftProduct>],
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let takes: Vec<&ImportedItem> = chunk
            .items
            .iter()
            .filter(|i| !checkpoint.withdrawn.contains(&i.line))
            .collect();
        let mut lookups = Vec::new();
        let mut writes = Vec::with_capacity(records.len());
        let file = log.object.as_ref().map(ImportObject::path);
        let written_at = log.object.as_ref().and_then(|o| o.last_modified);
        for (item, existing) in takes.iter().zip(records.iter()) {
            let mut record = match (existing, shopsync_domain::Sku::parse(&item.item_number)) {
                (Some(existing), _) => existing.clone(),
                (None, Some(sku)) => {
                    XorosoftProduct::new(&item.item_number, sku, &item.store_code, now)
                }
                // The reader takes no row without an item number.
                (None, None) => continue,
            };
            if log.sync_type.takes_stock() {
                record.stock_on_hand = Quantity(item.on_hand.unwrap_or(record.stock_on_hand.0));
                record.stock_available =
                    Quantity(item.available.unwrap_or(record.stock_available.0));
                record.stock_allocated =
                    Quantity(item.allocated.unwrap_or(record.stock_allocated.0));
                record.stock_on_order = Quantity(item.on_order.unwrap_or(record.stock_on_order.0));
                if item.price_error.is_none() {
                    record.cost_price = item.unit_cost.or(record.cost_price);
                }
                record.missing_since = None;
                record.stock_snapshot_at = written_at.or(record.stock_snapshot_at);
            }
            if log.sync_type.takes_prices() && item.price_error.is_none() {
                record.standard_price = item.standard_price.or(record.standard_price);
                record.wholesale_price = item.wholesale_price.or(record.wholesale_price);
                record.currency = item.currency.clone().or(record.currency);
            }
            record.bin_location = item.bin_location.clone().or(record.bin_location);
            record.barcode = item.barcode.clone().or(record.barcode);
            if let ItemLink::Matched {
                product_id,
                variant_key,
                by,
            } = &item.link
            {
                record.product_id = Some(*product_id);
                record.variant_key = Some(variant_key.clone());
                if *by != LinkedBy::XorosoftId {
                    lookups.push(ProductLookup {
                        lookup: ProductLookup::xorosoft_key(&item.item_number),
                        product_id: *product_id,
                        variant_keys: vec![variant_key.clone()],
                    });
                }
            }
            record.last_log_id = Some(log.id);
            record.import_file = file.clone();
            record.source_timestamp = item.last_modified.or(record.source_timestamp);
            record.updated_at = now;
            writes.push(record);
        }
        for existing in records.iter().skip(takes.len()).flatten() {
            let mut record = existing.clone();
            if record.missing_since.is_none() {
                record.missing_since = Some(now);
                record.updated_at = now;
                writes.push(record);
            }
        }
        self.store.put_all(&writes).await?;
        // One lookup per (item, product): the rows of several StoreCodes name it alike.
        let mut merged: BTreeMap<(String, ProductId), ProductLookup> = BTreeMap::new();
        for lookup in lookups {
            let entry = merged
                .entry((lookup.lookup.clone(), lookup.product_id))
                .or_insert_with(|| ProductLookup {
                    variant_keys: Vec::new(),
                    ..lookup.clone()
                });
            for key in lookup.variant_keys {
                if !entry.variant_keys.contains(&key) {
                    entry.variant_keys.push(key);
                }
            }
        }
        let lookups: Vec<ProductLookup> = merged.into_values().collect();
        self.store.put_all(&lookups).await?;
        Ok(())
    }

    // ------------------------------------------------------------ push

    /// Pushes applied rows a page at a time; returns whether there is more to do in this
    /// step.
    async fn push(
        &self,
        op: &mut SyncOperation,
        checkpoint: &mut ImportCheckpoint,
        staged: &[StagingId],
        next: u64,
        plan: Option<InventoryPlan>,
        deadline: Option<Instant>,
    ) -> Result<bool, EngineError> {
        let Some(client) = self.client else {
            checkpoint.phase = ImportPhase::Finish;
            return Ok(true);
        };
        let start = usize::try_from(next)
            .unwrap_or(usize::MAX)
            .min(staged.len());
        let end = (start + PUSH_PAGE).min(staged.len());
        let page = self.rows(&staged[start..end]).await?;
        let applied: Vec<&ProductsStaging> = page
            .iter()
            .filter(|r| {
                r.status == StagingStatus::Applied && r.sync_operation_id == op.operation_uuid
            })
            .collect();
        let ids: Vec<ProductId> = applied.iter().map(|r| r.source_product_id).collect();
        let products: Vec<Product> = self
            .store
            .products(&ids)
            .await?
            .into_iter()
            .flatten()
            .collect();
        let by_id: HashMap<ProductId, &Product> = products.iter().map(|p| (p.id, p)).collect();
        // Stock: one plan for the page, saved before each send.
        let mut plan = match plan {
            Some(plan) => plan,
            None => {
                let mut changes = Vec::new();
                let mut activate = Vec::new();
                for row in &applied {
                    let Some(product) = by_id.get(&row.source_product_id) else {
                        continue;
                    };
                    for (path, change) in &row.change_data {
                        let Some((variant, location)) = stock_path(path) else {
                            continue;
                        };
                        let Some(item) = product
                            .content
                            .variants
                            .iter()
                            .find(|v| v.key.as_str() == variant)
                            .and_then(|v| v.inventory_item_id)
                        else {
                            continue;
                        };
                        let target = change.new.as_ref().and_then(|v| v.as_i64()).unwrap_or(0);
                        let expected = change.old.as_ref().and_then(|v| v.as_i64());
                        if expected.is_none() {
                            activate.push((item, location));
                        }
                        changes.push(QuantityChange {
                            item,
                            location,
                            expected: expected.unwrap_or(0),
                            target,
                        });
                    }
                }
                for (item, location) in activate {
                    client.inventory_activate(item, location).await?;
                }
                let key = format!("xorosoft:{}:{next}", op.operation_uuid);
                InventoryPlan::new(
                    key,
                    "correction",
                    Some(format!(
                        "shopsync://xorosoft/imports/{}",
                        checkpoint.xorosoft_import
                    )),
                    changes,
                )
            }
        };
        if !plan.changes.is_empty() {
            let mut saver = CheckpointSaver {
                importer: self,
                op: op.clone(),
                checkpoint: checkpoint.clone(),
                next,
            };
            let result = client.set_inventory_stocking(&mut plan, &mut saver).await;
            *op = saver.op;
            match result {
                Ok(_) => {
                    checkpoint.stats.pushed += plan.changes.len() as u64;
                    progress(op, "pushed", checkpoint.stats.pushed, None);
                }
                Err(e) if e.is_retryable() => return Err(e.into()),
                Err(e) => {
                    checkpoint.stats.push_failed += plan.changes.len() as u64;
                    let mut log = load_log(self.store, checkpoint.xorosoft_import).await?;
                    let before = log.clone();
                    log.note(format!("stock not pushed: {e}"));
                    log.updated_at = Some(Utc::now());
                    save_log(self.store, &log, &before).await?;
                }
            }
        }
        let stock_confirmed = plan.is_done();
        // Cost and prices: per product, the variants whose cost or price this import changed.
        let now = Utc::now();
        for row in &applied {
            let Some(product) = by_id.get(&row.source_product_id) else {
                continue;
            };
            let Some(shopify_id) = product.shopify_id else {
                continue;
            };
            let mut inputs: BTreeMap<String, VariantUpdateInput> = BTreeMap::new();
            for path in row.change_data.keys() {
                let leaf = path.leaf();
                if !matches!(leaf, "cost" | "price") {
                    continue;
                }
                let Some(variant) = path.variant_key().and_then(|k| {
                    product
                        .content
                        .variants
                        .iter()
                        .find(|v| v.key.as_str() == k)
                }) else {
                    continue;
                };
                let Some(id) = variant.shopify_id else {
                    continue;
                };
                let input = inputs
                    .entry(id.gid())
                    .or_insert_with(|| VariantUpdateInput {
                        id: id.gid(),
                        ..VariantUpdateInput::default()
                    });
                match leaf {
                    "price" => input.price = Some(variant.price.amount().to_string()),
                    _ => {
                        input.inventory_item = Some(shopsync_shopify::ops::InventoryItemInput {
                            sku: None,
                            cost: variant.cost.map(|c| c.amount().to_string()),
                        })
                    }
                }
            }
            let mut confirmed = stock_confirmed;
            if !inputs.is_empty() {
                let inputs: Vec<VariantUpdateInput> = inputs.into_values().collect();
                match client.variants_bulk_update(shopify_id, &inputs).await {
                    Ok(_) => {}
                    Err(e) if e.is_retryable() => return Err(e.into()),
                    Err(e) => {
                        confirmed = false;
                        checkpoint.stats.push_failed += 1;
                        let mut log = load_log(self.store, checkpoint.xorosoft_import).await?;
                        let before = log.clone();
                        log.note(format!(
                            "cost or price of product {} not pushed: {e}",
                            product.id
                        ));
                        log.updated_at = Some(Utc::now());
                        save_log(self.store, &log, &before).await?;
                    }
                }
            }
            if confirmed {
                self.mark_pushed(product, op.operation_uuid, now).await?;
            }
        }
        checkpoint.phase = if end < staged.len() {
            ImportPhase::Push {
                next: end as u64,
                plan: None,
            }
        } else {
            ImportPhase::Finish
        };
        Ok(deadline.is_none_or(|d| Instant::now() < d))
    }

    /// Records that Shopify confirmed what this import changed of `product`: its stock is
    /// synced now, and when its newest version is this import's and everything before it was
    /// pushed, nothing is waiting to be pushed.
    async fn mark_pushed(
        &self,
        product: &Product,
        operation: OperationId,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        for _ in 0..3 {
            let Some(current) = self.store.product(product.id).await? else {
                return Ok(());
            };
            let newest = self
                .store
                .product_versions(current.id, true, 1, None)
                .await?
                .items
                .into_iter()
                .next();
            let mut updated = current.clone();
            updated.stock_synced_at = Some(now);
            let ours = newest.is_some_and(|v| {
                v.version_number == current.version && v.sync_operation_id == Some(operation)
            });
            if ours && current.last_sync_version + 1 == current.version {
                updated.last_sync_version = current.version;
            }
            let mut commit = vec![shopsync_store::ProductCommit {
                version: None,
                product: updated,
                expected_version: Some(current.version),
                staging: None,
                actor: self.actor.clone(),
                now,
            }];
            match self.store.commit_products(&mut commit).await?.pop() {
                Some(Ok(())) | None => return Ok(()),
                Some(Err(RepoError::VersionConflict { .. })) => continue,
                Some(Err(RepoError::Locked(_))) => return Ok(()),
                Some(Err(e)) => return Err(e.into()),
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ finish

    async fn finish(
        &self,
        op: &mut SyncOperation,
        checkpoint: &ImportCheckpoint,
    ) -> Result<XorosoftSyncLog, EngineError> {
        let mut log = load_log(self.store, checkpoint.xorosoft_import).await?;
        let before_log = log.clone();
        if log.sync_type == XorosoftSyncType::FullSync {
            let key = format!("xorosoft/outbound/{}.export.csv", kept_name(&log));
            self.export(checkpoint, &key).await?;
            log.export_file = Some(format!("{}/{key}", self.blobs.bucket()));
        }
        let stats = checkpoint.stats;
        let unmapped = log.sync_type.takes_stock()
            && checkpoint
                .store_codes
                .iter()
                .any(|code| self.settings.locations.location(code).is_none());
        let with_errors = unmapped
            || stats.rows_invalid > 0
            || stats.unmatched > 0
            || stats.ambiguous > 0
            || stats.locked > 0
            || stats.push_failed > 0
            || stats.records_failed > 0
            || stats.price_errors > 0;
        let now = Utc::now();
        log.statistics = stats;
        log.statistics.records_processed = stats.rows_valid + stats.rows_invalid;
        log.statistics.records_unchanged = stats
            .matched
            .saturating_sub(op.statistics.updated.min(stats.matched));
        log.status = if with_errors {
            XorosoftSyncStatus::CompletedWithErrors
        } else {
            XorosoftSyncStatus::Completed
        };
        log.status_reason = Some(format!(
            "{} row(s): {} valid, {} invalid ({} repeated), {} with cost or prices in another currency; {} matched, {} unmatched, {} ambiguous; {} product(s) updated, {} locked rows skipped; {} missing from the previous snapshot; {} stock level(s) pushed, {} not",
            stats.rows_valid + stats.rows_invalid,
            stats.rows_valid,
            stats.rows_invalid,
            stats.duplicates,
            stats.price_errors,
            stats.matched,
            stats.unmatched,
            stats.ambiguous,
            op.statistics.updated,
            stats.locked,
            stats.missing,
            stats.pushed,
            stats.push_failed,
        ));
        log.completed_at = Some(now);
        log.updated_at = Some(now);
        let before = op.clone();
        op.checkpoint = None;
        op.move_to(OperationStatus::Completed, log.status_reason.clone(), now)?;
        save(self.store, op, &before).await?;
        save_log(self.store, &log, &before_log).await?;
        let elapsed: u64 = checkpoint.stage_ms.values().sum();
        let counters = self.client.map(AdminClient::counters).unwrap_or_default();
        crate::operation::record_performance(
            self.store,
            op,
            &StageTimes::from_millis(&checkpoint.stage_ms),
            Instant::now()
                .checked_sub(std::time::Duration::from_millis(elapsed))
                .unwrap_or_else(Instant::now),
            crate::operation::rebase(counters, checkpoint.api),
            counters,
        )
        .await?;
        tracing::info!(
            import = %log.id,
            status = %shopsync_domain::status::status_name(log.status),
            rows = stats.rows_valid + stats.rows_invalid,
            pushed = stats.pushed,
            "Xorosoft import finished"
        );
        Ok(log)
    }

    /// Writes `key`: Shopify's available quantities after the import, per item and StoreCode
    /// of the file (the local mirror's, where Shopify is not reachable), in Xorosoft's
    /// columns.
    ///
    /// Two columns follow Xorosoft's: `ShopifyLocation` (the location the StoreCode maps to)
    /// and `SharedWith` (the file's other StoreCodes mapped to that location: Shopify holds
    /// one figure for them all, their sum, which is the figure given for each).
    async fn export(&self, checkpoint: &ImportCheckpoint, key: &str) -> Result<(), EngineError> {
        let mut writer = self.blobs.create(key, "text/csv").await?;
        writer
            .write(
                csv_line(&[
                    "StoreCode",
                    "LocationCode",
                    "ItemNumber",
                    "ItemUPC",
                    "AvailableQty",
                    "ShopifyLocation",
                    "SharedWith",
                ])
                .into_bytes(),
            )
            .await?;
        let mut codes_at: BTreeMap<LocationId, Vec<&str>> = BTreeMap::new();
        for code in &checkpoint.store_codes {
            if let Some(location) = self.settings.locations.location(code) {
                codes_at.entry(location).or_default().push(code);
            }
        }
        let shared_with = |code: &str, location: Option<LocationId>| -> String {
            location
                .and_then(|l| codes_at.get(&l))
                .map(|codes| {
                    codes
                        .iter()
                        .filter(|other| **other != code)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default()
        };
        // A page of chunks at a time: a file of a million rows is never in memory whole.
        let mut pages = ChunkPages::of(checkpoint.xorosoft_import);
        while let Some(chunks) = pages.next(self.store).await? {
            let items: Vec<&ImportedItem> = chunks
                .iter()
                .flat_map(|chunk| chunk.items.iter())
                .filter(|i| {
                    matches!(i.link, ItemLink::Matched { .. })
                        && !checkpoint.withdrawn.contains(&i.line)
                })
                .collect();
            let mut out = String::new();
            for part in items.chunks(100) {
                let ids: Vec<ProductId> = part
                    .iter()
                    .filter_map(|i| match &i.link {
                        ItemLink::Matched { product_id, .. } => Some(*product_id),
                        _ => None,
                    })
                    .collect();
                let products = crate::apply::products_by_id(self.store, &ids).await?;
                let mut wanted = Vec::new();
                let mut rows = Vec::new();
                for item in part {
                    let ItemLink::Matched {
                        product_id,
                        variant_key,
                        ..
                    } = &item.link
                    else {
                        continue;
                    };
                    let variant = products
                        .get(product_id)
                        .and_then(|p| p.content.variants.iter().find(|v| &v.key == variant_key));
                    let location = self.settings.locations.location(&item.store_code);
                    let local = variant
                        .zip(location)
                        .and_then(|(v, l)| v.inventory.get(&l).map(|q| q.0));
                    let inventory_item = variant.and_then(|v| v.inventory_item_id);
                    if let Some(i) = inventory_item {
                        wanted.push(i);
                    }
                    rows.push((item, inventory_item, location, local));
                }
                let remote = match (self.client, wanted.is_empty()) {
                    (Some(client), false) => client.inventory_levels(&wanted).await.ok(),
                    _ => None,
                };
                for (item, inventory_item, location, local) in rows {
                    let available = match (&remote, inventory_item, location) {
                        (Some(levels), Some(i), Some(l)) => {
                            levels.get(&(i, l)).copied().flatten().or(local)
                        }
                        _ => local,
                    };
                    out.push_str(&csv_line(&[
                        &item.store_code,
                        item.bin_location.as_deref().unwrap_or(""),
                        &item.item_number,
                        item.barcode.as_deref().unwrap_or(""),
                        &available.map(|a| a.to_string()).unwrap_or_default(),
                        &location
                            .map(|l| format!("gid://shopify/Location/{}", l.get()))
                            .unwrap_or_default(),
                        &shared_with(&item.store_code, location),
                    ]));
                }
            }
            if !out.is_empty() {
                writer.write(out.into_bytes()).await?;
            }
        }
        writer.finish().await?;
        Ok(())
    }
}

/// Saves a push's plan into the import's checkpoint before each send.
struct CheckpointSaver<'a, 'b> {
    importer: &'a Importer<'b>,
    op: SyncOperation,
    checkpoint: ImportCheckpoint,
    next: u64,
}

#[async_trait::async_trait]
impl PlanCheckpoint for CheckpointSaver<'_, '_> {
    async fn save(&mut self, plan: &InventoryPlan) -> Result<(), ShopifyError> {
        self.checkpoint.phase = ImportPhase::Push {
            next: self.next,
            plan: Some(plan.clone()),
        };
        let saved = self
            .importer
            .save_checkpoint(&self.op, &self.checkpoint)
            .await
            .map_err(|e| {
                ShopifyError::Refused(format!("the push's plan could not be saved: {e}"))
            })?;
        self.op = saved;
        crate::crash::point("import-push-saved");
        Ok(())
    }
}

/// What an import did not take, line by line: rows that were not valid (and the first rows
/// of items named twice), rows that matched no local variant or several, and items missing
/// from the previous snapshot of their StoreCode (line 0).
pub async fn row_errors(
    store: &Store,
    log: XorosoftLogId,
) -> Result<Vec<ImportRowError>, EngineError> {
    let mut out = Vec::new();
    each_row_error(store, log, |error| out.push(error)).await?;
    Ok(out)
}

/// Calls `visit` with each row error of an import (as [`row_errors`] lists them), reading its
/// chunks a page at a time, so a large import is never in memory whole.
pub async fn each_row_error(
    store: &Store,
    log: XorosoftLogId,
    mut visit: impl FnMut(ImportRowError),
) -> Result<(), EngineError> {
    let mut pages = RowErrorPages::of(log);
    while let Some(errors) = pages.next(store).await? {
        errors.into_iter().for_each(&mut visit);
    }
    Ok(())
}

/// The staged rows of these ids that exist (a product skipped as locked has none).
async fn staged_rows_of(
    store: &Store,
    ids: &[StagingId],
) -> Result<Vec<ProductsStaging>, EngineError> {
    let keys: Vec<Key> = ids.iter().map(|id| Key::pk(id.to_string())).collect();
    let mut rows = Vec::with_capacity(ids.len());
    for part in keys.chunks(100) {
        rows.extend(
            store
                .get_each::<ProductsStaging>(part)
                .await?
                .into_iter()
                .flatten(),
        );
    }
    Ok(rows)
}

/// The keys of the records a chunk names, as [`Importer::keep_records`] takes them: its
/// rows' (less the `withdrawn` lines), then its missing items'.
fn record_keys(chunk: &ImportChunk, withdrawn: &BTreeSet<u64>) -> Vec<Key> {
    let taken = chunk.items.iter().filter(|i| !withdrawn.contains(&i.line));
    let mut keys: Vec<Key> = taken
        .map(|i| Key::pk_sk(i.item_number.clone(), i.store_code.clone()))
        .collect();
    keys.extend(
        chunk
            .missing
            .iter()
            .map(|(code, item)| Key::pk_sk(item.clone(), code.clone())),
    );
    keys
}

/// The products that `rows` update, by id.
async fn products_of(
    store: &Store,
    rows: &[ProductsStaging],
) -> Result<HashMap<ProductId, Product>, EngineError> {
    let ids: Vec<ProductId> = rows
        .iter()
        .filter(|r| r.change_type == shopsync_domain::staging::ChangeType::Update)
        .map(|r| r.source_product_id)
        .collect();
    crate::apply::products_by_id(store, &ids).await
}

/// A chunk to stage and the products its rows link to.
struct StageInput {
    chunk: Option<ImportChunk>,
    products: HashMap<ProductId, Product>,
}

/// Reads chunk `number` of an import and the products its rows link to.
async fn stage_input(
    store: Store,
    log: XorosoftLogId,
    number: u64,
) -> Result<StageInput, EngineError> {
    let chunk: Option<ImportChunk> = store
        .get(&Key::pk_sk(log.to_string(), number as i64))
        .await?;
    let ids: BTreeSet<ProductId> = chunk
        .iter()
        .flat_map(|c| &c.items)
        .filter_map(|item| match &item.link {
            ItemLink::Matched { product_id, .. } => Some(*product_id),
            _ => None,
        })
        .collect();
    let ids: Vec<ProductId> = ids.into_iter().collect();
    let products = crate::apply::products_by_id(&store, &ids).await?;
    Ok(StageInput { chunk, products })
}

/// A read running on a task of its own, so that it overlaps what the caller does meanwhile
/// (on another core, or while the caller's own store calls wait on the network). Dropped
/// unfinished, the read is stopped.
struct ReadAhead<T>(tokio::task::JoinHandle<Result<T, EngineError>>);

impl<T: Send + 'static> ReadAhead<T> {
    fn start(
        read: impl std::future::Future<Output = Result<T, EngineError>> + Send + 'static,
    ) -> Self {
        Self(tokio::spawn(read))
    }

    /// What the read found.
    async fn finish(mut self) -> Result<T, EngineError> {
        (&mut self.0)
            .await
            .map_err(|e| EngineError::Task(e.to_string()))?
    }
}

impl<T> Drop for ReadAhead<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An import's stored chunks a page at a time, in chunk order (a large import is never in
/// memory whole).
struct ChunkPages {
    query: Option<Query>,
}

impl ChunkPages {
    fn of(log: XorosoftLogId) -> Self {
        Self::sized(log, 20)
    }

    /// Pages of `chunks` chunks.
    fn sized(log: XorosoftLogId, chunks: u32) -> Self {
        let mut query = Query::new(Table::XorosoftImportChunks, None, log.to_string());
        query.limit = chunks;
        Self { query: Some(query) }
    }

    /// The next page of chunks (`None` after the last page).
    async fn next(&mut self, store: &Store) -> Result<Option<Vec<ImportChunk>>, EngineError> {
        let Some(query) = self.query.take() else {
            return Ok(None);
        };
        let page = store.query::<ImportChunk>(query.clone()).await?;
        if let Some(next) = page.next {
            self.query = Some(Query {
                start: Some(next),
                ..query
            });
        }
        Ok(Some(page.items))
    }
}

/// An import's row errors a page of chunks at a time, in chunk order.
struct RowErrorPages(ChunkPages);

impl RowErrorPages {
    fn of(log: XorosoftLogId) -> Self {
        Self(ChunkPages::of(log))
    }

    /// The next page's row errors (`None` after the last page).
    async fn next(&mut self, store: &Store) -> Result<Option<Vec<ImportRowError>>, EngineError> {
        let Some(chunks) = self.0.next(store).await? else {
            return Ok(None);
        };
        let mut errors = Vec::new();
        for chunk in chunks {
            errors.extend(chunk.errors);
            for item in chunk.items {
                if let Some(reason) = item.refused_money() {
                    errors.push(ImportRowError {
                        line: item.line,
                        column: "CurrencyCode".into(),
                        value: item.currency.clone().unwrap_or_default(),
                        reason: reason.to_owned(),
                        store_code: Some(item.store_code.clone()),
                    });
                }
                let reason = match &item.link {
                    ItemLink::Matched { .. } => continue,
                    ItemLink::Unmatched => {
                        "matches no local variant (by Xorosoft id, SKU or barcode): its Xorosoft record is kept, no product changed"
                            .to_owned()
                    }
                    ItemLink::Ambiguous { candidates } => format!(
                        "matches variants of {} products ({}): its Xorosoft record is kept, no product changed",
                        candidates.len(),
                        candidates
                            .iter()
                            .map(|c| c.to_string())
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                };
                errors.push(ImportRowError {
                    line: item.line,
                    column: "ItemNumber".into(),
                    value: item.item_number,
                    reason,
                    store_code: Some(item.store_code),
                });
            }
            for (code, item) in chunk.missing {
                errors.push(ImportRowError {
                    line: 0,
                    column: "ItemNumber".into(),
                    value: item,
                    reason: format!("missing: the previous snapshot of store {code} had it, this file lacks it (its stock is left as it is)"),
                    store_code: Some(code),
                });
            }
        }
        Ok(Some(errors))
    }
}

/// Approves a held import: it goes on from where it stopped (apply, push, finish).
pub async fn approve_import(
    store: &Store,
    operation: OperationId,
    actor: &Actor,
) -> Result<SyncOperation, EngineError> {
    let mut op = crate::operation::load_operation(store, operation).await?;
    let Some(log_id) = op.xorosoft_log_id else {
        return Err(invalid(format!("operation {operation} is not an import")));
    };
    if op.status != OperationStatus::AwaitingApproval {
        return Err(invalid(format!(
            "operation {operation} is {}, not awaiting approval",
            shopsync_domain::status::status_name(op.status)
        )));
    }
    let before = op.clone();
    let now = Utc::now();
    op.move_to(
        OperationStatus::InProgress,
        Some(format!("approved by {actor}")),
        now,
    )?;
    op.lease_expires_at = Some(now + crate::operation::lease());
    save(store, &op, &before).await?;
    let mut log = load_log(store, log_id).await?;
    let log_before = log.clone();
    log.status = XorosoftSyncStatus::InProgress;
    log.status_reason = Some(format!("approved by {actor}"));
    log.updated_at = Some(now);
    save_log(store, &log, &log_before).await?;
    Ok(op)
}

/// Marks the log of an import whose operation stopped without completing (rejected,
/// cancelled, or failed past its retries) as failed, with the operation's reason.
pub async fn mark_import_failed(
    store: &Store,
    operation: &SyncOperation,
) -> Result<(), EngineError> {
    let Some(log_id) = operation.xorosoft_log_id else {
        return Ok(());
    };
    let mut log = load_log(store, log_id).await?;
    let before = log.clone();
    log.status = XorosoftSyncStatus::Failed;
    log.status_reason = operation.status_reason.clone();
    log.completed_at = Some(Utc::now());
    log.updated_at = log.completed_at;
    save_log(store, &log, &before).await
}

/// Puts the log of a failed import back in progress when a person resumes its operation.
pub async fn reopen_import(store: &Store, operation: &SyncOperation) -> Result<(), EngineError> {
    let Some(log_id) = operation.xorosoft_log_id else {
        return Ok(());
    };
    let mut log = load_log(store, log_id).await?;
    if log.status != XorosoftSyncStatus::Failed {
        return Ok(());
    }
    let before = log.clone();
    log.status = XorosoftSyncStatus::InProgress;
    log.status_reason = operation.status_reason.clone();
    log.completed_at = None;
    log.updated_at = Some(Utc::now());
    save_log(store, &log, &before).await
}

// ---------------------------------------------------------------- helpers

/// Rows read off the async threads, a chunk at a time, or the reason reading failed.
type ReadChunk = Result<ChunkRead, String>;

/// One chunk as the reader left it.
struct ChunkRead {
    rows: Vec<XorosoftRow>,
    errors: Vec<shopsync_xorosoft::RowError>,
    duplicate_errors: u64,
    repeated_first_lines: Vec<u64>,
    fallbacks: u64,
    /// Where the next chunk starts (`None`: the file ends with this one).
    next: Option<ResumePoint>,
}

/// Reads the file from `point` (the start when `None`) in chunks of `rows`, sending each;
/// stops when the receiver is gone.
fn read_chunks(
    input: Box<dyn std::io::Read + Send>,
    point: Option<ResumePoint>,
    options: Options,
    seen: SeenItems,
    rows: usize,
    sender: tokio::sync::mpsc::Sender<ReadChunk>,
) {
    let mut reader = match point {
        Some(point) => Reader::resume(input, &point, options, seen),
        None => match Reader::new(input, options) {
            Ok(reader) => reader,
            Err(refusal) => {
                let _ = sender.blocking_send(Err(refusal.to_string()));
                return;
            }
        },
    };
    let mut repeated_sent = 0usize;
    let mut fallbacks_sent = 0u64;
    loop {
        let mut chunk = ChunkRead {
            rows: Vec::with_capacity(rows),
            errors: Vec::new(),
            duplicate_errors: 0,
            repeated_first_lines: Vec::new(),
            fallbacks: 0,
            next: None,
        };
        let mut read = 0;
        while read < rows {
            let Some(next) = reader.next() else { break };
            read += 1;
            match next {
                Ok(row) => chunk.rows.push(row),
                Err(error) => {
                    if error.column == "ItemNumber" && error.reason.starts_with("is named again") {
                        chunk.duplicate_errors += 1;
                    }
                    chunk.errors.push(error);
                }
            }
        }
        if read == 0 {
            return;
        }
        let repeated = reader.repeated_first_lines();
        chunk.repeated_first_lines = repeated[repeated_sent..].to_vec();
        repeated_sent = repeated.len();
        let fallbacks = reader.fields_read_as_windows_1252();
        chunk.fallbacks = fallbacks - fallbacks_sent;
        fallbacks_sent = fallbacks;
        chunk.next = reader.resume_point();
        let last = chunk.next.is_none();
        if sender.blocking_send(Ok(chunk)).is_err() || last {
            return;
        }
    }
}

/// Chunk numbers from here on hold the items missing from the file's StoreCodes.
const MISSING_CHUNKS: u64 = 1 << 40;

fn imported(row: XorosoftRow, link: ItemLink) -> ImportedItem {
    ImportedItem {
        line: row.line,
        store_code: row.store_code,
        bin_location: row.location_code,
        item_number: row.item_number,
        barcode: row.upc,
        on_hand: row.on_hand,
        allocated: row.allocated,
        available: row.available,
        on_order: row.on_order,
        unit_cost: row.unit_cost,
        standard_price: row.standard_price,
        wholesale_price: row.wholesale_price,
        currency: row.currency,
        last_modified: row.last_modified,
        price_error: row.price_error.map(|e| e.reason),
        link,
    }
}

fn add_stats(into: &mut XorosoftStatistics, part: &XorosoftStatistics) {
    into.rows_valid += part.rows_valid;
    into.rows_invalid += part.rows_invalid;
    into.duplicates += part.duplicates;
    into.matched += part.matched;
    into.unmatched += part.unmatched;
    into.ambiguous += part.ambiguous;
    into.price_errors += part.price_errors;
}

/// Records what an item gives its variant's fields: stock at its StoreCode's location (and
/// cost) for a stock or full file, the retail price for a price or full file.
fn contribute(
    row: &mut ProductsStaging,
    item: &ImportedItem,
    sync_type: XorosoftSyncType,
    locations: &LocationMap,
) {
    let ItemLink::Matched {
        variant_key, by, ..
    } = &item.link
    else {
        return;
    };
    let mut put = |field: String, value: serde_json::Value| {
        row.contributions
            .entry(field)
            .or_default()
            .insert(item.store_code.clone(), value);
    };
    if sync_type.takes_stock() {
        if let (Some(available), Some(location)) =
            (item.available, locations.location(&item.store_code))
        {
            put(
                format!("variants/{variant_key}/inventory/{location}"),
                serde_json::json!(available),
            );
        }
        if let Some(cost) = item.unit_cost.filter(|_| item.price_error.is_none()) {
            put(
                format!("variants/{variant_key}/cost"),
                serde_json::json!(cost),
            );
        }
    }
    if sync_type.takes_prices() && item.price_error.is_none() {
        if let Some(price) = item.standard_price {
            put(
                format!("variants/{variant_key}/price"),
                serde_json::json!(price),
            );
        }
    }
    if *by != LinkedBy::XorosoftId {
        row.contributions
            .entry(crate::apply::LINKED_ITEM.to_owned())
            .or_default()
            .insert("link".to_owned(), serde_json::json!(item.item_number));
    }
}

/// Adds `later` (changes made after `earlier`, to its new values) to `earlier`: each field
/// keeps its first old value and takes its last new one; a field back where it began is
/// dropped.
fn compose(earlier: &mut ChangeData, later: ChangeData) {
    for (path, change) in later {
        match earlier.get_mut(&path) {
            Some(first) => first.new = change.new,
            None => {
                earlier.insert(path, change);
            }
        }
    }
    earlier.retain(|_, c: &mut FieldChange| c.old != c.new);
}

/// The rails' facts of a row's changes: stock levels going to zero, large price moves, and
/// price changes.
fn facts(changes: &ChangeData, rails: &GuardRails) -> (u64, u64, u64) {
    let (mut zero, mut moves, mut prices) = (0, 0, 0);
    for (path, change) in changes {
        match path.leaf() {
            "inventory" => {
                let old = change.old.as_ref().and_then(|v| v.as_i64()).unwrap_or(0);
                let new = change.new.as_ref().and_then(|v| v.as_i64()).unwrap_or(0);
                if old > 0 && new <= 0 {
                    zero += 1;
                }
            }
            "price" => {
                prices += 1;
                let money = |v: &Option<serde_json::Value>| {
                    v.clone()
                        .and_then(|v| serde_json::from_value::<Money>(v).ok())
                };
                if let (Some(old), Some(new)) = (money(&change.old), money(&change.new)) {
                    if old
                        .percent_change_to(new)
                        .is_some_and(|pct| pct > rails.max_price_move_pct)
                    {
                        moves += 1;
                    }
                }
            }
            _ => {}
        }
    }
    (zero, moves, prices)
}

/// The variant key and location of a stock field (`variants/{key}/inventory/{location}`).
fn stock_path(path: &FieldPath) -> Option<(&str, LocationId)> {
    let rest = path.as_str().strip_prefix("variants/")?;
    let (variant, location) = rest.split_once("/inventory/")?;
    let location = LocationId::new(location.parse().ok()?).ok()?;
    Some((variant, location))
}

/// One CSV line (RFC 4180 quoting where needed).
fn csv_line(fields: &[&str]) -> String {
    let mut line = String::new();
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            line.push(',');
        }
        if field.contains([',', '"', '\n', '\r']) {
            line.push('"');
            line.push_str(&field.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(field);
        }
    }
    line.push_str("\r\n");
    line
}

/// Reports progress (see `steps::progress_in`), in the unit of the phase.
fn progress(operation: &SyncOperation, phase: &'static str, done: u64, total: Option<u64>) {
    let unit = match phase {
        "read" => "rows",
        "staged" => "chunks",
        _ => "stock levels",
    };
    crate::operation::progress_in(operation, phase, done, total, unit);
}

/// Emits the held-or-refused metric (an EMF line a CloudWatch alarm can watch).
fn emit_held_or_refused(log: &XorosoftSyncLog) {
    let line = serde_json::json!({
        "_aws": {
            "Timestamp": Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": "shopsync",
                "Dimensions": [["SyncType"]],
                "Metrics": [{"Name": HELD_OR_REFUSED_METRIC, "Unit": "Count"}],
            }],
        },
        "SyncType": shopsync_domain::status::status_name(log.sync_type),
        HELD_OR_REFUSED_METRIC: 1,
        "import": log.id.to_string(),
        "status": shopsync_domain::status::status_name(log.status),
    });
    tracing::info!(target: "shopsync::metrics", "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_staged_in_product_order_unless_the_import_was_checkpointed_without_it() {
        let operation = OperationId::generate();
        let products: Vec<ProductId> = (0..50).map(|_| ProductId::generate()).collect();
        // A row id begins with its product's time (the first 48 bits of a v7 id), so the
        // rows of products made one after another sort together.
        for product in &products {
            let row = row_id(operation, *product, true);
            assert_eq!(row.uuid().as_bytes()[..6], product.uuid().as_bytes()[..6]);
        }
        let other = OperationId::generate();
        assert_ne!(
            row_id(operation, products[0], true),
            row_id(other, products[0], true)
        );
        assert_eq!(
            row_id(operation, products[0], true),
            row_id(operation, products[0], true)
        );
        // A checkpoint stored before the field existed keeps its digest ids.
        let mut stored =
            serde_json::to_value(ImportCheckpoint::new(XorosoftLogId::generate())).unwrap();
        stored
            .as_object_mut()
            .unwrap()
            .remove("rows_in_product_order");
        let old: ImportCheckpoint = serde_json::from_value(stored).unwrap();
        assert!(!old.rows_in_product_order);
        assert!(ImportCheckpoint::new(XorosoftLogId::generate()).rows_in_product_order);
        assert_ne!(
            row_id(operation, products[0], false),
            row_id(operation, products[0], true)
        );
    }

    #[test]
    fn store_codes_map_to_locations_by_gid_or_number_and_star_takes_the_rest() {
        let map = LocationMap::parse(
            " MAIN=gid://shopify/Location/11, OUTLET=12 ,*=gid://shopify/Location/13",
        )
        .unwrap();
        let id = |n| LocationId::new(n).unwrap();
        assert_eq!(map.location("MAIN"), Some(id(11)));
        assert_eq!(map.location("OUTLET"), Some(id(12)));
        assert_eq!(map.location("outlet"), Some(id(12)), "in any case");
        assert_eq!(map.location("ANY"), Some(id(13)));
        let strict = LocationMap::parse("MAIN=11").unwrap();
        assert_eq!(strict.location("OUTLET"), None, "no star: unmapped");
        assert!(LocationMap::parse("").unwrap().is_empty());
        for bad in [
            "MAIN",
            "MAIN=shop",
            "=11",
            "MAIN=gid://shopify/Location/0",
            "MAIN=11,main=12",
            "*=11,*=12",
        ] {
            let error = LocationMap::parse(bad).unwrap_err();
            assert!(
                error.contains("SHOPSYNC_XOROSOFT_LOCATIONS"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn settings_come_from_their_names_and_a_bad_value_names_its_setting() {
        let set = |pairs: &'static [(&'static str, &'static str)]| {
            ImportSettings::from_settings(move |name| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            })
        };
        let settings = set(&[
            ("SHOPSYNC_XOROSOFT_OWNS_PRICE", "true"),
            ("SHOPSYNC_XOROSOFT_TZ", "America/New_York"),
            ("SHOPSYNC_SHOP_CURRENCY", "eur"),
            ("SHOPSYNC_RAIL_MAX_SNAPSHOT_DROP_PCT", "35"),
        ])
        .unwrap();
        assert!(settings.owns_price);
        assert_eq!(settings.timezone, chrono_tz::America::New_York);
        assert_eq!(settings.shop_currency.as_deref(), Some("EUR"));
        assert_eq!(settings.max_snapshot_drop_pct, 35.0);
        assert_eq!(settings.max_row_error_pct, 10.0, "the default");
        for (name, value) in [
            ("SHOPSYNC_XOROSOFT_OWNS_PRICE", "maybe"),
            ("SHOPSYNC_XOROSOFT_TZ", "Mars/Olympus"),
            ("SHOPSYNC_SHOP_CURRENCY", "dollars"),
            ("SHOPSYNC_RAIL_MAX_ROW_ERROR_PCT", "120"),
        ] {
            let error = ImportSettings::from_settings(|n| (n == name).then(|| value.to_owned()))
                .unwrap_err();
            assert!(error.starts_with(name), "{error}");
        }
    }

    #[test]
    fn changes_compose_keeping_the_first_old_value_and_dropping_what_came_back() {
        let path = |p: &str| FieldPath::new_unchecked(p.to_owned());
        let change = |old: i64, new: i64| FieldChange {
            old: Some(serde_json::json!(old)),
            new: Some(serde_json::json!(new)),
        };
        let mut earlier = ChangeData::from([
            (path("variants/a/inventory/1"), change(5, 9)),
            (path("variants/a/cost"), change(1, 2)),
        ]);
        compose(
            &mut earlier,
            ChangeData::from([
                (path("variants/a/inventory/1"), change(9, 12)),
                (path("variants/a/cost"), change(2, 1)),
                (path("variants/b/inventory/1"), change(0, 3)),
            ]),
        );
        assert_eq!(earlier.get("variants/a/inventory/1"), Some(&change(5, 12)));
        assert!(
            !earlier.contains_key("variants/a/cost"),
            "back where it began"
        );
        assert_eq!(earlier.get("variants/b/inventory/1"), Some(&change(0, 3)));
    }
}

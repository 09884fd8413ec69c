//! The embedded backend: one SQLite file on disk, in-process, with the same semantics as the
//! DynamoDB backend (conditions checked inside an immediate transaction, atomic multi-item
//! writes, sparse indexes as partial indexes on columns holding the index keys' attributes).

mod logsync;
mod pcache;
mod vfs;

use crate::logsync::LogSync;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use shopsync_store::backend::{
    check_page_size, check_transaction_size, prefixed, CancelReason, ItemStore, StoreError,
    TableState,
};
use shopsync_store::item::{
    Attrs, Condition, Item, Key, Page, PageToken, Query, Scalar, SortCondition, WriteOp,
};
use shopsync_store::schema::{IndexDef, KeyType, Table, TableDef, RESERVED_ATTRS};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file name of the embedded store inside its data directory.
pub const DB_FILE: &str = "shopsync.sqlite3";
const META_TABLE: &str = "_shopsync_tables";

/// The embedded store.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<tokio::sync::Mutex<Connection>>,
    prefix: String,
    /// Every table's statements by key (see `TableSql`).
    statements: Arc<Vec<TableSql>>,
    dir: PathBuf,
    durability: Durability,
    /// Commits counted, and the group fsync of the write-ahead log (see `Durability`).
    log: Arc<LogSync>,
    /// The write-ahead log the group fsync syncs.
    wal: Arc<WalFile>,
    /// Copies the write-ahead log into the database in the background.
    checkpointer: Arc<Checkpointer>,
    /// Transactions waiting for the next commit (see `transact`).
    queued: Arc<std::sync::Mutex<Vec<QueuedTransaction>>>,
    /// Connections for reads (see `Readers`).
    readers: Arc<Readers>,
}

/// Reading connections beside the one that writes, for batches of lookups
/// (`ItemStore::query_each`: a sync batch's local products, a page of staged rows' contents).
/// In WAL mode a read sees every commit made before it began and never waits for a writer, so
/// a batch is read while the writer commits the previous one (a 100k import: 4.3 s -> 3.7 s
/// of its own time). A single lookup stays on the writing connection: a reading connection
/// drops its page cache whenever the log moved since its last read, which on the webhook path
/// is every time (measured: 5,600/s on the writer's warm cache, 4,400/s on a reader's). A read
/// issued after a write returned sees it.
struct Readers {
    idle: std::sync::Mutex<Vec<Connection>>,
    permits: tokio::sync::Semaphore,
}

/// How many reads run at once (the writer runs beside them).
const READERS: usize = 2;

impl Readers {
    fn open(path: &Path) -> Result<Self, StoreError> {
        let idle = (0..READERS)
            .map(|_| {
                let conn = Connection::open(path).map_err(map_err)?;
                conn.busy_timeout(std::time::Duration::from_secs(10))
                    .map_err(map_err)?;
                conn.pragma_update(None, "query_only", "ON")
                    .map_err(map_err)?;
                conn.pragma_update(None, "cache_size", -16_384)
                    .map_err(map_err)?;
                conn.set_prepared_statement_cache_capacity(256);
                Ok(conn)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Self {
            idle: std::sync::Mutex::new(idle),
            permits: tokio::sync::Semaphore::new(READERS),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A reading connection on loan; back to the pool when dropped (also on a panic).
struct Loan<'a> {
    readers: &'a Readers,
    conn: Option<Connection>,
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.readers.idle().push(conn);
        }
    }
}

/// How many expired rows [`SqliteStore::expire`] removes in one transaction.
pub const EXPIRY_BATCH: usize = 1_000;

/// A table's physical name and its by-key statements, written once when the store opens: a
/// write used to format its table's name and its statement's text every time (a 100k
/// import makes 300k puts and as many condition reads).
struct TableSql {
    table: Table,
    name: String,
    /// The name quoted for SQL.
    quoted: String,
    /// The attributes its indexes are on, each stored in its own column (see `key_column`),
    /// in the order the writes bind them (after pk, sk, attrs and doc).
    key_attrs: Vec<&'static str>,
    get_attrs: String,
    get_item: String,
    put: String,
    /// A put of a new item: adds the row, or changes nothing when the key is taken.
    insert: String,
    delete: String,
}

impl TableSql {
    fn of(prefix: &str, table: Table) -> Self {
        let name = prefixed(prefix, table);
        let quoted = quote(&name);
        let key_attrs = index_key_attrs(table.def());
        let mut columns = String::from("pk, sk, attrs, doc");
        let mut marks = String::from("?1, ?2, ?3, ?4");
        let mut updates = String::from("attrs = excluded.attrs, doc = excluded.doc");
        for (i, attr) in key_attrs.iter().enumerate() {
            let column = key_column(attr);
            columns.push_str(&format!(", {column}"));
            marks.push_str(&format!(", ?{}", i + 5));
            updates.push_str(&format!(", {column} = excluded.{column}"));
        }
        Self {
            get_attrs: format!("SELECT attrs FROM {quoted} WHERE pk = ?1 AND sk = ?2"),
            get_item: format!("SELECT attrs, doc FROM {quoted} WHERE pk = ?1 AND sk = ?2"),
            // An upsert rewrites the row in place (a REPLACE would delete it and insert it
            // again).
            put: format!(
                "INSERT INTO {quoted} ({columns}) VALUES ({marks}) \
                 ON CONFLICT (pk, sk) DO UPDATE SET {updates}"
            ),
            insert: format!(
                "INSERT INTO {quoted} ({columns}) VALUES ({marks}) \
                 ON CONFLICT (pk, sk) DO NOTHING"
            ),
            delete: format!("DELETE FROM {quoted} WHERE pk = ?1 AND sk = ?2"),
            key_attrs,
            table,
            name,
            quoted,
        }
    }

    /// Every table's, by the table's number (`Table::ALL` is in declaration order).
    fn all(prefix: &str) -> Vec<Self> {
        Table::ALL.iter().map(|t| Self::of(prefix, *t)).collect()
    }
}

/// The statements of `table` among `all` (built by `TableSql::all`).
fn sql_of(all: &[TableSql], table: Table) -> Result<&TableSql, StoreError> {
    all.get(table as usize)
        .filter(|sql| sql.table == table)
        .ok_or_else(|| StoreError::Invalid(format!("no statements for table {}", table.name())))
}

/// A transaction waiting for the next commit, and where its answer goes.
type QueuedTransaction = (
    Vec<WriteOp>,
    tokio::sync::oneshot::Sender<Result<(), StoreError>>,
);

fn lock_queue(
    queued: &std::sync::Mutex<Vec<QueuedTransaction>>,
) -> std::sync::MutexGuard<'_, Vec<QueuedTransaction>> {
    queued
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes accumulated before a background checkpoint starts (about 3–4 log pages each).
/// Small checkpoints keep each one's flush of the database short; a long one holds up the
/// commits beside it (the log's fsyncs took 2–8 ms while one ran, against 0.1 ms idle). Webhook path at an offered 5,000/s on the VM's disk (40,000
/// deliveries, interleaved runs): p99 7.3–9.7 ms after 256 writes, 5.3–7.3 after 128, 2.4–6.8
/// after 64, 1.6–3.4 after 32, 1.7–2.4 after 16; 32 costs about 10–15% more CPU than 256
/// there (16: 20–40%, and a slower p90 at 1,000/s). Closed-loop throughput and the 100k
/// down-sync (one checkpoint per batch either way) moved only within the host's noise.
const CHECKPOINT_AFTER_WRITES: usize = 32;
/// SQLite's own checkpoint, run inside a commit, only if the background one falls behind
/// (pages of log; about 64 MiB).
const INLINE_CHECKPOINT_PAGES: i64 = 16_384;

/// Checkpoints on a connection of their own, on a blocking thread, so copying the log into
/// the database (and its fsync) happens beside the writes instead of inside one of them.
struct Checkpointer {
    conn: std::sync::Mutex<Connection>,
    running: std::sync::atomic::AtomicBool,
    writes: std::sync::atomic::AtomicUsize,
}

impl Checkpointer {
    /// Counts `writes` just committed; starts a checkpoint when enough accumulated and none
    /// is running. A passive checkpoint never blocks a writer; what it cannot copy now is
    /// copied by the next one.
    fn committed(self: &Arc<Self>, writes: usize) {
        use std::sync::atomic::Ordering;
        let total = self.writes.fetch_add(writes, Ordering::AcqRel) + writes;
        if total < CHECKPOINT_AFTER_WRITES || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.writes.store(0, Ordering::Release);
        let this = Arc::clone(self);
        let run = move || {
            let conn = this.conn.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "background checkpoint failed; the next one retries");
            }
            drop(conn);
            this.running.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(run)),
            Err(_) => run(),
        }
    }
}

/// The write-ahead log's file, opened by the first fsync that finds it and kept open: SQLite
/// removes the log only when the last connection to the database closes, and the store holds
/// its connections until it is dropped, so the file found first is the log for the store's
/// whole life. (Opening it for every fsync cost an open and a close each time.)
struct WalFile {
    path: PathBuf,
    file: std::sync::Mutex<Option<std::fs::File>>,
}

impl WalFile {
    /// fsyncs the log's data (its size included), opening it first if it was not yet.
    fn sync(&self) -> Result<(), StoreError> {
        let unavailable =
            |e: std::io::Error| StoreError::Unavailable(format!("{}: {e}", self.path.display()));
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.is_none() {
            match std::fs::File::open(&self.path) {
                Ok(opened) => *file = Some(opened),
                // No log: nothing was committed through one, or it was checkpointed away
                // (and the checkpoint synced the database).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(unavailable(e)),
            }
        }
        file.as_ref()
            .map_or(Ok(()), |file| file.sync_data().map_err(unavailable))
    }
}

/// When the embedded store's writes reach the disk (`SHOPSYNC_EMBEDDED_SYNC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `flush` (the default): commits go to the write-ahead log unsynced; `flush` fsyncs it
    /// once for every commit since the last one (group commit: concurrent callers share one
    /// fsync). Everything acknowledged outside was flushed first. A failed fsync fails every
    /// later flush too, until a restart (the kernel may have dropped the pages it could not
    /// write, so a later fsync that succeeds proves nothing about them).
    OnFlush,
    /// `full`: every commit is fsynced (SQLite's synchronous=FULL).
    EveryCommit,
    /// `normal`: the log is synced only at checkpoints; the last commits before a power cut may
    /// be lost (benchmarks, throwaway data).
    Relaxed,
}

impl Durability {
    /// What `SHOPSYNC_EMBEDDED_SYNC` asks for (`flush` when unset or unknown).
    pub fn from_env() -> Self {
        match std::env::var("SHOPSYNC_EMBEDDED_SYNC").as_deref() {
            Ok("full") => Durability::EveryCommit,
            Ok("normal") => Durability::Relaxed,
            _ => Durability::OnFlush,
        }
    }
}

/// What the embedded store records of a table's definition (the real indexes are read from
/// SQLite itself).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct TableMeta {
    pk: String,
    sk: Option<String>,
    attr_types: BTreeMap<String, KeyType>,
    ttl_attr: Option<String>,
}

fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    let text = e.to_string();
    if text.contains("no such table") {
        return StoreError::TableMissing(text);
    }
    match e.sqlite_error_code() {
        Some(
            DatabaseBusy | DatabaseLocked | SystemIoFailure | DiskFull | CannotOpen | OutOfMemory,
        ) => StoreError::Unavailable(text),
        _ => StoreError::Invalid(text),
    }
}

fn to_sql(value: &Scalar) -> SqlValue {
    match value {
        Scalar::S(s) => SqlValue::Text(s.clone()),
        Scalar::N(n) => SqlValue::Integer(*n),
    }
}

fn sk_sql(key: &Key) -> SqlValue {
    key.sk
        .as_ref()
        .map(to_sql)
        .unwrap_or(SqlValue::Text(String::new()))
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The column holding an index key's attribute (its value as the item's attributes hold it,
/// NULL where the item has none). Indexes are on these columns rather than on
/// `json_extract(attrs, ...)`, which SQLite evaluated for every index of every row written,
/// and again in each sparse index's WHERE clause (measured: 3.6% of all instructions of a
/// 10k import, about 28% of SQLite's statement time).
fn key_column(attr: &str) -> String {
    quote(&format!("{KEY_COLUMN_PREFIX}{attr}"))
}

/// What a key column's name starts with (see `key_column`).
const KEY_COLUMN_PREFIX: &str = "key:";

/// The distinct attributes a table's indexes are on, in the order of their first mention.
fn index_key_attrs(def: &TableDef) -> Vec<&'static str> {
    let mut attrs: Vec<&'static str> = Vec::new();
    for index in def.indexes {
        for attr in std::iter::once(index.key.pk).chain(index.key.sk) {
            if !attrs.contains(&attr.name) {
                attrs.push(attr.name);
            }
        }
    }
    attrs
}

/// A scalar as a statement parameter, borrowed (a key or attribute is not copied to be
/// bound); an absent one binds NULL.
struct Bound<'a>(Option<&'a Scalar>);

impl rusqlite::ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self.0 {
            Some(Scalar::S(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Some(Scalar::N(n)) => ToSqlOutput::Owned(SqlValue::Integer(*n)),
            None => ToSqlOutput::Owned(SqlValue::Null),
        })
    }
}

fn read_item(attrs: String, doc: Option<Vec<u8>>) -> Result<Item, StoreError> {
    let attrs: Attrs =
        serde_json::from_str(&attrs).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Item {
        attrs,
        doc: doc.map(unpack_doc).transpose()?,
    })
}

/// The first byte of a document stored compressed. A JSON document never starts with it; a
/// document of other bytes that does is always stored compressed, so the byte is never
/// ambiguous. Documents written before compression are read as they are.
const PACKED_DOC: u8 = 0x04;
/// Documents shorter than this are stored as they are (the saving would not pay).
const PACK_FROM_BYTES: usize = 256;
/// The largest document a packed header may claim (guards reading a damaged file).
const MAX_UNPACKED_BYTES: usize = 64 * 1024 * 1024;

/// A document's stored form: `PACKED_DOC`, its length (u32, little-endian), then its LZ4
/// block, when that is shorter (or the document starts with `PACKED_DOC`); else the
/// document itself. Measured on a 100k-product import: the store's file and its log
/// writes are about half as large, and rows of a few KB no longer leave half a page empty.
fn pack_doc(doc: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    let must = doc.first() == Some(&PACKED_DOC);
    if (doc.len() < PACK_FROM_BYTES || doc.len() > MAX_UNPACKED_BYTES) && !must {
        return Ok(doc);
    }
    let length = u32::try_from(doc.len())
        .ok()
        .filter(|&n| n as usize <= MAX_UNPACKED_BYTES)
        .ok_or(StoreError::TooLarge {
            bytes: doc.len(),
            limit: MAX_UNPACKED_BYTES,
        })?;
    let mut packed = vec![0; 5 + lz4_flex::block::get_maximum_output_size(doc.len())];
    packed[0] = PACKED_DOC;
    packed[1..5].copy_from_slice(&length.to_le_bytes());
    let written = lz4_flex::block::compress_into(&doc, &mut packed[5..])
        .map_err(|e| StoreError::Invalid(format!("compressing a document: {e}")))?;
    packed.truncate(5 + written);
    Ok(if packed.len() < doc.len() || must {
        packed
    } else {
        doc
    })
}

/// The document a stored form holds (see `pack_doc`).
fn unpack_doc(stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    if stored.first() != Some(&PACKED_DOC) {
        return Ok(stored);
    }
    let corrupt = |what: &str| StoreError::Corrupt(format!("packed document: {what}"));
    let header: [u8; 4] = stored
        .get(1..5)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("no length"))?;
    let length = u32::from_le_bytes(header) as usize;
    if length > MAX_UNPACKED_BYTES {
        return Err(corrupt("length past the limit"));
    }
    let doc =
        lz4_flex::block::decompress(&stored[5..], length).map_err(|e| corrupt(&e.to_string()))?;
    if doc.len() != length {
        return Err(corrupt("length differs from its header"));
    }
    Ok(doc)
}

/// Replaces each put's document with its stored form (before the connection is taken, so
/// compressing runs beside other writers instead of inside the commit).
fn pack_writes(writes: &mut [WriteOp]) -> Result<(), StoreError> {
    for write in writes {
        if let WriteOp::Put { item, .. } = write {
            if let Some(doc) = item.doc.take() {
                item.doc = Some(pack_doc(doc)?);
            }
        }
    }
    Ok(())
}

/// Checks an item carries its keys with the defined types and no reserved names.
fn validate_item(def: &TableDef, item: &Item) -> Result<Key, StoreError> {
    for name in RESERVED_ATTRS {
        if item.attrs.contains_key(name) {
            return Err(StoreError::Invalid(format!(
                "attribute name `{name}` is reserved"
            )));
        }
    }
    let keys = std::iter::once(def.key).chain(def.indexes.iter().map(|i| i.key));
    for k in keys {
        for attr in std::iter::once(k.pk).chain(k.sk) {
            if let Some(v) = item.attrs.get(attr.name) {
                if v.kind() != attr.kind {
                    return Err(StoreError::Invalid(format!(
                        "{}.{} must be {:?}",
                        def.name, attr.name, attr.kind
                    )));
                }
            }
        }
    }
    item.key(def)
        .ok_or_else(|| StoreError::Invalid(format!("item lacks the key of {}", def.name)))
}

/// Puts the page-cache wrapper and the log-gathering VFS in place (once per process), in the
/// order SQLite needs: the page cache only before SQLite starts, which finding its VFS does.
/// Every connection opened after uses both.
pub(crate) fn prepare_sqlite() {
    if !crate::pcache::install() {
        tracing::debug!("SQLite started before the store: its page cache is used unwrapped");
    }
    if !crate::vfs::install() {
        tracing::debug!("the log-gathering VFS is not installed: SQLite's own is used");
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, with physical table names under `prefix`.
    pub fn open(dir: &Path, prefix: &str) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        prepare_sqlite();
        let conn = Connection::open(dir.join(DB_FILE)).map_err(map_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(map_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(map_err)?;
        // See `Durability`: a write acknowledged to a merchant survives a power cut either by
        // its own fsync (FULL) or by the flush that precedes the acknowledgement.
        let durability = Durability::from_env();
        let synchronous = match durability {
            Durability::EveryCommit => "FULL",
            Durability::OnFlush | Durability::Relaxed => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", synchronous)
            .map_err(map_err)?;
        // A page cache of 16 MiB (SQLite's default is 2 MiB). Measured: 256 MiB was slower on
        // both the webhook path and a 100k down-sync, since every commit's end walks the
        // cache's hash table; the OS page cache holds the rest of the file anyway.
        conn.pragma_update(None, "cache_size", -16_384)
            .map_err(map_err)?;
        // Statement journals (a multi-row statement's undo) stay in memory.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(map_err)?;
        conn.pragma_update(None, "wal_autocheckpoint", INLINE_CHECKPOINT_PAGES)
            .map_err(map_err)?;
        // Room for every table's get, put, delete and condition statements and the queries.
        conn.set_prepared_statement_cache_capacity(256);
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {META_TABLE} (name TEXT PRIMARY KEY, definition TEXT NOT NULL)"
        ))
        .map_err(map_err)?;
        let readers = Readers::open(&dir.join(DB_FILE))?;
        let checkpoint_conn = Connection::open(dir.join(DB_FILE)).map_err(map_err)?;
        checkpoint_conn
            .pragma_update(None, "synchronous", synchronous)
            .map_err(map_err)?;
        Ok(Self {
            checkpointer: Arc::new(Checkpointer {
                conn: std::sync::Mutex::new(checkpoint_conn),
                running: std::sync::atomic::AtomicBool::new(false),
                writes: std::sync::atomic::AtomicUsize::new(0),
            }),
            conn: Arc::new(tokio::sync::Mutex::new(conn)),
            queued: Arc::default(),
            readers: Arc::new(readers),
            statements: Arc::new(TableSql::all(prefix)),
            prefix: prefix.to_owned(),
            dir: dir.to_owned(),
            durability,
            log: LogSync::new(),
            wal: Arc::new(WalFile {
                path: dir.join(format!("{DB_FILE}-wal")),
                file: std::sync::Mutex::default(),
            }),
        })
    }

    /// fsyncs the write-ahead log once for every commit not yet covered; concurrent callers
    /// share one fsync and are all answered when it ends (see `LogSync`). Measured with 8
    /// webhook senders: waiting for durability took 0.85 ms of a delivery against 1.97 ms
    /// when callers passed the previous fsync's result along through a lock one by one.
    async fn sync_log(&self) -> Result<(), StoreError> {
        if self.durability != Durability::OnFlush {
            return Ok(());
        }
        let wal = Arc::clone(&self.wal);
        // On a blocking thread: the runtime's threads go on with other deliveries meanwhile,
        // whose commits the next fsync covers.
        self.log.wait_durable(move || wal.sync()).await
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        // Inline on the calling task: one statement or one small transaction takes tens of
        // microseconds to a few milliseconds, while a hop to the blocking pool and back (a
        // thread wake-up each way) cost more than most of the calls it carried. Waiting for
        // the connection yields the thread to other tasks instead of parking it.
        let mut guard = self.conn.lock().await;
        f(&mut guard)
    }

    /// Runs a read on a reading connection (see `Readers`), inline like `with_conn`.
    async fn with_reader<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _permit = self
            .readers
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        let mut loan = Loan {
            readers: &self.readers,
            conn: self.readers.idle().pop(),
        };
        match loan.conn.as_mut() {
            Some(conn) => f(conn),
            None => Err(StoreError::Unavailable(
                "no reading connection is free".into(),
            )),
        }
    }

    /// Writes independent transactions in one SQLite transaction: each is all or nothing with
    /// its own answer. `Err`: the store failed and nothing of any of them was committed.
    fn write_groups(
        &self,
        conn: &mut Connection,
        groups: &[Vec<WriteOp>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let mut answers = Vec::with_capacity(groups.len());
        for writes in groups {
            if let Err(e) = check_transaction_size(writes.len()) {
                answers.push(Err(e));
                continue;
            }
            // A refused group leaves nothing; a write that fails otherwise is the store
            // failing, and nothing of the call is committed.
            match write_group(&tx, &self.statements, writes) {
                Err(e @ (StoreError::TransactionCanceled { .. } | StoreError::Invalid(_))) => {
                    answers.push(Err(e))
                }
                other => answers.push(Ok(other?)),
            }
        }
        tx.commit().map_err(map_err)?;
        self.log.committed();
        Ok(answers)
    }

    /// The statement and parameters of one page of `query`.
    fn page_sql(&self, query: &Query) -> Result<PageSql, StoreError> {
        let def = query.table.def();
        let index =
            match query.index {
                Some(name) => Some(def.index(name).ok_or_else(|| {
                    StoreError::Invalid(format!("{} has no index {name}", def.name))
                })?),
                None => None,
            };
        check_page_size(query.limit)?;
        let (pk_expr, sk_attr) = match index {
            Some(ix) => (
                key_column(ix.key.pk.name),
                ix.key.sk.map(|s| key_column(s.name)),
            ),
            None => ("pk".to_owned(), def.key.sk.map(|_| "sk".to_owned())),
        };
        let table = sql_of(&self.statements, query.table)?;
        let mut sql = format!(
            "SELECT attrs, doc FROM {} WHERE {pk_expr} = ?",
            table.quoted
        );
        let mut params = vec![to_sql(&query.pk)];
        if let Some(sk) = &sk_attr {
            if index.is_some() {
                sql.push_str(&format!(" AND {sk} IS NOT NULL"));
            }
            if let Some(cond) = &query.sk {
                let (clause, values): (String, Vec<&Scalar>) = match cond {
                    SortCondition::Eq(v) => (format!("{sk} = ?"), vec![v]),
                    SortCondition::Lt(v) => (format!("{sk} < ?"), vec![v]),
                    SortCondition::Le(v) => (format!("{sk} <= ?"), vec![v]),
                    SortCondition::Gt(v) => (format!("{sk} > ?"), vec![v]),
                    SortCondition::Ge(v) => (format!("{sk} >= ?"), vec![v]),
                    SortCondition::Between(lo, hi) => {
                        (format!("{sk} BETWEEN ? AND ?"), vec![lo, hi])
                    }
                    SortCondition::BeginsWith(p) => {
                        sql.push_str(&format!(" AND substr({sk}, 1, {}) = ?", p.chars().count()));
                        params.push(SqlValue::Text(p.clone()));
                        (String::new(), vec![])
                    }
                };
                if !clause.is_empty() {
                    sql.push_str(&format!(" AND {clause}"));
                    params.extend(values.into_iter().map(to_sql));
                }
            }
        } else if query.sk.is_some() {
            return Err(StoreError::Invalid(
                "sort key condition on a key without a sort key".into(),
            ));
        }
        let cols = order_columns(def, index);
        let dir = if query.ascending { "ASC" } else { "DESC" };
        if let Some(token) = &query.start {
            let tuple: Vec<&str> = cols.iter().map(|(c, _)| c.as_str()).collect();
            let marks = vec!["?"; cols.len()].join(", ");
            let op = if query.ascending { ">" } else { "<" };
            let values = token_values(token, &cols)?;
            // The same bound on the first column alone lets SQLite start the index range at
            // the token (a row-value comparison alone is a filter: every page would walk the
            // partition from its start).
            let first_op = if query.ascending { ">=" } else { "<=" };
            sql.push_str(&format!(" AND {} {first_op} ?", tuple[0]));
            params.push(values[0].clone());
            sql.push_str(&format!(" AND ({}) {op} ({marks})", tuple.join(", ")));
            params.extend(values);
        }
        let order: Vec<String> = cols.iter().map(|(c, _)| format!("{c} {dir}")).collect();
        sql.push_str(&format!(
            " ORDER BY {} LIMIT {}",
            order.join(", "),
            query.limit + 1
        ));
        Ok(PageSql {
            sql,
            params,
            limit: query.limit,
            def,
            index,
        })
    }

    /// Removes the items whose TTL attribute (epoch seconds) is before `now`, as DynamoDB's
    /// TTL does on its own, so a long-running local host does not keep every dedupe mark and
    /// idempotency record it ever wrote. Readers check expiry themselves, so an item past its
    /// time counts as absent whether or not it was removed yet. Rows go in batches of
    /// [`EXPIRY_BATCH`], each its own short transaction, so writers wait at most one batch.
    /// Returns how many items were removed.
    pub async fn expire(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut removed = 0;
        for table in Table::ALL {
            let Some(attr) = table.def().ttl_attr else {
                continue;
            };
            let quoted = quote(&prefixed(&self.prefix, table));
            let statement = format!(
                "DELETE FROM {quoted} WHERE (pk, sk) IN (SELECT pk, sk FROM {quoted} \
                 WHERE json_extract(attrs, '$.{attr}') < ?1 LIMIT {EXPIRY_BATCH})"
            );
            loop {
                let log = Arc::clone(&self.log);
                let statement = statement.clone();
                let deleted = self
                    .with_conn(move |c| {
                        let deleted = c.execute(&statement, [now.timestamp()]).map_err(map_err)?;
                        if deleted > 0 {
                            log.committed();
                        }
                        Ok(deleted)
                    })
                    .await?;
                removed += deleted as u64;
                if deleted < EXPIRY_BATCH {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        Ok(removed)
    }

    /// Writes a raw row, bypassing conditions: for tests that need data shaped as an older
    /// version of shopsync left it.
    pub async fn put_raw(&self, table: Table, item: Item) -> Result<(), StoreError> {
        self.put(table, item, None).await
    }
}

/// One page of a query, ready to run.
struct PageSql {
    sql: String,
    params: Vec<SqlValue>,
    limit: u32,
    def: &'static TableDef,
    index: Option<&'static IndexDef>,
}

impl PageSql {
    fn run(&self, conn: &Connection) -> Result<Page, StoreError> {
        run_page(
            conn,
            &self.sql,
            self.params.clone(),
            self.limit,
            self.def,
            self.index,
        )
    }
}

/// One row by primary key, with `sql` (one of a `TableSql`'s), read by `read`.
fn by_key<T>(
    tx: &Connection,
    sql: &str,
    key: &Key,
    read: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>, StoreError> {
    let mut stmt = tx.prepare_cached(sql).map_err(map_err)?;
    stmt.query_row([to_sql(&key.pk), sk_sql(key)], read)
        .optional()
        .map_err(map_err)
}

fn current(tx: &Connection, sql: &TableSql, key: &Key) -> Result<Option<Item>, StoreError> {
    by_key(tx, &sql.get_item, key, |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, Option<Vec<u8>>>(1)?))
    })?
    .map(|(a, d)| read_item(a, d))
    .transpose()
}

/// The scalar attributes of an item, without its document: what a condition looks at (the
/// document can span overflow pages that a condition check has no use for).
fn current_attrs(tx: &Connection, sql: &TableSql, key: &Key) -> Result<Option<Attrs>, StoreError> {
    by_key(tx, &sql.get_attrs, key, |row| row.get::<_, String>(0))?
        .map(|a| serde_json::from_str(&a).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

fn write_put(tx: &Connection, sql: &TableSql, key: &Key, item: &Item) -> Result<(), StoreError> {
    write_row(tx, sql, &sql.put, key, item).map(|_| ())
}

/// Adds a new item's row; `false` (and nothing written) when its key is taken.
fn write_insert(
    tx: &Connection,
    sql: &TableSql,
    key: &Key,
    item: &Item,
) -> Result<bool, StoreError> {
    Ok(write_row(tx, sql, &sql.insert, key, item)? == 1)
}

/// Runs a row-writing `statement` (`put` or `insert`) for `item`; answers the rows changed.
fn write_row(
    tx: &Connection,
    sql: &TableSql,
    statement: &str,
    key: &Key,
    item: &Item,
) -> Result<usize, StoreError> {
    let attrs =
        serde_json::to_string(&item.attrs).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let mut stmt = tx.prepare_cached(statement).map_err(map_err)?;
    let no_sort_key = Scalar::S(String::new());
    let pk = Bound(Some(&key.pk));
    let sk = Bound(Some(key.sk.as_ref().unwrap_or(&no_sort_key)));
    let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(4 + sql.key_attrs.len());
    params.push(&pk);
    params.push(&sk);
    params.push(&attrs);
    params.push(&item.doc);
    let key_values: Vec<Bound<'_>> = sql
        .key_attrs
        .iter()
        .map(|a| Bound(item.attrs.get(*a)))
        .collect();
    for value in &key_values {
        params.push(value);
    }
    stmt.execute(params.as_slice()).map_err(map_err)
}

fn write_delete(tx: &Connection, sql: &TableSql, key: &Key) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(&sql.delete).map_err(map_err)?;
    stmt.execute([to_sql(&key.pk), sk_sql(key)])
        .map_err(map_err)?;
    Ok(())
}

/// The columns an index ends with after its keys: the table's key, so a query's order (the
/// index's sort key, then the item's key, as pages resume) is the index's own and SQLite
/// reads rows in order instead of sorting every answer in a temporary b-tree. Measured on a
/// 10k import: a product lookup cost about 37k instructions with the sort, most of it
/// building the sorter.
const INDEX_ORDER_SUFFIX: &str = ", pk, sk)";

/// An index's physical name: its table's, then `__`, then its own.
fn index_name(physical: &str, index: &IndexDef) -> String {
    format!("{physical}__{}", index.name)
}

/// An index's statement in the current form: its keys, then the item's key (see
/// `INDEX_ORDER_SUFFIX`); a sparse index (see `IndexDef::sparse`) covers only the rows that
/// have its keys, so writing an item without them costs no index entry. (A query always names
/// the index's partition key and asks for its sort key to be present, which is how SQLite
/// knows a partial index answers it, and what keeps a dense index's answers sparse.)
fn index_ddl(physical: &str, index: &IndexDef) -> String {
    let mut keys = vec![key_column(index.key.pk.name)];
    if let Some(sk) = index.key.sk {
        keys.push(key_column(sk.name));
    }
    let rows = if index.sparse {
        let present: Vec<String> = keys.iter().map(|k| format!("{k} IS NOT NULL")).collect();
        format!(" WHERE {}", present.join(" AND "))
    } else {
        String::new()
    };
    format!(
        "CREATE INDEX {} ON {} ({}{INDEX_ORDER_SUFFIX}{rows}",
        quote(&index_name(physical, index)),
        quote(physical),
        keys.join(", "),
    )
}

/// Adds the key columns (see `key_column`) a table made by an earlier release lacks, each
/// filled from every row's attributes as the index used to read them.
fn add_key_columns(tx: &Connection, physical: &str, def: &TableDef) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare(&format!(
            "SELECT name FROM pragma_table_info({})",
            sql_text(physical)
        ))
        .map_err(map_err)?;
    let present: HashSet<String> = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(map_err)?
        .collect::<Result<_, _>>()
        .map_err(map_err)?;
    drop(stmt);
    let missing: Vec<&str> = index_key_attrs(def)
        .into_iter()
        .filter(|attr| !present.contains(&format!("{KEY_COLUMN_PREFIX}{attr}")))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let table = quote(physical);
    for attr in &missing {
        tx.execute_batch(&format!(
            "ALTER TABLE {table} ADD COLUMN {}",
            key_column(attr)
        ))
        .map_err(map_err)?;
    }
    let fills: Vec<String> = missing
        .iter()
        .map(|attr| {
            format!(
                "{} = json_extract(attrs, {})",
                key_column(attr),
                sql_text(&format!("$.{attr}"))
            )
        })
        .collect();
    tx.execute_batch(&format!("UPDATE {table} SET {}", fills.join(", ")))
        .map_err(map_err)
}

/// A string as an SQL literal.
fn sql_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Whether an index's stored statement is of the current form: one made by an earlier
/// release (without the item's key, or a sparse index covering every row) is rebuilt by the
/// migration.
fn is_current_index(sql: &str, physical: &str, index: &IndexDef) -> bool {
    sql.trim() == index_ddl(physical, index)
}

fn meta_of(def: &TableDef) -> TableMeta {
    let mut attr_types = BTreeMap::new();
    for k in std::iter::once(def.key).chain(def.indexes.iter().map(|i| i.key)) {
        for a in std::iter::once(k.pk).chain(k.sk) {
            attr_types.insert(a.name.to_owned(), a.kind);
        }
    }
    TableMeta {
        pk: def.key.pk.name.to_owned(),
        sk: def.key.sk.map(|s| s.name.to_owned()),
        attr_types,
        ttl_attr: def.ttl_attr.map(str::to_owned),
    }
}

fn save_meta(tx: &Connection, physical: &str, meta: &TableMeta) -> Result<(), StoreError> {
    let json = serde_json::to_string(meta).map_err(|e| StoreError::Invalid(e.to_string()))?;
    tx.execute(
        &format!("INSERT OR REPLACE INTO {META_TABLE} (name, definition) VALUES (?1, ?2)"),
        [physical, &json],
    )
    .map_err(map_err)?;
    Ok(())
}

fn load_meta(conn: &Connection, physical: &str) -> Result<Option<TableMeta>, StoreError> {
    let json: Option<String> = conn
        .query_row(
            &format!("SELECT definition FROM {META_TABLE} WHERE name = ?1"),
            [physical],
            |r| r.get(0),
        )
        .optional()
        .map_err(map_err)?;
    json.map(|j| {
        serde_json::from_str(&j)
            .map_err(|e| StoreError::Corrupt(format!("table meta of {physical}: {e}")))
    })
    .transpose()
}

/// The attributes an index's SQL covers, in order (e.g. `["status", "created_at"]`), as key
/// columns (see `key_column`) or, in an index made by an earlier release, as json paths; its
/// `WHERE` clause (which names them again) is not read.
fn index_attrs(sql: &str) -> Vec<String> {
    let columns = sql.split(" WHERE ").next().unwrap_or(sql);
    let (marker, end) = if columns.contains("'$.") {
        ("'$.".to_owned(), '\'')
    } else {
        (format!("\"{KEY_COLUMN_PREFIX}"), '"')
    };
    columns
        .split(marker.as_str())
        .skip(1)
        .filter_map(|rest| rest.split(end).next().map(str::to_owned))
        .collect()
}

/// The ordering columns of a query and the values of the last item in that order.
fn order_columns(def: &TableDef, index: Option<&IndexDef>) -> Vec<(String, Option<&'static str>)> {
    let mut cols = Vec::new();
    if let Some(ix) = index {
        if let Some(sk) = ix.key.sk {
            cols.push((key_column(sk.name), Some(sk.name)));
        }
    }
    cols.push(("pk".to_owned(), Some(def.key.pk.name)));
    cols.push(("sk".to_owned(), def.key.sk.map(|s| s.name)));
    cols
}

fn token_values(
    token: &PageToken,
    cols: &[(String, Option<&'static str>)],
) -> Result<Vec<SqlValue>, StoreError> {
    let attrs = token
        .decode()
        .ok_or_else(|| StoreError::Invalid("malformed page token".into()))?;
    cols.iter()
        .map(|(_, attr)| match attr {
            Some(a) => attrs
                .get(*a)
                .map(to_sql)
                .ok_or_else(|| StoreError::Invalid("page token does not fit this query".into())),
            None => Ok(SqlValue::Text(String::new())),
        })
        .collect()
}

fn last_key_attrs(def: &TableDef, index: Option<&IndexDef>, item: &Item) -> Attrs {
    let mut names = vec![Some(def.key.pk.name), def.key.sk.map(|s| s.name)];
    if let Some(ix) = index {
        names.push(Some(ix.key.pk.name));
        names.push(ix.key.sk.map(|s| s.name));
    }
    names
        .into_iter()
        .flatten()
        .filter_map(|n| item.attrs.get(n).map(|v| (n.to_owned(), v.clone())))
        .collect()
}

fn run_page(
    conn: &Connection,
    sql: &str,
    params: Vec<SqlValue>,
    limit: u32,
    def: &TableDef,
    index: Option<&IndexDef>,
) -> Result<Page, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    let rows = stmt
        .query_map(params_from_iter(params), |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Option<Vec<u8>>>(1)?))
        })
        .map_err(map_err)?;
    let mut items = Vec::new();
    for row in rows {
        let (a, d) = row.map_err(map_err)?;
        items.push(read_item(a, d)?);
    }
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items
            .last()
            .map(|last| PageToken::encode(&last_key_attrs(def, index, last)))
    } else {
        None
    };
    Ok(Page { items, next })
}

/// Writes one transaction's writes, all or nothing: every condition is checked, then (all
/// holding) the writes are made. A put of a new item (`ItemAbsent`) is not read first: its
/// insert is its check (the key's own index answers it), and it is made before any other
/// write of the group, so when its key turns out to be taken, undoing the group is deleting
/// the rows it had just added. A refused group answers `TransactionCanceled` with a reason per
/// write, as though every condition had been read.
fn write_group(
    tx: &Connection,
    statements: &[TableSql],
    writes: &[WriteOp],
) -> Result<(), StoreError> {
    let plan = match check_writes(tx, statements, writes, Reads::AllButInserts) {
        Ok(plan) => plan,
        Err(StoreError::TransactionCanceled { .. }) => {
            return Err(explain_refusal(
                tx,
                statements,
                writes,
                "a transaction refused on its conditions passed them when read again",
            ));
        }
        Err(e) => return Err(e),
    };
    let inserts_first = plan
        .iter()
        .enumerate()
        .filter(|(_, p)| p.insert)
        .chain(plan.iter().enumerate().filter(|(_, p)| !p.insert));
    let mut inserted: Vec<&Planned> = Vec::new();
    for (index, planned) in inserts_first {
        let sql = sql_of(statements, planned.table)?;
        match &writes[index] {
            WriteOp::Put { item, .. } if planned.insert => {
                if write_insert(tx, sql, &planned.key, item)? {
                    inserted.push(planned);
                } else {
                    for done in inserted {
                        write_delete(tx, sql_of(statements, done.table)?, &done.key)?;
                    }
                    return Err(explain_refusal(
                        tx,
                        statements,
                        writes,
                        &format!(
                            "an insert into {} found its key taken that a read then found free",
                            sql.name
                        ),
                    ));
                }
            }
            WriteOp::Put { item, .. } => write_put(tx, sql, &planned.key, item)?,
            WriteOp::Delete { .. } => write_delete(tx, sql, &planned.key)?,
            WriteOp::Check { .. } => {}
        }
    }
    Ok(())
}

/// The answer to a refused group, with every condition read (the inserts' too), as the
/// caller's explanation needs; `inconsistent` says what happened should they all hold now.
fn explain_refusal(
    tx: &Connection,
    statements: &[TableSql],
    writes: &[WriteOp],
    inconsistent: &str,
) -> StoreError {
    match check_writes(tx, statements, writes, Reads::All) {
        Err(e) => e,
        Ok(_) => StoreError::Unavailable(inconsistent.to_owned()),
    }
}

/// Which conditions `check_writes` reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// Every one.
    All,
    /// All but those of puts of new items (`ItemAbsent`), which their inserts check.
    AllButInserts,
}

/// One checked write: its table and key, and whether it is a put of a new item whose
/// condition its insert checks.
struct Planned {
    table: Table,
    key: Key,
    insert: bool,
}

/// Checks a transaction's writes (shape, each item once, conditions) without writing; a
/// failed condition answers `TransactionCanceled` with a reason per write.
fn check_writes(
    tx: &Connection,
    statements: &[TableSql],
    writes: &[WriteOp],
    reads: Reads,
) -> Result<Vec<Planned>, StoreError> {
    let mut plan: Vec<Planned> = Vec::with_capacity(writes.len());
    let mut reasons = Vec::with_capacity(writes.len());
    let mut failed = false;
    for write in writes {
        let (table, key, condition, put) = match write {
            WriteOp::Put {
                table,
                item,
                condition,
            } => (
                *table,
                validate_item(table.def(), item)?,
                condition.as_ref(),
                true,
            ),
            WriteOp::Delete {
                table,
                key,
                condition,
            } => (*table, key.clone(), condition.as_ref(), false),
            WriteOp::Check {
                table,
                key,
                condition,
            } => (*table, key.clone(), Some(condition), false),
        };
        let sql = sql_of(statements, table)?;
        // A transaction holds at most 100 writes: a scan costs less than hashing each key.
        if plan.iter().any(|p| p.table == table && p.key == key) {
            return Err(StoreError::Invalid(
                "a transaction touches the same item twice".into(),
            ));
        }
        let insert = put
            && reads == Reads::AllButInserts
            && matches!(condition, Some(Condition::ItemAbsent));
        // Only a condition needs the current item, and only its attributes; the whole item
        // is read when the condition fails, for the caller's explanation.
        let ok = match condition {
            None => true,
            Some(_) if insert => true,
            Some(cond) => {
                let attrs = current_attrs(tx, sql, &key)?;
                cond.holds(attrs.as_ref(), table.def().key.pk.name)
            }
        };
        reasons.push(if ok {
            CancelReason::None
        } else {
            CancelReason::ConditionFailed(current(tx, sql, &key)?)
        });
        failed |= !ok;
        plan.push(Planned { table, key, insert });
    }
    if failed {
        return Err(StoreError::TransactionCanceled { reasons });
    }
    Ok(plan)
}

#[async_trait]
impl ItemStore for SqliteStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn physical_name(&self, table: Table) -> String {
        sql_of(&self.statements, table)
            .map(|sql| sql.name.clone())
            .unwrap_or_else(|_| prefixed(&self.prefix, table))
    }

    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, StoreError> {
        let statements = Arc::clone(&self.statements);
        let key = key.clone();
        self.with_conn(move |c| current(c, sql_of(&statements, table)?, &key))
            .await
    }

    async fn put(
        &self,
        table: Table,
        item: Item,
        condition: Option<Condition>,
    ) -> Result<(), StoreError> {
        self.transact(vec![WriteOp::Put {
            table,
            item,
            condition,
        }])
        .await
        .map_err(single_error)
    }

    async fn delete(
        &self,
        table: Table,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<(), StoreError> {
        self.transact(vec![WriteOp::Delete {
            table,
            key: key.clone(),
            condition,
        }])
        .await
        .map_err(single_error)
    }

    async fn transact(&self, mut writes: Vec<WriteOp>) -> Result<(), StoreError> {
        check_transaction_size(writes.len())?;
        pack_writes(&mut writes)?;
        // Group commit: the transaction joins the queue; whoever holds the connection next
        // commits every queued transaction in one SQLite transaction (each still checked and
        // answered on its own), so concurrent writers share one commit and its log pages.
        let (answer, mut answered) = tokio::sync::oneshot::channel();
        lock_queue(&self.queued).push((writes, answer));
        let mut conn = self.conn.lock().await;
        if let Ok(result) = answered.try_recv() {
            // Committed (or refused) by the holder before us.
            return result;
        }
        let batch = std::mem::take(&mut *lock_queue(&self.queued));
        // A caller that gave up waiting (its future dropped) has its transaction dropped too,
        // never committed later behind its back.
        let (groups, answers): (Vec<Vec<WriteOp>>, Vec<_>) = batch
            .into_iter()
            .filter(|(_, answer)| !answer.is_closed())
            .unzip();
        let written = groups.iter().map(Vec::len).sum();
        match self.write_groups(&mut conn, &groups) {
            Ok(results) => {
                for (answer, result) in answers.into_iter().zip(results) {
                    let _ = answer.send(result);
                }
                self.checkpointer.committed(written);
            }
            Err(e) => {
                for answer in answers {
                    let _ = answer.send(Err(e.clone()));
                }
            }
        }
        drop(conn);
        answered.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the transaction's commit was abandoned".into(),
            ))
        })
    }

    async fn transact_each(
        &self,
        mut groups: Vec<Vec<WriteOp>>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        // A group whose document cannot be stored is refused on its own.
        let mut refused = Vec::new();
        for (index, group) in groups.iter_mut().enumerate() {
            if let Err(e) = pack_writes(group) {
                refused.push((index, e));
            }
        }
        if !refused.is_empty() {
            let skipped: HashSet<usize> = refused.iter().map(|(index, _)| *index).collect();
            let mut index = 0;
            groups.retain(|_| {
                index += 1;
                !skipped.contains(&(index - 1))
            });
        }
        let written = groups.iter().map(Vec::len).sum();
        let mut conn = self.conn.lock().await;
        let mut answers = self.write_groups(&mut conn, &groups)?;
        drop(conn);
        self.checkpointer.committed(written);
        for (index, e) in refused {
            answers.insert(index, Err(e));
        }
        Ok(answers)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.sync_log().await
    }

    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        let page = self.page_sql(query)?;
        self.with_conn(move |c| page.run(c)).await
    }

    async fn query_each(&self, queries: &[Query]) -> Result<Vec<Page>, StoreError> {
        let pages = queries
            .iter()
            .map(|q| self.page_sql(q))
            .collect::<Result<Vec<_>, _>>()?;
        self.with_reader(move |c| {
            // One read transaction: the shared locks are taken once for every query.
            let tx = c.transaction().map_err(map_err)?;
            let answers = pages
                .iter()
                .map(|page| page.run(&tx))
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit().map_err(map_err)?;
            Ok(answers)
        })
        .await
    }

    async fn scan(
        &self,
        table: Table,
        limit: u32,
        start: Option<&PageToken>,
    ) -> Result<Page, StoreError> {
        let def = table.def();
        let cols = order_columns(def, None);
        let mut sql = format!(
            "SELECT attrs, doc FROM {}",
            quote(&self.physical_name(table))
        );
        let mut params = Vec::new();
        if let Some(token) = start {
            sql.push_str(" WHERE (pk, sk) > (?, ?)");
            params = token_values(token, &cols)?;
        }
        sql.push_str(&format!(
            " ORDER BY pk, sk LIMIT {}",
            limit.clamp(1, 1000) + 1
        ));
        let limit = limit.clamp(1, 1000);
        self.with_conn(move |c| run_page(c, &sql, params, limit, def, None))
            .await
    }

    async fn expire_ttl(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.expire(now).await
    }

    async fn describe_table(&self, def: &TableDef) -> Result<Option<TableState>, StoreError> {
        let physical = prefixed(&self.prefix, table_of(def)?);
        let def = *def;
        self.with_conn(move |c| {
            let exists: Option<String> = c
                .query_row("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1", [&physical], |r| r.get(0))
                .optional()
                .map_err(map_err)?;
            if exists.is_none() {
                return Ok(None);
            }
            let meta = load_meta(c, &physical)?
                .ok_or_else(|| StoreError::Corrupt(format!("table {physical} exists without a recorded definition")))?;
            let mut stmt = c
                .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL ORDER BY name")
                .map_err(map_err)?;
            let rows = stmt.query_map([&physical], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(map_err)?;
            let mut indexes = Vec::new();
            let mut outdated_indexes = Vec::new();
            let index_prefix = format!("{physical}__");
            for row in rows {
                let (name, sql) = row.map_err(map_err)?;
                let attrs = index_attrs(&sql);
                let short = name.strip_prefix(&index_prefix).unwrap_or(&name).to_owned();
                let defined = def.indexes.iter().find(|ix| ix.name == short);
                if defined.is_some_and(|ix| !is_current_index(&sql, &physical, ix)) {
                    outdated_indexes.push(short.clone());
                }
                let pk = attrs.first().cloned().unwrap_or_default();
                indexes.push((short, pk, attrs.get(1).cloned()));
            }
            Ok(Some(TableState {
                physical_name: physical,
                key: (meta.pk, meta.sk),
                attr_types: meta.attr_types.into_iter().collect(),
                indexes,
                outdated_indexes,
                ttl_attr: meta.ttl_attr,
            }))
        })
        .await
    }

    async fn create_table(&self, def: &TableDef) -> Result<(), StoreError> {
        let table = table_of(def)?;
        let physical = prefixed(&self.prefix, table);
        // A rowid table: documents (often one to a few KiB) fill table pages whole and stay
        // out of the key index. A table of small records read only by key is clustered on
        // its key instead (WITHOUT ROWID): one b-tree to write, not two. (Stores made before
        // kept WITHOUT ROWID tables throughout; every statement here works on both.)
        let layout = match table {
            Table::IdempotencyRecords => " WITHOUT ROWID",
            _ => "",
        };
        let def = *def;
        let ddl_log = Arc::clone(&self.log);
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(map_err)?;
            let key_columns: String = index_key_attrs(&def)
                .iter()
                .map(|attr| format!(", {}", key_column(attr)))
                .collect();
            tx.execute_batch(&format!(
                "CREATE TABLE {} (pk NOT NULL, sk NOT NULL, attrs TEXT NOT NULL, doc BLOB{key_columns}, PRIMARY KEY (pk, sk)){layout}",
                quote(&physical)
            ))
            .map_err(map_err)?;
            for index in def.indexes {
                tx.execute_batch(&index_ddl(&physical, index)).map_err(map_err)?;
            }
            save_meta(&tx, &physical, &meta_of(&def))?;
            tx.commit().map_err(map_err)?;
            ddl_log.committed();
            Ok(())
        })
        .await
    }

    async fn create_index(&self, def: &TableDef, index: &IndexDef) -> Result<(), StoreError> {
        let physical = prefixed(&self.prefix, table_of(def)?);
        let index = *index;
        let def = *def;
        let ddl_log = Arc::clone(&self.log);
        self.with_conn(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(map_err)?;
            // A table made before its index keys had columns gets them, filled from each
            // row's attributes; an outdated index of the same name is rebuilt in the current
            // form, in the same transaction (both are derived from the rows' attributes;
            // nothing else changes).
            add_key_columns(&tx, &physical, &def)?;
            tx.execute_batch(&format!(
                "DROP INDEX IF EXISTS {}",
                quote(&index_name(&physical, &index))
            ))
            .map_err(map_err)?;
            tx.execute_batch(&index_ddl(&physical, &index))
                .map_err(map_err)?;
            let mut meta = load_meta(&tx, &physical)?
                .ok_or_else(|| StoreError::TableMissing(physical.clone()))?;
            for a in std::iter::once(index.key.pk).chain(index.key.sk) {
                meta.attr_types.insert(a.name.to_owned(), a.kind);
            }
            save_meta(&tx, &physical, &meta)?;
            tx.commit().map_err(map_err)?;
            ddl_log.committed();
            Ok(())
        })
        .await
    }

    async fn enable_ttl(&self, def: &TableDef, attr: &str) -> Result<(), StoreError> {
        let physical = prefixed(&self.prefix, table_of(def)?);
        let attr = attr.to_owned();
        self.with_conn(move |c| {
            let mut meta = load_meta(c, &physical)?
                .ok_or_else(|| StoreError::TableMissing(physical.clone()))?;
            meta.ttl_attr = Some(attr);
            save_meta(c, &physical, &meta)
        })
        .await
    }

    async fn backup_table(&self, _def: &TableDef) -> Result<String, StoreError> {
        let dir = self.dir.join("backups");
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let path = dir.join(format!(
            "shopsync-{}.sqlite3",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ")
        ));
        let target = path.to_string_lossy().into_owned();
        let shown = target.clone();
        self.with_conn(move |c| {
            c.execute("VACUUM INTO ?1", [&target])
                .map(|_| ())
                .map_err(map_err)
        })
        .await?;
        Ok(shown)
    }
}

fn table_of(def: &TableDef) -> Result<Table, StoreError> {
    Table::named(def).ok_or_else(|| StoreError::Invalid(format!("unknown table {}", def.name)))
}

/// A one-write transaction's failure, as the single-item call reports it.
fn single_error(e: StoreError) -> StoreError {
    match e {
        StoreError::TransactionCanceled { mut reasons } if reasons.len() == 1 => {
            match reasons.remove(0) {
                CancelReason::ConditionFailed(current) => StoreError::ConditionFailed {
                    current: current.map(Box::new),
                },
                other => StoreError::TransactionCanceled {
                    reasons: vec![other],
                },
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopsync_store::schema::{KeyAttr, KeyType};

    fn sample(attr: KeyAttr) -> Scalar {
        match attr.kind {
            KeyType::S => Scalar::S("x".into()),
            KeyType::N => Scalar::N(7),
        }
    }

    /// A store in a fresh directory with every table made (the directory lives as long as
    /// the returned guard).
    async fn migrated_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path(), "t_").expect("open");
        shopsync_store::migrate::migrate(&store, Default::default())
            .await
            .expect("migrate");
        (dir, store)
    }

    /// Every document reads back as it was written, whichever way it was stored: small ones
    /// and ones compression does not shrink as they are, others compressed, one starting
    /// with the marker byte always compressed.
    #[test]
    fn documents_read_back_as_written_however_they_are_stored() {
        let mut noise = 0x2545_f491_4f6c_dd1d_u64;
        let mut random = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    noise ^= noise << 13;
                    noise ^= noise >> 7;
                    noise ^= noise << 17;
                    noise as u8
                })
                .collect()
        };
        let json = |n: usize| -> Vec<u8> {
            let mut doc = b"{\"variants\":[".to_vec();
            let mut i = 0;
            while doc.len() < n {
                doc.extend_from_slice(
                    format!("{{\"sku\":\"SKU-{i}\",\"price\":\"1{i}.00\"}},").as_bytes(),
                );
                i += 1;
            }
            doc.extend_from_slice(b"{}]}");
            doc
        };
        let mut marked = random(1000);
        marked[0] = PACKED_DOC;
        let cases: Vec<(Vec<u8>, bool)> = vec![
            (json(100), false),
            (json(4000), true),
            (json(512 * 1024), true),
            (json(3000), true),
            (random(2000), false),
            (marked, true),
            (Vec::new(), false),
        ];
        for (doc, packed) in cases {
            let stored = pack_doc(doc.clone()).expect("pack");
            assert_eq!(
                stored.first() == Some(&PACKED_DOC),
                packed,
                "{} bytes",
                doc.len()
            );
            if packed && doc.first() != Some(&PACKED_DOC) {
                assert!(stored.len() < doc.len());
            }
            assert_eq!(unpack_doc(stored).expect("unpack"), doc);
        }
    }

    /// The store's connections write their log through the gathering VFS and keep pages in
    /// the wrapped page cache (see `vfs` and `pcache`).
    #[tokio::test]
    async fn the_store_writes_its_log_through_the_gathering_vfs() {
        let (_dir, store) = migrated_store().await;
        assert!(crate::pcache::install());
        let conn = store.conn.lock().await;
        let (received, issued) = crate::vfs::log_writes(&conn).expect("the log is gathered");
        assert!(
            issued > 0 && issued < received,
            "{issued} writes for {received}"
        );
    }

    /// Every page an index answers (either direction, with a sort-key condition, resumed
    /// from a token) is read in the index's own order: SQLite never sorts the rows in a
    /// temporary b-tree, which cost most of a lookup's time.
    #[tokio::test]
    async fn index_queries_read_rows_in_index_order_without_sorting() {
        let (_dir, store) = migrated_store().await;
        let conn = store.conn.lock().await;
        let mut checked = 0;
        for table in Table::ALL {
            let def = table.def();
            for index in def.indexes {
                let mut token = Attrs::new();
                for attr in [
                    Some(def.key.pk),
                    def.key.sk,
                    Some(index.key.pk),
                    index.key.sk,
                ]
                .into_iter()
                .flatten()
                {
                    token.insert(attr.name.to_owned(), sample(attr));
                }
                for (ascending, resumed) in
                    [(true, false), (false, false), (true, true), (false, true)]
                {
                    let mut query = Query::new(table, Some(index.name), sample(index.key.pk));
                    query.ascending = ascending;
                    query.sk = index.key.sk.map(|sk| SortCondition::Ge(sample(sk)));
                    query.start = resumed.then(|| PageToken::encode(&token));
                    let page = store.page_sql(&query).expect("page sql");
                    let mut stmt = conn
                        .prepare(&format!("EXPLAIN QUERY PLAN {}", page.sql))
                        .expect("explain");
                    let plan: Vec<String> = stmt
                        .query_map(params_from_iter(page.params.clone()), |row| row.get(3))
                        .expect("plan")
                        .collect::<Result<_, _>>()
                        .expect("plan rows");
                    let plan = plan.join("; ");
                    assert!(
                        plan.contains(&format!("USING INDEX t_{}__{}", def.name, index.name)),
                        "{}.{}: {plan}",
                        def.name,
                        index.name
                    );
                    assert!(
                        !plan.contains("TEMP B-TREE"),
                        "{}.{} sorts its rows: {plan}",
                        def.name,
                        index.name
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 4 * 15, "checked {checked} query shapes");
    }

    /// An index as releases before key columns made it: on `json_extract(attrs, ...)`.
    fn json_index_ddl(physical: &str, index: &IndexDef) -> String {
        let mut ddl = index_ddl(physical, index);
        for attr in std::iter::once(index.key.pk).chain(index.key.sk) {
            ddl = ddl.replace(
                &key_column(attr.name),
                &format!("json_extract(attrs, '$.{}')", attr.name),
            );
        }
        ddl
    }

    /// A store whose tables were made before index keys had columns (rows holding every key
    /// only in their attributes, indexes on `json_extract`) is migrated: each table gains the
    /// columns, filled from its rows, and every index is rebuilt on them; the rows written
    /// before are found through every index, a row without an index's keys through none,
    /// and writes after the migration are found too.
    #[tokio::test]
    async fn a_store_made_before_key_columns_is_migrated_to_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path(), "t_").expect("open");
        let indexed: Vec<Table> = Table::ALL
            .into_iter()
            .filter(|t| !t.def().indexes.is_empty())
            .collect();
        assert!(indexed.len() >= 5, "{} indexed tables", indexed.len());
        let row = |def: &TableDef, keyed: bool| -> Attrs {
            let mut attrs = Attrs::new();
            for attr in std::iter::once(def.key.pk).chain(def.key.sk) {
                let value = match (attr.kind, keyed) {
                    (KeyType::S, true) => Scalar::S("keyed".into()),
                    (KeyType::S, false) => Scalar::S("bare".into()),
                    (KeyType::N, true) => Scalar::N(1),
                    (KeyType::N, false) => Scalar::N(2),
                };
                attrs.insert(attr.name.to_owned(), value);
            }
            attrs.insert("version".into(), Scalar::N(3));
            if keyed {
                for index in def.indexes {
                    for attr in std::iter::once(index.key.pk).chain(index.key.sk) {
                        attrs
                            .entry(attr.name.to_owned())
                            .or_insert_with(|| sample(attr));
                    }
                }
            }
            attrs
        };
        {
            let conn = store.conn.lock().await;
            for table in &indexed {
                let def = table.def();
                let physical = prefixed("t_", *table);
                conn.execute_batch(&format!(
                    "CREATE TABLE {} (pk NOT NULL, sk NOT NULL, attrs TEXT NOT NULL, doc BLOB, PRIMARY KEY (pk, sk))",
                    quote(&physical)
                ))
                .expect("legacy table");
                for index in def.indexes {
                    conn.execute_batch(&json_index_ddl(&physical, index))
                        .expect("legacy index");
                }
                save_meta(&conn, &physical, &meta_of(def)).expect("meta");
                for keyed in [true, false] {
                    let attrs = row(def, keyed);
                    let key = Item {
                        attrs: attrs.clone(),
                        doc: None,
                    }
                    .key(def)
                    .expect("key");
                    conn.execute(
                        &format!(
                            "INSERT INTO {} (pk, sk, attrs) VALUES (?1, ?2, ?3)",
                            quote(&physical)
                        ),
                        rusqlite::params![
                            to_sql(&key.pk),
                            sk_sql(&key),
                            serde_json::to_string(&attrs).expect("json")
                        ],
                    )
                    .expect("legacy row");
                }
            }
        }
        let report = shopsync_store::migrate::migrate(&store, Default::default())
            .await
            .expect("migrate");
        assert!(report.drift.is_empty(), "{:?}", report.drift);
        let rebuilt = report
            .changes
            .iter()
            .filter(|c| matches!(c, shopsync_store::migrate::Change::RebuildIndex(..)))
            .count();
        let expected: usize = indexed.iter().map(|t| t.def().indexes.len()).sum();
        assert_eq!(rebuilt, expected, "{:?}", report.changes);
        let mut found = 0;
        for table in &indexed {
            let def = table.def();
            let state = store
                .describe_table(def)
                .await
                .expect("describe")
                .expect("table");
            assert!(
                state.outdated_indexes.is_empty(),
                "{:?}",
                state.outdated_indexes
            );
            for index in def.indexes {
                let keyed = row(def, true);
                let value = |name: &str| keyed.get(name).cloned().expect("keyed row");
                let mut query = Query::new(*table, Some(index.name), value(index.key.pk.name));
                query.sk = index.key.sk.map(|sk| SortCondition::Eq(value(sk.name)));
                let page = store.query(&query).await.expect("query");
                assert_eq!(
                    page.items
                        .iter()
                        .map(|i| i.attrs.clone())
                        .collect::<Vec<_>>(),
                    vec![row(def, true)],
                    "{}.{}",
                    def.name,
                    index.name
                );
                found += 1;
            }
            // Written after the migration: found through every index too.
            let mut fresh = row(def, true);
            fresh.insert(
                def.key.pk.name.to_owned(),
                match def.key.pk.kind {
                    KeyType::S => Scalar::S("fresh".into()),
                    KeyType::N => Scalar::N(9),
                },
            );
            store
                .put(
                    *table,
                    Item {
                        attrs: fresh,
                        doc: None,
                    },
                    None,
                )
                .await
                .expect("put");
            for index in def.indexes {
                let keyed = row(def, true);
                let value = |name: &str| keyed.get(name).cloned().expect("keyed row");
                let mut query = Query::new(*table, Some(index.name), value(index.key.pk.name));
                // An index sorted by the table's key tells the two rows
                // apart by it, so it is matched on its partition alone.
                query.sk = index
                    .key
                    .sk
                    .filter(|sk| sk.name != def.key.pk.name)
                    .map(|sk| SortCondition::Eq(value(sk.name)));
                let page = store.query(&query).await.expect("query");
                assert_eq!(page.items.len(), 2, "{}.{}", def.name, index.name);
            }
        }
        assert_eq!(found, expected);
    }

    #[test]
    fn an_index_of_an_earlier_form_is_outdated() {
        let mut sparse = 0;
        for table in Table::ALL {
            let def = table.def();
            for index in def.indexes {
                let current = index_ddl("t_x", index);
                assert!(is_current_index(&current, "t_x", index), "{current}");
                assert_eq!(current.contains(" WHERE "), index.sparse, "{current}");
                sparse += usize::from(index.sparse);
                let expected: Vec<String> = std::iter::once(index.key.pk.name)
                    .chain(index.key.sk.map(|sk| sk.name))
                    .map(str::to_owned)
                    .collect();
                assert_eq!(index_attrs(&current), expected, "{current}");
                // Before sparse indexes left rows out, every row was indexed; before that,
                // the item's key did not follow the index keys.
                let dense = current
                    .split(" WHERE ")
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let unordered = dense.replace(INDEX_ORDER_SUFFIX, ")");
                let mut older = if index.sparse {
                    vec![dense, unordered]
                } else {
                    vec![unordered]
                };
                // Before the keys had columns, the index read them out of the attributes.
                older.push(json_index_ddl("t_x", index));
                for old in older {
                    assert!(!is_current_index(&old, "t_x", index), "{old}");
                    assert_eq!(index_attrs(&old), expected, "{old}");
                }
            }
        }
        assert!(sparse >= 4, "{sparse} sparse indexes");
    }
}

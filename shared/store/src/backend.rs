//! The storage port: what a backend must do, with DynamoDB's semantics.

use crate::item::{Condition, Item, Key, Page, PageToken, Query, WriteOp};
use crate::schema::{IndexDef, KeySchema, Table, TableDef};
use async_trait::async_trait;

/// Why a write in an atomic multi-item write was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReason {
    /// This write was fine; another one failed.
    None,
    /// Its condition failed; the current item (if any) is attached.
    ConditionFailed(Option<Item>),
    /// Another transaction touched the same item at the same time (retry).
    TransactionConflict,
    /// Another reason, with the backend's code.
    Other(String),
}

/// Storage errors. Each says whether retrying can help ([`StoreError::is_retryable`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A condition failed: an answer, not a fault. Carries the current item, if any.
    #[error("condition failed")]
    ConditionFailed {
        /// The item as it is now.
        current: Option<Box<Item>>,
    },
    /// An atomic multi-item write was cancelled; nothing was written. One reason per write.
    #[error("transaction cancelled: {reasons:?}")]
    TransactionCanceled {
        /// Why, per write, in order.
        reasons: Vec<CancelReason>,
    },
    /// The backend is throttling; retry with backoff.
    #[error("throttled by the store: {0}")]
    Throttled(String),
    /// The backend could not be reached or failed (5xx, timeout); retry with backoff.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The table does not exist (run `shopsync migrate`).
    #[error("table {0} does not exist: run `shopsync migrate`")]
    TableMissing(String),
    /// An item too large to store even compressed.
    #[error("item of {bytes} bytes is too large to store (limit {limit})")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A request the store refused as malformed (a bug, not a fault).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// Stored data that cannot be read back.
    #[error("corrupt stored item: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether the same request may succeed if retried later.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Throttled(_) | StoreError::Unavailable(_) => true,
            StoreError::TransactionCanceled { reasons } => {
                reasons
                    .iter()
                    .any(|r| matches!(r, CancelReason::TransactionConflict))
                    && !reasons
                        .iter()
                        .any(|r| matches!(r, CancelReason::ConditionFailed(_)))
            }
            _ => false,
        }
    }
}

/// The most writes one atomic multi-item write may hold (DynamoDB's limit).
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// Refuses a transaction outside 1..=[`MAX_TRANSACTION_ITEMS`] writes (both backends).
pub fn check_transaction_size(writes: usize) -> Result<(), StoreError> {
    if writes == 0 || writes > MAX_TRANSACTION_ITEMS {
        return Err(StoreError::Invalid(format!(
            "a transaction holds 1..={MAX_TRANSACTION_ITEMS} writes, not {writes}"
        )));
    }
    Ok(())
}

/// Refuses a query page size outside 1..=1000 (both backends).
pub fn check_page_size(limit: u32) -> Result<(), StoreError> {
    if limit == 0 || limit > 1000 {
        return Err(StoreError::Invalid("page size must be 1..=1000".into()));
    }
    Ok(())
}

/// What a backend holds for one table, as `migrate` compares it with the definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableState {
    /// The physical name.
    pub physical_name: String,
    /// Primary key, with owned names.
    pub key: (String, Option<String>),
    /// Key types by attribute, as the backend records them.
    pub attr_types: Vec<(String, crate::schema::KeyType)>,
    /// Indexes: name, partition key, sort key.
    pub indexes: Vec<(String, String, Option<String>)>,
    /// Indexes on the right keys whose stored form is older than the backend builds now
    /// (still correct; the migration rebuilds them).
    pub outdated_indexes: Vec<String>,
    /// TTL attribute, if enabled.
    pub ttl_attr: Option<String>,
}

/// One group's answer within [`ItemStore::transact_each`]: refusals are answers, a failing
/// store is the whole call's error.
pub fn answer_of(result: Result<(), StoreError>) -> Result<Result<(), StoreError>, StoreError> {
    match result {
        Ok(()) => Ok(Ok(())),
        Err(e @ (StoreError::TransactionCanceled { .. } | StoreError::Invalid(_))) => Ok(Err(e)),
        Err(e) => Err(e),
    }
}

/// A storage backend with DynamoDB's semantics: conditional single-item writes that return the
/// current item on failure, atomic multi-item writes, and paginated queries on keys and indexes.
#[async_trait]
pub trait ItemStore: Send + Sync {
    /// A short name for messages (`embedded`, `dynamodb`).
    fn kind(&self) -> &'static str;

    /// The physical table name of `table`.
    fn physical_name(&self, table: Table) -> String;

    /// Reads one item (strongly consistent).
    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, StoreError>;

    /// Creates or replaces an item if `condition` holds.
    async fn put(
        &self,
        table: Table,
        item: Item,
        condition: Option<Condition>,
    ) -> Result<(), StoreError>;

    /// Deletes an item if `condition` holds (deleting an absent item without one is fine).
    async fn delete(
        &self,
        table: Table,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<(), StoreError>;

    /// Applies all writes or none (at most [`MAX_TRANSACTION_ITEMS`], each item at most once).
    async fn transact(&self, writes: Vec<WriteOp>) -> Result<(), StoreError>;

    /// Applies several independent transactions, each all-or-nothing on its own, and answers
    /// each. The embedded store commits them together (one disk commit for the lot). Here,
    /// consecutive groups share a transaction up to [`MAX_TRANSACTION_ITEMS`]; when a shared
    /// one is refused, its groups are tried alone so each gets its own answer. An `Err` of
    /// the whole call answers none of them: any may or may not have landed, as when the
    /// answer to `transact` is lost.
    async fn transact_each(
        &self,
        groups: Vec<Vec<WriteOp>>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut answers = Vec::with_capacity(groups.len());
        let mut pending: Vec<Vec<WriteOp>> = Vec::new();
        let mut groups = groups.into_iter().peekable();
        while let Some(group) = groups.next() {
            pending.push(group);
            let size: usize = pending.iter().map(Vec::len).sum();
            let next_fits = groups
                .peek()
                .is_some_and(|next| size + next.len() <= MAX_TRANSACTION_ITEMS);
            if next_fits {
                continue;
            }
            let batch = std::mem::take(&mut pending);
            if batch.len() == 1 || size > MAX_TRANSACTION_ITEMS {
                for writes in batch {
                    answers.push(answer_of(self.transact(writes).await)?);
                }
                continue;
            }
            let count = batch.len();
            match self.transact(batch.concat()).await {
                Ok(()) => answers.extend((0..count).map(|_| Ok(()))),
                // Refused as a whole (a failed condition, or two groups touching one item):
                // each group alone says whether it is the one.
                Err(StoreError::TransactionCanceled { .. } | StoreError::Invalid(_)) => {
                    for writes in batch {
                        answers.push(answer_of(self.transact(writes).await)?);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(answers)
    }

    /// One page of a query.
    async fn query(&self, query: &Query) -> Result<Page, StoreError>;

    /// The first page of each query, in order. The default asks them one after another; the
    /// embedded store answers them all within one read transaction (a lookup per product of
    /// a batch cost a lock round of system calls each).
    async fn query_each(&self, queries: &[Query]) -> Result<Vec<Page>, StoreError> {
        let mut pages = Vec::with_capacity(queries.len());
        for query in queries {
            pages.push(self.query(query).await?);
        }
        Ok(pages)
    }

    /// The items at `keys` of `table`, in order (`None`: no such item), read consistently.
    /// The default asks them as base-table lookups through [`ItemStore::query_each`];
    /// DynamoDB asks BatchGetItem, 100 keys a request.
    async fn get_each(&self, table: Table, keys: &[Key]) -> Result<Vec<Option<Item>>, StoreError> {
        let queries: Vec<Query> = keys
            .iter()
            .map(|key| {
                let mut query = Query::new(table, None, key.pk.clone());
                query.sk = key.sk.clone().map(crate::item::SortCondition::Eq);
                query.limit = 1;
                query
            })
            .collect();
        let pages = self.query_each(&queries).await?;
        Ok(pages
            .into_iter()
            .map(|page| page.items.into_iter().next())
            .collect())
    }

    /// One page of a full scan of a table.
    async fn scan(
        &self,
        table: Table,
        limit: u32,
        start: Option<&PageToken>,
    ) -> Result<Page, StoreError>;

    /// Makes every write answered so far durable. Callers flush before they acknowledge
    /// anything to someone outside (a webhook's 200, a command's exit). A no-op where every
    /// write is durable when it is answered (DynamoDB).
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Removes the items whose TTL attribute (epoch seconds) is before `now`, and says how
    /// many. A no-op where the backend expires items itself (DynamoDB's TTL). Readers check
    /// expiry themselves, so this only reclaims space.
    async fn expire_ttl(&self, _now: chrono::DateTime<chrono::Utc>) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// The state of a table, or `None` if it does not exist.
    async fn describe_table(&self, def: &TableDef) -> Result<Option<TableState>, StoreError>;

    /// Creates a table with its indexes and TTL.
    async fn create_table(&self, def: &TableDef) -> Result<(), StoreError>;

    /// Adds a missing index to an existing table (the embedded store also rebuilds an
    /// outdated one of the same name with it).
    async fn create_index(&self, def: &TableDef, index: &IndexDef) -> Result<(), StoreError>;

    /// Enables TTL on an existing table.
    async fn enable_ttl(&self, def: &TableDef, attr: &str) -> Result<(), StoreError>;

    /// Takes a backup of a table before it is changed; returns where it is.
    async fn backup_table(&self, def: &TableDef) -> Result<String, StoreError>;
}

/// The physical name for a logical table under a prefix.
pub fn prefixed(prefix: &str, table: Table) -> String {
    format!("{prefix}{}", table.name())
}

/// Whether `key` is the primary key of `def` (names only).
pub fn key_names(key: &KeySchema) -> (String, Option<String>) {
    (key.pk.name.to_owned(), key.sk.map(|s| s.name.to_owned()))
}

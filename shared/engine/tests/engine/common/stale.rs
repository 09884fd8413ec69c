//! A store whose index reads lag behind its tables, as DynamoDB's global secondary indexes
//! may (moto's and the embedded store's never do): once frozen, every query on an index is
//! answered from a copy of the tables taken at that moment, while reads by key, queries on a
//! table's own key, scans and every write go to the live store.

use async_trait::async_trait;
use shopsync_store::item::{Condition, Item, Key, Page, PageToken, Query, WriteOp};
use shopsync_store::schema::{IndexDef, TableDef};
use shopsync_store::{ItemStore, StoreError, Table, TableState};
use shopsync_store_sqlite::SqliteStore;
use std::sync::{Arc, Mutex};

/// The live store, and the copy index reads are answered from while frozen.
pub struct StaleIndexes {
    live: Arc<dyn ItemStore>,
    frozen: Mutex<Option<Arc<SqliteStore>>>,
    _copies: Mutex<Vec<tempfile::TempDir>>,
}

impl StaleIndexes {
    /// Wraps `live`; index reads are live until [`StaleIndexes::freeze`].
    pub fn new(live: Arc<dyn ItemStore>) -> Self {
        Self {
            live,
            frozen: Mutex::new(None),
            _copies: Mutex::new(Vec::new()),
        }
    }

    /// From now on, index reads see the tables as they are now.
    pub async fn freeze(&self) {
        let dir = tempfile::tempdir().expect("dir");
        let copy = SqliteStore::open(dir.path(), "stale_").expect("copy");
        shopsync_store::migrate::migrate(&copy, Default::default())
            .await
            .expect("migrate the copy");
        for table in Table::on(self.live.kind()) {
            let mut start: Option<PageToken> = None;
            loop {
                let page = self
                    .live
                    .scan(table, 500, start.as_ref())
                    .await
                    .expect("scan");
                for item in page.items {
                    copy.put_raw(table, item).await.expect("copy an item");
                }
                match page.next {
                    Some(next) => start = Some(next),
                    None => break,
                }
            }
        }
        *self.frozen.lock().expect("lock") = Some(Arc::new(copy));
        self._copies.lock().expect("lock").push(dir);
    }

    /// Index reads are live again (the index caught up).
    pub fn catch_up(&self) {
        *self.frozen.lock().expect("lock") = None;
    }

    fn answering(&self, query: &Query) -> Arc<dyn ItemStore> {
        match (&query.index, self.frozen.lock().expect("lock").as_ref()) {
            (Some(_), Some(frozen)) => frozen.clone(),
            _ => self.live.clone(),
        }
    }
}

#[async_trait]
impl ItemStore for StaleIndexes {
    fn kind(&self) -> &'static str {
        self.live.kind()
    }

    fn physical_name(&self, table: Table) -> String {
        self.live.physical_name(table)
    }

    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, StoreError> {
        self.live.get(table, key).await
    }

    async fn get_each(&self, table: Table, keys: &[Key]) -> Result<Vec<Option<Item>>, StoreError> {
        self.live.get_each(table, keys).await
    }

    async fn put(
        &self,
        table: Table,
        item: Item,
        condition: Option<Condition>,
    ) -> Result<(), StoreError> {
        self.live.put(table, item, condition).await
    }

    async fn delete(
        &self,
        table: Table,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<(), StoreError> {
        self.live.delete(table, key, condition).await
    }

    async fn transact(&self, writes: Vec<WriteOp>) -> Result<(), StoreError> {
        self.live.transact(writes).await
    }

    async fn transact_each(
        &self,
        groups: Vec<Vec<WriteOp>>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.live.transact_each(groups).await
    }

    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        self.answering(query).query(query).await
    }

    async fn query_each(&self, queries: &[Query]) -> Result<Vec<Page>, StoreError> {
        let mut pages = Vec::with_capacity(queries.len());
        for query in queries {
            pages.push(self.answering(query).query(query).await?);
        }
        Ok(pages)
    }

    async fn scan(
        &self,
        table: Table,
        limit: u32,
        start: Option<&PageToken>,
    ) -> Result<Page, StoreError> {
        self.live.scan(table, limit, start).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.live.flush().await
    }

    async fn describe_table(&self, def: &TableDef) -> Result<Option<TableState>, StoreError> {
        self.live.describe_table(def).await
    }

    async fn create_table(&self, def: &TableDef) -> Result<(), StoreError> {
        self.live.create_table(def).await
    }

    async fn create_index(&self, def: &TableDef, index: &IndexDef) -> Result<(), StoreError> {
        self.live.create_index(def, index).await
    }

    async fn enable_ttl(&self, def: &TableDef, attr: &str) -> Result<(), StoreError> {
        self.live.enable_ttl(def, attr).await
    }

    async fn backup_table(&self, def: &TableDef) -> Result<String, StoreError> {
        self.live.backup_table(def).await
    }
}

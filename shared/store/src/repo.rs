//! The typed repository the engine uses: entities in, entities out, every racing write
//! conditional, and errors that say what happened.

use crate::backend::{CancelReason, ItemStore, StoreError};
use crate::item::{Condition, Item, Key, PageToken, Query, Scalar, SortCondition, WriteOp};
use crate::records::{millis, product_attrs, version_attrs, ProductLookup, Record};
use crate::schema::Table;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use shopsync_domain::fields::changed_fields;
use shopsync_domain::status::status_name;
use shopsync_domain::{
    Actor, ChangeSource, ChangeType, LockError, LockState, OperationId, Product, ProductContent,
    ProductId, ProductVersion, ProductsStaging, StagingStatus, VersionStamp,
};
use std::sync::Arc;

/// Repository errors. [`RepoError::is_retryable`] says whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// No such item.
    #[error("{table} {key} not found")]
    NotFound {
        /// Table.
        table: Table,
        /// Key.
        key: String,
    },
    /// An item that must be new already exists.
    #[error("{table} {key} already exists")]
    AlreadyExists {
        /// Table.
        table: Table,
        /// Key.
        key: String,
    },
    /// The product changed since it was read: nothing was written; here is what it is now.
    #[error("product {} changed since it was read (now at version {})", current.id, current.version)]
    VersionConflict {
        /// The product as stored now.
        current: Box<Product>,
    },
    /// Someone else holds the product's sync lock.
    #[error(transparent)]
    Locked(#[from] LockError),
    /// A staged row is no longer in the status the write expected.
    #[error("staged change {id} is {status}, not {expected}")]
    StagingStatusConflict {
        /// Row.
        id: String,
        /// Its status now.
        status: String,
        /// The status expected.
        expected: String,
    },
    /// The same idempotency key is being handled right now; retry later.
    #[error("request {key} is already being handled")]
    IdempotencyInProgress {
        /// Key.
        key: String,
    },
    /// The idempotency key was used before with a different payload.
    #[error("request {key} was already used with a different payload")]
    IdempotencyPayloadMismatch {
        /// Key.
        key: String,
    },
    /// A stored item that does not decode.
    #[error("stored {table} item does not decode: {reason}")]
    Decode {
        /// Table.
        table: Table,
        /// Why.
        reason: String,
    },
    /// The backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RepoError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            RepoError::Store(e) => e.is_retryable(),
            RepoError::IdempotencyInProgress { .. } => true,
            _ => false,
        }
    }
}

/// A typed page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Paged<R> {
    /// The records.
    pub items: Vec<R>,
    /// Where to continue.
    pub next: Option<PageToken>,
}

/// The outcome of starting an idempotent piece of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyStart {
    /// First time (or a retry after failure or expiry): do the work, then complete.
    Started,
    /// Done before: here is the stored result; do nothing.
    Replay(serde_json::Value),
}

/// What an idempotency key currently records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyState {
    /// Nothing: never taken, expired, or a claim whose lease lapsed.
    Absent,
    /// Work under the key is in progress (its lease has not passed).
    InProgress,
    /// Completed: the payload hash it was completed for, and the stored result.
    Completed {
        /// The hash given when the work completed.
        payload_hash: String,
        /// The stored result.
        result: serde_json::Value,
    },
}

/// The stored body of an idempotency record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdempotencyDoc {
    result: Option<serde_json::Value>,
}

const IDEM_STATUS: &str = "status";
const IDEM_IN_PROGRESS: &str = "in_progress";
const IDEM_COMPLETED: &str = "completed";
const IDEM_HASH: &str = "payload_hash";
const IDEM_EXPIRES: &str = "expires_at";
const IDEM_IN_PROGRESS_EXPIRES: &str = "in_progress_expires_at";

/// One atomic change to a product: the product, its new version snapshot and, optionally,
/// the staged row that caused it.
#[derive(Debug, Clone)]
pub struct ProductCommit {
    /// The product as it should be stored.
    pub product: Product,
    /// The version it was read at (`None`: it is new).
    pub expected_version: Option<u64>,
    /// The new version (required when the content changed): its snapshot is `product`'s
    /// content, stored with what the stamp records.
    pub version: Option<VersionStamp>,
    /// The staged row to store with it, and the status it must have now (`None`: new row).
    pub staging: Option<(ProductsStaging, Option<StagingStatus>)>,
    /// Who writes; a lock held by anyone else refuses the write.
    pub actor: Actor,
    /// Now, for lock leases.
    pub now: DateTime<Utc>,
}

/// The typed repository over a backend.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn ItemStore>,
}

fn encode<R: Record>(record: &R) -> Result<Item, RepoError> {
    // Room for a product's document up front: grown from serde_json's 128 bytes, each of a
    // bulk import's documents was copied five times on the way to its 2-4 KB.
    let mut doc = Vec::with_capacity(4096);
    serde_json::to_writer(&mut doc, record).map_err(|e| RepoError::Decode {
        table: R::TABLE,
        reason: e.to_string(),
    })?;
    Ok(Item {
        attrs: record.attrs(),
        doc: Some(doc),
    })
}

/// A product and the snapshot of its new version, encoded with the product's content
/// serialized once: the product's document holds the content's fields beside its own, the
/// snapshot's holds them as `product_data`. Each document reads back exactly as
/// [`encode`]'s of the product and of `ProductVersion::of(product, stamp)` do (only the order
/// of the product's fields differs).
fn encode_with_snapshot(
    product: &Product,
    stamp: &VersionStamp,
) -> Result<(Item, Item), RepoError> {
    let failed = |table: Table| {
        move |e: serde_json::Error| RepoError::Decode {
            table,
            reason: e.to_string(),
        }
    };
    let content = serde_json::to_vec(&product.content).map_err(failed(Table::ProductVersions))?;
    // Destructured whole: a field added to either record fails to compile here until it is
    // written here too.
    let Product {
        id,
        shopify_id,
        content: _,
        version: product_version,
        last_sync_version,
        sync_locked,
        sync_locked_by,
        sync_lock_expires_at,
        sync_lock_reason,
        xorosoft_id,
        stock_synced_at,
        shopify_updated_at,
        created_at,
        updated_at,
    } = product;
    let product_head = ProductHead {
        id,
        shopify_id,
        version: *product_version,
        last_sync_version: *last_sync_version,
        sync_locked: *sync_locked,
        sync_locked_by,
        sync_lock_expires_at,
        sync_lock_reason,
        xorosoft_id,
        stock_synced_at,
        shopify_updated_at,
        created_at,
        updated_at,
    };
    let VersionStamp {
        changed_fields,
        change_source,
        changed_by,
        sync_operation_id,
        created_at: version_created_at,
    } = stamp;
    let version_head = VersionHead {
        product_id: id,
        version_number: *product_version,
        changed_fields,
        change_source,
        changed_by,
        sync_operation_id,
        created_at: version_created_at,
    };
    // `{head}` + `{content}` → `{head,content}`; `{head}` → `{head,"product_data":{content}}`.
    let mut product_doc = Vec::with_capacity(content.len() + 512);
    serde_json::to_writer(&mut product_doc, &product_head).map_err(failed(Table::Products))?;
    let mut version_doc = Vec::with_capacity(content.len() + 512);
    serde_json::to_writer(&mut version_doc, &version_head)
        .map_err(failed(Table::ProductVersions))?;
    let (Some(b'}'), Some(b'}'), Some(b'{')) =
        (product_doc.pop(), version_doc.pop(), content.first())
    else {
        return Err(RepoError::Decode {
            table: Table::Products,
            reason: "a product or version head is not a JSON object".into(),
        });
    };
    // An empty content object (`{}`) adds no fields to the product's.
    if content.len() > 2 {
        product_doc.push(b',');
        product_doc.extend_from_slice(&content[1..]);
    } else {
        product_doc.push(b'}');
    }
    version_doc.extend_from_slice(b",\"product_data\":");
    version_doc.extend_from_slice(&content);
    version_doc.push(b'}');
    Ok((
        Item {
            attrs: product.attrs(),
            doc: Some(product_doc),
        },
        Item {
            attrs: version_attrs(
                *id,
                *product_version,
                *sync_operation_id,
                *version_created_at,
            ),
            doc: Some(version_doc),
        },
    ))
}

/// A product's own fields, serialized as `Product` serializes them (see
/// [`encode_with_snapshot`]).
#[derive(Serialize)]
struct ProductHead<'a> {
    id: &'a ProductId,
    shopify_id: &'a Option<shopsync_domain::ShopifyProductId>,
    version: u64,
    last_sync_version: u64,
    sync_locked: bool,
    sync_locked_by: &'a Option<Actor>,
    #[serde(serialize_with = "shopsync_domain::time::write_utc_opt")]
    sync_lock_expires_at: &'a Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sync_lock_reason: &'a Option<String>,
    xorosoft_id: &'a Option<String>,
    #[serde(serialize_with = "shopsync_domain::time::write_utc_opt")]
    stock_synced_at: &'a Option<DateTime<Utc>>,
    #[serde(serialize_with = "shopsync_domain::time::write_utc_opt")]
    shopify_updated_at: &'a Option<DateTime<Utc>>,
    #[serde(serialize_with = "shopsync_domain::time::write_utc")]
    created_at: &'a DateTime<Utc>,
    #[serde(serialize_with = "shopsync_domain::time::write_utc")]
    updated_at: &'a DateTime<Utc>,
}

/// A version's fields but its content, serialized as `ProductVersion` serializes them.
#[derive(Serialize)]
struct VersionHead<'a> {
    product_id: &'a ProductId,
    version_number: u64,
    changed_fields: &'a Vec<shopsync_domain::fields::FieldPath>,
    change_source: &'a ChangeSource,
    changed_by: &'a Actor,
    sync_operation_id: &'a Option<OperationId>,
    #[serde(serialize_with = "shopsync_domain::time::write_utc")]
    created_at: &'a DateTime<Utc>,
}

/// A record as stored: what its stored form leaves implied is not filled in yet.
fn decode_stored<R: Record>(item: &Item) -> Result<R, RepoError> {
    let doc = item.doc.as_deref().ok_or_else(|| RepoError::Decode {
        table: R::TABLE,
        reason: "item has no document".into(),
    })?;
    serde_json::from_slice(doc).map_err(|e| RepoError::Decode {
        table: R::TABLE,
        reason: e.to_string(),
    })
}

/// A record whose stored form leaves nothing to read elsewhere (every record but a staged
/// row; [`Store::decode_all`] completes those).
pub(crate) fn decode<R: Record>(item: &Item) -> Result<R, RepoError> {
    let mut record: R = decode_stored(item)?;
    record.loaded();
    Ok(record)
}

fn key_text(key: &Key) -> String {
    let part = |s: &Scalar| match s {
        Scalar::S(s) => s.clone(),
        Scalar::N(n) => n.to_string(),
    };
    match &key.sk {
        Some(sk) => format!("{}/{}", part(&key.pk), part(sk)),
        None => part(&key.pk),
    }
}

/// The condition under which `actor` may write a product read at `version`.
fn product_write_condition(
    expected_version: Option<u64>,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Condition {
    match expected_version {
        None => Condition::ItemAbsent,
        Some(v) => Condition::And(vec![
            Condition::Eq(product_attrs::VERSION, Scalar::N(v as i64)),
            Condition::Or(vec![
                Condition::NotExists(product_attrs::LOCK_OWNER),
                Condition::Eq(product_attrs::LOCK_OWNER, Scalar::S(actor.to_string())),
                Condition::Le(product_attrs::LOCK_EXPIRES_AT, Scalar::N(millis(now))),
            ]),
        ]),
    }
}

/// The writes of one product commit: the product (conditioned on its version and lock), its
/// version snapshot (new), and its staged row (in the status the commit expects).
///
/// A create's staged row applied with its product's first version is stored without its
/// content, which is that version's snapshot (see [`ProductsStaging::content_implied`]); the
/// row's content is taken out only while it is encoded.
///
/// A product with more lookups than one transaction holds beside its other writes returns
/// the rest apart (`.1`), to be written once the commit succeeded.
fn product_commit_writes(
    commit: &mut ProductCommit,
) -> Result<(Vec<WriteOp>, Vec<WriteOp>), RepoError> {
    let ProductCommit {
        product,
        expected_version,
        version,
        staging,
        actor,
        now,
    } = commit;
    let (product_item, version_item) = match version {
        Some(stamp) => {
            let (p, v) = encode_with_snapshot(product, stamp)?;
            (p, Some(v))
        }
        None => (encode(product)?, None),
    };
    let mut writes = vec![WriteOp::Put {
        table: Table::Products,
        item: product_item,
        condition: Some(product_write_condition(*expected_version, actor, *now)),
    }];
    let mut overflow = Vec::new();
    if let Some(item) = version_item {
        writes.push(WriteOp::Put {
            table: Table::ProductVersions,
            item,
            condition: Some(Condition::ItemAbsent),
        });
        // A new product, or one whose SKUs or barcodes changed: its lookups, unconditional
        // (the same lookup written twice is the same item), between the snapshot and the
        // staged row (a refusal is explained by the writes' order).
        let keys_changed = version.as_ref().is_some_and(|stamp| {
            product.version == 1
                || stamp.changed_fields.iter().any(|path| {
                    let path = path.as_str();
                    path.ends_with("/sku") || path.ends_with("/barcode")
                })
        });
        if keys_changed {
            let room = crate::backend::MAX_TRANSACTION_ITEMS - writes.len() - 1;
            for (index, lookup) in ProductLookup::of_product(product.id, &product.content)
                .into_iter()
                .enumerate()
            {
                let write = WriteOp::Put {
                    table: Table::ProductLookups,
                    item: encode(&lookup)?,
                    condition: None,
                };
                if index < room {
                    writes.push(write);
                } else {
                    overflow.push(write);
                }
            }
        }
    }
    if let Some((row, expected)) = staging {
        let condition = match expected {
            None => Condition::ItemAbsent,
            Some(status) => Condition::Eq("status", Scalar::S(status_name(*status))),
        };
        // An applied create's content is its product's first version's: left implied.
        let implied = row.change_type == ChangeType::Create
            && row.status == StagingStatus::Applied
            && version.is_some()
            && product.version == ProductsStaging::CREATED_VERSION
            && product.id == row.source_product_id
            && row.proposed.as_ref() == Some(&product.content);
        let content = if implied { row.proposed.take() } else { None };
        let item = encode(row);
        if content.is_some() {
            row.proposed = content;
        }
        writes.push(WriteOp::Put {
            table: Table::ProductsStaging,
            item: item?,
            condition: Some(condition),
        });
    }
    Ok((writes, overflow))
}

impl Store {
    /// A repository over `backend`.
    pub fn new(backend: Arc<dyn ItemStore>) -> Self {
        Self { backend }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn ItemStore> {
        &self.backend
    }

    /// Stores a new record; refuses to replace one.
    pub async fn insert<R: Record>(&self, record: &R) -> Result<(), RepoError> {
        match self
            .backend
            .put(R::TABLE, encode(record)?, Some(Condition::ItemAbsent))
            .await
        {
            Err(StoreError::ConditionFailed { .. }) => Err(RepoError::AlreadyExists {
                table: R::TABLE,
                key: key_text(&record.key()),
            }),
            other => Ok(other?),
        }
    }

    /// Stores new records, as many per transaction as allowed; refuses (per transaction) to
    /// replace existing ones.
    pub async fn insert_all<R: Record>(&self, records: &[R]) -> Result<(), RepoError> {
        if records.is_empty() {
            return Ok(());
        }
        let groups = records
            .chunks(crate::backend::MAX_TRANSACTION_ITEMS)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(Self::insert_write)
                    .collect::<Result<Vec<_>, RepoError>>()
            })
            .collect::<Result<Vec<_>, RepoError>>()?;
        for answer in self.backend.transact_each(groups).await? {
            match answer {
                Ok(()) => {}
                Err(StoreError::TransactionCanceled { .. }) => {
                    return Err(RepoError::AlreadyExists {
                        table: R::TABLE,
                        key: "one of the records".into(),
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Replaces a record only if the stored one still has the attribute values `expected`
    /// (e.g. the status it was read with). A failed check returns the current record.
    pub async fn replace_if<R: Record>(
        &self,
        record: &R,
        expected: Condition,
    ) -> Result<(), ReplaceError<R>> {
        let condition = Condition::And(vec![Condition::ItemPresent, expected]);
        match self
            .backend
            .put(R::TABLE, encode(record)?, Some(condition))
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::ConditionFailed {
                current: Some(item),
            }) => match self.decode_all(std::slice::from_ref(&item)).await?.pop() {
                Some(current) => Err(ReplaceError::Changed(Box::new(current))),
                None => Err(RepoError::NotFound {
                    table: R::TABLE,
                    key: key_text(&record.key()),
                }
                .into()),
            },
            Err(StoreError::ConditionFailed { current: None }) => Err(RepoError::NotFound {
                table: R::TABLE,
                key: key_text(&record.key()),
            }
            .into()),
            Err(e) => Err(RepoError::from(e).into()),
        }
    }

    /// Makes every write answered so far durable (see [`crate::ItemStore::flush`]): call it
    /// before acknowledging anything to someone outside.
    pub async fn flush(&self) -> Result<(), RepoError> {
        Ok(self.backend.flush().await?)
    }

    /// One page per query, asked together (see [`ItemStore::query_each`]), in order.
    async fn lookups(&self, queries: &[Query]) -> Result<Vec<crate::item::Page>, RepoError> {
        let pages = self.backend.query_each(queries).await?;
        if pages.len() != queries.len() {
            return Err(StoreError::Invalid(format!(
                "{} lookups answered with {} pages",
                queries.len(),
                pages.len()
            ))
            .into());
        }
        Ok(pages)
    }

    /// Records read from `items`, whole: content a stored form leaves implied (see
    /// [`Record::implied_content`]) is read from its version, all such reads asked together.
    async fn decode_all<R: Record>(&self, items: &[Item]) -> Result<Vec<R>, RepoError> {
        let mut records = items
            .iter()
            .map(decode_stored::<R>)
            .collect::<Result<Vec<_>, _>>()?;
        let implied: Vec<(usize, ProductId, u64)> = records
            .iter()
            .enumerate()
            .filter_map(|(at, r)| r.implied_content().map(|(id, v)| (at, id, v)))
            .collect();
        if !implied.is_empty() {
            let queries: Vec<Query> = implied
                .iter()
                .map(|(_, id, version)| {
                    let mut q = Query::new(Table::ProductVersions, None, id.to_string());
                    q.sk = Some(SortCondition::Eq(Scalar::N(*version as i64)));
                    q.limit = 1;
                    q
                })
                .collect();
            let pages = self.lookups(&queries).await?;
            for ((at, id, version), page) in implied.into_iter().zip(pages) {
                let snapshot = page
                    .items
                    .first()
                    .map(decode::<ProductVersion>)
                    .transpose()?
                    .ok_or_else(|| RepoError::Decode {
                        table: R::TABLE,
                        reason: format!(
                            "its content is version {version} of product {id}, which is missing"
                        ),
                    })?
                    .product_data;
                if let Some(record) = records.get_mut(at) {
                    record.fill_content(snapshot);
                }
            }
        }
        for record in &mut records {
            record.loaded();
        }
        Ok(records)
    }

    /// Reads a record by key.
    pub async fn get<R: Record>(&self, key: &Key) -> Result<Option<R>, RepoError> {
        match self.backend.get(R::TABLE, key).await? {
            Some(item) => Ok(self.decode_all(std::slice::from_ref(&item)).await?.pop()),
            None => Ok(None),
        }
    }

    /// One page of records by partition key on the table or an index.
    pub async fn query<R: Record>(&self, query: Query) -> Result<Paged<R>, RepoError> {
        debug_assert_eq!(query.table, R::TABLE);
        let page = self.backend.query(&query).await?;
        Ok(Paged {
            items: self.decode_all(&page.items).await?,
            next: page.next,
        })
    }

    /// One page of a whole table (every record, in no particular order).
    pub async fn scan<R: Record>(
        &self,
        limit: u32,
        start: Option<&PageToken>,
    ) -> Result<Paged<R>, RepoError> {
        let page = self.backend.scan(R::TABLE, limit, start).await?;
        Ok(Paged {
            items: self.decode_all(&page.items).await?,
            next: page.next,
        })
    }

    /// Every record of a query, following pages (for bounded result sets).
    pub async fn query_all<R: Record>(&self, mut query: Query) -> Result<Vec<R>, RepoError> {
        let mut out = Vec::new();
        loop {
            let page = self.query::<R>(query.clone()).await?;
            out.extend(page.items);
            match page.next {
                Some(next) => query.start = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Reads a product.
    pub async fn product(&self, id: ProductId) -> Result<Option<Product>, RepoError> {
        self.get(&Key::pk(id.to_string())).await
    }

    /// Reads products by id together (consistent reads; 100 a request on DynamoDB), in
    /// order (`None`: no such product).
    pub async fn products(&self, ids: &[ProductId]) -> Result<Vec<Option<Product>>, RepoError> {
        let keys: Vec<Key> = ids.iter().map(|id| Key::pk(id.to_string())).collect();
        self.backend
            .get_each(Table::Products, &keys)
            .await?
            .iter()
            .map(|item| item.as_ref().map(decode::<Product>).transpose())
            .collect()
    }

    /// Reads records by key together (consistent reads), in order (`None`: no such record).
    pub async fn get_each<R: Record>(&self, keys: &[Key]) -> Result<Vec<Option<R>>, RepoError> {
        self.backend
            .get_each(R::TABLE, keys)
            .await?
            .iter()
            .map(|item| item.as_ref().map(decode::<R>).transpose())
            .collect()
    }

    /// Reads a product that must exist.
    async fn product_required(&self, id: ProductId) -> Result<Product, RepoError> {
        self.product(id).await?.ok_or(RepoError::NotFound {
            table: Table::Products,
            key: id.to_string(),
        })
    }

    /// Finds the local product of a Shopify product id.
    pub async fn product_by_shopify_id(
        &self,
        shopify_id: shopsync_domain::ShopifyProductId,
    ) -> Result<Option<Product>, RepoError> {
        let page = self
            .query::<Product>(Query::new(
                Table::Products,
                Some("by_shopify_id"),
                shopify_id.to_string(),
            ))
            .await?;
        Ok(page.items.into_iter().next())
    }

    /// The lookups under each key (see [`crate::records::ProductLookup`]), in order, read
    /// together (a lookup's key is the table's partition key: these reads are consistent).
    pub async fn lookups_of(&self, keys: &[String]) -> Result<Vec<Vec<ProductLookup>>, RepoError> {
        let queries: Vec<Query> = keys
            .iter()
            .map(|key| {
                let mut query = Query::new(Table::ProductLookups, None, key.clone());
                query.limit = 100;
                query
            })
            .collect();
        let pages = self.lookups(&queries).await?;
        pages
            .into_iter()
            .map(|page| page.items.iter().map(decode).collect())
            .collect()
    }

    /// Creates or replaces records, unconditionally, as many per transaction as allowed (for
    /// records whose last writer wins by design: figures read from a file, lookups).
    pub async fn put_all<R: Record>(&self, records: &[R]) -> Result<(), RepoError> {
        let writes = records
            .iter()
            .map(|record| {
                Ok(WriteOp::Put {
                    table: R::TABLE,
                    item: encode(record)?,
                    condition: None,
                })
            })
            .collect::<Result<Vec<_>, RepoError>>()?;
        let groups: Vec<Vec<WriteOp>> = writes
            .chunks(crate::backend::MAX_TRANSACTION_ITEMS)
            .map(<[WriteOp]>::to_vec)
            .collect();
        for answer in self.backend.transact_each(groups).await? {
            answer?;
        }
        Ok(())
    }

    /// The local product of each Shopify product, in order (`None`: not mirrored yet), read
    /// together (see [`ItemStore::query_each`]).
    pub async fn products_by_shopify_ids(
        &self,
        shopify_ids: &[shopsync_domain::ShopifyProductId],
    ) -> Result<Vec<Option<Product>>, RepoError> {
        let queries: Vec<Query> = shopify_ids
            .iter()
            .map(|id| Query::new(Table::Products, Some("by_shopify_id"), id.to_string()))
            .collect();
        let pages = self.lookups(&queries).await?;
        pages
            .into_iter()
            .map(|page| page.items.first().map(decode::<Product>).transpose())
            .collect()
    }

    /// The local product of each Shopify product, in order (`None`: not mirrored yet). Each
    /// is read first at the local id it is expected under (`wanted`: Shopify id, local id; a
    /// product Shopify brought is stored under an id its Shopify id gives), all by key
    /// together (consistent reads, 100 a request on DynamoDB). Those not found there are
    /// looked for through the Shopify-id index together, unless `search_index` is false, and
    /// what the index finds is read again by key (the index may lag behind the table).
    pub async fn products_of_shopify(
        &self,
        wanted: &[(shopsync_domain::ShopifyProductId, ProductId)],
        search_index: bool,
    ) -> Result<Vec<Option<Product>>, RepoError> {
        let keys: Vec<Key> = wanted
            .iter()
            .map(|(_, local)| Key::pk(local.to_string()))
            .collect();
        let items = self.backend.get_each(Table::Products, &keys).await?;
        let mut found = Vec::with_capacity(wanted.len());
        for ((shopify, _), item) in wanted.iter().zip(items) {
            let product = item.as_ref().map(decode::<Product>).transpose()?;
            found.push(product.filter(|p| p.shopify_id == Some(*shopify)));
        }
        if !search_index {
            return Ok(found);
        }
        let missing: Vec<usize> = (0..found.len()).filter(|at| found[*at].is_none()).collect();
        if missing.is_empty() {
            return Ok(found);
        }
        let indexed = self
            .products_by_shopify_ids(&missing.iter().map(|at| wanted[*at].0).collect::<Vec<_>>())
            .await?;
        // An index answer may lag behind the table (DynamoDB's indexes are eventually
        // consistent): what it found is read again by key, and kept only if it still
        // mirrors that Shopify product.
        let hits: Vec<(usize, ProductId)> = missing
            .into_iter()
            .zip(indexed)
            .filter_map(|(at, product)| product.map(|p| (at, p.id)))
            .collect();
        let ids: Vec<ProductId> = hits.iter().map(|(_, id)| *id).collect();
        for ((at, _), product) in hits.into_iter().zip(self.products(&ids).await?) {
            found[at] = product.filter(|p| p.shopify_id == Some(wanted[at].0));
        }
        Ok(found)
    }

    /// Stores a new product with its version-1 snapshot, atomically.
    pub async fn create_product(
        &self,
        product: &Product,
        source: ChangeSource,
        actor: &Actor,
        operation: Option<OperationId>,
    ) -> Result<(), RepoError> {
        let version = VersionStamp::first(product, source, actor.clone(), operation);
        let commit = ProductCommit {
            product: product.clone(),
            expected_version: None,
            version: Some(version),
            staging: None,
            actor: actor.clone(),
            now: product.created_at,
        };
        self.commit_product(commit).await
    }

    /// Changes a product's content from the state it was read in: bumps the version and writes
    /// product and snapshot together. Returns the stored product.
    pub async fn update_product_content(
        &self,
        read: &Product,
        content: ProductContent,
        source: ChangeSource,
        actor: &Actor,
        operation: Option<OperationId>,
        now: DateTime<Utc>,
    ) -> Result<Product, RepoError> {
        let mut product = read.clone();
        let changes = product.change_content(content, now);
        if changes.is_empty() {
            return Ok(product);
        }
        let version = VersionStamp::new(
            changed_fields(&changes),
            source,
            actor.clone(),
            operation,
            now,
        );
        let commit = ProductCommit {
            product: product.clone(),
            expected_version: Some(read.version),
            version: Some(version),
            staging: None,
            actor: actor.clone(),
            now,
        };
        self.commit_product(commit).await?;
        Ok(product)
    }

    /// Writes a product, its version snapshot and its staged row all at once or not at all.
    pub async fn commit_product(&self, commit: ProductCommit) -> Result<(), RepoError> {
        let mut commit = commit;
        let (writes, overflow) = product_commit_writes(&mut commit)?;
        let result = self.backend.transact(writes).await;
        self.answer_commit(&commit, result).await?;
        self.write_overflow(overflow).await
    }

    /// Writes the lookups a product commit could not hold (see [`product_commit_writes`]).
    async fn write_overflow(&self, overflow: Vec<WriteOp>) -> Result<(), RepoError> {
        for chunk in overflow.chunks(crate::backend::MAX_TRANSACTION_ITEMS) {
            self.backend.transact(chunk.to_vec()).await?;
        }
        Ok(())
    }

    /// Removes a product from the catalog, as a person approved: the product row goes, and
    /// in the same transaction its last content is kept as a final version snapshot (the
    /// commit's `product` at its next version) and the staged row's status changes. The same
    /// conditions as any product write hold (version as expected, no one else's lock).
    pub async fn remove_product(&self, commit: ProductCommit) -> Result<(), RepoError> {
        let mut commit = commit;
        let (mut writes, _) = product_commit_writes(&mut commit)?;
        let condition = match writes.first() {
            Some(WriteOp::Put { condition, .. }) => condition.clone(),
            _ => None,
        };
        if let Some(first) = writes.first_mut() {
            *first = WriteOp::Delete {
                table: Table::Products,
                key: Key::pk(commit.product.id.to_string()),
                condition,
            };
        }
        let result = self.backend.transact(writes).await;
        self.answer_commit(&commit, result).await
    }

    /// What a product commit's transaction result means, a refusal explained.
    async fn answer_commit(
        &self,
        commit: &ProductCommit,
        result: Result<(), StoreError>,
    ) -> Result<(), RepoError> {
        match result {
            Ok(()) => Ok(()),
            Err(StoreError::TransactionCanceled { reasons }) => Err(self
                .explain_product_cancel(
                    &commit.product,
                    commit.expected_version,
                    &commit.actor,
                    commit.now,
                    reasons,
                    commit
                        .staging
                        .as_ref()
                        .map(|(row, expected)| (row.id.to_string(), *expected)),
                )
                .await),
            Err(e) => Err(e.into()),
        }
    }

    /// Commits a product and writes `record` with it, all or nothing; the record is written
    /// only while `expected` holds of its stored form (a settled conflict, say, is not
    /// settled twice). A failed record condition answers `StoreError::ConditionFailed` with
    /// the record as stored; anything else answers as [`Store::commit_products`] does.
    pub async fn commit_product_with<R: Record>(
        &self,
        commit: &mut ProductCommit,
        record: &R,
        expected: Condition,
    ) -> Result<(), RepoError> {
        let (mut writes, overflow) = product_commit_writes(commit)?;
        writes.push(WriteOp::Put {
            table: R::TABLE,
            item: encode(record)?,
            condition: Some(Condition::And(vec![Condition::ItemPresent, expected])),
        });
        let result = match self.backend.transact(writes).await {
            Err(StoreError::TransactionCanceled { mut reasons }) => {
                if let Some(CancelReason::ConditionFailed(current)) = reasons.last() {
                    return Err(StoreError::ConditionFailed {
                        current: current.clone().map(Box::new),
                    }
                    .into());
                }
                reasons.pop();
                Err(StoreError::TransactionCanceled { reasons })
            }
            other => other,
        };
        self.answer_commit(commit, result).await?;
        self.write_overflow(overflow).await
    }

    /// Commits several products, each all-or-nothing on its own, in as few store commits as
    /// the backend allows (see [`ItemStore::transact_each`]). Answers come in the order given;
    /// the commits are left as they were, for a caller to take back what a refused one held.
    pub async fn commit_products(
        &self,
        commits: &mut [ProductCommit],
    ) -> Result<Vec<Result<(), RepoError>>, RepoError> {
        let (groups, overflows): (Vec<_>, Vec<_>) = commits
            .iter_mut()
            .map(product_commit_writes)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .unzip();
        let results = self.backend.transact_each(groups).await?;
        let mut answers = Vec::with_capacity(commits.len());
        for ((commit, result), overflow) in commits.iter().zip(results).zip(overflows) {
            let answer = self.answer_commit(commit, result).await;
            if answer.is_ok() {
                self.write_overflow(overflow).await?;
            }
            answers.push(answer);
        }
        Ok(answers)
    }

    async fn explain_product_cancel(
        &self,
        product: &Product,
        expected_version: Option<u64>,
        actor: &Actor,
        now: DateTime<Utc>,
        reasons: Vec<CancelReason>,
        staging: Option<(String, Option<StagingStatus>)>,
    ) -> RepoError {
        let mut reasons = reasons.into_iter();
        match reasons.next() {
            Some(CancelReason::ConditionFailed(current)) => {
                let current = match current.as_ref().map(decode::<Product>).transpose() {
                    Ok(c) => c,
                    Err(e) => return e,
                };
                return match (expected_version, current) {
                    (None, _) => RepoError::AlreadyExists {
                        table: Table::Products,
                        key: product.id.to_string(),
                    },
                    (Some(_), None) => RepoError::NotFound {
                        table: Table::Products,
                        key: product.id.to_string(),
                    },
                    (Some(v), Some(current)) if current.version != v => {
                        RepoError::VersionConflict {
                            current: Box::new(current),
                        }
                    }
                    (Some(_), Some(current)) => match current.writable_by(actor, now) {
                        Err(lock) => RepoError::Locked(lock),
                        Ok(()) => RepoError::VersionConflict {
                            current: Box::new(current),
                        },
                    },
                };
            }
            Some(CancelReason::None) | None => {}
            Some(other) => {
                return StoreError::TransactionCanceled {
                    reasons: vec![other],
                }
                .into()
            }
        }
        let rest: Vec<CancelReason> = reasons.collect();
        // The staged row is checked first: its status is what makes applying twice a no-op.
        if let (Some((id, expected)), Some(CancelReason::ConditionFailed(current))) =
            (staging, rest.last())
        {
            let status = current
                .as_ref()
                .and_then(|i| i.attrs.get("status"))
                .and_then(Scalar::as_str)
                .unwrap_or("absent")
                .to_owned();
            let expected = expected.map(status_name).unwrap_or_else(|| "absent".into());
            return RepoError::StagingStatusConflict {
                id,
                status,
                expected,
            };
        }
        // The snapshot row exists already: someone committed this version number first.
        if let Some(CancelReason::ConditionFailed(_)) = rest.first() {
            if let Ok(Some(current)) = self.product(product.id).await {
                return RepoError::VersionConflict {
                    current: Box::new(current),
                };
            }
        }
        StoreError::TransactionCanceled { reasons: rest }.into()
    }

    /// Takes (or renews) a product's sync lock for `actor`; an expired lease is taken over.
    pub async fn lock_product(
        &self,
        id: ProductId,
        actor: &Actor,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Product, RepoError> {
        self.change_lock(id, now, |p| p.lock(actor, now, lease))
            .await
    }

    /// Takes (or renews) a product's sync lock for `actor` with the reason they gave.
    pub async fn lock_product_because(
        &self,
        id: ProductId,
        actor: &Actor,
        now: DateTime<Utc>,
        lease: Duration,
        reason: Option<&str>,
    ) -> Result<Product, RepoError> {
        self.change_lock(id, now, |p| {
            p.lock(actor, now, lease)?;
            p.sync_lock_reason = reason.map(str::to_owned);
            Ok(())
        })
        .await
    }

    /// Releases a product's sync lock whoever holds it (an admin's override).
    pub async fn break_product_lock(
        &self,
        id: ProductId,
        now: DateTime<Utc>,
    ) -> Result<Product, RepoError> {
        self.change_lock(id, now, |p| {
            p.break_lock();
            Ok(())
        })
        .await
    }

    /// Products whose lock lease ended before `now` (oldest first, at most `limit`), from the
    /// index of held locks (eventually consistent: [`Store::clear_expired_lock`] checks again
    /// by key).
    pub async fn expired_locks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Product>, RepoError> {
        let mut query = Query::new(Table::Products, Some("by_lock_expiry"), "1");
        query.sk = Some(SortCondition::Lt(Scalar::N(millis(now))));
        query.limit = limit;
        Ok(self.query::<Product>(query).await?.items)
    }

    /// Clears a product's lock if its lease has ended at `now`; a lock renewed meanwhile (or
    /// released) is left as it is. Returns who held the cleared lock.
    pub async fn clear_expired_lock(
        &self,
        id: ProductId,
        now: DateTime<Utc>,
    ) -> Result<Option<Actor>, RepoError> {
        let holder = std::sync::Mutex::new(None);
        let cleared = self
            .change_lock(id, now, |p| match p.lock_state(now) {
                LockState::Expired { .. } => {
                    if let Ok(mut held) = holder.lock() {
                        *held = p.break_lock();
                    }
                    Ok(())
                }
                LockState::Held { by, until } => Err(LockError::HeldByOther { by, until }),
                LockState::Free => Err(LockError::BadLease),
            })
            .await;
        match cleared {
            Ok(_) => Ok(holder.into_inner().unwrap_or_default()),
            Err(RepoError::Locked(_)) | Err(RepoError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Releases a product's sync lock; only its holder may.
    pub async fn unlock_product(
        &self,
        id: ProductId,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Product, RepoError> {
        self.change_lock(id, now, |p| p.unlock(actor)).await
    }

    /// Read, change the lock fields, write back conditionally on the lock fields read and the
    /// version; a lost race re-reads (a concurrent content edit does not lose the lock).
    async fn change_lock(
        &self,
        id: ProductId,
        now: DateTime<Utc>,
        change: impl Fn(&mut Product) -> Result<(), LockError>,
    ) -> Result<Product, RepoError> {
        const ATTEMPTS: usize = 8;
        let mut last_error = None;
        for _ in 0..ATTEMPTS {
            let read = self.product_required(id).await?;
            let mut product = read.clone();
            change(&mut product)?;
            let attrs = read.attrs();
            let lock_as_read = |name: &'static str| match attrs.get(name) {
                Some(v) => Condition::Eq(name, v.clone()),
                None => Condition::NotExists(name),
            };
            let condition = Condition::And(vec![
                Condition::Eq(product_attrs::VERSION, Scalar::N(read.version as i64)),
                lock_as_read(product_attrs::LOCK_OWNER),
                lock_as_read(product_attrs::LOCK_EXPIRES_AT),
            ]);
            match self
                .backend
                .put(Table::Products, encode(&product)?, Some(condition))
                .await
            {
                Ok(()) => return Ok(product),
                Err(StoreError::ConditionFailed { current: None }) => {
                    return Err(RepoError::NotFound {
                        table: Table::Products,
                        key: id.to_string(),
                    })
                }
                Err(StoreError::ConditionFailed { current: Some(_) }) => last_error = Some(now),
                Err(e) => return Err(e.into()),
            }
        }
        let current = self.product_required(id).await?;
        match (current.lock_state(now), last_error) {
            (LockState::Held { by, until }, _) => Err(LockError::HeldByOther { by, until }.into()),
            _ => Err(RepoError::VersionConflict {
                current: Box::new(current),
            }),
        }
    }

    /// A product's versions, by version number.
    pub async fn product_versions(
        &self,
        id: ProductId,
        newest_first: bool,
        limit: u32,
        start: Option<PageToken>,
    ) -> Result<Paged<ProductVersion>, RepoError> {
        let mut q = Query::new(Table::ProductVersions, None, id.to_string());
        q.ascending = !newest_first;
        q.limit = limit;
        q.start = start;
        self.query(q).await
    }

    /// One version of a product.
    pub async fn product_version(
        &self,
        id: ProductId,
        version: u64,
    ) -> Result<Option<ProductVersion>, RepoError> {
        self.get(&Key::pk_sk(id.to_string(), version as i64)).await
    }

    /// Starts idempotent work under `key` for a payload with hash `payload_hash`.
    ///
    /// Powertools semantics: one conditional put takes the key; a completed record replays its
    /// result; the same key with another payload is refused; an in-progress record blocks until
    /// `in_progress_until` passes (set from the invocation deadline); a record past
    /// `expires_at` counts as absent (expiry is checked here; TTL only cleans up).
    pub async fn begin_idempotent(
        &self,
        key: &str,
        payload_hash: &str,
        now: DateTime<Utc>,
        in_progress_until: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<IdempotencyStart, RepoError> {
        let item = Item {
            attrs: [
                ("key".to_owned(), Scalar::from(key)),
                (IDEM_STATUS.to_owned(), Scalar::from(IDEM_IN_PROGRESS)),
                (IDEM_HASH.to_owned(), Scalar::from(payload_hash)),
                (IDEM_EXPIRES.to_owned(), Scalar::N(expires_at.timestamp())),
                (
                    IDEM_IN_PROGRESS_EXPIRES.to_owned(),
                    Scalar::N(millis(in_progress_until)),
                ),
            ]
            .into(),
            doc: serde_json::to_vec(&IdempotencyDoc { result: None }).ok(),
        };
        match self
            .backend
            .put(Table::IdempotencyRecords, item, Some(takeable(now)))
            .await
        {
            Ok(()) => Ok(IdempotencyStart::Started),
            Err(StoreError::ConditionFailed {
                current: Some(current),
            }) => {
                let same_payload =
                    current.attrs.get(IDEM_HASH).and_then(Scalar::as_str) == Some(payload_hash);
                if !same_payload {
                    return Err(RepoError::IdempotencyPayloadMismatch {
                        key: key.to_owned(),
                    });
                }
                if current.attrs.get(IDEM_STATUS).and_then(Scalar::as_str) == Some(IDEM_COMPLETED) {
                    let doc: IdempotencyDoc = serde_json::from_slice(
                        current.doc.as_deref().unwrap_or(b"{}"),
                    )
                    .map_err(|e| RepoError::Decode {
                        table: Table::IdempotencyRecords,
                        reason: e.to_string(),
                    })?;
                    return Ok(IdempotencyStart::Replay(
                        doc.result.unwrap_or(serde_json::Value::Null),
                    ));
                }
                Err(RepoError::IdempotencyInProgress {
                    key: key.to_owned(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// What `key` records at `now` (an expired record or a lapsed claim reads as absent).
    pub async fn idempotency_state(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<IdempotencyState, RepoError> {
        let Some(item) = self
            .backend
            .get(Table::IdempotencyRecords, &Key::pk(key))
            .await?
        else {
            return Ok(IdempotencyState::Absent);
        };
        let number = |name: &str| item.attrs.get(name).and_then(Scalar::as_i64);
        if number(IDEM_EXPIRES).is_some_and(|at| at < now.timestamp()) {
            return Ok(IdempotencyState::Absent);
        }
        if item.attrs.get(IDEM_STATUS).and_then(Scalar::as_str) == Some(IDEM_COMPLETED) {
            let doc: IdempotencyDoc = serde_json::from_slice(item.doc.as_deref().unwrap_or(b"{}"))
                .map_err(|e| RepoError::Decode {
                    table: Table::IdempotencyRecords,
                    reason: e.to_string(),
                })?;
            return Ok(IdempotencyState::Completed {
                payload_hash: item
                    .attrs
                    .get(IDEM_HASH)
                    .and_then(Scalar::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                result: doc.result.unwrap_or(serde_json::Value::Null),
            });
        }
        if number(IDEM_IN_PROGRESS_EXPIRES).is_some_and(|until| until < millis(now)) {
            return Ok(IdempotencyState::Absent);
        }
        Ok(IdempotencyState::InProgress)
    }

    /// The write that records work under `key` as completed with `result` without a claim
    /// first, to commit in one transaction with the work's own writes. Its condition refuses
    /// (and so cancels the whole transaction) when the key was completed meanwhile or is
    /// claimed by a live attempt, so two attempts racing never both write their work.
    pub fn completion_write(
        key: &str,
        payload_hash: &str,
        result: serde_json::Value,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<WriteOp, RepoError> {
        Ok(WriteOp::Put {
            table: Table::IdempotencyRecords,
            item: completed_item(key, payload_hash, result, expires_at)?,
            condition: Some(takeable(now)),
        })
    }

    /// The write that stores a new `record` (refused if one exists), to commit in one
    /// transaction with others.
    pub fn insert_write<R: Record>(record: &R) -> Result<WriteOp, RepoError> {
        Ok(WriteOp::Put {
            table: R::TABLE,
            item: encode(record)?,
            condition: Some(Condition::ItemAbsent),
        })
    }

    /// A write that replaces `record` only while the stored one is present and still has the
    /// attribute values `expected` (as [`Store::replace_if`], inside a transaction).
    pub fn replace_write<R: Record>(record: &R, expected: Condition) -> Result<WriteOp, RepoError> {
        Ok(WriteOp::Put {
            table: R::TABLE,
            item: encode(record)?,
            condition: Some(Condition::And(vec![Condition::ItemPresent, expected])),
        })
    }

    /// Commits `writes` in one transaction, all or nothing (the backend's limit of items
    /// applies). A refused condition is an answer: `Err(reasons)`, per write, nothing written.
    pub async fn commit_writes(
        &self,
        writes: Vec<WriteOp>,
    ) -> Result<Result<(), Vec<crate::backend::CancelReason>>, RepoError> {
        match self.backend.transact(writes).await {
            Ok(()) => Ok(Ok(())),
            Err(StoreError::TransactionCanceled { reasons })
                if !reasons
                    .iter()
                    .any(|r| matches!(r, crate::backend::CancelReason::TransactionConflict)) =>
            {
                Ok(Err(reasons))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records the result of work started with [`Store::begin_idempotent`].
    pub async fn complete_idempotent(
        &self,
        key: &str,
        payload_hash: &str,
        result: serde_json::Value,
        expires_at: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let item = completed_item(key, payload_hash, result, expires_at)?;
        let ours = Condition::And(vec![
            Condition::Eq(IDEM_STATUS, Scalar::from(IDEM_IN_PROGRESS)),
            Condition::Eq(IDEM_HASH, Scalar::from(payload_hash)),
        ]);
        match self
            .backend
            .put(Table::IdempotencyRecords, item, Some(ours))
            .await
        {
            Err(StoreError::ConditionFailed { .. }) => Err(RepoError::IdempotencyPayloadMismatch {
                key: key.to_owned(),
            }),
            other => Ok(other?),
        }
    }

    /// Gives up work started under `key` (it failed), so a retry can run it.
    pub async fn abandon_idempotent(&self, key: &str, payload_hash: &str) -> Result<(), RepoError> {
        let ours = Condition::And(vec![
            Condition::Eq(IDEM_STATUS, Scalar::from(IDEM_IN_PROGRESS)),
            Condition::Eq(IDEM_HASH, Scalar::from(payload_hash)),
        ]);
        match self
            .backend
            .delete(Table::IdempotencyRecords, &Key::pk(key), Some(ours))
            .await
        {
            Err(StoreError::ConditionFailed { .. }) | Ok(()) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The record of work under `key` completed with `result`.
fn completed_item(
    key: &str,
    payload_hash: &str,
    result: serde_json::Value,
    expires_at: DateTime<Utc>,
) -> Result<Item, RepoError> {
    let doc = serde_json::to_vec(&IdempotencyDoc {
        result: Some(result),
    })
    .map_err(|e| RepoError::Decode {
        table: Table::IdempotencyRecords,
        reason: e.to_string(),
    })?;
    Ok(Item {
        attrs: [
            ("key".to_owned(), Scalar::from(key)),
            (IDEM_STATUS.to_owned(), Scalar::from(IDEM_COMPLETED)),
            (IDEM_HASH.to_owned(), Scalar::from(payload_hash)),
            (IDEM_EXPIRES.to_owned(), Scalar::N(expires_at.timestamp())),
        ]
        .into(),
        doc: Some(doc),
    })
}

/// The condition under which an idempotency key may be taken at `now`: absent, expired, or
/// held by a claim whose lease lapsed.
fn takeable(now: DateTime<Utc>) -> Condition {
    Condition::Or(vec![
        Condition::ItemAbsent,
        Condition::Lt(IDEM_EXPIRES, Scalar::N(now.timestamp())),
        Condition::And(vec![
            Condition::Eq(IDEM_STATUS, Scalar::from(IDEM_IN_PROGRESS)),
            Condition::Lt(IDEM_IN_PROGRESS_EXPIRES, Scalar::N(millis(now))),
        ]),
    ])
}

/// The result of a conditional replace.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError<R: std::fmt::Debug> {
    /// The stored record no longer matches: here it is.
    #[error("the record changed since it was read")]
    Changed(Box<R>),
    /// Another failure.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// A query on the sort key range `[from, to]` of epoch-millisecond times.
pub fn between_times(from: DateTime<Utc>, to: DateTime<Utc>) -> SortCondition {
    SortCondition::Between(Scalar::N(millis(from)), Scalar::N(millis(to)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopsync_domain::testing::sample_content;

    fn products() -> Vec<Product> {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-30T09:15:02.125Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("time");
        let bare = Product::new(ProductId::generate(), sample_content(0), now);
        let mut full = Product::new(ProductId::generate(), sample_content(3), now);
        full.shopify_id = shopsync_domain::ShopifyProductId::new(9_007_199_254_740_993).ok();
        full.content.title = "Quote \" backslash \\ café ☕ \u{1}".into();
        full.version = 7;
        full.last_sync_version = 5;
        full.sync_locked = true;
        full.sync_locked_by = Actor::new("user:alice").ok();
        full.sync_lock_expires_at = Some(now + Duration::seconds(90));
        full.xorosoft_id = Some("XR-1".into());
        full.stock_synced_at = Some(now - Duration::days(1));
        full.shopify_updated_at = Some(now - Duration::milliseconds(1));
        full.updated_at = now + Duration::nanoseconds(123_456_789);
        vec![bare, full]
    }

    fn stamps(product: &Product) -> Vec<VersionStamp> {
        let actor = Actor::new("system:sync").expect("actor");
        let operation = Some(OperationId::generate());
        vec![
            VersionStamp::first(product, ChangeSource::Shopify, actor.clone(), None),
            VersionStamp::new(
                product.content.to_fields().into_keys().take(3).collect(),
                ChangeSource::Local,
                actor,
                operation,
                product.updated_at,
            ),
        ]
    }

    fn value(item: &Item) -> serde_json::Value {
        serde_json::from_slice(item.doc.as_deref().expect("doc")).expect("json")
    }

    /// The documents made with the content serialized once hold what `encode` writes of the
    /// product and of its snapshot, and read back as those records.
    #[test]
    fn a_product_and_its_snapshot_encode_as_each_alone() {
        let mut checked = 0;
        for product in products() {
            for stamp in stamps(&product) {
                let (p, v) = encode_with_snapshot(&product, &stamp).expect("encode");
                let version = ProductVersion::of(&product, stamp);
                let (p_alone, v_alone) = (
                    encode(&product).expect("product"),
                    encode(&version).expect("version"),
                );
                assert_eq!(value(&p), value(&p_alone));
                assert_eq!(value(&v), value(&v_alone));
                assert_eq!(p.attrs, p_alone.attrs);
                assert_eq!(v.attrs, v_alone.attrs);
                assert_eq!(decode::<Product>(&p).expect("read"), product);
                let mut expected = version.clone();
                expected.spell_out();
                assert_eq!(decode::<ProductVersion>(&v).expect("read"), expected);
                checked += 1;
            }
        }
        assert_eq!(checked, 4);
    }
}

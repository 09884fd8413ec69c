//! The DynamoDB backend. The endpoint can point at a local server (moto) for tests.
//!
//! Items: scalar attributes as top-level `S`/`N`; the entity document as JSON text in `doc`,
//! or deflated in `doc_z` when large, so snapshots beyond DynamoDB's 400 KB item limit
//! (uncompressed) are stored transparently.

use async_trait::async_trait;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::KeysAndAttributes;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck,
    CreateGlobalSecondaryIndexAction, Delete, GlobalSecondaryIndex, GlobalSecondaryIndexUpdate,
    IndexStatus, KeySchemaElement, KeyType as DynamoKeyType, Projection, ProjectionType, Put,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use futures::stream::{self, StreamExt, TryStreamExt};
use shopsync_store::backend::{
    check_page_size, check_transaction_size, prefixed, CancelReason, ItemStore, StoreError,
    TableState,
};
use shopsync_store::item::{
    Attrs, Condition, Item, Key, Page, PageToken, Query, Scalar, SortCondition, WriteOp,
};
use shopsync_store::schema::{IndexDef, KeyAttr, KeyType, Table, TableDef, RESERVED_ATTRS};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Documents larger than this are stored deflated.
pub const COMPRESS_OVER_BYTES: usize = 32 * 1024;
/// The largest (compressed) document stored, leaving room for attributes under 400 KB.
pub const MAX_DOC_BYTES: usize = 380 * 1024;

type DynamoItem = HashMap<String, AttributeValue>;

/// The DynamoDB backend.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    prefix: String,
    requests: Arc<AtomicU64>,
}

/// Counts every request the client sends (each attempt of a retried call included).
#[derive(Debug, Clone, Default)]
struct CountRequests(Arc<AtomicU64>);

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// How many index lookups of one `query_each` are in flight at once.
pub const LOOKUP_PARALLELISM: usize = 16;

/// The most keys one BatchGetItem takes (DynamoDB's limit).
pub const MAX_BATCH_GET: usize = 100;

impl DynamoStore {
    /// Connects with the default credential chain and region; `endpoint` overrides the
    /// endpoint (e.g. `http://127.0.0.1:5000` for a local server).
    pub async fn connect(endpoint: Option<&str>, prefix: &str) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(url) = endpoint {
            loader = loader.endpoint_url(url);
        }
        let config = loader.load().await;
        Self::from_client(Client::new(&config), prefix)
    }

    /// Wraps an existing client (its requests are counted from here on).
    pub fn from_client(client: Client, prefix: &str) -> Self {
        let requests = CountRequests::default();
        let config = client
            .config()
            .to_builder()
            .interceptor(requests.clone())
            .build();
        Self {
            client: Client::from_conf(config),
            prefix: prefix.to_owned(),
            requests: requests.0,
        }
    }

    /// How many requests this store has sent to DynamoDB so far (each attempt counted).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn name(&self, table: Table) -> String {
        prefixed(&self.prefix, table)
    }

    async fn wait_active(&self, name: &str, index: Option<&str>) -> Result<(), StoreError> {
        for _ in 0..240 {
            let out = self
                .client
                .describe_table()
                .table_name(name)
                .send()
                .await
                .map_err(map_sdk)?;
            let table = out
                .table()
                .ok_or_else(|| StoreError::Corrupt("DescribeTable without a table".into()))?;
            let ready = match index {
                None => table.table_status() == Some(&TableStatus::Active),
                Some(ix) => table.global_secondary_indexes().iter().any(|g| {
                    g.index_name() == Some(ix) && g.index_status() == Some(&IndexStatus::Active)
                }),
            };
            if ready {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(StoreError::Unavailable(format!(
            "{name} did not become active in 2 minutes"
        )))
    }
}

/// Maps an SDK error: throttling and transport faults are retryable, the rest are answers.
fn map_sdk<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: SdkError<E, HttpResponse>,
) -> StoreError {
    let text = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match service.err().code() {
                Some(
                    "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded",
                ) => StoreError::Throttled(text),
                Some("ResourceNotFoundException") => StoreError::TableMissing(text),
                Some("ItemCollectionSizeLimitExceededException") => StoreError::TooLarge {
                    bytes: 0,
                    limit: MAX_DOC_BYTES,
                },
                _ if status >= 500 => StoreError::Unavailable(text),
                _ => StoreError::Invalid(text),
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(text)
        }
        _ => StoreError::Invalid(text),
    }
}

fn to_av(value: &Scalar) -> AttributeValue {
    match value {
        Scalar::S(s) => AttributeValue::S(s.clone()),
        Scalar::N(n) => AttributeValue::N(n.to_string()),
    }
}

fn from_av(name: &str, value: &AttributeValue) -> Result<Option<Scalar>, StoreError> {
    Ok(match value {
        AttributeValue::S(s) => Some(Scalar::S(s.clone())),
        AttributeValue::N(n) => Some(Scalar::N(n.parse().map_err(|_| {
            StoreError::Corrupt(format!("attribute {name} = {n} is not an integer"))
        })?)),
        _ => None,
    })
}

fn encode_item(item: &Item) -> Result<DynamoItem, StoreError> {
    let mut out = DynamoItem::with_capacity(item.attrs.len() + 1);
    for (name, value) in &item.attrs {
        if RESERVED_ATTRS.contains(&name.as_str()) {
            return Err(StoreError::Invalid(format!(
                "attribute name `{name}` is reserved"
            )));
        }
        out.insert(name.clone(), to_av(value));
    }
    if let Some(doc) = &item.doc {
        match std::str::from_utf8(doc) {
            Ok(text) if doc.len() <= COMPRESS_OVER_BYTES => {
                out.insert("doc".into(), AttributeValue::S(text.to_owned()));
            }
            _ => {
                let mut enc = DeflateEncoder::new(
                    Vec::with_capacity(doc.len() / 4),
                    flate2::Compression::default(),
                );
                enc.write_all(doc)
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                let packed = enc
                    .finish()
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                if packed.len() > MAX_DOC_BYTES {
                    return Err(StoreError::TooLarge {
                        bytes: packed.len(),
                        limit: MAX_DOC_BYTES,
                    });
                }
                out.insert("doc_z".into(), AttributeValue::B(Blob::new(packed)));
            }
        }
    }
    Ok(out)
}

fn decode_item(raw: &DynamoItem) -> Result<Item, StoreError> {
    let mut item = Item::default();
    for (name, value) in raw {
        match (name.as_str(), value) {
            ("doc", AttributeValue::S(text)) => item.doc = Some(text.clone().into_bytes()),
            ("doc_z", AttributeValue::B(blob)) => {
                let mut out = Vec::with_capacity(blob.as_ref().len() * 4);
                DeflateDecoder::new(blob.as_ref())
                    .read_to_end(&mut out)
                    .map_err(|e| StoreError::Corrupt(format!("compressed document: {e}")))?;
                item.doc = Some(out);
            }
            _ => {
                if let Some(v) = from_av(name, value)? {
                    item.attrs.insert(name.clone(), v);
                }
            }
        }
    }
    Ok(item)
}

fn encode_key(def: &TableDef, key: &Key) -> Result<DynamoItem, StoreError> {
    let mut out = DynamoItem::new();
    out.insert(def.key.pk.name.to_owned(), to_av(&key.pk));
    match (def.key.sk, &key.sk) {
        (Some(sk), Some(v)) => {
            out.insert(sk.name.to_owned(), to_av(v));
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::Invalid(format!(
                "key does not fit the key schema of {}",
                def.name
            )))
        }
    }
    Ok(out)
}

fn attrs_to_dynamo(attrs: &Attrs) -> DynamoItem {
    attrs.iter().map(|(k, v)| (k.clone(), to_av(v))).collect()
}

fn dynamo_to_attrs(raw: &DynamoItem) -> Result<Attrs, StoreError> {
    let mut out = Attrs::new();
    for (k, v) in raw {
        if let Some(s) = from_av(k, v)? {
            out.insert(k.clone(), s);
        }
    }
    Ok(out)
}

/// Placeholders for an expression: `#nN` names and `:vN` values.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, attr: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, a)| a.as_str() == attr) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), attr.to_owned());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    fn condition(&mut self, cond: &Condition, pk: &str) -> String {
        let cmp = |this: &mut Self, a: &str, op: &str, v: &Scalar| {
            let n = this.name(a);
            let v = this.value(to_av(v));
            format!("{n} {op} {v}")
        };
        match cond {
            Condition::ItemAbsent => format!("attribute_not_exists({})", self.name(pk)),
            Condition::ItemPresent => format!("attribute_exists({})", self.name(pk)),
            Condition::Exists(a) => format!("attribute_exists({})", self.name(a)),
            Condition::NotExists(a) => format!("attribute_not_exists({})", self.name(a)),
            Condition::Eq(a, v) => cmp(self, a, "=", v),
            Condition::Lt(a, v) => cmp(self, a, "<", v),
            Condition::Le(a, v) => cmp(self, a, "<=", v),
            Condition::Gt(a, v) => cmp(self, a, ">", v),
            Condition::And(all) if all.is_empty() => format!(
                "attribute_exists({0}) OR attribute_not_exists({0})",
                self.name(pk)
            ),
            Condition::Or(any) if any.is_empty() => format!(
                "attribute_exists({0}) AND attribute_not_exists({0})",
                self.name(pk)
            ),
            Condition::And(all) => all
                .iter()
                .map(|c| format!("({})", self.condition(c, pk)))
                .collect::<Vec<_>>()
                .join(" AND "),
            Condition::Or(any) => any
                .iter()
                .map(|c| format!("({})", self.condition(c, pk)))
                .collect::<Vec<_>>()
                .join(" OR "),
            Condition::Not(c) => format!("NOT ({})", self.condition(c, pk)),
        }
    }

    fn names_opt(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values_opt(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

fn condition_failed(item: Option<&DynamoItem>) -> StoreError {
    match item.map(decode_item).transpose() {
        Ok(current) => StoreError::ConditionFailed {
            current: current.map(Box::new),
        },
        Err(e) => e,
    }
}

fn key_attr_type(attr: KeyAttr) -> ScalarAttributeType {
    match attr.kind {
        KeyType::S => ScalarAttributeType::S,
        KeyType::N => ScalarAttributeType::N,
    }
}

fn key_schema(pk: KeyAttr, sk: Option<KeyAttr>) -> Result<Vec<KeySchemaElement>, StoreError> {
    let mut out = vec![KeySchemaElement::builder()
        .attribute_name(pk.name)
        .key_type(DynamoKeyType::Hash)
        .build()
        .map_err(|e| StoreError::Invalid(e.to_string()))?];
    if let Some(sk) = sk {
        out.push(
            KeySchemaElement::builder()
                .attribute_name(sk.name)
                .key_type(DynamoKeyType::Range)
                .build()
                .map_err(|e| StoreError::Invalid(e.to_string()))?,
        );
    }
    Ok(out)
}

fn attribute_definitions(
    attrs: impl Iterator<Item = KeyAttr>,
) -> Result<Vec<AttributeDefinition>, StoreError> {
    let mut seen = std::collections::BTreeMap::new();
    for a in attrs {
        seen.insert(a.name, a);
    }
    seen.values()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(a.name)
                .attribute_type(key_attr_type(*a))
                .build()
                .map_err(|e| StoreError::Invalid(e.to_string()))
        })
        .collect()
}

fn gsi(index: &IndexDef) -> Result<GlobalSecondaryIndex, StoreError> {
    GlobalSecondaryIndex::builder()
        .index_name(index.name)
        .set_key_schema(Some(key_schema(index.key.pk, index.key.sk)?))
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(|e| StoreError::Invalid(e.to_string()))
}

fn table_of(def: &TableDef) -> Result<Table, StoreError> {
    Table::named(def).ok_or_else(|| StoreError::Invalid(format!("unknown table {}", def.name)))
}

fn page_from(items: &[DynamoItem], last: Option<&DynamoItem>) -> Result<Page, StoreError> {
    Ok(Page {
        items: items.iter().map(decode_item).collect::<Result<_, _>>()?,
        next: last
            .map(dynamo_to_attrs)
            .transpose()?
            .map(|a| PageToken::encode(&a)),
    })
}

fn start_key(token: Option<&PageToken>) -> Result<Option<DynamoItem>, StoreError> {
    token
        .map(|t| {
            t.decode()
                .map(|a| attrs_to_dynamo(&a))
                .ok_or_else(|| StoreError::Invalid("malformed page token".into()))
        })
        .transpose()
}

#[async_trait]
impl ItemStore for DynamoStore {
    fn kind(&self) -> &'static str {
        "dynamodb"
    }

    fn physical_name(&self, table: Table) -> String {
        self.name(table)
    }

    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.name(table))
            .set_key(Some(encode_key(table.def(), key)?))
            .consistent_read(true)
            .send()
            .await
            .map_err(map_sdk)?;
        out.item().map(decode_item).transpose()
    }

    /// BatchGetItem, consistent reads, [`MAX_BATCH_GET`] keys a request; keys DynamoDB
    /// leaves unprocessed (throttling, the 16 MB answer limit) are asked again after a short
    /// pause.
    async fn get_each(&self, table: Table, keys: &[Key]) -> Result<Vec<Option<Item>>, StoreError> {
        let def = table.def();
        let name = self.name(table);
        let mut found: HashMap<Key, Item> = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_BATCH_GET) {
            let mut distinct: Vec<&Key> = Vec::with_capacity(chunk.len());
            for key in chunk {
                if !distinct.contains(&key) {
                    distinct.push(key);
                }
            }
            let encoded = distinct
                .iter()
                .map(|key| encode_key(def, key))
                .collect::<Result<Vec<_>, _>>()?;
            let mut request = KeysAndAttributes::builder()
                .set_keys(Some(encoded))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            for attempt in 0.. {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&name, request.clone())
                    .send()
                    .await
                    .map_err(map_sdk)?;
                for raw in out
                    .responses()
                    .and_then(|r| r.get(&name))
                    .into_iter()
                    .flatten()
                {
                    let item = decode_item(raw)?;
                    let key = item.key(def).ok_or_else(|| {
                        StoreError::Corrupt(format!("an item of {name} without its key"))
                    })?;
                    found.insert(key, item);
                }
                match out.unprocessed_keys().and_then(|u| u.get(&name)) {
                    Some(rest) if !rest.keys().is_empty() => {
                        if attempt >= 8 {
                            return Err(StoreError::Throttled(format!(
                                "{} keys of {name} still unprocessed after {attempt} attempts",
                                rest.keys().len()
                            )));
                        }
                        request = rest.clone();
                        tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
                    }
                    _ => break,
                }
            }
        }
        Ok(keys.iter().map(|key| found.get(key).cloned()).collect())
    }

    /// Up to [`LOOKUP_PARALLELISM`] queries in flight at once, answered in order.
    async fn query_each(&self, queries: &[Query]) -> Result<Vec<Page>, StoreError> {
        let lookups: Vec<_> = queries.iter().map(|query| self.query(query)).collect();
        stream::iter(lookups)
            .buffered(LOOKUP_PARALLELISM)
            .try_collect()
            .await
    }

    async fn put(
        &self,
        table: Table,
        item: Item,
        condition: Option<Condition>,
    ) -> Result<(), StoreError> {
        let mut expr = Expr::default();
        let cond = condition.map(|c| expr.condition(&c, table.def().key.pk.name));
        let result = self
            .client
            .put_item()
            .table_name(self.name(table))
            .set_item(Some(encode_item(&item)?))
            .set_condition_expression(cond)
            .set_expression_attribute_names(expr.names_opt())
            .set_expression_attribute_values(expr.values_opt())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(e)) => {
                    Err(condition_failed(e.item()))
                }
                _ => Err(map_sdk(err)),
            },
        }
    }

    async fn delete(
        &self,
        table: Table,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<(), StoreError> {
        let mut expr = Expr::default();
        let cond = condition.map(|c| expr.condition(&c, table.def().key.pk.name));
        let result = self
            .client
            .delete_item()
            .table_name(self.name(table))
            .set_key(Some(encode_key(table.def(), key)?))
            .set_condition_expression(cond)
            .set_expression_attribute_names(expr.names_opt())
            .set_expression_attribute_values(expr.values_opt())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException(e)) => {
                    Err(condition_failed(e.item()))
                }
                _ => Err(map_sdk(err)),
            },
        }
    }

    async fn transact(&self, writes: Vec<WriteOp>) -> Result<(), StoreError> {
        check_transaction_size(writes.len())?;
        let all_old = ReturnValuesOnConditionCheckFailure::AllOld;
        let bad = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Invalid(e.to_string());
        let mut items = Vec::with_capacity(writes.len());
        for write in &writes {
            let mut expr = Expr::default();
            let entry = match write {
                WriteOp::Put {
                    table,
                    item,
                    condition,
                } => {
                    let cond = condition
                        .as_ref()
                        .map(|c| expr.condition(c, table.def().key.pk.name));
                    let put = Put::builder()
                        .table_name(self.name(*table))
                        .set_item(Some(encode_item(item)?))
                        .set_condition_expression(cond)
                        .set_expression_attribute_names(expr.names_opt())
                        .set_expression_attribute_values(expr.values_opt())
                        .return_values_on_condition_check_failure(all_old.clone())
                        .build()
                        .map_err(bad)?;
                    TransactWriteItem::builder().put(put).build()
                }
                WriteOp::Delete {
                    table,
                    key,
                    condition,
                } => {
                    let cond = condition
                        .as_ref()
                        .map(|c| expr.condition(c, table.def().key.pk.name));
                    let delete = Delete::builder()
                        .table_name(self.name(*table))
                        .set_key(Some(encode_key(table.def(), key)?))
                        .set_condition_expression(cond)
                        .set_expression_attribute_names(expr.names_opt())
                        .set_expression_attribute_values(expr.values_opt())
                        .return_values_on_condition_check_failure(all_old.clone())
                        .build()
                        .map_err(bad)?;
                    TransactWriteItem::builder().delete(delete).build()
                }
                WriteOp::Check {
                    table,
                    key,
                    condition,
                } => {
                    let cond = expr.condition(condition, table.def().key.pk.name);
                    let check = ConditionCheck::builder()
                        .table_name(self.name(*table))
                        .set_key(Some(encode_key(table.def(), key)?))
                        .condition_expression(cond)
                        .set_expression_attribute_names(expr.names_opt())
                        .set_expression_attribute_values(expr.values_opt())
                        .return_values_on_condition_check_failure(all_old.clone())
                        .build()
                        .map_err(bad)?;
                    TransactWriteItem::builder().condition_check(check).build()
                }
            };
            items.push(entry);
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(e)) => {
                    let mut reasons = Vec::with_capacity(writes.len());
                    for r in e.cancellation_reasons() {
                        reasons.push(match r.code() {
                            None | Some("None") => CancelReason::None,
                            Some("ConditionalCheckFailed") => CancelReason::ConditionFailed(r.item().map(decode_item).transpose()?),
                            Some("TransactionConflict") => CancelReason::TransactionConflict,
                            Some(other) => CancelReason::Other(other.to_owned()),
                        });
                    }
                    Err(StoreError::TransactionCanceled { reasons })
                }
                _ => Err(map_sdk(err)),
            },
        }
    }

    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        let def = query.table.def();
        let key = match query.index {
            Some(name) => {
                def.index(name)
                    .ok_or_else(|| {
                        StoreError::Invalid(format!("{} has no index {name}", def.name))
                    })?
                    .key
            }
            None => def.key,
        };
        check_page_size(query.limit)?;
        let mut expr = Expr::default();
        let pk = expr.name(key.pk.name);
        let pk_value = expr.value(to_av(&query.pk));
        let mut key_condition = format!("{pk} = {pk_value}");
        if let Some(cond) = &query.sk {
            let sk = key.sk.ok_or_else(|| {
                StoreError::Invalid("sort key condition on a key without a sort key".into())
            })?;
            let n = expr.name(sk.name);
            let clause = match cond {
                SortCondition::Eq(v) => format!("{n} = {}", expr.value(to_av(v))),
                SortCondition::Lt(v) => format!("{n} < {}", expr.value(to_av(v))),
                SortCondition::Le(v) => format!("{n} <= {}", expr.value(to_av(v))),
                SortCondition::Gt(v) => format!("{n} > {}", expr.value(to_av(v))),
                SortCondition::Ge(v) => format!("{n} >= {}", expr.value(to_av(v))),
                SortCondition::Between(lo, hi) => {
                    let (lo, hi) = (expr.value(to_av(lo)), expr.value(to_av(hi)));
                    format!("{n} BETWEEN {lo} AND {hi}")
                }
                SortCondition::BeginsWith(p) => format!(
                    "begins_with({n}, {})",
                    expr.value(AttributeValue::S(p.clone()))
                ),
            };
            key_condition.push_str(&format!(" AND {clause}"));
        }
        let out = self
            .client
            .query()
            .table_name(self.name(query.table))
            .set_index_name(query.index.map(str::to_owned))
            .key_condition_expression(key_condition)
            .set_expression_attribute_names(expr.names_opt())
            .set_expression_attribute_values(expr.values_opt())
            .scan_index_forward(query.ascending)
            .limit(query.limit as i32)
            .set_consistent_read(query.index.is_none().then_some(true))
            .set_exclusive_start_key(start_key(query.start.as_ref())?)
            .send()
            .await
            .map_err(map_sdk)?;
        page_from(out.items(), out.last_evaluated_key())
    }

    async fn scan(
        &self,
        table: Table,
        limit: u32,
        start: Option<&PageToken>,
    ) -> Result<Page, StoreError> {
        let out = self
            .client
            .scan()
            .table_name(self.name(table))
            .limit(limit.clamp(1, 1000) as i32)
            .consistent_read(true)
            .set_exclusive_start_key(start_key(start)?)
            .send()
            .await
            .map_err(map_sdk)?;
        page_from(out.items(), out.last_evaluated_key())
    }

    async fn describe_table(&self, def: &TableDef) -> Result<Option<TableState>, StoreError> {
        let name = self.name(table_of(def)?);
        let out = match self
            .client
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .map_err(map_sdk)
        {
            Ok(out) => out,
            Err(StoreError::TableMissing(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let table = out
            .table()
            .ok_or_else(|| StoreError::Corrupt("DescribeTable without a table".into()))?;
        let keys = |schema: &[KeySchemaElement]| {
            let find = |kind: DynamoKeyType| {
                schema
                    .iter()
                    .find(|k| k.key_type() == &kind)
                    .map(|k| k.attribute_name().to_owned())
            };
            (
                find(DynamoKeyType::Hash).unwrap_or_default(),
                find(DynamoKeyType::Range),
            )
        };
        let attr_types = table
            .attribute_definitions()
            .iter()
            .map(|a| {
                let kind = if a.attribute_type() == &ScalarAttributeType::N {
                    KeyType::N
                } else {
                    KeyType::S
                };
                (a.attribute_name().to_owned(), kind)
            })
            .collect();
        let mut indexes: Vec<(String, String, Option<String>)> = table
            .global_secondary_indexes()
            .iter()
            .map(|g| {
                let (pk, sk) = keys(g.key_schema());
                (g.index_name().unwrap_or_default().to_owned(), pk, sk)
            })
            .collect();
        indexes.sort();
        let ttl = self
            .client
            .describe_time_to_live()
            .table_name(&name)
            .send()
            .await
            .map_err(map_sdk)?;
        let ttl_attr = ttl
            .time_to_live_description()
            .filter(|d| {
                matches!(
                    d.time_to_live_status(),
                    Some(
                        aws_sdk_dynamodb::types::TimeToLiveStatus::Enabled
                            | aws_sdk_dynamodb::types::TimeToLiveStatus::Enabling
                    )
                )
            })
            .and_then(|d| d.attribute_name().map(str::to_owned));
        Ok(Some(TableState {
            physical_name: name,
            key: keys(table.key_schema()),
            attr_types,
            indexes,
            outdated_indexes: Vec::new(),
            ttl_attr,
        }))
    }

    async fn create_table(&self, def: &TableDef) -> Result<(), StoreError> {
        let name = self.name(table_of(def)?);
        let all_keys = std::iter::once(def.key)
            .chain(def.indexes.iter().map(|i| i.key))
            .flat_map(|k| std::iter::once(k.pk).chain(k.sk));
        let gsis = def.indexes.iter().map(gsi).collect::<Result<Vec<_>, _>>()?;
        self.client
            .create_table()
            .table_name(&name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(attribute_definitions(all_keys)?))
            .set_key_schema(Some(key_schema(def.key.pk, def.key.sk)?))
            .set_global_secondary_indexes((!gsis.is_empty()).then_some(gsis))
            .send()
            .await
            .map_err(map_sdk)?;
        self.wait_active(&name, None).await?;
        if let Some(attr) = def.ttl_attr {
            self.enable_ttl(def, attr).await?;
        }
        Ok(())
    }

    async fn create_index(&self, def: &TableDef, index: &IndexDef) -> Result<(), StoreError> {
        let name = self.name(table_of(def)?);
        let action = CreateGlobalSecondaryIndexAction::builder()
            .index_name(index.name)
            .set_key_schema(Some(key_schema(index.key.pk, index.key.sk)?))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.client
            .update_table()
            .table_name(&name)
            .set_attribute_definitions(Some(attribute_definitions(
                std::iter::once(index.key.pk).chain(index.key.sk),
            )?))
            .global_secondary_index_updates(
                GlobalSecondaryIndexUpdate::builder().create(action).build(),
            )
            .send()
            .await
            .map_err(map_sdk)?;
        self.wait_active(&name, Some(index.name)).await
    }

    async fn enable_ttl(&self, def: &TableDef, attr: &str) -> Result<(), StoreError> {
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(attr)
            .build()
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.client
            .update_time_to_live()
            .table_name(self.name(table_of(def)?))
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(map_sdk)?;
        Ok(())
    }

    async fn backup_table(&self, def: &TableDef) -> Result<String, StoreError> {
        let name = self.name(table_of(def)?);
        let backup_name = format!(
            "{name}-migrate-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        );
        let out = self
            .client
            .create_backup()
            .table_name(&name)
            .backup_name(backup_name)
            .send()
            .await
            .map_err(map_sdk)?;
        out.backup_details()
            .map(|d| d.backup_arn().to_owned())
            .ok_or_else(|| StoreError::Corrupt("CreateBackup returned no backup details".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_documents_are_deflated_and_come_back_whole() {
        let doc: Vec<u8> = serde_json::to_vec(&vec![
            "variant with a fairly repetitive description";
            40_000
        ])
        .unwrap();
        assert!(doc.len() > 400 * 1024);
        let item = Item {
            attrs: [("id".to_owned(), Scalar::from("p"))].into(),
            doc: Some(doc.clone()),
        };
        let raw = encode_item(&item).unwrap();
        assert!(raw.contains_key("doc_z") && !raw.contains_key("doc"));
        assert_eq!(decode_item(&raw).unwrap(), item);
    }

    #[test]
    fn conditions_become_expressions_with_placeholders() {
        let mut expr = Expr::default();
        let text = expr.condition(
            &Condition::And(vec![
                Condition::Eq("version", Scalar::N(3)),
                Condition::Or(vec![
                    Condition::NotExists("lock_owner"),
                    Condition::Lt("lock_expires_at", Scalar::N(9)),
                ]),
            ]),
            "id",
        );
        assert_eq!(
            text,
            "(#n0 = :v0) AND ((attribute_not_exists(#n1)) OR (#n2 < :v1))"
        );
        assert_eq!(
            expr.names.get("#n1").map(String::as_str),
            Some("lock_owner")
        );
    }
}

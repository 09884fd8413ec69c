//! Local → Shopify. Products whose version is past `last_sync_version` are pushed with
//! productSet. Variants are only ever deleted in Shopify when the local product deliberately
//! dropped them since the last sync (they are in the base snapshot and not in the current
//! content); a variant added in Shopify since then makes the push refused, never deleted.
//! `last_sync_version` (the base) advances only after Shopify confirms. The fingerprint of what
//! is pushed is remembered before the push, so its webhook echo is recognised.

use crate::error::EngineError;
use crate::perf::StageTimes;
use crate::push_plan::{choose_mutation, echo_key, product_set_input, stock_plan, Mutation};
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use shopsync_domain::product::ProductContent;
use shopsync_domain::ShopifyProductId;
use shopsync_domain::Stage;
use shopsync_domain::{
    Actor, ChangeSource, InventoryItemId, LocationId, Product, ProductId, ShopifyVariantId,
    VersionStamp,
};
use shopsync_shopify::ops::{
    BulkPush, InventoryPlan, NoCheckpoint, ProductSetRequest, ProductSetResult,
};
use shopsync_shopify::{AdminClient, ShopifyError};
use shopsync_store::item::Query;
use shopsync_store::{ProductCommit, RepoError, Store, Table};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// How long a pushed fingerprint is remembered (Shopify retries webhooks for 4 hours).
const ECHO_WINDOW_HOURS: i64 = 6;

/// What pushing one product did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Shopify has the product at this local version.
    Pushed(ProductId, u64),
    /// Shopify refused, or shopsync refused to send (e.g. it would delete variants added in
    /// Shopify since the last sync): nothing changed in Shopify.
    Refused(ProductId, String),
    /// Someone holds the product's lock.
    Locked(ProductId),
}

/// What pushing one product sends, decided before anything is sent: the base (what Shopify
/// was last confirmed to hold), the narrowest mutation, and the variants deliberately dropped
/// locally since the base (productSet deletes them in Shopify).
struct Prepared {
    base: Option<ProductContent>,
    mutation: Mutation,
    delete_variants: BTreeSet<ShopifyVariantId>,
}

/// Decides what pushing `product` sends, and remembers the fingerprint of what it sends so
/// its webhook echo is recognised.
async fn prepare(
    store: &Store,
    product: &Product,
    now: DateTime<Utc>,
    times: &mut StageTimes,
) -> Result<Prepared, EngineError> {
    // Variants deliberately dropped locally since the last sync: in the base, not current.
    let mut delete_variants = BTreeSet::new();
    let diffing = Instant::now();
    let base = if product.last_sync_version > 0 && product.shopify_id.is_some() {
        store
            .product_version(product.id, product.last_sync_version)
            .await?
            .map(|v| v.product_data)
    } else {
        None
    };
    if let Some(base) = &base {
        let current: BTreeSet<ShopifyVariantId> = product
            .content
            .variants
            .iter()
            .filter_map(|v| v.shopify_id)
            .collect();
        delete_variants = base
            .variants
            .iter()
            .filter_map(|v| v.shopify_id)
            .filter(|id| !current.contains(id))
            .collect();
    }
    let mutation = match (product.shopify_id, &base) {
        (Some(id), Some(base)) => choose_mutation(id, base, &product.content),
        _ => Mutation::Set,
    };
    if let Some(id) = product.shopify_id {
        store
            .remember(
                &echo_key(id, &product.content),
                now + Duration::hours(ECHO_WINDOW_HOURS),
            )
            .await?;
    }
    times.add(Stage::Diff, diffing);
    Ok(Prepared {
        base,
        mutation,
        delete_variants,
    })
}

/// Sends one product's mutation on its own.
async fn send_one(
    client: &AdminClient,
    product: &Product,
    prepared: &Prepared,
) -> Result<ProductSetResult, ShopifyError> {
    match &prepared.mutation {
        Mutation::Set => {
            let request = ProductSetRequest {
                product: product.shopify_id,
                input: product_set_input(&product.content, product.shopify_id.is_some()),
                delete_variants: prepared.delete_variants.clone(),
            };
            client.product_set(&request).await
        }
        Mutation::Update(id, input) => {
            client
                .product_update(input)
                .await
                .map(|updated_at| ProductSetResult {
                    product_id: *id,
                    updated_at,
                    variants: Vec::new(),
                    asynchronous: false,
                })
        }
        Mutation::StockOnly(id) => Ok(stock_only(*id)),
        Mutation::Variants(id, inputs) => {
            client
                .variants_bulk_update(*id, inputs)
                .await
                .map(|updated| ProductSetResult {
                    product_id: *id,
                    // The product's own updatedAt moves with its variants' at least this far.
                    updated_at: updated.iter().filter_map(|v| v.updated_at).max(),
                    variants: Vec::new(),
                    asynchronous: false,
                })
        }
    }
}

/// The answer for a change that is stock alone: no mutation, the inventory plan carries it.
fn stock_only(id: ShopifyProductId) -> ProductSetResult {
    ProductSetResult {
        product_id: id,
        updated_at: None,
        variants: Vec::new(),
        asynchronous: false,
    }
}

/// Pushes one product that needs it.
pub async fn push_product(
    store: &Store,
    client: &AdminClient,
    product: &Product,
    actor: &Actor,
    now: DateTime<Utc>,
    times: &mut StageTimes,
) -> Result<Pushed, EngineError> {
    if product.writable_by(actor, now).is_err() {
        return Ok(Pushed::Locked(product.id));
    }
    let prepared = prepare(store, product, now, times).await?;
    let pushing = Instant::now();
    let pushed = send_one(client, product, &prepared).await;
    times.add(Stage::Push, pushing);
    finish(
        store,
        client,
        product,
        prepared.base.as_ref(),
        pushed,
        actor,
        now,
        times,
    )
    .await
}

/// How many products a push takes before it goes through Shopify's bulk mutations instead
/// of one call per product: `SHOPSYNC_BULK_PUSH_MIN` (default 500), read once. Hosts check
/// the setting with [`bulk_push_min_from`] when they start, so a bad value stops them with
/// its name instead of falling back here.
pub fn bulk_push_min() -> u64 {
    static MIN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| {
        bulk_push_min_from(|name| std::env::var(name).ok()).unwrap_or(DEFAULT_BULK_PUSH_MIN)
    })
}

/// The default of `SHOPSYNC_BULK_PUSH_MIN`.
const DEFAULT_BULK_PUSH_MIN: u64 = 500;

/// `SHOPSYNC_BULK_PUSH_MIN` as `lookup` gives it: a whole number of products, at least 1
/// (the default when absent or blank); anything else is an error naming the setting.
pub fn bulk_push_min_from(lookup: impl Fn(&str) -> Option<String>) -> Result<u64, String> {
    let Some(value) = lookup("SHOPSYNC_BULK_PUSH_MIN").filter(|v| !v.trim().is_empty()) else {
        return Ok(DEFAULT_BULK_PUSH_MIN);
    };
    match value.trim().parse::<u64>() {
        Ok(min) if min >= 1 => Ok(min),
        _ => Err(format!(
            "SHOPSYNC_BULK_PUSH_MIN: `{value}` is not a number of products (a whole number, at least 1)"
        )),
    }
}

/// How long a bulk push waits for Shopify to run its bulk mutations.
const BULK_PUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Pushes `products` (each as it stands, each that needs it), through Shopify's bulk
/// mutations when `bulk` (every change a bulk mutation can carry: a new product, product
/// fields, variant fields; a structural change of an existing product goes on its own, behind
/// its variant-deletion guard), else one by one. Answers each product's outcome, in order.
pub(crate) async fn push_many(
    store: &Store,
    client: &AdminClient,
    products: &[Product],
    actor: &Actor,
    bulk: bool,
    times: &mut StageTimes,
) -> Result<Vec<Result<Pushed, EngineError>>, EngineError> {
    let now = Utc::now();
    if !bulk {
        let mut outcomes = Vec::with_capacity(products.len());
        for product in products {
            outcomes.push(push_product(store, client, product, actor, now, times).await);
        }
        return Ok(outcomes);
    }
    let mut prepared = Vec::with_capacity(products.len());
    let mut pushes = Vec::new();
    let mut in_bulk = vec![None; products.len()];
    for (index, product) in products.iter().enumerate() {
        if product.writable_by(actor, now).is_err() {
            prepared.push(None);
            continue;
        }
        let ready = prepare(store, product, now, times).await?;
        let push = match &ready.mutation {
            Mutation::Set if product.shopify_id.is_none() => {
                Some(BulkPush::Create(product_set_input(&product.content, false)))
            }
            Mutation::Update(_, input) => Some(BulkPush::Update(input.clone())),
            Mutation::Variants(id, inputs) if inputs.len() <= 250 => {
                Some(BulkPush::Variants(*id, inputs.clone()))
            }
            _ => None,
        };
        if let Some(push) = push {
            in_bulk[index] = Some(pushes.len());
            pushes.push(push);
        }
        prepared.push(Some(ready));
    }
    let pushing = Instant::now();
    let (mut answers, sent) = if pushes.is_empty() {
        (Vec::new(), Default::default())
    } else {
        client.bulk_push(&pushes, BULK_PUSH_TIMEOUT).await?
    };
    times.add(Stage::Push, pushing);
    tracing::info!(
        products = pushes.len(),
        operations = sent.operations,
        uploaded = sent.uploaded_bytes,
        results = sent.result_bytes,
        "bulk push"
    );
    // Each product's answer: refusals stand alone; what Shopify took has its stock pooled
    // into one inventory plan (250 levels a call) before each is confirmed.
    let mut outcomes: Vec<Option<Result<Pushed, EngineError>>> =
        (0..products.len()).map(|_| None).collect();
    let mut taken = Vec::new();
    for (index, product) in products.iter().enumerate() {
        let Some(ready) = &prepared[index] else {
            outcomes[index] = Some(Ok(Pushed::Locked(product.id)));
            continue;
        };
        let pushed = match in_bulk[index] {
            Some(at) => std::mem::replace(
                &mut answers[at],
                Err(ShopifyError::Refused("answered once".into())),
            ),
            None => {
                let sending = Instant::now();
                let sent = send_one(client, product, ready).await;
                times.add(Stage::Push, sending);
                sent
            }
        };
        match pushed {
            Ok(result) => taken.push((index, result)),
            Err(e @ (ShopifyError::Refused(_) | ShopifyError::UserErrors { .. })) => {
                outcomes[index] = Some(Ok(Pushed::Refused(product.id, e.to_string())))
            }
            Err(e) => outcomes[index] = Some(Err(e.into())),
        }
    }
    let mut pool = StockPool::default();
    let mut plan_key = Sha256::new();
    for (index, result) in &taken {
        let product = &products[*index];
        let base = prepared[*index].as_ref().and_then(|r| r.base.as_ref());
        let (levels, missing) = stock_plan(base, &product.content, &result.variants);
        if !levels.is_empty() {
            plan_key.update(format!("{}:{};", product.id, product.version));
            pool.add(*index, product.id, levels, missing);
        }
    }
    let key = format!("up-bulk:{:x}", plan_key.finalize());
    let stocked = pool.products();
    let stock_refused = pool.send(client, key, times).await?;
    for (index, result) in taken {
        let stock = if stocked.contains(&index) {
            (Some(now), stock_refused.get(&index).cloned())
        } else {
            (None, None)
        };
        outcomes[index] =
            Some(confirm(store, &products[index], &result, stock, actor, now, times).await);
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(EngineError::Refused("no outcome".into()))))
        .collect())
}

/// The stock of many pushed products, sent as one inventory plan (250 levels a call).
#[derive(Default)]
struct StockPool {
    /// Every product's changes, one after another.
    changes: Vec<shopsync_shopify::ops::QuantityChange>,
    /// Per product, in the order of `changes`.
    owners: Vec<StockOwner>,
}

/// One product's part of a [`StockPool`].
struct StockOwner {
    /// Its index in the push.
    index: usize,
    /// The product.
    product: ProductId,
    /// Where its changes end in the pool's `changes`.
    end: usize,
    /// The levels Shopify must stock before its changes.
    activate: Vec<(InventoryItemId, LocationId)>,
}

impl StockPool {
    fn add(
        &mut self,
        index: usize,
        product: ProductId,
        changes: Vec<shopsync_shopify::ops::QuantityChange>,
        activate: Vec<(InventoryItemId, LocationId)>,
    ) {
        self.changes.extend(changes);
        self.owners.push(StockOwner {
            index,
            product,
            end: self.changes.len(),
            activate,
        });
    }

    /// The products (their indexes in the push) with stock in the pool.
    fn products(&self) -> BTreeSet<usize> {
        self.owners.iter().map(|owner| owner.index).collect()
    }

    /// Sends the pool as one plan under `key`. Refused (a level Shopify will not take), the
    /// changes of the batches Shopify did not confirm (a refused call applies nothing) go
    /// again product by product, each under its own key, so one product's refusal holds back
    /// only its own stock. Answers the refusals by product index.
    async fn send(
        self,
        client: &AdminClient,
        key: String,
        times: &mut StageTimes,
    ) -> Result<BTreeMap<usize, String>, EngineError> {
        let mut refused = BTreeMap::new();
        let Some(reference) = self.owners.first().map(|owner| owner.product) else {
            return Ok(refused);
        };
        let activate: Vec<(InventoryItemId, LocationId)> = self
            .owners
            .iter()
            .flat_map(|owner| owner.activate.iter().copied())
            .collect();
        let mut plan = InventoryPlan::new(
            key.clone(),
            "correction",
            Some(format!("shopsync://products/{reference}")),
            self.changes,
        );
        let stocking = Instant::now();
        let pooled = send_plan(client, &mut plan, activate).await;
        times.add(Stage::Push, stocking);
        match pooled {
            Ok(()) => return Ok(refused),
            Err(ShopifyError::Refused(_) | ShopifyError::UserErrors { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let batch = shopsync_shopify::cost::MAX_PAGE as usize;
        let mut start = 0;
        for owner in self.owners {
            let undone: Vec<_> = (start..owner.end)
                .filter(|at| !plan.progress.get(at / batch).is_some_and(|p| p.done))
                .map(|at| plan.changes[at])
                .collect();
            start = owner.end;
            let own_key = format!("{key}:{}", owner.product);
            let answer = send_stock(
                client,
                own_key,
                owner.product,
                undone,
                owner.activate,
                times,
            )
            .await?;
            if let Some(why) = answer {
                refused.insert(owner.index, why);
            }
        }
        Ok(refused)
    }
}

/// Activates the levels Shopify lacks, then sends `plan`.
async fn send_plan(
    client: &AdminClient,
    plan: &mut InventoryPlan,
    activate: Vec<(InventoryItemId, LocationId)>,
) -> Result<(), ShopifyError> {
    for (item, location) in activate {
        client.inventory_activate(item, location).await?;
    }
    client
        .set_inventory_stocking(plan, &mut NoCheckpoint)
        .await
        .map(|_| ())
}

/// After a product's mutation was answered: a refusal is [`Pushed::Refused`]; otherwise its
/// stock goes out by the inventory plan and Shopify's confirmation is recorded (its ids, the
/// base advanced).
#[allow(clippy::too_many_arguments)]
async fn finish(
    store: &Store,
    client: &AdminClient,
    product: &Product,
    base: Option<&ProductContent>,
    pushed: Result<ProductSetResult, ShopifyError>,
    actor: &Actor,
    now: DateTime<Utc>,
    times: &mut StageTimes,
) -> Result<Pushed, EngineError> {
    let result = match pushed {
        Ok(result) => result,
        Err(e @ (ShopifyError::Refused(_) | ShopifyError::UserErrors { .. })) => {
            return Ok(Pushed::Refused(product.id, e.to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    // Stock, compared with what Shopify was last confirmed to hold, under a key of this
    // product version: a retried push replays instead of setting twice.
    let (changes, activate) = stock_plan(base, &product.content, &result.variants);
    let stock_synced = (!changes.is_empty()).then_some(now);
    let key = format!("up:{}:{}", product.id, product.version);
    let stock_refused = send_stock(client, key, product.id, changes, activate, times).await?;
    confirm(
        store,
        product,
        &result,
        (stock_synced, stock_refused),
        actor,
        now,
        times,
    )
    .await
}

/// Sends stock changes (activating the levels Shopify lacks first) as one inventory plan
/// under `key`; returns why Shopify refused them, if it did (the rest of a push stands).
async fn send_stock(
    client: &AdminClient,
    key: String,
    reference: ProductId,
    changes: Vec<shopsync_shopify::ops::QuantityChange>,
    activate: Vec<(
        shopsync_domain::InventoryItemId,
        shopsync_domain::LocationId,
    )>,
    times: &mut StageTimes,
) -> Result<Option<String>, EngineError> {
    if changes.is_empty() {
        return Ok(None);
    }
    let stocking = Instant::now();
    let mut plan = InventoryPlan::new(
        key,
        "correction",
        Some(format!("shopsync://products/{reference}")),
        changes,
    );
    let sent = send_plan(client, &mut plan, activate).await;
    times.add(Stage::Push, stocking);
    match sent {
        Ok(()) => Ok(None),
        Err(e @ (ShopifyError::Refused(_) | ShopifyError::UserErrors { .. })) => Ok(Some(format!(
            "stock not set (the rest was pushed; the change stays queued): {e}"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Records Shopify's confirmation of a push: the ids it assigned and the base advanced (not
/// past stock it refused), even if the product changed locally meanwhile (then only up to the
/// version that was pushed).
async fn confirm(
    store: &Store,
    product: &Product,
    result: &ProductSetResult,
    (stock_synced, stock_refused): (Option<DateTime<Utc>>, Option<String>),
    actor: &Actor,
    now: DateTime<Utc>,
    times: &mut StageTimes,
) -> Result<Pushed, EngineError> {
    if product.shopify_id.is_none() {
        // New to Shopify: its echo is recognised under the id Shopify just gave it.
        store
            .remember(
                &echo_key(result.product_id, &product.content),
                now + Duration::hours(ECHO_WINDOW_HOURS),
            )
            .await?;
    }
    for _ in 0..3 {
        let Some(current) = store.product(product.id).await? else {
            return Ok(Pushed::Pushed(product.id, product.version));
        };
        let mut updated = current.clone();
        updated.shopify_id = Some(result.product_id);
        if stock_refused.is_none() {
            updated.stock_synced_at = stock_synced.or(updated.stock_synced_at);
        }
        updated.shopify_updated_at = result.updated_at.or(updated.shopify_updated_at);
        let mut content = updated.content.clone();
        for variant in content
            .variants
            .iter_mut()
            .filter(|v| v.shopify_id.is_none())
        {
            if let Some(set) = result.variants.iter().find(|s| {
                s.selected_options
                    .iter()
                    .map(|o| &o.value)
                    .collect::<Vec<_>>()
                    == variant.option_values.iter().collect::<Vec<_>>()
            }) {
                variant.shopify_id = Some(set.id);
                variant.inventory_item_id = set.inventory_item_id;
            }
        }
        let changes = updated.change_content(content, now);
        let version = (!changes.is_empty()).then(|| {
            VersionStamp::new(
                shopsync_domain::fields::changed_fields(&changes),
                ChangeSource::Shopify,
                actor.clone(),
                None,
                now,
            )
        });
        // The ids Shopify assigned are its confirmation, not a new local change. The base
        // never moves back (a push of an older version than one already confirmed).
        // Stock Shopify refused leaves the base where it was: the change is pushed again.
        updated.last_sync_version = match &stock_refused {
            Some(_) => current.last_sync_version,
            None if current.version == product.version => updated.version,
            None => product.version,
        }
        .max(current.last_sync_version);
        let commit = ProductCommit {
            product: updated,
            expected_version: Some(current.version),
            version,
            staging: None,
            actor: actor.clone(),
            now,
        };
        let persisting = Instant::now();
        let committed = store.commit_product(commit).await;
        times.add(Stage::Persist, persisting);
        match committed {
            Ok(()) => {
                return Ok(match stock_refused {
                    Some(reason) => Pushed::Refused(product.id, reason),
                    None => Pushed::Pushed(product.id, product.version),
                })
            }
            Err(RepoError::VersionConflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(EngineError::Store(RepoError::Store(
        shopsync_store::StoreError::Unavailable(format!(
            "product {} kept changing while its push was confirmed",
            product.id
        )),
    )))
}

/// How long after a conflict is opened on a product its push waits for the index of
/// conflicts to show it (DynamoDB's index reads lag by well under a second as a rule).
pub const INDEX_LAG_GRACE: Duration = Duration::seconds(60);

/// Pushes every product with local changes Shopify lacks, except those with open conflicts
/// (counted as skipped). Returns the last failure, if any, for the operation's reason.
pub(crate) async fn push_pending(
    store: &Store,
    client: &AdminClient,
    actor: &Actor,
    operation: shopsync_domain::OperationId,
    times: &mut StageTimes,
    stats: &mut shopsync_domain::OperationStatistics,
) -> Result<Option<String>, EngineError> {
    let fetching = Instant::now();
    let pending: Vec<Product> = store
        .query_all(Query::new(Table::Products, Some("by_pending_push"), "1"))
        .await?;
    times.add(Stage::Fetch, fetching);
    push_products(
        store, client, actor, operation, &pending, times, stats, false,
    )
    .await
}

/// Whether Shopify no longer has the product it mirrors (asked after a refused push; a read
/// that fails answers no, and the refusal stands as it is).
async fn gone_from_shopify(client: &AdminClient, product: &Product) -> bool {
    let Some(id) = product.shopify_id else {
        return false;
    };
    matches!(
        client
            .product(id, shopsync_shopify::cost::ProductPageShape::default())
            .await,
        Ok(None)
    )
}

/// The row staging a push of `product` (under `id`): its changes against the version both
/// sides last agreed on, which is returned too (`None`: never synced, a create).
async fn push_row(
    store: &Store,
    operation: &shopsync_domain::SyncOperation,
    actor: &Actor,
    product: &Product,
    id: shopsync_domain::StagingId,
    now: chrono::DateTime<Utc>,
) -> Result<
    (
        shopsync_domain::ProductsStaging,
        Option<shopsync_domain::ProductContent>,
    ),
    EngineError,
> {
    let agreed = match (product.shopify_id, product.last_sync_version) {
        (Some(_), since) if since > 0 => Some(since),
        _ => None,
    };
    let base = match agreed {
        Some(since) => store
            .product_version(product.id, since)
            .await?
            .map(|v| v.product_data),
        None => None,
    };
    let change_data = shopsync_domain::fields::diff(
        &base.as_ref().map(|b| b.to_fields()).unwrap_or_default(),
        &product.content.to_fields(),
    );
    let mut row = shopsync_domain::ProductsStaging::pending(
        id,
        product,
        operation.operation_uuid,
        actor,
        now,
    );
    if product.shopify_id.is_none() {
        row.change_type = shopsync_domain::staging::ChangeType::Create;
    }
    row.change_data = change_data;
    row.agreed_version = agreed;
    Ok((row, base))
}

/// Stages what pushing these products would send, as pending rows of the dry-run
/// `operation` (change data: the fields changed since Shopify last confirmed the product),
/// counting each as updated; products with open conflicts or held by someone else's lock are
/// counted as skipped. Nothing is sent and no product changes.
pub(crate) async fn preview_products(
    store: &Store,
    operation: &shopsync_domain::SyncOperation,
    actor: &Actor,
    products: &[Product],
    stats: &mut shopsync_domain::OperationStatistics,
) -> Result<(), EngineError> {
    let now = Utc::now();
    let mut rows = Vec::with_capacity(products.len());
    for product in products {
        stats.processed += 1;
        if product.writable_by(actor, now).is_err()
            || crate::operation::has_open_conflicts(store, product.id).await?
        {
            stats.skipped += 1;
            continue;
        }
        let (row, _) = push_row(
            store,
            operation,
            actor,
            product,
            shopsync_domain::StagingId::generate(),
            now,
        )
        .await?;
        rows.push(row);
        stats.updated += 1;
    }
    store.insert_all(&rows).await?;
    Ok(())
}

/// The staged row of `product` in up-sync `operation`: one per product, its id derived from
/// both, so a push finds it by key (never through an index that may lag).
pub(crate) fn push_row_id(
    operation: shopsync_domain::OperationId,
    product: shopsync_domain::ProductId,
) -> shopsync_domain::StagingId {
    let digest = Sha256::new()
        .chain_update(b"up:")
        .chain_update(operation.to_string())
        .chain_update(b":")
        .chain_update(product.to_string())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    shopsync_domain::StagingId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// Stages what an up-sync will push before anything is sent: a pending row per product (its
/// changes against the version both sides last agreed on), and their facts added to
/// `summary` for the guard rails. Products held back (open conflicts, another's lock) are
/// not staged, and counted as skipped in `stats`; they wait for a later up-sync.
pub(crate) async fn stage_push(
    store: &Store,
    operation: &shopsync_domain::SyncOperation,
    actor: &Actor,
    rails: &shopsync_domain::GuardRails,
    products: &[Product],
    summary: &mut shopsync_domain::PlanSummary,
    stats: &mut shopsync_domain::OperationStatistics,
) -> Result<(), EngineError> {
    let now = Utc::now();
    // As they are now (the pending-push index lags on DynamoDB): each is read again by key
    // and staged at the version it has, if it still needs a push.
    let ids: Vec<shopsync_domain::ProductId> = products.iter().map(|p| p.id).collect();
    let current = store.products(&ids).await?;
    let mut rows = Vec::with_capacity(products.len());
    for product in current.iter().flatten() {
        if !product.needs_push() {
            continue;
        }
        if product.writable_by(actor, now).is_err()
            || crate::operation::has_open_conflicts(store, product.id).await?
        {
            // Held back (another's lock, open conflicts): not staged, counted as skipped.
            stats.processed += 1;
            stats.skipped += 1;
            continue;
        }
        let (row, base) = push_row(
            store,
            operation,
            actor,
            product,
            push_row_id(operation.operation_uuid, product.id),
            now,
        )
        .await?;
        let facts = shopsync_domain::ChangeFacts::of(base.as_ref(), &product.content, rails);
        summary.add(facts, base.is_some());
        rows.push(row);
    }
    // A staging step delivered again writes the same rows again, still pending.
    store.put_all(&rows).await?;
    Ok(())
}

/// Settles an up-sync's row once its product's push is done (or refused).
async fn settle_push_row(
    store: &Store,
    row: &shopsync_domain::ProductsStaging,
    status: shopsync_domain::StagingStatus,
    error: Option<String>,
) -> Result<(), EngineError> {
    let mut settled = row.clone();
    settled.status = status;
    settled.error = error;
    if status == shopsync_domain::StagingStatus::Applied {
        settled.applied_at = Some(Utc::now());
    }
    crate::apply::ignore_changed(
        store
            .replace_if(
                &settled,
                crate::apply::still(shopsync_domain::StagingStatus::Pending),
            )
            .await,
    )
}

/// Pushes these products within `operation` (those with open conflicts are held back,
/// counted as skipped). A product Shopify refused because it no longer has it becomes a
/// `deleted_remotely` conflict for a person, which holds it back from later pushes instead
/// of failing every up-sync again. Returns the last failure, if any.
///
/// With `staged`, only what the operation staged is pushed: a product whose staged row is
/// missing, settled, or of an older version (it changed after staging, so its push was not
/// judged) waits for the next up-sync; each pushed product's row is settled as applied or
/// failed.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn push_products(
    store: &Store,
    client: &AdminClient,
    actor: &Actor,
    operation: shopsync_domain::OperationId,
    products: &[Product],
    times: &mut StageTimes,
    stats: &mut shopsync_domain::OperationStatistics,
    staged: bool,
) -> Result<Option<String>, EngineError> {
    use shopsync_domain::StagingStatus;
    let mut last_failure = None;
    // The products as they are now: `products` come from the pending-push index, whose
    // answers lag behind the table on DynamoDB. Pushing an index copy could send content
    // older than the product's (or push one a concurrent push already confirmed), so each
    // is read again by key, consistently, and pushed as it stands, if it still needs it.
    let ids: Vec<shopsync_domain::ProductId> = products.iter().map(|p| p.id).collect();
    let current = store.products(&ids).await?;
    let mut ready = Vec::new();
    let mut rows = Vec::new();
    for product in current.into_iter().flatten() {
        if product.version <= product.last_sync_version {
            continue;
        }
        let row = if staged {
            let key = shopsync_store::item::Key::pk(push_row_id(operation, product.id).to_string());
            match store.get::<shopsync_domain::ProductsStaging>(&key).await? {
                Some(row)
                    if row.status == StagingStatus::Pending
                        && row.base_version == product.version =>
                {
                    Some(row)
                }
                Some(row) if row.status == StagingStatus::Pending => {
                    settle_push_row(store, &row, StagingStatus::Superseded, Some("the product changed after this push was staged; the next up-sync stages it again".into())).await?;
                    continue;
                }
                // Not staged by this operation (changed or pending since it staged): the
                // next up-sync stages it.
                _ => continue,
            }
        } else {
            None
        };
        let held_back = |reason: &'static str| {
            let row = row.clone();
            async move {
                match row {
                    Some(row) => {
                        settle_push_row(store, &row, StagingStatus::Failed, Some(reason.into()))
                            .await
                    }
                    None => Ok(()),
                }
            }
        };
        stats.processed += 1;
        if crate::operation::has_open_conflicts(store, product.id).await? {
            tracing::info!(product = %product.id, "not pushed: open conflicts wait for a decision");
            stats.skipped += 1;
            held_back("not pushed: open conflicts wait for a decision").await?;
            continue;
        }
        // The index of a product's conflicts lags behind the table on DynamoDB: a conflict
        // opened moments ago may not show yet. Its mark, read by key, says so; the product
        // waits for a later round, when the index has caught up.
        if let Some(opened) = store.conflict_opened_at(product.id, Utc::now()).await? {
            if Utc::now() - opened < INDEX_LAG_GRACE {
                tracing::info!(product = %product.id, "not pushed: a conflict was just opened");
                stats.skipped += 1;
                held_back("not pushed: a conflict was just opened").await?;
                continue;
            }
        }
        ready.push(product);
        rows.push(row);
    }
    let bulk = ready.len() as u64 >= bulk_push_min();
    let outcomes = push_many(store, client, &ready, actor, bulk, times).await?;
    for ((product, row), pushed) in ready.iter().zip(rows).zip(outcomes) {
        if let Some(row) = &row {
            let (status, error) = match &pushed {
                Ok(Pushed::Pushed(..)) => (StagingStatus::Applied, None),
                Ok(Pushed::Locked(_)) => (
                    StagingStatus::Failed,
                    Some("not pushed: locked by someone else".to_owned()),
                ),
                Ok(Pushed::Refused(_, reason)) => (
                    StagingStatus::Failed,
                    Some(format!("Shopify refused it: {reason}")),
                ),
                Err(e) if !e.is_retryable() => (StagingStatus::Failed, Some(e.to_string())),
                // Tried again with the step: the row stays pending.
                Err(_) => (StagingStatus::Pending, None),
            };
            if status != StagingStatus::Pending {
                settle_push_row(store, row, status, error).await?;
            }
        }
        match pushed {
            Ok(Pushed::Pushed(..)) => stats.updated += 1,
            Ok(Pushed::Locked(_)) => stats.skipped += 1,
            Ok(Pushed::Refused(id, reason)) => {
                if gone_from_shopify(client, product).await {
                    let conflict = shopsync_domain::SyncConflict::gone_remotely(
                        operation,
                        product,
                        shopsync_domain::ConflictType::DeletedRemotely,
                        Utc::now(),
                    );
                    store
                        .mark_conflict_opened(product.id, conflict.detected_at)
                        .await?;
                    store.insert(&conflict).await?;
                    tracing::warn!(product = %id, "not pushed: no longer in Shopify; a conflict waits for review");
                    last_failure = Some(format!(
                        "product {id} is no longer in Shopify: recreate it there or remove it here (conflict {})",
                        conflict.conflict_uuid
                    ));
                    stats.conflicts += 1;
                    continue;
                }
                tracing::warn!(product = %id, %reason, "push refused");
                last_failure = Some(format!("product {id}: {reason}"));
                stats.failed += 1;
            }
            Err(e) if !e.is_retryable() => {
                tracing::warn!(product = %product.id, error = %e, "push failed");
                last_failure = Some(format!("product {}: {e}", product.id));
                stats.failed += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(last_failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bulk_push_minimum_is_a_whole_number_and_a_bad_one_names_its_setting() {
        let given = |value: &'static str| {
            move |name: &str| (name == "SHOPSYNC_BULK_PUSH_MIN").then(|| value.to_owned())
        };
        assert_eq!(bulk_push_min_from(|_| None), Ok(500));
        assert_eq!(bulk_push_min_from(given(" ")), Ok(500));
        assert_eq!(bulk_push_min_from(given(" 2000 ")), Ok(2000));
        for bad in ["0", "-5", "many", "1.5"] {
            let error = bulk_push_min_from(given(bad)).unwrap_err();
            assert!(
                error.starts_with("SHOPSYNC_BULK_PUSH_MIN") && error.contains(bad),
                "{error}"
            );
        }
    }
}

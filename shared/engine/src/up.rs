//! Local → Shopify. Products whose version is past `last_sync_version` are pushed with
//! productSet. Variants are only ever deleted in Shopify when the local product deliberately
//! dropped them since the last sync (they are in the base snapshot and not in the current
//! content); a variant added in Shopify since then makes the push refused, never deleted.
//! `last_sync_version` (the base) advances only after Shopify confirms. The fingerprint of what
//! is pushed is remembered before the push, so its webhook echo is recognised.

use crate::error::EngineError;
use crate::perf::StageTimes;
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use shopsync_domain::product::{ProductContent, ProductStatus};
use shopsync_domain::Stage;
use shopsync_domain::{
    Actor, ChangeSource, InventoryItemId, LocationId, Money, Product, ProductId, ShopifyProductId,
    ShopifyVariantId, SyncOperation, VersionStamp,
};
use shopsync_shopify::ops::{
    InventoryItemInput, InventoryPlan, NoCheckpoint, OptionSetInput, OptionValueName,
    ProductSetInput, ProductSetRequest, ProductSetResult, ProductUpdateInput, QuantityChange,
    VariantOptionValue, VariantSetInput, VariantUpdateInput,
};
use shopsync_shopify::{AdminClient, ShopifyError};
use shopsync_store::item::Query;
use shopsync_store::{ProductCommit, RepoError, Store, Table};
use std::collections::BTreeSet;
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

fn money(m: Money) -> String {
    m.amount().normalize().to_string()
}

fn status(s: ProductStatus) -> &'static str {
    match s {
        ProductStatus::Active => "ACTIVE",
        ProductStatus::Archived => "ARCHIVED",
        ProductStatus::Unlisted => "UNLISTED",
        ProductStatus::Draft => "DRAFT",
    }
}

/// The fingerprint of the fields a push sets, computed the same way on what shopsync pushes
/// and on what a webhook reports, so an echo of shopsync's own write is recognised: the
/// SHA-256, in hex, of the JSON array `[title, body_html, vendor, product_type, handle,
/// status, tags, options, variants]` (fingerprints stored before an upgrade still match).
pub fn fingerprint(content: &ProductContent) -> String {
    let variants: Vec<_> = content
        .variants
        .iter()
        .map(|v| {
            (
                v.sku.as_ref().map(|s| s.as_str()),
                &v.barcode,
                money(v.price),
                v.compare_at_price.map(money),
                &v.option_values,
            )
        })
        .collect();
    let options: Vec<(&String, &Vec<String>)> = content
        .options
        .iter()
        .map(|o| (&o.name, &o.values))
        .collect();
    let fields = (
        &content.title,
        &content.body_html,
        &content.vendor,
        &content.product_type,
        &content.handle,
        status(content.status),
        &content.tags,
        options,
        variants,
    );
    // Serialized straight into the digest (a tuple is a JSON array, a set a sorted list).
    // Neither can fail: a digest accepts every write, and strings, lists and options always
    // serialize.
    let mut digest = DigestWriter(Sha256::new());
    if let Err(e) = serde_json::to_writer(&mut digest, &fields) {
        tracing::error!(error = %e, "a fingerprint could not be serialized");
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(64);
    for byte in digest.0.finalize() {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    text
}

/// Feeds what is written to it into a SHA-256.
struct DigestWriter(Sha256);

impl std::io::Write for DigestWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The mark key of an echo of `content` for `product`.
pub fn echo_key(product: ShopifyProductId, content: &ProductContent) -> String {
    format!("echo:{product}:{}", fingerprint(content))
}

/// The productSet input for `content`. A product new to Shopify is sent without variant ids
/// (any it carries cannot name variants of a product that does not exist yet).
pub fn product_set_input(content: &ProductContent, existing: bool) -> ProductSetInput {
    let names: Vec<&String> = content.options.iter().map(|o| &o.name).collect();
    ProductSetInput {
        title: content.title.clone(),
        description_html: Some(content.body_html.clone()),
        vendor: Some(content.vendor.clone()),
        product_type: Some(content.product_type.clone()),
        handle: Some(content.handle.clone()).filter(|h| !h.is_empty()),
        status: Some(status(content.status).to_owned()),
        tags: content.tags.iter().cloned().collect(),
        product_options: content
            .options
            .iter()
            .map(|o| OptionSetInput {
                name: o.name.clone(),
                values: o
                    .values
                    .iter()
                    .map(|v| OptionValueName { name: v.clone() })
                    .collect(),
            })
            .collect(),
        variants: content
            .variants
            .iter()
            .map(|v| VariantSetInput {
                id: v.shopify_id.filter(|_| existing).map(|id| id.gid()),
                sku: v.sku.as_ref().map(|s| s.as_str().to_owned()),
                barcode: v.barcode.clone(),
                price: Some(money(v.price)),
                compare_at_price: v.compare_at_price.map(money),
                position: Some(i64::from(v.position)),
                inventory_item: v.cost.map(|cost| InventoryItemInput {
                    sku: None,
                    cost: Some(money(cost)),
                }),
                option_values: names
                    .iter()
                    .zip(&v.option_values)
                    .map(|(name, value)| VariantOptionValue {
                        option_name: (*name).clone(),
                        name: value.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The mutation a push needs.
enum Mutation {
    /// productSet: the product whole (new products, and any change to options, the variant
    /// list, or both product and variant fields at once).
    Set,
    /// productUpdate: product-level fields only (the variants are not sent, so none can be
    /// touched).
    Update(ShopifyProductId, ProductUpdateInput),
    /// productVariantsBulkUpdate: fields of existing variants only.
    Variants(ShopifyProductId, Vec<VariantUpdateInput>),
    /// Nothing but stock changed: the inventory plan alone carries it.
    StockOnly(ShopifyProductId),
}

/// The narrowest mutation that carries the change from `base` (what Shopify has) to
/// `current`: productUpdate when only product fields changed, productVariantsBulkUpdate
/// when only fields of existing variants did, productSet otherwise.
fn choose_mutation(
    id: ShopifyProductId,
    base: &ProductContent,
    current: &ProductContent,
) -> Mutation {
    let same_variants = base.variants.len() == current.variants.len()
        && base.variants.iter().zip(&current.variants).all(|(b, c)| {
            b.key == c.key
                && c.shopify_id.is_some()
                && b.shopify_id == c.shopify_id
                && b.option_values == c.option_values
                && b.position == c.position
                && b.title == c.title
        });
    // A SKU or cost cleared locally: the narrow mutations cannot say "none".
    let clears = base.variants.iter().zip(&current.variants).any(|(b, c)| {
        (b.sku.is_some() && c.sku.is_none()) || (b.cost.is_some() && c.cost.is_none())
    });
    if !same_variants || clears || base.options != current.options {
        return Mutation::Set;
    }
    let product_changed = base.title != current.title
        || base.body_html != current.body_html
        || base.vendor != current.vendor
        || base.product_type != current.product_type
        || base.handle != current.handle
        || base.status != current.status
        || base.tags != current.tags;
    let changed: Vec<VariantUpdateInput> = base
        .variants
        .iter()
        .zip(&current.variants)
        .filter(|(b, c)| {
            b.price != c.price
                || b.compare_at_price != c.compare_at_price
                || b.barcode != c.barcode
                || b.sku != c.sku
                || b.cost != c.cost
        })
        .filter_map(|(b, c)| {
            let id = c.shopify_id?;
            let sku = (b.sku != c.sku).then(|| c.sku.as_ref().map(|s| s.as_str().to_owned()));
            let cost = (b.cost != c.cost).then(|| c.cost.map(money));
            Some(VariantUpdateInput {
                id: id.gid(),
                price: (b.price != c.price).then(|| money(c.price)),
                compare_at_price: (b.compare_at_price != c.compare_at_price)
                    .then(|| c.compare_at_price.map(money)),
                barcode: (b.barcode != c.barcode).then(|| c.barcode.clone().unwrap_or_default()),
                inventory_item: (sku.is_some() || cost.is_some()).then(|| InventoryItemInput {
                    sku: sku.flatten(),
                    cost: cost.flatten(),
                }),
            })
        })
        .collect();
    match (product_changed, changed.is_empty()) {
        (true, true) => Mutation::Update(
            id,
            ProductUpdateInput {
                id: id.gid(),
                title: Some(current.title.clone()),
                description_html: Some(current.body_html.clone()),
                vendor: Some(current.vendor.clone()),
                product_type: Some(current.product_type.clone()),
                handle: Some(current.handle.clone()).filter(|h| !h.is_empty()),
                status: Some(status(current.status).to_owned()),
                tags: Some(current.tags.iter().cloned().collect()),
            },
        ),
        (false, false) => Mutation::Variants(id, changed),
        // Stock goes out as inventory quantities, after whatever mutation the rest needs.
        (false, true) if stock_differs(base, current) => Mutation::StockOnly(id),
        // Both at once (one call, atomic), or nothing to say (whatever differs, the whole
        // product carries it).
        _ => Mutation::Set,
    }
}

/// Whether any stock level differs between `base` and `current` (variants by key).
fn stock_differs(base: &ProductContent, current: &ProductContent) -> bool {
    current.variants.iter().any(|c| {
        base.variants
            .iter()
            .find(|b| b.key == c.key)
            .is_none_or(|b| b.inventory != c.inventory)
    })
}

/// The stock levels a push sets: every level of `current` that `base` (what Shopify was
/// last confirmed to hold) lacks or holds otherwise, from the base's quantity (compared by
/// Shopify, so a sale since is kept) to the local one; and the (item, location) pairs the
/// base has no level for, to activate first. A variant new to Shopify takes its inventory
/// item from `created` (what productSet answered).
fn stock_plan(
    base: Option<&ProductContent>,
    current: &ProductContent,
    created: &[shopsync_shopify::ops::SetVariant],
) -> (Vec<QuantityChange>, Vec<(InventoryItemId, LocationId)>) {
    let mut changes = Vec::new();
    let mut activate = Vec::new();
    for variant in &current.variants {
        // A variant Shopify already had keeps its item; any other takes the one productSet
        // answered (ids a new product carries cannot name anything in Shopify yet).
        let known = base.is_some() && variant.shopify_id.is_some();
        let item = variant.inventory_item_id.filter(|_| known).or_else(|| {
            created
                .iter()
                .find(|set| {
                    set.selected_options
                        .iter()
                        .map(|o| &o.value)
                        .eq(variant.option_values.iter())
                })
                .and_then(|set| set.inventory_item_id)
        });
        let Some(item) = item else { continue };
        let before = base.and_then(|b| b.variants.iter().find(|v| v.key == variant.key));
        for (location, quantity) in &variant.inventory {
            let was = before.and_then(|b| b.inventory.get(location)).map(|q| q.0);
            if was == Some(quantity.0) {
                continue;
            }
            if was.is_none() {
                activate.push((item, *location));
            }
            changes.push(QuantityChange {
                item,
                location: *location,
                expected: was.unwrap_or(0),
                target: quantity.0,
            });
        }
    }
    (changes, activate)
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
    let pushing = Instant::now();
    let pushed = match mutation {
        Mutation::Set => {
            let request = ProductSetRequest {
                product: product.shopify_id,
                input: product_set_input(&product.content, product.shopify_id.is_some()),
                delete_variants,
            };
            client.product_set(&request).await
        }
        Mutation::Update(id, input) => {
            client
                .product_update(&input)
                .await
                .map(|updated_at| ProductSetResult {
                    product_id: id,
                    updated_at,
                    variants: Vec::new(),
                    asynchronous: false,
                })
        }
        Mutation::StockOnly(id) => Ok(ProductSetResult {
            product_id: id,
            updated_at: None,
            variants: Vec::new(),
            asynchronous: false,
        }),
        Mutation::Variants(id, inputs) => {
            client
                .variants_bulk_update(id, &inputs)
                .await
                .map(|updated| ProductSetResult {
                    product_id: id,
                    // The product's own updatedAt moves with its variants' at least this far.
                    updated_at: updated.iter().filter_map(|v| v.updated_at).max(),
                    variants: Vec::new(),
                    asynchronous: false,
                })
        }
    };
    times.add(Stage::Push, pushing);
    let result = match pushed {
        Ok(result) => result,
        Err(e @ (ShopifyError::Refused(_) | ShopifyError::UserErrors { .. })) => {
            return Ok(Pushed::Refused(product.id, e.to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    // Stock, compared with what Shopify was last confirmed to hold, under a key of this
    // product version: a retried push replays instead of setting twice.
    let (changes, activate) = stock_plan(base.as_ref(), &product.content, &result.variants);
    let stock_synced = (!changes.is_empty()).then_some(now);
    let mut stock_refused = None;
    if !changes.is_empty() {
        let stocking = Instant::now();
        let mut sent = Ok(());
        for (item, location) in activate {
            sent = client.inventory_activate(item, location).await;
            if sent.is_err() {
                break;
            }
        }
        if sent.is_ok() {
            let mut plan = InventoryPlan::new(
                format!("up:{}:{}", product.id, product.version),
                "correction",
                Some(format!("shopsync://products/{}", product.id)),
                changes,
            );
            sent = client
                .set_inventory_stocking(&mut plan, &mut NoCheckpoint)
                .await
                .map(|_| ());
        }
        times.add(Stage::Push, stocking);
        match sent {
            Ok(()) => {}
            Err(e @ (ShopifyError::Refused(_) | ShopifyError::UserErrors { .. })) => {
                stock_refused = Some(format!(
                    "stock not set (the rest was pushed; the change stays queued): {e}"
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if product.shopify_id.is_none() {
        store
            .remember(
                &echo_key(result.product_id, &product.content),
                now + Duration::hours(ECHO_WINDOW_HOURS),
            )
            .await?;
    }
    // Confirmed: record Shopify's ids and advance the base, even if the product changed
    // locally meanwhile (then only up to the version that was pushed).
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

/// Pushes every product that needs it and stores the operation with its statistics.
pub async fn run_up(
    store: &Store,
    client: &AdminClient,
    actor: &Actor,
) -> Result<SyncOperation, EngineError> {
    crate::steps::Stepper {
        store,
        client,
        actor,
        rails: &shopsync_domain::GuardRails::default(),
    }
    .run_to_end(crate::steps::SyncKind::Up)
    .await
}

/// Whether a product has a conflict waiting for a person (its push would overwrite the
/// Shopify value nobody has decided on yet).
pub async fn has_open_conflicts(
    store: &Store,
    product: shopsync_domain::ProductId,
) -> Result<bool, EngineError> {
    Ok(!open_conflicts(store, product).await?.is_empty())
}

/// The open conflicts of `product`.
pub async fn open_conflicts(
    store: &Store,
    product: shopsync_domain::ProductId,
) -> Result<Vec<shopsync_domain::SyncConflict>, EngineError> {
    let conflicts: Vec<shopsync_domain::SyncConflict> = store
        .query_all(Query::new(
            Table::SyncConflicts,
            Some("by_product"),
            product.to_string(),
        ))
        .await?;
    Ok(conflicts
        .into_iter()
        .filter(|c| c.status == shopsync_domain::ConflictStatus::Open)
        .collect())
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
    let base = match (product.shopify_id, product.last_sync_version) {
        (Some(_), since) if since > 0 => store
            .product_version(product.id, since)
            .await?
            .map(|v| v.product_data),
        _ => None,
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
        if product.writable_by(actor, now).is_err() || has_open_conflicts(store, product.id).await?
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
    use sha2::{Digest, Sha256};
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
        if product.writable_by(actor, now).is_err() || has_open_conflicts(store, product.id).await?
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
    crate::down::ignore_changed(
        store
            .replace_if(
                &settled,
                crate::down::still(shopsync_domain::StagingStatus::Pending),
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
    let mut last_failure = None;
    // The products as they are now: `products` come from the pending-push index, whose
    // answers lag behind the table on DynamoDB. Pushing an index copy could send content
    // older than the product's (or push one a concurrent push already confirmed), so each
    // is read again by key, consistently, and pushed as it stands, if it still needs it.
    let ids: Vec<shopsync_domain::ProductId> = products.iter().map(|p| p.id).collect();
    let current = store.products(&ids).await?;
    use shopsync_domain::StagingStatus;
    for product in current.iter().flatten() {
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
        if has_open_conflicts(store, product.id).await? {
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
        let pushed = push_product(store, client, product, actor, Utc::now(), times).await;
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
    use shopsync_domain::testing::sample_content;

    /// The fingerprint as first written (through a JSON value): what marks stored by earlier
    /// releases hold.
    fn fingerprint_through_a_value(content: &ProductContent) -> String {
        let variants: Vec<_> = content
            .variants
            .iter()
            .map(|v| {
                (
                    v.sku.as_ref().map(|s| s.as_str().to_owned()),
                    v.barcode.clone(),
                    money(v.price),
                    v.compare_at_price.map(money),
                    v.option_values.clone(),
                )
            })
            .collect();
        let tags: Vec<&String> = content.tags.iter().collect();
        let options: Vec<(&String, &Vec<String>)> = content
            .options
            .iter()
            .map(|o| (&o.name, &o.values))
            .collect();
        let value = serde_json::json!([
            content.title,
            content.body_html,
            content.vendor,
            content.product_type,
            content.handle,
            status(content.status),
            tags,
            options,
            variants,
        ]);
        let digest = Sha256::digest(value.to_string().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn fingerprints_match_those_stored_by_earlier_releases() {
        let mut contents = vec![sample_content(0), sample_content(1), sample_content(3)];
        let mut unusual = sample_content(2);
        unusual.title = "Quote \" backslash \\ tab \t é 雪 \u{1F600}".into();
        unusual.body_html = "<p>\u{0}\u{1f}</p>".into();
        unusual.tags.clear();
        unusual.variants[0].sku = None;
        unusual.variants[0].barcode = None;
        unusual.variants[1].compare_at_price = Some(Money::from_cents(12_345));
        unusual.status = ProductStatus::Archived;
        contents.push(unusual);
        for content in &contents {
            let fingerprint = fingerprint(content);
            assert_eq!(fingerprint, fingerprint_through_a_value(content));
            assert_eq!(fingerprint.len(), 64);
        }
        assert_ne!(fingerprint(&contents[1]), fingerprint(&contents[2]));
    }
}

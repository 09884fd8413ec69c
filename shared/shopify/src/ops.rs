//! Typed Admin API operations on top of [`AdminClient::execute`].

use crate::client::AdminClient;
use crate::cost::{self, ProductPageShape, MAX_PAGE, MUTATION_COST};
use crate::documents as doc;
use crate::error::{ShopifyError, UserError};
use crate::model::{
    Connection, IdOnly, Nodes, Page, RemoteCollection, RemoteLevel, RemoteLocation, RemoteProduct,
    SelectedOption, WireLevel, WireProduct, WireVariant,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shopsync_domain::ids::{
    InventoryItemId, LocationId, ShopifyCollectionId, ShopifyProductId, ShopifyVariantId,
};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Checks a mutation payload's `userErrors`.
fn user_errors(operation: &'static str, errors: Vec<UserError>) -> Result<(), ShopifyError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ShopifyError::UserErrors { operation, errors })
    }
}

// ---------------------------------------------------------------- products (read)

/// Which products page to read.
#[derive(Debug, Clone, Default)]
pub struct ProductsPageRequest {
    /// Cursor from the previous page.
    pub after: Option<String>,
    /// Only products updated after this instant (the caller subtracts its overlap window).
    pub updated_after: Option<DateTime<Utc>>,
    /// Nesting; the page size follows from it.
    pub shape: ProductPageShape,
}

#[derive(Deserialize)]
struct ProductsData {
    products: Connection<WireProduct>,
}

#[derive(Deserialize)]
struct ProductData {
    product: Option<WireProduct>,
}

#[derive(Deserialize)]
struct VariantsPageData {
    product: Option<VariantsOf>,
}

#[derive(Deserialize)]
struct VariantsOf {
    variants: Connection<WireVariant>,
}

#[derive(Deserialize)]
struct VariantIdsData {
    product: Option<VariantIdsOf>,
}

#[derive(Deserialize)]
struct VariantIdsOf {
    variants: Connection<IdOnly<ShopifyVariantId>>,
}

impl AdminClient {
    /// One page of products sorted by `updatedAt`, with each product's first variants and
    /// their levels. Products with more variants have `variants_cursor` set; complete them
    /// with [`AdminClient::complete_variants`].
    pub async fn products_page(
        &self,
        request: &ProductsPageRequest,
    ) -> Result<Page<RemoteProduct>, ShopifyError> {
        let first = request.shape.page_size();
        let query = request.updated_after.map(|at| {
            doc::updated_after_filter(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        });
        let data: ProductsData = self
            .execute(
                &doc::PRODUCTS_PAGE,
                json!({
                    "first": first,
                    "after": request.after,
                    "query": query,
                    "variantsFirst": request.shape.variants_first,
                    "levelsFirst": request.shape.levels_first,
                }),
                request.shape.page_cost(first),
            )
            .await?;
        Ok(Page {
            items: data
                .products
                .nodes
                .into_iter()
                .map(WireProduct::into_model)
                .collect(),
            next: data.products.page_info.next(),
        })
    }

    /// One product with **all** its variants (paging past the first page), or `None` if
    /// Shopify does not have it.
    pub async fn product(
        &self,
        id: ShopifyProductId,
        shape: ProductPageShape,
    ) -> Result<Option<RemoteProduct>, ShopifyError> {
        let data: ProductData = self
            .execute(
                &doc::PRODUCT,
                json!({
                    "id": id.gid(),
                    "variantsFirst": shape.variants_first,
                    "levelsFirst": shape.levels_first,
                }),
                shape.product_cost(),
            )
            .await?;
        let Some(product) = data.product else {
            return Ok(None);
        };
        let mut product = product.into_model();
        self.complete_variants(&mut product, shape.levels_first)
            .await?;
        Ok(Some(product))
    }

    /// Reads the rest of a product's variants, page by page, until `variants_cursor` is
    /// `None`.
    pub async fn complete_variants(
        &self,
        product: &mut RemoteProduct,
        levels_first: u32,
    ) -> Result<(), ShopifyError> {
        let first = ProductPageShape::variant_page_size(levels_first);
        while let Some(after) = product.variants_cursor.take() {
            let data: VariantsPageData = self
                .execute(
                    &doc::PRODUCT_VARIANTS_PAGE,
                    json!({ "id": product.id.gid(), "first": first, "after": after, "levelsFirst": levels_first }),
                    1 + cost::connection(first, ProductPageShape::variant_cost(levels_first)),
                )
                .await?;
            // The product vanished between pages: what was read stays, and the caller sees
            // an incomplete product through `variants_count`.
            let Some(of) = data.product else {
                return Ok(());
            };
            product
                .variants
                .extend(of.variants.nodes.into_iter().map(WireVariant::into_model));
            product.variants_cursor = of.variants.page_info.next();
        }
        Ok(())
    }

    /// The ids of all of a product's variants, or `None` if the product does not exist.
    pub async fn product_variant_ids(
        &self,
        id: ShopifyProductId,
    ) -> Result<Option<Vec<ShopifyVariantId>>, ShopifyError> {
        let mut ids = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let data: VariantIdsData = self
                .execute(
                    &doc::PRODUCT_VARIANT_IDS,
                    json!({ "id": id.gid(), "after": after }),
                    1 + cost::connection(MAX_PAGE, 1),
                )
                .await?;
            let Some(of) = data.product else {
                return Ok(if ids.is_empty() { None } else { Some(ids) });
            };
            ids.extend(of.variants.nodes.into_iter().map(|v| v.id));
            match of.variants.page_info.next() {
                Some(next) => after = Some(next),
                None => return Ok(Some(ids)),
            }
        }
    }
}

// ---------------------------------------------------------------- productSet

/// `ProductSetInput`, the fields shopsync writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductSetInput {
    /// Title.
    pub title: String,
    /// Description HTML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description_html: Option<String>,
    /// Vendor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Product type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_type: Option<String>,
    /// Handle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    /// ACTIVE, DRAFT, ARCHIVED.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Tags (replaces the list).
    pub tags: Vec<String>,
    /// Options and their values (replaces the list).
    pub product_options: Vec<OptionSetInput>,
    /// Variants (replaces the list: an existing variant left out is deleted).
    pub variants: Vec<VariantSetInput>,
}

/// One option of a productSet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionSetInput {
    /// Option name.
    pub name: String,
    /// Values.
    pub values: Vec<OptionValueName>,
}

/// An option value by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionValueName {
    /// The value.
    pub name: String,
}

/// One variant of a productSet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VariantSetInput {
    /// Existing variant GID; absent for a new variant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// SKU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// Barcode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub barcode: Option<String>,
    /// Price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    /// Compare-at price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare_at_price: Option<String>,
    /// Position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// Option values by option name.
    pub option_values: Vec<VariantOptionValue>,
    /// The inventory item's fields (its unit cost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inventory_item: Option<InventoryItemInput>,
}

/// One option value of a variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VariantOptionValue {
    /// Option name.
    pub option_name: String,
    /// Value.
    pub name: String,
}

/// What to productSet, and which existing variants the caller means to delete.
#[derive(Debug, Clone)]
pub struct ProductSetRequest {
    /// The existing product, or `None` to create one.
    pub product: Option<ShopifyProductId>,
    /// The full desired product.
    pub input: ProductSetInput,
    /// Existing variants the caller deliberately drops. Any other existing variant missing
    /// from `input.variants` makes the request refused before it is sent.
    pub delete_variants: BTreeSet<ShopifyVariantId>,
}

/// A variant as productSet left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetVariant {
    /// Variant id.
    pub id: ShopifyVariantId,
    /// SKU.
    pub sku: Option<String>,
    /// Option values.
    pub selected_options: Vec<SelectedOption>,
    /// Inventory item.
    pub inventory_item_id: Option<InventoryItemId>,
}

/// The outcome of a productSet.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductSetResult {
    /// The product.
    pub product_id: ShopifyProductId,
    /// Shopify's `updatedAt` after the write (for echo suppression), when it says.
    pub updated_at: Option<DateTime<Utc>>,
    /// Its variants, with the ids Shopify gave new ones.
    pub variants: Vec<SetVariant>,
    /// Whether it ran as an asynchronous product operation.
    pub asynchronous: bool,
}

/// Synchronous productSet handles at most this many variants.
pub const SYNCHRONOUS_VARIANT_LIMIT: usize = 100;
/// productSet (asynchronous) handles at most this many variants.
pub const PRODUCT_SET_VARIANT_LIMIT: usize = 2048;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProductSetData {
    product_set: Option<ProductSetPayload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProductSetPayload {
    product: Option<SetProduct>,
    product_set_operation: Option<SetOperation>,
    user_errors: Vec<UserError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetProduct {
    id: ShopifyProductId,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    variants: Option<Nodes<SetVariantWire>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetVariantWire {
    id: ShopifyVariantId,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    selected_options: Vec<SelectedOption>,
    #[serde(default)]
    inventory_item: Option<IdOnly<InventoryItemId>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetOperation {
    #[serde(default)]
    id: Option<String>,
    status: String,
    #[serde(default)]
    product: Option<SetProduct>,
    #[serde(default)]
    user_errors: Vec<UserError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProductOperationData {
    product_operation: Option<SetOperation>,
}

impl AdminClient {
    /// Creates or replaces a product with productSet: synchronously up to 100 variants,
    /// asynchronously (polling the product operation) beyond.
    ///
    /// productSet deletes every existing variant the input leaves out. Before updating an
    /// existing product this reads its current variant ids and refuses to send unless each
    /// one is either in the input (by id) or named in `delete_variants`.
    pub async fn product_set(
        &self,
        request: &ProductSetRequest,
    ) -> Result<ProductSetResult, ShopifyError> {
        let count = request.input.variants.len();
        if count == 0 {
            return Err(ShopifyError::Refused(
                "productSet with no variants would leave the product without any".into(),
            ));
        }
        if count > PRODUCT_SET_VARIANT_LIMIT {
            return Err(ShopifyError::Refused(format!(
                "productSet takes at most {PRODUCT_SET_VARIANT_LIMIT} variants, got {count}"
            )));
        }
        if let Some(id) = request.product {
            self.guard_variant_deletion(id, request).await?;
        }
        let synchronous = count <= SYNCHRONOUS_VARIANT_LIMIT;
        let identifier = request.product.map(|id| json!({ "id": id.gid() }));
        let data: ProductSetData = self
            .execute(
                &doc::PRODUCT_SET,
                json!({ "input": request.input, "identifier": identifier, "synchronous": synchronous }),
                MUTATION_COST,
            )
            .await?;
        let payload = data.product_set.ok_or_else(|| ShopifyError::Decode {
            operation: doc::PRODUCT_SET.name,
            reason: "productSet payload missing".into(),
        })?;
        user_errors(doc::PRODUCT_SET.name, payload.user_errors)?;
        if synchronous {
            let product = payload.product.ok_or_else(|| ShopifyError::Decode {
                operation: doc::PRODUCT_SET.name,
                reason: "synchronous productSet returned no product".into(),
            })?;
            return Ok(set_result(product, false));
        }
        let operation = payload
            .product_set_operation
            .and_then(|op| op.id)
            .ok_or_else(|| ShopifyError::Decode {
                operation: doc::PRODUCT_SET.name,
                reason: "asynchronous productSet returned no operation".into(),
            })?;
        let product_id = self.await_product_operation(&operation).await?;
        // The operation's answer carries no variant list past 100: read them all.
        let product = self
            .product(
                product_id,
                ProductPageShape {
                    variants_first: 50,
                    levels_first: 1,
                },
            )
            .await?
            .ok_or_else(|| ShopifyError::Decode {
                operation: doc::PRODUCT_SET.name,
                reason: format!("product {product_id} missing after productSet"),
            })?;
        Ok(ProductSetResult {
            product_id,
            updated_at: Some(product.updated_at),
            variants: product
                .variants
                .into_iter()
                .map(|v| SetVariant {
                    id: v.id,
                    sku: v.sku,
                    selected_options: v.selected_options,
                    inventory_item_id: v.inventory_item_id,
                })
                .collect(),
            asynchronous: true,
        })
    }

    async fn guard_variant_deletion(
        &self,
        id: ShopifyProductId,
        request: &ProductSetRequest,
    ) -> Result<(), ShopifyError> {
        let Some(current) = self.product_variant_ids(id).await? else {
            return Err(ShopifyError::Refused(format!(
                "product {id} does not exist in Shopify; create it without an id"
            )));
        };
        let kept: BTreeSet<ShopifyVariantId> = request
            .input
            .variants
            .iter()
            .filter_map(|v| v.id.as_deref())
            .filter_map(|gid| gid.parse().ok())
            .collect();
        let dropped: Vec<String> = current
            .iter()
            .filter(|v| !kept.contains(v) && !request.delete_variants.contains(v))
            .map(|v| v.to_string())
            .collect();
        if dropped.is_empty() {
            Ok(())
        } else {
            Err(ShopifyError::Refused(format!(
                "productSet on product {id} would delete variants {} that the request does not name for deletion",
                dropped.join(", ")
            )))
        }
    }

    async fn await_product_operation(&self, id: &str) -> Result<ShopifyProductId, ShopifyError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        let mut wait = Duration::from_millis(250);
        loop {
            let data: ProductOperationData = self
                .execute(&doc::PRODUCT_OPERATION, json!({ "id": id }), 3)
                .await?;
            let op = data.product_operation.ok_or_else(|| ShopifyError::Decode {
                operation: doc::PRODUCT_OPERATION.name,
                reason: format!("product operation {id} not found"),
            })?;
            if op.status == "COMPLETE" {
                user_errors(doc::PRODUCT_SET.name, op.user_errors)?;
                return op
                    .product
                    .map(|p| p.id)
                    .ok_or_else(|| ShopifyError::Decode {
                        operation: doc::PRODUCT_OPERATION.name,
                        reason: "completed operation has no product".into(),
                    });
            }
            if tokio::time::Instant::now() + wait > deadline {
                return Err(ShopifyError::TimedOut {
                    what: format!("product operation {id}"),
                    seconds: 600,
                });
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }
}

fn set_result(product: SetProduct, asynchronous: bool) -> ProductSetResult {
    ProductSetResult {
        product_id: product.id,
        updated_at: product.updated_at,
        variants: product
            .variants
            .map(|v| v.nodes)
            .unwrap_or_default()
            .into_iter()
            .map(|v| SetVariant {
                id: v.id,
                sku: v.sku,
                selected_options: v.selected_options,
                inventory_item_id: v.inventory_item.map(|i| i.id),
            })
            .collect(),
        asynchronous,
    }
}

// ---------------------------------------------------------------- productUpdate, variants

/// `ProductUpdateInput`: product-level fields only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductUpdateInput {
    /// Product GID.
    pub id: String,
    /// Title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description HTML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description_html: Option<String>,
    /// Vendor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Product type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_type: Option<String>,
    /// Handle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    /// Status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Tags (replaces the list when present).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// `ProductVariantsBulkInput`: the fields shopsync updates on an existing variant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VariantUpdateInput {
    /// Variant GID.
    pub id: String,
    /// Price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    /// Compare-at price (`Some(None)` clears it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare_at_price: Option<Option<String>>,
    /// Barcode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub barcode: Option<String>,
    /// SKU and cost live on the inventory item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inventory_item: Option<InventoryItemInput>,
}

/// The inventory item fields of a variant update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryItemInput {
    /// SKU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// Unit cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProductUpdateData {
    product_update: Option<UpdatePayload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdatePayload {
    product: Option<UpdatedProduct>,
    user_errors: Vec<UserError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdatedProduct {
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VariantsBulkData {
    product_variants_bulk_update: Option<VariantsBulkPayload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VariantsBulkPayload {
    #[serde(default)]
    product_variants: Option<Vec<UpdatedVariant>>,
    user_errors: Vec<UserError>,
}

/// A variant as a bulk update left it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdatedVariant {
    /// Variant id.
    pub id: ShopifyVariantId,
    /// Its `updatedAt`.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

impl AdminClient {
    /// Updates product-level fields; returns Shopify's new `updatedAt`.
    pub async fn product_update(
        &self,
        input: &ProductUpdateInput,
    ) -> Result<Option<DateTime<Utc>>, ShopifyError> {
        let data: ProductUpdateData = self
            .execute(
                &doc::PRODUCT_UPDATE,
                json!({ "product": input }),
                MUTATION_COST,
            )
            .await?;
        let payload = data.product_update.ok_or_else(|| ShopifyError::Decode {
            operation: doc::PRODUCT_UPDATE.name,
            reason: "productUpdate payload missing".into(),
        })?;
        user_errors(doc::PRODUCT_UPDATE.name, payload.user_errors)?;
        Ok(payload.product.and_then(|p| p.updated_at))
    }

    /// Updates existing variants of one product, 250 per call.
    pub async fn variants_bulk_update(
        &self,
        product: ShopifyProductId,
        variants: &[VariantUpdateInput],
    ) -> Result<Vec<UpdatedVariant>, ShopifyError> {
        let mut updated = Vec::with_capacity(variants.len());
        for chunk in variants.chunks(MAX_PAGE as usize) {
            let data: VariantsBulkData = self
                .execute(
                    &doc::PRODUCT_VARIANTS_BULK_UPDATE,
                    json!({ "productId": product.gid(), "variants": chunk }),
                    MUTATION_COST,
                )
                .await?;
            let payload =
                data.product_variants_bulk_update
                    .ok_or_else(|| ShopifyError::Decode {
                        operation: doc::PRODUCT_VARIANTS_BULK_UPDATE.name,
                        reason: "payload missing".into(),
                    })?;
            user_errors(doc::PRODUCT_VARIANTS_BULK_UPDATE.name, payload.user_errors)?;
            updated.extend(payload.product_variants.unwrap_or_default());
        }
        Ok(updated)
    }
}

// ---------------------------------------------------------------- inventory

/// One quantity to set: from what shopsync last read to what it should become.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantityChange {
    /// Inventory item.
    pub item: InventoryItemId,
    /// Location.
    pub location: LocationId,
    /// The available quantity shopsync read (sent as `changeFromQuantity`).
    pub expected: i64,
    /// The available quantity it should become.
    pub target: i64,
}

/// Where one batch of a plan stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchProgress {
    /// Attempts re-planned so far (part of the idempotency key).
    pub attempt: u32,
    /// Shopify confirmed the batch.
    pub done: bool,
}

/// A set of quantity changes belonging to one operation, with its progress. Serializable, so
/// the caller can checkpoint it: re-running a checkpointed plan never applies a batch twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryPlan {
    /// Stable key of the work (e.g. the operation and step); idempotency keys derive from it.
    pub key: String,
    /// Shopify's reason (e.g. `correction`).
    pub reason: String,
    /// Where the change comes from (`referenceDocumentUri`).
    pub reference: Option<String>,
    /// The changes (re-planned in place after stale answers).
    pub changes: Vec<QuantityChange>,
    /// Progress per batch of [`MAX_PAGE`] changes.
    pub progress: Vec<BatchProgress>,
}

impl InventoryPlan {
    /// A fresh plan.
    pub fn new(
        key: impl Into<String>,
        reason: impl Into<String>,
        reference: Option<String>,
        changes: Vec<QuantityChange>,
    ) -> Self {
        let batches = changes.len().div_ceil(MAX_PAGE as usize);
        Self {
            key: key.into(),
            reason: reason.into(),
            reference,
            changes,
            progress: vec![BatchProgress::default(); batches],
        }
    }

    /// Whether every batch is confirmed.
    pub fn is_done(&self) -> bool {
        self.progress.iter().all(|p| p.done)
    }
}

/// Saves a plan's progress before each mutation is sent, so a step that dies mid-way resumes
/// with the same idempotency keys and parameters (Shopify then replays instead of applying).
#[async_trait::async_trait]
pub trait PlanCheckpoint: Send {
    /// Persists `plan`.
    async fn save(&mut self, plan: &InventoryPlan) -> Result<(), ShopifyError>;
}

/// No checkpointing (one-shot callers and tests).
pub struct NoCheckpoint;

#[async_trait::async_trait]
impl PlanCheckpoint for NoCheckpoint {
    async fn save(&mut self, _plan: &InventoryPlan) -> Result<(), ShopifyError> {
        Ok(())
    }
}

/// A quantity Shopify accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedQuantity {
    /// Inventory item.
    pub item: InventoryItemId,
    /// Location.
    pub location: LocationId,
    /// The quantity it was compared against.
    pub from: i64,
    /// The quantity set.
    pub to: i64,
}

/// What [`AdminClient::set_inventory`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryOutcome {
    /// Every quantity written in this call.
    pub applied: Vec<AppliedQuantity>,
    /// Entries re-planned after CHANGE_FROM_QUANTITY_STALE (a sale or another write came
    /// between read and write).
    pub replanned: u32,
    /// Mutations sent (excluding transport retries).
    pub batches: u32,
    /// Batches skipped because the plan already had them confirmed.
    pub already_done: u32,
}

/// How often one batch is re-read and re-planned after stale answers before giving up.
pub const MAX_REPLANS: u32 = 5;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InventorySetData {
    inventory_set_quantities: Option<InventorySetPayload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InventorySetPayload {
    user_errors: Vec<UserError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ItemProductData {
    inventory_item: Option<ItemProductNode>,
}

#[derive(Deserialize)]
struct ItemProductNode {
    variant: Option<ItemVariant>,
}

#[derive(Deserialize)]
struct ItemVariant {
    product: Option<ItemProduct>,
}

#[derive(Deserialize)]
struct ItemProduct {
    id: ShopifyProductId,
}

#[derive(Deserialize)]
struct LevelsData {
    nodes: Vec<Option<LevelsNode>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LevelsNode {
    #[serde(default)]
    id: Option<InventoryItemId>,
    #[serde(default)]
    inventory_levels: Option<Nodes<WireLevel>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InventoryActivateData {
    inventory_activate: Option<InventoryActivatePayload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InventoryActivatePayload {
    user_errors: Vec<UserError>,
}

fn only_stale(errors: &[UserError]) -> bool {
    !errors.is_empty()
        && errors
            .iter()
            .all(|e| e.code.as_deref() == Some("CHANGE_FROM_QUANTITY_STALE"))
}

impl AdminClient {
    /// Sets quantities in batches of at most 250, each entry compared with
    /// `changeFromQuantity`, each batch under an idempotency key derived from
    /// (plan key, batch, attempt) so a retried or resumed request replays instead of
    /// applying twice. `checkpoint` saves the plan before every send.
    ///
    /// When Shopify answers CHANGE_FROM_QUANTITY_STALE (a sale happened between read and
    /// write) the batch is re-read and re-planned keeping the concurrent change: the new
    /// target is `target + (current - expected)`, so neither the sale nor shopsync's
    /// change is lost.
    pub async fn set_inventory(
        &self,
        plan: &mut InventoryPlan,
        checkpoint: &mut dyn PlanCheckpoint,
    ) -> Result<InventoryOutcome, ShopifyError> {
        let batches = plan.changes.len().div_ceil(MAX_PAGE as usize);
        plan.progress.resize(batches, BatchProgress::default());
        let mut outcome = InventoryOutcome::default();
        for batch_index in 0..batches {
            if plan.progress[batch_index].done {
                outcome.already_done += 1;
                continue;
            }
            let range = batch_index * MAX_PAGE as usize
                ..((batch_index + 1) * MAX_PAGE as usize).min(plan.changes.len());
            loop {
                checkpoint.save(plan).await?;
                let attempt = plan.progress[batch_index].attempt;
                let key = format!("{}:{batch_index}:{attempt}", plan.key);
                outcome.batches += 1;
                let quantities: Vec<serde_json::Value> = plan.changes[range.clone()]
                    .iter()
                    .map(|c| {
                        json!({
                            "inventoryItemId": c.item.gid(),
                            "locationId": c.location.gid(),
                            "quantity": c.target,
                            "changeFromQuantity": c.expected,
                        })
                    })
                    .collect();
                let data: InventorySetData = self
                    .execute(
                        &doc::INVENTORY_SET_QUANTITIES,
                        json!({
                            "input": {
                                "name": "available",
                                "reason": plan.reason,
                                "referenceDocumentUri": plan.reference,
                                "quantities": quantities,
                            },
                            "idempotencyKey": key,
                        }),
                        MUTATION_COST,
                    )
                    .await?;
                let payload =
                    data.inventory_set_quantities
                        .ok_or_else(|| ShopifyError::Decode {
                            operation: doc::INVENTORY_SET_QUANTITIES.name,
                            reason: "payload missing".into(),
                        })?;
                if payload.user_errors.is_empty() {
                    plan.progress[batch_index].done = true;
                    outcome
                        .applied
                        .extend(plan.changes[range.clone()].iter().map(|c| AppliedQuantity {
                            item: c.item,
                            location: c.location,
                            from: c.expected,
                            to: c.target,
                        }));
                    break;
                }
                if !only_stale(&payload.user_errors) || attempt >= MAX_REPLANS {
                    return Err(ShopifyError::UserErrors {
                        operation: doc::INVENTORY_SET_QUANTITIES.name,
                        errors: payload.user_errors,
                    });
                }
                let items: Vec<InventoryItemId> =
                    plan.changes[range.clone()].iter().map(|c| c.item).collect();
                let current = self.inventory_levels(&items).await?;
                for change in &mut plan.changes[range.clone()] {
                    let Some(now) = current
                        .get(&(change.item, change.location))
                        .copied()
                        .flatten()
                    else {
                        return Err(ShopifyError::Refused(format!(
                            "inventory item {} is not stocked at location {} any more",
                            change.item, change.location
                        )));
                    };
                    if now != change.expected {
                        outcome.replanned += 1;
                        change.target += now - change.expected;
                        change.expected = now;
                    }
                }
                plan.progress[batch_index].attempt += 1;
            }
        }
        checkpoint.save(plan).await?;
        Ok(outcome)
    }

    /// Stocks `item` at `location` (Shopify keeps the quantity of one stocked there already),
    /// so a quantity can be set there.
    pub async fn inventory_activate(
        &self,
        item: InventoryItemId,
        location: LocationId,
    ) -> Result<(), ShopifyError> {
        let data: InventoryActivateData = self
            .execute(
                &doc::INVENTORY_ACTIVATE,
                json!({ "inventoryItemId": item.gid(), "locationId": location.gid() }),
                MUTATION_COST,
            )
            .await?;
        let payload = data
            .inventory_activate
            .ok_or_else(|| ShopifyError::Decode {
                operation: doc::INVENTORY_ACTIVATE.name,
                reason: "payload missing".into(),
            })?;
        user_errors(doc::INVENTORY_ACTIVATE.name, payload.user_errors)
    }

    /// As [`AdminClient::set_inventory`], and an entry Shopify answers is not stocked at its
    /// location (ITEM_NOT_STOCKED_AT_LOCATION: shopsync's copy thought it was) is stocked
    /// there first and set from 0, the quantity an activation starts at; the batch is sent
    /// again as a new attempt (its own idempotency key).
    pub async fn set_inventory_stocking(
        &self,
        plan: &mut InventoryPlan,
        checkpoint: &mut dyn PlanCheckpoint,
    ) -> Result<InventoryOutcome, ShopifyError> {
        let mut rounds = 0;
        loop {
            let errors = match self.set_inventory(plan, checkpoint).await {
                Err(ShopifyError::UserErrors { operation, errors }) if rounds < 3 => {
                    (operation, errors)
                }
                other => return other,
            };
            let (operation, errors) = errors;
            let batch = plan.progress.iter().position(|p| !p.done);
            let unstocked: Vec<usize> = errors
                .iter()
                .filter(|e| e.code.as_deref() == Some("ITEM_NOT_STOCKED_AT_LOCATION"))
                .filter_map(|e| e.field.as_ref()?.get(2)?.parse::<usize>().ok())
                .filter_map(|index| Some(batch? * MAX_PAGE as usize + index))
                .filter(|index| *index < plan.changes.len())
                .collect();
            let (Some(batch), false) = (batch, unstocked.is_empty()) else {
                return Err(ShopifyError::UserErrors { operation, errors });
            };
            for index in unstocked {
                let change = &mut plan.changes[index];
                self.inventory_activate(change.item, change.location)
                    .await?;
                change.expected = 0;
            }
            plan.progress[batch].attempt += 1;
            rounds += 1;
        }
    }

    /// Current available quantities of `items` at every location they are stocked at.
    pub async fn inventory_levels(
        &self,
        items: &[InventoryItemId],
    ) -> Result<HashMap<(InventoryItemId, LocationId), Option<i64>>, ShopifyError> {
        const LEVELS_FIRST: u32 = 3;
        let mut levels = HashMap::new();
        for chunk in items.chunks((MAX_PAGE / 4) as usize) {
            let ids: Vec<String> = chunk.iter().map(|i| i.gid()).collect();
            let per_item = 1 + cost::connection(LEVELS_FIRST, 3);
            let data: LevelsData = self
                .execute(
                    &doc::INVENTORY_LEVELS,
                    json!({ "ids": ids, "levelsFirst": LEVELS_FIRST }),
                    per_item * chunk.len() as u32,
                )
                .await?;
            for node in data.nodes.into_iter().flatten() {
                let Some(item) = node.id else { continue };
                for level in node.inventory_levels.map(|l| l.nodes).unwrap_or_default() {
                    let RemoteLevel {
                        location_id,
                        available,
                    } = level.into_model();
                    levels.insert((item, location_id), available);
                }
            }
        }
        Ok(levels)
    }
}

// ---------------------------------------------------------------- locations, collections

#[derive(Deserialize)]
struct LocationsData {
    locations: Connection<RemoteLocation>,
}

#[derive(Deserialize)]
struct CollectionsData {
    collections: Connection<RemoteCollection>,
}

#[derive(Deserialize)]
struct CollectionData {
    collection: Option<RemoteCollection>,
}

#[derive(Deserialize)]
struct CollectionProductsData {
    collection: Option<CollectionProducts>,
}

#[derive(Deserialize)]
struct CollectionProducts {
    products: Connection<IdOnly<ShopifyProductId>>,
}

#[derive(Deserialize)]
struct CollectionSourcesData {
    collection: Option<CollectionSources>,
}

#[derive(Deserialize)]
struct CollectionSources {
    sources: Vec<CollectionSource>,
}

#[derive(Deserialize)]
struct CollectionSource {
    #[serde(rename = "__typename")]
    typename: String,
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CollectionUpdateData {
    collection_update: Option<CollectionUpdatePayload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CollectionUpdatePayload {
    collection: Option<UpdatedCollection>,
    user_errors: Vec<UserError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdatedCollection {
    #[serde(deserialize_with = "shopsync_domain::time::utc")]
    updated_at: DateTime<Utc>,
}

/// What to change in a collection: the fields given, and products selected into it or out
/// of it (a custom collection's manual selections).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectionChange {
    /// New title.
    pub title: Option<String>,
    /// New handle.
    pub handle: Option<String>,
    /// New description (HTML).
    pub description_html: Option<String>,
    /// New sort order (`MANUAL`, `BEST_SELLING`, ...).
    pub sort_order: Option<String>,
    /// Products to add.
    pub add: Vec<ShopifyProductId>,
    /// Products to remove.
    pub remove: Vec<ShopifyProductId>,
}

impl CollectionChange {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.handle.is_none()
            && self.description_html.is_none()
            && self.sort_order.is_none()
            && self.add.is_empty()
            && self.remove.is_empty()
    }
}

/// The most products `collectionUpdate` selects into (or out of) a source in one call.
const SELECTIONS_PER_CALL: usize = 250;

impl AdminClient {
    /// All locations.
    pub async fn locations(&self) -> Result<Vec<RemoteLocation>, ShopifyError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let data: LocationsData = self
                .execute(
                    &doc::LOCATIONS,
                    json!({ "after": after }),
                    cost::connection(MAX_PAGE, 1),
                )
                .await?;
            all.extend(data.locations.nodes);
            match data.locations.page_info.next() {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Every collection (only those updated after `updated_after`, when given), each with
    /// every one of its products.
    pub async fn collections(
        &self,
        updated_after: Option<DateTime<Utc>>,
    ) -> Result<Vec<RemoteCollection>, ShopifyError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .collections_page(after.as_deref(), updated_after)
                .await?;
            all.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        for collection in &mut all {
            collection.products = self.collection_products(collection.id).await?;
        }
        Ok(all)
    }

    /// One collection with every one of its products (`None`: Shopify has none by that id).
    pub async fn collection(
        &self,
        id: ShopifyCollectionId,
    ) -> Result<Option<RemoteCollection>, ShopifyError> {
        let data: CollectionData = self
            .execute(&doc::COLLECTION, json!({ "id": id.gid() }), 2)
            .await?;
        let Some(mut collection) = data.collection else {
            return Ok(None);
        };
        collection.products = self.collection_products(id).await?;
        Ok(Some(collection))
    }

    /// Every product of a collection, 250 a page.
    pub async fn collection_products(
        &self,
        id: ShopifyCollectionId,
    ) -> Result<Vec<ShopifyProductId>, ShopifyError> {
        let mut products = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let data: CollectionProductsData = self
                .execute(
                    &doc::COLLECTION_PRODUCTS,
                    json!({ "id": id.gid(), "after": after }),
                    cost::connection(MAX_PAGE, 1),
                )
                .await?;
            let Some(collection) = data.collection else {
                return Ok(products);
            };
            products.extend(collection.products.nodes.into_iter().map(|p| p.id));
            match collection.products.page_info.next() {
                Some(next) => after = Some(next),
                None => return Ok(products),
            }
        }
    }

    /// Changes collection `id` as `change` says, through `collectionUpdate`: the fields with
    /// the first call, products selected into and out of its conditions source up to 250 a
    /// call each. Returns the collection's `updatedAt` after the last call. Shopify's user
    /// errors (a product it does not have, a smart collection's membership) are
    /// [`ShopifyError::UserErrors`]; calls before the failing one stay made.
    pub async fn update_collection(
        &self,
        id: ShopifyCollectionId,
        change: &CollectionChange,
    ) -> Result<Option<DateTime<Utc>>, ShopifyError> {
        if change.is_empty() {
            return Ok(None);
        }
        let source = if change.add.is_empty() && change.remove.is_empty() {
            None
        } else {
            Some(self.conditions_source(id).await?)
        };
        let selections = |ids: &[ShopifyProductId]| {
            ids.iter()
                .map(|p| json!({ "productId": p.gid() }))
                .collect::<Vec<_>>()
        };
        let adds: Vec<&[ShopifyProductId]> = change.add.chunks(SELECTIONS_PER_CALL).collect();
        let removes: Vec<&[ShopifyProductId]> = change.remove.chunks(SELECTIONS_PER_CALL).collect();
        let calls = adds.len().max(removes.len()).max(1);
        let mut updated_at = None;
        for call in 0..calls {
            let mut input = serde_json::Map::new();
            input.insert("id".into(), json!(id.gid()));
            if call == 0 {
                for (key, value) in [
                    ("title", &change.title),
                    ("handle", &change.handle),
                    ("descriptionHtml", &change.description_html),
                    ("sortOrder", &change.sort_order),
                ] {
                    if let Some(value) = value {
                        input.insert(key.into(), json!(value));
                    }
                }
            }
            if let Some(source) = &source {
                let mut inclusion = serde_json::Map::new();
                if let Some(add) = adds.get(call) {
                    inclusion.insert("selectionsToAdd".into(), json!(selections(add)));
                }
                if let Some(remove) = removes.get(call) {
                    inclusion.insert("selectionsToRemove".into(), json!(selections(remove)));
                }
                input.insert(
                    "sourcesToUpdate".into(),
                    json!([{ "condition": { "id": source, "inclusion": inclusion } }]),
                );
            }
            let data: CollectionUpdateData = self
                .execute(
                    &doc::COLLECTION_UPDATE,
                    json!({ "collection": input }),
                    MUTATION_COST,
                )
                .await?;
            let payload = data.collection_update.ok_or_else(|| ShopifyError::Decode {
                operation: doc::COLLECTION_UPDATE.name,
                reason: "payload missing".into(),
            })?;
            user_errors(doc::COLLECTION_UPDATE.name, payload.user_errors)?;
            updated_at = payload.collection.map(|c| c.updated_at).or(updated_at);
        }
        Ok(updated_at)
    }

    /// The id of collection `id`'s conditions source (where its manual selections live).
    async fn conditions_source(&self, id: ShopifyCollectionId) -> Result<String, ShopifyError> {
        let data: CollectionSourcesData = self
            .execute(&doc::COLLECTION_SOURCES, json!({ "id": id.gid() }), 2)
            .await?;
        let Some(collection) = data.collection else {
            return Err(ShopifyError::Refused(format!(
                "Shopify has no collection {}",
                id.gid()
            )));
        };
        collection
            .sources
            .into_iter()
            .find(|s| s.typename == "CollectionConditionsSource")
            .map(|s| s.id)
            .ok_or_else(|| {
                ShopifyError::Refused(format!(
                    "collection {} has no conditions source to select products into",
                    id.gid()
                ))
            })
    }

    /// One page of collections by update time, optionally only those updated after `after_time`.
    pub async fn collections_page(
        &self,
        after: Option<&str>,
        updated_after: Option<DateTime<Utc>>,
    ) -> Result<Page<RemoteCollection>, ShopifyError> {
        let query = updated_after.map(|at| {
            doc::updated_after_filter(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        });
        let data: CollectionsData = self
            .execute(
                &doc::COLLECTIONS_PAGE,
                json!({ "first": MAX_PAGE, "after": after, "query": query }),
                cost::connection(MAX_PAGE, 1),
            )
            .await?;
        Ok(Page {
            items: data.collections.nodes,
            next: data.collections.page_info.next(),
        })
    }
}

// ---------------------------------------------------------------- webhook subscriptions

/// A webhook subscription.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Subscription {
    /// Subscription GID.
    pub id: String,
    /// Topic enum, e.g. `PRODUCTS_UPDATE`.
    pub topic: String,
    /// Delivery address.
    pub uri: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionCreateData {
    webhook_subscription_create: Option<SubscriptionCreatePayload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionCreatePayload {
    webhook_subscription: Option<Subscription>,
    user_errors: Vec<UserError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionsData {
    webhook_subscriptions: Connection<Subscription>,
}

impl AdminClient {
    /// Subscribes `topic` (e.g. `PRODUCTS_UPDATE`) to `uri`.
    pub async fn webhook_subscribe(
        &self,
        topic: &str,
        uri: &str,
    ) -> Result<Subscription, ShopifyError> {
        let data: SubscriptionCreateData = self
            .execute(
                &doc::WEBHOOK_SUBSCRIPTION_CREATE,
                json!({ "topic": topic, "uri": uri }),
                MUTATION_COST,
            )
            .await?;
        let payload = data
            .webhook_subscription_create
            .ok_or_else(|| ShopifyError::Decode {
                operation: doc::WEBHOOK_SUBSCRIPTION_CREATE.name,
                reason: "payload missing".into(),
            })?;
        user_errors(doc::WEBHOOK_SUBSCRIPTION_CREATE.name, payload.user_errors)?;
        payload
            .webhook_subscription
            .ok_or_else(|| ShopifyError::Decode {
                operation: doc::WEBHOOK_SUBSCRIPTION_CREATE.name,
                reason: "no subscription returned".into(),
            })
    }

    /// Every webhook subscription of the app.
    pub async fn webhook_subscriptions(&self) -> Result<Vec<Subscription>, ShopifyError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let data: SubscriptionsData = self
                .execute(
                    &doc::WEBHOOK_SUBSCRIPTIONS,
                    json!({ "after": after }),
                    cost::connection(100, 1),
                )
                .await?;
            all.extend(data.webhook_subscriptions.nodes);
            match data.webhook_subscriptions.page_info.next() {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Which of `required` topics have no subscription to `uri` (the subscription health check).
    pub async fn missing_subscriptions(
        &self,
        uri: &str,
        required: &[&str],
    ) -> Result<Vec<String>, ShopifyError> {
        let existing = self.webhook_subscriptions().await?;
        Ok(required
            .iter()
            .filter(|topic| !existing.iter().any(|s| s.topic == **topic && s.uri == uri))
            .map(|t| (*t).to_owned())
            .collect())
    }
}

impl AdminClient {
    /// The product whose variant holds `item` (`None` when Shopify has no such item, or it
    /// belongs to no variant).
    pub async fn product_of_inventory_item(
        &self,
        item: InventoryItemId,
    ) -> Result<Option<ShopifyProductId>, ShopifyError> {
        let data: ItemProductData = self
            .execute(&doc::INVENTORY_ITEM_PRODUCT, json!({ "id": item.gid() }), 3)
            .await?;
        Ok(data
            .inventory_item
            .and_then(|i| i.variant)
            .and_then(|v| v.product)
            .map(|p| p.id))
    }
}

// ---------------------------------------------------------------- bulk push

/// One product of a bulk push, by the mutation that carries it (each kind runs as a bulk
/// mutation of its own; none of them can delete a variant, so none needs a guard).
#[derive(Debug, Clone, PartialEq)]
pub enum BulkPush {
    /// A product new to Shopify: productSet.
    Create(ProductSetInput),
    /// Product-level fields of an existing product: productUpdate.
    Update(ProductUpdateInput),
    /// Fields of existing variants of a product (at most 250): productVariantsBulkUpdate.
    Variants(ShopifyProductId, Vec<VariantUpdateInput>),
}

impl BulkPush {
    fn kind(&self) -> usize {
        match self {
            BulkPush::Create(_) => 0,
            BulkPush::Update(_) => 1,
            BulkPush::Variants(..) => 2,
        }
    }
}

/// The bulk mutation of each kind of [`BulkPush`], and its variables for one product.
fn bulk_line(push: &BulkPush) -> (&'static doc::Document, serde_json::Value) {
    match push {
        BulkPush::Create(input) => (
            &doc::PRODUCT_SET,
            json!({ "input": input, "identifier": null, "synchronous": true }),
        ),
        BulkPush::Update(input) => (&doc::PRODUCT_UPDATE, json!({ "product": input })),
        BulkPush::Variants(product, variants) => (
            &doc::PRODUCT_VARIANTS_BULK_UPDATE,
            json!({ "productId": product.gid(), "variants": variants }),
        ),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StagedData {
    staged_uploads_create: Option<StagedPayload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StagedPayload {
    #[serde(default)]
    staged_targets: Vec<StagedTarget>,
    user_errors: Vec<UserError>,
}

#[derive(Deserialize)]
struct StagedTarget {
    url: Option<String>,
    #[serde(default)]
    parameters: Vec<StagedParameter>,
}

#[derive(Deserialize)]
struct StagedParameter {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunMutationData {
    bulk_operation_run_mutation: Option<RunMutationPayload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunMutationPayload {
    bulk_operation: Option<IdOnly<String>>,
    user_errors: Vec<UserError>,
}

/// One line of a bulk mutation's result.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultLine {
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
    #[serde(rename = "__lineNumber")]
    line_number: usize,
}

/// What a bulk push took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkPushStats {
    /// Bulk mutations run.
    pub operations: u64,
    /// Bytes of variables uploaded.
    pub uploaded_bytes: u64,
    /// Bytes of results read back.
    pub result_bytes: u64,
}

impl AdminClient {
    /// Pushes products through Shopify's bulk mutations: each kind of [`BulkPush`] becomes a
    /// JSONL file of variables (stagedUploadsCreate, then a PUT), run by
    /// bulkOperationRunMutation; the kinds run at once (Shopify runs up to five bulk mutations
    /// at a time per shop from API 2026-01), each is awaited until `timeout`, and its result
    /// file is read back line by line. Returns each product's answer, in the order given: what
    /// Shopify confirmed, or why it refused that product (its line's errors or userErrors).
    pub async fn bulk_push(
        &self,
        pushes: &[BulkPush],
        timeout: Duration,
    ) -> Result<(Vec<Result<ProductSetResult, ShopifyError>>, BulkPushStats), ShopifyError> {
        let mut answers: Vec<Option<Result<ProductSetResult, ShopifyError>>> =
            (0..pushes.len()).map(|_| None).collect();
        let mut stats = BulkPushStats::default();
        let mut started = Vec::new();
        for kind in 0..3 {
            let members: Vec<usize> = (0..pushes.len())
                .filter(|i| pushes[*i].kind() == kind)
                .collect();
            let Some(first) = members.first() else {
                continue;
            };
            let (document, _) = bulk_line(&pushes[*first]);
            let mut file = Vec::new();
            for index in &members {
                let (_, variables) = bulk_line(&pushes[*index]);
                serde_json::to_writer(&mut file, &variables).map_err(|e| ShopifyError::Decode {
                    operation: document.name,
                    reason: format!("variables: {e}"),
                })?;
                file.push(b'\n');
            }
            stats.uploaded_bytes += file.len() as u64;
            let path = self.stage_file(file).await?;
            let id = self.run_bulk_mutation(document, &path).await?;
            stats.operations += 1;
            started.push((id, document, members));
        }
        for (id, document, members) in started {
            let finished = self.await_bulk_operation(&id, timeout).await?;
            let Some(url) = finished.url else {
                for index in members {
                    answers[index] = Some(Err(ShopifyError::Refused(format!(
                        "bulk mutation {id} answered nothing for this product"
                    ))));
                }
                continue;
            };
            let body = self
                .download(&url)
                .await
                .map_err(|e| ShopifyError::Unavailable {
                    operation: "BulkMutationResult",
                    attempts: 1,
                    reason: format!("download failed: {e}"),
                })?
                .bytes()
                .await
                .map_err(|e| ShopifyError::Unavailable {
                    operation: "BulkMutationResult",
                    attempts: 1,
                    reason: format!("download failed: {e}"),
                })?;
            stats.result_bytes += body.len() as u64;
            for raw in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let line: ResultLine =
                    serde_json::from_slice(raw).map_err(|e| ShopifyError::Decode {
                        operation: "BulkMutationResult",
                        reason: format!("a result line: {e}"),
                    })?;
                let Some(index) = members.get(line.line_number).copied() else {
                    continue;
                };
                answers[index] = Some(decode_bulk_answer(&pushes[index], document, line));
            }
        }
        Ok((
            answers
                .into_iter()
                .map(|a| {
                    a.unwrap_or_else(|| {
                        Err(ShopifyError::Refused(
                            "the bulk mutation's result has no line for this product".into(),
                        ))
                    })
                })
                .collect(),
            stats,
        ))
    }

    /// Stages `file` for a bulk mutation; returns its staged upload path.
    async fn stage_file(&self, file: Vec<u8>) -> Result<String, ShopifyError> {
        let input = json!([{
            "resource": "BULK_MUTATION_VARIABLES",
            "filename": "bulk_op_vars.jsonl",
            "mimeType": "text/jsonl",
            "httpMethod": "PUT",
            "fileSize": file.len().to_string(),
        }]);
        let data: StagedData = self
            .execute(
                &doc::STAGED_UPLOADS_CREATE,
                json!({ "input": input }),
                MUTATION_COST,
            )
            .await?;
        let payload = data
            .staged_uploads_create
            .ok_or_else(|| ShopifyError::Decode {
                operation: doc::STAGED_UPLOADS_CREATE.name,
                reason: "payload missing".into(),
            })?;
        user_errors(doc::STAGED_UPLOADS_CREATE.name, payload.user_errors)?;
        let target =
            payload
                .staged_targets
                .into_iter()
                .next()
                .ok_or_else(|| ShopifyError::Decode {
                    operation: doc::STAGED_UPLOADS_CREATE.name,
                    reason: "no staged target".into(),
                })?;
        let (Some(url), Some(path)) = (
            target.url,
            target
                .parameters
                .iter()
                .find(|p| p.name == "key")
                .map(|p| p.value.clone()),
        ) else {
            return Err(ShopifyError::Decode {
                operation: doc::STAGED_UPLOADS_CREATE.name,
                reason: "the staged target has no url or key".into(),
            });
        };
        let sent = self
            .put_staged(&url, "text/jsonl", file)
            .await
            .map_err(|e| ShopifyError::Unavailable {
                operation: "StagedUpload",
                attempts: 1,
                reason: e.to_string(),
            })?;
        if !sent.status().is_success() {
            return Err(ShopifyError::Http {
                operation: "StagedUpload",
                status: sent.status().as_u16(),
                body: sent.text().await.unwrap_or_default(),
            });
        }
        Ok(path)
    }

    /// Starts a bulk mutation of `document` over the staged file at `path`; returns its GID.
    async fn run_bulk_mutation(
        &self,
        document: &doc::Document,
        path: &str,
    ) -> Result<String, ShopifyError> {
        let data: RunMutationData = self
            .execute(
                &doc::BULK_OPERATION_RUN_MUTATION,
                json!({ "mutation": document.text, "stagedUploadPath": path }),
                MUTATION_COST,
            )
            .await?;
        let payload = data
            .bulk_operation_run_mutation
            .ok_or_else(|| ShopifyError::Decode {
                operation: doc::BULK_OPERATION_RUN_MUTATION.name,
                reason: "payload missing".into(),
            })?;
        user_errors(doc::BULK_OPERATION_RUN_MUTATION.name, payload.user_errors)?;
        payload
            .bulk_operation
            .map(|op| op.id)
            .ok_or_else(|| ShopifyError::Decode {
                operation: doc::BULK_OPERATION_RUN_MUTATION.name,
                reason: "no bulk operation returned".into(),
            })
    }
}

/// One product's answer from its line of a bulk mutation's result.
fn decode_bulk_answer(
    push: &BulkPush,
    document: &doc::Document,
    line: ResultLine,
) -> Result<ProductSetResult, ShopifyError> {
    if !line.errors.is_empty() {
        let messages: Vec<String> = line
            .errors
            .iter()
            .map(|e| {
                e.get("message")
                    .and_then(|m| m.as_str())
                    .unwrap_or("an error")
                    .to_owned()
            })
            .collect();
        return Err(ShopifyError::Refused(messages.join("; ")));
    }
    let data = line.data.unwrap_or_default();
    let decode = |reason: String| ShopifyError::Decode {
        operation: document.name,
        reason,
    };
    match push {
        BulkPush::Create(_) => {
            let data: ProductSetData =
                serde_json::from_value(data).map_err(|e| decode(e.to_string()))?;
            let payload = data
                .product_set
                .ok_or_else(|| decode("productSet payload missing".into()))?;
            user_errors(document.name, payload.user_errors)?;
            let product = payload
                .product
                .ok_or_else(|| decode("productSet returned no product".into()))?;
            Ok(set_result(product, false))
        }
        BulkPush::Update(input) => {
            let data: ProductUpdateData =
                serde_json::from_value(data).map_err(|e| decode(e.to_string()))?;
            let payload = data
                .product_update
                .ok_or_else(|| decode("productUpdate payload missing".into()))?;
            user_errors(document.name, payload.user_errors)?;
            let product_id = input
                .id
                .parse::<ShopifyProductId>()
                .map_err(|e| decode(e.to_string()))?;
            Ok(ProductSetResult {
                product_id,
                updated_at: payload.product.and_then(|p| p.updated_at),
                variants: Vec::new(),
                asynchronous: false,
            })
        }
        BulkPush::Variants(product_id, _) => {
            let data: VariantsBulkData =
                serde_json::from_value(data).map_err(|e| decode(e.to_string()))?;
            let payload = data
                .product_variants_bulk_update
                .ok_or_else(|| decode("productVariantsBulkUpdate payload missing".into()))?;
            user_errors(document.name, payload.user_errors)?;
            Ok(ProductSetResult {
                product_id: *product_id,
                updated_at: payload
                    .product_variants
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|v| v.updated_at)
                    .max(),
                variants: Vec::new(),
                asynchronous: false,
            })
        }
    }
}

//! Every GraphQL document the client can send, in one place.
//!
//! `tests/documents.rs` validates each entry of [`ALL`] (and the bulk query templates) against
//! Shopify's real Admin 2026-07 schema; a document Shopify would reject fails the tests.

/// One named GraphQL document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Document {
    /// Operation name (also the key for cost learning and counters).
    pub name: &'static str,
    /// The document text.
    pub text: &'static str,
    /// Whether it is a mutation (cost 10 plus its selection; retried only when idempotent).
    pub mutation: bool,
}

macro_rules! variant_fields {
    () => {
        "fragment VariantFields on ProductVariant {
  id title sku barcode price compareAtPrice position updatedAt
  selectedOptions { name value }
  inventoryItem {
    id
    unitCost { amount }
    inventoryLevels(first: $levelsFirst) {
      nodes { location { id } quantities(names: [\"available\"]) { name quantity } }
    }
  }
}
"
    };
}

macro_rules! product_fields {
    () => {
        "fragment ProductFields on Product {
  id title handle descriptionHtml vendor productType status tags createdAt updatedAt
  options { name values }
  variantsCount { count }
  variants(first: $variantsFirst) {
    pageInfo { hasNextPage endCursor }
    nodes { ...VariantFields }
  }
}
"
    };
}

/// A page of products, newest-updated last, optionally filtered by a search query
/// (`updated_at:>'…'`), with the first variants and their levels nested.
pub const PRODUCTS_PAGE: Document = Document {
    name: "ProductsPage",
    mutation: false,
    text: concat!(
        "query ProductsPage($first: Int!, $after: String, $query: String, $variantsFirst: Int!, $levelsFirst: Int!) {
  products(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes { ...ProductFields }
  }
}
",
        product_fields!(),
        variant_fields!()
    ),
};

/// One product with its first variants.
pub const PRODUCT: Document = Document {
    name: "Product",
    mutation: false,
    text: concat!(
        "query Product($id: ID!, $variantsFirst: Int!, $levelsFirst: Int!) {
  product(id: $id) { ...ProductFields }
}
",
        product_fields!(),
        variant_fields!()
    ),
};

/// The next page of one product's variants (for products past the nested page).
pub const PRODUCT_VARIANTS_PAGE: Document = Document {
    name: "ProductVariantsPage",
    mutation: false,
    text: concat!(
        "query ProductVariantsPage($id: ID!, $first: Int!, $after: String, $levelsFirst: Int!) {
  product(id: $id) {
    id
    variants(first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { ...VariantFields }
    }
  }
}
",
        variant_fields!()
    ),
};

/// The ids of all of a product's variants (the guard before a productSet).
pub const PRODUCT_VARIANT_IDS: Document = Document {
    name: "ProductVariantIds",
    mutation: false,
    text: "query ProductVariantIds($id: ID!, $after: String) {
  product(id: $id) {
    id
    variants(first: 250, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { id }
    }
  }
}
",
};

/// Creates or replaces a product with its options and variants. List fields are replaced:
/// variants left out are deleted (see `ops::product_set`'s guard).
pub const PRODUCT_SET: Document = Document {
    name: "ProductSet",
    mutation: true,
    text: "mutation ProductSet($input: ProductSetInput!, $identifier: ProductSetIdentifiers, $synchronous: Boolean!) {
  productSet(input: $input, identifier: $identifier, synchronous: $synchronous) {
    product {
      id updatedAt
      variants(first: 100) {
        nodes { id sku selectedOptions { name value } inventoryItem { id } }
      }
    }
    productSetOperation { id status userErrors { code field message } }
    userErrors { code field message }
  }
}
",
};

/// Polls an asynchronous productSet.
pub const PRODUCT_OPERATION: Document = Document {
    name: "ProductOperation",
    mutation: false,
    text: "query ProductOperation($id: ID!) {
  productOperation(id: $id) {
    status
    product { id updatedAt }
    ... on ProductSetOperation { id userErrors { code field message } }
  }
}
",
};

/// Updates product-level fields only (never variants).
pub const PRODUCT_UPDATE: Document = Document {
    name: "ProductUpdate",
    mutation: true,
    text: "mutation ProductUpdate($product: ProductUpdateInput!) {
  productUpdate(product: $product) {
    product { id updatedAt }
    userErrors { field message }
  }
}
",
};

/// Updates up to 250 existing variants of one product.
pub const PRODUCT_VARIANTS_BULK_UPDATE: Document = Document {
    name: "ProductVariantsBulkUpdate",
    mutation: true,
    text: "mutation ProductVariantsBulkUpdate($productId: ID!, $variants: [ProductVariantsBulkInput!]!) {
  productVariantsBulkUpdate(productId: $productId, variants: $variants) {
    productVariants { id updatedAt }
    userErrors { code field message }
  }
}
",
};

/// Sets up to 250 quantities, each compared with `changeFromQuantity`, under an idempotency key.
pub const INVENTORY_SET_QUANTITIES: Document = Document {
    name: "InventorySetQuantities",
    mutation: true,
    text: "mutation InventorySetQuantities($input: InventorySetQuantitiesInput!, $idempotencyKey: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey) {
    inventoryAdjustmentGroup { id }
    userErrors { code field message }
  }
}
",
};

/// Stocks an inventory item at a location (it keeps its quantity when stocked there already).
pub const INVENTORY_ACTIVATE: Document = Document {
    name: "InventoryActivate",
    mutation: true,
    text: "mutation InventoryActivate($inventoryItemId: ID!, $locationId: ID!) {
  inventoryActivate(inventoryItemId: $inventoryItemId, locationId: $locationId) {
    inventoryLevel { id }
    userErrors { field message }
  }
}
",
};

/// Current levels of up to 250 inventory items (re-read after a stale compare-and-set).
pub const INVENTORY_LEVELS: Document = Document {
    name: "InventoryLevels",
    mutation: false,
    text: "query InventoryLevels($ids: [ID!]!, $levelsFirst: Int!) {
  nodes(ids: $ids) {
    ... on InventoryItem {
      id
      inventoryLevels(first: $levelsFirst) {
        nodes { location { id } quantities(names: [\"available\"]) { name quantity } }
      }
    }
  }
}
",
};

/// The product an inventory item's variant belongs to (an inventory webhook names only the
/// item).
pub const INVENTORY_ITEM_PRODUCT: Document = Document {
    name: "InventoryItemProduct",
    mutation: false,
    text: "query InventoryItemProduct($id: ID!) {
  inventoryItem(id: $id) {
    id
    variant { id product { id } }
  }
}
",
};

/// A page of locations.
pub const LOCATIONS: Document = Document {
    name: "Locations",
    mutation: false,
    text: "query Locations($after: String) {
  locations(first: 250, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { id name isActive }
  }
}
",
};

/// A page of collections, by update time.
pub const COLLECTIONS_PAGE: Document = Document {
    name: "CollectionsPage",
    mutation: false,
    text: "query CollectionsPage($first: Int!, $after: String, $query: String) {
  collections(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id title handle descriptionHtml sortOrder updatedAt
      ruleSet { appliedDisjunctively rules { column relation condition } }
    }
  }
}
",
};

/// One collection (its products are read by `COLLECTION_PRODUCTS`).
pub const COLLECTION: Document = Document {
    name: "Collection",
    mutation: false,
    text: "query Collection($id: ID!) {
  collection(id: $id) {
    id title handle descriptionHtml sortOrder updatedAt
    ruleSet { appliedDisjunctively rules { column relation condition } }
  }
}
",
};

/// A page of a collection's products (their ids).
pub const COLLECTION_PRODUCTS: Document = Document {
    name: "CollectionProducts",
    mutation: false,
    text: "query CollectionProducts($id: ID!, $after: String) {
  collection(id: $id) {
    products(first: 250, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { id }
    }
  }
}
",
};

/// A collection's sources (a custom collection's manual selections live in its conditions
/// source, which `COLLECTION_UPDATE` names to change them).
pub const COLLECTION_SOURCES: Document = Document {
    name: "CollectionSources",
    mutation: false,
    text: "query CollectionSources($id: ID!) {
  collection(id: $id) {
    id
    sources { __typename id }
  }
}
",
};

/// Changes a collection: its fields, and products selected into or out of its conditions
/// source.
pub const COLLECTION_UPDATE: Document = Document {
    name: "CollectionUpdate",
    mutation: true,
    text: "mutation CollectionUpdate($collection: CollectionUpdateInput!) {
  collectionUpdate(collection: $collection) {
    collection { id updatedAt }
    job { id done }
    userErrors { field message }
  }
}
",
};

/// Starts a bulk export.
pub const BULK_OPERATION_RUN_QUERY: Document = Document {
    name: "BulkOperationRunQuery",
    mutation: true,
    text: "mutation BulkOperationRunQuery($query: String!) {
  bulkOperationRunQuery(query: $query) {
    bulkOperation { id status }
    userErrors { code field message }
  }
}
",
};

/// Stages the file of a bulk mutation's variables (one JSON object per line), to be sent by
/// PUT to the target it answers.
pub const STAGED_UPLOADS_CREATE: Document = Document {
    name: "StagedUploadsCreate",
    mutation: true,
    text: "mutation StagedUploadsCreate($input: [StagedUploadInput!]!) {
  stagedUploadsCreate(input: $input) {
    stagedTargets { url resourceUrl parameters { name value } }
    userErrors { field message }
  }
}
",
};

/// Runs a mutation once per line of a staged file of variables.
pub const BULK_OPERATION_RUN_MUTATION: Document = Document {
    name: "BulkOperationRunMutation",
    mutation: true,
    text: "mutation BulkOperationRunMutation($mutation: String!, $stagedUploadPath: String!, $clientIdentifier: String) {
  bulkOperationRunMutation(mutation: $mutation, stagedUploadPath: $stagedUploadPath, clientIdentifier: $clientIdentifier) {
    bulkOperation { id status }
    userErrors { code field message }
  }
}
",
};

/// Polls a bulk operation.
pub const BULK_OPERATION: Document = Document {
    name: "BulkOperation",
    mutation: false,
    text: "query BulkOperation($id: ID!) {
  bulkOperation(id: $id) { id status errorCode objectCount rootObjectCount url partialDataUrl }
}
",
};

/// Subscribes a topic to an address.
pub const WEBHOOK_SUBSCRIPTION_CREATE: Document = Document {
    name: "WebhookSubscriptionCreate",
    mutation: true,
    text: "mutation WebhookSubscriptionCreate($topic: WebhookSubscriptionTopic!, $uri: String!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: { uri: $uri, format: JSON }) {
    webhookSubscription { id topic uri }
    userErrors { field message }
  }
}
",
};

/// A page of webhook subscriptions (for the subscription health check).
pub const WEBHOOK_SUBSCRIPTIONS: Document = Document {
    name: "WebhookSubscriptions",
    mutation: false,
    text: "query WebhookSubscriptions($after: String) {
  webhookSubscriptions(first: 100, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { id topic uri format }
  }
}
",
};

/// Every document above.
pub const ALL: &[Document] = &[
    PRODUCTS_PAGE,
    PRODUCT,
    PRODUCT_VARIANTS_PAGE,
    PRODUCT_VARIANT_IDS,
    PRODUCT_SET,
    PRODUCT_OPERATION,
    PRODUCT_UPDATE,
    PRODUCT_VARIANTS_BULK_UPDATE,
    INVENTORY_SET_QUANTITIES,
    INVENTORY_ACTIVATE,
    INVENTORY_LEVELS,
    INVENTORY_ITEM_PRODUCT,
    LOCATIONS,
    COLLECTIONS_PAGE,
    COLLECTION,
    COLLECTION_PRODUCTS,
    COLLECTION_SOURCES,
    COLLECTION_UPDATE,
    BULK_OPERATION_RUN_QUERY,
    STAGED_UPLOADS_CREATE,
    BULK_OPERATION_RUN_MUTATION,
    BULK_OPERATION,
    WEBHOOK_SUBSCRIPTION_CREATE,
    WEBHOOK_SUBSCRIPTIONS,
];

/// The bulk export query: every product with its variants and their levels, as nested
/// connections (Shopify flattens them into JSONL lines with `__parentId`). `{filter}` is
/// replaced by a products search argument (empty for all products).
pub const BULK_PRODUCTS_TEMPLATE: &str = "{
  products{filter} {
    edges { node {
      id title handle descriptionHtml vendor productType status tags createdAt updatedAt
      options { name values }
      variants { edges { node {
        id title sku barcode price compareAtPrice position updatedAt
        selectedOptions { name value }
        inventoryItem {
          id
          unitCost { amount }
          inventoryLevels { edges { node {
            id location { id } quantities(names: [\"available\"]) { name quantity }
          } } }
        }
      } } }
    } }
  }
}
";

/// The bulk export query, for all products or those updated after `updated_after`
/// (an RFC 3339 timestamp, quoted as Shopify's search syntax expects).
pub fn bulk_products_query(updated_after: Option<&str>) -> String {
    let filter = match updated_after {
        Some(at) => format!("(query: \"updated_at:>'{}'\")", escape_search_value(at)),
        None => String::new(),
    };
    BULK_PRODUCTS_TEMPLATE.replace("{filter}", &filter)
}

/// The search filter for products updated after `at` (inclusive overlap is the caller's job).
pub fn updated_after_filter(at: &str) -> String {
    format!("updated_at:>'{}'", escape_search_value(at))
}

fn escape_search_value(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '.' | '+' | 'T' | 'Z'))
        .collect()
}

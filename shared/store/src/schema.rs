//! Every table of shopsync, defined once: key schema, global secondary indexes (each from a
//! written-down access pattern) and TTL. The DynamoDB backend, the embedded backend, `migrate`
//! and the infra template all derive from these definitions.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The type of a key attribute (DynamoDB's `S` or `N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    /// String.
    S,
    /// Number (an integer here).
    N,
}

/// One key attribute: name and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct KeyAttr {
    /// Attribute name.
    pub name: &'static str,
    /// Its type.
    pub kind: KeyType,
}

/// A partition key and optional sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct KeySchema {
    /// Partition key.
    pub pk: KeyAttr,
    /// Sort key, if any.
    pub sk: Option<KeyAttr>,
}

/// A global secondary index (projection: all attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct IndexDef {
    /// Index name.
    pub name: &'static str,
    /// Its keys.
    pub key: KeySchema,
    /// The access pattern it serves.
    pub serves: &'static str,
    /// Whether many items lack its keys (an optional attribute). Every index is sparse in
    /// what it answers, as DynamoDB's are: an item without the keys is never found through it.
    /// The embedded store also leaves such items out of a sparse index's rows (a partial
    /// index), which spares their writes an index entry at the cost of checking the keys'
    /// presence on every write, a cost not worth paying where every item has them.
    pub sparse: bool,
}

/// The logical tables: the spec's, plus idempotency records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// `products`.
    Products,
    /// `categories`.
    Categories,
    /// `products_staging`.
    ProductsStaging,
    /// `sync_operations`.
    SyncOperations,
    /// `sync_conflicts`.
    SyncConflicts,
    /// `sync_rollbacks`.
    SyncRollbacks,
    /// `product_versions`.
    ProductVersions,
    /// `category_versions`.
    CategoryVersions,
    /// `xorosoft_products`.
    XorosoftProducts,
    /// `xorosoft_sync_logs`.
    XorosoftSyncLogs,
    /// `sync_performance_logs`.
    SyncPerformanceLogs,
    /// `idempotency_records`: one per webhook, message and file handled.
    IdempotencyRecords,
    /// `compliance_requests`: Shopify's mandatory privacy requests, kept for audit.
    ComplianceRequests,
    /// `local_jobs`: the local host's job queue (local-only: SQS holds the jobs on AWS).
    LocalJobs,
    /// `product_lookups`: a product's variants by normalised SKU, barcode and Xorosoft item
    /// (what an import links its rows by).
    ProductLookups,
    /// `xorosoft_import_chunks`: an import's rows, parsed and linked, staged until its
    /// operation applies them (expire after the import).
    XorosoftImportChunks,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 16] = [
        Table::Products,
        Table::Categories,
        Table::ProductsStaging,
        Table::SyncOperations,
        Table::SyncConflicts,
        Table::SyncRollbacks,
        Table::ProductVersions,
        Table::CategoryVersions,
        Table::XorosoftProducts,
        Table::XorosoftSyncLogs,
        Table::SyncPerformanceLogs,
        Table::IdempotencyRecords,
        Table::ComplianceRequests,
        Table::LocalJobs,
        Table::ProductLookups,
        Table::XorosoftImportChunks,
    ];

    /// The logical name (the spec's table name).
    pub fn name(self) -> &'static str {
        self.def().name
    }

    /// The logical table a definition (possibly a modified copy) is named for.
    pub fn named(def: &TableDef) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == def.name)
    }

    /// The table's definition.
    pub fn def(self) -> &'static TableDef {
        match self {
            Table::Products => &PRODUCTS,
            Table::Categories => &CATEGORIES,
            Table::ProductsStaging => &PRODUCTS_STAGING,
            Table::SyncOperations => &SYNC_OPERATIONS,
            Table::SyncConflicts => &SYNC_CONFLICTS,
            Table::SyncRollbacks => &SYNC_ROLLBACKS,
            Table::ProductVersions => &PRODUCT_VERSIONS,
            Table::CategoryVersions => &CATEGORY_VERSIONS,
            Table::XorosoftProducts => &XOROSOFT_PRODUCTS,
            Table::XorosoftSyncLogs => &XOROSOFT_SYNC_LOGS,
            Table::SyncPerformanceLogs => &SYNC_PERFORMANCE_LOGS,
            Table::IdempotencyRecords => &IDEMPOTENCY_RECORDS,
            Table::ComplianceRequests => &COMPLIANCE_REQUESTS,
            Table::LocalJobs => &LOCAL_JOBS,
            Table::ProductLookups => &PRODUCT_LOOKUPS,
            Table::XorosoftImportChunks => &XOROSOFT_IMPORT_CHUNKS,
        }
    }

    /// The tables a backend of `kind` holds: every table on the embedded store; on the
    /// others, all but the local-only ones.
    pub fn on(kind: &str) -> impl Iterator<Item = Table> + '_ {
        Table::ALL
            .into_iter()
            .filter(move |t| kind == "embedded" || !t.def().local_only)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A table's definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TableDef {
    /// Logical name (the physical name adds the deployment's prefix).
    pub name: &'static str,
    /// Primary key.
    pub key: KeySchema,
    /// Global secondary indexes.
    pub indexes: &'static [IndexDef],
    /// The TTL attribute (epoch seconds), if items expire.
    pub ttl_attr: Option<&'static str>,
    /// Only the local host uses it (the embedded store); it is left out of DynamoDB and the
    /// infra template.
    pub local_only: bool,
}

impl TableDef {
    /// The index called `name`.
    pub fn index(&self, name: &str) -> Option<&'static IndexDef> {
        self.indexes.iter().find(|i| i.name == name)
    }
}

const fn string_key(name: &'static str) -> KeyAttr {
    KeyAttr {
        name,
        kind: KeyType::S,
    }
}
const fn number_key(name: &'static str) -> KeyAttr {
    KeyAttr {
        name,
        kind: KeyType::N,
    }
}
const fn key(pk: KeyAttr, sk: Option<KeyAttr>) -> KeySchema {
    KeySchema { pk, sk }
}
const fn index(
    name: &'static str,
    pk: KeyAttr,
    sk: Option<KeyAttr>,
    serves: &'static str,
) -> IndexDef {
    IndexDef {
        name,
        key: key(pk, sk),
        serves,
        sparse: false,
    }
}
/// An index on an optional attribute (see [`IndexDef::sparse`]).
const fn sparse_index(
    name: &'static str,
    pk: KeyAttr,
    sk: Option<KeyAttr>,
    serves: &'static str,
) -> IndexDef {
    IndexDef {
        sparse: true,
        ..index(name, pk, sk, serves)
    }
}

/// Times in sort keys are epoch milliseconds (`N`); TTLs are epoch seconds.
pub const PRODUCTS: TableDef = TableDef {
    name: "products",
    key: key(string_key("id"), None),
    indexes: &[
        sparse_index(
            "by_shopify_id",
            string_key("shopify_product_id"),
            None,
            "find the local product of a webhook or a pulled Shopify product",
        ),
        sparse_index(
            "by_xorosoft_id",
            string_key("xorosoft_id"),
            None,
            "find the product of a Xorosoft item",
        ),
        sparse_index(
            "by_pending_push",
            string_key("pending_push"),
            Some(number_key("updated_at")),
            "products whose version is past last_sync_version (sparse), oldest first, for up-syncs",
        ),
        sparse_index(
            "by_lock_owner",
            string_key("lock_owner"),
            Some(number_key("lock_expires_at")),
            "locks held by a user, for the admin and for lease clean-up",
        ),
        sparse_index(
            "by_lock_expiry",
            string_key("lock_held"),
            Some(number_key("lock_expires_at")),
            "every held lock by the end of its lease, for maintenance to clear the expired",
        ),
    ],
    ttl_attr: None,
    local_only: false,
};

/// Categories (Shopify collections).
pub const CATEGORIES: TableDef = TableDef {
    name: "categories",
    key: key(string_key("id"), None),
    indexes: &[sparse_index(
        "by_shopify_id",
        string_key("shopify_collection_id"),
        None,
        "find the local category of a collection webhook",
    )],
    ttl_attr: None,
    local_only: false,
};

/// Staged product changes.
pub const PRODUCTS_STAGING: TableDef = TableDef {
    name: "products_staging",
    key: key(string_key("id"), None),
    indexes: &[
        index(
            "by_operation",
            string_key("sync_operation_id"),
            Some(number_key("staged_at")),
            "an operation's staged rows in staging order (apply step, review screen)",
        ),
        index(
            "by_product",
            string_key("source_product_id"),
            Some(number_key("staged_at")),
            "a product's staged changes, to supersede older pending rows",
        ),
        index(
            "by_status",
            string_key("status"),
            Some(number_key("staged_at")),
            "the review queue: every row awaiting approval, oldest first",
        ),
    ],
    ttl_attr: None,
    local_only: false,
};

/// Sync operations.
pub const SYNC_OPERATIONS: TableDef = TableDef {
    name: "sync_operations",
    key: key(string_key("id"), None),
    indexes: &[
        index(
            "by_status",
            string_key("status"),
            Some(number_key("created_at")),
            "operations in a status (in progress, awaiting approval) by time",
        ),
        index(
            "by_created",
            string_key("entity"),
            Some(number_key("created_at")),
            "all operations, newest first (low volume: one partition)",
        ),
    ],
    ttl_attr: None,
    local_only: false,
};

/// Sync conflicts.
pub const SYNC_CONFLICTS: TableDef = TableDef {
    name: "sync_conflicts",
    key: key(string_key("id"), None),
    indexes: &[
        index(
            "by_status",
            string_key("status"),
            Some(number_key("detected_at")),
            "open conflicts, oldest first",
        ),
        index(
            "by_product",
            string_key("product_id"),
            Some(number_key("detected_at")),
            "a product's conflicts",
        ),
        index(
            "by_operation",
            string_key("sync_operation_id"),
            Some(number_key("detected_at")),
            "an operation's conflicts",
        ),
    ],
    ttl_attr: None,
    local_only: false,
};

/// Rollbacks.
pub const SYNC_ROLLBACKS: TableDef = TableDef {
    name: "sync_rollbacks",
    key: key(string_key("id"), None),
    indexes: &[index(
        "by_original_operation",
        string_key("original_operation_id"),
        Some(number_key("created_at")),
        "rollbacks of an operation",
    )],
    ttl_attr: None,
    local_only: false,
};

/// Product version history.
pub const PRODUCT_VERSIONS: TableDef = TableDef {
    name: "product_versions",
    key: key(string_key("product_id"), Some(number_key("version_number"))),
    indexes: &[sparse_index(
        "by_operation",
        string_key("sync_operation_id"),
        Some(number_key("created_at")),
        "versions an operation wrote (rollback)",
    )],
    ttl_attr: None,
    local_only: false,
};

/// Category version history.
pub const CATEGORY_VERSIONS: TableDef = TableDef {
    name: "category_versions",
    key: key(
        string_key("category_id"),
        Some(number_key("version_number")),
    ),
    indexes: &[sparse_index(
        "by_operation",
        string_key("sync_operation_id"),
        Some(number_key("created_at")),
        "versions an operation wrote (rollback)",
    )],
    ttl_attr: None,
    local_only: false,
};

/// Xorosoft stock and cost per item and warehouse.
pub const XOROSOFT_PRODUCTS: TableDef = TableDef {
    name: "xorosoft_products",
    key: key(
        string_key("xorosoft_id"),
        Some(string_key("warehouse_code")),
    ),
    indexes: &[
        index(
            "by_sku",
            string_key("sku"),
            Some(string_key("warehouse_code")),
            "match an import row or a variant by SKU",
        ),
        sparse_index(
            "by_product",
            string_key("product_id"),
            Some(string_key("warehouse_code")),
            "a product's Xorosoft figures",
        ),
        index(
            "by_warehouse",
            string_key("warehouse_code"),
            Some(string_key("xorosoft_id")),
            "the previous snapshot of a StoreCode (items a new one lacks are reported missing)",
        ),
    ],
    ttl_attr: None,
    local_only: false,
};

/// Lookups of a product's variants: `sku:`, `barcode:` and `xorosoft:` keys (normalised) to
/// the products holding them. Written with the product commit that gives a variant the key;
/// never removed there, so a reader re-reads the product by key and checks.
pub const PRODUCT_LOOKUPS: TableDef = TableDef {
    name: "product_lookups",
    key: key(string_key("lookup"), Some(string_key("product_id"))),
    indexes: &[],
    ttl_attr: None,
    local_only: false,
};

/// An import's parsed rows, a chunk per item, until its operation applies them.
pub const XOROSOFT_IMPORT_CHUNKS: TableDef = TableDef {
    name: "xorosoft_import_chunks",
    key: key(string_key("log_id"), Some(number_key("chunk"))),
    indexes: &[],
    ttl_attr: Some("expires_at"),
    local_only: false,
};

/// Xorosoft sync logs.
pub const XOROSOFT_SYNC_LOGS: TableDef = TableDef {
    name: "xorosoft_sync_logs",
    key: key(string_key("id"), None),
    indexes: &[
        index(
            "by_started",
            string_key("entity"),
            Some(number_key("started_at")),
            "every import, newest first (GET /api/v1/xorosoft/imports)",
        ),
        index(
            "by_type",
            string_key("sync_type"),
            Some(number_key("started_at")),
            "recent imports of a type, newest first",
        ),
        sparse_index(
            "by_import_file",
            string_key("import_file"),
            None,
            "the log of a given file",
        ),
    ],
    ttl_attr: None,
    local_only: false,
};

/// Performance logs.
pub const SYNC_PERFORMANCE_LOGS: TableDef = TableDef {
    name: "sync_performance_logs",
    key: key(string_key("id"), None),
    indexes: &[
        index(
            "by_operation",
            string_key("sync_operation_id"),
            Some(number_key("recorded_at")),
            "an operation's performance (per step)",
        ),
        index(
            "by_bottleneck",
            string_key("bottleneck_stage"),
            Some(number_key("recorded_at")),
            "where time goes: recent logs by bottleneck stage",
        ),
    ],
    ttl_attr: None,
    local_only: false,
};

/// Idempotency records (webhooks, queue messages, files).
pub const IDEMPOTENCY_RECORDS: TableDef = TableDef {
    name: "idempotency_records",
    key: key(string_key("key"), None),
    indexes: &[],
    ttl_attr: Some("expires_at"),
    local_only: false,
};

/// `compliance_requests`: by request id (topic and webhook id); few items, scanned.
pub const COMPLIANCE_REQUESTS: TableDef = TableDef {
    name: "compliance_requests",
    key: key(string_key("id"), None),
    indexes: &[],
    ttl_attr: None,
    local_only: false,
};

/// The local host's job queue: a job accepted is kept until it is done, handed out under a
/// visibility timeout, and handed out again when its holder is gone (SQS's promise, kept on
/// the embedded store).
pub const LOCAL_JOBS: TableDef = TableDef {
    name: "local_jobs",
    key: key(string_key("id"), None),
    indexes: &[index(
        "by_visible",
        string_key("queue"),
        Some(number_key("visible_at")),
        "the next job to hand out: queued jobs by the time they become visible",
    )],
    ttl_attr: None,
    local_only: true,
};

/// Attribute names reserved by the backends for the item body.
pub const RESERVED_ATTRS: [&str; 2] = ["doc", "doc_z"];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_table_is_listed_in_declaration_order() {
        // The embedded store finds a table's statements by its number.
        for (number, table) in Table::ALL.iter().enumerate() {
            assert_eq!(*table as usize, number, "{}", table.name());
        }
    }

    #[test]
    fn every_table_has_a_unique_name_and_consistent_key_types() {
        let names: HashSet<_> = Table::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(names.len(), Table::ALL.len());
        for table in Table::ALL {
            let def = table.def();
            let mut types = std::collections::HashMap::new();
            let keys = std::iter::once(def.key).chain(def.indexes.iter().map(|i| i.key));
            for k in keys {
                for attr in std::iter::once(k.pk).chain(k.sk) {
                    assert!(!RESERVED_ATTRS.contains(&attr.name));
                    let kind = types.entry(attr.name).or_insert(attr.kind);
                    assert_eq!(*kind, attr.kind, "{}.{} has two types", def.name, attr.name);
                }
            }
            let index_names: HashSet<_> = def.indexes.iter().map(|i| i.name).collect();
            assert_eq!(index_names.len(), def.indexes.len());
        }
    }
}

//! The migration: create missing tables and indexes, verify existing ones against the
//! definitions (reporting drift), and backfill `version` / `last_sync_version` on products
//! stored before versioning, and the SKU and barcode lookups of products stored before the
//! lookups table. Idempotent: a second run changes nothing.

use crate::backend::{ItemStore, StoreError, TableState};
use crate::item::{Condition, Item, WriteOp};
use crate::records::{ProductLookup, Record};
use crate::schema::{Table, TableDef};
use shopsync_domain::{Actor, ChangeSource, Product, ProductVersion, VersionStamp};
use std::fmt;

/// How careful to be with existing tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MigrateOptions {
    /// Take a backup of each existing table before changing it.
    pub backup: bool,
    /// Change existing DynamoDB tables without a backup (the operator accepts the risk).
    pub no_backup: bool,
    /// Only report what would change.
    pub check: bool,
}

/// One thing the migration does (or would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A table created with its indexes.
    CreateTable(String),
    /// An index added to an existing table.
    CreateIndex(String, &'static str),
    /// An index of the embedded store rebuilt in its current form (same keys, rows kept in
    /// query order).
    RebuildIndex(String, &'static str),
    /// TTL enabled on an existing table.
    EnableTtl(String, &'static str),
    /// Products given `version = 1`, `last_sync_version = 0` and a first snapshot.
    BackfillVersions(String, usize),
    /// The SKU and barcode lookups of products that existed before the lookups table.
    BackfillLookups(String),
    /// A backup taken before changing a table.
    Backup(String, String),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::CreateTable(t) => write!(f, "create table {t}"),
            Change::CreateIndex(t, i) => write!(f, "create index {i} on {t}"),
            Change::RebuildIndex(t, i) => {
                write!(f, "rebuild index {i} on {t} (rows kept in query order)")
            }
            Change::EnableTtl(t, a) => write!(f, "enable TTL on {t}.{a}"),
            Change::BackfillVersions(t, n) => write!(
                f,
                "backfill version/last_sync_version on {n} product(s) in {t}"
            ),
            Change::BackfillLookups(t) => {
                write!(
                    f,
                    "backfill SKU and barcode lookups of existing products into {t}"
                )
            }
            Change::Backup(t, at) => write!(f, "backed up {t} to {at}"),
        }
    }
}

/// What a run found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Changes made (or, with `check`, that would be made).
    pub changes: Vec<Change>,
    /// Differences between existing tables and their definitions; nothing is changed while any
    /// exist.
    pub drift: Vec<String>,
    /// Product items that could not be backfilled (key and reason).
    pub unreadable: Vec<String>,
}

/// Why the migration stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Existing DynamoDB tables would change and neither `--backup` nor `--no-backup` was given.
    #[error("refusing to change existing table(s) {0} without a backup: pass --backup to take an on-demand backup first, or --no-backup to proceed without one")]
    NeedsBackup(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn table_drift(def: &TableDef, state: &TableState) -> Vec<String> {
    let mut drift = Vec::new();
    let name = &state.physical_name;
    let expected_key = (
        def.key.pk.name.to_owned(),
        def.key.sk.map(|s| s.name.to_owned()),
    );
    if state.key != expected_key {
        drift.push(format!(
            "{name}: primary key is {:?}, expected {:?}",
            state.key, expected_key
        ));
    }
    for (attr, kind) in &state.attr_types {
        let defined = std::iter::once(def.key)
            .chain(def.indexes.iter().map(|i| i.key))
            .flat_map(|k| std::iter::once(k.pk).chain(k.sk))
            .find(|a| a.name == attr);
        if let Some(a) = defined {
            if a.kind != *kind {
                drift.push(format!(
                    "{name}: attribute {attr} is {kind:?}, expected {:?}",
                    a.kind
                ));
            }
        }
    }
    for (index, pk, sk) in &state.indexes {
        match def.index(index) {
            None => drift.push(format!("{name}: index {index} is not in the definition")),
            Some(ix) => {
                let expected = (
                    ix.key.pk.name.to_owned(),
                    ix.key.sk.map(|s| s.name.to_owned()),
                );
                if (pk.clone(), sk.clone()) != expected {
                    drift.push(format!(
                        "{name}: index {index} is on ({pk}, {sk:?}), expected {expected:?}"
                    ));
                }
            }
        }
    }
    match (&state.ttl_attr, def.ttl_attr) {
        (Some(found), Some(want)) if found != want => {
            drift.push(format!("{name}: TTL is on {found}, expected {want}"))
        }
        (Some(found), None) => drift.push(format!("{name}: TTL is on {found}, expected none")),
        _ => {}
    }
    drift
}

/// Legacy product items: those without a `version` attribute.
async fn legacy_products(store: &dyn ItemStore) -> Result<Vec<Item>, StoreError> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = store.scan(Table::Products, 500, start.as_ref()).await?;
        out.extend(
            page.items
                .into_iter()
                .filter(|i| !i.attrs.contains_key("version")),
        );
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(out),
        }
    }
}

/// Brings a legacy product document up to the current shape: version 1, never synced.
fn upgrade_product(item: &Item) -> Result<Product, String> {
    let doc = item.doc.as_deref().ok_or("no document")?;
    let mut value: serde_json::Value = serde_json::from_slice(doc).map_err(|e| e.to_string())?;
    let object = value.as_object_mut().ok_or("document is not an object")?;
    object.entry("version").or_insert(1.into());
    object.entry("last_sync_version").or_insert(0.into());
    object.entry("sync_locked").or_insert(false.into());
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// Runs the migration.
pub async fn migrate(
    store: &dyn ItemStore,
    options: MigrateOptions,
) -> Result<MigrateReport, MigrateError> {
    let mut report = MigrateReport::default();
    let mut plan: Vec<(Table, Change)> = Vec::new();
    for table in Table::on(store.kind()) {
        let def = table.def();
        let name = store.physical_name(table);
        match store.describe_table(def).await? {
            None => plan.push((table, Change::CreateTable(name))),
            Some(state) => {
                report.drift.extend(table_drift(def, &state));
                for ix in def.indexes {
                    if !state.indexes.iter().any(|(n, _, _)| n == ix.name) {
                        plan.push((table, Change::CreateIndex(name.clone(), ix.name)));
                    } else if state.outdated_indexes.iter().any(|n| n == ix.name) {
                        plan.push((table, Change::RebuildIndex(name.clone(), ix.name)));
                    }
                }
                if let (None, Some(attr)) = (&state.ttl_attr, def.ttl_attr) {
                    plan.push((table, Change::EnableTtl(name.clone(), attr)));
                }
            }
        }
    }
    if !report.drift.is_empty() {
        return Ok(report);
    }
    let products_exist = !plan
        .iter()
        .any(|(t, c)| *t == Table::Products && matches!(c, Change::CreateTable(_)));
    let legacy = if products_exist {
        legacy_products(store).await?
    } else {
        Vec::new()
    };
    if !legacy.is_empty() {
        plan.push((
            Table::Products,
            Change::BackfillVersions(store.physical_name(Table::Products), legacy.len()),
        ));
    }
    // Products that came before the lookups table get theirs (an import finds a variant
    // by SKU or barcode only through them).
    let lookups_new = plan
        .iter()
        .any(|(t, c)| *t == Table::ProductLookups && matches!(c, Change::CreateTable(_)));
    if products_exist && lookups_new {
        plan.push((
            Table::ProductLookups,
            Change::BackfillLookups(store.physical_name(Table::ProductLookups)),
        ));
    }
    let mut touched: Vec<Table> = plan
        .iter()
        .filter(|(_, c)| !matches!(c, Change::CreateTable(_) | Change::BackfillLookups(_)))
        .map(|(t, _)| *t)
        .collect();
    touched.dedup();
    if options.check {
        report.changes = plan.into_iter().map(|(_, c)| c).collect();
        return Ok(report);
    }
    if !touched.is_empty() {
        let must_back_up = store.kind() == "dynamodb" && !options.no_backup;
        if must_back_up && !options.backup {
            let names: Vec<String> = touched.iter().map(|t| store.physical_name(*t)).collect();
            return Err(MigrateError::NeedsBackup(names.join(", ")));
        }
        // The embedded store's backup is a cheap file copy: always take it.
        if options.backup || store.kind() != "dynamodb" {
            for table in &touched {
                let at = store.backup_table(table.def()).await?;
                report
                    .changes
                    .push(Change::Backup(store.physical_name(*table), at));
                if store.kind() != "dynamodb" {
                    break; // one file holds every table
                }
            }
        }
    }
    for (table, change) in plan {
        let def = table.def();
        match &change {
            Change::CreateTable(_) => store.create_table(def).await?,
            Change::CreateIndex(_, ix) | Change::RebuildIndex(_, ix) => {
                if let Some(index) = def.index(ix) {
                    store.create_index(def, index).await?;
                }
            }
            Change::EnableTtl(_, attr) => store.enable_ttl(def, attr).await?,
            Change::BackfillVersions(..) => backfill(store, &legacy, &mut report).await?,
            Change::BackfillLookups(_) => backfill_lookups(store, &mut report).await?,
            Change::Backup(..) => {}
        }
        report.changes.push(change);
    }
    Ok(report)
}

/// Writes the lookups of every readable product (unconditional puts: a lookup written
/// meanwhile by a product commit is the same or newer, and both point at the product).
async fn backfill_lookups(
    store: &dyn ItemStore,
    report: &mut MigrateReport,
) -> Result<(), StoreError> {
    let mut start = None;
    loop {
        let page = store.scan(Table::Products, 500, start.as_ref()).await?;
        let mut writes = Vec::new();
        for item in &page.items {
            let product = item
                .doc
                .as_deref()
                .ok_or_else(|| "no document".to_owned())
                .and_then(|doc| {
                    serde_json::from_slice::<Product>(doc)
                        .map_err(|e| e.to_string())
                        .or_else(|_| upgrade_product(item))
                });
            let product = match product {
                Ok(product) => product,
                Err(reason) => {
                    report
                        .unreadable
                        .push(format!("product {:?}: {reason}", item.attrs.get("id")));
                    continue;
                }
            };
            for lookup in ProductLookup::of_product(product.id, &product.content) {
                writes.push(WriteOp::Put {
                    table: Table::ProductLookups,
                    item: Item {
                        attrs: lookup.attrs(),
                        doc: serde_json::to_vec(&lookup).ok(),
                    },
                    condition: None,
                });
            }
        }
        for group in writes.chunks(crate::backend::MAX_TRANSACTION_ITEMS) {
            store.transact(group.to_vec()).await?;
        }
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(()),
        }
    }
}

async fn backfill(
    store: &dyn ItemStore,
    legacy: &[Item],
    report: &mut MigrateReport,
) -> Result<(), StoreError> {
    let actor = Actor::system("migrate");
    for item in legacy {
        let key = item
            .attrs
            .get("id")
            .map(|k| format!("{k:?}"))
            .unwrap_or_default();
        let product = match upgrade_product(item) {
            Ok(p) => p,
            Err(reason) => {
                report.unreadable.push(format!("product {key}: {reason}"));
                continue;
            }
        };
        let fields = product.content.to_fields().into_keys().collect();
        let version = ProductVersion::of(
            &product,
            VersionStamp::new(
                fields,
                ChangeSource::Migration,
                actor.clone(),
                None,
                product.updated_at,
            ),
        );
        let writes = vec![
            WriteOp::Put {
                table: Table::Products,
                item: Item {
                    attrs: product.attrs(),
                    doc: serde_json::to_vec(&product).ok(),
                },
                condition: Some(Condition::And(vec![
                    Condition::ItemPresent,
                    Condition::NotExists("version"),
                ])),
            },
            WriteOp::Put {
                table: Table::ProductVersions,
                item: Item {
                    attrs: version.attrs(),
                    doc: serde_json::to_vec(&version).ok(),
                },
                condition: Some(Condition::ItemAbsent),
            },
        ];
        match store.transact(writes).await {
            Ok(()) => {}
            // Someone versioned it meanwhile: nothing to do.
            Err(StoreError::TransactionCanceled { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

//! A property of rollbacks, over random sequences of local edits (title, price, stock),
//! Shopify edits brought down by syncs, Xorosoft stock imports, and up-syncs, on the embedded
//! store (bounded cases,
//! fixed seed): rolling back one of the operations restores exactly the state before it for
//! every product nothing else changed since, and reports every other one; a selective rollback
//! touches only the fields it names; a rollback run again after an interruption restores each
//! product once.

use crate::common;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use shopsync_domain::product::ProductContent;
use shopsync_domain::LocationId;
use shopsync_domain::{
    Actor, Money, OperationId, ProductEdit, ProductId, Quantity, RollbackRequest, RollbackStatus,
    RollbackType, ShopifyProductId, SyncRollback, VariantEdit, VariantRef,
};
use shopsync_engine::blob::{Blobs, FolderBlobs};
use shopsync_engine::down::local_id_for;
use shopsync_engine::edit::edit_product;
use shopsync_engine::rollback::{footprint, open_rollback, run};
use shopsync_engine::sync::{run_full_down, run_up};
use shopsync_engine::xorosoft_import::{ImportSettings, Importer, LocationMap};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

const PRODUCTS: usize = 3;

const IMPORT_HEADER: &str = "StoreCode,LocationCode,ItemNumber,BasePartNumber,ItemUPC,ItemDescription,OnHandQty,AllocatedQty,AvailableQty,QtyOnPO,UnitCost,StandardUnitPrice,WholesalePrice,CurrencyCode,LastModified\n";

/// Cases whose rollback restored a product, and cases that skipped one as changed since: the
/// run must see both, or the property went untested.
static RESTORED: AtomicUsize = AtomicUsize::new(0);
static SKIPPED_AS_CHANGED: AtomicUsize = AtomicUsize::new(0);
/// Imports that applied stock (the sequences must hold some).
static IMPORTED: AtomicUsize = AtomicUsize::new(0);

/// One thing that happens to the catalog.
#[derive(Debug, Clone)]
enum Happening {
    /// A person retitles a product here.
    LocalTitle(usize),
    /// A person reprices a product's first variant here.
    LocalPrice(usize, u32),
    /// A person moves a product's first stock level here.
    LocalStock(usize, i64),
    /// Shopify's admin changes a product's vendor (seen by the next down-sync).
    ShopifyVendor(usize),
    /// Shopify's admin changes a product's title (seen by the next down-sync).
    ShopifyTitle(usize),
    /// A full down-sync.
    DownSync,
    /// An up-sync.
    UpSync,
    /// A Xorosoft stock file sets a product's first variant's stock.
    Import(usize, i64),
}

fn happening() -> impl Strategy<Value = Happening> {
    prop_oneof![
        (0..PRODUCTS).prop_map(Happening::LocalTitle),
        (0..PRODUCTS, 100u32..9_999).prop_map(|(p, c)| Happening::LocalPrice(p, c)),
        (0..PRODUCTS, -5i64..20).prop_map(|(p, d)| Happening::LocalStock(p, d)),
        (0..PRODUCTS).prop_map(Happening::ShopifyVendor),
        (0..PRODUCTS).prop_map(Happening::ShopifyTitle),
        Just(Happening::DownSync),
        Just(Happening::UpSync),
        (0..PRODUCTS, 0i64..50).prop_map(|(p, a)| Happening::Import(p, a)),
    ]
}

/// A case: what happens, which of the operations is rolled back (by position), and whether
/// only titles are.
#[derive(Debug, Clone)]
struct Case {
    happenings: Vec<Happening>,
    rolled_back: usize,
    titles_only: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(happening(), 2..7),
        0usize..16,
        any::<bool>(),
    )
        .prop_map(|(happenings, rolled_back, titles_only)| Case {
            happenings,
            rolled_back,
            titles_only,
        })
}

/// Every product's content now.
async fn contents(
    store: &shopsync_store::Store,
    ids: &[ProductId],
) -> BTreeMap<ProductId, ProductContent> {
    let mut all = BTreeMap::new();
    for id in ids {
        let product = store.product(*id).await.unwrap().unwrap();
        all.insert(*id, product.content);
    }
    all
}

async fn versions(store: &shopsync_store::Store, ids: &[ProductId]) -> BTreeMap<ProductId, u64> {
    let mut all = BTreeMap::new();
    for id in ids {
        all.insert(*id, store.product(*id).await.unwrap().unwrap().version);
    }
    all
}

async fn check(case: Case) -> Result<(), TestCaseError> {
    let (sim, client, store, _dir) = common::setup(PRODUCTS, 1).await;
    let rails = Default::default();
    let system = Actor::system("test");
    let person = Actor::new("pat").unwrap();
    let first = run_full_down(&store, &client, &system, &rails)
        .await
        .unwrap();
    let shopify: Vec<u64> = sim.with_shop(|s| s.products().map(|p| p.id).collect());
    let ids: Vec<ProductId> = shopify
        .iter()
        .map(|id| local_id_for(ShopifyProductId::new(*id).unwrap()))
        .collect();
    // The operations that wrote versions, with the catalog before each.
    let mut operations: Vec<(OperationId, BTreeMap<ProductId, ProductContent>)> =
        vec![(first.operation_uuid, BTreeMap::new())];
    let files = tempfile::tempdir().unwrap();
    let blobs = FolderBlobs::new(files.path(), "test");
    let location = LocationId::new(sim.with_shop(|s| s.locations()[0].id)).unwrap();
    let settings = ImportSettings {
        locations: LocationMap::everything_to(location),
        ..ImportSettings::default()
    };
    for (renames, happening) in case.happenings.iter().enumerate() {
        let before = contents(&store, &ids).await;
        let edit = match happening {
            Happening::LocalTitle(p) => Some((
                p,
                ProductEdit {
                    title: Some(format!("Local title {renames}")),
                    ..ProductEdit::default()
                },
            )),
            Happening::LocalPrice(p, cents) => {
                let key = before[&ids[*p]].variants[0].key.clone();
                Some((
                    p,
                    ProductEdit {
                        variants: vec![VariantEdit {
                            variant: Some(VariantRef::Key(key.to_string())),
                            price: Some(Money::from_cents(u64::from(*cents))),
                            ..VariantEdit::default()
                        }],
                        ..ProductEdit::default()
                    },
                ))
            }
            Happening::LocalStock(p, delta) => {
                let variant = &before[&ids[*p]].variants[0];
                let (location, level) = variant
                    .inventory
                    .iter()
                    .next()
                    .map(|(l, q)| (*l, q.0))
                    .unwrap();
                Some((
                    p,
                    ProductEdit {
                        variants: vec![VariantEdit {
                            variant: Some(VariantRef::Key(variant.key.to_string())),
                            inventory: vec![(location, Quantity((level + delta).max(0)))],
                            ..VariantEdit::default()
                        }],
                        ..ProductEdit::default()
                    },
                ))
            }
            Happening::ShopifyVendor(p) | Happening::ShopifyTitle(p) => {
                let retitle = matches!(happening, Happening::ShopifyTitle(_));
                sim.with_shop(|s| {
                    s.edit_product(shopify[*p], |product| {
                        if retitle {
                            product.title = format!("Shopify title {renames}");
                        } else {
                            product.vendor = format!("Shopify vendor {renames}");
                        }
                        // Newer than anything seen, at Shopify's one-second resolution.
                        product.updated_at += chrono::Duration::seconds(2);
                    })
                });
                None
            }
            Happening::DownSync => {
                let op = run_full_down(&store, &client, &system, &rails)
                    .await
                    .unwrap();
                operations.push((op.operation_uuid, before.clone()));
                None
            }
            Happening::UpSync => {
                run_up(&store, &client, &system).await.unwrap();
                None
            }
            Happening::Import(p, available) => {
                let sku = before[&ids[*p]].variants[0]
                    .sku
                    .as_ref()
                    .unwrap()
                    .as_str()
                    .to_owned();
                let key = format!("xorosoft/inbound/stock/{renames}.csv");
                let file = format!("{IMPORT_HEADER}STORE1,A-01,{sku},BASE,,Item,{on_hand},0,{available},0,,,,USD,11/05/2026 03:15:00 PM\n", on_hand = available);
                blobs
                    .put(&key, file.into_bytes(), "text/csv")
                    .await
                    .unwrap();
                let log = Importer {
                    store: &store,
                    client: Some(&client),
                    blobs: &blobs,
                    actor: &Actor::system("xorosoft-import"),
                    rails: &rails,
                    settings: &settings,
                }
                .run(&key, None, false)
                .await
                .unwrap();
                if let Some(op) = log.operation_id {
                    if log.status == shopsync_domain::XorosoftSyncStatus::Completed {
                        IMPORTED.fetch_add(1, Ordering::Relaxed);
                    }
                    operations.push((op, before.clone()));
                }
                None
            }
        };
        if let Some((p, edit)) = edit {
            if let Ok(edited) =
                edit_product(&store, ids[*p], &edit, None, &person, chrono::Utc::now()).await
            {
                if let Some(op) = edited.operation_id {
                    operations.push((op, before));
                }
            }
        }
    }

    let (rolled_back, before_it) = operations[case.rolled_back % operations.len()].clone();
    let changed = footprint(
        &store,
        &shopsync_engine::operation::load_operation(&store, rolled_back)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let now = contents(&store, &ids).await;
    let at = versions(&store, &ids).await;
    let request = if case.titles_only {
        RollbackRequest {
            rollback_type: Some(RollbackType::Selective),
            fields: vec!["title".into()],
            ..RollbackRequest::default()
        }
    } else {
        RollbackRequest::default()
    };
    let opened = open_rollback(
        &store,
        rolled_back,
        &request,
        &Actor::new("ada").unwrap(),
        chrono::Utc::now(),
    )
    .await;
    let (rollback, _) = match opened {
        Ok(opened) => opened,
        // An operation that applied nothing (every product held or unchanged) is refused.
        Err(shopsync_engine::rollback::RollbackError::NotRollbackable(_)) => return Ok(()),
        Err(e) => panic!("{e}"),
    };
    let (record, _) = run(&store, &client, &rails, rollback.id).await.unwrap();
    let after = contents(&store, &ids).await;
    if record.restored_total > 0 {
        RESTORED.fetch_add(1, Ordering::Relaxed);
    }
    if record
        .skipped
        .iter()
        .any(|(_, why)| why.starts_with("changed since"))
    {
        SKIPPED_AS_CHANGED.fetch_add(1, Ordering::Relaxed);
    }
    let reported = |id: &ProductId| {
        record.restored.iter().any(|r| r.product_id == *id)
            || record.skipped.iter().any(|(p, _)| p == id)
    };

    for id in &ids {
        let Some(reference) = changed.get(id) else {
            prop_assert_eq!(
                &after[id],
                &now[id],
                "a product the operation did not change is left alone"
            );
            continue;
        };
        prop_assert!(
            reported(id),
            "every product it changed is reported: {:?}",
            record
        );
        let untouched_since = at[id] == reference.after_version;
        let created = reference.created;
        if created || !untouched_since {
            prop_assert!(record.skipped.iter().any(|(p, _)| p == id), "{:?}", record);
            prop_assert_eq!(&after[id], &now[id], "a skipped product is left alone");
            continue;
        }
        let was = &before_it[id];
        if case.titles_only {
            let mut expected = now[id].clone();
            expected.title = was.title.clone();
            prop_assert_eq!(&after[id], &expected, "only the title comes back");
        } else {
            prop_assert_eq!(&after[id], was, "exactly the state before the operation");
        }
    }

    // Interrupted before it recorded its end and run again: nothing is restored twice.
    let versions_once = versions(&store, &ids).await;
    let mut interrupted: SyncRollback = record.clone();
    interrupted.status = RollbackStatus::InProgress;
    store
        .put_all(std::slice::from_ref(&interrupted))
        .await
        .unwrap();
    let mut operation =
        shopsync_engine::operation::load_operation(&store, record.operation_id.unwrap())
            .await
            .unwrap();
    operation.status = shopsync_domain::OperationStatus::InProgress;
    store
        .put_all(std::slice::from_ref(&operation))
        .await
        .unwrap();
    let (again, _) = run(&store, &client, &rails, rollback.id).await.unwrap();
    prop_assert_eq!(
        versions(&store, &ids).await,
        versions_once,
        "each product restored once"
    );
    prop_assert_eq!(contents(&store, &ids).await, after);
    prop_assert_eq!(again.restored_total, record.restored_total);
    Ok(())
}

#[test]
fn rolling_back_any_operation_restores_exactly_what_nothing_changed_since() {
    let mut runner = TestRunner::new(Config {
        cases: 24,
        max_shrink_iters: 32,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x005e_ed0f_5ba5),
        ..Config::default()
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runner
        .run(&case(), |case| runtime.block_on(check(case)))
        .unwrap();
    assert!(
        RESTORED.load(Ordering::Relaxed) > 0,
        "no case restored anything"
    );
    assert!(IMPORTED.load(Ordering::Relaxed) > 0, "no import applied");
    assert!(
        SKIPPED_AS_CHANGED.load(Ordering::Relaxed) > 0,
        "no case skipped a product changed since"
    );
}

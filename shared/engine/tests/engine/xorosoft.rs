//! Xorosoft imports end to end: a file in a folder becomes staged rows, versions, records and
//! Shopify stock, once; held imports change nothing until approved; an import interrupted at
//! every chunk boundary (and made to redo each chunk) ends as one run does.

use crate::common;
use shopsync_domain::{
    Actor, ChangeSource, GuardRails, LocationId, OperationStatus, Product, XorosoftProduct,
    XorosoftSyncStatus,
};
use shopsync_engine::blob::{Blobs, FolderBlobs};
use shopsync_engine::sync::run_full_down;
use shopsync_engine::xorosoft_import::{approve_import, ImportSettings, Importer, LocationMap};
use shopsync_shopify::AdminClient;
use shopsync_shopify_sim::SimHandle;
use shopsync_store::item::Query;
use shopsync_store::{Store, Table};

const HEADER: &str = "StoreCode,LocationCode,ItemNumber,BasePartNumber,ItemUPC,ItemDescription,OnHandQty,AllocatedQty,AvailableQty,QtyOnPO,UnitCost,StandardUnitPrice,WholesalePrice,CurrencyCode,LastModified";

fn importer_actor() -> Actor {
    Actor::system("xorosoft-import")
}

struct Shop {
    sim: SimHandle,
    client: AdminClient,
    store: Store,
    location: LocationId,
    products: Vec<Product>,
    _dir: tempfile::TempDir,
}

async fn shop() -> Shop {
    let (sim, client, store, dir) = common::setup(3, 2).await;
    run_full_down(
        &store,
        &client,
        &Actor::new("merchant").unwrap(),
        &GuardRails::default(),
    )
    .await
    .unwrap();
    let location = sim.with_shop(|s| s.locations()[0].id);
    let mut products: Vec<Product> = store.scan::<Product>(100, None).await.unwrap().items;
    products.sort_by_key(|p| p.shopify_id.map(|i| i.get()));
    Shop {
        sim,
        client,
        store,
        location: LocationId::new(location).unwrap(),
        products,
        _dir: dir,
    }
}

fn settings(shop: &Shop) -> ImportSettings {
    ImportSettings {
        locations: LocationMap::everything_to(shop.location),
        max_row_error_pct: 50.0,
        ..ImportSettings::default()
    }
}

fn importer<'a>(
    shop: &'a Shop,
    blobs: &'a FolderBlobs,
    settings: &'a ImportSettings,
    rails: &'a GuardRails,
    actor: &'a Actor,
) -> Importer<'a> {
    Importer {
        store: &shop.store,
        client: Some(&shop.client),
        blobs,
        actor,
        rails,
        settings,
    }
}

/// A row: store, item number, UPC, available, unit cost, retail price.
fn row(store: &str, item: &str, upc: &str, available: i64, cost: &str, price: &str) -> String {
    format!("{store},A-01,{item},BASE,{upc},Item,{on_hand},2,{available},0,{cost},{price},1.00,USD,11/05/2026 03:15:00 PM\n", on_hand = available + 2)
}

async fn drop_file(blobs: &FolderBlobs, key: &str, body: &str) {
    blobs
        .put(key, body.as_bytes().to_vec(), "text/csv")
        .await
        .unwrap();
}

/// Drops `body` at `key` and imports it with the suite's settings: the import's log.
async fn import_dropped(
    shop: &Shop,
    blobs: &FolderBlobs,
    key: &str,
    body: &str,
) -> shopsync_domain::XorosoftSyncLog {
    drop_file(blobs, key, body).await;
    let (settings, rails, actor) = (settings(shop), GuardRails::default(), importer_actor());
    importer(shop, blobs, &settings, &rails, &actor)
        .run(key, None, false)
        .await
        .unwrap()
}

fn sku(product: &Product, variant: usize) -> String {
    product.content.variants[variant]
        .sku
        .as_ref()
        .unwrap()
        .as_str()
        .to_owned()
}

fn level(shop: &Shop, product: &Product, variant: usize) -> Option<i64> {
    let item = product.content.variants[variant].inventory_item_id.unwrap();
    shop.sim
        .with_shop(|s| s.level(item.get(), shop.location.get()))
}

async fn versions_by(store: &Store, product: &Product, source: ChangeSource) -> usize {
    store
        .product_versions(product.id, false, 100, None)
        .await
        .unwrap()
        .items
        .iter()
        .filter(|v| v.change_source == source)
        .count()
}

async fn records(store: &Store) -> Vec<XorosoftProduct> {
    let mut all = Vec::new();
    let mut next = None;
    loop {
        let page = store
            .scan::<XorosoftProduct>(100, next.as_ref())
            .await
            .unwrap();
        all.extend(page.items);
        match page.next {
            Some(n) => next = Some(n),
            None => return all,
        }
    }
}

/// Sets the modification time of object `key` an hour back (a file written an hour before).
fn written_an_hour_ago(blobs: &FolderBlobs, key: &str) {
    let written = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(blobs.path_of(key).unwrap())
        .unwrap()
        .set_modified(written)
        .unwrap();
}

/// The 09:00 export (`available` 7 for variant `variant` of `product`) held for approval
/// (every change reviewed), then the 10:00 export (30) imported and applied unattended:
/// the held import's log.
async fn an_early_file_held_then_a_late_one_applied(
    shop: &Shop,
    blobs: &FolderBlobs,
    product: &Product,
    variant: usize,
) -> shopsync_domain::XorosoftSyncLog {
    let (settings, actor) = (settings(shop), importer_actor());
    let every_change_reviewed = GuardRails {
        require_approval: true,
        ..GuardRails::default()
    };
    let reviewed = importer(shop, blobs, &settings, &every_change_reviewed, &actor);
    let early = "xorosoft/inbound/stock/0900.csv";
    let file = format!(
        "{HEADER}\n{}",
        row("MAIN", &sku(product, variant), "", 7, "1.00", "5.00")
    );
    drop_file(blobs, early, &file).await;
    written_an_hour_ago(blobs, early);
    let held = reviewed.run(early, None, false).await.unwrap();
    assert_eq!(
        held.status,
        XorosoftSyncStatus::AwaitingApproval,
        "{held:?}"
    );
    let rails = GuardRails::default();
    let unattended = importer(shop, blobs, &settings, &rails, &actor);
    let late = "xorosoft/inbound/stock/1000.csv";
    let file = format!(
        "{HEADER}\n{}",
        row("MAIN", &sku(product, variant), "", 30, "1.00", "5.00")
    );
    drop_file(blobs, late, &file).await;
    let applied = unattended.run(late, None, false).await.unwrap();
    assert_eq!(applied.status, XorosoftSyncStatus::Completed, "{applied:?}");
    assert_eq!(level(shop, product, variant), Some(30));
    held
}

on_both_stores! {
    async fn a_stock_file_is_linked_staged_applied_pushed_and_archived_once() {
        let shop = shop().await;
        let folder = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(folder.path(), "local");
        let (first, second) = (&shop.products[0], &shop.products[1]);
        let barcode = first.content.variants[1].barcode.clone().unwrap();
        // By SKU written another way (case and a space for a hyphen), in two stores that
        // share a location (their stock adds up); by barcode; one unknown; one broken.
        let file = format!(
            "{HEADER}\n{}{}{}{}{}MAIN,A-01,TEE-9,BASE,1.23457E+11,Broken,1,0,1,0,1.00,2.00,1.00,USD,11/05/2026 03:15:00 PM\n",
            row("MAIN", &sku(first, 0).to_lowercase().replacen('-', " ", 1), "", 120, "4.10", "19.99"),
            row("OUTLET", &sku(first, 0), "", 30, "4.10", "19.99"),
            row("MAIN", "ERP-ONLY-1", &barcode, 77, "3.00", "9.99"),
            row("MAIN", &sku(second, 1), "", 5, "2.50", "9.99"),
            row("MAIN", "NOT-IN-SHOPIFY", "", 9, "1.00", "2.00"),
        );
        let key = "xorosoft/inbound/stock/day1.csv";
        let log = import_dropped(&shop, &blobs, key, &file).await;
        assert_eq!(log.status, XorosoftSyncStatus::CompletedWithErrors, "{log:?}");
        let stats = log.statistics;
        assert_eq!((stats.rows_valid, stats.rows_invalid), (5, 1), "{stats:?}");
        assert_eq!((stats.matched, stats.unmatched, stats.ambiguous), (4, 1, 0), "{stats:?}");
        assert_eq!(stats.pushed, 3, "three stock levels changed: {stats:?}");
        assert_eq!(stats.push_failed, 0);

        // Local: the stock of both stores at their shared location, a Xorosoft version each.
        let first_now = shop.store.product(first.id).await.unwrap().unwrap();
        let stock = |p: &Product, v: usize| p.content.variants[v].inventory.get(&shop.location).map(|q| q.0);
        assert_eq!(stock(&first_now, 0), Some(150));
        assert_eq!(stock(&first_now, 1), Some(77));
        assert_eq!(first_now.content.variants[0].cost.map(|c| c.to_string()), Some("4.10".into()));
        assert_eq!(versions_by(&shop.store, first, ChangeSource::Xorosoft).await, 1);
        assert!(first_now.xorosoft_id.is_some(), "a new link sets xorosoft_id");
        assert!(first_now.stock_synced_at.is_some());
        assert_eq!(first_now.last_sync_version, first_now.version, "everything it changed was confirmed");
        // Shopify: the same levels.
        assert_eq!(level(&shop, &first_now, 0), Some(150));
        assert_eq!(level(&shop, &first_now, 1), Some(77));
        let second_now = shop.store.product(second.id).await.unwrap().unwrap();
        assert_eq!(level(&shop, &second_now, 1), Some(5));
        // Records: one per (item, store); unmatched rows are kept too, unlinked.
        let kept = records(&shop.store).await;
        assert_eq!(kept.len(), 5, "{kept:#?}");
        let outlet = kept.iter().find(|r| r.warehouse_code == "OUTLET").unwrap();
        assert_eq!((outlet.stock_available.0, outlet.stock_on_hand.0), (30, 32));
        assert_eq!(outlet.product_id, Some(first.id));
        assert!(kept.iter().any(|r| r.xorosoft_id == "NOT-IN-SHOPIFY" && r.product_id.is_none()));
        // Files: archived, reported, gone from the inbound folder.
        assert!(blobs.head(key).await.unwrap().is_none());
        let report = std::fs::read_to_string(folder.path().join(log.errors_report.as_ref().unwrap().trim_start_matches("local/"))).unwrap();
        assert!(report.contains("1.23457E+11"), "{report}");
        assert!(report.contains("NOT-IN-SHOPIFY"), "{report}");
        let archived = log.archive_file.as_ref().unwrap().trim_start_matches("local/").to_owned();
        assert_eq!(std::fs::read_to_string(folder.path().join(&archived)).unwrap(), file);

        // The same object again: a duplicate, nothing changed.
        let again = import_dropped(&shop, &blobs, key, &file).await;
        assert_eq!(again.status, XorosoftSyncStatus::Duplicate);
        assert_eq!(again.duplicate_of, Some(log.id));
        assert_eq!(versions_by(&shop.store, first, ChangeSource::Xorosoft).await, 1);
        // A link made by SKU or barcode is found by Xorosoft id next time.
        let lookups = shop
            .store
            .lookups_of(&[shopsync_store::records::ProductLookup::xorosoft_key("ERP-ONLY-1")])
            .await
            .unwrap();
        assert_eq!(lookups[0].len(), 1);
        assert_eq!(lookups[0][0].product_id, first.id);
    }
}

on_both_stores! {
    async fn a_price_change_waits_for_review_and_changes_nothing_until_approved() {
        let shop = shop().await;
        let folder = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(folder.path(), "local");
        let product = &shop.products[2];
        let file = format!("{HEADER}\n{}", row("MAIN", &sku(product, 0), "", 4, "2.00", "123.45"));
        let key = "xorosoft/inbound/price/prices.csv";
        let held = import_dropped(&shop, &blobs, key, &file).await;
        assert_eq!(held.status, XorosoftSyncStatus::AwaitingApproval);
        assert!(held.status_reason.as_deref().unwrap_or("").contains("price"), "{held:?}");
        let operation = held.operation_id.unwrap();
        let unchanged = shop.store.product(product.id).await.unwrap().unwrap();
        assert_eq!(unchanged.version, product.version, "a held import changed no product");
        assert!(records(&shop.store).await.is_empty(), "nor any record");
        let variant_id = product.content.variants[0].shopify_id.unwrap().get();
        let shopify_price = || shop.sim.with_shop(|s| {
            s.products().flat_map(|p| p.variants.iter()).find(|v| v.id == variant_id).map(|v| v.price.clone())
        });
        assert_ne!(shopify_price().as_deref(), Some("123.45"));

        let approved = approve_import(&shop.store, operation, &Actor::new("reviewer").unwrap()).await.unwrap();
        assert_eq!(approved.status, OperationStatus::InProgress);
        let (settings, rails, actor) = (settings(&shop), GuardRails::default(), importer_actor());
        let done = importer(&shop, &blobs, &settings, &rails, &actor).run_operation(operation).await.unwrap();
        assert_eq!(done.status, XorosoftSyncStatus::Completed, "{done:?}");
        let applied = shop.store.product(product.id).await.unwrap().unwrap();
        assert_eq!(applied.content.variants[0].price.to_string(), "123.45");
        assert_eq!(shopify_price().as_deref(), Some("123.45"));
        assert_eq!(records(&shop.store).await.len(), 1);
    }
}

on_both_stores! {
    async fn a_snapshot_lacking_items_of_its_store_is_held_and_reports_them_missing() {
        let shop = shop().await;
        let folder = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(folder.path(), "local");
        let skus: Vec<String> = shop.products.iter().flat_map(|p| (0..2).map(move |v| sku(p, v))).collect();
        let full: String = skus.iter().map(|s| row("MAIN", s, "", 10, "1.00", "5.00")).collect();
        drop_file(&blobs, "xorosoft/inbound/stock/monday.csv", &format!("{HEADER}\n{full}")).await;
        let (settings, rails, actor) = (settings(&shop), GuardRails::default(), importer_actor());
        let run = importer(&shop, &blobs, &settings, &rails, &actor);
        let monday = run.run("xorosoft/inbound/stock/monday.csv", None, false).await.unwrap();
        assert_eq!(monday.status, XorosoftSyncStatus::Completed, "{monday:?}");
        // Tuesday's file lacks half of Monday's items: held, and they are not zeroed.
        let half: String = skus[..3].iter().map(|s| row("MAIN", s, "", 11, "1.00", "5.00")).collect();
        drop_file(&blobs, "xorosoft/inbound/stock/tuesday.csv", &format!("{HEADER}\n{half}")).await;
        let tuesday = run.run("xorosoft/inbound/stock/tuesday.csv", None, false).await.unwrap();
        assert_eq!(tuesday.status, XorosoftSyncStatus::AwaitingApproval, "{tuesday:?}");
        assert_eq!(tuesday.statistics.missing, 3);
        assert!(tuesday.status_reason.as_deref().unwrap_or("").contains("lacks 3 of the 6"), "{tuesday:?}");
        let last = &shop.products[2];
        let now = shop.store.product(last.id).await.unwrap().unwrap();
        assert_eq!(now.content.variants[1].inventory.get(&shop.location).map(|q| q.0), Some(10));
    }
}

/// Runs an import one piece of work at a time and, after each, puts its operation back as it
/// was before that piece (a worker that did the work and died before saving where it
/// was), then runs the piece again: every chunk is read, staged and pushed twice.
async fn run_interrupted(
    run: &Importer<'_>,
    store: &Store,
    key: &str,
) -> shopsync_domain::XorosoftSyncLog {
    let begun = run.begin(key, None, false).await.unwrap();
    let shopsync_engine::xorosoft_import::Begun::Import { operation, .. } = begun else {
        panic!("not begun: {begun:?}");
    };
    let mut pieces = 0;
    loop {
        let before = shopsync_engine::operation::load_operation(store, operation)
            .await
            .unwrap();
        let (_, more) = run
            .advance(operation, Some(std::time::Instant::now()))
            .await
            .unwrap();
        if !more {
            break;
        }
        // The piece is done again from where it began.
        store.put_all(std::slice::from_ref(&before)).await.unwrap();
        let (_, more) = run
            .advance(operation, Some(std::time::Instant::now()))
            .await
            .unwrap();
        pieces += 1;
        assert!(pieces < 500, "the import does not end");
        if !more {
            break;
        }
    }
    assert!(pieces > 6, "one piece per chunk at least: {pieces}");
    shopsync_engine::xorosoft_import::load_log(
        store,
        shopsync_engine::operation::load_operation(store, operation)
            .await
            .unwrap()
            .xorosoft_log_id
            .unwrap(),
    )
    .await
    .unwrap()
}

on_both_stores! {
    async fn an_import_interrupted_at_every_chunk_boundary_loses_and_doubles_nothing() {
        let shop = shop().await;
        let folder = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(folder.path(), "local");
        let mut body = format!("{HEADER}\n");
        for (index, product) in shop.products.iter().enumerate() {
            for variant in 0..2 {
                body.push_str(&row("MAIN", &sku(product, variant), "", 200 + (index * 2 + variant) as i64, "1.00", "5.00"));
            }
        }
        // A repeated item: both its rows are refused, wherever the chunks cut.
        body.push_str(&row("MAIN", &sku(&shop.products[0], 0), "", 999, "1.00", "5.00"));
        body.push_str("MAIN,A-01,\"CUT");
        let key = "xorosoft/inbound/stock/interrupted.csv";
        drop_file(&blobs, key, &body).await;
        let settings = ImportSettings { chunk_rows: 1, ..settings(&shop) };
        let (rails, actor) = (GuardRails::default(), importer_actor());
        let run = importer(&shop, &blobs, &settings, &rails, &actor);
        let log = run_interrupted(&run, &shop.store, key).await;
        assert_eq!(log.status, XorosoftSyncStatus::CompletedWithErrors, "{log:?}");
        let stats = log.statistics;
        // Both rows of the repeated item are invalid and repeated, counted once each
        // however often the step that withdraws the first is done.
        assert_eq!((stats.rows_valid, stats.rows_invalid, stats.duplicates), (5, 3, 2), "{stats:?}");
        assert_eq!((stats.matched, stats.unmatched, stats.ambiguous), (5, 0, 0), "{stats:?}");
        assert_eq!(stats.pushed, 5, "{stats:?}");
        for (index, product) in shop.products.iter().enumerate() {
            let now = shop.store.product(product.id).await.unwrap().unwrap();
            assert_eq!(versions_by(&shop.store, product, ChangeSource::Xorosoft).await, 1, "one version per product");
            for variant in 0..2 {
                let expected = if index == 0 && variant == 0 {
                    product.content.variants[0].inventory.get(&shop.location).map(|q| q.0)
                } else {
                    Some(200 + (index * 2 + variant) as i64)
                };
                assert_eq!(now.content.variants[variant].inventory.get(&shop.location).map(|q| q.0), expected);
                assert_eq!(level(&shop, &now, variant), expected, "Shopify holds it once");
            }
        }
        let chunks: Vec<shopsync_domain::ImportChunk> = shop
            .store
            .query_all(Query::new(Table::XorosoftImportChunks, None, log.id.to_string()))
            .await
            .unwrap();
        assert_eq!(chunks.iter().map(|c| c.items.len() + c.errors.len()).sum::<usize>(), 8);
    }
}

on_both_stores! {
    async fn a_full_file_stocks_an_item_where_it_was_not_and_exports_what_shopify_holds_after() {
        let shop = shop().await;
        let folder = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(folder.path(), "local");
        let product = &shop.products[0];
        let item = product.content.variants[1].inventory_item_id.unwrap().get();
        // The merchant took the item out of the location in Shopify's admin.
        assert!(shop.sim.with_shop(|s| s.unstock(item, shop.location.get())));
        let file = format!(
            "{HEADER}\n{}{}{}",
            row("MAIN", &sku(product, 0), "", 70, "4.10", &product.content.variants[0].price.to_string()),
            row("MAIN", &sku(product, 1), "", 8, "4.10", &product.content.variants[1].price.to_string()),
            row("OUTLET", &sku(product, 1), "", 2, "4.10", &product.content.variants[1].price.to_string()),
        );
        let key = "xorosoft/inbound/full/both.csv";
        let log = import_dropped(&shop, &blobs, key, &file).await;
        assert_eq!(log.status, XorosoftSyncStatus::Completed, "{log:?}");
        assert_eq!(
            shop.sim.with_shop(|s| s.level(item, shop.location.get())),
            Some(10),
            "stocked there first, then set (both stores share the location)"
        );
        let export = log.export_file.as_deref().expect("a full file writes an export");
        let text = std::fs::read_to_string(folder.path().join(export.trim_start_matches("local/"))).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "StoreCode,LocationCode,ItemNumber,ItemUPC,AvailableQty,ShopifyLocation,SharedWith");
        let at = format!("gid://shopify/Location/{}", shop.location.get());
        assert!(lines.contains(&format!("MAIN,A-01,{},,70,{at},OUTLET", sku(product, 0)).as_str()), "{text}");
        // Shopify holds one figure for the two stores on its location: their sum, said so.
        assert!(lines.contains(&format!("MAIN,A-01,{},,10,{at},OUTLET", sku(product, 1)).as_str()), "{text}");
        assert!(lines.contains(&format!("OUTLET,A-01,{},,10,{at},MAIN", sku(product, 1)).as_str()), "{text}");
    }
}

on_both_stores! {
    async fn an_import_neither_moves_the_down_sync_cursor_nor_zeroes_stock_past_the_rail() {
        let shop = shop().await;
        let folder = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(folder.path(), "local");
        // Every variant to zero: more than the zero-stock rail allows (here 2).
        let zeroes: String = shop
            .products
            .iter()
            .flat_map(|p| (0..2).map(move |v| row("MAIN", &sku(p, v), "", 0, "1.00", "5.00")))
            .collect();
        drop_file(&blobs, "xorosoft/inbound/full/zero.csv", &format!("{HEADER}\n{zeroes}")).await;
        let settings = settings(&shop);
        let rails = GuardRails {
            max_zero_stock: 2,
            ..GuardRails::default()
        };
        let actor = importer_actor();
        let held = importer(&shop, &blobs, &settings, &rails, &actor)
            .run("xorosoft/inbound/full/zero.csv", None, false)
            .await
            .unwrap();
        assert_eq!(held.status, XorosoftSyncStatus::AwaitingApproval, "{held:?}");
        assert!(held.status_reason.as_deref().unwrap_or("").contains("drop to zero"), "{held:?}");
        let untouched = shop.store.product(shop.products[0].id).await.unwrap().unwrap();
        assert_eq!(untouched.version, shop.products[0].version);
        // The next incremental down-sync starts from the last down-sync, not the import.
        let stepper = shopsync_engine::steps::Stepper {
            store: &shop.store,
            client: &shop.client,
            actor: &actor,
            rails: &rails,
        };
        let incremental = stepper
            .open(shopsync_engine::steps::SyncKind::Incremental {
                overlap: chrono::Duration::zero(),
                dry_run: true,
            })
            .await
            .unwrap();
        let operations: Vec<shopsync_domain::SyncOperation> = shop
            .store
            .query_all(Query::new(Table::SyncOperations, Some("by_created"), "operation"))
            .await
            .unwrap();
        let full_down = operations
            .iter()
            .find(|o| o.xorosoft_log_id.is_none() && o.operation_type == shopsync_domain::OperationType::FullSync)
            .unwrap();
        let since = incremental.checkpoint.as_ref().and_then(|c| c.pointer("/phase/since")).and_then(|s| s.as_str()).unwrap();
        let since: chrono::DateTime<chrono::Utc> = since.parse().unwrap();
        assert_eq!(Some(since), full_down.started_at, "the import's operation is not a down-sync");
    }
}

on_both_stores! {
    async fn a_sku_two_products_share_is_ambiguous_and_neither_is_guessed() {
        let shop = shop().await;
        let folder = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(folder.path(), "local");
        let (first, second) = (&shop.products[0], &shop.products[1]);
        let shared = sku(first, 0);
        // The merchant gives another product's variant the same SKU, written another way.
        common::edit(&shop.store, second, |c| {
            c.variants[0].sku = shopsync_domain::Sku::parse(&shared.to_lowercase());
        })
        .await;
        let file = format!("{HEADER}\n{}", row("MAIN", &shared, "", 99, "1.00", "5.00"));
        drop_file(&blobs, "xorosoft/inbound/stock/shared.csv", &file).await;
        let settings = ImportSettings {
            max_row_error_pct: 100.0,
            ..settings(&shop)
        };
        let (rails, actor) = (GuardRails::default(), importer_actor());
        let log = importer(&shop, &blobs, &settings, &rails, &actor)
            .run("xorosoft/inbound/stock/shared.csv", None, false)
            .await
            .unwrap();
        assert_eq!((log.statistics.matched, log.statistics.ambiguous), (0, 1), "{log:?}");
        assert_eq!(log.status, XorosoftSyncStatus::CompletedWithErrors);
        for product in [first, second] {
            assert_eq!(versions_by(&shop.store, product, ChangeSource::Xorosoft).await, 0);
        }
        let errors = shopsync_engine::xorosoft_import::row_errors(&shop.store, log.id).await.unwrap();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].reason.contains("2 products"), "{errors:?}");
    }
}

on_both_stores! {
    /// A stock file written before the one whose stock is already in (files arriving out of
    /// order, or a held import approved late) is held for a person: its older snapshot never
    /// sets stock back unasked. Approving it applies it.
    async fn a_stock_file_older_than_the_stock_already_imported_is_held_until_a_person_approves_it() {
        let shop = shop().await;
        let folder = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(folder.path(), "local");
        let product = &shop.products[0];
        let (settings, rails, actor) = (settings(&shop), GuardRails::default(), importer_actor());
        let run = importer(&shop, &blobs, &settings, &rails, &actor);
        let late = "xorosoft/inbound/stock/1000.csv";
        drop_file(&blobs, late, &format!("{HEADER}\n{}", row("MAIN", &sku(product, 0), "", 30, "1.00", "5.00"))).await;
        let imported = run.run(late, None, false).await.unwrap();
        assert_eq!(imported.status, XorosoftSyncStatus::Completed, "{imported:?}");
        assert_eq!(level(&shop, product, 0), Some(30));
        let snapshot = records(&shop.store).await[0].stock_snapshot_at;
        assert_eq!(snapshot, imported.object.as_ref().unwrap().last_modified, "the record keeps its file's time");
        assert!(snapshot.is_some());

        // The 09:00 export arrives after the 10:00 one.
        let early = "xorosoft/inbound/stock/0900.csv";
        drop_file(&blobs, early, &format!("{HEADER}\n{}", row("MAIN", &sku(product, 0), "", 7, "1.00", "5.00"))).await;
        written_an_hour_ago(&blobs, early);
        let held = run.run(early, None, false).await.unwrap();
        assert_eq!(held.status, XorosoftSyncStatus::AwaitingApproval, "{held:?}");
        let reason = held.status_reason.as_deref().unwrap_or("");
        assert!(reason.contains("1 item(s) of store MAIN hold stock from a newer file (local/xorosoft/inbound/stock/1000.csv"), "{reason}");
        let unchanged = shop.store.product(product.id).await.unwrap().unwrap();
        assert_eq!(unchanged.content.variants[0].inventory.get(&shop.location).map(|q| q.0), Some(30), "nothing applied");
        assert_eq!(level(&shop, product, 0), Some(30), "nothing pushed");

        // A person who approves it chooses the older snapshot.
        approve_import(&shop.store, held.operation_id.unwrap(), &Actor::new("reviewer").unwrap()).await.unwrap();
        let done = run.run_operation(held.operation_id.unwrap()).await.unwrap();
        assert_eq!(done.status, XorosoftSyncStatus::Completed, "{done:?}");
        assert_eq!(level(&shop, product, 0), Some(7));
        assert_eq!(records(&shop.store).await[0].stock_snapshot_at, done.object.as_ref().unwrap().last_modified);
    }
}

on_both_stores! {
    /// An import held for another reason and approved after a newer file's stock came in is
    /// held again before it applies: the approval was given before the newer stock existed.
    async fn a_held_import_overtaken_by_a_newer_file_is_held_again_when_approved() {
        let shop = shop().await;
        let folder = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(folder.path(), "local");
        let product = &shop.products[1];
        let held = an_early_file_held_then_a_late_one_applied(&shop, &blobs, product, 1).await;
        assert!(!held.status_reason.as_deref().unwrap_or("").contains("newer file"), "{held:?}");
        let (settings, actor) = (settings(&shop), importer_actor());
        let every_change_reviewed = GuardRails { require_approval: true, ..GuardRails::default() };
        let reviewed = importer(&shop, &blobs, &settings, &every_change_reviewed, &actor);

        // The 09:00 import, approved now, stops before it applies and asks again.
        let operation = held.operation_id.unwrap();
        approve_import(&shop.store, operation, &Actor::new("reviewer").unwrap()).await.unwrap();
        let again = reviewed.run_operation(operation).await.unwrap();
        assert_eq!(again.status, XorosoftSyncStatus::AwaitingApproval, "{again:?}");
        let reason = again.status_reason.as_deref().unwrap_or("");
        assert!(reason.starts_with("since this import was judged, 1 item(s) of store MAIN hold stock from a newer file (local/xorosoft/inbound/stock/1000.csv"), "{reason}");
        assert_eq!(level(&shop, product, 1), Some(30), "nothing applied or pushed");
        let kept = shop.store.product(product.id).await.unwrap().unwrap();
        assert_eq!(kept.content.variants[1].inventory.get(&shop.location).map(|q| q.0), Some(30));

        // Approved knowing it, it applies.
        approve_import(&shop.store, operation, &Actor::new("reviewer").unwrap()).await.unwrap();
        let done = reviewed.run_operation(operation).await.unwrap();
        assert_eq!(done.status, XorosoftSyncStatus::Completed, "{done:?}");
        assert_eq!(level(&shop, product, 1), Some(7));
        let local = shop.store.product(product.id).await.unwrap().unwrap();
        assert_eq!(local.content.variants[1].inventory.get(&shop.location).map(|q| q.0), Some(7), "local and Shopify agree");
    }
}

on_both_stores! {
    /// A sale made in Shopify while a stock import waited for approval is kept when it is
    /// applied, locally as in Shopify: both end at Xorosoft's figure less the sale.
    async fn a_sale_while_an_import_waits_is_kept_locally_and_in_shopify() {
        let shop = shop().await;
        let folder = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(folder.path(), "local");
        let product = &shop.products[2];
        let (settings, actor) = (settings(&shop), importer_actor());
        let rails = GuardRails { require_approval: true, ..GuardRails::default() };
        let run = importer(&shop, &blobs, &settings, &rails, &actor);
        let key = "xorosoft/inbound/stock/morning.csv";
        drop_file(&blobs, key, &format!("{HEADER}\n{}", row("MAIN", &sku(product, 0), "", 25, "1.00", "5.00"))).await;
        let held = run.run(key, None, false).await.unwrap();
        assert_eq!(held.status, XorosoftSyncStatus::AwaitingApproval, "{held:?}");
        // Four sell in Shopify, and its inventory webhook brings the level here.
        let before = level(&shop, product, 0).unwrap();
        let item = product.content.variants[0].inventory_item_id.unwrap().get();
        shop.sim.with_shop(|s| s.adjust_level(item, shop.location.get(), -4));
        let sale = crate::realtime::delivery(
            "inventory_levels/update",
            &serde_json::json!({
                "inventory_item_id": item,
                "location_id": shop.location.get(),
                "available": before - 4,
                "updated_at": chrono::Utc::now().to_rfc3339(),
            }),
            "sale-1",
        );
        let handled = shopsync_engine::realtime::handle_delivery(&shop.store, Some(&shop.client), &sale, &Actor::new("system:webhooks").unwrap(), chrono::Utc::now()).await.unwrap();
        assert_eq!(handled.name(), "updated", "{handled:?}");
        let seen = shop.store.product(product.id).await.unwrap().unwrap();
        assert_eq!(seen.content.variants[0].inventory.get(&shop.location).map(|q| q.0), Some(before - 4));

        let operation = held.operation_id.unwrap();
        approve_import(&shop.store, operation, &Actor::new("reviewer").unwrap()).await.unwrap();
        let done = run.run_operation(operation).await.unwrap();
        assert_eq!(done.status, XorosoftSyncStatus::Completed, "{done:?}");
        assert_eq!(level(&shop, product, 0), Some(21), "Xorosoft's 25 less the sale");
        let local = shop.store.product(product.id).await.unwrap().unwrap();
        assert_eq!(local.content.variants[0].inventory.get(&shop.location).map(|q| q.0), Some(21), "local agrees with Shopify");
        assert_eq!(local.last_sync_version, local.version, "nothing left to push");
    }
}

on_both_stores! {
    /// Two imports that interleave so that the older file's check before it applies cannot
    /// see the newer one (its products applied, its records not yet written): the older
    /// file's row finds the newer import's version of the product and keeps what it set.
    async fn an_older_files_row_applied_after_a_newer_import_keeps_the_newer_stock() {
        let shop = shop().await;
        let folder = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(folder.path(), "local");
        let product = &shop.products[0];
        let held = an_early_file_held_then_a_late_one_applied(&shop, &blobs, product, 0).await;
        let (settings, actor) = (settings(&shop), importer_actor());
        let every_change_reviewed = GuardRails { require_approval: true, ..GuardRails::default() };
        let reviewed = importer(&shop, &blobs, &settings, &every_change_reviewed, &actor);
        // The newer import's records as they were before it wrote them.
        let unwritten: Vec<XorosoftProduct> = records(&shop.store)
            .await
            .into_iter()
            .map(|mut record| {
                record.stock_snapshot_at = None;
                record.last_log_id = None;
                record
            })
            .collect();
        shop.store.put_all(&unwritten).await.unwrap();

        let operation = held.operation_id.unwrap();
        approve_import(&shop.store, operation, &Actor::new("reviewer").unwrap()).await.unwrap();
        let done = reviewed.run_operation(operation).await.unwrap();
        assert_eq!(done.status, XorosoftSyncStatus::Completed, "{done:?}");
        assert_eq!(level(&shop, product, 0), Some(30), "Shopify keeps the newer stock");
        let local = shop.store.product(product.id).await.unwrap().unwrap();
        assert_eq!(local.content.variants[0].inventory.get(&shop.location).map(|q| q.0), Some(30), "so does the product");
        let rows = shopsync_engine::operation::operation_rows(&shop.store, operation).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, shopsync_domain::staging::StagingStatus::Superseded, "{:?}", rows[0]);
        assert!(rows[0].error.as_deref().unwrap_or("").contains("newer Xorosoft file"), "{:?}", rows[0].error);
    }
}

on_both_stores! {
    async fn a_product_read_ahead_of_its_apply_that_moves_meanwhile_keeps_the_move() {
        let shop = shop().await;
        let folder = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(folder.path(), "local");
        let (settings, actor) = (settings(&shop), importer_actor());
        let every_change_reviewed = GuardRails { require_approval: true, ..GuardRails::default() };
        let held_importer = importer(&shop, &blobs, &settings, &every_change_reviewed, &actor);
        let product = &shop.products[0];
        let key = "xorosoft/inbound/stock/ahead.csv";
        drop_file(&blobs, key, &format!("{HEADER}\n{}", row("MAIN", &sku(product, 0), "", 17, "4.00", "9.99"))).await;
        let held = held_importer.run(key, None, false).await.unwrap();
        assert_eq!(held.status, XorosoftSyncStatus::AwaitingApproval, "{held:?}");
        let operation_id = held.operation_id.unwrap();
        let operation = shopsync_engine::operation::load_operation(&shop.store, operation_id).await.unwrap();
        let rows = shopsync_engine::operation::operation_rows(&shop.store, operation_id).await.unwrap();
        assert_eq!(rows.len(), 1);

        // The apply's copy of the product is read, then a person renames it.
        let read_ahead = shop.store.product(product.id).await.unwrap().unwrap();
        let rename = shopsync_domain::ProductEdit { title: Some("Renamed meanwhile".into()), ..Default::default() };
        let merchant = Actor::new("merchant").unwrap();
        shopsync_engine::edit::edit_product(&shop.store, product.id, &rename, None, &merchant, chrono::Utc::now()).await.unwrap();

        let stats = shopsync_engine::apply::apply_import_rows_read(
            &shop.store,
            &operation,
            (rows, [(product.id, read_ahead.clone())].into()),
            &actor,
            &mut Default::default(),
            None,
        )
        .await
        .unwrap();
        assert_eq!((stats.updated, stats.failed), (1, 0), "{stats:?}");
        let now = shop.store.product(product.id).await.unwrap().unwrap();
        assert_eq!(now.content.title, "Renamed meanwhile", "the rename is kept");
        assert_eq!(now.content.variants[0].inventory.get(&shop.location).map(|q| q.0), Some(17), "the stock is applied");
        assert_eq!(now.version, read_ahead.version + 2, "one version each");
        assert_eq!(versions_by(&shop.store, product, ChangeSource::Xorosoft).await, 1);
    }
}

on_both_stores! {
    async fn a_row_in_another_currency_gives_its_stock_but_not_its_cost_and_is_reported() {
        let shop = shop().await;
        let folder = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(folder.path(), "local");
        let product = &shop.products[0];
        let cost_before = product.content.variants[1].cost;
        let file = format!(
            "{HEADER}\n{}{}",
            row("MAIN", &sku(product, 0), "", 40, "2.50", "19.99"),
            row("MAIN", &sku(product, 1), "", 41, "3.75", "29.99").replace(",USD,", ",EUR,"),
        );
        let key = "xorosoft/inbound/stock/euro.csv";
        let log = import_dropped(&shop, &blobs, key, &file).await;
        assert_eq!(log.status, XorosoftSyncStatus::CompletedWithErrors, "{log:?}");
        assert_eq!(log.statistics.price_errors, 1, "{:?}", log.statistics);
        assert_eq!((log.statistics.rows_valid, log.statistics.rows_invalid), (2, 0));

        let now = shop.store.product(product.id).await.unwrap().unwrap();
        let stock = |v: usize| now.content.variants[v].inventory.get(&shop.location).map(|q| q.0);
        assert_eq!((stock(0), stock(1)), (Some(40), Some(41)), "both rows' stock is taken");
        assert_eq!(now.content.variants[0].cost.map(|c| c.to_string()), Some("2.50".into()));
        assert_eq!(now.content.variants[1].cost, cost_before, "a cost in euros is not taken as dollars");
        assert_eq!(level(&shop, &now, 1), Some(41));
        let kept = records(&shop.store).await;
        let euro = kept.iter().find(|r| r.xorosoft_id == sku(product, 1)).unwrap();
        assert_eq!(euro.stock_available.0, 41);
        assert_eq!(euro.cost_price, None, "{euro:?}");

        let errors = shopsync_engine::xorosoft_import::row_errors(&shop.store, log.id).await.unwrap();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!((errors[0].line, errors[0].column.as_str(), errors[0].value.as_str()), (3, "CurrencyCode", "EUR"));
        assert!(errors[0].reason.contains("shop's currency (USD)"), "{errors:?}");
        let report = std::fs::read_to_string(folder.path().join(log.errors_report.as_ref().unwrap().trim_start_matches("local/"))).unwrap();
        assert!(report.contains("3,CurrencyCode,EUR,"), "{report}");
    }
}

on_both_stores! {
    async fn a_price_file_whose_rows_are_in_another_currency_counts_them_as_errors() {
        let shop = shop().await;
        let folder = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(folder.path(), "local");
        let product = &shop.products[1];
        let file = format!(
            "{HEADER}\n{}{}",
            row("MAIN", &sku(product, 0), "", 4, "2.00", "50.00").replace(",USD,", ",EUR,"),
            row("MAIN", &sku(product, 1), "", 4, "2.00", "51.00").replace(",USD,", ",EUR,"),
        );
        let key = "xorosoft/inbound/price/euro.csv";
        drop_file(&blobs, key, &file).await;
        let settings = ImportSettings { owns_price: true, ..settings(&shop) };
        let (rails, actor) = (GuardRails::default(), importer_actor());
        let held = importer(&shop, &blobs, &settings, &rails, &actor)
            .run(key, None, false)
            .await
            .unwrap();
        assert_eq!(held.status, XorosoftSyncStatus::AwaitingApproval, "{held:?}");
        assert!(held.status_reason.as_deref().unwrap_or("").contains("2 of 2 rows"), "{held:?}");
        let unchanged = shop.store.product(product.id).await.unwrap().unwrap();
        assert_eq!(unchanged.version, product.version);
    }
}

on_both_stores! {
    async fn a_locked_product_is_skipped_and_its_rows_are_reported_with_who_holds_it() {
        let shop = shop().await;
        let folder = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(folder.path(), "local");
        let (locked, free) = (&shop.products[0], &shop.products[1]);
        shop.store
            .lock_product(locked.id, &Actor::new("bo").unwrap(), chrono::Utc::now(), chrono::Duration::seconds(600))
            .await
            .unwrap();
        let locked = shop.store.product(locked.id).await.unwrap().unwrap();
        let level_before = level(&shop, &locked, 0);
        let file = format!(
            "{HEADER}\n{}{}{}",
            row("MAIN", &sku(&locked, 0), "", 61, "1.00", "5.00"),
            row("MAIN", &sku(&locked, 1), "", 62, "1.00", "5.00"),
            row("MAIN", &sku(free, 0), "", 63, "1.00", "5.00"),
        );
        let key = "xorosoft/inbound/stock/locked.csv";
        let log = import_dropped(&shop, &blobs, key, &file).await;
        assert_eq!(log.status, XorosoftSyncStatus::CompletedWithErrors, "{log:?}");
        assert_eq!(log.statistics.locked, 2, "{:?}", log.statistics);

        let after = shop.store.product(locked.id).await.unwrap().unwrap();
        assert_eq!(after.version, locked.version, "the locked product is not changed");
        assert_eq!(versions_by(&shop.store, &locked, ChangeSource::Xorosoft).await, 0);
        assert_eq!(level(&shop, &after, 0), level_before, "nor pushed");
        let free_now = shop.store.product(free.id).await.unwrap().unwrap();
        assert_eq!(level(&shop, &free_now, 0), Some(63));

        let errors = shopsync_engine::xorosoft_import::row_errors(&shop.store, log.id).await.unwrap();
        let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3], "{errors:?}");
        assert!(errors.iter().all(|e| e.reason.contains("locked by bo")), "{errors:?}");
        let report = std::fs::read_to_string(folder.path().join(log.errors_report.as_ref().unwrap().trim_start_matches("local/"))).unwrap();
        assert!(report.contains(&sku(&locked, 1)), "{report}");
    }
}

on_both_stores! {
    async fn a_rejected_import_dropped_again_is_a_duplicate_that_says_how_to_import_it_afresh() {
        let shop = shop().await;
        let folder = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(folder.path(), "local");
        let product = &shop.products[2];
        let file = format!("{HEADER}\n{}", row("MAIN", &sku(product, 0), "", 4, "2.00", "123.45"));
        let key = "xorosoft/inbound/price/prices.csv";
        let held = import_dropped(&shop, &blobs, key, &file).await;
        assert_eq!(held.status, XorosoftSyncStatus::AwaitingApproval);
        let operation = held.operation_id.unwrap();
        shopsync_engine::review::reject_operation(&shop.store, operation, &Actor::new("reviewer").unwrap(), "prices are wrong")
            .await
            .unwrap();
        let rejected = shopsync_engine::xorosoft_import::load_log(&shop.store, held.id).await.unwrap();
        assert_eq!(rejected.status, XorosoftSyncStatus::Failed);
        assert!(rejected.status_reason.as_deref().unwrap_or("").contains("prices are wrong"), "{rejected:?}");

        let again = import_dropped(&shop, &blobs, key, &file).await;
        assert_eq!(again.status, XorosoftSyncStatus::Duplicate, "{again:?}");
        assert_eq!(again.duplicate_of, Some(held.id));
        let reason = again.status_reason.as_deref().unwrap_or("");
        assert!(reason.contains("prices are wrong") && reason.contains("another name"), "{reason}");
        assert!(!reason.contains("resume"), "a rejected import is not resumed: {reason}");
        // Settled, the file leaves the inbound folder for the archive, as an imported one does.
        assert!(blobs.head(key).await.unwrap().is_none(), "not left waiting in the inbound folder");
        let archived = again.archive_file.as_deref().unwrap().trim_start_matches("local/");
        assert_eq!(std::fs::read_to_string(folder.path().join(archived)).unwrap(), file);
        let unchanged = shop.store.product(product.id).await.unwrap().unwrap();
        assert_eq!(unchanged.version, product.version);
    }
}

on_both_stores! {
    async fn an_import_failed_past_its_retries_is_logged_failed_and_its_file_again_names_the_resume() {
        let shop = shop().await;
        let folder = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(folder.path(), "local");
        let product = &shop.products[1];
        let file = format!("{HEADER}\n{}", row("MAIN", &sku(product, 0), "", 44, "2.00", "9.99"));
        let key = "xorosoft/inbound/stock/failing.csv";
        drop_file(&blobs, key, &file).await;
        let (settings, rails, actor) = (settings(&shop), GuardRails::default(), importer_actor());
        let run = importer(&shop, &blobs, &settings, &rails, &actor);
        let shopsync_engine::xorosoft_import::Begun::Import { operation, log } = run.begin(key, None, false).await.unwrap() else {
            panic!("begun");
        };
        let worker = shopsync_engine::jobs::Worker {
            store: shop.store.clone(),
            client: shop.client.clone(),
            actor: Actor::system("worker"),
            rails: GuardRails::default(),
            continuation: None,
            imports: None,
        };
        worker.fail_operation(operation, "Shopify answered 503 five times").await;
        let failed = shopsync_engine::xorosoft_import::load_log(&shop.store, log.id).await.unwrap();
        assert_eq!(failed.status, XorosoftSyncStatus::Failed, "the log says what its operation does");

        let again = run.run(key, None, false).await.unwrap();
        assert_eq!(again.status, XorosoftSyncStatus::Duplicate, "{again:?}");
        let reason = again.status_reason.as_deref().unwrap_or("");
        assert!(reason.contains("503") && reason.contains(&format!("operation resume {operation}")), "{reason}");
        assert!(blobs.head(key).await.unwrap().is_some(), "left for the failed import, which has not read it yet");
        assert!(again.archive_file.is_none());

        // Resumed by a person, it goes on and completes, its log with it.
        shopsync_engine::review::resume_operation(&shop.store, operation, &Actor::new("operator").unwrap())
            .await
            .unwrap();
        let reopened = shopsync_engine::xorosoft_import::load_log(&shop.store, log.id).await.unwrap();
        assert_eq!(reopened.status, XorosoftSyncStatus::InProgress);
        let done = run.run_operation(operation).await.unwrap();
        assert_eq!(done.status, XorosoftSyncStatus::Completed, "{done:?}");
        let now = shop.store.product(product.id).await.unwrap().unwrap();
        assert_eq!(level(&shop, &now, 0), Some(44));
    }
}

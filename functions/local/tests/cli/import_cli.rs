//! Xorosoft files through the binary: `shopsync import xorosoft` and `serve`'s inbound folder
//! with its `GET /api/v1/xorosoft/imports` routes.

use crate::common;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const HEADER: &str = "StoreCode,LocationCode,ItemNumber,BasePartNumber,ItemUPC,ItemDescription,OnHandQty,AllocatedQty,AvailableQty,QtyOnPO,UnitCost,StandardUnitPrice,WholesalePrice,CurrencyCode,LastModified";

fn shopsync(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shopsync"))
        .args(args)
        .arg("--data")
        .arg(dir)
        .arg("--sim-products")
        .arg("4")
        .env_remove("SHOPIFY_ACCESS_TOKEN")
        .env_remove("SHOPSYNC_XOROSOFT_LOCATIONS")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The SKUs of the local catalog a down-sync left in `dir`.
async fn skus(dir: &std::path::Path) -> Vec<String> {
    let (products, _, _) = common::stored(dir).await;
    let mut skus: Vec<String> = products
        .iter()
        .flat_map(|p| p.content.variants.iter())
        .filter_map(|v| v.sku.as_ref().map(|s| s.as_str().to_owned()))
        .collect();
    skus.sort();
    skus
}

fn stock_row(store: &str, item: &str, available: i64) -> String {
    format!("{store},A-01,{item},BASE,,Item,{available},0,{available},0,4.10,19.99,9.50,USD,11/05/2026 03:15:00 PM\n")
}

#[tokio::test]
async fn import_prints_its_log_imports_once_and_refuses_a_file_without_item_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = shopsync(dir.path(), &["sync", "--direction", "down", "--full"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let skus = skus(dir.path()).await;
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("stock.csv");
    std::fs::write(
        &file,
        format!(
            "{HEADER}\n{}{}",
            stock_row("MAIN", &skus[0], 321),
            stock_row("MAIN", "NOT-A-SKU", 5)
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();

    // A dry run stages and reports; nothing is applied or archived.
    let (code, out, err) = shopsync(
        dir.path(),
        &["import", "xorosoft", path, "--dry-run", "--json"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let preview: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(preview["status"], "completed", "{preview}");
    assert!(
        preview["status_reason"]
            .as_str()
            .unwrap()
            .starts_with("dry run"),
        "{preview}"
    );
    assert!(!dir.path().join("xorosoft/archive").exists());
    // Its row errors (the unmatched item) are kept where its log says.
    let report = preview["errors_report"].as_str().unwrap();
    let report = std::fs::read_to_string(dir.path().join(report.trim_start_matches("local/")))
        .expect("the dry run's report is kept under the data folder");
    assert!(report.contains("NOT-A-SKU"), "{report}");
    assert!(!dir.path().join("xorosoft/inbound/stock/stock.csv").exists());

    let (code, out, err) = shopsync(dir.path(), &["import", "xorosoft", path, "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.contains("the simulator's first location"), "{err}");
    assert!(err.contains("read: 2 rows"), "a progress line: {err}");
    let log: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(log["status"], "completed_with_errors", "{log}");
    assert_eq!(log["statistics"]["matched"], 1);
    assert_eq!(log["statistics"]["unmatched"], 1);
    assert_eq!(log["statistics"]["pushed"], 1, "{log}");
    assert!(log["operation_id"].is_string());
    let (products, _, _) = common::stored(dir.path()).await;
    let changed = products
        .iter()
        .flat_map(|p| p.content.variants.iter())
        .find(|v| v.sku.as_ref().map(|s| s.as_str()) == Some(skus[0].as_str()))
        .unwrap();
    assert!(
        changed.inventory.values().any(|q| q.0 == 321),
        "{changed:?}"
    );
    let archived = std::fs::read_dir(dir.path().join("xorosoft/archive"))
        .unwrap()
        .count();
    assert_eq!(archived, 1);
    assert!(std::fs::read_dir(dir.path().join("xorosoft/inbound/stock"))
        .unwrap()
        .next()
        .is_none());

    // The same file again: a duplicate, exit 0, nothing changed.
    let (code, out, err) = shopsync(dir.path(), &["import", "xorosoft", path]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("duplicate"), "{out}");

    // No item number column: refused whole, exit 3.
    let refused = files.path().join("no-items.csv");
    std::fs::write(&refused, "StoreCode,AvailableQty\nMAIN,4\n").unwrap();
    let (code, out, err) = shopsync(
        dir.path(),
        &["import", "xorosoft", refused.to_str().unwrap()],
    );
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        out.contains("refused") && out.contains("ItemNumber"),
        "{out}"
    );
    // Refused, it is settled: archived, and gone from the folder of files waiting.
    assert!(!dir
        .path()
        .join("xorosoft/inbound/stock/no-items.csv")
        .exists());
    let archived: Vec<String> = std::fs::read_dir(dir.path().join("xorosoft/archive"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        archived.iter().any(|name| name.ends_with("-no-items.csv")),
        "{archived:?}"
    );
}

#[tokio::test]
async fn a_file_dropped_into_the_inbound_folder_is_imported_and_listed() {
    // Half the file's rows are errors: taken with a rail that allows it.
    let server = common::start_with(
        4,
        &[
            ("SHOPSYNC_SYNC_INTERVAL_SECS", "0"),
            ("SHOPSYNC_RAIL_MAX_ROW_ERROR_PCT", "60"),
        ],
    );
    // The first full down-sync fills the catalog.
    let deadline = Instant::now() + Duration::from_secs(60);
    let skus = loop {
        let skus = {
            let (status, body) = common::get(&server, "/api/v1/operations", Some("t0ken")).await;
            assert_eq!(status, 200, "{body}");
            let done = body["operations"]
                .as_array()
                .is_some_and(|ops| ops.iter().any(|o| o["status"] == "completed"));
            if done {
                skus(server.dir.path()).await
            } else {
                Vec::new()
            }
        };
        if !skus.is_empty() {
            break skus;
        }
        assert!(Instant::now() < deadline, "the first sync did not finish");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let inbound = server.dir.path().join("xorosoft/inbound/stock");
    let partial = inbound.join("monday.csv.partial");
    std::fs::write(
        &partial,
        format!("{HEADER}\n{}TEE,1\n", stock_row("MAIN", &skus[1], 42)),
    )
    .unwrap();
    std::fs::rename(&partial, inbound.join("monday.csv")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let listed = loop {
        let (status, body) = common::get(&server, "/api/v1/xorosoft/imports", Some("t0ken")).await;
        assert_eq!(status, 200, "{body}");
        if let Some(done) = body["imports"].as_array().and_then(|list| {
            list.iter()
                .find(|i| i["status"] == "completed_with_errors" || i["status"] == "completed")
                .cloned()
        }) {
            break done;
        }
        assert!(Instant::now() < deadline, "not imported: {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(listed["status"], "completed_with_errors", "{listed}");
    let id = listed["id"].as_str().unwrap();
    let (status, detail) = common::get(
        &server,
        &format!("/api/v1/xorosoft/imports/{id}"),
        Some("t0ken"),
    )
    .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["operation_id"], listed["operation_id"]);
    let errors = detail["row_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{detail}");
    assert_eq!(detail["row_errors_total"], 1, "{detail}");
    assert_eq!(errors[0]["line"], 3);
    let (status, _) = common::get(&server, &format!("/api/v1/xorosoft/imports/{id}"), None).await;
    assert_eq!(status, 401);
    let (status, body) = common::get(
        &server,
        "/api/v1/xorosoft/imports/not-a-uuid",
        Some("t0ken"),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_id")));
    assert!(server
        .dir
        .path()
        .join("xorosoft/archive")
        .read_dir()
        .unwrap()
        .next()
        .is_some());
}

#[tokio::test]
async fn an_import_rolled_back_and_killed_mid_way_is_resumed_and_restores_each_product_once() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = shopsync(dir.path(), &["sync", "--direction", "down", "--full"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (products, _, _) = common::stored(dir.path()).await;
    let sku = |p: &shopsync_domain::Product| {
        p.content.variants[0]
            .sku
            .as_ref()
            .unwrap()
            .as_str()
            .to_owned()
    };
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("stock.csv");
    std::fs::write(
        &file,
        format!(
            "{HEADER}\n{}{}",
            stock_row("MAIN", &sku(&products[0]), 321),
            stock_row("MAIN", &sku(&products[1]), 654)
        ),
    )
    .unwrap();
    let (code, out, err) = shopsync(dir.path(), &["import", "xorosoft", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (_, _, operations) = common::stored(dir.path()).await;
    let import = operations
        .iter()
        .find(|op| op.xorosoft_log_id.is_some())
        .expect("the import's operation")
        .operation_uuid
        .to_string();

    // Killed after it pushed its first product back.
    let crashed = Command::new(env!("CARGO_BIN_EXE_shopsync"))
        .args([
            "operation",
            "rollback",
            &import,
            "--by",
            "ada",
            "--sim-products",
            "4",
        ])
        .arg("--data")
        .arg(dir.path())
        .env_remove("SHOPIFY_ACCESS_TOKEN")
        .env("SHOPSYNC_CRASH_AT", "rollback-pushed:1")
        .output()
        .unwrap();
    assert!(!crashed.status.success(), "the crash hook stopped it");
    let store = common::open_store(dir.path());
    let rollbacks: Vec<shopsync_domain::SyncRollback> = common::all(&store).await;
    assert_eq!(rollbacks.len(), 1);
    assert_eq!(
        rollbacks[0].status,
        shopsync_domain::RollbackStatus::InProgress
    );
    let own = rollbacks[0].operation_id.unwrap();
    let mut running = shopsync_engine::operation::load_operation(&store, own)
        .await
        .unwrap();
    // Its worker is gone: the lease runs out (as the worker's clock would have it).
    running.lease_expires_at = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
    store
        .replace_if(&running, shopsync_store::item::Condition::ItemPresent)
        .await
        .unwrap();
    drop(store);

    let (code, out, err) = shopsync(
        dir.path(),
        &["operation", "resume", &own.to_string(), "--by", "ada"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let store = common::open_store(dir.path());
    let record: Vec<shopsync_domain::SyncRollback> = common::all(&store).await;
    assert_eq!(
        record[0].status,
        shopsync_domain::RollbackStatus::Completed,
        "{:?}",
        record[0]
    );
    assert_eq!(record[0].restored_total, 2);
    let versions: Vec<shopsync_domain::ProductVersion> = common::all(&store).await;
    for product in &products[..2] {
        let restores = versions
            .iter()
            .filter(|v| {
                v.product_id == product.id
                    && v.change_source == shopsync_domain::ChangeSource::Rollback
            })
            .count();
        assert_eq!(restores, 1, "restored once");
        let now: Vec<shopsync_domain::Product> = common::all(&store).await;
        let now = now.iter().find(|p| p.id == product.id).unwrap();
        assert_eq!(
            now.content.variants[0].inventory, product.content.variants[0].inventory,
            "stock as before the import"
        );
    }
}

#[tokio::test]
async fn an_imported_file_keeps_its_own_time_so_an_older_export_imported_later_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = shopsync(dir.path(), &["sync", "--direction", "down", "--full"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let skus = skus(dir.path()).await;
    let files = tempfile::tempdir().unwrap();
    let newer = files.path().join("stock-1000.csv");
    std::fs::write(
        &newer,
        format!("{HEADER}\n{}", stock_row("MAIN", &skus[0], 40)),
    )
    .unwrap();
    let older = files.path().join("stock-0900.csv");
    std::fs::write(
        &older,
        format!("{HEADER}\n{}", stock_row("MAIN", &skus[0], 12)),
    )
    .unwrap();
    // The 09:00 export was written an hour before the 10:00 one, and is imported after it.
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&older)
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();
    let (code, out, err) = shopsync(
        dir.path(),
        &["import", "xorosoft", newer.to_str().unwrap(), "--json"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let first: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(first["status"], "completed", "{first}");
    let (code, out, err) = shopsync(
        dir.path(),
        &["import", "xorosoft", older.to_str().unwrap(), "--json"],
    );
    assert_eq!(
        code,
        Some(0),
        "held for approval is not a failure: {out}{err}"
    );
    let second: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(second["status"], "awaiting_approval", "{second}");
    let reason = second["status_reason"].as_str().unwrap();
    assert!(reason.contains("hold stock from a newer file"), "{reason}");
    assert!(reason.contains("stock-1000.csv"), "{reason}");
    let (products, _, _) = common::stored(dir.path()).await;
    let level = products
        .iter()
        .flat_map(|p| p.content.variants.iter())
        .find(|v| v.sku.as_ref().is_some_and(|s| s.as_str() == skus[0]))
        .and_then(|v| v.inventory.values().next().copied());
    assert_eq!(level.map(|q| q.0), Some(40), "the newer stock stands");
}

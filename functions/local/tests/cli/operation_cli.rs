//! `shopsync sync` and `shopsync operation approve|reject` from the command line.

use crate::common;
use common::run_in as shopsync;
use std::process::Command;

#[test]
fn sync_reports_its_operation_and_approval_refuses_what_is_not_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = shopsync(
        dir.path(),
        &[
            "sync",
            "--direction",
            "down",
            "--full",
            "--sim-products",
            "4",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("completed: processed 4, created 4"), "{out}");
    assert!(
        err.lines().any(|l| l == "planned: 4 products"),
        "a progress line: {err}"
    );
    assert!(out.contains("bottleneck:"), "{out}");
    let id = out
        .split_whitespace()
        .skip_while(|w| *w != "operation")
        .nth(1)
        .unwrap()
        .to_owned();

    // An incremental run after it: the (re-seeded, identical) catalog is read and nothing changes.
    let (ok, out, err) = shopsync(
        dir.path(),
        &[
            "sync",
            "--direction",
            "down",
            "--incremental",
            "--sim-products",
            "4",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("created 0, updated 0, unchanged 4"), "{out}");

    let (ok, _, err) = shopsync(dir.path(), &["operation", "approve", &id]);
    assert!(!ok);
    assert!(err.contains("not awaiting approval"), "{err}");
    let (ok, _, err) = shopsync(
        dir.path(),
        &["operation", "cancel", &id, "--reason", "too late"],
    );
    assert!(!ok);
    assert!(
        err.contains("is completed and cannot be cancelled"),
        "{err}"
    );
    let (ok, _, err) = shopsync(dir.path(), &["operation", "resume", &id]);
    assert!(!ok);
    assert!(
        err.contains("is completed; only a failed or paused operation"),
        "{err}"
    );
    let (ok, _, err) = shopsync(dir.path(), &["operation", "approve", &id, "--rows", "nope"]);
    assert!(!ok);
    assert!(err.contains("`nope` is not a row id"), "{err}");
    let (ok, _, err) = shopsync(
        dir.path(),
        &["operation", "reject", "not-an-id", "--reason", "x"],
    );
    assert!(!ok);
    assert!(err.contains("is not an operation id"), "{err}");
    let (ok, out, err) = shopsync(
        dir.path(),
        &[
            "sync",
            "--direction",
            "bidirectional",
            "--sim-products",
            "4",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("completed: processed 4"), "{out}");
    // Nothing waits to be pushed after a bidirectional sync: the preview says so.
    let (ok, out, err) = shopsync(dir.path(), &["sync", "--direction", "up", "--dry-run"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("dry run: 0 product(s) would be pushed"),
        "{out}"
    );
}

#[test]
fn a_dry_run_stages_the_changes_and_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = shopsync(
        dir.path(),
        &[
            "sync",
            "--direction",
            "down",
            "--dry-run",
            "--sim-products",
            "3",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("dry run: 3 change(s) staged, nothing applied (3 new, 0 updated, 0 to delete); would apply (no guard rail trips)"),
        "{out}"
    );
    // Nothing was applied: a real run afterwards creates all three.
    let (ok, out, err) = shopsync(
        dir.path(),
        &["sync", "--direction", "down", "--sim-products", "3"],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("completed: processed 3, created 3"), "{out}");
}

/// A `shopsync sync` killed mid-way (the crash hook, after its second batch was written)
/// leaves its operation in progress under a lease: `operation resume` refuses it while the
/// lease runs (its worker may still be at it), and takes it over once the lease has run out,
/// finishing it with every product once.
#[test]
fn a_sync_killed_mid_way_is_resumed_once_its_lease_has_run_out() {
    const PRODUCTS: &str = "2500";
    let dir = tempfile::tempdir().unwrap();
    let crashed = Command::new(env!("CARGO_BIN_EXE_shopsync"))
        .args([
            "sync",
            "--direction",
            "down",
            "--full",
            "--sim-products",
            PRODUCTS,
        ])
        .arg("--data")
        .arg(dir.path())
        .env_remove("SHOPIFY_ACCESS_TOKEN")
        .env("SHOPSYNC_CRASH_AT", "batch-written:2")
        .output()
        .unwrap();
    assert!(!crashed.status.success(), "the crash hook stopped it");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(async { crate::common::open_store(dir.path()) });
    let (_, _, operations) = runtime.block_on(crate::common::stored(dir.path()));
    assert_eq!(operations.len(), 1);
    let operation = operations[0].clone();
    assert_eq!(
        operation.status,
        shopsync_domain::OperationStatus::InProgress
    );
    let id = operation.operation_uuid.to_string();

    let (ok, out, err) = shopsync(
        dir.path(),
        &["operation", "resume", &id, "--sim-products", PRODUCTS],
    );
    assert!(!ok, "{out}");
    assert!(err.contains("its worker holds it until"), "{err}");

    // Time passes: the lease runs out (written as the worker's clock would have it).
    let mut expired = operation.clone();
    expired.lease_expires_at = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
    runtime
        .block_on(store.replace_if(&expired, shopsync_store::item::Condition::ItemPresent))
        .unwrap();
    drop(store);
    let (ok, out, err) = shopsync(
        dir.path(),
        &["operation", "resume", &id, "--sim-products", PRODUCTS],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("operation {id} completed")), "{out}");
    assert!(out.contains(&format!("created {PRODUCTS}")), "{out}");

    let (products, versions, _) = runtime.block_on(crate::common::stored(dir.path()));
    assert_eq!(products.len(), 2500, "every product");
    assert_eq!(versions, 2500, "once");
}

#[test]
fn a_bad_bulk_push_minimum_stops_a_sync_with_the_setting_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shopsync"))
        .args(["sync", "--direction", "up", "--sim-products", "2", "--data"])
        .arg(dir.path())
        .env("SHOPSYNC_BULK_PUSH_MIN", "lots")
        .env_remove("SHOPIFY_ACCESS_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "a usage error: {err}");
    assert!(
        err.contains("SHOPSYNC_BULK_PUSH_MIN: `lots` is not a number of products"),
        "{err}"
    );
}

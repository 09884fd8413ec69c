//! `shopsync bench` from the command line: where its store goes and what it reports.

use std::process::Command;

fn shopsync(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shopsync"))
        .args(args)
        .env_remove("SHOPIFY_ACCESS_TOKEN")
        .env_remove("SHOPSYNC_EMBEDDED_SYNC")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn entries(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn benches_put_their_store_inside_data_and_remove_it_afterwards() {
    let parent = tempfile::tempdir().unwrap();
    let shown = parent.path().display().to_string();

    let (ok, out, err) = shopsync(&[
        "bench",
        "webhook-path",
        "--count",
        "40",
        "--products",
        "5",
        "--data",
        &shown,
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("durable flush) in "), "{out}");
    assert!(out.contains(&format!(" in {shown}/")), "{out}");
    assert!(out.contains("40 deliveries"), "{out}");
    assert!(out.contains("staged 40;"), "{out}");
    assert_eq!(entries(parent.path()), 0, "the store is removed afterwards");

    let (ok, out, err) = shopsync(&[
        "bench",
        "down-sync",
        "--products",
        "6",
        "--variants",
        "2",
        "--data",
        &shown,
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("store in {shown}/")), "{out}");
    assert!(out.contains("(created 6, updated 0, unchanged 0)"), "{out}");
    assert!(out.contains("(created 0, updated 0, unchanged 6)"), "{out}");
    assert_eq!(entries(parent.path()), 0, "the store is removed afterwards");
}

#[test]
fn a_data_dir_that_cannot_hold_a_store_is_a_clear_error() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("not-there");
    let shown = missing.display().to_string();
    for bench in ["webhook-path", "down-sync"] {
        let (ok, out, err) = shopsync(&["bench", bench, "--data", &shown]);
        assert!(!ok, "{bench}: {out}");
        assert!(
            err.contains(&format!(
                "--data {shown}: cannot make the benchmark's store directory there"
            )),
            "{bench}: {err}"
        );
        assert!(!missing.exists(), "{bench} made the missing directory");
    }
}

/// The DynamoDB down-sync bench on moto: it reports requests per product for each kind of
/// sync and a webhook, with numbers that follow from what it did; an endpoint without
/// `--store dynamodb` is refused.
#[test]
#[ignore = "needs moto's server: run tests/run.sh"]
fn the_dynamodb_bench_reports_requests_per_product() {
    let endpoint = std::env::var("SHOPSYNC_TEST_DYNAMODB_ENDPOINT")
        .expect("SHOPSYNC_TEST_DYNAMODB_ENDPOINT (tests/run.sh starts moto's server)");
    let (ok, out, err) = shopsync(&[
        "bench",
        "down-sync",
        "--store",
        "dynamodb",
        "--endpoint",
        &endpoint,
        "--products",
        "120",
        "--variants",
        "1",
    ]);
    assert!(ok, "{out}{err}");
    let rate = |label: &str| -> f64 {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` line in {out}"));
        let (_, tail) = line.split_once(" = ").expect("a rate");
        tail.split_whitespace().next().unwrap().parse().unwrap()
    };
    let first = rate("full, first");
    let second = rate("full, second");
    assert!(
        first > 0.0 && first < 0.5,
        "batched: {first} requests/product"
    );
    assert!(second > 0.0 && second <= first, "{second} vs {first}");
    assert!(rate("incremental") > 0.0);
    assert!(out.contains("webhook deliveries (1 staged)"), "{out}");
    assert!(out.contains("a 100,000-product full down-sync"), "{out}");

    let (ok, _, err) = shopsync(&["bench", "down-sync", "--endpoint", &endpoint]);
    assert!(!ok);
    assert!(err.contains("--store dynamodb"), "{err}");
}

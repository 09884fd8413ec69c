//! A Xorosoft file put into S3 reaches the import function through the bucket's
//! notification (S3 -> SQS -> Lambda, as moto delivers it) and ends in DynamoDB and Shopify.

use crate::aws::Deployment;
use crate::journeys::{drain, everything, simulator, SHOP};
use shopsync_domain::{Product, XorosoftProduct, XorosoftSyncLog, XorosoftSyncStatus};
use shopsync_engine::blob::Blobs;
use shopsync_engine::jobs::{Job, JobMessage};
use shopsync_runtime::WorkerHost;
use std::sync::Arc;
use std::time::Duration;

const HEADER: &str = "StoreCode,LocationCode,ItemNumber,BasePartNumber,ItemUPC,ItemDescription,OnHandQty,AllocatedQty,AvailableQty,QtyOnPO,UnitCost,StandardUnitPrice,WholesalePrice,CurrencyCode,LastModified";

/// Plays the import queue's event source mapping until the queue is empty; returns the
/// invocations.
async fn drain_imports(deployment: &Deployment, host: &WorkerHost, url: &str) -> usize {
    let mut invocations = 0;
    let mut idle = 0;
    while idle < 2 {
        let Some((event, handles)) = deployment.receive(url, 5).await else {
            idle += 1;
            continue;
        };
        idle = 0;
        invocations += 1;
        assert!(invocations < 50, "the import queue never drains");
        let worker = host.worker().await.expect("the token from Secrets Manager");
        let response = xorosoft_import::handle(
            &worker,
            host.bucket(),
            &event,
            deployment.max_receives,
            None,
        )
        .await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        deployment.settle_on(url, &handles, &response).await;
    }
    invocations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto's server: run tests/run.sh"]
async fn a_file_put_into_s3_is_imported_through_the_bucket_notification_once() {
    let sim = simulator(3).await;
    let mut deployment = Deployment::provision(SHOP, &sim.url, 5).await;
    let (bucket, import_url) = deployment.provision_imports().await;
    let worker = WorkerHost::from_env(&deployment.env)
        .await
        .expect("worker host");
    // The catalog comes down first.
    let jobs = shopsync_runtime::queue(&deployment.env)
        .await
        .expect("jobs queue");
    jobs.send(vec![JobMessage::new(Job::FullDown, chrono::Utc::now())])
        .await
        .expect("enqueue");
    drain(&deployment, &worker, Duration::from_secs(60)).await;
    let mut products: Vec<Product> = everything(&deployment.store).await;
    products.sort_by_key(|p| p.shopify_id.map(|i| i.get()));
    let target = &products[0];
    let sku = target.content.variants[0]
        .sku
        .as_ref()
        .expect("a SKU")
        .as_str()
        .to_owned();

    let first = sim.with_shop(|s| s.locations()[0].id);
    deployment.env.0.insert(
        "SHOPSYNC_XOROSOFT_LOCATIONS".into(),
        format!("MAIN=gid://shopify/Location/{first}"),
    );
    let blobs = shopsync_blob_s3::S3Blobs::connect(
        &bucket,
        deployment
            .env
            .0
            .get("SHOPSYNC_S3_ENDPOINT")
            .map(String::as_str),
    )
    .await;
    let importer = WorkerHost::from_env(&deployment.env)
        .await
        .expect("import host")
        .running_imports(&deployment.env, Arc::new(blobs.clone()))
        .await
        .expect("the import settings");
    // A key with a space and a comma: S3's notification sends it URL-encoded.
    let key = "xorosoft/inbound/stock/Day 1, main.csv";
    let file = format!(
        "{HEADER}\nMAIN,A-01,{sku},BASE,,Tee,40,2,38,0,4.10,19.99,9.50,USD,11/05/2026 03:15:00 PM\n"
    );
    blobs
        .put(key, file.clone().into_bytes(), "text/csv")
        .await
        .expect("PutObject");
    assert!(drain_imports(&deployment, &importer, &import_url).await >= 1);

    let logs: Vec<XorosoftSyncLog> = everything(&deployment.store).await;
    assert_eq!(logs.len(), 1, "{logs:#?}");
    let log = &logs[0];
    assert_eq!(log.status, XorosoftSyncStatus::Completed, "{log:#?}");
    assert_eq!(log.statistics.pushed, 1);
    assert_eq!(log.object.as_ref().map(|o| o.key.as_str()), Some(key));
    assert_eq!(log.started_by.as_str(), "system:xorosoft-import");
    let records: Vec<XorosoftProduct> = everything(&deployment.store).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].stock_available.0, 38);
    let now = deployment
        .store
        .product(target.id)
        .await
        .expect("read")
        .expect("product");
    let (location, level) = now.content.variants[0]
        .inventory
        .iter()
        .find(|(_, q)| q.0 == 38)
        .map(|(l, q)| (*l, q.0))
        .expect("the imported stock");
    let item = now.content.variants[0]
        .inventory_item_id
        .expect("item")
        .get();
    assert_eq!(
        sim.with_shop(|s| s.level(item, location.get())),
        Some(level)
    );
    // Archived in the bucket; gone from the inbound folder.
    assert!(blobs.head(key).await.expect("head").is_none());
    let archive = log.archive_file.as_deref().expect("archived");
    let archived_key = archive
        .strip_prefix(&format!("{bucket}/"))
        .expect("in the bucket");
    assert!(blobs.head(archived_key).await.expect("head").is_some());

    // The same notification delivered again (SQS is at least once), then the same file
    // uploaded again (a new event): one more log, a duplicate, and nothing changed.
    let object = log.object.clone().expect("the object");
    let worker_now = importer.worker().await.expect("worker");
    for sequencer in ["0001", "0001"] {
        let event = serde_json::json!({"Records": [{
            "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": bucket}, "object": {"key": "xorosoft/inbound/stock/Day+1%2C+main.csv", "eTag": object.etag, "sequencer": sequencer}}
        }]});
        // The file is where the event says (it was archived and removed the first time).
        blobs
            .put(key, file.clone().into_bytes(), "text/csv")
            .await
            .expect("PutObject");
        xorosoft_import::handle_direct(&worker_now, importer.bucket(), &event, None)
            .await
            .expect("a direct event");
    }
    let logs: Vec<XorosoftSyncLog> = everything(&deployment.store).await;
    assert_eq!(
        logs.len(),
        2,
        "one more event, however often delivered: {logs:#?}"
    );
    let repeat = logs
        .iter()
        .find(|l| l.id != log.id)
        .expect("the repeat's log");
    assert_eq!(repeat.status, XorosoftSyncStatus::Duplicate);
    assert_eq!(repeat.duplicate_of, Some(log.id));
    let records: Vec<XorosoftProduct> = everything(&deployment.store).await;
    assert_eq!(records.len(), 1, "nothing changed");
}

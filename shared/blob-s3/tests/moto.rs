//! The S3 adapter against moto's server (`tests/run.sh` starts it; `#[ignore]`d in a plain
//! `cargo test`).

use shopsync_blob_s3::S3Blobs;
use shopsync_engine::blob::{BlobError, Blobs};
use std::io::Read;

fn endpoint() -> String {
    std::env::var("SHOPSYNC_TEST_AWS_ENDPOINT")
        .expect("SHOPSYNC_TEST_AWS_ENDPOINT must point at moto's server (tests/run.sh starts one)")
}

#[tokio::test]
#[ignore = "needs moto's server: run tests/run.sh"]
async fn objects_are_kept_streamed_from_an_offset_copied_and_deleted() {
    let endpoint = endpoint();
    let bucket = format!("blobs-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let blobs = S3Blobs::connect(&bucket, Some(&endpoint)).await;
    let config = aws_config_for(&endpoint).await;
    aws_sdk_s3::Client::from_conf(config)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    let key = "xorosoft/inbound/stock/Day 1, é.csv";
    assert!(blobs.head(key).await.unwrap().is_none());
    blobs
        .put(key, b"header\nrow one\nrow two\n".to_vec(), "text/csv")
        .await
        .unwrap();
    let head = blobs.head(key).await.unwrap().expect("there");
    assert_eq!(head.size, 23);
    assert!(
        !head.etag.is_empty() && !head.etag.contains('"'),
        "{head:?}"
    );
    let key_for_read = key.to_owned();
    let reader = blobs.open(&key_for_read, 7).await.unwrap();
    let rest = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        let mut reader = reader;
        reader.read_to_string(&mut rest).map(|_| rest)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(rest, "row one\nrow two\n");
    blobs.copy(key, "xorosoft/archive/day1.csv").await.unwrap();
    assert_eq!(
        blobs
            .head("xorosoft/archive/day1.csv")
            .await
            .unwrap()
            .unwrap()
            .etag,
        head.etag
    );
    blobs.delete(key).await.unwrap();
    assert!(blobs.head(key).await.unwrap().is_none());
    assert!(matches!(
        blobs.open(key, 0).await,
        Err(BlobError::NotFound(_))
    ));
}

async fn aws_config_for(endpoint: &str) -> aws_sdk_s3::Config {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .load()
        .await;
    aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(true)
        .build()
}

#[tokio::test]
#[ignore = "needs moto's server: run tests/run.sh"]
async fn an_object_written_in_pieces_is_whole_once_finished_small_or_in_parts() {
    let endpoint = endpoint();
    let bucket = format!(
        "pieces-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let blobs = S3Blobs::connect(&bucket, Some(&endpoint)).await;
    aws_sdk_s3::Client::from_conf(aws_config_for(&endpoint).await)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    // Small: one PutObject at the end, nothing before.
    let small = "xorosoft/reports/small.errors.csv";
    let mut writer = blobs.create(small, "text/csv").await.unwrap();
    writer.write(b"line,column\n".to_vec()).await.unwrap();
    writer.write(b"2,ItemUPC\n".to_vec()).await.unwrap();
    assert!(blobs.head(small).await.unwrap().is_none());
    writer.finish().await.unwrap();
    assert_eq!(blobs.head(small).await.unwrap().expect("there").size, 22);
    // Past one part: a multipart upload, whole once finished.
    let large = "xorosoft/reports/large.errors.csv";
    let line = "123456,ItemNumber,SKU-0000001,matches no local variant\n";
    let lines = 9 * 1024 * 1024 / line.len() + 1;
    let mut writer = blobs.create(large, "text/csv").await.unwrap();
    for _ in 0..lines / 1000 + 1 {
        writer.write(line.repeat(1000).into_bytes()).await.unwrap();
    }
    assert!(
        blobs.head(large).await.unwrap().is_none(),
        "not before it is finished"
    );
    writer.finish().await.unwrap();
    let written = (lines / 1000 + 1) * 1000 * line.len();
    assert!(written > 8 * 1024 * 1024, "more than one part");
    assert_eq!(
        blobs.head(large).await.unwrap().expect("there").size,
        written as u64
    );
    let reader = blobs
        .open(large, (written - line.len()) as u64)
        .await
        .unwrap();
    let last = tokio::task::spawn_blocking(move || {
        let mut last = String::new();
        let mut reader = reader;
        reader.read_to_string(&mut last).map(|_| last)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(last, line, "the parts are in order, the last line last");
}

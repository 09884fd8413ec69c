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

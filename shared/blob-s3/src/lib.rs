//! The blob port on S3 (`shopsync_engine::blob::Blobs`): objects by key in one bucket, read
//! as a stream from any offset (a ranged GetObject), so a file is never held whole in memory
//! and an import that resumes reads on from its checkpoint.

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use shopsync_engine::blob::{BlobError, BlobInfo, BlobWriter, Blobs};
use std::io::Read;

/// One bucket.
#[derive(Debug, Clone)]
pub struct S3Blobs {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Blobs {
    /// The bucket `bucket` through `client`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// A client from the environment's credentials and region (at `endpoint` when given: a
    /// local server, addressed by path).
    pub async fn connect(bucket: impl Into<String>, endpoint: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let config = loader.load().await;
        let s3 = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(endpoint.is_some())
            .build();
        Self::new(aws_sdk_s3::Client::from_conf(s3), bucket)
    }
}

/// What an S3 error means for the caller: a missing object or bucket is final; anything
/// else may pass.
fn failed<E: ProvideErrorMetadata + std::fmt::Debug>(
    key: &str,
    error: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> BlobError {
    let code = error
        .as_service_error()
        .and_then(|e| e.code())
        .unwrap_or("");
    let status = error.raw_response().map(|r| r.status().as_u16());
    if matches!(code, "NoSuchKey" | "NotFound" | "NoSuchBucket") || status == Some(404) {
        return BlobError::NotFound(key.to_owned());
    }
    BlobError::Unavailable(format!(
        "{key}: {}",
        error
            .as_service_error()
            .and_then(|e| e.message())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{error:?}"))
    ))
}

#[async_trait]
impl Blobs for S3Blobs {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn head(&self, key: &str) -> Result<Option<BlobInfo>, BlobError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(BlobInfo {
                size: head
                    .content_length()
                    .and_then(|l| u64::try_from(l).ok())
                    .unwrap_or(0),
                etag: head
                    .e_tag()
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_owned(),
                version_id: head.version_id().map(str::to_owned),
                last_modified: head
                    .last_modified()
                    .and_then(|at| std::time::SystemTime::try_from(*at).ok()),
            })),
            Err(e) => match failed(key, e) {
                BlobError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn open(&self, key: &str, offset: u64) -> Result<Box<dyn Read + Send>, BlobError> {
        let mut request = self.client.get_object().bucket(&self.bucket).key(key);
        if offset > 0 {
            request = request.range(format!("bytes={offset}-"));
        }
        let object = match request.send().await {
            Ok(object) => object,
            // Nothing from `offset` on (a file read to its end).
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(416) => {
                return Ok(Box::new(std::io::empty()))
            }
            Err(e) => return Err(failed(key, e)),
        };
        let reader = object.body.into_async_read();
        // Read off the async threads (the import parses on a blocking thread).
        Ok(Box::new(tokio_util::io::SyncIoBridge::new(reader)))
    }

    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), BlobError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed(key, e))
    }

    async fn create(
        &self,
        key: &str,
        content_type: &str,
    ) -> Result<Box<dyn BlobWriter>, BlobError> {
        Ok(Box::new(S3Writer {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            content_type: content_type.to_owned(),
            buffer: Vec::new(),
            upload: None,
        }))
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), BlobError> {
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(format!("{}/{}", self.bucket, encode_key(from)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed(from, e))
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed(key, e))
    }
}

/// How much an S3 writer holds before it sends a part (S3 takes parts of 5 MiB or more, but
/// the last).
const PART_BYTES: usize = 8 * 1024 * 1024;

/// An S3 object being written: held whole while it is small (one PutObject at the end), and
/// sent as a multipart upload once it outgrows one part, a part at a time. An upload left
/// unfinished is aborted on failure here, and by the bucket's lifecycle rule otherwise.
struct S3Writer {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    content_type: String,
    buffer: Vec<u8>,
    /// The multipart upload's id and the parts sent so far.
    upload: Option<(String, Vec<aws_sdk_s3::types::CompletedPart>)>,
}

impl S3Writer {
    /// Sends what the buffer holds as the next part (the upload begun if it was not).
    async fn send_part(&mut self) -> Result<(), BlobError> {
        let key = self.key.clone();
        if self.upload.is_none() {
            let begun = self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .content_type(&self.content_type)
                .send()
                .await
                .map_err(|e| failed(&key, e))?;
            let id = begun
                .upload_id()
                .ok_or_else(|| BlobError::Unavailable(format!("{key}: S3 gave no upload id")))?;
            self.upload = Some((id.to_owned(), Vec::new()));
        }
        let Some((id, parts)) = self.upload.as_mut() else {
            return Ok(());
        };
        let number = i32::try_from(parts.len() + 1)
            .map_err(|_| BlobError::Unavailable(format!("{key}: too many parts")))?;
        let body = std::mem::take(&mut self.buffer);
        let sent = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&key)
            .upload_id(id.as_str())
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await;
        match sent {
            Ok(part) => {
                parts.push(
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(str::to_owned))
                        .build(),
                );
                Ok(())
            }
            Err(e) => {
                let error = failed(&key, e);
                self.abort().await;
                Err(error)
            }
        }
    }

    /// Gives up the multipart upload (best effort: the lifecycle rule clears what is left).
    async fn abort(&mut self) {
        if let Some((id, _)) = self.upload.take() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(id)
                .send()
                .await;
        }
    }
}

#[async_trait]
impl BlobWriter for S3Writer {
    async fn write(&mut self, piece: Vec<u8>) -> Result<(), BlobError> {
        self.buffer.extend_from_slice(&piece);
        if self.buffer.len() >= PART_BYTES {
            self.send_part().await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<(), BlobError> {
        if self.upload.is_none() {
            let body = std::mem::take(&mut self.buffer);
            return self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .content_type(&self.content_type)
                .body(ByteStream::from(body))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| failed(&self.key, e));
        }
        if !self.buffer.is_empty() {
            self.send_part().await?;
        }
        let Some((id, parts)) = self.upload.take() else {
            return Ok(());
        };
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(id.as_str())
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match completed {
            Ok(_) => Ok(()),
            Err(e) => {
                let error = failed(&self.key, e);
                self.upload = Some((id, Vec::new()));
                self.abort().await;
                Err(error)
            }
        }
    }
}

/// A key as CopyObject's source names it: URL-encoded, slashes kept.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// An S3 event's object key as it was written: event keys are URL-encoded with `+` for a
/// space. A malformed escape is kept as it is.
pub fn decode_event_key(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 3 <= bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        index += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_are_decoded_with_plus_as_space() {
        assert_eq!(
            decode_event_key("xorosoft/inbound/stock/Day+1%2C+Main%C3%A9.csv"),
            "xorosoft/inbound/stock/Day 1, Mainé.csv"
        );
        assert_eq!(decode_event_key("a%2"), "a%2", "a cut escape is kept");
        assert_eq!(decode_event_key("100%25"), "100%");
        assert_eq!(encode_key("in/Day 1,é.csv"), "in/Day%201%2C%C3%A9.csv");
    }
}

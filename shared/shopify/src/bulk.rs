//! Bulk export: start `bulkOperationRunQuery`, poll it, then stream the JSONL result and stitch
//! child lines (`__parentId`) back onto their parents without holding the file in memory.
//!
//! Shopify writes a parent's line before its children's and keeps a product's subtree
//! together, so one product at a time is held; a child whose parent is not the product being
//! assembled is an error, never silently dropped.

use crate::client::AdminClient;
use crate::cost::MUTATION_COST;
use crate::documents as doc;
use crate::error::{ShopifyError, UserError};
use crate::model::{RemoteProduct, WireLevel, WireProduct, WireVariant};
use serde::Deserialize;
use serde_json::json;
use shopsync_domain::ids::{ShopifyProductId, ShopifyVariantId};
use std::time::Duration;

/// Why a JSONL line could not be stitched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StitchError {
    /// Not JSON, or not the shape of a product, variant or level line.
    #[error("line {line}: {reason}")]
    BadLine {
        /// 1-based line number.
        line: u64,
        /// What was wrong.
        reason: String,
    },
    /// A child line whose parent is not the product being assembled.
    #[error(
        "line {line}: parent {parent} is not the product being assembled (lines out of order)"
    )]
    OrphanChild {
        /// 1-based line number.
        line: u64,
        /// The `__parentId` it named.
        parent: String,
    },
}

/// Assembles products from JSONL lines, one product at a time.
#[derive(Debug, Default)]
pub struct Stitcher {
    current: Option<RemoteProduct>,
    line: u64,
    /// Lines read so far.
    pub lines: u64,
}

const VARIANT_GID: &str = "gid://shopify/ProductVariant/";
const LEVEL_GID: &str = "gid://shopify/InventoryLevel/";

/// The kinds of object an export line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineKind {
    Product,
    Variant,
    Level,
}

/// The kind of a line that starts with its `id` (as Shopify writes them), if it does.
fn kind_by_prefix(line: &[u8]) -> Option<LineKind> {
    let gid = line.strip_prefix(br#"{"id":""#)?;
    if gid.starts_with(VARIANT_GID.as_bytes()) {
        Some(LineKind::Variant)
    } else if gid.starts_with(LEVEL_GID.as_bytes()) {
        Some(LineKind::Level)
    } else if gid.starts_with(b"gid://shopify/Product/") {
        Some(LineKind::Product)
    } else {
        None
    }
}

#[derive(Deserialize)]
struct Parent {
    #[serde(rename = "__parentId")]
    parent: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

impl Stitcher {
    /// Feeds one line; returns the previous product when this line starts a new one.
    pub fn push_line(&mut self, line: &[u8]) -> Result<Option<RemoteProduct>, StitchError> {
        self.line += 1;
        let line_no = self.line;
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        self.lines += 1;
        let bad = |reason: String| StitchError::BadLine {
            line: line_no,
            reason,
        };
        // Checked once for the whole line, so the parser need not check each string again.
        let line = std::str::from_utf8(line).map_err(|e| bad(format!("not UTF-8: {e}")))?;
        // Shopify writes each object's `id` first: a line that starts with a known GID type is
        // read in one pass, straight into its shape (`__parentId` included). Any other line
        // is read twice: its id and parent first, then its shape.
        let kind = match kind_by_prefix(line.as_bytes()) {
            Some(kind) => kind,
            None => {
                let head: Parent = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
                match (
                    head.parent.is_some(),
                    head.id.as_deref().unwrap_or_default(),
                ) {
                    (false, _) => LineKind::Product,
                    (true, id) if id.starts_with(VARIANT_GID) => LineKind::Variant,
                    (true, id) if id.starts_with(LEVEL_GID) => LineKind::Level,
                    (true, id) => return Err(bad(format!("unexpected child object `{id}`"))),
                }
            }
        };
        match kind {
            LineKind::Product => {
                let product: WireProduct =
                    serde_json::from_str(line).map_err(|e| bad(format!("product: {e}")))?;
                Ok(self.current.replace(product.into_model()))
            }
            LineKind::Variant => {
                let mut variant: WireVariant =
                    serde_json::from_str(line).map_err(|e| bad(format!("variant: {e}")))?;
                let parent = variant
                    .parent
                    .take()
                    .ok_or_else(|| bad("variant: no __parentId".into()))?;
                let orphan = || StitchError::OrphanChild {
                    line: line_no,
                    parent: parent.clone(),
                };
                let product = self.current.as_mut().ok_or_else(orphan)?;
                if parent.parse::<ShopifyProductId>().ok() != Some(product.id) {
                    return Err(orphan());
                }
                product.variants.push(variant.into_model());
                Ok(None)
            }
            LineKind::Level => {
                let mut level: WireLevel =
                    serde_json::from_str(line).map_err(|e| bad(format!("level: {e}")))?;
                let parent = level
                    .parent
                    .take()
                    .ok_or_else(|| bad("level: no __parentId".into()))?;
                // A level follows its variant: the newest variant is looked at first.
                let variant = parent.parse::<ShopifyVariantId>().ok();
                let index = self.current.as_ref().and_then(|product| {
                    product.variants.iter().rposition(|v| Some(v.id) == variant)
                });
                let index = match index {
                    Some(index) => index,
                    _ => {
                        return Err(StitchError::OrphanChild {
                            line: line_no,
                            parent,
                        })
                    }
                };
                if let Some(variant) = self
                    .current
                    .as_mut()
                    .and_then(|product| product.variants.get_mut(index))
                {
                    variant.levels.push(level.into_model());
                }
                Ok(None)
            }
        }
    }

    /// The last product, once the input has ended.
    pub fn finish(&mut self) -> Option<RemoteProduct> {
        self.current.take()
    }
}

/// A bulk export's result, read product by product.
pub struct BulkProducts {
    response: Option<reqwest::Response>,
    buffer: Vec<u8>,
    /// Bytes of `buffer` already read.
    consumed: usize,
    stitcher: Stitcher,
    /// The bulk operation's GID.
    pub operation_id: String,
    /// Objects Shopify says the file holds.
    pub object_count: u64,
}

impl BulkProducts {
    /// The next complete product, or `None` at the end of the file.
    pub async fn next_product(&mut self) -> Result<Option<RemoteProduct>, ShopifyError> {
        let decode = |e: StitchError| ShopifyError::Decode {
            operation: "BulkResult",
            reason: e.to_string(),
        };
        loop {
            let unread = &self.buffer[self.consumed..];
            // memchr scans a word or a vector at a time (a byte-at-a-time search was 2% of a
            // 100k import's CPU).
            if let Some(newline) = memchr::memchr(b'\n', unread) {
                let done = self
                    .stitcher
                    .push_line(&unread[..newline])
                    .map_err(decode)?;
                self.consumed += newline + 1;
                if done.is_some() {
                    return Ok(done);
                }
                continue;
            }
            // Only the unfinished line is kept (moved once per chunk, not once per line).
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
            let Some(response) = self.response.as_mut() else {
                return Ok(self.stitcher.finish());
            };
            match response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) => {
                    self.response = None;
                    if !self.buffer.is_empty() {
                        let rest = std::mem::take(&mut self.buffer);
                        if let Some(done) = self.stitcher.push_line(&rest).map_err(decode)? {
                            return Ok(Some(done));
                        }
                    }
                }
                Err(e) => {
                    return Err(ShopifyError::Unavailable {
                        operation: "BulkResult",
                        attempts: 1,
                        reason: format!("download interrupted: {e}"),
                    })
                }
            }
        }
    }

    /// Lines read so far.
    pub fn lines_read(&self) -> u64 {
        self.stitcher.lines
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunData {
    bulk_operation_run_query: Option<RunPayload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunPayload {
    bulk_operation: Option<BulkOperationState>,
    user_errors: Vec<UserError>,
}

impl BulkOperationState {
    fn object_count(&self) -> u64 {
        self.object_count
            .as_ref()
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .unwrap_or(0)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BulkOperationState {
    id: String,
    status: String,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    object_count: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) url: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PollData {
    bulk_operation: Option<BulkOperationState>,
}

impl AdminClient {
    /// Exports every product (or those updated after `updated_after`, RFC 3339) with a bulk
    /// operation, waits for it, and opens its result for streaming.
    pub async fn bulk_export_products(
        &self,
        updated_after: Option<&str>,
        timeout: Duration,
    ) -> Result<BulkProducts, ShopifyError> {
        let id = self.start_bulk_products(updated_after).await?;
        let finished = self.await_bulk_operation(&id, timeout).await?;
        let object_count = finished.object_count();
        self.open_bulk_result(&id, finished.url.as_deref(), object_count)
            .await
    }

    /// Starts a bulk export of products; returns the bulk operation's GID.
    pub async fn start_bulk_products(
        &self,
        updated_after: Option<&str>,
    ) -> Result<String, ShopifyError> {
        let query = doc::bulk_products_query(updated_after);
        let data: RunData = self
            .execute(
                &doc::BULK_OPERATION_RUN_QUERY,
                json!({ "query": query }),
                MUTATION_COST,
            )
            .await?;
        let payload = data
            .bulk_operation_run_query
            .ok_or_else(|| ShopifyError::Decode {
                operation: doc::BULK_OPERATION_RUN_QUERY.name,
                reason: "payload missing".into(),
            })?;
        if !payload.user_errors.is_empty() {
            return Err(ShopifyError::UserErrors {
                operation: doc::BULK_OPERATION_RUN_QUERY.name,
                errors: payload.user_errors,
            });
        }
        payload
            .bulk_operation
            .map(|op| op.id)
            .ok_or_else(|| ShopifyError::Decode {
                operation: doc::BULK_OPERATION_RUN_QUERY.name,
                reason: "no bulk operation returned".into(),
            })
    }

    /// Waits for a bulk operation until `timeout`: `Some((url, objects))` once it completed
    /// (`url` is `None` when it matched nothing), `None` if it is still running.
    pub async fn bulk_result(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<(Option<String>, u64)>, ShopifyError> {
        match self.await_bulk_operation(id, timeout).await {
            Ok(done) => Ok(Some((done.url.clone(), done.object_count()))),
            Err(ShopifyError::TimedOut { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens a completed bulk operation's result file (`url` as Shopify gave it; `None` for
    /// an empty result) for streaming, product by product.
    pub async fn open_bulk_result(
        &self,
        id: &str,
        url: Option<&str>,
        object_count: u64,
    ) -> Result<BulkProducts, ShopifyError> {
        let response = match url {
            None => None,
            Some(url) => {
                let response = self
                    .download(url)
                    .await
                    .map_err(|e| ShopifyError::Unavailable {
                        operation: "BulkResult",
                        attempts: 1,
                        reason: format!("download failed: {e}"),
                    })?;
                if !response.status().is_success() {
                    return Err(ShopifyError::Http {
                        operation: "BulkResult",
                        status: response.status().as_u16(),
                        body: String::new(),
                    });
                }
                Some(response)
            }
        };
        Ok(BulkProducts {
            response,
            buffer: Vec::new(),
            consumed: 0,
            stitcher: Stitcher::default(),
            operation_id: id.to_owned(),
            object_count,
        })
    }

    pub(crate) async fn await_bulk_operation(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<BulkOperationState, ShopifyError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut wait = Duration::from_millis(100);
        loop {
            let data: PollData = self
                .execute(&doc::BULK_OPERATION, json!({ "id": id }), 1)
                .await?;
            let state = data.bulk_operation.ok_or_else(|| ShopifyError::Decode {
                operation: doc::BULK_OPERATION.name,
                reason: format!("bulk operation {id} not found"),
            })?;
            match state.status.as_str() {
                "COMPLETED" => return Ok(state),
                "CREATED" | "RUNNING" => {}
                other => {
                    return Err(ShopifyError::BulkFailed {
                        id: id.to_owned(),
                        status: other.to_owned(),
                        error_code: state.error_code,
                    })
                }
            }
            if tokio::time::Instant::now() + wait > deadline {
                return Err(ShopifyError::TimedOut {
                    what: format!("bulk operation {id}"),
                    seconds: timeout.as_secs(),
                });
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSONL: &str = r#"{"id":"gid://shopify/Product/1","title":"A","updatedAt":"2026-01-01T00:00:00Z"}
{"id":"gid://shopify/ProductVariant/11","sku":"A-1","__parentId":"gid://shopify/Product/1","inventoryItem":{"id":"gid://shopify/InventoryItem/111"}}
{"id":"gid://shopify/InventoryLevel/5?inventory_item_id=111","location":{"id":"gid://shopify/Location/5"},"quantities":[{"name":"available","quantity":7}],"__parentId":"gid://shopify/ProductVariant/11"}
{"id":"gid://shopify/ProductVariant/12","sku":"A-2","__parentId":"gid://shopify/Product/1"}
{"id":"gid://shopify/Product/2","title":"B","updatedAt":"2026-01-02T00:00:00Z"}
{"id":"gid://shopify/ProductVariant/21","sku":"B-1","__parentId":"gid://shopify/Product/2"}
"#;

    #[test]
    fn stitches_children_onto_their_parents() {
        let mut stitcher = Stitcher::default();
        let mut products = Vec::new();
        for line in JSONL.lines() {
            if let Some(p) = stitcher.push_line(line.as_bytes()).unwrap() {
                products.push(p);
            }
        }
        products.extend(stitcher.finish());
        assert_eq!(products.len(), 2);
        assert_eq!(products[0].variants.len(), 2);
        assert_eq!(products[0].variants[0].levels[0].available, Some(7));
        assert_eq!(products[0].variants[0].levels[0].location_id.get(), 5);
        assert_eq!(products[1].variants[0].sku.as_deref(), Some("B-1"));
    }

    fn stitch(jsonl: &str) -> Result<Vec<RemoteProduct>, StitchError> {
        let mut stitcher = Stitcher::default();
        let mut products = Vec::new();
        for line in jsonl.lines() {
            products.extend(stitcher.push_line(line.as_bytes())?);
        }
        products.extend(stitcher.finish());
        Ok(products)
    }

    #[test]
    fn lines_whose_id_is_not_first_are_stitched_the_same() {
        // The same export with `__parentId` and `id` elsewhere in each line (read in two
        // passes instead of one).
        let reordered = r#"{"title":"A","id":"gid://shopify/Product/1","updatedAt":"2026-01-01T00:00:00Z"}
{"__parentId":"gid://shopify/Product/1","sku":"A-1","id":"gid://shopify/ProductVariant/11","inventoryItem":{"id":"gid://shopify/InventoryItem/111"}}
 {"__parentId":"gid://shopify/ProductVariant/11","location":{"id":"gid://shopify/Location/5"},"quantities":[{"name":"available","quantity":7}],"id":"gid://shopify/InventoryLevel/5?inventory_item_id=111"}
{"sku":"A-2","__parentId":"gid://shopify/Product/1","id":"gid://shopify/ProductVariant/12"}
{"updatedAt":"2026-01-02T00:00:00Z","title":"B","id":"gid://shopify/Product/2"}
{"sku":"B-1","id":"gid://shopify/ProductVariant/21","__parentId":"gid://shopify/Product/2"}
"#;
        let one_pass = stitch(JSONL).unwrap();
        let two_pass = stitch(reordered).unwrap();
        assert_eq!(one_pass, two_pass);
        assert_eq!(two_pass[0].variants[0].levels[0].available, Some(7));
    }

    #[test]
    fn a_child_without_its_parent_or_of_an_unknown_kind_is_an_error() {
        let no_parent = "{\"id\":\"gid://shopify/Product/1\",\"title\":\"A\",\"updatedAt\":\"2026-01-01T00:00:00Z\"}\n{\"id\":\"gid://shopify/ProductVariant/11\",\"sku\":\"A-1\"}";
        assert!(matches!(
            stitch(no_parent),
            Err(StitchError::BadLine { line: 2, .. })
        ));
        let unknown_variant = r#"{"id":"gid://shopify/Product/1","title":"A","updatedAt":"2026-01-01T00:00:00Z"}
{"id":"gid://shopify/InventoryLevel/5","location":{"id":"gid://shopify/Location/5"},"__parentId":"gid://shopify/ProductVariant/99"}"#;
        assert!(matches!(
            stitch(unknown_variant),
            Err(StitchError::OrphanChild { line: 2, .. })
        ));
        let level_of_another_product = r#"{"id":"gid://shopify/Product/1","title":"A","updatedAt":"2026-01-01T00:00:00Z"}
{"id":"gid://shopify/ProductVariant/11","__parentId":"gid://shopify/Product/1"}
{"id":"gid://shopify/InventoryLevel/5","location":{"id":"gid://shopify/Location/5"},"__parentId":"gid://shopify/Product/11"}"#;
        assert!(matches!(
            stitch(level_of_another_product),
            Err(StitchError::OrphanChild { line: 3, .. })
        ));
        let media = r#"{"id":"gid://shopify/Product/1","title":"A","updatedAt":"2026-01-01T00:00:00Z"}
{"id":"gid://shopify/MediaImage/7","__parentId":"gid://shopify/Product/1"}"#;
        assert!(matches!(
            stitch(media),
            Err(StitchError::BadLine { line: 2, .. })
        ));
    }

    #[test]
    fn a_line_that_is_not_utf8_is_a_bad_line() {
        let mut stitcher = Stitcher::default();
        let line = b"{\"id\":\"gid://shopify/Product/1\",\"title\":\"\xff\",\"updatedAt\":\"2026-01-01T00:00:00Z\"}";
        assert!(matches!(
            stitcher.push_line(line),
            Err(StitchError::BadLine { line: 1, ref reason }) if reason.contains("UTF-8")
        ));
    }

    #[test]
    fn a_child_of_an_earlier_product_is_an_error_not_a_drop() {
        let mut stitcher = Stitcher::default();
        let mut lines = JSONL.lines();
        for line in lines.by_ref().take(5) {
            stitcher.push_line(line.as_bytes()).unwrap();
        }
        let late =
            r#"{"id":"gid://shopify/ProductVariant/13","__parentId":"gid://shopify/Product/1"}"#;
        assert!(matches!(
            stitcher.push_line(late.as_bytes()),
            Err(StitchError::OrphanChild { line: 6, .. })
        ));
    }
}

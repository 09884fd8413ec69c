//! The Admin GraphQL transport: one POST per document, shared cost limiter, bounded retries.

use crate::cost::QueryCost;
use crate::documents::Document;
use crate::error::ShopifyError;
use crate::limiter::CostLimiter;
use crate::version::ApiVersion;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How to reach one shop.
#[derive(Clone)]
pub struct ClientConfig {
    /// The shop's myshopify domain, e.g. `example.myshopify.com`.
    pub shop: String,
    /// Admin API access token (sent as `X-Shopify-Access-Token`; never logged).
    pub access_token: String,
    /// API version (2026-07 unless configured; below 2026-04 is refused when parsed).
    pub api_version: ApiVersion,
    /// Base URL instead of `https://{shop}` (the simulator, a proxy).
    pub endpoint: Option<String>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Attempts after a 5xx or network failure.
    pub max_retries: u32,
    /// Attempts after THROTTLED answers.
    pub max_throttle_retries: u32,
    /// First backoff step (full jitter, doubling, capped at 10 s).
    pub retry_base: Duration,
    /// Bucket size assumed until Shopify reports one (Standard plan).
    pub assumed_bucket: f64,
    /// Restore rate assumed until Shopify reports one.
    pub assumed_restore_rate: f64,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("shop", &self.shop)
            .field("access_token", &"***")
            .field("api_version", &self.api_version)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// A configuration with shopsync's defaults for `shop`.
    pub fn new(shop: impl Into<String>, access_token: impl Into<String>) -> Self {
        Self {
            shop: shop.into(),
            access_token: access_token.into(),
            api_version: ApiVersion::PINNED,
            endpoint: None,
            timeout: Duration::from_secs(30),
            max_retries: 5,
            max_throttle_retries: 30,
            retry_base: Duration::from_millis(200),
            assumed_bucket: 2000.0,
            assumed_restore_rate: 100.0,
        }
    }

    /// The GraphQL endpoint URL.
    pub fn graphql_url(&self) -> String {
        let base = match &self.endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
            None => format!("https://{}", self.shop),
        };
        format!("{base}/admin/api/{}/graphql.json", self.api_version)
    }
}

/// What a client has done so far (for performance logs).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClientCounters {
    /// HTTP requests sent.
    pub api_calls: u64,
    /// Actual query cost charged, summed.
    pub cost_used: f64,
    /// THROTTLED answers (HTTP 200 or 429).
    pub throttled: u64,
    /// Retries after 5xx or network failures.
    pub retries: u64,
    /// Time spent waiting for bucket points, before sending or after THROTTLED.
    pub throttle_wait: Duration,
}

#[derive(Debug, Default)]
struct Counters {
    api_calls: AtomicU64,
    cost_millis: AtomicU64,
    throttled: AtomicU64,
    retries: AtomicU64,
    throttle_wait_micros: AtomicU64,
}

impl Counters {
    fn add_wait(&self, wait: Duration) {
        let micros = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        self.throttle_wait_micros
            .fetch_add(micros, Ordering::Relaxed);
    }
}

/// The Admin GraphQL client. Cheap to clone; clones share the limiter and counters.
#[derive(Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    url: Arc<str>,
    config: Arc<ClientConfig>,
    limiter: Arc<CostLimiter>,
    counters: Arc<Counters>,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    errors: Option<Vec<GraphQlError>>,
    #[serde(default)]
    extensions: Option<Extensions>,
}

#[derive(Debug, Deserialize)]
struct Extensions {
    #[serde(default)]
    cost: Option<QueryCost>,
}

#[derive(Debug, Deserialize)]
struct GraphQlError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    extensions: Option<ErrorExtensions>,
}

#[derive(Debug, Deserialize)]
struct ErrorExtensions {
    #[serde(default)]
    code: Option<String>,
}

enum Attempt<T> {
    Done(T),
    Throttled(Duration),
    Failed(String),
}

impl AdminClient {
    /// Downloads a file Shopify points to (a bulk result URL: signed, no access token sent).
    /// The body streams for as long as the reader needs (an hour at most), not the
    /// per-request timeout of API calls.
    pub(crate) async fn download(&self, url: &str) -> Result<reqwest::Response, reqwest::Error> {
        self.http
            .get(url)
            .timeout(Duration::from_secs(3600))
            .send()
            .await
    }

    /// Sends a file to a staged upload target by PUT (signed: no access token sent).
    pub(crate) async fn put_staged(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        self.http
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .timeout(Duration::from_secs(600))
            .body(body)
            .send()
            .await
    }

    /// A client for `config`.
    pub fn new(config: ClientConfig) -> Result<Self, ShopifyError> {
        if config.access_token.is_empty() {
            return Err(ShopifyError::Config("access token is empty".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("shopsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ShopifyError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            url: config.graphql_url().into(),
            limiter: Arc::new(CostLimiter::new(
                config.assumed_bucket,
                config.assumed_restore_rate,
            )),
            config: Arc::new(config),
            counters: Arc::new(Counters::default()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// What the client has done so far.
    pub fn counters(&self) -> ClientCounters {
        let c = &self.counters;
        ClientCounters {
            api_calls: c.api_calls.load(Ordering::Relaxed),
            cost_used: c.cost_millis.load(Ordering::Relaxed) as f64 / 1000.0,
            throttled: c.throttled.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            throttle_wait: Duration::from_micros(c.throttle_wait_micros.load(Ordering::Relaxed)),
        }
    }

    /// Sends `document` with `variables` and decodes `data` into `T`.
    ///
    /// `expected_cost` is the document's requested cost (see [`crate::cost`]); the limiter
    /// waits for it before sending. THROTTLED answers wait as Shopify says and retry; 5xx and
    /// network failures retry with jittered backoff; a retried request is byte-identical
    /// (same idempotency key).
    pub async fn execute<T: DeserializeOwned>(
        &self,
        document: &Document,
        variables: serde_json::Value,
        expected_cost: u32,
    ) -> Result<T, ShopifyError> {
        let body = serde_json::json!({
            "query": document.text,
            "variables": variables,
            "operationName": document.name,
        });
        let body = bytes_of(&body, document.name)?;
        let mut failures = 0u32;
        let mut throttles = 0u32;
        loop {
            match self.attempt(document, body.clone(), expected_cost).await? {
                Attempt::Done(data) => {
                    return serde_json::from_value(data).map_err(|e| ShopifyError::Decode {
                        operation: document.name,
                        reason: e.to_string(),
                    })
                }
                Attempt::Throttled(wait) => {
                    throttles += 1;
                    self.counters.throttled.fetch_add(1, Ordering::Relaxed);
                    if throttles > self.config.max_throttle_retries {
                        return Err(ShopifyError::Throttled {
                            operation: document.name,
                            attempts: throttles,
                        });
                    }
                    tracing::debug!(
                        operation = document.name,
                        wait_ms = wait.as_millis() as u64,
                        "throttled"
                    );
                    self.counters.add_wait(wait);
                    tokio::time::sleep(wait).await;
                }
                Attempt::Failed(reason) => {
                    failures += 1;
                    if failures > self.config.max_retries {
                        return Err(ShopifyError::Unavailable {
                            operation: document.name,
                            attempts: failures,
                            reason,
                        });
                    }
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    let wait = self.backoff(failures);
                    tracing::warn!(operation = document.name, attempt = failures, wait_ms = wait.as_millis() as u64, %reason, "retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let cap = Duration::from_secs(10);
        let ceiling = self
            .config
            .retry_base
            .saturating_mul(1u32 << failures.min(16))
            .min(cap);
        // Full jitter: anywhere between zero and the ceiling.
        ceiling.mul_f64(fastrand::f64())
    }

    async fn attempt(
        &self,
        document: &Document,
        body: bytes_body::Body,
        expected_cost: u32,
    ) -> Result<Attempt<serde_json::Value>, ShopifyError> {
        let permit = self.limiter.acquire(f64::from(expected_cost)).await;
        self.counters.add_wait(permit.waited);
        self.counters.api_calls.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        let response = self
            .http
            .post(&*self.url)
            .header("X-Shopify-Access-Token", &self.config.access_token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body.0)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                self.limiter.settle(permit, None);
                return Ok(Attempt::Failed(format!("network: {}", without_url(&e))));
            }
        };
        let status = response.status();
        if status.as_u16() == 429 {
            self.limiter.settle(permit, None);
            let wait = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(Duration::from_secs_f64)
                .unwrap_or(Duration::from_secs(1));
            return Ok(Attempt::Throttled(wait));
        }
        if status.is_server_error() {
            self.limiter.settle(permit, None);
            return Ok(Attempt::Failed(format!("HTTP {status}")));
        }
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                self.limiter.settle(permit, None);
                return Ok(Attempt::Failed(format!(
                    "reading body: {}",
                    without_url(&e)
                )));
            }
        };
        if !status.is_success() {
            self.limiter.settle(permit, None);
            return Err(ShopifyError::Http {
                operation: document.name,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned(),
            });
        }
        let envelope: Envelope = match serde_json::from_slice(&bytes) {
            Ok(e) => e,
            Err(e) => {
                self.limiter.settle(permit, None);
                return Err(ShopifyError::Decode {
                    operation: document.name,
                    reason: format!("response is not GraphQL JSON: {e}"),
                });
            }
        };
        let cost = envelope.extensions.and_then(|e| e.cost);
        self.limiter.settle(permit, cost.map(|c| c.throttle_status));
        if let Some(actual) = cost.and_then(|c| c.actual_query_cost) {
            self.counters
                .cost_millis
                .fetch_add((actual * 1000.0) as u64, Ordering::Relaxed);
        }
        tracing::trace!(
            operation = document.name,
            elapsed_ms = sent.elapsed().as_millis() as u64,
            "answered"
        );
        let errors = envelope.errors.unwrap_or_default();
        if errors.iter().any(|e| error_code(e) == Some("THROTTLED")) {
            let wait = match cost {
                Some(c) => CostLimiter::throttled_wait(c.requested_query_cost, &c.throttle_status),
                None => Duration::from_secs(1),
            };
            return Ok(Attempt::Throttled(wait.max(Duration::from_millis(10))));
        }
        if errors.iter().any(|e| {
            matches!(
                error_code(e),
                Some("INTERNAL_SERVER_ERROR" | "SERVICE_UNAVAILABLE")
            )
        }) {
            return Ok(Attempt::Failed("GraphQL internal error".into()));
        }
        if !errors.is_empty() {
            return Err(ShopifyError::GraphQl {
                operation: document.name,
                codes: errors
                    .iter()
                    .filter_map(|e| error_code(e).map(str::to_owned))
                    .collect(),
                messages: errors.into_iter().map(|e| e.message).collect(),
            });
        }
        match envelope.data {
            Some(data) => Ok(Attempt::Done(data)),
            None => Err(ShopifyError::Decode {
                operation: document.name,
                reason: "no data and no errors".into(),
            }),
        }
    }
}

fn error_code(error: &GraphQlError) -> Option<&str> {
    error.extensions.as_ref().and_then(|x| x.code.as_deref())
}

/// A reqwest error without the URL (which is harmless, but keeps log lines short).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    format!(
        "{kind}: {}",
        std::error::Error::source(error)
            .map(|s| s.to_string())
            .unwrap_or_default()
    )
}

mod bytes_body {
    /// A request body that can be re-sent unchanged.
    #[derive(Clone)]
    pub struct Body(pub Vec<u8>);
}

fn bytes_of(
    value: &serde_json::Value,
    operation: &'static str,
) -> Result<bytes_body::Body, ShopifyError> {
    serde_json::to_vec(value)
        .map(bytes_body::Body)
        .map_err(|e| ShopifyError::Decode {
            operation,
            reason: format!("encoding variables: {e}"),
        })
}

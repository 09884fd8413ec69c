//! The HTTP face of the simulator: `POST /admin/api/{version}/graphql.json`, bulk downloads,
//! cost and throttling, faults, and the webhook sender.

use crate::exec::{to_json, Args, Exec};
use crate::schema::SchemaHost;
use crate::shop::{check_input_sizes, OutEvent, Shop, SimNode, View};
use apollo_compiler::executable::{OperationType, Selection};
use apollo_compiler::response::JsonMap;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};
use shopsync_shopify::ApiVersion;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A plan's leaky bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Bucket size in points.
    pub bucket: f64,
    /// Points restored per second.
    pub restore_rate: f64,
}

impl Plan {
    /// Standard: 2,000 points, 100 per second.
    pub const STANDARD: Plan = Plan {
        bucket: 2000.0,
        restore_rate: 100.0,
    };
    /// Plus: 20,000 points, 1,000 per second.
    pub const PLUS: Plan = Plan {
        bucket: 20_000.0,
        restore_rate: 1000.0,
    };
    /// No throttling to speak of (benchmarks of shopsync itself).
    pub const UNLIMITED: Plan = Plan {
        bucket: 1e12,
        restore_rate: 1e12,
    };
}

/// One fault, applied to the next GraphQL request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// HTTP 429 with `Retry-After`.
    Throttle429,
    /// HTTP 5xx before anything is applied.
    ServerError(u16),
    /// The answer comes after a delay.
    Slow(Duration),
    /// The request is applied but the client sees a 502 (the answer was lost).
    LoseResponse,
    /// A sale of this many units lands on the first entry of the next inventory write,
    /// between shopsync's read and its write.
    Sale(i64),
}

/// Random fault rates, from a seed (0.0 disables each).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultRates {
    /// Seed of the fault generator.
    pub seed: u64,
    /// Share of requests answered 429.
    pub throttle_429: f64,
    /// Share answered 503 without applying.
    pub server_error: f64,
    /// Share answered 502 after applying.
    pub lose_response: f64,
    /// Share answered slowly.
    pub slow: f64,
    /// Delay of a slow answer.
    pub slow_ms: u64,
    /// Share of inventory writes preceded by a sale.
    pub stale: f64,
}

/// How a simulator starts.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The shop domain (webhooks carry it).
    pub shop_domain: String,
    /// Token clients must send; `None` accepts any.
    pub access_token: Option<String>,
    /// Secret webhooks are signed with.
    pub webhook_secret: String,
    /// Where webhooks go, besides subscriptions.
    pub webhook_url: Option<String>,
    /// Rate-limit plan.
    pub plan: Plan,
    /// Random faults.
    pub faults: FaultRates,
    /// Products to seed.
    pub products: usize,
    /// Variants per seeded product.
    pub variants_per_product: usize,
    /// Locations.
    pub locations: usize,
    /// Seed of the generated catalog.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            shop_domain: "shopsync-dev.myshopify.com".into(),
            access_token: None,
            webhook_secret: "shopsync-dev-webhook-secret".into(),
            webhook_url: None,
            plan: Plan::STANDARD,
            faults: FaultRates::default(),
            products: 0,
            variants_per_product: 3,
            locations: 2,
            seed: 1,
        }
    }
}

/// A webhook the simulator sent.
#[derive(Debug, Clone, PartialEq)]
pub struct SentWebhook {
    /// Topic.
    pub topic: String,
    /// Address.
    pub url: String,
    /// Headers as sent.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
    /// Final HTTP status, if any answer came.
    pub status: Option<u16>,
}

/// Request counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SimStats {
    /// GraphQL requests received.
    pub requests: u64,
    /// THROTTLED answers (200 with the code).
    pub throttled: u64,
    /// Injected faults.
    pub faults: u64,
    /// Actual cost charged.
    pub cost_charged: f64,
}

struct Bucket {
    plan: Plan,
    available: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self) {
        let now = Instant::now();
        let gained = now.duration_since(self.at).as_secs_f64() * self.plan.restore_rate;
        self.available = (self.available + gained).min(self.plan.bucket);
        self.at = now;
    }

    fn status(&self) -> Value {
        json!({
            "maximumAvailable": self.plan.bucket,
            "currentlyAvailable": self.available.floor(),
            "restoreRate": self.plan.restore_rate,
        })
    }
}

struct Faults {
    scripted: VecDeque<Fault>,
    rates: FaultRates,
    rng: fastrand::Rng,
}

struct SimState {
    shop: Mutex<Shop>,
    host: &'static SchemaHost,
    config: Mutex<SimConfig>,
    bucket: Mutex<Bucket>,
    faults: Mutex<Faults>,
    requests: AtomicU64,
    throttled: AtomicU64,
    faults_injected: AtomicU64,
    cost_millis: AtomicU64,
    outbound: mpsc::UnboundedSender<OutEvent>,
    sent: Mutex<Vec<SentWebhook>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Builds simulators.
pub struct Simulator;

/// A running simulator.
pub struct SimHandle {
    /// Base URL, e.g. `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<SimState>,
    server: tokio::task::JoinHandle<()>,
    sender: tokio::task::JoinHandle<()>,
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.server.abort();
        self.sender.abort();
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The embedded schema did not load.
    #[error(transparent)]
    Schema(#[from] crate::schema::SchemaError),
    /// The address could not be bound.
    #[error("binding {addr}: {reason}")]
    Bind {
        /// Address.
        addr: String,
        /// Reason.
        reason: String,
    },
}

impl Simulator {
    /// Starts a simulator on `addr` (`127.0.0.1:0` for any free port).
    pub async fn start(config: SimConfig, addr: SocketAddr) -> Result<SimHandle, SimError> {
        let host = SchemaHost::shared()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| SimError::Bind {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        let local = listener.local_addr().map_err(|e| SimError::Bind {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
        let url = format!("http://{local}");
        let mut shop = Shop::new(config.locations);
        shop.base_url = url.clone();
        let mut rng = fastrand::Rng::with_seed(config.seed);
        shop.seed(config.products, config.variants_per_product, &mut rng);
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(SimState {
            shop: Mutex::new(shop),
            host,
            bucket: Mutex::new(Bucket {
                plan: config.plan,
                available: config.plan.bucket,
                at: Instant::now(),
            }),
            faults: Mutex::new(Faults {
                scripted: VecDeque::new(),
                rates: config.faults,
                rng: fastrand::Rng::with_seed(config.faults.seed),
            }),
            config: Mutex::new(config),
            requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            faults_injected: AtomicU64::new(0),
            cost_millis: AtomicU64::new(0),
            outbound: tx,
            sent: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/admin/api/{version}/graphql.json", post(graphql))
            .route("/bulk/{file}", get(bulk_file))
            .route("/staged-uploads/{*key}", axum::routing::put(staged_upload))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "simulator server stopped");
            }
        });
        let sender = tokio::spawn(send_webhooks(state.clone(), rx));
        Ok(SimHandle {
            url,
            state,
            server,
            sender,
        })
    }
}

impl SimHandle {
    /// A client configuration pointing at this simulator.
    pub fn client_config(&self) -> shopsync_shopify::ClientConfig {
        let config = lock(&self.state.config);
        let mut client = shopsync_shopify::ClientConfig::new(
            config.shop_domain.clone(),
            config
                .access_token
                .clone()
                .unwrap_or_else(|| "simulator".into()),
        );
        client.endpoint = Some(self.url.clone());
        client.retry_base = Duration::from_millis(20);
        client
    }

    /// Reads or changes the shop; changes made here send webhooks like admin edits.
    pub fn with_shop<R>(&self, f: impl FnOnce(&mut Shop) -> R) -> R {
        let mut shop = lock(&self.state.shop);
        let result = f(&mut shop);
        for event in shop.outbox.drain(..) {
            let _ = self.state.outbound.send(event);
        }
        result
    }

    /// Queues a fault for the next request(s).
    pub fn push_fault(&self, fault: Fault) {
        if let Fault::Sale(units) = fault {
            lock(&self.state.shop).pending_sales.push_back(units);
            return;
        }
        lock(&self.state.faults).scripted.push_back(fault);
    }

    /// Sets random fault rates.
    pub fn set_fault_rates(&self, rates: FaultRates) {
        let mut faults = lock(&self.state.faults);
        faults.rng = fastrand::Rng::with_seed(rates.seed);
        faults.rates = rates;
    }

    /// Changes where webhooks go.
    pub fn set_webhook_url(&self, url: Option<String>) {
        lock(&self.state.config).webhook_url = url;
    }

    /// Counters so far.
    pub fn stats(&self) -> SimStats {
        SimStats {
            requests: self.state.requests.load(Ordering::Relaxed),
            throttled: self.state.throttled.load(Ordering::Relaxed),
            faults: self.state.faults_injected.load(Ordering::Relaxed),
            cost_charged: self.state.cost_millis.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }

    /// Webhooks sent so far.
    pub fn sent_webhooks(&self) -> Vec<SentWebhook> {
        lock(&self.state.sent).clone()
    }
}

fn graphql_error(code: &str, message: impl Into<String>) -> Value {
    json!({ "message": message.into(), "extensions": { "code": code } })
}

fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn next_fault(state: &SimState) -> Option<Fault> {
    let mut faults = lock(&state.faults);
    if let Some(f) = faults.scripted.pop_front() {
        return Some(f);
    }
    let rates = faults.rates;
    let roll = faults.rng.f64();
    let mut edge = rates.throttle_429;
    if roll < edge {
        return Some(Fault::Throttle429);
    }
    edge += rates.server_error;
    if roll < edge {
        return Some(Fault::ServerError(503));
    }
    edge += rates.lose_response;
    if roll < edge {
        return Some(Fault::LoseResponse);
    }
    edge += rates.slow;
    if roll < edge {
        return Some(Fault::Slow(Duration::from_millis(rates.slow_ms)));
    }
    edge += rates.stale;
    if roll < edge {
        return Some(Fault::Sale(faults.rng.i64(1..4)));
    }
    None
}

async fn graphql(
    State(state): State<Arc<SimState>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let expected_token = lock(&state.config).access_token.clone();
    if let Some(token) = expected_token {
        let given = headers
            .get("x-shopify-access-token")
            .and_then(|v| v.to_str().ok());
        if given != Some(token.as_str()) {
            return answer(
                StatusCode::UNAUTHORIZED,
                json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}),
            );
        }
    }
    if version.parse::<ApiVersion>().is_err() {
        return answer(StatusCode::NOT_FOUND, json!({"errors": "Not Found"}));
    }
    let mut lose_response = false;
    match next_fault(&state) {
        Some(Fault::Throttle429) => {
            state.faults_injected.fetch_add(1, Ordering::Relaxed);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("content-type", "application/json"), ("retry-after", "1.0")],
                json!({"errors": [graphql_error("THROTTLED", "Throttled")]}).to_string(),
            )
                .into_response();
        }
        Some(Fault::ServerError(code)) => {
            state.faults_injected.fetch_add(1, Ordering::Relaxed);
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return answer(status, json!({"errors": "Service unavailable"}));
        }
        Some(Fault::Slow(delay)) => {
            state.faults_injected.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
        }
        Some(Fault::LoseResponse) => {
            state.faults_injected.fetch_add(1, Ordering::Relaxed);
            lose_response = true;
        }
        Some(Fault::Sale(units)) => {
            state.faults_injected.fetch_add(1, Ordering::Relaxed);
            lock(&state.shop).pending_sales.push_back(units);
        }
        None => {}
    }
    let (status, response) = execute(&state, &body);
    if lose_response {
        return answer(StatusCode::BAD_GATEWAY, json!({"errors": "Bad gateway"}));
    }
    answer(status, response)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    query: Option<String>,
    #[serde(default)]
    variables: Option<Map<String, Value>>,
    #[serde(default)]
    operation_name: Option<String>,
}

fn execute(state: &SimState, body: &[u8]) -> (StatusCode, Value) {
    let request: Request = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                json!({"errors": {"query": format!("Required parameter missing or invalid: {e}")}}),
            )
        }
    };
    let Some(query) = request.query else {
        return (
            StatusCode::BAD_REQUEST,
            json!({"errors": {"query": "Required parameter missing or invalid"}}),
        );
    };
    let host = state.host;
    let doc = match host.document(&query) {
        Ok(doc) => doc,
        Err(messages) => {
            let errors: Vec<Value> = messages
                .into_iter()
                .map(|m| graphql_error("GRAPHQL_VALIDATION_FAILED", m))
                .collect();
            return (StatusCode::OK, json!({ "errors": errors }));
        }
    };
    let operation = match doc.operations.get(request.operation_name.as_deref()) {
        Ok(op) => op,
        Err(e) => {
            return (
                StatusCode::OK,
                json!({"errors": [graphql_error("BAD_REQUEST", e.message().to_string())]}),
            )
        }
    };
    let raw_vars = Value::Object(request.variables.unwrap_or_default());
    let coerced = serde_json::from_value::<JsonMap>(raw_vars)
        .map_err(|e| e.to_string())
        .and_then(|vars| {
            apollo_compiler::request::coerce_variable_values(&host.schema, operation, &vars)
                .map_err(|e| e.message().to_string())
        });
    let vars: Map<String, Value> = match coerced.and_then(|c| {
        serde_json::to_value(&*c)
            .map_err(|e| e.to_string())
            .map(|v| v.as_object().cloned().unwrap_or_default())
    }) {
        Ok(vars) => vars,
        Err(message) => {
            return (
                StatusCode::OK,
                json!({"errors": [graphql_error("INVALID_VARIABLE", message)]}),
            )
        }
    };
    if let Err(e) = check_input_sizes(&Value::Object(vars.clone()), "", &["input.variants"]) {
        return (
            StatusCode::OK,
            json!({"errors": [graphql_error(e.code, e.message)]}),
        );
    }
    let mutation = operation.operation_type == OperationType::Mutation;
    let requested = {
        let shop = lock(&state.shop);
        let exec = Exec::new(&doc, &host.schema, &vars, View { shop: &shop });
        match exec.requested_cost(&operation.selection_set, mutation) {
            Ok(cost) => cost,
            Err(message) => {
                return (
                    StatusCode::OK,
                    json!({"errors": [graphql_error("BAD_REQUEST", message)]}),
                )
            }
        }
    };
    let mut bucket = lock(&state.bucket);
    bucket.refill();
    if requested > 1000.0 {
        let cost = json!({"requestedQueryCost": requested, "actualQueryCost": null, "throttleStatus": bucket.status()});
        return (
            StatusCode::OK,
            json!({"errors": [graphql_error("MAX_COST_EXCEEDED", format!("Query cost is {requested}, which exceeds the single query max cost limit (1000)."))], "extensions": {"cost": cost}}),
        );
    }
    if bucket.available < requested {
        state.throttled.fetch_add(1, Ordering::Relaxed);
        let cost = json!({"requestedQueryCost": requested, "actualQueryCost": null, "throttleStatus": bucket.status()});
        return (
            StatusCode::OK,
            json!({"errors": [graphql_error("THROTTLED", "Throttled")], "extensions": {"cost": cost}}),
        );
    }
    bucket.available -= requested;
    drop(bucket);

    let mut shop = lock(&state.shop);
    let mut errors: Vec<Value> = Vec::new();
    let mut data = Map::new();
    let actual;
    let root_fields: Vec<_> = operation
        .selection_set
        .selections
        .iter()
        .filter_map(|s| match s {
            Selection::Field(f) => Some(f),
            _ => None,
        })
        .collect();
    if mutation {
        let mut outcomes = Vec::new();
        for field in &root_fields {
            let args = Args::new(field, &vars);
            let key = field
                .directives
                .get("idempotent")
                .and_then(|d| d.specified_argument_by_name("key"))
                .and_then(|v| to_json(v, &vars).as_str().map(str::to_owned));
            outcomes.push(shop.mutate(host, field.name.as_str(), &args, key));
        }
        let shop_ref: &Shop = &shop;
        let mut exec = Exec::new(&doc, &host.schema, &vars, View { shop: shop_ref });
        for (field, outcome) in root_fields.iter().zip(outcomes) {
            let key = field.response_key().to_string();
            match outcome {
                Ok(outcome) => {
                    let payload = shop_ref.payload(&outcome);
                    let value = exec.object(&payload, &field.selection_set);
                    data.insert(key, value);
                }
                Err(top) => {
                    errors.push(json!({"message": top.message, "path": [key.clone()], "extensions": {"code": top.code}}));
                    data.insert(key, Value::Null);
                }
            }
        }
        errors.extend(
            exec.errors
                .iter()
                .map(|e| json!({"message": e.message, "path": e.path})),
        );
        actual = 10.0 * root_fields.len() as f64;
    } else {
        for field in &root_fields {
            let id = Args::new(field, &vars).string("id").unwrap_or_default();
            shop.poll_background(field.name.as_str(), &id);
        }
        let shop_ref: &Shop = &shop;
        let mut exec = Exec::new(&doc, &host.schema, &vars, View { shop: shop_ref });
        if let Value::Object(map) = exec.object(&SimNode::Query, &operation.selection_set) {
            data = map;
        }
        errors.extend(
            exec.errors
                .iter()
                .map(|e| json!({"message": e.message, "path": e.path})),
        );
        actual = exec.cost.min(requested);
    }
    let events: Vec<OutEvent> = shop.outbox.drain(..).collect();
    drop(shop);
    for event in events {
        let _ = state.outbound.send(event);
    }
    let mut bucket = lock(&state.bucket);
    bucket.refill();
    bucket.available = (bucket.available + (requested - actual).max(0.0)).min(bucket.plan.bucket);
    state
        .cost_millis
        .fetch_add((actual * 1000.0) as u64, Ordering::Relaxed);
    let cost = json!({"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": bucket.status()});
    drop(bucket);
    let mut response = json!({"data": data, "extensions": {"cost": cost}});
    if !errors.is_empty() {
        response["errors"] = Value::Array(errors);
    }
    (StatusCode::OK, response)
}

/// A staged upload's file (a bulk mutation's variables), sent by PUT to the target
/// stagedUploadsCreate gave.
async fn staged_upload(
    State(state): State<Arc<SimState>>,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    if lock(&state.shop).stage_upload(&key, body) {
        answer(StatusCode::OK, json!({}))
    } else {
        answer(
            StatusCode::NOT_FOUND,
            json!({"errors": "no such staged target"}),
        )
    }
}

async fn bulk_file(State(state): State<Arc<SimState>>, Path(file): Path<String>) -> Response {
    let id = file
        .strip_suffix(".jsonl")
        .and_then(|i| i.parse::<u64>().ok());
    match id.and_then(|i| lock(&state.shop).bulk_parts(i)) {
        Some(parts) => {
            let length = parts.iter().map(Bytes::len).sum::<usize>();
            // Shared with the operation, not copied (an export can be hundreds of MB).
            let chunks = futures::stream::iter(parts.into_iter().map(Ok::<_, Infallible>));
            (
                StatusCode::OK,
                [
                    ("content-type", "application/jsonl".to_owned()),
                    ("content-length", length.to_string()),
                ],
                axum::body::Body::from_stream(chunks),
            )
                .into_response()
        }
        None => answer(StatusCode::NOT_FOUND, json!({"errors": "Not Found"})),
    }
}

async fn send_webhooks(state: Arc<SimState>, mut rx: mpsc::UnboundedReceiver<OutEvent>) {
    let http = reqwest::Client::new();
    while let Some(event) = rx.recv().await {
        let (secret, shop_domain, configured) = {
            let config = lock(&state.config);
            (
                config.webhook_secret.clone(),
                config.shop_domain.clone(),
                config.webhook_url.clone(),
            )
        };
        let mut urls: Vec<String> = configured.into_iter().collect();
        for uri in lock(&state.shop).subscribers(&event.topic) {
            if !urls.contains(&uri) {
                urls.push(uri);
            }
        }
        let body = event.body.to_string().into_bytes();
        let event_id = uuid::Uuid::new_v4().to_string();
        for url in urls {
            let headers = vec![
                ("X-Shopify-Topic".to_owned(), event.topic.clone()),
                (
                    "X-Shopify-Hmac-Sha256".to_owned(),
                    shopsync_shopify::webhook::sign(&secret, &body),
                ),
                ("X-Shopify-Shop-Domain".to_owned(), shop_domain.clone()),
                (
                    "X-Shopify-API-Version".to_owned(),
                    ApiVersion::PINNED.to_string(),
                ),
                (
                    "X-Shopify-Webhook-Id".to_owned(),
                    uuid::Uuid::new_v4().to_string(),
                ),
                ("X-Shopify-Event-Id".to_owned(), event_id.clone()),
                (
                    "X-Shopify-Triggered-At".to_owned(),
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                ),
            ];
            let mut status = None;
            for attempt in 0..3u32 {
                let mut request = http.post(&url).body(body.clone());
                for (k, v) in &headers {
                    request = request.header(k, v);
                }
                request = request.header("content-type", "application/json");
                match request.send().await {
                    Ok(r) => {
                        status = Some(r.status().as_u16());
                        if r.status().is_success() {
                            break;
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, attempt, "webhook delivery failed"),
                }
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
            }
            let mut sent = lock(&state.sent);
            if sent.len() >= 10_000 {
                sent.remove(0);
            }
            sent.push(SentWebhook {
                topic: event.topic.clone(),
                url,
                headers,
                body: body.clone(),
                status,
            });
        }
    }
}

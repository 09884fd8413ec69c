//! `shopsync serve`: the local host. Shopify webhooks in, read-only admin routes, the embedded
//! store, and the seeded Shopify simulator unless a real store's token is set.

use crate::config::{ShopifyArgs, StoreArgs};
use anyhow::Context;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use shopsync_domain::{
    Actor, Product, ProductId, ShopifyProductId, SyncConflict, SyncOperation, XorosoftSyncLog,
};
use shopsync_engine::intake::WebhookIntake;
use shopsync_engine::jobs::{Job, JobMessage, JobOutcome, JobQueue, QueueError, Worker};
use shopsync_engine::ledger::StoreLedger;
use shopsync_engine::local_queue::{StoreQueue, DEFAULT_VISIBILITY};
use shopsync_engine::steps::LOCAL_STEP;
use shopsync_shopify::webhook::WebhookConfig;
use shopsync_store::item::{Key, PageToken, Query};
use shopsync_store::{Store, Table};
use std::collections::HashMap;
use std::sync::Arc;

/// Options of `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one; the chosen address is printed).
    #[arg(long, env = "SHOPSYNC_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: String,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub shopify: ShopifyArgs,
    /// Secret Shopify signs webhooks with (the app's client secret).
    #[arg(
        long,
        env = "SHOPIFY_WEBHOOK_SECRET",
        default_value = "shopsync-dev-webhook-secret",
        hide_env_values = true
    )]
    pub webhook_secret: String,
    /// The previous secret, accepted during rotation.
    #[arg(long, env = "SHOPIFY_WEBHOOK_SECRET_PREVIOUS", hide_env_values = true)]
    pub webhook_secret_previous: Option<String>,
    /// Admin API bearer tokens: `token:user:role,...`.
    #[arg(
        long,
        env = "SHOPSYNC_API_TOKENS",
        default_value = "local-dev-token:local:admin",
        hide_env_values = true
    )]
    pub api_tokens: String,
    /// Seconds between scheduled syncs (incremental down, then up); 0 turns the scheduler off.
    #[arg(long, env = "SHOPSYNC_SYNC_INTERVAL_SECS", default_value_t = 300)]
    pub sync_interval_secs: u64,
}

struct App {
    store: Store,
    intake: WebhookIntake,
    tokens: HashMap<String, (String, String)>,
}

/// A secret as it may be printed: its first two characters (whole characters, whatever their
/// width in bytes) when it is long enough that they give little away.
fn mask(secret: &str) -> String {
    match secret.chars().count() {
        0 => "(empty)".into(),
        n if n <= 4 => "***".into(),
        _ => format!("{}***", secret.chars().take(2).collect::<String>()),
    }
}

/// Parses `token:user:role,...`.
pub fn parse_tokens(text: &str) -> anyhow::Result<HashMap<String, (String, String)>> {
    let mut tokens = HashMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut parts = entry.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(token), Some(user), Some(role)) if !token.is_empty() && !user.is_empty() && !role.is_empty() => {
                tokens.insert(token.to_owned(), (user.to_owned(), role.to_owned()));
            }
            _ => anyhow::bail!("SHOPSYNC_API_TOKENS entries must be token:user:role (got an entry with {} part(s))", entry.split(':').count()),
        }
    }
    Ok(tokens)
}

/// Runs the local host until interrupted.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let tokens = parse_tokens(&args.api_tokens)?;
    let backend = args.store.open().await.context("opening the store")?;
    let report = shopsync_store::migrate::migrate(backend.as_ref(), Default::default())
        .await
        .context("preparing the tables")?;
    if !report.drift.is_empty() {
        anyhow::bail!(
            "the tables differ from their definitions: run `shopsync migrate` to see how"
        );
    }
    let store = Store::new(backend);
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    let local = listener.local_addr()?;
    let target = args.shopify.connect(Some(&args.webhook_secret)).await?;
    if let Some(sim) = &target._simulator {
        sim.set_webhook_url(Some(format!("http://{local}/webhooks/shopify")));
    }
    let webhook_secret = args.webhook_secret.clone();
    println!("shopsync serve");
    println!("  listening on http://{local}");
    println!("  store: {}", args.store.describe());
    println!("  shopify: {}", target.description);
    println!("  SHOPIFY_SHOP={}", args.shopify.shop);
    println!("  SHOPIFY_WEBHOOK_SECRET={}", mask(&webhook_secret));
    println!(
        "  SHOPIFY_WEBHOOK_SECRET_PREVIOUS={}",
        args.webhook_secret_previous
            .as_deref()
            .map(mask)
            .unwrap_or_else(|| "(unset)".into())
    );
    println!(
        "  SHOPSYNC_API_TOKENS: {} token(s) for {}",
        tokens.len(),
        tokens
            .values()
            .map(|(u, r)| format!("{u} ({r})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  routes: POST /webhooks/shopify, GET /health, GET /api/v1/operations[/{{id}}], GET /api/v1/products/{{id}}[/versions]");
    let actor = Actor::new("system:serve").context("actor")?;
    let rails = crate::rails_from_env()?;
    println!(
        "  guard rails: {}hold past {:.0}% of the catalog changing (at least {}), {} deletes, {} stock levels zeroed, {} price moves over {}%",
        if rails.require_approval { "every operation waits for approval; " } else { "" },
        rails.max_changed_share * 100.0,
        rails.min_changes,
        rails.max_deletes,
        rails.max_zero_stock,
        rails.max_large_price_moves,
        rails.max_price_move_pct
    );
    // The job queue (kept in the store), its worker, and the scheduler.
    let queue = Arc::new(StoreQueue::new(store.clone(), DEFAULT_VISIBILITY));
    // Xorosoft files: dropped into DATA/xorosoft/inbound/, archived and reported beside it.
    let data = args.store.data_dir().to_path_buf();
    crate::watch::prepare(&data).context("creating the Xorosoft inbound folders")?;
    let mut import_settings = crate::import::settings_from_env()?;
    let locations = crate::import::default_locations(
        &mut import_settings,
        &target.client,
        target._simulator.is_some(),
    )
    .await?;
    let blobs: Arc<dyn shopsync_engine::blob::Blobs> =
        Arc::new(shopsync_engine::blob::FolderBlobs::new(&data, "local"));
    println!(
        "  xorosoft: drop files into {}/{{stock,price,full}}/; archive, reports and exports under {}",
        data.join("xorosoft/inbound").display(),
        data.join("xorosoft").display()
    );
    if let Some(line) = locations {
        println!("  {line}");
    }
    let worker = Arc::new(Worker {
        store: store.clone(),
        client: target.client.clone(),
        actor: actor.clone(),
        rails: rails.clone(),
        continuation: Some(queue.clone()),
        imports: Some(Arc::new(shopsync_engine::jobs::ImportHost::Runs {
            blobs,
            settings: import_settings,
        })),
    });
    // Jobs this host held when it stopped (a crash, a kill) go again: their claims belonged
    // to a process that is gone.
    let recovered = queue
        .recover(chrono::Utc::now())
        .await
        .context("recovering the job queue")?;
    for message in &recovered {
        worker
            .forget_claim(message)
            .await
            .context("recovering the job queue")?;
    }
    let app = Arc::new(App {
        intake: WebhookIntake {
            store: store.clone(),
            ledger: Arc::new(StoreLedger::new(store.clone())),
            config: WebhookConfig {
                shop_domain: args.shopify.shop.clone(),
                secret: webhook_secret,
                previous_secret: args.webhook_secret_previous.clone(),
            },
            queue: Arc::new(ServeQueue {
                local: queue.clone(),
                worker: worker.clone(),
            }),
            client: Some(target.client.clone()),
            actor,
            realtime: Default::default(),
        },
        store,
        tokens,
    });
    tokio::spawn(run_worker(queue.clone(), worker));
    if !recovered.is_empty() {
        println!(
            "  jobs: {} left unfinished when this host last stopped, handed out again",
            recovered.len()
        );
    }
    tokio::spawn(expire_records(app.store.clone()));
    tokio::spawn(crate::watch::watch(data.clone(), queue.clone()));
    // A fresh store starts from Shopify's catalog (unless a job this host held when it
    // stopped, such as that first sync, is still queued: it goes on instead).
    let empty = app
        .store
        .backend()
        .scan(Table::Products, 1, None)
        .await?
        .items
        .is_empty();
    if empty && queue.is_empty().await? {
        queue
            .send(vec![JobMessage::new(Job::FullDown, chrono::Utc::now())])
            .await?;
    }
    if args.sync_interval_secs > 0 {
        let queue = queue.clone();
        let every = std::time::Duration::from_secs(args.sync_interval_secs);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                ticks.tick().await;
                let now = chrono::Utc::now();
                let jobs = vec![
                    JobMessage::new(Job::IncrementalDown, now),
                    JobMessage::new(Job::Up, now),
                    JobMessage::new(Job::Maintenance, now),
                ];
                if let Err(e) = queue.send(jobs).await {
                    tracing::error!(error = %e, "scheduler stopped");
                    return;
                }
            }
        });
    }
    println!(
        "  scheduler: {}",
        if args.sync_interval_secs > 0 {
            format!(
                "incremental down + up + maintenance (due shop redactions; realtime operations counted, past days concluded) every {} s (SHOPSYNC_SYNC_INTERVAL_SECS)",
                args.sync_interval_secs
            )
        } else {
            "off".into()
        }
    );
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/webhooks/shopify", post(webhook))
        .route("/api/v1/operations", get(operations))
        .route("/api/v1/operations/{id}", get(operation))
        // `{id}` and `{id}/versions`, where a GID may come with its slashes unencoded.
        .route("/api/v1/products/{*path}", get(product_route))
        .route("/api/v1/xorosoft/imports", get(imports))
        .route("/api/v1/xorosoft/imports/{id}", get(import))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(app);
    let _keep_target = target;
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// An API error answer: status, stable code, message.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "error": self.code, "message": self.message })),
        )
            .into_response()
    }
}

fn api_error(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        code,
        message: message.into(),
    }
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    api_error(status, code, message).into_response()
}

/// The queue behind serve's webhook intake: a realtime apply step (one small transaction)
/// runs before the delivery is answered, so what a webhook changed is readable as soon as
/// Shopify has its 200; everything else goes to the in-process queue.
struct ServeQueue {
    local: Arc<StoreQueue>,
    worker: Arc<Worker>,
}

#[async_trait::async_trait]
impl JobQueue for ServeQueue {
    async fn send(&self, messages: Vec<JobMessage>) -> Result<(), QueueError> {
        let (now, later): (Vec<_>, Vec<_>) = messages
            .into_iter()
            .partition(|m| matches!(m.job, Job::ApplyRows { .. }));
        for message in now {
            self.worker
                .handle(&message)
                .await
                .map_err(|e| QueueError(e.to_string()))?;
        }
        self.local.send(later).await
    }
}

/// How often expired dedupe marks and idempotency records are removed from the store.
const EXPIRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes expired records (dedupe marks, idempotency records) at start and every
/// [`EXPIRY_INTERVAL`], so a host running for weeks does not keep every one it wrote. A failed
/// sweep is logged and the next one tries again.
async fn expire_records(store: Store) {
    let mut ticks = tokio::time::interval(EXPIRY_INTERVAL);
    loop {
        ticks.tick().await;
        match store.backend().expire_ttl(chrono::Utc::now()).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "expired records removed"),
            Err(e) => tracing::warn!(error = %e, "removing expired records failed"),
        }
    }
}

/// Runs queued jobs one at a time, each step at most [`LOCAL_STEP`] long (a long operation
/// saves its checkpoint and queues its next step). A job is deleted from the queue once done;
/// one that failed and may succeed later is handed out again after [`RETRY_AFTER`], up to
/// [`MAX_ATTEMPTS`] times (then its operation is failed, as SQS's redrive would); one that
/// can never run is removed and its operation failed by the worker.
async fn run_worker(queue: Arc<StoreQueue>, worker: Arc<Worker>) {
    loop {
        let lease = match queue.receive().await {
            Ok(lease) => lease,
            Err(e) => {
                tracing::error!(error = %e, "the job queue failed; trying again shortly");
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        };
        let message = &lease.message;
        let deadline = std::time::Instant::now() + LOCAL_STEP;
        let done = match worker.handle_until(message, Some(deadline)).await {
            Ok(JobOutcome::Ran(Some(op))) => {
                tracing::info!(
                    job = ?message.job,
                    operation = %op.operation_uuid,
                    status = %shopsync_domain::status::status_name(op.status),
                    "job done"
                );
                true
            }
            Ok(JobOutcome::Ran(None)) => {
                tracing::debug!(job = ?message.job, "job done");
                true
            }
            Ok(JobOutcome::Replay) => {
                tracing::info!(job = ?message.job, "job already done");
                true
            }
            Err(e) if e.is_retryable() && lease.receive_count < MAX_ATTEMPTS => {
                tracing::warn!(job = ?message.job, error = %e, attempt = lease.receive_count, "job failed; it runs again later");
                false
            }
            Err(e) => {
                tracing::error!(job = ?message.job, error = %e, retryable = e.is_retryable(), "job failed for good");
                if let Some(operation) = message.job.operation() {
                    worker.fail_operation(operation, &e.to_string()).await;
                }
                true
            }
        };
        let settled = if done {
            queue.delete(&lease).await
        } else {
            queue.release(&lease, RETRY_AFTER).await
        };
        if let Err(e) = settled {
            tracing::error!(job = ?message.job, error = %e, "the job queue failed to settle a job; it runs again after its visibility timeout");
        }
    }
}

/// How long a job that failed waits before it runs again.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(10);
/// Deliveries of a job before it is given up.
const MAX_ATTEMPTS: u32 = 5;

async fn webhook(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let reply = app
        .intake
        .receive(&headers, &body, chrono::Utc::now())
        .await;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(reply.body)).into_response()
}

async fn no_route(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {method} {}", uri.path()),
    )
}

async fn wrong_method(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}", uri.path()),
    )
}

/// The largest page a listing route answers.
const MAX_PAGE: u32 = 1000;
/// The page a listing route answers when no `limit` is given.
const DEFAULT_PAGE: u32 = 100;

/// `?limit=N&after=TOKEN` of a listing route: at most `limit` items (1..=1000, default
/// 100) after the page that answered `next: TOKEN`.
#[derive(Debug, Default, serde::Deserialize)]
struct PageParams {
    limit: Option<u32>,
    after: Option<String>,
}

/// The page a listing route is asked for; a bad parameter is a 400 naming it.
fn requested_page(
    params: Result<UrlQuery<PageParams>, QueryRejection>,
) -> Result<(u32, Option<PageToken>), ApiError> {
    let UrlQuery(params) = params.map_err(|e| {
        api_error(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!(
                "{} (expected ?limit=1..{MAX_PAGE}&after=TOKEN)",
                e.body_text()
            ),
        )
    })?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            format!("limit must be 1 to {MAX_PAGE}, not {limit}"),
        ));
    }
    let after = match params.after {
        None => None,
        Some(text) => {
            let token = PageToken::from_string(text);
            if token.decode().is_none() {
                return Err(api_error(
                    StatusCode::BAD_REQUEST,
                    "bad_cursor",
                    "after must be a `next` token this route answered",
                ));
            }
            Some(token)
        }
    };
    Ok((limit, after))
}

fn authorize(app: &App, headers: &HeaderMap) -> Result<(String, String), ApiError> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match token.and_then(|t| app.tokens.get(t)) {
        Some(who) => Ok(who.clone()),
        None => Err(api_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token> (see SHOPSYNC_API_TOKENS)",
        )),
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "admin route failed");
    api_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the store could not answer",
    )
}

async fn operations(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    params: Result<UrlQuery<PageParams>, QueryRejection>,
) -> Response {
    if let Err(r) = authorize(&app, &headers) {
        return r.into_response();
    }
    let (limit, after) = match requested_page(params) {
        Ok(page) => page,
        Err(r) => return r.into_response(),
    };
    let mut query = Query::new(Table::SyncOperations, Some("by_created"), "operation");
    query.ascending = false;
    query.limit = limit;
    query.start = after;
    match app.store.query::<SyncOperation>(query).await {
        Ok(page) => {
            let now = chrono::Utc::now();
            let operations: Vec<serde_json::Value> = page
                .items
                .iter()
                .map(|op| operation_json(op, now))
                .collect();
            Json(json!({ "operations": operations, "next": page.next })).into_response()
        }
        Err(e) => internal(e).into_response(),
    }
}

async fn operation(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorize(&app, &headers) {
        return r.into_response();
    }
    let Ok(op_id) = id.parse::<shopsync_domain::OperationId>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_id",
            format!("`{id}` is not an operation id (a UUID)"),
        );
    };
    let op = match app
        .store
        .get::<SyncOperation>(&Key::pk(op_id.to_string()))
        .await
    {
        Ok(Some(op)) => op,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no operation {op_id}"),
            )
        }
        Err(e) => return internal(e).into_response(),
    };
    let staging = shopsync_engine::plan::operation_rows(&app.store, op_id).await;
    let conflicts = app
        .store
        .query_all::<SyncConflict>(Query::new(
            Table::SyncConflicts,
            Some("by_operation"),
            op_id.to_string(),
        ))
        .await;
    let performance = shopsync_engine::sync::performance_of(&app.store, op_id).await;
    match (staging, conflicts, performance) {
        (Ok(staging), Ok(conflicts), Ok(performance)) => {
            let mut op = op;
            if op.operation_type == shopsync_domain::OperationType::Realtime
                && op.status == shopsync_domain::OperationStatus::InProgress
            {
                // The day's counts as of now (the stored ones are brought up to date by the
                // scheduler's maintenance).
                op.statistics =
                    shopsync_engine::realtime::realtime_statistics(&staging, &conflicts);
            }
            Json(json!({
                "operation": operation_json(&op, chrono::Utc::now()),
                "staging": staging,
                "conflicts": conflicts,
                "performance": performance,
            }))
            .into_response()
        }
        (Err(e), _, _) | (_, _, Err(e)) => internal(e).into_response(),
        (_, Err(e), _) => internal(e).into_response(),
    }
}

/// Xorosoft imports, newest first, paged like operations.
async fn imports(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    params: Result<UrlQuery<PageParams>, QueryRejection>,
) -> Response {
    if let Err(r) = authorize(&app, &headers) {
        return r.into_response();
    }
    let (limit, after) = match requested_page(params) {
        Ok(page) => page,
        Err(r) => return r.into_response(),
    };
    let mut query = Query::new(Table::XorosoftSyncLogs, Some("by_started"), "import");
    query.ascending = false;
    query.limit = limit;
    query.start = after;
    match app.store.query::<XorosoftSyncLog>(query).await {
        Ok(page) => Json(json!({ "imports": page.items, "next": page.next })).into_response(),
        Err(e) => internal(e).into_response(),
    }
}

/// One import: its log record, the file's row errors and its operation.
/// How many row errors an import's answer lists (`row_errors_total` counts them all).
const ROW_ERRORS_SHOWN: usize = 1000;

async fn import(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorize(&app, &headers) {
        return r.into_response();
    }
    let Ok(log_id) = id.parse::<shopsync_domain::XorosoftLogId>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_id",
            format!("`{id}` is not an import id (a UUID)"),
        );
    };
    let log = match app
        .store
        .get::<XorosoftSyncLog>(&Key::pk(log_id.to_string()))
        .await
    {
        Ok(Some(log)) => log,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no import {log_id}"),
            )
        }
        Err(e) => return internal(e).into_response(),
    };
    // A duplicate's rows are its first import's.
    let rows_of = log.duplicate_of.unwrap_or(log.id);
    // The first errors inline; all of them are in the log's `errors_report` file.
    let mut errors = Vec::new();
    let mut total = 0u64;
    let listed = shopsync_engine::xorosoft_import::each_row_error(&app.store, rows_of, |error| {
        total += 1;
        if errors.len() < ROW_ERRORS_SHOWN {
            errors.push(error);
        }
    })
    .await;
    match listed {
        Ok(()) => Json(json!({
            "import": log,
            "row_errors": errors,
            "row_errors_total": total,
            "operation_id": log.operation_id,
        }))
        .into_response(),
        Err(e) => internal(e).into_response(),
    }
}

/// An operation as the API shows it: as stored, and `stalled` when it is in progress but
/// its worker is gone (its lease ran out; `operation resume` takes it over).
fn operation_json(op: &SyncOperation, now: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    let mut value = serde_json::to_value(op).unwrap_or_else(|_| json!({}));
    if let Some(object) = value.as_object_mut() {
        object.insert("stalled".into(), op.stalled(now).into());
    }
    value
}

async fn find_product(app: &App, id: &str) -> Result<Option<Product>, ApiError> {
    if let Ok(local) = id.parse::<ProductId>() {
        return app.store.product(local).await.map_err(internal);
    }
    match id.parse::<ShopifyProductId>() {
        Ok(shopify) => app
            .store
            .product_by_shopify_id(shopify)
            .await
            .map_err(internal),
        Err(_) => Err(api_error(
            StatusCode::BAD_REQUEST,
            "bad_id",
            format!("`{id}` is neither a local product id (UUID) nor a Shopify product id or GID"),
        )),
    }
}

/// `GET /api/v1/products/{id}` and `GET /api/v1/products/{id}/versions`.
async fn product_route(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(path): Path<String>,
    params: Result<UrlQuery<PageParams>, QueryRejection>,
) -> Response {
    if let Err(r) = authorize(&app, &headers) {
        return r.into_response();
    }
    match path.strip_suffix("/versions") {
        Some(id) => versions(&app, id, params).await,
        None => product(&app, &path).await,
    }
}

async fn product(app: &App, id: &str) -> Response {
    match find_product(app, id).await {
        Ok(Some(p)) => Json(json!({ "product": p, "needs_push": p.needs_push() })).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no product {id}"),
        ),
        Err(r) => r.into_response(),
    }
}

async fn versions(
    app: &App,
    id: &str,
    params: Result<UrlQuery<PageParams>, QueryRejection>,
) -> Response {
    let (limit, after) = match requested_page(params) {
        Ok(page) => page,
        Err(r) => return r.into_response(),
    };
    let product = match find_product(app, id).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no product {id}"),
            )
        }
        Err(r) => return r.into_response(),
    };
    match app
        .store
        .product_versions(product.id, true, limit, after)
        .await
    {
        Ok(page) => Json(json!({
            "product_id": product.id,
            "versions": page.items,
            "next": page.next,
        }))
        .into_response(),
        Err(e) => internal(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn masking_keeps_whole_characters_of_any_secret() {
        assert_eq!(mask(""), "(empty)");
        assert_eq!(mask("€€€"), "***");
        assert_eq!(mask("€€€€€"), "€€***");
        assert_eq!(mask("a€b€c"), "a€***");
        assert_eq!(mask("🔑🔑🔑🔑🔑🔑"), "🔑🔑***");
        assert_eq!(mask("shpss_secret"), "sh***");
        for secret in [
            "é",
            "éé",
            "ééééé",
            "\u{10FFFF}\u{10FFFF}\u{10FFFF}\u{10FFFF}x",
        ] {
            assert!(mask(secret).ends_with("***") || mask(secret) == "(empty)");
        }
    }
}

//! `shopsync serve`: the local host. Shopify webhooks in, the admin API, the embedded
//! store, and the seeded Shopify simulator unless a real store's token is set.

use crate::config::{ShopifyArgs, StoreArgs};
use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use shopsync_domain::Actor;
use shopsync_engine::intake::WebhookIntake;
use shopsync_engine::jobs::{Job, JobMessage, JobOutcome, JobQueue, QueueError, Worker};
use shopsync_engine::ledger::StoreLedger;
use shopsync_engine::local_queue::{StoreQueue, DEFAULT_VISIBILITY};
use shopsync_engine::operation::LOCAL_STEP;
use shopsync_shopify::webhook::WebhookConfig;
use shopsync_store::{Store, Table};
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
    intake: WebhookIntake,
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

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let auth = shopsync_api::Authenticator::tokens(&args.api_tokens)?;
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
    let holders = auth.token_holders();
    println!(
        "  SHOPSYNC_API_TOKENS: {} token(s) for {}",
        holders.len(),
        holders
            .iter()
            .map(|who| format!("{} ({})", who.actor, who.role))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  routes: POST /webhooks/shopify, GET /health, the admin API under /api/v1 (its OpenAPI document: GET /api/v1/openapi.json)");
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
    });
    let api = Arc::new(shopsync_api::ApiState {
        store,
        auth,
        jobs: queue.clone(),
    });
    tokio::spawn(run_worker(queue.clone(), worker));
    if !recovered.is_empty() {
        println!(
            "  jobs: {} left unfinished when this host last stopped, handed out again",
            recovered.len()
        );
    }
    tokio::spawn(expire_records(api.store.clone()));
    tokio::spawn(crate::watch::watch(data.clone(), queue.clone()));
    // A fresh store starts from Shopify's catalog (unless a job this host held when it
    // stopped, such as that first sync, is still queued: it goes on instead).
    let empty = api
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
    // The admin API (with its fallbacks for unknown routes), beside the host's own routes.
    let router = shopsync_api::router(api).merge(
        Router::new()
            .route("/health", get(|| async { "ok" }))
            .route("/webhooks/shopify", post(webhook))
            .with_state(app),
    );
    let _keep_target = target;
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
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

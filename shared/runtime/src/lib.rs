//! What the Lambda functions share: their settings from the environment (the same names
//! `shopsync serve` reads), the AWS adapters wired to the engine's ports, and JSON logs.
//!
//! | variable | used by | meaning |
//! | --- | --- | --- |
//! | `SHOPIFY_SHOP` | all | the shop's myshopify domain (webhooks must come from it) |
//! | `SHOPIFY_ACCESS_TOKEN_SECRET_ARN` | worker (webhook: optional, for re-reads) | the Secrets Manager secret holding the Admin API token |
//! | `SHOPIFY_WEBHOOK_SECRET_ARN` | webhook | the Secrets Manager secret holding the HMAC secrets, `{"current": "...", "previous": "..."}` |
//! | `SHOPSYNC_SECRETS_TTL_SECS` | all | how long a secret read is used before it is read again, default 300 |
//! | `SHOPSYNC_SECRETS_ENDPOINT` | all | Secrets Manager endpoint override (local servers) |
//! | `SHOPIFY_ACCESS_TOKEN` | local runs, tests | the token itself, instead of the secret |
//! | `SHOPIFY_WEBHOOK_SECRET`, `SHOPIFY_WEBHOOK_SECRET_PREVIOUS` | local runs, tests | the HMAC secrets themselves |
//! | `SHOPIFY_API_VERSION` | all | Admin API version, default 2026-07 |
//! | `SHOPIFY_ADMIN_ENDPOINT` | all | base URL instead of `https://{shop}` (a proxy, the simulator in tests) |
//! | `SHOPSYNC_TABLE_PREFIX` | all | physical table name prefix, default `shopsync_` |
//! | `SHOPSYNC_DYNAMODB_ENDPOINT` | all | DynamoDB endpoint override (local servers) |
//! | `SHOPSYNC_QUEUE_URL` | all | the jobs queue (the worker enqueues continuations) |
//! | `SHOPSYNC_SQS_ENDPOINT` | all | SQS endpoint override |
//! | `SHOPSYNC_MAX_RECEIVES` | worker, import | the redrive policy's maxReceiveCount, default 5 |
//! | `SHOPSYNC_STEP_RESERVE_SECS` | worker, import | the least time a step keeps before its deadline, default 30 |
//! | `SHOPSYNC_IMPORT_QUEUE_URL` | worker, import | the import queue (the worker hands approved imports on to it; the import function continues there) |
//! | `SHOPSYNC_IMPORT_BUCKET` | import | the bucket Xorosoft files arrive in |
//! | `SHOPSYNC_S3_ENDPOINT` | import | S3 endpoint override (local servers) |
//! | `SHOPSYNC_XOROSOFT_*`, `SHOPSYNC_SHOP_CURRENCY`, `SHOPSYNC_RAIL_*` | import | how files are read, judged and pushed (README, Xorosoft) |

pub mod secrets;
pub mod sqs;

use secrets::{Secret, SecretError, SecretSource, WebhookSecrets};
use shopsync_domain::{Actor, GuardRails};
use shopsync_engine::intake::WebhookIntake;
use shopsync_engine::jobs::{ImportHost, JobQueue, Worker};
use shopsync_engine::ledger::StoreLedger;
use shopsync_shopify::webhook::WebhookConfig;
use shopsync_shopify::{AdminClient, ApiVersion, ClientConfig};
use shopsync_store::Store;
use shopsync_store_dynamo::DynamoStore;
use std::sync::Arc;

/// A setting that is missing or wrong.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A required variable is not set.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// A variable does not parse.
    #[error("{name}: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// A secret could not be read, or is not in its form.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// Where the variables come from (the process environment, or a map in tests).
pub trait Env {
    /// The value of `name`, if set and not empty.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for std::collections::HashMap<&str, &str> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|v| v.to_string())
            .filter(|v| !v.is_empty())
    }
}

fn required(env: &dyn Env, name: &'static str) -> Result<String, SettingsError> {
    env.var(name).ok_or(SettingsError::Missing(name))
}

/// Settings every function reads.
#[derive(Clone)]
pub struct Settings {
    /// The shop's myshopify domain.
    pub shop: String,
    /// Admin API token given directly (local runs, tests), when set.
    pub access_token: Option<String>,
    /// The Secrets Manager secret holding the Admin API token, when set.
    pub access_token_secret: Option<String>,
    /// How long a secret read from Secrets Manager is used.
    pub secrets_ttl: std::time::Duration,
    /// Secrets Manager endpoint override.
    pub secrets_endpoint: Option<String>,
    /// Admin API version.
    pub api_version: ApiVersion,
    /// Base URL of the Admin API instead of `https://{shop}`.
    pub admin_endpoint: Option<String>,
    /// Physical table name prefix.
    pub table_prefix: String,
    /// DynamoDB endpoint override.
    pub dynamodb_endpoint: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("shop", &self.shop)
            .field("access_token", &self.access_token.as_ref().map(|_| "***"))
            .field("access_token_secret", &self.access_token_secret)
            .field("api_version", &self.api_version.to_string())
            .field("table_prefix", &self.table_prefix)
            .field("dynamodb_endpoint", &self.dynamodb_endpoint)
            .finish()
    }
}

impl Settings {
    /// Reads the shared settings.
    pub fn from_env(env: &dyn Env) -> Result<Self, SettingsError> {
        let api_version = match env.var("SHOPIFY_API_VERSION") {
            Some(v) => v
                .parse::<ApiVersion>()
                .map_err(|e| SettingsError::Invalid {
                    name: "SHOPIFY_API_VERSION",
                    reason: e.to_string(),
                })?,
            None => ApiVersion::PINNED,
        };
        let secrets_ttl = match env.var("SHOPSYNC_SECRETS_TTL_SECS") {
            Some(v) => std::time::Duration::from_secs(v.trim().parse().map_err(|e| {
                SettingsError::Invalid {
                    name: "SHOPSYNC_SECRETS_TTL_SECS",
                    reason: format!("`{v}`: {e}"),
                }
            })?),
            None => secrets::DEFAULT_TTL,
        };
        Ok(Self {
            shop: required(env, "SHOPIFY_SHOP")?,
            access_token: env.var("SHOPIFY_ACCESS_TOKEN"),
            access_token_secret: env.var("SHOPIFY_ACCESS_TOKEN_SECRET_ARN"),
            secrets_ttl,
            secrets_endpoint: env.var("SHOPSYNC_SECRETS_ENDPOINT"),
            api_version,
            admin_endpoint: env.var("SHOPIFY_ADMIN_ENDPOINT"),
            table_prefix: env
                .var("SHOPSYNC_TABLE_PREFIX")
                .unwrap_or_else(|| "shopsync_".into()),
            dynamodb_endpoint: env.var("SHOPSYNC_DYNAMODB_ENDPOINT"),
        })
    }

    /// The DynamoDB store.
    pub async fn store(&self) -> Store {
        Store::new(Arc::new(
            DynamoStore::connect(self.dynamodb_endpoint.as_deref(), &self.table_prefix).await,
        ))
    }

    /// The Admin API client, when a token is given directly.
    pub fn client(&self) -> Result<Option<AdminClient>, SettingsError> {
        self.access_token
            .as_deref()
            .map(|token| self.client_with(token))
            .transpose()
    }

    /// The Admin API client with `token`.
    pub fn client_with(&self, token: &str) -> Result<AdminClient, SettingsError> {
        let mut config = ClientConfig::new(self.shop.clone(), token);
        config.api_version = self.api_version;
        config.endpoint = self.admin_endpoint.clone();
        AdminClient::new(config).map_err(|e| SettingsError::Invalid {
            name: "SHOPIFY_ACCESS_TOKEN",
            reason: e.to_string(),
        })
    }

    /// The Admin API token: the secret named by `SHOPIFY_ACCESS_TOKEN_SECRET_ARN`, or the
    /// value of `SHOPIFY_ACCESS_TOKEN`; `None` when neither is set.
    pub fn access_token(&self, source: &Arc<dyn SecretSource>) -> Option<Secret> {
        match (&self.access_token_secret, &self.access_token) {
            (Some(arn), _) => Some(Secret::stored(source.clone(), arn, self.secrets_ttl)),
            (None, Some(token)) => Some(Secret::fixed(token)),
            (None, None) => None,
        }
    }

    /// Where stored secrets are read: Secrets Manager (at `SHOPSYNC_SECRETS_ENDPOINT` when set).
    pub async fn secret_source(&self) -> Arc<dyn SecretSource> {
        Arc::new(secrets::SecretsManager::connect(self.secrets_endpoint.as_deref()).await)
    }
}

/// The jobs queue named by `SHOPSYNC_QUEUE_URL`.
pub async fn queue(env: &dyn Env) -> Result<Arc<dyn JobQueue>, SettingsError> {
    let url = required(env, "SHOPSYNC_QUEUE_URL")?;
    let endpoint = env.var("SHOPSYNC_SQS_ENDPOINT");
    Ok(Arc::new(
        shopsync_queue_sqs::SqsQueue::connect(&url, endpoint.as_deref()).await,
    ))
}

/// The import queue named by `SHOPSYNC_IMPORT_QUEUE_URL`.
pub async fn import_queue(env: &dyn Env) -> Result<Arc<dyn JobQueue>, SettingsError> {
    let url = required(env, "SHOPSYNC_IMPORT_QUEUE_URL")?;
    let endpoint = env.var("SHOPSYNC_SQS_ENDPOINT");
    Ok(Arc::new(
        shopsync_queue_sqs::SqsQueue::connect(&url, endpoint.as_deref()).await,
    ))
}

/// The bucket Xorosoft files arrive in (`SHOPSYNC_IMPORT_BUCKET`).
pub fn import_bucket(env: &dyn Env) -> Result<String, SettingsError> {
    required(env, "SHOPSYNC_IMPORT_BUCKET")
}

/// The webhook secrets: the secret named by `SHOPIFY_WEBHOOK_SECRET_ARN`, or the values of
/// `SHOPIFY_WEBHOOK_SECRET` and `SHOPIFY_WEBHOOK_SECRET_PREVIOUS`.
pub fn webhook_secret(
    env: &dyn Env,
    settings: &Settings,
    source: &Arc<dyn SecretSource>,
) -> Result<Secret, SettingsError> {
    if let Some(arn) = env.var("SHOPIFY_WEBHOOK_SECRET_ARN") {
        return Ok(Secret::stored(source.clone(), arn, settings.secrets_ttl));
    }
    let current = env
        .var("SHOPIFY_WEBHOOK_SECRET")
        .ok_or(SettingsError::Missing("SHOPIFY_WEBHOOK_SECRET_ARN"))?;
    let value = serde_json::json!({
        "current": current,
        "previous": env.var("SHOPIFY_WEBHOOK_SECRET_PREVIOUS"),
    });
    Ok(Secret::fixed(value.to_string()))
}

fn actor(name: &str) -> Result<Actor, SettingsError> {
    Actor::new(name).map_err(|e| SettingsError::Invalid {
        name: "actor",
        reason: e.to_string(),
    })
}

/// The secrets' values a built value was made from, to know when to build it again.
type SecretValues = (String, Option<String>);

/// The webhook function's intake on DynamoDB and SQS, built again whenever a secret it uses
/// (the HMAC secrets, the token for re-reads) has a new value.
pub struct WebhookHost {
    settings: Settings,
    template: WebhookIntake,
    webhook_secret: Secret,
    token: Option<Secret>,
    built: tokio::sync::Mutex<Option<(SecretValues, Arc<WebhookIntake>)>>,
}

impl WebhookHost {
    /// Reads the settings and connects the store and the queue (no secret is read yet).
    pub async fn from_env(env: &dyn Env) -> Result<Self, SettingsError> {
        let source = Settings::from_env(env)?.secret_source().await;
        Self::with_source(env, source).await
    }

    /// As [`WebhookHost::from_env`], with secrets read from `source`.
    pub async fn with_source(
        env: &dyn Env,
        source: Arc<dyn SecretSource>,
    ) -> Result<Self, SettingsError> {
        let settings = Settings::from_env(env)?;
        let webhook_secret = webhook_secret(env, &settings, &source)?;
        let token = settings.access_token(&source);
        let store = settings.store().await;
        let template = WebhookIntake {
            ledger: Arc::new(StoreLedger::new(store.clone())),
            store,
            config: WebhookConfig {
                shop_domain: settings.shop.clone(),
                secret: String::new(),
                previous_secret: None,
            },
            queue: queue(env).await?,
            client: None,
            actor: actor("system:webhooks")?,
            realtime: Default::default(),
        };
        Ok(Self {
            settings,
            template,
            webhook_secret,
            token,
            built: tokio::sync::Mutex::new(None),
        })
    }

    /// The intake with the secrets' current values (read at most once per TTL).
    pub async fn intake(&self) -> Result<Arc<WebhookIntake>, SettingsError> {
        let webhook_text = self.webhook_secret.get().await?;
        let token = match &self.token {
            Some(secret) => Some(secret.get().await?),
            None => None,
        };
        let values = (webhook_text, token);
        let mut built = self.built.lock().await;
        if let Some((made_from, intake)) = built.as_ref() {
            if *made_from == values {
                return Ok(intake.clone());
            }
        }
        let secrets = WebhookSecrets::parse("the webhook secret", &values.0)?;
        let mut intake = self.template.clone();
        intake.config.secret = secrets.current;
        intake.config.previous_secret = secrets.previous;
        intake.client = values
            .1
            .as_deref()
            .map(|token| self.settings.client_with(token))
            .transpose()?;
        let intake = Arc::new(intake);
        *built = Some((values, intake.clone()));
        Ok(intake)
    }
}

/// The worker on DynamoDB and Shopify, built again whenever the token has a new value.
pub struct WorkerHost {
    settings: Settings,
    store: Store,
    rails: GuardRails,
    continuation: Arc<dyn JobQueue>,
    token: Secret,
    built: tokio::sync::Mutex<Option<(String, Arc<Worker>)>>,
    imports: Option<Arc<ImportHost>>,
    actor: &'static str,
    bucket: String,
    /// The redrive policy's receive limit (`SHOPSYNC_MAX_RECEIVES`, default 5).
    pub max_receives: u32,
    /// The least time a step keeps before its deadline (`SHOPSYNC_STEP_RESERVE_SECS`).
    pub step_reserve: std::time::Duration,
}

impl WorkerHost {
    /// Reads the settings and connects the store and the queue (no secret is read yet).
    pub async fn from_env(env: &dyn Env) -> Result<Self, SettingsError> {
        let source = Settings::from_env(env)?.secret_source().await;
        Self::with_source(env, source).await
    }

    /// As [`WorkerHost::from_env`], with secrets read from `source`.
    pub async fn with_source(
        env: &dyn Env,
        source: Arc<dyn SecretSource>,
    ) -> Result<Self, SettingsError> {
        let settings = Settings::from_env(env)?;
        let token = settings
            .access_token(&source)
            .ok_or(SettingsError::Missing("SHOPIFY_ACCESS_TOKEN_SECRET_ARN"))?;
        let max_receives = match env.var("SHOPSYNC_MAX_RECEIVES") {
            Some(v) => v.parse().map_err(|e| SettingsError::Invalid {
                name: "SHOPSYNC_MAX_RECEIVES",
                reason: format!("`{v}`: {e}"),
            })?,
            None => 5,
        };
        let rails = GuardRails::from_settings(|name| env.var(name)).map_err(|reason| {
            SettingsError::Invalid {
                name: "SHOPSYNC_RAIL_*",
                reason,
            }
        })?;
        shopsync_engine::up::bulk_push_min_from(|name| env.var(name)).map_err(|reason| {
            SettingsError::Invalid {
                name: "SHOPSYNC_BULK_PUSH_MIN",
                reason,
            }
        })?;
        let imports = match env.var("SHOPSYNC_IMPORT_QUEUE_URL") {
            Some(_) => Some(Arc::new(ImportHost::HandsOn(import_queue(env).await?))),
            None => None,
        };
        Ok(Self {
            store: settings.store().await,
            continuation: queue(env).await?,
            settings,
            rails,
            token,
            built: tokio::sync::Mutex::new(None),
            imports,
            actor: "system:worker",
            bucket: String::new(),
            max_receives,
            step_reserve: reserve_from_env(env)?,
        })
    }

    /// The host of the import function: it runs imports, reading their files from `blobs`
    /// (the bucket `SHOPSYNC_IMPORT_BUCKET`), and continues them on the import queue.
    pub async fn running_imports(
        mut self,
        env: &dyn Env,
        blobs: Arc<dyn shopsync_engine::blob::Blobs>,
    ) -> Result<Self, SettingsError> {
        let settings =
            shopsync_engine::xorosoft_import::ImportSettings::from_settings(|name| env.var(name))
                .map_err(|reason| SettingsError::Invalid {
                name: "SHOPSYNC_XOROSOFT_*",
                reason,
            })?;
        self.bucket = import_bucket(env)?;
        self.continuation = import_queue(env).await?;
        self.imports = Some(Arc::new(ImportHost::Runs { blobs, settings }));
        self.actor = "system:xorosoft-import";
        Ok(self)
    }

    /// The import bucket (empty for a host that runs no imports).
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The worker with the token's current value (read at most once per TTL).
    pub async fn worker(&self) -> Result<Arc<Worker>, SettingsError> {
        let token = self.token.get().await?;
        let mut built = self.built.lock().await;
        if let Some((made_from, worker)) = built.as_ref() {
            if *made_from == token {
                return Ok(worker.clone());
            }
        }
        let worker = Arc::new(Worker {
            store: self.store.clone(),
            client: self.settings.client_with(&token)?,
            actor: actor(self.actor)?,
            rails: self.rails.clone(),
            continuation: Some(self.continuation.clone()),
            imports: self.imports.clone(),
        });
        *built = Some((token, worker.clone()));
        Ok(worker)
    }
}

/// The least time a step keeps before the invocation's deadline to save its checkpoint,
/// enqueue its successor and answer.
pub const DEFAULT_RESERVE: std::time::Duration = std::time::Duration::from_secs(30);

/// The reserve from `SHOPSYNC_STEP_RESERVE_SECS` (default 30 s; tests set it low to force
/// continuations without waiting).
pub fn reserve_from_env(env: &dyn Env) -> Result<std::time::Duration, SettingsError> {
    match env.var("SHOPSYNC_STEP_RESERVE_SECS") {
        None => Ok(DEFAULT_RESERVE),
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(std::time::Duration::from_secs_f64)
            .ok_or(SettingsError::Invalid {
                name: "SHOPSYNC_STEP_RESERVE_SECS",
                reason: format!("`{v}` is not a number of seconds"),
            }),
    }
}

/// When a step should stop working so that it can save its checkpoint, enqueue its successor
/// and answer before the invocation's deadline (`deadline_ms`: Lambda's, epoch milliseconds):
/// a quarter of the time left, at least 30 s, is kept for that.
pub fn step_deadline(deadline_ms: u64, now: std::time::SystemTime) -> std::time::Instant {
    step_deadline_with(deadline_ms, now, DEFAULT_RESERVE)
}

/// As [`step_deadline`], keeping a quarter of the time left but at least `reserve`.
pub fn step_deadline_with(
    deadline_ms: u64,
    now: std::time::SystemTime,
    reserve: std::time::Duration,
) -> std::time::Instant {
    let now_ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let left = std::time::Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    let margin = (left / 4).max(reserve);
    std::time::Instant::now() + left.saturating_sub(margin)
}

/// JSON logs to stdout (CloudWatch), level from `RUST_LOG` (default info).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(true)
        .without_time()
        .try_init();
}

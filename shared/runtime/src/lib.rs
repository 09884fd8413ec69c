//! What the Lambda functions share: their settings from the environment (the same names
//! `shopsync serve` reads), the AWS adapters wired to the engine's ports, and JSON logs.
//!
//! | variable | used by | meaning |
//! | --- | --- | --- |
//! | `SHOPIFY_SHOP` | all | the shop's myshopify domain (webhooks must come from it) |
//! | `SHOPIFY_ACCESS_TOKEN` | worker (webhook: optional, for re-reads) | Admin API token |
//! | `SHOPIFY_API_VERSION` | all | Admin API version, default 2026-07 |
//! | `SHOPIFY_WEBHOOK_SECRET`, `SHOPIFY_WEBHOOK_SECRET_PREVIOUS` | webhook | HMAC secrets |
//! | `SHOPSYNC_TABLE_PREFIX` | all | physical table name prefix, default `shopsync_` |
//! | `SHOPSYNC_DYNAMODB_ENDPOINT` | all | DynamoDB endpoint override (local servers) |
//! | `SHOPSYNC_QUEUE_URL` | all | the jobs queue (the worker enqueues continuations) |
//! | `SHOPSYNC_SQS_ENDPOINT` | all | SQS endpoint override |
//! | `SHOPSYNC_MAX_RECEIVES` | worker | the redrive policy's maxReceiveCount, default 5 |

use shopsync_domain::{Actor, GuardRails};
use shopsync_engine::intake::WebhookIntake;
use shopsync_engine::jobs::{JobQueue, Worker};
use shopsync_shopify::webhook::{StoreLedger, WebhookConfig};
use shopsync_shopify::{AdminClient, ApiVersion, ClientConfig};
use shopsync_store::{DynamoStore, Store};
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
    /// Admin API token, when set.
    pub access_token: Option<String>,
    /// Admin API version.
    pub api_version: ApiVersion,
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
        Ok(Self {
            shop: required(env, "SHOPIFY_SHOP")?,
            access_token: env.var("SHOPIFY_ACCESS_TOKEN"),
            api_version,
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

    /// The Admin API client, when a token is set.
    pub fn client(&self) -> Result<Option<AdminClient>, SettingsError> {
        let Some(token) = &self.access_token else {
            return Ok(None);
        };
        let mut config = ClientConfig::new(self.shop.clone(), token);
        config.api_version = self.api_version;
        AdminClient::new(config)
            .map(Some)
            .map_err(|e| SettingsError::Invalid {
                name: "SHOPIFY_ACCESS_TOKEN",
                reason: e.to_string(),
            })
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

/// The webhook secrets.
pub fn webhook_config(env: &dyn Env, settings: &Settings) -> Result<WebhookConfig, SettingsError> {
    Ok(WebhookConfig {
        shop_domain: settings.shop.clone(),
        secret: required(env, "SHOPIFY_WEBHOOK_SECRET")?,
        previous_secret: env.var("SHOPIFY_WEBHOOK_SECRET_PREVIOUS"),
    })
}

fn actor(name: &str) -> Result<Actor, SettingsError> {
    Actor::new(name).map_err(|e| SettingsError::Invalid {
        name: "actor",
        reason: e.to_string(),
    })
}

/// The webhook intake on DynamoDB and SQS.
pub async fn webhook_intake(env: &dyn Env) -> Result<WebhookIntake, SettingsError> {
    let settings = Settings::from_env(env)?;
    let config = webhook_config(env, &settings)?;
    let store = settings.store().await;
    Ok(WebhookIntake {
        ledger: Arc::new(StoreLedger::new(store.clone())),
        store,
        config,
        queue: queue(env).await?,
        client: settings.client()?,
        actor: actor("system:webhooks")?,
        realtime: Default::default(),
    })
}

/// The worker on DynamoDB and Shopify, and the redrive policy's receive limit.
pub async fn worker(env: &dyn Env) -> Result<(Worker, u32), SettingsError> {
    let settings = Settings::from_env(env)?;
    let client = settings
        .client()?
        .ok_or(SettingsError::Missing("SHOPIFY_ACCESS_TOKEN"))?;
    let max_receives = match env.var("SHOPSYNC_MAX_RECEIVES") {
        Some(v) => v.parse().map_err(|e| SettingsError::Invalid {
            name: "SHOPSYNC_MAX_RECEIVES",
            reason: format!("`{v}`: {e}"),
        })?,
        None => 5,
    };
    Ok((
        Worker {
            store: settings.store().await,
            client,
            actor: actor("system:worker")?,
            rails: GuardRails::from_settings(|name| env.var(name)).map_err(|reason| {
                SettingsError::Invalid {
                    name: "SHOPSYNC_RAIL_*",
                    reason,
                }
            })?,
            continuation: Some(queue(env).await?),
        },
        max_receives,
    ))
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

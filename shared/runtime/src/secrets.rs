//! Secrets the functions read from AWS Secrets Manager (the template's
//! `SHOPIFY_ACCESS_TOKEN_SECRET_ARN` and `SHOPIFY_WEBHOOK_SECRET_ARN`), each cached for a few
//! minutes, so a rotated value is picked up without a redeploy and an invocation does not pay
//! a Secrets Manager call. Locally and in tests the plain variables (`SHOPIFY_ACCESS_TOKEN`,
//! `SHOPIFY_WEBHOOK_SECRET`) give the value itself.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a secret read from Secrets Manager is used before it is read again, unless
/// `SHOPSYNC_SECRETS_TTL_SECS` says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// After a failed refresh, how long the value read before is used before the next attempt.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// Why a secret could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Secrets Manager did not answer with the value (retry later).
    #[error("secret {id} is unavailable: {reason}")]
    Unavailable {
        /// The secret's ARN or name.
        id: String,
        /// What went wrong.
        reason: String,
    },
    /// The secret's value is not in the form its user needs (fix the secret).
    #[error("secret {id} is malformed: {reason}")]
    Malformed {
        /// The secret's ARN or name.
        id: String,
        /// What is wrong with it (never the value).
        reason: String,
    },
}

/// Where secret values are read.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The current value of the secret `id` (its string value).
    async fn fetch(&self, id: &str) -> Result<String, SecretError>;
}

/// AWS Secrets Manager.
pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManager {
    /// Secrets Manager with the standard AWS configuration (`endpoint` overrides it, e.g. a
    /// local server).
    pub async fn connect(endpoint: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        Self {
            client: aws_sdk_secretsmanager::Client::new(&loader.load().await),
        }
    }
}

#[async_trait]
impl SecretSource for SecretsManager {
    async fn fetch(&self, id: &str) -> Result<String, SecretError> {
        let answer = self
            .client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| SecretError::Unavailable {
                id: id.to_owned(),
                reason: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
            })?;
        answer
            .secret_string()
            .map(str::to_owned)
            .ok_or_else(|| SecretError::Malformed {
                id: id.to_owned(),
                reason: "it has no string value (a binary secret)".into(),
            })
    }
}

struct Cached {
    value: String,
    refresh_at: Instant,
}

/// One secret: a fixed value, or one read from a [`SecretSource`] at most once per TTL.
pub struct Secret {
    kind: SecretKind,
}

enum SecretKind {
    Fixed(String),
    Stored {
        source: Arc<dyn SecretSource>,
        id: String,
        ttl: Duration,
        cached: tokio::sync::Mutex<Option<Cached>>,
    },
}

impl Secret {
    /// A value given directly (local runs and tests).
    pub fn fixed(value: impl Into<String>) -> Self {
        Self {
            kind: SecretKind::Fixed(value.into()),
        }
    }

    /// The secret `id` of `source`, read again once `ttl` has passed since the last read.
    pub fn stored(source: Arc<dyn SecretSource>, id: impl Into<String>, ttl: Duration) -> Self {
        Self {
            kind: SecretKind::Stored {
                source,
                id: id.into(),
                ttl,
                cached: tokio::sync::Mutex::new(None),
            },
        }
    }

    /// The value. A stored secret is read when its cached value is older than the TTL; when
    /// that read fails, the value read before (if any) is used and the read is tried again
    /// after [`RETRY_AFTER_FAILURE`], so a Secrets Manager outage does not stop deliveries.
    pub async fn get(&self) -> Result<String, SecretError> {
        let (source, id, ttl, cached) = match &self.kind {
            SecretKind::Fixed(value) => return Ok(value.clone()),
            SecretKind::Stored {
                source,
                id,
                ttl,
                cached,
            } => (source, id, *ttl, cached),
        };
        let mut cached = cached.lock().await;
        let now = Instant::now();
        if let Some(current) = cached.as_ref().filter(|c| now < c.refresh_at) {
            return Ok(current.value.clone());
        }
        match source.fetch(id).await {
            Ok(value) => {
                *cached = Some(Cached {
                    value: value.clone(),
                    refresh_at: now + ttl,
                });
                Ok(value)
            }
            Err(error) => match cached.as_mut() {
                Some(previous) => {
                    tracing::warn!(secret = %id, %error, "secret refresh failed; the value read before stays in use");
                    previous.refresh_at = now + RETRY_AFTER_FAILURE.min(ttl);
                    Ok(previous.value.clone())
                }
                None => Err(error),
            },
        }
    }
}

/// The webhook secrets: the app's current client secret and, during a rotation, the one
/// before it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecrets {
    /// The current secret.
    pub current: String,
    /// The previous secret, accepted until the rotation is over.
    pub previous: Option<String>,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("current", &"***")
            .field("previous", &self.previous.as_ref().map(|_| "***"))
            .finish()
    }
}

impl WebhookSecrets {
    /// Reads the secret's value: JSON `{"current": "...", "previous": "..."}` (previous
    /// optional; empty means none), or a plain string that is the current secret alone.
    pub fn parse(id: &str, text: &str) -> Result<Self, SecretError> {
        let malformed = |reason: &str| SecretError::Malformed {
            id: id.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = text.trim();
        if !trimmed.starts_with('{') {
            if trimmed.is_empty() {
                return Err(malformed("it is empty"));
            }
            return Ok(Self {
                current: trimmed.to_owned(),
                previous: None,
            });
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Stored {
            current: String,
            #[serde(default)]
            previous: Option<String>,
        }
        let stored: Stored = serde_json::from_str(trimmed).map_err(|e| {
            malformed(&format!(
                "expected {{\"current\": \"...\", \"previous\": \"...\"}} (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if stored.current.trim().is_empty() {
            return Err(malformed("\"current\" is empty"));
        }
        Ok(Self {
            current: stored.current,
            previous: stored.previous.filter(|p| !p.trim().is_empty()),
        })
    }
}

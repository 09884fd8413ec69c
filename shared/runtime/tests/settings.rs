//! Settings from the environment: what is required is named when missing, bad values say
//! why, and secrets never show in debug output.

use shopsync_runtime::{Settings, SettingsError};
use std::collections::HashMap;

#[test]
fn missing_and_bad_settings_are_named() {
    let empty: HashMap<&str, &str> = HashMap::new();
    let err = Settings::from_env(&empty).unwrap_err();
    assert!(
        matches!(err, SettingsError::Missing("SHOPIFY_SHOP")),
        "{err}"
    );
    let old = HashMap::from([
        ("SHOPIFY_SHOP", "s.myshopify.com"),
        ("SHOPIFY_API_VERSION", "2023-01"),
    ]);
    let err = Settings::from_env(&old).unwrap_err();
    assert!(
        err.to_string().starts_with("SHOPIFY_API_VERSION: "),
        "{err}"
    );
}

#[test]
fn defaults_apply_and_the_token_is_masked() {
    let env = HashMap::from([
        ("SHOPIFY_SHOP", "s.myshopify.com"),
        ("SHOPIFY_ACCESS_TOKEN", "shpat_secret_value"),
        ("SHOPSYNC_TABLE_PREFIX", ""),
    ]);
    let settings = Settings::from_env(&env).unwrap();
    assert_eq!(settings.table_prefix, "shopsync_", "empty means unset");
    assert_eq!(settings.api_version.to_string(), "2026-07");
    let shown = format!("{settings:?}");
    assert!(
        !shown.contains("shpat_secret_value") && shown.contains("***"),
        "{shown}"
    );
    assert!(settings.client().unwrap().is_some());
}

mod secrets {
    use async_trait::async_trait;
    use shopsync_runtime::secrets::{Secret, SecretError, SecretSource, WebhookSecrets};
    use shopsync_runtime::{WebhookHost, WorkerHost};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Secrets in memory: reads are counted, values can change, and the source can fail.
    #[derive(Default)]
    struct MemorySecrets {
        values: Mutex<HashMap<String, String>>,
        reads: AtomicUsize,
        down: std::sync::atomic::AtomicBool,
    }

    impl MemorySecrets {
        fn put(&self, id: &str, value: &str) {
            self.values
                .lock()
                .unwrap()
                .insert(id.to_owned(), value.to_owned());
        }
    }

    #[async_trait]
    impl SecretSource for MemorySecrets {
        async fn fetch(&self, id: &str) -> Result<String, SecretError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(SecretError::Unavailable {
                    id: id.into(),
                    reason: "down".into(),
                });
            }
            self.values
                .lock()
                .unwrap()
                .get(id)
                .cloned()
                .ok_or_else(|| SecretError::Unavailable {
                    id: id.into(),
                    reason: "no such secret".into(),
                })
        }
    }

    #[tokio::test]
    async fn a_stored_secret_is_read_once_per_ttl_and_its_new_value_is_picked_up() {
        let source = Arc::new(MemorySecrets::default());
        source.put("token", "first");
        let secret = Secret::stored(source.clone(), "token", Duration::from_millis(200));
        for _ in 0..5 {
            assert_eq!(secret.get().await.unwrap(), "first");
        }
        assert_eq!(
            source.reads.load(Ordering::SeqCst),
            1,
            "read once within the TTL"
        );
        source.put("token", "rotated");
        assert_eq!(secret.get().await.unwrap(), "first", "cached until the TTL");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(secret.get().await.unwrap(), "rotated");
        assert_eq!(source.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_value_read_before_and_no_value_is_an_error() {
        let source = Arc::new(MemorySecrets::default());
        source.put("token", "kept");
        let secret = Secret::stored(source.clone(), "token", Duration::from_millis(50));
        assert_eq!(secret.get().await.unwrap(), "kept");
        source.down.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(secret.get().await.unwrap(), "kept");
        let never_read = Secret::stored(source.clone(), "other", Duration::from_secs(60));
        assert!(matches!(
            never_read.get().await,
            Err(SecretError::Unavailable { .. })
        ));
        assert_eq!(Secret::fixed("plain").get().await.unwrap(), "plain");
    }

    #[test]
    fn webhook_secrets_read_as_json_or_as_one_plain_secret_and_never_show() {
        let both = WebhookSecrets::parse("s", r#"{"current": "new", "previous": "old"}"#).unwrap();
        assert_eq!(
            (both.current.as_str(), both.previous.as_deref()),
            ("new", Some("old"))
        );
        let rotated_out =
            WebhookSecrets::parse("s", r#"{"current": "new", "previous": ""}"#).unwrap();
        assert_eq!(
            rotated_out.previous, None,
            "an empty previous secret is none"
        );
        let plain = WebhookSecrets::parse("s", "just-this\n").unwrap();
        assert_eq!(
            (plain.current.as_str(), plain.previous),
            ("just-this", None)
        );
        for bad in [
            "",
            "   ",
            r#"{"current": ""}"#,
            r#"{"curent": "typo-secret"}"#,
            "{not json",
        ] {
            let err = WebhookSecrets::parse("s", bad).unwrap_err();
            assert!(matches!(err, SecretError::Malformed { .. }), "{bad}: {err}");
            assert!(!err.to_string().contains("typo-secret"), "{err}");
        }
        let shown = format!("{both:?}");
        assert!(!shown.contains("new") && !shown.contains("old"), "{shown}");
    }

    fn lambda_env() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("SHOPIFY_SHOP", "s.myshopify.com"),
            ("SHOPIFY_WEBHOOK_SECRET_ARN", "arn:webhook"),
            ("SHOPIFY_ACCESS_TOKEN_SECRET_ARN", "arn:token"),
            ("SHOPSYNC_SECRETS_TTL_SECS", "0"),
            ("SHOPSYNC_QUEUE_URL", "http://127.0.0.1:9/queue/jobs"),
            ("SHOPSYNC_SQS_ENDPOINT", "http://127.0.0.1:9"),
            ("SHOPSYNC_DYNAMODB_ENDPOINT", "http://127.0.0.1:9"),
        ])
    }

    #[tokio::test]
    async fn the_webhook_host_takes_rotated_secrets_without_a_restart() {
        let source = Arc::new(MemorySecrets::default());
        source.put("arn:webhook", r#"{"current": "one"}"#);
        source.put("arn:token", "shpat_one");
        let host = WebhookHost::with_source(&lambda_env(), source.clone())
            .await
            .unwrap();
        let first = host.intake().await.unwrap();
        assert_eq!(first.config.secret, "one");
        assert_eq!(first.config.previous_secret, None);
        assert!(first.client.is_some(), "re-reads use the stored token");
        let again = host.intake().await.unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "unchanged secrets reuse the intake"
        );
        source.put("arn:webhook", r#"{"current": "two", "previous": "one"}"#);
        let rotated = host.intake().await.unwrap();
        assert_eq!(rotated.config.secret, "two");
        assert_eq!(rotated.config.previous_secret.as_deref(), Some("one"));
    }

    #[tokio::test]
    async fn the_worker_host_needs_a_token_and_takes_a_rotated_one() {
        let mut env = lambda_env();
        env.remove("SHOPIFY_ACCESS_TOKEN_SECRET_ARN");
        let source: Arc<MemorySecrets> = Arc::new(MemorySecrets::default());
        let missing = WorkerHost::with_source(&env, source.clone()).await.err();
        assert!(
            missing
                .map(|e| e.to_string())
                .is_some_and(|e| e.contains("SHOPIFY_ACCESS_TOKEN_SECRET_ARN")),
            "the missing token is named"
        );
        let env = lambda_env();
        let host = WorkerHost::with_source(&env, source.clone()).await.unwrap();
        assert!(
            host.worker().await.is_err(),
            "an unreadable token is an error"
        );
        source.put("arn:token", "shpat_one");
        let first = host.worker().await.unwrap();
        assert!(Arc::ptr_eq(&first, &host.worker().await.unwrap()));
        source.put("arn:token", "shpat_two");
        assert!(!Arc::ptr_eq(&first, &host.worker().await.unwrap()));
        assert_eq!(host.max_receives, 5);
    }
}

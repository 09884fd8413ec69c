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

//! Where the store is: the embedded default, or DynamoDB.

use clap::{Args, ValueEnum};
use shopsync_store::ItemStore;
use shopsync_store_dynamo::DynamoStore;
use shopsync_store_sqlite::SqliteStore;
use std::path::PathBuf;
use std::sync::Arc;

/// Which backend holds the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// The embedded store: one SQLite file in the data directory.
    Embedded,
    /// DynamoDB (AWS credentials and region from the environment).
    Dynamodb,
}

/// Store options shared by every command.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Backend (default: embedded; `--endpoint` implies dynamodb).
    #[arg(long, env = "SHOPSYNC_STORE", value_enum)]
    store: Option<StoreKind>,
    /// Data directory of the embedded store.
    #[arg(
        long = "data",
        env = "SHOPSYNC_DATA_DIR",
        default_value = "shopsync-data"
    )]
    data: PathBuf,
    /// DynamoDB endpoint (e.g. a local server at http://127.0.0.1:5000).
    #[arg(long, env = "SHOPSYNC_DYNAMODB_ENDPOINT")]
    endpoint: Option<String>,
    /// Prefix of physical table names.
    #[arg(long, env = "SHOPSYNC_TABLE_PREFIX", default_value = "shopsync_")]
    table_prefix: String,
}

impl StoreArgs {
    fn kind(&self) -> StoreKind {
        match (self.store, &self.endpoint) {
            (Some(kind), _) => kind,
            (None, Some(_)) => StoreKind::Dynamodb,
            (None, None) => StoreKind::Embedded,
        }
    }

    /// Opens the chosen backend.
    pub async fn open(&self) -> anyhow::Result<Arc<dyn ItemStore>> {
        Ok(match self.kind() {
            StoreKind::Embedded => Arc::new(SqliteStore::open(&self.data, &self.table_prefix)?),
            StoreKind::Dynamodb => {
                Arc::new(DynamoStore::connect(self.endpoint.as_deref(), &self.table_prefix).await)
            }
        })
    }

    /// The data directory (the embedded store's, and where local files go).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data
    }

    /// A one-line description for operators.
    pub fn describe(&self) -> String {
        match self.kind() {
            StoreKind::Embedded => format!(
                "embedded store in {} (table prefix {})",
                self.data.display(),
                self.table_prefix
            ),
            StoreKind::Dynamodb => format!(
                "DynamoDB at {} (table prefix {})",
                self.endpoint
                    .as_deref()
                    .unwrap_or("the AWS default endpoint"),
                self.table_prefix
            ),
        }
    }
}

/// Where Shopify is: a real store (`SHOPIFY_SHOP` + `SHOPIFY_ACCESS_TOKEN`), or the seeded
/// simulator started in-process when no token is set.
#[derive(Debug, Clone, Args)]
pub struct ShopifyArgs {
    /// The shop's myshopify domain.
    #[arg(
        long,
        env = "SHOPIFY_SHOP",
        default_value = "shopsync-dev.myshopify.com"
    )]
    pub shop: String,
    /// Admin API access token; without it the simulator stands in for Shopify.
    #[arg(
        long = "access-token",
        env = "SHOPIFY_ACCESS_TOKEN",
        hide_env_values = true
    )]
    pub access_token: Option<String>,
    /// Admin API version (2026-04 or later).
    #[arg(long, env = "SHOPIFY_API_VERSION", default_value = "2026-07")]
    pub api_version: String,
    /// Products the simulator is seeded with.
    #[arg(long, env = "SHOPSYNC_SIM_PRODUCTS", default_value_t = 50)]
    pub sim_products: usize,
}

/// The Shopify a command talks to; keeps the simulator alive while it runs.
pub struct ShopifyTarget {
    /// The client.
    pub client: shopsync_shopify::AdminClient,
    /// The simulator, when one stands in for Shopify.
    pub _simulator: Option<shopsync_shopify_sim::SimHandle>,
    /// A line for operators (no secrets).
    pub description: String,
}

impl ShopifyArgs {
    /// Connects to the real store, or starts the seeded simulator (signing its webhooks with
    /// `webhook_secret` when given).
    pub async fn connect(&self, webhook_secret: Option<&str>) -> anyhow::Result<ShopifyTarget> {
        let version: shopsync_shopify::ApiVersion = self.api_version.parse()?;
        match self.access_token.as_deref().filter(|t| !t.is_empty()) {
            Some(token) => {
                let mut config = shopsync_shopify::ClientConfig::new(self.shop.clone(), token);
                config.api_version = version;
                Ok(ShopifyTarget {
                    client: shopsync_shopify::AdminClient::new(config)?,
                    _simulator: None,
                    description: format!("Shopify store {} (API {version}, token ***)", self.shop),
                })
            }
            None => {
                let sim = shopsync_shopify_sim::Simulator::start(
                    shopsync_shopify_sim::SimConfig {
                        shop_domain: self.shop.clone(),
                        products: self.sim_products,
                        webhook_secret: webhook_secret.map(str::to_owned).unwrap_or_else(|| {
                            shopsync_shopify_sim::SimConfig::default().webhook_secret
                        }),
                        ..Default::default()
                    },
                    "127.0.0.1:0".parse()?,
                )
                .await?;
                let mut config = sim.client_config();
                config.api_version = version;
                Ok(ShopifyTarget {
                    client: shopsync_shopify::AdminClient::new(config)?,
                    description: format!(
                        "Shopify simulator at {} ({} seeded products; set SHOPIFY_ACCESS_TOKEN for a real store)",
                        sim.url, self.sim_products
                    ),
                    _simulator: Some(sim),
                })
            }
        }
    }
}

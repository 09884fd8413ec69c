//! Where the store is: the embedded default, or DynamoDB.

use clap::{Args, ValueEnum};
use shopsync_store::{DynamoStore, ItemStore, SqliteStore};
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

//! Storage for shopsync: every table defined once ([`schema`]), a backend-neutral item model
//! with DynamoDB's semantics ([`item`], [`backend`]), two backends (DynamoDB and an embedded
//! SQLite file) and the typed repository the engine uses ([`repo`]).

pub mod backend;
pub mod compliance;
pub mod dynamo;
pub mod item;
mod logsync;
pub mod marks;
pub mod migrate;
mod pcache;
pub mod records;
pub mod repo;
pub mod schema;
pub mod sqlite;
mod vfs;

pub use backend::{CancelReason, ItemStore, StoreError, TableState};
pub use dynamo::DynamoStore;
pub use item::{
    Attrs, Condition, Item, Key, Page, PageToken, Query, Scalar, SortCondition, WriteOp,
};
pub use records::Record;
pub use repo::{
    IdempotencyStart, IdempotencyState, Paged, ProductCommit, ReplaceError, RepoError, Store,
};
pub use schema::{Table, TableDef};
pub use sqlite::{Durability, SqliteStore};

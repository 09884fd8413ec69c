//! The storage port of shopsync: every table defined once ([`schema`]), a backend-neutral item
//! model with DynamoDB's semantics ([`item`], [`backend`]), the typed repository the engine
//! uses ([`repo`]) and the migration ([`migrate`]). The two backends are crates of their own
//! (`shopsync-store-dynamo`, `shopsync-store-sqlite`), so a Lambda binary links only DynamoDB's.

pub mod backend;
pub mod compliance;
pub mod item;
pub mod marks;
pub mod migrate;
pub mod records;
pub mod repo;
pub mod schema;

pub use backend::{CancelReason, ItemStore, StoreError, TableState};
pub use item::{
    Attrs, Condition, Item, Key, Page, PageToken, Query, Scalar, SortCondition, WriteOp,
};
pub use records::Record;
pub use repo::{
    IdempotencyStart, IdempotencyState, Paged, ProductCommit, ReplaceError, RepoError, Store,
};
pub use schema::{Table, TableDef};

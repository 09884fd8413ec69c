//! The pure domain of shopsync: every entity of the enhanced sync schema, their status
//! machines, field-level diff, three-way merge and the field ownership policy.
//!
//! No I/O, no async, no AWS types: everything here is a plain value or a pure function.

pub mod access;
pub mod category;
pub mod compliance;
pub mod conflict;
pub mod edit;
pub mod fields;
pub mod ids;
pub mod merge;
pub mod money;
pub mod operation;
pub mod performance;
pub mod policy;
pub mod product;
pub mod rails;
pub mod restore;
pub mod rollback;
pub mod staging;
pub mod status;
pub mod testing;
pub mod time;
pub mod version;
pub mod xorosoft;

pub use access::{Identity, IdentityError, Role};
pub use category::{Category, CategoryContent, CategoryKind};
pub use compliance::{ComplianceRequest, ComplianceStatus, ComplianceTopic};
pub use conflict::{ConflictStatus, ConflictType, Resolution, ResolutionMethod, SyncConflict};
pub use edit::{apply_edit, check_barcode, EditRefused, ProductEdit, VariantEdit, VariantRef};
pub use fields::{ChangeData, FieldChange, FieldPath, Fields, FieldsError};
pub use ids::*;
pub use merge::{three_way, ConflictValues, FieldOutcome, Merge, Side};
pub use money::{Money, Quantity};
pub use operation::{
    OperationStatistics, OperationStatus, OperationType, SyncDirection, SyncOperation,
};
pub use performance::{Stage, SyncPerformanceLog};
pub use policy::{Decision, FieldKind, FieldRule, Owner, OwnershipPolicy, Severity, Strategy};
pub use product::{
    LockError, LockState, Product, ProductContent, ProductOption, ProductStatus, Sku, Variant,
};
pub use rails::{ChangeFacts, GuardRails, PlanSummary, Verdict};
pub use rollback::{
    BackupData, BackupRef, CategoryRef, RestoredCategory, RestoredProduct, RollbackRequest,
    RollbackStatus, RollbackType, SyncRollback,
};
pub use staging::{ChangeType, ProductsStaging, ShopifySource, StagingStatus};
pub use status::{IllegalTransition, StatusMachine};
pub use version::{CategoryVersion, ChangeSource, ProductVersion, VersionStamp};
pub use xorosoft::{
    normalise_barcode, normalise_sku, ImportChunk, ImportObject, ImportRowError, ImportedItem,
    ItemLink, LinkedBy, XorosoftProduct, XorosoftStatistics, XorosoftSyncLog, XorosoftSyncStatus,
    XorosoftSyncType,
};

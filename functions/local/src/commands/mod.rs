//! The operator's commands that act on records, one file per subcommand: `operation`,
//! `conflicts` and `product`. Each calls the engine functions the admin API's routes call.

pub mod conflicts;
pub mod operation;
pub mod product;

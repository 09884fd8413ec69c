//! The `shopsync` binary driven as people and Shopify drive it: its commands, and `serve`
//! over real HTTP. One test binary (each file under `tests/` would be one of its own).

mod common;

mod bench_cli;
mod import_cli;
mod migrate;
mod operation_cli;
mod people;
mod people_cli;
mod serve;
mod serve_e2e;

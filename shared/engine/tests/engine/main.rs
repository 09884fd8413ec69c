//! The engine's integration suite, one test binary (each file under `tests/` would be a
//! binary of its own, linked separately). Every case runs twice: on the embedded store, and
//! on DynamoDB at moto's server (`#[ignore]`d in a plain `cargo test`; `tests/run.sh` starts
//! the server and runs them, and a missing endpoint fails them, never skips).

/// A test case run on each backend: `NAME::embedded` and `NAME::dynamodb`. The case's
/// `common::setup` makes its store on the backend the run is for.
macro_rules! on_both_stores {
    ($(#[doc = $doc:literal])* async fn $name:ident() $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn case() $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn embedded() {
                crate::common::on(crate::common::Backend::Embedded, case()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            #[ignore = "needs moto's server: run tests/run.sh"]
            async fn dynamodb() {
                crate::common::on(crate::common::Backend::Dynamodb, case()).await
            }
        }
    };
}

mod common;

mod approval;
mod bidirectional;
mod collections;
mod down_sync;
mod edit;
mod intake;
mod jobs;
mod realtime;
mod realtime_day;
mod reconcile;
mod resolve;
mod rollback;
mod rollback_property;
mod staged_up;
mod steps;
mod up_sync;
mod xorosoft;

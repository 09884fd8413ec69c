//! Lambda entry point of `rollback`.

#[global_allocator]
static ALLOCATOR: shopsync_alloc::MiMalloc = shopsync_alloc::MiMalloc;

use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shopsync_runtime::init_logs();
    let state = rollback_function::state_from_env(&shopsync_runtime::ProcessEnv).await?;
    let router = rollback_function::router(state);
    let router = &router;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, std::convert::Infallible>(rollback_function::handle(router, request).await)
    }))
    .await
}

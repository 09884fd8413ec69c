//! Lambda entry point of `shopify-webhook`.

#[global_allocator]
static ALLOCATOR: shopsync_alloc::MiMalloc = shopsync_alloc::MiMalloc;

use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shopsync_runtime::init_logs();
    let intake = shopsync_runtime::webhook_intake(&shopsync_runtime::ProcessEnv).await?;
    let intake = &intake;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, std::convert::Infallible>(shopify_webhook::handle(intake, request).await)
    }))
    .await
}

//! Lambda entry point of `shopify-webhook`.

#[global_allocator]
static ALLOCATOR: shopsync_alloc::MiMalloc = shopsync_alloc::MiMalloc;

use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shopsync_runtime::init_logs();
    let host = shopsync_runtime::WebhookHost::from_env(&shopsync_runtime::ProcessEnv).await?;
    let host = &host;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, std::convert::Infallible>(shopify_webhook::handle_with(host, request).await)
    }))
    .await
}

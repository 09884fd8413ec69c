//! Lambda entry point of `scheduled-sync`.

#[global_allocator]
static ALLOCATOR: shopsync_alloc::MiMalloc = shopsync_alloc::MiMalloc;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shopsync_runtime::init_logs();
    let queue = shopsync_runtime::queue(&shopsync_runtime::ProcessEnv).await?;
    let queue = &queue;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let done = scheduled_sync::handle(
            queue.as_ref(),
            &event.payload,
            &event.context.request_id,
            chrono::Utc::now(),
        )
        .await?;
        let queued: Vec<_> = done
            .messages
            .iter()
            .map(|m| serde_json::json!({ "id": m.id, "job": m.job }))
            .collect();
        Ok::<_, Error>(serde_json::json!({ "queued": queued }))
    }))
    .await
}

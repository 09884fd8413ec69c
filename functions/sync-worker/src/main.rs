//! Lambda entry point of `sync-worker`.

#[global_allocator]
static ALLOCATOR: shopsync_alloc::MiMalloc = shopsync_alloc::MiMalloc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shopsync_runtime::init_logs();
    let host = shopsync_runtime::WorkerHost::from_env(&shopsync_runtime::ProcessEnv).await?;
    let host = &host;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        // Without the token nothing can run: the invocation fails and every message of the
        // batch comes back after its visibility timeout.
        let worker = host.worker().await?;
        let deadline = sync_worker::step_deadline_with(
            event.context.deadline,
            std::time::SystemTime::now(),
            host.step_reserve,
        );
        Ok::<_, Error>(
            sync_worker::handle(&worker, &event.payload, host.max_receives, Some(deadline)).await,
        )
    }))
    .await
}

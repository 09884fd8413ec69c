//! Lambda entry point of `sync-worker`.

#[global_allocator]
static ALLOCATOR: shopsync_alloc::MiMalloc = shopsync_alloc::MiMalloc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shopsync_runtime::init_logs();
    let (worker, max_receives) = shopsync_runtime::worker(&shopsync_runtime::ProcessEnv).await?;
    let worker = &worker;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline =
            sync_worker::step_deadline(event.context.deadline, std::time::SystemTime::now());
        Ok::<_, Error>(
            sync_worker::handle(worker, &event.payload, max_receives, Some(deadline)).await,
        )
    }))
    .await
}

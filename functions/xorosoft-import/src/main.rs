//! Lambda entry point of `xorosoft-import`: SQS batches from the import queue (S3's
//! notifications and the function's own continuations), or an S3 event invoked directly.

#[global_allocator]
static ALLOCATOR: shopsync_alloc::MiMalloc = shopsync_alloc::MiMalloc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use shopsync_runtime::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shopsync_runtime::init_logs();
    let env = shopsync_runtime::ProcessEnv;
    let bucket = shopsync_runtime::import_bucket(&env)?;
    let blobs =
        shopsync_blob_s3::S3Blobs::connect(&bucket, env.var("SHOPSYNC_S3_ENDPOINT").as_deref())
            .await;
    let host = shopsync_runtime::WorkerHost::from_env(&env)
        .await?
        .running_imports(&env, std::sync::Arc::new(blobs))
        .await?;
    let host = &host;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // Without the token nothing can run: the invocation fails and the batch comes back.
        let worker = host.worker().await?;
        let deadline = shopsync_runtime::step_deadline_with(
            event.context.deadline,
            std::time::SystemTime::now(),
            host.step_reserve,
        );
        let from_sqs = event
            .payload
            .pointer("/Records/0/eventSource")
            .and_then(Value::as_str)
            == Some("aws:sqs");
        if from_sqs {
            let batch: SqsEvent = serde_json::from_value(event.payload)?;
            let response = xorosoft_import::handle(
                &worker,
                host.bucket(),
                &batch,
                host.max_receives,
                Some(deadline),
            )
            .await;
            return Ok::<Value, Error>(serde_json::to_value(response)?);
        }
        xorosoft_import::handle_direct(&worker, host.bucket(), &event.payload, Some(deadline))
            .await
            .map_err(Error::from)?;
        Ok(Value::Null)
    }))
    .await
}

//! The production path end to end on moto's server: tables provisioned by `migrate`, the jobs
//! queue and its dead-letter queue by `SqsQueue::provision`, the Shopify secrets in Secrets
//! Manager; then the real handlers of `functions/`, built from the environment as in Lambda
//! (`WebhookHost`, `WorkerHost`, `shopsync_runtime::queue`), invoked with events in the shapes
//! AWS sends (aws_lambda_events' samples). moto invokes no Lambda: each test plays the event
//! source mapping (receive, invoke, delete what succeeded) itself.

mod admin;
mod aws;
mod imports;
mod journeys;

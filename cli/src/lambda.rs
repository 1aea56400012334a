//! The AWS Lambda entry point: the old job's event in, its response out. Glue only: the event
//! and the environment become a run config (afresh at every invocation), one library call runs
//! it.

use batch_job_aurora::config::unix_now;
use batch_job_aurora::invocation::{InvocationEvent, InvocationResponse, invocation_config};
use lambda_runtime::{Error, LambdaEvent, service_fn};

async fn handle(event: LambdaEvent<serde_json::Value>) -> Result<InvocationResponse, Error> {
    // A scheduled event carries keys of its own; `null` or `{}` means every default.
    let event: InvocationEvent = match event.payload {
        serde_json::Value::Null => InvocationEvent::default(),
        payload => serde_json::from_value(payload)?,
    };
    let config = invocation_config(&event, |name| std::env::var(name).ok(), unix_now()).await?;
    let summary = batch_job_aurora::run(config).await?;
    tracing::info!(summary = %serde_json::to_string(&summary)?, "run finished");
    if !summary.completed() {
        // A type or the source stopped early: fail the invocation so that it is retried and
        // alarmed on; what was stored stays stored, and catch-up fills the rest.
        return Err(format!("run did not complete: {}", summary.table()).into());
    }
    Ok(InvocationResponse::from(&summary))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BATCH_JOB_AURORA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .without_time()
        .init();
    lambda_runtime::run(service_fn(handle)).await
}

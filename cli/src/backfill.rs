//! `batch-job-aurora backfill`: a backfill's plan run on this machine, N shards at once. Each
//! shard is one run resolved like any other (`resolve`, with `backfill: true`), so it skips
//! what the run log says is loaded, as the Lambda does: a killed backfill resumes where it
//! stopped. Progress is one line per shard and type on stderr; the totals per type at the end.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use batch_job_aurora::backfill::Shard;
use batch_job_aurora::environment::{Environment, from_env};
use batch_job_aurora::hooks::{Interrupt, RunHooks};
use batch_job_aurora::resolve::{Origin, RunRequest, resolve};
use batch_job_aurora::window::unix_now;
use batch_job_aurora::{Job, RunError, RunSummary};

use crate::BackfillArgs;

/// How one shard ended.
enum Ended {
    /// Every type loaded (some perhaps skipped: loaded already).
    Succeeded(Box<RunSummary>),
    /// Still not complete after every attempt.
    Failed(String),
    /// A signal stopped the backfill.
    Interrupted(String),
}

pub fn run(args: BackfillArgs) -> Result<ExitCode> {
    let request = args.plan.request()?;
    let shards = batch_job_aurora::backfill::plan(&request)?;
    let environment = from_env(|name| std::env::var(name).ok())?;
    let args = Arc::new(args);
    let environment = Arc::new(environment);
    let first = resolve(shard_request(&args, &shards[0]), &environment, unix_now())?;
    let job = Arc::new(Job::prepare_from(&first.plugins)?);
    job.ensure_types_served(Some(&request.types))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let interrupt = Interrupt::default();
    runtime.spawn(crate::raise_on_signals(interrupt.clone()));
    let started = Instant::now();
    let count = shards.len();
    eprintln!(
        "backfill: {count} shards of {} h, {} at once",
        request.shard_hours, args.parallel
    );
    let ended = runtime.block_on(async {
        let permits = Arc::new(tokio::sync::Semaphore::new(args.parallel));
        let ended_shards = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for (index, shard) in shards.into_iter().enumerate() {
            let (permits, job, args, environment, interrupt, ended_shards) = (
                Arc::clone(&permits),
                Arc::clone(&job),
                Arc::clone(&args),
                Arc::clone(&environment),
                interrupt.clone(),
                Arc::clone(&ended_shards),
            );
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let paused = args.pause_after_shards.is_some_and(|after| {
                    ended_shards.load(std::sync::atomic::Ordering::SeqCst) >= after
                });
                if paused {
                    std::future::pending::<()>().await;
                }
                let ended = run_shard(&job, &args, &environment, &shard, &interrupt).await;
                report(index, count, &shard, &ended);
                let now_ended = ended_shards.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                if args.pause_after_shards == Some(now_ended) {
                    eprintln!("paused");
                }
                ended
            });
        }
        let mut ended = Vec::new();
        while let Some(result) = tasks.join_next().await {
            ended.push(result.map_err(|error| anyhow::anyhow!("a shard's task failed: {error}"))?);
        }
        job.close().await;
        anyhow::Ok(ended)
    })?;
    let mut totals = RunSummary::default();
    let (mut succeeded, mut skipped, mut failed) = (0, 0, 0);
    for shard in &ended {
        match shard {
            Ended::Succeeded(summary) => {
                if summary.types.is_empty() {
                    skipped += 1;
                } else {
                    succeeded += 1;
                }
                for (type_name, counts) in &summary.types {
                    let total = totals.type_mut(type_name);
                    total.inserted += counts.inserted;
                    total.duplicates += counts.duplicates;
                    total.refused += counts.refused;
                    total.failed += counts.failed;
                }
            }
            Ended::Failed(_) => failed += 1,
            Ended::Interrupted(signal) => {
                eprintln!("backfill: interrupted by {signal}; run it again to resume");
                runtime.shutdown_background();
                return Ok(ExitCode::from(if signal == "SIGINT" { 130 } else { 143 }));
            }
        }
    }
    totals.total();
    print!("{}", totals.table());
    eprintln!(
        "backfill: {succeeded} shards loaded, {skipped} skipped (loaded already), {failed} failed, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// The run a shard asks for, as the Lambda would resolve its event.
fn shard_request(args: &BackfillArgs, shard: &Shard) -> RunRequest {
    RunRequest {
        origin: Origin::LocalRunner,
        source: args.source.clone(),
        database: args.database.clone(),
        plugins: args.plugins.plugins.clone(),
        types: Some(shard.types.clone()),
        from: Some(shard.timestamp_from),
        to: Some(shard.timestamp_to),
        catch_up: Some(false),
        slack_channels: args.lookups.slack_channels.clone(),
        event_codes: args.lookups.event_codes.clone(),
        limits: Some(args.sandbox.limits()),
        deadline: args
            .shard_deadline
            .map(|seconds| Instant::now() + Duration::from_secs(seconds)),
        compile_cache: args.compile_cache.clone(),
        backfill: shard.backfill,
        on_existing: shard.on_existing,
        ..RunRequest::default()
    }
}

/// Runs a shard until it completes, at most `--shard-attempts` times; a retry of a shard
/// stopped at its deadline reads only what is not loaded yet.
async fn run_shard(
    job: &Job,
    args: &BackfillArgs,
    environment: &Environment,
    shard: &Shard,
    interrupt: &Interrupt,
) -> Ended {
    let mut last = String::new();
    for _ in 0..args.shard_attempts {
        let config = match resolve(shard_request(args, shard), environment, unix_now()) {
            Ok(config) => config,
            Err(error) => return Ended::Failed(batch_job_aurora::error::chain(&error)),
        };
        let hooks = RunHooks {
            interrupt: Some(interrupt.clone()),
            ..RunHooks::default()
        };
        match job.run(config.run, hooks).await {
            Ok(summary) if summary.completed() => return Ended::Succeeded(Box::new(summary)),
            Ok(summary) => {
                last = batch_job_aurora::invocation::require_completed(&summary)
                    .err()
                    .map(|failure| format!("{}: {}", failure.kind, failure.message))
                    .unwrap_or_default();
            }
            Err(RunError::Interrupted(signal)) => return Ended::Interrupted(signal),
            Err(error) => last = batch_job_aurora::error::chain(&error),
        }
    }
    Ended::Failed(last)
}

/// One line per shard, and one per type in it, on stderr.
fn report(index: usize, count: usize, shard: &Shard, ended: &Ended) {
    let at = format!(
        "shard {}/{count} [{}, {}]",
        index + 1,
        shard.timestamp_from,
        shard.timestamp_to
    );
    match ended {
        Ended::Succeeded(summary) => {
            for type_name in &summary.already_loaded {
                eprintln!("{at} {type_name}: skipped, loaded already");
            }
            for (type_name, counts) in &summary.types {
                eprintln!(
                    "{at} {type_name}: {} inserted, {} duplicates, {} refused, {} failed",
                    counts.inserted, counts.duplicates, counts.refused, counts.failed
                );
            }
        }
        Ended::Failed(error) => eprintln!("{at} failed: {error}"),
        Ended::Interrupted(_) => {}
    }
}

//! The local runner: `batch-job-aurora run | replay | status | plugins | plugin new|build|check`. Glue only: flags in, one library call,
//! the summary out.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use batch_job_aurora::backfill::PlanRequest;
#[cfg(feature = "kit")]
use batch_job_aurora::capability::CapabilitySpecs;
use batch_job_aurora::environment::from_env;
use batch_job_aurora::hooks::{Interrupt, Pause, Progress, RunHooks};
#[cfg(feature = "kit")]
use batch_job_aurora::kit;
use batch_job_aurora::plugin::{PluginEngine, SandboxLimits};
use batch_job_aurora::resolve::{Origin, RunRequest, plugins_dir, resolve};
use batch_job_aurora::status::{StatusRequest, status};
use batch_job_aurora::window::{DEFAULT_MAX_CATCH_UP_SECS, DEFAULT_OVERLAP_SECS, unix_now};
use batch_job_aurora::{RunSummary, run_with};
use clap::{Args, Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

mod backfill;

/// Copies raw data points into per-type SQL tables through WebAssembly type plugins.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log more (-v: info, -vv: debug). Logs go to stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the job once.
    Run(Box<RunArgs>),
    /// Sends the dead letters (batch_job_failed_documents) through today's plugins and
    /// database again, as a run would; each record is marked with what its replay did.
    Replay(Box<ReplayArgs>),
    /// Shows what is loaded, per type: spans, holes, failed windows, dead letters waiting,
    /// the last success and plugin versions. Only reads: changes nothing.
    Status(StatusArgs),
    /// Prints a backfill's shards: one ordinary event per slice of the range, every type in
    /// each, on the hour, inclusive at both ends, touching without gap or overlap.
    Plan(PlanArgs),
    /// Runs a backfill's shards here, N at once; shards the run log says are loaded are
    /// skipped without fetching, so a backfill that was stopped resumes.
    Backfill(Box<BackfillArgs>),
    /// Lists the loaded plugins with their type, version, columns and capabilities.
    Plugins {
        #[command(flatten)]
        plugins: PluginArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The plugin author's kit: start, build and check a type plugin.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

// Parsed in every build, so that a build without the kit can say so (`plugin_command`).
#[cfg_attr(not(feature = "kit"), allow(dead_code))]
#[derive(Subcommand)]
enum PluginCommand {
    /// Creates a standalone plugin project (with the SDK and the WIT copied in).
    New {
        /// The document type, which is also the table name (`UBWType`).
        type_name: String,
        /// The plugin's language.
        #[arg(long, value_enum, default_value_t = LangArg::Rust)]
        lang: LangArg,
        /// The project folder (must not exist or be empty). Default: the type in snake_case.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Builds a project into a component and prints its path as the last line.
    Build {
        /// The project folder (a Cargo.toml makes it Rust, an app.py Python).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Runs a component over documents under the production sandbox and limits.
    Check(Box<CheckArgs>),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LangArg {
    Rust,
    Python,
}

#[derive(Args)]
struct CheckArgs {
    /// The component (.wasm).
    wasm: PathBuf,
    /// The documents: a JSON array or NDJSON of envelopes, or one bare data object.
    #[arg(long, value_name = "FILE")]
    docs: PathBuf,
    /// The expected outcomes: an array of rows, or {"rows", "refused", "failed"}; any
    /// difference exits with 1.
    #[arg(long, value_name = "ROWS.json")]
    expect: Option<PathBuf>,
    #[command(flatten)]
    lookups: LookupArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct StatusArgs {
    /// The database to read: sqlite://PATH, mysql://… or postgres://… Default: as for `run`.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Only these types (comma separated). Default: every type the run log names.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    types: Option<Vec<String>>,
    /// Only from this second on (Unix seconds): spans clipped, a hole up to the first span,
    /// dead letters of documents stamped earlier left out.
    #[arg(long, value_name = "SECONDS")]
    since: Option<i64>,
    #[command(flatten)]
    now: NowArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct PluginArgs {
    /// The folder of plugin components (*.wasm). Default: BATCH_JOB_AURORA_PLUGINS, else
    /// `plugins` beside the executable.
    #[arg(long, value_name = "DIR")]
    plugins: Option<PathBuf>,
}

/// Where the plugins' lookups go, for local runs and checks.
#[derive(Args)]
struct LookupArgs {
    /// Slack channel names for local runs: file:PATH of a JSON map {"C…": "name"}. Without
    /// it, DATAPLATTFORM_AURORA_SLACK_TOKEN selects Slack's Web API
    /// (DATAPLATTFORM_AURORA_SLACK_API_URL, default https://slack.com/api/).
    #[arg(long, value_name = "SPEC")]
    slack_channels: Option<String>,
    /// The event-code table for the event_rating plugin: a DynamoDB table name (through the
    /// standard AWS configuration; AWS_ENDPOINT_URL overrides the endpoint), or file:PATH of a
    /// JSON array of events.
    #[arg(long, value_name = "SPEC")]
    event_codes: Option<String>,
}

/// The sandbox every plugin call runs in.
#[derive(Args)]
struct SandboxArgs {
    /// Each plugin call's time budget, plus this per document.
    #[arg(long, value_name = "MS", default_value_t = SandboxLimits::default().call_budget.as_millis() as u64)]
    plugin_budget_ms: u64,
    /// The memory cap of each plugin instance.
    #[arg(long, value_name = "MIB", default_value_t = SandboxLimits::default().memory_bytes >> 20)]
    plugin_memory_mib: usize,
}

impl SandboxArgs {
    fn limits(&self) -> SandboxLimits {
        SandboxLimits {
            memory_bytes: self.plugin_memory_mib << 20,
            call_budget: Duration::from_millis(self.plugin_budget_ms),
            ..SandboxLimits::default()
        }
    }
}

#[derive(Args)]
struct RunArgs {
    /// Where documents come from: file:PATH (a JSON array or NDJSON of envelopes, or a folder
    /// of such files), or the fetch API's base URL (https://…/get_docs/, with its key in
    /// DATAPLATTFORM_AURORA_FETCH_KEY or the secret DATAPLATTFORM_AURORA_FETCH_KEY_SECRET).
    #[arg(long, value_name = "SPEC")]
    source: Option<String>,
    /// Where rows go: sqlite://PATH, mysql://USER:PASSWORD@HOST:PORT/DB or postgres://…
    /// (TLS through the URL: ?ssl-mode=REQUIRED, ?sslmode=verify-full). Default: the
    /// DATAPLATTFORM_AURORA_* variables when DATAPLATTFORM_AURORA_HOST is set, else
    /// sqlite://batch-job-aurora.db.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    #[command(flatten)]
    plugins: PluginArgs,
    /// Only these types (comma separated). Default: every installed type.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    types: Option<Vec<String>>,
    /// Start of the window, Unix seconds (inclusive). With a file source and no window, every
    /// document counts.
    #[arg(long, value_name = "SECONDS", requires = "to")]
    from: Option<i64>,
    /// End of the window, Unix seconds (inclusive).
    #[arg(long, value_name = "SECONDS", requires = "from")]
    to: Option<i64>,
    /// Gap-free windows: each type starts where its windows are loaded without a hole (from
    /// its first scheduled one, whatever run loaded them), minus the overlap, up to now (at
    /// most --max-catch-up-hours per run; the next run takes the rest).
    #[arg(long, conflicts_with = "from")]
    catch_up: bool,
    /// The overlap of a catch-up window with what is already loaded (0 or more: a negative
    /// overlap would leave a hole).
    #[arg(long, value_name = "MINUTES", default_value_t = DEFAULT_OVERLAP_SECS / 60,
          value_parser = clap::value_parser!(i64).range(0..=7 * 24 * 60))]
    overlap_minutes: i64,
    /// The longest window one catch-up run takes (at least 1).
    #[arg(long, value_name = "HOURS", default_value_t = DEFAULT_MAX_CATCH_UP_SECS / 3600,
          value_parser = clap::value_parser!(i64).range(1..=100 * 365 * 24))]
    max_catch_up_hours: i64,
    #[command(flatten)]
    now: NowArg,
    #[command(flatten)]
    lookups: LookupArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
    /// Stop starting new work this many seconds after the start: what was stored stays
    /// stored, unfinished types fail with the reason, and the run ends in time.
    #[arg(long, value_name = "SECONDS")]
    deadline: Option<u64>,
    /// The longest single wait between retries of an HTTP call, whatever a Retry-After asks.
    #[arg(long, value_name = "SECONDS", default_value_t = batch_job_aurora::http::MAX_WAIT.as_secs())]
    max_wait: u64,
    /// The most time one HTTP request may take, its retries and the waits between them
    /// together, whether or not there is a --deadline.
    #[arg(long, value_name = "SECONDS", default_value_t = batch_job_aurora::http::RETRY_BUDGET.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    retry_budget: u64,
    /// Print one JSON object with the counts on stdout at the end.
    #[arg(long)]
    json: bool,
    /// Where plugins compiled from .wasm are kept, so that the next run starts without
    /// compiling them again (each entry is named by the plugin's SHA-256 and this build's
    /// engine, so a rebuilt plugin is compiled afresh). `off` compiles at every start.
    /// Default: BATCH_JOB_AURORA_COMPILE_CACHE, else $XDG_CACHE_HOME/batch-job-aurora, else
    /// ~/.cache/batch-job-aurora.
    #[arg(long, value_name = "DIR|off")]
    compile_cache: Option<String>,
    /// Instances of each type's plugin working at once (each on whole batches), at most 16.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new()
            .range(1..=batch_job_aurora::MAX_PLUGIN_INSTANCES as u64)
    )]
    plugin_instances: usize,
    /// Hand every plugin whole documents, even one that lists the paths it reads (to measure
    /// what input projection saves; the rows are the same).
    #[arg(long)]
    no_projection: bool,
    /// Rows per database write (one transaction). Default: the library's.
    #[arg(long, value_name = "ROWS", hide = true)]
    rows_per_write: Option<usize>,
    /// Tests only: after this many writes, say "paused" on stderr and wait forever (so that a
    /// test can kill the process at a known point).
    #[arg(long, value_name = "WRITES", hide = true)]
    pause_after_writes: Option<usize>,
    /// What a row whose id is stored already does: `skip` keeps it (counted as a duplicate;
    /// the contract's rule), `update` overwrites it when the plugin now yields other values
    /// (counted `updated`, else `unchanged`): reprocessing a window with a fixed plugin.
    #[arg(long, value_enum, default_value_t = OnExistingArg::Skip)]
    on_existing: OnExistingArg,
}

/// The time taken as now (hidden: for tests, and for replaying a past hour by hand).
#[derive(Args)]
struct NowArg {
    /// The time taken as now, Unix seconds: a run's default and catch-up windows end there;
    /// `status` shows a row still `running` past its expiry as interrupted.
    #[arg(
        long = "now",
        env = "BATCH_JOB_AURORA_NOW",
        value_name = "SECONDS",
        hide = true
    )]
    seconds: Option<i64>,
}

impl NowArg {
    fn get(&self) -> i64 {
        self.seconds.unwrap_or_else(unix_now)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnExistingArg {
    Skip,
    Update,
}

impl From<OnExistingArg> for batch_job_aurora::sink::OnExisting {
    fn from(arg: OnExistingArg) -> Self {
        match arg {
            OnExistingArg::Skip => batch_job_aurora::sink::OnExisting::Skip,
            OnExistingArg::Update => batch_job_aurora::sink::OnExisting::Update,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StageArg {
    Envelope,
    Plugin,
    Sink,
    All,
}

#[derive(Args)]
struct ReplayArgs {
    /// The database whose dead letters are replayed, and where their rows go (as `run`'s
    /// --database).
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    #[command(flatten)]
    plugins: PluginArgs,
    /// Only dead letters of these types (comma separated). Default: every type with dead
    /// letters and a plugin.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    types: Option<Vec<String>>,
    /// Only dead letters that failed at this stage (`plugin` includes traps and rows that
    /// did not fit the columns).
    #[arg(long, value_enum, default_value_t = StageArg::All)]
    stage: StageArg,
    /// Only dead letters kept at or after this time, Unix seconds.
    #[arg(long, value_name = "SECONDS")]
    failed_since: Option<i64>,
    /// Only dead letters kept at or before this time, Unix seconds.
    #[arg(long, value_name = "SECONDS")]
    failed_until: Option<i64>,
    /// Only dead letters of this run.
    #[arg(long, value_name = "ID")]
    run_id: Option<String>,
    /// Count what would be replayed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Afterwards, delete the dead-letter records whose documents are now stored.
    #[arg(long)]
    purge_stored: bool,
    #[command(flatten)]
    lookups: LookupArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
    /// Print one JSON object with the counts (and `replayed`) on stdout at the end.
    #[arg(long)]
    json: bool,
    /// See `run --compile-cache`.
    #[arg(long, value_name = "DIR|off")]
    compile_cache: Option<String>,
    /// Rows per database write (one transaction). Default: the library's.
    #[arg(long, value_name = "ROWS", hide = true)]
    rows_per_write: Option<usize>,
    /// Tests only: see `run --pause-after-writes`.
    #[arg(long, value_name = "WRITES", hide = true)]
    pause_after_writes: Option<usize>,
}

#[derive(Args)]
struct PlanArgs {
    /// The types of every shard (comma separated).
    #[arg(long, value_delimiter = ',', value_name = "A,B", required = true)]
    types: Vec<String>,
    /// Start of the range, Unix seconds (inclusive).
    #[arg(long, value_name = "SECONDS")]
    from: i64,
    /// End of the range, Unix seconds (inclusive).
    #[arg(long, value_name = "SECONDS")]
    to: i64,
    /// The length of a shard; shards are cut at every multiple of it since the epoch (UTC).
    #[arg(long, value_name = "HOURS", default_value_t = batch_job_aurora::backfill::DEFAULT_SHARD_HOURS)]
    shard_hours: i64,
    /// Passed to every shard: `skip` (the default: shards skip what is loaded) or `update`
    /// (every shard reads its whole window again).
    #[arg(long, value_enum)]
    on_existing: Option<OnExistingArg>,
    /// Print the shards as one JSON array of events (what the Lambda's plan answers).
    #[arg(long)]
    json: bool,
}

impl PlanArgs {
    fn request(&self) -> Result<PlanRequest> {
        let request = PlanRequest {
            types: self.types.clone(),
            window: batch_job_aurora::window::Window {
                from: self.from,
                to: self.to,
            },
            shard_hours: self.shard_hours,
            on_existing: self.on_existing.map(Into::into),
            tolerated_failure_percentage: 0.0,
        };
        request.check()?;
        Ok(request)
    }
}

#[derive(Args)]
struct BackfillArgs {
    #[command(flatten)]
    plan: PlanArgs,
    /// Shards run at once (each one run: its types, its plugins, two database writes in
    /// flight).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    parallel: usize,
    /// Where documents come from (as `run --source`; by default the fetch API).
    #[arg(long, value_name = "SPEC")]
    source: Option<String>,
    /// Where rows go (as `run --database`).
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    #[command(flatten)]
    plugins: PluginArgs,
    #[command(flatten)]
    lookups: LookupArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
    /// Each shard's deadline, seconds after it starts (as `run --deadline`): a shard stopped
    /// by it is run again from where it stopped, at most --shard-attempts times.
    #[arg(long, value_name = "SECONDS")]
    shard_deadline: Option<u64>,
    /// How often a failing shard is run before the backfill gives it up (and fails).
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::builder::RangedU64ValueParser::<u32>::new().range(1..=100))]
    shard_attempts: u32,
    /// As `run --compile-cache`.
    #[arg(long, value_name = "DIR|off")]
    compile_cache: Option<String>,
    /// Tests only: once this many shards ended, say "paused" on stderr and start no other
    /// shard (so that a test can kill the process at a known point).
    #[arg(long, value_name = "SHARDS", hide = true)]
    pause_after_shards: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli.command, cli.verbose) {
        Ok(code) => code,
        Err(error) => {
            // One line: the chain with each cause said once, every configured secret
            // scrubbed, and no line breaks from a cause's own text.
            let message = batch_job_aurora::error::chain(error.as_ref()).replace('\n', " ");
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command, verbose: u8) -> Result<ExitCode> {
    match command {
        Command::Plugins { plugins, json } => {
            let environment = from_env(|name| std::env::var(name).ok())?;
            let dir = plugins_dir(plugins.plugins, &environment, Origin::LocalRunner);
            list_plugins(&dir, json)
        }
        Command::Run(args) => run_job(*args, verbose),
        Command::Replay(args) => replay(*args, verbose),
        Command::Status(args) => show_status(args),
        Command::Plan(args) => print_plan(&args),
        Command::Backfill(args) => backfill::run(*args),
        Command::Plugin(command) => plugin_command(command),
    }
}

#[cfg(not(feature = "kit"))]
fn plugin_command(_command: PluginCommand) -> Result<ExitCode> {
    Err(batch_job_aurora::features::Missing {
        what: "plugin kit",
        feature: "kit",
    }
    .into())
}

#[cfg(feature = "kit")]
fn plugin_command(command: PluginCommand) -> Result<ExitCode> {
    match command {
        PluginCommand::New {
            type_name,
            lang,
            dir,
        } => {
            let lang = match lang {
                LangArg::Rust => kit::Lang::Rust,
                LangArg::Python => kit::Lang::Python,
            };
            let dir = dir.unwrap_or_else(|| kit::scaffold::snake_case(&type_name).into());
            kit::scaffold::new_project(&type_name, lang, &dir)?;
            println!("created {} ({type_name})", dir.display());
            println!("next: batch-job-aurora plugin build {}", dir.display());
        }
        PluginCommand::Build { dir } => {
            let wasm = kit::build::build(&dir)?;
            println!("{}", wasm.display());
        }
        PluginCommand::Check(args) => return check_plugin(*args),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "kit")]
fn check_plugin(args: CheckArgs) -> Result<ExitCode> {
    let documents = kit::check::read_documents(&args.docs)?;
    let specs = CapabilitySpecs {
        slack_channels: args.lookups.slack_channels,
        event_codes: args.lookups.event_codes,
        ..CapabilitySpecs::default()
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let backends = runtime.block_on(batch_job_aurora::capability::Backends::configure(&specs))?;
    let limits = args.sandbox.limits();
    let report = kit::check::check(&args.wasm, &documents, limits, backends)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    if let Some(expect) = args.expect {
        let text = std::fs::read_to_string(&expect)
            .with_context(|| format!("cannot read {}", expect.display()))?;
        let expected: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", expect.display()))?;
        let differences = kit::check::compare(&report, &expected, documents.made_up);
        if !differences.is_empty() {
            for difference in &differences {
                eprintln!("difference: {difference}");
            }
            eprintln!(
                "error: {} difference(s) from {}",
                differences.len(),
                expect.display()
            );
            return Ok(ExitCode::from(1));
        }
        eprintln!("as expected: {}", expect.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(args: &PlanArgs) -> Result<ExitCode> {
    let shards = batch_job_aurora::backfill::plan(&args.request()?)?;
    if args.json {
        println!("{}", serde_json::to_string(&shards)?);
    } else {
        for shard in &shards {
            println!(
                "{} {} {}",
                shard.timestamp_from,
                shard.timestamp_to,
                shard.types.join(",")
            );
        }
        eprintln!("{} shards", shards.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn run_job(args: RunArgs, verbose: u8) -> Result<ExitCode> {
    let json = args.json;
    let now = args.now.get();
    let pause = args.pause_after_writes;
    let request = run_request(args)?;
    execute(request, now, pause, json, verbose)
}

fn replay(args: ReplayArgs, verbose: u8) -> Result<ExitCode> {
    if let (Some(since), Some(until)) = (args.failed_since, args.failed_until)
        && since > until
    {
        bail!("--failed-since {since} is after --failed-until {until}");
    }
    let stage = match args.stage {
        StageArg::Envelope => "envelope",
        StageArg::Plugin => "plugin",
        StageArg::Sink => "sink",
        StageArg::All => "all",
    };
    let replay = batch_job_aurora::sink::replay::Replay {
        query: batch_job_aurora::sink::replay::DeadLetterQuery {
            types: None,
            stages: batch_job_aurora::sink::replay::stages(stage).unwrap_or_default(),
            failed_since: args.failed_since,
            failed_until: args.failed_until,
            run_id: args.run_id,
        },
        purge_stored: args.purge_stored,
        dry_run: args.dry_run,
    };
    let request = RunRequest {
        origin: Origin::LocalRunner,
        database: args.database,
        plugins: args.plugins.plugins,
        types: args.types,
        slack_channels: args.lookups.slack_channels,
        event_codes: args.lookups.event_codes,
        limits: Some(args.sandbox.limits()),
        compile_cache: args.compile_cache,
        rows_per_write: args.rows_per_write,
        replay: Some(replay),
        ..RunRequest::default()
    };
    execute(
        request,
        unix_now(),
        args.pause_after_writes,
        args.json,
        verbose,
    )
}

/// One resolved run, `run`'s or `replay`'s: signals, the progress display, the summary out.
fn execute(
    request: RunRequest,
    now: i64,
    pause_after_writes: Option<usize>,
    json: bool,
    verbose: u8,
) -> Result<ExitCode> {
    let environment = from_env(|name| std::env::var(name).ok())?;
    let hooks = RunHooks {
        pause: pause_after_writes.map(Pause::after_writes),
        interrupt: Some(Interrupt::default()),
        ..RunHooks::default()
    };
    let config = resolve(request, &environment, now)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    if let Some(pause) = &hooks.pause {
        let reached = Arc::clone(&pause.reached);
        runtime.spawn(async move {
            reached.notified().await;
            eprintln!("paused");
        });
    }
    if let Some(interrupt) = hooks.interrupt.clone() {
        runtime.spawn(raise_on_signals(interrupt));
    }
    let progress = show_progress(Arc::clone(&hooks.progress), verbose);
    let summary = runtime.block_on(run_with(config, hooks));
    if let Some(display) = progress {
        display.finish();
    }
    if let Err(batch_job_aurora::RunError::Interrupted(signal)) = &summary {
        let code = if signal == "SIGINT" { 130 } else { 143 };
        eprintln!(
            "error: {}",
            batch_job_aurora::error::chain(summary.as_ref().unwrap_err())
        );
        // Tasks of the abandoned run may still be blocked on their channels: do not wait.
        runtime.shutdown_background();
        return Ok(ExitCode::from(code));
    }
    let summary = summary?;
    print_summary(&summary, json)?;
    // 0 when the run completed, even with failed documents: they are counted and kept.
    Ok(if summary.completed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn show_status(args: StatusArgs) -> Result<ExitCode> {
    let environment = from_env(|name| std::env::var(name).ok())?;
    let url = args
        .database
        .or(environment.database_url)
        .unwrap_or_else(|| batch_job_aurora::resolve::DEFAULT_DATABASE_URL.to_owned());
    let request = StatusRequest {
        types: args.types,
        since: args.since,
        now: args.now.get(),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime.block_on(status(&url, &request))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}

/// Raises `interrupt` at the first SIGTERM or SIGINT: the run then logs its types as
/// `interrupted` and the process exits with 143 or 130.
async fn raise_on_signals(interrupt: Interrupt) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for SIGTERM and SIGINT");
        return;
    };
    let reason = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    interrupt.raise(reason);
}

/// The run's flags as the library's plain request; [`resolve`] applies the environment and
/// the defaults.
fn run_request(args: RunArgs) -> Result<RunRequest> {
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from > to
    {
        bail!("--from {from} is after --to {to}");
    }
    Ok(RunRequest {
        origin: Origin::LocalRunner,
        source: args.source,
        database: args.database,
        plugins: args.plugins.plugins,
        types: args.types,
        from: args.from,
        to: args.to,
        catch_up: Some(args.catch_up),
        overlap_secs: Some(args.overlap_minutes * 60),
        max_catch_up_secs: Some(args.max_catch_up_hours * 3600),
        slack_channels: args.lookups.slack_channels,
        event_codes: args.lookups.event_codes,
        limits: Some(args.sandbox.limits()),
        deadline: args
            .deadline
            .map(|deadline| Instant::now() + Duration::from_secs(deadline)),
        max_wait: Some(Duration::from_secs(args.max_wait)),
        retry_budget: Some(Duration::from_secs(args.retry_budget)),
        compile_cache: args.compile_cache,
        projection: Some(!args.no_projection),
        plugin_instances: Some(args.plugin_instances),
        rows_per_write: args.rows_per_write,
        on_existing: Some(args.on_existing.into()),
        replay: None,
        backfill: false,
    })
}

fn list_plugins(dir: &Path, json: bool) -> Result<ExitCode> {
    let engine = PluginEngine::new(SandboxLimits::default())?;
    let plugins = engine.load_folder(dir)?;
    if json {
        let infos: Vec<_> = plugins.iter().map(|plugin| &plugin.info).collect();
        println!("{}", serde_json::to_string_pretty(&infos)?);
        return Ok(ExitCode::SUCCESS);
    }
    for plugin in plugins.iter() {
        let info = &plugin.info;
        println!(
            "{} {} ({})",
            info.type_name,
            info.version,
            plugin.path.display()
        );
        let columns: Vec<String> = info
            .columns
            .iter()
            .map(|column| format!("{} {}", column.name, column.kind))
            .collect();
        println!("  columns: id text, timestamp int, {}", columns.join(", "));
        if !info.capabilities.is_empty() {
            let capabilities: Vec<String> =
                info.capabilities.iter().map(ToString::to_string).collect();
            println!("  capabilities: {}", capabilities.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(summary: &RunSummary, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(summary)?);
    } else {
        print!("{}", summary.table());
    }
    Ok(())
}

/// The progress display of a run: bars on a terminal, summary lines in a log.
struct ProgressDisplay {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl ProgressDisplay {
    /// Stops the display: the bars are cleared; a log gets its last summary line.
    fn finish(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// How often a log that is not a terminal gets a summary line (`-v`), unless
/// BATCH_JOB_AURORA_PROGRESS_INTERVAL_MS says otherwise (0: at every change, for tests).
const SUMMARY_INTERVAL: Duration = Duration::from_secs(5);

/// On a terminal, a bar for the source and one per type: bytes read, MB/s, docs and docs/s,
/// and a percentage and ETA where the size is known (files, `Content-Length`). Otherwise, at
/// `-v`, a summary line every few seconds and one at the end; nothing without `-v`.
fn show_progress(progress: Arc<Progress>, verbose: u8) -> Option<ProgressDisplay> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let started = Instant::now();
    let thread = if std::io::stderr().is_terminal() {
        std::thread::spawn(move || draw_bars(&progress, &stopped, started))
    } else if verbose > 0 {
        let interval = std::env::var("BATCH_JOB_AURORA_PROGRESS_INTERVAL_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(SUMMARY_INTERVAL, Duration::from_millis);
        std::thread::spawn(move || print_summaries(&progress, &stopped, started, interval))
    } else {
        return None;
    };
    Some(ProgressDisplay { stop, thread })
}

fn print_summaries(
    progress: &Progress,
    stop: &std::sync::atomic::AtomicBool,
    started: Instant,
    interval: Duration,
) {
    let mut last_line = Instant::now();
    let mut last_shown = None;
    loop {
        let done = stop.load(std::sync::atomic::Ordering::Relaxed);
        let snapshot = progress.snapshot();
        let due = if interval.is_zero() {
            last_shown.as_ref() != Some(&snapshot)
        } else {
            last_line.elapsed() >= interval
        };
        if done || due {
            eprintln!("progress: {}", snapshot.summary_line(started.elapsed()));
            last_line = Instant::now();
            last_shown = Some(snapshot);
        }
        if done {
            return;
        }
        std::thread::sleep(interval.clamp(Duration::from_millis(1), Duration::from_millis(100)));
    }
}

/// The bar templates: with a known size (percentage, ETA) and without. A type of a file source
/// gets its bytes in steps (its documents'), so its rate is the run's average, in its message.
fn bar_style(size_known: bool) -> ProgressStyle {
    let template = if size_known {
        "{prefix:>14} [{bar:24}] {percent:>3}% {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} ETA {eta} {msg}"
    } else {
        "{prefix:>14} {spinner} {decimal_bytes} {msg}"
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn draw_bars(progress: &Progress, stop: &std::sync::atomic::AtomicBool, started: Instant) {
    let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let total = bars.add(ProgressBar::new_spinner().with_prefix("source"));
    total.set_style(bar_style(false));
    let seconds = || started.elapsed().as_secs_f64().max(0.001);
    let mut known = false;
    let mut types: Vec<(String, ProgressBar, bool)> = Vec::new();
    let rate = |documents: u64| documents as f64 / started.elapsed().as_secs_f64().max(0.001);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let snapshot = progress.snapshot();
        if let Some(size) = snapshot.bytes_total {
            total.set_length(size);
            if !known {
                total.set_style(bar_style(true));
                known = true;
            }
        }
        total.set_position(snapshot.bytes_read);
        let source_rate = if known {
            String::new()
        } else {
            format!(
                "{}/s, ",
                batch_job_aurora::hooks::bytes_text(
                    (snapshot.bytes_read as f64 / seconds()) as u64
                )
            )
        };
        total.set_message(format!(
            "{source_rate}{} docs ({:.0}/s), {} inserted, {} duplicates, {} refused, {} failed",
            snapshot.documents,
            rate(snapshot.documents),
            Progress::get(&progress.inserted),
            Progress::get(&progress.duplicates),
            Progress::get(&progress.refused),
            Progress::get(&progress.failed),
        ));
        for (name, documents, read, size) in snapshot.types {
            let index = match types.iter().position(|(shown, ..)| *shown == name) {
                Some(index) => index,
                None => {
                    let bar = bars.add(ProgressBar::new_spinner().with_prefix(name.clone()));
                    bar.set_style(bar_style(false));
                    types.push((name, bar, false));
                    types.len() - 1
                }
            };
            let (_, bar, sized) = &mut types[index];
            if let Some(size) = size {
                bar.set_length(size);
                if !*sized {
                    bar.set_style(bar_style(true));
                    *sized = true;
                }
            }
            bar.set_position(read);
            let bytes_rate = if *sized {
                String::new()
            } else {
                format!(
                    "{}/s, ",
                    batch_job_aurora::hooks::bytes_text((read as f64 / seconds()) as u64)
                )
            };
            bar.set_message(format!(
                "{bytes_rate}{documents} docs ({:.0} docs/s)",
                rate(documents)
            ));
            bar.tick();
        }
        total.tick();
        std::thread::sleep(Duration::from_millis(100));
    }
    for (_, bar, _) in &types {
        bar.finish_and_clear();
    }
    total.finish_and_clear();
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BATCH_JOB_AURORA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

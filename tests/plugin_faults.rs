//! The plugin host under faults: native code that another user could write (issue 15, item
//! 13), a plugin that loops past the run's deadline (item 7), absurd numbers of plugin
//! instances (item 9), and the type on every plugin log line (issue 16).
//!
//! The tests run as root, as the checks here do: "another user" is uid 65534 (`chown`), and
//! "writable by others" is a mode (`chmod`). Each table of cases names every case that fails.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use batch_job_aurora::plugin::{PluginEngine, SandboxLimits};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::cli::binary;
use crate::support::{ndjson, ok_documents, plugin_folder, workspace_root};

/// Another user than the one the tests run as (`nobody`).
const OTHER_UID: u32 = 65534;

/// Runs every case, then names each one that failed: one failure does not hide the rest.
fn each_case<T>(cases: Vec<(&'static str, T)>, check: impl Fn(T)) {
    let failed: Vec<&str> = cases
        .into_iter()
        .filter_map(|(name, case)| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(case)))
                .err()
                .map(|_| name)
        })
        .collect();
    assert!(failed.is_empty(), "failed cases: {failed:?}");
}

fn chown_to_other_user(path: &Path) {
    std::os::unix::fs::chown(path, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// What a run of the binary left: its exit code, its output and how long it took.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

fn run_binary(args: &[String]) -> Ran {
    let started = Instant::now();
    let output = Command::new(binary())
        .args(args)
        .env_remove("BATCH_JOB_AURORA_LOG")
        .env_remove("BATCH_JOB_AURORA_COMPILE_CACHE")
        .env_remove("DATAPLATTFORM_EVENT_CODE_TABLE")
        .output()
        .unwrap();
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

fn path_arg(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

/// `run --json` of the example GitHub documents into a fresh SQLite database, with the given
/// plugins folder and compile cache.
fn run_github_examples(plugins: &Path, cache: &Path) -> Ran {
    let database = tempfile::tempdir().unwrap();
    run_binary(&[
        "run".into(),
        "--json".into(),
        "--types".into(),
        "GithubType".into(),
        "--source".into(),
        format!(
            "file:{}",
            workspace_root().join("examples/documents").display()
        ),
        "--database".into(),
        format!("sqlite://{}", database.path().join("run.db").display()),
        "--plugins".into(),
        path_arg(plugins),
        "--compile-cache".into(),
        path_arg(cache),
    ])
}

/// The GitHub examples store two rows, whatever their plugin's native code came from.
fn assert_github_examples_stored(ran: &Ran) {
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let summary: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(summary["types"]["GithubType"]["inserted"], 2, "{summary}");
}

/// The compile cache entry of a plugin: named by the SHA-256 of its `.wasm`.
fn cache_entry(cache: &Path, wasm: &Path) -> PathBuf {
    let output = Command::new("sha256sum").arg(wasm).output().unwrap();
    let digest = String::from_utf8(output.stdout).unwrap();
    let digest = digest.split_whitespace().next().unwrap().to_owned();
    std::fs::read_dir(cache)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&digest)
        })
        .unwrap_or_else(|| panic!("no entry for {} in {}", wasm.display(), cache.display()))
}

/// How a case tampers with a filled compile cache: (github's entry, the cache folder, slack's
/// entry).
type CacheTamper = fn(&Path, &Path, &Path);

#[test]
fn compile_cache_entries_that_others_could_write_are_refused_and_compiled_again() {
    // (tamper, the reason said, whether the entry is replaced by this user's own)
    let cases: Vec<(&str, (CacheTamper, &str, bool))> = vec![
        (
            "an entry owned by another user",
            (
                |entry, _, _| chown_to_other_user(entry),
                "is owned by uid 65534, neither this user (uid 0) nor root",
                true,
            ),
        ),
        (
            "an entry others can write",
            (
                |entry, _, _| chmod(entry, 0o666),
                "can be written by others than its owner (mode 666",
                true,
            ),
        ),
        (
            "a cache folder others can write",
            (|_, folder, _| chmod(folder, 0o777), "its folder", false),
        ),
        (
            "another plugin's native code, of another user, writable by all, in a 0777 folder",
            (
                |entry, folder, slack| {
                    std::fs::copy(slack, entry).unwrap();
                    chown_to_other_user(entry);
                    chmod(entry, 0o666);
                    chmod(folder, 0o777);
                },
                "can be written by others than its owner (mode 777",
                false,
            ),
        ),
        (
            "another plugin's native code, of this user",
            (
                |entry, _, slack| {
                    std::fs::copy(slack, entry).unwrap();
                },
                "it was compiled from another .wasm",
                true,
            ),
        ),
    ];
    each_case(cases, |(tamper, reason, replaced)| {
        let plugins = plugin_folder(&["github", "slack"]);
        let parent = tempfile::tempdir().unwrap();
        let cache = parent.path().join("cache");
        assert_github_examples_stored(&run_github_examples(plugins.path(), &cache));
        let github = cache_entry(&cache, &plugins.path().join("github.wasm"));
        let slack = cache_entry(&cache, &plugins.path().join("slack.wasm"));

        tamper(&github, &cache, &slack);
        let ran = run_github_examples(plugins.path(), &cache);

        assert_github_examples_stored(&ran);
        let refused = format!("refusing the native code in {}", github.display());
        assert!(ran.stderr.contains(&refused), "{}", ran.stderr);
        assert!(ran.stderr.contains(reason), "{}", ran.stderr);
        assert!(
            ran.stderr.contains(&format!(
                "compiling {} again",
                plugins.path().join("github.wasm").display()
            )),
            "{}",
            ran.stderr
        );
        if replaced {
            let metadata = std::fs::symlink_metadata(&github).unwrap();
            assert!(metadata.is_file());
            assert_eq!((metadata.uid(), mode(&github)), (0, 0o600));
            // The replaced entry is taken at the next start.
            let next = run_github_examples(plugins.path(), &cache);
            assert_github_examples_stored(&next);
            assert!(!next.stderr.contains("refusing"), "{}", next.stderr);
        } else {
            assert!(
                ran.stderr.contains("cannot keep the compiled plugin"),
                "{}",
                ran.stderr
            );
        }
    });
}

#[test]
fn a_new_compile_cache_is_private_whatever_the_umask() {
    let plugins = plugin_folder(&["github"]);
    let parent = tempfile::tempdir().unwrap();
    let cache = parent.path().join("new/cache");
    let database = parent.path().join("run.db");
    // The binary under the most permissive umask, through the shell that sets it.
    let output = Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$@\"")
        .arg("sh")
        .arg(binary())
        .args(["run", "--source"])
        .arg(format!(
            "file:{}",
            workspace_root().join("examples/documents").display()
        ))
        .arg("--database")
        .arg(format!("sqlite://{}", database.display()))
        .arg("--plugins")
        .arg(plugins.path())
        .arg("--compile-cache")
        .arg(&cache)
        .env_remove("BATCH_JOB_AURORA_LOG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(mode(&cache), 0o700);
    let entry = cache_entry(&cache, &plugins.path().join("github.wasm"));
    assert_eq!(mode(&entry), 0o600);
}

#[test]
fn a_link_planted_where_a_temporary_cache_file_would_go_is_never_written_through() {
    let plugins = plugin_folder(&["github"]);
    let parent = tempfile::tempdir().unwrap();
    let cache = parent.path().join("cache");
    let engine = || {
        PluginEngine::new(SandboxLimits::default())
            .unwrap()
            .with_compile_cache(Some(cache.clone()))
    };
    engine().load_folder(plugins.path()).unwrap();
    let entry = cache_entry(&cache, &plugins.path().join("github.wasm"));
    std::fs::remove_file(&entry).unwrap();
    // The name the cache once wrote through: `.<entry>.<pid>.tmp`, pid of this very process.
    let planted = cache.join(format!(
        ".{}.{}.tmp",
        entry.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let victim = parent.path().join("victim");
    std::fs::write(&victim, b"not to be overwritten").unwrap();
    std::os::unix::fs::symlink(&victim, &planted).unwrap();

    let loaded = engine().load_folder(plugins.path()).unwrap();

    assert!(loaded.get("GithubType").is_some());
    assert_eq!(std::fs::read(&victim).unwrap(), b"not to be overwritten");
    let metadata = std::fs::symlink_metadata(&entry).unwrap();
    assert!(metadata.is_file(), "the entry must not be a link");
    assert_eq!(mode(&entry), 0o600);
    // What was planted stays what it was; nothing else is left behind.
    assert!(std::fs::symlink_metadata(&planted).unwrap().is_symlink());
    let names: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// A plugins folder with github.wasm, slack.wasm and slack.cwasm precompiled from it by this
/// host (as `bootstrap --precompile` does).
fn folder_with_precompiled_slack() -> TempDir {
    let plugins = plugin_folder(&["github", "slack"]);
    let engine = PluginEngine::new(SandboxLimits::default()).unwrap();
    for name in ["slack", "github"] {
        engine
            .precompile(
                &plugins.path().join(format!("{name}.wasm")),
                &plugins.path().join(format!("{name}.cwasm")),
                false,
            )
            .unwrap();
    }
    // github.cwasm is kept aside: one case passes it off as slack's.
    std::fs::rename(
        plugins.path().join("github.cwasm"),
        plugins.path().join("github.cwasm.aside"),
    )
    .unwrap();
    plugins
}

/// `plugins --plugins DIR`: each loaded plugin with the file it came from.
fn list_plugins(plugins: &Path) -> Ran {
    run_binary(&["plugins".into(), "--plugins".into(), path_arg(plugins)])
}

#[test]
fn a_precompiled_plugin_is_loaded_only_when_kept_to_its_owner_and_made_from_its_wasm() {
    let kept = folder_with_precompiled_slack();
    let listed = list_plugins(kept.path());
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    assert!(
        listed.stdout.contains("slack.cwasm)"),
        "taken precompiled: {}",
        listed.stdout
    );
    assert!(listed.stderr.is_empty(), "{}", listed.stderr);

    // (tamper with the folder, the reason said)
    type Tamper = fn(&Path);
    let cases: Vec<(&str, (Tamper, &str))> = vec![
        (
            "owned by another user",
            (
                |folder| chown_to_other_user(&folder.join("slack.cwasm")),
                "is owned by uid 65534",
            ),
        ),
        (
            "writable by others",
            (
                |folder| chmod(&folder.join("slack.cwasm"), 0o666),
                "can be written by others than its owner (mode 666",
            ),
        ),
        (
            "in a folder others can write",
            (|folder| chmod(folder, 0o777), "its folder"),
        ),
        (
            "foreign and writable by all, in a folder writable by all",
            (
                |folder| {
                    chown_to_other_user(&folder.join("slack.cwasm"));
                    chmod(&folder.join("slack.cwasm"), 0o666);
                    chmod(folder, 0o777);
                },
                "can be written by others",
            ),
        ),
        (
            "a link into a folder others can write",
            (
                |folder| {
                    let elsewhere = folder.join("elsewhere");
                    std::fs::create_dir(&elsewhere).unwrap();
                    std::fs::rename(folder.join("slack.cwasm"), elsewhere.join("slack.cwasm"))
                        .unwrap();
                    std::os::unix::fs::symlink(
                        elsewhere.join("slack.cwasm"),
                        folder.join("slack.cwasm"),
                    )
                    .unwrap();
                    chmod(&elsewhere, 0o777);
                },
                "/elsewhere can be written by others than its owner (mode 777",
            ),
        ),
        (
            "compiled from another .wasm",
            (
                |folder| {
                    std::fs::copy(
                        folder.join("github.cwasm.aside"),
                        folder.join("slack.cwasm"),
                    )
                    .unwrap();
                },
                "it was compiled from another .wasm",
            ),
        ),
        (
            "without the digest of its .wasm (not made by this host)",
            (
                |folder| {
                    let cwasm = folder.join("slack.cwasm");
                    let bytes = std::fs::read(&cwasm).unwrap();
                    // wasmtime's own file, without the header this host writes in front.
                    std::fs::write(&cwasm, &bytes[48..]).unwrap();
                    chmod(&cwasm, 0o644);
                },
                "does not carry the digest of the .wasm it was compiled from",
            ),
        ),
    ];
    each_case(cases, |(tamper, reason)| {
        let plugins = folder_with_precompiled_slack();
        tamper(plugins.path());
        let listed = list_plugins(plugins.path());
        assert_eq!(listed.code, Some(0), "{}", listed.stderr);
        // The plugin still loads, from its .wasm, and the log says why.
        assert!(listed.stdout.contains("slack.wasm)"), "{}", listed.stdout);
        let cwasm = plugins.path().join("slack.cwasm");
        let refused = format!("refusing the native code in {}", cwasm.display());
        assert!(listed.stderr.contains(&refused), "{}", listed.stderr);
        assert!(listed.stderr.contains(reason), "{}", listed.stderr);
        assert!(
            listed.stderr.contains(&format!(
                "compiling {} instead",
                plugins.path().join("slack.wasm").display()
            )),
            "{}",
            listed.stderr
        );
    });

    // Refused with no .wasm to fall back on: a clear error, nothing run.
    let plugins = folder_with_precompiled_slack();
    std::fs::remove_file(plugins.path().join("slack.wasm")).unwrap();
    chmod(&plugins.path().join("slack.cwasm"), 0o666);
    let listed = list_plugins(plugins.path());
    assert_eq!(listed.code, Some(1), "{}", listed.stdout);
    let line = listed.stderr.trim();
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(
        line.contains(&format!(
            "refusing the native code in {}: it can be written by others than its owner",
            plugins.path().join("slack.cwasm").display()
        )),
        "{line}"
    );
}

/// `count` MisbehavingType documents that loop for ever, timestamps after the ok ones.
fn looping_documents(count: usize, first: i64) -> Vec<Value> {
    (0..count)
        .map(|i| {
            json!({"id": format!("loop{i:08}"), "timestamp": first + i as i64,
                   "type": "MisbehavingType", "data": {"action": "loop"}})
        })
        .collect()
}

#[test]
fn a_plugin_that_loops_on_every_document_ends_at_the_deadline() {
    // One batch (100 documents a call) that goes through, then a batch whose every document
    // loops. Each call may run for minutes (the budget), so only the run's deadline ends it.
    let mut documents = ok_documents("fine", 100, 1_000, 1);
    documents.extend(looping_documents(100, 2_000));
    let (folder, source) = ndjson(&documents);
    let plugins = plugin_folder(&["misbehaving"]);
    let database = folder.path().join("run.db");
    let ran = run_binary(&[
        "run".into(),
        "--json".into(),
        "--source".into(),
        format!("file:{}", source.display()),
        "--database".into(),
        format!("sqlite://{}", database.display()),
        "--plugins".into(),
        path_arg(plugins.path()),
        "--compile-cache".into(),
        "off".into(),
        "--plugin-budget-ms".into(),
        "600000".into(),
        "--deadline".into(),
        "10".into(),
    ]);
    // Before: the looping batch ran out of its budget, then each of its documents did, one by
    // one (32 s against a 3 s deadline with the default budget; hours with this one).
    assert!(
        ran.elapsed < Duration::from_secs(60),
        "took {:?}",
        ran.elapsed
    );
    assert_eq!(ran.code, Some(3), "the type stopped early: {}", ran.stderr);
    let summary: Value = serde_json::from_str(&ran.stdout).unwrap();
    let counts = &summary["types"]["MisbehavingType"];
    // What went through is stored; what the deadline cut is not counted (nor kept as failed:
    // the plugin did nothing wrong that the next run would not see again).
    assert_eq!(counts["inserted"], 100, "{summary}");
    assert_eq!(counts["failed"], 0, "{summary}");
    assert_eq!(counts["refused"], 0, "{summary}");
    let error = counts["error"].as_str().unwrap();
    assert!(
        error.contains("stopped at the run's deadline with 100 documents not through the plugin"),
        "{error}"
    );
    assert!(
        error.contains("the next run reads this window again"),
        "{error}"
    );
}

#[test]
fn absurd_plugin_instances_are_refused_at_once() {
    let ran = run_binary(&[
        "run".into(),
        "--source".into(),
        format!(
            "file:{}",
            workspace_root().join("examples/documents").display()
        ),
        "--plugin-instances".into(),
        "200".into(),
        "--deadline".into(),
        "5".into(),
    ]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.elapsed < Duration::from_secs(5),
        "took {:?}",
        ran.elapsed
    );
    assert!(
        ran.stderr.contains("200 is not in 1..=16"),
        "{}",
        ran.stderr
    );
}

#[test]
fn the_most_plugin_instances_leave_the_blocking_pool_to_the_reader() {
    // A runtime whose blocking pool holds one thread: were plugin threads taken from it (16
    // of them here), the reader would never start and the run would never end.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let documents = ok_documents("many", 500, 1_000, 1);
    let (folder, source) = ndjson(&documents);
    let plugins = plugin_folder(&["misbehaving"]);
    let mut config = crate::support::config(&source, &folder.path().join("run.db"), plugins.path());
    config.run.plugin_instances = batch_job_aurora::MAX_PLUGIN_INSTANCES;
    config.run.deadline = Some(Instant::now() + Duration::from_secs(60));
    let summary = runtime
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(120), batch_job_aurora::run(config)).await
        })
        .expect("the run ends")
        .unwrap();
    assert_eq!(summary.inserted, 500, "{summary:?}");
    assert!(
        summary.types["MisbehavingType"].error.is_none(),
        "{summary:?}"
    );
}

/// A copy of the `ubw-rust` example whose plugin logs a line for every document, built with
/// `plugin build` (into the same target folder as `kit.rs`'s builds of the examples).
fn logging_plugin(scratch: &Path) -> PathBuf {
    let project = scratch.join("logging");
    crate::kit::copy_project(
        &workspace_root().join("examples/plugins/ubw-rust"),
        &project,
    );
    let manifest = project.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("name = \"ubw-type\"", "name = \"logging-probe\"")
        .replace("name = \"ubw_type\"", "name = \"logging_probe\"");
    std::fs::write(&manifest, text).unwrap();
    let lib = project.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap().replace(
        "fn transform(document: &Document, _host: &dyn Host) -> Result<Outcome, PluginError> {",
        "fn transform(document: &Document, host: &dyn Host) -> Result<Outcome, PluginError> {\n        host.log(aurora_plugin_sdk::LogLevel::Warn, \"transforming a document\");",
    );
    assert!(text.contains("host.log"), "the example's transform changed");
    std::fs::write(&lib, text).unwrap();
    crate::kit::build_plugin_project(&project)
}

#[test]
fn every_plugin_log_line_carries_its_type() {
    let scratch = tempfile::tempdir().unwrap();
    let plugins = scratch.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(logging_plugin(scratch.path()), plugins.join("ubw.wasm")).unwrap();
    let (folder, source) = ndjson(&[json!({"id": "log1", "timestamp": 1, "type": "UBWType",
               "data": {"reg_period": "202401", "used_hrs": 7.5}})]);
    let ran = run_binary(&[
        "run".into(),
        "--source".into(),
        format!("file:{}", source.display()),
        "--database".into(),
        format!("sqlite://{}", folder.path().join("run.db").display()),
        "--plugins".into(),
        path_arg(&plugins),
        "--compile-cache".into(),
        "off".into(),
    ]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let line = ran
        .stderr
        .lines()
        .find(|line| line.contains("plugin: transforming a document"))
        .unwrap_or_else(|| panic!("no plugin log line: {}", ran.stderr));
    // Before: `type_name=""` on every line of a worker instance.
    assert!(line.contains("type_name=\"UBWType\""), "{line}");
}

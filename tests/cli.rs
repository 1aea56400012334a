//! The `batch-job-aurora` binary: flags, exit codes, `--json`, and `plugins`.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use crate::support::{cli_binary, plugin_folder, workspace_root};

/// The `batch-job-aurora` binary, built once per test run.
pub fn binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| cli_binary("batch-job-aurora", "BATCH_JOB_AURORA_TEST_BINARY"))
}

fn cli(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env_remove("DATAPLATTFORM_EVENT_CODE_TABLE")
        .output()
        .unwrap()
}

#[test]
fn run_json_prints_the_counts_object() {
    let plugins = plugin_folder(&["github", "slack", "event_rating"]);
    let database = plugins.path().join("cli.db");
    let examples = workspace_root().join("examples");
    let output = cli(&[
        "run",
        "--json",
        "--source",
        &format!("file:{}", examples.join("documents").display()),
        "--database",
        &format!("sqlite://{}", database.display()),
        "--plugins",
        plugins.path().to_str().unwrap(),
        "--slack-channels",
        &format!(
            "file:{}",
            examples.join("lookups/slack-channels.json").display()
        ),
        "--event-codes",
        &format!(
            "file:{}",
            examples.join("lookups/event-codes.json").display()
        ),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    // Where the time went varies from run to run; that it is there does not.
    let stages = summary.as_object_mut().unwrap().remove("stages").unwrap();
    for stage in ["read_ms", "handoff_ms", "plugin_ms", "write_ms"] {
        assert!(stages[stage].is_u64(), "{stages}");
    }
    assert_eq!(
        summary,
        serde_json::json!({
            "inserted": 10, "duplicates": 0, "refused": 10, "failed": 0,
            "types": {
                "EventRatingType": {"inserted": 3, "duplicates": 0, "refused": 2, "failed": 0},
                "GithubType": {"inserted": 2, "duplicates": 0, "refused": 8, "failed": 0},
                "SlackType": {"inserted": 5, "duplicates": 0, "refused": 0, "failed": 0}
            }
        })
    );
}

#[test]
fn plugins_lists_type_version_and_columns() {
    let plugins = plugin_folder(&["github", "slack"]);
    let output = cli(&["plugins", "--plugins", plugins.path().to_str().unwrap()]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("GithubType 0.1.0"), "{text}");
    assert!(text.contains("repository_name text"), "{text}");
    assert!(text.contains("capabilities: slack-channels"), "{text}");
}

#[test]
fn what_cannot_run_exits_non_zero_with_one_line() {
    let plugins = plugin_folder(&["github"]);
    let dir = plugins.path().to_str().unwrap();
    let database = format!("sqlite://{}/x.db", dir);
    let examples = format!(
        "file:{}",
        workspace_root().join("examples/documents").display()
    );
    let examples = examples.as_str();
    let empty = tempfile::tempdir().unwrap();
    let empty = empty.path().to_str().unwrap();
    let not_a_component = tempfile::tempdir().unwrap();
    std::fs::write(not_a_component.path().join("x.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let not_a_component = not_a_component.path().to_str().unwrap();
    let hostile_type = "Nope\nType";
    let cases: [(&[&str], i32, &str); 8] = [
        (&["run", "--bogus"], 2, "--bogus"),
        (
            &[
                "run",
                "--source",
                "file:/nonexistent/docs.json",
                "--plugins",
                dir,
                "--database",
                &database,
            ],
            1,
            "/nonexistent/docs.json",
        ),
        (
            &[
                "run",
                "--source",
                examples,
                "--plugins",
                dir,
                "--types",
                "NopeType",
                "--database",
                &database,
            ],
            1,
            "no plugin for type \"NopeType\"",
        ),
        // A hostile name is quoted, so the message stays on one line.
        (
            &[
                "run",
                "--source",
                examples,
                "--plugins",
                dir,
                "--types",
                hostile_type,
                "--database",
                &database,
            ],
            1,
            "no plugin for type \"Nope\\nType\"",
        ),
        // An empty folder stores nothing: an error, not a successful run of nothing.
        (
            &[
                "run",
                "--source",
                examples,
                "--plugins",
                empty,
                "--database",
                &database,
            ],
            1,
            "no plugins in",
        ),
        // A core module is not a component: one line that says so.
        (
            &[
                "run",
                "--source",
                examples,
                "--plugins",
                not_a_component,
                "--database",
                &database,
            ],
            1,
            "is not a WebAssembly component",
        ),
        (
            &[
                "run",
                "--source",
                examples,
                "--plugins",
                "/nonexistent/plugins",
                "--database",
                &database,
            ],
            1,
            "/nonexistent/plugins",
        ),
        (
            &[
                "run",
                "--source",
                examples,
                "--plugins",
                dir,
                "--database",
                "sqlite:///nonexistent/dir/x.db",
            ],
            1,
            "cannot open database",
        ),
    ];
    // Every case runs and every mismatch is reported, so one failure hides none of the others.
    let mismatches: Vec<String> = cases
        .iter()
        .filter_map(|(args, code, needle)| {
            let output = cli(args);
            let stderr = String::from_utf8_lossy(&output.stderr);
            let one_line = *code != 1 || stderr.trim().lines().count() == 1;
            (output.status.code() != Some(*code) || !stderr.contains(needle) || !one_line).then(
                || {
                    format!(
                        "{args:?}: expected exit {code} and one line with {needle:?}, got {:?}: {stderr}",
                        output.status.code()
                    )
                },
            )
        })
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn the_compile_cache_is_filled_once_used_after_and_never_trusted_blindly() {
    let plugins = plugin_folder(&["github"]);
    let cache = tempfile::tempdir().unwrap();
    let source = plugins.path().join("empty.json");
    std::fs::write(&source, "[]").unwrap();
    // The run's stderr, at info level, with the cache in `cache` (a folder or `off`).
    let run_with = |cache: &std::ffi::OsStr| {
        let output = Command::new(binary())
            .args(["-v", "run", "--source"])
            .arg(format!("file:{}", source.display()))
            .arg("--database")
            .arg(format!(
                "sqlite://{}",
                plugins.path().join("cache.db").display()
            ))
            .arg("--plugins")
            .arg(plugins.path())
            .arg("--compile-cache")
            .arg(cache)
            .env_remove("BATCH_JOB_AURORA_LOG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        stderr
    };
    let run = || run_with(cache.path().as_os_str());
    let entries = || -> Vec<PathBuf> {
        std::fs::read_dir(cache.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect()
    };

    let first = run();
    assert!(first.contains("keeping it in"), "{first}");
    let [entry] = &entries()[..] else {
        panic!("one entry per plugin: {:?}", entries());
    };
    let name = entry.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(".cwasm"), "{name}");

    let second = run();
    assert!(
        !second.contains("compiled"),
        "loaded from the cache: {second}"
    );

    // An entry that is not what wasmtime made is compiled again and replaced.
    std::fs::write(entry, b"not native code").unwrap();
    let third = run();
    assert!(third.contains("compiling"), "{third}");
    assert!(third.contains("keeping it in"), "{third}");
    assert!(std::fs::read(entry).unwrap().len() > 1000);

    // A rebuilt plugin has other bytes, hence another entry: a stale one is never taken.
    let wasm = plugins.path().join("github.wasm");
    let mut bytes = std::fs::read(&wasm).unwrap();
    // A custom section (id 0, name "x", no payload) changes the bytes, not the plugin.
    bytes.extend_from_slice(&[0, 2, 1, b'x']);
    std::fs::write(&wasm, bytes).unwrap();
    let fourth = run();
    assert!(fourth.contains("keeping it in"), "{fourth}");
    assert_eq!(entries().len(), 2);

    let stderr = run_with("off".as_ref());
    assert!(stderr.contains("no precompiled .cwasm"), "{stderr}");
    assert_eq!(entries().len(), 2);
}

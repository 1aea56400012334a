//! Loading plugin folders: what is refused, and that every refusal names the file.

use batch_job_aurora::plugin::{LoadError, PluginEngine, SandboxLimits};

use crate::support::{plugin_folder, wasm};

fn load_error(folder: &std::path::Path) -> (LoadError, String) {
    let engine = PluginEngine::new(SandboxLimits::default()).unwrap();
    let error = engine.load_folder(folder).unwrap_err();
    let message = error.to_string();
    (error, message)
}

#[test]
fn the_real_plugins_load_and_describe_the_contract_columns() {
    let folder = plugin_folder(&["github", "slack", "event_rating"]);
    let engine = PluginEngine::new(SandboxLimits::default()).unwrap();
    let plugins = engine.load_folder(folder.path()).unwrap();
    let types: Vec<&str> = plugins.type_names().collect();
    assert_eq!(types, ["EventRatingType", "GithubType", "SlackType"]);
    let columns = |type_name: &str| -> Vec<String> {
        let info = &plugins.get(type_name).unwrap().info;
        info.columns
            .iter()
            .map(|c| format!("{} {}", c.name, c.kind))
            .collect()
    };
    assert_eq!(
        columns("GithubType"),
        [
            "repository_name text",
            "github_username text",
            "commit_id text",
            "commit_timestamp text",
            "stargazers_count int",
            "language text",
            "forks_count int",
            "open_issues_count int",
            "ref text"
        ]
    );
    assert_eq!(
        columns("SlackType"),
        [
            "event_type text",
            "slack_timestamp int",
            "team_id text",
            "channel_name text"
        ]
    );
    assert_eq!(
        columns("EventRatingType"),
        ["button int", "event_name text"]
    );
}

#[test]
fn a_hostile_type_name_is_refused_before_it_reaches_sql() {
    let folder = plugin_folder(&["bad_name"]);
    let (error, message) = load_error(folder.path());
    assert!(matches!(error, LoadError::InvalidInfo { .. }), "{message}");
    assert!(
        message.contains("bad_name.wasm") && message.contains("not a safe table name"),
        "{message}"
    );
}

#[test]
fn a_plugin_for_another_wit_major_is_refused_with_both_versions() {
    let folder = plugin_folder(&["future_wit"]);
    let (error, message) = load_error(folder.path());
    assert!(
        matches!(error, LoadError::UnsupportedVersion { .. }),
        "{message}"
    );
    assert!(message.contains("future_wit.wasm"), "{message}");
    assert!(
        message.contains("aurora:plugin@2.0.0") && message.contains("1.1.0"),
        "{message}"
    );
}

#[test]
fn two_plugins_claiming_one_type_are_refused() {
    let folder = plugin_folder(&["github"]);
    std::fs::copy(wasm("github"), folder.path().join("github-copy.wasm")).unwrap();
    let (error, message) = load_error(folder.path());
    assert!(
        matches!(error, LoadError::DuplicateType { .. }),
        "{message}"
    );
    assert!(
        message.contains("github.wasm") && message.contains("github-copy.wasm"),
        "{message}"
    );
    assert!(message.contains("GithubType"), "{message}");
}

#[test]
fn files_that_are_not_components_are_refused_by_name() {
    for (file, bytes) in [
        ("text.wasm", b"this is not wasm".as_slice()),
        // A valid core module, but not a component.
        ("core.wasm", b"\0asm\x01\0\0\0".as_slice()),
    ] {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join(file), bytes).unwrap();
        let (error, message) = load_error(folder.path());
        assert!(
            matches!(error, LoadError::NotAComponent { .. }),
            "{message}"
        );
        assert!(message.contains(file), "{message}");
    }
}

#[test]
fn files_without_the_wasm_extension_are_ignored() {
    let folder = plugin_folder(&["github"]);
    std::fs::write(folder.path().join("README.md"), "notes").unwrap();
    let engine = PluginEngine::new(SandboxLimits::default()).unwrap();
    assert_eq!(
        engine
            .load_folder(folder.path())
            .unwrap()
            .type_names()
            .count(),
        1
    );
}

//! `plugin new`: a standalone plugin project, with everything it needs from this repository
//! (the SDK or the Python helper package, and the WIT) copied in at the CLI's compile time.

use std::path::{Path, PathBuf};

use super::{KitError, Lang};
use crate::model::is_safe_identifier;

/// The componentize-py version `plugin build` installs and the kit is tested with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The WIT a new project is built against: the host's own.
pub const WIT: &str = include_str!("../../../wit/plugin.wit");
/// The WIT package version in [`WIT`].
pub const WIT_VERSION: &str = "1.1.0";

/// The SDK's sources, as the workspace has them.
const SDK_SOURCES: [(&str, &str); 7] = [
    ("lib.rs", include_str!("../../../plugins/sdk/src/lib.rs")),
    (
        "columns.rs",
        include_str!("../../../plugins/sdk/src/columns.rs"),
    ),
    (
        "field.rs",
        include_str!("../../../plugins/sdk/src/field.rs"),
    ),
    ("host.rs", include_str!("../../../plugins/sdk/src/host.rs")),
    (
        "input.rs",
        include_str!("../../../plugins/sdk/src/input.rs"),
    ),
    (
        "paths.rs",
        include_str!("../../../plugins/sdk/src/paths.rs"),
    ),
    (
        "testing.rs",
        include_str!("../../../plugins/sdk/src/testing.rs"),
    ),
];

const FIXTURE: &str = include_str!("../../../kit/fixtures.json.tmpl");
const FIXTURE_ROWS: &str = include_str!("../../../kit/fixtures.rows.json.tmpl");

const RUST_FILES: [(&str, &str); 4] = [
    (
        "Cargo.toml",
        include_str!("../../../kit/rust/Cargo.toml.tmpl"),
    ),
    (".gitignore", include_str!("../../../kit/rust/gitignore")),
    (
        "README.md",
        include_str!("../../../kit/rust/README.md.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../kit/rust/src/lib.rs.tmpl"),
    ),
];

const PYTHON_FILES: [(&str, &str); 7] = [
    (".gitignore", include_str!("../../../kit/python/gitignore")),
    (
        "README.md",
        include_str!("../../../kit/python/README.md.tmpl"),
    ),
    ("app.py", include_str!("../../../kit/python/app.py")),
    (
        "plugin.py",
        include_str!("../../../kit/python/plugin.py.tmpl"),
    ),
    (
        "test_plugin.py",
        include_str!("../../../kit/python/test_plugin.py"),
    ),
    (
        "aurora_kit/__init__.py",
        include_str!("../../../kit/python/aurora_kit/__init__.py"),
    ),
    (
        "aurora_kit/wit.py",
        include_str!("../../../kit/python/aurora_kit/wit.py"),
    ),
];

/// Writes a new plugin project for `type_name` into `dir`, which must not exist or be empty.
/// Returns the files written, relative to `dir`.
pub fn new_project(type_name: &str, lang: Lang, dir: &Path) -> Result<Vec<PathBuf>, KitError> {
    if !is_safe_identifier(type_name) {
        return Err(KitError::Invalid(format!(
            "type name {type_name:?} is not a safe table name (letters, digits and _, starting with a letter)"
        )));
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|source| KitError::Read {
                path: dir.to_owned(),
                source,
            })?
            .next()
            .is_some()
    {
        return Err(KitError::Invalid(format!(
            "{} exists and is not empty",
            dir.display()
        )));
    }
    let crate_name = snake_case(type_name);
    let dir_name = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| crate_name.clone());
    let fill = |template: &str| {
        template
            .replace("__TYPE_NAME__", type_name)
            .replace("__PACKAGE__", &crate_name.replace('_', "-"))
            .replace("__CRATE__", &crate_name)
            .replace("__DIR__", &dir_name)
            .replace("__WIT_VERSION__", WIT_VERSION)
            .replace("__SDK_VERSION__", env!("CARGO_PKG_VERSION"))
            .replace("__COMPONENTIZE_PY__", COMPONENTIZE_PY_VERSION)
    };
    let mut files: Vec<(PathBuf, String)> = vec![
        ("wit/plugin.wit".into(), WIT.to_owned()),
        ("fixtures/example.json".into(), FIXTURE.to_owned()),
        ("fixtures/example.rows.json".into(), FIXTURE_ROWS.to_owned()),
    ];
    match lang {
        Lang::Rust => {
            files.extend(
                RUST_FILES
                    .iter()
                    .map(|(path, text)| (path.into(), fill(text))),
            );
            files.push((
                "vendor/aurora-plugin-sdk/Cargo.toml".into(),
                fill(include_str!("../../../kit/rust/sdk-Cargo.toml.tmpl")),
            ));
            files.extend(SDK_SOURCES.iter().map(|(name, text)| {
                (
                    Path::new("vendor/aurora-plugin-sdk/src").join(name),
                    (*text).to_owned(),
                )
            }));
        }
        Lang::Python => {
            files.extend(
                PYTHON_FILES
                    .iter()
                    .map(|(path, text)| (path.into(), fill(text))),
            );
        }
    }
    for (relative, text) in &files {
        let path = dir.join(relative);
        let write = |path: &Path| -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, text)
        };
        write(&path).map_err(|source| KitError::Write { path, source })?;
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

/// `UBWType` → `ubw_type`, `GithubType` → `github_type`.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (index, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && index > 0 {
            let previous = chars[index - 1];
            let next_is_lower = chars.get(index + 1).is_some_and(char::is_ascii_lowercase);
            if previous.is_ascii_lowercase()
                || previous.is_ascii_digit()
                || (previous.is_ascii_uppercase() && next_is_lower)
            {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_names_are_snake_case() {
        for (name, snake) in [
            ("UBWType", "ubw_type"),
            ("GithubType", "github_type"),
            ("EventRatingType", "event_rating_type"),
            ("X", "x"),
            ("Type2Go", "type2_go"),
        ] {
            assert_eq!(snake_case(name), snake, "{name}");
        }
    }

    #[test]
    fn a_project_has_its_wit_fixture_and_sources_and_refuses_a_full_folder() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("ubw");
        let files = new_project("UBWType", Lang::Rust, &project).unwrap();
        assert!(files.contains(&PathBuf::from("vendor/aurora-plugin-sdk/src/lib.rs")));
        let lib = std::fs::read_to_string(project.join("src/lib.rs")).unwrap();
        assert!(
            lib.contains("const TYPE_NAME: &'static str = \"UBWType\";"),
            "{lib}"
        );
        assert!(!lib.contains("__"), "{lib}");
        let cargo = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("name = \"ubw_type\""), "{cargo}");
        assert_eq!(
            std::fs::read_to_string(project.join("wit/plugin.wit")).unwrap(),
            WIT
        );
        assert!(WIT.contains(&format!("package aurora:plugin@{WIT_VERSION};")));
        let error = new_project("UBWType", Lang::Python, &project).unwrap_err();
        assert!(error.to_string().contains("not empty"), "{error}");
        assert!(new_project("Bad Name", Lang::Python, &dir.path().join("x")).is_err());
        let python = dir.path().join("py");
        new_project("UBWType", Lang::Python, &python).unwrap();
        let plugin = std::fs::read_to_string(python.join("plugin.py")).unwrap();
        assert!(plugin.contains("type_name = \"UBWType\""), "{plugin}");
    }

    /// A new Rust project gets every source file of the SDK, not a list that a new module can
    /// miss.
    #[test]
    fn a_rust_project_carries_every_file_of_the_sdk() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk/src");
        let mut files: Vec<String> = std::fs::read_dir(sdk)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut carried: Vec<String> = SDK_SOURCES
            .iter()
            .map(|(name, _)| name.to_string())
            .collect();
        carried.sort();
        assert_eq!(carried, files);
    }
}

//! Paths to the plugins that `build.rs` compiled to wasm, for the integration tests.

use std::path::{Path, PathBuf};

/// Where `build.rs` put every plugin component.
pub fn wasm_dir() -> &'static Path {
    Path::new(env!("PLUGIN_WASM_DIR"))
}

/// The path of one built plugin, by its library name (`github`, `misbehaving`).
pub fn wasm(name: &str) -> PathBuf {
    wasm_dir().join(format!("{name}.wasm"))
}

/// The workspace root, for the bundled examples and fixtures.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace root")
}

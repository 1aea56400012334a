//! Builds every plugin, real and deliberately bad, to a wasm component, the way `cargo xtask
//! dist` does, so that the tests load exactly what production loads.
//!
//! The nested cargo uses its own profile (`plugin`) and target, so it never waits on the lock
//! that the outer build holds on `target/debug`.

use std::path::{Path, PathBuf};
use std::process::Command;

const PLUGINS: [&str; 9] = [
    "plugin-github",
    "plugin-slack",
    "plugin-event-rating",
    "test-plugin-misbehaving",
    "test-plugin-bad-name",
    "test-plugin-future-wit",
    "test-plugin-frozen-1-0-0",
    "test-plugin-replay-v1",
    "test-plugin-replay-v2",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("tests/ is in the workspace root");
    for watched in ["plugins", "tests/plugins", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    ensure_wasm_target();
    let mut build = Command::new(&cargo);
    build
        .current_dir(root)
        .args(["build", "--target", "wasm32-wasip2", "--profile", "plugin"])
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the outer (native) build must not reach the wasm build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    for plugin in PLUGINS {
        build.args(["-p", plugin]);
    }
    let status = build
        .status()
        .expect("cannot run cargo to build the plugins");
    assert!(status.success(), "building the plugins to wasm failed");
    let out = target_dir.join("wasm32-wasip2").join("plugin");
    println!("cargo:rustc-env=PLUGIN_WASM_DIR={}", out.display());
}

/// Installs the wasm target when the toolchain lacks it.
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("cannot run rustc");
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    if Path::new(&sysroot)
        .join("lib/rustlib/wasm32-wasip2")
        .exists()
    {
        return;
    }
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .expect("wasm32-wasip2 is missing and rustup cannot be run to add it");
    assert!(status.success(), "rustup target add wasm32-wasip2 failed");
}

//! Nothing here: see `tests.rs` and `build.rs`.

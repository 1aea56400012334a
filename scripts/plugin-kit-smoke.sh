#!/usr/bin/env bash
# The plugin author's path, as CI walks it: `plugin new` for both languages in a temporary
# folder outside the checkout, the generated project's own tests, `plugin build`, and
# `plugin check --expect` against the generated fixture. A generated project that stops
# building or checking fails this script.
#
# Usage: scripts/plugin-kit-smoke.sh [path/to/batch-job-aurora]   (default: a debug build)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

if [ $# -ge 1 ]; then
  bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
else
  cargo build --quiet --manifest-path "$root/Cargo.toml" -p batch-job-aurora-cli --bin batch-job-aurora
  bin="${CARGO_TARGET_DIR:-$root/target}/debug/batch-job-aurora"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
# Nothing of the checkout may be used: the projects stand alone.
unset CARGO_TARGET_DIR

passed=0
failed=0
step() {
  local name="$1"; shift
  local started=$SECONDS
  if "$@"; then
    passed=$((passed + 1)); echo "ok: $name ($((SECONDS - started)) s)"
  else
    failed=$((failed + 1)); echo "FAILED: $name"
  fi
}

rust() {
  "$bin" plugin new SmokeType --lang rust --dir "$work/smoke-rust" &&
    (cd "$work/smoke-rust" && cargo test --quiet) &&
    wasm="$("$bin" plugin build "$work/smoke-rust" | tail -n1)" &&
    "$bin" plugin check "$wasm" --docs "$work/smoke-rust/fixtures/example.json" \
      --expect "$work/smoke-rust/fixtures/example.rows.json"
}

python() {
  "$bin" plugin new SmokeType --lang python --dir "$work/smoke-python" &&
    (cd "$work/smoke-python" && python3 -m unittest --quiet) &&
    wasm="$("$bin" plugin build "$work/smoke-python" | tail -n1)" &&
    "$bin" plugin check "$wasm" --docs "$work/smoke-python/fixtures/example.json" \
      --expect "$work/smoke-python/fixtures/example.rows.json"
}

step "plugin new/build/check, Rust" rust
step "plugin new/build/check, Python" python
echo "smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

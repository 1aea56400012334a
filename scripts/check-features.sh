#!/usr/bin/env bash
# Clippy (-D warnings) on every feature combination that ships, listed, not exploded: the
# default (everything) is checked by `cargo clippy --workspace`; these are the others.
set -euo pipefail
cd "$(dirname "$0")/.."

combinations=(
  # The demo's runner (`cargo xtask demo`): SQLite and files, no AWS SDK, no kit, no Lambda.
  "-p batch-job-aurora-cli --no-default-features --features sqlite"
  # The Lambda zip's bootstrap (`cargo xtask lambda`): AWS, the Aurora engines, no kit.
  "-p batch-job-aurora-cli --no-default-features --features lambda,mysql,postgres"
  # A local runner without the AWS SDK, every engine and the kit.
  "-p batch-job-aurora-cli --no-default-features --features kit,sqlite,mysql,postgres"
  # The library with one engine each (the unit tests too).
  "-p batch-job-aurora --all-targets --no-default-features --features mysql"
  "-p batch-job-aurora --all-targets --no-default-features --features postgres"
  "-p batch-job-aurora --all-targets --no-default-features --features sqlite,aws"
)
for combination in "${combinations[@]}"; do
  echo "== cargo clippy $combination"
  # shellcheck disable=SC2086 # the combination is words
  cargo clippy $combination -- -D warnings
done
# What a build without a part says when the part is asked for.
cargo test -p batch-job-aurora --lib --no-default-features --features sqlite features::

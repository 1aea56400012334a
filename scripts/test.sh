#!/usr/bin/env bash
# The whole test suite, from a fresh clone: the toolchain pieces and the services it needs,
# then every test of the workspace (the tests build the plugins to wasm themselves).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
bash scripts/services.sh

# moto's server stands in for DynamoDB (with boto3 to seed it); kept in .venv.
if [ ! -x .venv/bin/moto_server ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]==5.*'
fi

# Never let an AWS SDK in a test reach for the instance metadata service.
export AWS_EC2_METADATA_DISABLED=true

# The Lambda tests (lambda, lambda_deadline, backfill, ministack) run the release `bootstrap`,
# optimised as the zip ships it. Built as `cargo xtask bench` builds dist (the same packages, so
# the same unified features): CI's benchmark then reuses every unit of it. A plain `cargo test`
# builds and runs a debug one instead.
cargo build --release -p batch-job-aurora-cli -p bench-plugin-cost
BATCH_JOB_AURORA_TEST_BOOTSTRAP="$(realpath -m "${CARGO_TARGET_DIR:-target}")/release/bootstrap"
export BATCH_JOB_AURORA_TEST_BOOTSTRAP

# The Python plugin kit's own unit tests (its input paths and the rule on undeclared reads).
(cd kit/python && python3 -m unittest --quiet test_aurora_kit)

cargo test --workspace "$@"

# The SAM template: translated offline and linted; each broken copy must fail for its reason.
bash scripts/test-deploy.sh

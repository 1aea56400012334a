#!/usr/bin/env bash
# Starts MiniStack 1.5.33 (PyPI; Step Functions, Lambda, S3 and more on one local port, no
# Docker) on GATEWAY_PORT, installing it into .venv-ministack first when missing: it pins its
# own botocore, so it lives in a venv of its own. Used by tests/ministack.rs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
source "$root/scripts/venv.sh"
venv="$root/.venv-ministack"
pinned_venv "$venv" "ministack==1.5.33"
exec "$venv/bin/python" -m ministack

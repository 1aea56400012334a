#!/usr/bin/env bash
# Starts MiniStack 1.5.33 (PyPI; Step Functions, Lambda, S3 and more on one local port, no
# Docker) on GATEWAY_PORT, installing it into .venv-ministack first when missing: it pins its
# own botocore, so it lives in a venv of its own. Used by tests/ministack.rs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
MINISTACK_VERSION=1.5.33
venv="$root/.venv-ministack"
if ! "$venv/bin/python" -c "
import importlib.metadata as m, sys
sys.exit(m.version('ministack') != '$MINISTACK_VERSION')
" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "ministack==$MINISTACK_VERSION"
fi
exec "$venv/bin/python" -m ministack

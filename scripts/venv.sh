# Sourced by the scripts that use pinned Python tools: `pinned_venv DIR PACKAGE==VERSION…`
# makes DIR a venv holding exactly those versions, installing from PyPI only when one differs
# or the venv is missing. Each tool that pins its own libraries gets a venv of its own.
pinned_venv() {
  local venv=$1
  shift
  if ! "$venv/bin/python" - "$@" 2>/dev/null <<'PY'; then
import importlib.metadata as m, sys
sys.exit(any(m.version(name) != version for name, version in (p.split("==") for p in sys.argv[1:])))
PY
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
  fi
}

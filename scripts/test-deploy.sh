#!/usr/bin/env bash
# The template's own test: deploy/template.yaml validates (aws-sam-translator, the explicit
# checks, cfn-lint, and checkov 3.3.30 with zero failed checks), and each deliberately broken
# copy is refused by scripts/validate-template.sh for the right reason. A broken copy is the
# template with one fault (tests/deploy/broken-*.fault, applied by scripts/break-template.py),
# so it follows every change of the template; every `# expect: TEXT` line of the fault must
# appear in the output. validate-template.sh installs the pinned tools (.venv-deploy, .venv-checkov) the first
# time.
set -uo pipefail
cd "$(dirname "$0")/.."

passed=0 failed=0
expect() {  # expect pass|fail TEMPLATE [FAULT]
  local want=$1 template=$2 got output start=$SECONDS missing=""
  if output="$(bash scripts/validate-template.sh "$template" 2>&1)"; then got=pass; else got=fail; fi
  while IFS= read -r text; do
    grep -qF -- "$text" <<<"$output" || missing+=" [$text]"
  done < <(sed -n 's/^# expect: //p' "${3:-$template}")
  if [ "$got" = "$want" ] && [ -z "$missing" ]; then
    passed=$((passed + 1)); echo "ok   ${3:-$template} ($want as expected, $((SECONDS - start)) s)"
  else
    failed=$((failed + 1))
    echo "FAIL ${3:-$template}: expected $want, got $got${missing:+; output lacks$missing}"
    echo "$output" | sed 's/^/     /'
  fi
}

expect pass deploy/template.yaml
broken_dir="$(mktemp -d)"
trap 'rm -rf "$broken_dir"' EXIT
for fault in tests/deploy/broken-*.fault; do
  broken="$broken_dir/$(basename "$fault" .fault).yaml"
  if python3 scripts/break-template.py deploy/template.yaml "$fault" "$broken"; then
    expect fail "$broken" "$fault"
  else
    failed=$((failed + 1)); echo "FAIL $fault: cannot be applied to deploy/template.yaml"
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

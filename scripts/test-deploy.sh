#!/usr/bin/env bash
# The template's own test: deploy/template.yaml validates (aws-sam-translator, the explicit
# checks, cfn-lint, and checkov 3.3.30 with zero failed checks), and each deliberately broken
# copy (tests/deploy/broken-*.yaml, one fault each) is refused by scripts/validate-template.sh
# for the right reason: every `# expect: TEXT` line of the broken file must appear in the
# output. validate-template.sh installs the pinned tools (.venv-deploy, .venv-checkov) the first
# time.
set -uo pipefail
cd "$(dirname "$0")/.."

passed=0 failed=0
expect() {  # expect pass|fail TEMPLATE
  local want=$1 template=$2 got output start=$SECONDS missing=""
  if output="$(bash scripts/validate-template.sh "$template" 2>&1)"; then got=pass; else got=fail; fi
  while IFS= read -r text; do
    grep -qF -- "$text" <<<"$output" || missing+=" [$text]"
  done < <(sed -n 's/^# expect: //p' "$template")
  if [ "$got" = "$want" ] && [ -z "$missing" ]; then
    passed=$((passed + 1)); echo "ok   $template ($want as expected, $((SECONDS - start)) s)"
  else
    failed=$((failed + 1))
    echo "FAIL $template: expected $want, got $got${missing:+; output lacks$missing}"
    echo "$output" | sed 's/^/     /'
  fi
}

expect pass deploy/template.yaml
for broken in tests/deploy/broken-*.yaml; do
  expect fail "$broken"
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

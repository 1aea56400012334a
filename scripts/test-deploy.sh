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

# The backfill's state machine (deploy/backfill.asl.json): only the template's three
# substitutions, substituted here as CloudFormation does, then asl-validator 4 (npm, installed
# into .npm-tools) on the result; and its retries never cover a bad event.
ASL_VALIDATOR_VERSION=4.0.0
validator=.npm-tools/node_modules/.bin/asl-validator
if [ "$("$validator" --version 2>/dev/null)" != "$ASL_VALIDATOR_VERSION" ]; then
  npm install --silent --no-audit --no-fund --prefix .npm-tools "asl-validator@$ASL_VALIDATOR_VERSION" >/dev/null
fi
asl="$broken_dir/backfill.asl.json"
if output="$(python3 - deploy/backfill.asl.json "$asl" <<'PY' 2>&1 && "$validator" --json-path "$asl" 2>&1
import json, re, sys
text = open(sys.argv[1]).read()
allowed = {"JobFunctionArn", "MaxConcurrency", "BackfillBucket"}
found = set(re.findall(r"\$\{([^}]*)\}", text))
if found != allowed:
    sys.exit(f"substitutions: expected {sorted(allowed)}, found {sorted(found)}")
values = {"JobFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:job",
          "MaxConcurrency": "10", "BackfillBucket": "backfill-bucket"}
text = re.sub(r"\$\{([^}]*)\}", lambda m: values[m.group(1)], text)
definition = json.loads(text)
def states(machine):
    for name, state in machine["States"].items():
        yield name, state
        if "ItemProcessor" in state:
            yield from states(state["ItemProcessor"])
for name, state in states(definition):
    for retry in state.get("Retry", []):
        bad = {"InvalidEvent", "UnknownType", "InvalidConfig", "States.ALL", "States.TaskFailed"} & set(retry["ErrorEquals"])
        if bad:
            sys.exit(f"{name}: Retry covers {sorted(bad)}: a bad event is never retried")
open(sys.argv[2], "w").write(text)
PY
)"; then
  passed=$((passed + 1)); echo "ok   deploy/backfill.asl.json (asl-validator $ASL_VALIDATOR_VERSION, substitutions, retries)"
else
  failed=$((failed + 1)); echo "FAIL deploy/backfill.asl.json"; echo "$output" | sed 's/^/     /'
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

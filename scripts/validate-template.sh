#!/usr/bin/env bash
# Validates the SAM template offline, the way CloudFormation will see it:
#   1. aws-sam-translator expands AWS::Serverless-2016-10-31 into plain CloudFormation
#      (local CodeUri replaced by a placeholder S3 URI, as `sam validate` does; no AWS calls);
#   2. explicit checks on the result: the Lambda runtime is one Lambda knows, and every
#      EventBridge schedule expression is a well-formed rate()/cron()/at(); a dashboard shows
#      only metrics the function emits;
#   3. cfn-lint on the translated template (errors and warnings fail);
#   4. checkov 3.3.30 on the SAM file and on the translated template: zero failed checks, and
#      every skip carries its reason.
# cfn-lint on the SAM file alone lets a bad Runtime or a malformed schedule pass. The explicit
# checks of step 2 also cover what neither linter sees: a scheduled function keeps its failed
# events (queue, retries, event age, an alarm on the queue), and secrets and keys are granted
# by ARN even inside conditional policies.
#
#   scripts/validate-template.sh [TEMPLATE]        # default deploy/template.yaml
#   KEEP_TRANSLATED=out.json scripts/validate-template.sh   # also keep the translated template
#
# Tools live in .venv-deploy and .venv-checkov (pinned, from PyPI); nothing here needs AWS
# credentials, and checkov downloads nothing (--skip-download).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
template="$(realpath "${1:-$root/deploy/template.yaml}")"

source "$root/scripts/venv.sh"
SAM_TRANSLATOR_VERSION=1.115.0
CFN_LINT_VERSION=1.58.0
venv="$root/.venv-deploy"
pinned_venv "$venv" "aws-sam-translator==$SAM_TRANSLATOR_VERSION" "cfn-lint==$CFN_LINT_VERSION"
# checkov in a venv of its own: it pins its own versions of libraries the others use.
CHECKOV_VERSION=3.3.30
checkov_venv="$root/.venv-checkov"
pinned_venv "$checkov_venv" "checkov==$CHECKOV_VERSION"

# Offline: a region for ARNs and partitions, dummy keys, and never the instance metadata service.
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=AKIAOFFLINEVALIDATION AWS_SECRET_ACCESS_KEY=offline-validation-only
unset AWS_PROFILE AWS_SESSION_TOKEN
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
translated="$work/translated.json"

echo "== $template"
checks=0
"$venv/bin/python" - "$template" "$translated" <<'PY' || checks=$?
import json
import re
import sys

from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

source, target = sys.argv[1], sys.argv[2]
problems = []


class OfflinePolicies:
    """Stands in for ManagedPolicyLoader, which lists AWS managed policies through IAM."""

    def load(self):
        names = {
            "AWSLambdaBasicExecutionRole": "service-role/AWSLambdaBasicExecutionRole",
            "AWSLambdaVPCAccessExecutionRole": "service-role/AWSLambdaVPCAccessExecutionRole",
            "AWSXrayWriteOnlyAccess": "AWSXrayWriteOnlyAccess",
            "AWSXRayDaemonWriteAccess": "AWSXRayDaemonWriteAccess",
        }
        return {name: f"arn:aws:iam::aws:policy/{path}" for name, path in names.items()}


with open(source) as f:
    sam = yaml_parse(f.read())
if not isinstance(sam, dict) or not isinstance(sam.get("Resources"), dict):
    sys.exit(f"{source}: not a template (no Resources)")

# `sam package` uploads local artifacts; for validation they become placeholder S3 URIs.
ARTIFACTS = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::Api": "DefinitionUri",
    "AWS::Serverless::HttpApi": "DefinitionUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
}
for name, resource in sam["Resources"].items():
    key = ARTIFACTS.get(resource.get("Type"))
    props = resource.get("Properties") or {}
    value = props.get(key) if key else None
    if isinstance(value, str) and not value.startswith("s3://"):
        props[key] = f"s3://offline-validation-bucket/{value.lstrip('./')}"

try:
    cfn = transform(sam, {}, OfflinePolicies())
except InvalidDocumentException as error:
    for cause in error.causes:
        problems.append(f"SAM: {cause.message}")
    cfn = None

# --- explicit checks on the translated template --------------------------------------------
# Lambda runtime identifiers (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html).
RUNTIME = re.compile(
    r"^(provided(\.al2|\.al2023)?"
    r"|nodejs\d{1,2}\.x|python3\.\d{1,2}|java\d{1,2}(\.al2|\.al2023)?"
    r"|dotnet(6|8|10)|ruby3\.\d)$"
)
# The runtime this project ships for; anything else in this template is a mistake.
EXPECTED_RUNTIME = "provided.al2023"

UNITS = {"minute", "minutes", "hour", "hours", "day", "days"}
MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"


def cron_field(value, low, high, names="", extra=""):
    """One field of an EventBridge cron: *, values, ranges, lists and increments."""
    number = rf"(?:\d{{1,4}}{'|' + names if names else ''})"
    item = rf"(?:\*|{number}(?:-{number})?)(?:/\d{{1,4}})?"
    if not re.fullmatch(rf"{item}(?:,{item})*", value):
        return False
    for token in re.findall(r"\d+", value.split("/")[0]):
        if not low <= int(token) <= high:
            return False
    return True


def schedule_problem(expression):
    """None when `expression` is a valid EventBridge schedule, else why not.

    rate(value unit): value a positive integer, unit minute|hour|day, singular for 1 and plural
    otherwise. cron(min hour day-of-month month day-of-week year): six fields, exactly one of the
    two day fields `?`. at(yyyy-mm-ddThh:mm:ss) for EventBridge Scheduler.
    """
    m = re.fullmatch(r"rate\((.*)\)", expression)
    if m:
        parts = m.group(1).split(" ")
        if len(parts) != 2 or not re.fullmatch(r"[1-9][0-9]*", parts[0]) or parts[1] not in UNITS:
            return "rate() takes a positive integer and minute(s), hour(s) or day(s), one space apart"
        if (parts[0] == "1") != (not parts[1].endswith("s")):
            return "rate(): the unit is singular for 1 and plural otherwise"
        return None
    m = re.fullmatch(r"cron\((.*)\)", expression)
    if m:
        fields = m.group(1).split(" ")
        if len(fields) != 6:
            return "cron() takes six fields: minutes hours day-of-month month day-of-week year"
        minute, hour, dom, month, dow, year = fields
        if (dom == "?") == (dow == "?"):
            return "cron(): exactly one of day-of-month and day-of-week must be ?"
        ok = (
            cron_field(minute, 0, 59)
            and cron_field(hour, 0, 23)
            and (dom == "?" or dom in ("L", "LW") or re.fullmatch(r"\d{1,2}W", dom) or cron_field(dom, 1, 31))
            and cron_field(month.upper(), 1, 12, MONTHS)
            and (dow == "?" or re.fullmatch(r"[1-7]L|[1-7]#[1-5]|L", dow) or cron_field(dow.upper(), 1, 7, DAYS))
            and cron_field(year, 1970, 2199)
        )
        return None if ok else "cron(): a field is out of range or malformed"
    if re.fullmatch(r"at\(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\)", expression):
        return None
    return "a schedule is rate(...), cron(...) or at(...)"


def literal(value, template):
    """A property's value when it is known statically (a literal or a Ref to a defaulted parameter)."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        parameter = (template.get("Parameters") or {}).get(value["Ref"])
        return (parameter or {}).get("Default")
    return value if isinstance(value, str) else None


def get_att(value, attribute):
    """The resource whose `attribute` a Fn::GetAtt names, else None."""
    target = value.get("Fn::GetAtt") if isinstance(value, dict) else None
    if isinstance(target, str):
        target = target.split(".", 1)
    if isinstance(target, list) and len(target) == 2 and target[1] == attribute:
        return target[0]
    return None


def ref(value):
    return value.get("Ref") if isinstance(value, dict) else None


def failure_problems(resources):
    """A function that EventBridge invokes (asynchronously) keeps what fails: a dead-letter queue
    or an OnFailure destination, retries and event age set on purpose, and an alarm on the
    queue's depth. Otherwise a run that fails every attempt leaves no trace."""
    problems = []
    of_kind = lambda kind: {n: r for n, r in resources.items() if r.get("Type") == kind}
    props = lambda resource: resource.get("Properties") or {}
    invoked = {}
    for rule_name, rule in of_kind("AWS::Events::Rule").items():
        for target in props(rule).get("Targets") or []:
            function = get_att(target.get("Arn"), "Arn")
            if function in of_kind("AWS::Lambda::Function"):
                invoked.setdefault(function, rule_name)
    invoke_configs = of_kind("AWS::Lambda::EventInvokeConfig")
    alarms = of_kind("AWS::CloudWatch::Alarm")
    for function, rule in sorted(invoked.items()):
        configs = [c for c in invoke_configs.values() if ref(props(c).get("FunctionName")) == function]
        queues = [get_att((props(resources[function]).get("DeadLetterConfig") or {}).get("TargetArn"), "Arn")]
        for config in configs:
            on_failure = ((props(config).get("DestinationConfig") or {}).get("OnFailure") or {})
            queues.append(get_att(on_failure.get("Destination"), "Arn"))
        queues = [q for q in queues if q in of_kind("AWS::SQS::Queue")]
        if not queues:
            problems.append(
                f"{function}: invoked asynchronously by {rule}, but no SQS dead-letter queue or "
                "OnFailure destination keeps the events that fail every attempt"
            )
        if not any(
            "MaximumRetryAttempts" in props(c) and "MaximumEventAgeInSeconds" in props(c) for c in configs
        ):
            problems.append(
                f"{function}: invoked asynchronously by {rule}; its EventInvokeConfig must set "
                "MaximumRetryAttempts and MaximumEventAgeInSeconds on purpose"
            )
        for queue in queues:
            watched = any(
                props(alarm).get("Namespace") == "AWS/SQS"
                and props(alarm).get("MetricName") == "ApproximateNumberOfMessagesVisible"
                and any(
                    d.get("Name") == "QueueName" and get_att(d.get("Value"), "QueueName") == queue
                    for d in props(alarm).get("Dimensions") or []
                )
                for alarm in alarms.values()
            )
            if not watched:
                problems.append(
                    f"{queue}: failed runs wait there unseen: no alarm on its depth (AWS/SQS "
                    f"ApproximateNumberOfMessagesVisible, QueueName = !GetAtt {queue}.QueueName)"
                )
    return problems


def policy_statements(value):
    """Every IAM statement under `value`, in both branches of every Fn::If."""
    if isinstance(value, list):
        for item in value:
            yield from policy_statements(item)
    elif isinstance(value, dict):
        if "Effect" in value and "Action" in value:
            yield value
        else:
            for item in value.values():
                yield from policy_statements(item)


def grant_problems(resources):
    """Secrets and keys are granted by their ARNs: no wildcard in a Resource of a
    secretsmanager: or kms: action (checkov does not read conditional policies)."""
    problems = []
    for name, resource in resources.items():
        if resource.get("Type") not in ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        for statement in policy_statements(resource.get("Properties") or {}):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            guarded = [a for a in actions if isinstance(a, str) and a.split(":")[0] in ("secretsmanager", "kms")]
            targets = statement.get("Resource")
            targets = targets if isinstance(targets, list) else [targets]
            if guarded and any(isinstance(t, str) and "*" in t for t in targets):
                problems.append(
                    f"{name}: {', '.join(guarded)} on {targets}: grant secrets and keys by their ARNs only"
                )
    return problems


# The metrics the function emits (host/src/metrics.rs, Embedded Metric Format).
EMITTED_METRICS = {"Duration", "IncompleteRun", "Inserted", "Duplicates", "Refused", "Failed",
                   "BackfillShardCompleted", "BackfillShardDeadlineReached", "BackfillShardFailed",
                   "BackfillShardDuration", "BackfillShards", "BackfillShardsLoaded",
                   "BackfillShardsFailed", "BackfillInserted", "BackfillDuplicates",
                   "BackfillRefused", "BackfillFailed"}


def dashboard_problems(resources):
    """A dashboard's body is JSON (once !Sub has filled it in), and every metric of the
    function's own namespace that it shows is one the function emits: a misspelt metric draws
    an empty graph, which no linter notices."""
    problems = []
    for name, resource in resources.items():
        if resource.get("Type") != "AWS::CloudWatch::Dashboard":
            continue
        body = (resource.get("Properties") or {}).get("DashboardBody")
        if isinstance(body, dict) and "Fn::Sub" in body:
            body = body["Fn::Sub"]
            body = body[0] if isinstance(body, list) else body
        if not isinstance(body, str):
            problems.append(f"{name}: DashboardBody must be a JSON string (or a !Sub of one)")
            continue
        own = "SUBSTITUTED-NAMESPACE"
        text = body.replace("${MetricsNamespace}", own)
        text = re.sub(r"\$\{[^}]*\}", "SUBSTITUTED", text)
        try:
            dashboard = json.loads(text)
        except ValueError as error:
            problems.append(f"{name}: DashboardBody is not JSON: {error}")
            continue
        for widget in dashboard.get("widgets") or []:
            title = (widget.get("properties") or {}).get("title", "?")
            for metric in (widget.get("properties") or {}).get("metrics") or []:
                shown = []
                for item in metric:
                    if isinstance(item, dict) and own in str(item.get("expression", "")):
                        shown += re.findall(r'MetricName="([^"]+)"', item["expression"])
                if len(metric) >= 2 and metric[0] == own:
                    shown.append(metric[1])
                for metric_name in shown:
                    if metric_name not in EMITTED_METRICS:
                        problems.append(
                            f"{name}: the widget {title!r} shows {metric_name}, which the function "
                            f"does not emit (it emits {', '.join(sorted(EMITTED_METRICS))})"
                        )
    return problems


if cfn is not None:
    for name, resource in cfn.get("Resources", {}).items():
        kind, props = resource.get("Type"), resource.get("Properties") or {}
        if kind == "AWS::Lambda::Function":
            runtime = literal(props.get("Runtime"), cfn)
            if runtime is None:
                problems.append(f"{name}: Runtime must be given (custom runtime {EXPECTED_RUNTIME})")
            elif not RUNTIME.fullmatch(runtime):
                problems.append(f"{name}: Runtime {runtime!r} is not a Lambda runtime")
            elif runtime != EXPECTED_RUNTIME:
                problems.append(f"{name}: Runtime {runtime!r}, but bootstrap is built for {EXPECTED_RUNTIME}")
        if kind in ("AWS::Events::Rule", "AWS::Scheduler::Schedule"):
            expression = literal(props.get("ScheduleExpression"), cfn)
            if expression is not None:
                why = schedule_problem(expression)
                if why:
                    problems.append(f"{name}: ScheduleExpression {expression!r}: {why}")
    problems.extend(failure_problems(cfn["Resources"]))
    problems.extend(grant_problems(cfn["Resources"]))
    problems.extend(dashboard_problems(cfn["Resources"]))
    with open(target, "w") as f:
        json.dump(cfn, f, indent=1)

for problem in problems:
    print(f"  E {problem}")
sys.exit(1 if problems else 0)
PY
if [ ! -s "$translated" ]; then
  echo "FAIL: $template does not translate"
  exit 1
fi
if [ "$checks" = 0 ]; then echo "   translated; runtime, schedules, failed-run handling and grants checked"; fi
if [ -n "${KEEP_TRANSLATED:-}" ]; then cp "$translated" "$KEEP_TRANSLATED"; fi

lint=0
"$venv/bin/cfn-lint" --regions us-east-1 --format parseable --non-zero-exit-code warning -- "$translated" \
  >"$work/lint.txt" || lint=$?
sed "s|$translated|translated|; s|^|  cfn-lint |" "$work/lint.txt"

# 4. checkov, an IaC security scanner, on the SAM template and on its translation (which also
#    has the resources SAM makes: the EventBridge rule, the permission, the EventInvokeConfig).
#    Zero failed checks. A check that does not apply is skipped on its resource in the template
#    (Metadata: checkov: skip: - id, comment), with the reason: never globally, never silently.
scan=0
cp "$template" "$work/sam.yaml"  # checkov names files by path: two fixed names, two labels
"$checkov_venv/bin/checkov" --skip-download --framework cloudformation --output json \
  --file "$work/sam.yaml" --file "$translated" >"$work/checkov.json" 2>"$work/checkov.err" || true
"$venv/bin/python" - "$work/checkov.json" <<'PY' || scan=1
import json
import sys
from collections import Counter

try:
    with open(sys.argv[1]) as f:
        report = json.load(f)
except ValueError:
    sys.exit("  checkov gave no report")
reports = report if isinstance(report, list) else [report]
reports = [r for r in reports if isinstance(r, dict) and r.get("check_type") == "cloudformation"]
if not reports:
    sys.exit("  checkov scanned nothing")
results, summary = reports[0]["results"], reports[0]["summary"]
label = lambda check: "SAM" if check["file_path"].endswith("sam.yaml") else "translated"
counts = Counter()
bad = 0
for outcome in ("passed", "failed", "skipped"):
    for check in results.get(f"{outcome}_checks", []):
        counts[label(check), outcome] += 1
for check in results.get("failed_checks", []):
    print(f"  checkov FAILED {check['check_id']} {check['resource']} ({label(check)}): {check['check_name']}")
    bad += 1
for check in results.get("skipped_checks", []):
    reason = ((check.get("check_result") or {}).get("suppress_comment") or "").strip()
    if not reason or reason == "No comment provided":
        print(f"  checkov skip without a reason: {check['check_id']} {check['resource']} ({label(check)})")
        bad += 1
    else:
        print(f"  checkov skipped {check['check_id']} {check['resource']} ({label(check)}): {reason}")
if summary.get("parsing_errors"):
    print("  checkov could not parse the template")
    bad += 1
for which in ("SAM", "translated"):
    print(f"   checkov ({which}): " + ", ".join(f"{counts[which, o]} {o}" for o in ("passed", "failed", "skipped")))
sys.exit(1 if bad else 0)
PY

if [ "$checks" != 0 ] || [ "$lint" != 0 ] || [ "$scan" != 0 ]; then
  echo "FAIL: $template (checks exit $checks, cfn-lint exit $lint, checkov exit $scan)"
  exit 1
fi
echo "   cfn-lint: clean; checkov: clean"

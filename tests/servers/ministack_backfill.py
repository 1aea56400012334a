#!/usr/bin/env python3
"""Drives MiniStack (Step Functions, Lambda, S3 on 127.0.0.1) for tests/ministack.rs, with boto3.

    ministack_backfill.py ENDPOINT setup NAME ZIP ASL ENV_JSON TIMEOUT MAX_CONCURRENCY BUCKET
        creates the bucket (once), the function NAME (provided.al2023, the zip) and the state
        machine NAME from the ASL with its three substitutions; prints the machine's ARN
    ministack_backfill.py ENDPOINT run MACHINE_ARN INPUT_JSON
        starts an execution, waits for it, prints {"status", "error", "seconds", "summary"}:
        "summary" is what the Summary state answered, from the execution's history
"""

import json
import sys
import time

import boto3

endpoint, command = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="test", aws_secret_access_key="test")
ROLE = "arn:aws:iam::000000000000:role/backfill"

if command == "setup":
    name, zip_path, asl, env, timeout, concurrency, bucket = sys.argv[3:10]
    s3 = boto3.client("s3", **kw)
    if bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=bucket)
    lam = boto3.client("lambda", **kw)
    function = lam.create_function(
        FunctionName=name, Runtime="provided.al2023", Role=ROLE, Handler="bootstrap",
        Code={"ZipFile": open(zip_path, "rb").read()}, Timeout=int(timeout), MemorySize=1024,
        Environment={"Variables": json.loads(env)})
    definition = open(asl).read()
    for key, value in {"JobFunctionArn": function["FunctionArn"], "MaxConcurrency": concurrency,
                       "BackfillBucket": bucket}.items():
        definition = definition.replace("${%s}" % key, value)
    machine = boto3.client("stepfunctions", **kw).create_state_machine(
        name=name, definition=definition, roleArn=ROLE, type="STANDARD")
    print(machine["stateMachineArn"])
elif command == "run":
    machine, payload = sys.argv[3:5]
    sfn = boto3.client("stepfunctions", **kw)
    started = time.time()
    execution = sfn.start_execution(stateMachineArn=machine, input=payload)["executionArn"]
    while True:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            break
        if time.time() - started > 600:
            sys.exit("the execution ran for more than 10 minutes")
        time.sleep(0.5)
    seconds = round(time.time() - started, 1)
    summary = None
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution):
        for event in page["events"]:
            details = event.get("stateExitedEventDetails") or {}
            if details.get("name") == "Summary":
                summary = json.loads(details["output"]).get("backfill", {}).get("summary")
    print(json.dumps({"status": described["status"], "error": described.get("error"),
                      "seconds": seconds, "summary": summary}))
else:
    sys.exit(f"unknown command {command}")

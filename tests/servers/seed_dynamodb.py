#!/usr/bin/env python3
"""Creates a DynamoDB table in moto's server and fills it with events, through boto3.

    seed_dynamodb.py ENDPOINT TABLE EVENTS_JSON FILLER_COUNT

FILLER_COUNT more events with other codes make the table larger than one 1 MB scan page, so
that the reader has to follow the pagination.
"""

import json
import sys

import boto3

endpoint, table_name, events_path, filler = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
dynamodb = boto3.resource("dynamodb", endpoint_url=endpoint, region_name="eu-central-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
table = dynamodb.create_table(
    TableName=table_name,
    KeySchema=[{"AttributeName": "event_id", "KeyType": "HASH"}],
    AttributeDefinitions=[{"AttributeName": "event_id", "AttributeType": "S"}],
    BillingMode="PAY_PER_REQUEST",
)
with table.batch_writer() as batch:
    for event in json.load(open(events_path)):
        batch.put_item(Item=event)
    for i in range(filler):
        batch.put_item(Item={
            "event_id": f"filler-{i}", "event_code": f"9{i:05d}", "event_name": "x" * 400,
            "code_valid_from": 0, "code_valid_to": 1,
        })
print("seeded", flush=True)

"""DynamoDB stream records reach the template's stream-triggered functions as Lambda delivers them.

A small template of the test's own (a table with a stream, a function with a SAM DynamoDB
event, a dead-letter queue) runs on the local cloud; the function writes down every
invocation's records, so what Lambda would have handed over is checked where it arrived.
"""

from __future__ import annotations

import base64
import json
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from modelwatch.local.cloud import LocalCloud, RealClock, VirtualClock
from modelwatch.local.template import TemplateError

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  LabelsTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: record_id, AttributeType: S}]
      KeySchema: [{AttributeName: record_id, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_AND_OLD_IMAGES}
  FailedRecords:
    Type: AWS::SQS::Queue
  RecorderFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: recorder
      Handler: app.lambda_handler
      Runtime: python3.13
      Events:
        NewLabels:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt LabelsTable.StreamArn
            StartingPosition: TRIM_HORIZON
            BatchSize: 4
            BisectBatchOnFunctionError: true
            MaximumRetryAttempts: 2
            DestinationConfig:
              OnFailure:
                Destination: !GetAtt FailedRecords.Arn
"""

# Writes down each invocation's records, then fails when one of them is marked poison.
RECORDER = """\
import json
import os
from pathlib import Path


def lambda_handler(event, context):
    records = event["Records"]
    poisoned = any("poison" in (r["dynamodb"].get("NewImage") or {}) for r in records)
    with (Path(os.environ["LAMBDA_TASK_ROOT"]) / "received.jsonl").open("a") as log:
        log.write(json.dumps({"records": records, "failed": poisoned}) + "\\n")
    if poisoned:
        raise ValueError("poison record")
    return {"records": len(records)}
"""


def write_stack(directory: Path, template: str = TEMPLATE) -> Path:
    (directory / "recorder").mkdir(parents=True)
    (directory / "recorder" / "app.py").write_text(RECORDER)
    path = directory / "template.yaml"
    path.write_text(template)
    return path


def invocations(directory: Path) -> list[dict]:
    log = directory / "recorder" / "received.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def record_ids(invocation: dict) -> list[str]:
    return [record["dynamodb"]["Keys"]["record_id"]["S"] for record in invocation["records"]]


@pytest.fixture
def stack_dir(tmp_path) -> Path:
    write_stack(tmp_path / "stack")
    return tmp_path / "stack"


def local_cloud(stack_dir: Path, model_dir: Path, clock) -> LocalCloud:
    return LocalCloud(
        out_dir=stack_dir.parent / "out",
        template_path=stack_dir / "template.yaml",
        model_dir=model_dir,
        clock=clock,
    )


def test_each_change_reaches_the_function_once_in_order_with_its_images(stack_dir, classifier_dir):
    moment = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    with local_cloud(stack_dir, classifier_dir, VirtualClock(moment)) as cloud:
        table = cloud.stack.name_of("LabelsTable")
        dynamodb = cloud.clients.dynamodb
        # Given three labels written in one BatchWriteItem (as the actuals loader writes), one
        # corrected and one withdrawn (any writer: here the SDK)
        dynamodb.batch_write_item(
            RequestItems={
                table: [
                    {"PutRequest": {"Item": {"record_id": {"S": f"r{number}"}, "actual": {"N": "0"}}}}
                    for number in range(1, 4)
                ]
            }
        )
        dynamodb.update_item(
            TableName=table,
            Key={"record_id": {"S": "r2"}},
            UpdateExpression="SET actual = :label, payload = :payload",
            ExpressionAttributeValues={":label": {"N": "1"}, ":payload": {"B": b"\x00\xff"}},
        )
        dynamodb.delete_item(TableName=table, Key={"record_id": {"S": "r3"}})

        # When the streams are drained (twice: the second finds nothing new)
        cloud.drain_streams()
        cloud.drain_streams()

        # Then five records arrived, once each and in the table's order, at most BatchSize (4) at a time
        received = invocations(stack_dir)
        assert [len(i["records"]) for i in received] == [4, 1]
        records = [record for invocation in received for record in invocation["records"]]
        assert [(r["eventName"], r["dynamodb"]["Keys"]["record_id"]["S"]) for r in records] == [
            ("INSERT", "r1"),
            ("INSERT", "r2"),
            ("INSERT", "r3"),
            ("MODIFY", "r2"),
            ("REMOVE", "r3"),
        ]
        sequence = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
        assert sequence == sorted(set(sequence))
        # with Lambda's event shape: the images in DynamoDB JSON, the stream's ARN, the source
        stream_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        modify, remove = records[3], records[4]
        assert modify["dynamodb"]["OldImage"] == {"record_id": {"S": "r2"}, "actual": {"N": "0"}}
        # (binary values base64-encoded, as in Lambda's JSON event)
        assert modify["dynamodb"]["NewImage"] == {
            "record_id": {"S": "r2"},
            "actual": {"N": "1"},
            "payload": {"B": base64.b64encode(b"\x00\xff").decode()},
        }
        assert "NewImage" not in remove["dynamodb"]
        assert remove["dynamodb"]["OldImage"]["record_id"] == {"S": "r3"}
        for record in records:
            assert record["eventSource"] == "aws:dynamodb" and record["eventSourceARN"] == stream_arn
            assert record["awsRegion"] == cloud.stack.region
            assert record["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
            # stamped with the virtual clock's time, in epoch seconds as Lambda sends it
            assert record["dynamodb"]["ApproximateCreationDateTime"] == moment.timestamp()
        assert all(invocation.ok for invocation in cloud.runtime.invocations)


def test_a_poison_record_is_bisected_out_retried_and_sent_to_the_on_failure_destination(
    stack_dir, classifier_dir
):
    with local_cloud(stack_dir, classifier_dir, VirtualClock(datetime.now(UTC))) as cloud:
        table = cloud.stack.name_of("LabelsTable")
        # Given four labels, the third of which the function cannot process
        for record_id in ("a", "b", "p", "d"):
            item = {"record_id": {"S": record_id}, "actual": {"N": "1"}}
            if record_id == "p":
                item["poison"] = {"BOOL": True}
            cloud.clients.dynamodb.put_item(TableName=table, Item=item)

        # When the streams are drained
        cloud.drain_streams()

        # Then the failed batch was split in halves, the poison record retried twice alone
        # (MaximumRetryAttempts 2), and the records around it delivered once each, in order
        received = [(record_ids(i), i["failed"]) for i in invocations(stack_dir)]
        assert received == [
            (["a", "b", "p", "d"], True),
            (["a", "b"], False),
            (["p", "d"], True),
            (["p"], True),
            (["p"], True),
            (["p"], True),
            (["d"], False),
        ]
        # and the on-failure destination got Lambda's description of the discarded batch
        queue_url = cloud.stack.name_of("FailedRecords")
        messages = cloud.clients.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
        assert len(messages) == 1
        failure = json.loads(messages[0]["Body"])
        poison = invocations(stack_dir)[3]["records"][0]["dynamodb"]["SequenceNumber"]
        info = failure["DDBStreamBatchInfo"]
        assert (info["startSequenceNumber"], info["endSequenceNumber"]) == (poison, poison)
        assert info["batchSize"] == 1
        assert info["streamArn"] == cloud.stack.resources["LabelsTable"].attributes["StreamArn"]
        assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert failure["requestContext"]["approximateInvokeCount"] == 3
        recorder = cloud.runtime.functions["RecorderFunction"].spec
        assert failure["requestContext"]["functionArn"] == recorder.arn

        # And the shard moved on: a later record is delivered, nothing is repeated
        cloud.clients.dynamodb.put_item(TableName=table, Item={"record_id": {"S": "e"}, "actual": {"N": "0"}})
        cloud.drain_streams()
        assert [(record_ids(i), i["failed"]) for i in invocations(stack_dir)][-1] == (["e"], False)
        assert len(invocations(stack_dir)) == 8


def test_local_up_hands_records_written_by_an_outside_client_to_the_function(stack_dir, classifier_dir):
    # Given the real-clock loop, as `modelwatch local up` runs it
    with local_cloud(stack_dir, classifier_dir, RealClock()) as cloud:
        cloud.run_in_background()
        outside = boto3.client(
            "dynamodb",
            endpoint_url=cloud.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="cli",
            aws_secret_access_key="cli",
        )
        # When another process's client writes a label
        outside.put_item(
            TableName=cloud.stack.name_of("LabelsTable"), Item={"record_id": {"S": "x"}, "actual": {"N": "1"}}
        )
        # Then the poller hands its stream record to the function
        deadline = time.monotonic() + 60
        while not invocations(stack_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [record_ids(i) for i in invocations(stack_dir)] == [["x"]]


def test_a_mapping_setting_the_local_cloud_would_not_honour_is_refused(tmp_path, classifier_dir):
    filtered = TEMPLATE.replace(
        "            BatchSize: 4\n",
        textwrap.indent("BatchSize: 4\nFilterCriteria: {Filters: [{Pattern: '{}'}]}\n", " " * 12),
    )
    stack_dir = tmp_path / "stack"
    write_stack(stack_dir, filtered)
    with pytest.raises(TemplateError, match="FilterCriteria"):
        local_cloud(stack_dir, classifier_dir, VirtualClock(datetime.now(UTC))).start()

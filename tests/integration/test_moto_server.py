"""The embedded moto server and its shortcuts change nothing a client can see.

Each DynamoDB read is made twice against in-process moto: once with moto's own
shape-driven serializer (the reference) and once with the server's DynamoDBSerializer;
botocore must parse both to the same response.
"""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import Binary
from moto import mock_aws
from moto.core.serialize import SERVICE_SPECIFIC_SERIALIZERS

from modelwatch.errors import UserError
from modelwatch.local.moto_server import start_moto_server
from modelwatch.local.moto_tuning import DynamoDBSerializer

REGION = "us-east-1"
# Every AttributeValue member, nested and at the top level, binary included.
ITEM = {
    "pk": {"S": "churn#c-0001"},
    "n": {"N": "-12.5e3"},
    "b": {"B": b"\x00\xffbinary"},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [b"\x01", b"\x02\x03"]},
    "flag": {"BOOL": False},
    "nothing": {"NULL": True},
    "empty": {"S": ""},
    "m": {
        "M": {
            "inner": {"L": [{"S": "x"}, {"N": "0"}, {"B": b"\x7f"}, {"M": {"deep": {"BOOL": True}}}]},
            "blank": {"M": {}},
        }
    },
    "l": {"L": []},
}


def _reads(fast: bool, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    if fast:
        monkeypatch.setitem(SERVICE_SPECIFIC_SERIALIZERS, "dynamodb", {"json": DynamoDBSerializer})
    else:
        monkeypatch.delitem(SERVICE_SPECIFIC_SERIALIZERS, "dynamodb", raising=False)
    with mock_aws():
        client = boto3.client(
            "dynamodb", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        client.create_table(
            TableName="actuals",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.put_item(TableName="actuals", Item=ITEM)
        client.put_item(TableName="actuals", Item={"pk": {"S": "churn#c-0002"}, "actual": {"N": "1"}})
        keys = [{"pk": {"S": "churn#c-0001"}}, {"pk": {"S": "churn#c-0002"}}, {"pk": {"S": "absent"}}]
        responses = [
            client.get_item(TableName="actuals", Key=keys[0]),
            client.batch_get_item(RequestItems={"actuals": {"Keys": keys}}),
            client.batch_get_item(
                RequestItems={"actuals": {"Keys": keys, "ProjectionExpression": "pk, m.inner"}}
            ),
            client.scan(TableName="actuals"),
            client.query(
                TableName="actuals",
                KeyConditionExpression="pk = :k",
                ExpressionAttributeValues={":k": {"S": "churn#c-0001"}},
            ),
            client.batch_write_item(
                RequestItems={
                    "actuals": [{"PutRequest": {"Item": {"pk": {"S": "c-3"}, "actual": {"S": "yes"}}}}]
                }
            ),
            client.describe_table(TableName="actuals")["Table"]["KeySchema"],
        ]
    for response in responses:
        if isinstance(response, dict):
            response.pop("ResponseMetadata", None)
    return responses


def test_dynamodb_responses_parse_the_same_as_with_motos_serializer(monkeypatch):
    reference = _reads(fast=False, monkeypatch=monkeypatch)
    fast = _reads(fast=True, monkeypatch=monkeypatch)
    assert fast == reference
    # and the reference did carry every member type back
    assert reference[0]["Item"]["b"] == {"B": b"\x00\xffbinary"}
    assert reference[0]["Item"]["m"]["M"]["inner"]["L"][2] == {"B": b"\x7f"}
    assert reference[0]["Item"]["bs"] == {"BS": [b"\x01", b"\x02\x03"]}


def client_settings(aws: Any) -> dict[str, str]:
    """boto3 client arguments for the embedded server."""
    return {
        "endpoint_url": aws.endpoint_url,
        "region_name": REGION,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }


def test_server_process_answers_dynamodb_and_other_services_then_stops():
    aws = start_moto_server()
    try:
        settings = client_settings(aws)
        client = boto3.client("dynamodb", **settings)
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.put_item(TableName="t", Item={"pk": {"S": "k"}, "v": {"N": "3.25"}, "b": {"B": b"\x00"}})
        item = boto3.resource("dynamodb", **settings).Table("t").get_item(Key={"pk": "k"})["Item"]
        assert item == {"pk": "k", "v": Decimal("3.25"), "b": Binary(b"\x00")}
        # the cached router still tells services apart on one port
        assert boto3.client("sns", **settings).list_topics()["Topics"] == []
        with urllib.request.urlopen(f"{aws.endpoint_url}/moto-api/data.json", timeout=10) as response:
            assert response.status == 200
    finally:
        aws.stop()
        aws.stop()  # idempotent
    assert aws.process.returncode is not None
    # the shortcut lives in the server process only: in-process moto keeps its own serializer
    assert "json" not in SERVICE_SPECIFIC_SERIALIZERS.get("dynamodb", {})


def test_a_busy_port_is_a_clear_error_with_the_servers_log(tmp_path):

    first = start_moto_server()
    port = int(first.endpoint_url.rsplit(":", 1)[1])
    log = tmp_path / "logs" / "embedded-aws.log"
    try:
        with pytest.raises(UserError, match=rf"127\.0\.0\.1:{port}.*see .*embedded-aws\.log.*--port"):
            start_moto_server(port, log_path=log)
    finally:
        first.stop()
    assert "Address already in use" in log.read_text()


def test_get_metric_data_matches_namespace_name_and_dimension_set_like_cloudwatch():
    # moto alone ignores the namespace when dimensions are given and compares dimension
    # lists in written order; the embedded server identifies a metric as CloudWatch does.
    aws = start_moto_server()
    try:
        cloudwatch = boto3.client(
            "cloudwatch",
            endpoint_url=aws.endpoint_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        at = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
        both = [{"Name": "ModelName", "Value": "churn"}, {"Name": "Feature", "Value": "plan"}]
        published = [
            ("Other", "Score", [both[0]], 0.9),
            ("ModelWatch", "Score", [both[0]], 0.1),
            ("ModelWatch", "Score", both, 0.5),  # same name, a different metric (two dimensions)
        ]
        for namespace, name, dimensions, value in published:
            cloudwatch.put_metric_data(
                Namespace=namespace,
                MetricData=[{"MetricName": name, "Dimensions": dimensions, "Timestamp": at, "Value": value}],
            )

        def maximum(namespace: str, dimensions: list[dict[str, str]]) -> list[float]:
            query = {
                "Id": "q",
                "MetricStat": {
                    "Metric": {"Namespace": namespace, "MetricName": "Score", "Dimensions": dimensions},
                    "Period": 3600,
                    "Stat": "Maximum",
                },
            }
            response = cloudwatch.get_metric_data(
                MetricDataQueries=[query],
                StartTime=at - timedelta(minutes=30),
                EndTime=at + timedelta(minutes=30),
            )
            return response["MetricDataResults"][0]["Values"]

        assert maximum("ModelWatch", [both[0]]) == [0.1]
        assert maximum("Other", [both[0]]) == [0.9]
        assert maximum("ModelWatch", list(reversed(both))) == [0.5]  # order does not matter
        assert (
            maximum("ModelWatch", [{"Name": "Feature", "Value": "plan"}]) == []
        )  # a subset is another metric

        # GetMetricStatistics too: moto alone would count every metric having the dimensions
        def statistics(dimensions: list[dict[str, str]]) -> list[float]:
            points = cloudwatch.get_metric_statistics(
                Namespace="ModelWatch",
                MetricName="Score",
                Dimensions=dimensions,
                StartTime=at - timedelta(minutes=30),
                EndTime=at + timedelta(minutes=30),
                Period=3600,
                Statistics=["Maximum", "SampleCount"],
            )["Datapoints"]
            return [(point["Maximum"], point["SampleCount"]) for point in points]

        assert statistics([both[0]]) == [(0.1, 1.0)]
        assert statistics(list(reversed(both))) == [(0.5, 1.0)]
        assert statistics([{"Name": "Feature", "Value": "plan"}]) == []
    finally:
        aws.stop()


def test_a_server_that_dies_while_loading_moto_is_a_clear_error(tmp_path, monkeypatch):

    broken = tmp_path / "site" / "moto"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("simulated broken moto")\n')
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    log = tmp_path / "embedded-aws.log"
    with pytest.raises(UserError, match=r"stopped while starting .*embedded-aws\.log"):
        start_moto_server(log_path=log)
    assert "simulated broken moto" in log.read_text()


def test_a_server_that_hangs_while_loading_moto_times_out_clearly(tmp_path, monkeypatch):

    slow = tmp_path / "site" / "moto"
    slow.mkdir(parents=True)
    (slow / "__init__.py").write_text("import time\ntime.sleep(30)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    aws = start_moto_server(wait=False)
    with pytest.raises(UserError, match="did not start within 1 s"):
        aws.wait_ready(timeout_seconds=1)
    assert aws.process.returncode is not None  # stopped, not left behind


def test_a_parent_that_reads_the_port_late_still_sees_the_ready_line(monkeypatch):
    # Both lines are already in the pipe when the port line is read: "ready" must not be
    # lost in a read-ahead buffer that wait_ready's select on the pipe cannot see.
    import subprocess
    import time

    from modelwatch.local import moto_server

    real_popen = subprocess.Popen

    def slow_parent(*args, **kwargs):
        process = real_popen(*args, **kwargs)
        time.sleep(4)  # the child has listened, loaded moto and said "ready" by now
        return process

    monkeypatch.setattr(moto_server.subprocess, "Popen", slow_parent)
    aws = start_moto_server(wait=False)
    try:
        aws.wait_ready(timeout_seconds=5)
        assert aws.ready
    finally:
        aws.stop()


def test_writes_at_once_to_a_streamed_table_get_distinct_sequence_numbers_and_the_stream_ends():
    # The server answers in threads, and the actuals loader writes in four. moto numbered a
    # record with the shard's record count before appending it: 16 writers of 25-item batches
    # gave 6-14 shared numbers in 8,000 records here, and a stream ending in one never ended.
    aws = start_moto_server()
    try:
        settings = client_settings(aws)
        client = boto3.client("dynamodb", **settings)
        arn = client.create_table(
            TableName="labels",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
        )["TableDescription"]["LatestStreamArn"]

        def write(writer: int) -> None:
            own = boto3.session.Session().client("dynamodb", **settings)
            for batch in range(20):
                items = [{"pk": {"S": f"{writer}-{batch}-{n}"}} for n in range(25)]
                own.batch_write_item(RequestItems={"labels": [{"PutRequest": {"Item": i}} for i in items]})

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(write, range(16)))

        streams = boto3.client("dynamodbstreams", **settings)
        (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        numbers: list[int] = []
        for _ in range(20):  # 8 pages of 1,000, then an empty one
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            iterator = page["NextShardIterator"]
            if not page["Records"]:
                break
            numbers.extend(int(r["dynamodb"]["SequenceNumber"]) for r in page["Records"])
    finally:
        aws.stop()
    assert len(numbers) == 16 * 20 * 25
    assert numbers == sorted(set(numbers)), "two records share a sequence number"

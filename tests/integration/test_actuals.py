"""Actuals in DynamoDB: BatchGetItem reads, BatchWriteItem upserts, the loader function, the CLI."""

from __future__ import annotations

import math
from decimal import Decimal

import boto3
import pytest

from modelwatch.actuals import RequestStats, RetryPolicy, fetch_actuals, write_actuals
from modelwatch.errors import ActualsFileRejected, ActualsUnavailable
from tests.events import load_event
from tests.integration.conftest import BUCKET, load_handler
from tests.lambda_context import LambdaContext


@pytest.mark.parametrize("rows", [1, 100, 101, 2_345])
def test_reads_take_ceil_n_over_100_requests(stack, rows):
    stack.put_actuals({f"id-{i}": i % 2 for i in range(0, rows, 2)})  # every other id has an actual
    stats = RequestStats()
    found = fetch_actuals(stack.dynamodb, stack.actuals_table, [f"id-{i}" for i in range(rows)], stats=stats)
    assert stats.requests == math.ceil(rows / 100) and stats.retries == 0
    assert found == {f"id-{i}": Decimal(i % 2) for i in range(0, rows, 2)}


def test_duplicate_ids_are_fetched_once(stack):
    stack.put_actuals({"a": 1, "b": 0})
    stats = RequestStats()
    found = fetch_actuals(stack.dynamodb, stack.actuals_table, ["a", "a", "b", "c", "b"], stats=stats)
    assert found == {"a": 1, "b": 0} and stats.requests == 1


class ThrottlingDynamoDB:
    """MOCKED FAULT: moto never throttles, so this wrapper hands back part of each first
    request as UnprocessedKeys/UnprocessedItems, as DynamoDB does under throttling."""

    def __init__(self, client, throttled_calls: int = 1):
        self.client = client
        self.throttled_calls = throttled_calls
        self.calls = 0

    def batch_get_item(self, RequestItems):  # noqa: N803 - boto3's parameter name
        self.calls += 1
        if self.calls <= self.throttled_calls:
            ((table, request),) = RequestItems.items()
            keep, defer = request["Keys"][:10], request["Keys"][10:]
            response = self.client.batch_get_item(RequestItems={table: {**request, "Keys": keep}})
            response["UnprocessedKeys"] = {table: {**request, "Keys": defer}} if defer else {}
            return response
        return self.client.batch_get_item(RequestItems=RequestItems)

    def batch_write_item(self, RequestItems):  # noqa: N803
        self.calls += 1
        if self.calls <= self.throttled_calls:
            ((table, requests),) = RequestItems.items()
            response = self.client.batch_write_item(RequestItems={table: requests[:5]})
            response["UnprocessedItems"] = {table: requests[5:]}
            return response
        return self.client.batch_write_item(RequestItems=RequestItems)


def test_mocked_throttling_unprocessed_keys_are_retried_with_backoff(stack):
    stack.put_actuals({f"id-{i}": 1 for i in range(50)})
    delays: list[float] = []
    stats = RequestStats()
    found = fetch_actuals(
        ThrottlingDynamoDB(stack.dynamodb),
        stack.actuals_table,
        [f"id-{i}" for i in range(50)],
        threads=1,
        stats=stats,
        sleep=delays.append,
    )
    assert len(found) == 50
    assert (stats.requests, stats.retries) == (2, 1) and len(delays) == 1


def test_mocked_persistent_throttling_raises_so_lambda_retries_the_batch(stack):
    stack.put_actuals({f"id-{i}": 1 for i in range(50)})
    with pytest.raises(ActualsUnavailable, match="unprocessed after 3 attempts"):
        fetch_actuals(
            ThrottlingDynamoDB(stack.dynamodb, throttled_calls=99),
            stack.actuals_table,
            [f"id-{i}" for i in range(50)],
            retry=RetryPolicy(max_attempts=3),
            sleep=lambda _: None,
        )


def test_mocked_throttled_writes_are_retried(stack):
    stats = RequestStats()
    written = write_actuals(
        ThrottlingDynamoDB(stack.dynamodb),
        stack.actuals_table,
        [(f"w-{i}", "1", None) for i in range(25)],
        stats=stats,
        sleep=lambda _: None,
    )
    assert written == 25 and stats.retries == 1
    assert stack.dynamodb.scan(TableName=stack.actuals_table, Select="COUNT")["Count"] == 25


def test_writes_are_upserts_in_requests_of_25_and_numbers_are_stored_as_numbers(stack):
    stats = RequestStats()
    records = [(f"w-{i}", "1" if i % 2 else "0", "2026-11-25T10:00:00Z") for i in range(60)]
    records.append(("w-0", "1", None))  # a later duplicate wins
    assert write_actuals(stack.dynamodb, stack.actuals_table, records, stats=stats) == 60
    assert stats.requests == math.ceil(60 / 25)
    item = stack.dynamodb.get_item(TableName=stack.actuals_table, Key={"record_id": {"S": "w-0"}})["Item"]
    assert item["actual"] == {"N": "1"}
    item = stack.dynamodb.get_item(TableName=stack.actuals_table, Key={"record_id": {"S": "w-3"}})["Item"]
    assert item["observed_at"] == {"S": "2026-11-25T10:00:00Z"}


def test_actuals_loader_function_upserts_a_dropped_file(stack):
    key = "actuals/2026/11/26/actuals.csv"
    stack.put(key, "record_id,churned\nr-1,1\nr-2,0\nr-3,\n,1\n")
    event = load_event("actuals-loader-s3-put")
    assert event["Records"][0]["s3"]["object"]["key"] == key
    result = load_handler("actuals_loader").lambda_handler(event, LambdaContext())
    assert result["files"][0]["status"] == "ok" and result["files"][0]["written"] == 2
    table = boto3.resource("dynamodb").Table(stack.actuals_table)
    assert table.get_item(Key={"record_id": "r-1"})["Item"]["actual"] == Decimal(1)


def test_actuals_loader_fails_loudly_on_a_file_without_the_columns(stack):
    key = "actuals/2026/11/26/actuals.csv"
    stack.put(key, "id,label\nr-1,1\n")
    with pytest.raises(ActualsFileRejected, match="'record_id' and 'churned'"):
        load_handler("actuals_loader").lambda_handler(load_event("actuals-loader-s3-put"), LambdaContext())
    assert stack.dynamodb.scan(TableName=stack.actuals_table, Select="COUNT")["Count"] == 0


def test_cli_actuals_load(stack, tmp_path, capsys):
    from modelwatch.cli.main import main

    path = tmp_path / "actuals.csv"
    path.write_text("record_id,actual\n" + "".join(f"c-{i},{i % 2}\n" for i in range(120)))
    assert main(["actuals", "load", str(path), "--table", stack.actuals_table]) == 0
    assert "120 actuals" in capsys.readouterr().out
    assert stack.dynamodb.scan(TableName=stack.actuals_table, Select="COUNT")["Count"] == 120
    assert BUCKET  # the stack fixture also made the bucket; unused here

"""The prediction log's items as DynamoDB holds them (moto), read back with boto3's own
deserializer: the batch a label that arrives later is joined to, and the expiry."""

from __future__ import annotations

from typing import Any

import boto3
import numpy as np
import pytest
from boto3.dynamodb.types import TypeDeserializer

from modelwatch.prediction_log import PredictionLog

pytestmark = pytest.mark.integration


def _logged_items(stack) -> dict[str, dict[str, Any]]:
    deserialize = TypeDeserializer().deserialize
    pages = boto3.client("dynamodb").get_paginator("scan").paginate(TableName=stack.prediction_log_table)
    return {
        item["record_id"]["S"]: {name: deserialize(value) for name, value in item.items()}
        for page in pages
        for item in page["Items"]
    }


def test_logged_items_name_the_batch_and_expire_after_the_retention(stack):
    log = PredictionLog(stack.dynamodb, stack.prediction_log_table, retention_days=30, clock=lambda: 1_000.5)
    assert log.record("batch-1", ["a", "b", "c"]) == 3

    items = _logged_items(stack)
    assert items == {
        record_id: {"record_id": record_id, "batch": "batch-1", "expiration": 1_000 + 30 * 86_400}
        for record_id in "abc"
    }
    # Looked up as the label join does: 100 ids a request, the unlogged ones absent.
    grouped = log.batches_of(["b", "zz", "a"])
    assert list(grouped) == ["batch-1"] and sorted(grouped["batch-1"]) == ["a", "b"]


def test_thousands_of_ids_of_every_type_are_logged_once_and_a_later_batch_takes_them_over(stack):
    """Ids as the batch's id column gives them (text, numpy integers), one repeated: each is
    one item, as text; scored again by a later batch, an id points to that batch."""
    n = 3000
    ids: list[Any] = [f"r{i}" for i in range(n - 500)] + list(np.arange(500, dtype=np.int64))
    ids.append(ids[7])  # a repeated id: one item
    log = PredictionLog(stack.dynamodb, stack.prediction_log_table, retention_days=7, clock=lambda: 5.9)

    assert log.record("batch-2", ids) == n
    assert log.record("batch-3", ids[:10]) == 10

    items = _logged_items(stack)
    assert set(items) == {str(record_id) for record_id in ids}
    assert {record_id for record_id, item in items.items() if item["batch"] == "batch-3"} == {
        str(record_id) for record_id in ids[:10]
    }
    assert all(item["expiration"] == 5 + 7 * 86_400 for item in items.values())
    grouped = log.batches_of([str(record_id) for record_id in ids])
    assert sorted(map(len, grouped.values())) == [10, n - 10]

"""The prediction log's items as DynamoDB holds them (moto), read back with boto3's own
deserializer: the values a label that arrives later is joined with."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from boto3.dynamodb.types import TypeDeserializer

from modelwatch.prediction_log import PredictionLog

pytestmark = pytest.mark.integration


def test_logged_items_read_back_as_the_rows_values(stack):
    log = PredictionLog(stack.dynamodb, stack.prediction_log_table, retention_days=30, clock=lambda: 1_000.5)
    probabilities = [0.1, 1e-05, 0.9999999999999999, 1e-200, float("nan"), 0.123456789012345678]
    table = pd.DataFrame(
        {
            "record_id": ["a", "b", "c", "d", "e", "f"],
            "prediction": [0, 0, 1, 0, 1, 0],
            "probability": probabilities,
        }
    )
    assert log.record("batch-1", "2026-12-01T08:00:00+00:00", table, "record_id") == 6

    deserialize = TypeDeserializer().deserialize
    items = {
        item["record_id"]["S"]: {name: deserialize(value) for name, value in item.items()}
        for item in boto3.client("dynamodb").scan(TableName=stack.prediction_log_table)["Items"]
    }
    assert set(items) == set("abcdef")
    for record_id, prediction, probability in zip("abcdef", table["prediction"], probabilities, strict=True):
        item = items[record_id]
        assert item["batch"] == "batch-1" and item["event_time"] == "2026-12-01T08:00:00+00:00"
        assert item["prediction"] == str(prediction)
        assert item["expiration"] == 1_000 + 30 * 86_400
        if probability != probability:  # NaN: no attribute
            assert "probability" not in item
        elif probability < 1e-130:  # below DynamoDB's smallest number
            assert item["probability"] == 0
        else:
            # The exact float, as Python's shortest repr of it
            assert float(item["probability"]) == probability
            assert item["probability"] == Decimal(repr(probability))


def _logged_items(stack) -> dict[str, dict[str, Any]]:
    deserialize = TypeDeserializer().deserialize
    pages = boto3.client("dynamodb").get_paginator("scan").paginate(TableName=stack.prediction_log_table)
    return {
        item["record_id"]["S"]: {name: deserialize(value) for name, value in item.items()}
        for page in pages
        for item in page["Items"]
    }


def test_thousands_of_rows_are_logged_as_each_rows_own_values(stack):
    """Probabilities across every notation repr uses (plain from 1e-4 up, scientific below,
    down to subnormals), predictions of several types and a repeated id, each read back with
    boto3's deserializer against the row's own value: the shortest text of the float
    (Python's repr, as a Decimal), 0 below DynamoDB's smallest number, none for NaN."""
    rng = np.random.default_rng(23)
    n = 3000
    probabilities = np.concatenate([rng.random(n // 2), 10.0 ** rng.uniform(-135, 0, n // 2)])
    edges = [0.0, 1.0, 1e-4, np.nextafter(1e-4, 0), np.nextafter(1e-4, 1), 1e-128, 1e-129, 5e-324, np.nan]
    probabilities[: len(edges)] = edges
    probabilities[rng.random(n) < 0.05] = np.nan
    ids = [f"r{i}" for i in range(n)]
    ids[-1] = ids[7]  # a repeated id: its later row is the one logged
    predictions = pd.Series([["yes", 3, 2.5, True][i % 4] for i in range(n)], dtype=object)
    table = pd.DataFrame({"record_id": ids, "prediction": predictions, "probability": probabilities})
    log = PredictionLog(stack.dynamodb, stack.prediction_log_table, retention_days=7, clock=lambda: 5.9)

    assert log.record("batch-2", "2026-12-02T00:00:00+00:00", table, "record_id") == n - 1

    items = _logged_items(stack)
    assert set(items) == set(ids)
    rows = {record_id: position for position, record_id in enumerate(ids)}  # the last row of each id
    for record_id, position in rows.items():
        item, probability = items[record_id], float(probabilities[position])
        assert item["batch"] == "batch-2" and item["event_time"] == "2026-12-02T00:00:00+00:00"
        assert item["expiration"] == 5 + 7 * 86_400
        assert item["prediction"] == str(predictions[position])
        if math.isnan(probability):
            assert "probability" not in item, record_id
        elif probability < 1e-128:
            assert item["probability"] == 0, record_id
        else:
            assert item["probability"] == Decimal(repr(probability)), record_id
            assert float(item["probability"]) == probability

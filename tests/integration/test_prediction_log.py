"""The prediction log's items as DynamoDB holds them (moto), read back with boto3's own
deserializer: the values a label that arrives later is joined with."""

from __future__ import annotations

from decimal import Decimal

import boto3
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

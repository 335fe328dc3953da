"""Late labels: a batch scored without its labels, then its actuals in instalments.

The stream records are built here as DynamoDB Streams delivers them to Lambda (keys
only, the table's StreamViewType); the local cloud's delivery of real stream records is
tested in tests/e2e. Every number is checked against scikit-learn on the rows labeled so
far, with the model loaded independently of the handler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn import metrics as skm

from tests.integration.conftest import load_handler, s3_event
from tests.lambda_context import LambdaContext
from tests.model_fixtures import CATEGORICAL, NUMERIC, churn_frame

FEATURES = NUMERIC + CATEGORICAL
STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/actuals/stream/2026-12-01T00:00:00"


def stream_event(record_ids: list[str], name: str = "INSERT") -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventID": f"{number}",
                "eventName": name,
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "Keys": {"record_id": {"S": record_id}},
                    "SequenceNumber": f"{number:021d}",
                    "SizeBytes": 40,
                    "StreamViewType": "KEYS_ONLY",
                },
                "eventSourceARN": STREAM_ARN,
            }
            for number, record_id in enumerate(record_ids, start=1)
        ]
    }


@pytest.fixture
def unlabeled_batch(stack):
    """A 600-row batch scored with no actuals at all, and its true labels kept aside."""
    frame = churn_frame(600, seed=61, id_prefix="late")
    key = "incoming/late/batch.csv"
    stack.put(key, frame.drop(columns=["churned"]).to_csv(index=False))
    result = load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    assert result["batches"][0]["status"] == "ok"
    assert stack.report(key)["labeled_rows"] == 0
    return key, frame


def join(stack, labels: dict[str, int], handler=None) -> dict[str, Any]:
    stack.put_actuals(labels)
    handler = handler or load_handler("label_join")
    return handler.lambda_handler(stream_event(list(labels)), LambdaContext.of("LabelJoinFunction"))


def expected(stack, frame, labels: dict[str, int]) -> dict[str, float]:
    """scikit-learn on the rows labeled so far."""
    model = joblib.load(stack.model_dir / "model.joblib")
    rows = frame.set_index("record_id").loc[list(labels)]
    predicted = model.predict(rows[FEATURES])
    truth = np.array([labels[record_id] for record_id in rows.index])
    accuracy = skm.accuracy_score(truth, predicted)
    return {"ErrorRate": 1 - accuracy, "Accuracy": accuracy, "rows": len(truth)}


def test_labels_after_the_batch_are_scored_published_once_and_reported(stack, unlabeled_batch):
    key, frame = unlabeled_batch
    assert stack.statistic("ErrorRate") is None  # nothing to measure at upload
    labels = dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))

    result = join(stack, labels)

    truth = expected(stack, frame, labels)
    assert result["batches"][0]["newly_labeled"] == 600
    for metric in ("ErrorRate", "Accuracy"):
        point = stack.statistic(metric)
        assert point["SampleCount"] == 600
        assert point["Average"] == pytest.approx(truth[metric], abs=1e-9)
    report = stack.report(key)
    assert report["labeled_rows"] == 600 and report["label_coverage"] == 1.0
    assert report["metrics"]["ErrorRate"] == pytest.approx(truth["ErrorRate"], abs=1e-9)
    assert report["labels"]["awaiting_rows"] == 0 and report["labels"]["arrivals"][0]["new"] == 600
    predictions = stack.predictions(key)
    assert predictions["actual"].notna().all() and predictions["labeled_at"].notna().all()
    assert stack.statistic("LabelsArrived")["Sum"] == 600
    assert stack.statistic("LabelDelaySeconds")["SampleCount"] == 600

    # The same labels again (a redelivered stream batch, an actuals file loaded twice)
    again = join(stack, labels)
    assert again["batches"] == []
    assert stack.statistic("ErrorRate")["SampleCount"] == 600
    assert stack.statistic("LabelsArrived")["Sum"] == 600


def test_labels_in_three_instalments_average_to_scikit_learn_on_the_rows_labeled_so_far(
    stack, unlabeled_batch
):
    key, frame = unlabeled_batch
    all_labels = dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))
    ids = list(all_labels)
    handler = load_handler("label_join")
    so_far: dict[str, int] = {}
    for part in (ids[:150], ids[150:400], ids[400:]):
        instalment = {record_id: all_labels[record_id] for record_id in part}
        so_far.update(instalment)
        join(stack, instalment, handler)
        truth = expected(stack, frame, so_far)
        for metric in ("ErrorRate", "Accuracy"):
            point = stack.statistic(metric)
            assert point["SampleCount"] == len(so_far), metric
            assert point["Average"] == pytest.approx(truth[metric], abs=1e-9), (metric, len(so_far))
        assert stack.report(key)["labeled_rows"] == len(so_far)
    assert stack.statistic("LabelsArrived")["Sum"] == 600


def test_a_corrected_label_replaces_the_old_one(stack, unlabeled_batch):
    key, frame = unlabeled_batch
    labels = dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))
    first = dict(list(labels.items())[:300])
    join(stack, first)
    # One label corrected, alone: the report moves at once; CloudWatch cannot take a
    # datapoint of no new rows, so the correction waits for the batch's next labels.
    corrected_id = next(iter(first))
    corrected = {**first, corrected_id: 1 - first[corrected_id]}
    join(stack, {corrected_id: corrected[corrected_id]})
    assert stack.report(key)["metrics"]["ErrorRate"] == pytest.approx(
        expected(stack, frame, corrected)["ErrorRate"], abs=1e-9
    )
    assert stack.statistic("ErrorRate")["Average"] == pytest.approx(
        expected(stack, frame, first)["ErrorRate"], abs=1e-9
    )
    # The rest of the labels: CloudWatch's average is over every row with its latest label
    rest = dict(list(labels.items())[300:])
    join(stack, rest)
    final = {**corrected, **rest}
    point = stack.statistic("ErrorRate")
    assert point["SampleCount"] == 600
    assert point["Average"] == pytest.approx(expected(stack, frame, final)["ErrorRate"], abs=1e-9)


def test_labels_present_at_upload_and_the_rest_later_are_each_counted_once(stack):
    frame = churn_frame(400, seed=62, id_prefix="half")
    labels = dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))
    early = dict(list(labels.items())[:200])
    stack.put_actuals(early)
    key = "incoming/late/half.csv"
    stack.put(key, frame.drop(columns=["churned"]).to_csv(index=False))
    load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    assert stack.statistic("ErrorRate")["SampleCount"] == 200

    # The stream also carries the early labels again (the table's whole history)
    join(stack, labels)

    point = stack.statistic("ErrorRate")
    assert point["SampleCount"] == 400
    assert point["Average"] == pytest.approx(expected(stack, frame, labels)["ErrorRate"], abs=1e-9)
    assert stack.report(key)["labeled_rows"] == 400


def test_labels_for_rows_no_batch_scored_change_nothing(stack, unlabeled_batch):
    result = join(stack, {"nobody-1": 1, "nobody-2": 0})
    assert result == {"labels": 2, "logged": 0, "batches": [], "dynamodb_requests": 1}
    assert stack.statistic("ErrorRate") is None
    assert stack.statistic("LabelsWithoutPrediction")["Sum"] == 2  # counted, not dropped unseen


def test_late_labels_put_the_estimate_beside_the_realized_error_and_find_concept_drift(
    stack, monkeypatch, sample_churn_model_dir
):
    # Given the sample model (calibrated) and its batch 6, whose input-target relation
    # changed (samplefiles/README.md), scored before any of its labels existed
    import pandas as pd

    samples = Path(__file__).resolve().parents[2] / "samplefiles" / "classification"
    monkeypatch.setenv("MODEL_DIR", str(sample_churn_model_dir))
    key = "incoming/late/batch-06.csv"
    stack.put(key, (samples / "batches" / "batch-06.csv").read_bytes())
    load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    assert stack.report(key)["estimated_performance"]["versus_realized"] is None

    # When its labels arrive
    actuals = pd.read_csv(samples / "actuals.csv", dtype={"record_id": str})
    ids = set(stack.predictions(key)["record_id"])
    labels = {row.record_id: int(row.churned) for row in actuals.itertuples() if row.record_id in ids}
    join(stack, labels)

    # Then the report sets the estimate beside the realized error on those rows, and says
    # the relation changed
    estimated = stack.report(key)["estimated_performance"]
    versus = estimated["versus_realized"]
    assert versus["labeled_rows"] == len(labels)
    assert versus["metrics"]["ErrorRate"]["realized"] == pytest.approx(
        stack.report(key)["metrics"]["ErrorRate"], abs=1e-12
    )
    assert [finding["finding"] for finding in estimated["findings"]] == ["concept_drift"]


def test_the_dashboards_event_time_series_holds_each_batchs_error_at_its_event_time(stack):
    # Given two batches four hours apart by event time, each scored without labels
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC).replace(microsecond=0)
    frames = {}
    for hours, prefix in ((5, "early"), (1, "later")):
        frame = churn_frame(300, seed=70 + hours, id_prefix=prefix)
        key = f"incoming/late/{prefix}.csv"
        stamp = now - timedelta(hours=hours)
        stack.put(
            key,
            frame.drop(columns=["churned"]).to_csv(index=False),
            Metadata={"batch-time": stamp.isoformat()},
        )
        load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
        frames[stamp] = frame
    # When all their labels come at once
    labels = {
        record_id: int(churned)
        for frame in frames.values()
        for record_id, churned in zip(frame["record_id"], frame["churned"], strict=True)
    }
    join(stack, labels)
    # Then the by-event-time series holds each batch's error in its own hour, and the
    # alarms' series holds both together at the labels' arrival
    for stamp, frame in frames.items():
        points = stack.cloudwatch.get_metric_statistics(
            Namespace="ModelWatch",
            MetricName="ErrorRate",
            Dimensions=[
                {"Name": "ModelName", "Value": "churn-test"},
                {"Name": "Clock", "Value": "EventTime"},
            ],
            StartTime=stamp - timedelta(minutes=30),
            EndTime=stamp + timedelta(minutes=30),
            Period=3600,
            Statistics=["SampleCount", "Average"],
        )["Datapoints"]
        mine = {record_id: labels[record_id] for record_id in frame["record_id"]}
        assert [point["SampleCount"] for point in points] == [300]
        assert points[0]["Average"] == pytest.approx(expected(stack, frame, mine)["ErrorRate"], abs=1e-9)
    assert stack.statistic("ErrorRate")["SampleCount"] == 600


def test_labels_of_a_batch_gone_from_the_ledger_are_counted_not_dropped(stack, unlabeled_batch):
    # Given the batch's ledger item expired (DynamoDB TTL), its rows still in the prediction log
    for item in stack.dynamodb.scan(TableName=stack.ledger_table)["Items"]:
        stack.dynamodb.delete_item(TableName=stack.ledger_table, Key={"id": item["id"]})
    _, frame = unlabeled_batch
    labels = dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))

    result = join(stack, labels)

    assert result["batches"] == []
    assert stack.statistic("ErrorRate") is None
    assert stack.statistic("LabelsWithoutPrediction")["Sum"] == 600

"""The sample scenario through the batch-monitor handler: every published number equals
scikit-learn's on the same matched rows, and drift points at the features made to drift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from tests.integration.conftest import load_handler, s3_event
from tests.lambda_context import LambdaContext

SAMPLES = Path(__file__).resolve().parents[2] / "samplefiles"
DRIFTED_FEATURES = {"monthly_charges", "support_tickets", "plan"}  # per samplefiles/README.md


def independent_classification_metrics(predictions: pd.DataFrame, actuals: pd.Series) -> dict[str, float]:
    """scikit-learn on the rows of predictions.csv.gz that have an actual in actuals.csv."""
    matched = predictions.merge(actuals, left_on="record_id", right_index=True, how="inner")
    y_true, y_pred, proba = (
        matched["churned"].astype(int),
        matched["prediction"].astype(int),
        matched["probability"],
    )
    return {
        "Accuracy": skm.accuracy_score(y_true, y_pred),
        "ErrorRate": 1 - skm.accuracy_score(y_true, y_pred),
        "Precision": skm.precision_score(y_true, y_pred, pos_label=1),
        "Recall": skm.recall_score(y_true, y_pred, pos_label=1),
        "F1": skm.f1_score(y_true, y_pred, pos_label=1),
        "ROCAUC": skm.roc_auc_score(y_true, proba),
        "LogLoss": skm.log_loss(y_true, np.column_stack([1 - proba, proba])),
        "RowsLabeled": float(len(matched)),
        "RowsScored": float(len(predictions)),
        "LabelCoverage": len(matched) / len(predictions),
    }


def published(stack, metric: str, at: datetime) -> float:
    """The value CloudWatch holds for one batch: Average, which is Sum/SampleCount for per-row metrics."""
    response = stack.cloudwatch.get_metric_statistics(
        Namespace="ModelWatch",
        MetricName=metric,
        Dimensions=[{"Name": "ModelName", "Value": "churn-classifier"}],
        StartTime=at - timedelta(seconds=30),
        EndTime=at + timedelta(seconds=30),
        Period=60,
        Statistics=["Average"],
    )
    (point,) = response["Datapoints"]
    return point["Average"]


def test_sample_batches_publish_exactly_scikit_learns_numbers(stack, monkeypatch, sample_churn_model_dir):
    # Given the sample model, all sample actuals, and a healthy, a drifted and a recovered batch
    monkeypatch.setenv("MODEL_DIR", str(sample_churn_model_dir))
    monkeypatch.setenv("MODEL_NAME", "churn-classifier")
    actuals = pd.read_csv(SAMPLES / "classification" / "actuals.csv", dtype={"record_id": str})
    stack.put_actuals({row.record_id: int(row.churned) for row in actuals.itertuples()})
    truth = actuals.set_index("record_id")["churned"]
    handler = load_handler("batch_monitor")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    drift_scores, concept_drift = {}, {}
    for hour, number in enumerate((1, 6, 11)):
        key = f"incoming/sample/batch-{number:02d}.csv"
        at = start + timedelta(hours=hour)
        stack.put(
            key,
            (SAMPLES / "classification" / "batches" / f"batch-{number:02d}.csv").read_bytes(),
            Metadata={"batch-time": at.isoformat()},
        )
        # When the batch is processed
        handler.lambda_handler(s3_event(key), LambdaContext())
        # Then every published metric equals scikit-learn's on the matched rows
        expected = independent_classification_metrics(stack.predictions(key), truth)
        for metric, value in expected.items():
            assert published(stack, metric, at) == pytest.approx(value, abs=1e-9), (number, metric)
        report = stack.report(key)
        # and the estimate from the model's confidence is published as the report states it
        # (its value is checked against an independent CBPE in tests/unit/test_estimation.py)
        estimated = report["estimated_performance"]
        for metric, figures in estimated["metrics"].items():
            assert published(stack, f"Estimated{metric}", at) == pytest.approx(figures["estimated"], abs=1e-9)
            assert report["metrics"][f"Estimated{metric}"] == figures["estimated"]
        assert set(estimated["metrics"]) == {"ErrorRate", "Accuracy", "Precision", "Recall", "F1", "ROCAUC"}
        versus = estimated["versus_realized"]["metrics"]["ErrorRate"]
        assert versus["realized"] == pytest.approx(expected["ErrorRate"], abs=1e-12)
        concept_drift[number] = [finding["finding"] for finding in estimated["findings"]]
        drift_scores[number] = published(stack, "DriftScore", at)
        ranked = [feature["name"] for feature in report["drift"]["features"]]
        if number == 6:
            assert set(ranked[:2]) <= DRIFTED_FEATURES, ranked
    threshold = 0.2
    assert drift_scores[1] < threshold and drift_scores[11] < threshold
    assert drift_scores[6] > threshold
    # samplefiles/README.md: batch 6's inputs moved and its input-target relation changed
    assert concept_drift == {1: [], 6: ["concept_drift"], 11: []}


def test_the_sample_parquet_batch_publishes_what_its_csv_would(
    stack, monkeypatch, sample_churn_model_dir, tmp_path
):
    # Given batch 12 as committed (Parquet) and the same rows as CSV, written by DuckDB
    monkeypatch.setenv("MODEL_DIR", str(sample_churn_model_dir))
    monkeypatch.setenv("MODEL_NAME", "churn-classifier")
    actuals = pd.read_csv(SAMPLES / "classification" / "actuals.csv", dtype={"record_id": str})
    stack.put_actuals({row.record_id: int(row.churned) for row in actuals.itertuples()})
    truth = actuals.set_index("record_id")["churned"]
    parquet = SAMPLES / "classification" / "batches" / "batch-12.parquet"
    as_csv = tmp_path / "batch-12.csv"
    duckdb.sql(f"COPY (SELECT * FROM read_parquet('{parquet}')) TO '{as_csv}' (HEADER, DELIMITER ',')")
    handler = load_handler("batch_monitor")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    values = {}
    for hour, (key, body) in enumerate(
        (
            ("incoming/sample/batch-12.parquet", parquet.read_bytes()),
            ("incoming/sample/batch-12.csv", as_csv.read_bytes()),
        )
    ):
        at = start + timedelta(hours=hour)
        stack.put(key, body, Metadata={"batch-time": at.isoformat()})
        # When each is processed
        handler.lambda_handler(s3_event(key), LambdaContext())
        assert stack.report(key)["status"] == "ok"
        expected = independent_classification_metrics(stack.predictions(key), truth)
        values[key] = {
            metric: published(stack, metric, at) for metric in (*expected, "DriftScore", "PredictionDrift")
        }
        # Then each publishes scikit-learn's numbers on its matched rows
        for metric, value in expected.items():
            assert values[key][metric] == pytest.approx(value, abs=1e-9), (key, metric)
    # And the Parquet batch's every metric equals the CSV's, drift included
    from_parquet, from_csv = values.values()
    assert from_parquet.keys() == from_csv.keys()
    for metric, value in from_csv.items():
        assert from_parquet[metric] == pytest.approx(value, abs=1e-9), metric
    assert from_parquet["RowsScored"] == 1000

"""Late labels end to end in the local cloud: actuals file -> loader -> actuals table ->
stream -> label join -> report, predictions file, CloudWatch -> QualityAlarm.

Numbers are checked against scikit-learn on the labeled rows, with the model loaded
independently of the functions.
"""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import joblib
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from modelwatch.local.backtest import Backtest
from modelwatch.local.cloud import LocalCloud, VirtualClock
from tests.model_fixtures import CATEGORICAL, NUMERIC, churn_frame

SAMPLES = Path(__file__).resolve().parents[2] / "samplefiles" / "classification"
QUALITY_METRICS = ("ErrorRate", "Accuracy", "Precision", "Recall", "F1", "ROCAUC", "LogLoss")


def replay_sample(tmp_path: Path, model_dir: Path, delay: int) -> dict:
    batches = sorted((SAMPLES / "batches").glob("batch-*"))
    cloud = LocalCloud(
        out_dir=tmp_path / f"out-{delay}", model_dir=model_dir, clock=VirtualClock(datetime.now(UTC))
    )
    with cloud:
        backtest = Backtest(cloud)
        backtest.run(batches, actuals=[SAMPLES / "actuals.csv"], labels_delay_periods=delay)
        return backtest.document()


def first_alarm(document: dict) -> int:
    return next(
        index
        for index, period in enumerate(document["periods"])
        if period["alarms"]["QualityAlarm"] == "ALARM"
    )


def test_sample_scenario_with_labels_two_periods_late_ends_with_the_same_metrics_and_alarms_two_periods_later(
    tmp_path, sample_churn_model_dir
):
    on_time = replay_sample(tmp_path, sample_churn_model_dir, 0)
    late = replay_sample(tmp_path, sample_churn_model_dir, 2)

    assert len(late["periods"]) == len(on_time["periods"]) + 2
    for with_batch, delayed in zip(on_time["batches"], late["batches"], strict=True):
        assert "ErrorRate" not in delayed["metrics"]  # nothing to measure at upload
        for metric in QUALITY_METRICS:
            if metric in with_batch["final_metrics"]:
                assert delayed["final_metrics"][metric] == pytest.approx(
                    with_batch["final_metrics"][metric], abs=1e-9
                ), (delayed["key"], metric)
    assert first_alarm(late) == first_alarm(on_time) + 2


def test_a_batch_then_its_labels_two_periods_later(tmp_path, classifier_dir):
    # Given one batch and, two periods later, its labels (a file under actuals/)
    frame = churn_frame(400, seed=91, id_prefix="e2e-late")
    labels = pd.DataFrame({"record_id": frame["record_id"], "churned": frame.pop("churned")})
    batch = tmp_path / "late-batch.csv"
    frame.to_csv(batch, index=False)
    actuals = tmp_path / "late-labels.csv"
    labels.to_csv(actuals, index=False)
    start = datetime.now(UTC).replace(microsecond=0)
    # QualityAlarm judging each period alone (the test model's error, ~0.3, is over the
    # default threshold 0.2), so the period its labels arrive in decides its state
    cloud = LocalCloud(
        out_dir=tmp_path / "out",
        model_dir=classifier_dir,
        clock=VirtualClock(start),
        parameters={"EvaluationPeriods": "1", "DatapointsToAlarm": "1"},
    )
    with cloud:
        backtest = Backtest(cloud)
        backtest.run([batch], actuals=[actuals], labels_delay_periods=2)
        document = backtest.document()
        bucket = cloud.bucket_for("incoming/late-batch.csv")
        s3, cloudwatch = cloud.clients.s3, cloud.clients.cloudwatch

        def error_rate() -> dict:
            # The series the alarms watch: ModelName alone (the other is by event time)
            [metric] = [
                metric
                for metric in cloudwatch.list_metrics(Namespace="ModelWatch", MetricName="ErrorRate")[
                    "Metrics"
                ]
                if [dimension["Name"] for dimension in metric["Dimensions"]] == ["ModelName"]
            ]
            points = cloudwatch.get_metric_statistics(
                Namespace="ModelWatch",
                MetricName="ErrorRate",
                Dimensions=metric["Dimensions"],
                StartTime=start - timedelta(days=1),
                EndTime=start + timedelta(days=2),
                Period=86400 * 3,
                Statistics=["SampleCount", "Average"],
            )["Datapoints"]
            assert len(points) == 1
            return points[0]

        def report() -> dict:
            body = s3.get_object(Bucket=bucket, Key="results/late-batch.csv/report.json")["Body"].read()
            return json.loads(body)

        # Then ErrorRate reached CloudWatch once, over every row, equal to scikit-learn
        model = joblib.load(classifier_dir / "model.joblib")
        predicted = model.predict(frame[NUMERIC + CATEGORICAL])
        truth = labels["churned"].to_numpy().copy()
        expected = 1 - accuracy_score(truth, predicted)
        point = error_rate()
        assert point["SampleCount"] == 400
        assert point["Average"] == pytest.approx(expected, abs=1e-9)
        # and the report and the predictions file say so
        assert report()["labeled_rows"] == 400
        assert report()["metrics"]["ErrorRate"] == pytest.approx(expected, abs=1e-9)
        predictions_key = report()["outputs"]["predictions"].split("/", 3)[3]
        body = s3.get_object(Bucket=bucket, Key=predictions_key)["Body"].read()
        predictions = pd.read_csv(io.BytesIO(gzip.decompress(body)), dtype={"record_id": str})
        assert predictions["actual"].notna().all()
        # and QualityAlarm, silent without labels, moved in the period the labels came
        states = [period["alarms"]["QualityAlarm"] for period in document["periods"]]
        arrival = next(
            index
            for index, period in enumerate(document["periods"])
            if any(event.startswith("loaded labels of late-batch") for event in period["events"])
        )
        assert arrival == 2
        assert states[:arrival] == ["INSUFFICIENT_DATA"] * arrival and states[arrival] == "ALARM"

        # When the same labels are loaded again
        backtest.load_actuals(actuals)
        # Then nothing changes
        assert error_rate()["SampleCount"] == 400 and report()["labeled_rows"] == 400

        # When one label is corrected by any writer of the actuals table
        corrected_id = labels["record_id"].iloc[0]
        new_label = 1 - int(labels["churned"].iloc[0])
        cloud.clients.dynamodb.put_item(
            TableName=cloud.stack.name_of("ActualsTable"),
            Item={"record_id": {"S": corrected_id}, "actual": {"N": str(new_label)}},
        )
        cloud.drain_streams()
        # Then the batch's error moves accordingly
        truth[0] = new_label
        assert report()["metrics"]["ErrorRate"] == pytest.approx(
            1 - accuracy_score(truth, predicted), abs=1e-9
        )

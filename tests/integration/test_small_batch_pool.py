"""Small batches: a feed whose batches each have fewer than MinLabeledRows labeled rows.

Such a batch is never judged on its own (MinLabeledRows), but its row-additive quality
metrics (ErrorRate, Accuracy, MAE, ...) go to the model's pool in the batch ledger, and
the pool is published as one datapoint once it holds MinLabeledRows rows: QualityAlarm
gets data instead of staying INSUFFICIENT_DATA while the model may be broken. Every
number is checked against scikit-learn on exactly the rows concerned, with the model
loaded here, independently of the handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from sklearn import metrics as skm

from modelwatch.config import MonitorConfig
from modelwatch.monitor import BatchMonitor
from modelwatch.results import BatchObject
from tests.aws_calls import recorded_aws_calls
from tests.integration.conftest import BUCKET, load_handler, s3_event
from tests.integration.test_batch_ledger import STEPS, injected
from tests.integration.test_label_join import stream_event
from tests.lambda_context import LambdaContext
from tests.model_fixtures import CATEGORICAL, NUMERIC, churn_frame, write_regressor

MIN_ROWS = 30
PUT_METRIC_DATA = next(step for step in STEPS if step.operation == "PutMetricData")


@pytest.fixture
def small(stack, monkeypatch):
    monkeypatch.setenv("MIN_LABELED_ROWS", str(MIN_ROWS))
    return stack


def upload(stack, key: str, frame: pd.DataFrame, handler=None, labels: bool = True) -> dict[str, Any]:
    """The batch (without its target column), its labels written first when ``labels``."""
    target = "churned" if "churned" in frame else "delivery_minutes"
    if labels:
        stack.put_actuals(dict(zip(frame["record_id"], frame[target], strict=True)))
    stack.put(key, frame.drop(columns=[target]).to_csv(index=False))
    handler = handler or load_handler("batch_monitor")
    result = handler.lambda_handler(s3_event(key), LambdaContext())
    assert result["batches"][0]["status"] == "ok"
    return stack.report(key)


def small_batches(count: int, rows: int) -> list[pd.DataFrame]:
    frames = []
    for number in range(count):
        frame = churn_frame(rows, seed=300 + number, id_prefix=f"small{number}")
        frame["churned"] = frame["churned"].astype(int)
        frames.append(frame)
    return frames


def classifier_truth(stack, rows: pd.DataFrame) -> dict[str, float]:
    """scikit-learn on exactly these rows: the error rate, and how many predictions are wrong."""
    model = joblib.load(stack.model_dir / "model.joblib")
    predicted = model.predict(rows[NUMERIC + CATEGORICAL])
    accuracy = skm.accuracy_score(rows["churned"].to_numpy(), predicted)
    return {
        "ErrorRate": 1 - accuracy,
        "Accuracy": accuracy,
        "wrong": int((predicted != rows["churned"]).sum()),
    }


def alarm_series(calls, metric: str) -> list[dict[str, Any]]:
    """The datums of ``metric`` sent to QualityAlarm's series (the dimension ModelName alone)."""
    return [
        datum
        for call in calls
        if call.operation == "PutMetricData"
        for datum in call.params["MetricData"]
        if datum["MetricName"] == metric and [d["Name"] for d in datum["Dimensions"]] == ["ModelName"]
    ]


def pool(stack, model: str = "churn-test") -> dict[str, tuple[int, float]]:
    """The model's pool in the ledger: metric -> (rows, sum)."""
    item = stack.dynamodb.get_item(
        TableName=stack.ledger_table, Key={"id": {"S": f"pool#{model}"}}, ConsistentRead=True
    ).get("Item")
    totals = item["pool_totals"]["M"] if item else {}
    return {name: (int(value["M"]["n"]["N"]), float(value["M"]["s"]["N"])) for name, value in totals.items()}


def test_small_batches_labeled_at_upload_publish_once_the_pool_holds_min_labeled_rows(small):
    stack = small
    frames = small_batches(3, 12)
    handler = load_handler("batch_monitor")
    for number, frame in enumerate(frames[:2]):
        report = upload(stack, f"incoming/small/{number}.csv", frame, handler)
        assert report["labeled_rows"] == 12
        assert "ErrorRate" not in report["metrics_published"]
        # The report still says quality is withheld, and that its additive metrics were pooled
        withheld = report["quality_metrics_withheld"]
        assert "fewer than MinLabeledRows=30" in withheld
        assert "ErrorRate, Accuracy on these rows went to the model's pool" in withheld
    assert stack.statistic("ErrorRate") is None and stack.statistic("Accuracy") is None
    assert stack.statistic("Precision") is None and stack.statistic("ROCAUC") is None

    with recorded_aws_calls() as calls:
        report = upload(stack, "incoming/small/2.csv", frames[2], load_handler("batch_monitor"))

    assert "went to the model's pool" in report["quality_metrics_withheld"]
    truth = classifier_truth(stack, pd.concat(frames))
    for metric in ("ErrorRate", "Accuracy"):
        # One datapoint, on the 36 rows of the three batches
        [datum] = alarm_series(calls, metric)
        assert datum["StatisticValues"]["SampleCount"] == 36
        point = stack.statistic(metric)
        assert point["SampleCount"] == 36
        assert point["Average"] == pytest.approx(truth[metric], abs=1e-9)
    # The non-additive metrics keep the per-batch gate
    for metric in ("Precision", "Recall", "F1", "ROCAUC", "LogLoss"):
        assert stack.statistic(metric) is None
    assert pool(stack) == {}
    # The by-event-time series (the dashboard's, no alarm) gets each batch's own rows
    by_event_time = [
        datum
        for call in calls
        if call.operation == "PutMetricData"
        for datum in call.params["MetricData"]
        if datum["MetricName"] == "ErrorRate" and len(datum["Dimensions"]) == 2
    ]
    assert [datum["StatisticValues"]["SampleCount"] for datum in by_event_time] == [12]


def test_small_batches_labeled_late_count_every_label_once(small):
    # Given four 15-row batches scored before any of their labels existed
    stack = small
    frames = small_batches(4, 15)
    handler = load_handler("batch_monitor")
    for number, frame in enumerate(frames):
        report = upload(stack, f"incoming/late-small/{number}.csv", frame, handler, labels=False)
        assert report["labeled_rows"] == 0
    a, b, c, d = (frame.set_index("record_id") for frame in frames)
    instalments = [
        [a.iloc[:10], b.iloc[:8]],  # 18 rows: pooled
        [c.iloc[:10]],  # 28: pooled
        [a.iloc[10:], d.iloc[:3]],  # 36: the pool is published
        [b.iloc[8:], c.iloc[10:], d.iloc[3:]],  # 24: pooled
    ]
    join = load_handler("label_join")
    labeled: list[pd.DataFrame] = []
    published = pd.DataFrame()
    for number, parts in enumerate(instalments):
        rows = pd.concat(parts)
        labels = {record_id: int(value) for record_id, value in rows["churned"].items()}
        stack.put_actuals(labels)
        join.lambda_handler(stream_event(list(labels)), LambdaContext.of("LabelJoinFunction"))
        labeled.append(rows)
        if number == 2:
            published = pd.concat(labeled)
        waiting = pd.concat(labeled).drop(published.index)

        # CloudWatch holds exactly the published rows, the pool exactly the others
        point = stack.statistic("ErrorRate")
        if published.empty:
            assert point is None
        else:
            truth = classifier_truth(stack, published)
            assert point["SampleCount"] == len(published) == 36
            assert point["Average"] == pytest.approx(truth["ErrorRate"], abs=1e-9)
            assert stack.statistic("Accuracy")["Average"] == pytest.approx(truth["Accuracy"], abs=1e-9)
        held = pool(stack)
        if waiting.empty:
            assert held == {}
        else:
            wrong = classifier_truth(stack, waiting)["wrong"]
            assert held == {
                "ErrorRate": (len(waiting), wrong),
                "Accuracy": (len(waiting), len(waiting) - wrong),
            }
    assert len(waiting) == 24
    report = stack.report("incoming/late-small/1.csv")
    assert report["labeled_rows"] == 15
    assert "ErrorRate, Accuracy on these rows went to the model's pool" in report["quality_metrics_withheld"]

    # When a batch with enough labels to be judged arrives, it takes the pool along
    big = churn_frame(40, seed=399, id_prefix="big")
    big["churned"] = big["churned"].astype(int)
    upload(stack, "incoming/late-small/big.csv", big, handler)
    everything = pd.concat([pd.concat(labeled).reset_index(), big])
    point = stack.statistic("ErrorRate")
    assert point["SampleCount"] == 36 + 24 + 40
    assert point["Average"] == pytest.approx(classifier_truth(stack, everything)["ErrorRate"], abs=1e-9)
    assert pool(stack) == {}


@pytest.mark.parametrize("path", ["labels at upload", "late labels"])
def test_putmetricdata_failing_after_a_pool_flush_injected_counts_every_row_once_after_the_retry(small, path):
    """PutMetricData fails once (injected: moto cannot be made to fail one call) in the
    invocation whose batch completes the pool, after the pool was emptied: what it took goes
    back, less this batch's own rows, and the retry (Lambda's for an upload, the stream's
    for labels) publishes the 36 rows once."""
    stack = small
    frames = small_batches(3, 12)
    monitor = load_handler("batch_monitor")
    join = load_handler("label_join")
    if path == "late labels":
        for number, frame in enumerate(frames):
            upload(stack, f"incoming/faulty/{number}.csv", frame, monitor, labels=False)

    def deliver(number: int) -> Callable[[], Any]:
        """The batch's labels (and the batch itself, at upload) written; the invocation they make."""
        frame = frames[number]
        labels = dict(zip(frame["record_id"], frame["churned"], strict=True))
        stack.put_actuals(labels)
        if path == "late labels":
            event = stream_event(list(labels))
            return lambda: join.lambda_handler(event, LambdaContext.of("LabelJoinFunction"))
        key = f"incoming/faulty/{number}.csv"
        stack.put(key, frame.drop(columns=["churned"]).to_csv(index=False))
        return lambda: monitor.lambda_handler(s3_event(key), LambdaContext())

    for number in range(2):
        deliver(number)()
    assert stack.statistic("ErrorRate") is None
    assert pool(stack)["ErrorRate"][0] == 24

    invocation = deliver(2)
    with injected(PUT_METRIC_DATA, "error") as fired:
        with pytest.raises(ClientError, match="injected failure"):
            invocation()
        assert pool(stack)["ErrorRate"][0] == 24  # taken, then put back without the 12
        invocation()  # the retry
    assert fired["count"] == 1

    truth = classifier_truth(stack, pd.concat(frames))
    for metric in ("ErrorRate", "Accuracy"):
        point = stack.statistic(metric)
        assert point["SampleCount"] == 36
        assert point["Average"] == pytest.approx(truth[metric], abs=1e-9)
    assert pool(stack) == {}


def test_a_regressors_small_batches_publish_mae_on_the_pooled_rows(small, monkeypatch, tmp_path):
    stack = small
    regressor_dir = tmp_path / "regressor"
    write_regressor(regressor_dir)
    monkeypatch.setenv("MODEL_DIR", str(regressor_dir))
    handler = load_handler("batch_monitor")
    rng = np.random.default_rng(51)
    frames = []
    for number in range(3):
        frame = pd.DataFrame(
            {
                "record_id": [f"d{number}-{index:03d}" for index in range(12)],
                "distance_km": rng.uniform(0.5, 15, 12).round(2),
                "items": rng.integers(1, 8, 12),
            }
        )
        minutes = 10 + 3 * frame["distance_km"] + 1.5 * frame["items"] + rng.normal(0, 3, 12)
        frame["delivery_minutes"] = [Decimal(f"{value:.1f}") for value in minutes]
        frames.append(frame)
        upload(stack, f"incoming/delivery/{number}.csv", frame, handler)
        if number < 2:
            assert stack.statistic("MAE", model_name="delivery-test") is None

    rows = pd.concat(frames)
    model = joblib.load(regressor_dir / "model.joblib")
    predicted = model.predict(rows[["distance_km", "items"]])
    actual = rows["delivery_minutes"].astype(float).to_numpy()
    for metric, expected in (
        ("MAE", skm.mean_absolute_error(actual, predicted)),
        ("MSE", skm.mean_squared_error(actual, predicted)),
        ("MeanError", float(np.mean(predicted - actual))),
    ):
        point = stack.statistic(metric, model_name="delivery-test")
        assert point["SampleCount"] == 36, metric
        assert point["Average"] == pytest.approx(expected, abs=1e-9), metric
    assert stack.statistic("RMSE", model_name="delivery-test") is None  # not additive: per batch only
    assert stack.statistic("R2", model_name="delivery-test") is None


class OtherInvocationFirst:
    """The ledger's DynamoDB client, running ``other`` (a whole invocation) right after the
    first read of a pool (``pool``: its item id's prefix): between this invocation's read and
    its conditional write."""

    def __init__(self, dynamodb: Any, other: Callable[[], Any], pool: str = "pool#"):
        self.dynamodb, self.other, self.ran, self.pool = dynamodb, other, False, pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dynamodb, name)

    def get_item(self, **params: Any) -> Any:
        item = self.dynamodb.get_item(**params)
        if params["Key"]["id"]["S"].startswith(self.pool) and not self.ran:
            self.ran = True
            self.other()
        return item


def test_two_uploads_adding_to_the_pool_at_once_lose_nothing(small):
    """Monitor B processes a whole small batch between monitor A's read of the pool and its
    write: A's write fails its revision check, A reads again and adds to what B left."""
    stack = small
    frames = small_batches(3, 12)
    batches = []
    for number, frame in enumerate(frames):
        key = f"incoming/racing/{number}.csv"
        stack.put_actuals(dict(zip(frame["record_id"], frame["churned"], strict=True)))
        stack.put(key, frame.drop(columns=["churned"]).to_csv(index=False))
        head = stack.s3.head_object(Bucket=BUCKET, Key=key)
        batches.append(BatchObject(BUCKET, key, head["VersionId"], head["ETag"]))
    a, b, first = (BatchMonitor.from_config(MonitorConfig.from_env()) for _ in range(3))
    first.process(batches[0])
    a.ledger.dynamodb = OtherInvocationFirst(a.ledger.dynamodb, lambda: b.process(batches[2]))

    a.process(batches[1])

    assert a.ledger.dynamodb.ran
    truth = classifier_truth(stack, pd.concat(frames))
    point = stack.statistic("ErrorRate")
    assert point["SampleCount"] == 36
    assert point["Average"] == pytest.approx(truth["ErrorRate"], abs=1e-9)
    assert pool(stack) == {}

"""Small batches' drift and performance estimate: pooled rows, not a silent alarm.

A batch below drift.MIN_ROWS (200) scored rows publishes no drift metrics, and one below
MinLabeledRows rows no estimate; their alarms keep their state, so a feed of small batches
left DriftAlarm and EstimatedQualityAlarm green forever. Such a batch's rows go to the
model's drift / estimate pool in the batch ledger (modelwatch.row_pool), and the batch that
fills a pool publishes drift or the estimate over all its rows. Every published value is
checked against the existing functions on exactly those rows as one batch, and a
statistic of each kind against scipy, with the model loaded here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from scipy import stats

from modelwatch.config import MonitorConfig
from modelwatch.drift import compute_drift
from modelwatch.estimation import ESTIMATED_METRICS, estimator_for
from modelwatch.local.alarms import AlarmDefinition, CloudWatchAlarmEvaluator
from modelwatch.model_bundle import load_bundle
from modelwatch.monitor import BatchMonitor
from modelwatch.results import BatchObject
from modelwatch.row_pool import ENTRY_MAX_AGE_SECONDS
from tests.aws_calls import recorded_aws_calls
from tests.cloudformation import Resolver
from tests.integration.conftest import BUCKET, Stack, load_handler, s3_event
from tests.integration.test_batch_ledger import injected
from tests.integration.test_event_time_lag import NOW, monitor_at
from tests.integration.test_small_batch_pool import PUT_METRIC_DATA, OtherInvocationFirst
from tests.integration.test_small_batch_pool import alarm_series as datums
from tests.lambda_context import LambdaContext
from tests.template_resources import load_template

SAMPLES = Path(__file__).resolve().parents[2] / "samplefiles" / "classification"
DRIFT_METRICS = ("DriftScore", "DriftedFeatures", "PredictionDrift")


@dataclass
class Sample:
    """The stack, with the sample churn model (drift baseline and calibration included)."""

    stack: Stack
    model_dir: Path
    model: str  # its name, the metrics' ModelName
    version: str
    features: list[str]

    @property
    def pool_key(self) -> str:
        return f"{self.model}@{self.version}"  # the pools are per model version

    def statistic(self, metric: str, statistics: tuple[str, ...] = ("Sum", "SampleCount", "Average")) -> Any:
        return self.stack.statistic(metric, statistics, model_name=self.model)


@pytest.fixture
def sample(stack, monkeypatch, sample_churn_model_dir) -> Sample:
    monkeypatch.setenv("MODEL_DIR", str(sample_churn_model_dir))
    monkeypatch.setenv("MIN_LABELED_ROWS", "30")
    metadata = json.loads((sample_churn_model_dir / "metadata.json").read_text())
    features = [feature["name"] for feature in metadata["features"]]
    return Sample(stack, sample_churn_model_dir, metadata["name"], str(metadata["version"]), features)


def frames(count: int, rows: int, start: int = 0, shift: float = 0.0) -> list[pd.DataFrame]:
    """Consecutive pieces of the sample's batch-01 (1,000 rows), as an upstream that splits
    its files would send them; ``shift`` is added to every monthly_charges."""
    whole = pd.read_csv(SAMPLES / "batches" / "batch-01.csv", dtype={"record_id": str})
    whole["monthly_charges"] = whole["monthly_charges"] + shift
    return [whole.iloc[start + number * rows : start + (number + 1) * rows] for number in range(count)]


def upload(sample: Sample, key: str, frame: pd.DataFrame, handler: Any) -> dict[str, Any]:
    sample.stack.put(key, frame.to_csv(index=False))
    result = handler.lambda_handler(s3_event(key), LambdaContext())
    assert result["batches"][0]["status"] == "ok"
    return sample.stack.report(key)


def put_template_alarm(sample: Sample, logical_id: str, topic_arn: str) -> str:
    """The template's alarm as CloudFormation would create it (defaults, the sample model's name)."""
    template = load_template()
    properties = Resolver(template, ModelName=sample.model).resolve(
        template["Resources"][logical_id]["Properties"]
    )
    alarm = AlarmDefinition.from_cloudformation(properties)
    request = {**alarm.put_request(), "AlarmActions": [topic_arn], "OKActions": [topic_arn]}
    sample.stack.cloudwatch.put_metric_alarm(**request)
    return alarm.name


def drift_truth(sample: Sample, rows: pd.DataFrame) -> Any:
    """compute_drift (the whole-batch function) over exactly these rows as one batch."""
    bundle = load_bundle(sample.model_dir)
    model = bundle.estimator
    features = rows[sample.features].reset_index(drop=True)
    return compute_drift(
        features,
        bundle.metadata,
        model.predict(features),
        model.predict_proba(features),
        bundle.baseline["drift"],
        threshold=MonitorConfig.from_env().drift_threshold,
    )


def pool_entries(sample: Sample, kind: str) -> dict[str, dict[str, Any]]:
    """The pool item's entries (and markers): attribute -> its map."""
    stack = sample.stack
    item = stack.dynamodb.get_item(
        TableName=stack.ledger_table, Key={"id": {"S": f"{kind}-pool#{sample.pool_key}"}}, ConsistentRead=True
    ).get("Item", {})
    return {name: value["M"] for name, value in item.items() if name.startswith("entry#")}


def pooled_rows(sample: Sample, kind: str) -> int:
    return sum(int(entry["n"]["N"]) for entry in pool_entries(sample, kind).values() if "d" in entry)


def published_drift(sample: Sample) -> dict[str, dict[str, float] | None]:
    return {
        metric: sample.statistic(metric, ("Maximum", "Minimum", "SampleCount")) for metric in DRIFT_METRICS
    }


def assert_drift_of(sample: Sample, rows: pd.DataFrame, samples: int = 1) -> None:
    truth = drift_truth(sample, rows).metrics
    assert set(truth) == set(DRIFT_METRICS)
    for metric, point in published_drift(sample).items():
        assert point is not None, metric
        assert point["SampleCount"] == samples, metric
        assert point["Maximum"] == pytest.approx(truth[metric], abs=1e-9), metric


def test_small_batches_publish_drift_once_the_pool_holds_200_rows(sample):
    batches = frames(4, 60)
    handler = load_handler("batch_monitor")
    for number, frame in enumerate(batches[:3]):
        report = upload(sample, f"incoming/drift/{number}.csv", frame, handler)
        drift = report["drift"]
        # The existing wording stays (true of the batch on its own), and the pool is named
        assert drift["message"].startswith("60 rows is below the 200 needed for drift metrics")
        assert drift["pool"]["status"] == "pooled"
        assert drift["pool"]["pool_rows"] == 60 * (number + 1)
        assert f"the pool holds {60 * (number + 1)} of the 200 rows" in drift["pool"]["note"]
        assert not set(DRIFT_METRICS) & set(report["metrics_published"])
    assert published_drift(sample) == dict.fromkeys(DRIFT_METRICS)
    assert pooled_rows(sample, "drift") == 180

    with recorded_aws_calls() as calls:
        report = upload(sample, "incoming/drift/3.csv", batches[3], load_handler("batch_monitor"))

    everything = pd.concat(batches, ignore_index=True)
    # One datapoint of each, on the 240 rows of the four batches
    for metric in DRIFT_METRICS:
        assert len(datums(calls, metric)) == 1
    assert_drift_of(sample, everything)
    assert pool_entries(sample, "drift") == {}
    # The report's drift section is the pooled rows', and says whose
    drift = report["drift"]
    assert drift["status"] == "ok" and drift["rows"] == 240
    assert drift["pooled"]["rows"] == 240
    assert sorted(batch["batch"] for batch in drift["pooled"]["batches"]) == [
        f"s3://{BUCKET}/incoming/drift/{number}.csv" for number in range(4)
    ]
    assert all(batch["rows"] == 60 for batch in drift["pooled"]["batches"])
    assert set(DRIFT_METRICS) <= set(report["metrics_published"])

    # scipy on the same 240 rows, independently of modelwatch's statistics
    baseline = json.loads((sample.model_dir / "baseline.json").read_text())["drift"]["features"]
    details = {detail["name"]: detail for detail in drift["features"]}
    # KS of monthly_charges against the reference's CDF (linear through its quantile sketch)
    sketch = np.asarray(baseline["monthly_charges"]["quantiles"], dtype=float)
    levels = np.linspace(0, 1, sketch.size)
    values = everything["monthly_charges"].to_numpy()
    # Between two distinct sketch values np.interp interpolates from the last of the one to the
    # first of the other, a repeated value's jump included; no row sits on a repeated value,
    # where the jump would make kstest's formula (F at the rows only) inexact.
    repeated = sketch[1:][np.diff(sketch) == 0]
    assert not np.isin(values, repeated).any()
    ks = stats.kstest(values, lambda x: np.interp(x, sketch, levels))
    assert details["monthly_charges"]["statistic"] == pytest.approx(ks.statistic, abs=1e-9)
    # Pearson chi-square of the plan counts against the reference's counts
    plan = baseline["plan"]
    counts = everything["plan"].value_counts()
    batch_counts = [counts.get(category, 0) for category in plan["categories"]]
    other = sum(count for category, count in counts.items() if category not in plan["categories"])
    reference_count = plan["count"]
    reference_counts = [round(share * reference_count) for share in plan["proportions"]]
    other_reference = round(plan["other_proportion"] * reference_count)
    table = np.array([batch_counts + [other], reference_counts + [other_reference]], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    chi = stats.chi2_contingency(table, correction=False)
    assert details["plan"]["statistic"] == pytest.approx(chi.statistic, abs=1e-9)


def test_small_batches_publish_the_estimate_once_the_pool_holds_min_labeled_rows(sample):
    batches = frames(3, 12)
    handler = load_handler("batch_monitor")
    for number, frame in enumerate(batches[:2]):
        report = upload(sample, f"incoming/estimate/{number}.csv", frame, handler)
        estimated = report["estimated_performance"]
        assert estimated["skipped"].startswith("12 rows, fewer than MinLabeledRows=30")
        assert estimated["pool"]["pool_rows"] == 12 * (number + 1)
    for metric in ESTIMATED_METRICS:
        assert sample.statistic(metric) is None

    with recorded_aws_calls() as calls:
        report = upload(sample, "incoming/estimate/2.csv", batches[2], load_handler("batch_monitor"))

    rows = pd.concat(batches, ignore_index=True)
    bundle = load_bundle(sample.model_dir)
    model = bundle.estimator
    probabilities = model.predict_proba(rows[sample.features])
    predicted = model.predict(rows[sample.features])
    estimator, _ = estimator_for(
        "classification", True, bundle.metadata.classes, bundle.metadata.positive_index, bundle.calibration
    )
    assert estimator is not None
    truth = estimator.estimate(probabilities, predicted, np.zeros(len(rows), dtype=bool), {})
    assert set(truth.published) == set(ESTIMATED_METRICS)
    for metric in ESTIMATED_METRICS:
        [datum] = datums(calls, metric)
        point = sample.statistic(metric)
        assert point["Average"] == pytest.approx(truth.published[metric].value, abs=1e-9), metric
    # EstimatedAccuracy by hand: the mean calibrated probability of the predicted class
    calibration = json.loads((sample.model_dir / "calibration.json").read_text())
    positive = bundle.metadata.positive_index
    positive_class = bundle.metadata.classes[positive]
    [mapping] = [each for each in calibration["calibrators"] if str(each["class"]) == str(positive_class)]
    raw = probabilities[:, positive]
    calibrated = np.clip(np.interp(raw, mapping["x"], mapping["y"]), 0, 1) if mapping["x"] else raw
    of_predicted = np.where(predicted == positive_class, calibrated, 1 - calibrated)
    point = sample.statistic("EstimatedAccuracy")
    assert point["SampleCount"] == 36
    assert point["Average"] == pytest.approx(of_predicted.mean(), abs=1e-9)
    estimated = report["estimated_performance"]
    assert estimated["rows"] == 36 and estimated["pooled"]["rows"] == 36
    assert len(estimated["pooled"]["batches"]) == 3
    assert report["metrics"]["EstimatedAccuracy"] == pytest.approx(of_predicted.mean(), abs=1e-9)
    assert pool_entries(sample, "estimate") == {}
    # The drift pool keeps the 36 rows: 200 are needed
    assert pooled_rows(sample, "drift") == 36


def test_a_drifted_feed_of_small_batches_fires_drift_alarm(sample):
    stack = sample.stack
    # Given DriftAlarm as the template defines it (2 of 3 hourly periods) and a feed of
    # 60-row batches whose monthly_charges moved far beyond the training range
    sns = boto3.client("sns")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    alarm = put_template_alarm(sample, "DriftAlarm", topic)
    evaluator = CloudWatchAlarmEvaluator(stack.cloudwatch, sns)
    monitor = monitor_at(NOW)
    batches = frames(8, 60, shift=150.0)
    for number, frame in enumerate(batches):
        # four batches in each of the two hours before NOW
        stamp = NOW - timedelta(hours=2 - number // 4, minutes=50 - 10 * (number % 4))
        key = f"incoming/drifted/{number}.csv"
        body = frame.to_csv(index=False)
        stack.put(key, body, Metadata={"batch-time": stamp.isoformat()})
        report = monitor.process(BatchObject(BUCKET, key)).to_dict()
        assert report["status"] == "ok" and report["live"] is True

    # Then at NOW the alarm is in ALARM on two pooled datapoints far above the threshold
    # (before: no datapoint at all, so it never left INSUFFICIENT_DATA)
    run = evaluator.evaluate(alarm, NOW + timedelta(seconds=30))
    assert run.evaluation.state == "ALARM"
    assert len([value for value in run.evaluation.recent_values if value > 0.2]) == 2


def test_the_same_small_batch_processed_twice_is_pooled_once(sample):
    batches = frames(4, 60)
    handler = load_handler("batch_monitor")
    keys = [f"incoming/twice/{number}.csv" for number in range(4)]
    upload(sample, keys[0], batches[0], handler)
    upload(sample, keys[1], batches[1], handler)
    # The same S3 event again (redelivered, or Lambda's retry after a lost response)
    handler.lambda_handler(s3_event(keys[1]), LambdaContext())
    assert pooled_rows(sample, "drift") == 120
    upload(sample, keys[2], batches[2], handler)
    handler.lambda_handler(s3_event(keys[2]), LambdaContext())
    assert pooled_rows(sample, "drift") == 180
    report = upload(sample, keys[3], batches[3], handler)

    assert report["drift"]["pooled"]["rows"] == 240
    assert_drift_of(sample, pd.concat(batches, ignore_index=True))
    # After the flush, the retried event of a pooled batch adds nothing back
    handler.lambda_handler(s3_event(keys[1]), LambdaContext())
    assert pool_entries(sample, "drift") == {}


def test_putmetricdata_failing_injected_after_a_flush_puts_the_rows_back_and_the_retry_publishes_once(sample):
    batches = frames(4, 60)
    handler = load_handler("batch_monitor")
    for number in range(3):
        upload(sample, f"incoming/faulty/{number}.csv", batches[number], handler)
    sample.stack.put("incoming/faulty/3.csv", batches[3].to_csv(index=False))
    invocation = lambda: handler.lambda_handler(s3_event("incoming/faulty/3.csv"), LambdaContext())  # noqa: E731

    with injected(PUT_METRIC_DATA, "error") as fired:
        with pytest.raises(ClientError, match="injected failure"):
            invocation()
        # What the failed attempt took is back, less its own rows (the retry adds them)
        assert pooled_rows(sample, "drift") == 180
        assert published_drift(sample) == dict.fromkeys(DRIFT_METRICS)
        invocation()  # the retry
    assert fired["count"] == 1

    assert_drift_of(sample, pd.concat(batches, ignore_index=True))
    assert pool_entries(sample, "drift") == {}
    assert sample.stack.report("incoming/faulty/3.csv")["drift"]["pooled"]["rows"] == 240


def test_putmetricdata_failing_injected_for_a_small_batch_that_only_adds_leaves_its_rows_once(sample):
    stack = sample.stack
    batches = frames(2, 60)
    handler = load_handler("batch_monitor")
    upload(sample, "incoming/adds/0.csv", batches[0], handler)
    stack.put("incoming/adds/1.csv", batches[1].to_csv(index=False))
    with injected(PUT_METRIC_DATA, "error") as fired:
        with pytest.raises(ClientError, match="injected failure"):
            handler.lambda_handler(s3_event("incoming/adds/1.csv"), LambdaContext())
        assert pooled_rows(sample, "drift") == 60  # its entry withdrawn, for the retry
        handler.lambda_handler(s3_event("incoming/adds/1.csv"), LambdaContext())
    assert fired["count"] == 1
    assert pooled_rows(sample, "drift") == 120


def prepared(stack, folder: str, batches: list[pd.DataFrame]) -> list[BatchObject]:
    found = []
    for number, frame in enumerate(batches):
        key = f"incoming/{folder}/{number}.csv"
        stack.put(key, frame.to_csv(index=False))
        head = stack.s3.head_object(Bucket=BUCKET, Key=key)
        found.append(BatchObject(BUCKET, key, head["VersionId"], head["ETag"]))
    return found


def test_two_small_batches_filling_the_pool_at_once_publish_each_row_once(sample):
    """Monitor B processes a whole batch between monitor A's read of the full pool and its
    write: B takes every entry (A's included) and publishes; A's write fails its revision
    check, A reads again and finds nothing to take."""
    stack = sample.stack
    batches = frames(3, 120)
    objects = prepared(stack, "racing", batches)
    a, b, first = (BatchMonitor.from_config(MonitorConfig.from_env()) for _ in range(3))
    first.process(objects[0])
    a.ledger.dynamodb = OtherInvocationFirst(a.ledger.dynamodb, lambda: b.process(objects[2]), "drift-pool#")

    report = a.process(objects[1])

    assert a.ledger.dynamodb.ran
    # One datapoint (B's; A publishes none), over the three batches' rows
    assert_drift_of(sample, pd.concat(batches, ignore_index=True))
    assert report.to_dict()["drift"]["pool"]["pool_rows"] == 0
    assert stack.report("incoming/racing/2.csv")["drift"]["pooled"]["rows"] == 360
    assert pool_entries(sample, "drift") == {}


def test_a_failed_attempt_whose_rows_another_batch_published_is_not_pooled_again_injected(sample):
    """Batch A adds its rows; B, between A's add and A's read, fills the pool with them and
    publishes; A's PutMetricData then fails (injected). A's retry must not add its rows
    again: they are in B's datapoint."""
    stack = sample.stack
    batches = frames(3, 120)
    objects = prepared(stack, "counted", batches)
    a, b, first = (BatchMonitor.from_config(MonitorConfig.from_env()) for _ in range(3))
    first.process(objects[0])
    other = lambda: b.process(objects[2])  # noqa: E731
    a.ledger.dynamodb = OtherInvocationFirst(a.ledger.dynamodb, other, "drift-pool#")

    with injected(PUT_METRIC_DATA, "error") as fired:
        # The fault fires once: not on B's PutMetricData (it counts as fired already), on A's
        fired["count"] = 1

        def b_then_arm() -> None:
            other()
            fired["count"] = 0

        a.ledger.dynamodb.other = b_then_arm
        with pytest.raises(ClientError, match="injected failure"):
            a.process(objects[1])
    report = a.process(objects[1]).to_dict()  # the retry

    assert report["drift"]["pool"]["status"] == "counted"
    assert_drift_of(sample, pd.concat(batches, ignore_index=True))
    assert pooled_rows(sample, "drift") == 0


def test_pool_entries_older_than_a_week_are_dropped(sample):
    stack = sample.stack
    batches = frames(5, 60)
    handler = load_handler("batch_monitor")
    for number in range(3):
        upload(sample, f"incoming/stale/{number}.csv", batches[number], handler)
    assert pooled_rows(sample, "drift") == 180

    # A week and a minute later (the ledger's clock), two more small batches
    later = time.time() + ENTRY_MAX_AGE_SECONDS + 60
    monitor = BatchMonitor.from_config(MonitorConfig.from_env())
    monitor.ledger.clock = lambda: later
    for number in (3, 4):
        key = f"incoming/stale/{number}.csv"
        stack.put(key, batches[number].to_csv(index=False))
        report = monitor.process(BatchObject(BUCKET, key)).to_dict()

    # The 240 rows would have filled the pool; the stale 180 are gone instead
    assert published_drift(sample) == dict.fromkeys(DRIFT_METRICS)
    assert report["drift"]["pool"]["pool_rows"] == 120
    assert pooled_rows(sample, "drift") == 120
    assert len(pool_entries(sample, "drift")) == 2


def test_a_batch_too_wide_to_pool_is_left_out_and_its_report_says_so(sample, monkeypatch):
    # A limit below what the sample's 60 rows take compressed stands in for a very wide model
    monkeypatch.setattr("modelwatch.row_pool.ENTRY_MAX_BYTES", 1_000)
    report = upload(sample, "incoming/wide/0.csv", frames(1, 60)[0], load_handler("batch_monitor"))

    pool = report["drift"]["pool"]
    assert pool["status"] == "not_pooled"
    assert "were not pooled: 60 rows take" in pool["note"] and "bytes compressed" in pool["note"]
    assert pool_entries(sample, "drift") == {}
    # 60 rows are enough for the estimate: that pool is not involved
    assert "pool" not in report["estimated_performance"]
    # Drift is computed nowhere for this batch: counted, not a silent green DriftAlarm (a model
    # this wide refuses every small batch), once, at processing time like the batch's own count
    unavailable = sample.statistic("SignalsUnavailable", ("Maximum", "Sum", "SampleCount"))
    assert unavailable is not None
    assert (unavailable["Maximum"], unavailable["Sum"], unavailable["SampleCount"]) == (1.0, 1.0, 1.0)
    [note] = [note for note in report["notes"] if note.startswith("SignalsUnavailable: ")]
    assert "drift (DriftScore" in note and "60 rows are fewer than the 200" in note


def test_a_label_join_rewriting_the_report_while_the_pool_is_settled_keeps_its_labels_injected(
    sample, monkeypatch
):
    # The join waits only for the publish mark; the monitor writes the report again after it,
    # once the pool is settled. Injected: a join's rewrite (labels) between the two writes.
    import modelwatch.monitor as monitor_module

    batches = frames(4, 60)
    handler = load_handler("batch_monitor")
    for number in range(3):
        upload(sample, f"incoming/race/{number}.csv", batches[number], handler)
    key = "incoming/race/3.csv"
    real_take = monitor_module.take_if_full

    def join_first(ledger, model, kind, threshold):
        stored = sample.stack.report(key)
        stored["labeled_rows"], stored["labels"] = 60, {"arrivals": [{"new": 60}], "awaiting_rows": 0}
        BatchMonitor.from_config(MonitorConfig.from_env()).store.write_report(
            BatchObject(BUCKET, key, version_id=stored["batch"]["version_id"]), stored
        )
        return real_take(ledger, model, kind, threshold)

    monkeypatch.setattr(monitor_module, "take_if_full", join_first)
    report = upload(sample, key, batches[3], load_handler("batch_monitor"))

    # The join's labels stay, and the pooled drift section is there too
    assert report["labeled_rows"] == 60 and report["labels"]["arrivals"] == [{"new": 60}]
    assert report["drift"]["pooled"]["rows"] == 240
    assert set(DRIFT_METRICS) <= set(report["metrics_published"])


def test_pooled_rows_that_cannot_be_measured_together_are_dropped_and_the_batch_still_publishes(
    sample, monkeypatch
):
    import modelwatch.monitor as monitor_module

    batches = frames(4, 60)
    handler = load_handler("batch_monitor")
    for number in range(3):
        upload(sample, f"incoming/broken/{number}.csv", batches[number], handler)

    def fails(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("injected: rows of two packagings of one version")

    monkeypatch.setattr(monitor_module, "measure_pooled", fails)
    report = upload(sample, "incoming/broken/3.csv", batches[3], load_handler("batch_monitor"))

    assert "could not be measured together" in report["drift"]["pool_error"]
    assert "injected" in report["drift"]["pool_error"]
    assert pooled_rows(sample, "drift") == 0  # dropped, not put back to fail the next batch too
    assert published_drift(sample) == dict.fromkeys(DRIFT_METRICS)
    assert sample.statistic("BatchesProcessed")["Sum"] == 4
    # and the drift nobody computed is counted, not a silent green DriftAlarm: only this batch's
    unavailable = sample.statistic("SignalsUnavailable", ("Maximum", "Sum", "SampleCount"))
    assert unavailable is not None
    assert (unavailable["Maximum"], unavailable["Sum"], unavailable["SampleCount"]) == (1.0, 1.0, 4.0)
    assert any(note.startswith("SignalsUnavailable: drift over the pooled rows") for note in report["notes"])

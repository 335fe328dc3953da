"""A batch stamped earlier than the alarms look back, or with a placeholder time far ahead,
must not slip past the alarms silently.

The batch monitor runs on a fixed clock against in-process moto; the template's alarms
(QualityAlarm, EventTimeLagAlarm), resolved with the parameters' defaults, are put into
moto's CloudWatch and evaluated by the local alarm evaluator at that clock's time.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import joblib
import pytest

from modelwatch.config import MonitorConfig
from modelwatch.local.alarms import AlarmDefinition, CloudWatchAlarmEvaluator
from modelwatch.monitor import BatchMonitor
from modelwatch.results import BatchObject
from tests.cloudformation import Resolver
from tests.integration.conftest import BUCKET, Stack
from tests.model_fixtures import CATEGORICAL, NUMERIC, churn_frame
from tests.template_resources import load_template, parameter_defaults

FEATURES = NUMERIC + CATEGORICAL
# The processing time of every batch here: a fixed clock, so no assertion depends on when
# the test runs (moto takes datapoints of any age).
NOW = datetime(2026, 11, 30, 12, 0, 30, tzinfo=UTC)
MODEL_NAME = "churn-test"  # the test model's own name: the stack leaves the template's ModelName empty
DEFAULTS = parameter_defaults()
# The alarms' look-back with the template's defaults: (EvaluationPeriods + 2) x AlarmPeriodSeconds.
LOOKBACK = timedelta(seconds=(int(DEFAULTS["EvaluationPeriods"]) + 2) * int(DEFAULTS["AlarmPeriodSeconds"]))


def monitor_at(now: datetime, model_dir: Path | None = None) -> BatchMonitor:
    """The function's monitor, built from the template's environment, on a fixed clock."""
    config = MonitorConfig.from_env()
    if model_dir is not None:
        config = MonitorConfig(**{**config.__dict__, "model_dir": model_dir})
    monitor = BatchMonitor.from_config(config)
    monitor.clock = lambda: now
    return monitor


def every_row_wrong(stack: Stack, rows: int, seed: int, prefix: str) -> Any:
    """A batch whose every actual is the opposite of what the model predicts (scikit-learn,
    the model loaded here): ErrorRate 1, far over QualityAlarm's threshold."""
    frame = churn_frame(rows, seed=seed, id_prefix=prefix).drop(columns=["churned"])
    model = joblib.load(stack.model_dir / "model.joblib")
    predicted = model.predict(frame[FEATURES])
    stack.put_actuals({rid: int(1 - p) for rid, p in zip(frame["record_id"], predicted, strict=True)})
    return frame


def lag_datapoints(stack: Stack) -> list[dict[str, Any]]:
    response = stack.cloudwatch.get_metric_statistics(
        Namespace=DEFAULTS["MetricsNamespace"],
        MetricName="EventTimeLagSeconds",
        Dimensions=[{"Name": "ModelName", "Value": MODEL_NAME}],
        StartTime=NOW - timedelta(days=1),
        EndTime=NOW + timedelta(days=1),
        Period=60,
        Statistics=["Minimum", "Maximum", "SampleCount"],
    )
    return sorted(response["Datapoints"], key=lambda point: point["Timestamp"])


def put_template_alarm(stack: Stack, logical_id: str, topic_arn: str) -> str:
    """The template's alarm as CloudFormation would create it (defaults, the test model's name)."""
    template = load_template()
    properties = Resolver(template, ModelName=MODEL_NAME).resolve(
        template["Resources"][logical_id]["Properties"]
    )
    alarm = AlarmDefinition.from_cloudformation(properties)
    request = {**alarm.put_request(), "AlarmActions": [topic_arn], "OKActions": [topic_arn]}
    stack.cloudwatch.put_metric_alarm(**request)
    return alarm.name


@pytest.fixture
def alarms(stack: Stack) -> tuple[CloudWatchAlarmEvaluator, dict[str, str]]:
    sns = boto3.client("sns")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    names = {
        logical_id: put_template_alarm(stack, logical_id, topic)
        for logical_id in ("QualityAlarm", "EventTimeLagAlarm")
    }
    return CloudWatchAlarmEvaluator(stack.cloudwatch, sns), names


def test_batch_stamped_hours_ago_publishes_its_lag_now_says_why_and_fires_the_lag_alarm(stack, alarms):
    evaluator, names = alarms
    # Given a batch whose every prediction is wrong, stamped (batch-time) 8 hours before it
    # is processed: more than the alarms' 5 h look-back, well within CloudWatch's two weeks
    stamp = NOW - timedelta(hours=8)
    frame = every_row_wrong(stack, 200, seed=31, prefix="late")
    stack.put("incoming/late.csv", frame.to_csv(index=False), Metadata={"batch-time": stamp.isoformat()})

    # When the batch monitor processes it
    report = monitor_at(NOW).process(BatchObject(BUCKET, "incoming/late.csv")).to_dict()

    # Then it is live (CloudWatch takes the stamp) and its error is in the report
    assert report["live"] is True and report["event_time"] == stamp.isoformat()
    assert report["metrics"]["ErrorRate"] == 1.0
    # and the lag, 8 h, is published once, stamped when it was processed, not at the event time
    [point] = lag_datapoints(stack)
    # (the query's minutes start at NOW - 1 day, so the datapoint's minute starts at NOW)
    assert point["Timestamp"] == NOW
    assert point["Minimum"] == point["Maximum"] == 8 * 3600 and point["SampleCount"] == 1
    # and the report says the batch is outside the alarms' window, why, and what to do
    [note] = [note for note in report["notes"] if "outside the alarms' window" in note]
    assert "8.0 h" in note and "5.0 h" in note and "batch-time metadata" in note
    assert "without a UTC offset" in note and "business date" in note and "Fix:" in note

    # And at the processing time, QualityAlarm never sees the wrong batch (the silent case),
    # while EventTimeLagAlarm fires
    at = NOW + timedelta(seconds=30)
    assert evaluator.evaluate(names["QualityAlarm"], at).evaluation.state != "ALARM"
    run = evaluator.evaluate(names["EventTimeLagAlarm"], at)
    assert run.evaluation.state == "ALARM" and run.changed


def test_a_backfill_among_on_time_batches_does_not_fire_the_lag_alarm(stack, alarms):
    evaluator, names = alarms
    # Given, in the same period, a backfill of yesterday and a batch of a minute ago
    monitor = monitor_at(NOW)
    for key, stamp, seed in (
        ("incoming/backfill.csv", NOW - timedelta(days=1), 32),
        ("incoming/on-time.csv", NOW - timedelta(minutes=1), 33),
    ):
        frame = churn_frame(60, seed=seed, id_prefix=key[9:12]).drop(columns=["churned"])
        stack.put(key, frame.to_csv(index=False), Metadata={"batch-time": stamp.isoformat()})
        monitor.process(BatchObject(BUCKET, key))

    # Then both lags are published (the smaller is the period's Minimum) and the lag
    # alarm, on that Minimum, stays OK
    [point] = lag_datapoints(stack)
    assert (point["Minimum"], point["Maximum"], point["SampleCount"]) == (60, 86400, 2)
    assert (
        evaluator.evaluate(names["EventTimeLagAlarm"], NOW + timedelta(seconds=30)).evaluation.state == "OK"
    )


def test_on_time_batch_publishes_a_small_lag_and_no_note(stack):
    # Given a batch stamped two minutes before it is processed
    stamp = NOW - timedelta(minutes=2)
    frame = churn_frame(60, seed=34, id_prefix="now").drop(columns=["churned"])
    stack.put("incoming/now.csv", frame.to_csv(index=False), Metadata={"batch-time": stamp.isoformat()})

    report = monitor_at(NOW).process(BatchObject(BUCKET, "incoming/now.csv")).to_dict()

    # Then its lag, 120 s, is published with its other metrics, and no note about time is
    # added (the test model has no baseline or calibration: SignalsUnavailable notes say so)
    assert "EventTimeLagSeconds" in report["metrics_published"]
    [point] = lag_datapoints(stack)
    assert point["Minimum"] == 120
    assert [note for note in report["notes"] if not note.startswith("SignalsUnavailable:")] == []


@pytest.fixture
def timestamped_model_dir(stack: Stack, tmp_path: Path) -> Path:
    """The tests' classifier, its metadata naming a timestamp column ``event_ts``."""
    directory = tmp_path / "timestamped-model"
    shutil.copytree(stack.model_dir, directory)
    metadata = json.loads((directory / "metadata.json").read_text())
    metadata["timestamp_column"] = "event_ts"
    (directory / "metadata.json").write_text(json.dumps(metadata))
    return directory


def test_a_placeholder_time_far_ahead_is_left_out_of_the_event_time(stack, timestamped_model_dir):
    # Given a batch whose rows happened in the last hour, but one holds the placeholder
    # 9999-12-31 and another a time three hours ahead
    frame = churn_frame(50, seed=35, id_prefix="ts").drop(columns=["churned"])
    stamps = [NOW - timedelta(minutes=60 - index) for index in range(len(frame))]
    latest_sane = max(stamps[2:])
    frame["event_ts"] = [
        "9999-12-31T00:00:00Z",
        (NOW + timedelta(hours=3)).isoformat(),
        *(stamp.isoformat() for stamp in stamps[2:]),
    ]
    stack.put("incoming/placeholder.csv", frame.to_csv(index=False))

    report = monitor_at(NOW, timestamped_model_dir).process(BatchObject(BUCKET, "incoming/placeholder.csv"))
    document = report.to_dict()

    # Then the event time is the latest of the sane values, the batch is live and publishes
    # (StalenessAlarm's BatchesProcessed included), and the report says what was left out
    assert document["event_time"] == latest_sane.isoformat()
    assert document["event_time_source"] == "latest 'event_ts' value"
    assert document["live"] is True and "BatchesProcessed" in document["metrics_published"]
    [note] = [note for note in document["notes"] if "'event_ts'" in note]
    assert note.startswith("2 value(s)") and "9999-12-31T00:00:00+00:00" in note
    assert latest_sane.isoformat() in note
    processed = stack.cloudwatch.get_metric_statistics(
        Namespace=DEFAULTS["MetricsNamespace"],
        MetricName="BatchesProcessed",
        Dimensions=[{"Name": "ModelName", "Value": MODEL_NAME}],
        StartTime=NOW - timedelta(hours=2),
        EndTime=NOW + timedelta(hours=1),
        Period=3600 * 3,
        Statistics=["SampleCount"],
    )["Datapoints"]
    assert [point["SampleCount"] for point in processed] == [1]


def test_when_every_time_is_far_ahead_the_event_time_is_the_upload_time(stack, timestamped_model_dir):
    # Given a batch whose only timestamps are placeholders
    frame = churn_frame(40, seed=36, id_prefix="ph").drop(columns=["churned"])
    frame["event_ts"] = "9999-12-31"
    stack.put("incoming/all-placeholders.csv", frame.to_csv(index=False))
    uploaded = stack.s3.head_object(Bucket=BUCKET, Key="incoming/all-placeholders.csv")["LastModified"]

    # When it is processed right after its upload
    now = uploaded.astimezone(UTC) + timedelta(seconds=5)
    document = (
        monitor_at(now, timestamped_model_dir)
        .process(BatchObject(BUCKET, "incoming/all-placeholders.csv"))
        .to_dict()
    )

    # Then it falls back to the upload time as a batch without the column does, and says why
    assert document["event_time_source"] == "upload time" and document["live"] is True
    [note] = [note for note in document["notes"] if "'event_ts'" in note]
    assert note.startswith("40 value(s)") and "the event time is the upload time" in note


# One instant, an hour before NOW (well within the alarms' look-back, so no lag note), as written
WITHOUT_OFFSET = f"{NOW - timedelta(hours=1):%Y-%m-%d %H:%M:%S}"  # e.g. a team's local time
WRITTEN = {
    "without offset": WITHOUT_OFFSET,
    "Z": f"{NOW - timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}",
    "+09:00": (NOW - timedelta(hours=1)).astimezone(timezone(timedelta(hours=9))).isoformat(),
}


@pytest.mark.parametrize("form", list(WRITTEN))
@pytest.mark.parametrize("where", ["batch-time", "column"])
def test_an_event_time_without_a_utc_offset_is_read_as_utc_and_the_report_says_so(
    stack, timestamped_model_dir, where, form
):
    # Given a batch whose time is written with or without an offset, in its metadata or column
    written = WRITTEN[form]
    frame = churn_frame(30, seed=37, id_prefix="tz").drop(columns=["churned"])
    metadata = {}
    if where == "batch-time":
        metadata["batch-time"] = written
    else:
        frame["event_ts"] = [*(["2026-11-30T10:00:00Z"] * (len(frame) - 1)), written]
    stack.put("incoming/zone.csv", frame.to_csv(index=False), Metadata=metadata)

    document = (
        monitor_at(NOW, timestamped_model_dir).process(BatchObject(BUCKET, "incoming/zone.csv")).to_dict()
    )

    # Then the time is read as before (a time without an offset as UTC) ...
    assert document["event_time"] == (NOW - timedelta(hours=1)).isoformat()
    assert document["live"] is True
    notes = [note for note in document["notes"] if "no UTC offset" in note]
    if form != "without offset":
        assert notes == []
        return
    # ... and the report names the source, the value, that it was taken as UTC, and the fix
    [note] = notes
    source = "object metadata batch-time" if where == "batch-time" else "timestamp column 'event_ts'"
    assert source in note and repr(WITHOUT_OFFSET) in note
    assert f"taken as UTC ({(NOW - timedelta(hours=1)).isoformat()})" in note
    assert "+09:00" in note and "Z for UTC" in note

"""A labels feed that goes blank must not look healthy.

QualityAlarm ignores missing data (batches are sporadic), so when ground truth stops
arriving it keeps its last state forever. LabelsStaleAlarm watches LabelsJoined, which the
batch monitor publishes for the labels a batch finds at upload and the label join for the
labels that come later, each stamped when they were joined. Here the batch monitor and the
label join run on fixed clocks against in-process moto, and the template's alarms (resolved
as CloudFormation would, LabelStalenessMinutes=60) are evaluated by the local alarm
evaluator at chosen times.

The window, as CloudWatch evaluates it: a batch that found no labels publishes
LabelsJoined 0, so while batches flow the alarm fires one window after the last label. When
nothing at all is published, CloudWatch lets the newest datapoint of the evaluation range (up
to two more periods, at most a day) stand in for the empty recent ones, so it fires up to
three windows later (one with the default window of a day); StalenessAlarm has fired by then.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from modelwatch.local.alarms import AlarmDefinition, CloudWatchAlarmEvaluator
from modelwatch.results import BatchObject
from tests.cloudformation import Resolver
from tests.integration.conftest import BUCKET, Stack, load_handler, s3_event
from tests.integration.test_event_time_lag import MODEL_NAME, monitor_at
from tests.lambda_context import LambdaContext
from tests.model_fixtures import churn_frame
from tests.template_resources import load_template, parameter_defaults

T0 = datetime(2026, 11, 30, 12, 0, 30, tzinfo=UTC)
WINDOW_MINUTES = 60
NAMESPACE = parameter_defaults()["MetricsNamespace"]
STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/actuals/stream/2026-11-30T00:00:00"


@pytest.fixture
def alarms(stack: Stack) -> tuple[CloudWatchAlarmEvaluator, dict[str, str]]:
    """LabelsStaleAlarm and UnknownLabelsAlarm as CloudFormation would create them."""
    template = load_template()
    resolver = Resolver(template, ModelName=MODEL_NAME, LabelStalenessMinutes=str(WINDOW_MINUTES))
    sns = boto3.client("sns")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    names = {}
    for logical_id in ("LabelsStaleAlarm", "UnknownLabelsAlarm"):
        alarm = AlarmDefinition.from_cloudformation(
            resolver.resolve(template["Resources"][logical_id]["Properties"])
        )
        stack.cloudwatch.put_metric_alarm(
            **{**alarm.put_request(), "AlarmActions": [topic], "OKActions": [topic]}
        )
        names[logical_id] = alarm.name
    return CloudWatchAlarmEvaluator(stack.cloudwatch, sns), names


def score(stack: Stack, key: str, frame: Any, at: datetime) -> dict[str, Any]:
    """The batch monitor scores ``frame`` at ``at``; S3 announced the upload 20 s earlier."""
    stack.put(
        key, frame.drop(columns=["churned"]).to_csv(index=False), Metadata={"batch-time": at.isoformat()}
    )
    report = monitor_at(at).process(BatchObject(BUCKET, key), announced_at=at - timedelta(seconds=20))
    assert report.status == "ok"
    return report.to_dict()


def write_labels(stack: Stack, labels: dict[str, Any], at: datetime) -> dict[str, Any]:
    """A writer puts labels into the actuals table at ``at``; the stream hands their keys to the
    label join as DynamoDB Streams does (keys only, with the write's time)."""
    stack.put_actuals(labels)
    event = {
        "Records": [
            {
                "eventID": str(number),
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": at.timestamp(),
                    "Keys": {"record_id": {"S": record_id}},
                    "SequenceNumber": f"{number:021d}",
                    "SizeBytes": 40,
                    "StreamViewType": "KEYS_ONLY",
                },
                "eventSourceARN": STREAM_ARN,
            }
            for number, record_id in enumerate(labels, start=1)
        ]
    }
    return load_handler("label_join").lambda_handler(event, LambdaContext.of("LabelJoinFunction"))


def total(stack: Stack, metric: str) -> float | None:
    """The metric's Sum over the day around T0 (None: never published)."""
    response = stack.cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=metric,
        Dimensions=[{"Name": "ModelName", "Value": MODEL_NAME}],
        StartTime=T0 - timedelta(hours=12),
        EndTime=T0 + timedelta(hours=12),
        Period=86400,
        Statistics=["Sum"],
    )
    points = response["Datapoints"]
    return sum(point["Sum"] for point in points) if points else None


def labels_of(frame: Any) -> dict[str, int]:
    return dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))


def state(evaluator: CloudWatchAlarmEvaluator, name: str, at: datetime) -> str:
    return evaluator.evaluate(name, at).evaluation.state


def test_labels_found_at_upload_keep_the_alarm_ok_and_their_silence_fires_it(stack, alarms):
    evaluator, names = alarms
    stale = names["LabelsStaleAlarm"]
    # Given a batch whose labels were in the actuals table before it was scored at T0
    labeled = churn_frame(120, seed=71, id_prefix="up-a")
    stack.put_actuals(labels_of(labeled))
    report = score(stack, "incoming/a.csv", labeled, T0)
    assert report["labeled_rows"] == 120

    # Then its 120 labels are counted as joined, stamped when S3 announced the upload
    assert total(stack, "LabelsJoined") == 120
    assert state(evaluator, stale, T0 + timedelta(minutes=1)) == "OK"

    # When batches keep coming for the next hour, but without labels (the actuals job broke)
    unlabeled = churn_frame(80, seed=72, id_prefix="up-b")
    report = score(stack, "incoming/b.csv", unlabeled, T0 + timedelta(minutes=30))
    assert report["labeled_rows"] == 0 and "LabelsJoined" in report["metrics_published"]

    # Then once the window has no joined label, the alarm fires, though batches still arrive
    assert state(evaluator, stale, T0 + timedelta(minutes=WINDOW_MINUTES - 2)) == "OK"
    run = evaluator.evaluate(stale, T0 + timedelta(minutes=WINDOW_MINUTES + 2))
    assert run.evaluation.state == "ALARM" and run.changed

    # And when labels come with a batch again, it returns to OK
    later = T0 + timedelta(minutes=90)
    again = churn_frame(50, seed=73, id_prefix="up-c")
    stack.put_actuals(labels_of(again))
    score(stack, "incoming/c.csv", again, later)
    run = evaluator.evaluate(stale, later + timedelta(minutes=1))
    assert run.evaluation.state == "OK" and run.changed
    assert total(stack, "LabelsJoined") == 120 + 50


def test_labels_that_come_after_their_batch_keep_the_alarm_ok_and_their_silence_fires_it(stack, alarms):
    evaluator, names = alarms
    stale = names["LabelsStaleAlarm"]
    # Given a batch scored at T0 with no labels yet: a joined count of 0 is no label
    frame = churn_frame(200, seed=74, id_prefix="late")
    score(stack, "incoming/late.csv", frame, T0)
    assert total(stack, "LabelsJoined") == 0
    assert state(evaluator, stale, T0 + timedelta(minutes=1)) == "ALARM"

    # When half its labels are written 10 minutes later
    labels = labels_of(frame)
    ids = list(labels)
    first = T0 + timedelta(minutes=10)
    result = write_labels(stack, {record_id: labels[record_id] for record_id in ids[:100]}, first)
    assert result["batches"][0]["newly_labeled"] == 100

    # Then the label join counts them as joined at their arrival, and the alarm is OK
    assert total(stack, "LabelsJoined") == 100
    run = evaluator.evaluate(stale, first + timedelta(minutes=1))
    assert run.evaluation.state == "OK" and run.changed

    # And when the next batch comes without labels and no more labels come for the window, it fires
    score(stack, "incoming/next.csv", churn_frame(50, seed=78, id_prefix="next"), T0 + timedelta(minutes=40))
    assert state(evaluator, stale, first + timedelta(minutes=WINDOW_MINUTES - 2)) == "OK"
    run = evaluator.evaluate(stale, first + timedelta(minutes=WINDOW_MINUTES + 2))
    assert run.evaluation.state == "ALARM" and run.changed

    # And the rest, two hours later, brings it back to OK
    second = T0 + timedelta(hours=2)
    write_labels(stack, {record_id: labels[record_id] for record_id in ids[100:]}, second)
    run = evaluator.evaluate(stale, second + timedelta(minutes=1))
    assert run.evaluation.state == "OK" and run.changed
    assert total(stack, "LabelsJoined") == 200
    # LabelsArrived, the dashboard's "labeled later", counts the same labels, and only those
    assert total(stack, "LabelsArrived") == 200

    # And when then nothing at all comes (no batch, no label), the newest datapoint stands in
    # for the empty periods as long as CloudWatch's range reaches it: three windows here
    assert state(evaluator, stale, second + timedelta(minutes=2 * WINDOW_MINUTES + 2)) == "OK"
    run = evaluator.evaluate(stale, second + timedelta(minutes=3 * WINDOW_MINUTES + 2))
    assert run.evaluation.state == "ALARM" and run.changed


def test_labels_whose_ids_match_no_prediction_fire_the_alarm_unlike_labels_before_their_batch(stack, alarms):
    evaluator, names = alarms
    stale = names["LabelsStaleAlarm"]
    # Given a healthy feed that writes labels before their batch is scored: the join finds no
    # logged prediction for them yet (LabelsWithoutPrediction), then the batch joins them
    early = churn_frame(60, seed=75, id_prefix="early")
    write_labels(stack, labels_of(early), T0 - timedelta(minutes=5))
    assert total(stack, "LabelsWithoutPrediction") == 60
    score(stack, "incoming/early.csv", early, T0)
    assert state(evaluator, stale, T0 + timedelta(minutes=1)) == "OK"

    # When the next batch's labels come with the ids in another format (upper case)
    frame = churn_frame(90, seed=76, id_prefix="next")
    later = T0 + timedelta(minutes=40)
    score(stack, "incoming/next.csv", frame, later)
    renamed = {record_id.upper(): label for record_id, label in labels_of(frame).items()}
    result = write_labels(stack, renamed, later + timedelta(minutes=5))

    # Then they join nothing, are counted as labels without a prediction, and once the last
    # joined label is a window old the alarm fires (labels are written: it is not the writer)
    assert result["logged"] == 0 and result["batches"] == []
    assert total(stack, "LabelsWithoutPrediction") == 60 + 90
    assert total(stack, "LabelsJoined") == 60
    assert state(evaluator, stale, later + timedelta(minutes=6)) == "OK"  # the early labels, 46 min ago
    assert state(evaluator, stale, T0 + timedelta(minutes=WINDOW_MINUTES + 2)) == "ALARM"


def test_a_label_written_directly_that_is_no_class_is_counted_and_alarms(stack, alarms):
    evaluator, names = alarms
    # Given a scored batch of the tests' 0/1 churn model
    frame = churn_frame(100, seed=77, id_prefix="direct")
    score(stack, "incoming/direct.csv", frame, T0)
    # When a writer (not the actuals loader, which counts them in files) puts its labels
    # straight into the table, 7 of them as text that is none of the classes, and 3 as 2
    labels: dict[str, Any] = labels_of(frame)
    ids = list(labels)
    for record_id in ids[:7]:
        labels[record_id] = "churned"
    for record_id in ids[7:10]:
        labels[record_id] = 2
    arrived = T0 + timedelta(minutes=10)
    result = write_labels(stack, labels, arrived)

    # Then the 90 known labels are joined, and the 10 unknown ones are not dropped unseen:
    # counted in UnknownLabels at their arrival, which fires UnknownLabelsAlarm
    assert result["batches"][0]["newly_labeled"] == 90
    assert stack.report("incoming/direct.csv")["labeled_rows"] == 90
    assert total(stack, "LabelsJoined") == 90
    assert total(stack, "UnknownLabels") == 10
    assert state(evaluator, names["UnknownLabelsAlarm"], arrived + timedelta(minutes=1)) == "ALARM"

    # And writing the same labels again (a retried job) joins nothing new, but the unknown
    # labels written again are counted again: each write of one is a label nobody can use
    write_labels(
        stack, {record_id: labels[record_id] for record_id in ids[:10]}, arrived + timedelta(minutes=1)
    )
    assert total(stack, "LabelsJoined") == 90
    assert total(stack, "UnknownLabels") == 20


def test_a_label_written_directly_before_its_batch_that_is_no_class_is_counted_at_upload(stack, alarms):
    evaluator, names = alarms
    # Given labels written straight into the table before their batch is scored, 4 of them
    # "yes" and 2 of them 3 (the churn model's classes are 0 and 1)
    frame = churn_frame(60, seed=80, id_prefix="before")
    labels: dict[str, Any] = labels_of(frame)
    ids = list(labels)
    for record_id in ids[:4]:
        labels[record_id] = "yes"
    for record_id in ids[4:6]:
        labels[record_id] = 3
    stack.put_actuals(labels)

    # When the batch is scored
    report = score(stack, "incoming/before.csv", frame, T0)

    # Then the 54 known labels are joined and the 6 unknown ones counted in UnknownLabels,
    # when the upload was announced, which fires UnknownLabelsAlarm
    assert report["labeled_rows"] == 54 and report["metrics_published"].count("UnknownLabels") == 1
    assert total(stack, "LabelsJoined") == 54
    assert total(stack, "UnknownLabels") == 6
    assert state(evaluator, names["UnknownLabelsAlarm"], T0 + timedelta(minutes=1)) == "ALARM"
    # and a batch whose labels are all known publishes no UnknownLabels
    clean = churn_frame(30, seed=81, id_prefix="clean")
    stack.put_actuals(labels_of(clean))
    report = score(stack, "incoming/clean.csv", clean, T0 + timedelta(minutes=5))
    assert "UnknownLabels" not in report["metrics_published"]
    assert total(stack, "UnknownLabels") == 6


def test_the_batch_monitor_stamps_the_labels_it_joins_with_the_s3_event_time(stack):
    # Given a batch whose labels are in the table, and the S3 event announcing its upload 10
    # minutes before the function runs (Lambda's retry of an event keeps the event's time)
    frame = churn_frame(40, seed=79, id_prefix="event")
    stack.put_actuals(labels_of(frame))
    stack.put("incoming/event.csv", frame.drop(columns=["churned"]).to_csv(index=False))
    announced = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    event = s3_event("incoming/event.csv")
    event["Records"][0]["eventTime"] = announced.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    # When the function handles the event
    load_handler("batch_monitor").lambda_handler(event, LambdaContext())

    # Then the 40 labels are joined at the announced time (S3's clock, as the label join uses
    # DynamoDB's), not at the function's: the minute starting at `announced` holds them
    points = stack.cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName="LabelsJoined",
        Dimensions=[{"Name": "ModelName", "Value": MODEL_NAME}],
        StartTime=announced,
        EndTime=announced + timedelta(hours=1),
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]
    assert [(point["Timestamp"], point["Sum"]) for point in points] == [(announced, 40.0)]

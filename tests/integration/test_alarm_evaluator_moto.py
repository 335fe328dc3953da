"""The alarm evaluator against in-process moto: metrics in, state in DescribeAlarms, SNS out.

An SQS queue subscribed to the alert topic (raw delivery off, as an email or Lambda
subscriber would see it) captures exactly what CloudWatch would have published.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from modelwatch.local.alarms import CloudWatchAlarmEvaluator

REGION = "us-east-1"
ALARM_NAME = "modelwatch-churn-quality"
PERIOD = timedelta(minutes=5)


@pytest.fixture
def aws(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield {
            "cloudwatch": boto3.client("cloudwatch", region_name=REGION),
            "sns": boto3.client("sns", region_name=REGION),
            "sqs": boto3.client("sqs", region_name=REGION),
        }


@pytest.fixture
def alert_topic(aws):
    """An SNS topic with an SQS subscriber; returns (topic ARN, queue URL)."""
    topic_arn = aws["sns"].create_topic(Name="modelwatch-alerts")["TopicArn"]
    queue_url = aws["sqs"].create_queue(QueueName="alert-capture")["QueueUrl"]
    queue_arn = aws["sqs"].get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    aws["sns"].subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return topic_arn, queue_url


def drain(sqs, queue_url) -> list[dict]:
    """Every SNS envelope waiting in the queue."""
    envelopes = []
    while True:
        response = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = response.get("Messages", [])
        if not messages:
            return envelopes
        for message in messages:
            envelopes.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def put_batch(cloudwatch, at: datetime, rows: int, errors: float) -> None:
    # Published as the product publishes per-row metrics: SampleCount rows, Sum of errors.
    cloudwatch.put_metric_data(
        Namespace="ModelWatch",
        MetricData=[
            {
                "MetricName": "ErrorRate",
                "Dimensions": [{"Name": "ModelName", "Value": "churn"}],
                "Timestamp": at,
                "StatisticValues": {"SampleCount": rows, "Sum": errors, "Minimum": 0.0, "Maximum": 1.0},
            }
        ],
    )


def reason_time(moment: datetime) -> str:
    return moment.strftime("%d/%m/%y %H:%M:%S")


def test_alarm_fires_then_recovers_with_cloudwatchs_notifications(aws, alert_topic):
    cloudwatch, sqs = aws["cloudwatch"], aws["sqs"]
    topic_arn, queue_url = alert_topic
    # Given a 2-out-of-3 alarm on 5-minute ErrorRate that keeps its state when batches stop
    cloudwatch.put_metric_alarm(
        AlarmName=ALARM_NAME,
        AlarmDescription="churn model error rate above 0.2",
        MetricName="ErrorRate",
        Namespace="ModelWatch",
        Statistic="Average",
        Dimensions=[{"Name": "ModelName", "Value": "churn"}],
        Period=300,
        EvaluationPeriods=3,
        DatapointsToAlarm=2,
        Threshold=0.2,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="ignore",
        AlarmActions=[topic_arn],
        OKActions=[topic_arn],
    )
    # and batches in consecutive periods, recent enough for CloudWatch (under two weeks old)
    now_real = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now_real - timedelta(minutes=now_real.minute % 5) - timedelta(hours=2)
    periods = [start + index * PERIOD for index in range(6)]
    # period 0: a 10-row batch at 50% and a 9,990-row batch at ~0.95% -> row-weighted 0.01
    # (the mean of the two batch rates would be ~0.25, over the threshold)
    put_batch(cloudwatch, periods[0] + timedelta(minutes=1), rows=10, errors=5)
    put_batch(cloudwatch, periods[0] + timedelta(minutes=3), rows=9_990, errors=95)
    put_batch(cloudwatch, periods[1] + timedelta(minutes=2), rows=100, errors=5)  # 0.05
    put_batch(cloudwatch, periods[2] + timedelta(minutes=2), rows=100, errors=31)  # 0.31
    put_batch(cloudwatch, periods[3] + timedelta(minutes=4), rows=200, errors=56)  # 0.28
    put_batch(cloudwatch, periods[4] + timedelta(seconds=10), rows=100, errors=10)  # 0.1
    put_batch(cloudwatch, periods[5] + timedelta(minutes=1), rows=100, errors=8)  # 0.08
    evaluator = CloudWatchAlarmEvaluator(cloudwatch, aws["sns"])

    def described() -> dict:
        return cloudwatch.describe_alarms(AlarmNames=[ALARM_NAME])["MetricAlarms"][0]

    # When evaluated before any batch: a new alarm is INSUFFICIENT_DATA (moto says OK) and
    # "ignore" keeps it there without notifying anyone
    run = evaluator.evaluate(ALARM_NAME, periods[0])
    assert (run.evaluation.state, run.changed, run.message) == ("INSUFFICIENT_DATA", False, None)
    assert described()["StateValue"] == "INSUFFICIENT_DATA"
    assert drain(sqs, queue_url) == []

    # After periods 0 and 1 (both good): INSUFFICIENT_DATA -> OK, notified to the OK topic
    first_look = periods[2] + timedelta(seconds=30)
    run = evaluator.evaluate(ALARM_NAME, first_look)
    assert (run.evaluation.previous_state, run.evaluation.state) == ("INSUFFICIENT_DATA", "OK")
    [envelope] = drain(sqs, queue_url)
    assert envelope["Subject"] == f'OK: "{ALARM_NAME}" in US East (N. Virginia)'
    assert json.loads(envelope["Message"])["NewStateReason"] == (
        f"Threshold Crossed: 2 out of the last 3 datapoints [0.05 ({reason_time(periods[1])}), "
        f"0.01 ({reason_time(periods[0])})] were not greater than the threshold (0.2) "
        "(minimum 2 datapoints for ALARM -> OK transition)."
    )

    # After period 3: two of the last three (0.31, 0.28) breach -> ALARM
    alarm_time = periods[4] + timedelta(seconds=30)
    run = evaluator.evaluate(ALARM_NAME, alarm_time)
    assert run.evaluation.state == "ALARM"
    assert run.published_to == (topic_arn,)
    assert run.evaluation.latest_value == pytest.approx(0.28)
    [envelope] = drain(sqs, queue_url)
    assert envelope["Type"] == "Notification"
    assert envelope["TopicArn"] == topic_arn
    assert envelope["Subject"] == f'ALARM: "{ALARM_NAME}" in US East (N. Virginia)'
    expected_alarm_reason = (
        f"Threshold Crossed: 2 out of the last 3 datapoints [0.28 ({reason_time(periods[3])}), "
        f"0.31 ({reason_time(periods[2])})] were greater than the threshold (0.2) "
        "(minimum 2 datapoints for OK -> ALARM transition)."
    )
    message = json.loads(envelope["Message"])
    assert message == {
        "AlarmName": ALARM_NAME,
        "AlarmDescription": "churn model error rate above 0.2",
        "AWSAccountId": "123456789012",
        "AlarmConfigurationUpdatedTimestamp": message["AlarmConfigurationUpdatedTimestamp"],
        "NewStateValue": "ALARM",
        "NewStateReason": expected_alarm_reason,
        "StateChangeTime": alarm_time.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        "Region": "US East (N. Virginia)",
        "AlarmArn": f"arn:aws:cloudwatch:{REGION}:123456789012:alarm:{ALARM_NAME}",
        "OldStateValue": "OK",
        "OKActions": [topic_arn],
        "AlarmActions": [topic_arn],
        "InsufficientDataActions": [],
        "Trigger": {
            "MetricName": "ErrorRate",
            "Namespace": "ModelWatch",
            "StatisticType": "Statistic",
            "Statistic": "AVERAGE",
            "Unit": None,
            "Dimensions": [{"value": "churn", "name": "ModelName"}],
            "Period": 300,
            "EvaluationPeriods": 3,
            "DatapointsToAlarm": 2,
            "ComparisonOperator": "GreaterThanThreshold",
            "Threshold": 0.2,
            "TreatMissingData": "ignore",
            "EvaluateLowSampleCountPercentile": "",
        },
    }
    assert message["AlarmConfigurationUpdatedTimestamp"].endswith("+0000")
    alarm = described()
    assert (alarm["StateValue"], alarm["StateReason"]) == ("ALARM", expected_alarm_reason)
    reason_data = json.loads(alarm["StateReasonData"])
    assert reason_data["recentDatapoints"] == pytest.approx([0.01, 0.05, 0.31, 0.28])

    # Evaluating again without new data changes nothing and sends nothing
    assert evaluator.evaluate(ALARM_NAME, alarm_time + timedelta(seconds=40)).changed is False
    assert drain(sqs, queue_url) == []

    # After period 5: only 0.28 of the last three breaches -> OK
    recovery_time = periods[5] + PERIOD + timedelta(seconds=30)
    [run] = evaluator.evaluate_all(recovery_time)
    assert (run.evaluation.previous_state, run.evaluation.state) == ("ALARM", "OK")
    [envelope] = drain(sqs, queue_url)
    assert envelope["Subject"] == f'OK: "{ALARM_NAME}" in US East (N. Virginia)'
    message = json.loads(envelope["Message"])
    assert (message["OldStateValue"], message["NewStateValue"]) == ("ALARM", "OK")
    assert message["NewStateReason"] == (
        f"Threshold Crossed: 2 out of the last 3 datapoints [0.08 ({reason_time(periods[5])}), "
        f"0.1 ({reason_time(periods[4])})] were not greater than the threshold (0.2) "
        "(minimum 2 datapoints for ALARM -> OK transition)."
    )
    assert described()["StateValue"] == "OK"

    # A quiet hour with no batches is not a recovery or a breach: "ignore" keeps OK
    quiet = evaluator.evaluate(ALARM_NAME, periods[5] + timedelta(hours=1))
    assert (quiet.evaluation.state, quiet.changed) == ("OK", False)
    assert drain(sqs, queue_url) == []


def test_quiet_period_keeps_an_alarm_firing_with_ignore(aws, alert_topic):
    cloudwatch = aws["cloudwatch"]
    topic_arn, queue_url = alert_topic
    cloudwatch.put_metric_alarm(
        AlarmName="drift",
        MetricName="DriftScore",
        Namespace="ModelWatch",
        Statistic="Maximum",
        Dimensions=[{"Name": "ModelName", "Value": "churn"}],
        Period=3600,
        EvaluationPeriods=1,
        Threshold=0.25,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="ignore",
        AlarmActions=[topic_arn],
        OKActions=[topic_arn],
    )
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    cloudwatch.put_metric_data(
        Namespace="ModelWatch",
        MetricData=[
            {
                "MetricName": "DriftScore",
                "Dimensions": [{"Name": "ModelName", "Value": "churn"}],
                "Timestamp": hour + timedelta(minutes=20),
                "Value": 0.25,
            }
        ],
    )
    evaluator = CloudWatchAlarmEvaluator(cloudwatch, aws["sns"])
    fired = evaluator.evaluate("drift", hour + timedelta(hours=1, minutes=1))
    assert fired.evaluation.state == "ALARM"
    # DatapointsToAlarm unset: CloudWatch words the reason without "out of the last"; the
    # sliding window's period started an hour before the evaluation minute, at hh:01
    assert fired.evaluation.reason == (
        f"Threshold Crossed: 1 datapoint [0.25 ({reason_time(hour + timedelta(minutes=1))})] was greater "
        "than or equal to the threshold (0.25)."
    )
    assert [e["Subject"] for e in drain(aws["sqs"], queue_url)] == ['ALARM: "drift" in US East (N. Virginia)']
    for hours_later in (2, 3, 4):
        still = evaluator.evaluate("drift", hour + timedelta(hours=hours_later, minutes=1))
        assert (still.evaluation.state, still.changed) == ("ALARM", False)
    assert drain(aws["sqs"], queue_url) == []


def test_daily_alarm_slides_with_the_evaluation_time_as_the_user_guide_warns(aws, alert_topic):
    # "Alarm evaluation window": with the default sliding window, "a daily backup alarm ...
    # can enter ALARM if consecutive backups are more than 24 hours apart, even though each
    # calendar day had a backup". An hourly alarm on the same metric is evaluated in the
    # same pass (one GetMetricData per Period).
    cloudwatch = aws["cloudwatch"]
    topic_arn, queue_url = alert_topic
    for name, period in (("daily-backup", 86_400), ("hourly-backup", 3_600)):
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            MetricName="BackupsCompleted",
            Namespace="Ops",
            Statistic="SampleCount",
            Dimensions=[{"Name": "Plan", "Value": "nightly"}],
            Period=period,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="LessThanThreshold",
            TreatMissingData="breaching",
            AlarmActions=[topic_arn],
            OKActions=[topic_arn],
        )
    day1 = (datetime.now(UTC) - timedelta(days=5)).replace(hour=0, minute=0, second=0, microsecond=0)
    day2 = day1 + timedelta(days=1)
    # one backup on each calendar day, 46 hours apart: day 1 at 01:00, day 2 at 23:00
    for at in (day1 + timedelta(hours=1), day2 + timedelta(hours=23)):
        cloudwatch.put_metric_data(
            Namespace="Ops",
            MetricData=[
                {
                    "MetricName": "BackupsCompleted",
                    "Dimensions": [{"Name": "Plan", "Value": "nightly"}],
                    "Timestamp": at,
                    "Value": 1,
                }
            ],
        )
    evaluator = CloudWatchAlarmEvaluator(cloudwatch, aws["sns"])

    def states(at: datetime) -> dict[str, str]:
        return {run.alarm.name: run.evaluation.state for run in evaluator.evaluate_all(at)}

    assert states(day1 + timedelta(hours=1, minutes=30)) == {"daily-backup": "OK", "hourly-backup": "OK"}
    # 22:00 on day 2: nothing since 22:00 on day 1, although day 1 had its backup
    assert states(day2 + timedelta(hours=22, seconds=20)) == {
        "daily-backup": "ALARM",
        "hourly-backup": "ALARM",
    }
    daily = evaluator.evaluate("daily-backup", day2 + timedelta(hours=22, seconds=20))
    [evaluated] = daily.evaluation.evaluated
    assert (evaluated.start, evaluated.value) == (day1 + timedelta(hours=22), None)
    # 23:30 on day 2: the 23:00 backup is inside both windows again
    assert states(day2 + timedelta(hours=23, minutes=30)) == {"daily-backup": "OK", "hourly-backup": "OK"}
    subjects = [envelope["Subject"].split(":")[0] for envelope in drain(aws["sqs"], queue_url)]
    assert subjects == ["OK", "OK", "ALARM", "ALARM", "OK", "OK"]


def test_an_alarm_the_evaluator_cannot_model_is_skipped_and_named_not_fatal(aws, alert_topic):
    cloudwatch = aws["cloudwatch"]
    common = {
        "Namespace": "ModelWatch",
        "MetricName": "ErrorRate",
        "Dimensions": [{"Name": "ModelName", "Value": "churn"}],
        "Period": 300,
        "EvaluationPeriods": 1,
        "Threshold": 0.2,
        "ComparisonOperator": "GreaterThanThreshold",
    }
    cloudwatch.put_metric_alarm(AlarmName="a-average", Statistic="Average", **common)
    cloudwatch.put_metric_alarm(AlarmName="b-p99", ExtendedStatistic="p99", **common)
    cloudwatch.put_metric_alarm(AlarmName="c-maximum", Statistic="Maximum", **common)
    evaluator = CloudWatchAlarmEvaluator(cloudwatch, aws["sns"])
    runs = evaluator.evaluate_all(datetime.now(UTC))
    assert [run.alarm.name for run in runs] == ["a-average", "c-maximum"]
    assert all(run.evaluation.state == "INSUFFICIENT_DATA" for run in runs)
    assert list(evaluator.unsupported) == ["b-p99"]
    assert "ExtendedStatistic" in evaluator.unsupported["b-p99"]

"""The alert-notifier handler against moto (Secrets Manager, CloudWatch, S3) and a real
HTTP server on 127.0.0.1 standing in for Slack's incoming webhook.

The server really answers 429, 500, 400 or nothing at all. Each test starts cold: a
fresh copy of app.py, whose notifier is built on the first event. Tests of retries build
the AlertNotifier themselves, with a sleep that records the wait instead of spending it.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from modelwatch.alerts import AlertNotifier
from modelwatch.alerts.alarm_message import MetricSpec
from modelwatch.alerts.context import fetch_recent_values
from modelwatch.aws import reset_clients
from modelwatch.config import AlertConfig
from modelwatch.errors import ConfigError, SlackDeliveryError
from tests.aws_calls import policy_grants, recorded_aws_calls, ungranted, unused
from tests.events import load_event
from tests.integration.conftest import load_handler
from tests.lambda_context import LambdaContext

REGION = "eu-west-1"
SECRET_NAME = "modelwatch/slack-webhook"
BUCKET = "modelwatch-prod-ingest"
DASHBOARD = "modelwatch-prod"
# The part of a webhook URL that authorises posting; it must never reach a log line.
WEBHOOK_TOKEN = "xQ9modelwatchWEBHOOKtoken7731"
WEBHOOK_PATH = f"/services/T0MODELWATCH/B0ALERTS/{WEBHOOK_TOKEN}"
TIMEOUT_SECONDS = 0.2
MAX_ATTEMPTS = 4


# --------------------------------------------------------------------------- Slack stand-in


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class SlackStandIn:
    """Records every request and answers with the scripted replies, then 200 "ok"."""

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self.replies: deque[Reply] = deque()
        self._release = threading.Event()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                stand_in.requests.append(ReceivedRequest("POST", self.path, dict(self.headers.items()), body))
                reply = stand_in.replies.popleft() if stand_in.replies else Reply()
                if reply.delay_seconds:
                    stand_in._release.wait(reply.delay_seconds)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the notifier stopped waiting, which is what a slow reply is for

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{WEBHOOK_PATH}"

    def answer(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------- the function


@dataclass
class Notifier:
    app: ModuleType  # a fresh copy of app.py: its notifier is built on the first event
    slack: SlackStandIn
    capsys: pytest.CaptureFixture[str]
    waits_seconds: list[float]
    # The test's own view of the moto account, created once: each boto3 client costs ~0.2 s.
    cloudwatch: Any
    s3: Any
    secretsmanager: Any

    def invoke(self, event: dict[str, Any], seconds_left: float = 30.0) -> Any:
        """The Lambda handler, as SNS invokes it."""
        return self.app.lambda_handler(
            event, LambdaContext.of("AlertNotifierFunction", region=REGION, seconds_left=seconds_left)
        )

    def notify_recording_waits(self, event: dict[str, Any], seconds_left: float = 30.0) -> bool:
        """The notifier the handler would build, with waits between attempts recorded, not spent."""
        # Short timeouts so the retry tests take a second, not the production 5 s per attempt.
        config = replace(
            AlertConfig.from_env(),
            slack_timeout_seconds=TIMEOUT_SECONDS,
            slack_max_attempts=MAX_ATTEMPTS,
            slack_backoff_base_seconds=0.5,
            slack_max_backoff_seconds=5,
        )
        notifier = AlertNotifier(
            config,
            cloudwatch_in=lambda region: self.cloudwatch,
            s3=self.s3,
            secrets=parameters.SecretsProvider(boto3_client=self.secretsmanager),
            sleep=self.waits_seconds.append,
        )
        context = LambdaContext.of("AlertNotifierFunction", region=REGION, seconds_left=seconds_left)
        return notifier.notify(
            event["Records"][0]["Sns"]["Message"],
            time_left_seconds=lambda: context.get_remaining_time_in_millis() / 1000,
        )

    def logs(self) -> tuple[str, list[dict[str, Any]]]:
        """Everything the function printed, and the Powertools JSON records in it."""
        captured = self.capsys.readouterr()
        raw = captured.out + captured.err
        records = []
        for line in captured.out.splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
        return raw, records


class CurrentStdout:
    """A stream that writes to sys.stdout as it is at the moment of writing (capsys swaps it)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    stand_in = SlackStandIn()
    stand_in.start()
    yield stand_in
    stand_in.close()


@pytest.fixture
def notifier(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], slack: SlackStandIn
) -> Iterator[Notifier]:
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "POWERTOOLS_SERVICE_NAME": "modelwatch",  # as template.yaml's Globals set it
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "SLACK_WEBHOOK_SECRET_NAME": SECRET_NAME,
        # The stand-in is plain http on 127.0.0.1, allowed the way the local cloud allows its receiver.
        "SLACK_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "SLACK_WEBHOOK_ALLOW_HTTP": "true",
        "DASHBOARD_NAME": DASHBOARD,
        "INGEST_BUCKET": BUCKET,
    }.items():
        monkeypatch.setenv(name, value)
    # moto in-process intercepts boto3; an endpoint override would send calls elsewhere.
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    # modelwatch.aws caches clients per process; those of an earlier test's moto account must go.
    reset_clients()

    with mock_aws():
        secretsmanager, s3 = boto3.client("secretsmanager"), boto3.client("s3")
        secretsmanager.create_secret(Name=SECRET_NAME, SecretString=slack.webhook_url)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        app = load_handler("alert_notifier")
        # Powertools keeps the handler of the first Logger with this service name, bound to
        # the stdout of that moment (an earlier capture, closed by now); make it write to
        # whatever stdout is current.
        log_handler = app.logger.registered_handler
        original_stream = log_handler.stream
        log_handler.stream = CurrentStdout()
        try:
            yield Notifier(app, slack, capsys, [], boto3.client("cloudwatch"), s3, secretsmanager)
        finally:
            log_handler.stream = original_stream
    reset_clients()


def publish_error_rate(cloudwatch: Any, model: str, hour: int, rows: int, errors: int) -> None:
    """One batch's ErrorRate as the batch monitor publishes it: errors summed over SampleCount rows."""
    cloudwatch.put_metric_data(
        Namespace="ModelWatch",
        MetricData=[
            {
                "MetricName": "ErrorRate",
                "Dimensions": [{"Name": "ModelName", "Value": model}],
                "Timestamp": datetime(2026, 11, 26, hour, 5, tzinfo=UTC),
                "StatisticValues": {"SampleCount": rows, "Sum": errors, "Minimum": 0, "Maximum": 1},
            }
        ],
    )


def put_report(s3: Any, key: str, *, latest: bool = False, event_time: str | None = None) -> None:
    """A batch report, and with ``latest`` the pointer the batch monitor writes next to it."""
    s3.put_object(Bucket=BUCKET, Key=key, Body=b'{"status": "ok"}')
    if latest:
        pointer = {"report": key} if event_time is None else {"report": key, "event_time": event_time}
        s3.put_object(Bucket=BUCKET, Key="results/latest.json", Body=json.dumps(pointer).encode())


def with_message(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    message = json.loads(event["Records"][0]["Sns"]["Message"])
    message.update(changes)
    event["Records"][0]["Sns"]["Message"] = json.dumps(message)
    return event


# --------------------------------------------------------------------------- delivery of the message


def test_alarm_posts_the_exact_message_with_recent_values_and_links(notifier: Notifier) -> None:
    # Given: six hours of ErrorRate for the model (one hour without batches, one hour with
    # two batches of different sizes), another model's much worse numbers, and two reports
    # of which the newer one (named by results/latest.json) sorts first by name.
    publish_error_rate(notifier.cloudwatch, "churn-classifier", 6, rows=100, errors=11)
    publish_error_rate(notifier.cloudwatch, "churn-classifier", 7, rows=100, errors=12)
    publish_error_rate(notifier.cloudwatch, "churn-classifier", 9, rows=500, errors=127)
    publish_error_rate(notifier.cloudwatch, "churn-classifier", 10, rows=100, errors=40)
    publish_error_rate(
        notifier.cloudwatch, "churn-classifier", 10, rows=400, errors=116
    )  # with the above: 156 / 500 = 0.312
    publish_error_rate(notifier.cloudwatch, "fraud-detector", 10, rows=100, errors=90)
    put_report(notifier.s3, "results/incoming/2026/11/26/zz-early.csv/report.json", latest=True)
    put_report(notifier.s3, "results/incoming/2026/11/26/aa-late.csv/report.json", latest=True)

    # When
    result = notifier.invoke(load_event("alert-notifier-alarm"))

    # Then
    assert result == {"posted": 1, "skipped": 0}
    assert len(notifier.slack.requests) == 1
    request = notifier.slack.requests[0]
    assert request.path == WEBHOOK_PATH
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    console = "https://eu-west-1.console.aws.amazon.com"
    assert request.json() == {
        "text": (
            "🔴 ALARM: ErrorRate 0.312 &gt; threshold 0.2 on model churn-classifier "
            "(modelwatch-prod-quality-churn-classifier)"
        ),
        "attachments": [
            {
                "color": "#E01E5A",
                "blocks": [
                    {
                        "type": "header",
                        "text": {
                            "type": "plain_text",
                            "text": "🔴 ALARM: modelwatch-prod-quality-churn-classifier",
                            "emoji": True,
                        },
                    },
                    {
                        "type": "section",
                        "fields": [
                            {"type": "mrkdwn", "text": "*Model*\nchurn-classifier"},
                            {"type": "mrkdwn", "text": "*State*\nOK → ALARM"},
                            {"type": "mrkdwn", "text": "*Value*\nErrorRate 0.312 &gt; threshold 0.2"},
                            {
                                "type": "mrkdwn",
                                "text": "*Alarm when*\nErrorRate &gt; 0.2, Average per 1 h, 2 of 3 periods",
                            },
                            {
                                "type": "mrkdwn",
                                "text": "*Time*\n<!date^1795688142^{date_short_pretty} {time_secs}"
                                "|2026-11-26 10:15:42 UTC>",
                            },
                        ],
                    },
                    {
                        "type": "section",
                        "text": {
                            "type": "mrkdwn",
                            "text": "*Reason*\nThreshold Crossed: 2 out of the last 3 datapoints [0.312 "
                            "(26/11/26 09:15:00), 0.254 (26/11/26 08:15:00)] were greater than the threshold "
                            "(0.2) (minimum 2 datapoints for OK -&gt; ALARM transition).",
                        },
                    },
                    {
                        "type": "section",
                        "text": {
                            "type": "mrkdwn",
                            "text": "*Last 6 periods of 1 h* (oldest → newest)\n"
                            "`·▁▁·▆█`  – · 0.11 · 0.12 · – · 0.254 · 0.312",
                        },
                    },
                    {
                        "type": "section",
                        "text": {
                            "type": "mrkdwn",
                            "text": (
                                f"<{console}/cloudwatch/home?region=eu-west-1#alarmsV2:alarm/"
                                "modelwatch-prod-quality-churn-classifier|Alarm in CloudWatch> · "
                                f"<{console}/cloudwatch/home?region=eu-west-1#dashboards/dashboard/"
                                "modelwatch-prod|Dashboard> · "
                                f"<{console}/s3/object/modelwatch-prod-ingest?region=eu-west-1&prefix="
                                "results/incoming/2026/11/26/aa-late.csv/report.html|Latest batch report>"
                            ),
                        },
                    },
                    {
                        "type": "context",
                        "elements": [
                            {
                                "type": "mrkdwn",
                                "text": "ErrorRate of churn-classifier above its threshold "
                                "(QualityMetric/QualityThreshold parameters)",
                            }
                        ],
                    },
                ],
            }
        ],
    }
    raw_logs, _ = notifier.logs()
    assert WEBHOOK_TOKEN not in raw_logs


def test_ok_posts_green_with_the_value_back_under_the_threshold(notifier: Notifier) -> None:
    # Given: the secret in its JSON form, and the hours up to the recovery at 14:15
    notifier.secretsmanager.put_secret_value(
        SecretId=SECRET_NAME, SecretString=json.dumps({"webhook_url": notifier.slack.webhook_url})
    )
    for hour, errors in [(9, 127), (10, 156), (12, 67), (13, 60), (14, 59)]:
        publish_error_rate(notifier.cloudwatch, "churn-classifier", hour, rows=500, errors=errors)

    result = notifier.invoke(load_event("alert-notifier-ok"))

    assert result == {"posted": 1, "skipped": 0}
    [request] = notifier.slack.requests
    payload = request.json()
    assert payload["text"] == (
        "✅ OK: ErrorRate 0.118 ≤ threshold 0.2 on model churn-classifier "
        "(modelwatch-prod-quality-churn-classifier)"
    )
    attachment = payload["attachments"][0]
    assert attachment["color"] == "#2EB67D"
    assert attachment["blocks"][0]["text"]["text"] == "✅ OK: modelwatch-prod-quality-churn-classifier"
    assert attachment["blocks"][1]["fields"][1]["text"] == "*State*\nALARM → OK"
    assert attachment["blocks"][3]["text"]["text"] == (
        "*Last 6 periods of 1 h* (oldest → newest)\n`▆█·▂▁▁`  0.254 · 0.312 · – · 0.134 · 0.12 · 0.118"
    )
    # No report has been written yet: the link goes to where reports will appear.
    assert attachment["blocks"][4]["text"]["text"].endswith(
        "/s3/buckets/modelwatch-prod-ingest?region=eu-west-1&prefix=results/&showversions=false"
        "|Batch reports>"
    )
    raw_logs, _ = notifier.logs()
    assert WEBHOOK_TOKEN not in raw_logs


def alarm_moved_at_nine(notifier: Notifier) -> dict[str, Any]:
    """QualityAlarm moved to ALARM on the 09:00-10:00 datapoint (0.298); the notification."""
    cloudwatch = notifier.cloudwatch
    alarm_name = "modelwatch-prod-quality-churn-classifier"
    cloudwatch.put_metric_alarm(
        AlarmName=alarm_name,
        Namespace="ModelWatch",
        MetricName="ErrorRate",
        Statistic="Average",
        Dimensions=[{"Name": "ModelName", "Value": "churn-classifier"}],
        Period=3600,
        EvaluationPeriods=3,
        DatapointsToAlarm=2,
        Threshold=0.2,
        ComparisonOperator="GreaterThanThreshold",
    )
    reason_data = {
        "version": "1.0",
        "evaluatedDatapoints": [
            {"timestamp": "2026-11-26T09:00:00.000+0000", "sampleCount": 500.0, "value": 0.298},
            {"timestamp": "2026-11-26T08:00:00.000+0000", "sampleCount": 500.0, "value": 0.254},
        ],
    }
    cloudwatch.set_alarm_state(
        AlarmName=alarm_name,
        StateValue="ALARM",
        StateReason="Threshold Crossed",
        StateReasonData=json.dumps(reason_data),
    )
    changed_at = cloudwatch.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"][0][
        "StateUpdatedTimestamp"
    ]
    # CloudWatch's notification carries the time of that same state change.
    return with_message(
        load_event("alert-notifier-alarm"),
        StateChangeTime=changed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000",
    )


def test_value_shown_is_the_datapoint_the_alarm_evaluated(notifier: Notifier) -> None:
    # Given: CloudWatch moved the alarm to ALARM on a datapoint of 0.298, while the newest
    # period in the metric (a later batch) already reads 0.312.
    event = alarm_moved_at_nine(notifier)
    publish_error_rate(notifier.cloudwatch, "churn-classifier", 10, rows=500, errors=156)

    notifier.invoke(event)

    [request] = notifier.slack.requests
    assert request.json()["attachments"][0]["blocks"][1]["fields"][2]["text"] == (
        "*Value*\nErrorRate 0.298 &gt; threshold 0.2"
    )


def test_alert_notifier_is_granted_exactly_the_aws_actions_it_uses(notifier: Notifier) -> None:
    # Context is best effort in the notifier: a missing permission would not fail an
    # invocation, it would silently drop the trend or the report link from every alert.
    # Given: the metric's recent values and the latest report pointer, as for a full alert
    publish_error_rate(notifier.cloudwatch, "churn-classifier", 9, rows=500, errors=127)
    put_report(notifier.s3, "results/incoming/2026/11/26/batch.csv/report.json", latest=True)

    # When the notifier posts an alarm, with every AWS request it makes recorded
    with recorded_aws_calls() as calls:
        result = notifier.invoke(load_event("alert-notifier-alarm"))

    # Then each request is allowed by the function's policy in template.yaml, and each
    # statement of that policy allowed one of them
    assert result == {"posted": 1, "skipped": 0}
    names = {"IngestBucket": BUCKET, "SlackWebhookSecretName": SECRET_NAME}
    grants = policy_grants("AlertNotifierFunction", names, REGION)
    assert ungranted(calls, grants, REGION) == []
    assert unused(calls, grants, REGION) == []


@pytest.mark.parametrize(
    ("event_time", "label"),
    [
        ("2026-11-26T09:30:00+00:00", "Report of the batch that moved the alarm"),
        ("2026-11-26T10:05:00+00:00", "Latest batch report"),  # a later batch, in a period not judged
        (None, "Latest batch report"),  # a pointer from before event times were recorded
    ],
)
def test_the_report_link_names_the_batch_that_moved_the_alarm_only_when_it_did(
    notifier: Notifier, event_time: str | None, label: str
) -> None:
    # Given the newest report's batch, stamped inside or after the period that moved the alarm
    event = alarm_moved_at_nine(notifier)
    put_report(notifier.s3, "results/incoming/b.parquet/report.json", latest=True, event_time=event_time)

    notifier.invoke(event)

    [request] = notifier.slack.requests
    links = request.json()["attachments"][0]["blocks"][-2]["text"]["text"]
    assert f"prefix=results/incoming/b.parquet/report.html|{label}>" in links


@pytest.mark.parametrize(
    ("event_time", "label"),
    [
        ("2026-11-26T10:05:00+00:00", "Report of the batch that moved the alarm"),
        ("2026-11-26T09:05:00+00:00", "Latest batch report"),  # an older period's batch
    ],
)
def test_without_the_alarms_own_datapoint_the_newest_period_of_its_window_decides(
    notifier: Notifier, event_time: str, label: str
) -> None:
    # Given no StateReasonData to read (the alarm is not described), and a batch at 10:05 in
    # the newest period of the window the alarm judged at 10:15:42 ([09:15, 10:15))
    publish_error_rate(notifier.cloudwatch, "churn-classifier", 10, rows=500, errors=156)
    put_report(notifier.s3, "results/incoming/c.csv/report.json", latest=True, event_time=event_time)

    notifier.invoke(load_event("alert-notifier-alarm"))

    [request] = notifier.slack.requests
    links = request.json()["attachments"][0]["blocks"][-2]["text"]["text"]
    assert f"prefix=results/incoming/c.csv/report.html|{label}>" in links


def test_insufficient_data_to_ok_posts_nothing_and_says_why(notifier: Notifier) -> None:
    result = notifier.invoke(load_event("alert-notifier-insufficient-to-ok"))

    assert result == {"posted": 0, "skipped": 1}
    assert notifier.slack.requests == []
    raw_logs, records = notifier.logs()
    assert any(
        "Not posting INSUFFICIENT_DATA -> OK" in record["message"] and "not a recovery" in record["message"]
        for record in records
    )
    assert WEBHOOK_TOKEN not in raw_logs


def test_a_retraining_announcement_reaches_slack_as_its_text_and_other_text_is_dropped(
    notifier: Notifier,
) -> None:
    # Given the announcement retraining publishes on the alert topic (plain text, as email gets it)
    from modelwatch.alerts.announcement import retrain_announcement

    decision = {
        "decision": "refused",
        "status": "refused",
        "reason": "only 600 labeled rows in the last 14 days (2 batches), below RetrainMinLabeledRows (1000)",
        "model_name": "churn-classifier",
        "champion_version": "20261126T101500Z",
        "challenger_version": None,
        "trigger": {"kind": "on demand"},
        "quality_metric": "ErrorRate",
        "window": {"labeled_rows": 600, "batches": 2, "days": 14},
        "record_uri": "s3://bucket/models/decisions/x-refused.json",
    }
    text = retrain_announcement(decision)
    event = load_event("alert-notifier-alarm")
    event["Records"][0]["Sns"]["Message"] = text

    # When the notifier receives it, and then a text that is neither alarm nor announcement
    posted = notifier.invoke(event)
    event["Records"][0]["Sns"]["Message"] = "hello from someone's test publish"
    dropped = notifier.invoke(event)

    # Then the announcement is posted, headline first, every line of the text in the message
    assert posted == {"posted": 1, "skipped": 0} and dropped == {"posted": 0, "skipped": 1}
    (request,) = notifier.slack.requests
    payload = request.json()
    assert payload["text"] == "[modelwatch] Retraining churn-classifier: refused, 20261126T101500Z stays"
    body = payload["blocks"][1]["text"]["text"]
    assert "below RetrainMinLabeledRows (1000)" in body
    assert "Labeled window: 600 labeled rows in 2 batches, last 14 days" in body


# --------------------------------------------------------------------------- reliability


def test_429_is_retried_after_the_wait_slack_asked_for(notifier: Notifier) -> None:
    notifier.slack.answer(Reply(429, b"rate_limited", {"Retry-After": "1"}))

    posted = notifier.notify_recording_waits(load_event("alert-notifier-alarm"))

    assert posted is True
    assert len(notifier.slack.requests) == 2
    assert notifier.slack.requests[0].body == notifier.slack.requests[1].body
    assert notifier.waits_seconds == [1.0]
    raw_logs, records = notifier.logs()
    assert any(record["level"] == "WARNING" and "HTTP 429" in record["message"] for record in records)
    assert WEBHOOK_TOKEN not in raw_logs


def test_500_is_retried_with_backoff(notifier: Notifier) -> None:
    notifier.slack.answer(Reply(500, b"internal_error"))

    posted = notifier.notify_recording_waits(load_event("alert-notifier-alarm"))

    assert posted is True
    assert len(notifier.slack.requests) == 2
    # First backoff: SLACK_BACKOFF_BASE_SECONDS (0.5) with jitter down to half of it.
    [wait] = notifier.waits_seconds
    assert 0.25 <= wait <= 0.5
    raw_logs, _ = notifier.logs()
    assert WEBHOOK_TOKEN not in raw_logs


def test_400_is_not_retried_and_the_log_names_the_status_and_slacks_answer(notifier: Notifier) -> None:
    notifier.slack.answer(Reply(400, b"invalid_blocks"))

    with pytest.raises(SlackDeliveryError) as raised:
        notifier.invoke(load_event("alert-notifier-alarm"))

    assert len(notifier.slack.requests) == 1
    assert raised.value.status == 400
    raw_logs, records = notifier.logs()
    errors = [record["message"] for record in records if record["level"] == "ERROR"]
    assert any("HTTP 400" in message and "invalid_blocks" in message for message in errors)
    assert WEBHOOK_TOKEN not in raw_logs
    assert WEBHOOK_TOKEN not in str(raised.value)


def test_a_webhook_that_never_answers_times_out_is_retried_and_finally_raises(notifier: Notifier) -> None:
    notifier.slack.answer(*[Reply(200, delay_seconds=5 * TIMEOUT_SECONDS)] * MAX_ATTEMPTS)

    started = time.monotonic()
    with pytest.raises(SlackDeliveryError) as raised:
        notifier.notify_recording_waits(load_event("alert-notifier-alarm"))
    elapsed = time.monotonic() - started

    assert len(notifier.slack.requests) == MAX_ATTEMPTS
    assert len(notifier.waits_seconds) == MAX_ATTEMPTS - 1
    # Each attempt gave up after the timeout instead of waiting for the slow answer.
    assert elapsed < MAX_ATTEMPTS * 5 * TIMEOUT_SECONDS
    assert f"no answer within {TIMEOUT_SECONDS:g} s" in str(raised.value)
    raw_logs, _ = notifier.logs()
    assert WEBHOOK_TOKEN not in raw_logs
    assert WEBHOOK_TOKEN not in str(raised.value)


def test_slack_failing_on_every_attempt_raises_so_lambda_retries_and_dead_letters(notifier: Notifier) -> None:
    notifier.slack.answer(*[Reply(503, b"service_unavailable")] * MAX_ATTEMPTS)

    with pytest.raises(SlackDeliveryError) as raised:
        notifier.notify_recording_waits(load_event("alert-notifier-alarm"))

    assert len(notifier.slack.requests) == MAX_ATTEMPTS
    assert raised.value.attempts == MAX_ATTEMPTS
    assert len(notifier.waits_seconds) == MAX_ATTEMPTS - 1
    raw_logs, records = notifier.logs()
    assert any(
        record["level"] == "ERROR" and "Alert not delivered" in record["message"] for record in records
    )
    assert WEBHOOK_TOKEN not in raw_logs
    assert WEBHOOK_TOKEN not in str(raised.value)


def test_no_retry_is_started_that_the_lambda_timeout_would_cut_off(notifier: Notifier) -> None:
    notifier.slack.answer(Reply(500, b"internal_error"))

    # Through the handler: the remaining time is the Lambda context's, and nothing is slept.
    with pytest.raises(SlackDeliveryError, match="no time left"):
        notifier.invoke(load_event("alert-notifier-alarm"), seconds_left=1.5)

    assert len(notifier.slack.requests) == 1


# --------------------------------------------------------------------------- where the webhook may point


@pytest.mark.parametrize(
    ("settings", "host", "why"),
    [
        # The production defaults: https on hooks.slack.com only.
        ({}, "127.0.0.1", "uses http"),
        ({"SLACK_WEBHOOK_ALLOW_HTTP": "true"}, "127.0.0.1", "not an allowed webhook host"),
    ],
)
def test_a_webhook_secret_pointing_off_the_allowlist_is_refused_before_any_post(
    notifier: Notifier, monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], host: str, why: str
) -> None:
    # Given: the deployed defaults (the fixture allows the stand-in as the local cloud would)
    monkeypatch.delenv("SLACK_WEBHOOK_ALLOWED_HOSTS")
    monkeypatch.delenv("SLACK_WEBHOOK_ALLOW_HTTP")
    for name, value in settings.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ConfigError) as raised:
        notifier.invoke(load_event("alert-notifier-alarm"))

    assert notifier.slack.requests == []
    assert f"'{host}'" in str(raised.value) and why in str(raised.value)
    raw_logs, _ = notifier.logs()
    assert WEBHOOK_TOKEN not in raw_logs and WEBHOOK_TOKEN not in str(raised.value)


def test_a_warm_instance_reads_its_settings_once_and_a_cold_start_reads_them_again(
    notifier: Notifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    notifier.invoke(load_event("alert-notifier-alarm"))
    # A change to the environment after the first event is not seen by the warm instance...
    monkeypatch.setenv("SLACK_WEBHOOK_ALLOWED_HOSTS", "hooks.slack.com")
    notifier.invoke(load_event("alert-notifier-alarm"))
    assert len(notifier.slack.requests) == 2

    # ...but a new instance (a fresh import of app.py) is built from it.
    notifier.app = load_handler("alert_notifier")
    with pytest.raises(ConfigError, match="'127.0.0.1', which is not an allowed"):
        notifier.invoke(load_event("alert-notifier-alarm"))
    assert len(notifier.slack.requests) == 2


def test_recent_periods_are_the_alarms_sliding_periods_ending_at_the_evaluation_minute(monkeypatch) -> None:
    # An hourly alarm that changed state at 10:07:40 judged 09:07-10:07 last (CloudWatch's
    # default sliding window); a batch at 09:05 belongs to the period before it.
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    metric = MetricSpec("ModelWatch", "DriftScore", (("ModelName", "churn"),), "Maximum", 3600, None)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name="eu-west-1")
        for minute, value in ((5, 0.1), (10, 0.3)):
            cloudwatch.put_metric_data(
                Namespace="ModelWatch",
                MetricData=[
                    {
                        "MetricName": "DriftScore",
                        "Dimensions": [{"Name": "ModelName", "Value": "churn"}],
                        "Timestamp": day + timedelta(hours=9, minutes=minute),
                        "Value": value,
                    }
                ],
            )
        recent = fetch_recent_values(
            cloudwatch, metric, until=day + timedelta(hours=10, minutes=7, seconds=40), periods=3
        )
    assert recent.values == (None, 0.1, 0.3)

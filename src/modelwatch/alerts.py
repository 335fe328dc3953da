"""Alert notifier: a CloudWatch alarm notification from SNS, posted to Slack.

Three parts, in this order:

- reading the alarm message and deciding whether it is worth a post (pure);
- building the Slack message from the alarm and its context (pure, so the wording is
  tested without a network);
- gathering that context from AWS (the metric's recent values, the datapoint the alarm
  evaluated, the newest batch report) and delivering the message to the webhook.

Context is best effort: an alert without its trend line still tells the on-call person
that the model is failing, so a CloudWatch or S3 error is logged and the piece left out.
Delivery is not best effort: it retries what can succeed on retry and then raises, so
Lambda's asynchronous retries and the on-failure destination keep the alert.

The webhook URL is a credential (anyone holding it can post to the channel), so it never
goes into a log line, an exception message or a trace; only its host is named.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities import parameters
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from modelwatch.config import LATEST_REPORT_POINTER, float_setting, int_setting
from modelwatch.errors import ConfigError, NotAnAlarmError, SlackDeliveryError

logger = logging.getLogger(__name__)

ALARM = "ALARM"
OK = "OK"
INSUFFICIENT_DATA = "INSUFFICIENT_DATA"

MODEL_DIMENSION = "ModelName"
# Slack's documented limits: header text 150 characters, section text 3,000, field text 2,000.
HEADER_MAX_CHARS = 150
SECTION_MAX_CHARS = 3000
FIELD_MAX_CHARS = 2000
# How much of Slack's error body goes into a log line: enough for "invalid_token" or
# "channel_is_archived", not enough to flood the log with an HTML error page.
RESPONSE_EXCERPT_CHARS = 300
# Keep this much of the Lambda's remaining time free when deciding whether another
# attempt fits, so the function raises cleanly instead of being killed mid-request.
LAMBDA_SAFETY_MARGIN_SECONDS = 1.0


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class AlertConfig:
    """Settings of the alert-notifier function."""

    slack_webhook_secret_name: str
    secret_max_age_seconds: int
    slack_timeout_seconds: float
    slack_max_attempts: int
    slack_backoff_base_seconds: float
    slack_max_backoff_seconds: float
    recent_periods: int
    dashboard_name: str
    ingest_bucket: str
    results_prefix: str
    report_search_max_keys: int
    aws_connect_timeout_seconds: float
    aws_read_timeout_seconds: float

    @classmethod
    def from_env(cls) -> AlertConfig:
        secret_name = os.environ.get("SLACK_WEBHOOK_SECRET_NAME", "")
        if not secret_name:
            raise ConfigError(
                "SLACK_WEBHOOK_SECRET_NAME is not set: it names the Secrets Manager secret of the webhook"
            )
        recent_periods = int_setting("RECENT_PERIODS", 6, minimum=1)
        if recent_periods > 100:
            # A sparkline longer than this wraps in Slack and stops reading as a trend.
            raise ConfigError(f"RECENT_PERIODS must be <= 100, got {recent_periods}")
        prefix = os.environ.get("RESULTS_PREFIX", "results/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(
            slack_webhook_secret_name=secret_name,
            secret_max_age_seconds=int_setting("SLACK_SECRET_MAX_AGE_SECONDS", 300),
            slack_timeout_seconds=float_setting("SLACK_TIMEOUT_SECONDS", 5.0, minimum=0.01),
            slack_max_attempts=int_setting("SLACK_MAX_ATTEMPTS", 4, minimum=1),
            slack_backoff_base_seconds=float_setting("SLACK_BACKOFF_BASE_SECONDS", 1.0),
            slack_max_backoff_seconds=float_setting("SLACK_MAX_BACKOFF_SECONDS", 20.0),
            recent_periods=recent_periods,
            dashboard_name=os.environ.get("DASHBOARD_NAME", ""),
            ingest_bucket=os.environ.get("INGEST_BUCKET", ""),
            results_prefix=prefix,
            report_search_max_keys=int_setting("REPORT_SEARCH_MAX_KEYS", 5000, minimum=1),
            aws_connect_timeout_seconds=float_setting("AWS_CONNECT_TIMEOUT_SECONDS", 2.0, minimum=0.01),
            aws_read_timeout_seconds=float_setting("AWS_READ_TIMEOUT_SECONDS", 5.0, minimum=0.01),
        )


# --------------------------------------------------------------------------- the alarm message

# The SNS message spells statistics the console way ("AVERAGE", "SAMPLE_COUNT");
# GetMetricData only accepts the API names.
_STATISTIC_API_NAMES = {
    "AVERAGE": "Average",
    "SUM": "Sum",
    "MINIMUM": "Minimum",
    "MAXIMUM": "Maximum",
    "SAMPLE_COUNT": "SampleCount",
    "SAMPLECOUNT": "SampleCount",
}


@dataclass(frozen=True)
class MetricSpec:
    """The single metric an alarm watches, as GetMetricData needs it."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    statistic: str  # GetMetricData's Stat: "Average", "Sum", "p90", ...
    period_seconds: int
    unit: str | None

    def dimension(self, name: str) -> str | None:
        return next((value for key, value in self.dimensions if key == name), None)


@dataclass(frozen=True)
class AlarmNotification:
    """What CloudWatch publishes to SNS when an alarm changes state."""

    name: str
    description: str
    arn: str
    partition: str
    region: str
    account_id: str
    new_state: str
    old_state: str
    reason: str
    state_change_time: datetime
    metric: MetricSpec | None  # None for metric-math and composite alarms
    comparison: str | None
    threshold: float | None  # None for anomaly-detection bands
    evaluation_periods: int | None
    datapoints_to_alarm: int | None

    @property
    def model_name(self) -> str | None:
        return self.metric.dimension(MODEL_DIMENSION) if self.metric else None

    @classmethod
    def from_sns_message(cls, message: str, fallback_region: str | None = None) -> AlarmNotification:
        """Parse the SNS Message string; the region comes from AlarmArn (the Region field is a long name)."""
        try:
            data = json.loads(message)
        except (TypeError, json.JSONDecodeError):
            raise NotAnAlarmError("the SNS message is not JSON") from None
        if not isinstance(data, dict) or "AlarmName" not in data or "NewStateValue" not in data:
            raise NotAnAlarmError("the SNS message has no AlarmName/NewStateValue")

        arn = str(data.get("AlarmArn") or "")
        arn_parts = arn.split(":")
        partition = arn_parts[1] if len(arn_parts) > 3 and arn_parts[1] else "aws"
        region = arn_parts[3] if len(arn_parts) > 3 and arn_parts[3] else (fallback_region or "")
        if not region:
            raise NotAnAlarmError("the alarm message has no AlarmArn to take the region from")

        trigger = data.get("Trigger") or {}
        return cls(
            name=str(data["AlarmName"]),
            description=str(data.get("AlarmDescription") or ""),
            arn=arn,
            partition=partition,
            region=region,
            account_id=str(data.get("AWSAccountId") or ""),
            new_state=str(data["NewStateValue"]),
            old_state=str(data.get("OldStateValue") or ""),
            reason=str(data.get("NewStateReason") or ""),
            state_change_time=parse_alarm_time(str(data.get("StateChangeTime") or "")),
            metric=_metric_from_trigger(trigger),
            comparison=trigger.get("ComparisonOperator"),
            threshold=_optional_float(trigger.get("Threshold")),
            evaluation_periods=_optional_int(trigger.get("EvaluationPeriods")),
            datapoints_to_alarm=_optional_int(trigger.get("DatapointsToAlarm")),
        )


def parse_alarm_time(text: str) -> datetime:
    """CloudWatch writes "2026-11-26T10:15:00.123+0000"; an unreadable time means "now"."""
    for pattern in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(text, pattern).astimezone(UTC)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return datetime.now(UTC)
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _metric_from_trigger(trigger: dict[str, Any]) -> MetricSpec | None:
    if not trigger.get("MetricName") or not trigger.get("Namespace") or not trigger.get("Period"):
        return None
    statistic = trigger.get("ExtendedStatistic") or trigger.get("Statistic") or "Average"
    statistic = _STATISTIC_API_NAMES.get(str(statistic).upper(), str(statistic))
    dimensions = tuple(
        (str(d.get("name", d.get("Name"))), str(d.get("value", d.get("Value"))))
        for d in trigger.get("Dimensions") or []
    )
    unit = trigger.get("Unit")
    return MetricSpec(
        namespace=str(trigger["Namespace"]),
        name=str(trigger["MetricName"]),
        dimensions=dimensions,
        statistic=statistic,
        period_seconds=int(trigger["Period"]),
        unit=None if unit in (None, "", "None") else str(unit),
    )


def _optional_float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _optional_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def should_post(alarm: AlarmNotification) -> tuple[bool, str]:
    """Whether the transition deserves a Slack post, and why not when it does not."""
    if alarm.old_state == INSUFFICIENT_DATA and alarm.new_state == OK:
        # The alarm got its first data (a new deployment) or data after a gap: nothing was
        # breached, so an "OK" post would announce the end of an incident that never began.
        return False, "INSUFFICIENT_DATA -> OK is not a recovery from a breach"
    return True, ""


# --------------------------------------------------------------------------- formatting

_COMPARISON_SYMBOLS = {
    # operator: (symbol when the condition holds, symbol when it does not)
    "GreaterThanThreshold": (">", "≤"),
    "GreaterThanOrEqualToThreshold": ("≥", "<"),
    "LessThanThreshold": ("<", "≥"),
    "LessThanOrEqualToThreshold": ("≤", ">"),
}
_BARS = "▁▂▃▄▅▆▇█"
_MISSING = "·"


def readable_number(value: float) -> str:
    """0.312 -> "0.312", 1234.0 -> "1,234": what a person reads aloud, not 0.31200000000000006."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def breaches(value: float, comparison: str, threshold: float) -> bool:
    return {
        "GreaterThanThreshold": value > threshold,
        "GreaterThanOrEqualToThreshold": value >= threshold,
        "LessThanThreshold": value < threshold,
        "LessThanOrEqualToThreshold": value <= threshold,
    }.get(comparison, False)


def value_against_threshold(alarm: AlarmNotification, value: float | None) -> str:
    """ "ErrorRate 0.312 > threshold 0.2": the symbol states the relation the numbers really have."""
    metric = alarm.metric.name if alarm.metric else "Value"
    unit = f" {alarm.metric.unit}" if alarm.metric and alarm.metric.unit else ""
    if value is None:
        return f"{metric}: no recent value"
    shown = f"{metric} {readable_number(value)}{unit}"
    if alarm.threshold is None or alarm.comparison not in _COMPARISON_SYMBOLS:
        return shown
    holds, fails = _COMPARISON_SYMBOLS[alarm.comparison]
    symbol = holds if breaches(value, alarm.comparison, alarm.threshold) else fails
    return f"{shown} {symbol} threshold {readable_number(alarm.threshold)}{unit}"


def alarm_condition(alarm: AlarmNotification) -> str:
    """ "ErrorRate > 0.2, Average per 1 h, 2 of 3 periods": when this alarm fires."""
    if alarm.metric is None:
        return "see the alarm"
    text = alarm.metric.name
    if alarm.threshold is not None and alarm.comparison in _COMPARISON_SYMBOLS:
        text += f" {_COMPARISON_SYMBOLS[alarm.comparison][0]} {readable_number(alarm.threshold)}"
    text += f", {alarm.metric.statistic} per {readable_period(alarm.metric.period_seconds)}"
    if alarm.evaluation_periods:
        needed = alarm.datapoints_to_alarm or alarm.evaluation_periods
        text += f", {needed} of {alarm.evaluation_periods} periods"
    return text


def readable_period(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def sparkline(values: Sequence[float | None]) -> str:
    """One bar per period, scaled from the lowest to the highest value shown; "·" for no data."""
    present = [value for value in values if value is not None]
    if not present:
        return _MISSING * len(values)
    low, high = min(present), max(present)
    bars = []
    for value in values:
        if value is None:
            bars.append(_MISSING)
        elif high == low:
            bars.append(_BARS[len(_BARS) // 2 - 1])
        else:
            bars.append(_BARS[round((value - low) / (high - low) * (len(_BARS) - 1))])
    return "".join(bars)


def slack_escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters; alarm names and reasons may contain them."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class RecentValues:
    """The metric over the last periods, oldest first; None where a period had no data."""

    period_seconds: int
    values: tuple[float | None, ...]

    @property
    def latest(self) -> float | None:
        return next((value for value in reversed(self.values) if value is not None), None)


@dataclass(frozen=True)
class Link:
    label: str
    url: str


# Console hosts per partition; only the commercial partition has per-region hostnames.
_CONSOLE_HOSTS = {
    "aws": "{region}.console.aws.amazon.com",
    "aws-cn": "console.amazonaws.cn",
    "aws-us-gov": "console.amazonaws-us-gov.com",
}


def console_base(partition: str, region: str) -> str:
    return "https://" + _CONSOLE_HOSTS.get(partition, _CONSOLE_HOSTS["aws"]).format(region=region)


def alarm_console_url(alarm: AlarmNotification) -> str:
    base = console_base(alarm.partition, alarm.region)
    name = urllib.parse.quote(alarm.name, safe="")
    return f"{base}/cloudwatch/home?region={alarm.region}#alarmsV2:alarm/{name}"


def dashboard_console_url(partition: str, region: str, dashboard_name: str) -> str:
    name = urllib.parse.quote(dashboard_name, safe="")
    return f"{console_base(partition, region)}/cloudwatch/home?region={region}#dashboards/dashboard/{name}"


def s3_object_console_url(partition: str, region: str, bucket: str, key: str) -> str:
    prefix = urllib.parse.quote(key, safe="/")
    return f"{console_base(partition, region)}/s3/object/{bucket}?region={region}&prefix={prefix}"


def s3_prefix_console_url(partition: str, region: str, bucket: str, prefix: str) -> str:
    encoded = urllib.parse.quote(prefix, safe="/")
    base = console_base(partition, region)
    return f"{base}/s3/buckets/{bucket}?region={region}&prefix={encoded}&showversions=false"


_STATE_STYLE = {
    # Block Kit blocks carry no colour; the legacy attachment wrapping them does, as a
    # bar down the left edge. The emoji repeats the state for clients that show no bar
    # (notifications, other Slack-compatible receivers) and for colour-blind readers.
    ALARM: ("#E01E5A", "🔴"),
    OK: ("#2EB67D", "✅"),
    INSUFFICIENT_DATA: ("#ECB22E", "⚪"),
}


def slack_date(moment: datetime) -> str:
    """Slack shows the time in each reader's own timezone; the fallback is UTC."""
    fallback = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time_secs}}|{fallback}>"


def build_slack_message(
    alarm: AlarmNotification,
    *,
    current_value: float | None,
    recent: RecentValues | None,
    links: Sequence[Link],
) -> dict[str, Any]:
    """The webhook payload: a coloured attachment holding Block Kit blocks, plus fallback text."""
    colour, emoji = _STATE_STYLE.get(alarm.new_state, ("#808080", "❔"))
    model = alarm.model_name or "(no ModelName dimension)"
    value_line = value_against_threshold(alarm, current_value)
    transition = f"{alarm.old_state or '?'} → {alarm.new_state}"

    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _truncate(f"{emoji} {alarm.new_state}: {alarm.name}", HEADER_MAX_CHARS),
                "emoji": True,
            },
        },
        {
            "type": "section",
            "fields": [
                _mrkdwn(f"*Model*\n{slack_escape(model)}", FIELD_MAX_CHARS),
                _mrkdwn(f"*State*\n{transition}", FIELD_MAX_CHARS),
                _mrkdwn(f"*Value*\n{slack_escape(value_line)}", FIELD_MAX_CHARS),
                _mrkdwn(f"*Alarm when*\n{slack_escape(alarm_condition(alarm))}", FIELD_MAX_CHARS),
                _mrkdwn(f"*Time*\n{slack_date(alarm.state_change_time)}", FIELD_MAX_CHARS),
            ],
        },
        {"type": "section", "text": _mrkdwn(f"*Reason*\n{slack_escape(alarm.reason)}", SECTION_MAX_CHARS)},
    ]
    if recent is not None and recent.values:
        numbers = " · ".join("–" if value is None else readable_number(value) for value in recent.values)
        period = readable_period(recent.period_seconds)
        title = f"*Last {len(recent.values)} periods of {period}* (oldest → newest)"
        blocks.append(
            {
                "type": "section",
                "text": _mrkdwn(f"{title}\n`{sparkline(recent.values)}`  {numbers}", SECTION_MAX_CHARS),
            }
        )
    if links:
        line = " · ".join(f"<{link.url}|{slack_escape(link.label)}>" for link in links)
        blocks.append({"type": "section", "text": _mrkdwn(line, SECTION_MAX_CHARS)})
    if alarm.description:
        blocks.append(
            {"type": "context", "elements": [_mrkdwn(slack_escape(alarm.description), FIELD_MAX_CHARS)]}
        )

    # Notifications, screen readers and receivers without Block Kit show only this text.
    fallback = f"{emoji} {alarm.new_state}: {value_line} on model {model} ({alarm.name})"
    return {"text": slack_escape(fallback), "attachments": [{"color": colour, "blocks": blocks}]}


def _mrkdwn(text: str, limit: int) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _truncate(text, limit)}


# --------------------------------------------------------------------------- context from AWS


def fetch_recent_values(
    cloudwatch: Any, metric: MetricSpec, *, until: datetime, periods: int
) -> RecentValues:
    """The metric's last ``periods`` periods before ``until``, as the alarm saw them.

    CloudWatch's default (sliding) evaluation window ends its newest period at the minute
    the alarm was evaluated, so the periods end at ``until`` rounded down to the minute:
    the newest one is the period the alarm judged. The window ends at the alarm's state
    change rather than at "now", so a message sent on Lambda's retry an hour later still
    shows what the alarm saw. (GetMetricData starts its periods at StartTime, which it
    rounds down to the minute for data under 15 days old.)
    """
    period = metric.period_seconds
    until_epoch = int(until.timestamp())
    end_epoch = until_epoch - until_epoch % min(period, 60)
    start_epoch = end_epoch - periods * period
    query: dict[str, Any] = {
        "Id": "recent",
        "MetricStat": {
            "Metric": {
                "Namespace": metric.namespace,
                "MetricName": metric.name,
                "Dimensions": [{"Name": name, "Value": value} for name, value in metric.dimensions],
            },
            "Period": period,
            # No Unit: it filters, and a metric published without one would vanish.
            "Stat": metric.statistic,
        },
        "ReturnData": True,
    }
    response = cloudwatch.get_metric_data(
        MetricDataQueries=[query],
        StartTime=datetime.fromtimestamp(start_epoch, UTC),
        EndTime=datetime.fromtimestamp(end_epoch, UTC),
        ScanBy="TimestampAscending",
        MaxDatapoints=periods * 2,
    )
    values: list[float | None] = [None] * periods
    for result in response.get("MetricDataResults", []):
        for stamp, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
            index = int((stamp.timestamp() - start_epoch) // period)
            if 0 <= index < periods:
                values[index] = float(value)
    return RecentValues(period_seconds=period, values=tuple(values))


def fetch_evaluated_value(cloudwatch: Any, alarm: AlarmNotification) -> float | None:
    """The newest datapoint the alarm evaluated for this transition, from its StateReasonData.

    Used only while the alarm still holds this very state change (same state, same
    timestamp): after a newer change the data describes a different transition.
    """
    response = cloudwatch.describe_alarms(AlarmNames=[alarm.name], AlarmTypes=["MetricAlarm"])
    for described in response.get("MetricAlarms", []):
        updated = described.get("StateUpdatedTimestamp")
        if described.get("StateValue") != alarm.new_state or updated is None:
            return None
        if abs((updated - alarm.state_change_time).total_seconds()) > 1.0:
            return None
        try:
            reason_data = json.loads(described.get("StateReasonData") or "{}")
        except json.JSONDecodeError:
            return None
        points = [p for p in reason_data.get("evaluatedDatapoints", []) if "value" in p]
        if points:
            newest = max(points, key=lambda point: parse_alarm_time(str(point.get("timestamp", ""))))
            return float(newest["value"])
    return None


@dataclass(frozen=True)
class ReportSearch:
    key: str | None  # the newest report.json, when the search saw every object under the prefix
    complete: bool


def _latest_report_pointer(s3: Any, bucket: str, prefix: str) -> str | None:
    """The report named by the batch monitor's ``<prefix>latest.json`` pointer, if there is one."""
    try:
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}{LATEST_REPORT_POINTER}")["Body"].read()
        report = json.loads(body).get("report")
    except (ClientError, ValueError, AttributeError):
        return None  # no pointer yet (or an unreadable one): fall back to listing
    return report if isinstance(report, str) and report.startswith(prefix) else None


def find_latest_report(s3: Any, bucket: str, prefix: str, max_keys: int) -> ReportSearch:
    """The newest ``<prefix>.../report.json`` by LastModified, listing at most ``max_keys`` objects.

    S3 lists keys in name order, not time order, and batch keys are named by upstream
    systems, so only a full listing finds the newest. Alerts are rare and a list request
    costs a fraction of a cent, but the listing grows with every batch; past the bound the
    caller links the prefix instead of naming a report that may not be the newest.
    """
    pointer = _latest_report_pointer(s3, bucket, prefix)
    if pointer:
        return ReportSearch(key=pointer, complete=True)
    newest: dict[str, Any] | None = None
    listed = 0
    token: str | None = None
    while True:
        request: dict[str, Any] = {
            "Bucket": bucket,
            "Prefix": prefix,
            "MaxKeys": min(1000, max_keys - listed),
        }
        if token:
            request["ContinuationToken"] = token
        page = s3.list_objects_v2(**request)
        for item in page.get("Contents", []):
            listed += 1
            if item["Key"].endswith("/report.json") and (
                newest is None or item["LastModified"] > newest["LastModified"]
            ):
                newest = item
        if not page.get("IsTruncated"):
            return ReportSearch(key=newest["Key"] if newest else None, complete=True)
        if listed >= max_keys:
            return ReportSearch(key=None, complete=False)
        token = page["NextContinuationToken"]


def gather_links(alarm: AlarmNotification, settings: AlertConfig, report: ReportSearch | None) -> list[Link]:
    links = [Link("Alarm in CloudWatch", alarm_console_url(alarm))]
    if settings.dashboard_name:
        links.append(
            Link("Dashboard", dashboard_console_url(alarm.partition, alarm.region, settings.dashboard_name))
        )
    if settings.ingest_bucket:
        bucket = settings.ingest_bucket
        if report is not None and report.key:
            url = s3_object_console_url(alarm.partition, alarm.region, bucket, report.key)
            links.append(Link("Latest batch report", url))
        else:
            label = (
                "Batch reports"
                if report is None or report.complete
                else "Batch reports (too many to find the newest)"
            )
            url = s3_prefix_console_url(alarm.partition, alarm.region, bucket, settings.results_prefix)
            links.append(Link(label, url))
    return links


# --------------------------------------------------------------------------- the webhook


def webhook_url_from_secret(secret_value: str) -> str:
    """The secret holds the URL itself or {"webhook_url": "..."}; errors never quote the value."""
    text = secret_value.strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError("the Slack webhook secret looks like JSON but does not parse") from None
        url = document.get("webhook_url") if isinstance(document, dict) else None
        if not isinstance(url, str) or not url.strip():
            raise ConfigError('the Slack webhook secret is JSON without a "webhook_url" string')
        text = url.strip()
    parts = urllib.parse.urlsplit(text)
    # urllib would also open file:// and ftp:// URLs; a webhook is only ever http(s).
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ConfigError("the Slack webhook secret must hold an http(s) URL or JSON with webhook_url")
    return text


def redacted(url: str) -> str:
    """What logs may say about the webhook: its host, never the path that authorises posting."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}/[redacted]"


def _scrub(text: str, url: str) -> str:
    path = urllib.parse.urlsplit(url).path
    text = text.replace(url, redacted(url))
    return text.replace(path, "/[redacted]") if len(path) > 1 else text


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After in seconds, from either of its HTTP forms (delta-seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout_seconds: float
    max_attempts: int
    backoff_base_seconds: float
    max_backoff_seconds: float


@dataclass(frozen=True)
class _Attempt:
    delivered: bool
    retryable: bool
    description: str  # already free of the URL
    status: int | None = None
    retry_after_seconds: float | None = None


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook never redirects; following one would hand the alert to another host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_RefuseRedirects)


def _sleep(seconds: float) -> None:
    # A module-level indirection so a test can record the wait instead of spending it
    # (patching time.sleep itself would also stop the test's HTTP server from sleeping).
    time.sleep(seconds)


def _post_once(url: str, body: bytes, timeout_seconds: float) -> _Attempt:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "modelwatch-alert-notifier",
        },
    )
    try:
        # The timeout bounds the connect and every socket read, so a silent server costs
        # at most a few multiples of it, never the whole Lambda timeout.
        with _OPENER.open(request, timeout=timeout_seconds) as response:
            response.read(RESPONSE_EXCERPT_CHARS)
            return _Attempt(
                delivered=True, retryable=False, description=f"HTTP {response.status}", status=response.status
            )
    except urllib.error.HTTPError as error:
        status = error.code
        try:
            excerpt = error.read(RESPONSE_EXCERPT_CHARS).decode("utf-8", errors="replace").strip()
        except (OSError, http.client.HTTPException):
            excerpt = ""
        retry_after = parse_retry_after(error.headers.get("Retry-After") if error.headers else None)
        error.close()
        description = _scrub(f"HTTP {status}: {excerpt or '(empty body)'}", url)
        if status == 429:
            return _Attempt(False, True, description, status, retry_after)
        # Any other 4xx (bad payload, revoked or unknown webhook) fails the same way every time.
        return _Attempt(False, status >= 500, description, status)
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, TimeoutError):
            return _Attempt(False, True, f"no answer within {timeout_seconds:g} s")
        return _Attempt(False, True, _scrub(f"connection failed: {type(reason).__name__}: {reason}", url))
    except TimeoutError:
        return _Attempt(False, True, f"no answer within {timeout_seconds:g} s")
    except (http.client.HTTPException, OSError) as error:
        return _Attempt(False, True, _scrub(f"connection failed: {type(error).__name__}: {error}", url))


def post_to_slack(
    url: str,
    payload: dict[str, Any],
    policy: DeliveryPolicy,
    *,
    time_left_seconds: Callable[[], float] | None = None,
) -> int:
    """POST the payload; retry 429 (after Retry-After), 5xx, timeouts and connection errors.

    Returns the number of attempts used. Raises SlackDeliveryError at once on any other
    4xx, when Slack asks for a longer wait than the policy allows, when the Lambda has no
    time left for another attempt, or after the last attempt.
    """
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    where = redacted(url)
    last: _Attempt | None = None
    for attempt in range(1, policy.max_attempts + 1):
        last = _post_once(url, body, policy.timeout_seconds)
        if last.delivered:
            logger.info("Posted the alert to %s on attempt %d", where, attempt, extra={"attempts": attempt})
            return attempt
        if not last.retryable:
            logger.error(
                "Slack webhook %s rejected the alert with HTTP %s, not retrying: %s",
                where,
                last.status,
                last.description,
                extra={"http_status": last.status},
            )
            raise SlackDeliveryError(
                f"Slack webhook {where} rejected the alert: {last.description}",
                status=last.status,
                attempts=attempt,
            )
        if attempt == policy.max_attempts:
            break
        if last.retry_after_seconds is not None:
            delay = last.retry_after_seconds
            if delay > policy.max_backoff_seconds:
                raise SlackDeliveryError(
                    f"Slack webhook {where} asked to wait {delay:g} s, more than SLACK_MAX_BACKOFF_SECONDS "
                    f"({policy.max_backoff_seconds:g} s); leaving the retry to Lambda",
                    status=last.status,
                    attempts=attempt,
                )
        else:
            # Exponential backoff with jitter, so notifiers retrying together do not hit Slack in step.
            ceiling = min(policy.max_backoff_seconds, policy.backoff_base_seconds * 2 ** (attempt - 1))
            delay = ceiling * random.uniform(0.5, 1.0)
        if time_left_seconds is not None:
            needed = delay + policy.timeout_seconds + LAMBDA_SAFETY_MARGIN_SECONDS
            if time_left_seconds() < needed:
                raise SlackDeliveryError(
                    f"Slack webhook {where}: {last.description}; no time left in this invocation for "
                    f"another attempt, leaving the retry to Lambda",
                    status=last.status,
                    attempts=attempt,
                )
        logger.warning(
            "Slack delivery attempt %d of %d to %s failed (%s); retrying in %.2f s",
            attempt,
            policy.max_attempts,
            where,
            last.description,
            delay,
            extra={"http_status": last.status, "retry_in_seconds": delay},
        )
        _sleep(delay)
    assert last is not None
    raise SlackDeliveryError(
        f"Slack webhook {where} failed after {policy.max_attempts} attempts; last: {last.description}",
        status=last.status,
        attempts=policy.max_attempts,
    )


# --------------------------------------------------------------------------- the invocation


@lru_cache(maxsize=1)
def _settings() -> AlertConfig:
    return AlertConfig.from_env()


def _aws_config(settings: AlertConfig) -> Config:
    # boto3's defaults (60 s connect and read) would let one slow endpoint eat the whole
    # Lambda timeout; the standard retry mode already backs off on throttling.
    return Config(
        connect_timeout=settings.aws_connect_timeout_seconds,
        read_timeout=settings.aws_read_timeout_seconds,
        retries={"max_attempts": 3, "mode": "standard"},
    )


@lru_cache(maxsize=1)
def _secrets_provider() -> parameters.SecretsProvider:
    client = boto3.client("secretsmanager", config=_aws_config(_settings()))
    return parameters.SecretsProvider(boto3_client=client)


@lru_cache(maxsize=8)
def _cloudwatch(region: str) -> Any:
    # The alarm's own region: the topic may have subscribers in another one.
    return boto3.client("cloudwatch", region_name=region, config=_aws_config(_settings()))


@lru_cache(maxsize=1)
def _s3() -> Any:
    return boto3.client("s3", config=_aws_config(_settings()))


def reset_cached_state() -> None:
    """Forget settings, clients and the cached secret, as a cold start would."""
    for cached in (_settings, _secrets_provider, _cloudwatch, _s3):
        cached.cache_clear()


def read_webhook_url() -> str:
    settings = _settings()
    # Powertools caches the value for max_age, so a warm function reads the secret once
    # per window instead of once per alert, and a rotated secret is picked up within it.
    secret = _secrets_provider().get(
        settings.slack_webhook_secret_name, max_age=settings.secret_max_age_seconds
    )
    if isinstance(secret, bytes):
        secret = secret.decode("utf-8")
    return webhook_url_from_secret(str(secret))


def _best_effort(what: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except (ClientError, BotoCoreError) as error:
        logger.warning("Leaving %s out of the alert: %s", what, error)
        return None


def notify(message: str, *, time_left_seconds: Callable[[], float] | None = None) -> bool:
    """Post one alarm notification to Slack. Returns False when it was deliberately not posted."""
    settings = _settings()
    try:
        alarm = AlarmNotification.from_sns_message(message, fallback_region=os.environ.get("AWS_REGION"))
    except NotAnAlarmError as error:
        # Retrying cannot turn it into an alarm, so it is logged rather than sent to the DLQ.
        logger.error("Not posting a message from the alert topic: %s", error)
        return False
    log_keys = {"alarm_name": alarm.name, "old_state": alarm.old_state, "new_state": alarm.new_state}

    post, why_not = should_post(alarm)
    if not post:
        logger.info(
            "Not posting %s -> %s for %s: %s",
            alarm.old_state,
            alarm.new_state,
            alarm.name,
            why_not,
            extra=log_keys,
        )
        return False

    recent: RecentValues | None = None
    current_value: float | None = None
    if alarm.metric is not None:
        cloudwatch = _cloudwatch(alarm.region)
        metric = alarm.metric
        recent = _best_effort(
            "the recent values",
            lambda: fetch_recent_values(
                cloudwatch, metric, until=alarm.state_change_time, periods=settings.recent_periods
            ),
        )
        current_value = _best_effort("the evaluated value", lambda: fetch_evaluated_value(cloudwatch, alarm))
        if current_value is None and recent is not None:
            # Without the alarm's own datapoint, the newest period it could have seen is the best stand-in.
            current_value = recent.latest
    report = None
    if settings.ingest_bucket:
        report = _best_effort(
            "the latest batch report",
            lambda: find_latest_report(
                _s3(), settings.ingest_bucket, settings.results_prefix, settings.report_search_max_keys
            ),
        )
        if report is not None and not report.complete:
            logger.warning(
                "More than %d objects under s3://%s/%s; linking the prefix instead of the newest report",
                settings.report_search_max_keys,
                settings.ingest_bucket,
                settings.results_prefix,
            )

    payload = build_slack_message(
        alarm, current_value=current_value, recent=recent, links=gather_links(alarm, settings, report)
    )
    url = read_webhook_url()
    policy = DeliveryPolicy(
        timeout_seconds=settings.slack_timeout_seconds,
        max_attempts=settings.slack_max_attempts,
        backoff_base_seconds=settings.slack_backoff_base_seconds,
        max_backoff_seconds=settings.slack_max_backoff_seconds,
    )
    try:
        post_to_slack(url, payload, policy, time_left_seconds=time_left_seconds)
    except SlackDeliveryError as error:
        if error.status in (403, 404, 410):
            # The webhook was revoked or removed; if someone rotated the secret, Lambda's
            # retry should read the new one rather than the cached old one.
            _secrets_provider().clear_cache()
        logger.error(
            "Alert not delivered, raising so Lambda retries and then dead-letters it: %s",
            error,
            extra=log_keys,
        )
        raise
    return True

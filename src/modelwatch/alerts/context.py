"""Context for an alert, fetched from AWS: the metric's recent values, the datapoint the
alarm evaluated, and the newest batch report (and whether its batch is the one that
moved the alarm).

Each fetch raises botocore's errors; the notifier decides that context is best effort.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from modelwatch.alerts.alarm_message import AlarmNotification, MetricSpec, parse_alarm_time
from modelwatch.alerts.slack_message import RecentValues
from modelwatch.config import LATEST_REPORT_POINTER

_MISSING_OBJECT_CODES = ("NoSuchKey", "404", "AccessDenied", "403")


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
    end_epoch = int(newest_period_start(until, period).timestamp()) + period
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


def newest_period_start(until: datetime, period_seconds: int) -> datetime:
    """The start of the newest period of an alarm's default (sliding) window evaluated at
    ``until``: the window ends at ``until`` rounded down to the minute."""
    until_epoch = int(until.timestamp())
    end_epoch = until_epoch - until_epoch % min(period_seconds, 60)
    return datetime.fromtimestamp(end_epoch - period_seconds, UTC)


@dataclass(frozen=True)
class EvaluatedDatapoint:
    """The newest datapoint the alarm evaluated: its period's start and its value."""

    timestamp: datetime
    value: float


def fetch_evaluated_value(cloudwatch: Any, alarm: AlarmNotification) -> float | None:
    datapoint = fetch_evaluated_datapoint(cloudwatch, alarm)
    return None if datapoint is None else datapoint.value


def fetch_evaluated_datapoint(cloudwatch: Any, alarm: AlarmNotification) -> EvaluatedDatapoint | None:
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
            return EvaluatedDatapoint(
                parse_alarm_time(str(newest.get("timestamp", ""))), float(newest["value"])
            )
    return None


@dataclass(frozen=True)
class LatestReport:
    """The newest report, as results/latest.json names it, and its batch's event time."""

    key: str  # report.json
    event_time: datetime | None

    @property
    def page_key(self) -> str:
        """report.html, which the batch monitor writes beside report.json."""
        return self.key.removesuffix(".json") + ".html"

    def moved(self, datapoint: EvaluatedDatapoint | None, period_seconds: int) -> bool:
        """Whether this batch's metrics are in the datapoint that moved the alarm: its event
        time (the time its metrics are stamped with) falls in that datapoint's period."""
        if datapoint is None or self.event_time is None:
            return False
        return (
            datapoint.timestamp <= self.event_time < datapoint.timestamp + timedelta(seconds=period_seconds)
        )


def latest_report_key(s3: Any, bucket: str, prefix: str) -> str | None:
    found = latest_report(s3, bucket, prefix)
    return None if found is None else found.key


def latest_report(s3: Any, bucket: str, prefix: str) -> LatestReport | None:
    """The newest report, as named by the batch monitor's ``<prefix>latest.json`` pointer.

    None until the first batch wrote the pointer, or when it is unreadable; the alert then
    links the prefix. Other S3 errors (throttling, an outage) are raised.
    """
    try:
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}{LATEST_REPORT_POINTER}")["Body"].read()
    except ClientError as error:
        # The notifier may not list the bucket, so S3 answers a missing pointer with 403, not 404.
        if error.response.get("Error", {}).get("Code") in _MISSING_OBJECT_CODES:
            return None
        raise
    try:
        pointer = json.loads(body)
        report = pointer.get("report")
    except (ValueError, AttributeError):
        return None
    if not (isinstance(report, str) and report.startswith(prefix)):
        return None
    try:
        event_time: datetime | None = datetime.fromisoformat(str(pointer.get("event_time")))
    except ValueError:
        event_time = None
    if event_time is not None and event_time.tzinfo is None:
        event_time = event_time.replace(tzinfo=UTC)
    return LatestReport(report, event_time)

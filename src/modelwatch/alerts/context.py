"""Context for an alert, fetched from AWS: the metric's recent values, the datapoint the
alarm evaluated, and the newest batch report.

Each fetch raises botocore's errors; the notifier decides that context is best effort.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
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


def latest_report_key(s3: Any, bucket: str, prefix: str) -> str | None:
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
        report = json.loads(body).get("report")
    except (ValueError, AttributeError):
        return None
    return report if isinstance(report, str) and report.startswith(prefix) else None

"""The alarm notification CloudWatch publishes to SNS, read into a typed AlarmNotification.

Pure: no AWS and no network, so every shape of message is tested directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelwatch.errors import NotAnAlarmError

ALARM = "ALARM"
OK = "OK"
INSUFFICIENT_DATA = "INSUFFICIENT_DATA"

MODEL_DIMENSION = "ModelName"

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

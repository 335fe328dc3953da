"""CloudWatch metric-alarm evaluation for the local cloud.

moto stores alarms but never evaluates them, and its SetAlarmState notifies nobody. This
module supplies what CloudWatch does between the two, built from the CloudWatch user guide
("Alarm evaluation" and "Configuring how CloudWatch alarms treat missing data", section
"How alarm state is evaluated when data is missing", with "Avoiding premature transitions
to alarm state"):

- ``AlarmDefinition``: one metric alarm, from a template's ``AWS::CloudWatch::Alarm``
  properties (after parameter resolution) or from a ``DescribeAlarms`` entry.
- ``evaluate_alarm``: the pure decision. Given the alarm, its current state and the values
  of the most recent periods (newest last, ``None`` for a period with no data) it returns
  the new state and a reason worded the way CloudWatch words it.
- ``alarm_state_change_message`` / ``notification_subject``: the JSON document and subject
  CloudWatch publishes to SNS on a state change.
- ``CloudWatchAlarmEvaluator``: the thin part that reads the metric from CloudWatch (moto),
  records the new state with SetAlarmState and publishes the message to the actions' topics.
  It takes the evaluation time as an argument so replays can run on virtual time. Its
  periods form CloudWatch's default sliding window ("Alarm evaluation window"): the newest
  one ends at the evaluation minute, not at a multiple of the period.

Longer than the package's usual ~450 lines on purpose: the evaluator is one algorithm
(CloudWatch's semantics, both missing-data tables and the evaluation range) that must be
read whole; the parts outside it (reading metrics, publishing state changes) are short.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

STATE_OK = "OK"
STATE_ALARM = "ALARM"
STATE_INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
STATES = (STATE_OK, STATE_ALARM, STATE_INSUFFICIENT_DATA)

MISSING = "missing"
IGNORE = "ignore"
BREACHING = "breaching"
NOT_BREACHING = "notBreaching"
TREATMENTS = (MISSING, IGNORE, BREACHING, NOT_BREACHING)

# The operator and the words CloudWatch uses for it in a state reason.
_COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}
# Band operators compare against an anomaly-detection model, which the local cloud has not.
ANOMALY_BAND_OPERATORS = frozenset(
    {"LessThanLowerOrGreaterThanUpperThreshold", "LessThanLowerThreshold", "GreaterThanUpperThreshold"}
)

# The label CloudWatch prints for the missing-data treatment that filled a period.
_FILL_LABELS = {BREACHING: "Breaching", NOT_BREACHING: "NonBreaching"}

# The SNS message and subject name the region the way the console does, not by its code.
REGION_DISPLAY_NAMES = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-1": "US West (N. California)",
    "us-west-2": "US West (Oregon)",
    "ca-central-1": "Canada (Central)",
    "eu-west-1": "EU (Ireland)",
    "eu-west-2": "EU (London)",
    "eu-west-3": "EU (Paris)",
    "eu-central-1": "EU (Frankfurt)",
    "eu-north-1": "EU (Stockholm)",
    "ap-northeast-1": "Asia Pacific (Tokyo)",
    "ap-northeast-2": "Asia Pacific (Seoul)",
    "ap-southeast-1": "Asia Pacific (Singapore)",
    "ap-southeast-2": "Asia Pacific (Sydney)",
    "ap-south-1": "Asia Pacific (Mumbai)",
    "sa-east-1": "South America (Sao Paulo)",
}

# SNS refuses a Subject longer than 100 characters.
_SNS_SUBJECT_MAX_CHARS = 100
# CloudWatch rejects alarms whose EvaluationPeriods x Period exceeds one day.
_MAX_EVALUATION_SECONDS = 86_400
# Extra periods beyond EvaluationPeriods that the evaluation range reaches back. The user
# guide gives no formula, only that it "depends on the length of the alarm period", and two
# examples: EvaluationPeriods 3 of 5 minutes retrieves 5 data points ("Evaluating an
# alarm"), and a daily alarm with a sliding window fires when two backups are more than
# 24 hours apart ("Alarm evaluation window") - which it could not if the day before
# yesterday's backup were still in its range. Both hold when the range adds up to 2
# periods but reaches back no further than a day (or N periods, if those are longer).
DEFAULT_EXTRA_RANGE_PERIODS = 2
_MAX_RANGE_SECONDS = 86_400
# moto creates alarms in OK with this reason; CloudWatch creates them in INSUFFICIENT_DATA.
MOTO_INITIAL_REASON = "Unchecked: Initial alarm creation"


def region_display_name(region: str) -> str:
    """The console name of a region ("US East (N. Virginia)"), or the code when unknown."""
    return REGION_DISPLAY_NAMES.get(region, region)


def format_number(value: float) -> str:
    """A double written the way CloudWatch's reasons write it (Java's Double.toString).

    Java prints plain decimals between 1e-3 and 1e7 and scientific notation ("1.0E-4")
    outside; the shortest round-tripping digits are the same as Python's repr.
    """
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    if 1e-3 <= abs(value) < 1e7:
        text = repr(value)
        return text if ("." in text or "e" in text) else text + ".0"
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    significant = list(digits)
    while len(significant) > 1 and significant[-1] == 0:
        significant.pop()
        exponent += 1
    scientific_exponent = exponent + len(significant) - 1
    fraction = "".join(str(d) for d in significant[1:]) or "0"
    return f"{'-' if sign else ''}{significant[0]}.{fraction}E{scientific_exponent}"


def _reason_timestamp(moment: datetime) -> str:
    # CloudWatch's reasons print each datapoint's period start as dd/MM/yy HH:mm:ss in UTC.
    return moment.astimezone(UTC).strftime("%d/%m/%y %H:%M:%S")


def format_message_timestamp(moment: datetime) -> str:
    """A timestamp as the SNS message writes it: 2026-11-26T10:05:00.000+0000."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return singular if count == 1 else (plural or singular + "s")


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class AlarmDefinition:
    """One CloudWatch metric alarm on a single metric and statistic."""

    name: str
    metric_name: str
    namespace: str
    statistic: str
    period_seconds: int
    evaluation_periods: int
    comparison_operator: str
    threshold: float
    dimensions: tuple[tuple[str, str], ...] = ()
    # None means "not set": CloudWatch then alarms on EvaluationPeriods out of EvaluationPeriods
    # and words its reasons without the "out of the last" / "minimum" parts.
    datapoints_to_alarm_setting: int | None = None
    treat_missing_data: str = MISSING
    alarm_actions: tuple[str, ...] = ()
    ok_actions: tuple[str, ...] = ()
    insufficient_data_actions: tuple[str, ...] = ()
    description: str | None = None
    actions_enabled: bool = True
    unit: str | None = None
    arn: str | None = None
    configuration_updated: datetime | None = None
    # How many periods the evaluation looks back over; 0 means EvaluationPeriods + 2, within
    # a day (see DEFAULT_EXTRA_RANGE_PERIODS).
    evaluation_range_periods: int = field(default=0)

    def __post_init__(self) -> None:
        if self.comparison_operator in ANOMALY_BAND_OPERATORS:
            raise NotImplementedError(
                f"Alarm {self.name!r}: {self.comparison_operator} compares against an anomaly "
                "detection band, which the local cloud does not model; use one of "
                f"{', '.join(sorted(_COMPARISONS))}."
            )
        if self.comparison_operator not in _COMPARISONS:
            raise ValueError(f"Alarm {self.name!r}: unknown ComparisonOperator {self.comparison_operator!r}.")
        if self.treat_missing_data not in TREATMENTS:
            raise ValueError(
                f"Alarm {self.name!r}: TreatMissingData must be one of {', '.join(TREATMENTS)}, "
                f"not {self.treat_missing_data!r}."
            )
        if self.period_seconds <= 0 or self.evaluation_periods <= 0:
            raise ValueError(f"Alarm {self.name!r}: Period and EvaluationPeriods must be positive.")
        if self.period_seconds * self.evaluation_periods > _MAX_EVALUATION_SECONDS:
            raise ValueError(
                f"Alarm {self.name!r}: EvaluationPeriods x Period is "
                f"{self.period_seconds * self.evaluation_periods} s; CloudWatch allows at most one day."
            )
        if self.datapoints_to_alarm_setting is not None and not (
            1 <= self.datapoints_to_alarm_setting <= self.evaluation_periods
        ):
            raise ValueError(
                f"Alarm {self.name!r}: DatapointsToAlarm {self.datapoints_to_alarm_setting} must be "
                f"between 1 and EvaluationPeriods ({self.evaluation_periods})."
            )
        if self.evaluation_range_periods == 0:
            within_a_day = max(self.evaluation_periods, _MAX_RANGE_SECONDS // self.period_seconds)
            object.__setattr__(
                self,
                "evaluation_range_periods",
                min(self.evaluation_periods + DEFAULT_EXTRA_RANGE_PERIODS, within_a_day),
            )
        if self.evaluation_range_periods < self.evaluation_periods:
            raise ValueError(f"Alarm {self.name!r}: the evaluation range cannot be shorter than N.")

    @property
    def datapoints_to_alarm(self) -> int:
        """M in "M out of N": DatapointsToAlarm, defaulting to EvaluationPeriods."""
        if self.datapoints_to_alarm_setting is None:
            return self.evaluation_periods
        return self.datapoints_to_alarm_setting

    @property
    def comparison_words(self) -> str:
        return _COMPARISONS[self.comparison_operator][1]

    def breaches(self, value: float) -> bool:
        """Whether one period's value is on the alarming side of the threshold."""
        compare = _COMPARISONS[self.comparison_operator][0]
        return bool(compare(value, self.threshold))

    def actions_for(self, state: str) -> tuple[str, ...]:
        return {
            STATE_ALARM: self.alarm_actions,
            STATE_OK: self.ok_actions,
            STATE_INSUFFICIENT_DATA: self.insufficient_data_actions,
        }[state]

    def put_request(self) -> dict[str, Any]:
        """PutMetricAlarm's arguments for this alarm, as CloudFormation would create it."""
        request: dict[str, Any] = {
            "AlarmName": self.name,
            "Namespace": self.namespace,
            "MetricName": self.metric_name,
            "Statistic": self.statistic,
            "Period": self.period_seconds,
            "EvaluationPeriods": self.evaluation_periods,
            "Threshold": self.threshold,
            "ComparisonOperator": self.comparison_operator,
            "TreatMissingData": self.treat_missing_data,
            "Dimensions": [{"Name": n, "Value": v} for n, v in self.dimensions],
            "AlarmActions": list(self.alarm_actions),
            "OKActions": list(self.ok_actions),
            "InsufficientDataActions": list(self.insufficient_data_actions),
            "ActionsEnabled": self.actions_enabled,
        }
        if self.description:
            request["AlarmDescription"] = self.description
        if self.datapoints_to_alarm_setting is not None:
            request["DatapointsToAlarm"] = self.datapoints_to_alarm_setting
        if self.unit:
            request["Unit"] = self.unit
        return request

    @classmethod
    def from_cloudformation(
        cls, properties: Mapping[str, Any], *, default_name: str | None = None
    ) -> AlarmDefinition:
        """From an AWS::CloudWatch::Alarm resource's Properties, parameters already resolved.

        Numbers may still be strings (parameters are strings in CloudFormation), so they are
        converted here. default_name stands in for CloudFormation's generated name when the
        template gives no AlarmName.
        """
        _reject_unsupported(properties, properties.get("AlarmName") or default_name or "?")
        name = properties.get("AlarmName") or default_name
        if not name:
            raise ValueError("The alarm has no AlarmName; pass default_name (e.g. the logical id).")
        return cls._from_fields(properties, name=str(name), arn=None, configuration_updated=None)

    @classmethod
    def from_describe_alarms(cls, entry: Mapping[str, Any]) -> AlarmDefinition:
        """From one MetricAlarms entry of a DescribeAlarms response."""
        _reject_unsupported(entry, entry.get("AlarmName", "?"))
        return cls._from_fields(
            entry,
            name=str(entry["AlarmName"]),
            arn=entry.get("AlarmArn"),
            configuration_updated=entry.get("AlarmConfigurationUpdatedTimestamp"),
        )

    @classmethod
    def _from_fields(
        cls,
        fields: Mapping[str, Any],
        *,
        name: str,
        arn: str | None,
        configuration_updated: datetime | None,
    ) -> AlarmDefinition:
        missing = [key for key in ("MetricName", "Namespace", "Statistic") if not fields.get(key)]
        if missing:
            raise ValueError(f"Alarm {name!r} lacks {', '.join(missing)}.")
        datapoints_to_alarm = fields.get("DatapointsToAlarm")
        return cls(
            name=name,
            metric_name=str(fields["MetricName"]),
            namespace=str(fields["Namespace"]),
            statistic=str(fields["Statistic"]),
            dimensions=tuple((str(d["Name"]), str(d["Value"])) for d in fields.get("Dimensions") or ()),
            period_seconds=int(fields["Period"]),
            evaluation_periods=int(fields["EvaluationPeriods"]),
            datapoints_to_alarm_setting=None
            if datapoints_to_alarm in (None, "")
            else int(datapoints_to_alarm),
            comparison_operator=str(fields["ComparisonOperator"]),
            threshold=float(fields["Threshold"]),
            treat_missing_data=str(fields.get("TreatMissingData") or MISSING),
            alarm_actions=tuple(fields.get("AlarmActions") or ()),
            ok_actions=tuple(fields.get("OKActions") or ()),
            insufficient_data_actions=tuple(fields.get("InsufficientDataActions") or ()),
            description=fields.get("AlarmDescription") or None,
            actions_enabled=_as_bool(fields.get("ActionsEnabled", True)),
            unit=fields.get("Unit") or None,
            arn=arn,
            configuration_updated=configuration_updated,
        )


def _as_bool(value: Any) -> bool:
    # CloudFormation hands booleans over as "true"/"false" strings as often as real booleans.
    if isinstance(value, str):
        return value.strip().lower() != "false"
    return bool(value)


def _reject_unsupported(fields: Mapping[str, Any], name: str) -> None:
    if fields.get("Metrics"):
        raise NotImplementedError(
            f"Alarm {name!r} uses metric math (Metrics); only single-metric alarms are evaluated."
        )
    if fields.get("ExtendedStatistic"):
        raise NotImplementedError(
            f"Alarm {name!r} uses ExtendedStatistic {fields['ExtendedStatistic']!r}; "
            "only SampleCount, Average, Sum, Minimum and Maximum are evaluated."
        )
    window = fields.get("EvaluationWindow")
    if isinstance(window, Mapping) and window.get("WallClockWindow") is not None:
        raise NotImplementedError(
            f"Alarm {name!r} uses EvaluationWindow WallClockWindow; the local cloud evaluates "
            "CloudWatch's default sliding window only."
        )
    operator_name = fields.get("ComparisonOperator")
    if operator_name in ANOMALY_BAND_OPERATORS or fields.get("ThresholdMetricId"):
        raise NotImplementedError(
            f"Alarm {name!r}: {operator_name} compares against an anomaly detection band, which "
            "the local cloud does not model."
        )


@dataclass(frozen=True)
class PeriodValue:
    """The alarm's statistic over one period; value None when the period had no data."""

    start: datetime
    value: float | None


@dataclass(frozen=True)
class AlarmEvaluation:
    """The outcome of one evaluation: the new state, why, and the data behind it."""

    previous_state: str
    state: str
    reason: str
    # Every period of the evaluation range, oldest first.
    evaluation_range: tuple[PeriodValue, ...]
    # The N data points the decision rests on, newest first: real values, plus the most
    # recent empty periods when fewer than N real values existed.
    evaluated: tuple[PeriodValue, ...]
    threshold: float
    statistic: str
    period_seconds: int

    @property
    def changed(self) -> bool:
        return self.state != self.previous_state

    @property
    def recent_values(self) -> tuple[float, ...]:
        """Real values in the evaluation range, oldest first (what a notifier charts)."""
        return tuple(p.value for p in self.evaluation_range if p.value is not None)

    @property
    def latest_value(self) -> float | None:
        """The newest real value in the evaluation range, if any."""
        values = self.recent_values
        return values[-1] if values else None

    def reason_data(self, query_time: datetime) -> str:
        """StateReasonData in CloudWatch's shape, for SetAlarmState and DescribeAlarms."""
        evaluated = []
        for period in self.evaluated:
            item: dict[str, Any] = {"timestamp": format_message_timestamp(period.start)}
            if period.value is not None:
                item["value"] = period.value
            evaluated.append(item)
        oldest = min((p.start for p in self.evaluated), default=query_time)
        return json.dumps(
            {
                "version": "1.0",
                "queryDate": format_message_timestamp(query_time),
                "startDate": format_message_timestamp(oldest),
                "statistic": self.statistic,
                "period": self.period_seconds,
                "recentDatapoints": list(self.recent_values),
                "threshold": self.threshold,
                "evaluatedDatapoints": evaluated,
            },
            separators=(",", ":"),
        )


def evaluate_alarm(
    alarm: AlarmDefinition,
    current_state: str,
    values: Sequence[float | None],
    *,
    newest_period_start: datetime,
) -> AlarmEvaluation:
    """Decide the alarm's state from the values of its most recent periods.

    values are newest last, one per period, None where the period had no data; only the
    last ``alarm.evaluation_range_periods`` are used and a shorter list counts as missing
    data further back. newest_period_start stamps the last value (for the reason text).

    The rules are the user guide's: with at least N real data points in the evaluation
    range the N most recent decide and missing-data treatment plays no part; with fewer,
    every real data point counts and only the shortfall is filled by the treatment.
    ALARM needs M breaching out of those N, anything less is OK. ``missing`` and ``ignore``
    fill nothing: without a non-breaching real value they give INSUFFICIENT_DATA or keep
    the current state respectively, except that ``missing`` alarms early ("avoiding
    premature transitions") when the oldest breaching value is at least M periods old and
    no real value is non-breaching.
    """
    if current_state not in STATES:
        raise ValueError(f"Unknown alarm state {current_state!r}.")
    range_length = alarm.evaluation_range_periods
    padded = [None] * max(0, range_length - len(values)) + list(values)[-range_length:]
    newest_period_start = _as_utc(newest_period_start)
    period = timedelta(seconds=alarm.period_seconds)
    evaluation_range = tuple(
        PeriodValue(
            newest_period_start - (range_length - 1 - index) * period, None if v is None else float(v)
        )
        for index, v in enumerate(padded)
    )

    n = alarm.evaluation_periods
    m = alarm.datapoints_to_alarm
    real = [p for p in evaluation_range if p.value is not None]
    # "CloudWatch uses missing data points only as few times as possible": real values from
    # further back stand in for missing recent ones before any treatment is applied.
    evaluated_real = real[-n:]
    fills = n - len(evaluated_real)
    breaching = [p for p in evaluated_real if alarm.breaches(p.value)]  # type: ignore[arg-type]
    not_breaching = [p for p in evaluated_real if not alarm.breaches(p.value)]  # type: ignore[arg-type]
    treatment = alarm.treat_missing_data if fills else None
    filled_as_breaching = fills if treatment == BREACHING else 0

    if len(breaching) + filled_as_breaching >= m:
        state = STATE_ALARM
    elif treatment in (None, BREACHING, NOT_BREACHING):
        state = STATE_OK
    elif treatment == MISSING and _is_premature_alarm(alarm, evaluation_range, breaching, not_breaching):
        state = STATE_ALARM
    elif not_breaching:
        # A real non-breaching value means the N data points cannot all be unknown.
        state = STATE_OK
    elif treatment == MISSING:
        state = STATE_INSUFFICIENT_DATA
    else:
        state = current_state  # "ignore": the current alarm state is maintained

    empty_recent = [p for p in reversed(evaluation_range) if p.value is None][:fills]
    evaluated = tuple(sorted([*evaluated_real, *empty_recent], key=lambda p: p.start, reverse=True))
    if treatment == IGNORE and not (len(breaching) >= m or not_breaching):
        # The state is kept and CloudWatch records nothing, so this text is never stored.
        reason = f"Retained {state}: {fills} missing {_plural(fills, 'datapoint')} ignored."
    else:
        reason = _reason(alarm, state, breaching, not_breaching, fills, treatment, len(evaluated_real))
    return AlarmEvaluation(
        previous_state=current_state,
        state=state,
        reason=reason,
        evaluation_range=evaluation_range,
        evaluated=evaluated,
        threshold=alarm.threshold,
        statistic=alarm.statistic,
        period_seconds=alarm.period_seconds,
    )


def _is_premature_alarm(
    alarm: AlarmDefinition,
    evaluation_range: Sequence[PeriodValue],
    breaching: Sequence[PeriodValue],
    not_breaching: Sequence[PeriodValue],
) -> bool:
    # The guide's rule: ALARM when the oldest breaching data point is at least M periods old
    # and everything more recent is breaching or missing. Its tables add that a non-breaching
    # real value anywhere among the evaluated points prevents it ("0 - X - -" at 2 of 3 is OK),
    # so the rule applies only when no evaluated real value is non-breaching.
    if not breaching or not_breaching:
        return False
    newest = evaluation_range[-1].start
    oldest_breaching = min(p.start for p in breaching)
    age_in_periods = int((newest - oldest_breaching).total_seconds() // alarm.period_seconds) + 1
    return age_in_periods >= alarm.datapoints_to_alarm


def _datapoint_list(periods: Iterable[PeriodValue]) -> str:
    newest_first = sorted(periods, key=lambda p: p.start, reverse=True)
    return ", ".join(f"{format_number(p.value)} ({_reason_timestamp(p.start)})" for p in newest_first)  # type: ignore[arg-type]


def _reason(
    alarm: AlarmDefinition,
    state: str,
    breaching: Sequence[PeriodValue],
    not_breaching: Sequence[PeriodValue],
    fills: int,
    treatment: str | None,
    received: int,
) -> str:
    n = alarm.evaluation_periods
    if state == STATE_INSUFFICIENT_DATA:
        unknown = f"{fills} {_plural(fills, 'datapoint was', 'datapoints were')}"
        return f"Insufficient Data: {unknown} unknown."
    alarming = state == STATE_ALARM
    listed = breaching if alarming else not_breaching
    fill_label = _FILL_LABELS.get(treatment or "")
    fill_clause = ""
    if fill_label and fills:
        fill_clause = (
            f" and {fills} missing {_plural(fills, 'datapoint')} {_plural(fills, 'was', 'were')} "
            f"treated as [{fill_label}]"
        )
    if not listed:
        # Only filled periods meet the description, so CloudWatch counts what arrived instead.
        arrived = (
            "no datapoints were"
            if received == 0
            else f"{received} {_plural(received, 'datapoint was', 'datapoints were')}"
        )
        return f"Threshold Crossed: {arrived} received for {n} {_plural(n, 'period')}{fill_clause}."
    words = alarm.comparison_words if alarming else f"not {alarm.comparison_words}"
    verb = _plural(len(listed), "was", "were")
    threshold = format_number(alarm.threshold)
    points = f"[{_datapoint_list(listed)}]"
    if alarm.datapoints_to_alarm_setting is None:
        count = f"{len(listed)} {_plural(len(listed), 'datapoint')}"
        head = f"{count} {points} {verb} {words} the threshold ({threshold})"
        return f"Threshold Crossed: {head}{fill_clause}."
    minimum = alarm.datapoints_to_alarm if alarming else n - alarm.datapoints_to_alarm + 1
    transition = "OK -> ALARM" if alarming else "ALARM -> OK"
    return (
        f"Threshold Crossed: {len(listed)} out of the last {n} datapoints {points} {verb} {words} the "
        f"threshold ({threshold}){fill_clause} (minimum {minimum} {_plural(minimum, 'datapoint')} for "
        f"{transition} transition)."
    )


def statistic_label(statistic: str) -> str:
    """The Trigger's Statistic as the SNS message writes it: "AVERAGE", "SAMPLE_COUNT"."""
    return "SAMPLE_COUNT" if statistic == "SampleCount" else statistic.upper()


def notification_subject(state: str, alarm_name: str, region: str) -> str:
    """The SNS Subject CloudWatch uses: ALARM: "name" in US East (N. Virginia)."""
    return f'{state}: "{alarm_name}" in {region_display_name(region)}'[:_SNS_SUBJECT_MAX_CHARS]


def alarm_arn(alarm: AlarmDefinition, *, region: str, account_id: str) -> str:
    return alarm.arn or f"arn:aws:cloudwatch:{region}:{account_id}:alarm:{alarm.name}"


def alarm_state_change_message(
    alarm: AlarmDefinition,
    evaluation: AlarmEvaluation,
    *,
    region: str,
    account_id: str,
    state_change_time: datetime,
) -> dict[str, Any]:
    """The JSON document CloudWatch publishes to SNS when the alarm changes state.

    Field names, order and casing follow real notifications (Trigger.Dimensions items are
    {"value", "name"} in lower case; Statistic is upper case; Region is the display name).
    """
    configuration_updated = alarm.configuration_updated or state_change_time
    return {
        "AlarmName": alarm.name,
        "AlarmDescription": alarm.description,
        "AWSAccountId": account_id,
        "AlarmConfigurationUpdatedTimestamp": format_message_timestamp(configuration_updated),
        "NewStateValue": evaluation.state,
        "NewStateReason": evaluation.reason,
        "StateChangeTime": format_message_timestamp(state_change_time),
        "Region": region_display_name(region),
        "AlarmArn": alarm_arn(alarm, region=region, account_id=account_id),
        "OldStateValue": evaluation.previous_state,
        "OKActions": list(alarm.ok_actions),
        "AlarmActions": list(alarm.alarm_actions),
        "InsufficientDataActions": list(alarm.insufficient_data_actions),
        "Trigger": {
            "MetricName": alarm.metric_name,
            "Namespace": alarm.namespace,
            "StatisticType": "Statistic",
            "Statistic": statistic_label(alarm.statistic),
            "Unit": alarm.unit,
            "Dimensions": [{"value": value, "name": name} for name, value in alarm.dimensions],
            "Period": alarm.period_seconds,
            "EvaluationPeriods": alarm.evaluation_periods,
            "DatapointsToAlarm": alarm.datapoints_to_alarm,
            "ComparisonOperator": alarm.comparison_operator,
            "Threshold": alarm.threshold,
            "TreatMissingData": alarm.treat_missing_data,
            "EvaluateLowSampleCountPercentile": "",
        },
    }


def evaluation_window_end(now: datetime, period_seconds: int) -> datetime:
    """Where the sliding evaluation window of an alarm evaluated at `now` ends.

    CloudWatch's default window (SlidingWindow) "advances each time the alarm is evaluated",
    and alarms are evaluated once a minute: the newest period is the one that ends at the
    evaluation minute (periods under a minute end on a multiple of the period). Of a daily
    alarm evaluated at 22:00 the newest period is yesterday 22:00 - today 22:00.
    """
    granularity = min(period_seconds, 60)
    epoch_seconds = int(_as_utc(now).timestamp())
    return datetime.fromtimestamp(epoch_seconds - epoch_seconds % granularity, tz=UTC)


@dataclass(frozen=True)
class AlarmRun:
    """What one evaluation of one alarm did."""

    alarm: AlarmDefinition
    evaluation: AlarmEvaluation
    evaluated_at: datetime
    # Present only when the state changed (CloudWatch notifies on changes only).
    message: dict[str, Any] | None = None
    subject: str | None = None
    published_to: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.evaluation.changed


class CloudWatchAlarmEvaluator:
    """Evaluates alarms stored in CloudWatch (moto) the way CloudWatch would, at a given time.

    ``cloudwatch`` and ``sns`` are boto3 clients. Call ``evaluate_all(now)`` on every tick of
    the local cloud's clock (virtual or real), or ``evaluate(name, now)`` for one alarm.
    """

    def __init__(
        self, cloudwatch: Any, sns: Any, *, region: str | None = None, account_id: str | None = None
    ):
        self._cloudwatch = cloudwatch
        self._sns = sns
        self._region = region or cloudwatch.meta.region_name
        self._account_id = account_id
        self.unsupported: dict[str, str] = {}

    def evaluate_all(self, now: datetime) -> list[AlarmRun]:
        """Evaluate every metric alarm; one the local cloud cannot evaluate is skipped and
        recorded in ``unsupported`` (name -> why, for this evaluation) instead of stopping the others."""
        self.unsupported = {}
        alarms = []
        for entry in self._describe_metric_alarms():
            try:
                alarms.append((entry, AlarmDefinition.from_describe_alarms(entry)))
            except (NotImplementedError, ValueError) as problem:
                self.unsupported[str(entry.get("AlarmName"))] = str(problem)
        periods = self.range_values([alarm for _, alarm in alarms], now)
        return [
            self._evaluate_entry(entry, alarm, values, newest_start, now)
            for (entry, alarm), (values, newest_start) in zip(alarms, periods, strict=True)
        ]

    def evaluate(self, alarm_name: str, now: datetime) -> AlarmRun:
        entries = self._cloudwatch.describe_alarms(AlarmNames=[alarm_name], AlarmTypes=["MetricAlarm"])[
            "MetricAlarms"
        ]
        if not entries:
            raise LookupError(f"No metric alarm named {alarm_name!r} in CloudWatch.")
        alarm = AlarmDefinition.from_describe_alarms(entries[0])
        [(values, newest_start)] = self.range_values([alarm], now)
        return self._evaluate_entry(entries[0], alarm, values, newest_start, now)

    def range_values(
        self, alarms: Sequence[AlarmDefinition], now: datetime
    ) -> list[tuple[list[float | None], datetime]]:
        """For each alarm, its statistic per period of the evaluation range (oldest first,
        None for no data) and the start of the newest period, for an evaluation at `now`.

        One GetMetricData call per distinct Period, starting where the longest range of
        those alarms starts: moto buckets a query's data in steps of Period from StartTime,
        so every bucket is one of CloudWatch's sliding-window periods.
        """
        results: list[tuple[list[float | None], datetime]] = [([], _as_utc(now))] * len(alarms)
        by_period: dict[int, list[int]] = {}
        for index, alarm in enumerate(alarms):
            by_period.setdefault(alarm.period_seconds, []).append(index)
        for period_seconds, indexes in by_period.items():
            period = timedelta(seconds=period_seconds)
            end = evaluation_window_end(now, period_seconds)
            span = max(alarms[index].evaluation_range_periods for index in indexes)
            start = end - span * period
            queries = [_metric_query(f"alarm{index}", alarms[index]) for index in indexes]
            found = self._metric_data(queries, start, end, period_seconds)
            for index in indexes:
                length = alarms[index].evaluation_range_periods
                values = [found.get((f"alarm{index}", slot)) for slot in range(span - length, span)]
                results[index] = (values, end - period)
        return results

    def _metric_data(
        self, queries: list[dict[str, Any]], start: datetime, end: datetime, period_seconds: int
    ) -> dict[tuple[str, int], float]:
        """GetMetricData values keyed by (query id, period index counted from `start`)."""
        found: dict[tuple[str, int], float] = {}
        request: dict[str, Any] = {
            "MetricDataQueries": queries,
            "StartTime": start,
            "EndTime": end,
            "ScanBy": "TimestampAscending",
        }
        while True:
            response = self._cloudwatch.get_metric_data(**request)
            for result in response["MetricDataResults"]:
                for timestamp, value in zip(result["Timestamps"], result["Values"], strict=True):
                    offset = (_as_utc(timestamp) - start).total_seconds()
                    if 0 <= offset < (end - start).total_seconds():
                        found[(result["Id"], int(offset // period_seconds))] = float(value)
            if not response.get("NextToken"):
                return found
            request["NextToken"] = response["NextToken"]

    def _describe_metric_alarms(self) -> Iterable[Mapping[str, Any]]:
        paginator = self._cloudwatch.get_paginator("describe_alarms")
        for page in paginator.paginate(AlarmTypes=["MetricAlarm"]):
            yield from page.get("MetricAlarms", [])

    def _evaluate_entry(
        self,
        entry: Mapping[str, Any],
        alarm: AlarmDefinition,
        values: list[float | None],
        newest_start: datetime,
        now: datetime,
    ) -> AlarmRun:
        now = _as_utc(now)
        current_state = self._current_state(entry)
        evaluation = evaluate_alarm(alarm, current_state, values, newest_period_start=newest_start)
        if not evaluation.changed:
            return AlarmRun(alarm=alarm, evaluation=evaluation, evaluated_at=now)

        self._cloudwatch.set_alarm_state(
            AlarmName=alarm.name,
            StateValue=evaluation.state,
            StateReason=evaluation.reason,
            StateReasonData=evaluation.reason_data(now),
        )
        account_id = self._account_id or _account_from_arn(alarm.arn) or "000000000000"
        message = alarm_state_change_message(
            alarm, evaluation, region=self._region, account_id=account_id, state_change_time=now
        )
        subject = notification_subject(evaluation.state, alarm.name, self._region)
        published = []
        if alarm.actions_enabled:
            for action in alarm.actions_for(evaluation.state):
                if _is_sns_topic(action):
                    self._sns.publish(TopicArn=action, Subject=subject, Message=json.dumps(message))
                    published.append(action)
        return AlarmRun(
            alarm=alarm,
            evaluation=evaluation,
            evaluated_at=now,
            message=message,
            subject=subject,
            published_to=tuple(published),
        )

    def _current_state(self, entry: Mapping[str, Any]) -> str:
        state = str(entry.get("StateValue") or STATE_INSUFFICIENT_DATA)
        if state == STATE_OK and entry.get("StateReason") == MOTO_INITIAL_REASON:
            # CloudWatch creates alarms in INSUFFICIENT_DATA; moto says OK. Correct the record
            # quietly (no notification: creation is not a transition) so the first real
            # evaluation starts where CloudWatch's would.
            self._cloudwatch.set_alarm_state(
                AlarmName=entry["AlarmName"],
                StateValue=STATE_INSUFFICIENT_DATA,
                StateReason=MOTO_INITIAL_REASON,
            )
            return STATE_INSUFFICIENT_DATA
        return state


def _metric_query(query_id: str, alarm: AlarmDefinition) -> dict[str, Any]:
    stat: dict[str, Any] = {
        "Metric": {
            "Namespace": alarm.namespace,
            "MetricName": alarm.metric_name,
            "Dimensions": [{"Name": name, "Value": value} for name, value in alarm.dimensions],
        },
        "Period": alarm.period_seconds,
        "Stat": alarm.statistic,
    }
    if alarm.unit:
        stat["Unit"] = alarm.unit
    return {"Id": query_id, "MetricStat": stat, "ReturnData": True}


def _account_from_arn(arn: str | None) -> str | None:
    parts = (arn or "").split(":")
    return parts[4] if len(parts) > 5 and parts[4] else None


def _is_sns_topic(action: str) -> bool:
    parts = action.split(":")
    return len(parts) >= 6 and parts[0] == "arn" and parts[2] == "sns"

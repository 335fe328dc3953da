"""A batch's event time: the time its metrics are stamped with.

In order: the object metadata ``batch-time``, else the latest value of the model's
timestamp column, else the upload time. A batch whose event time CloudWatch would
refuse (over two weeks old, over two hours ahead) is a backfill: it is scored and
reported, but publishes nothing, so it never moves a live alarm (falling back to the
upload time would put a 2018 batch's error into this hour and clear StalenessAlarm).

Values of the timestamp column further ahead of the processing time than CloudWatch
takes are not the batch's time but placeholders (9999-12-31 for "no end") or clock
errors: the latest of the others is the event time, and the report says how many were
left out. Taking the latest value as it is, one such row made the whole batch a
backfill that published nothing, and StalenessAlarm fired a day later for a feed that
was arriving all along.

An event time in the past is taken as it is, however far (within the two weeks): it may
be a deliberate backfill. But the quality, estimate and drift alarms only look back over
``alarm_lookback``; a batch stamped earlier than that moves none of them, so its report
says so (``lag_note``) and the monitor publishes EventTimeLagSeconds at the processing
time, where EventTimeLagAlarm sees it. A time without a UTC offset is read as UTC (its
zone cannot be known): a local time west of UTC written that way lands hours in the
past, one of the causes the note names. Whatever the lag, the report says when the
event time came from a value without an offset (a local time east of UTC lands hours
ahead, which no lag shows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from modelwatch.publishing import NEWEST_ACCEPTED, cloudwatch_accepts

# CloudWatch's evaluation range: an alarm of N periods reads N + 2 of them, but no further
# back than a day (or N periods, if those are longer); modelwatch.local.alarms evaluates
# the same range (DEFAULT_EXTRA_RANGE_PERIODS, which says where it comes from). A datapoint
# stamped earlier than that before the batch is processed is never evaluated.
EXTRA_EVALUATED_PERIODS = 2
MAX_EVALUATED_SECONDS = 86_400


@dataclass(frozen=True)
class EventTime:
    moment: datetime
    source: str
    notes: list[str] = field(default_factory=list)
    live: bool = True  # CloudWatch accepts the moment: the batch's metrics are published


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time or epoch seconds as UTC; None for anything else (NaN, inf, text)."""
    text = str(value).strip()
    try:
        return datetime.fromtimestamp(float(text), tz=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def without_offset(value: Any) -> bool:
    """Whether ``parse_time`` read ``value`` as UTC for want of an offset: an ISO 8601 time
    without one (epoch seconds count from a fixed instant and need none). Asked of the one
    value that became the event time, not of every value (parse_time is per value)."""
    text = str(value).strip()
    try:
        float(text)
        return False
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is None
    except ValueError:
        return False


class TimestampScan:
    """The latest value of the timestamp column, over a batch read whole or a chunk at a time.

    With ``now`` (the processing time), values later than CloudWatch takes (``now`` plus
    two hours) are counted in ``ahead`` instead: placeholders and clock errors, not the
    batch's time (module docstring)."""

    def __init__(self, timestamp_column: str | None, now: datetime | None = None):
        self.column = timestamp_column
        self.seen = False  # the batch has the column
        self.latest: datetime | None = None
        self.latest_without_offset: str | None = None  # the latest value as written, when it had no offset
        self.horizon = now + NEWEST_ACCEPTED if now is not None else None
        self.ahead = 0  # values after the horizon, left out
        self.latest_ahead: datetime | None = None  # the latest of them, for the report

    def add(self, frame: pd.DataFrame) -> None:
        if not self.column or self.column not in frame.columns:
            return
        self.seen = True
        # Value by value: a column may mix ISO 8601 forms and epoch seconds.
        values = frame[self.column].dropna().tolist()
        parsed = list(map(parse_time, values))
        stamps = [stamp for stamp in parsed if stamp is not None]
        if self.horizon is not None:
            horizon = self.horizon
            ahead = [stamp for stamp in stamps if stamp > horizon]
            if ahead:
                self.ahead += len(ahead)
                latest_ahead = max(ahead)
                self.latest_ahead = (
                    latest_ahead if self.latest_ahead is None else max(self.latest_ahead, latest_ahead)
                )
                stamps = [stamp for stamp in stamps if stamp <= horizon]
        if stamps:
            latest = max(stamps)
            if self.latest is None or latest > self.latest:
                self.latest = latest
                # The value as written, for the note when it had no offset (the first read as that time).
                value = values[parsed.index(latest)]
                self.latest_without_offset = str(value).strip() if without_offset(value) else None


def resolve_event_time(
    frame: pd.DataFrame,
    batch_time: str | None,
    timestamp_column: str | None,
    upload_time: datetime,
    now: datetime,
) -> EventTime:
    scan = TimestampScan(timestamp_column, now)
    scan.add(frame)
    return event_time_of(scan, batch_time, upload_time, now)


def event_time_of(
    scan: TimestampScan, batch_time: str | None, upload_time: datetime, now: datetime
) -> EventTime:
    timestamp_column = scan.column
    notes: list[str] = []
    candidate: datetime | None = None
    source = "upload time"
    no_offset: tuple[str, str] | None = None  # (where, the value as written)
    if batch_time:
        candidate = parse_time(batch_time)
        source = "batch-time metadata"
        if candidate is None:
            notes.append(
                f"object metadata batch-time {batch_time!r} is not an ISO 8601 time or epoch seconds"
            )
        elif without_offset(batch_time):
            no_offset = ("object metadata batch-time", batch_time.strip())
    if candidate is None and scan.seen:
        if scan.ahead:
            notes.append(_ahead_note(scan))
        if scan.latest is not None:
            candidate, source = scan.latest, f"latest {timestamp_column!r} value"
            if scan.latest_without_offset is not None:
                no_offset = (
                    f"timestamp column {timestamp_column!r} (its latest value)",
                    scan.latest_without_offset,
                )
        elif not scan.ahead:
            notes.append(
                f"no value of the timestamp column {timestamp_column!r} is an ISO 8601 time or epoch seconds"
            )
    if candidate is None:
        candidate, source = upload_time, "upload time"
    elif no_offset is not None:
        notes.append(_without_offset_note(*no_offset, candidate))
    if cloudwatch_accepts(candidate, now):
        return EventTime(candidate, source, notes)
    notes.append(
        f"event time {candidate.isoformat()} (from {source}) is outside what CloudWatch accepts "
        "(two weeks old to two hours ahead): this batch is reported but publishes no metrics, "
        "so it cannot move a live alarm"
    )
    return EventTime(candidate, source, notes, live=False)


def _without_offset_note(where: str, value: str, moment: datetime) -> str:
    # Read as UTC, as before: the zone cannot be known. The note is what makes a local time
    # visible when its offset is smaller than the alarms' look-back (the lag note's threshold).
    return (
        f"the event time comes from the {where} {value!r}, which has no UTC offset, so it was taken "
        f"as UTC ({moment.isoformat()}). If it is a local time, this batch's metrics are stamped "
        "that zone's offset away from when its rows happened (at UTC+9, 9 h later), in alarm periods "
        "where they do not belong. Fix: write the offset (2026-11-30T09:00:00+09:00) or Z for UTC "
        "(2026-11-30T00:00:00Z)"
    )


def _ahead_note(scan: TimestampScan) -> str:
    rest = (
        f"the event time is the latest of the others, {scan.latest.isoformat()}"
        if scan.latest is not None
        else "no other value is a time, so the event time is the upload time"
    )
    latest = scan.latest_ahead.isoformat() if scan.latest_ahead is not None else ""
    return (
        f"{scan.ahead} value(s) of the timestamp column {scan.column!r} (the latest {latest}) are more "
        "than two hours after this batch was processed, which CloudWatch would refuse: they are not used "
        f"for the event time (a placeholder such as 9999-12-31 is not when the rows happened), and {rest}. "
        "Write the rows' real times there, or leave the cells empty"
    )


def evaluated_periods(alarm_period_seconds: int, evaluation_periods: int) -> int:
    """How many periods back from now the quality, estimate and drift alarms read datapoints."""
    within_a_day = max(evaluation_periods, MAX_EVALUATED_SECONDS // alarm_period_seconds)
    return min(evaluation_periods + EXTRA_EVALUATED_PERIODS, within_a_day)


def alarm_lookback(alarm_period_seconds: int, evaluation_periods: int) -> timedelta:
    """How far back from now the quality, estimate and drift alarms read datapoints."""
    return timedelta(
        seconds=evaluated_periods(alarm_period_seconds, evaluation_periods) * alarm_period_seconds
    )


def lag_note(
    event_time: EventTime, lag: timedelta, alarm_period_seconds: int, evaluation_periods: int
) -> str:
    """The report's note for a batch stamped earlier than the alarms look back (``lag`` beyond it)."""
    periods = evaluated_periods(alarm_period_seconds, evaluation_periods)
    return (
        f"the event time {event_time.moment.isoformat()} (from {event_time.source}) is "
        f"{_hours(lag)} before this batch was processed, more than the alarms look back over "
        f"({periods} periods of AlarmPeriodSeconds {alarm_period_seconds} s = "
        f"{_hours(alarm_lookback(alarm_period_seconds, evaluation_periods))}: EvaluationPeriods "
        f"{evaluation_periods} + {EXTRA_EVALUATED_PERIODS}, within a day): its datapoints are outside "
        "the alarms' window, "
        "so QualityAlarm, EstimatedQualityAlarm and DriftAlarm never evaluate this batch, while "
        "StalenessAlarm counts it as processed (EventTimeLagSeconds, published now, is what "
        "EventTimeLagAlarm watches). Likely causes: times in the timestamp column or batch-time written "
        "in local time without a UTC offset (read as UTC, so a zone west of UTC lands hours in the "
        "past), a business date instead of when the rows happened, or a feed delivered that late. "
        "Fix: write times with their offset (2026-12-01T09:00:00-08:00) or in UTC and set batch-time "
        "to when the rows were scored; for a feed that is always this late, deliver it sooner or "
        "raise AlarmPeriodSeconds x EvaluationPeriods to cover the delay. A one-off backfill can "
        "ignore this note"
    )


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:.1f} h"

"""A batch's event time: the time its metrics are stamped with.

In order: the object metadata ``batch-time``, else the latest value of the model's
timestamp column, else the upload time. A batch whose event time CloudWatch would
refuse (over two weeks old, over two hours ahead) is a backfill: it is scored and
reported, but publishes nothing, so it never moves a live alarm (falling back to the
upload time would put a 2018 batch's error into this hour and clear StalenessAlarm).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from modelwatch.publishing import cloudwatch_accepts


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


class TimestampScan:
    """The latest value of the timestamp column, over a batch read whole or a chunk at a time."""

    def __init__(self, timestamp_column: str | None):
        self.column = timestamp_column
        self.seen = False  # the batch has the column
        self.latest: datetime | None = None

    def add(self, frame: pd.DataFrame) -> None:
        if not self.column or self.column not in frame.columns:
            return
        self.seen = True
        # Value by value: a column may mix ISO 8601 forms and epoch seconds.
        stamps = [stamp for stamp in map(parse_time, frame[self.column].dropna()) if stamp is not None]
        if stamps:
            latest = max(stamps)
            self.latest = latest if self.latest is None else max(self.latest, latest)


def resolve_event_time(
    frame: pd.DataFrame,
    batch_time: str | None,
    timestamp_column: str | None,
    upload_time: datetime,
    now: datetime,
) -> EventTime:
    scan = TimestampScan(timestamp_column)
    scan.add(frame)
    return event_time_of(scan, batch_time, upload_time, now)


def event_time_of(
    scan: TimestampScan, batch_time: str | None, upload_time: datetime, now: datetime
) -> EventTime:
    timestamp_column = scan.column
    notes: list[str] = []
    candidate: datetime | None = None
    source = "upload time"
    if batch_time:
        candidate = parse_time(batch_time)
        source = "batch-time metadata"
        if candidate is None:
            notes.append(
                f"object metadata batch-time {batch_time!r} is not an ISO 8601 time or epoch seconds"
            )
    if candidate is None and scan.seen:
        if scan.latest is not None:
            candidate, source = scan.latest, f"latest {timestamp_column!r} value"
        else:
            notes.append(
                f"no value of the timestamp column {timestamp_column!r} is an ISO 8601 time or epoch seconds"
            )
    if candidate is None:
        candidate, source = upload_time, "upload time"
    if cloudwatch_accepts(candidate, now):
        return EventTime(candidate, source, notes)
    notes.append(
        f"event time {candidate.isoformat()} (from {source}) is outside what CloudWatch accepts "
        "(two weeks old to two hours ahead): this batch is reported but publishes no metrics, "
        "so it cannot move a live alarm"
    )
    return EventTime(candidate, source, notes, live=False)

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


def resolve_event_time(
    frame: pd.DataFrame,
    batch_time: str | None,
    timestamp_column: str | None,
    upload_time: datetime,
    now: datetime,
) -> EventTime:
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
    if candidate is None and timestamp_column and timestamp_column in frame.columns:
        # Value by value: a column may mix ISO 8601 forms and epoch seconds.
        stamps = [stamp for stamp in map(parse_time, frame[timestamp_column].dropna()) if stamp is not None]
        if stamps:
            candidate, source = max(stamps), f"latest {timestamp_column!r} value"
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

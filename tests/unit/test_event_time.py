"""The batch's event time from a timestamp column read a chunk at a time, with values far
ahead of the processing time left out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from modelwatch.event_time import TimestampScan, alarm_lookback, event_time_of
from modelwatch.local.alarms import AlarmDefinition

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
UPLOADED = NOW - timedelta(minutes=1)


def scan_of(*chunks: list[str]) -> TimestampScan:
    scan = TimestampScan("ts", NOW)
    for values in chunks:
        scan.add(pd.DataFrame({"ts": values}))
    return scan


def test_values_far_ahead_are_counted_across_chunks_and_the_latest_of_the_rest_is_the_event_time():
    scan = scan_of(
        ["2026-11-30T11:00:00Z", "9999-12-31"],
        # 1 h 50 min ahead is within CloudWatch's two hours; 2 h 10 min is not
        ["2026-11-30T13:50:00Z", "2026-11-30T14:10:00Z", "2030-01-01T00:00:00Z"],
    )

    event_time = event_time_of(scan, None, UPLOADED, NOW)

    assert event_time.moment == datetime(2026, 11, 30, 13, 50, tzinfo=UTC) and event_time.live
    assert (scan.ahead, scan.latest_ahead) == (3, datetime(9999, 12, 31, tzinfo=UTC))
    [note] = event_time.notes
    assert note.startswith("3 value(s) of the timestamp column 'ts' (the latest 9999-12-31T00:00:00+00:00)")
    assert "the latest of the others, 2026-11-30T13:50:00+00:00" in note


def test_only_values_far_ahead_fall_back_to_the_upload_time_with_one_note():
    event_time = event_time_of(scan_of(["9999-12-31"], ["9999-12-31"]), None, UPLOADED, NOW)

    assert (event_time.moment, event_time.source, event_time.live) == (UPLOADED, "upload time", True)
    [note] = event_time.notes
    assert note.startswith("2 value(s)") and "the event time is the upload time" in note


def test_batch_time_metadata_wins_over_the_column_without_a_note_on_it():
    event_time = event_time_of(scan_of(["9999-12-31"]), "2026-11-30T11:30:00Z", UPLOADED, NOW)

    assert event_time.source == "batch-time metadata" and event_time.notes == []


@pytest.mark.parametrize(
    ("period", "periods", "lookback"),
    [
        (3600, 3, timedelta(hours=5)),  # the defaults: 3 + 2 periods of an hour
        (300, 1, timedelta(minutes=15)),
        (28800, 3, timedelta(hours=24)),  # 5 periods of 8 h would reach back past a day
        (43200, 2, timedelta(hours=24)),
        (86400, 1, timedelta(hours=24)),  # never less than the alarm's own periods
    ],
)
def test_the_alarms_look_back_over_their_periods_and_two_more_within_a_day(period, periods, lookback):
    assert alarm_lookback(period, periods) == lookback
    # as the local alarm evaluator reads its range (CloudWatch's, modelwatch.local.alarms)
    alarm = AlarmDefinition(
        name="a",
        namespace="n",
        metric_name="m",
        dimensions=(),
        statistic="Minimum",
        period_seconds=period,
        evaluation_periods=periods,
        threshold=1.0,
        comparison_operator="GreaterThanThreshold",
    )
    assert alarm.evaluation_range_periods * period == lookback.total_seconds()

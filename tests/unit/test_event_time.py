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


NO_OFFSET = "which has no UTC offset, so it was taken as UTC"


def no_offset_notes(notes: list[str]) -> list[str]:
    return [note for note in notes if NO_OFFSET in note]


@pytest.mark.parametrize(
    ("written", "noted"),
    [
        ("2026-11-30 09:00:00", True),
        ("2026-11-30T09:00:00", True),
        ("2026-11-30T09:00:00Z", False),
        ("2026-11-30T18:00:00+09:00", False),  # the same instant, written in UTC+9
        ("1796029200", False),  # epoch seconds: the same instant, no zone to get wrong
    ],
)
def test_a_batch_time_without_an_offset_is_still_read_as_utc_but_the_report_says_so(written, noted):
    event_time = event_time_of(scan_of(), written, UPLOADED, NOW)

    # The interpretation does not change: every form is 09:00 UTC
    assert event_time.moment == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert event_time.source == "batch-time metadata"
    notes = no_offset_notes(event_time.notes)
    if not noted:
        assert notes == []
        return
    [note] = notes
    assert f"object metadata batch-time {written!r}" in note
    assert "(2026-11-30T09:00:00+00:00)" in note  # what it was taken as
    assert "+09:00" in note and "Z for UTC" in note  # how to fix it


@pytest.mark.parametrize(
    ("written", "noted"),
    [
        ("2026-11-30 09:00:00", True),
        ("2026-11-30T09:00:00Z", False),
        ("2026-11-30T18:00:00+09:00", False),
    ],
)
def test_a_timestamp_column_value_without_an_offset_is_noted_when_it_is_the_event_time(written, noted):
    # The latest value is the event time; an earlier value without an offset is not it
    event_time = event_time_of(scan_of(["2026-11-30 08:00:00"], [written]), None, UPLOADED, NOW)

    assert event_time.moment == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    notes = no_offset_notes(event_time.notes)
    if not noted:
        assert notes == []
        return
    [note] = notes
    assert f"timestamp column 'ts' (its latest value) {written!r}" in note
    assert "(2026-11-30T09:00:00+00:00)" in note


def test_the_column_note_follows_the_latest_value_across_chunks():
    # A value without an offset that a later chunk's value overtakes is not the event time ...
    overtaken = event_time_of(scan_of(["2026-11-30 09:00:00"], ["2026-11-30T10:00:00Z"]), None, UPLOADED, NOW)
    assert overtaken.moment == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert no_offset_notes(overtaken.notes) == []
    # ... while one that stays the latest is, whatever came before it
    latest = event_time_of(scan_of(["2026-11-30T08:00:00Z"], ["2026-11-30 10:00:00"]), None, UPLOADED, NOW)
    assert latest.moment == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    [note] = no_offset_notes(latest.notes)
    assert "'2026-11-30 10:00:00'" in note


def test_a_placeholder_without_an_offset_left_out_of_the_event_time_is_not_noted_as_its_source():
    event_time = event_time_of(scan_of(["2026-11-30T11:00:00Z", "9999-12-31"]), None, UPLOADED, NOW)

    assert event_time.moment == datetime(2026, 11, 30, 11, 0, tzinfo=UTC)
    assert no_offset_notes(event_time.notes) == []

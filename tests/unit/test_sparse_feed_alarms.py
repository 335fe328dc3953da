"""A feed with one batch a day is judged: the template's quality, estimate and drift alarms
evaluated as CloudWatch does (modelwatch.local.alarms, checked against the user guide's
missing-data tables in test_alarm_evaluator.py).

With missing data ignored, CloudWatch looks back only EvaluationPeriods + 2 periods (at most
a day), so a daily batch is the one datapoint it sees. At DatapointsToAlarm 2 (the default
before) that single breaching datapoint kept the alarm OK for ever: a broken model behind a
green light.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from modelwatch.local.alarms import AlarmDefinition, evaluate_alarm
from tests.cloudformation import Resolver
from tests.template_resources import load_template

FIRST_PERIOD = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
ALARMS = ("QualityAlarm", "EstimatedQualityAlarm", "DriftAlarm")


def template_alarm(logical_id: str, **parameters: str) -> AlarmDefinition:
    template = load_template()
    properties = Resolver(template, **parameters).resolve(template["Resources"][logical_id]["Properties"])
    return AlarmDefinition.from_cloudformation(properties)


def daily(values: list[float]) -> list[float | None]:
    """One value per day in hourly periods (the template's default period), oldest first."""
    periods: list[float | None] = []
    for value in values:
        periods.extend([value] + [None] * 23)
    return periods[: 24 * (len(values) - 1) + 1]  # up to the newest batch's period


def states_after_each_day(alarm: AlarmDefinition, values: list[float]) -> list[str]:
    """The alarm's state at the end of each batch's period, and in the hours after it."""
    assert alarm.period_seconds == 3600
    periods, state, states = daily(values), "INSUFFICIENT_DATA", []
    for index in range(len(periods)):
        start = FIRST_PERIOD + timedelta(hours=index)
        state = evaluate_alarm(alarm, state, periods[: index + 1], newest_period_start=start).state
        if index % 24 == 0:
            states.append(state)
    return states


@pytest.mark.parametrize("logical_id", ALARMS)
def test_a_daily_feed_alarms_on_its_first_bad_batch_and_recovers_on_a_good_one(logical_id):
    alarm = template_alarm(logical_id)
    assert (alarm.evaluation_periods, alarm.datapoints_to_alarm) == (3, 1)  # the template's defaults
    assert alarm.comparison_operator == "GreaterThanThreshold" and alarm.threshold == 0.2
    # good, good, bad, bad, good: one batch a day
    assert states_after_each_day(alarm, [0.1, 0.1, 0.5, 0.5, 0.1]) == ["OK", "OK", "ALARM", "ALARM", "OK"]


@pytest.mark.parametrize("logical_id", ALARMS)
def test_at_two_datapoints_to_alarm_a_daily_feed_never_alarms(logical_id):
    # Why the default is 1: the look-back never holds two daily batches.
    alarm = template_alarm(logical_id, DatapointsToAlarm="2")
    assert states_after_each_day(alarm, [0.1, 0.5, 0.5, 0.5, 0.5]) == ["OK"] * 5

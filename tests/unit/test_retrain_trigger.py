"""When retraining starts, and from where: the template's QualityAlarm evaluated period by
period (modelwatch.local.alarms, CloudWatch's semantics), its state-change messages fed to
the retrain function's decision. Also the holdout's and the comparison's rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from modelwatch.local.alarms import AlarmDefinition, alarm_state_change_message, evaluate_alarm
from modelwatch.retraining import degradation_start, higher_is_better, holdout_mask, retrain_trigger
from tests.cloudformation import Resolver
from tests.template_resources import load_template

ACCURACIES = [0.95, 0.93, 0.88, 0.85, 0.80]
FIRST_PERIOD = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def quality_alarm(**parameters: str) -> AlarmDefinition:
    template = load_template()
    resolver = Resolver(template, **parameters)
    return AlarmDefinition.from_cloudformation(
        resolver.resolve(template["Resources"]["QualityAlarm"]["Properties"])
    )


def messages_per_period(alarm: AlarmDefinition) -> list[str | None]:
    """The SNS message CloudWatch sends at the end of each period (None: no state change)."""
    import json

    state, sent = "INSUFFICIENT_DATA", []
    for index in range(len(ACCURACIES)):
        start = FIRST_PERIOD + timedelta(hours=index)
        evaluation = evaluate_alarm(alarm, state, ACCURACIES[: index + 1], newest_period_start=start)
        message = None
        if evaluation.changed:
            document = alarm_state_change_message(
                alarm, evaluation, region="us-east-1", account_id="123456789012",
                state_change_time=start + timedelta(hours=1),
            )  # fmt: skip
            message = json.dumps(document)
        sent.append(message)
        state = evaluation.state
    return sent


@pytest.mark.parametrize(
    ("periods", "alarm_at_period"),
    [
        # The template's defaults: 1 of the last 3 hourly periods. 0.85 is the first breach
        # (<= 0.85): ALARM at the end of the fourth period.
        ({}, 4),
        # 2 of 3: 0.80 is the second breach, ALARM at the end of the fifth.
        ({"DatapointsToAlarm": "2"}, 5),
        # One period looked at: ALARM at the end of the fourth.
        ({"EvaluationPeriods": "1", "DatapointsToAlarm": "1"}, 4),
    ],
    ids=["1-of-3", "2-of-3", "1-of-1"],
)
def test_accuracy_falling_to_the_threshold_retrains_from_the_fourth_period_not_before(
    periods, alarm_at_period
):
    # Given QualityAlarm on Accuracy <= 0.85 and per-period accuracies 0.95 0.93 0.88 0.85 0.80
    alarm = quality_alarm(
        QualityMetric="Accuracy",
        QualityComparison="LessThanOrEqualToThreshold",
        QualityThreshold="0.85",
        **periods,
    )

    # When each period's state change reaches the retrain function
    decisions = [
        None if message is None else retrain_trigger(message, (alarm.name,))
        for message in messages_per_period(alarm)
    ]

    # Then only the ALARM starts a retrain, and its training window starts at the fourth period
    started = [index + 1 for index, decision in enumerate(decisions) if decision and decision[0] is not None]
    assert started == [alarm_at_period]
    triggering = decisions[alarm_at_period - 1]
    assert triggering is not None and triggering[0] is not None
    assert degradation_start(triggering[0]) == FIRST_PERIOD + timedelta(hours=3)
    # and the first period's INSUFFICIENT_DATA -> OK is no reason to retrain
    assert decisions[0] is not None and decisions[0][0] is None and "not ALARM" in decisions[0][1]


def test_an_alarm_not_named_in_retrain_on_alarm_starts_nothing():
    alarm = quality_alarm(QualityThreshold="0.5")
    message = next(m for m in messages_per_period(alarm) if m is not None)
    assert retrain_trigger(message, ("some-other-alarm",))[0] is None


def test_the_quality_comparison_gives_the_metrics_direction():
    # An alarm on "greater than" watches an error (lower is better), "less than" a score.
    assert not higher_is_better("GreaterThanThreshold") and not higher_is_better(
        "GreaterThanOrEqualToThreshold"
    )
    assert higher_is_better("LessThanThreshold") and higher_is_better("LessThanOrEqualToThreshold")


def test_the_holdout_is_the_newest_fifth_in_whole_batches_and_at_least_200_rows():

    hour = np.timedelta64(1, "h")
    start = np.datetime64("2026-11-30T00:00", "ns")
    # Ten batches of 300 rows: the newest 600 rows are exactly the last two batches.
    times = np.repeat([start + index * hour for index in range(10)], 300)
    assert holdout_mask(times).sum() == 600
    assert holdout_mask(times)[-600:].all()
    # Seven batches of 300: 20% is 420 rows, reached inside the 6th batch, held out whole.
    times = np.repeat([start + index * hour for index in range(7)], 300)
    assert holdout_mask(times).sum() == 600
    # 500 rows: 20% is 100, but at least 200 are held out (here: two whole batches of 100).
    times = np.repeat([start + index * hour for index in range(5)], 100)
    assert holdout_mask(times).sum() == 200
    # Since a degradation that began at the 7th of ten 300-row batches: a fifth of its 1,200
    # rows (240) is held out as the newest whole batch, leaving two degraded ones to learn from.
    times = np.repeat([start + index * hour for index in range(10)], 300)
    began = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    assert holdout_mask(times, since=began).sum() == 300
    assert holdout_mask(times, since=began)[-300:].all()

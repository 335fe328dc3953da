"""The local alarm evaluator against the CloudWatch user guide and real CloudWatch output.

Expected states come from the user guide's tables and text; expected reasons and message
fields come from notifications and state reasons CloudWatch actually produced (quoted in
public code and issues). None of them is taken from this module's own output.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from modelwatch.local.alarms import (
    STATE_ALARM,
    STATE_INSUFFICIENT_DATA,
    STATE_OK,
    STATES,
    AlarmDefinition,
    alarm_state_change_message,
    evaluate_alarm,
    evaluation_window_end,
    format_number,
    notification_subject,
)

NEWEST = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
THRESHOLD = 0.2
BREACHING_VALUE = 0.31
NON_BREACHING_VALUE = 0.05


def make_alarm(**overrides: object) -> AlarmDefinition:
    fields: dict[str, object] = {
        "name": "modelwatch-quality",
        "metric_name": "ErrorRate",
        "namespace": "ModelWatch",
        "statistic": "Average",
        "period_seconds": 300,
        "evaluation_periods": 3,
        "datapoints_to_alarm_setting": 3,
        "comparison_operator": "GreaterThanThreshold",
        "threshold": THRESHOLD,
    }
    fields.update(overrides)
    return AlarmDefinition(**fields)  # type: ignore[arg-type]


def pattern_values(pattern: str) -> list[float | None]:
    """The guide's notation, oldest first: 0 non-breaching, X breaching, - missing."""
    symbols = {"0": NON_BREACHING_VALUE, "X": BREACHING_VALUE, "-": None}
    return [symbols[symbol] for symbol in pattern.split()]


# --------------------------------------------------------------------------------------
# The two tables of "How alarm state is evaluated when data is missing".
#
# Each row: data points (most recent on the right), the documented count in column 2,
# then the state for MISSING, IGNORE, BREACHING, NOT BREACHING. Cells are copied as the
# guide prints them; "Retain current state" means the state before the evaluation.
#
# CURRENT: the live page, Amazon CloudWatch User Guide > Alarm evaluation > "Configuring
# how CloudWatch alarms treat missing data" > "How alarm state is evaluated when data is
# missing" (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
# alarms-and-missing-data.html, identical to the last revision of doc_source/
# AlarmThatSendsEmail.md in github.com/awsdocs/amazon-cloudwatch-user-guide). Column 2 is
# "# of data points that must be filled" (table 1) / "# of missing data points" (table 2),
# both meaning how many of the N evaluated points are filled by the treatment.
CURRENT_3_OF_3 = [
    ("0 - X - X", 0, "OK", "OK", "OK", "OK"),
    ("0 - - - -", 2, "OK", "OK", "OK", "OK"),
    ("- - - - -", 3, "INSUFFICIENT_DATA", "Retain current state", "ALARM", "OK"),
    ("0 X X - X", 0, "ALARM", "ALARM", "ALARM", "ALARM"),
    ("- - X - -", 2, "ALARM", "Retain current state", "ALARM", "OK"),
]
CURRENT_2_OF_3 = [
    ("0 - X - X", 0, "ALARM", "ALARM", "ALARM", "ALARM"),
    ("0 0 X 0 X", 0, "ALARM", "ALARM", "ALARM", "ALARM"),
    ("0 - X - -", 1, "OK", "OK", "ALARM", "OK"),
    ("- - - - 0", 2, "OK", "OK", "ALARM", "OK"),
    ("- - - X -", 2, "ALARM", "Retain current state", "ALARM", "OK"),
]
# EARLIER: the 11-row revision of the same section, doc_source/AlarmThatSendsEmail.md at
# commit 05fd32f63861ca6646c8aa5c94334fd6e0dfdbf5 of github.com/awsdocs/
# amazon-cloudwatch-user-guide. Its column 2 counts the missing points among all 5.
EARLIER_3_OF_3 = [
    ("0 - X - X", 2, "OK", "OK", "OK", "OK"),
    ("0 - - - -", 4, "OK", "OK", "OK", "OK"),
    ("- - - - -", 5, "Insufficient data", "Retain current state", "ALARM", "OK"),
    ("0 X X - X", 1, "ALARM", "ALARM", "ALARM", "ALARM"),
    ("- - - - X", 4, "Insufficient data", "Retain current state", "ALARM", "OK"),
    ("X - - - -", 4, "ALARM", "Retain current state", "ALARM", "OK"),
]
EARLIER_2_OF_3 = [
    ("0 - X - X", 2, "ALARM", "ALARM", "ALARM", "ALARM"),
    ("0 0 X 0 X", 0, "ALARM", "ALARM", "ALARM", "ALARM"),
    ("0 - X - -", 3, "OK", "OK", "ALARM", "OK"),
    ("- - - - 0", 4, "OK", "OK", "ALARM", "OK"),
    ("- - - - X", 4, "Insufficient data", "Retain current state", "ALARM", "OK"),
]
TREATMENT_COLUMNS = ("missing", "ignore", "breaching", "notBreaching")
DOC_STATE = {
    "OK": STATE_OK,
    "ALARM": STATE_ALARM,
    "INSUFFICIENT_DATA": STATE_INSUFFICIENT_DATA,
    "Insufficient data": STATE_INSUFFICIENT_DATA,
}


def _table_cells():
    tables = [
        ("current", 3, CURRENT_3_OF_3),
        ("current", 2, CURRENT_2_OF_3),
        ("earlier", 3, EARLIER_3_OF_3),
        ("earlier", 2, EARLIER_2_OF_3),
    ]
    for revision, datapoints_to_alarm, rows in tables:
        for pattern, _count, *cells in rows:
            for treatment, cell in zip(TREATMENT_COLUMNS, cells, strict=True):
                yield pytest.param(
                    datapoints_to_alarm,
                    pattern,
                    treatment,
                    cell,
                    id=f"{revision}-{datapoints_to_alarm}of3-[{pattern}]-{treatment}",
                )


def table_cells() -> list:
    return list(_table_cells())


def test_every_documented_cell_is_encoded():
    """40 cells in the current tables (2 x 5 rows x 4) and 44 in the earlier (11 rows x 4)."""
    current = sum(len(row) - 2 for row in CURRENT_3_OF_3 + CURRENT_2_OF_3)
    earlier = sum(len(row) - 2 for row in EARLIER_3_OF_3 + EARLIER_2_OF_3)
    assert (current, earlier) == (40, 44)
    assert len(list(table_cells())) == 84


@pytest.mark.parametrize(("datapoints_to_alarm", "pattern", "treatment", "cell"), table_cells())
def test_missing_data_tables_of_the_user_guide(datapoints_to_alarm, pattern, treatment, cell):
    """User guide, "How alarm state is evaluated when data is missing": Period 5 minutes,
    EvaluationPeriods 3, DatapointsToAlarm 3 (first table) or 2 (second), an evaluation
    range of 5 data points."""
    alarm = make_alarm(datapoints_to_alarm_setting=datapoints_to_alarm, treat_missing_data=treatment)
    for current_state in STATES:
        expected = current_state if cell == "Retain current state" else DOC_STATE[cell]
        result = evaluate_alarm(alarm, current_state, pattern_values(pattern), newest_period_start=NEWEST)
        assert result.state == expected, f"from {current_state}"


@pytest.mark.parametrize(
    ("pattern", "datapoints_to_alarm", "documented_fill_count"),
    [(row[0], 3, row[1]) for row in CURRENT_3_OF_3] + [(row[0], 2, row[1]) for row in CURRENT_2_OF_3],
)
def test_filled_points_match_the_current_tables_second_column(
    pattern, datapoints_to_alarm, documented_fill_count
):
    """The current tables' column 2: how many of the 3 evaluated points the treatment fills
    (real points from further back in the range are used first)."""
    alarm = make_alarm(datapoints_to_alarm_setting=datapoints_to_alarm, treat_missing_data="breaching")
    result = evaluate_alarm(alarm, STATE_OK, pattern_values(pattern), newest_period_start=NEWEST)
    assert len(result.evaluated) == 3
    assert sum(1 for p in result.evaluated if p.value is None) == documented_fill_count


def test_earlier_tables_second_column_counts_missing_points_in_the_range():
    for pattern, documented_missing, *_ in EARLIER_3_OF_3 + EARLIER_2_OF_3:
        result = evaluate_alarm(make_alarm(), STATE_OK, pattern_values(pattern), newest_period_start=NEWEST)
        assert sum(1 for p in result.evaluation_range if p.value is None) == documented_missing, pattern


# --------------------------------------------------------------------------------------
# "Avoiding premature transitions to alarm state" (same page): its worked examples.


@pytest.mark.parametrize(
    ("pattern", "datapoints_to_alarm", "expected"),
    [
        # "does not go immediately into ALARM state when the data is either - - - - X or
        # - - - X - and Datapoints to Alarm is 3"
        ("- - - - X", 3, STATE_INSUFFICIENT_DATA),
        ("- - - X -", 3, STATE_INSUFFICIENT_DATA),
        # "if the last few data points are - - X - -, the alarm goes into ALARM state even
        # if missing data points are treated as missing"
        ("- - X - -", 3, STATE_ALARM),
        # the false positive it avoids: the next point is non-breaching
        ("- - - X 0", 3, STATE_OK),
        ("- - X - 0", 3, STATE_OK),
    ],
)
def test_premature_alarm_examples(pattern, datapoints_to_alarm, expected):
    alarm = make_alarm(datapoints_to_alarm_setting=datapoints_to_alarm, treat_missing_data="missing")
    result = evaluate_alarm(
        alarm, STATE_INSUFFICIENT_DATA, pattern_values(pattern), newest_period_start=NEWEST
    )
    assert result.state == expected


# --------------------------------------------------------------------------------------
# "Evaluating an alarm": the figure.


def test_figure_of_evaluating_an_alarm():
    """User guide, "Alarm evaluation" > "Alarm evaluation settings", the figure: threshold
    3 units, EvaluationPeriods and DatapointsToAlarm both 3. The text says the metric is
    above the threshold in the third through fifth periods (ALARM once all three are), dips
    below at period six (back to OK) and breaches again only in the ninth (stays OK).
    The values below are chosen to have exactly that shape."""
    alarm = make_alarm(threshold=3.0)
    values = [1.0, 2.0, 4.0, 5.0, 4.5, 2.5, 1.5, 2.0, 4.0, 2.0]
    state = STATE_INSUFFICIENT_DATA
    states = []
    for period_number in range(1, len(values) + 1):
        newest = NEWEST + timedelta(minutes=5 * period_number)
        state = evaluate_alarm(alarm, state, values[:period_number], newest_period_start=newest).state
        states.append(state)
    expected = ["OK", "OK", "OK", "OK", "ALARM", "OK", "OK", "OK", "OK", "OK"]
    assert states == expected


# --------------------------------------------------------------------------------------
# Comparison operators, M out of N, the evaluation range, the initial state.


@pytest.mark.parametrize(
    ("comparison", "value", "breaches"),
    [
        ("GreaterThanOrEqualToThreshold", 0.2, True),
        ("GreaterThanOrEqualToThreshold", 0.2000001, True),
        ("GreaterThanOrEqualToThreshold", 0.1999999, False),
        ("GreaterThanThreshold", 0.2, False),
        ("GreaterThanThreshold", 0.2000001, True),
        ("GreaterThanThreshold", 0.1999999, False),
        ("LessThanThreshold", 0.2, False),
        ("LessThanThreshold", 0.2000001, False),
        ("LessThanThreshold", 0.1999999, True),
        ("LessThanOrEqualToThreshold", 0.2, True),
        ("LessThanOrEqualToThreshold", 0.2000001, False),
        ("LessThanOrEqualToThreshold", 0.1999999, True),
    ],
)
def test_comparison_operators_at_and_around_the_threshold(comparison, value, breaches):
    alarm = make_alarm(comparison_operator=comparison, evaluation_periods=1, datapoints_to_alarm_setting=1)
    result = evaluate_alarm(alarm, STATE_INSUFFICIENT_DATA, [value], newest_period_start=NEWEST)
    assert result.state == (STATE_ALARM if breaches else STATE_OK)


@pytest.mark.parametrize(
    "comparison",
    ["LessThanLowerOrGreaterThanUpperThreshold", "LessThanLowerThreshold", "GreaterThanUpperThreshold"],
)
def test_anomaly_band_operators_are_refused_clearly(comparison):
    with pytest.raises(NotImplementedError, match="anomaly detection band"):
        make_alarm(comparison_operator=comparison)


def test_m_out_of_n_needs_m_breaching_points_not_consecutive_ones():
    alarm = make_alarm(evaluation_periods=5, datapoints_to_alarm_setting=3)
    # 3 breaching of the last 5, separated by good periods
    assert (
        evaluate_alarm(alarm, STATE_OK, [0.3, 0.1, 0.3, 0.1, 0.3], newest_period_start=NEWEST).state
        == "ALARM"
    )
    # 2 of the last 5; a third breach just outside the 5 does not count
    assert (
        evaluate_alarm(alarm, STATE_OK, [0.3, 0.1, 0.1, 0.3, 0.1, 0.3], newest_period_start=NEWEST).state
        == "OK"
    )


def test_datapoints_to_alarm_defaults_to_evaluation_periods():
    alarm = make_alarm(datapoints_to_alarm_setting=None)
    assert alarm.datapoints_to_alarm == 3
    assert evaluate_alarm(alarm, STATE_OK, [0.3, 0.3, 0.1], newest_period_start=NEWEST).state == STATE_OK
    assert evaluate_alarm(alarm, STATE_OK, [0.3, 0.3, 0.3], newest_period_start=NEWEST).state == STATE_ALARM


def test_real_points_from_further_back_replace_missing_recent_ones_for_every_treatment():
    """Second rule of the section: with at least N real points in the evaluation range the
    most recent real points decide and the treatment is not used (so notBreaching does not
    turn X X X - - into OK)."""
    for treatment in ("missing", "ignore", "breaching", "notBreaching"):
        alarm = make_alarm(treat_missing_data=treatment)
        result = evaluate_alarm(alarm, STATE_OK, pattern_values("X X X - -"), newest_period_start=NEWEST)
        assert result.state == STATE_ALARM, treatment


def test_points_older_than_the_evaluation_range_are_not_used():
    alarm = make_alarm(treat_missing_data="notBreaching")
    # six periods: the oldest X falls outside the 5-period range, leaving 2 real points
    result = evaluate_alarm(alarm, STATE_ALARM, pattern_values("X X X - - -"), newest_period_start=NEWEST)
    assert result.state == STATE_OK


def test_a_new_alarm_starts_insufficient_data_and_leaves_it_with_data():
    missing = make_alarm(treat_missing_data="missing")
    nothing = evaluate_alarm(missing, STATE_INSUFFICIENT_DATA, [], newest_period_start=NEWEST)
    assert (nothing.state, nothing.changed) == (STATE_INSUFFICIENT_DATA, False)
    ignore = make_alarm(treat_missing_data="ignore")
    assert evaluate_alarm(ignore, STATE_INSUFFICIENT_DATA, [], newest_period_start=NEWEST).state == (
        STATE_INSUFFICIENT_DATA
    )
    first = evaluate_alarm(ignore, STATE_INSUFFICIENT_DATA, [0.31, 0.35, 0.4], newest_period_start=NEWEST)
    assert (first.state, first.changed, first.previous_state) == (STATE_ALARM, True, STATE_INSUFFICIENT_DATA)


def test_exposes_the_values_a_notifier_shows():
    alarm = make_alarm(datapoints_to_alarm_setting=2)
    result = evaluate_alarm(alarm, STATE_OK, [0.1, None, 0.28, 0.31], newest_period_start=NEWEST)
    assert result.latest_value == 0.31
    assert result.recent_values == (0.1, 0.28, 0.31)
    assert [p.start for p in result.evaluated] == [
        NEWEST,
        NEWEST - timedelta(minutes=5),
        NEWEST - timedelta(minutes=15),
    ]
    reason_data = json.loads(result.reason_data(NEWEST + timedelta(minutes=5, seconds=30)))
    assert reason_data["recentDatapoints"] == [0.1, 0.28, 0.31]
    assert reason_data["evaluatedDatapoints"][0] == {
        "timestamp": "2026-11-26T10:00:00.000+0000",
        "value": 0.31,
    }


# --------------------------------------------------------------------------------------
# Reasons, compared with state reasons CloudWatch produced (quoted in public code/issues).


def at(text: str) -> datetime:
    return datetime.strptime(text, "%d/%m/%y %H:%M:%S").replace(tzinfo=UTC)


def test_reason_for_m_out_of_n_alarm():
    alarm = make_alarm(datapoints_to_alarm_setting=2)
    result = evaluate_alarm(alarm, STATE_OK, [0.1, 0.28, 0.31], newest_period_start=at("26/11/26 10:00:00"))
    assert result.reason == (
        "Threshold Crossed: 2 out of the last 3 datapoints "
        "[0.31 (26/11/26 10:00:00), 0.28 (26/11/26 09:55:00)] "
        "were greater than the threshold (0.2) (minimum 2 datapoints for OK -> ALARM transition)."
    )


def test_reason_for_recovery_counts_the_non_breaching_points():
    # an EC2 CPU alarm's ALARM -> OK notification
    alarm = make_alarm(period_seconds=60, evaluation_periods=1, datapoints_to_alarm_setting=1, threshold=50.0)
    result = evaluate_alarm(alarm, STATE_ALARM, [9.395], newest_period_start=at("10/06/21 04:23:00"))
    assert result.reason == (
        "Threshold Crossed: 1 out of the last 1 datapoints [9.395 (10/06/21 04:23:00)] was not greater than "
        "the threshold (50.0) (minimum 1 datapoint for ALARM -> OK transition)."
    )


def test_reason_for_less_than_or_equal_alarm_from_insufficient_data():
    alarm = make_alarm(
        comparison_operator="LessThanOrEqualToThreshold",
        evaluation_periods=1,
        datapoints_to_alarm_setting=1,
        threshold=70.0,
    )
    result = evaluate_alarm(
        alarm, STATE_INSUFFICIENT_DATA, [6.046241709654764], newest_period_start=at("15/08/18 21:15:00")
    )
    assert result.reason == (
        "Threshold Crossed: 1 out of the last 1 datapoints [6.046241709654764 (15/08/18 21:15:00)] was less "
        "than or equal to the threshold (70.0) (minimum 1 datapoint for OK -> ALARM transition)."
    )


def test_reason_with_missing_points_treated_as_not_breaching():
    alarm = make_alarm(
        comparison_operator="GreaterThanOrEqualToThreshold",
        period_seconds=60,
        evaluation_periods=20,
        datapoints_to_alarm_setting=1,
        threshold=1.0,
        treat_missing_data="notBreaching",
    )
    result = evaluate_alarm(alarm, STATE_OK, [613.0], newest_period_start=at("16/03/24 12:15:00"))
    assert result.reason == (
        "Threshold Crossed: 1 out of the last 20 datapoints [613.0 (16/03/24 12:15:00)] was greater than or "
        "equal to the threshold (1.0) and 19 missing datapoints were treated as [NonBreaching] (minimum 1 "
        "datapoint for OK -> ALARM transition)."
    )


def test_reasons_of_alarms_without_datapoints_to_alarm():
    legacy = make_alarm(period_seconds=180, datapoints_to_alarm_setting=None, threshold=0.0)
    result = evaluate_alarm(legacy, STATE_OK, [1.0, 3.0, 2.0], newest_period_start=at("19/08/26 05:50:00"))
    assert result.reason == (
        "Threshold Crossed: 3 datapoints [2.0 (19/08/26 05:50:00), 3.0 (19/08/26 05:47:00), 1.0 "
        "(19/08/26 05:44:00)] were greater than the threshold (0.0)."
    )
    watermark = make_alarm(
        comparison_operator="LessThanOrEqualToThreshold",
        period_seconds=900,
        evaluation_periods=8,
        datapoints_to_alarm_setting=None,
        threshold=0.0,
        treat_missing_data="breaching",
    )
    result = evaluate_alarm(watermark, STATE_ALARM, [2.0], newest_period_start=at("19/08/26 09:36:00"))
    assert (result.state, result.reason) == (
        STATE_OK,
        "Threshold Crossed: 1 datapoint [2.0 (19/08/26 09:36:00)] was not less than or equal to the "
        "threshold (0.0) and 7 missing datapoints were treated as [Breaching].",
    )


@pytest.mark.parametrize(
    ("treatment", "periods", "previous", "expected_state", "expected_reason"),
    [
        (
            "notBreaching",
            1,
            STATE_ALARM,
            STATE_OK,
            "Threshold Crossed: no datapoints were received for 1 period and 1 missing datapoint was treated "
            "as [NonBreaching].",
        ),
        (
            "breaching",
            2,
            STATE_OK,
            STATE_ALARM,
            "Threshold Crossed: no datapoints were received for 2 periods and 2 missing datapoints were "
            "treated as [Breaching].",
        ),
        ("missing", 5, STATE_OK, STATE_INSUFFICIENT_DATA, "Insufficient Data: 5 datapoints were unknown."),
    ],
)
def test_reasons_when_no_datapoint_arrived(treatment, periods, previous, expected_state, expected_reason):
    alarm = make_alarm(
        evaluation_periods=periods, datapoints_to_alarm_setting=None, treat_missing_data=treatment
    )
    result = evaluate_alarm(alarm, previous, [], newest_period_start=NEWEST)
    assert (result.state, result.reason) == (expected_state, expected_reason)


def test_reason_when_only_filled_points_breach():
    # a counter reading 0 in one period of three, two empty periods treated as breaching, 2 of 3
    alarm = make_alarm(threshold=0.0, datapoints_to_alarm_setting=2, treat_missing_data="breaching")
    result = evaluate_alarm(alarm, STATE_OK, [0.0, None, None], newest_period_start=NEWEST)
    assert result.state == STATE_ALARM
    assert result.reason.endswith(
        "1 datapoint was received for 3 periods and 2 missing datapoints were treated as [Breaching]."
    )


@pytest.mark.parametrize(
    ("value", "java_text"),
    [
        (613.0, "613.0"),
        (0.2, "0.2"),
        (9.395, "9.395"),
        (0.0, "0.0"),
        (1e-4, "1.0E-4"),
        (12345678.0, "1.2345678E7"),
    ],
)
def test_numbers_are_written_like_cloudwatch_writes_them(value, java_text):
    assert format_number(value) == java_text


# --------------------------------------------------------------------------------------
# Definitions from the template and from DescribeAlarms.


def test_definition_from_cloudformation_properties_after_parameter_resolution():
    properties = {
        "AlarmName": "modelwatch-quality",
        "AlarmDescription": "Error rate above threshold",
        "MetricName": "ErrorRate",
        "Namespace": "ModelWatch",
        "Statistic": "Average",
        "Dimensions": [{"Name": "ModelName", "Value": "churn"}],
        "Period": "3600",  # parameters arrive as strings
        "EvaluationPeriods": "3",
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": "0.2",
        "TreatMissingData": "ignore",
        "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:alerts"],
        "OKActions": ["arn:aws:sns:us-east-1:123456789012:alerts"],
    }
    alarm = AlarmDefinition.from_cloudformation(properties)
    assert (alarm.period_seconds, alarm.evaluation_periods, alarm.threshold) == (3600, 3, 0.2)
    assert alarm.datapoints_to_alarm == 3 and alarm.datapoints_to_alarm_setting is None
    assert alarm.dimensions == (("ModelName", "churn"),)
    assert alarm.treat_missing_data == "ignore"
    assert alarm.insufficient_data_actions == ()
    assert alarm.evaluation_range_periods == 5
    unnamed = {key: value for key, value in properties.items() if key != "AlarmName"}
    assert AlarmDefinition.from_cloudformation(unnamed, default_name="QualityAlarm").name == "QualityAlarm"
    with pytest.raises(ValueError, match="AlarmName"):
        AlarmDefinition.from_cloudformation(unnamed)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"TreatMissingData": "zero"}, ValueError),
        ({"DatapointsToAlarm": "4"}, ValueError),
        ({"Period": "86400", "EvaluationPeriods": "2"}, ValueError),
        ({"ExtendedStatistic": "p99"}, NotImplementedError),
        ({"Metrics": [{"Id": "m1"}]}, NotImplementedError),
        ({"ComparisonOperator": "GreaterThanUpperThreshold"}, NotImplementedError),
    ],
)
def test_unsupported_or_invalid_definitions_are_refused(change, error):
    properties = {
        "AlarmName": "a",
        "MetricName": "ErrorRate",
        "Namespace": "ModelWatch",
        "Statistic": "Average",
        "Period": 300,
        "EvaluationPeriods": 3,
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": 0.2,
    } | change
    with pytest.raises(error):
        AlarmDefinition.from_cloudformation(properties)


def test_definition_from_describe_alarms_entry():
    entry = {
        "AlarmName": "modelwatch-quality",
        "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:modelwatch-quality",
        "AlarmConfigurationUpdatedTimestamp": datetime(2026, 11, 26, 9, 0, tzinfo=UTC),
        "ActionsEnabled": True,
        "OKActions": [],
        "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:alerts"],
        "InsufficientDataActions": [],
        "StateValue": "OK",
        "MetricName": "ErrorRate",
        "Namespace": "ModelWatch",
        "Statistic": "Average",
        "Dimensions": [{"Name": "ModelName", "Value": "churn"}],
        "Period": 300,
        "EvaluationPeriods": 3,
        "DatapointsToAlarm": 2,
        "Threshold": 0.2,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "breaching",
        "Metrics": [],
    }
    alarm = AlarmDefinition.from_describe_alarms(entry)
    assert alarm.arn == entry["AlarmArn"]
    assert (alarm.datapoints_to_alarm, alarm.treat_missing_data) == (2, "breaching")
    assert alarm.actions_for(STATE_ALARM) == ("arn:aws:sns:us-east-1:123456789012:alerts",)
    assert alarm.actions_for(STATE_OK) == ()


def test_sliding_window_ends_at_the_evaluation_minute_not_at_a_period_boundary():
    # "Alarm evaluation window": the default window advances each time the alarm is
    # evaluated (once a minute), so a daily alarm evaluated at 22:00:40 ends its newest
    # period at 22:00, not at midnight.
    at = datetime(2026, 11, 26, 22, 0, 40, tzinfo=UTC)
    assert evaluation_window_end(at, 86_400) == datetime(2026, 11, 26, 22, 0, tzinfo=UTC)
    assert evaluation_window_end(at, 300) == datetime(2026, 11, 26, 22, 0, tzinfo=UTC)
    assert evaluation_window_end(datetime(2026, 11, 26, 10, 7, 30, tzinfo=UTC), 3600) == datetime(
        2026, 11, 26, 10, 7, tzinfo=UTC
    )
    # high-resolution periods (10 s, 30 s) end on a multiple of the period
    assert evaluation_window_end(datetime(2026, 11, 26, 10, 7, 47, tzinfo=UTC), 10) == datetime(
        2026, 11, 26, 10, 7, 40, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("period", "n", "expected_range"),
    [
        (300, 3, 5),  # "Evaluating an alarm": 3 periods of 5 minutes retrieve 5 data points
        (3600, 3, 5),
        (43_200, 1, 2),  # no further back than a day ...
        (86_400, 1, 1),  # ... so a daily alarm sees yesterday alone ("Alarm evaluation window")
    ],
)
def test_evaluation_range_adds_two_periods_within_a_day(period, n, expected_range):
    alarm = make_alarm(period_seconds=period, evaluation_periods=n, datapoints_to_alarm_setting=n)
    assert alarm.evaluation_range_periods == expected_range


def test_wall_clock_windows_are_refused_rather_than_evaluated_as_sliding():
    properties = {
        "AlarmName": "daily-backup",
        "MetricName": "BackupsCompleted",
        "Namespace": "Ops",
        "Statistic": "Sum",
        "Period": 86400,
        "EvaluationPeriods": 1,
        "Threshold": 1,
        "ComparisonOperator": "LessThanThreshold",
        "EvaluationWindow": {"WallClockWindow": {"Timezone": "UTC"}},
    }
    with pytest.raises(NotImplementedError, match="WallClockWindow"):
        AlarmDefinition.from_cloudformation(properties)


# --------------------------------------------------------------------------------------
# The SNS message, against real CloudWatch notifications.

# Keys and their order in a real notification (an AWS/Lambda Errors alarm, 2023).
REAL_TOP_LEVEL_KEYS = [
    "AlarmName",
    "AlarmDescription",
    "AWSAccountId",
    "AlarmConfigurationUpdatedTimestamp",
    "NewStateValue",
    "NewStateReason",
    "StateChangeTime",
    "Region",
    "AlarmArn",
    "OldStateValue",
    "OKActions",
    "AlarmActions",
    "InsufficientDataActions",
    "Trigger",
]
REAL_TRIGGER_KEYS = [
    "MetricName",
    "Namespace",
    "StatisticType",
    "Statistic",
    "Unit",
    "Dimensions",
    "Period",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "ComparisonOperator",
    "Threshold",
    "TreatMissingData",
    "EvaluateLowSampleCountPercentile",
]


def test_state_change_message_has_cloudwatchs_shape():
    alarm = make_alarm(
        datapoints_to_alarm_setting=2,
        dimensions=(("ModelName", "churn"),),
        description="Error rate above threshold",
        alarm_actions=("arn:aws:sns:us-east-1:123456789012:alerts",),
        ok_actions=("arn:aws:sns:us-east-1:123456789012:alerts",),
        treat_missing_data="ignore",
        configuration_updated=datetime(2026, 11, 26, 9, 0, 0, 123000, tzinfo=UTC),
    )
    evaluation = evaluate_alarm(alarm, STATE_OK, [0.1, 0.28, 0.31], newest_period_start=NEWEST)
    message = alarm_state_change_message(
        alarm,
        evaluation,
        region="us-east-1",
        account_id="123456789012",
        state_change_time=datetime(2026, 11, 26, 10, 5, 30, 450000, tzinfo=UTC),
    )
    assert list(message) == REAL_TOP_LEVEL_KEYS
    assert list(message["Trigger"]) == REAL_TRIGGER_KEYS
    assert message["Region"] == "US East (N. Virginia)"
    assert message["AlarmArn"] == "arn:aws:cloudwatch:us-east-1:123456789012:alarm:modelwatch-quality"
    assert message["AlarmConfigurationUpdatedTimestamp"] == "2026-11-26T09:00:00.123+0000"
    assert message["StateChangeTime"] == "2026-11-26T10:05:30.450+0000"
    assert (message["OldStateValue"], message["NewStateValue"]) == ("OK", "ALARM")
    assert message["NewStateReason"] == evaluation.reason
    assert message["Trigger"]["StatisticType"] == "Statistic"
    assert message["Trigger"]["Statistic"] == "AVERAGE"
    assert message["Trigger"]["Unit"] is None
    assert message["Trigger"]["Dimensions"] == [{"value": "churn", "name": "ModelName"}]
    assert list(message["Trigger"]["Dimensions"][0]) == ["value", "name"]
    assert message["Trigger"]["EvaluateLowSampleCountPercentile"] == ""
    assert (message["Trigger"]["Threshold"], message["Trigger"]["DatapointsToAlarm"]) == (0.2, 2)
    assert message["Trigger"]["TreatMissingData"] == "ignore"
    # the document serialises the way SNS carries it
    assert json.loads(json.dumps(message))["Trigger"]["Unit"] is None


def test_subject_names_the_state_alarm_and_region():
    assert notification_subject("ALARM", "modelwatch-quality", "us-east-1") == (
        'ALARM: "modelwatch-quality" in US East (N. Virginia)'
    )
    assert notification_subject("OK", "api-alb-target-500-errors", "eu-west-1") == (
        'OK: "api-alb-target-500-errors" in EU (Ireland)'
    )
    assert len(notification_subject("ALARM", "x" * 200, "us-east-1")) == 100

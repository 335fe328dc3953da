"""The alarms and the dashboard in template.yaml, read as CloudFormation would deploy them.

Properties are resolved with the parameters' defaults (or chosen values), so the checks
see what CloudWatch and the local alarm evaluator get, not the intrinsic functions.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from cfnlint.decode import decode

from modelwatch.estimation import ESTIMATED_METRICS
from modelwatch.local.alarms import AlarmDefinition
from tests.cloudformation import REGION, STACK_NAME, Resolver, dashboard_body, metric_widgets

from .conftest import TEMPLATE

# What the spec asks for ("Alarms and alerts"); more alarms may come, none may go.
REQUIRED_ALARMS = {
    "QualityAlarm",
    "EstimatedQualityAlarm",
    "DriftAlarm",
    "StalenessAlarm",
    "RejectedBatchesAlarm",
    "BatchMonitorErrorsAlarm",
    "ActualsLoaderErrorsAlarm",
    "DeadLetterQueueAlarm",
    # The watched signals a batch could not compute: without it the three above that keep
    # their state on missing data look healthy over a monitor that stopped measuring.
    "SignalsUnavailableAlarm",
    # Labels that stop coming (or stop matching): QualityAlarm keeps its state without them.
    "LabelsStaleAlarm",
}
# The fields a single-metric alarm needs for the local evaluator and the notifier.
SIMPLE_ALARM_FIELDS = (
    "Namespace",
    "MetricName",
    "Dimensions",
    "Statistic",
    "Period",
    "EvaluationPeriods",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    parsed, problems = decode(str(TEMPLATE))
    assert not problems, problems
    return parsed


def alarm_ids(template: dict[str, Any]) -> list[str]:
    return sorted(name for name, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm")


# ---------------------------------------------------------------------------- alarms


def test_the_alarms_the_spec_asks_for_exist(template):
    assert set(alarm_ids(template)) >= REQUIRED_ALARMS


def test_every_alarm_notifies_the_alert_topic_on_alarm_and_on_ok(template):
    for name in alarm_ids(template):
        properties = template["Resources"][name]["Properties"]
        assert properties.get("AlarmActions") == [{"Ref": "AlertTopic"}], name
        # Without OKActions a recovery is silent, and the on-call keeps chasing a fixed problem.
        assert properties.get("OKActions") == [{"Ref": "AlertTopic"}], name
        assert properties.get("ActionsEnabled", True) is True, name


@pytest.mark.parametrize(
    "parameters",
    [
        {},
        # The longest evaluation the parameters allow without breaking CloudWatch's one-day limit.
        {"AlarmPeriodSeconds": "28800", "EvaluationPeriods": "3", "DatapointsToAlarm": "3"},
        {"QualityMetric": "R2", "QualityComparison": "LessThanThreshold", "QualityThreshold": "0.75"},
    ],
    ids=["defaults", "long-periods", "regression"],
)
def test_every_alarm_is_a_simple_metric_alarm_the_local_evaluator_reads(template, parameters):
    resolver = Resolver(template, **parameters)
    for name in alarm_ids(template):
        properties = resolver.resolve(template["Resources"][name]["Properties"])
        missing = [field for field in SIMPLE_ALARM_FIELDS if field not in properties]
        assert not missing, f"{name} lacks {missing}"
        for unsupported in ("Metrics", "ExtendedStatistic", "ThresholdMetricId"):
            assert unsupported not in properties, f"{name} uses {unsupported}"

        alarm = AlarmDefinition.from_cloudformation(properties)

        assert alarm.name.startswith(f"{STACK_NAME}-"), name  # names unique per stack
        assert alarm.alarm_actions == alarm.ok_actions == (resolver.ref("AlertTopic"),), name
        if alarm.namespace == resolver.values["MetricsNamespace"]:
            assert [("ModelName", resolver.values["ModelName"])] == list(alarm.dimensions), name


@pytest.mark.parametrize(
    "minutes",
    [str(value) for value in decode(str(TEMPLATE))[0]["Parameters"]["StalenessMinutes"]["AllowedValues"]],
)
def test_staleness_period_is_staleness_minutes_in_seconds(template, minutes):
    resolver = Resolver(template, StalenessMinutes=minutes)

    alarm = AlarmDefinition.from_cloudformation(
        resolver.resolve(template["Resources"]["StalenessAlarm"]["Properties"])
    )

    assert alarm.period_seconds == int(minutes) * 60
    # CloudWatch: a multiple of 60 seconds, and EvaluationPeriods x Period at most a day.
    assert alarm.period_seconds % 60 == 0 and alarm.period_seconds * alarm.evaluation_periods <= 86_400
    assert str(resolver.values["StalenessMinutes"]) in alarm.description


def test_staleness_alarm_fires_on_silence_and_only_on_silence(template):
    alarm = AlarmDefinition.from_cloudformation(
        Resolver(template).resolve(template["Resources"]["StalenessAlarm"]["Properties"])
    )
    assert alarm.treat_missing_data == "breaching"
    # One processed batch is one datapoint: any batch in the period keeps it OK.
    assert alarm.statistic in ("SampleCount", "Sum") and not alarm.breaches(1.0) and alarm.breaches(0.0)


@pytest.mark.parametrize(
    "minutes",
    [
        str(value)
        for value in decode(str(TEMPLATE))[0]["Parameters"]["LabelStalenessMinutes"]["AllowedValues"]
        if value != 0
    ],
)
def test_labels_stale_period_is_label_staleness_minutes_in_seconds(template, minutes):
    resolver = Resolver(template, LabelStalenessMinutes=minutes)
    assert resolver.condition(template["Resources"]["LabelsStaleAlarm"]["Condition"])

    alarm = AlarmDefinition.from_cloudformation(
        resolver.resolve(template["Resources"]["LabelsStaleAlarm"]["Properties"])
    )

    assert alarm.period_seconds == int(minutes) * 60
    assert alarm.period_seconds % 60 == 0 and alarm.period_seconds * alarm.evaluation_periods <= 86_400
    assert f"last {minutes} minutes" in alarm.description


def test_labels_stale_alarm_fires_when_no_label_was_joined_and_only_then(template):
    alarm = AlarmDefinition.from_cloudformation(
        Resolver(template).resolve(template["Resources"]["LabelsStaleAlarm"]["Properties"])
    )
    # Silence breaches; a batch that found no label publishes 0, which must breach too (so Sum,
    # not SampleCount); one joined label is enough
    assert (alarm.metric_name, alarm.statistic, alarm.treat_missing_data) == (
        "LabelsJoined",
        "Sum",
        "breaching",
    )
    assert alarm.breaches(0.0) and not alarm.breaches(1.0)


def test_labels_stale_alarm_is_not_created_at_zero_and_the_dashboard_leaves_it_out(template):
    resolver = Resolver(template, LabelStalenessMinutes="0")
    assert not resolver.condition(template["Resources"]["LabelsStaleAlarm"]["Condition"])
    assert not resolver.condition(template["Outputs"]["LabelsStaleAlarmName"]["Condition"])

    listed = {
        arn
        for widget in dashboard_body(template, LabelStalenessMinutes="0")["widgets"]
        if widget["type"] == "alarm"
        for arn in widget["properties"]["alarms"]
    }

    assert listed == {
        resolver.get_att(name, "Arn") for name in alarm_ids(template) if name != "LabelsStaleAlarm"
    }


def test_signals_unavailable_alarm_fires_on_one_lost_signal_and_clears_on_zero(template):
    alarm = AlarmDefinition.from_cloudformation(
        Resolver(template).resolve(template["Resources"]["SignalsUnavailableAlarm"]["Properties"])
    )
    assert (alarm.metric_name, alarm.statistic, alarm.evaluation_periods) == (
        "SignalsUnavailable",
        "Maximum",
        1,
    )
    assert alarm.breaches(1.0) and alarm.breaches(2.0) and not alarm.breaches(0.0)
    # Every scored batch publishes it, 0 included: a period without batches is not a problem here.
    assert alarm.treat_missing_data == "notBreaching"


# ---------------------------------------------------------------------------- dashboard


@pytest.mark.parametrize(
    "parameters",
    [
        {},
        {
            "QualityMetric": "MAPE",
            "QualityThreshold": "12.5",
            "DriftThreshold": "1",
            "AlarmPeriodSeconds": "86400",
        },
    ],
    ids=["defaults", "other-values"],
)
def test_dashboard_body_is_json_with_every_widget_placed_on_the_grid(template, parameters):
    body = dashboard_body(template, **parameters)

    for widget in body["widgets"]:
        assert widget["type"] in ("metric", "alarm", "text"), widget
        assert widget["x"] >= 0 and widget["x"] + widget["width"] <= 24, widget  # the grid is 24 wide
    for properties in metric_widgets(body):
        assert properties["region"] == REGION, properties["title"]
        assert isinstance(properties["period"], int), properties["title"]


def test_dashboard_alarm_widget_lists_every_alarm(template):
    resolver = Resolver(template)
    listed = {
        arn
        for widget in dashboard_body(template)["widgets"]
        if widget["type"] == "alarm"
        for arn in widget["properties"]["alarms"]
    }
    assert listed == {resolver.get_att(name, "Arn") for name in alarm_ids(template)}


def thresholds_by_widget(body: dict[str, Any]) -> dict[str, list[float]]:
    """The threshold lines of each metric widget, by the widget's first (main) metric."""
    return {
        properties["metrics"][0][1]: [
            line["value"] for line in properties.get("annotations", {}).get("horizontal", [])
        ]
        for properties in metric_widgets(body)
        if len(properties["metrics"][0]) > 1  # not a widget of one expression (batches by version)
    }


@pytest.mark.parametrize("estimated_threshold", ["", "0.3"], ids=["estimated-default", "estimated-own"])
def test_dashboard_draws_the_alarm_thresholds_the_alarms_use(template, estimated_threshold):
    # Distinct values, so a swapped annotation shows.
    parameters = {
        "QualityThreshold": "0.35",
        "DriftThreshold": "0.15",
        "EstimatedQualityThreshold": estimated_threshold,
    }
    annotated = thresholds_by_widget(dashboard_body(template, **parameters))
    resolver = Resolver(template, **parameters)

    def threshold_of(alarm: str) -> float:
        return AlarmDefinition.from_cloudformation(
            resolver.resolve(template["Resources"][alarm]["Properties"])
        ).threshold

    assert annotated["ErrorRate"] == [0.35] == [threshold_of("QualityAlarm")]
    assert annotated["DriftScore"] == [0.15] == [threshold_of("DriftAlarm")]
    expected = float(estimated_threshold or "0.35")  # empty: QualityThreshold
    assert annotated["EstimatedErrorRate"] == [expected] == [threshold_of("EstimatedQualityAlarm")]


@pytest.mark.parametrize(
    "parameters",
    [{}, {"QualityMetric": "ROCAUC", "QualityComparison": "LessThanThreshold", "QualityThreshold": "0.8"}],
    ids=["defaults", "roc-auc"],
)
def test_estimated_quality_alarm_watches_the_estimate_of_the_quality_metric_like_quality_alarm(
    template, parameters
):
    resolver = Resolver(template, **parameters)
    quality, estimated = (
        AlarmDefinition.from_cloudformation(resolver.resolve(template["Resources"][name]["Properties"]))
        for name in ("QualityAlarm", "EstimatedQualityAlarm")
    )
    assert estimated.metric_name == "Estimated" + quality.metric_name
    assert estimated.metric_name in ESTIMATED_METRICS  # a name the monitor publishes
    assert estimated.name != quality.name
    # Everything else as the quality alarm: the estimate stands in for the realized value.
    for field in (
        "namespace",
        "dimensions",
        "statistic",
        "period_seconds",
        "evaluation_periods",
        "datapoints_to_alarm_setting",
        "threshold",
        "comparison_operator",
        "treat_missing_data",
    ):
        assert getattr(estimated, field) == getattr(quality, field), field


def test_dashboard_shows_the_model_metrics_the_spec_asks_for(template):
    body = dashboard_body(template)
    namespace = Resolver(template).values["MetricsNamespace"]
    shown = {
        metric[1]
        for properties in metric_widgets(body)
        for metric in properties["metrics"]
        if metric[0] == namespace
    }
    # What the spec's dashboard shows: quality, coverage, volume and drift.
    assert {
        "ErrorRate",
        "LabelCoverage",
        "RowsScored",
        "RowsLabeled",
        "BatchesProcessed",
        "BatchesRejected",
    } <= shown
    assert {"DriftScore", "DriftedFeatures", "PredictionDrift"} <= shown
    # That the batch monitor publishes them all is checked by running it:
    # tests/integration/test_published_metrics.py.


def test_dashboard_links_the_pointer_to_the_newest_report_page(template):
    body = dashboard_body(template)
    (text,) = [widget["properties"]["markdown"] for widget in body["widgets"] if widget["type"] == "text"]
    bucket = Resolver(template).ref("IngestBucket")
    pointer = f"https://{REGION}.console.aws.amazon.com/s3/object/{bucket}?region={REGION}&prefix=results/latest.json"
    assert f"[results/latest.json]({pointer})" in text
    assert "`report.html`" in text


def test_dashboard_url_output_opens_the_dashboard_in_its_region(template):
    resolver = Resolver(template)
    url = resolver.resolve(template["Outputs"]["DashboardUrl"]["Value"])
    name = resolver.ref("Dashboard")
    assert (
        url
        == f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}#dashboards/dashboard/{name}"
    )
    # CloudWatch's rule for dashboard names, checked with the longest stack name CloudFormation allows.
    long_stack = Resolver(template)
    long_stack.values["AWS::StackName"] = "s" * 128
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,255}", long_stack.ref("Dashboard"))


def test_notifier_links_the_dashboard_the_template_creates(template):
    variables = template["Resources"]["AlertNotifierFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["DASHBOARD_NAME"] == {"Ref": "Dashboard"}


def test_resolver_substitutes_what_the_dashboard_uses(template):
    # The tests above rely on the resolver; it must leave no ${...} behind.
    text = Resolver(template).resolve(template["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
    assert "${" not in text

"""The alarms and the dashboard in template.yaml, read as CloudFormation would deploy them.

Properties are resolved with the parameters' defaults (or chosen values), so the checks
see what CloudWatch and the local alarm evaluator get, not the intrinsic functions.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cfnlint.decode import decode

from modelwatch.local.alarms import AlarmDefinition

from .conftest import REPO_ROOT, TEMPLATE

REGION = "eu-west-1"
ACCOUNT_ID = "123456789012"
STACK_NAME = "modelwatch-test"
PSEUDO_PARAMETERS = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Partition": "aws",
    "AWS::StackName": STACK_NAME,
    "AWS::StackId": (
        f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{STACK_NAME}/0a1b2c3d-4e5f-6789-abcd-0123456789ab"
    ),
    "AWS::URLSuffix": "amazonaws.com",
}
# What the spec asks for ("Alarms and alerts"); more alarms may come, none may go.
REQUIRED_ALARMS = {
    "QualityAlarm",
    "DriftAlarm",
    "StalenessAlarm",
    "RejectedBatchesAlarm",
    "BatchMonitorErrorsAlarm",
    "ActualsLoaderErrorsAlarm",
    "DeadLetterQueueAlarm",
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
# Where the metric names the monitor publishes are spelt out.
PUBLISHING_MODULES = (
    "monitor.py",
    "scoring.py",
    "drift/comparison.py",
    "metrics.py",
    "publishing.py",
    "actuals_loading.py",
)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    parsed, problems = decode(str(TEMPLATE))
    assert not problems, problems
    return parsed


def alarm_ids(template: dict[str, Any]) -> list[str]:
    return sorted(name for name, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm")


class Resolver:
    """Evaluates the intrinsic functions the alarms and the dashboard use, as CloudFormation would.

    Resources get stand-in physical ids; an alarm's Ref and Arn come from its AlarmName,
    as in CloudFormation, so the dashboard's alarm list can be compared with the alarms.
    """

    def __init__(self, template: dict[str, Any], **parameters: str) -> None:
        unknown = set(parameters) - set(template["Parameters"])
        assert not unknown, f"not parameters of the template: {unknown}"
        self.template = template
        self.values = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
        self.values.update(parameters)
        self.values.update(PSEUDO_PARAMETERS)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.values[argument] if argument in self.values else self.ref(argument)
            if key == "Fn::GetAtt":
                logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.get_att(logical_id, attribute)
            if key == "Fn::Sub":
                return self.sub(argument)
            if key == "Fn::FindInMap":
                mapping, first, second = self.resolve(argument)
                return self.template["Mappings"][mapping][str(first)][second]
            if key.startswith("Fn::"):
                raise NotImplementedError(f"{key}: teach the test's resolver, or keep alarms simple")
        return {key: self.resolve(item) for key, item in value.items()}

    def ref(self, logical_id: str) -> str:
        resource = self.template["Resources"][logical_id]
        name_property = {"AWS::CloudWatch::Alarm": "AlarmName", "AWS::CloudWatch::Dashboard": "DashboardName"}
        if resource["Type"] in name_property:
            return self.resolve(resource["Properties"][name_property[resource["Type"]]])
        if resource["Type"] == "AWS::SNS::Topic":
            return f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:{STACK_NAME}-{logical_id}"
        return f"{STACK_NAME}-{logical_id}"

    def get_att(self, logical_id: str, attribute: str) -> str:
        if attribute == "Arn" and self.template["Resources"][logical_id]["Type"] == "AWS::CloudWatch::Alarm":
            return f"arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{self.ref(logical_id)}"
        return f"{self.ref(logical_id)}-{attribute}"

    def sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        variables = self.resolve(variables)

        def replace(match: re.Match[str]) -> str:
            token = match.group(1)
            if token.startswith("!"):
                return "${" + token[1:] + "}"
            if token in variables:
                return str(variables[token])
            if token in self.values:
                return self.values[token]
            if "." in token:
                return self.get_att(*token.split(".", 1))
            return self.ref(token)

        return re.sub(r"\$\{([^}]+)\}", replace, text)


def published_metric_names() -> str:
    return "\n".join(
        (REPO_ROOT / "src/modelwatch" / name).read_text(encoding="utf-8") for name in PUBLISHING_MODULES
    )


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


# ---------------------------------------------------------------------------- dashboard


def dashboard_body(template: dict[str, Any], **parameters: str) -> dict[str, Any]:
    text = Resolver(template, **parameters).resolve(
        template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    )
    return json.loads(text)


def metric_widgets(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [widget["properties"] for widget in body["widgets"] if widget["type"] == "metric"]


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


def test_dashboard_draws_the_alarm_thresholds_the_alarms_use(template):
    # Distinct values, so a swapped annotation shows.
    body = dashboard_body(template, QualityThreshold="0.35", DriftThreshold="0.15")
    annotated = {
        metric[1]: [line["value"] for line in properties.get("annotations", {}).get("horizontal", [])]
        for properties in metric_widgets(body)
        for metric in properties["metrics"]
    }
    assert annotated["ErrorRate"] == [0.35]
    assert annotated["DriftScore"] == [0.15]


def test_dashboard_shows_the_model_metrics_the_monitor_publishes(template):
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
    code = published_metric_names()
    assert not [name for name in shown - {"ErrorRate"} if f'"{name}"' not in code]


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

"""The local stack is template.yaml's: names, environment, triggers, alarms and subscriptions.

Expected values are read from template.yaml itself (tests/template_resources), so these
tests fail when the local cloud stops following the template, not when the template changes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelwatch.local.cloud import LOCAL_ALERT_EMAIL, LocalCloud, VirtualClock, slack_secret_parameter
from modelwatch.local.stack import StackBuilder
from modelwatch.local.template import TemplateError
from tests.template_resources import TEMPLATE_PATH, function_environment, load_template


@pytest.fixture(scope="module")
def model_dir(classifier_dir) -> Path:
    return classifier_dir  # the session's model (tests/conftest.py): the local cloud only reads it


def start(tmp_path: Path, model_dir: Path, **parameters: str) -> LocalCloud:
    from datetime import UTC, datetime

    return LocalCloud(
        out_dir=tmp_path, model_dir=model_dir, parameters=parameters, clock=VirtualClock(datetime.now(UTC))
    ).start()


@pytest.fixture(scope="module")
def default_cloud(tmp_path_factory, model_dir) -> Iterator[LocalCloud]:
    """One local cloud at the template's parameter defaults, for the tests that only read it
    (starting one costs seconds: an embedded moto server and every template resource)."""
    with start(tmp_path_factory.mktemp("default-cloud"), model_dir) as cloud:
        yield cloud


def defaults() -> dict[str, str]:
    return {name: str(spec.get("Default", "")) for name, spec in load_template()["Parameters"].items()}


def test_resources_get_the_template_names_and_key_schemas(default_cloud):
    template = load_template()
    with nullcontext(default_cloud) as cloud:
        stack = cloud.stack
        # The bucket name is the template's !Sub with the fixed local account, region and stack ID.
        bucket = stack.name_of("IngestBucket")
        assert bucket.startswith(f"modelwatch-{stack.account_id}-{stack.region}-")
        assert bucket == stack.stack_id.rsplit("/", 1)[1].split("-")[4].join(
            [f"modelwatch-{stack.account_id}-{stack.region}-", ""]
        )
        assert bucket in [b["Name"] for b in cloud.clients.s3.list_buckets()["Buckets"]]
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] != "AWS::DynamoDB::Table":
                continue
            table = cloud.clients.dynamodb.describe_table(TableName=stack.name_of(logical_id))["Table"]
            assert table["KeySchema"] == resource["Properties"]["KeySchema"]
            assert table["TableName"].startswith(f"{stack.stack_name}-{logical_id}-")


def test_functions_get_the_template_environment_with_references_resolved(tmp_path, model_dir):
    with start(tmp_path, model_dir, MinLabeledRows="45") as cloud:
        stack = cloud.stack
        for logical_id, spec in stack.functions.items():
            declared = function_environment(logical_id)
            assert set(spec.environment) == set(declared)  # Globals merged, nothing added or lost
            for name, value in declared.items():
                if isinstance(value, str):
                    assert spec.environment[name] == value
                elif set(value) == {"Ref"} and value["Ref"] in stack.parameters:
                    assert spec.environment[name] == stack.parameters[value["Ref"]]
                elif set(value) == {"Ref"} and value["Ref"] in stack.resources:
                    assert spec.environment[name] == str(stack.name_of(value["Ref"]))
        monitor = stack.functions["BatchMonitorFunction"]
        assert monitor.environment["MIN_LABELED_ROWS"] == "45"  # the --param override reached the function
        # What the handler sees: the model layer mount points at the local model directory.
        environment = cloud.runtime.lambda_environment(monitor)
        assert environment["MODEL_DIR"] == str(model_dir.resolve())
        assert environment["AWS_ENDPOINT_URL"] == cloud.endpoint_url


def test_s3_triggers_are_the_template_event_filters(default_cloud):
    template = load_template()
    expected = set()
    for logical_id, resource in template["Resources"].items():
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            if event["Type"] == "S3":
                rules = event["Properties"]["Filter"]["S3Key"]["Rules"]
                expected.add((logical_id, next(r["Value"] for r in rules if r["Name"] == "prefix")))
    with nullcontext(default_cloud) as cloud:
        assert {(t.function_logical_id, t.prefix) for t in cloud.stack.s3_triggers} == expected
        stored = cloud.clients.s3.get_bucket_notification_configuration(
            Bucket=cloud.stack.name_of("IngestBucket")
        )
        assert len(stored["LambdaFunctionConfigurations"]) == len(expected)
        assert cloud.stack.triggers_for(cloud.stack.name_of("IngestBucket"), "results/x/report.json") == []


def test_alarms_come_from_the_template_and_follow_parameter_overrides(tmp_path, model_dir, default_cloud):
    template = load_template()
    alarm_ids = [lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"]
    with nullcontext(default_cloud) as cloud:
        described = {a["AlarmName"]: a for a in cloud.clients.cloudwatch.describe_alarms()["MetricAlarms"]}
        active = [lid for lid in alarm_ids if "Condition" not in template["Resources"][lid]]
        assert set(active) <= set(cloud.stack.alarms)
        quality = described[cloud.stack.alarms["QualityAlarm"].name]
        assert quality["Threshold"] == float(defaults()["QualityThreshold"])
        assert quality["MetricName"] == defaults()["QualityMetric"]
        assert quality["Period"] == int(defaults()["AlarmPeriodSeconds"])
        assert quality["AlarmActions"] == [cloud.stack.name_of("AlertTopic")]
    with start(
        tmp_path / "b", model_dir, QualityThreshold="0.35", QualityMetric="LogLoss", AlarmPeriodSeconds="300"
    ) as cloud:
        alarm = cloud.stack.alarms["QualityAlarm"]
        described = cloud.clients.cloudwatch.describe_alarms(AlarmNames=[alarm.name])["MetricAlarms"][0]
        assert (described["Threshold"], described["MetricName"], described["Period"]) == (
            0.35,
            "LogLoss",
            300,
        )
        assert "LogLoss" in alarm.name


def test_labels_stale_alarm_starts_in_alarm_follows_its_window_and_is_left_out_at_zero(tmp_path, model_dir):
    # Given a stack with labels watched over an hour
    with start(tmp_path / "hour", model_dir, LabelStalenessMinutes="60") as cloud:
        alarm = cloud.stack.alarms["LabelsStaleAlarm"]
        assert (alarm.metric_name, alarm.period_seconds, alarm.treat_missing_data) == (
            "LabelsJoined",
            3600,
            "breaching",
        )
        # When its alarms are first evaluated, before any label: it is in ALARM, as in AWS
        cloud.evaluate_alarms()
        assert cloud.alarm_states()["LabelsStaleAlarm"] == "ALARM"
        dashboard = cloud.clients.cloudwatch.get_dashboard(DashboardName=cloud.stack.name_of("Dashboard"))
        [listed] = [w for w in json.loads(dashboard["DashboardBody"])["widgets"] if w["type"] == "alarm"]
        assert any(arn.endswith(f":{alarm.name}") for arn in listed["properties"]["alarms"])
    # Given a model that never gets labels: 0 creates no alarm, and the dashboard still parses
    with start(tmp_path / "off", model_dir, LabelStalenessMinutes="0") as cloud:
        assert "LabelsStaleAlarm" not in cloud.stack.alarms
        described = cloud.clients.cloudwatch.describe_alarms()["MetricAlarms"]
        assert not [a for a in described if a["MetricName"] == "LabelsJoined"]
        dashboard = cloud.clients.cloudwatch.get_dashboard(DashboardName=cloud.stack.name_of("Dashboard"))
        [listed] = [w for w in json.loads(dashboard["DashboardBody"])["widgets"] if w["type"] == "alarm"]
        assert len(listed["properties"]["alarms"]) == len(cloud.stack.alarms)


def emails(cloud: LocalCloud) -> list[tuple[str, str]]:
    subscriptions = cloud.clients.sns.list_subscriptions()["Subscriptions"]
    return [(s["Endpoint"], s["TopicArn"]) for s in subscriptions if s["Protocol"] == "email"]


def test_email_subscription_is_alert_email_or_the_stand_in_when_no_channel_is_named(
    tmp_path, model_dir, default_cloud
):
    # Named by no parameter (AlertEmail's default is ""), the channel is the local stand-in:
    # the template's rule refuses a stack without one
    with nullcontext(default_cloud) as cloud:
        assert cloud.stand_in_email == LOCAL_ALERT_EMAIL
        assert emails(cloud) == [(LOCAL_ALERT_EMAIL, cloud.stack.name_of("AlertTopic"))]
    with start(tmp_path / "set", model_dir, AlertEmail="someone@example.com") as cloud:
        assert cloud.stand_in_email is None
        assert emails(cloud) == [("someone@example.com", cloud.stack.name_of("AlertTopic"))]
    # Opted out (a team subscribing its own endpoint), the stack has no subscription at all
    with start(tmp_path / "none", model_dir, AllowNoAlertChannel="true") as cloud:
        assert cloud.stand_in_email is None and emails(cloud) == []


def alert_channel_rule_description() -> str:
    (assertion,) = load_template()["Rules"]["AlertChannelGiven"]["Assertions"]
    return assertion["AssertDescription"]


# A channel named empty is the caller's choice, which the rule judges (no stand-in then).
@pytest.mark.parametrize(
    "parameters", [{"AlertEmail": "", "SlackWebhookSecretName": ""}, {"SlackWebhookSecretName": ""}]
)
def test_a_stack_without_an_alert_channel_is_refused_with_the_rules_description(
    tmp_path, model_dir, parameters
):
    cloud = LocalCloud(
        out_dir=tmp_path,
        model_dir=model_dir,
        parameters=parameters,
        clock=VirtualClock(datetime.now(UTC)),
    )
    with pytest.raises(TemplateError) as refused:
        cloud.start()
    assert alert_channel_rule_description() in str(refused.value)
    assert cloud.aws is None  # nothing left running


@pytest.mark.parametrize(
    "parameters",
    [
        {"AlertEmail": "someone@example.com", "SlackWebhookSecretName": ""},
        {"AlertEmail": "", "SlackWebhookSecretName": "team/slack"},
        {"AlertEmail": "", "SlackWebhookSecretName": "", "AllowNoAlertChannel": "true"},
        {"AlertEmail": "", "SlackWebhookSecretName": "", "AllowNoAlertChannel": "false"},
    ],
    ids=["email", "slack", "opted-out", "empty-empty"],
)
def test_the_local_stack_applies_the_alert_channel_rule_before_creating_anything(parameters):
    def build() -> StackBuilder:  # no AWS: the rule is checked before any resource is created
        return StackBuilder(
            TEMPLATE_PATH, parameters, clients=None, stack_name="rules", project_root=TEMPLATE_PATH.parent
        )

    if parameters.get("AllowNoAlertChannel") == "false":
        with pytest.raises(TemplateError, match=re.escape(alert_channel_rule_description())):
            build()
    else:
        assert build().parameters["AlertEmail"] == parameters["AlertEmail"]


def test_slack_notifier_is_subscribed_only_when_its_secret_parameter_is_set(
    tmp_path, model_dir, default_cloud
):
    parameter = slack_secret_parameter(TEMPLATE_PATH)
    if parameter is None:
        pytest.skip("template.yaml has no Slack notifier yet")

    def lambdas(cloud):
        # The retrain function is subscribed too (RetrainOnAlarm); only the notifier posts to Slack.
        return [
            s
            for s in cloud.clients.sns.list_subscriptions()["Subscriptions"]
            if s["Protocol"] == "lambda" and "RetrainFunction" not in s["Endpoint"]
        ]

    with nullcontext(default_cloud) as cloud:
        assert not lambdas(cloud)
    with start(tmp_path / "on", model_dir, **{parameter: "team/slack"}) as cloud:
        lambdas = lambdas(cloud)
        assert len(lambdas) == 1
        notifier = cloud.runtime.by_arn(lambdas[0]["Endpoint"])
        assert notifier is not None and notifier.spec.environment["SLACK_WEBHOOK_SECRET_NAME"] == "team/slack"
        # Slack named alone is a channel: no stand-in email beside it
        assert cloud.stand_in_email is None and emails(cloud) == []


def test_the_retrain_function_follows_the_alert_topic_unless_retrain_on_alarm_is_empty(
    tmp_path, model_dir, default_cloud
):
    def retrain_subscriptions(cloud):
        return [
            cloud.runtime.by_arn(s["Endpoint"])
            for s in cloud.clients.sns.list_subscriptions()["Subscriptions"]
            if s["Protocol"] == "lambda" and "RetrainFunction" in s["Endpoint"]
        ]

    with nullcontext(default_cloud) as cloud:
        (function,) = retrain_subscriptions(cloud)
        alarm_names = json.loads(function.spec.environment["ALARM_NAMES"])
        # The template's alarm names, resolved from the logical ids RetrainOnAlarm uses.
        assert alarm_names["QualityAlarm"] == cloud.stack.name_of("QualityAlarm")
        assert function.spec.environment["RETRAIN_ON_ALARM"] == "QualityAlarm"
    with start(tmp_path / "off", model_dir, RetrainOnAlarm="") as cloud:
        assert retrain_subscriptions(cloud) == []


def test_unknown_or_invalid_parameters_are_refused(tmp_path, model_dir):
    with pytest.raises(TemplateError, match="unknown parameter"):
        start(tmp_path / "x", model_dir, NoSuchParameter="1")
    with pytest.raises(TemplateError, match="QualityComparison"):
        start(tmp_path / "y", model_dir, QualityComparison="Sideways")


def test_entering_a_started_cloud_keeps_its_one_embedded_aws_and_stops_it(tmp_path, model_dir):
    cloud = start(tmp_path, model_dir)
    aws = cloud.aws
    with cloud as entered:
        assert entered.aws is aws  # not a second moto process
    assert aws is not None and aws.process.returncode is not None
    assert cloud.aws is None


def test_a_template_alarm_the_local_cloud_cannot_evaluate_is_a_template_error(tmp_path, model_dir):
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    # DriftAlarm (the first alarm on a Maximum) on the 99th percentile instead
    drift = text.index("  DriftAlarm:")
    at = text.index("      Statistic: Maximum\n", drift)
    changed = tmp_path / "template.yaml"
    changed.write_text(
        text[:at] + text[at:].replace("Statistic: Maximum", "ExtendedStatistic: p99", 1), encoding="utf-8"
    )
    for folder in ("functions", "layers", "src"):  # the template's CodeUri/ContentUri paths
        (tmp_path / folder).symlink_to(TEMPLATE_PATH.parent / folder)
    cloud = LocalCloud(
        out_dir=tmp_path / "out",
        template_path=changed,
        model_dir=model_dir,
        parameters={},
        clock=VirtualClock(datetime.now(UTC)),
    )
    with pytest.raises(TemplateError, match=r"DriftAlarm cannot run in the local cloud: .*ExtendedStatistic"):
        cloud.start()
    assert cloud.aws is None


def test_unsupported_alarm_is_named_even_when_reading_metrics_fails_mocked_fault(
    tmp_path, model_dir, monkeypatch
):
    warnings: list[str] = []
    cloud = LocalCloud(
        out_dir=tmp_path,
        model_dir=model_dir,
        parameters={"AllowNoAlertChannel": "true"},
        clock=VirtualClock(datetime.now(UTC)),
        listener=lambda kind, payload: warnings.append(payload) if kind == "warning" else None,
    )
    with cloud.start():
        cloud.clients.cloudwatch.put_metric_alarm(
            AlarmName="added-p99",
            Namespace="ModelWatch",
            MetricName="ErrorRate",
            ExtendedStatistic="p99",
            Period=300,
            EvaluationPeriods=1,
            Threshold=0.2,
            ComparisonOperator="GreaterThanThreshold",
        )
        real_range_values = cloud.evaluator.range_values
        calls = []

        def failing_once(*args, **kwargs):
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionError("simulated CloudWatch outage")
            return real_range_values(*args, **kwargs)

        monkeypatch.setattr(cloud.evaluator, "range_values", failing_once)
        with pytest.raises(ConnectionError):
            cloud.evaluate_alarms()
        cloud.evaluate_alarms()
    named = [w for w in warnings if "added-p99" in w]
    assert len(named) == 1 and "ExtendedStatistic" in named[0]


def test_translating_the_template_leaves_no_warning_for_the_user(caplog):
    # SAM's translator records usage metrics; the last ones stay referenced until the next
    # translation, and garbage-collected unpublished they logged "There are unpublished
    # metrics" into the middle of `make demo`'s output (its act two builds a second stack).
    import gc

    with caplog.at_level("WARNING"):
        for name in ("first", "second"):
            StackBuilder(
                TEMPLATE_PATH,
                {"AlertEmail": "someone@example.com"},
                clients=None,
                stack_name=name,
                project_root=TEMPLATE_PATH.parent,
            )
        gc.collect()
    assert not [record.getMessage() for record in caplog.records if record.name.startswith("samtranslator")]

"""template.yaml is valid, and agrees with the code that reads what it defines."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from modelwatch.config import LATEST_REPORT_POINTER, RESULTS_PREFIX
from modelwatch.metrics import QUALITY_METRICS
from tests.cloudformation import refused_by_rules

from .conftest import REPO_ROOT, TEMPLATE, run, sam_executable, tool_environment

FUNCTIONS = {
    "BatchMonitorFunction": "functions/batch_monitor",
    "ActualsLoaderFunction": "functions/actuals_loader",
    "AlertNotifierFunction": "functions/alert_notifier",
    "LabelJoinFunction": "functions/label_join",
    "RetrainFunction": "functions/retrain",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    parsed, problems = decode(str(TEMPLATE))
    assert not problems, problems
    return parsed


def sam_validate(template_file: Path) -> None:
    run(
        [sam_executable(), "validate", "--lint", "--template-file", str(template_file)],
        timeout_seconds=180,
        cwd=REPO_ROOT,
        env=tool_environment(),
    )


def with_defaults(**defaults: str) -> str:
    """template.yaml's text with the given empty-string parameter defaults filled in.

    The optional features (email, Slack) are switched by parameters whose default is "",
    and conditions make whole resources appear; validating each combination checks the
    template a deployment with those parameters really gets.
    """
    text = TEMPLATE.read_text(encoding="utf-8")
    for name, value in defaults.items():
        text, replaced = re.subn(
            rf'(\n  {name}:\n    Type: String\n    Default: )""', rf'\g<1>"{value}"', text
        )
        assert replaced == 1, f"{name}'s definition changed shape; update this test's substitution"
    return text


@pytest.mark.parametrize("alert_email", ["", "oncall@example.com"], ids=["no-email", "email"])
@pytest.mark.parametrize("slack_secret", ["", "modelwatch/slack-webhook"], ids=["no-slack", "slack"])
def test_sam_validate_lint_passes_with_and_without_email_and_slack(tmp_path: Path, alert_email, slack_secret):
    # Given the template with AlertEmail (the email subscription) and
    # SlackWebhookSecretName (the alert notifier) set or left empty
    defaults = {
        name: value
        for name, value in (("AlertEmail", alert_email), ("SlackWebhookSecretName", slack_secret))
        if value
    }
    copy = tmp_path / "template.yaml"
    copy.write_text(with_defaults(**defaults), encoding="utf-8")

    sam_validate(copy)


def test_sam_validate_lint_passes_without_the_labels_alarm(tmp_path: Path):
    # Given LabelStalenessMinutes 0 (a model that never gets labels): no LabelsStaleAlarm, no
    # output naming it, no dashboard entry
    text, replaced = re.subn(
        r"(\n  LabelStalenessMinutes:\n    Type: Number\n    Default: )\d+",
        r"\g<1>0",
        TEMPLATE.read_text(encoding="utf-8"),
    )
    assert replaced == 1, "LabelStalenessMinutes's definition changed shape; update this test's substitution"
    copy = tmp_path / "template.yaml"
    copy.write_text(text, encoding="utf-8")

    sam_validate(copy)


def test_sam_validate_lint_fails_on_a_broken_alarm(tmp_path: Path):
    # The validation tests above are only worth something if the linter really runs.
    broken = TEMPLATE.read_text(encoding="utf-8").replace("Statistic: Average", "Statistic: Mean", 1)
    copy = tmp_path / "template.yaml"
    copy.write_text(broken, encoding="utf-8")

    with pytest.raises(pytest.fail.Exception, match="Mean"):
        sam_validate(copy)


def test_quality_metric_parameter_offers_exactly_the_metrics_the_monitor_publishes(template):
    allowed = template["Parameters"]["QualityMetric"]["AllowedValues"]
    assert sorted(allowed) == sorted(QUALITY_METRICS)
    assert template["Parameters"]["QualityMetric"]["Default"] in QUALITY_METRICS


def granted_statement(statement: dict[str, Any]) -> dict[str, Any]:
    """A statement, or the one a condition grants (!If [Condition, statement, !Ref AWS::NoValue])."""
    if set(statement) == {"Fn::If"}:
        _, granted, otherwise = statement["Fn::If"]
        assert otherwise == {"Ref": "AWS::NoValue"}, statement
        return dict(granted)
    return statement


def policy_statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    statements = []
    for name in FUNCTIONS:
        for policy in template["Resources"][name]["Properties"]["Policies"]:
            assert isinstance(policy, dict) and "Statement" in policy, f"{name}: inline policy documents only"
            statements += [(name, granted_statement(statement)) for statement in policy["Statement"]]
    return statements


# The only actions allowed on "*": neither has resource-level permissions.
ACTIONS_WITHOUT_RESOURCES = {"cloudwatch:PutMetricData", "cloudwatch:GetMetricData"}


def test_function_policies_name_their_resources(template):
    for function, statement in policy_statements(template):
        if statement["Resource"] != "*":
            continue
        assert statement["Action"] in ACTIONS_WITHOUT_RESOURCES, f"{function}: {statement['Sid']} allows '*'"
        if statement["Action"] == "cloudwatch:PutMetricData":
            # Writing is what a namespace condition has to bound; GetMetricData only reads.
            assert statement["Condition"]["StringEquals"]["cloudwatch:namespace"] == {
                "Ref": "MetricsNamespace"
            }


def test_function_policies_grant_no_wildcard_actions(template):
    for function, statement in policy_statements(template):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not [action for action in actions if "*" in action], f"{function}: {statement['Sid']}"


def bucket_event_targets(template: dict[str, Any]) -> set[str]:
    return {
        name
        for name in FUNCTIONS
        if any(
            event["Type"] == "S3"
            for event in template["Resources"][name]["Properties"].get("Events", {}).values()
        )
    }


def test_bucket_name_in_the_policies_is_the_bucket_name(template):
    # The bucket's event targets cannot !Ref the bucket (dependency cycle), so their
    # policies repeat its name's expression.
    assert bucket_event_targets(template) == {"BatchMonitorFunction", "ActualsLoaderFunction"}
    bucket_name = template["Resources"]["IngestBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    for function, statement in policy_statements(template):
        if function not in bucket_event_targets(template):
            continue
        resource = statement["Resource"]
        if isinstance(resource, dict) and "Fn::Sub" in resource:
            arn, variables = resource["Fn::Sub"]
            bucket_arn = "arn:${AWS::Partition}:s3:::" + bucket_name[0]
            assert arn == bucket_arn or arn.startswith(bucket_arn + "/"), function
            assert variables == bucket_name[1], function


def notifier_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement
        for function, statement in policy_statements(template)
        if function == "AlertNotifierFunction"
    ]


def actions_of(statement: dict[str, Any]) -> list[str]:
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


def test_alert_notifier_reads_only_its_secret_and_the_latest_report_pointer(template):
    variables = template["Resources"]["AlertNotifierFunction"]["Properties"]["Environment"]["Variables"]
    # results/ is a constant of the code, which the policy must match.
    results_prefix = RESULTS_PREFIX
    by_action = {
        action: statement for statement in notifier_statements(template) for action in actions_of(statement)
    }

    secret = by_action["secretsmanager:GetSecretValue"]["Resource"]["Fn::Sub"]
    # Exactly the named secret: Secrets Manager appends "-" and six random characters.
    assert secret.endswith(":secret:${SlackWebhookSecretName}-??????")
    assert variables["SLACK_WEBHOOK_SECRET_NAME"] == {"Ref": "SlackWebhookSecretName"}

    # Reports are linked through the batch monitor's pointer; the notifier lists nothing.
    assert "s3:ListBucket" not in by_action
    assert by_action["s3:GetObject"]["Resource"] == {
        "Fn::Sub": f"${{IngestBucket.Arn}}/{results_prefix}{LATEST_REPORT_POINTER}"
    }


def test_slack_webhook_hosts_are_an_allowlist_of_slack_by_default_over_https(template):
    parameters = template["Parameters"]
    variables = template["Resources"]["AlertNotifierFunction"]["Properties"]["Environment"]["Variables"]

    assert parameters["SlackWebhookAllowedHosts"]["Default"] == "hooks.slack.com"
    assert parameters["SlackWebhookAllowHttp"]["Default"] == "false"
    assert parameters["SlackWebhookAllowHttp"]["AllowedValues"] == ["false", "true"]
    assert variables["SLACK_WEBHOOK_ALLOWED_HOSTS"] == {"Ref": "SlackWebhookAllowedHosts"}
    assert variables["SLACK_WEBHOOK_ALLOW_HTTP"] == {"Ref": "SlackWebhookAllowHttp"}
    pattern = parameters["SlackWebhookAllowedHosts"]["AllowedPattern"]
    assert re.fullmatch(pattern, "hooks.slack.com,chat.example.org")
    assert not re.fullmatch(pattern, "https://hooks.slack.com")


def test_alert_notifier_exists_only_with_a_slack_secret(template):
    # Without a webhook the notifier could only fail, and fill the dead-letter queue.
    resources = template["Resources"]
    for name in ("AlertNotifierFunction", "AlertNotifierLogGroup"):
        assert resources[name].get("Condition") == "HasSlack", name
    assert template["Outputs"]["AlertNotifierFunctionName"].get("Condition") == "HasSlack"
    assert template["Conditions"]["HasSlack"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "SlackWebhookSecretName"}, ""]}]
    }


EMAIL, SLACK_SECRET = "oncall@example.com", "modelwatch/slack-webhook"


@pytest.mark.parametrize(
    ("parameters", "refused"),
    [
        ({}, True),  # the defaults: neither channel
        ({"AlertEmail": "", "SlackWebhookSecretName": ""}, True),
        ({"AlertEmail": EMAIL}, False),
        ({"SlackWebhookSecretName": SLACK_SECRET}, False),
        ({"AlertEmail": EMAIL, "SlackWebhookSecretName": SLACK_SECRET}, False),
        ({"AllowNoAlertChannel": "true"}, False),  # the team subscribes its own endpoint
    ],
    ids=["defaults", "empty-empty", "email", "slack", "both", "opted-out"],
)
def test_a_stack_whose_alarms_notify_no_one_is_refused_unless_opted_out(template, parameters, refused):
    # CloudFormation checks the Rules before creating anything (tests.cloudformation)
    refusals = refused_by_rules(template, **parameters)

    if not refused:
        assert refusals == []
        return
    # and its message tells the user what to set: parameters and an output that exist
    [description] = refusals
    for name in ("AlertEmail", "SlackWebhookSecretName", "AllowNoAlertChannel"):
        assert name in description and name in template["Parameters"]
    assert "AllowNoAlertChannel=true" in description
    assert "AlertTopicArn" in description and "AlertTopicArn" in template["Outputs"]


def referenced_resources(value: Any, resources: set[str]) -> set[str]:
    """Logical ids a property value refers to by Ref, Fn::GetAtt or Fn::Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= referenced_resources(item, resources)
    elif isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            found.add(target[0] if isinstance(target, list) else target.split(".", 1)[0])
        if "Fn::Sub" in value:
            text, variables = (
                (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]
            )
            names = {match.split(".", 1)[0] for match in re.findall(r"\$\{([^!}][^}]*)\}", text)}
            found |= names - set(variables) | referenced_resources(variables, resources)
        for key, item in value.items():
            if key not in ("Ref", "Fn::GetAtt", "Fn::Sub"):
                found |= referenced_resources(item, resources)
    return found & resources


def dependency_cycle(cloudformation: dict[str, Any]) -> list[str] | None:
    """A cycle in CloudFormation's resource dependency graph, or None."""
    resources = cloudformation["Resources"]
    names = set(resources)
    edges = {}
    for name, resource in resources.items():
        depends_on = resource.get("DependsOn", [])
        depends_on = [depends_on] if isinstance(depends_on, str) else depends_on
        edges[name] = referenced_resources(resource.get("Properties", {}), names) | set(depends_on)
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> list[str] | None:
        if name in visiting:
            return [*visiting[visiting.index(name) :], name]
        if name in done:
            return None
        visiting.append(name)
        for dependency in sorted(edges[name]):
            cycle = visit(dependency)
            if cycle:
                return cycle
        visiting.pop()
        done.add(name)
        return None

    return next((cycle for cycle in map(visit, sorted(resources)) if cycle), None)


def sam_transformed(template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The CloudFormation SAM generates: S3 events become the bucket's notification configuration."""
    from samtranslator.translator.transform import transform

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # SAM resolves pseudo parameters
    template = copy.deepcopy(template)
    for resource in template["Resources"].values():
        for uri in ("CodeUri", "ContentUri"):
            if uri in resource.get("Properties", {}):
                resource["Properties"][uri] = "s3://artifacts/placeholder.zip"  # sam deploy uploads them

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    return transform(template, {}, NoManagedPolicies())


def test_template_has_no_dependency_cycle_after_the_sam_transform(template, monkeypatch):
    # cfn-lint checks the template before SAM adds the bucket's notification
    # configuration, so it does not see the cycle a function referring to the bucket
    # it is an event target of would create; CloudFormation refuses such a stack.
    assert dependency_cycle(sam_transformed(template, monkeypatch)) is None


def test_dependency_cycle_check_finds_a_bucket_event_target_referring_to_its_bucket(template, monkeypatch):
    # The check above is only worth something if it sees the cycle the notifier avoids.
    broken = copy.deepcopy(template)
    variables = broken["Resources"]["BatchMonitorFunction"]["Properties"]["Environment"]["Variables"]
    variables["INGEST_BUCKET"] = {"Ref": "IngestBucket"}

    cycle = dependency_cycle(sam_transformed(broken, monkeypatch))

    assert cycle is not None and {"IngestBucket", "BatchMonitorFunction"} <= set(cycle)


def test_actuals_table_is_read_by_the_monitor_and_written_by_the_loader(template):
    # Which calls each function really makes is checked by running it against moto
    # (tests/integration/test_aws_permissions.py); this is the split the design asks for:
    # the monitor (and retraining) only read actuals, the loader only writes them, and only
    # from actuals files.
    table = {"Fn::GetAtt": ["ActualsTable", "Arn"]}
    granted: dict[str, set[str]] = {
        "BatchMonitorFunction": set(),
        "ActualsLoaderFunction": set(),
        "RetrainFunction": set(),
    }
    for function, statement in policy_statements(template):
        if statement["Resource"] == table:
            granted[function] |= set(actions_of(statement))
    assert granted == {
        "BatchMonitorFunction": {"dynamodb:BatchGetItem"},
        "ActualsLoaderFunction": {"dynamodb:BatchWriteItem"},
        "RetrainFunction": {"dynamodb:BatchGetItem"},
    }
    loader_s3 = {
        action
        for function, statement in policy_statements(template)
        if function == "ActualsLoaderFunction"
        for action in actions_of(statement)
        if action.startswith("s3:")
    }
    assert loader_s3 == {"s3:GetObject"}


def test_a_promoted_model_layer_version_survives_a_deploy_that_names_it(template):
    # After a promotion, `sam deploy --parameter-overrides ModelLayerVersionArn=<champion>` must
    # keep every function with the model layer on the champion; without it, the built model.
    from tests.cloudformation import Resolver

    champion = "arn:aws:lambda:eu-west-1:123456789012:layer:modelwatch-model:7"
    pattern = re.compile(template["Parameters"]["ModelLayerVersionArn"]["AllowedPattern"])
    assert pattern.fullmatch(champion) and pattern.fullmatch("")
    assert not pattern.fullmatch("arn:aws:lambda:eu-west-1:123456789012:function:modelwatch-model")
    assert template["Parameters"]["ModelLayerVersionArn"]["Default"] == ""
    with_model = [
        name
        for name, definition in template["Resources"].items()
        if definition["Type"] == "AWS::Serverless::Function"
        and "ModelLayer"
        in referenced_resources(definition["Properties"].get("Layers", []), set(template["Resources"]))
    ]
    assert sorted(with_model) == [
        "ActualsLoaderFunction",
        "BatchMonitorFunction",
        "LabelJoinFunction",
        "RetrainFunction",
    ]
    built = Resolver(template).resolve({"Ref": "ModelLayer"})
    for parameters, expected in (({"ModelLayerVersionArn": champion}, champion), ({}, built)):
        resolver = Resolver(template, **parameters)
        for name in with_model:
            layers = resolver.resolve(template["Resources"][name]["Properties"]["Layers"])
            assert layers == [resolver.resolve({"Ref": "RuntimeLayer"}), expected], name
    # and the dashboard draws batches by model version, so the switch shows
    dashboard = str(template["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
    assert "ModelName,ModelVersion} MetricName=" in dashboard and "BatchesProcessed" in dashboard
    # and the retrain function promotes at once only with AutoPromote=true
    assert template["Parameters"]["AutoPromote"]["Default"] == "false"
    retrain_environment = template["Resources"]["RetrainFunction"]["Properties"]["Environment"]["Variables"]
    assert Resolver(template).resolve(retrain_environment["AUTO_PROMOTE"]) == "false"
    assert Resolver(template, AutoPromote="true").resolve(retrain_environment["AUTO_PROMOTE"]) == "true"

"""template.yaml is valid, and agrees with the code that reads what it defines."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from modelwatch.metrics import QUALITY_METRICS

from .conftest import REPO_ROOT, TEMPLATE, run, sam_executable, tool_environment

pytestmark = pytest.mark.template

FUNCTIONS = {
    "BatchMonitorFunction": "functions/batch_monitor",
    "ActualsLoaderFunction": "functions/actuals_loader",
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


def test_sam_validate_lint_passes_with_the_default_parameters():
    sam_validate(TEMPLATE)


def test_sam_validate_lint_passes_with_an_alert_email(tmp_path: Path):
    # Given the template with AlertEmail set, which turns on the email subscription
    text = TEMPLATE.read_text(encoding="utf-8")
    with_email, replaced = re.subn(
        r'(  AlertEmail:\n    Type: String\n    Default: )""', r'\1"oncall@example.com"', text
    )
    assert replaced == 1, "AlertEmail's definition changed shape; update this test's substitution"
    copy = tmp_path / "template.yaml"
    copy.write_text(with_email, encoding="utf-8")

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


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_environment_variable_a_function_gets_is_read_by_its_code(template, function):
    # A misspelt name in the template would silently leave the code on its default.
    shipped_code = "\n".join(
        path.read_text(encoding="utf-8")
        for path in [
            REPO_ROOT / FUNCTIONS[function] / "app.py",
            *sorted((REPO_ROOT / "src/modelwatch").glob("*.py")),
        ]
    )
    variables = template["Resources"][function]["Properties"]["Environment"]["Variables"]
    unread = [name for name in variables if f'"{name}"' not in shipped_code]
    assert not unread, f"{function} sets {unread}, which no shipped module reads"


def policy_statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    statements = []
    for name in FUNCTIONS:
        for policy in template["Resources"][name]["Properties"]["Policies"]:
            assert isinstance(policy, dict) and "Statement" in policy, f"{name}: inline policy documents only"
            statements += [(name, statement) for statement in policy["Statement"]]
    return statements


def test_function_policies_name_their_resources(template):
    # PutMetricData is the one action without a resource ARN; a namespace condition bounds it.
    for function, statement in policy_statements(template):
        if statement["Resource"] != "*":
            continue
        assert statement["Action"] == "cloudwatch:PutMetricData", f"{function}: {statement['Sid']} allows '*'"
        assert statement["Condition"]["StringEquals"]["cloudwatch:namespace"] == {"Ref": "MetricsNamespace"}


def test_function_policies_grant_no_wildcard_actions(template):
    for function, statement in policy_statements(template):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not [action for action in actions if "*" in action], f"{function}: {statement['Sid']}"


def test_bucket_name_in_the_policies_is_the_bucket_name(template):
    # The policies cannot !Ref the bucket (dependency cycle), so they repeat its name's expression.
    bucket_name = template["Resources"]["IngestBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    for function, statement in policy_statements(template):
        resource = statement["Resource"]
        if isinstance(resource, dict) and "Fn::Sub" in resource:
            arn, variables = resource["Fn::Sub"]
            assert arn.startswith("arn:${AWS::Partition}:s3:::" + bucket_name[0] + "/"), function
            assert variables == bucket_name[1], function

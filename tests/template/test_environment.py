"""Every environment variable a function's code reads is set by the template, and every
variable the template sets is read: the function's config is the only reader."""

from __future__ import annotations

import re
from typing import Any

import pytest

from modelwatch.config import AlertConfig, JoinConfig, LoaderConfig, MonitorConfig, RetrainConfig
from tests.template_resources import function_environment, load_template

# Read by Powertools itself (Logger), not by modelwatch's config.
pytestmark = pytest.mark.template

POWERTOOLS_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL"}
# Set by Lambda itself in every function (its reserved variables), not by the template.
LAMBDA_VARIABLES = {"AWS_REGION", "AWS_LAMBDA_FUNCTION_NAME"}

CONFIG_OF_FUNCTION = {
    "BatchMonitorFunction": MonitorConfig,
    "ActualsLoaderFunction": LoaderConfig,
    "AlertNotifierFunction": AlertConfig,
    "LabelJoinFunction": JoinConfig,
    "RetrainFunction": RetrainConfig,
}


class RecordingEnvironment(dict):
    """An os.environ stand-in that remembers which names were asked for."""

    def __init__(self, values: dict[str, str]):
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, name: str, default: Any = None) -> Any:
        self.read.add(name)
        return super().get(name, default)

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        self.read.add(str(name))
        return super().__contains__(name)


def resolved(value: Any, parameters: dict[str, Any]) -> str:
    """A plausible deployed value: a parameter's default, a resource's name."""
    if isinstance(value, dict) and "Ref" in value:
        name = value["Ref"]
        if name not in parameters:
            return f"{name.lower()}-name"
        # A parameter left empty by default (the Slack secret) is one a deployment sets.
        return str(parameters[name].get("Default", "")) or f"{name.lower()}-value"
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return re.sub(
            r"\$\{([^}]+)\}", lambda match: resolved({"Ref": match.group(1)}, parameters), value["Fn::Sub"]
        )
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        return resolved(value["Fn::If"][2], parameters)  # a condition's default: its "otherwise"
    if isinstance(value, dict):
        return "resolved-intrinsic"
    return str(value)


@pytest.mark.parametrize("function", sorted(CONFIG_OF_FUNCTION))
def test_the_config_reads_exactly_the_variables_the_template_sets(function):
    parameters = load_template()["Parameters"]
    variables = {name: resolved(value, parameters) for name, value in function_environment(function).items()}
    environment = RecordingEnvironment(variables)
    CONFIG_OF_FUNCTION[function].from_env(environment)
    set_by_template = set(variables) - POWERTOOLS_VARIABLES
    assert environment.read - set_by_template - LAMBDA_VARIABLES == set(), "read but not set by the template"
    assert set_by_template - environment.read == set(), "set by the template but never read"


def test_a_recording_environment_notices_an_unread_variable():
    # The check above must be able to fail: a variable nobody reads is caught.
    environment = RecordingEnvironment(
        {"ACTUALS_TABLE": "t", "LEDGER_TABLE": "i", "PREDICTION_LOG_TABLE": "p", "UNUSED": "x"}
    )
    MonitorConfig.from_env(environment)
    assert "UNUSED" not in environment.read and "ACTUALS_TABLE" in environment.read

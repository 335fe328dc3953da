"""template.yaml's values as CloudFormation would deploy them: intrinsic functions resolved
with the parameters' defaults (or chosen values) and stand-ins for the stack's ids.

The tests' own resolver, not modelwatch.local's: a misreading of the template in one is
not repeated in the other. Shared by the template tier (alarms, dashboard) and the
integration tier (the dashboard against the metrics the batch monitor publishes).
"""

from __future__ import annotations

import json
import re
from typing import Any

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
            if key == "Fn::If":
                condition, when_true, when_false = argument
                return self.resolve(when_true if self.condition(condition) else when_false)
            if key == "Fn::Equals":
                first, second = self.resolve(argument)
                return str(first) == str(second)
            if key == "Fn::Not":
                return not self.resolve(argument[0])
            if key == "Fn::And":
                return all(self.resolve(part) for part in argument)
            if key == "Fn::Or":
                return any(self.resolve(part) for part in argument)
            if key == "Condition":
                return self.condition(argument)
            if key.startswith("Fn::"):
                raise NotImplementedError(f"{key}: teach the test's resolver, or keep alarms simple")
        return {key: self.resolve(item) for key, item in value.items()}

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

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


def refused_by_rules(template: dict[str, Any], **parameters: str) -> list[str]:
    """The AssertDescription of every assertion of the template's Rules that refuses these
    parameters, as CloudFormation checks them before creating the stack: a rule applies when
    it has no RuleCondition or its condition is true."""
    resolver = Resolver(template, **parameters)
    refused = []
    for rule in template.get("Rules", {}).values():
        if "RuleCondition" in rule and not resolver.resolve(rule["RuleCondition"]):
            continue
        refused += [a["AssertDescription"] for a in rule["Assertions"] if not resolver.resolve(a["Assert"])]
    return refused


def dashboard_body(template: dict[str, Any], **parameters: str) -> dict[str, Any]:
    text = Resolver(template, **parameters).resolve(
        template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    )
    return json.loads(text)


def metric_widgets(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [widget["properties"] for widget in body["widgets"] if widget["type"] == "metric"]

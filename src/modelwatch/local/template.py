"""template.yaml as the local cloud reads it: SAM translated offline, then every intrinsic resolved.

The local stack takes every name, environment variable, event filter, alarm and
subscription from here, so there is no second copy of them in code. The SAM transform is
aws-sam-translator, the same library CloudFormation's transform runs, used offline: it
needs only a region and a managed-policy map (the policies are never evaluated locally,
so the map only has to name the ARNs SAM asks for).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelwatch.errors import UserError

LOCAL_ACCOUNT_ID = "123456789012"
LOCAL_REGION = "us-east-1"
DEFAULT_STACK_NAME = "modelwatch-local"
PARTITION = "aws"
# SAM needs an S3 location for code; a local path is swapped for this marker bucket before
# the transform and read back from the translated Code/Content afterwards.
LOCAL_CODE_BUCKET = "modelwatch-local-code"

NO_VALUE = object()  # AWS::NoValue: the property is removed


class TemplateError(UserError):
    """The template or a parameter cannot be turned into a local stack."""


# libyaml's parser when PyYAML was built with it (its wheels are): 10x the pure-Python one.
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _CloudFormationYamlLoader(_SafeLoader):
    """Reads the short intrinsic tags (!Ref, !Sub, !GetAtt ...) as their long JSON forms."""


def _intrinsic(loader: Any, tag_suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_CloudFormationYamlLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_CloudFormationYamlLoader)
    except FileNotFoundError:
        raise TemplateError(f"no template at {path}") from None
    if not isinstance(document, dict) or "Resources" not in document:
        raise TemplateError(f"{path} is not a CloudFormation/SAM template (no Resources)")
    return document


def parse_parameter_overrides(pairs: list[str] | None) -> dict[str, str]:
    """--param Key=Value pairs as a dict; the value may be empty (AlertEmail=)."""
    overrides: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise TemplateError(f"--param expects Key=Value, got {pair!r}")
        overrides[key.strip()] = value
    return overrides


def resolve_parameters(template: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    """Defaults with overrides applied, checked the way CloudFormation checks them at create time."""
    declared = template.get("Parameters") or {}
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(
            f"unknown parameter(s) {', '.join(unknown)}; the template declares {', '.join(sorted(declared))}"
        )
    values: dict[str, str] = {}
    for name, spec in declared.items():
        if name in overrides:
            value = overrides[name]
        elif "Default" in spec:
            value = spec["Default"]
        else:
            raise TemplateError(f"parameter {name} has no default: pass --param {name}=VALUE")
        value = "" if value is None else str(value)
        _check_parameter(name, spec, value)
        values[name] = value
    return values


def _check_parameter(name: str, spec: Mapping[str, Any], value: str) -> None:
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(v) for v in allowed]:
        raise TemplateError(f"parameter {name}={value!r} is not one of {', '.join(str(v) for v in allowed)}")
    pattern = spec.get("AllowedPattern")
    if pattern and not re.fullmatch(pattern, value):
        raise TemplateError(f"parameter {name}={value!r} does not match {pattern}")
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            raise TemplateError(f"parameter {name} must be a number, got {value!r}") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise TemplateError(f"parameter {name}={value} is below its MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise TemplateError(f"parameter {name}={value} is above its MaxValue {spec['MaxValue']}")


def check_rules(
    template: Mapping[str, Any], parameters: Mapping[str, str], pseudo: Mapping[str, str]
) -> None:
    """The template's Rules, as CloudFormation applies them before creating anything: a rule
    whose RuleCondition holds (or that has none) refuses the parameters when one of its
    Assertions is false, with the assertions' AssertDescription."""
    refused = []
    for name, rule in (template.get("Rules") or {}).items():
        if "RuleCondition" in rule and not _rule_value(rule["RuleCondition"], parameters, pseudo):
            continue
        for assertion in rule.get("Assertions") or []:
            if not _rule_value(assertion["Assert"], parameters, pseudo):
                description = assertion.get("AssertDescription") or "an assertion is false"
                refused.append(f"{description} (rule {name})")
    if refused:
        raise TemplateError("the stack cannot be created: " + "; ".join(refused))


def _rule_value(value: Any, parameters: Mapping[str, str], pseudo: Mapping[str, str]) -> Any:
    """A value of a rule: only parameters and the rule functions, as in CloudFormation's Rules
    (no resource exists yet); the functions that read the account (Fn::RefAll, Fn::ValueOf,
    Fn::ValueOfAll) cannot be answered locally."""
    if isinstance(value, list):
        return [_rule_value(item, parameters, pseudo) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise TemplateError(f"a rule's value must be a function or a literal, got {value!r}")
    ((key, argument),) = value.items()
    if key == "Ref":
        if argument in parameters:
            return parameters[argument]
        if argument in pseudo:
            return pseudo[argument]
        raise TemplateError(f"a rule refers to {argument}, which is not a parameter")
    arguments = _rule_value(argument, parameters, pseudo)
    if key == "Fn::Equals":
        return str(arguments[0]) == str(arguments[1])
    if key == "Fn::Not":
        return not arguments[0]
    if key == "Fn::And":
        return all(arguments)
    if key == "Fn::Or":
        return any(arguments)
    if key == "Fn::Contains":
        return str(arguments[1]) in [str(item) for item in arguments[0]]
    if key == "Fn::EachMemberEquals":
        return all(str(item) == str(arguments[1]) for item in arguments[0])
    if key == "Fn::EachMemberIn":
        return all(str(item) in [str(allowed) for allowed in arguments[1]] for item in arguments[0])
    raise TemplateError(f"the local cloud does not evaluate {key} in a rule")


class _PolicyMap(dict):
    """Any AWS managed policy SAM asks for, by its well-known ARN (never evaluated locally)."""

    def __missing__(self, name: str) -> str:
        return f"arn:{PARTITION}:iam::aws:policy/{name}"

    def get(self, name: str, default: Any = None) -> Any:  # samtranslator calls .get()
        return self[name]

    def __contains__(self, name: object) -> bool:
        return True


def translate_sam(
    template: Mapping[str, Any],
    parameters: Mapping[str, str],
    *,
    region: str,
    account_id: str,
    stack_name: str,
    stack_id: str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The CloudFormation template SAM's transform produces, and local code paths by logical id."""
    import boto3
    from samtranslator.metrics.metrics import DummyMetricsPublisher, Metrics
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    document = copy.deepcopy(dict(template))
    for resource in (document.get("Resources") or {}).values():
        properties = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                properties[key] = {"Bucket": LOCAL_CODE_BUCKET, "Key": properties[key]}
    for section in ("Function", "LayerVersion"):
        globals_ = (document.get("Globals") or {}).get(section) or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(globals_.get(key), str):
                globals_[key] = {"Bucket": LOCAL_CODE_BUCKET, "Key": globals_[key]}
    # A session with a region and dummy keys: the translator asks boto3 for the region only.
    session = boto3.session.Session(
        region_name=region, aws_access_key_id="local", aws_secret_access_key="local"
    )
    values = {
        **parameters,
        "AWS::AccountId": account_id,
        "AWS::StackName": stack_name,
        "AWS::StackId": stack_id,
        "AWS::Region": region,
        "AWS::Partition": PARTITION,
    }
    # The translator records its own usage metrics; publishing them to its dummy publisher
    # drops them, where garbage-collecting them unpublished prints a warning to the user.
    usage = Metrics("ServerlessTransform", DummyMetricsPublisher())
    try:
        translated = Translator(None, Parser(), metrics=usage, boto_session=session).translate(
            document, parameter_values=values, get_managed_policy_map=lambda: _PolicyMap()
        )
    except Exception as problem:  # the translator's errors list every invalid resource
        raise TemplateError(f"SAM could not translate the template: {problem}") from problem
    finally:
        usage.publish()
    translated = json.loads(json.dumps(translated))  # plain dicts/lists, no translator types
    code_paths: dict[str, str] = {}
    for logical_id, resource in translated["Resources"].items():
        properties = resource.get("Properties") or {}
        location = properties.get("Code") or properties.get("Content") or {}
        if isinstance(location, dict) and location.get("S3Bucket") == LOCAL_CODE_BUCKET:
            code_paths[logical_id] = location["S3Key"]
    return translated, code_paths


def stack_id_for(stack_name: str, *, region: str, account_id: str) -> str:
    """A stable stack ID: the same stack name gives the same bucket name on every run."""
    unique = uuid.uuid5(uuid.NAMESPACE_URL, f"modelwatch-local:{account_id}:{region}:{stack_name}")
    return f"arn:{PARTITION}:cloudformation:{region}:{account_id}:stack/{stack_name}/{unique}"


def generated_name(stack_name: str, logical_id: str, *, max_length: int = 64, lowercase: bool = False) -> str:
    """CloudFormation's shape for names it generates: <stack>-<LogicalId>-<SUFFIX>, deterministic here."""
    suffix = hashlib.sha256(f"{stack_name}/{logical_id}".encode()).hexdigest()[:12].upper()
    room = max_length - len(suffix) - 2
    stack_part = stack_name[: max(1, room // 2)] if len(stack_name) + len(logical_id) > room else stack_name
    logical_part = logical_id[: max(1, room - len(stack_part))]
    name = f"{stack_part}-{logical_part}-{suffix}"
    return name.lower() if lowercase else name


@dataclass
class Resolver:
    """Evaluates CloudFormation intrinsic functions against parameters and created resources.

    ``ref`` and ``get_att`` are called for resources; the stack creates a resource on first
    reference, so resources come into being in dependency order.
    """

    parameters: Mapping[str, Any]
    pseudo: Mapping[str, str]
    conditions: Mapping[str, Any]
    mappings: Mapping[str, Any]
    ref: Callable[[str], Any]
    get_att: Callable[[str, str], Any]
    _condition_values: dict[str, bool] = field(default_factory=dict)

    def condition(self, name: str) -> bool:
        if name not in self._condition_values:
            if name not in self.conditions:
                raise TemplateError(f"condition {name} is not declared")
            self._condition_values[name] = bool(self.resolve(self.conditions[name]))
        return self._condition_values[name]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self._ref(argument)
            if key == "Condition" and isinstance(argument, str):
                return self.condition(argument)
            if key.startswith("Fn::"):
                return self._function(key[4:], argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.ref(name)

    def _function(self, name: str, argument: Any) -> Any:
        if name == "If":
            condition, when_true, when_false = argument
            return self.resolve(when_true if self.condition(condition) else when_false)
        if name == "GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self.get_att(self.resolve(logical_id), self.resolve(attribute))
        if name == "Sub":
            return self._sub(argument)
        argument = self.resolve(argument)
        if name == "Equals":
            return str(argument[0]) == str(argument[1])
        if name == "Not":
            return not argument[0]
        if name == "And":
            return all(argument)
        if name == "Or":
            return any(argument)
        if name == "Join":
            separator, items = argument
            return separator.join(str(item) for item in items)
        if name == "Split":
            separator, text = argument
            return str(text).split(separator)
        if name == "Select":
            index, items = argument
            return items[int(index)]
        if name == "FindInMap":
            mapping, first, second = argument
            return self.mappings[mapping][first][second]
        if name == "GetAZs":
            region = argument or self.pseudo["AWS::Region"]
            return [f"{region}{letter}" for letter in "abc"]
        if name == "ToJsonString":
            return json.dumps(argument, separators=(",", ":"))
        raise TemplateError(f"the local cloud does not evaluate Fn::{name}")

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], self.resolve(argument[1] if len(argument) > 1 else {})
        else:
            text, variables = argument, {}

        def replace(match: re.Match[str]) -> str:
            token = match.group(1)
            if token.startswith("!"):
                return "${" + token[1:] + "}"  # ${!Literal} is written out as ${Literal}
            if token in variables:
                return str(variables[token])
            if "." in token and token.split(".", 1)[0] not in self.parameters:
                logical_id, attribute = token.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            return str(self._ref(token))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

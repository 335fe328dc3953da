"""Build moto resources from template.yaml's own definitions, so tests cannot drift from it."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelwatch.local import template as local_template

TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "template.yaml"


def load_template() -> dict[str, Any]:
    """template.yaml with its intrinsic tags in long form ({"Ref": ...}, {"Fn::Sub": ...})."""
    return copy.deepcopy(_parsed_template())


@functools.cache
def _parsed_template() -> dict[str, Any]:
    # Parsed once per session (70 ms each); callers get their own copy to change.
    return local_template.load_template(TEMPLATE_PATH)


def resource(logical_id: str) -> dict[str, Any]:
    return load_template()["Resources"][logical_id]


def create_table(dynamodb: Any, logical_id: str, table_name: str) -> str:
    """Create a DynamoDB table with the key schema and attributes the template declares."""
    properties = resource(logical_id)["Properties"]
    extra = {}
    if "StreamSpecification" in properties:
        extra["StreamSpecification"] = {"StreamEnabled": True, **properties["StreamSpecification"]}
    dynamodb.create_table(
        TableName=table_name,
        KeySchema=properties["KeySchema"],
        AttributeDefinitions=properties["AttributeDefinitions"],
        BillingMode=properties.get("BillingMode", "PAY_PER_REQUEST"),
        **extra,
    )
    return table_name


def function_environment(logical_id: str) -> dict[str, Any]:
    """The function's environment variables (Globals merged), intrinsics left unresolved."""
    template = load_template()
    merged = dict(template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
    merged.update(resource(logical_id)["Properties"].get("Environment", {}).get("Variables", {}))
    return merged


def parameter_defaults() -> dict[str, str]:
    """Each template parameter's Default, as CloudFormation passes it on: a string."""
    return {name: as_string(spec.get("Default", "")) for name, spec in load_template()["Parameters"].items()}


def as_string(value: Any) -> str:
    """A scalar as CloudFormation turns it into an environment value (YAML `true` -> "true")."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float | str):
        return str(value)
    raise TypeError(f"{value!r} is not a scalar")


def resolve(value: Any, resource_names: Mapping[str, str], where: str) -> str:
    """A scalar, or a !Ref to a parameter (its default) or to a resource (the name the test gave it)."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        target = value["Ref"]
        if target in resource_names:
            return resource_names[target]
        defaults = parameter_defaults()
        if target in defaults:
            return defaults[target]
        raise KeyError(f"{where}: !Ref {target} names a resource; pass the name the test created for it")
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        # ${Name} of a resource (the name the test gave it) or a parameter (its default).
        return re.sub(
            r"\$\{([^}.!]+)\}",
            lambda match: resolve({"Ref": match.group(1)}, resource_names, where),
            value["Fn::Sub"],
        )
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        condition, when_true, when_false = value["Fn::If"]
        chosen = when_true if condition_holds(condition, resource_names) else when_false
        return resolve(chosen, resource_names, where)
    if isinstance(value, dict):
        raise ValueError(f"{where}: {value} is an intrinsic these tests do not resolve; extend resolve()")
    return as_string(value)


def condition_holds(name: str, resource_names: Mapping[str, str]) -> bool:
    """A template condition over the parameters: their defaults, or the values ``resource_names``
    gives them (e.g. {"AutoPromote": "true"})."""

    def holds(expression: Any) -> Any:
        if isinstance(expression, dict):
            ((function, argument),) = expression.items()
            if function == "Condition":
                return holds(load_template()["Conditions"][argument])
            if function == "Fn::Not":
                return not holds(argument[0])
            if function == "Fn::And":
                return all(holds(part) for part in argument)
            if function == "Fn::Or":
                return any(holds(part) for part in argument)
            if function == "Fn::Equals":
                return holds(argument[0]) == holds(argument[1])
            if function == "Ref":
                return resource_names.get(argument, parameter_defaults().get(argument))
            raise ValueError(f"condition {name}: {function} is not resolved here; extend condition_holds()")
        return as_string(expression)

    return bool(holds(load_template()["Conditions"][name]))


def function_properties(logical_id: str) -> dict[str, Any]:
    """The function's Properties with Globals.Function under them (environment variables merged)."""
    template = load_template()
    merged = {
        key: value
        for key, value in template.get("Globals", {}).get("Function", {}).items()
        if key != "Environment"
    }
    merged.update(resource(logical_id)["Properties"])
    merged["Environment"] = {"Variables": function_environment(logical_id)}
    return merged


def handler_environment(logical_id: str, resource_names: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment Lambda gives the function as template.yaml declares it, with the
    parameters at their defaults and each !Ref to a resource replaced by the name in
    resource_names (the moto resource the test created for that logical id)."""
    names = dict(resource_names or {})
    return {
        name: resolve(value, names, f"{logical_id}.Environment.{name}")
        for name, value in function_environment(logical_id).items()
    }

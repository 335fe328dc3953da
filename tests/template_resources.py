"""Build moto resources from template.yaml's own definitions, so tests cannot drift from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelwatch.local import template as local_template

TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "template.yaml"


def load_template() -> dict[str, Any]:
    """template.yaml with its intrinsic tags in long form ({"Ref": ...}, {"Fn::Sub": ...})."""
    return local_template.load_template(TEMPLATE_PATH)


def resource(logical_id: str) -> dict[str, Any]:
    return load_template()["Resources"][logical_id]


def create_table(dynamodb: Any, logical_id: str, table_name: str) -> str:
    """Create a DynamoDB table with the key schema and attributes the template declares."""
    properties = resource(logical_id)["Properties"]
    dynamodb.create_table(
        TableName=table_name,
        KeySchema=properties["KeySchema"],
        AttributeDefinitions=properties["AttributeDefinitions"],
        BillingMode=properties.get("BillingMode", "PAY_PER_REQUEST"),
    )
    return table_name


def function_environment(logical_id: str) -> dict[str, Any]:
    """The function's environment variables (Globals merged), intrinsics left unresolved."""
    template = load_template()
    merged = dict(template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
    merged.update(resource(logical_id)["Properties"].get("Environment", {}).get("Variables", {}))
    return merged

"""Two shortcuts that make the embedded moto server fast enough for a 30-second demo.

Neither changes what a response says (tests/unit/test_moto_server.py compares them with
moto's own output):

- DynamoDB items skip moto's generic, shape-driven serializer. It visits every member of
  every AttributeValue through the service model and spent ~45 ms of a 57 ms BatchGetItem
  of 100 small items; the items are already in DynamoDB's wire form, so they are written
  as they are (binary values base64-encoded, as the generic serializer does).
- The request router remembers which service a Host header names, instead of matching
  it against ~180 URL patterns on every request (0.9 ms each).

Only the moto server process (``modelwatch.local.moto_server``) installs them.
"""

from __future__ import annotations

import functools
from typing import Any

from moto.core.serialize import SERVICE_SPECIFIC_SERIALIZERS, JSONSerializer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication


class DynamoDBSerializer(JSONSerializer):
    """moto's JSON serializer, with AttributeValues written directly instead of by shape."""

    def _serialize(self, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if shape.name == "AttributeValue" and isinstance(value, dict):
            serialized[key] = self._attribute_value(value)
            return
        super()._serialize(serialized, value, shape, key)

    def _attribute_value(self, value: dict[str, Any]) -> dict[str, Any]:
        wire: dict[str, Any] = {}
        for member, inner in value.items():
            if inner is None:
                continue
            if member == "B":
                wire[member] = self._base64(inner)
            elif member == "BS":
                wire[member] = [self._base64(item) for item in inner]
            elif member == "M":
                wire[member] = {name: self._attribute_value(item) for name, item in inner.items()}
            elif member == "L":
                wire[member] = [self._attribute_value(item) for item in inner]
            elif member in ("S", "N"):
                wire[member] = str(inner)
            elif member in ("SS", "NS"):
                wire[member] = [str(item) for item in inner]
            else:  # BOOL, NULL
                wire[member] = inner
        return wire


def use_dynamodb_serializer() -> None:
    """Serialize DynamoDB's JSON responses with DynamoDBSerializer, in this process."""
    SERVICE_SPECIFIC_SERIALIZERS.setdefault("dynamodb", {})["json"] = DynamoDBSerializer


class CachingDispatcher(DomainDispatcherApplication):
    """moto's router with the Host -> service lookup cached (it depends on the host alone)."""

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one dispatcher per server process
    def get_backend_for_host(self, host: str | None) -> Any:
        return super().get_backend_for_host(host)

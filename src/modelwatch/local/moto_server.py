"""An embedded moto server on loopback: the local cloud's AWS.

Two shortcuts make it fast enough for a 30-second demo without changing what any
response says (tests/unit/test_moto_server.py compares both with moto's own output):

- DynamoDB items skip moto's generic, shape-driven serializer. It visits every member of
  every AttributeValue through the service model and spends ~45 ms on one BatchGetItem
  of 100 small items; the items are already in DynamoDB's wire form, so they are written
  as they are (binary values base64-encoded, as the generic serializer does).
- The request router remembers which service a Host header names, instead of matching
  it against ~180 URL patterns on every request.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from typing import Any

from moto.core.serialize import SERVICE_SPECIFIC_SERIALIZERS, JSONSerializer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

# AttributeValue members whose values are binary (base64 on the wire).
_BINARY = "B"
_BINARY_SET = "BS"


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
            if member == _BINARY:
                wire[member] = self._base64(inner)
            elif member == _BINARY_SET:
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


# moto's serializer table is global to the process: the fast serializer is in it while at
# least one embedded server runs, so in-process moto (the tests) gets moto's own otherwise.
_servers_running = 0
_registry_lock = threading.Lock()


def _use_fast_dynamodb_serializer(use: bool) -> None:
    global _servers_running
    with _registry_lock:
        _servers_running += 1 if use else -1
        serializers = SERVICE_SPECIFIC_SERIALIZERS.setdefault("dynamodb", {})
        if _servers_running > 0:
            serializers["json"] = DynamoDBSerializer
        else:
            serializers.pop("json", None)


class _Dispatcher(DomainDispatcherApplication):
    """moto's router with the Host -> service lookup cached (it depends on the host alone)."""

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one dispatcher per server, kept for its life
    def get_backend_for_host(self, host: str | None) -> Any:
        return super().get_backend_for_host(host)


@dataclass
class EmbeddedAws:
    server: BaseWSGIServer
    thread: threading.Thread
    endpoint_url: str
    stopped: bool = False

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
        _use_fast_dynamodb_serializer(False)


def start_moto_server(port: int = 0) -> EmbeddedAws:
    """Start moto on 127.0.0.1 (port 0 picks a free one) in a thread; its request log is silenced."""
    # werkzeug logs every request at INFO; a batch makes hundreds of them.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server(
        "127.0.0.1",
        port,
        _Dispatcher(create_backend_app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    _use_fast_dynamodb_serializer(True)
    # A short poll interval: stop() waits for the loop to notice, 0.5 s by default.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="embedded-aws", daemon=True
    )
    thread.start()
    return EmbeddedAws(server=server, thread=thread, endpoint_url=f"http://127.0.0.1:{server.server_port}")

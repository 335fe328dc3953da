"""boto3 clients with timeouts and standard retries, created once per process.

Clients honour AWS_ENDPOINT_URL (and per-service variants), so the same code talks to
AWS in Lambda and to the embedded moto server locally.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"mode": "standard", "max_attempts": 5},
    max_pool_connections=16,  # the actuals reader runs up to 8 threads against one client
)


@cache
def client(service: str, region: str | None = None, config: Config | None = None) -> Any:
    """The one boto3 client of ``service`` (in ``region``, else the environment's region).

    ``config`` overrides parts of CLIENT_CONFIG (the alert notifier's shorter timeouts).
    A Config is cached by identity: build it once per process, not per call.
    """
    merged = CLIENT_CONFIG.merge(config) if config is not None else CLIENT_CONFIG
    # The service name is data here, which the boto3 stubs' per-service overloads cannot type.
    return boto3.client(service, region_name=region, config=merged)  # type: ignore[call-overload]


def reset_clients() -> None:
    """Forget cached clients (tests switch endpoints and credentials between cases)."""
    client.cache_clear()

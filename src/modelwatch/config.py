"""Runtime configuration, read once from the environment the template sets.

Every setting carries its unit in its name. The template's Globals and function
environments are the single source of these values; the defaults here are what a
test or a local run gets when a variable is absent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelwatch.errors import ConfigError

# Where the batch monitor writes: results/<batch key without incoming/>/... and the
# pointer results/latest.json to the newest report. Constants, not settings: the IAM
# policies in template.yaml name these prefixes, so a setting could only break them.
INCOMING_PREFIX = "incoming/"
RESULTS_PREFIX = "results/"
LATEST_REPORT_POINTER = "latest.json"

Environment = Mapping[str, str]


def required_setting(name: str, what: str, environ: Environment | None = None) -> str:
    value = (os.environ if environ is None else environ).get(name, "")
    if not value:
        raise ConfigError(f"{name} is not set: it names {what}")
    return value


def int_setting(name: str, default: int, minimum: int = 0, environ: Environment | None = None) -> int:
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def float_setting(
    name: str, default: float, minimum: float = 0.0, environ: Environment | None = None
) -> float:
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class MonitorConfig:
    """Settings of the batch-monitor function."""

    model_dir: Path
    actuals_table: str
    idempotency_table: str
    model_name: str  # the CloudWatch ModelName dimension; empty means metadata.json's name
    metrics_namespace: str
    min_labeled_rows: int
    max_invalid_row_percent: float
    max_batch_megabytes: int
    drift_threshold: float

    @property
    def max_batch_bytes(self) -> int:
        return self.max_batch_megabytes * 1024 * 1024

    @classmethod
    def from_env(cls, environ: Environment | None = None) -> MonitorConfig:
        env = os.environ if environ is None else environ
        return cls(
            model_dir=Path(env.get("MODEL_DIR", "/opt/model")),
            actuals_table=required_setting("ACTUALS_TABLE", "the DynamoDB table holding actuals", env),
            idempotency_table=required_setting(
                "IDEMPOTENCY_TABLE", "the DynamoDB table that remembers processed batch versions", env
            ),
            model_name=env.get("MODEL_NAME", ""),
            metrics_namespace=env.get("METRICS_NAMESPACE", "ModelWatch"),
            min_labeled_rows=int_setting("MIN_LABELED_ROWS", 30, minimum=1, environ=env),
            max_invalid_row_percent=float_setting("MAX_INVALID_ROW_PERCENT", 5.0, environ=env),
            max_batch_megabytes=int_setting("MAX_BATCH_MEGABYTES", 64, minimum=1, environ=env),
            drift_threshold=float_setting("DRIFT_THRESHOLD", 0.2, environ=env),
        )


@dataclass(frozen=True)
class LoaderConfig:
    """Settings of the actuals-loader function."""

    actuals_table: str
    model_dir: Path

    @classmethod
    def from_env(cls, environ: Environment | None = None) -> LoaderConfig:
        env = os.environ if environ is None else environ
        return cls(
            actuals_table=required_setting("ACTUALS_TABLE", "the DynamoDB table holding actuals", env),
            model_dir=Path(env.get("MODEL_DIR", "/opt/model")),
        )

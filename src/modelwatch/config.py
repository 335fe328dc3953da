"""Runtime configuration, read once from the environment the template sets.

Every setting carries its unit in its name. The template's Globals and function
environments are the single source of these values; the defaults here are what a
test or a local run gets when a variable is absent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from modelwatch.errors import ConfigError

# results/<prefix>latest.json names the newest report (written by the batch monitor,
# read by the alert notifier to link it).
LATEST_REPORT_POINTER = "latest.json"


def int_setting(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def float_setting(name: str, default: float, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
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
    model_name: str  # the CloudWatch ModelName dimension; empty means metadata.json's name
    metrics_namespace: str
    results_prefix: str
    min_labeled_rows: int
    max_invalid_row_percent: float
    max_batch_megabytes: int
    drift_threshold: float
    drift_min_rows: int
    actuals_read_threads: int

    @classmethod
    def from_env(cls) -> MonitorConfig:
        table = os.environ.get("ACTUALS_TABLE", "")
        if not table:
            raise ConfigError("ACTUALS_TABLE is not set: it names the DynamoDB table holding actuals")
        prefix = os.environ.get("RESULTS_PREFIX", "results/")
        if not prefix.endswith("/"):
            prefix += "/"
        return cls(
            model_dir=Path(os.environ.get("MODEL_DIR", "/opt/model")),
            actuals_table=table,
            model_name=os.environ.get("MODEL_NAME", ""),
            metrics_namespace=os.environ.get("METRICS_NAMESPACE", "ModelWatch"),
            results_prefix=prefix,
            min_labeled_rows=int_setting("MIN_LABELED_ROWS", 30, minimum=1),
            max_invalid_row_percent=float_setting("MAX_INVALID_ROW_PERCENT", 5.0),
            max_batch_megabytes=int_setting("MAX_BATCH_MEGABYTES", 64, minimum=1),
            drift_threshold=float_setting("DRIFT_THRESHOLD", 0.2),
            drift_min_rows=int_setting("DRIFT_MIN_ROWS", 200, minimum=1),
            actuals_read_threads=int_setting("ACTUALS_READ_THREADS", 8, minimum=1),
        )


@dataclass(frozen=True)
class LoaderConfig:
    """Settings of the actuals-loader function."""

    actuals_table: str
    model_dir: Path

    @classmethod
    def from_env(cls) -> LoaderConfig:
        table = os.environ.get("ACTUALS_TABLE", "")
        if not table:
            raise ConfigError("ACTUALS_TABLE is not set: it names the DynamoDB table holding actuals")
        return cls(actuals_table=table, model_dir=Path(os.environ.get("MODEL_DIR", "/opt/model")))

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


# --------------------------------------------------------------------------- alert notifier

# Slack's incoming webhooks live on this host; any other host needs the template parameter
# SlackWebhookAllowedHosts, so a secret edited to point elsewhere cannot redirect alerts.
DEFAULT_SLACK_WEBHOOK_HOSTS = ("hooks.slack.com",)
# An allowlist entry is a host name or IPv4 address: no scheme, port, path or wildcard.
_HOST_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")


def _is_host_name(text: str) -> bool:
    return (
        bool(text)
        and set(text) <= _HOST_CHARACTERS
        and not text.startswith((".", "-"))
        and not text.endswith((".", "-"))
        and ".." not in text
    )


def _host_list_setting(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    hosts = tuple(entry.strip().lower() for entry in raw.split(",") if entry.strip())
    for host in hosts:
        if not _is_host_name(host):
            raise ConfigError(
                f"{name} holds {host!r}, which is not a bare host name: list host names "
                f"separated by commas, without scheme, port or path (e.g. hooks.slack.com)"
            )
    return hosts


def _switch_setting(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.strip().lower() not in ("true", "false"):
        raise ConfigError(f'{name} must be "true" or "false", got {raw!r}')
    return raw.strip().lower() == "true"


@dataclass(frozen=True)
class AlertConfig:
    """Settings of the alert-notifier function.

    The defaults are the production values; the template sets only what it derives
    from its parameters and resources.
    """

    slack_webhook_secret_name: str
    slack_webhook_allowed_hosts: tuple[str, ...] = DEFAULT_SLACK_WEBHOOK_HOSTS
    # Only the local cloud's receiver is plain http; in AWS, http would send the webhook
    # token (a credential) unencrypted.
    slack_webhook_allow_http: bool = False
    # A rotated webhook is picked up within five minutes without a secret read per alert.
    secret_max_age_seconds: int = 300
    slack_timeout_seconds: float = 5.0
    slack_max_attempts: int = 4
    slack_backoff_base_seconds: float = 1.0
    slack_max_backoff_seconds: float = 20.0
    recent_periods: int = 6
    dashboard_name: str = ""  # empty: no dashboard link
    ingest_bucket: str = ""  # empty: no report link
    results_prefix: str = "results/"
    aws_region: str = ""  # the function's region, for an alarm message without an AlarmArn
    # Context from CloudWatch and S3 is best effort: a slow endpoint must not spend the
    # time the Slack post needs (boto3's defaults are 60 s each).
    aws_connect_timeout_seconds: float = 2.0
    aws_read_timeout_seconds: float = 5.0

    @classmethod
    def from_env(cls) -> AlertConfig:
        secret_name = os.environ.get("SLACK_WEBHOOK_SECRET_NAME", "")
        if not secret_name:
            raise ConfigError(
                "SLACK_WEBHOOK_SECRET_NAME is not set: it names the Secrets Manager secret of the webhook"
            )
        defaults = cls(slack_webhook_secret_name=secret_name)
        recent_periods = int_setting("RECENT_PERIODS", defaults.recent_periods, minimum=1)
        if recent_periods > 100:
            # A sparkline longer than this wraps in Slack and stops reading as a trend.
            raise ConfigError(f"RECENT_PERIODS must be <= 100, got {recent_periods}")
        prefix = os.environ.get("RESULTS_PREFIX", defaults.results_prefix)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(
            slack_webhook_secret_name=secret_name,
            slack_webhook_allowed_hosts=_host_list_setting(
                "SLACK_WEBHOOK_ALLOWED_HOSTS", defaults.slack_webhook_allowed_hosts
            ),
            slack_webhook_allow_http=_switch_setting(
                "SLACK_WEBHOOK_ALLOW_HTTP", defaults.slack_webhook_allow_http
            ),
            secret_max_age_seconds=int_setting(
                "SLACK_SECRET_MAX_AGE_SECONDS", defaults.secret_max_age_seconds
            ),
            slack_timeout_seconds=float_setting(
                "SLACK_TIMEOUT_SECONDS", defaults.slack_timeout_seconds, minimum=0.01
            ),
            slack_max_attempts=int_setting("SLACK_MAX_ATTEMPTS", defaults.slack_max_attempts, minimum=1),
            slack_backoff_base_seconds=float_setting(
                "SLACK_BACKOFF_BASE_SECONDS", defaults.slack_backoff_base_seconds
            ),
            slack_max_backoff_seconds=float_setting(
                "SLACK_MAX_BACKOFF_SECONDS", defaults.slack_max_backoff_seconds
            ),
            recent_periods=recent_periods,
            dashboard_name=os.environ.get("DASHBOARD_NAME", defaults.dashboard_name),
            ingest_bucket=os.environ.get("INGEST_BUCKET", defaults.ingest_bucket),
            results_prefix=prefix,
            aws_region=os.environ.get("AWS_REGION", defaults.aws_region),
            aws_connect_timeout_seconds=float_setting(
                "AWS_CONNECT_TIMEOUT_SECONDS", defaults.aws_connect_timeout_seconds, minimum=0.01
            ),
            aws_read_timeout_seconds=float_setting(
                "AWS_READ_TIMEOUT_SECONDS", defaults.aws_read_timeout_seconds, minimum=0.01
            ),
        )

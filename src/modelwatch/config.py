"""Runtime configuration, read once from the environment the template sets.

Every setting carries its unit in its name. The template's Globals and function
environments are the single source of these values; the defaults here are what a
test or a local run gets when a variable is absent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
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


def _tables(env: Environment) -> dict[str, str]:
    """The three tables the batch monitor and the label join share."""
    return {
        "actuals_table": required_setting("ACTUALS_TABLE", "the DynamoDB table holding actuals", env),
        "ledger_table": required_setting(
            "LEDGER_TABLE", "the DynamoDB table of the batch ledger (modelwatch.ledger)", env
        ),
        "prediction_log_table": required_setting(
            "PREDICTION_LOG_TABLE",
            "the DynamoDB table of logged predictions (modelwatch.prediction_log)",
            env,
        ),
    }


@dataclass(frozen=True)
class MonitorConfig:
    """Settings of the batch-monitor function."""

    model_dir: Path
    actuals_table: str
    ledger_table: str
    prediction_log_table: str
    model_name: str  # the CloudWatch ModelName dimension; empty means metadata.json's name
    metrics_namespace: str
    min_labeled_rows: int
    max_invalid_row_percent: float
    max_batch_megabytes: int
    drift_threshold: float
    prediction_log_days: int = 90
    # QualityAlarm's condition, shown in report.html beside the metric; empty: not shown.
    quality_metric: str = ""
    quality_threshold: float | None = None
    quality_comparison: str = ""
    # The quality, estimate and drift alarms' period and number of periods: how far back they
    # look (modelwatch.event_time.alarm_lookback), for the note on a batch stamped earlier.
    alarm_period_seconds: int = 3600
    evaluation_periods: int = 3

    @property
    def max_batch_bytes(self) -> int:
        return self.max_batch_megabytes * 1024 * 1024

    @classmethod
    def from_env(cls, environ: Environment | None = None) -> MonitorConfig:
        env = os.environ if environ is None else environ
        return cls(
            model_dir=Path(env.get("MODEL_DIR", "/opt/model")),
            **_tables(env),
            prediction_log_days=int_setting("PREDICTION_LOG_DAYS", 90, minimum=1, environ=env),
            model_name=env.get("MODEL_NAME", ""),
            metrics_namespace=env.get("METRICS_NAMESPACE", "ModelWatch"),
            min_labeled_rows=int_setting("MIN_LABELED_ROWS", 30, minimum=1, environ=env),
            max_invalid_row_percent=float_setting("MAX_INVALID_ROW_PERCENT", 5.0, environ=env),
            max_batch_megabytes=int_setting("MAX_BATCH_MEGABYTES", 64, minimum=1, environ=env),
            drift_threshold=float_setting("DRIFT_THRESHOLD", 0.2, environ=env),
            quality_metric=env.get("QUALITY_METRIC", ""),
            quality_threshold=_optional_number("QUALITY_THRESHOLD", env),
            quality_comparison=env.get("QUALITY_COMPARISON", ""),
            alarm_period_seconds=int_setting("ALARM_PERIOD_SECONDS", 3600, minimum=60, environ=env),
            evaluation_periods=int_setting("EVALUATION_PERIODS", 3, minimum=1, environ=env),
        )


def _optional_number(name: str, environ: Environment) -> float | None:
    raw = environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class LoaderConfig:
    """Settings of the actuals-loader function."""

    actuals_table: str
    model_dir: Path
    model_name: str = ""  # the CloudWatch ModelName dimension; empty means metadata.json's name
    metrics_namespace: str = "ModelWatch"
    max_actuals_megabytes: int = 64

    @classmethod
    def from_env(cls, environ: Environment | None = None) -> LoaderConfig:
        env = os.environ if environ is None else environ
        return cls(
            actuals_table=required_setting("ACTUALS_TABLE", "the DynamoDB table holding actuals", env),
            model_dir=Path(env.get("MODEL_DIR", "/opt/model")),
            model_name=env.get("MODEL_NAME", ""),
            metrics_namespace=env.get("METRICS_NAMESPACE", "ModelWatch"),
            max_actuals_megabytes=int_setting("MAX_ACTUALS_MEGABYTES", 64, minimum=1, environ=env),
        )


@dataclass(frozen=True)
class JoinConfig:
    """Settings of the label-join function (late labels)."""

    actuals_table: str
    ledger_table: str
    prediction_log_table: str
    model_dir: Path
    model_name: str
    metrics_namespace: str
    min_labeled_rows: int
    quality_metric: str = "ErrorRate"

    @classmethod
    def from_env(cls, environ: Environment | None = None) -> JoinConfig:
        env = os.environ if environ is None else environ
        return cls(
            **_tables(env),
            model_dir=Path(env.get("MODEL_DIR", "/opt/model")),
            model_name=env.get("MODEL_NAME", ""),
            metrics_namespace=env.get("METRICS_NAMESPACE", "ModelWatch"),
            min_labeled_rows=int_setting("MIN_LABELED_ROWS", 30, minimum=1, environ=env),
            quality_metric=env.get("QUALITY_METRIC", "ErrorRate") or "ErrorRate",
        )


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


def _host_list_setting(name: str, default: tuple[str, ...], environ: Environment) -> tuple[str, ...]:
    raw = environ.get(name)
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


def _switch_setting(name: str, default: bool, environ: Environment) -> bool:
    raw = environ.get(name)
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
    aws_region: str = ""  # the function's region, for an alarm message without an AlarmArn
    # Context from CloudWatch and S3 is best effort: a slow endpoint must not spend the
    # time the Slack post needs (boto3's defaults are 60 s each).
    aws_connect_timeout_seconds: float = 2.0
    aws_read_timeout_seconds: float = 5.0

    @classmethod
    def from_env(cls, environ: Environment | None = None) -> AlertConfig:
        """Only what the template sets (and AWS_REGION, which Lambda sets); the rest are
        the code's defaults above, which no deployment has needed to change."""
        env = os.environ if environ is None else environ
        defaults = cls(
            slack_webhook_secret_name=required_setting(
                "SLACK_WEBHOOK_SECRET_NAME", "the Secrets Manager secret of the Slack webhook", env
            )
        )
        return replace(
            defaults,
            slack_webhook_allowed_hosts=_host_list_setting(
                "SLACK_WEBHOOK_ALLOWED_HOSTS", defaults.slack_webhook_allowed_hosts, env
            ),
            slack_webhook_allow_http=_switch_setting(
                "SLACK_WEBHOOK_ALLOW_HTTP", defaults.slack_webhook_allow_http, env
            ),
            dashboard_name=env.get("DASHBOARD_NAME", defaults.dashboard_name),
            ingest_bucket=env.get("INGEST_BUCKET", defaults.ingest_bucket),
            aws_region=env.get("AWS_REGION", defaults.aws_region),
        )


# --------------------------------------------------------------------------- retraining

# Where retraining writes: models/<version>/ (a candidate's model directory) and
# models/decisions/ (one record per decision). A constant, like results/: the retrain
# function's policy names the prefix.
MODELS_PREFIX = "models/"
# The alarms whose ALARM can start a retrain: a quality alarm says the model got worse; the
# others (staleness, rejected batches, function errors) say the pipeline did, which a new
# model cannot fix.
RETRAINABLE_ALARMS = ("QualityAlarm", "EstimatedQualityAlarm", "DriftAlarm")


def _retrain_alarm_names(environ: Environment) -> tuple[str, ...]:
    """RETRAIN_ON_ALARM's logical names as the deployed alarm names (ALARM_NAMES maps them)."""
    logical = [name.strip() for name in environ.get("RETRAIN_ON_ALARM", "").split(",") if name.strip()]
    if not logical:
        return ()
    raw = environ.get("ALARM_NAMES", "")
    try:
        names = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        raise ConfigError(
            f"ALARM_NAMES must be a JSON object of logical id -> alarm name, got {raw!r}"
        ) from None
    unknown = [name for name in logical if name not in names]
    if unknown:
        raise ConfigError(
            f"RETRAIN_ON_ALARM names {unknown}, which are not alarms retraining can follow; "
            f"use logical names among {sorted(names) or list(RETRAINABLE_ALARMS)}, comma-separated"
        )
    return tuple(str(names[name]) for name in logical)


@dataclass(frozen=True)
class RetrainConfig:
    """Settings of the retrain function (and of `modelwatch model retrain`)."""

    model_dir: Path
    actuals_table: str
    ledger_table: str
    bucket: str  # the ingest bucket: batches are read from it, candidates written to models/
    alert_topic_arn: str  # where the decision is announced; empty: not announced
    quality_metric: str = "ErrorRate"
    quality_comparison: str = "GreaterThanThreshold"
    window_days: int = 14
    min_labeled_rows: int = 1000
    min_improvement: float = 0.01
    max_invalid_row_percent: float = 5.0
    max_batch_megabytes: int = 64
    # The deployed names of the alarms whose ALARM starts a retrain; empty: only on demand.
    retrain_alarm_names: tuple[str, ...] = ()
    auto_promote: bool = False  # AutoPromote: a candidate is promoted in the same run
    # The model layer's name and the functions that have it (modelwatch.promotion.Deployment).
    model_layer_name: str = ""
    model_functions: tuple[str, ...] = ()

    def promote_command(self, version: str) -> str:
        """The command that approves candidate ``version``, as the announcement gives it."""
        command = f"modelwatch model promote --version {version} --bucket {self.bucket}"
        return command + (f" --layer-name {self.model_layer_name}" if self.model_layer_name else "")

    @property
    def max_batch_bytes(self) -> int:
        return self.max_batch_megabytes * 1024 * 1024

    @classmethod
    def from_env(cls, environ: Environment | None = None) -> RetrainConfig:
        env = os.environ if environ is None else environ
        return cls(
            model_dir=Path(env.get("MODEL_DIR", "/opt/model")),
            actuals_table=required_setting("ACTUALS_TABLE", "the DynamoDB table holding actuals", env),
            ledger_table=required_setting(
                "LEDGER_TABLE", "the DynamoDB table of the batch ledger (modelwatch.ledger)", env
            ),
            bucket=required_setting("INGEST_BUCKET", "the bucket of batches and models", env),
            alert_topic_arn=env.get("ALERT_TOPIC_ARN", ""),
            quality_metric=env.get("QUALITY_METRIC", "ErrorRate") or "ErrorRate",
            quality_comparison=env.get("QUALITY_COMPARISON", "GreaterThanThreshold")
            or "GreaterThanThreshold",
            window_days=int_setting("RETRAIN_WINDOW_DAYS", 14, minimum=1, environ=env),
            min_labeled_rows=int_setting("RETRAIN_MIN_LABELED_ROWS", 1000, minimum=1, environ=env),
            min_improvement=float_setting("RETRAIN_MIN_IMPROVEMENT", 0.01, environ=env),
            max_invalid_row_percent=float_setting("MAX_INVALID_ROW_PERCENT", 5.0, environ=env),
            max_batch_megabytes=int_setting("MAX_BATCH_MEGABYTES", 64, minimum=1, environ=env),
            retrain_alarm_names=_retrain_alarm_names(env),
            auto_promote=_switch_setting("AUTO_PROMOTE", False, env),
            model_layer_name=env.get("MODEL_LAYER_NAME", ""),
            # Its own name from Lambda: the template cannot name a function in its own environment.
            model_functions=tuple(
                name
                for name in dict.fromkeys(
                    [*env.get("MODEL_FUNCTIONS", "").split(","), env.get("AWS_LAMBDA_FUNCTION_NAME", "")]
                )
                if name.strip()
            ),
        )

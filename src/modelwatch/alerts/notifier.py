"""AlertNotifier: one alarm notification in, one Slack post out.

Order of work for each message: a retraining announcement (modelwatch.alerts.announcement)
is posted as its text; otherwise parse it (a message that is no alarm is logged and
dropped), skip transitions not worth a post, fetch context (best effort), build the
message, read the webhook URL from Secrets Manager (cached for SLACK_SECRET_MAX_AGE_SECONDS),
post it (raising when delivery fails, so Lambda retries and then dead-letters the alert).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.utilities import parameters
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from modelwatch import aws
from modelwatch.alerts.alarm_message import AlarmNotification, should_post
from modelwatch.alerts.announcement import announcement_slack_message, is_announcement
from modelwatch.alerts.context import (
    EvaluatedDatapoint,
    fetch_evaluated_datapoint,
    fetch_recent_values,
    latest_report,
    newest_period_start,
)
from modelwatch.alerts.slack_message import RecentValues, build_slack_message, gather_links
from modelwatch.alerts.webhook import DeliveryPolicy, post_to_slack, webhook_url_from_secret
from modelwatch.config import RESULTS_PREFIX, AlertConfig
from modelwatch.errors import NotAnAlarmError, SlackDeliveryError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Slack answers these for a revoked or deleted webhook.
_WEBHOOK_GONE_STATUSES = (403, 404, 410)


class AlertNotifier:
    """Posts alarm notifications to Slack with the settings and clients it was built with.

    ``cloudwatch_in`` gives the CloudWatch client of a region: the alarm's own, since the
    topic may have subscribers in another one. ``sleep`` is the wait between delivery
    attempts, injected so tests record it instead of spending it.
    """

    def __init__(
        self,
        config: AlertConfig,
        *,
        cloudwatch_in: Callable[[str], Any],
        s3: Any,
        secrets: parameters.SecretsProvider,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.cloudwatch_in = cloudwatch_in
        self.s3 = s3
        self.secrets = secrets
        self.sleep = sleep

    @classmethod
    def from_environment(cls) -> AlertNotifier:
        """Settings from the environment the template sets; clients from modelwatch.aws."""
        config = AlertConfig.from_env()
        # Built once per notifier: modelwatch.aws caches clients by (service, region, config).
        client_config = Config(
            connect_timeout=config.aws_connect_timeout_seconds,
            read_timeout=config.aws_read_timeout_seconds,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        return cls(
            config,
            cloudwatch_in=lambda region: aws.client("cloudwatch", region, client_config),
            s3=aws.client("s3", None, client_config),
            secrets=parameters.SecretsProvider(
                boto3_client=aws.client("secretsmanager", None, client_config)
            ),
        )

    def webhook_url(self) -> str:
        # Powertools caches the value for max_age, so a warm function reads the secret once
        # per window instead of once per alert, and a rotated secret is picked up within it.
        secret = self.secrets.get(
            self.config.slack_webhook_secret_name, max_age=self.config.secret_max_age_seconds
        )
        if isinstance(secret, bytes):
            secret = secret.decode("utf-8")
        return webhook_url_from_secret(
            str(secret),
            allowed_hosts=self.config.slack_webhook_allowed_hosts,
            allow_http=self.config.slack_webhook_allow_http,
        )

    def notify(self, message: str, time_left_seconds: Callable[[], float] | None = None) -> bool:
        """Post one alarm notification (or retraining announcement) to Slack. Returns False
        when it was deliberately not posted."""
        if is_announcement(message):
            self._post(announcement_slack_message(message), {"announcement": "retraining"}, time_left_seconds)
            return True
        try:
            alarm = AlarmNotification.from_sns_message(message, fallback_region=self.config.aws_region)
        except NotAnAlarmError as error:
            # Retrying cannot turn it into an alarm, so it is logged rather than sent to the DLQ.
            logger.error("Not posting a message from the alert topic: %s", error)
            return False
        log_keys = {"alarm_name": alarm.name, "old_state": alarm.old_state, "new_state": alarm.new_state}

        post, why_not = should_post(alarm)
        if not post:
            logger.info(
                "Not posting %s -> %s for %s: %s",
                alarm.old_state,
                alarm.new_state,
                alarm.name,
                why_not,
                extra=log_keys,
            )
            return False

        recent, current_value, evaluated = self._metric_context(alarm)
        report = None
        if self.config.ingest_bucket:
            report = _best_effort(
                "the latest batch report",
                lambda: latest_report(self.s3, self.config.ingest_bucket, RESULTS_PREFIX),
            )
        # The page (report.html), labelled as the batch that moved the alarm only when its
        # event time lies in the period of the datapoint the alarm evaluated.
        moved = False
        if report is not None and alarm.metric is not None:
            moved = report.moved(evaluated, alarm.metric.period_seconds)
        payload = build_slack_message(
            alarm,
            current_value=current_value,
            recent=recent,
            links=gather_links(alarm, self.config, report.page_key if report else None, moved),
        )
        self._post(payload, log_keys, time_left_seconds)
        return True

    def _post(
        self,
        payload: dict[str, Any],
        log_keys: dict[str, str],
        time_left_seconds: Callable[[], float] | None,
    ) -> None:
        url = self.webhook_url()
        policy = DeliveryPolicy(
            timeout_seconds=self.config.slack_timeout_seconds,
            max_attempts=self.config.slack_max_attempts,
            backoff_base_seconds=self.config.slack_backoff_base_seconds,
            max_backoff_seconds=self.config.slack_max_backoff_seconds,
        )
        try:
            post_to_slack(url, payload, policy, time_left_seconds=time_left_seconds, sleep=self.sleep)
        except SlackDeliveryError as error:
            if error.status in _WEBHOOK_GONE_STATUSES:
                # If someone rotated the secret, Lambda's retry should read the new one
                # rather than the cached old one.
                self.secrets.clear_cache()
            logger.error(
                "Alert not delivered, raising so Lambda retries and then dead-letters it: %s",
                error,
                extra=log_keys,
            )
            raise

    def _metric_context(
        self, alarm: AlarmNotification
    ) -> tuple[RecentValues | None, float | None, EvaluatedDatapoint | None]:
        """The recent values, the value the alarm evaluated and its datapoint (None where
        CloudWatch failed)."""
        if alarm.metric is None:
            return None, None, None
        cloudwatch = self.cloudwatch_in(alarm.region)
        metric = alarm.metric
        recent = _best_effort(
            "the recent values",
            lambda: fetch_recent_values(
                cloudwatch, metric, until=alarm.state_change_time, periods=self.config.recent_periods
            ),
        )
        evaluated = _best_effort("the evaluated value", lambda: fetch_evaluated_datapoint(cloudwatch, alarm))
        current_value = None if evaluated is None else evaluated.value
        if current_value is None and recent is not None:
            # Without the alarm's own datapoint, the newest period it could have seen is the best stand-in.
            current_value = recent.latest
            if recent.values and recent.values[-1] is not None:
                # The newest period of the window the alarm judged at its state change has data:
                # that datapoint is the one that moved it.
                start = newest_period_start(alarm.state_change_time, metric.period_seconds)
                evaluated = EvaluatedDatapoint(start, recent.values[-1])
        return recent, current_value, evaluated


def _best_effort(what: str, call: Callable[[], T]) -> T | None:
    try:
        return call()
    except (ClientError, BotoCoreError) as error:
        logger.warning("Leaving %s out of the alert: %s", what, error)
        return None

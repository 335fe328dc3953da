"""Retrain: an alarm named in RetrainOnAlarm entered ALARM, so a challenger is fitted on the
recent labeled rows and compared with the champion (modelwatch.retraining).

Subscribed to the alert topic, so it also receives OK transitions, other alarms and the
announcements retraining itself publishes there: those are logged and skipped, and so is
a second delivery of an alarm transition already retrained on (modelwatch.alarm_claims). With
AutoPromote a candidate is promoted in the same invocation (modelwatch.promotion). An
exception propagates on purpose: Lambda retries the event, then the dead-letter queue keeps it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.data_classes import SNSEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from modelwatch import aws
from modelwatch.alarm_claims import AlarmClaims
from modelwatch.config import RetrainConfig
from modelwatch.model_bundle import load_bundle
from modelwatch.promotion import Deployment, Promoter
from modelwatch.retraining import Retrainer, retrain_trigger

logger = Logger()
tracer = Tracer()
copy_config_to_registered_loggers(source_logger=logger, include={"modelwatch"})


@cache
def settings() -> RetrainConfig:
    return RetrainConfig.from_env()


@cache
def retrainer() -> Retrainer:
    """Built on the first retrain, not at import, so tests can set up moto and the
    environment first (and a skipped message never loads the model); kept while warm."""
    config = settings()
    promoter = None
    if config.auto_promote:
        # The decision's announcement says it was promoted: no second message of its own.
        deployment = Deployment(config.bucket, config.model_layer_name, config.model_functions)
        promoter = Promoter(deployment, s3=aws.client("s3"), lambda_client=aws.client("lambda"))
    return Retrainer(
        config,
        load_bundle(config.model_dir),
        s3=aws.client("s3"),
        dynamodb=aws.client("dynamodb"),
        sns=aws.client("sns"),
        promoter=promoter,
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@event_source(data_class=SNSEvent)
def lambda_handler(event: SNSEvent, context: LambdaContext) -> dict[str, Any]:
    decisions, skipped = [], []
    for record in event.records:
        alarm, why_not = retrain_trigger(record.sns.message, settings().retrain_alarm_names)
        if alarm is None:
            logger.info("not retraining", extra={"why": why_not})
            skipped.append(why_not)
            continue
        claims = AlarmClaims(aws.client("dynamodb"), settings().ledger_table)
        if not claims.claim(alarm, context.aws_request_id):
            why = (
                f"alarm {alarm.name!r} entered ALARM at {alarm.state_change_time.isoformat()}, a "
                "transition already retrained on: this is a repeated delivery of its message"
            )
            logger.info("not retraining", extra={"why": why})
            skipped.append(why)
            continue
        try:
            decision = retrainer().retrain(alarm)
        except Exception:
            claims.release(alarm, context.aws_request_id)
            raise
        claims.decided(alarm, context.aws_request_id, decision.record_uri)
        decisions.append(
            {
                "decision": decision.decision,
                "reason": decision.reason,
                "challenger_version": decision.challenger_version,
                "promoted": decision.promotion is not None,
                "record": decision.record_uri,
            }
        )
    return {"decisions": decisions, "skipped": skipped}

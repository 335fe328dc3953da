"""Retrain: an alarm named in RetrainOnAlarm entered ALARM, so a challenger is fitted on the
recent labeled rows and compared with the champion (modelwatch.retraining).

Subscribed to the alert topic, so it also receives OK transitions, other alarms and the
announcements retraining itself publishes there: those are logged and skipped, and so is
a second delivery of an alarm transition already retrained on (modelwatch.alarm_claims). With
AutoPromote a candidate is promoted in the same invocation (modelwatch.promotion). An
exception propagates on purpose: Lambda retries the event, then the dead-letter queue keeps it.

A retrain whose alarm fired on the first changed period cannot learn the change yet: it is
deferred, and the function's hourly schedule retries it once more labels have arrived
(modelwatch.retrain_deferral). Without a deferral the hourly look is one DynamoDB read.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.data_classes import SNSEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from modelwatch import aws
from modelwatch.alarm_claims import AlarmClaims
from modelwatch.alerts.alarm_message import AlarmNotification
from modelwatch.config import RetrainConfig
from modelwatch.model_bundle import load_bundle, load_metadata
from modelwatch.promotion import Deployment, Promoter
from modelwatch.retrain_deferral import (
    MAX_ATTEMPTS,
    Deferral,
    Deferrals,
    is_schedule_event,
    labeled_rows_by_batch,
    trainable_rows_since,
)
from modelwatch.retraining import (
    DEFERRED,
    MIN_TRAINING_ROWS,
    RetrainDecision,
    Retrainer,
    degradation_start,
    retrain_trigger,
)

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


def deferrals() -> Deferrals:
    return Deferrals(aws.client("dynamodb"), settings().ledger_table)


def summary(decision: RetrainDecision) -> dict[str, Any]:
    return {
        "decision": decision.decision,
        "reason": decision.reason,
        "challenger_version": decision.challenger_version,
        "promoted": decision.promotion is not None,
        "record": decision.record_uri,
    }


def labeled_rows_since(since: Any) -> tuple[int, int]:
    """The ledger's labeled rows since ``since``, and how many of them a retrain would train on."""
    batches = labeled_rows_by_batch(aws.client("dynamodb"), settings().ledger_table)
    return sum(rows for moment, rows in batches if moment >= since), trainable_rows_since(batches, since)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_schedule_event(event):
        return retry_deferred(context)
    return on_alarm_messages(SNSEvent(event), context)


def on_alarm_messages(event: SNSEvent, context: LambdaContext) -> dict[str, Any]:
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
            decision = retrain_on(alarm, record.sns.message)
        except Exception:
            claims.release(alarm, context.aws_request_id)
            raise
        claims.decided(alarm, context.aws_request_id, decision.record_uri)
        decisions.append(summary(decision))
    return {"decisions": decisions, "skipped": skipped}


def retrain_on(alarm: AlarmNotification, message: str) -> RetrainDecision:
    """The retrain the alarm's transition starts; when it defers, the deferral is kept."""
    since = degradation_start(alarm)
    # Counted before the retrain: labels that arrive while it runs are new to the next look.
    rows, _ = labeled_rows_since(since)

    def keep_deferral(decision: RetrainDecision) -> None:
        # Before the decision is recorded: if this fails, the retry decides again.
        if decision.decision == DEFERRED:
            deferral = Deferral(decision.model_name, message, since, rows, attempts=0, deferred_at=0)
            deferrals().defer(deferral, settings().window_days)
        else:  # this alarm's newer transition decided: its older deferral is moot
            deferrals().clear(decision.model_name, alarm.name)

    return retrainer().retrain(alarm, may_defer=True, before_record=keep_deferral)


def retry_deferred(context: LambdaContext) -> dict[str, Any]:
    """The hourly look at the model's deferred retrains, one per alarm (modelwatch.retrain_deferral)."""
    config = settings()
    model = load_metadata(config.model_dir).name  # not the model itself: most looks find nothing
    looked = []
    for alarm_name in config.retrain_alarm_names:
        deferral = deferrals().pending(model, alarm_name)
        if deferral is not None:
            looked.append({"alarm": alarm_name, **retry_one(deferral, context)})
    return {"deferrals": looked}


def retry_one(deferral: Deferral, context: LambdaContext) -> dict[str, Any]:
    config = settings()
    found = aws.client("cloudwatch").describe_alarms(AlarmNames=[deferral.alarm_name])["MetricAlarms"]
    state = found[0]["StateValue"] if found else "deleted"
    age_days = (deferrals().clock() - deferral.deferred_at) / 86_400
    dropped = None
    if state != "ALARM":
        dropped = f"alarm {deferral.alarm_name!r} is {state} now: the degradation it was deferred for is over"
    elif age_days > config.window_days:
        dropped = f"deferred {age_days:.1f} days ago, longer than RetrainWindowDays ({config.window_days})"
    elif deferral.attempts >= MAX_ATTEMPTS:
        dropped = f"{deferral.attempts} retries were started and none decided (each failed: see the log)"
    if dropped is not None:
        deferrals().clear(deferral.model_name, deferral.alarm_name, deferral.alarm_message)
        logger.info("deferred retrain dropped", extra={"why": dropped})
        return {"outcome": "dropped", "why": dropped}
    rows, trainable = labeled_rows_since(deferral.since)
    if trainable < MIN_TRAINING_ROWS or rows <= deferral.labeled_rows:
        why = (
            f"{rows} labeled rows since {deferral.since.isoformat()} ({deferral.labeled_rows} at the last "
            f"attempt), {trainable} of them outside the holdout: at least {MIN_TRAINING_ROWS} and more "
            "than at the last attempt are needed"
        )
        logger.info("deferred retrain waits", extra={"why": why})
        return {"outcome": "waiting", "why": why}
    if not deferrals().claim(deferral, context.aws_request_id):
        return {"outcome": "taken", "why": "another invocation is retrying it"}
    attempt = deferral.attempts + 1

    def keep_deferral(decision: RetrainDecision) -> None:
        if decision.decision == DEFERRED:
            again = replace(deferral, labeled_rows=rows, attempts=attempt)
            if not deferrals().defer(again, config.window_days, retried_by=context.aws_request_id):
                logger.info("a newer transition of the alarm was deferred meanwhile: it stays")
        else:
            deferrals().clear(deferral.model_name, deferral.alarm_name, deferral.alarm_message)

    try:
        decision = retrainer().retrain(
            deferral.alarm, may_defer=attempt < MAX_ATTEMPTS, attempt=attempt, before_record=keep_deferral
        )
    except Exception:
        deferrals().release(deferral, context.aws_request_id)
        raise
    return {"outcome": "retried", "decision": summary(decision)}

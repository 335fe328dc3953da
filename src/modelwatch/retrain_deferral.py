"""A retrain deferred until the change it was started for can be learned.

At DatapointsToAlarm 1 a quality alarm fires on the first changed period. The retrain it
starts holds the newest batches out to judge the challenger (modelwatch.retraining), and
those are the changed ones: nothing changed is left to learn from, so no challenger can
beat the champion yet. Deciding "not better" there would end the loop at the alarm that
should start it: the alarm stays in ALARM and sends nothing more.

Instead the retrain is deferred: the alarm's message is kept in the batch ledger table
("retrain-deferred#<model>#<alarm>"), and the retrain function's hourly schedule
(template.yaml, RetrainFunction's ScheduleV2 event) looks at it:

- the alarm is no longer in ALARM, or the deferral is older than the retrain window: it
  is dropped, saying why;
- the ledger's labeled rows since the degradation began, less those the retrain would hold
  out, are still fewer than a training window needs, or no more than at the last attempt:
  nothing to do yet (one Scan of the ledger, no batch is read);
- otherwise the retrain runs again, as for the alarm. It may defer once more; the
  MAX_ATTEMPTS-th retry's decision stands whatever it is, and a deferral whose retries all
  failed is dropped after MAX_ATTEMPTS.

One deferral per model and alarm. Claimed like the batches and alarm transitions (a
conditional write that also counts the attempt), so two deliveries of the schedule retrain
once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from botocore.exceptions import ClientError

from modelwatch.alerts.alarm_message import AlarmNotification
from modelwatch.ledger import STALE_CLAIM_SECONDS, condition_failed
from modelwatch.retraining import holdout_mask

# What the schedule sends (template.yaml): the retrain function's event for "look at the deferrals".
SCHEDULE_EVENT = {"modelwatch": "deferred-retrains"}
# Retries after the first deferral; past them the retrain's decision stands.
MAX_ATTEMPTS = 6


def is_schedule_event(event: Any) -> bool:
    return isinstance(event, dict) and event.get("modelwatch") == SCHEDULE_EVENT["modelwatch"]


@dataclass(frozen=True)
class Deferral:
    model_name: str
    alarm_message: str  # the SNS message of the alarm's ALARM transition, as delivered
    since: datetime  # when the degradation began (the alarm's oldest breaching period)
    labeled_rows: int  # the ledger's labeled rows since then, at the last attempt
    attempts: int  # retries claimed since the first deferral (failed ones included)
    deferred_at: int  # epoch seconds of the first deferral

    @property
    def alarm(self) -> AlarmNotification:
        return AlarmNotification.from_sns_message(self.alarm_message)

    @property
    def alarm_name(self) -> str:
        return self.alarm.name


def trainable_rows_since(batches: list[tuple[datetime, int]], since: datetime) -> int:
    """Of the labeled rows since ``since`` (``batches``: each batch's event time and labeled
    rows), those a retrain would train on: the ones its holdout leaves."""
    times = [np.datetime64(moment.astimezone(UTC).replace(tzinfo=None), "ns") for moment, _ in batches]
    counts = [rows for _, rows in batches]
    event_times = np.repeat(np.array(times, dtype="datetime64[ns]"), np.array(counts, dtype=np.int64))
    if event_times.size == 0:
        return 0
    recent = event_times >= np.datetime64(since.astimezone(UTC).replace(tzinfo=None), "ns")
    return int((recent & ~holdout_mask(event_times, since)).sum())


class Deferrals:
    """The deferred retrains in the ledger table: one per model and alarm (RetrainOnAlarm may
    name several alarms, and one alarm's decision says nothing about another's change)."""

    def __init__(self, dynamodb: Any, ledger_table: str, clock: Callable[[], float] = time.time) -> None:
        self.dynamodb = dynamodb
        self.table = ledger_table
        self.clock = clock

    @staticmethod
    def item_id(model_name: str, alarm_name: str) -> str:
        return f"retrain-deferred#{model_name}#{alarm_name}"

    def _key(self, model_name: str, alarm_name: str) -> dict[str, Any]:
        return {"id": {"S": self.item_id(model_name, alarm_name)}}

    def defer(self, deferral: Deferral, window_days: int, *, retried_by: str | None = None) -> bool:
        """Keep the deferral (it expires with the retrain window). A new alarm transition's
        replaces the alarm's older one; a retry's (``retried_by``, its claim) only the one it
        claimed, so a newer transition deferred meanwhile stays. False when that one stayed."""
        now = int(self.clock())
        request: dict[str, Any] = {
            "TableName": self.table,
            "Item": {
                **self._key(deferral.model_name, deferral.alarm_name),
                "alarm_message": {"S": deferral.alarm_message},
                "since": {"S": deferral.since.isoformat()},
                "labeled_rows": {"N": str(deferral.labeled_rows)},
                "attempts": {"N": str(deferral.attempts)},
                "deferred_at": {"N": str(deferral.deferred_at or now)},
                "expiration": {"N": str(now + window_days * 86_400)},
            },
        }
        if retried_by is not None:
            request["ConditionExpression"] = "alarm_message = :message AND claimed_by = :request"
            request["ExpressionAttributeValues"] = {
                ":message": {"S": deferral.alarm_message},
                ":request": {"S": retried_by},
            }
        try:
            self.dynamodb.put_item(**request)
        except ClientError as problem:
            if condition_failed(problem):
                return False
            raise
        return True

    def pending(self, model_name: str, alarm_name: str) -> Deferral | None:
        item = self.dynamodb.get_item(
            TableName=self.table, Key=self._key(model_name, alarm_name), ConsistentRead=True
        ).get("Item")
        if not item:
            return None
        return Deferral(
            model_name=model_name,
            alarm_message=item["alarm_message"]["S"],
            since=datetime.fromisoformat(item["since"]["S"]),
            labeled_rows=int(item["labeled_rows"]["N"]),
            attempts=int(item["attempts"]["N"]),
            deferred_at=int(item["deferred_at"]["N"]),
        )

    def claim(self, deferral: Deferral, request_id: str) -> bool:
        """True when this invocation retries the retrain; False when another does or did.
        The claim counts the attempt, so a retry that keeps failing ends at MAX_ATTEMPTS."""
        now = int(self.clock())
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key=self._key(deferral.model_name, deferral.alarm_name),
                UpdateExpression="SET claimed_by = :request, claimed_at = :now, attempts = attempts + :one",
                ConditionExpression=(
                    "attempts = :attempts AND alarm_message = :message AND (attribute_not_exists(claimed_at)"
                    " OR claimed_at < :stale)"
                ),
                ExpressionAttributeValues={
                    ":request": {"S": request_id},
                    ":now": {"N": str(now)},
                    ":one": {"N": "1"},
                    ":attempts": {"N": str(deferral.attempts)},
                    ":message": {"S": deferral.alarm_message},
                    ":stale": {"N": str(now - STALE_CLAIM_SECONDS)},
                },
            )
        except ClientError as problem:
            if condition_failed(problem):
                return False
            raise
        return True

    def release(self, deferral: Deferral, request_id: str) -> None:
        """The retry failed: its claim goes (its attempt stays counted), so the next look may retry."""
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key=self._key(deferral.model_name, deferral.alarm_name),
                UpdateExpression="REMOVE claimed_by, claimed_at",
                ConditionExpression="claimed_by = :request",
                ExpressionAttributeValues={":request": {"S": request_id}},
            )
        except ClientError as problem:
            if not condition_failed(problem):
                raise

    def clear(self, model_name: str, alarm_name: str, alarm_message: str | None = None) -> None:
        """The alarm's deferral is over (only this transition's, when ``alarm_message`` is given:
        a newer one stays)."""
        request: dict[str, Any] = {"TableName": self.table, "Key": self._key(model_name, alarm_name)}
        if alarm_message is not None:
            request["ConditionExpression"] = "alarm_message = :message"
            request["ExpressionAttributeValues"] = {":message": {"S": alarm_message}}
        try:
            self.dynamodb.delete_item(**request)
        except ClientError as problem:
            if not condition_failed(problem):
                raise


def labeled_rows_by_batch(dynamodb: Any, ledger_table: str) -> list[tuple[datetime, int]]:
    """Each published batch's event time and labeled rows, as the ledger's totals have them
    (the rows of its row-additive quality metrics: labels found at upload and joined since)."""
    found = []
    pages = dynamodb.get_paginator("scan").paginate(
        TableName=ledger_table,
        ProjectionExpression="batch_event_time, published_totals",
        FilterExpression="attribute_exists(s3_bucket) AND attribute_exists(published_totals)",
    )
    for page in pages:
        for item in page.get("Items", []):
            try:
                moment = datetime.fromisoformat(item["batch_event_time"]["S"])
            except (KeyError, ValueError):
                continue
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            totals = item.get("published_totals", {}).get("M", {})
            rows = max((int(value["M"]["n"]["N"]) for value in totals.values()), default=0)
            found.append((moment, rows))
    return found

"""A retrain deferred until the change it was started for can be learned.

At DatapointsToAlarm 1 a quality alarm fires on the first changed period. The retrain it
starts holds the newest batches out to judge the challenger (modelwatch.retraining), and
those are the changed ones: nothing changed is left to learn from, so no challenger can
beat the champion yet. Deciding "not better" there would end the loop at the alarm that
should start it: the alarm stays in ALARM and sends nothing more.

Instead the retrain is deferred: the alarm's message is kept in the batch ledger table
("retrain-deferred#<model>", one per model), and the retrain function's hourly schedule
(template.yaml, RetrainFunction's ScheduleV2 event) looks at it:

- the alarm is no longer in ALARM, or the deferral is older than the retrain window: it
  is dropped, saying why;
- the ledger's labeled rows since the degradation began, less those the retrain would hold
  out, are still fewer than a training window needs, or no more than at the last attempt:
  nothing to do yet (one Scan of the ledger, no batch is read);
- otherwise the retrain runs again, as for the alarm. It may defer once more; after
  MAX_ATTEMPTS its decision stands whatever it is.

Claimed like the batches and alarm transitions (a conditional write), so two deliveries of
the schedule retrain once.
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
from modelwatch.ledger import STALE_CLAIM_SECONDS
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
    attempts: int  # retrains run since the first deferral
    deferred_at: int  # epoch seconds of the first deferral

    @property
    def alarm(self) -> AlarmNotification:
        return AlarmNotification.from_sns_message(self.alarm_message)


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
    def __init__(self, dynamodb: Any, ledger_table: str, clock: Callable[[], float] = time.time) -> None:
        self.dynamodb = dynamodb
        self.table = ledger_table
        self.clock = clock

    @staticmethod
    def item_id(model_name: str) -> str:
        return f"retrain-deferred#{model_name}"

    def defer(self, deferral: Deferral, window_days: int) -> None:
        """Keep (or replace) the model's deferral; it expires with the retrain window."""
        now = int(self.clock())
        self.dynamodb.put_item(
            TableName=self.table,
            Item={
                "id": {"S": self.item_id(deferral.model_name)},
                "alarm_message": {"S": deferral.alarm_message},
                "since": {"S": deferral.since.isoformat()},
                "labeled_rows": {"N": str(deferral.labeled_rows)},
                "attempts": {"N": str(deferral.attempts)},
                "deferred_at": {"N": str(deferral.deferred_at or now)},
                "expiration": {"N": str(now + window_days * 86_400)},
            },
        )

    def pending(self, model_name: str) -> Deferral | None:
        item = self.dynamodb.get_item(
            TableName=self.table, Key={"id": {"S": self.item_id(model_name)}}, ConsistentRead=True
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
        """True when this invocation retries the retrain; False when another does or did."""
        now = int(self.clock())
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"id": {"S": self.item_id(deferral.model_name)}},
                UpdateExpression="SET claimed_by = :request, claimed_at = :now",
                ConditionExpression=(
                    "attempts = :attempts AND alarm_message = :message AND (attribute_not_exists(claimed_at)"
                    " OR claimed_by = :request OR claimed_at < :stale)"
                ),
                ExpressionAttributeValues={
                    ":request": {"S": request_id},
                    ":now": {"N": str(now)},
                    ":attempts": {"N": str(deferral.attempts)},
                    ":message": {"S": deferral.alarm_message},
                    ":stale": {"N": str(now - STALE_CLAIM_SECONDS)},
                },
            )
        except ClientError as problem:
            if problem.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release(self, model_name: str, request_id: str) -> None:
        """The retry failed: its claim goes, so the next look (or Lambda's retry) may take it."""
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"id": {"S": self.item_id(model_name)}},
                UpdateExpression="REMOVE claimed_by, claimed_at",
                ConditionExpression="claimed_by = :request",
                ExpressionAttributeValues={":request": {"S": request_id}},
            )
        except ClientError as problem:
            if problem.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    def clear(self, model_name: str, alarm_message: str | None = None) -> None:
        """No deferral for the model any more (only this alarm's, when given: a newer one stays)."""
        request: dict[str, Any] = {"TableName": self.table, "Key": {"id": {"S": self.item_id(model_name)}}}
        if alarm_message is not None:
            request["ConditionExpression"] = "alarm_message = :message"
            request["ExpressionAttributeValues"] = {":message": {"S": alarm_message}}
        try:
            self.dynamodb.delete_item(**request)
        except ClientError as problem:
            if problem.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
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

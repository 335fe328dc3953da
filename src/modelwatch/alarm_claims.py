"""One retrain per alarm transition, however often SNS delivers its message.

SNS delivers at least once: the same ALARM message can reach the retrain function twice,
and each delivery would fit, record and announce a retrain of its own. The transition
(alarm name + StateChangeTime, the same in every copy of the message) is claimed first,
with a conditional write to the batch ledger table (its keys are "batch#..." hashes, these
"alarm#..."; both expire with the table's TTL):

- the first invocation claims it and retrains; a second delivery finds the claim and is
  skipped, saying so;
- Lambda's own retry of a failed attempt is no second delivery: it has the same request
  id, which re-claims. An attempt that raised releases its claim on the way out, so the
  retry may also come as a new invocation (the local cloud's retries do); one that died
  without releasing (a timeout) is taken over after STALE_CLAIM_SECONDS, as the ledger's
  batch claims are;
- once the decision is recorded the claim says where, and nothing takes it over.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from modelwatch.alerts.alarm_message import AlarmNotification
from modelwatch.ledger import RETENTION_DAYS, STALE_CLAIM_SECONDS, condition_failed


class AlarmClaims:
    def __init__(self, dynamodb: Any, ledger_table: str, clock: Callable[[], float] = time.time) -> None:
        self.dynamodb = dynamodb
        self.table = ledger_table
        self.clock = clock

    @staticmethod
    def item_id(alarm: AlarmNotification) -> str:
        transition = f"{alarm.name}\n{alarm.state_change_time.isoformat()}"
        return "alarm#" + hashlib.sha256(transition.encode("utf-8")).hexdigest()

    def claim(self, alarm: AlarmNotification, request_id: str) -> bool:
        """True when this invocation retrains on the transition; False when another has or does."""
        now = int(self.clock())
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"id": {"S": self.item_id(alarm)}},
                UpdateExpression=(
                    "SET alarm_name = :name, state_change_time = :changed, request_id = :request,"
                    " claimed_at = :now, expiration = :expires"
                ),
                ConditionExpression=(
                    "attribute_not_exists(id) OR (attribute_not_exists(decided_at)"
                    " AND (request_id = :request OR claimed_at < :stale))"
                ),
                ExpressionAttributeValues={
                    ":name": {"S": alarm.name},
                    ":changed": {"S": alarm.state_change_time.isoformat()},
                    ":request": {"S": request_id},
                    ":now": {"N": str(now)},
                    ":expires": {"N": str(now + RETENTION_DAYS * 86_400)},
                    ":stale": {"N": str(now - STALE_CLAIM_SECONDS)},
                },
            )
        except ClientError as problem:
            if condition_failed(problem):
                return False
            raise
        return True

    def release(self, alarm: AlarmNotification, request_id: str) -> None:
        """The attempt failed: its claim is made stale at once, so any retry may take it."""
        self._update_own(alarm, request_id, "SET claimed_at = :zero", {":zero": {"N": "0"}})

    def decided(self, alarm: AlarmNotification, request_id: str, record_uri: str | None) -> None:
        """The decision is recorded: the claim is kept for good, pointing at the record."""
        self._update_own(
            alarm,
            request_id,
            "SET decided_at = :now, decision_record = :record",
            {":now": {"N": str(int(self.clock()))}, ":record": {"S": record_uri or ""}},
        )

    def _update_own(
        self, alarm: AlarmNotification, request_id: str, update: str, values: dict[str, Any]
    ) -> None:
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"id": {"S": self.item_id(alarm)}},
                UpdateExpression=update,
                ConditionExpression="request_id = :request",
                ExpressionAttributeValues={":request": {"S": request_id}, **values},
            )
        except ClientError as problem:
            if not condition_failed(problem):  # taken over meanwhile: the taker answers for it
                raise

"""The batch ledger: each batch's content counted once, each batch's metrics published once.

S3 delivers events at least once, Lambda retries a failed invocation twice, and people
upload the same file again. None of that may count a batch twice in CloudWatch. One
DynamoDB item per batch *content* (bucket, key, the SHA-256 of the bytes, the model)
records which object version owns it and whether its metrics went out:

- ``claim``: the first version with this content owns it. The same version claims it
  again on every retry or redelivery (so nothing is ever locked by a crashed attempt);
  another version with identical bytes is a duplicate of the owner. An owner that never
  published (a defect, a crash that outlived its retries) is taken over by the next
  upload after ``STALE_CLAIM_SECONDS``, so re-uploading the file is always a way out.
- ``mark_published`` just before PutMetricData, conditional on nobody having published:
  a retry after the metrics went out (the invocation timed out, the runtime lost the
  response) finds the mark and publishes nothing. If PutMetricData fails, ``unmark``
  lets the retry publish. The one unguarded window: the process dies between the mark
  and PutMetricData, and the batch's datapoints are lost rather than counted twice (the
  report is complete either way).

The item also carries what the label join needs (modelwatch.label_join): where the
batch's results are, whether it was scored (a rejected batch has no predictions), its
event time, the row-additive totals (rows, sum of per-row values) published for it so
far and the S3 version of the predictions file that holds the labels behind them. The
join advances totals and version together, with a revision check.

One item per model, ``pool#<model>``, pools the row-additive totals of batches with too
few labeled rows to be judged (MinLabeledRows), until together they are enough to publish
(``update_pool``; a batch's ``published_totals`` count what it gave the pool too, so a
later join adds only the difference). The batch monitor and the label join update it just
before PutMetricData, with a revision check; when PutMetricData fails they put back what
they took, less their own addition, which the retry adds again. The unguarded window: the
process dies between emptying the pool and PutMetricData, and the pooled rows are lost
rather than counted twice. (Putting back can also race: an invocation whose addition
another one published meanwhile takes it back, leaving the pool below zero until the
retry adds it again; every row is still counted once, or, without a retry, not at all.)

Drift and the performance estimate, which are not sums over rows, pool the small batches'
rows themselves, in items of their own in the same table (modelwatch.row_pool).

A conditional write whose response is lost (a timeout after DynamoDB applied it) is sent
again by botocore, and its condition then fails against its own effect: the publish mark
would look like another attempt's, a revision like another invocation's. So each such
write stamps a token of its own in ``recent_writes`` (the last ``RECENT_WRITES``), and a
failed condition whose item holds the token is the write applied already (``_applied``).

A changed file on the same key is other content, so it is a new batch with its own
claim, results and metrics. Items expire after ``RETENTION_DAYS`` (DynamoDB TTL; longer
when the prediction log keeps rows longer, so a late label still finds its batch): an
identical re-upload after that counts again.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from modelwatch.errors import RevisionConflict
from modelwatch.results import BatchObject

_serializer, _deserializer = TypeSerializer(), TypeDeserializer()

RETENTION_DAYS = 90
# Longer than a Lambda invocation can run (15 minutes): a claim this old whose metrics
# never went out belongs to an attempt that is over.
STALE_CLAIM_SECONDS = 20 * 60
# Tries of ``restore_totals`` against other joins advancing the same batch at that moment.
RESTORE_ATTEMPTS = 5
# Tokens of the last writes an item keeps: a lost response is retried within seconds, so
# its token is still there unless this many other writes of the same item came between.
RECENT_WRITES = 8


@dataclass(frozen=True)
class Claim:
    """This version owns the content (``duplicate_of`` is None) or another one does."""

    item_id: str
    version_id: str
    duplicate_of: BatchObject | None = None


def content_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class BatchLedger:
    def __init__(
        self, dynamodb: Any, table: str, clock: Any = time.time, retention_days: int = RETENTION_DAYS
    ):
        self.dynamodb = dynamodb
        self.table = table
        self.clock = clock
        self.retention_days = retention_days

    def claim(self, batch: BatchObject, content: str, model: str) -> Claim:
        """``content`` identifies the bytes (a digest, or the version for an unread object)."""
        identity = "\n".join([batch.bucket, batch.key, model, content])
        item_id = "batch#" + hashlib.sha256(identity.encode("utf-8")).hexdigest()
        version = batch.version_id or batch.etag
        now = int(self.clock())
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"id": {"S": item_id}},
                UpdateExpression=(
                    "SET version_id = :version, bucket_key = :key, claimed_at = :now, expiration = :expires"
                    " REMOVE failed_at"  # this attempt has not failed (yet)
                ),
                ConditionExpression=(
                    "attribute_not_exists(id) OR version_id = :version"
                    " OR (attribute_not_exists(published_at) AND claimed_at < :stale)"
                ),
                ExpressionAttributeValues={
                    ":version": {"S": version},
                    ":key": {"S": batch.key},
                    ":now": {"N": str(now)},
                    ":expires": {"N": str(now + self.retention_days * 86_400)},
                    ":stale": {"N": str(now - STALE_CLAIM_SECONDS)},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as problem:
            if not condition_failed(problem):
                raise
            item: dict[str, Any] = problem.response.get("Item", {})  # type: ignore[assignment]
            owner = item.get("version_id", {}).get("S", "")
            return Claim(
                item_id, version, duplicate_of=BatchObject(batch.bucket, batch.key, version_id=owner)
            )
        return Claim(item_id, version)

    def claim_content(self, batch: BatchObject, content: str, model: str, item_id: str) -> BatchObject | None:
        """The same bytes under another key of the bucket, scored already (or being scored):
        that batch; None when this key may have them. An upstream stuck re-sending one export
        under new keys would otherwise look like a live, healthy feed. A key whose batch was
        rejected, failed, or left the ledger gives the bytes up to the next key."""
        content_id = (
            "content#" + hashlib.sha256("\n".join([batch.bucket, model, content]).encode()).hexdigest()
        )
        for _ in range(RESTORE_ATTEMPTS):
            item = self.dynamodb.get_item(
                TableName=self.table, Key={"id": {"S": content_id}}, ConsistentRead=True
            ).get("Item")
            if item and item["s3_key"]["S"] != batch.key:
                owner = batch_state(self, item["batch_item"]["S"])
                if owner is not None and (owner.scored if owner.published else not owner.failed):
                    return BatchObject(batch.bucket, item["s3_key"]["S"], version_id=item["version_id"]["S"])
            now = int(self.clock())
            try:
                self.dynamodb.update_item(
                    TableName=self.table,
                    Key={"id": {"S": content_id}},
                    UpdateExpression="SET s3_key = :key, version_id = :version, batch_item = :item"
                    ", expiration = :expires",
                    # Whoever held it when read still does (two keys taking it over at once: one wins).
                    ConditionExpression="attribute_not_exists(id)" if not item else "s3_key = :held",
                    ExpressionAttributeValues={
                        ":key": {"S": batch.key},
                        ":version": {"S": batch.version_id or batch.etag},
                        ":item": {"S": item_id},
                        ":expires": {"N": str(now + self.retention_days * 86_400)},
                        **({":held": item["s3_key"]} if item else {}),
                    },
                )
            except ClientError as problem:
                if not condition_failed(problem):
                    raise
                continue  # another key took the bytes meanwhile: read again
            return None
        raise RevisionConflict(content_id)

    def mark_published(
        self,
        claim: Claim,
        batch: BatchObject | None = None,
        event_time: str = "",
        totals: Totals | None = None,
        live: bool = True,
        predictions_version: str | None = None,
    ) -> bool:
        """False when this batch's metrics were already published (by an earlier attempt).

        ``batch``, ``event_time``, ``totals`` (the row-additive metrics published) and
        ``predictions_version`` (the S3 version of the predictions file, "" in a bucket
        without versioning; None: the batch was not scored) are kept for the label join."""
        token = write_token()
        values: dict[str, Any] = {
            ":now": {"N": str(int(self.clock()))},
            ":version": {"S": claim.version_id},
            ":mine": {"L": [{"S": token}]},
            ":none": {"L": []},
        }
        # Appended (the item is not read first); a batch is marked a handful of times at most.
        update = "SET published_at = :now"
        update += ", recent_writes = list_append(if_not_exists(recent_writes, :none), :mine)"
        if batch is not None:
            update += ", s3_bucket = :bucket, s3_key = :key, batch_event_time = :event_time"
            update += ", published_totals = :totals, is_live = :live"
            values.update(
                {
                    ":bucket": {"S": batch.bucket},
                    ":key": {"S": batch.key},
                    ":event_time": {"S": event_time},
                    ":totals": _serializer.serialize(_encode_totals(totals or {})),
                    ":live": {"BOOL": live},
                }
            )
            update += ", scored = :scored"
            values[":scored"] = {"BOOL": predictions_version is not None}
            if predictions_version:
                update += ", predictions_version = :predictions"
                values[":predictions"] = {"S": predictions_version}
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"id": {"S": claim.item_id}},
                UpdateExpression=update,
                ConditionExpression="version_id = :version AND attribute_not_exists(published_at)",
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as problem:
            if condition_failed(problem):
                return applied(problem, token)  # this mark, its response lost: still ours
            raise
        return True

    def mark_failed(self, claim: Claim) -> None:
        """This attempt ended without publishing (a defect, AWS trouble): the label join stops
        waiting for it (Lambda's retry claims the batch again, which clears the mark)."""
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"id": {"S": claim.item_id}},
                UpdateExpression="SET failed_at = :now",
                ConditionExpression="version_id = :version AND attribute_not_exists(published_at)",
                ExpressionAttributeValues={
                    ":now": {"N": str(int(self.clock()))},
                    ":version": {"S": claim.version_id},
                },
            )
        except ClientError as problem:
            if not condition_failed(problem):
                raise

    def unmark_published(self, claim: Claim) -> bool:
        """PutMetricData failed: the next attempt publishes. Not if a label join advanced the
        batch since the mark (it took the batch as published and added its labels' part):
        the retry would read those labels at upload and count them again, so the mark stays
        and this attempt's datapoints are lost rather than counted twice. Whether it did."""
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"id": {"S": claim.item_id}},
                UpdateExpression="REMOVE published_at",
                ConditionExpression="version_id = :version AND attribute_not_exists(totals_revision)",
                ExpressionAttributeValues={":version": {"S": claim.version_id}},
            )
        except ClientError as problem:
            if not condition_failed(problem):
                raise
            return False  # a join advanced it, or another version took the content over
        return True


def condition_failed(problem: ClientError) -> bool:
    return problem.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def write_token() -> str:
    return uuid.uuid4().hex


def recent_writes(item: dict[str, Any]) -> list[str]:
    """The tokens an item (DynamoDB's form) holds, oldest first."""
    return [value["S"] for value in item.get("recent_writes", {}).get("L", [])]


def with_token(recent: list[str], token: str) -> dict[str, Any]:
    """``recent_writes`` after a write that read ``recent`` and stamps ``token``."""
    return {"L": [{"S": value} for value in [*recent, token][-RECENT_WRITES:]]}


def applied(problem: ClientError, token: str) -> bool:
    """A failed condition (asked with ReturnValuesOnConditionCheckFailure=ALL_OLD) that
    met the write stamped ``token``: botocore resent a write whose response was lost."""
    item: dict[str, Any] = problem.response.get("Item", {})  # type: ignore[assignment]
    return token in recent_writes(item)


# -- the label join's view of a batch -----------------------------------------------------

Totals = dict[str, tuple[int, float]]  # row-additive metric -> (rows, sum of per-row values)


@dataclass(frozen=True)
class BatchState:
    item_id: str
    batch: BatchObject
    event_time: str
    published: bool
    totals: Totals
    revision: int
    live: bool  # false for a backfill CloudWatch could not take: its labels publish nothing
    # False for a rejected batch: nothing was scored, there is nothing to join. (Items
    # written before the flag existed belong to scored batches: rejected ones logged nothing.)
    scored: bool = True
    # The S3 version of the predictions file whose labels ``totals`` count; "" reads the newest.
    predictions_version: str = ""
    # Labels joined by a join whose publish failed after another join had advanced the batch:
    # its part left the totals, but the newer file holds them, so they are new to no later
    # join. The next join announces them (LabelsArrived, LabelsJoined) and clears the count.
    unannounced: int = 0
    # Not published, and the last attempt to score it is over: it said it failed, or it has
    # been claimed longer than any invocation runs (a timeout ends one without a word).
    failed: bool = False
    recent_writes: tuple[str, ...] = ()  # the item's write tokens, as read


def _encode_totals(totals: Totals) -> dict[str, Any]:
    return {
        name: {"n": Decimal(rows), "s": Decimal(repr(float(total)))} for name, (rows, total) in totals.items()
    }


def _decode_totals(raw: dict[str, Any]) -> Totals:
    return {name: (int(value["n"]), float(value["s"])) for name, value in raw.items()}


def batch_state(ledger: BatchLedger, item_id: str) -> BatchState | None:
    """The batch as its last publication left it (a strongly consistent read)."""
    item = ledger.dynamodb.get_item(
        TableName=ledger.table, Key={"id": {"S": item_id}}, ConsistentRead=True
    ).get("Item")
    if not item:
        return None
    plain = {name: _deserializer.deserialize(value) for name, value in item.items()}
    return BatchState(
        item_id=item_id,
        batch=BatchObject(
            str(plain.get("s3_bucket", "")),
            str(plain.get("s3_key", "")),
            version_id=str(plain["version_id"]),
        ),
        event_time=str(plain.get("batch_event_time", "")),
        published="published_at" in plain and "s3_bucket" in plain,
        totals=_decode_totals(plain.get("published_totals", {})),
        revision=int(plain.get("totals_revision", 0)),
        live=bool(plain.get("is_live", True)),
        scored=bool(plain.get("scored", True)),
        predictions_version=str(plain.get("predictions_version", "")),
        unannounced=int(plain.get("unannounced_labels", 0)),
        failed="published_at" not in plain
        and ("failed_at" in plain or int(plain.get("claimed_at", 0)) < ledger.clock() - STALE_CLAIM_SECONDS),
        recent_writes=tuple(recent_writes(item)),
    )


def advance_totals(
    ledger: BatchLedger, state: BatchState, totals: Totals, predictions_version: str = ""
) -> int:
    """Record ``totals`` as published for the batch, and ``predictions_version`` as the
    predictions file that holds their labels, if nobody did since ``state`` was read;
    returns the new revision."""
    seen = {":seen": {"N": str(state.revision)}} if state.revision else {}
    version = {":predictions": {"S": predictions_version}} if predictions_version else {}
    token = write_token()
    try:
        ledger.dynamodb.update_item(
            TableName=ledger.table,
            Key={"id": {"S": state.item_id}},
            UpdateExpression="SET published_totals = :totals, totals_revision = :next"
            + ", recent_writes = :recent"
            # No version (a bucket without versioning): no pin left naming an older file. The
            # labels left unannounced are this join's to announce (state.unannounced).
            + (", predictions_version = :predictions" if version else "")
            + " REMOVE unannounced_labels"
            + ("" if version else ", predictions_version"),
            ConditionExpression="attribute_exists(published_at) AND "
            + ("totals_revision = :seen" if seen else "attribute_not_exists(totals_revision)"),
            ExpressionAttributeValues={
                ":totals": _serializer.serialize(_encode_totals(totals)),
                ":next": {"N": str(state.revision + 1)},
                ":recent": with_token(list(state.recent_writes), token),
                **seen,
                **version,
            },
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as problem:
        if not condition_failed(problem):
            raise
        if not applied(problem, token):
            raise RevisionConflict(state.item_id) from None
    return state.revision + 1


def restore_totals(
    ledger: BatchLedger, state: BatchState, revision: int, advanced: Totals, newly: int = 0
) -> bool:
    """Undo ``advance_totals`` from ``state`` to ``advanced`` at ``revision`` (publishing failed).

    If nobody advanced since, the totals and the file version go back to ``state``'s, so
    the retry of the same labels finds them new again and publishes all they add. If
    another join advanced on top (it read this join's file, so its totals include these
    labels, and it published only its own part), this join's difference is taken out of
    the newer totals and the newer file stays: the next join of the batch publishes it.
    Whether it did (False: the batch left the ledger, or others kept advancing it)."""
    for _ in range(RESTORE_ATTEMPTS):
        current = batch_state(ledger, state.item_id)
        if current is None:
            return False
        if current.revision < revision:
            return True  # restored already
        if current.revision == revision:
            totals = state.totals
            sets = ["published_totals = :totals", "totals_revision = :next", "recent_writes = :recent"]
            removes: list[str] = []
            values: dict[str, Any] = {}
            if state.predictions_version:
                sets.append("predictions_version = :predictions")
                values[":predictions"] = {"S": state.predictions_version}
            else:
                removes.append("predictions_version")
            if state.unannounced:  # the advance cleared them: they are still to announce
                sets.append("unannounced_labels = :unannounced")
                values[":unannounced"] = {"N": str(state.unannounced)}
            update = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        else:
            totals = {
                name: (
                    rows - (advanced.get(name, (0, 0.0))[0] - state.totals.get(name, (0, 0.0))[0]),
                    total - (advanced.get(name, (0, 0.0))[1] - state.totals.get(name, (0, 0.0))[1]),
                )
                for name, (rows, total) in current.totals.items()
            }
            update = "SET published_totals = :totals, totals_revision = :next, recent_writes = :recent"
            values = {}
            # The ``newly`` labels this join found (and those it was to announce) are in the
            # newer file: no later join finds them new, so they wait here to be announced.
            if newly + state.unannounced:
                update += " ADD unannounced_labels :newly"
                values[":newly"] = {"N": str(newly + state.unannounced)}
        token = write_token()
        try:
            ledger.dynamodb.update_item(
                TableName=ledger.table,
                Key={"id": {"S": state.item_id}},
                UpdateExpression=update,
                ConditionExpression="totals_revision = :seen",
                ExpressionAttributeValues={
                    ":totals": _serializer.serialize(_encode_totals(totals)),
                    ":next": {"N": str(current.revision + 1)},
                    ":seen": {"N": str(current.revision)},
                    ":recent": with_token(list(current.recent_writes), token),
                    **values,
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as problem:
            if not condition_failed(problem):
                raise
            if not applied(problem, token):
                continue  # advanced again meanwhile: read again
        return True
    return False


# -- the pool of small batches' row-additive totals ---------------------------------------
#
# A batch with fewer than MinLabeledRows labeled rows never publishes quality on its own
# (MinLabeledRows: quality is never judged on fewer rows). Its row-additive totals are
# pooled instead, one ledger item per model, and published together once the pool holds
# MinLabeledRows rows: CloudWatch averages them weighted by rows, so the pooled datapoint
# is exactly the metric over those rows. The item follows the batch items' revision
# pattern: read, compute, write on the revision read, so the batch monitor and the label
# joins, running at once, never lose or double an addition.

# Row-additive metric -> (rows, sum, smallest and largest per-row value).
PoolTotals = dict[str, tuple[int, float, float, float]]

# Read-and-write rounds before an update gives up (RevisionConflict: the invocation fails
# and is retried): each conflict means another invocation's update went in.
POOL_ATTEMPTS = 25


def pool_item_id(model: str) -> str:
    return f"pool#{model}"


def pool_rows(totals: PoolTotals) -> int:
    """The labeled rows the totals cover (every row-additive metric of a model counts the same rows)."""
    return max((rows for rows, _, _, _ in totals.values()), default=0)


def combine_pool(first: PoolTotals, second: PoolTotals) -> PoolTotals:
    """Rows and sums added (negative ones take back); the bounds of the rows added in. A
    metric left with no rows is dropped: CloudWatch takes no datapoint of zero samples."""
    combined = dict(first)
    for name, (rows, total, smallest, largest) in second.items():
        if name not in combined:
            combined[name] = (rows, total, smallest, largest)
            continue
        held_rows, held_total, held_smallest, held_largest = combined[name]
        if rows > 0:  # a take-back keeps the bounds: those of more rows still bound the rest
            held_smallest, held_largest = min(held_smallest, smallest), max(held_largest, largest)
        combined[name] = (held_rows + rows, held_total + total, held_smallest, held_largest)
    return {name: value for name, value in combined.items() if value[0] != 0}


def negated_pool(totals: PoolTotals) -> PoolTotals:
    """The totals to take back (combine_pool with these subtracts them)."""
    return {name: (-rows, -total, low, high) for name, (rows, total, low, high) in totals.items()}


def update_pool(ledger: BatchLedger, model: str, change: PoolTotals, flush_at: float) -> PoolTotals:
    """Add ``change`` to the model's pool; when the pool then holds at least ``flush_at``
    rows, empty it and return what it held (the caller publishes it), else return {}.

    ``flush_at``: MinLabeledRows to add a small batch's totals; 1 to take whatever the pool
    holds; math.inf to put totals back without publishing them."""
    item_id = pool_item_id(model)
    for _ in range(POOL_ATTEMPTS):
        item = ledger.dynamodb.get_item(
            TableName=ledger.table, Key={"id": {"S": item_id}}, ConsistentRead=True
        ).get("Item", {})
        revision = int(item.get("pool_revision", {}).get("N", 0))
        held = _decode_pool(_deserializer.deserialize(item["pool_totals"]) if "pool_totals" in item else {})
        merged = combine_pool(held, change)
        flush = pool_rows(merged) >= flush_at
        if not change and not flush:
            return {}  # nothing to add, nothing to take
        now = int(ledger.clock())
        seen = "pool_revision = :seen" if revision else "attribute_not_exists(pool_revision)"
        token = write_token()
        try:
            ledger.dynamodb.update_item(
                TableName=ledger.table,
                Key={"id": {"S": item_id}},
                UpdateExpression="SET pool_totals = :totals, pool_revision = :next, expiration = :expires"
                ", recent_writes = :recent",
                ConditionExpression=seen,
                ExpressionAttributeValues={
                    ":totals": _serializer.serialize(_encode_pool({} if flush else merged)),
                    ":next": {"N": str(revision + 1)},
                    # Refreshed with every write, so a pool in use never expires.
                    ":expires": {"N": str(now + ledger.retention_days * 86_400)},
                    ":recent": with_token(recent_writes(item), token),
                    **({":seen": {"N": str(revision)}} if revision else {}),
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as problem:
            if not condition_failed(problem):
                raise
            if not applied(problem, token):
                continue  # another invocation updated the pool since it was read: again
        return merged if flush else {}
    raise RevisionConflict(item_id)


def add_to_pool(
    ledger: BatchLedger, model: str, small: PoolTotals, judged_rows: int, min_labeled_rows: int
) -> PoolTotals:
    """Pool ``small`` (additions of batches with too few labeled rows to be judged) and
    return what the pool gives to publish now, beside the ``judged_rows`` rows published
    anyway: all it holds (``small`` included) once those and it make MinLabeledRows rows,
    else nothing. So pooled rows go out as soon as the datapoint they join is big enough,
    and need not wait for enough small batches in a feed where those are rare."""
    if not small and not judged_rows:
        return {}
    return update_pool(ledger, model, small, max(1, min_labeled_rows - judged_rows))


def _encode_pool(totals: PoolTotals) -> dict[str, Any]:
    return {
        name: {
            "n": Decimal(rows),
            "s": Decimal(repr(float(total))),
            "lo": Decimal(repr(float(smallest))),
            "hi": Decimal(repr(float(largest))),
        }
        for name, (rows, total, smallest, largest) in totals.items()
    }


def _decode_pool(raw: dict[str, Any]) -> PoolTotals:
    return {
        name: (int(value["n"]), float(value["s"]), float(value["lo"]), float(value["hi"]))
        for name, value in raw.items()
    }

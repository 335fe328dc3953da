"""Pools of small batches' scored rows, for drift and the performance estimate.

A batch with fewer than ``drift.MIN_ROWS`` scored rows publishes no drift metrics, and one
with fewer than MinLabeledRows rows no estimate (Estimated*): their alarms keep their
state, so a feed of small batches would leave them green while its inputs drift. Neither
computation is a sum over rows (KS ranks the values, CBPE's ROC AUC the probabilities), so
unlike the quality pool (modelwatch.ledger) these pools keep the rows' *inputs*: for drift
the feature values as validated and the predictions (with the probabilities when the
prediction baseline compares them), for the estimate the probabilities and the predicted
labels. Once a pool holds enough rows, the batch that filled it computes drift or the
estimate over all of them, exactly as for one batch of those rows, and publishes it.

One ledger item per model and kind (``drift-pool#<model>``, ``estimate-pool#<model>``), one
attribute per batch (``entry#<the batch's ledger id>``): adding the same batch again (a
retried event) overwrites its entry instead of counting it twice. Every write bumps
``pool_revision``; taking entries out is conditional on the revision read, so of two
invocations that both find the pool full, one takes the entries and the other reads again
and finds them gone: every entry goes into exactly one datapoint.

The batch monitor adds and takes only after its publish mark (one attempt per batch gets
that far). When PutMetricData fails, the taken entries go back (``restore``, keyed: a later
flush counts them once). The attempt's own entry is withdrawn for the retry to add again;
if another invocation took it meanwhile (and published it with its own), a small marker
(``counted``) stays in its place, which keeps the retry from adding it a second time. The
unguarded window: the process dies between taking entries and PutMetricData, and their
rows are lost rather than counted twice. A take or withdrawal whose response was lost and
that botocore sent again is known by its token (modelwatch.ledger.applied).

Entries (and markers) older than ``ENTRY_MAX_AGE_SECONDS`` are dropped at the next read, so
a pool refilled weeks later does not mix in stale rows. An entry larger than
``ENTRY_MAX_BYTES`` (a very wide model) is not pooled: DynamoDB's items hold 400 KB.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from botocore.exceptions import ClientError

from modelwatch.errors import RevisionConflict
from modelwatch.ledger import applied, condition_failed, recent_writes, with_token, write_token

DRIFT, ESTIMATE = "drift", "estimate"
KINDS = (DRIFT, ESTIMATE)
# A week: long enough for a slow feed of small batches to fill a pool, short enough that
# rows from an earlier state of the feed do not dilute today's drift.
ENTRY_MAX_AGE_SECONDS = 7 * 86_400
# One batch's entry, compressed. The pool item holds the entries of several batches below
# the threshold, and DynamoDB's limit (400 KB) is for the whole item.
ENTRY_MAX_BYTES = 120_000
# Read-and-write rounds before taking entries gives up (RevisionConflict: the invocation
# fails and is retried): each conflict means another invocation's write went in.
POOL_ATTEMPTS = 25
ENTRY_PREFIX = "entry#"

# Why a batch's rows are not in the pool (add_entry).
TOO_LARGE = "too_large"
COUNTED = "counted"


def pool_item_id(kind: str, model: str) -> str:
    return f"{kind}-pool#{model}"


def entry_name(batch_item_id: str) -> str:
    return ENTRY_PREFIX + batch_item_id.removeprefix("batch#")


@dataclass(frozen=True)
class PoolRows:
    """Scored rows as the pooled computation needs them (one batch's, or a pool's)."""

    rows: int
    labels: list[Any]  # the predicted labels (a regressor's values)
    # Feature name -> values as validated: float (NaN when missing) for a numeric feature,
    # str or None for a categorical one. None in an estimate pool.
    features: dict[str, list[Any]] | None = None
    probabilities: list[list[float]] | None = None  # one column per class, in metadata order

    def encode(self) -> bytes:
        document = {
            "rows": self.rows,
            "labels": self.labels,
            "features": self.features,
            "probabilities": self.probabilities,
        }
        # NaN is written as JSON's NaN token (Python reads it back); mtime=0: the same rows
        # give the same bytes.
        return gzip.compress(json.dumps(document, separators=(",", ":")).encode("utf-8"), mtime=0)

    @classmethod
    def decode(cls, data: bytes) -> PoolRows:
        document = json.loads(gzip.decompress(data))
        return cls(
            rows=int(document["rows"]),
            labels=document["labels"],
            features=document["features"],
            probabilities=document["probabilities"],
        )

    @classmethod
    def of_batch(
        cls,
        features: pd.DataFrame | None,
        labels: np.ndarray,
        probabilities: np.ndarray | None,
    ) -> PoolRows:
        """A batch's rows; ``features`` the validated feature columns to keep (None: none)."""
        kept = None
        if features is not None:
            kept = {}
            for name in features.columns:
                column = features[name]
                if pd.api.types.is_float_dtype(column.dtype):
                    kept[str(name)] = column.to_numpy(dtype=float).tolist()
                else:  # categorical: text, NaN where missing
                    kept[str(name)] = [None if _missing(value) else value for value in column.tolist()]
        return cls(
            rows=len(labels),
            labels=np.asarray(labels).tolist(),
            features=kept,
            probabilities=None if probabilities is None else np.asarray(probabilities, dtype=float).tolist(),
        )

    @classmethod
    def concatenate(cls, parts: Sequence[PoolRows]) -> PoolRows:
        """The rows of ``parts`` as one batch (every part has the same kind of content)."""
        features = None
        if all(part.features is not None for part in parts):
            names = list(parts[0].features or {})
            features = {name: [v for part in parts for v in (part.features or {})[name]] for name in names}
        probabilities = None
        if all(part.probabilities is not None for part in parts):
            probabilities = [row for part in parts for row in part.probabilities or []]
        return cls(
            rows=sum(part.rows for part in parts),
            labels=[label for part in parts for label in part.labels],
            features=features,
            probabilities=probabilities,
        )

    def feature_frame(self, numeric: Sequence[str]) -> pd.DataFrame:
        """The features as validation types them: float for ``numeric``, object (str or NaN) else."""
        columns = {}
        for name, values in (self.features or {}).items():
            if name in numeric:
                columns[name] = pd.Series(np.asarray(values, dtype=float), dtype=float)
            else:
                array = np.array([np.nan if value is None else value for value in values], dtype=object)
                columns[name] = pd.Series(array, dtype=object)
        return pd.DataFrame(columns, index=pd.RangeIndex(self.rows))

    def label_array(self) -> np.ndarray:
        # Text labels as objects, as a scikit-learn classifier with text classes gives them.
        if any(isinstance(label, str) for label in self.labels):
            return np.array(self.labels, dtype=object)
        return np.asarray(self.labels)

    def probability_array(self) -> np.ndarray | None:
        if self.probabilities is None:
            return None
        return np.asarray(self.probabilities, dtype=float).reshape(self.rows, -1)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class PoolEntry:
    """One batch's rows in a pool."""

    name: str  # the pool item's attribute: entry#<the batch's ledger id>
    rows: int
    added_at: int  # the ledger clock's seconds
    batch: str  # s3://bucket/key
    version_id: str
    data: bytes  # PoolRows.encode

    def item_value(self) -> dict[str, Any]:
        return {
            "M": {
                "d": {"B": self.data},
                "n": {"N": str(self.rows)},
                "at": {"N": str(self.added_at)},
                "batch": {"S": self.batch},
                "version": {"S": self.version_id},
            }
        }

    @classmethod
    def from_item(cls, name: str, value: dict[str, Any]) -> PoolEntry:
        fields = value["M"]
        return cls(
            name=name,
            rows=int(fields["n"]["N"]),
            added_at=int(fields["at"]["N"]),
            batch=fields["batch"]["S"],
            version_id=fields["version"]["S"],
            data=bytes(fields["d"]["B"]),
        )

    def summary(self) -> dict[str, Any]:
        """For the report: which batch, how many rows."""
        return {"batch": self.batch, "version_id": self.version_id, "rows": self.rows}


@dataclass(frozen=True)
class Taken:
    """What ``take_if_full`` found: the entries taken out (empty when the pool is not full)
    and the rows the pool holds without them."""

    entries: list[PoolEntry]
    held_rows: int


def add_entry(ledger: Any, model: str, kind: str, entry: PoolEntry) -> str | None:
    """Put ``entry`` in the pool (over the batch's earlier entry, if any). None when it is in;
    else why not: TOO_LARGE, or COUNTED (an earlier attempt's entry was published by
    another batch: the marker ``withdraw`` left)."""
    if len(entry.data) > ENTRY_MAX_BYTES:
        return TOO_LARGE
    try:
        ledger.dynamodb.update_item(
            TableName=ledger.table,
            Key={"id": {"S": pool_item_id(kind, model)}},
            UpdateExpression="SET #entry = :entry, expiration = :expires ADD pool_revision :one",
            # An entry has its rows (d); a marker has none.
            ConditionExpression="attribute_not_exists(#entry) OR attribute_exists(#entry.d)",
            ExpressionAttributeNames={"#entry": entry.name},
            ExpressionAttributeValues={
                ":entry": entry.item_value(),
                ":expires": _expires(ledger),
                ":one": {"N": "1"},
            },
        )
    except ClientError as problem:
        error = problem.response.get("Error", {})
        if error.get("Code") == "ConditionalCheckFailedException":
            return COUNTED
        # The item would pass DynamoDB's 400 KB: this batch's rows stay out.
        if error.get("Code") == "ValidationException" and "size" in str(error.get("Message", "")).lower():
            return TOO_LARGE
        raise
    return None


def take_if_full(ledger: Any, model: str, kind: str, threshold: int) -> Taken:
    """Take every fresh entry out when together they hold ``threshold`` rows (the caller
    computes and publishes them), else nothing; entries and markers older than
    ``ENTRY_MAX_AGE_SECONDS`` are dropped either way."""
    item_id = pool_item_id(kind, model)
    for _ in range(POOL_ATTEMPTS):
        item = ledger.dynamodb.get_item(
            TableName=ledger.table, Key={"id": {"S": item_id}}, ConsistentRead=True
        ).get("Item", {})
        if not item:
            return Taken([], 0)
        revision = item.get("pool_revision", {}).get("N", "0")
        oldest = int(ledger.clock()) - ENTRY_MAX_AGE_SECONDS
        fresh: list[PoolEntry] = []
        stale: list[str] = []
        for name, value in item.items():
            if not name.startswith(ENTRY_PREFIX):
                continue
            if "d" not in value["M"]:  # a marker
                if int(value["M"]["counted"]["N"]) < oldest:
                    stale.append(name)
                continue
            entry = PoolEntry.from_item(name, value)
            if entry.added_at >= oldest:
                fresh.append(entry)
            else:
                stale.append(name)
        held = sum(entry.rows for entry in fresh)
        full = held >= threshold
        removed = ([entry.name for entry in fresh] if full else []) + stale
        if not removed:
            return Taken([], held)
        names = {f"#e{index}": name for index, name in enumerate(removed)}
        token = write_token()
        try:
            ledger.dynamodb.update_item(
                TableName=ledger.table,
                Key={"id": {"S": item_id}},
                UpdateExpression="REMOVE "
                + ", ".join(names)
                + " SET pool_revision = :next, expiration = :expires, recent_writes = :recent",
                # Nobody added, took or put back since the read: exactly these entries leave.
                ConditionExpression="pool_revision = :seen",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={
                    ":seen": {"N": revision},
                    ":next": {"N": str(int(revision) + 1)},
                    ":expires": _expires(ledger),
                    ":recent": with_token(recent_writes(item), token),
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as problem:
            if not condition_failed(problem):
                raise
            if not applied(problem, token):  # else: this take, its response lost and resent
                continue  # another invocation wrote the pool since it was read: again
        return Taken(fresh, 0) if full else Taken([], held)
    raise RevisionConflict(item_id)


def restore(ledger: Any, model: str, kind: str, entries: Sequence[PoolEntry]) -> None:
    """Put taken entries back (their publish failed): keyed, so whoever takes them next
    counts each once."""
    if not entries:
        return
    names = {f"#e{index}": entry.name for index, entry in enumerate(entries)}
    values = {f":e{index}": entry.item_value() for index, entry in enumerate(entries)}
    ledger.dynamodb.update_item(
        TableName=ledger.table,
        Key={"id": {"S": pool_item_id(kind, model)}},
        UpdateExpression="SET "
        + ", ".join(f"#e{index} = :e{index}" for index in range(len(entries)))
        + ", expiration = :expires ADD pool_revision :one",
        ExpressionAttributeNames=names,
        ExpressionAttributeValues={**values, ":expires": _expires(ledger), ":one": {"N": "1"}},
    )


def withdraw(ledger: Any, model: str, kind: str, name: str) -> None:
    """Take the failed attempt's own entry back out, for its retry to add again; if another
    invocation took it meanwhile (its rows are published, or will be, with that batch),
    leave a marker so the retry does not add them a second time."""
    item_id = pool_item_id(kind, model)
    for _ in range(POOL_ATTEMPTS):
        token = write_token()
        try:
            ledger.dynamodb.update_item(
                TableName=ledger.table,
                Key={"id": {"S": item_id}},
                UpdateExpression="REMOVE #entry ADD pool_revision :one"
                " SET recent_writes = list_append(if_not_exists(recent_writes, :none), :mine)",
                ConditionExpression="attribute_exists(#entry.d)",
                ExpressionAttributeNames={"#entry": name},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":none": {"L": []},
                    ":mine": {"L": [{"S": token}]},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return
        except ClientError as problem:
            if not condition_failed(problem):
                raise
            if applied(problem, token):
                return  # this withdrawal, its response lost and resent: no marker
        try:
            ledger.dynamodb.update_item(
                TableName=ledger.table,
                Key={"id": {"S": item_id}},
                UpdateExpression="SET #entry = :marker, expiration = :expires ADD pool_revision :one",
                ConditionExpression="attribute_not_exists(#entry.d)",  # absent, or a marker already
                ExpressionAttributeNames={"#entry": name},
                ExpressionAttributeValues={
                    ":marker": {"M": {"counted": {"N": str(int(ledger.clock()))}}},
                    ":expires": _expires(ledger),
                    ":one": {"N": "1"},
                },
            )
            return
        except ClientError as problem:
            if not condition_failed(problem):
                raise
            # Put back meanwhile (the taker's publish failed): take it out, again.
            continue
    raise RevisionConflict(item_id)


def _expires(ledger: Any) -> dict[str, str]:
    # Refreshed with every write, like the other pool: a pool in use never expires.
    return {"N": str(int(ledger.clock()) + ledger.retention_days * 86_400)}

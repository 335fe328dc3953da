"""Ground truth ("actuals") in DynamoDB: fetching a batch's labels and loading files of them.

Reads use BatchGetItem: 100 keys per request (the API's limit), requests in parallel,
only the attributes needed, and UnprocessedKeys retried with exponential backoff and
jitter. Writes use BatchWriteItem, 25 items per request, with the same retry rule.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from modelwatch.errors import ActualsUnavailable, BatchRejected

READ_BATCH_SIZE = 100  # BatchGetItem's maximum keys per request
WRITE_BATCH_SIZE = 25  # BatchWriteItem's maximum items per request
ID_ATTRIBUTE = "record_id"
ACTUAL_ATTRIBUTE = "actual"
OBSERVED_AT_ATTRIBUTE = "observed_at"


@dataclass
class RequestStats:
    """How many DynamoDB requests a call made; the benchmark and tests read it."""

    requests: int = 0
    retries: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def count(self, retry: bool) -> None:
        with self._lock:
            self.requests += 1
            if retry:
                self.retries += 1


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay_seconds: float = 0.05
    max_delay_seconds: float = 2.0

    def delay_seconds(self, attempt: int) -> float:
        """Full-jitter exponential backoff, as the AWS architecture blog recommends."""
        return random.uniform(0, min(self.max_delay_seconds, self.base_delay_seconds * 2**attempt))


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


_deserializer = TypeDeserializer()
_serializer = TypeSerializer()


def fetch_actuals(
    client: Any,
    table: str,
    ids: Iterable[str],
    threads: int = 8,
    retry: RetryPolicy | None = None,
    stats: RequestStats | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """The ``actual`` value for each id that has one; ids without an item are absent.

    Numbers come back as Decimal; modelwatch.labels compares them by value.
    """
    retry = retry or RetryPolicy()
    stats = stats if stats is not None else RequestStats()
    unique_ids = list(dict.fromkeys(ids))
    if not unique_ids:
        return {}

    def fetch_chunk(chunk: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        request: dict[str, Any] = {
            table: {
                "Keys": [{ID_ATTRIBUTE: {"S": record_id}} for record_id in chunk],
                "ProjectionExpression": "#id, #actual",
                "ExpressionAttributeNames": {"#id": ID_ATTRIBUTE, "#actual": ACTUAL_ATTRIBUTE},
            }
        }
        for attempt in range(retry.max_attempts):
            if attempt:
                sleep(retry.delay_seconds(attempt))
            stats.count(retry=attempt > 0)
            response = client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(table, []):
                if ACTUAL_ATTRIBUTE in item:
                    found[item[ID_ATTRIBUTE]["S"]] = _deserializer.deserialize(item[ACTUAL_ATTRIBUTE])
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return found
        raise ActualsUnavailable(
            f"DynamoDB left {len(request[table]['Keys'])} keys of table {table!r} unprocessed after "
            f"{retry.max_attempts} attempts; the table is throttled — the batch will be retried"
        )

    chunks = _chunks(unique_ids, READ_BATCH_SIZE)
    actuals: dict[str, Any] = {}
    if len(chunks) == 1 or threads == 1:
        for chunk in chunks:
            actuals.update(fetch_chunk(chunk))
        return actuals
    with ThreadPoolExecutor(max_workers=min(threads, len(chunks))) as pool:
        for found in pool.map(fetch_chunk, chunks):
            actuals.update(found)
    return actuals


def _attribute_value(value: Any) -> Any:
    """Numbers go to DynamoDB as N (Decimal), everything else as text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Decimal):
        return value
    text = str(value).strip()
    try:
        number = Decimal(text)
    except ArithmeticError:
        return text
    return number if number.is_finite() else text


def write_actuals(
    client: Any,
    table: str,
    records: Sequence[tuple[str, Any, str | None]],
    threads: int = 4,
    retry: RetryPolicy | None = None,
    stats: RequestStats | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Upsert (record_id, actual, observed_at) triples; returns how many items were written.

    A later duplicate of an id in ``records`` wins: BatchWriteItem refuses two writes to one
    key in one request, so duplicates are collapsed first.
    """
    retry = retry or RetryPolicy()
    stats = stats if stats is not None else RequestStats()
    latest: dict[str, tuple[Any, str | None]] = {}
    for record_id, actual, observed_at in records:
        latest[record_id] = (actual, observed_at)

    def put_requests(chunk: Sequence[str]) -> list[dict[str, Any]]:
        requests = []
        for record_id in chunk:
            actual, observed_at = latest[record_id]
            item = {ID_ATTRIBUTE: record_id, ACTUAL_ATTRIBUTE: _attribute_value(actual)}
            if observed_at:
                item[OBSERVED_AT_ATTRIBUTE] = observed_at
            requests.append(
                {"PutRequest": {"Item": {name: _serializer.serialize(value) for name, value in item.items()}}}
            )
        return requests

    def write_chunk(chunk: Sequence[str]) -> int:
        pending = {table: put_requests(chunk)}
        for attempt in range(retry.max_attempts):
            if attempt:
                sleep(retry.delay_seconds(attempt))
            stats.count(retry=attempt > 0)
            response = client.batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return len(chunk)
        raise ActualsUnavailable(
            f"DynamoDB left {len(pending[table])} writes to table {table!r} unprocessed after "
            f"{retry.max_attempts} attempts; the table is throttled — try again"
        )

    chunks = _chunks(list(latest), WRITE_BATCH_SIZE)
    if not chunks:
        return 0
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(chunks)))) as pool:
        return sum(pool.map(write_chunk, chunks))


def read_actuals_file(
    body: bytes, key: str, id_column: str, target: str
) -> list[tuple[str, Any, str | None]]:
    """Parse an actuals CSV (optionally .gz): the model's id and target columns, or record_id/actual.

    Raises BatchRejected (see modelwatch.batch_files) with an actionable reason.
    """
    from modelwatch.batch_files import read_batch

    if not key.lower().endswith((".csv", ".csv.gz")):
        raise BatchRejected(f"actuals file {key!r} must be .csv or .csv.gz", code="unsupported_extension")
    frame = read_batch(body, key, max_bytes=len(body) * 1000 + 1)
    for id_name, target_name in ((id_column, target), (ID_ATTRIBUTE, ACTUAL_ATTRIBUTE)):
        if id_name in frame.columns and target_name in frame.columns:
            break
    else:
        raise BatchRejected(
            f"actuals file {key!r} needs columns {id_column!r} and {target!r} (or {ID_ATTRIBUTE!r} and "
            f"{ACTUAL_ATTRIBUTE!r}); it has {list(frame.columns)}",
            code="missing_column",
        )
    observed = frame[OBSERVED_AT_ATTRIBUTE] if OBSERVED_AT_ATTRIBUTE in frame.columns else None
    records = []
    for index, (record_id, actual) in enumerate(zip(frame[id_name], frame[target_name], strict=True)):
        if not isinstance(record_id, str) or not record_id.strip() or not isinstance(actual, str):
            continue  # rows without an id or a label carry nothing to upsert
        when = observed.iat[index] if observed is not None else None
        records.append((record_id.strip(), actual, when if isinstance(when, str) else None))
    return records

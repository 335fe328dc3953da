"""Ground truth ("actuals") in DynamoDB: fetching a batch's labels and loading files of them.

Reads use BatchGetItem: 100 keys per request (the API's limit), requests in parallel,
only the attributes needed, and UnprocessedKeys retried with exponential backoff and
jitter. Writes use BatchWriteItem, 25 items per request, with the same retry rule.
Actuals files are read in chunks of rows, so a file's size bounds the time a load takes
but not the memory it needs.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import gzip
import io
import random
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any, Protocol, cast

import pandas as pd
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from modelwatch.batch_files import MISSING_TOKENS
from modelwatch.errors import ActualsUnavailable, BatchRejected
from modelwatch.parquet_files import (
    BOOLEAN,
    DECIMAL,
    FLOAT,
    INTEGER,
    STRING,
    TEMPORAL,
    ParquetColumn,
    iter_frames,
    open_parquet,
)

READ_BATCH_SIZE = 100  # BatchGetItem's maximum keys per request
WRITE_BATCH_SIZE = 25  # BatchWriteItem's maximum items per request
ID_ATTRIBUTE = "record_id"
ACTUAL_ATTRIBUTE = "actual"
OBSERVED_AT_ATTRIBUTE = "observed_at"
# Rows parsed and written at a time: ~1 MB of text, 400 BatchWriteItem requests.
CHUNK_ROWS = 10_000
_READ_BLOCK_BYTES = 1 << 16


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


def batch_get_items(
    client: Any,
    table: str,
    ids: Iterable[str],
    attributes: Sequence[str],
    threads: int = 8,
    retry: RetryPolicy | None = None,
    stats: RequestStats | None = None,
    sleep: Callable[[float], None] = time.sleep,
    consistent: bool = False,
) -> dict[str, dict[str, Any]]:
    """The items of ``table`` (hash key ``record_id``) for ``ids``, with only ``attributes``,
    deserialised; ids without an item are absent. Numbers come back as Decimal.
    ``consistent`` reads what every write before the call left (twice the read cost)."""
    retry = retry or RetryPolicy()
    stats = stats if stats is not None else RequestStats()
    unique_ids = list(dict.fromkeys(ids))
    if not unique_ids:
        return {}
    names = {f"#a{position}": name for position, name in enumerate([ID_ATTRIBUTE, *attributes])}

    def fetch_chunk(chunk: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        request: dict[str, Any] = {
            table: {
                "Keys": [{ID_ATTRIBUTE: {"S": record_id}} for record_id in chunk],
                "ProjectionExpression": ", ".join(names),
                "ExpressionAttributeNames": names,
                "ConsistentRead": consistent,
            }
        }
        for attempt in range(retry.max_attempts):
            if attempt:
                sleep(retry.delay_seconds(attempt))
            stats.count(retry=attempt > 0)
            response = client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(table, []):
                found[item[ID_ATTRIBUTE]["S"]] = {
                    name: _deserializer.deserialize(value)
                    for name, value in item.items()
                    if name != ID_ATTRIBUTE
                }
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return found
        raise ActualsUnavailable(
            f"DynamoDB left {len(request[table]['Keys'])} keys of table {table!r} unprocessed after "
            f"{retry.max_attempts} attempts; the table is throttled — the batch will be retried"
        )

    chunks = _chunks(unique_ids, READ_BATCH_SIZE)
    items: dict[str, dict[str, Any]] = {}
    if len(chunks) == 1 or threads == 1:
        for chunk in chunks:
            items.update(fetch_chunk(chunk))
        return items
    with ThreadPoolExecutor(max_workers=min(threads, len(chunks))) as pool:
        for found in pool.map(fetch_chunk, chunks):
            items.update(found)
    return items


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
    items = batch_get_items(client, table, ids, [ACTUAL_ATTRIBUTE], threads, retry, stats, sleep)
    return {
        record_id: item[ACTUAL_ATTRIBUTE] for record_id, item in items.items() if ACTUAL_ATTRIBUTE in item
    }


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


def batch_write_items(
    client: Any,
    table: str,
    items: Sequence[dict[str, Any]],
    threads: int = 4,
    retry: RetryPolicy | None = None,
    stats: RequestStats | None = None,
    sleep: Callable[[float], None] = time.sleep,
    typed: bool = False,
) -> int:
    """Put plain-Python ``items`` (no two with the same key), 25 per BatchWriteItem request,
    unprocessed items retried with backoff; returns how many were written. ``typed``:
    the items are in DynamoDB's attribute-value form already ({"S": ...}, {"N": ...})."""
    retry = retry or RetryPolicy()
    stats = stats if stats is not None else RequestStats()

    def write_chunk(chunk: Sequence[dict[str, Any]]) -> int:
        pending = {
            table: [
                {
                    "PutRequest": {
                        "Item": item
                        if typed
                        else {name: _serializer.serialize(value) for name, value in item.items()}
                    }
                }
                for item in chunk
            ]
        }
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

    chunks = _chunks(list(items), WRITE_BATCH_SIZE)
    if not chunks:
        return 0
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(chunks)))) as pool:
        return sum(pool.map(write_chunk, chunks))


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
    latest: dict[str, dict[str, Any]] = {}
    for record_id, actual, observed_at in records:
        item = {ID_ATTRIBUTE: record_id, ACTUAL_ATTRIBUTE: _attribute_value(actual)}
        if observed_at:
            item[OBSERVED_AT_ATTRIBUTE] = observed_at
        latest[record_id] = item
    return batch_write_items(client, table, list(latest.values()), threads, retry, stats, sleep)


@dataclass
class ActualsChunk:
    """Up to ``chunk_rows`` rows of an actuals file: the (record_id, actual, observed_at)
    triples of those with an id and a label, and how many rows were read."""

    records: list[tuple[str, Any, str | None]]
    rows: int


class _ByteSource(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _BoundedReader:
    """A byte stream that refuses to yield more than ``limit_bytes`` (None: no limit)."""

    def __init__(self, raw: _ByteSource, key: str, limit_bytes: int | None, what: str):
        self.raw, self.key, self.limit_bytes, self.what = raw, key, limit_bytes, what
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        if self.limit_bytes is not None:
            remaining = self.limit_bytes + 1 - self.bytes_read  # one byte over tells "too large"
            if size is None or size < 0 or size > remaining:
                size = remaining  # never hold more than the limit, whatever the caller asks
        data = self.raw.read(size if size is not None else -1)
        self.bytes_read += len(data)
        if self.limit_bytes is not None and self.bytes_read > self.limit_bytes:
            raise BatchRejected(
                f"actuals file {self.key!r} {self.what} more than {self.limit_bytes:,} bytes, over the "
                "actuals file size limit (MaxActualsMegabytes); split it into smaller files",
                code="too_large",
            )
        return data


class _Utf8Text:
    """The UTF-8 text of a byte stream, decoded as pandas reads it; a byte that is not
    UTF-8 rejects the file naming its line and offset, as modelwatch.batch_files does."""

    def __init__(self, raw: _ByteSource, key: str):
        self._raw, self._key = raw, key
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._text = ""  # decoded, not yet read
        self._bytes_fed = 0
        self._newlines_decoded = 0
        self._at_end = False

    def _fill(self) -> None:
        block = self._raw.read(_READ_BLOCK_BYTES)
        self._at_end = not block
        try:
            text = self._decoder.decode(block, final=self._at_end)
        except UnicodeDecodeError as problem:
            held = len(problem.object) - len(block)  # bytes the decoder kept from the last block
            offset = self._bytes_fed - held + problem.start
            line = self._newlines_decoded + problem.object[: problem.start].count(b"\n") + 1
            bad = problem.object[problem.start : problem.start + 1]
            raise BatchRejected(
                f"actuals file {self._key!r} is not UTF-8: byte {bad!r} "
                f"at offset {offset} (line {line}) is invalid; save the file as UTF-8",
                code="not_utf8",
                line=line,
            ) from None
        self._bytes_fed += len(block)
        self._newlines_decoded += text.count("\n")
        self._text += text

    def read(self, size: int | None = -1) -> str:
        while not self._at_end and (size is None or size < 0 or len(self._text) < size):
            self._fill()
        if size is None or size < 0:
            size = len(self._text)
        text, self._text = self._text[:size], self._text[size:]
        return text

    def readline(self, size: int | None = -1) -> str:
        while not self._at_end and "\n" not in self._text:
            self._fill()
        end = self._text.find("\n") + 1 or len(self._text)
        text, self._text = self._text[:end], self._text[end:]
        return text


def _parser_rejection(problem: pd.errors.ParserError, key: str, header: list[str]) -> BatchRejected:
    message = str(problem).replace("C error: ", "")
    # pandas counts lines after the header, which it did not read.
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if fields:
        where = f"line {int(fields.group(2)) + 1} has {fields.group(3)} fields, the header has {len(header)}"
        return BatchRejected(
            f"malformed CSV in actuals file {key!r}: {where} — every row needs as many fields as the header",
            code="malformed_csv",
        )
    hint = (
        " — a quoted field is never closed; every opening quote needs a closing quote"
        if "EOF inside string" in message
        else " — every row needs as many fields as the header"
    )
    return BatchRejected(f"malformed CSV in actuals file {key!r}: {message}{hint}", code="malformed_csv")


def _columns(header: list[str], key: str, id_column: str, target: str) -> tuple[str, str]:
    """The (id, label) columns: the model's names, else record_id and actual."""
    pairs = list(dict.fromkeys([(id_column, target), (ID_ATTRIBUTE, ACTUAL_ATTRIBUTE)]))
    for id_name, target_name in pairs:
        if id_name in header and target_name in header:
            return id_name, target_name
    expected = " or ".join(f"{id_name!r} and {target_name!r}" for id_name, target_name in pairs)
    wanted = {name for pair in pairs for name in pair if name not in header}
    near = sorted(
        {match for name in wanted for match in difflib.get_close_matches(name, header, n=1, cutoff=0.6)}
    )
    suggestion = f" (did you mean {', '.join(repr(name) for name in near)}?)" if near else ""
    raise BatchRejected(
        f"actuals file {key!r} needs the columns {expected}; its columns are {header}{suggestion}",
        code="missing_column",
        columns=header,
    )


def iter_actuals_file(
    stream: IO[bytes],
    key: str,
    id_column: str,
    target: str,
    max_bytes: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[ActualsChunk]:
    """Read an actuals CSV (optionally .gz) or Parquet file chunk by chunk: the model's id
    and target columns, or record_id/actual, and observed_at when present.

    Memory stays at about one chunk whatever the file's size. ``max_bytes`` bounds the
    file and, for .gz, its content while it is inflated. Raises BatchRejected (see
    modelwatch.batch_files) with an actionable reason; the chunks before a problem found
    late in the file have been yielded by then.
    """
    lowered = key.lower()
    if lowered.endswith(".parquet"):
        yield from _iter_parquet_actuals(stream, key, id_column, target, max_bytes)
        return
    if not lowered.endswith((".csv", ".csv.gz")):
        raise BatchRejected(
            f"actuals file {key!r} must be .csv, .csv.gz or .parquet", code="unsupported_extension"
        )
    raw = _BoundedReader(stream, key, max_bytes, "holds")
    source: _BoundedReader = raw
    if lowered.endswith(".gz"):
        inflated = gzip.GzipFile(fileobj=cast(IO[bytes], raw), mode="rb")
        source = _BoundedReader(inflated, key, max_bytes, "expands to")
    text = _Utf8Text(source, key)
    try:
        header_line = text.readline()
        if not header_line.strip():
            raise BatchRejected(
                f"actuals file {key!r} has no header row: expected a CSV header naming the columns",
                code="empty",
            )
        header = next(csv.reader([header_line.rstrip("\r\n")]))
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise BatchRejected(
                f"actuals file {key!r} has duplicate column names {repeated}: each column must appear once",
                code="duplicate_column",
            )
        id_name, target_name = _columns(header, key, id_column, target)
        # No usecols: with it pandas silently drops the extra fields of a row longer than
        # the header, a sign of a broken export that must reject the file.
        reader = pd.read_csv(
            text,
            header=None,
            names=header,
            dtype=str,
            keep_default_na=False,
            na_values=MISSING_TOKENS,
            index_col=False,
            chunksize=chunk_rows,
        )
        rows = 0
        for frame in reader:
            rows += len(frame)
            yield ActualsChunk(_records(frame, id_name, target_name), len(frame))
    except pd.errors.ParserError as problem:
        raise _parser_rejection(problem, key, header) from None
    except (OSError, EOFError, zlib.error) as problem:
        raise BatchRejected(
            f"actuals file {key!r} is not a valid gzip file ({problem}); re-compress it with gzip or "
            "upload it uncompressed without the .gz suffix",
            code="corrupt_gzip",
        ) from None
    if not rows:
        raise BatchRejected(
            f"actuals file {key!r} has a header but no data rows: expected at least one row after the header",
            code="no_rows",
        )


def _cell_text(value: Any) -> str | None:
    """A Parquet cell as the CSV of the same row would hold it; None when it is missing."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    text = str(value).strip()
    return text if text and text not in MISSING_TOKENS else None


def _check_actuals_types(columns: dict[str, ParquetColumn], key: str, id_name: str, target_name: str) -> None:
    expected = {
        id_name: ({STRING, INTEGER}, "a string or integer column"),
        target_name: ({STRING, INTEGER, FLOAT, DECIMAL, BOOLEAN}, "a number, string or boolean column"),
        OBSERVED_AT_ATTRIBUTE: ({STRING, TEMPORAL}, "a string or timestamp column"),
    }
    for name, (kinds, wanted) in expected.items():
        column = columns.get(name)
        if column is not None and column.kind not in kinds:
            raise BatchRejected(
                f"actuals file {key!r} has column {name!r} (position {column.position}) of Parquet type "
                f"{column.type_name}; expected {wanted}",
                code="wrong_column_type",
            )


def _iter_parquet_actuals(
    stream: IO[bytes], key: str, id_column: str, target: str, max_bytes: int | None
) -> Iterator[ActualsChunk]:
    """A Parquet file is read whole (its footer is at the end), then decoded one row group
    at a time: memory is the file plus one row group of the two or three columns used."""
    data = _BoundedReader(stream, key, max_bytes, "holds").read()
    if not data:
        raise BatchRejected(f"actuals file {key!r} is empty (0 bytes)", code="empty")
    parquet = open_parquet(data, key, max_bytes, what="actuals file")
    columns = {column.name: column for column in parquet.columns}
    id_name, target_name = _columns(list(columns), key, id_column, target)
    _check_actuals_types(columns, key, id_name, target_name)
    wanted = [id_name, target_name] + ([OBSERVED_AT_ATTRIBUTE] if OBSERVED_AT_ATTRIBUTE in columns else [])
    if parquet.rows == 0:
        raise BatchRejected(f"actuals file {key!r} has columns but no rows", code="no_rows")
    for frame in iter_frames(parquet, wanted):
        ids = [_cell_text(value) for value in frame[id_name].tolist()]
        actuals = [_cell_text(value) for value in frame[target_name].tolist()]
        observed = (
            [_cell_text(value) for value in frame[OBSERVED_AT_ATTRIBUTE].tolist()]
            if OBSERVED_AT_ATTRIBUTE in frame.columns
            else [None] * len(frame)
        )
        records = [
            (record_id, actual, when)
            for record_id, actual, when in zip(ids, actuals, observed, strict=True)
            if record_id is not None and actual is not None
        ]
        yield ActualsChunk(records, len(frame))


def _records(frame: pd.DataFrame, id_name: str, target_name: str) -> list[tuple[str, Any, str | None]]:
    """Rows without an id or a label carry nothing to upsert and are left out."""
    frame = frame[frame[id_name].notna() & frame[target_name].notna()]
    ids = frame[id_name].str.strip()
    keep = ids != ""
    ids, actuals = ids[keep], frame[target_name][keep]
    if OBSERVED_AT_ATTRIBUTE in frame.columns:
        observed = [when if isinstance(when, str) else None for when in frame[OBSERVED_AT_ATTRIBUTE][keep]]
    else:
        observed = [None] * len(ids)
    return list(zip(ids.tolist(), actuals.tolist(), observed, strict=True))


def read_actuals_file(
    body: bytes, key: str, id_column: str, target: str
) -> list[tuple[str, Any, str | None]]:
    """All records of an actuals file held in memory (small files: the benchmark, tests)."""
    return [
        record
        for chunk in iter_actuals_file(io.BytesIO(body), key, id_column, target)
        for record in chunk.records
    ]

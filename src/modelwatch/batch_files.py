"""Reading a batch file (CSV, CSV.gz, JSONL, JSONL.gz) into a DataFrame of raw values.

Every problem that makes the whole file unreadable raises BatchRejected with a reason a
person can act on: what is wrong, where (line, byte, column), and what was expected.
Cells are kept as read (text for CSV, JSON values for JSONL); typing happens in
modelwatch.validation so that a bad cell rejects one row, not the batch.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import warnings
import zlib
from dataclasses import dataclass

import pandas as pd

from modelwatch.errors import BatchRejected

SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".jsonl", ".jsonl.gz")
# Text a CSV cell may hold to mean "no value".
MISSING_TOKENS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]


@dataclass(frozen=True)
class BatchFormat:
    kind: str  # "csv" or "jsonl"
    compressed: bool


def detect_format(key: str) -> BatchFormat:
    lowered = key.lower()
    for suffix in SUPPORTED_SUFFIXES:
        if lowered.endswith(suffix):
            kind = suffix.split(".")[1]
            return BatchFormat(kind=kind, compressed=suffix.endswith(".gz"))
    raise BatchRejected(
        f"unsupported file type for {key!r}: expected one of {', '.join(SUPPORTED_SUFFIXES)}",
        code="unsupported_extension",
    )


def _decompress(body: bytes, key: str, max_bytes: int) -> bytes:
    """gunzip with a ceiling, so a small compressed file cannot expand without bound."""
    decompressor = gzip.GzipFile(fileobj=io.BytesIO(body))
    try:
        data = decompressor.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error) as problem:
        raise BatchRejected(
            f"{key!r} is not a valid gzip file ({problem}); re-compress it with gzip or upload it "
            "uncompressed without the .gz suffix",
            code="corrupt_gzip",
        ) from None
    if len(data) > max_bytes:
        raise BatchRejected(
            f"{key!r} expands to more than {max_bytes:,} bytes when decompressed, over the "
            "configured batch size limit (MaxBatchMegabytes); split it into smaller batches",
            code="too_large",
        )
    return data


def _decode(data: bytes, key: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as problem:
        line = data[: problem.start].count(b"\n") + 1
        snippet = data[problem.start : problem.start + 4]
        raise BatchRejected(
            f"{key!r} is not UTF-8: byte {snippet[:1]!r} at offset {problem.start} (line {line}) is invalid; "
            "save the file as UTF-8",
            code="not_utf8",
            line=line,
        ) from None


def _first_long_row(text: str) -> tuple[int, int, int] | None:
    """(line, fields, header fields) of the first row with more fields than the header."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    for row in reader:
        if len(row) > len(header):
            return reader.line_num, len(row), len(header)
    return None


def _read_csv(text: str, key: str) -> pd.DataFrame:
    header = next(csv.reader(io.StringIO(text)), [])
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        # pandas would rename the second copy to "name.1" and score the first silently.
        raise BatchRejected(
            f"{key!r} has duplicate column names {repeated}: each column must appear once",
            code="duplicate_column",
        )
    try:
        with warnings.catch_warnings():
            # pandas only warns when a row is one field longer than the header; a lost
            # value is a malformed file, not a warning.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(
                io.StringIO(text),
                dtype=str,
                keep_default_na=False,
                na_values=MISSING_TOKENS,
                index_col=False,
            )
    except pd.errors.ParserWarning:
        found = _first_long_row(text)
        where = (
            f"line {found[0]} has {found[1]} fields, the header has {found[2]}"
            if found
            else "a row is too long"
        )
        raise BatchRejected(
            f"malformed CSV in {key!r}: {where} — every row needs as many fields as the header",
            code="malformed_csv",
        ) from None
    except pd.errors.EmptyDataError:
        raise BatchRejected(
            f"{key!r} has no header row: expected a CSV header naming the columns", code="empty"
        ) from None
    except pd.errors.ParserError as problem:
        message = str(problem).replace("C error: ", "")
        hint = (
            " — a quoted field is never closed; every opening quote needs a closing quote"
            if "EOF inside string" in message
            else " — every row needs as many fields as the header"
        )
        raise BatchRejected(f"malformed CSV in {key!r}: {message}{hint}", code="malformed_csv") from None


def _read_jsonl(text: str, key: str) -> pd.DataFrame:
    records = []
    # split("\n"), not splitlines(): U+2028 and friends are legal inside JSON strings.
    for line_number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as problem:  # JSONDecodeError, or an integer too long to convert
            where = (
                f"{problem.msg} at column {problem.colno}"
                if isinstance(problem, json.JSONDecodeError)
                else problem
            )
            raise BatchRejected(
                f"line {line_number} of {key!r} is not valid JSON: {where}; "
                "expected one JSON object per line",
                code="invalid_json",
                line=line_number,
            ) from None
        if not isinstance(record, dict):
            raise BatchRejected(
                f"line {line_number} of {key!r} is a JSON {type(record).__name__}, expected an object "
                '({"column": value, ...})',
                code="invalid_json",
                line=line_number,
            )
        records.append(record)
    # dtype=object: a column with a null would otherwise become float64 and turn a long
    # integer id into a different number.
    return pd.DataFrame(records, dtype=object)


def read_batch(body: bytes, key: str, max_bytes: int) -> pd.DataFrame:
    """Parse a batch file's bytes; the key's suffix says the format."""
    batch_format = detect_format(key)
    if len(body) > max_bytes:
        raise BatchRejected(
            f"{key!r} is {len(body):,} bytes, over the configured batch size limit of {max_bytes:,} bytes "
            "(MaxBatchMegabytes); split it into smaller batches",
            code="too_large",
        )
    if not body:
        raise BatchRejected(f"{key!r} is empty (0 bytes): expected a header row and data rows", code="empty")
    data = _decompress(body, key, max_bytes) if batch_format.compressed else body
    text = _decode(data, key)
    if not text.strip():
        raise BatchRejected(f"{key!r} holds no data: expected a header row and data rows", code="empty")
    frame = _read_csv(text, key) if batch_format.kind == "csv" else _read_jsonl(text, key)
    if frame.empty:
        raise BatchRejected(
            f"{key!r} has a header but no data rows: expected at least one row after the header",
            code="no_rows",
        )
    return frame

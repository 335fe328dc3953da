"""Reading Parquet batch and actuals files (fastparquet), with CSV's limits and rejection reasons.

Why fastparquet and not pyarrow: the runtime layer must fit Lambda's 250 MiB with
scikit-learn, scipy and pandas, and has about 33 MiB to spare. fastparquet with its codecs
(cramjam) and fsspec adds about 10 MiB pruned; pyarrow alone adds about 140 MiB
(scripts/bench_parquet.py measures both).

Every check that can be made before decoding is made on the footer, so a bad file costs
no more than its bytes: the magic bytes (a truncated upload loses the footer), nested
columns (a cell must be one number, string or boolean), and the decoded size (a few
kilobytes of run-length-encoded pages can claim a billion rows, which the byte limit on
the file alone would not stop). Decoding then fills one preallocated frame (the whole
file's, or a chunk's of whole row groups: read_chunks), row group by row group; a page
that cannot be decoded is located by its row group and column.

fastparquet's own errors for a damaged footer are a TypeError and text printed to
stdout, so the footer is read with stdout captured and any failure there is reported
as a damaged footer. Its messages describe the format, never cell values, but they
stay out of log_safe all the same.
"""

from __future__ import annotations

import contextlib
import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from modelwatch.errors import BatchRejected

PARQUET_MAGIC = b"PAR1"
# The magic at the start, and the footer's length and the magic again at the end.
_TAIL_BYTES = 4 + len(PARQUET_MAGIC)
_MINIMUM_BYTES = len(PARQUET_MAGIC) + _TAIL_BYTES
_MAX_DETAIL_CHARACTERS = 200

# Physical types (parquet.thrift Type) and the annotations that change what they hold.
_PHYSICAL = {
    0: "BOOLEAN",
    1: "INT32",
    2: "INT64",
    3: "INT96",
    4: "FLOAT",
    5: "DOUBLE",
    6: "BYTE_ARRAY",
    7: "FIXED_LEN_BYTE_ARRAY",
}
_CONVERTED_TEXT = {0: "STRING", 4: "ENUM", 19: "JSON"}
_CONVERTED_TEMPORAL = {6: "DATE", 7: "TIME", 8: "TIME", 9: "TIMESTAMP", 10: "TIMESTAMP", 21: "INTERVAL"}
_CONVERTED_DECIMAL = 5
_REPEATED = 2  # FieldRepetitionType.REPEATED

# What a column holds, as validation asks about it.
INTEGER, FLOAT, DECIMAL, STRING, BOOLEAN, TEMPORAL, BINARY = (
    "integer",
    "float",
    "decimal",
    "string",
    "boolean",
    "temporal",
    "binary",
)
NUMERIC_KINDS = frozenset({INTEGER, FLOAT, DECIMAL})


@dataclass(frozen=True)
class ParquetColumn:
    """One top-level column as the file declares it."""

    name: str
    position: int  # 1-based
    kind: str  # one of the kinds above
    type_name: str  # e.g. "INT64", "BYTE_ARRAY (STRING)", "INT64 (TIMESTAMP)"
    utc: bool = False  # a TIMESTAMP of instants (isAdjustedToUTC), which fastparquet reads as naive


@dataclass(frozen=True)
class ParquetFile:
    """An opened file whose footer passed every check; decode with ``read_frame`` or ``iter_frames``."""

    handle: Any  # fastparquet.ParquetFile
    key: str
    what: str  # "batch file" or "actuals file", for messages
    columns: list[ParquetColumn]
    rows: int


def _logical_name(element: Any) -> str | None:
    logical = getattr(element, "logicalType", None)
    if logical is None:
        return None
    for name in ("STRING", "ENUM", "JSON", "UUID", "DECIMAL", "DATE", "TIME", "TIMESTAMP", "INTEGER", "BSON"):
        if getattr(logical, name, None) is not None:
            return name
    return None


def _describe(element: Any) -> tuple[str, str]:
    """(kind, type name) of a primitive column's schema element."""
    physical = _PHYSICAL.get(element.type, f"type {element.type}")
    logical = _logical_name(element)
    converted = element.converted_type
    annotation = logical or _CONVERTED_TEXT.get(converted) or _CONVERTED_TEMPORAL.get(converted)
    if converted == _CONVERTED_DECIMAL:
        annotation = "DECIMAL"
    type_name = f"{physical} ({annotation})" if annotation and annotation != "INTEGER" else physical
    if physical == "INT96" or annotation in ("DATE", "TIME", "TIMESTAMP", "INTERVAL"):
        return TEMPORAL, type_name
    if annotation == "DECIMAL":
        return DECIMAL, type_name
    if physical == "BOOLEAN":
        return BOOLEAN, type_name
    if physical in ("INT32", "INT64"):
        return INTEGER, type_name
    if physical in ("FLOAT", "DOUBLE"):
        return FLOAT, type_name
    if annotation in ("STRING", "ENUM", "JSON"):
        return STRING, type_name
    return BINARY, type_name


def _rejected(reason: str, code: str, log_safe: str | None = None, **details: object) -> BatchRejected:
    return BatchRejected(reason, code=code, log_safe=reason if log_safe is None else log_safe, **details)


def _check_ends(file: BinaryIO, size: int, key: str, what: str) -> None:
    """The magic bytes at both ends and a footer length that fits, read from ``file``."""
    file.seek(0)
    if size < _MINIMUM_BYTES or file.read(len(PARQUET_MAGIC)) != PARQUET_MAGIC:
        raise _rejected(
            f"{what} {key!r} is not a Parquet file: it does not start with the Parquet magic bytes "
            "'PAR1'; expected a file written by a Parquet writer (pandas.to_parquet, Spark, DuckDB), "
            "or a name ending in .csv or .jsonl if it holds text",
            "not_parquet",
        )
    file.seek(size - _TAIL_BYTES)
    tail = file.read(_TAIL_BYTES)  # the footer's length, then the magic
    footer_length = struct.unpack("<I", tail[:4])[0]
    if tail[4:] != PARQUET_MAGIC or footer_length > size - _MINIMUM_BYTES:
        raise _rejected(
            f"{what} {key!r} is truncated: a Parquet file ends with its footer and the bytes 'PAR1', and "
            f"these {size:,} bytes do not; the upload was probably cut short: upload the whole file "
            "again",
            "truncated_parquet",
        )


def _top_level_columns(schema_elements: list[Any], key: str, what: str) -> list[ParquetColumn]:
    """The root's children; a group (struct, list, map) or a repeated field rejects the file."""
    columns: list[ParquetColumn] = []
    index = 1
    root_children = schema_elements[0].num_children or 0
    for position in range(1, root_children + 1):
        element = schema_elements[index]
        children = element.num_children or 0
        if children or element.repetition_type == _REPEATED:
            logical = _logical_name(element)
            converted = {1: "MAP", 2: "MAP", 3: "LIST"}.get(element.converted_type)
            shape = logical or converted or ("STRUCT" if children else "REPEATED")
            where = f"column {element.name!r} (position {position})"
            advice = (
                "batch and actuals files hold flat columns, one number, string or boolean per cell: "
                "flatten it into columns of their own or leave it out of the export"
            )
            raise _rejected(
                f"{what} {key!r} has a nested {shape} {where}; {advice}",
                "nested_column",
                log_safe=f"{what} {key!r} has a nested {shape} column at position {position}; {advice}",
                column=element.name,
            )
        kind, type_name = _describe(element)
        logical = getattr(element, "logicalType", None)
        timestamp = getattr(logical, "TIMESTAMP", None) if logical is not None else None
        # The legacy TIMESTAMP_MILLIS/MICROS annotations are instants by definition.
        utc = bool(getattr(timestamp, "isAdjustedToUTC", False)) or element.converted_type in (9, 10)
        columns.append(ParquetColumn(element.name, position, kind, type_name, utc))
        index += 1
    return columns


def open_parquet(data: bytes, key: str, max_bytes: int | None, what: str = "batch file") -> ParquetFile:
    """Check the bytes and the footer; decode nothing yet. Raises BatchRejected."""
    return _open(io.BytesIO(data), len(data), key, max_bytes, what)


@contextlib.contextmanager
def open_parquet_file(
    path: Path, key: str, max_bytes: int | None, what: str = "batch file"
) -> Iterator[ParquetFile]:
    """open_parquet for a file on disk, read where it lies: the footer now, and each row
    group's column chunks when they are decoded, so the file's bytes are never all in memory."""
    with path.open("rb") as file:
        yield _open(file, path.stat().st_size, key, max_bytes, what)


def _open(file: BinaryIO, size: int, key: str, max_bytes: int | None, what: str) -> ParquetFile:
    import fastparquet  # here, not at module level: CSV batches do not pay its import (~0.2 s)

    _check_ends(file, size, key, what)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            # A file object: fastparquet seeks in it rather than opening the path itself.
            handle = fastparquet.ParquetFile(file)
            elements = list(handle.schema.schema_elements)
    except Exception as problem:  # fastparquet raises TypeError, ValueError, ... for a damaged footer
        detail = (str(problem) or captured.getvalue().strip() or type(problem).__name__)[
            :_MAX_DETAIL_CHARACTERS
        ]
        advice = "the file is damaged (or not written by a Parquet writer): write it again"
        raise _rejected(
            f"{what} {key!r} has a Parquet footer (file metadata) that cannot be read ({detail}); {advice}",
            "corrupt_parquet",
            log_safe=f"{what} {key!r} has a Parquet footer that cannot be read ({type(problem).__name__}); "
            f"{advice}",
        ) from None
    columns = _top_level_columns(elements, key, what)
    names = [column.name for column in columns]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise _rejected(
            f"{what} {key!r} has duplicate column names {repeated[:20]}: each column must appear once",
            "duplicate_column",
            log_safe=f"{what} {key!r} has duplicate column names: each column must appear once",
        )
    rows = int(sum(group.num_rows for group in handle.row_groups))
    if max_bytes is not None:
        decoded = int(sum(group.total_byte_size or 0 for group in handle.row_groups))
        if decoded > max_bytes:
            raise _rejected(
                f"{what} {key!r} expands to {decoded:,} bytes when its pages are decompressed, over the "
                f"configured size limit of {max_bytes:,} bytes; split it into smaller files",
                "too_large",
            )
        # A CSV needs at least a byte per cell (a delimiter or a line end), so a Parquet file
        # may hold no more cells than a CSV within the limit could.
        cells = rows * max(len(columns), 1)
        if cells > max_bytes:
            raise _rejected(
                f"{what} {key!r} holds {rows:,} rows of {len(columns)} columns ({cells:,} cells), over the "
                f"{max_bytes:,} cells the configured size limit of {max_bytes:,} bytes allows (one byte a "
                "cell, as in a CSV); split it into smaller files",
                "too_large",
            )
    return ParquetFile(handle=handle, key=key, what=what, columns=columns, rows=rows)


def _plain_columns(frame: pd.DataFrame, parquet: ParquetFile) -> pd.DataFrame:
    """Columns as the CSV and JSONL readers give them to validation: a nullable integer or
    boolean column (fastparquet's choice when a value is missing) becomes objects with None,
    so an integer id keeps every digit and a missing one reads as missing, not "<NA>"; a
    timestamp of instants says it is UTC."""
    utc = {column.name for column in parquet.columns if column.utc}
    for name in frame.columns:
        column = frame[name]
        dtype = column.dtype
        if isinstance(dtype, pd.api.extensions.ExtensionDtype) and dtype.kind in "iub":
            frame[name] = column.astype(object).where(column.notna(), None)
        elif name in utc and dtype.kind == "M" and getattr(dtype, "tz", None) is None:
            frame[name] = column.dt.tz_localize("UTC")
    return frame


def _undecodable(
    parquet: ParquetFile, group_index: int, columns: list[str] | None, problem: Exception
) -> BatchRejected:
    """Which column of which row group cannot be decoded (found by decoding them one by one)."""
    handle = parquet.handle
    group = handle.row_groups[group_index]
    first_row = sum(handle.row_groups[index].num_rows for index in range(group_index)) + 1
    failing = None
    captured = io.StringIO()
    for name in columns or [column.name for column in parquet.columns]:
        try:
            with contextlib.redirect_stdout(captured):
                handle.read_row_group_file(group, [name], {}, index=False)
        except Exception:
            failing = name
            break
    where = f"row group {group_index + 1} (rows {first_row:,} to {first_row + group.num_rows - 1:,})"
    column = f", column {failing!r}" if failing is not None else ""
    detail = f"{type(problem).__name__}: {problem}"[:_MAX_DETAIL_CHARACTERS]
    advice = "the file is damaged: write it again"
    return _rejected(
        f"{parquet.what} {parquet.key!r} cannot be decoded in {where}{column} ({detail}); {advice}",
        "corrupt_parquet",
        log_safe=f"{parquet.what} {parquet.key!r} cannot be decoded in {where} ({type(problem).__name__}); "
        f"{advice}",
        row=first_row,
    )


def iter_frames(parquet: ParquetFile, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """One DataFrame per row group (the given columns, else all): memory is one row group."""
    for group_index in range(len(parquet.handle.row_groups)):
        captured = io.StringIO()
        try:
            with contextlib.redirect_stdout(captured):
                frame = parquet.handle.read_row_group_file(
                    parquet.handle.row_groups[group_index],
                    columns or list(parquet.handle.columns),
                    {},
                    index=False,
                )
        except Exception as problem:  # cramjam's DecompressionError, struct/thrift errors, ...
            raise _undecodable(parquet, group_index, columns, problem) from None
        yield _plain_columns(frame.reset_index(drop=True), parquet)


def read_frame(parquet: ParquetFile) -> pd.DataFrame:
    """Every row, in one frame that fastparquet allocates once and fills row group by row group."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            frame = parquet.handle.to_pandas(index=False, categories=[])
    except Exception as problem:
        raise _decoding_failure(parquet, range(len(parquet.handle.row_groups)), problem) from None
    return _plain_columns(frame.reset_index(drop=True), parquet)


def read_chunks(parquet: ParquetFile, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Every row, in frames of whole consecutive row groups of up to ``chunk_rows`` rows, each
    exactly those rows of read_frame's frame (the same dtypes: see below).

    fastparquet decodes a row group whole, so a row group of more than ``chunk_rows`` rows
    is a chunk by itself: memory follows the larger of the two. Writers' defaults differ:
    DuckDB writes 122,880 rows a group, pyarrow up to 1,048,576, Spark 128 MB, and
    fastparquet (pandas.to_parquet with engine="fastparquet") up to 50,000,000, which
    makes most of its files one chunk."""
    sizes = [group.num_rows for group in parquet.handle.row_groups]
    runs = _runs(sizes, chunk_rows)
    # Each chunk is read by to_pandas over the whole file with a row filter that selects its
    # row groups: the column dtypes are then the whole file's (a nullable integer column is
    # nullable in every chunk, not only in those whose rows hold a null), and every chunk is
    # decoded as read_frame decodes the file. The filter is a byte a row of the file,
    # allocated once.
    selected = np.zeros(parquet.rows, dtype=bool) if len(runs) > 1 else None
    starts = np.concatenate(([0], np.cumsum(sizes))).astype(int)
    for first_group, end_group in runs:
        start, stop = starts[first_group], starts[end_group]
        if selected is not None:
            selected[:] = False
            selected[start:stop] = True
        captured = io.StringIO()
        try:
            with contextlib.redirect_stdout(captured):
                frame = parquet.handle.to_pandas(
                    index=False, categories=[], row_filter=False if selected is None else selected
                )
        except Exception as problem:
            raise _decoding_failure(parquet, range(first_group, end_group), problem) from None
        yield _plain_columns(frame.reset_index(drop=True), parquet)


def _runs(sizes: list[int], chunk_rows: int) -> list[tuple[int, int]]:
    """(first, end) row group indexes of consecutive row groups holding up to ``chunk_rows``
    rows together; a row group of more rows is a run by itself."""
    runs: list[tuple[int, int]] = []
    first = rows = 0
    for index, size in enumerate(sizes):
        if index > first and rows + size > chunk_rows:
            runs.append((first, index))
            first, rows = index, 0
        rows += size
    if sizes:
        runs.append((first, len(sizes)))
    return runs


def _decoding_failure(parquet: ParquetFile, group_indexes: range, problem: Exception) -> BatchRejected:
    """Where decoding ``group_indexes`` failed: decoded again one row group at a time, the
    first that fails is named (with its column); else the whole read's error."""
    for group_index in group_indexes:
        captured = io.StringIO()
        try:
            with contextlib.redirect_stdout(captured):
                parquet.handle.read_row_group_file(
                    parquet.handle.row_groups[group_index], list(parquet.handle.columns), {}, index=False
                )
        except Exception as failure:
            return _undecodable(parquet, group_index, None, failure)
    detail = f"{type(problem).__name__}: {problem}"[:_MAX_DETAIL_CHARACTERS]
    return _rejected(
        f"{parquet.what} {parquet.key!r} cannot be decoded ({detail}); the file is damaged: write it again",
        "corrupt_parquet",
        log_safe=f"{parquet.what} {parquet.key!r} cannot be decoded ({type(problem).__name__}); the file "
        "is damaged: write it again",
    )

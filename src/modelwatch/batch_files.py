"""Reading a batch file (CSV, CSV.gz, JSONL, JSONL.gz, Parquet) into a DataFrame of raw values.

Every problem that makes the whole file unreadable raises BatchRejected with a reason a
person can act on: what is wrong, where (line, byte, column), and what was expected, and
a log_safe text that quotes nothing from the file. Cells are kept as read (text for CSV,
JSON values for JSONL, the declared types for Parquet: see modelwatch.parquet_files);
typing happens in modelwatch.validation so that a bad cell, or a CSV row with too few or
too many fields, rejects one row, not the batch.

Memory: the file is decoded a few kilobytes at a time (a plain CSV file's structure is
scanned a few megabytes at a time) and parsed into columns as it is read, so a batch at
the size limit costs its bytes plus the DataFrame, nothing per line (a Parquet file: its
bytes plus the frame, filled one row group at a time).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import itertools
import json
import sys
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from modelwatch.errors import BatchRejected
from modelwatch.parquet_files import (
    ParquetColumn,
    ParquetFile,
    open_parquet,
    open_parquet_file,
    read_chunks,
    read_frame,
)

SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".parquet")
# Text a CSV cell may hold to mean "no value".
MISSING_TOKENS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]


@dataclass(frozen=True)
class BatchFormat:
    kind: str  # "csv", "jsonl" or "parquet"
    compressed: bool


def detect_format(key: str) -> BatchFormat:
    lowered = key.lower()
    for suffix in SUPPORTED_SUFFIXES:
        if lowered.endswith(suffix):
            kind = suffix.split(".")[1]
            return BatchFormat(kind=kind, compressed=suffix.endswith(".gz"))
    reason = f"unsupported file type for {key!r}: expected one of {', '.join(SUPPORTED_SUFFIXES)}"
    raise BatchRejected(reason, code="unsupported_extension", log_safe=reason)


def _decompress(body: bytes, key: str, max_bytes: int) -> bytes:
    """gunzip with a ceiling, so a small compressed file cannot expand without bound."""
    decompressor = gzip.GzipFile(fileobj=io.BytesIO(body))
    try:
        data = decompressor.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error) as problem:
        # gzip's and zlib's messages describe the format, never the content.
        reason = (
            f"{key!r} is not a valid gzip file ({problem}); re-compress it with gzip or upload it "
            "uncompressed without the .gz suffix"
        )
        raise BatchRejected(reason, code="corrupt_gzip", log_safe=reason) from None
    if len(data) > max_bytes:
        reason = (
            f"{key!r} expands to more than {max_bytes:,} bytes when decompressed, over the "
            "configured batch size limit (MaxBatchMegabytes); split it into smaller batches"
        )
        raise BatchRejected(reason, code="too_large", log_safe=reason)
    return data


def _not_utf8(data: bytes, key: str) -> BatchRejected:
    """Locate the first byte that is not UTF-8 (only called once decoding has failed)."""
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    offset = start
    try:
        # A memoryview, so locating the byte does not copy a file at the size limit.
        codecs.utf_8_decode(memoryview(data)[start:], "strict", True)
    except UnicodeDecodeError as problem:
        offset = start + problem.start
    line = data.count(b"\n", 0, offset) + 1
    where = f"at offset {offset} (line {line})"
    byte = data[offset : offset + 1]
    return BatchRejected(
        f"{key!r} is not UTF-8: byte {byte!r} {where} is invalid; save the file as UTF-8",
        code="not_utf8",
        log_safe=f"{key!r} is not UTF-8: an invalid byte {where}; save the file as UTF-8",
        line=line,
    )


def _text_lines(data: bytes, newline: str) -> io.TextIOWrapper:
    """The file's lines, decoded a few kilobytes at a time: a whole-file str (and the list
    of its lines) would hold the batch in memory two or three times over. BytesIO shares
    ``data`` rather than copying it."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline=newline)


@dataclass(frozen=True, eq=False)  # eq=False: pandas compares attrs, and arrays have no truth value
class MisalignedRows:
    """CSV rows whose field count differs from the header's, found by read_batch.

    A missing or extra field shifts every field after it into the wrong column, so these
    rows' cells are blanked in the frame and modelwatch.validation makes each an invalid row.
    """

    row_indexes: np.ndarray  # 0-based data-row indexes in the frame
    field_counts: np.ndarray  # fields found on each of those rows
    lines: np.ndarray  # the file line each of those rows starts on
    expected_fields: int  # the header's count


# Keys of DataFrame.attrs that read_batch sets, so validation can report what the frame
# alone cannot show (attrs keeps read_batch's return type a plain DataFrame).
MISALIGNED_ROWS = "misaligned_rows"  # a MisalignedRows (CSV; JSONL rows have no field count)
DELIMITER = "delimiter"  # the CSV delimiter the header was read with
COLUMN_TYPES = "column_types"  # Parquet: {column name: ParquetColumn}, the types the file declares
CSV_DELIMITERS = ",;\t|"
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
# Enough of the header line for the sniffer; a longer one would only make it slower.
_SNIFF_CHARACTERS = 65_536
# Names listed in a rejection; a header can hold tens of thousands.
_MAX_LISTED_NAMES = 20


def _detect_delimiter(header_line: str) -> str:
    """The delimiter among , ; tab | that splits the header line; comma when it is ambiguous.

    Exports from spreadsheets in many locales use ';' (the comma is their decimal mark),
    and reading them is friendlier than rejecting every column as missing. The sniffer
    prefers a comma when several candidates appear, so a comma file keeps working when a
    column name holds a ';' or '|'.
    """
    try:
        return csv.Sniffer().sniff(header_line[:_SNIFF_CHARACTERS], delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:  # one column, or nothing to choose from
        return ","


def _duplicates(names: list[str]) -> list[str]:
    counts = Counter(names)  # linear: list.count per name took 81 s on an 80,000-column header
    return sorted(name for name, count in counts.items() if count > 1)


def _listed(names: list[str] | list[int]) -> str:
    shown = names[:_MAX_LISTED_NAMES]
    more = len(names) - len(shown)
    return f"{shown}" + (f" and {more} more" if more else "")


def _csv_error(problem: csv.Error, key: str, record_line: int, line: int, delimiter: str) -> BatchRejected:
    message = str(problem)
    if "field larger than field limit" in message:
        detail = (
            f"the row starting on line {record_line} has a field over {csv.field_size_limit():,} characters, "
            "usually an opening quote that is never closed; every opening quote needs a closing quote"
        )
    elif "unexpected end of data" in message:
        detail = (
            f"a quoted field in the row starting on line {record_line} is never closed; every opening "
            "quote needs a closing quote"
        )
    elif "expected after" in message:
        detail = (
            f"on line {line} a closing quote is followed by more text; after a closing quote comes the "
            f"delimiter {delimiter!r} or the end of the line, and a quote inside a quoted field is written "
            'twice ("")'
        )
    elif "new-line character seen in unquoted field" in message:
        detail = (
            f"line {line} has a carriage return inside an unquoted field; end lines with \\n or \\r\\n and "
            "quote fields that hold line breaks"
        )
    else:
        detail = f"line {line}: {message}"
    # csv's messages name characters of the dialect, never the file's text: safe to log.
    reason = f"malformed CSV in {key!r}: {detail}"
    return BatchRejected(reason, code="malformed_csv", log_safe=reason, line=record_line)


def _value_reading(shape: _CsvShape) -> dict[str, Any]:
    """pandas' C parser reading every cell as text, for a file whose structure is known."""
    return {
        "encoding": "utf-8-sig",
        "sep": shape.delimiter,
        # header=None and names as wide as the longest row, so a long row is read (and then
        # blanked), not an error: with header=0 pandas takes the width from the header.
        "header": None,
        "names": list(range(shape.widest)),
        "dtype": str,
        "keep_default_na": False,
        "na_values": MISSING_TOKENS,
        "index_col": False,
        "engine": "c",
    }


def _read_csv(data: bytes, key: str) -> pd.DataFrame:
    """Two passes: Python's csv module (or, for a plain file, a byte scan that gives the
    same answer) finds each row's field count and the line of any fault (pandas fills a
    short row's absent fields exactly like empty ones, and its C parser has no field-count
    hook), then pandas' C parser reads the values, ten times faster than building the
    columns in Python."""
    header, names, shape = _csv_structure(data, key)
    misaligned = shape.misaligned
    delimiter = shape.delimiter
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.BytesIO(data), **_value_reading(shape))
    except (pd.errors.ParserError, pd.errors.ParserWarning) as problem:
        # The csv module accepted the file, so this is a disagreement between the two parsers.
        reason = (
            f"malformed CSV in {key!r}: {str(problem).replace('C error: ', '')}; every row needs as many "
            "fields as the header and every opening quote a closing quote"
        )
        raise BatchRejected(reason, code="malformed_csv", log_safe=reason) from None
    frame = frame.iloc[1:].reset_index(drop=True)  # the header row, read as data above
    if len(frame) != shape.rows:
        reason = (
            f"malformed CSV in {key!r}: its rows cannot be told apart consistently ({shape.rows:,} by one "
            f"reader, {len(frame):,} by another); look for lines holding only spaces or a stray quote"
        )
        raise BatchRejected(reason, code="malformed_csv", log_safe=reason)
    if misaligned.row_indexes.size:
        frame.iloc[misaligned.row_indexes, :] = np.nan
    frame = frame.iloc[:, : len(header)].set_axis(names, axis=1)
    frame.attrs[MISALIGNED_ROWS] = misaligned
    frame.attrs[DELIMITER] = delimiter
    return frame


@dataclass(frozen=True, eq=False)
class _CsvShape:
    delimiter: str
    rows: int  # data rows, blank lines not counted
    widest: int  # the most fields on any row
    misaligned: MisalignedRows


def _column_names(header: list[str], key: str) -> list[str]:
    """The header's fields as column names; a name given twice rejects the file."""
    # pandas' name for a column without one, which the rest of modelwatch has always seen.
    names = [name if name else f"Unnamed: {index}" for index, name in enumerate(header)]
    repeated = _duplicates(names)
    if repeated:
        # pandas would rename the second copy to "name.1" and score the first silently.
        positions = [index + 1 for index, name in enumerate(names) if name in set(repeated)]
        raise BatchRejected(
            f"{key!r} has duplicate column names {_listed(repeated)}: each column must appear once",
            code="duplicate_column",
            log_safe=f"{key!r} has duplicate column names at positions {_listed(positions)} (1 = first): "
            "each column must appear once",
        )
    return names


def _csv_structure(data: bytes, key: str) -> tuple[list[str], list[str], _CsvShape]:
    """The header, the column names, and the shape of the rows, without keeping any value."""
    plain = _plain_csv_structure(io.BytesIO(data), key)
    if plain is not None:
        return plain
    try:
        # newline="": csv must see quoted line breaks as they are
        return _csv_structure_of(_text_lines(data, newline=""), key)
    except UnicodeDecodeError:
        raise _not_utf8(data, key) from None


def _csv_structure_of(lines: io.TextIOWrapper, key: str) -> tuple[list[str], list[str], _CsvShape]:
    """_csv_structure over decoded lines; a byte that is not UTF-8 raises UnicodeDecodeError."""
    blank_lines = 0
    header_line = ""
    for header_line in lines:
        if header_line.strip():
            break
        blank_lines += 1
    delimiter = _detect_delimiter(header_line)
    # strict: an unclosed quote at the end of the file is an error, not a silently cut field.
    reader = csv.reader(itertools.chain([header_line], lines), delimiter=delimiter, strict=True)
    record_line = blank_lines + 1  # the line the row being read starts on
    try:
        header = next(reader)
        record_line = blank_lines + reader.line_num + 1
        width = len(header)
        names = _column_names(header, key)
        misaligned: list[tuple[int, int, int]] = []  # (row index, fields, line)
        rows = 0
        widest = width
        for row in reader:
            fields = len(row)
            if fields <= 1 and not "".join(row).strip():  # a blank line, which pandas skips too
                record_line = blank_lines + reader.line_num + 1
                continue
            if fields != width:
                misaligned.append((rows, fields, record_line))
                widest = max(widest, fields)
            record_line = blank_lines + reader.line_num + 1
            rows += 1
    except csv.Error as problem:
        raise _csv_error(problem, key, record_line, blank_lines + reader.line_num, delimiter) from None
    found = np.array(misaligned, dtype=np.int64).reshape(-1, 3)
    shape = _CsvShape(
        delimiter=delimiter,
        rows=rows,
        widest=widest,
        misaligned=MisalignedRows(
            row_indexes=found[:, 0], field_counts=found[:, 1], lines=found[:, 2], expected_fields=width
        ),
    )
    return header, names, shape


# -- the structure of a plain CSV file, from its bytes ---------------------------------------
#
# _csv_structure_of runs Python's csv module over every line: a second per million rows,
# more than pandas takes to read the values. Most batches are plain: valid UTF-8, no quote
# character, no carriage return but in a "\r\n" line break, and no field over csv's size
# limit. In such a file each line is one row and each delimiter byte separates two fields,
# exactly as csv reads it (a quote is what lets a field hold a delimiter or a line break,
# and a lone "\r" is a line break to Python's text reader and an error inside a field to
# csv; in UTF-8 an ASCII byte is always that character, never part of another), so
# counting delimiter bytes per line with numpy gives csv's field counts. A file that is
# not plain, or that has no header (only blank lines), is left to _csv_structure_of, whose
# answer and errors stay the reference (tests/unit/test_csv_structure.py compares the two
# on generated files).

_SCAN_BYTES = 4 << 20  # read a few megabytes at a time, cut at the last line break
_NEWLINE = ord("\n")
# The bytes that make a line not blank to str.strip: ASCII other than whitespace. A line
# of whitespace and non-ASCII bytes is decoded to tell (U+00A0 and friends are whitespace).
_SOLID = np.array([byte < 128 and not chr(byte).isspace() for byte in range(256)])


class _NotPlain(Exception):
    """Something in the file that only csv's reading describes exactly."""


def _check_plain(part: bytes) -> None:
    """Raise _NotPlain unless ``part`` (whole lines) is plain."""
    if b'"' in part or (b"\r" in part and part.count(b"\r") != part.count(b"\r\n")):
        raise _NotPlain
    if not part.isascii():
        try:
            codecs.utf_8_decode(part, "strict", True)  # what the text reader would do
        except UnicodeDecodeError:
            raise _NotPlain from None


def _plain_csv_structure(
    file: BinaryIO, key: str, read_bytes: int = _SCAN_BYTES
) -> tuple[list[str], list[str], _CsvShape] | None:
    """_csv_structure_of for a plain file (see above), or None if it is not plain.

    Nothing is raised before the whole file has been seen to be plain: in a file that is
    not, csv's reading may fail first, and its error is the one to report.
    """
    try:
        return _scan_plain_csv(file, key, read_bytes)
    except _NotPlain:
        return None


def _scan_plain_csv(file: BinaryIO, key: str, read_bytes: int) -> tuple[list[str], list[str], _CsvShape]:
    limit = csv.field_size_limit()
    blank_lines = 0
    raw = file.readline().removeprefix(codecs.BOM_UTF8)  # utf-8-sig drops a BOM at the start only
    while True:
        if not raw:
            raise _NotPlain  # no header, only blank lines: csv's reading says what it makes of it
        _check_plain(raw)
        header_line = raw.decode("utf-8")
        if header_line.strip():
            break
        blank_lines += 1
        raw = file.readline()
    delimiter = _detect_delimiter(header_line)
    # The last piece holds the line break, which csv does not count: an overestimate is safe.
    if max(map(len, header_line.split(delimiter))) > limit:
        raise _NotPlain
    header = next(csv.reader([header_line], delimiter=delimiter, strict=True))
    width = len(header)
    delimiter_byte = ord(delimiter)
    lines_before = blank_lines + 1  # lines of the file before the part being scanned
    rows = 0
    widest = width
    misaligned: list[np.ndarray] = []  # (row index, fields, line) for each misaligned row
    carry = b""  # a line not yet ended at the end of the last read
    while True:
        block = file.read(read_bytes)
        if block:
            data = carry + block
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # a line longer than a read
                carry = data
                continue
            part, carry = data[:cut], data[cut:]
            _check_plain(part)
        elif carry:
            _check_plain(carry)  # the last line, without a line break
            part, carry = carry + b"\n", b""
        else:
            break
        found, kept, part_lines, longest = _scan_lines(part, delimiter_byte, width, limit)
        if found.size:
            found[:, 0] += rows
            found[:, 2] += lines_before
            misaligned.append(found)
            widest = max(widest, longest)
        rows += kept
        lines_before += part_lines
    names = _column_names(header, key)
    every = np.concatenate(misaligned) if misaligned else np.empty((0, 3), dtype=np.int64)
    shape = _CsvShape(
        delimiter=delimiter,
        rows=rows,
        widest=widest,
        misaligned=MisalignedRows(
            row_indexes=every[:, 0], field_counts=every[:, 1], lines=every[:, 2], expected_fields=width
        ),
    )
    return header, names, shape


def _scan_lines(part: bytes, delimiter_byte: int, width: int, limit: int) -> tuple[np.ndarray, int, int, int]:
    """One read's whole lines (``part`` ends with a line break): its misaligned rows as
    (row index, fields, line) counted from the part's start (0-based rows, 1-based lines),
    its rows, its lines, and the most fields on a misaligned row."""
    bytes_ = np.frombuffer(part, dtype=np.uint8)
    # Where each field ends (a delimiter or a line break), and which of those end a line:
    # one pass over the bytes for both.
    breaks = np.flatnonzero((bytes_ == _NEWLINE) | (bytes_ == delimiter_byte))
    line_breaks = np.flatnonzero(bytes_[breaks] == _NEWLINE)
    ends = breaks[line_breaks]
    fields = np.diff(line_breaks, prepend=-1)
    lengths = np.diff(ends, prepend=-1)  # each line's bytes, its line break included
    # A field has at most as many characters as bytes: only a long line may hold one over
    # csv's limit (which csv rejects, quoted or not).
    if int(lengths.max()) > limit and int(np.diff(breaks, prepend=-1).max()) - 1 > limit:
        raise _NotPlain
    # csv's blank line: at most one field, and only whitespace in it (pandas skips these too).
    blank = np.zeros(ends.size, dtype=bool)
    single = np.flatnonzero(fields == 1)
    if single.size:
        starts = ends - lengths + 1
        solid = np.logical_or.reduceat(_SOLID[bytes_], starts)
        for line in single[~solid[single]].tolist():
            blank[line] = not part[starts[line] : ends[line] + 1].decode("utf-8").strip()
    kept = ~blank
    wrong = np.flatnonzero(kept & (fields != width))
    if not wrong.size:
        return np.empty((0, 3), dtype=np.int64), int(kept.sum()), int(ends.size), width
    row_indexes = np.cumsum(kept)[wrong] - 1
    found = np.column_stack([row_indexes, fields[wrong], wrong + 1]).astype(np.int64)
    return found, int(kept.sum()), int(ends.size), int(fields[wrong].max())


def _read_jsonl(data: bytes, key: str) -> pd.DataFrame:
    # Columns are built as records arrive: a list of per-line dicts held the batch ~37 times
    # over (2.4 GB for 64 MB of short lines).
    columns: dict[str, list[Any]] = {}
    rows = 0
    line_number = 0
    try:
        # newline="\n": U+2028 and friends are legal inside JSON strings, and \r before \n is
        # whitespace to the parser.
        for line_number, line in enumerate(_text_lines(data, newline="\n"), start=1):
            if not line or line.isspace():
                continue
            record = _json_object(line, line_number, key)
            for name, value in record.items():
                column = columns.get(name)
                if column is None:  # a column first seen here: earlier rows have no value
                    column = columns[name] = [np.nan] * rows
                column.append(value)
            rows += 1
            if len(record) != len(columns):
                for column in columns.values():
                    if len(column) < rows:
                        column.append(np.nan)
    except UnicodeDecodeError:
        raise _not_utf8(data, key) from None
    # dtype=object: a column with a null would otherwise become float64 and turn a long
    # integer id into a different number.
    return pd.DataFrame(columns, dtype=object, index=pd.RangeIndex(rows))


def _json_object(line: str, line_number: int, key: str) -> dict[str, Any]:
    where = f"line {line_number} of {key!r}"
    try:
        record = json.loads(line)
    except RecursionError:
        # Python's parser recurses once per level; ~1,000 levels exhaust the stack.
        reason = (
            f"{where} is nested deeper than the JSON parser allows (arrays or objects over about "
            f"{sys.getrecursionlimit():,} levels); expected one object per line whose values are "
            "numbers, strings, booleans or null"
        )
        raise BatchRejected(reason, code="invalid_json", log_safe=reason, line=line_number) from None
    except ValueError as problem:  # JSONDecodeError, or an integer too long to convert
        detail = (
            f"{problem.msg} at column {problem.colno}"
            if isinstance(problem, json.JSONDecodeError)
            else problem
        )
        # The parser's messages name a position and what it expected, never the text.
        reason = f"{where} is not valid JSON: {detail}; expected one JSON object per line"
        raise BatchRejected(reason, code="invalid_json", log_safe=reason, line=line_number) from None
    if not isinstance(record, dict):
        reason = f'{where} is a JSON {type(record).__name__}, expected an object ({{"column": value, ...}})'
        raise BatchRejected(reason, code="invalid_json", log_safe=reason, line=line_number)
    return record


def _read_parquet(body: bytes, key: str, max_bytes: int) -> pd.DataFrame:
    parquet = open_parquet(body, key, max_bytes)
    _check_parquet_rows(parquet, key)
    frame = read_frame(parquet)
    frame.attrs[COLUMN_TYPES] = _column_types(parquet)
    return frame


def _check_parquet_rows(parquet: ParquetFile, key: str) -> None:
    if parquet.rows == 0:
        reason = f"{key!r} has columns but no rows: expected at least one row"
        raise BatchRejected(reason, code="no_rows", log_safe=reason)


def _column_types(parquet: ParquetFile) -> dict[str, ParquetColumn]:
    return {column.name: column for column in parquet.columns}


def read_batch(body: bytes, key: str, max_bytes: int) -> pd.DataFrame:
    """Parse a batch file's bytes; the key's suffix says the format.

    For Parquet, ``frame.attrs[COLUMN_TYPES]`` holds the declared column types, which
    modelwatch.validation checks against the model's features.
    For CSV, ``frame.attrs[MISALIGNED_ROWS]`` lists the rows whose field count is not the
    header's (their cells are blank) and ``frame.attrs[DELIMITER]`` the delimiter used.
    """
    batch_format = detect_format(key)
    if len(body) > max_bytes:
        reason = (
            f"{key!r} is {len(body):,} bytes, over the configured batch size limit of {max_bytes:,} bytes "
            "(MaxBatchMegabytes); split it into smaller batches"
        )
        raise BatchRejected(reason, code="too_large", log_safe=reason)
    if not body:
        reason = f"{key!r} is empty (0 bytes): expected a header row and data rows"
        raise BatchRejected(reason, code="empty", log_safe=reason)
    if batch_format.kind == "parquet":
        return _read_parquet(body, key, max_bytes)
    data = _decompress(body, key, max_bytes) if batch_format.compressed else body
    # removeprefix copies only when there is a BOM; isspace stops at the first other byte.
    content = data.removeprefix(codecs.BOM_UTF8)
    if not content or content.isspace():
        reason = f"{key!r} holds no data: expected a header row and data rows"
        raise BatchRejected(reason, code="empty", log_safe=reason)
    del content
    frame = _read_csv(data, key) if batch_format.kind == "csv" else _read_jsonl(data, key)
    if frame.empty:
        reason = f"{key!r} has a header but no data rows: expected at least one row after the header"
        raise BatchRejected(reason, code="no_rows", log_safe=reason)
    return frame


# -- reading a batch file from disk in chunks ------------------------------------------------
#
# The batch monitor spools the object to /tmp (modelwatch.results) and reads it from
# there a chunk of rows at a time, so memory follows the chunk, not the batch. Each chunk
# is a frame exactly like read_batch's for those rows (same cells, same attrs, with
# MisalignedRows indexes relative to the chunk); the rejections are read_batch's.

# Rows per chunk: measured on the sample model (scripts/bench.py), 50,000 to 200,000 rows
# run at the same rows/s, and a chunk of 100,000 rows of ten columns costs ~60 MB of frame.
CHUNK_ROWS = 100_000
_COPY_BYTES = 1 << 20


@dataclass(frozen=True)
class BatchChunk:
    frame: pd.DataFrame
    first_row: int  # rows of the file before this chunk (0 for the first)


def _too_large(key: str, size: int, max_bytes: int) -> BatchRejected:
    reason = (
        f"{key!r} is {size:,} bytes, over the configured batch size limit of {max_bytes:,} bytes "
        "(MaxBatchMegabytes); split it into smaller batches"
    )
    return BatchRejected(reason, code="too_large", log_safe=reason)


def _decompress_file(path: Path, key: str, max_bytes: int) -> Path:
    """gunzip ``path`` beside itself, a megabyte at a time, with read_batch's ceiling."""
    target = path.with_name(path.name + ".data")
    written = 0
    try:
        with gzip.open(path, "rb") as source, target.open("wb") as sink:
            while block := source.read(_COPY_BYTES):
                written += len(block)
                if written > max_bytes:
                    reason = (
                        f"{key!r} expands to more than {max_bytes:,} bytes when decompressed, over the "
                        "configured batch size limit (MaxBatchMegabytes); split it into smaller batches"
                    )
                    raise BatchRejected(reason, code="too_large", log_safe=reason)
                sink.write(block)
    except (OSError, EOFError, zlib.error) as problem:
        reason = (
            f"{key!r} is not a valid gzip file ({problem}); re-compress it with gzip or upload it "
            "uncompressed without the .gz suffix"
        )
        raise BatchRejected(reason, code="corrupt_gzip", log_safe=reason) from None
    return target


def _holds_no_data(path: Path) -> bool:
    """Only a BOM and whitespace, read a megabyte at a time."""
    with path.open("rb") as file:
        block = file.read(_COPY_BYTES).removeprefix(codecs.BOM_UTF8)
        while True:
            if block and not block.isspace():
                return False
            block = file.read(_COPY_BYTES)
            if not block:
                return True


def read_batch_chunks(
    path: Path, key: str, max_bytes: int, chunk_rows: int = CHUNK_ROWS
) -> Iterator[BatchChunk]:
    """read_batch for a file on disk, ``chunk_rows`` rows at a time (Parquet: whole row
    groups, up to ``chunk_rows`` rows unless one row group holds more).

    Everything that rejects the whole file before any row is read (size, gzip, empty,
    encoding, CSV structure) is raised before the first chunk; a JSONL line that is not
    an object is raised when its chunk is read.
    """
    detect_format(key)
    size = path.stat().st_size
    if size > max_bytes:
        raise _too_large(key, size, max_bytes)
    if size == 0:
        reason = f"{key!r} is empty (0 bytes): expected a header row and data rows"
        raise BatchRejected(reason, code="empty", log_safe=reason)
    batch_format = detect_format(key)
    if batch_format.kind == "parquet":
        yield from _parquet_chunks(path, key, max_bytes, chunk_rows)
        return
    data_path = _decompress_file(path, key, max_bytes) if batch_format.compressed else path
    if _holds_no_data(data_path):
        reason = f"{key!r} holds no data: expected a header row and data rows"
        raise BatchRejected(reason, code="empty", log_safe=reason)
    chunks = (
        _csv_chunks(data_path, key, chunk_rows)
        if batch_format.kind == "csv"
        else _jsonl_chunks(data_path, key, chunk_rows)
    )
    rows = 0
    for chunk in chunks:
        rows += len(chunk.frame)
        yield chunk
    if rows == 0:
        reason = f"{key!r} has a header but no data rows: expected at least one row after the header"
        raise BatchRejected(reason, code="no_rows", log_safe=reason)


def _file_lines(path: Path, newline: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(path.open("rb"), encoding="utf-8-sig", newline=newline)


def _csv_chunks(path: Path, key: str, chunk_rows: int) -> Iterator[BatchChunk]:
    """_read_csv's two passes over a file: the structure first (nothing kept per row but
    the misaligned ones), then pandas' C parser ``chunk_rows`` rows at a time."""
    with path.open("rb") as file:
        plain = _plain_csv_structure(file, key)
    if plain is not None:
        header, names, shape = plain
    else:
        with _file_lines(path, newline="") as lines:
            try:
                header, names, shape = _csv_structure_of(lines, key)
            except UnicodeDecodeError:
                raise _not_utf8(path.read_bytes(), key) from None
    if shape.rows == 0:
        return
    misaligned = shape.misaligned
    read = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            reader = pd.read_csv(path, **_value_reading(shape), chunksize=chunk_rows)
            with reader:
                for part in reader:
                    if read == 0 and part.index[0] == 0:
                        part = part.iloc[1:]  # the header row, read as data
                    frame = part.reset_index(drop=True)
                    first = read
                    read += len(frame)
                    if read > shape.rows:
                        break
                    yield BatchChunk(_csv_chunk_frame(frame, header, names, shape, first), first)
    except (pd.errors.ParserError, pd.errors.ParserWarning) as problem:
        reason = (
            f"malformed CSV in {key!r}: {str(problem).replace('C error: ', '')}; every row needs as many "
            "fields as the header and every opening quote a closing quote"
        )
        raise BatchRejected(reason, code="malformed_csv", log_safe=reason) from None
    if read != shape.rows:
        reason = (
            f"malformed CSV in {key!r}: its rows cannot be told apart consistently ({shape.rows:,} by one "
            f"reader, {read:,} by another); look for lines holding only spaces or a stray quote"
        )
        raise BatchRejected(reason, code="malformed_csv", log_safe=reason)
    del misaligned


def _csv_chunk_frame(
    frame: pd.DataFrame, header: list[str], names: list[str], shape: _CsvShape, first: int
) -> pd.DataFrame:
    found = shape.misaligned
    inside = (found.row_indexes >= first) & (found.row_indexes < first + len(frame))
    local = MisalignedRows(
        row_indexes=found.row_indexes[inside] - first,
        field_counts=found.field_counts[inside],
        lines=found.lines[inside],
        expected_fields=found.expected_fields,
    )
    if local.row_indexes.size:
        frame.iloc[local.row_indexes, :] = np.nan
    frame = frame.iloc[:, : len(header)].set_axis(names, axis=1)
    frame.attrs[MISALIGNED_ROWS] = local
    frame.attrs[DELIMITER] = shape.delimiter
    return frame


def _jsonl_chunks(path: Path, key: str, chunk_rows: int) -> Iterator[BatchChunk]:
    """_read_jsonl ``chunk_rows`` rows at a time. A chunk has the columns seen so far in
    the file, in the order first seen, so every chunk's frame is the rows of read_batch's."""
    seen: dict[str, None] = {}
    columns: dict[str, list[Any]] = {}
    rows = first = 0
    with _file_lines(path, newline="\n") as lines:
        try:
            for line_number, line in enumerate(lines, start=1):
                if not line or line.isspace():
                    continue
                record = _json_object(line, line_number, key)
                for name, value in record.items():
                    column = columns.get(name)
                    if column is None:
                        column = columns[name] = [np.nan] * rows
                        seen[name] = None
                    column.append(value)
                rows += 1
                if len(record) != len(columns):
                    for column in columns.values():
                        if len(column) < rows:
                            column.append(np.nan)
                if rows == chunk_rows:
                    yield BatchChunk(_jsonl_frame(columns, seen, rows), first)
                    first += rows
                    rows = 0
                    columns = {}
        except UnicodeDecodeError:
            raise _not_utf8(path.read_bytes(), key) from None
    if rows:
        yield BatchChunk(_jsonl_frame(columns, seen, rows), first)


def _jsonl_frame(columns: dict[str, list[Any]], seen: dict[str, None], rows: int) -> pd.DataFrame:
    full = {name: columns.get(name) or [np.nan] * rows for name in seen}
    return pd.DataFrame(full, dtype=object, index=pd.RangeIndex(rows))


def _parquet_chunks(path: Path, key: str, max_bytes: int, chunk_rows: int) -> Iterator[BatchChunk]:
    """_read_parquet from the file on disk, a chunk of whole row groups at a time
    (modelwatch.parquet_files.read_chunks); the footer's checks come before the first chunk."""
    with open_parquet_file(path, key, max_bytes) as parquet:
        _check_parquet_rows(parquet, key)
        column_types = _column_types(parquet)
        first = 0
        for frame in read_chunks(parquet, chunk_rows):
            frame.attrs[COLUMN_TYPES] = column_types
            yield BatchChunk(frame, first)
            first += len(frame)

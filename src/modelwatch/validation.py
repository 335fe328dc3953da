"""Checking a batch against the model's metadata, column by column and row by row.

Batch-level problems (a missing column) raise BatchRejected. Row-level problems (a
non-numeric value in a numeric column, a missing or duplicate id, a missing value the
model cannot take, a CSV row with too few or too many fields) reject that row only; the
rest is scored unless more than MaxInvalidRowPercent of the rows are invalid.

Cell values reach the report truncated (invalid_rows, a rejection's reason) and never a
rejection's log_safe text: a batch can hold personal data, and logs outlive reports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelwatch.batch_files import (
    COLUMN_TYPES,
    DELIMITER,
    DELIMITER_NAMES,
    MISALIGNED_ROWS,
    MISSING_TOKENS,
    MisalignedRows,
    detect_format,
)
from modelwatch.errors import BatchRejected
from modelwatch.model_bundle import ModelMetadata
from modelwatch.parquet_files import BOOLEAN, INTEGER, NUMERIC_KINDS, STRING, ParquetColumn
from modelwatch.sorted_runs import SpillDirectory

# The report lists at most this many invalid rows one by one (all are counted).
MAX_LISTED_INVALID_ROWS = 100
# DynamoDB's limit for a partition key; a longer id would fail the whole BatchGetItem.
MAX_ID_BYTES = 2048
# A value quoted in the report is cut to this many characters: enough to find it in the
# file, and a 10 kB cell listed 100 times cannot swell the report.
MAX_QUOTED_VALUE_CHARACTERS = 80
_MISSING_TEXT = frozenset(MISSING_TOKENS)


@dataclass
class ValidatedBatch:
    """The rows that can be scored, typed as the model expects."""

    ids: pd.Series  # str ids of the valid rows
    features: pd.DataFrame  # feature columns in metadata order
    passthrough: pd.DataFrame  # extra columns, kept for predictions.csv.gz
    row_numbers: np.ndarray  # 1-based data-row numbers of the valid rows in the file
    rows_read: int
    invalid_rows: list[dict[str, Any]] = field(default_factory=list)
    invalid_row_count: int = 0
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    missing_counts: dict[str, int] = field(default_factory=dict)  # accepted missing values, per feature
    delimiter: str = ","


def id_text(value: Any) -> str | None:
    """Ids are strings in DynamoDB; JSON numbers like 42 or 42.0 become "42"."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def _is_text(series: pd.Series) -> bool:
    """A string column (CSV cells): every value present is a str."""
    return series.dtype != object and pd.api.types.is_string_dtype(series.dtype)


@dataclass(frozen=True, eq=False)
class _Ids:
    values: pd.Series  # id_text of every cell: str, or None where missing
    missing: np.ndarray  # where values is None
    may_be_too_long: np.ndarray  # ids of more than MAX_ID_BYTES // 4 characters


def _ids(column: pd.Series) -> _Ids:
    """id_text of every cell. A text column's cells are stripped in one list comprehension
    (pandas' str.strip and str.len made a Python call per cell: a tenth of the compute path)."""
    if not _is_text(column):
        ids = column.map(id_text)
        # Bytes are at least characters and at most four times as many: encode only the
        # ids that might be too long.
        lengths = ids.str.len().to_numpy(dtype=float, na_value=0)
        return _Ids(ids, ids.isna().to_numpy(dtype=bool), lengths > MAX_ID_BYTES // 4)
    cells = column.to_numpy(dtype=object)  # the column's own array: read, never written
    absent = column.isna().to_numpy(dtype=bool)
    present = np.flatnonzero(~absent)
    stripped = [cell.strip() for cell in (cells[present] if absent.any() else cells).tolist()]
    lengths = np.fromiter(map(len, stripped), dtype=np.int64, count=len(stripped))
    values = np.full(len(cells), None, dtype=object)
    values[present] = stripped
    blank = present[lengths == 0]
    values[blank] = None
    missing = absent.copy()
    missing[blank] = True
    may_be_too_long = np.zeros(len(cells), dtype=bool)
    may_be_too_long[present[lengths > MAX_ID_BYTES // 4]] = True
    return _Ids(
        pd.Series(values, index=column.index, dtype=object, name=column.name), missing, may_be_too_long
    )


def _numbers(raw: pd.Series, missing: np.ndarray) -> np.ndarray:
    """The values of a column of JSON or Parquet values as floats (NaN where missing or not
    a number)."""
    return pd.to_numeric(raw.where(~missing), errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _text_numbers(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A text column's missing cells, and its values as floats (NaN where missing or not a
    number).

    Parsed per distinct value, so the cost follows cardinality (a feature written with a
    few decimals has thousands, whatever the rows); pd.to_numeric infers from the set of
    values, which is the same either way. Factorizing finds the missing cells too (no
    separate isna pass), and factorizing the cells as an object array of str lets pandas
    hash their bytes: about twice as fast as the text column's own factorize.
    """
    codes, uniques = pd.factorize(raw.to_numpy(dtype=object), use_na_sentinel=True)
    parsed = pd.to_numeric(pd.Series(np.asarray(uniques, dtype=object), dtype=object), errors="coerce")
    numbers = np.append(parsed.to_numpy(dtype=float, na_value=np.nan), np.nan)[codes]
    return codes < 0, numbers


def _quoted(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= MAX_QUOTED_VALUE_CHARACTERS else text[:MAX_QUOTED_VALUE_CHARACTERS] + "..."


def _misaligned(frame: pd.DataFrame) -> MisalignedRows | None:
    found = frame.attrs.get(MISALIGNED_ROWS)
    return found if isinstance(found, MisalignedRows) else None


def _is_missing(series: pd.Series) -> np.ndarray:
    missing = series.isna().to_numpy(dtype=bool, copy=True)
    if series.dtype == object:
        # JSONL strings: the same missing-value tokens as CSV (CSV cells already became NaN).
        missing |= series.map(
            lambda value: isinstance(value, str) and value.strip() in _MISSING_TEXT
        ).to_numpy(dtype=bool)
    return missing


# What a typed (Parquet) column may hold for each role. A number stored as text, a time
# where a number belongs or a bare byte string is a schema error of the export, so the
# whole file is rejected rather than every row of it.
_ID_KINDS = frozenset({STRING, INTEGER})
_CATEGORICAL_KINDS = frozenset({STRING, INTEGER, BOOLEAN})
_EXPECTED = {
    "id": "a string or integer column",
    "numeric": "an integer, floating-point or decimal column (a number, not text)",
    "categorical": "a string, integer or boolean column",
}


def _check_column_types(types: dict[str, ParquetColumn], metadata: ModelMetadata, key: str) -> None:
    roles = [(metadata.id_column, "id", _ID_KINDS)] + [
        (feature.name, feature.type, NUMERIC_KINDS if feature.type == "numeric" else _CATEGORICAL_KINDS)
        for feature in metadata.features
    ]
    wrong = [
        (name, role, types[name])
        for name, role, kinds in roles
        if name in types and types[name].kind not in kinds
    ]
    if not wrong:
        return
    described = "; ".join(
        f"column {name!r} (position {column.position}) is {column.type_name}, and the model's "
        f"{'id column' if role == 'id' else f'{role} feature'} needs {_EXPECTED[role]}"
        for name, role, column in wrong
    )
    # Column names here are the model's (id column, features), never only the file's.
    reason = (
        f"{key!r} has {len(wrong)} column(s) of the wrong Parquet type: {described}; write those columns "
        "with the expected types (pandas: astype before to_parquet)"
    )
    raise BatchRejected(
        reason, code="wrong_column_type", log_safe=reason, columns=[name for name, _, _ in wrong]
    )


def validate_batch(
    frame: pd.DataFrame, metadata: ModelMetadata, key: str, max_invalid_row_percent: float
) -> ValidatedBatch:
    """Check a whole batch: its rows, then the share of invalid ones."""
    checked = check_rows(frame, metadata, key)
    check_invalid_share(checked, key, max_invalid_row_percent)
    checked.findings = validation_findings(checked.missing_counts, checked.rows_read, checked.delimiter)
    return checked


def check_rows(
    frame: pd.DataFrame,
    metadata: ModelMetadata,
    key: str,
    first_row: int = 0,
    seen_ids: SeenIds | None = None,
) -> ValidatedBatch:
    """The rows of ``frame`` that can be scored, and why the others cannot.

    For a chunk of a larger file: ``first_row`` rows came before it (row numbers in the
    report are the file's) and ``seen_ids`` holds the ids of those rows, so a repeated id
    is caught across chunks. The share of invalid rows and the findings are the whole
    batch's, made by ``check_invalid_share`` and ``validation_findings``.
    """
    misaligned = _misaligned(frame)
    delimiter = frame.attrs.get(DELIMITER, ",")
    column_types = frame.attrs.get(COLUMN_TYPES)
    columns = [str(column) for column in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    # The slices below would each deep-copy read_batch's notes; they are read already.
    frame.attrs = {}
    required = [metadata.id_column, *metadata.feature_names]
    present = set(columns)
    absent = [column for column in required if column not in present]
    if absent:
        needs = (
            f"{key!r} is missing required column(s) {absent}: the model {metadata.name!r} needs "
            f"{metadata.id_column!r} and its features {metadata.feature_names}"
        )
        # The file's column names stay out of the log: without a header they are its first row.
        raise BatchRejected(
            f"{needs}; the file has {columns[:50]}"
            + (f" and {len(columns) - 50} more" if len(columns) > 50 else ""),
            code="missing_column",
            log_safe=f"{needs}; the file has {len(columns)} column(s)",
            missing=absent,
        )
    counts = Counter(columns)  # linear: list.count per column took 81 s for 80,000 columns
    duplicates = sorted(column for column, count in counts.items() if count > 1)
    if duplicates:
        positions = [index + 1 for index, column in enumerate(columns) if counts[column] > 1]
        raise BatchRejected(
            f"{key!r} has duplicate column names {duplicates[:20]}: each column must appear once",
            code="duplicate_column",
            log_safe=f"{key!r} has duplicate column names at positions {positions[:20]} (1 = first): "
            "each column must appear once",
        )
    if isinstance(column_types, dict):
        _check_column_types(column_types, metadata, key)

    rows = len(frame)
    row_numbers = np.arange(first_row + 1, first_row + rows + 1)
    # (row index, column, value, reason, the reason's group in invalid_by_reason)
    problems: list[tuple[int, str | None, Any, str, str]] = []
    invalid = np.zeros(rows, dtype=bool)
    # Rows read with too few or too many fields: their cells are blank (see batch_files), so
    # they are reported for their field count alone, not once more per blank cell.
    shifted = np.zeros(rows, dtype=bool)
    if misaligned is not None and misaligned.row_indexes.size:
        shifted[misaligned.row_indexes] = True
        expected = misaligned.expected_fields
        for index, fields, line in zip(
            misaligned.row_indexes.tolist(),
            misaligned.field_counts.tolist(),
            misaligned.lines.tolist(),
            strict=True,
        ):
            problems.append(
                (
                    index,
                    None,
                    None,
                    f"row {first_row + index + 1} (line {line}) has {fields} fields; "
                    f"the header has {expected}",
                    f"{fields} fields where the header has {expected}",
                )
            )
        invalid |= shifted

    found_ids = _ids(frame[metadata.id_column])
    ids = found_ids.values
    missing_id = found_ids.missing & ~shifted
    for index in np.flatnonzero(missing_id):
        problems.append((int(index), metadata.id_column, None, "missing id", "missing id"))
    invalid |= missing_id
    too_long = found_ids.may_be_too_long.copy()
    for index in np.flatnonzero(too_long):
        too_long[index] = len(ids.iat[index].encode("utf-8")) > MAX_ID_BYTES
    for index in np.flatnonzero(too_long):
        reason = f"id longer than {MAX_ID_BYTES} bytes"
        problems.append((int(index), metadata.id_column, ids.iat[index], reason, reason))
    invalid |= too_long
    repeated = ids.duplicated(keep="first").to_numpy(copy=True)
    if seen_ids is not None:
        repeated |= seen_ids.add(ids, found_ids.missing)
    repeated &= ~found_ids.missing
    for index in np.flatnonzero(repeated):
        reason = "duplicate id (an earlier row has it)"
        problems.append((int(index), metadata.id_column, ids.iat[index], reason, reason))
    invalid |= repeated

    typed: dict[str, np.ndarray] = {}  # float for a numeric feature, object (str or NaN) otherwise
    missing_counts: dict[str, int] = {}
    for feature in metadata.features:
        raw = frame[feature.name]
        if feature.type == "numeric":
            if _is_text(raw):
                missing, values = _text_numbers(raw)
                missing &= ~shifted
            else:
                missing = _is_missing(raw) & ~shifted
                values = _numbers(raw, missing)
            bad = (~missing) & ~shifted & ~np.isfinite(values)
            for index in np.flatnonzero(bad):
                problems.append(
                    (int(index), feature.name, raw.iat[index], "expected a number", "expected a number")
                )
            invalid |= bad
            typed[feature.name] = np.where(bad, np.nan, values)
        elif _is_text(raw):
            # CSV cells are text already, and NaN where missing.
            missing = raw.isna().to_numpy(dtype=bool) & ~shifted
            cells = raw.to_numpy(dtype=object)
            if getattr(raw.dtype, "na_value", None) is not np.nan:  # pandas' "string" dtype: NA
                # (not asked for always: to_numpy would look for the missing cells again)
                cells = raw.to_numpy(dtype=object, na_value=np.nan)
            typed[feature.name] = cells
        else:
            # JSONL values may be numbers or booleans.
            missing = _is_missing(raw) & ~shifted
            text = raw.map(lambda value: value if isinstance(value, str) else str(value), na_action="ignore")
            typed[feature.name] = text.where(~missing).astype(object).where(~missing, np.nan).to_numpy()
        if missing.any():
            if feature.accepts_missing:
                missing_counts[feature.name] = int(missing.sum())
            else:
                reason = "missing value; this model cannot take one"
                for index in np.flatnonzero(missing):
                    problems.append((int(index), feature.name, None, reason, reason))
                invalid |= missing

    invalid_count = int(invalid.sum())
    by_reason = dict(Counter(group for *_, group in problems))
    problems.sort(key=lambda problem: problem[0])
    listed = [
        {"row": int(row_numbers[index]), "column": column, "value": _quoted(value), "reason": reason}
        for index, column, value, reason, _ in problems[:MAX_LISTED_INVALID_ROWS]
    ]
    keep = ~invalid
    # Series of the arrays' own dtype: given an object array, pandas would infer its str
    # dtype for the text, where object is what predict and the predictions file have
    # always been given.
    feature_frame = pd.DataFrame(
        {name: pd.Series(typed[name][keep], dtype=typed[name].dtype) for name in metadata.feature_names}
    )
    extra_columns = [column for column in columns if column not in required]
    return ValidatedBatch(
        ids=ids[keep].reset_index(drop=True).astype(object),
        features=feature_frame,
        passthrough=frame.loc[keep, extra_columns].reset_index(drop=True),
        row_numbers=row_numbers[keep],
        rows_read=rows,
        invalid_rows=listed,
        invalid_row_count=invalid_count,
        invalid_by_reason=by_reason,
        missing_counts=missing_counts,
        delimiter=delimiter,
    )


def check_invalid_share(checked: ValidatedBatch, key: str, max_invalid_row_percent: float) -> None:
    """Reject the batch when more than MaxInvalidRowPercent of its rows are invalid."""
    rows, invalid_count, listed = checked.rows_read, checked.invalid_row_count, checked.invalid_rows
    share = 100.0 * invalid_count / rows
    if share <= max_invalid_row_percent:
        return
    first = listed[0] if listed else {}
    # Column names here are the model's (id column, features), never the file's text.
    where = f"row {first.get('row')}" + (f", column {first['column']!r}" if first.get("column") else "")
    summary = (
        f"{invalid_count} of {rows} rows ({share:.1f}%) in {key!r} are invalid, over the limit of "
        f"{max_invalid_row_percent:g}% (MaxInvalidRowPercent); "
        f"the first is {where}: {first.get('reason')}"
    )
    value = f" (got {first['value']!r})" if first.get("value") is not None else ""
    advice = ". Fix the upstream export or raise the limit."
    raise BatchRejected(
        summary + value + advice,
        code="too_many_invalid_rows",
        log_safe=summary + advice,
        invalid_rows=listed,
        invalid_by_reason=checked.invalid_by_reason,
    )


def validation_findings(missing_counts: dict[str, int], rows: int, delimiter: str) -> list[dict[str, Any]]:
    findings: list[dict[str, Any]] = [
        {
            "feature_name": name,
            "constraint_check_type": "missing_values_accepted",
            "rows": count,
            "description": f"{count} of {rows} rows have no value for {name!r}; the model accepts missing "
            "values and scored them",
        }
        for name, count in missing_counts.items()
    ]
    if delimiter != ",":
        findings.append(
            {
                "feature_name": None,
                "constraint_check_type": "delimiter",
                "description": f"the file is {DELIMITER_NAMES.get(delimiter, repr(delimiter))}-separated "
                f"({delimiter!r}), not comma-separated; it was read with {delimiter!r}",
            }
        )
    return findings


def _distinct(ordered: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array (np.unique hashes them: 3 times slower here)."""
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))] if ordered.size else ordered


# SeenIds: hashes kept in memory before they go to disk as one sorted run (8 MB).
IDS_IN_MEMORY = 1_000_000
# SeenIds' Bloom filter over the hashes on disk: its size (16 MB, whatever the batch) and
# probes a hash. At 16 million ids on disk it says "maybe" for ~2% of new ids, 0.2% at 8 million.
BLOOM_BITS = 1 << 27
BLOOM_PROBES = 4
# Hashes set in the Bloom filter at a time (memory: ~30 bytes a hash of the slice).
BLOOM_SLICE = 200_000
# Hashes a page of a run on disk: a lookup reads the one page (512 bytes) that may hold the hash.
PAGE_HASHES = 64


class _BloomFilter:
    """A fixed-size set of hashes that may say a hash is in it when it is not, never the
    reverse: probe positions by double hashing of the hash's two 32-bit halves."""

    def __init__(self) -> None:
        self.bits = np.zeros(BLOOM_BITS // 8, dtype=np.uint8)

    def _positions(self, hashes: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Each probe's (byte, bit) positions, a probe at a time (their arrays cost 8 bytes a hash)."""
        low = hashes & np.uint64(0xFFFFFFFF)
        high = (hashes >> np.uint64(32)) | np.uint64(1)
        for probe in range(BLOOM_PROBES):
            position = (low + np.uint64(probe) * high) & np.uint64(BLOOM_BITS - 1)
            yield position >> np.uint64(3), (position & np.uint64(7)).astype(np.uint8)

    def add(self, hashes: np.ndarray) -> None:
        for start in range(0, hashes.size, BLOOM_SLICE):  # memory follows the slice
            for byte, bit in self._positions(hashes[start : start + BLOOM_SLICE]):
                # One bit at a time: a byte listed twice gets the same value both times, so
                # plain assignment is right (np.bitwise_or.at was 10 times slower).
                for value in range(8):
                    where = byte[bit == value]
                    self.bits[where] |= np.uint8(1 << value)

    def may_contain(self, hashes: np.ndarray) -> np.ndarray:
        maybe = np.ones(hashes.size, dtype=bool)
        for byte, bit in self._positions(hashes):
            maybe &= ((self.bits[byte] >> bit) & 1) != 0
        return maybe


class _DiskRun:
    """Sorted distinct hashes in a file, with the first of every PAGE_HASHES kept in memory
    (1/64 of them)."""

    def __init__(self, hashes: np.ndarray, path: Path):
        hashes.tofile(path)
        self.path = path
        self.size = hashes.size
        self.page_firsts = hashes[::PAGE_HASHES].copy()

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """Which of the hashes the run holds: each looked for in the one page that may hold
        it, the pages gathered at once from a memory map of the file (only their memory
        pages are read, and the map goes with the call)."""
        page = np.searchsorted(self.page_firsts, hashes, side="right") - 1
        found = np.zeros(hashes.size, dtype=bool)
        inside = np.flatnonzero(page >= 0)
        if not inside.size:
            return found
        mapped = np.memmap(self.path, dtype=np.uint64, mode="r", shape=(self.size,))
        try:
            slots = page[inside, None] * PAGE_HASHES + np.arange(PAGE_HASHES)
            pages = mapped[np.minimum(slots, self.size - 1)]
        finally:
            del mapped
        found[inside] = (pages == hashes[inside, None]).any(axis=1)
        return found


class SeenIds:
    """The ids of the chunks read so far, as 64-bit hashes in sorted runs.

    8 bytes an id, where a set of the strings took ~100. Two different ids share a hash
    with probability about n^2 / 2^65 over the whole batch (7e-6 at 16 million rows);
    such a pair would be reported as a duplicate id. In memory, runs of similar size are
    merged (as in a log-structured merge), so adding n ids costs O(n log n) and a lookup
    one binary search per run.

    Past IDS_IN_MEMORY hashes, the runs in memory are merged into one sorted run on disk
    (modelwatch.sorted_runs.SpillDirectory) and their hashes set in a Bloom filter of
    fixed size, so memory stays flat however many rows the batch has. A chunk's hashes
    are looked up on disk only where the filter says "maybe" (every repeated id, and a
    few percent of the others), each by reading the one page of a run that may hold it.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.runs: list[np.ndarray] = []
        self.disk_runs: list[_DiskRun] = []
        self.on_disk: _BloomFilter | None = None
        self.spill = SpillDirectory(directory)

    def add(self, ids: pd.Series, missing: np.ndarray | None = None) -> np.ndarray:
        """Mark the ids (str) seen, and say which were seen in an earlier call (missing ids,
        None or where ``missing`` says: never)."""
        present = ~(ids.isna().to_numpy(dtype=bool) if missing is None else missing)
        # categorize=False: the ids are mostly distinct, and factorizing them first (the
        # default) tripled the cost; the hashes are the same either way.
        hashes = pd.util.hash_array(ids.to_numpy(dtype=object)[present], categorize=False)
        # Sorted, the lookups walk each run in order rather than at random (5x faster on
        # runs of millions), and the sorted hashes are the new run.
        order = np.argsort(hashes)
        ordered = hashes[order]
        found = np.zeros(ordered.size, dtype=bool)
        for run in self.runs:
            at = np.minimum(np.searchsorted(run, ordered), run.size - 1)
            found |= run[at] == ordered
        if self.on_disk is not None:
            maybe = np.flatnonzero(self.on_disk.may_contain(ordered) & ~found)
            for disk_run in self.disk_runs:
                found[maybe] |= disk_run.contains(ordered[maybe])
        earlier = np.zeros(len(ids), dtype=bool)
        earlier[np.flatnonzero(present)[order]] = found
        # Only hashes no run holds: the runs never share one, so merging them needs no
        # pass for repeats (and no copy: concatenated, sorted in place).
        run = _distinct(ordered[~found])
        if not run.size:
            return earlier
        while self.runs and self.runs[-1].size <= 2 * run.size:
            # stable: timsort merges the two sorted runs in one pass (1.5x faster than quicksort)
            run = np.concatenate([self.runs.pop(), run])
            run.sort(kind="stable")
        self.runs.append(run)
        if sum(run.size for run in self.runs) > IDS_IN_MEMORY:
            self._write_run()
        return earlier

    def _write_run(self) -> None:
        """The runs in memory as one run on disk (a hash is in one run only)."""
        merged = np.concatenate(self.runs)
        self.runs = []
        merged.sort(kind="stable")
        if self.on_disk is None:
            self.on_disk = _BloomFilter()
        self.on_disk.add(merged)
        self.disk_runs.append(_DiskRun(merged, self.spill.file(f"ids-{len(self.disk_runs)}")))

    def close(self) -> None:
        """Drop the hashes and remove the files."""
        self.runs, self.disk_runs, self.on_disk = [], [], None
        self.spill.close()


class RowTotals:
    """The validation of a batch checked a chunk at a time (check_rows), summed up."""

    def __init__(self, metadata: ModelMetadata):
        self.feature_names = metadata.feature_names
        self.rows = self.invalid = self.valid = 0
        self.listed: list[dict[str, Any]] = []
        self.by_reason: Counter[str] = Counter()
        self.missing_counts: Counter[str] = Counter()
        self.delimiter = ","

    def add(self, checked: ValidatedBatch) -> None:
        self.rows += checked.rows_read
        self.invalid += checked.invalid_row_count
        self.valid += len(checked.ids)
        # Chunks come in row order and each lists its first rows: the batch's first ones.
        self.listed.extend(checked.invalid_rows[: MAX_LISTED_INVALID_ROWS - len(self.listed)])
        self.by_reason.update(checked.invalid_by_reason)
        self.missing_counts.update(checked.missing_counts)
        self.delimiter = checked.delimiter

    def batch(self) -> ValidatedBatch:
        """The whole batch's counts, lists and findings (no rows): what validate_batch reports."""
        counts = self.missing_counts
        missing = {name: counts[name] for name in self.feature_names if counts[name]}
        return ValidatedBatch(
            ids=pd.Series([], dtype=object),
            features=pd.DataFrame(),
            passthrough=pd.DataFrame(),
            row_numbers=np.empty(0, dtype=np.int64),
            rows_read=self.rows,
            invalid_rows=self.listed,
            invalid_row_count=self.invalid,
            invalid_by_reason=dict(self.by_reason),
            findings=validation_findings(missing, self.rows, self.delimiter),
            missing_counts=missing,
            delimiter=self.delimiter,
        )


class BatchChecker:
    """check_rows over the chunks of one batch file, as one batch: row numbers, repeated
    ids and the invalid share are the file's, and a required column that no chunk has
    rejects the batch once the last chunk is read (the batch monitor and retraining read
    batches this way)."""

    def __init__(self, metadata: ModelMetadata, key: str, directory: Path | None = None):
        self.metadata = metadata
        self.key = key
        self.totals = RowTotals(metadata)
        self.seen_ids = SeenIds(directory)
        self.required = [metadata.id_column, *metadata.feature_names]
        self.columns: list[str] = []
        self.seen_columns: set[str] = set()
        self.jsonl = detect_format(key).kind == "jsonl"

    def check(self, frame: pd.DataFrame, first_row: int) -> tuple[ValidatedBatch, pd.DataFrame]:
        """The chunk's validation, and its frame as validated."""
        self.columns = [str(column) for column in frame.columns]
        self.seen_columns.update(self.columns)
        unseen = [name for name in self.required if name not in self.seen_columns]
        if unseen and self.jsonl:
            # A JSONL column may first appear further down the file: until then its rows
            # have no value, as read_batch reads them; if it never does, finish() rejects.
            frame = frame.assign(**dict.fromkeys(unseen, np.nan))
        checked = check_rows(frame, self.metadata, self.key, first_row, self.seen_ids)
        self.totals.add(checked)
        return checked, frame

    def finish(self, max_invalid_row_percent: float) -> ValidatedBatch:
        """The whole batch's validation, after its last chunk; raises what rejects it."""
        if any(name not in self.seen_columns for name in self.required):
            check_rows(pd.DataFrame(columns=self.columns), self.metadata, self.key)  # raises missing_column
        self.seen_ids.close()
        validated = self.totals.batch()
        check_invalid_share(validated, self.key, max_invalid_row_percent)
        return validated

    def close(self) -> None:
        """Remove the ids' files, if any (finish does; for a batch given up before it)."""
        self.seen_ids.close()

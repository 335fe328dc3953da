"""Checking a batch against the model's metadata, column by column and row by row.

Batch-level problems (a missing column) raise BatchRejected. Row-level problems (a
non-numeric value in a numeric column, a missing or duplicate id, a missing value the
model cannot take) reject that row only; the rest is scored unless more than
MaxInvalidRowPercent of the rows are invalid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from modelwatch.batch_files import MISSING_TOKENS
from modelwatch.errors import BatchRejected
from modelwatch.model_bundle import ModelMetadata

# The report lists at most this many invalid rows one by one (all are counted).
MAX_LISTED_INVALID_ROWS = 100
# DynamoDB's limit for a partition key; a longer id would fail the whole BatchGetItem.
MAX_ID_BYTES = 2048
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


def _id_text(value: Any) -> str | None:
    """Ids are strings in DynamoDB; JSON numbers like 42 or 42.0 become "42"."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def _is_missing(series: pd.Series) -> np.ndarray:
    missing = series.isna().to_numpy(dtype=bool, copy=True)
    if series.dtype == object:
        # JSONL strings: the same missing-value tokens as CSV (CSV cells already became NaN).
        missing |= series.map(
            lambda value: isinstance(value, str) and value.strip() in _MISSING_TEXT
        ).to_numpy(dtype=bool)
    return missing


def validate_batch(
    frame: pd.DataFrame, metadata: ModelMetadata, key: str, max_invalid_row_percent: float
) -> ValidatedBatch:
    columns = [str(column) for column in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    required = [metadata.id_column, *metadata.feature_names]
    absent = [column for column in required if column not in frame.columns]
    if absent:
        raise BatchRejected(
            f"{key!r} is missing required column(s) {absent}: the model {metadata.name!r} needs "
            f"{metadata.id_column!r} and its features {metadata.feature_names}; the file has {columns}",
            code="missing_column",
            missing=absent,
        )
    duplicates = sorted({column for column in columns if columns.count(column) > 1})
    if duplicates:
        raise BatchRejected(
            f"{key!r} has duplicate column names {duplicates}: each column must appear once",
            code="duplicate_column",
        )

    rows = len(frame)
    row_numbers = np.arange(1, rows + 1)
    problems: list[tuple[int, str, Any, str]] = []  # (row index, column, value, reason)
    invalid = np.zeros(rows, dtype=bool)

    ids = frame[metadata.id_column].map(_id_text)
    missing_id = ids.isna().to_numpy()
    for index in np.flatnonzero(missing_id):
        problems.append((int(index), metadata.id_column, None, "missing id"))
    invalid |= missing_id
    too_long = ids.map(
        lambda text: isinstance(text, str) and len(text.encode("utf-8")) > MAX_ID_BYTES
    ).to_numpy(dtype=bool)
    for index in np.flatnonzero(too_long):
        problems.append(
            (
                int(index),
                metadata.id_column,
                ids.iat[index][:80] + "...",
                f"id longer than {MAX_ID_BYTES} bytes",
            )
        )
    invalid |= too_long
    repeated = (ids.duplicated(keep="first") & ~ids.isna()).to_numpy()
    for index in np.flatnonzero(repeated):
        problems.append(
            (int(index), metadata.id_column, ids.iat[index], "duplicate id (an earlier row has it)")
        )
    invalid |= repeated

    typed: dict[str, pd.Series] = {}
    missing_counts: dict[str, int] = {}
    for feature in metadata.features:
        raw = frame[feature.name]
        missing = _is_missing(raw)
        if feature.type == "numeric":
            values = pd.to_numeric(raw.where(~missing), errors="coerce").astype(float)
            bad = (~missing) & ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
            for index in np.flatnonzero(bad):
                problems.append((int(index), feature.name, raw.iat[index], "expected a number"))
            invalid |= bad
            typed[feature.name] = values.where(~bad)
        else:
            text = raw.map(lambda value: value if isinstance(value, str) else str(value), na_action="ignore")
            typed[feature.name] = text.where(~missing).astype(object).where(~missing, np.nan)
        if missing.any():
            if feature.accepts_missing:
                missing_counts[feature.name] = int(missing.sum())
            else:
                for index in np.flatnonzero(missing):
                    problems.append(
                        (int(index), feature.name, None, "missing value; this model cannot take one")
                    )
                invalid |= missing

    invalid_count = int(invalid.sum())
    by_reason: dict[str, int] = {}
    for _, _, _, reason in problems:
        by_reason[reason] = by_reason.get(reason, 0) + 1
    problems.sort(key=lambda problem: problem[0])
    listed = [
        {
            "row": int(row_numbers[index]),
            "column": column,
            "value": None if value is None else str(value),
            "reason": reason,
        }
        for index, column, value, reason in problems[:MAX_LISTED_INVALID_ROWS]
    ]
    share = 100.0 * invalid_count / rows
    if share > max_invalid_row_percent:
        first = listed[0] if listed else {}
        raise BatchRejected(
            f"{invalid_count} of {rows} rows ({share:.1f}%) in {key!r} are invalid, over the limit of "
            f"{max_invalid_row_percent:g}% (MaxInvalidRowPercent); the first is row {first.get('row')}, "
            f"column {first.get('column')!r}: {first.get('reason')} (got {first.get('value')!r}). "
            "Fix the upstream export or raise the limit.",
            code="too_many_invalid_rows",
            invalid_rows=listed,
            invalid_by_reason=by_reason,
        )

    findings = [
        {
            "feature_name": name,
            "constraint_check_type": "missing_values_accepted",
            "rows": count,
            "description": f"{count} of {rows} rows have no value for {name!r}; the model accepts missing "
            "values and scored them",
        }
        for name, count in missing_counts.items()
    ]
    keep = ~invalid
    feature_frame = pd.DataFrame(
        {name: typed[name][keep].reset_index(drop=True) for name in metadata.feature_names}
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
        findings=findings,
    )

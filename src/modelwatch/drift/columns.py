"""Reading a batch's or a reference's column for drift: numbers, categories, missing values.

Shared by the baseline (model build time) and the comparison (per batch), so both read
a value the same way: a blank string is missing, "41.5" is a number, 1 and 1.0 are the
same category.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

EXAMPLES_SHOWN = 3


@dataclass
class NumericColumn:
    values: np.ndarray  # the finite numbers, sorted
    rows: int
    missing: int
    invalid: int  # present but not a finite number
    invalid_examples: list[str]


@dataclass
class NumericCounts:
    """A numeric column as its distinct finite values with their counts, in ascending
    blocks (no value in two blocks), read anew by each call of ``blocks``: a large batch's
    predictions, which may be on disk (modelwatch.sorted_runs). Compared exactly as the
    NumericColumn of the same values."""

    blocks: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]
    finite: int  # NumericColumn.values.size
    rows: int
    missing: int
    invalid: int
    invalid_examples: list[str]


@dataclass
class CategoricalColumn:
    codes: np.ndarray  # per row: index into keys, -1 when missing (empty when key_counts is given)
    keys: list[str]  # canonical text of each distinct value
    rows: int
    missing: int
    key_counts: np.ndarray | None = None  # rows per key, when the rows themselves were not kept

    def counts(self) -> np.ndarray:
        """How many rows have each key."""
        if self.key_counts is not None:
            return self.key_counts
        return np.bincount(self.codes[self.codes >= 0], minlength=len(self.keys))


def _is_blank(value: Any) -> bool:
    return isinstance(value, str) and not value.strip()


def numeric_column(column: pd.Series) -> NumericColumn:
    """Finite numbers of a column, with counts of missing and of non-numeric values.

    Works on distinct values for text columns (CSV readers hand over objects when a
    column holds a stray word), so parsing cost follows cardinality, not rows.
    """
    rows = len(column)
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        numbers = column.to_numpy(dtype=float, na_value=np.nan)
        missing_mask = np.isnan(numbers)
        invalid_mask = np.isinf(numbers)
        examples = [str(v) for v in np.unique(numbers[invalid_mask])[:EXAMPLES_SHOWN]]
    else:
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
        unique_series = pd.Series(np.asarray(uniques, dtype=object), dtype=object)
        parsed = pd.to_numeric(unique_series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        blank = np.fromiter((_is_blank(v) for v in unique_series), dtype=bool, count=len(unique_series))
        unique_invalid = (~np.isfinite(parsed)) & ~blank
        # Append a slot for the missing code (-1 indexes the last element).
        parsed_with_missing = np.append(np.where(blank | unique_invalid, np.nan, parsed), np.nan)
        numbers = parsed_with_missing[codes]
        invalid_flags = np.append(unique_invalid, False)
        invalid_mask = invalid_flags[codes]
        missing_mask = np.isnan(numbers) & ~invalid_mask
        examples = [str(v) for v in unique_series[unique_invalid].tolist()[:EXAMPLES_SHOWN]]
    valid = numbers[~(missing_mask | invalid_mask)]
    return NumericColumn(
        values=np.sort(valid),
        rows=rows,
        missing=int(missing_mask.sum()),
        invalid=int(invalid_mask.sum()),
        invalid_examples=examples,
    )


def numeric_column_of_sorted(numbers: np.ndarray) -> NumericColumn:
    """numeric_column of a float column already sorted (NaN last, as numpy sorts it), its
    finite values a view of ``numbers``: no copy of a large batch's predictions."""
    rows = numbers.size
    # numpy orders -inf < finite < inf < NaN, in sort and searchsorted alike.
    finite_start = int(np.searchsorted(numbers, -np.inf, side="right"))
    finite_stop = int(np.searchsorted(numbers, np.inf, side="left"))
    missing_start = int(np.searchsorted(numbers, np.nan, side="left"))
    examples = (["-inf"] if finite_start else []) + (["inf"] if missing_start > finite_stop else [])
    return NumericColumn(
        values=numbers[finite_start:finite_stop],
        rows=rows,
        missing=rows - missing_start,
        invalid=finite_start + missing_start - finite_stop,
        invalid_examples=examples[:EXAMPLES_SHOWN],
    )


def category_key(value: Any) -> str | None:
    """Canonical text of a category, None when missing.

    Numbers are compared by value (a column with a gap is read as float, so 1 and 1.0
    must be the same category); text is kept as written, stripped, so codes with
    leading zeros ("01234") stay distinct.
    """
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        number = float(value)
        if math.isnan(number):
            return None
        if math.isfinite(number) and number == int(number):
            return str(int(number))
        return repr(number)
    text = str(value).strip()
    return text or None


def categorical_column(column: pd.Series) -> CategoricalColumn:
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    raw_keys = [category_key(v) for v in np.asarray(uniques, dtype=object)]
    # Several raw values can share a key (1 and 1.0, " a" and "a"): re-code to keys.
    keys: list[str] = []
    position: dict[str, int] = {}
    recode = np.empty(len(raw_keys) + 1, dtype=np.int64)
    recode[-1] = -1  # the missing code
    for index, key in enumerate(raw_keys):
        if key is None:
            recode[index] = -1
            continue
        if key not in position:
            position[key] = len(keys)
            keys.append(key)
        recode[index] = position[key]
    row_codes = recode[codes]
    return CategoricalColumn(codes=row_codes, keys=keys, rows=len(column), missing=int((row_codes < 0).sum()))


class NumericSummary:
    """A numeric column read a chunk at a time: its distinct finite values and their counts.

    ``column()`` is exactly ``numeric_column`` of the whole column (the sorted values with
    their repeats), while the chunks in between hold one entry per distinct value: a
    feature written with a few decimals has thousands, whatever the rows.
    """

    def __init__(self) -> None:
        self.values = np.empty(0, dtype=float)
        self.counts = np.empty(0, dtype=np.int64)
        self.rows = self.missing = self.invalid = 0
        self.invalid_examples: list[str] = []

    def add(self, column: NumericColumn) -> None:
        if column.values.size:
            values, counts = np.unique(column.values, return_counts=True)
            # Two sorted runs: a stable sort merges them in linear time.
            every = np.concatenate([self.values, values])
            order = np.argsort(every, kind="stable")
            every, every_count = every[order], np.concatenate([self.counts, counts])[order]
            starts = np.flatnonzero(np.concatenate(([True], every[1:] != every[:-1])))
            self.values = every[starts]
            self.counts = np.add.reduceat(every_count, starts)
        self.rows += column.rows
        self.missing += column.missing
        self.invalid += column.invalid
        # First seen first (a text column's order); a batch's typed columns hold no
        # non-finite value, validation made those rows invalid.
        for example in column.invalid_examples:
            if len(self.invalid_examples) < EXAMPLES_SHOWN and example not in self.invalid_examples:
                self.invalid_examples.append(example)

    def column(self) -> NumericColumn:
        return NumericColumn(
            values=np.repeat(self.values, self.counts),
            rows=self.rows,
            missing=self.missing,
            invalid=self.invalid,
            invalid_examples=list(self.invalid_examples),
        )


class CategoricalSummary:
    """A categorical column read a chunk at a time: how often each key occurs.

    ``column()`` has categorical_column's keys (in the order first seen) and their counts
    (``key_counts``), not a code per row: no comparison looks at the rows' order, and the
    codes took 8 bytes a row of a large batch at its end.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.rows = self.missing = 0

    def add(self, column: CategoricalColumn) -> None:
        for key, count in zip(column.keys, column.counts().tolist(), strict=True):
            self.counts[key] = self.counts.get(key, 0) + count
        self.rows += column.rows
        self.missing += column.missing

    def column(self) -> CategoricalColumn:
        return CategoricalColumn(
            codes=np.empty(0, dtype=np.int64),
            keys=list(self.counts),
            rows=self.rows,
            missing=self.missing,
            key_counts=np.fromiter(self.counts.values(), dtype=np.int64, count=len(self.counts)),
        )

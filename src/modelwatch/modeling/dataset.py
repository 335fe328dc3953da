"""Reading the user's labelled CSV: which column is what, and the rows a model sees.

Every check here names the file, the column and the command-line option involved,
because the person reading the error is at a terminal with that CSV open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelwatch.errors import UserError
from modelwatch.labels import LabelNormaliser
from modelwatch.model_bundle import FeatureType, Task

# A numeric target with at most this many distinct whole-number values is taken as
# class labels (0/1, 1-5 ratings); anything else numeric is a regression target.
MAX_CLASSES_FOR_INFERENCE = 10


@dataclass(frozen=True)
class ColumnOptions:
    """What the user said about the CSV's columns (None: infer)."""

    target: str
    id_column: str = "record_id"
    task: Task | None = None
    features: Sequence[str] | None = None
    timestamp_column: str | None = None
    positive_label: str | None = None


def read_csv(path: Path, role: str) -> pd.DataFrame:
    """Read a CSV the user pointed at, with errors that name the file and the option."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{role} file {path} does not exist (expected a CSV file with a header row)")
    try:
        frame = pd.read_csv(path, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise UserError(f"{role} file {path} is empty: expected a header row and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as problem:
        raise UserError(f"{role} file {path} is not a readable UTF-8 CSV: {problem}") from None
    if frame.empty:
        raise UserError(f"{role} file {path} has a header but no data rows")
    return frame


def _require_column(frame: pd.DataFrame, column: str, option: str, path: Path) -> None:
    if column not in frame.columns:
        raise UserError(
            f"{path} has no column {column!r} (given by {option}); "
            f"its columns are: {', '.join(map(str, frame.columns))}"
        )


def _labelled_rows(frame: pd.DataFrame, target: str, path: Path, notes: list[str]) -> pd.DataFrame:
    missing = int(frame[target].isna().sum())
    if missing == len(frame):
        raise UserError(f"target column {target!r} of {path} is empty in every row")
    if missing:
        notes.append(f"{missing} rows of {path.name} have no {target!r} value and were left out")
        frame = frame.loc[frame[target].notna()]
    return frame


def read_labelled(path: Path, option: str, columns: ColumnOptions, notes: list[str]) -> pd.DataFrame:
    """The CSV's rows that have a label, after checking the named columns exist."""
    frame = read_csv(path, option)
    _require_column(frame, columns.target, "--target", path)
    if columns.timestamp_column:
        _require_column(frame, columns.timestamp_column, "--timestamp-column", path)
    return _labelled_rows(frame, columns.target, path, notes).reset_index(drop=True)


def infer_task(target: pd.Series) -> Task:
    """Classification for non-numeric targets or a few whole-number values, else regression."""
    values = target.dropna()
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return "classification"
    whole = bool(np.all(np.mod(values.to_numpy(dtype=float), 1.0) == 0.0))
    if whole and values.nunique() <= MAX_CLASSES_FOR_INFERENCE:
        return "classification"
    return "regression"


def infer_feature_type(column: pd.Series) -> FeatureType:
    """Numbers are numeric features; text and booleans are categories."""
    if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
        return "categorical"
    return "numeric"


def select_features(frame: pd.DataFrame, columns: ColumnOptions, path: Path) -> list[str]:
    """The feature columns: --features as given, else every column but id, target and timestamp."""
    reserved = {columns.target, columns.id_column, columns.timestamp_column} - {None}
    if columns.features:
        unknown = [name for name in columns.features if name not in frame.columns]
        if unknown:
            raise UserError(
                f"--features names {', '.join(map(repr, unknown))}, which {path} does not have; "
                f"its columns are: {', '.join(map(str, frame.columns))}"
            )
        clashing = [name for name in columns.features if name in reserved]
        if clashing:
            raise UserError(
                f"--features includes {', '.join(map(repr, clashing))}, which is the id, target or timestamp "
                "column; a model must not see those as inputs"
            )
        if len(set(columns.features)) != len(columns.features):
            raise UserError("--features lists a column more than once")
        return list(columns.features)
    features = [str(name) for name in frame.columns if name not in reserved]
    if not features:
        raise UserError(f"{path} has no columns left to use as features after the id, target and timestamp")
    return features


def feature_types_of(frame: pd.DataFrame, features: list[str], path: Path) -> dict[str, FeatureType]:
    """Each feature's type, refusing a column with no values at all (nothing to learn or compare)."""
    types: dict[str, FeatureType] = {}
    for name in features:
        column = frame[name]
        if column.isna().all():
            raise UserError(f"column {name!r} of {path} has no values; drop it or list --features without it")
        types[name] = infer_feature_type(column)
    return types


def _looks_like_identifier(column: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(column) and column.notna().all() and column.is_unique


def identifier_notes(frame: pd.DataFrame, features: list[str]) -> list[str]:
    return [
        f"feature {name!r} has a different text value in every row, like an identifier; "
        "if it is one, pass --id-column or --features"
        for name in features
        if _looks_like_identifier(frame[name])
    ]


def as_model_input(frame: pd.DataFrame, feature_types: dict[str, FeatureType]) -> pd.DataFrame:
    """Feature columns as the runtime will pass them: categories as text, numbers as floats.

    Categories are fitted as Python strings (missing as NaN) so that a batch read from
    CSV, JSONL or any pandas string dtype matches the categories the encoder learned.
    """
    result = pd.DataFrame(index=frame.index)
    for name, kind in feature_types.items():
        column = frame[name]
        if kind == "categorical":
            text = [str(value) if pd.notna(value) else np.nan for value in column]
            result[name] = pd.Series(text, index=frame.index, dtype=object)
        else:
            result[name] = column.astype(float)
    return result


# --- the target ----------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value json can write."""
    return value.item() if isinstance(value, np.generic) else value


def whole_numbers_as_int(target: pd.Series) -> pd.Series:
    """0.0/1.0 labels (a float column, often because of a gap) become the ints they mean."""
    if pd.api.types.is_float_dtype(target) and np.all(np.mod(target.to_numpy(), 1.0) == 0.0):
        return target.astype("int64")
    return target


def positive_label(classes: list[Any], requested: str | None) -> Any:
    """The class Precision, Recall, F1 and ROCAUC are about: --positive-label, else the larger of two."""
    if requested is not None:
        match = LabelNormaliser(classes).normalise(requested)
        if match is None:
            raise UserError(f"--positive-label {requested!r} is not one of the model's classes {classes}")
        return match
    if len(classes) != 2:
        return None
    # classes_ is sorted, so the last class is True of False/True, 1 of 0/1 and the
    # larger of two labels ("yes" of no/yes): the usual meaning of "positive".
    return classes[-1]


def normalise_target(
    target: pd.Series, task: Task, classes: list[Any] | None, path: Path, column: str
) -> np.ndarray:
    """The target as metrics compare it: floats for regression, the model's own class values otherwise."""
    if task == "regression":
        numbers = pd.to_numeric(target, errors="coerce")
        bad = target[numbers.isna() & target.notna()]
        if not bad.empty:
            raise UserError(
                f"target column {column!r} of {path} must be numeric for regression; "
                f"row {int(bad.index[0]) + 2} holds {bad.iloc[0]!r}"
            )
        return numbers.to_numpy(dtype=float)
    normaliser = LabelNormaliser(classes)
    labels = [normaliser.normalise(value) for value in target]
    unknown = sorted({str(raw) for raw, label in zip(target, labels, strict=True) if label is None})
    if unknown:
        raise UserError(
            f"target column {column!r} of {path} holds labels the model does not know: {unknown[:10]}; "
            f"the model's classes are {classes}"
        )
    return np.asarray(labels, dtype=object)

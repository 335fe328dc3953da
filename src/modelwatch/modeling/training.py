"""Build or package a model directory (the model layer's content) from a CSV.

``build_model`` trains a default pipeline; ``package_model`` wraps an estimator the
user already fitted. Both end in ``write_model_directory``: model.skops, metadata.json
and baseline.json as modelwatch.model_bundle describes them, with the reference
metrics and drift baseline computed on rows the model was not fitted on.

The default pipeline is a ColumnTransformer by column name (median imputation for
numeric features; most-frequent imputation and one-hot encoding that ignores unseen
categories for categorical ones) feeding a histogram gradient boosting model. Gradient
boosting is the choice because it is the strongest general-purpose learner for tabular
data in scikit-learn without tuning: it needs no scaling, captures non-linear effects
and interactions, trains in seconds on tens of thousands of rows and yields calibrated
enough probabilities for LogLoss/ROCAUC. Its fitted form is a few hundred KB and skops
can serialise it, which matters for the Lambda layer.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelwatch import drift
from modelwatch.errors import UserError
from modelwatch.labels import LabelNormaliser
from modelwatch.metrics import classification_metrics, plain_values, regression_metrics
from modelwatch.model_bundle import Feature, FeatureType, ModelMetadata, Task

# A numeric target with at most this many distinct whole-number values is taken as
# class labels (0/1, 1-5 ratings); anything else numeric is a regression target.
MAX_CLASSES_FOR_INFERENCE = 10
# One-hot columns per categorical feature are capped: a high-cardinality column
# (a free-text field, an id passed as a feature) would otherwise blow up the model
# and the layer; rare categories share one column.
MAX_CATEGORIES_PER_FEATURE = 50
# Rows used to find out whether the estimator tolerates a missing value per feature.
MISSING_PROBE_ROWS = 5
LIBRARIES = ("scikit-learn", "numpy", "pandas", "scipy", "skops")
MODEL_FILES = ("model.skops", "model.joblib")


@dataclass(frozen=True)
class ColumnOptions:
    """What the user said about the CSV's columns (None: infer)."""

    target: str
    id_column: str = "record_id"
    task: Task | None = None
    features: Sequence[str] | None = None
    timestamp_column: str | None = None
    positive_label: str | None = None


@dataclass
class BundleSummary:
    """What was written, for the command's closing summary."""

    out_dir: Path
    metadata: ModelMetadata
    training_rows: int
    reference_rows: int
    reference_metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        feature_text = ", ".join(f"{f.name} ({f.type})" for f in self.metadata.features)
        metric_text = ", ".join(f"{name}={value:.4g}" for name, value in self.reference_metrics.items())
        lines = [
            f"model {self.metadata.name} version {self.metadata.version} ({self.metadata.task})",
            f"  rows: {self.training_rows} fitted, {self.reference_rows} held out as reference",
            f"  features ({len(self.metadata.features)}): {feature_text}",
            f"  reference metrics: {metric_text}",
            f"  written to {self.out_dir}",
        ]
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


# --- reading and inference -----------------------------------------------------------


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


def _looks_like_identifier(column: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(column) and column.notna().all() and column.is_unique


def _prepare_features(frame: pd.DataFrame, features: list[str], path: Path) -> dict[str, FeatureType]:
    types: dict[str, FeatureType] = {}
    for name in features:
        column = frame[name]
        if column.isna().all():
            raise UserError(f"column {name!r} of {path} has no values; drop it or list --features without it")
        types[name] = infer_feature_type(column)
    return types


def _as_model_input(frame: pd.DataFrame, feature_types: dict[str, FeatureType]) -> pd.DataFrame:
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


# --- the default pipeline ------------------------------------------------------------


def default_pipeline(task: Task, feature_types: dict[str, FeatureType], seed: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    numeric = [name for name, kind in feature_types.items() if kind == "numeric"]
    categorical = [name for name, kind in feature_types.items() if kind == "categorical"]
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(("numeric", SimpleImputer(strategy="median"), numeric))
    if categorical:
        encoder = Pipeline(
            [
                ("impute", SimpleImputer(strategy="most_frequent")),
                (
                    "one_hot",
                    OneHotEncoder(
                        handle_unknown="ignore",
                        max_categories=MAX_CATEGORIES_PER_FEATURE,
                        # The booster needs a dense matrix; the widths here are small.
                        sparse_output=False,
                    ),
                ),
            ]
        )
        transformers.append(("categorical", encoder, categorical))
    preprocess = ColumnTransformer(transformers, remainder="drop")
    if task == "classification":
        model: Any = HistGradientBoostingClassifier(random_state=seed)
    else:
        model = HistGradientBoostingRegressor(random_state=seed)
    return Pipeline([("preprocess", preprocess), ("model", model)])


# --- labels, predictions and metrics -------------------------------------------------


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value json can write."""
    return value.item() if isinstance(value, np.generic) else value


def _positive_label(classes: list[Any], requested: str | None) -> Any:
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


def _normalise_target(
    target: pd.Series, task: Task, classes: list[Any] | None, path: Path, column: str
) -> np.ndarray:
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


def _predict(estimator: Any, features: pd.DataFrame, task: Task) -> tuple[np.ndarray, np.ndarray | None]:
    predictions = np.asarray(estimator.predict(features))
    probabilities = None
    if task == "classification" and hasattr(estimator, "predict_proba"):
        probabilities = np.asarray(estimator.predict_proba(features), dtype=float)
    if task == "classification":
        predictions = np.asarray([_plain(value) for value in predictions], dtype=object)
    return predictions, probabilities


def compute_metrics(
    estimator: Any,
    features: pd.DataFrame,
    y_true: np.ndarray,
    task: Task,
    classes: list[Any],
    positive_label: Any,
) -> tuple[dict[str, float], np.ndarray, np.ndarray | None]:
    """Plain metric values of the estimator on these rows, plus its predictions."""
    predictions, probabilities = _predict(estimator, features, task)
    if task == "classification":
        values = classification_metrics(y_true, predictions, probabilities, classes, positive_label)
    else:
        values = regression_metrics(y_true, predictions)
    return plain_values(values), predictions, probabilities


def probe_accepts_missing(estimator: Any, sample: pd.DataFrame, feature: str, task: Task) -> bool:
    """Whether the fitted estimator predicts when ``feature`` is missing.

    Asked of the estimator itself rather than assumed from the pipeline's shape, so a
    packaged model without imputation is recorded as unable to take gaps and the
    runtime can reject such rows with a reason instead of failing the whole batch.
    """
    # The runtime passes a gap as NaN; a text column may also carry None (JSON null).
    numeric = pd.api.types.is_numeric_dtype(sample[feature])
    gaps: list[Any] = [np.nan] if numeric else [np.nan, None]
    for gap in gaps:
        probe = sample.copy()
        probe[feature] = pd.Series([gap] * len(probe), index=probe.index, dtype=float if numeric else object)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                predictions = np.asarray(estimator.predict(probe))
        except Exception:  # noqa: BLE001 - any failure means "cannot take a gap"
            return False
        if task == "regression" and not np.all(np.isfinite(predictions.astype(float))):
            return False
    return True


# --- writing -------------------------------------------------------------------------


def _library_versions() -> dict[str, str]:
    versions = {}
    for library in LIBRARIES:
        try:
            versions[library] = package_metadata.version(library)
        except package_metadata.PackageNotFoundError:
            continue
    return versions


def _version_now() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _dump_estimator(estimator: Any, out_dir: Path) -> tuple[str, tuple[str, ...], str | None]:
    """Write the estimator, preferring skops (loadable without running pickled code).

    Returns the file name, the skops types the loader must trust (vetted here, by the
    person packaging the model) and a note when skops could not be used.
    """
    import skops.io as sio

    path = out_dir / "model.skops"
    try:
        sio.dump(estimator, path)
        trusted = tuple(sorted(sio.get_untrusted_types(file=path)))
        # Prove the file round-trips before the layer ships it.
        sio.load(path, trusted=list(trusted))
        return path.name, trusted, None
    except Exception as problem:  # noqa: BLE001 - skops rejects some custom objects
        path.unlink(missing_ok=True)
        import joblib

        joblib.dump(estimator, out_dir / "model.joblib")
        note = f"skops could not serialise the estimator ({problem}); wrote model.joblib instead"
        return "model.joblib", (), note


def write_model_directory(
    out_dir: Path,
    estimator: Any,
    metadata: ModelMetadata,
    reference_features: pd.DataFrame,
    reference_target: np.ndarray,
) -> tuple[ModelMetadata, dict[str, float], list[str]]:
    """Compute the reference metrics and drift baseline, then write the three files.

    Everything that can fail is computed before anything is written, and metadata.json
    is written last, so a failed run never leaves a directory that looks complete.
    """
    reference_metrics, predictions, probabilities = compute_metrics(
        estimator,
        reference_features,
        reference_target,
        metadata.task,
        list(metadata.classes),
        metadata.positive_label,
    )
    baseline = {
        "reference_rows": len(reference_features),
        "reference_metrics": reference_metrics,
        "drift": drift.build_drift_baseline(reference_features, metadata, predictions, probabilities),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("metadata.json", *MODEL_FILES):
        (out_dir / stale).unlink(missing_ok=True)
    model_file, trusted_types, note = _dump_estimator(estimator, out_dir)
    metadata = ModelMetadata(
        **{**metadata.__dict__, "model_file": model_file, "trusted_types": trusted_types}
    )
    (out_dir / "baseline.json").write_text(json.dumps(baseline, indent=2) + "\n", encoding="utf-8")
    (out_dir / "metadata.json").write_text(json.dumps(metadata.to_dict(), indent=2) + "\n", encoding="utf-8")
    return metadata, reference_metrics, [note] if note else []


def _features_metadata(
    estimator: Any, sample: pd.DataFrame, feature_types: dict[str, FeatureType], task: Task
) -> tuple[Feature, ...]:
    return tuple(
        Feature(name=name, type=kind, accepts_missing=probe_accepts_missing(estimator, sample, name, task))
        for name, kind in feature_types.items()
    )


def _labelled_rows(frame: pd.DataFrame, target: str, path: Path, notes: list[str]) -> pd.DataFrame:
    missing = int(frame[target].isna().sum())
    if missing == len(frame):
        raise UserError(f"target column {target!r} of {path} is empty in every row")
    if missing:
        notes.append(f"{missing} rows of {path.name} have no {target!r} value and were left out")
        frame = frame.loc[frame[target].notna()]
    return frame


def _whole_numbers_as_int(target: pd.Series) -> pd.Series:
    """0.0/1.0 labels (a float column, often because of a gap) become the ints they mean."""
    if pd.api.types.is_float_dtype(target) and np.all(np.mod(target.to_numpy(), 1.0) == 0.0):
        return target.astype("int64")
    return target


def _identifier_notes(frame: pd.DataFrame, features: list[str]) -> list[str]:
    return [
        f"feature {name!r} has a different text value in every row, like an identifier; "
        "if it is one, pass --id-column or --features"
        for name in features
        if _looks_like_identifier(frame[name])
    ]


# --- build ---------------------------------------------------------------------------


def _read_labelled(path: Path, option: str, columns: ColumnOptions, notes: list[str]) -> pd.DataFrame:
    """The CSV's rows that have a label, after checking the named columns exist."""
    frame = read_csv(path, option)
    _require_column(frame, columns.target, "--target", path)
    if columns.timestamp_column:
        _require_column(frame, columns.timestamp_column, "--timestamp-column", path)
    return _labelled_rows(frame, columns.target, path, notes).reset_index(drop=True)


def build_model(
    train_path: Path,
    columns: ColumnOptions,
    out_dir: Path,
    name: str | None = None,
    reference_fraction: float = 0.25,
    seed: int = 0,
) -> BundleSummary:
    """Train the default pipeline on part of a CSV and write the model directory."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < reference_fraction < 1.0:
        raise UserError(f"--reference-fraction must be between 0 and 1 (exclusive), got {reference_fraction}")
    train_path = Path(train_path)
    notes: list[str] = []
    frame = _read_labelled(train_path, "--train", columns, notes)
    task = columns.task or infer_task(frame[columns.target])
    if columns.task is None:
        notes.append(f"task inferred as {task} from column {columns.target!r}; pass --task to override")
    target = frame[columns.target]
    if task == "classification":
        target = _whole_numbers_as_int(target)
        if target.nunique() < 2:
            raise UserError(
                f"target column {columns.target!r} of {train_path} has a single value "
                f"({target.iloc[0]!r}); a classifier needs at least two classes"
            )
    features = select_features(frame, columns, train_path)
    feature_types = _prepare_features(frame, features, train_path)
    notes.extend(_identifier_notes(frame, features))
    inputs = _as_model_input(frame, feature_types)

    try:
        fit_x, reference_x, fit_y, reference_y = train_test_split(
            inputs,
            target,
            test_size=reference_fraction,
            random_state=seed,
            stratify=target if task == "classification" else None,
        )
    except ValueError as problem:
        raise UserError(
            f"cannot hold out {reference_fraction:.0%} of {len(frame)} rows of {train_path} as reference "
            f"(stratified by {columns.target!r}): {problem}"
        ) from None

    estimator = default_pipeline(task, feature_types, seed)
    if task == "regression":
        fit_target = _normalise_target(fit_y, task, None, train_path, columns.target)
    else:
        fit_target = fit_y.to_numpy()
    estimator.fit(fit_x, fit_target)

    classes = [_plain(value) for value in getattr(estimator, "classes_", [])]
    positive_label = _positive_label(classes, columns.positive_label) if task == "classification" else None
    train_metrics, _, _ = compute_metrics(
        estimator,
        fit_x,
        _normalise_target(fit_y, task, classes or None, train_path, columns.target),
        task,
        classes,
        positive_label,
    )
    metadata = ModelMetadata(
        name=name or train_path.parent.name or "model",
        version=_version_now(),
        task=task,
        model_file="model.skops",
        id_column=columns.id_column,
        target=columns.target,
        timestamp_column=columns.timestamp_column,
        features=_features_metadata(estimator, reference_x.head(MISSING_PROBE_ROWS), feature_types, task),
        classes=tuple(classes),
        positive_label=positive_label,
        training_metrics=train_metrics,
        library_versions=_library_versions(),
    )
    metadata, reference_metrics, write_notes = write_model_directory(
        Path(out_dir),
        estimator,
        metadata,
        reference_x,
        _normalise_target(reference_y, task, classes or None, train_path, columns.target),
    )
    return BundleSummary(
        out_dir=Path(out_dir),
        metadata=metadata,
        training_rows=len(fit_x),
        reference_rows=len(reference_x),
        reference_metrics=reference_metrics,
        notes=notes + write_notes,
    )


# --- package -------------------------------------------------------------------------


def load_user_estimator(path: Path, trust: bool) -> tuple[Any, list[str]]:
    """Load the user's fitted estimator; a .skops file's unknown types need --trust.

    Returns the estimator and the skops types the user accepted (empty for joblib).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--model file {path} does not exist (expected a .joblib or .skops file)")
    if path.suffix == ".skops":
        import skops.io as sio

        try:
            untrusted = sorted(sio.get_untrusted_types(file=path))
        except Exception as problem:  # noqa: BLE001 - a damaged or foreign file
            raise UserError(f"--model file {path} is not a readable skops file: {problem}") from None
        if untrusted and not trust:
            listing = "\n  ".join(untrusted)
            raise UserError(
                f"{path} contains types skops does not trust by default:\n  {listing}\n"
                "Check that they are what you expect, then re-run with --trust to accept them."
            )
        if untrusted:
            print(f"trusting {len(untrusted)} types from {path.name}: {', '.join(untrusted)}")
        return sio.load(path, trusted=untrusted), untrusted
    if path.suffix == ".joblib":
        import joblib

        # joblib runs code from the file: it is the user's own model, loaded on their machine.
        try:
            return joblib.load(path), []
        except Exception as problem:  # noqa: BLE001 - corrupt file or missing module
            raise UserError(f"--model file {path} could not be loaded with joblib: {problem}") from None
    raise UserError(f"--model file {path} has suffix {path.suffix!r}; expected .joblib or .skops")


def package_model(
    model_path: Path,
    reference_path: Path,
    columns: ColumnOptions,
    out_dir: Path,
    name: str | None = None,
    trust: bool = False,
) -> BundleSummary:
    """Wrap an already-fitted estimator with a reference CSV into a model directory."""
    from sklearn.base import is_classifier, is_regressor

    estimator, _ = load_user_estimator(Path(model_path), trust)
    if not hasattr(estimator, "predict"):
        raise UserError(f"{model_path} holds a {type(estimator).__name__}, which has no predict method")
    reference_path = Path(reference_path)
    notes: list[str] = []
    frame = _read_labelled(reference_path, "--reference", columns, notes)

    fitted_names = getattr(estimator, "feature_names_in_", None)
    if columns.features:
        features = select_features(frame, columns, reference_path)
    elif fitted_names is not None:
        features = [str(name) for name in fitted_names]
        select_features(frame, ColumnOptions(**{**columns.__dict__, "features": features}), reference_path)
    else:
        raise UserError(
            f"{model_path} does not record the feature names it was fitted on (it was fitted on an array); "
            "pass --features with the columns in the order the model expects"
        )
    if fitted_names is not None and list(map(str, fitted_names)) != features:
        raise UserError(
            f"--features {features} differ from the columns the model was fitted on "
            f"{list(map(str, fitted_names))}"
        )
    feature_types = _prepare_features(frame, features, reference_path)
    inputs = _as_model_input(frame, feature_types)

    if columns.task:
        task: Task = columns.task
    elif is_classifier(estimator):
        task = "classification"
    elif is_regressor(estimator):
        task = "regression"
    else:
        task = infer_task(frame[columns.target])
        notes.append(f"task inferred as {task} from column {columns.target!r}; pass --task to override")
    if task == "classification" and not hasattr(estimator, "classes_"):
        raise UserError(
            f"{model_path} has no classes_: is it a fitted classifier? (or pass --task regression)"
        )

    classes = (
        [_plain(value) for value in getattr(estimator, "classes_", [])] if task == "classification" else []
    )
    positive_label = _positive_label(classes, columns.positive_label) if task == "classification" else None
    y_reference = _normalise_target(
        frame[columns.target], task, classes or None, reference_path, columns.target
    )
    try:
        estimator.predict(inputs.head(MISSING_PROBE_ROWS))
    except Exception as problem:  # noqa: BLE001 - whatever the user's estimator raises
        raise UserError(
            f"{model_path} could not predict on the feature columns {features} of {reference_path}: {problem}"
        ) from None
    features_metadata = _features_metadata(estimator, inputs.head(MISSING_PROBE_ROWS), feature_types, task)
    metadata = ModelMetadata(
        name=name or Path(model_path).stem,
        version=_version_now(),
        task=task,
        model_file="model.skops",
        id_column=columns.id_column,
        target=columns.target,
        timestamp_column=columns.timestamp_column,
        features=features_metadata,
        classes=tuple(classes),
        positive_label=positive_label,
        # The training data is not available here, so there are no training metrics;
        # baseline.json carries the metrics on the reference rows.
        training_metrics={},
        library_versions=_library_versions(),
    )
    metadata, reference_metrics, write_notes = write_model_directory(
        Path(out_dir), estimator, metadata, inputs, y_reference
    )
    return BundleSummary(
        out_dir=Path(out_dir),
        metadata=metadata,
        training_rows=0,
        reference_rows=len(inputs),
        reference_metrics=reference_metrics,
        notes=notes + write_notes,
    )

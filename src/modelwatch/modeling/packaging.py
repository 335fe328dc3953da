"""`modelwatch model package`: wrap an estimator the user already fitted into a model directory.

The user's reference CSV (rows the model was not fitted on, with the target) stands in
for the held-out part that `model build` keeps back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from modelwatch.errors import UserError
from modelwatch.model_bundle import ModelMetadata, Task, library_versions
from modelwatch.modeling.dataset import (
    ColumnOptions,
    as_model_input,
    feature_types_of,
    infer_task,
    normalise_target,
    plain,
    positive_label,
    read_labelled,
    select_features,
)
from modelwatch.modeling.directory import BundleSummary, version_now, write_model_directory
from modelwatch.modeling.evaluation import MISSING_PROBE_ROWS, features_metadata


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


def _feature_columns(
    estimator: Any, frame: pd.DataFrame, columns: ColumnOptions, model_path: Path, path: Path
) -> list[str]:
    """--features, else the names the estimator was fitted on; the two must agree when both exist."""
    fitted_names = getattr(estimator, "feature_names_in_", None)
    if columns.features:
        features = select_features(frame, columns, path)
    elif fitted_names is not None:
        features = [str(name) for name in fitted_names]
        select_features(frame, ColumnOptions(**{**columns.__dict__, "features": features}), path)
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
    return features


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
    frame = read_labelled(reference_path, "--reference", columns, notes)
    features = _feature_columns(estimator, frame, columns, Path(model_path), reference_path)
    feature_types = feature_types_of(frame, features, reference_path)
    inputs = as_model_input(frame, feature_types)

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
        [plain(value) for value in getattr(estimator, "classes_", [])] if task == "classification" else []
    )
    positive = positive_label(classes, columns.positive_label) if task == "classification" else None
    y_reference = normalise_target(
        frame[columns.target], task, classes or None, reference_path, columns.target
    )
    try:
        estimator.predict(inputs.head(MISSING_PROBE_ROWS))
    except Exception as problem:  # noqa: BLE001 - whatever the user's estimator raises
        raise UserError(
            f"{model_path} could not predict on the feature columns {features} of {reference_path}: {problem}"
        ) from None
    metadata = ModelMetadata(
        name=name or Path(model_path).stem,
        version=version_now(),
        task=task,
        model_file="model.skops",
        id_column=columns.id_column,
        target=columns.target,
        timestamp_column=columns.timestamp_column,
        features=features_metadata(estimator, inputs.head(MISSING_PROBE_ROWS), feature_types, task),
        classes=tuple(classes),
        positive_label=positive,
        # The training data is not available here, so there are no training metrics;
        # baseline.json carries the metrics on the reference rows.
        training_metrics={},
        library_versions=library_versions(),
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

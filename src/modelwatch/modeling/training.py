"""`modelwatch model build`: train the default pipeline on part of a CSV, hold out the rest.

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

from pathlib import Path
from typing import Any

from modelwatch.errors import UserError
from modelwatch.model_bundle import FeatureType, ModelMetadata, Task, library_versions
from modelwatch.modeling.dataset import (
    ColumnOptions,
    as_model_input,
    feature_types_of,
    identifier_notes,
    infer_task,
    normalise_target,
    plain,
    positive_label,
    read_labelled,
    select_features,
    whole_numbers_as_int,
)
from modelwatch.modeling.directory import BundleSummary, version_now, write_model_directory
from modelwatch.modeling.evaluation import MISSING_PROBE_ROWS, compute_metrics, features_metadata

# One-hot columns per categorical feature are capped: a high-cardinality column
# (a free-text field, an id passed as a feature) would otherwise blow up the model
# and the layer; rare categories share one column.
MAX_CATEGORIES_PER_FEATURE = 50


def default_pipeline(task: Task, feature_types: dict[str, FeatureType], seed: int) -> Any:
    # scikit-learn is imported here so that `modelwatch --help` does not pay for it.
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
    frame = read_labelled(train_path, "--train", columns, notes)
    task = columns.task or infer_task(frame[columns.target])
    if columns.task is None:
        notes.append(f"task inferred as {task} from column {columns.target!r}; pass --task to override")
    target = frame[columns.target]
    if task == "classification":
        target = whole_numbers_as_int(target)
        if target.nunique() < 2:
            raise UserError(
                f"target column {columns.target!r} of {train_path} has a single value "
                f"({target.iloc[0]!r}); a classifier needs at least two classes"
            )
    features = select_features(frame, columns, train_path)
    feature_types = feature_types_of(frame, features, train_path)
    notes.extend(identifier_notes(frame, features))
    inputs = as_model_input(frame, feature_types)

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
        fit_target = normalise_target(fit_y, task, None, train_path, columns.target)
    else:
        fit_target = fit_y.to_numpy()
    estimator.fit(fit_x, fit_target)

    classes = [plain(value) for value in getattr(estimator, "classes_", [])]
    positive = positive_label(classes, columns.positive_label) if task == "classification" else None
    train_metrics, _, _ = compute_metrics(
        estimator,
        fit_x,
        normalise_target(fit_y, task, classes or None, train_path, columns.target),
        task,
        classes,
        positive,
    )
    metadata = ModelMetadata(
        name=name or train_path.parent.name or "model",
        version=version_now(),
        task=task,
        model_file="model.skops",
        id_column=columns.id_column,
        target=columns.target,
        timestamp_column=columns.timestamp_column,
        features=features_metadata(estimator, reference_x.head(MISSING_PROBE_ROWS), feature_types, task),
        classes=tuple(classes),
        positive_label=positive,
        training_metrics=train_metrics,
        library_versions=library_versions(),
    )
    metadata, reference_metrics, write_notes = write_model_directory(
        Path(out_dir),
        estimator,
        metadata,
        reference_x,
        normalise_target(reference_y, task, classes or None, train_path, columns.target),
    )
    return BundleSummary(
        out_dir=Path(out_dir),
        metadata=metadata,
        training_rows=len(fit_x),
        reference_rows=len(reference_x),
        reference_metrics=reference_metrics,
        notes=notes + write_notes,
    )

"""What a fitted estimator does on rows it is shown: its metrics, and which gaps it tolerates."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from modelwatch.metrics import classification_metrics, plain_values, regression_metrics
from modelwatch.model_bundle import Feature, FeatureType, Task
from modelwatch.modeling.dataset import plain

# Rows used to find out whether the estimator tolerates a missing value per feature.
MISSING_PROBE_ROWS = 5


def _predict(estimator: Any, features: pd.DataFrame, task: Task) -> tuple[np.ndarray, np.ndarray | None]:
    predictions = np.asarray(estimator.predict(features))
    probabilities = None
    if task == "classification" and hasattr(estimator, "predict_proba"):
        probabilities = np.asarray(estimator.predict_proba(features), dtype=float)
    if task == "classification":
        predictions = np.asarray([plain(value) for value in predictions], dtype=object)
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


def features_metadata(
    estimator: Any, sample: pd.DataFrame, feature_types: dict[str, FeatureType], task: Task
) -> tuple[Feature, ...]:
    """metadata.json's feature list, each feature's tolerance of gaps probed on ``sample``."""
    return tuple(
        Feature(name=name, type=kind, accepts_missing=probe_accepts_missing(estimator, sample, name, task))
        for name, kind in feature_types.items()
    )

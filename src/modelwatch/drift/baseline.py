"""The drift baseline: reference distributions of every feature and of the predictions.

Built once, when the model is built or packaged, and stored in baseline.json::

    {
      "reference_rows": 4000,
      "reference_metrics": {"Accuracy": 0.9, ...},      # written by the packager, not here
      "drift": <dict returned by build_drift_baseline>
    }

A numeric feature keeps 10 quantile bins (edges and proportions) and a 1,001-point
quantile sketch for KS; a categorical one its top 20 categories, the names of the rest,
and how many of the rest occur once (the Good-Turing estimate of "unseen").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from modelwatch.drift.columns import (
    CategoricalColumn,
    NumericColumn,
    categorical_column,
    category_key,
    numeric_column,
)
from modelwatch.drift.statistics import PSI_EPSILON, bin_counts
from modelwatch.model_bundle import ModelMetadata

BASELINE_FORMAT = 1
# 1,001 quantiles interpolate the reference CDF to within 0.001, well under the KS
# statistic's noise at any batch size we handle (1.36 * sqrt(1/n + 1/m) >= 0.004 at a
# 100,000-row batch); 101 would put up to 0.01 of error into the statistic.
QUANTILE_SKETCH_SIZE = 1001
TOP_CATEGORIES = 20
# Names (not proportions) of reference categories beyond the top ones, so a rare but
# known category is not reported as unseen. Past this many, unseen may over-count.
MAX_OTHER_CATEGORY_NAMES = 1000


def _numeric_baseline(column: NumericColumn, bins: int) -> dict[str, Any]:
    values = column.values
    baseline: dict[str, Any] = {
        "type": "numeric",
        "rows": column.rows,
        "count": int(values.size),
        # Non-numeric reference values are unusable, so they count as missing here.
        "missing_rate": (column.missing + column.invalid) / column.rows if column.rows else 0.0,
    }
    if values.size == 0:
        baseline.update(min=None, max=None, edges=[], proportions=[], quantiles=[])
        return baseline
    # Ties (a zero-inflated or integer feature) repeat quantiles; drop the repeats
    # rather than keep empty bins. Bins are right-closed, so a heavy value v sits in
    # the bin ending at v.
    edges = np.unique(np.quantile(values, np.arange(1, bins) / bins))
    proportions = bin_counts(values, edges) / values.size
    baseline.update(
        min=float(values[0]),
        max=float(values[-1]),
        edges=[float(e) for e in edges],
        proportions=[float(p) for p in proportions],
        quantiles=[float(q) for q in np.quantile(values, np.linspace(0.0, 1.0, QUANTILE_SKETCH_SIZE))],
    )
    return baseline


def _categorical_baseline(
    column: CategoricalColumn, fixed_categories: list[str] | None = None
) -> dict[str, Any]:
    counts = column.counts()
    count = int(counts.sum())
    by_key = dict(zip(column.keys, counts.tolist(), strict=True))
    if fixed_categories is None:
        # Most frequent first; ties by name so the baseline does not depend on row order.
        ranked = sorted(by_key, key=lambda key: (-by_key[key], key))
        top, rest = ranked[:TOP_CATEGORIES], ranked[TOP_CATEGORIES:]
    else:
        top = list(fixed_categories)
        listed = set(top)
        rest = sorted((key for key in by_key if key not in listed), key=lambda key: (-by_key[key], key))
    other_count = sum(by_key[key] for key in rest)
    return {
        "type": "categorical",
        "rows": column.rows,
        "count": count,
        "missing_rate": column.missing / column.rows if column.rows else 0.0,
        "categories": top,
        "proportions": [by_key.get(key, 0) / count if count else 0.0 for key in top],
        "other_proportion": other_count / count if count else 0.0,
        "other_categories": rest[:MAX_OTHER_CATEGORY_NAMES],
        "other_categories_truncated": len(rest) > MAX_OTHER_CATEGORY_NAMES,
        # Values whose category occurs once, outside the top ones: within the reference,
        # they are what "unseen" looks like (a category the rest never had), so they are
        # the reference's __unseen__ count in the chi-square, and singletons / count is
        # the Good-Turing estimate of how often a batch value should be new.
        "singleton_categories": int(sum(1 for key in rest if by_key[key] == 1)),
    }


def _class_keys(metadata: ModelMetadata) -> list[str]:
    return [key for key in (category_key(label) for label in metadata.classes) if key is not None]


def build_drift_baseline(
    reference: pd.DataFrame,
    metadata: ModelMetadata,
    predictions: np.ndarray,
    probabilities: np.ndarray | None,
    bins: int = 10,
) -> dict[str, Any]:
    """Reference distributions of every feature and of the predictions (JSON-ready).

    ``predictions`` are the model's outputs on ``reference``: class labels for
    classification, values for regression. ``probabilities`` (classification, when the
    estimator has predict_proba) has one column per ``metadata.classes`` entry, in
    that order. Every value in the result is a plain float, int, str, bool, None or a
    list/dict of them.
    """
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    features: dict[str, Any] = {}
    for feature in metadata.features:
        if feature.name not in reference.columns:
            raise ValueError(f"the reference frame has no column {feature.name!r}, a feature of the model")
        column = reference[feature.name]
        if feature.type == "numeric":
            features[feature.name] = _numeric_baseline(numeric_column(column), bins)
        else:
            features[feature.name] = _categorical_baseline(categorical_column(column))

    prediction: dict[str, Any] = {"task": metadata.task}
    prediction_series = pd.Series(np.asarray(predictions).ravel())
    if metadata.task == "classification":
        prediction["classes"] = _categorical_baseline(
            categorical_column(prediction_series), fixed_categories=_class_keys(metadata)
        )
        positive = metadata.positive_index
        if probabilities is not None and positive is not None:
            positive_probability = pd.Series(np.asarray(probabilities)[:, positive])
            prediction["positive_label"] = category_key(metadata.classes[positive])
            prediction["positive_probability"] = _numeric_baseline(numeric_column(positive_probability), bins)
    else:
        prediction["values"] = _numeric_baseline(numeric_column(prediction_series), bins)

    return {
        "format": BASELINE_FORMAT,
        "bins": bins,
        "epsilon": PSI_EPSILON,
        "quantile_sketch_size": QUANTILE_SKETCH_SIZE,
        "reference_rows": len(reference),
        "features": features,
        "prediction": prediction,
    }

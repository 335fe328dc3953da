"""Input drift, prediction drift and data quality against the training baseline.

``baseline`` builds the reference distributions at model build time, ``comparison``
checks one batch against them, ``statistics`` holds the numbers both rely on (PSI, KS,
chi-square) and ``columns`` reads a column the same way for both.
"""

from modelwatch.drift.baseline import build_drift_baseline
from modelwatch.drift.columns import (
    CategoricalSummary,
    NumericCounts,
    categorical_column,
    numeric_column_of_sorted,
)
from modelwatch.drift.comparison import (
    MIN_ROWS,
    DriftColumns,
    DriftResult,
    PredictionColumns,
    compare_drift,
    compare_predictions,
    compute_drift,
)

__all__ = [
    "MIN_ROWS",
    "CategoricalSummary",
    "DriftColumns",
    "DriftResult",
    "NumericCounts",
    "PredictionColumns",
    "build_drift_baseline",
    "categorical_column",
    "compare_drift",
    "compare_predictions",
    "compute_drift",
    "numeric_column_of_sorted",
]

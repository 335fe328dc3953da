"""Model quality metrics, computed with scikit-learn on the rows that have actuals.

Per-row metrics (their batch value is a mean over rows) also carry the sum of their
per-row values and the row count, so CloudWatch can receive them as StatisticValues
and average them weighted by rows across batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import metrics as skm

CLASSIFICATION_METRICS = ("ErrorRate", "Accuracy", "Precision", "Recall", "F1", "ROCAUC", "LogLoss")
REGRESSION_METRICS = ("MAE", "MSE", "RMSE", "MAPE", "MeanError", "R2")
# Metrics whose batch value is the mean of a per-row value.
PER_ROW_METRICS = frozenset({"ErrorRate", "Accuracy", "MAE", "MSE", "MAPE", "MeanError", "LabelCoverage"})
QUALITY_METRICS = CLASSIFICATION_METRICS + REGRESSION_METRICS
# The quality metrics a late label adds to row by row (modelwatch.label_join).
ROW_ADDITIVE_METRICS = ("ErrorRate", "Accuracy", "MAE", "MSE", "MAPE", "MeanError")
# The metrics that need the class probabilities (predict_proba), and of those the one
# published for binary classifiers only (classification_metrics_of_codes).
PROBABILITY_METRICS = ("ROCAUC", "LogLoss")
BINARY_ONLY_METRICS = ("ROCAUC",)


def publishable_metrics(task: str, class_count: int, has_probabilities: bool) -> tuple[str, ...]:
    """The quality metrics a model of this kind publishes (given enough labeled rows).

    QualityAlarm watches one of them by name; any other never gets a datapoint, and with
    TreatMissingData ignore the alarm would stay OK whatever the model does.
    """
    if task == "regression":
        return REGRESSION_METRICS
    return tuple(
        name
        for name in CLASSIFICATION_METRICS
        if (has_probabilities or name not in PROBABILITY_METRICS)
        and (class_count == 2 or name not in BINARY_ONLY_METRICS)
    )


def why_unpublishable(metric: str, task: str, class_count: int, has_probabilities: bool) -> str | None:
    """Why a model of this kind never publishes ``metric``; None when it does."""
    if metric in publishable_metrics(task, class_count, has_probabilities):
        return None
    if metric not in QUALITY_METRICS:
        known = ", ".join(QUALITY_METRICS)
        return f"{metric} is not a quality metric modelwatch computes (those are {known})"
    if task == "regression":
        return f"{metric} is a classification metric and the model is a regressor"
    if metric in REGRESSION_METRICS:
        return f"{metric} is a regression metric and the model is a classifier"
    if not has_probabilities:
        return f"{metric} needs class probabilities and the model has no predict_proba"
    return f"{metric} is published for binary classifiers only and the model has {class_count} classes"


@dataclass(frozen=True)
class MetricValue:
    """A metric's batch value; for per-row metrics also the sum of per-row values and the row count."""

    value: float
    row_sum: float | None = None
    rows: int | None = None
    row_min: float | None = None
    row_max: float | None = None

    @property
    def per_row(self) -> bool:
        return self.rows is not None


def _per_row(values: np.ndarray, value: float) -> MetricValue:
    return MetricValue(
        value=float(value),
        row_sum=float(np.sum(values)),
        rows=int(values.size),
        row_min=float(np.min(values)),
        row_max=float(np.max(values)),
    )


def _per_row_share(count: int, rows: int, value: float) -> MetricValue:
    """_per_row of a 0/1 value per row that is 1 on ``count`` of ``rows`` rows, from the
    count (the per-row arrays cost 16 bytes a row at the end of a large batch)."""
    return MetricValue(
        value=float(value),
        row_sum=float(count),
        rows=rows,
        row_min=0.0 if count < rows else 1.0,
        row_max=1.0 if count > 0 else 0.0,
    )


def classification_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    probabilities: np.ndarray | None,
    classes: Sequence[Any],
    positive_label: Any,
) -> dict[str, MetricValue]:
    """Metrics for labels already normalised to the model's classes.

    Binary models report Precision, Recall and F1 for ``positive_label`` and ROCAUC from
    its probability; multiclass models report the macro average. ``probabilities`` has one
    column per entry of ``classes``, in that order.
    """
    # Work on class indices: labels may be ints, strings or a mix that scikit-learn cannot
    # type as an object array, and indices give identical results.
    labels = list(classes)
    index_of = {label: position for position, label in enumerate(labels)}
    true_codes = np.fromiter((index_of[label] for label in y_true), dtype=int, count=len(y_true))
    pred_codes = np.fromiter((index_of.get(label, -1) for label in y_pred), dtype=int, count=len(y_pred))
    return classification_metrics_of_codes(
        true_codes, pred_codes, probabilities, len(labels), index_of.get(positive_label, 1)
    )


def classification_metrics_of_codes(
    true_codes: np.ndarray,
    pred_codes: np.ndarray,
    probabilities: np.ndarray | None,
    class_count: int,
    positive_code: int,
) -> dict[str, MetricValue]:
    """classification_metrics for labels given as class indices (-1: a prediction that is
    no class), as a batch read in chunks keeps them (modelwatch.scoring.BatchMeasures)."""
    rows = true_codes.size
    right = int(np.count_nonzero(true_codes == pred_codes))
    accuracy = right / rows  # accuracy_score's mean of the matches
    result = {
        "Accuracy": _per_row_share(right, rows, accuracy),
        "ErrorRate": _per_row_share(rows - right, rows, 1.0 - accuracy),
    }
    codes = list(range(class_count))
    binary = class_count == 2
    # Per class: rows predicted it, rows that are it, rows both. scikit-learn's
    # precision_score, recall_score and f1_score (zero_division=0) are ratios of these
    # counts; asking it three times took a tenth of a million-row batch's measure step.
    predicted = np.bincount(pred_codes[pred_codes >= 0], minlength=class_count)
    actual = np.bincount(true_codes, minlength=class_count)
    hits = np.bincount(true_codes[true_codes == pred_codes], minlength=class_count)
    # Binary: the positive class. Otherwise the macro average over the classes present in
    # this batch (actuals or predictions), as scikit-learn does by default: a class absent
    # from both is not a zero in the average.
    present = np.flatnonzero((predicted > 0) | (actual > 0))
    chosen = np.array([positive_code]) if binary else present
    hits, predicted, actual = hits[chosen], predicted[chosen], actual[chosen]
    result["Precision"] = MetricValue(_mean_ratio(hits, predicted))
    result["Recall"] = MetricValue(_mean_ratio(hits, actual))
    result["F1"] = MetricValue(_mean_ratio(2 * hits, predicted + actual))
    if probabilities is not None:
        result["LogLoss"] = MetricValue(_log_loss(true_codes, probabilities, codes))
        if binary and len(np.unique(true_codes)) == 2:
            result["ROCAUC"] = MetricValue(
                roc_auc(true_codes == positive_code, probabilities[:, positive_code])
            )
    return result


def _mean_ratio(numerators: np.ndarray, denominators: np.ndarray) -> float:
    """The mean over classes of numerator / denominator, 0 for a class whose denominator
    is 0 (scikit-learn's zero_division=0)."""
    ratios = np.divide(
        numerators, denominators, out=np.zeros(numerators.size), where=denominators > 0, dtype=float
    )
    return float(ratios.mean())


# Rows per scikit-learn log_loss call: it holds ~80 bytes a row (one-hot labels, clipped
# and normalised copies), 1.3 GB for a 16-million-row batch (scripts/bench_chunked.py).
LOG_LOSS_SLICE_ROWS = 1_000_000


def _log_loss(true_codes: np.ndarray, probabilities: np.ndarray, codes: list[int]) -> float:
    """scikit-learn's log_loss, a slice of rows at a time: the row-weighted mean of the
    slices' means is the batch's mean (to rounding), and memory follows the slice."""
    rows = true_codes.size
    total = 0.0
    for start in range(0, rows, LOG_LOSS_SLICE_ROWS):
        stop = min(rows, start + LOG_LOSS_SLICE_ROWS)
        total += float(skm.log_loss(true_codes[start:stop], probabilities[start:stop], labels=codes)) * (
            stop - start
        )
    return total / rows


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic: the share of (positive, negative) pairs the
    scores order correctly, a tie counting half.

    The same number as ``sklearn.metrics.roc_auc_score`` (its trapezoids over the ROC
    curve are this sum; tests/unit/test_metrics.py checks 1e-12), with a third of its
    memory: one sort of the scores instead of its curve arrays (~87 bytes a row). Needs
    both classes present.
    """
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    is_positive = positive[order]
    del order
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    del ordered
    ends = np.append(starts[1:], positive.size)
    positives_per_score = np.add.reduceat(is_positive.astype(np.int64), starts)
    # Tied scores share the average of their 1-based ranks.
    mean_rank = (starts + 1 + ends) / 2.0
    n_positive = int(positives_per_score.sum())
    n_negative = positive.size - n_positive
    rank_sum = float(np.dot(mean_rank, positives_per_score))
    return (rank_sum - n_positive * (n_positive + 1) / 2.0) / (n_positive * n_negative)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, MetricValue]:
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    errors = y_pred - y_true
    # scikit-learn's MAPE guards zero actuals with the float64 epsilon; the per-row
    # values use the same guard so Sum/SampleCount equals its value.
    epsilon = np.finfo(np.float64).eps
    mse = skm.mean_squared_error(y_true, y_pred)
    result = {
        "MAE": _per_row(np.abs(errors), skm.mean_absolute_error(y_true, y_pred)),
        "MSE": _per_row(errors**2, mse),
        "RMSE": MetricValue(float(skm.root_mean_squared_error(y_true, y_pred))),
        "MAPE": _per_row(
            np.abs(errors) / np.maximum(np.abs(y_true), epsilon),
            skm.mean_absolute_percentage_error(y_true, y_pred),
        ),
        "MeanError": _per_row(errors, float(np.mean(errors))),
    }
    if y_true.size >= 2:
        result["R2"] = MetricValue(float(skm.r2_score(y_true, y_pred)))
    return result


def plain_values(metrics: dict[str, MetricValue]) -> dict[str, float]:
    """The batch value of each metric, as report.json shows them."""
    return {name: metric.value for name, metric in metrics.items()}

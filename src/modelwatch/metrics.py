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
    no class), through ClassificationTotals as a batch read in chunks computes them."""
    totals = ClassificationTotals(class_count, positive_code)
    totals.add(true_codes, pred_codes, probabilities)
    auc = None
    if probabilities is not None and class_count == 2:
        is_positive = true_codes == positive_code
        if is_positive.any() and not is_positive.all():
            auc = roc_auc(is_positive, probabilities[:, positive_code])
    return totals.metrics(auc)


class ClassificationTotals:
    """What the classification metrics of a set of labeled rows need, summed a chunk of
    rows at a time: the confusion counts (actual class by predicted class, with a column
    for a prediction that is no class) and the sum of the rows' log losses.

    Accuracy, Precision, Recall and F1 are scikit-learn's on the counts (each cell given
    as one row weighted by its count, which scikit-learn sums as it sums the rows); the
    log loss is scikit-learn's per chunk, weighted by its rows. ROC AUC ranks the rows, so
    ``metrics`` takes the scores it needs, sorted.
    """

    def __init__(self, class_count: int, positive_code: int):
        self.class_count = class_count
        self.positive_code = positive_code
        self.confusion = np.zeros((class_count, class_count + 1), dtype=np.int64)
        self.log_loss_sum = 0.0
        self.with_probabilities = True
        # Raised by metrics(): a batch whose quality is withheld never needed the log loss.
        self.log_loss_error: Exception | None = None

    @property
    def rows(self) -> int:
        return int(self.confusion.sum())

    def add(self, true_codes: np.ndarray, pred_codes: np.ndarray, probabilities: np.ndarray | None) -> None:
        """Count labeled rows: actual and predicted class indices, and their class probabilities."""
        columns = self.class_count + 1
        # The last column stands for -1, a prediction that is no class.
        cells = true_codes.astype(np.int64) * columns + np.where(pred_codes < 0, self.class_count, pred_codes)
        self.confusion += np.bincount(cells, minlength=self.confusion.size).reshape(self.confusion.shape)
        if probabilities is None:
            self.with_probabilities = False
        elif true_codes.size and self.log_loss_error is None:
            try:
                self.log_loss_sum += _log_loss_sum(true_codes, probabilities, list(range(self.class_count)))
            except Exception as problem:  # noqa: BLE001 - kept for metrics(), which raises it
                self.log_loss_error = problem

    def row_additive(self) -> dict[str, MetricValue]:
        """Accuracy and ErrorRate of every row added: all a batch with too few labeled rows
        to be judged gives (its rows go to the model's pool, modelwatch.ledger)."""
        true_cells, pred_cells = np.nonzero(self.confusion)
        weights = self.confusion[true_cells, pred_cells].astype(float)
        pred_cells = np.where(pred_cells == self.class_count, -1, pred_cells)
        rows = self.rows
        right = int(np.trace(self.confusion[:, : self.class_count]))
        accuracy = skm.accuracy_score(true_cells, pred_cells, sample_weight=weights)
        return {
            "Accuracy": _per_row_share(right, rows, accuracy),
            "ErrorRate": _per_row_share(rows - right, rows, 1.0 - accuracy),
        }

    def metrics(self, roc_auc: float | None = None) -> dict[str, MetricValue]:
        """The metrics of every row added; ``roc_auc``: a binary model's, over the same rows
        (None: both classes are not among the actuals, or the rows have no scores)."""
        true_cells, pred_cells = np.nonzero(self.confusion)
        weights = self.confusion[true_cells, pred_cells].astype(float)
        pred_cells = np.where(pred_cells == self.class_count, -1, pred_cells)
        result = self.row_additive()
        binary = self.class_count == 2
        if binary:
            averaging: dict[str, Any] = {"average": "binary", "pos_label": self.positive_code}
        else:
            # The classes present in this batch (actuals or predictions), as scikit-learn
            # does by default: a class absent from both is not a zero in the average.
            averaging = {"average": "macro", "labels": np.union1d(true_cells, pred_cells[pred_cells >= 0])}
        counted = {"zero_division": 0, "sample_weight": weights, **averaging}
        result["Precision"] = MetricValue(float(skm.precision_score(true_cells, pred_cells, **counted)))
        result["Recall"] = MetricValue(float(skm.recall_score(true_cells, pred_cells, **counted)))
        result["F1"] = MetricValue(float(skm.f1_score(true_cells, pred_cells, **counted)))
        if self.with_probabilities:
            if self.log_loss_error is not None:
                raise self.log_loss_error
            result["LogLoss"] = MetricValue(self.log_loss_sum / self.rows)
            if binary and roc_auc is not None:
                result["ROCAUC"] = MetricValue(roc_auc)
        return result


def classification_metrics_of_totals(
    totals: ClassificationTotals, roc_auc: float | None
) -> dict[str, MetricValue]:
    """ClassificationTotals.metrics: the metrics of a batch read in chunks (modelwatch.scoring)."""
    return totals.metrics(roc_auc)


# Rows per scikit-learn log_loss call: it holds ~80 bytes a row (one-hot labels, clipped
# and normalised copies), 1.3 GB for a 16-million-row batch (scripts/bench_chunked.py).
LOG_LOSS_SLICE_ROWS = 1_000_000


def _log_loss_sum(true_codes: np.ndarray, probabilities: np.ndarray, codes: list[int]) -> float:
    """The sum of the rows' log losses, scikit-learn's log_loss (a mean) a slice of rows at
    a time times its rows: the sum over slices divided by the rows is the batch's mean (to
    rounding), and memory follows the slice."""
    rows = true_codes.size
    total = 0.0
    for start in range(0, rows, LOG_LOSS_SLICE_ROWS):
        stop = min(rows, start + LOG_LOSS_SLICE_ROWS)
        total += float(skm.log_loss(true_codes[start:stop], probabilities[start:stop], labels=codes)) * (
            stop - start
        )
    return total


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` for the rows where ``positive`` is true; needs both classes."""
    return roc_auc_of_sorted(np.sort(scores[positive]), np.sort(scores[~positive]))


# Positive rows per block in roc_auc_of_sorted: its two positions a row cost 16 bytes.
AUC_BLOCK_ROWS = 1_000_000


def roc_auc_of_sorted(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic: the share of (positive, negative) pairs the
    scores order correctly, a tie counting half; both arrays sorted ascending, not empty.

    The same number as ``sklearn.metrics.roc_auc_score`` (its trapezoids over the ROC
    curve are this sum; tests/unit/test_metrics.py checks 1e-12). The pairs are counted
    in integers, a block of positives at a time, each by two binary searches among the
    negatives: no memory beyond the block, where scikit-learn's curve arrays take ~87
    bytes a row.
    """
    doubled_pairs = 0  # 2 x correctly ordered pairs + tied pairs
    for start in range(0, positive_scores.size, AUC_BLOCK_ROWS):
        block = positive_scores[start : start + AUC_BLOCK_ROWS]
        below = np.searchsorted(negative_scores, block, side="left")
        at_or_below = np.searchsorted(negative_scores, block, side="right")
        doubled_pairs += int(below.sum()) + int(at_or_below.sum())
    return doubled_pairs / (2.0 * positive_scores.size * negative_scores.size)


class RocAucCounts:
    """roc_auc_of_sorted of scores read as ascending distinct values with how many
    positive and negative rows have each (modelwatch.sorted_runs.SortedRuns.counts: no
    value in two blocks), the same integer count of pairs: per value, its positives times
    (2 x the negatives below it + the negatives tied with it)."""

    def __init__(self) -> None:
        self.doubled_pairs = 0
        self.positives = self.negatives = 0  # so far: the negatives below the next block

    def add(self, positives: np.ndarray, negatives: np.ndarray) -> None:
        positives = positives.astype(np.int64, copy=False)
        negatives = negatives.astype(np.int64, copy=False)
        below = np.cumsum(negatives) - negatives + self.negatives
        self.doubled_pairs += int(np.sum(positives * (2 * below + negatives)))
        self.positives += int(positives.sum())
        self.negatives += int(negatives.sum())

    def value(self) -> float | None:
        """ROC AUC; None without rows of both classes."""
        if not self.positives or not self.negatives:
            return None
        return self.doubled_pairs / (2.0 * self.positives * self.negatives)


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


def row_totals(value: MetricValue) -> tuple[int, float, float, float]:
    """A per-row metric as (rows, sum, smallest and largest per-row value), as the ledger
    keeps what a batch contributed."""
    assert value.rows is not None and value.row_sum is not None
    smallest = value.row_min if value.row_min is not None else value.value
    largest = value.row_max if value.row_max is not None else value.value
    return value.rows, value.row_sum, smallest, largest


def of_row_totals(totals: tuple[int, float, float, float]) -> MetricValue:
    """The per-row metric of (rows, sum, smallest, largest), to publish as StatisticValues."""
    rows, total, smallest, largest = totals
    return MetricValue(total / rows, row_sum=total, rows=rows, row_min=smallest, row_max=largest)


def plain_values(metrics: dict[str, MetricValue]) -> dict[str, float]:
    """The batch value of each metric, as report.json shows them."""
    return {name: metric.value for name, metric in metrics.items()}

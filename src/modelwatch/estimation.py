"""Estimated performance before the labels arrive: confidence-based performance estimation.

Until a batch's labels exist, drift says the inputs moved but not whether the model got
worse. A classifier's own probabilities answer that when they are calibrated: a row
predicted "churn" with a calibrated probability of 0.8 is wrong with probability 0.2.
This is NannyML's CBPE, written here from its documented method:

1. Calibrate: ``calibration.json`` (written by ``model build`` / ``model package`` from
   the held-out reference, modelwatch.calibration) maps each class's raw
   probability through an isotonic step function, or keeps it when calibration did not
   lower the reference's calibration error. Applying it is ``numpy.interp``: the Lambda
   needs nothing beyond numpy to load or use it.
2. Expected confusion matrix: each row adds its calibrated probability of every true
   class to the column of its predicted label. Accuracy is the trace over the rows; for
   binary models, Precision, Recall and F1 follow from the four cells, and ROC AUC from
   the expected true- and false-positive rates over every threshold of the calibrated
   probability.
3. Confidence band: the reference's sampling error, as NannyML does (standard error of
   the mean with the reference's standard deviation, scaled to the batch's rows; for
   Precision, Recall, F1 and ROC AUC, whose values are not row means, the reference's
   standard deviation comes from a seeded bootstrap at build time). For ErrorRate and
   Accuracy the binomial deviation at the estimated rate replaces the reference's when
   it is larger: a batch whose error moved to 0.25 varies more than a reference at 0.11.
   The band is the estimate ± 3 standard errors.

CBPE assumes the relation between inputs and target is the one the reference showed.
When labels exist, the realized error is compared with the estimate on the same rows:
realized error beyond the band is the sign that the relation changed (concept drift),
which no amount of input monitoring can show. That comparison's band adds the
estimate's own uncertainty (the reference's sampling error: the calibration was fitted
on those rows) to the realized value's on the labeled rows, so a model whose
calibration is a little off is not reported as concept drift. Regression models get no estimate (they
have no class probabilities to be confident with).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from modelwatch.errors import CalibrationError
from modelwatch.metrics import MetricValue

CALIBRATION_FILE = "calibration.json"
CALIBRATION_FORMAT = 1
# The metrics CBPE estimates, by the name of the realized metric they estimate. Binary
# models get all of them; multiclass models the first two.
ESTIMABLE = ("ErrorRate", "Accuracy", "Precision", "Recall", "F1", "ROCAUC")
MULTICLASS_ESTIMABLE = ("ErrorRate", "Accuracy")
ROW_MEAN_METRICS = frozenset(MULTICLASS_ESTIMABLE)
# Published names (spelt out: the template's dashboard and alarm use them).
ESTIMATED_METRICS = (
    "EstimatedErrorRate",
    "EstimatedAccuracy",
    "EstimatedPrecision",
    "EstimatedRecall",
    "EstimatedF1",
    "EstimatedROCAUC",
)
ESTIMATED_NAME = dict(zip(ESTIMABLE, ESTIMATED_METRICS, strict=True))
# NannyML's sampling error: ±3 standard errors holds ~99% of batches when nothing changed.
BAND_STANDARD_ERRORS = 3.0

CONCEPT_DRIFT = "the input-target relation changed (concept drift): retraining on recent labels is indicated"
METHOD = (
    "CBPE (confidence-based performance estimation): expected confusion matrix from the "
    "model's calibrated probabilities and its predicted labels"
)
COMPARISON_BAND = (
    "estimate on the labeled rows ± 3 x sqrt(SE(labeled rows)^2 + SE(reference rows)^2): the "
    "realized value's sampling error and the estimate's own, from the reference it was calibrated on"
)
BAND = (
    "estimate ± 3 standard errors; standard error = the reference's standard deviation of the "
    "metric / sqrt(rows): for ErrorRate and Accuracy that of the reference's rows (or the "
    "binomial one at the estimated rate, when larger), for Precision, Recall, F1 and ROCAUC "
    "bootstrapped on the reference"
)


@dataclass(frozen=True)
class ClassCalibration:
    """One class's probability map: isotonic thresholds, or the identity when ``x`` is empty."""

    label: Any
    x: np.ndarray
    y: np.ndarray

    def apply(self, probability: np.ndarray) -> np.ndarray:
        if self.x.size == 0:
            return probability
        # Linear between the isotonic thresholds, clipped at the ends: what scikit-learn's
        # IsotonicRegression(out_of_bounds="clip").predict computes.
        return np.interp(probability, self.x, self.y)


@dataclass(frozen=True)
class Calibration:
    """calibration.json: the per-class maps and the reference's figures."""

    classes: tuple[Any, ...]
    positive_index: int | None  # binary: the column that is calibrated; the other is 1 - it
    columns: dict[int, ClassCalibration]  # class index -> its map
    reference_rows: int
    reference_realized: dict[str, float]
    standard_deviation: dict[str, float]
    method: str

    @classmethod
    def from_dict(
        cls, raw: Mapping[str, Any], classes: Sequence[Any], positive_index: int | None
    ) -> Calibration:
        if raw.get("format") != CALIBRATION_FORMAT:
            raise CalibrationError(
                f"calibration.json has format {raw.get('format')!r}; this modelwatch reads format "
                f"{CALIBRATION_FORMAT}: re-package the model"
            )
        if [str(label) for label in raw.get("classes", [])] != [str(label) for label in classes]:
            raise CalibrationError(
                f"calibration.json was fitted for classes {raw.get('classes')}, the model has "
                f"{list(classes)}: re-package the model"
            )
        index_of = {str(label): index for index, label in enumerate(classes)}
        columns = {}
        for entry in raw.get("calibrators", []):
            x = np.asarray(entry.get("x", []), dtype=float)
            y = np.asarray(entry.get("y", []), dtype=float)
            if x.shape != y.shape or (x.size and np.any(np.diff(x) < 0)):
                raise CalibrationError(
                    f"calibration.json: the map of class {entry.get('class')!r} is not a sorted "
                    "step function (x and y of equal length, x increasing)"
                )
            index = index_of[str(entry["class"])]
            columns[index] = ClassCalibration(classes[index], x, y)
        binary = len(classes) == 2
        if binary and positive_index is None:
            raise CalibrationError("a binary model needs a positive label to be calibrated")
        needed = {positive_index} if binary and positive_index is not None else set(range(len(classes)))
        if needed - set(columns):
            raise CalibrationError(f"calibration.json has no map for classes {sorted(needed - set(columns))}")
        reference = raw.get("reference") or {}
        return cls(
            classes=tuple(classes),
            positive_index=positive_index if binary else None,
            columns=columns,
            reference_rows=int(reference.get("rows", 0)),
            reference_realized=dict(reference.get("realized") or {}),
            standard_deviation=dict(reference.get("standard_deviation") or {}),
            method=str(raw.get("method", "isotonic")),
        )

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, one column per class, rows summing to 1."""
        probabilities = np.asarray(probabilities, dtype=float)
        if self.positive_index is not None:
            positive = np.clip(
                self.columns[self.positive_index].apply(probabilities[:, self.positive_index]), 0, 1
            )
            calibrated = np.empty_like(probabilities)
            calibrated[:, self.positive_index] = positive
            calibrated[:, 1 - self.positive_index] = 1.0 - positive
            return calibrated
        calibrated = np.column_stack(
            [self.columns[index].apply(probabilities[:, index]) for index in range(len(self.classes))]
        )
        calibrated = np.clip(calibrated, 0.0, 1.0)
        totals = calibrated.sum(axis=1, keepdims=True)
        # One-vs-rest maps need not sum to 1; a row every map sent to 0 keeps its raw probabilities.
        return np.where(totals > 0, calibrated / np.where(totals > 0, totals, 1.0), probabilities)

    def calibrated_positive(self, positive: np.ndarray) -> np.ndarray:
        """A binary model's calibrated positive-class probabilities, from the raw ones
        (``apply``'s positive column)."""
        assert self.positive_index is not None
        return np.clip(self.columns[self.positive_index].apply(positive), 0, 1)

    @property
    def positive_map_increasing(self) -> bool:
        """Whether calibrated_positive keeps the order of the raw probabilities (an
        isotonic map fitted increasing does; a hand-written one need not)."""
        assert self.positive_index is not None
        return bool(np.all(np.diff(self.columns[self.positive_index].y) >= 0))

    def standard_error(self, metric: str, rows: int, value: float) -> float | None:
        """The metric's sampling error on ``rows`` rows, from the reference's standard deviation.

        ErrorRate and Accuracy are means of 0/1 rows, whose standard deviation depends on
        the rate itself: where the estimate has moved away from the reference's rate, the
        binomial deviation at the estimated rate is used when it is the larger, so a shifted
        batch's band is not drawn from a calmer reference.
        """
        deviation = self.standard_deviation.get(metric)
        if deviation is None or rows <= 0:
            return None
        if metric in ROW_MEAN_METRICS:
            deviation = max(float(deviation), math.sqrt(max(value * (1.0 - value), 0.0)))
        return float(deviation) / math.sqrt(rows)


# ---------------------------------------------------------------------------- CBPE


def expected_confusion_matrix(calibrated: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Expected counts, rows = actual class, columns = predicted class (class indices).

    Row j adds its calibrated probability of each class k to cell [k, predicted_j].
    """
    classes = calibrated.shape[1]
    matrix = np.zeros((classes, classes))
    for column in range(classes):
        matrix[:, column] = calibrated[predicted == column].sum(axis=0)
    return matrix


def expected_roc_auc(positive: np.ndarray) -> float | None:
    """ROC AUC from the expected true- and false-positive rates at every threshold.

    At threshold t every row with probability >= t is predicted positive; it is a true
    positive with its probability p and a false positive with 1 - p. Sorting once and
    summing cumulatively gives every threshold's expected counts.
    """
    return expected_roc_auc_of_sorted(np.sort(np.asarray(positive, dtype=float)))


# Rows per block in expected_roc_auc_of_sorted: its cumulative sums cost ~40 bytes a row.
AUC_BLOCK_ROWS = 1_000_000


def expected_roc_auc_of_sorted(ascending: np.ndarray, transform: Any = None) -> float | None:
    """expected_roc_auc of probabilities sorted ascending, or of ``transform`` of them when
    that keeps their order (a calibration map), a block of rows at a time: memory follows
    the block, not the batch.

    The expected counts at each distinct threshold are the cumulative sums down to the last
    row of its run of equal probabilities; the area under the curve through them is summed
    as trapezoids in counts, and divided by the expected positives x negatives at the end.
    """
    descending = ascending[::-1]  # a view
    rows = descending.size
    area = 0.0
    true_sum = false_sum = 0.0  # the cumulative sums down to the last block's end
    true_point = false_point = 0.0  # the curve's last point so far (a run's end), in counts
    for start in range(0, rows, AUC_BLOCK_ROWS):
        stop = min(rows, start + AUC_BLOCK_ROWS)
        # One row past the block, to see whether its last row ends a run.
        block = np.asarray(descending[start : min(rows, stop + 1)], dtype=float)
        if transform is not None:
            block = transform(block)
        run_ends = np.empty(stop - start, dtype=bool)
        run_ends[: block.size - 1] = block[1:] != block[:-1]
        if stop == rows:
            run_ends[-1] = True
        block = block[: stop - start]
        cumulative_true = np.cumsum(block)
        cumulative_true += true_sum
        cumulative_false = np.cumsum(1.0 - block)
        cumulative_false += false_sum
        true_points = np.concatenate(([true_point], cumulative_true[run_ends]))
        false_points = np.concatenate(([false_point], cumulative_false[run_ends]))
        area += float(np.sum(np.diff(false_points) * (true_points[1:] + true_points[:-1]))) / 2.0
        true_sum, false_sum = float(cumulative_true[-1]), float(cumulative_false[-1])
        true_point, false_point = float(true_points[-1]), float(false_points[-1])
    if true_sum <= 0 or false_sum <= 0:
        return None
    return area / (true_sum * false_sum)


class ExpectedAucCounts:
    """expected_roc_auc of rows read as ascending blocks of distinct raw probabilities with
    how many rows have each (modelwatch.sorted_runs: no value in two blocks), calibrated
    by ``transform`` (which must keep their order): memory follows the block.

    Read from the bottom up, the expected counts at each threshold are the totals less
    the cumulative sums below it, so the curve has the same vertices as from the top
    (the ends of the runs of equal calibrated probabilities), and the area under it is
    the rectangle of the totals less the area the trapezoids sum to from below.
    """

    def __init__(self, transform: Any = None):
        self.transform = transform
        self.true_sum = self.false_sum = 0.0  # cumulative sums (expected positives, negatives) so far
        self.true_point = self.false_point = 0.0  # the curve's last vertex so far, in counts
        self.area = 0.0  # under the curve from below, up to that vertex
        self.last: float | None = None  # the last calibrated probability so far

    def add(self, values: np.ndarray, counts: np.ndarray) -> None:
        present = counts > 0
        values, weights = values[present], counts[present].astype(float)
        if not values.size:
            return
        calibrated = np.asarray(self.transform(values) if self.transform is not None else values, dtype=float)
        run_ends = np.zeros(values.size, dtype=bool)  # the last value's run may go on in the next block
        run_ends[:-1] = calibrated[1:] != calibrated[:-1]
        cumulative_true = np.cumsum(weights * calibrated)
        cumulative_true += self.true_sum
        cumulative_false = np.cumsum(weights * (1.0 - calibrated))
        cumulative_false += self.false_sum
        # The previous block's last run ended where this block starts another.
        ended = [] if self.last is None or calibrated[0] == self.last else [0]
        true_points = np.concatenate(
            ([self.true_point], [self.true_sum] * len(ended), cumulative_true[run_ends])
        )
        false_points = np.concatenate(
            ([self.false_point], [self.false_sum] * len(ended), cumulative_false[run_ends])
        )
        self.area += float(np.sum(np.diff(false_points) * (true_points[1:] + true_points[:-1]))) / 2.0
        self.true_point, self.false_point = float(true_points[-1]), float(false_points[-1])
        self.true_sum, self.false_sum = float(cumulative_true[-1]), float(cumulative_false[-1])
        self.last = float(calibrated[-1])

    def value(self) -> float | None:
        true_sum, false_sum = self.true_sum, self.false_sum
        if true_sum <= 0 or false_sum <= 0:
            return None
        # The last trapezoid, to the totals (the last run's end).
        below = self.area + (false_sum - self.false_point) * (true_sum + self.true_point) / 2.0
        return (true_sum * false_sum - below) / (true_sum * false_sum)


class _CollectedExpectedAuc:
    """expected_roc_auc of rows read as ExpectedAucCounts reads them, for a calibration map
    that does not keep their order (hand-written: fitted ones are increasing): the
    calibrated values are collected, 8 bytes a row, and sorted at the end."""

    def __init__(self, transform: Any):
        self.transform = transform
        self.parts: list[np.ndarray] = []

    def add(self, values: np.ndarray, counts: np.ndarray) -> None:
        self.parts.append(np.repeat(self.transform(values), counts))

    def value(self) -> float | None:
        return expected_roc_auc(np.concatenate(self.parts)) if self.parts else None


class CbpeSums:
    """CBPE's sums over a set of rows, added a chunk at a time: the expected confusion
    matrix, and each row's calibrated probability of its predicted class (sum, min, max)."""

    def __init__(self, class_count: int):
        self.confusion = np.zeros((class_count, class_count))
        self.rows = 0
        self.correct_sum = 0.0
        self.correct_min = math.inf
        self.correct_max = -math.inf

    def add(self, calibrated: np.ndarray, predicted: np.ndarray) -> None:
        rows = calibrated.shape[0]
        if not rows:
            return
        self.confusion += expected_confusion_matrix(calibrated, predicted)
        correct = calibrated[np.arange(rows), predicted]
        self.rows += rows
        self.correct_sum += float(correct.sum())
        self.correct_min = min(self.correct_min, float(correct.min()))
        self.correct_max = max(self.correct_max, float(correct.max()))


@dataclass(frozen=True)
class CbpeResult:
    """CBPE's figures on one set of rows."""

    sums: CbpeSums
    values: dict[str, float]  # by realized metric name (ErrorRate, ...)

    @property
    def rows(self) -> int:
        return self.sums.rows

    @property
    def confusion(self) -> np.ndarray:
        return self.sums.confusion


def cbpe(calibrated: np.ndarray, predicted: np.ndarray, positive_index: int | None) -> CbpeResult:
    """The estimates for rows with these calibrated probabilities and predicted class indices."""
    sums = CbpeSums(calibrated.shape[1])
    sums.add(calibrated, predicted)
    auc = expected_roc_auc(calibrated[:, positive_index]) if positive_index is not None else None
    return cbpe_of_sums(sums, positive_index, auc)


def cbpe_of_sums(sums: CbpeSums, positive_index: int | None, auc: float | None) -> CbpeResult:
    """The estimates from CbpeSums; ``auc``: expected_roc_auc of the same rows (binary)."""
    confusion = sums.confusion
    accuracy = float(np.trace(confusion) / sums.rows)
    values = {"ErrorRate": 1.0 - accuracy, "Accuracy": accuracy}
    if positive_index is not None:
        negative_index = 1 - positive_index
        true_positive = confusion[positive_index, positive_index]
        false_positive = confusion[negative_index, positive_index]
        false_negative = confusion[positive_index, negative_index]
        # zero_division=0, as the realized metrics compute them.
        values["Precision"] = _ratio(true_positive, true_positive + false_positive)
        values["Recall"] = _ratio(true_positive, true_positive + false_negative)
        values["F1"] = _ratio(2 * true_positive, 2 * true_positive + false_positive + false_negative)
        if auc is not None:
            values["ROCAUC"] = auc
    return CbpeResult(sums, values)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 else 0.0


# ---------------------------------------------------------------------------- per batch


@dataclass
class Estimate:
    """What one batch publishes (Estimated* datapoints) and reports (``estimated_performance``)."""

    published: dict[str, MetricValue]
    report: dict[str, Any]

    @classmethod
    def skipped(cls, reason: str) -> Estimate:
        return cls({}, {"skipped": reason})


@dataclass
class EstimateTotals:
    """A batch's CBPE sums so far (PerformanceEstimator.add): over every row, over the
    labeled rows, and the predicted labels that are none of the model's classes."""

    every: CbpeSums
    labeled: CbpeSums
    unknown: set[str]


class PerformanceEstimator:
    """CBPE for one model: its calibration, applied to batches."""

    def __init__(self, calibration: Calibration):
        self.calibration = calibration

    @property
    def estimable(self) -> tuple[str, ...]:
        return ESTIMABLE if self.calibration.positive_index is not None else MULTICLASS_ESTIMABLE

    def estimate(
        self,
        probabilities: np.ndarray,
        predicted_labels: np.ndarray,
        labeled: np.ndarray,
        realized: Mapping[str, MetricValue],
    ) -> Estimate:
        """The batch's estimates with their bands; with ``realized`` metrics (labels exist),
        also the estimate on the labeled rows beside the realized value, and the finding
        when the realized error is beyond the band."""
        index_of = {label: index for index, label in enumerate(self.calibration.classes)}
        # Looked up once per distinct label (factorize keeps a NaN as a value, as the dict
        # does): per row it was half the estimate's time.
        codes, distinct = pd.factorize(np.asarray(predicted_labels), use_na_sentinel=False)
        predicted = np.array([index_of.get(label, -1) for label in distinct], dtype=int)[codes]
        totals = self.totals()
        self.add(totals, probabilities, predicted, labeled, np.asarray(predicted_labels))
        auc = labeled_auc = None
        positive_index = self.calibration.positive_index
        if positive_index is not None and not totals.unknown:
            positive = np.asarray(probabilities, dtype=float)[:, positive_index]
            auc = self.expected_auc(np.sort(positive))
            if realized:
                labeled_auc = self.expected_auc(np.sort(positive[labeled]))
        return self.finish(totals, realized, auc, labeled_auc)

    def totals(self) -> EstimateTotals:
        """Empty sums for a batch, to ``add`` its rows to a chunk at a time."""
        classes = len(self.calibration.classes)
        return EstimateTotals(CbpeSums(classes), CbpeSums(classes), set())

    def add(
        self,
        totals: EstimateTotals,
        probabilities: np.ndarray,
        predicted: np.ndarray,
        labeled: np.ndarray,
        predicted_labels: np.ndarray,
    ) -> None:
        """Add rows: their class probabilities, predicted class indices (-1: a label that is
        none of the classes, which leaves the batch without an estimate), which rows are
        labeled and the predicted labels themselves (to name the unknown ones)."""
        unknown = predicted < 0
        if np.any(unknown):
            totals.unknown.update(str(label) for label in predicted_labels[unknown])
        if totals.unknown:
            return
        calibrated = self.calibration.apply(probabilities)
        totals.every.add(calibrated, predicted)
        totals.labeled.add(calibrated[labeled], predicted[labeled])

    def expected_auc(self, ascending: np.ndarray) -> float | None:
        """expected_roc_auc of rows by their raw positive-class probabilities, sorted
        ascending (None for a multiclass model), calibrated a block at a time."""
        calibration = self.calibration
        if calibration.positive_index is None:
            return None
        if calibration.positive_map_increasing:
            return expected_roc_auc_of_sorted(ascending, calibration.calibrated_positive)
        return expected_roc_auc(calibration.calibrated_positive(ascending))

    def expected_auc_counts(self) -> ExpectedAucCounts | _CollectedExpectedAuc | None:
        """``expected_auc`` of rows read as ascending distinct raw probabilities with their
        counts (None for a multiclass model)."""
        calibration = self.calibration
        if calibration.positive_index is None:
            return None
        if calibration.positive_map_increasing:
            return ExpectedAucCounts(calibration.calibrated_positive)
        return _CollectedExpectedAuc(calibration.calibrated_positive)

    def finish(
        self,
        totals: EstimateTotals,
        realized: Mapping[str, MetricValue],
        auc: float | None,
        labeled_auc: float | None,
    ) -> Estimate:
        """The estimate of the rows added; ``auc`` and ``labeled_auc``: ``expected_auc`` of
        every row and of the labeled ones (binary models)."""
        if totals.unknown:
            unknown = sorted(totals.unknown)[:5]
            return Estimate.skipped(f"the model predicted labels that are not among its classes: {unknown}")
        calibration = self.calibration
        result = cbpe_of_sums(totals.every, calibration.positive_index, auc)
        published = {}
        metrics = {}
        for name in self.estimable:
            if name not in result.values:
                continue
            value = result.values[name]
            published[ESTIMATED_NAME[name]] = self._metric_value(name, value, result.sums)
            metrics[name] = {"estimated": value, **self._band(name, value, result.rows)}
        report: dict[str, Any] = {
            "method": METHOD,
            "calibration": f"{calibration.method}, fitted on {calibration.reference_rows} reference rows",
            "band": BAND,
            "rows": result.rows,
            "metrics": metrics,
            "expected_confusion_matrix": {
                "classes": list(calibration.classes),
                "rows": "actual class",
                "columns": "predicted class",
                "counts": result.confusion.tolist(),
            },
            "reference_realized": calibration.reference_realized,
            "versus_realized": None,
            "findings": [],
        }
        if realized:
            on_labeled = cbpe_of_sums(totals.labeled, calibration.positive_index, labeled_auc)
            comparison, findings = self._versus_realized(on_labeled, realized)
            report["versus_realized"] = comparison
            report["findings"] = findings
        return Estimate(published, report)

    def _metric_value(self, name: str, value: float, sums: CbpeSums) -> MetricValue:
        if name not in ("ErrorRate", "Accuracy"):
            return MetricValue(value)
        # Row means, published like the realized ones (StatisticValues), so an alarm's
        # Average over a period weighs every row equally.
        if name == "Accuracy":
            return MetricValue(
                value,
                row_sum=sums.correct_sum,
                rows=sums.rows,
                row_min=sums.correct_min,
                row_max=sums.correct_max,
            )
        return MetricValue(
            value,
            row_sum=sums.rows - sums.correct_sum,
            rows=sums.rows,
            row_min=1.0 - sums.correct_max,
            row_max=1.0 - sums.correct_min,
        )

    def _band(self, name: str, value: float, rows: int) -> dict[str, float | None]:
        error = self.calibration.standard_error(name, rows, value)
        if error is None:
            return {"standard_error": None, "lower": None, "upper": None}
        return {
            "standard_error": error,
            "lower": max(0.0, value - BAND_STANDARD_ERRORS * error),
            "upper": min(1.0, value + BAND_STANDARD_ERRORS * error),
        }

    def _comparison_band(self, name: str, value: float, rows: int) -> dict[str, float | None]:
        """The band a realized value on ``rows`` labeled rows should fall in if CBPE's
        assumption holds: the realized value's sampling error on those rows, and the
        estimate's own, inherited from the reference its calibration was fitted on."""
        batch = self.calibration.standard_error(name, rows, value)
        reference = self.calibration.standard_error(name, self.calibration.reference_rows, value)
        if batch is None:
            return {"standard_error": None, "lower": None, "upper": None}
        error = math.hypot(batch, reference or 0.0)
        return {
            "standard_error": error,
            "lower": max(0.0, value - BAND_STANDARD_ERRORS * error),
            "upper": min(1.0, value + BAND_STANDARD_ERRORS * error),
        }

    def _versus_realized(
        self, on_labeled: CbpeResult, realized: Mapping[str, MetricValue]
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Realized beside the estimate on the same (labeled) rows, with the band for that many rows."""
        metrics = {}
        for name in self.estimable:
            if name not in on_labeled.values or name not in realized:
                continue
            estimated = on_labeled.values[name]
            band = self._comparison_band(name, estimated, on_labeled.rows)
            actual = realized[name].value
            lower, upper = band["lower"], band["upper"]
            metrics[name] = {
                "estimated": estimated,
                "realized": actual,
                "gap": actual - estimated,
                **band,
                "within_band": None if lower is None or upper is None else lower <= actual <= upper,
            }
        findings = []
        error = metrics.get("ErrorRate")
        if error and error["upper"] is not None and error["realized"] > error["upper"]:
            findings.append(
                {
                    "finding": "concept_drift",
                    "description": (
                        f"{CONCEPT_DRIFT}. Realized ErrorRate {error['realized']:.3f} on {on_labeled.rows} "
                        f"labeled rows is above the confidence-based estimate {error['estimated']:.3f} "
                        f"(band {error['lower']:.3f}–{error['upper']:.3f}) on the same rows. The estimate "
                        "assumes the relation between inputs and target seen on the reference; errors "
                        "beyond what the inputs explain mean that relation no longer holds."
                    ),
                }
            )
        return {"labeled_rows": on_labeled.rows, "band": COMPARISON_BAND, "metrics": metrics}, findings


def estimator_for(
    task: str,
    has_probabilities: bool,
    classes: Sequence[Any],
    positive_index: int | None,
    raw: Mapping[str, Any] | None,
) -> tuple[PerformanceEstimator | None, str | None]:
    """The model's estimator, or None and why there is no estimate (said in every report)."""
    if task != "classification":
        return None, (
            "regression models get no estimated performance: CBPE needs class probabilities; "
            "MAE and the other errors are known only when labels arrive"
        )
    if not has_probabilities:
        return None, "the model has no predict_proba: CBPE needs its class probabilities"
    if raw is None:
        return None, (
            f"the model directory has no {CALIBRATION_FILE} (packaged before modelwatch estimated "
            "performance): re-run `modelwatch model build` or `modelwatch model package` to get "
            "the Estimated* metrics"
        )
    try:
        return PerformanceEstimator(Calibration.from_dict(raw, classes, positive_index)), None
    except (CalibrationError, KeyError, TypeError, ValueError) as problem:
        return None, f"{CALIBRATION_FILE} cannot be used: {problem}"

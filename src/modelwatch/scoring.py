"""Scoring one validated batch: predictions, then its measures against actuals and baseline.

Pure computation, no AWS: the batch monitor fetches the actuals and hands them in.
"""

from __future__ import annotations

import itertools
import logging
import operator
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelwatch import drift as drift_module
from modelwatch.errors import BatchRejected
from modelwatch.estimation import Estimate, estimator_for
from modelwatch.labels import LabelNormaliser
from modelwatch.metrics import (
    ROW_ADDITIVE_METRICS,
    ClassificationTotals,
    MetricValue,
    RocAucCounts,
    classification_metrics_of_totals,
    regression_metrics,
)
from modelwatch.model_bundle import ModelBundle
from modelwatch.publishing import UNKNOWN_LABELS_METRIC
from modelwatch.row_pool import DRIFT, ESTIMATE, PoolRows
from modelwatch.sorted_runs import SortedRuns
from modelwatch.validation import ValidatedBatch

logger = logging.getLogger(__name__)

# BatchMeasures' kept values are tagged by the rows they come from: labeled rows of the
# score column's class (a regressor's labeled rows), the other labeled rows, unlabeled rows.
LABELED_OF_CLASS, LABELED_OTHER, UNLABELED = SCORE_TAGS = (0, 1, 2)


@dataclass(frozen=True)
class Predictions:
    labels: np.ndarray
    probabilities: np.ndarray | None  # one column per class, in metadata order


@dataclass
class Measurement:
    """Everything a batch publishes and reports, apart from where it came from."""

    published: dict[str, MetricValue]  # volume, coverage, quality, estimated quality and drift datapoints
    quality: dict[str, MetricValue]
    estimated: dict[str, MetricValue]  # Estimated* (CBPE), labels or not
    estimation: dict[str, Any]  # report.json's estimated_performance
    rows_labeled: int
    quality_withheld: str | None
    drift: dict[str, Any]
    findings: list[dict[str, Any]]
    rows_scored: int
    # Per scored row: the model's class (or a float), None if unlabeled (Scorer.measure only;
    # a batch read in chunks gets each chunk's from BatchMeasures.add).
    actual_values: list[Any] = field(default_factory=list)
    # The signals this model should give that this batch could not compute, for a reason
    # other than too few rows (Scorer.unavailable_signals): a note each, why and the fix.
    unavailable: list[str] = field(default_factory=list)
    # The row-additive quality metrics of a batch with labeled rows, but fewer than
    # MinLabeledRows: not published on their own, they go to the model's pool.
    pooled: dict[str, MetricValue] = field(default_factory=dict)
    # A batch with too few rows for drift (drift.MIN_ROWS) or for the estimate
    # (MinLabeledRows): its rows as those computations take them, for the model's pools
    # of small batches' rows (modelwatch.row_pool), by pool kind.
    pool_rows: dict[str, PoolRows] = field(default_factory=dict)


DRIFT_METRICS = ("DriftScore", "DriftedFeatures", "PredictionDrift")


def withheld_note(rows_labeled: int, min_labeled_rows: int, pooled: Iterable[str] = ()) -> str:
    """report.json's quality_metrics_withheld; ``pooled``: the row-additive metrics whose
    totals went to the model's pool (so a reader knows they were not dropped)."""
    note = (
        f"{rows_labeled} labeled rows, fewer than MinLabeledRows={min_labeled_rows}; "
        "quality metrics are not published for this batch"
    )
    chosen = set(pooled)
    names = ", ".join(name for name in ROW_ADDITIVE_METRICS if name in chosen)  # in the usual order
    if names:
        note += (
            f"; its {names} on these rows went to the model's pool of small batches, published "
            "with other batches' rows once the pool holds MinLabeledRows labeled rows"
        )
    return note


def predict(bundle: ModelBundle, features: pd.DataFrame, key: str) -> Predictions:
    try:
        probabilities = (
            np.asarray(bundle.estimator.predict_proba(features), dtype=float)
            if bundle.has_probabilities
            else None
        )
        if probabilities is not None and _predict_is_argmax(bundle.estimator):
            labels = _labels_from_probabilities(bundle.estimator, features, probabilities)
        else:
            labels = np.asarray(bundle.estimator.predict(features))
    except Exception as problem:  # the estimator is user code: any failure rejects the batch
        raise BatchRejected(
            f"the model {bundle.metadata.name!r} could not score {key!r}: "
            f"{type(problem).__name__}: {problem}",
            code="model_error",
        ) from None
    return Predictions(labels, probabilities)


def _final_step(estimator: Any) -> Any:
    steps = getattr(estimator, "steps", None)  # a Pipeline: its last step predicts
    return _final_step(steps[-1][1]) if steps else estimator


def _predict_is_argmax(estimator: Any) -> bool:
    """Classifiers whose ``predict`` is the class of the highest ``predict_proba``.

    Trees and forests compute it that way; gradient boosting takes the sign (binary) or
    argmax (multiclass) of the raw score, of which the probabilities are a monotone
    function, so the two agree except where probabilities tie (handled by the caller).
    Scoring was half the compute path, and half of it the second pass over the model
    (predict after predict_proba: scripts/bench.py). Any other estimator is asked both.
    """
    from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    final = _final_step(estimator)
    known = (
        HistGradientBoostingClassifier,
        RandomForestClassifier,
        ExtraTreesClassifier,
        DecisionTreeClassifier,
    )
    return type(final) in known and hasattr(estimator, "classes_")


def _labels_from_probabilities(
    estimator: Any, features: pd.DataFrame, probabilities: np.ndarray
) -> np.ndarray:
    """``estimator.predict`` from the probabilities; rows where the top classes tie
    (which class wins then is the estimator's rule) are asked of the estimator itself."""
    labels = np.asarray(estimator.classes_).take(probabilities.argmax(axis=1))
    top = probabilities.max(axis=1, keepdims=True)
    ties = np.flatnonzero((probabilities == top).sum(axis=1) > 1)
    if ties.size:
        labels[ties] = np.asarray(estimator.predict(features.iloc[ties]))
    return labels


class Scorer:
    """Measures batches against their actuals and the model's baseline."""

    def __init__(self, bundle: ModelBundle, min_labeled_rows: int, drift_threshold: float):
        self.bundle = bundle
        self.min_labeled_rows = min_labeled_rows
        self.drift_threshold = drift_threshold
        metadata = bundle.metadata
        self.labels = LabelNormaliser(metadata.classes if metadata.task == "classification" else None)
        self.class_code = {label: position for position, label in enumerate(metadata.classes)}
        # The class whose Precision, Recall and ROC AUC a binary model reports.
        self.positive_code = self.class_code.get(metadata.positive_class, 1)
        self.estimator, self.no_estimate = estimator_for(
            metadata.task,
            bundle.has_probabilities,
            metadata.classes,
            metadata.positive_index,
            bundle.calibration,
        )

    def measure(
        self, validated: ValidatedBatch, predictions: Predictions, raw_actuals: Mapping[str, Any]
    ) -> Measurement:
        """The measures of a whole batch (BatchMeasures, fed it in one chunk)."""
        parts = BatchMeasures(self)
        actual_values = parts.add(validated, predictions, raw_actuals)
        measured = parts.finish(validated.findings)
        measured.actual_values = actual_values
        return measured

    def class_indexes(self, labels: np.ndarray) -> np.ndarray:
        """Class indices of predicted labels, as classification_metrics finds them (-1: no class)."""
        index = pd.Index(list(self.bundle.metadata.classes), dtype=object)
        return index.get_indexer(np.asarray(labels, dtype=object)).astype(np.int16)

    def unavailable_signals(
        self, estimate: Estimate, drift_report: Mapping[str, Any], rows: int
    ) -> list[str]:
        """A note for each of drift and the estimate that this model should give but this
        batch has not, for a reason other than too few rows.

        Their alarms treat missing data as "keep the state": without a count of what went
        missing (SignalsUnavailable), a monitor whose baseline or calibration is gone, or whose
        computation raises on every batch, looks as healthy as one that works.
        """
        notes = []
        if "skipped" in drift_report or "error" in drift_report:  # Scorer._drift's two failures
            if "skipped" in drift_report:
                problem = "the model directory's baseline.json is missing or has no drift section"
                fix = (
                    "re-package the model (`modelwatch model build` or `modelwatch model package` "
                    "write baseline.json with the drift reference) and deploy the new model layer"
                )
            else:
                problem = drift_report["error"]
                fix = (
                    "the function's log has the traceback; if baseline.json does not fit the model, "
                    "re-package the model (`modelwatch model build` or `modelwatch model package`) "
                    "and deploy the new model layer"
                )
            notes.append(
                "drift (DriftScore, DriftedFeatures, PredictionDrift; DriftAlarm) was not computed: "
                f"{problem}. DriftAlarm keeps its last state without them. Fix: {fix}"
            )
        # Expected of a classifier with probabilities; regressors and classifiers without
        # predict_proba never have one (the report says why), so theirs is not missing.
        if self.bundle.has_probabilities:
            missing: str | None = None
            if self.estimator is None:  # calibration.json missing or unusable
                missing = self.no_estimate
            elif "skipped" in estimate.report and rows >= self.min_labeled_rows:
                # Enough rows, yet no estimate: it raised, or the predictions did not fit it.
                missing = estimate.report["skipped"]
            if missing:
                notes.append(
                    "the performance estimate (Estimated* metrics; EstimatedQualityAlarm) was not "
                    f"computed: {missing}. EstimatedQualityAlarm keeps its last state without it. Fix: "
                    "re-package the model (`modelwatch model build` or `modelwatch model package` write "
                    "calibration.json) and deploy the new model layer; if it persists, the function's "
                    "log has the traceback"
                )
        return notes

    def _unknown_labels(self, unknown: set[str]) -> list[dict[str, Any]]:
        if not unknown:
            return []
        shown = sorted(unknown)[:10]
        metadata = self.bundle.metadata
        return [
            {
                "feature_name": metadata.target,
                "constraint_check_type": "unknown_labels",
                "description": f"actuals hold labels the model does not know: {shown}; "
                f"those rows are not counted as labeled (model classes: {list(metadata.classes)})",
            }
        ]

    def predictions_table(
        self, validated: ValidatedBatch, predictions: Predictions, actual_values: list[Any]
    ) -> pd.DataFrame:
        metadata = self.bundle.metadata
        table = pd.DataFrame({metadata.id_column: validated.ids, "prediction": predictions.labels})
        if predictions.probabilities is not None:
            positive = metadata.positive_index
            table["probability"] = (
                predictions.probabilities[:, positive]
                if positive is not None and len(metadata.classes) == 2
                else predictions.probabilities.max(axis=1)
            )
        table["actual"] = pd.Series(actual_values, dtype=object)
        for column in validated.passthrough.columns:
            if column not in table.columns:
                table[column] = validated.passthrough[column]
        return table


class BatchMeasures:
    """A batch's measures, fed a chunk of scored rows at a time.

    Every measure is the whole batch's, exactly as if it were scored in one piece. What is
    a sum over rows is summed chunk by chunk: the labeled rows' confusion counts and log
    loss (metrics.ClassificationTotals), CBPE's expected confusion matrices
    (estimation.EstimateTotals), the count of each predicted label (prediction drift).
    What ranks the rows is kept, and only that: a classifier's probability of its positive
    class (ROC AUC, the estimated ROC AUC and prediction drift rank them all), tagged as
    a labeled positive, other labeled or unlabeled row so that no row needs its label or
    a mask; a regression model's predictions (and its labeled rows' predictions and
    actuals, in row order: the errors pair them). A multiclass model keeps nothing a row.
    The ranked values are kept in modelwatch.sorted_runs.SortedRuns: in memory up to
    8 MB (~1 million rows), then as sorted runs on disk under ``directory``; ``finish``
    reads them back merged in ascending order, once for ROC AUC and both estimated ROC
    AUCs together and once for prediction drift, a block at a time. Input drift keeps
    counts per distinct value (modelwatch.drift.DriftColumns), not rows.

    With the sample (binary) model and the batch monitor, the peak RSS no longer grows
    with the rows past ~1 million (scripts/bench_chunked.py): these values and the
    duplicate ids' hashes (validation.SeenIds) go to disk past their budgets, and the
    heap the allocator kept between chunks is given back (modelwatch.heap).
    """

    def __init__(self, scorer: Scorer, directory: Path | None = None, with_drift: bool = True):
        self.scorer = scorer
        metadata = scorer.bundle.metadata
        self.classification = metadata.task == "classification"
        baseline = scorer.bundle.baseline.get("drift") if with_drift else None
        self.drift = drift_module.DriftColumns(metadata, baseline) if baseline else None
        self.drift_failure: str | None = None
        prediction_baseline = (baseline or {}).get("prediction") or {}
        # Prediction drift's parts, summed a chunk at a time (a regressor's values are kept).
        self.predicted_categories = (
            drift_module.CategoricalSummary() if "classes" in prediction_baseline else None
        )
        self.predicted_numbers = (
            drift_module.NumericSummary() if self.classification and "values" in prediction_baseline else None
        )
        self.rows = self.rows_labeled = 0
        self.with_probabilities = True  # every chunk came with class probabilities
        self.unknown: set[str] = set()
        self.unknown_rows = 0  # rows whose actual is none of the classes (left unlabeled)
        self.normalised: dict[tuple[type, Any], Any] = {}
        class_count = len(metadata.classes)
        self.binary = self.classification and class_count == 2
        self.quality = (
            ClassificationTotals(class_count, scorer.positive_code) if self.classification else None
        )
        # The probability column kept a row: a binary model's positive class (ROC AUC), or
        # the positive class whose probability prediction drift compares.
        self.score_column: int | None = None
        if self.binary:
            self.score_column = scorer.positive_code
        elif self.classification and "positive_probability" in prediction_baseline:
            self.score_column = metadata.positive_index
        # The kept values, tagged by the rows they come from (SCORE_TAGS): a classifier's
        # probability of the score column's class, a regressor's predictions. In memory
        # up to a budget, then in sorted runs on disk (under ``directory``).
        self.scores = (
            SortedRuns(len(SCORE_TAGS), directory)
            if self.score_column is not None or not self.classification
            else None
        )
        # Regression: the labeled rows' predictions and actuals, in row order (the errors pair them).
        self.labeled_pairs: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        self.estimate = scorer.estimator.totals() if scorer.estimator is not None else None
        self.estimate_failure: str | None = None
        # The rows themselves, while the batch is small enough for a pool of small batches'
        # rows (fewer than drift.MIN_ROWS or MinLabeledRows): features, labels, probabilities
        # per chunk. None once it is larger (memory follows the chunk again).
        self.small_rows: list[tuple[pd.DataFrame, np.ndarray, np.ndarray | None]] | None = []
        self.small_limit = max(drift_module.MIN_ROWS, scorer.min_labeled_rows)

    def add(
        self, validated: ValidatedBatch, predictions: Predictions, raw_actuals: Mapping[str, Any]
    ) -> list[Any]:
        """Take one chunk's scored rows; returns their actuals (None where unlabeled)."""
        # map over C iterators: a comprehension per row was a third of the measure step.
        actual_values = list(map(self._normalise, map(raw_actuals.get, validated.ids.tolist())))
        labeled = np.fromiter(
            map(operator.is_not, actual_values, itertools.repeat(None)), dtype=bool, count=len(actual_values)
        )
        labeled_values = [value for value in actual_values if value is not None]
        self.rows += labeled.size
        self.rows_labeled += len(labeled_values)
        if self.small_rows is not None:
            if self.rows < self.small_limit:
                self.small_rows.append(
                    (validated.features, np.asarray(predictions.labels), predictions.probabilities)
                )
            else:
                self.small_rows = None
        if predictions.probabilities is None:
            self.with_probabilities = False
        if self.classification:
            self._add_classes(predictions, labeled, labeled_values)
        else:
            values = np.asarray(predictions.labels, dtype=float)
            self.labeled_pairs[0].append(values[labeled])
            self.labeled_pairs[1].append(np.asarray(labeled_values, dtype=float))
            assert self.scores is not None
            self.scores.add(LABELED_OF_CLASS, values[labeled])
            self.scores.add(UNLABELED, values[~labeled])
        if raw_actuals:
            unlabeled = validated.ids.to_numpy(dtype=object)[~labeled]
            unknown = [str(raw_actuals[record_id]) for record_id in unlabeled if record_id in raw_actuals]
            self.unknown_rows += len(unknown)
            self.unknown.update(unknown)
        if self.drift is not None and self.drift_failure is None:
            try:
                self.drift.add(validated.features)
                labels = pd.Series(np.asarray(predictions.labels).ravel())
                if self.predicted_categories is not None:
                    self.predicted_categories.add(drift_module.categorical_column(labels))
                if self.predicted_numbers is not None:
                    self.predicted_numbers.add(drift_module.numeric_column(labels))
            except Exception as problem:  # noqa: BLE001 - drift is advisory; the scores still count
                logger.exception("drift computation failed")
                self.drift_failure = f"{type(problem).__name__}: {problem}"
        return actual_values

    def _add_classes(self, predictions: Predictions, labeled: np.ndarray, labeled_values: list[Any]) -> None:
        code = self.scorer.class_code
        actual = np.fromiter(
            (code[value] for value in labeled_values), dtype=np.int16, count=len(labeled_values)
        )
        predicted = self.scorer.class_indexes(predictions.labels)
        probabilities = predictions.probabilities
        assert self.quality is not None
        self.quality.add(
            actual, predicted[labeled], probabilities[labeled] if probabilities is not None else None
        )
        if probabilities is None:
            return
        estimator = self.scorer.estimator
        if estimator is not None and self.estimate is not None and self.estimate_failure is None:
            try:
                estimator.add(
                    self.estimate, probabilities, predicted, labeled, np.asarray(predictions.labels)
                )
            except Exception as problem:  # noqa: BLE001 - an estimate is advisory; the scores still count
                logger.exception("performance estimation failed")
                self.estimate_failure = f"{type(problem).__name__}: {problem}"
        if self.scores is not None:
            score = probabilities[:, self.score_column]
            of_class = np.zeros(labeled.size, dtype=bool)
            of_class[labeled] = actual == self.score_column
            self.scores.add(LABELED_OF_CLASS, score[of_class])
            self.scores.add(LABELED_OTHER, score[labeled & ~of_class])
            self.scores.add(UNLABELED, score[~labeled])

    def _normalise(self, value: Any) -> Any:
        """LabelNormaliser.normalise, once per distinct raw value: per row it was the
        largest cost of the measure step. Equal values of one type normalise alike
        (Decimal("1") and Decimal("1.0") both to the class 1)."""
        if value is None:
            return None
        key = (type(value), value)
        try:
            return self.normalised[key]
        except KeyError:
            normalised = self.normalised[key] = self.scorer.labels.normalise(value)
            return normalised
        except TypeError:  # unhashable (a JSON list as a label): no class anyway
            return self.scorer.labels.normalise(value)

    def finish(self, findings: list[dict[str, Any]]) -> Measurement:
        """The batch's measures, from every chunk added (at least one row)."""
        scorer = self.scorer
        rows_scored, rows_labeled = self.rows, self.rows_labeled
        published: dict[str, MetricValue] = {
            "BatchesProcessed": MetricValue(1.0),
            "RowsScored": MetricValue(float(rows_scored)),
            "RowsLabeled": MetricValue(float(rows_labeled)),
            "LabelCoverage": MetricValue(
                rows_labeled / rows_scored,
                row_sum=float(rows_labeled),
                rows=rows_scored,
                row_min=0.0 if rows_labeled < rows_scored else 1.0,
                row_max=1.0 if rows_labeled > 0 else 0.0,
            ),
        }
        if self.unknown_rows:
            # Labels written straight to the table bypass the actuals loader's count; the
            # label join counts those that come after the batch.
            published[UNKNOWN_LABELS_METRIC] = MetricValue(float(self.unknown_rows))
        quality: dict[str, MetricValue] = {}
        withheld = None
        enough_labels = rows_labeled >= scorer.min_labeled_rows
        estimate = self._skipped_estimate()
        try:
            ranks = self._rank_statistics(enough_labels, estimate is None)
        except EstimateFailed as failed:
            estimate = _failed_estimate(failed.problem)
            ranks = self._rank_statistics(enough_labels, False)
        if self.classification:
            if enough_labels:
                assert self.quality is not None
                quality = classification_metrics_of_totals(self.quality, ranks.roc_auc)
        elif enough_labels:
            predicted, actuals = (
                np.concatenate(part) if part else np.empty(0) for part in self.labeled_pairs
            )
            quality = regression_metrics(actuals, predicted)
        # Too few labeled rows to judge the batch: its row-additive totals go to the model's
        # pool (modelwatch.ledger), published with other small batches' once they are enough.
        pooled = self._row_additive() if 0 < rows_labeled < scorer.min_labeled_rows else {}
        self.labeled_pairs = ([], [])
        if not enough_labels:
            withheld = withheld_note(rows_labeled, scorer.min_labeled_rows)
        published.update(quality)
        if estimate is None:
            try:
                assert scorer.estimator is not None and self.estimate is not None
                labeled_auc = ranks.labeled_expected_auc if quality else None
                estimate = scorer.estimator.finish(self.estimate, quality, ranks.expected_auc, labeled_auc)
            except Exception as problem:  # noqa: BLE001 - an estimate is advisory; the scores still count
                estimate = _failed_estimate(problem)
        published.update(estimate.published)
        prediction = self._prediction_drift()
        if self.scores is not None:
            self.scores.close()  # before the features' comparison
        drift_metrics, drift_report, drift_findings = self._drift(prediction)
        published.update(drift_metrics)
        pool_rows = self._pool_rows(drift_report, estimate)
        self.small_rows = None
        return Measurement(
            published=published,
            quality=quality,
            estimated=estimate.published,
            estimation=estimate.report,
            rows_labeled=rows_labeled,
            quality_withheld=withheld,
            drift=drift_report,
            findings=list(findings) + drift_findings + scorer._unknown_labels(self.unknown),
            rows_scored=rows_scored,
            unavailable=scorer.unavailable_signals(estimate, drift_report, rows_scored),
            pooled=pooled,
            pool_rows=pool_rows,
        )

    def _pool_rows(self, drift_report: Mapping[str, Any], estimate: Estimate) -> dict[str, PoolRows]:
        """The rows for the pools whose computation this batch is too small for, and for
        no other reason (a failed computation is SignalsUnavailable's, not the pool's)."""
        if not self.small_rows:
            return {}
        parts = self.small_rows
        features = pd.concat([part[0] for part in parts], ignore_index=True)
        labels = np.concatenate([part[1] for part in parts])
        probabilities = np.concatenate([part[2] for part in parts]) if self.with_probabilities else None
        pools: dict[str, PoolRows] = {}
        drift_baseline = self.scorer.bundle.baseline.get("drift") or {}
        if drift_report.get("status") == "insufficient_rows" and self.drift is not None:
            compared = [name for name, _ in self.drift.features]
            # The probabilities only when prediction drift compares them (and the features the
            # baseline has): what the pooled drift reads, no more.
            with_probabilities = "positive_probability" in drift_baseline.get("prediction", {})
            pools[DRIFT] = PoolRows.of_batch(
                features[compared], labels, probabilities if with_probabilities else None
            )
        scorer = self.scorer
        if (
            probabilities is not None
            and scorer.estimator is not None
            and self.rows < scorer.min_labeled_rows
            and self.estimate_failure is None
            and self.estimate is not None
            and not self.estimate.unknown
            and "skipped" in estimate.report
        ):
            pools[ESTIMATE] = PoolRows.of_batch(None, labels, probabilities)
        return pools

    def _row_additive(self) -> dict[str, MetricValue]:
        """The row-additive quality metrics of the labeled rows (at least one)."""
        if self.classification:
            assert self.quality is not None
            return self.quality.row_additive()
        predicted, actuals = (np.concatenate(part) for part in self.labeled_pairs)
        measured = regression_metrics(actuals, predicted)
        return {name: value for name, value in measured.items() if name in ROW_ADDITIVE_METRICS}

    def _skipped_estimate(self) -> Estimate | None:
        """Why the batch gets no estimate, or None when it gets one (CBPE on every batch
        of at least MinLabeledRows rows, labeled or not)."""
        scorer = self.scorer
        if scorer.estimator is None or not self.with_probabilities:
            return Estimate.skipped(scorer.no_estimate or "the model gave no probabilities for this batch")
        if self.rows < scorer.min_labeled_rows:
            return Estimate.skipped(
                f"{self.rows} rows, fewer than MinLabeledRows={scorer.min_labeled_rows}; "
                "estimated metrics are not published for this batch"
            )
        if self.estimate is not None and self.estimate.unknown:
            return scorer.estimator.finish(self.estimate, {}, None, None)  # says which labels
        if self.estimate_failure is not None:
            return Estimate.skipped(f"{self.estimate_failure}; no estimated metrics published")
        return None

    def _rank_statistics(self, realized: bool, estimated: bool) -> RankStatistics:
        """What ranks the kept values, in one pass over them in ascending order: ROC AUC of
        the labeled rows (``realized``: their quality is published), the estimated ROC AUC
        of every row and of the labeled ones (``estimated``). Raises EstimateFailed when
        the estimate's part fails (it is advisory: the caller goes on without it)."""
        ranks = RankStatistics()
        estimator = self.scorer.estimator
        scores = self.scores
        if scores is None or not self.binary or not self.with_probabilities:
            return ranks
        roc_auc = RocAucCounts() if realized and self.classification else None
        every = labeled = None
        if estimated and estimator is not None:
            try:
                every = estimator.expected_auc_counts()
                labeled = estimator.expected_auc_counts() if realized else None
            except Exception as problem:  # noqa: BLE001 - an estimate is advisory
                raise EstimateFailed(problem) from problem
        if roc_auc is None and every is None:
            return ranks
        for values, counts in scores.counts():
            if roc_auc is not None:
                roc_auc.add(counts[:, LABELED_OF_CLASS], counts[:, LABELED_OTHER])
            try:
                if every is not None:
                    every.add(values, counts.sum(axis=1))
                if labeled is not None:
                    labeled.add(values, counts[:, LABELED_OF_CLASS] + counts[:, LABELED_OTHER])
            except Exception as problem:  # noqa: BLE001 - an estimate is advisory
                raise EstimateFailed(problem) from problem
        ranks.roc_auc = roc_auc.value() if roc_auc is not None else None
        try:
            ranks.expected_auc = every.value() if every is not None else None
            ranks.labeled_expected_auc = labeled.value() if labeled is not None else None
        except Exception as problem:  # noqa: BLE001 - an estimate is advisory
            raise EstimateFailed(problem) from problem
        return ranks

    def _kept_numbers(self) -> drift_module.NumericCounts:
        """The kept values of every row as prediction drift compares them (a NumericColumn's
        missing and invalid counts, read from the runs, not collected in memory)."""
        scores = self.scores
        assert scores is not None

        def finite_blocks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for values, counts in scores.counts():
                finite = np.isfinite(values)
                yield values[finite], counts[finite].sum(axis=1)

        rows = sum(scores.sizes)
        invalid = scores.negative_infinite + scores.positive_infinite
        examples = (["-inf"] if scores.negative_infinite else []) + (
            ["inf"] if scores.positive_infinite else []
        )
        return drift_module.NumericCounts(
            blocks=finite_blocks,
            finite=rows - invalid - scores.nan,
            rows=rows,
            missing=scores.nan,
            invalid=invalid,
            invalid_examples=examples,
        )

    def close(self) -> None:
        """Remove the kept values' files, if any (finish does; for a batch given up before it)."""
        if self.scores is not None:
            self.scores.close()

    def _prediction_drift(self) -> dict[str, Any] | None:
        """Prediction drift's comparison (None without a drift baseline or after a failure)."""
        baseline = self.scorer.bundle.baseline.get("drift")
        if not baseline or self.drift is None or self.drift_failure is not None:
            return None
        try:
            prediction_baseline = baseline["prediction"]
            columns = drift_module.PredictionColumns(
                classes=self.predicted_categories.column() if self.predicted_categories is not None else None,
                values=self.predicted_numbers.column() if self.predicted_numbers is not None else None,
            )
            if not self.classification and "values" in prediction_baseline:
                columns.values = self._kept_numbers()
            positive = self.scorer.bundle.metadata.positive_index
            if (
                "positive_probability" in prediction_baseline
                and positive is not None
                and self.with_probabilities
                and self.score_column == positive
            ):
                columns.positive_probability = self._kept_numbers()
            return drift_module.compare_predictions(columns, prediction_baseline, self.scorer.drift_threshold)
        except Exception as problem:  # noqa: BLE001 - drift is advisory; the scores still count
            logger.exception("drift computation failed")
            self.drift_failure = f"{type(problem).__name__}: {problem}"
            return None

    def _drift(
        self, prediction: dict[str, Any] | None
    ) -> tuple[dict[str, MetricValue], dict[str, Any], list[dict[str, Any]]]:
        scorer = self.scorer
        baseline = scorer.bundle.baseline.get("drift")
        if not baseline or self.drift is None:
            return {}, {"skipped": "baseline.json has no drift section; re-package the model"}, []
        if self.drift_failure is not None or prediction is None:
            return {}, {"error": f"{self.drift_failure}; no drift metrics published"}, []
        try:
            result = drift_module.compare_drift(
                self.drift, prediction, baseline, threshold=scorer.drift_threshold
            )
        except Exception as problem:  # noqa: BLE001 - drift is advisory; the scores still count
            logger.exception("drift computation failed")
            return {}, {"error": f"{type(problem).__name__}: {problem}; no drift metrics published"}, []
        metrics = {name: MetricValue(float(value)) for name, value in result.metrics.items()}
        return metrics, result.report, list(result.findings)


def measure_pooled(
    scorer: Scorer, kind: str, pooled: PoolRows
) -> tuple[dict[str, MetricValue], dict[str, Any]]:
    """Drift (DRIFT) or the estimate (ESTIMATE) of a pool's rows: their datapoints and the
    report's section, exactly as BatchMeasures gives them for one unlabeled batch of those
    rows (labels play no part in either)."""
    metadata = scorer.bundle.metadata
    numeric = [feature.name for feature in metadata.features if feature.type == "numeric"]
    rows = pooled.rows
    features = (
        pooled.feature_frame(numeric) if pooled.features is not None else pd.DataFrame(index=range(rows))
    )
    validated = ValidatedBatch(
        ids=pd.Series([str(number) for number in range(rows)], dtype=object),
        features=features,
        passthrough=pd.DataFrame(index=range(rows)),
        row_numbers=np.arange(1, rows + 1),
        rows_read=rows,
    )
    measures = BatchMeasures(scorer, with_drift=kind == DRIFT)
    try:
        measures.add(validated, Predictions(pooled.label_array(), pooled.probability_array()), {})
        measured = measures.finish([])
    finally:
        measures.close()
    if kind == DRIFT:
        published = measured.published
        return {name: published[name] for name in DRIFT_METRICS if name in published}, measured.drift
    return measured.estimated, measured.estimation


@dataclass
class RankStatistics:
    """BatchMeasures' statistics that rank the kept values (None: not computed)."""

    roc_auc: float | None = None
    expected_auc: float | None = None
    labeled_expected_auc: float | None = None


class EstimateFailed(Exception):
    def __init__(self, problem: Exception):
        super().__init__(str(problem))
        self.problem = problem


def _failed_estimate(problem: Exception) -> Estimate:
    logger.exception("performance estimation failed")
    return Estimate.skipped(f"{type(problem).__name__}: {problem}; no estimated metrics published")

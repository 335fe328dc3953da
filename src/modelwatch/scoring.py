"""Scoring one validated batch: predictions, then its measures against actuals and baseline.

Pure computation, no AWS: the batch monitor fetches the actuals and hands them in.
"""

from __future__ import annotations

import itertools
import logging
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from modelwatch import drift as drift_module
from modelwatch.errors import BatchRejected
from modelwatch.estimation import Estimate, estimator_for
from modelwatch.labels import LabelNormaliser
from modelwatch.metrics import MetricValue, classification_metrics_of_codes, regression_metrics
from modelwatch.model_bundle import ModelBundle
from modelwatch.validation import ValidatedBatch

logger = logging.getLogger(__name__)


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

    def _quality(
        self,
        labeled_actuals: np.ndarray,
        labeled: np.ndarray,
        predictions: Predictions,
        predicted_classes: np.ndarray,
    ) -> dict[str, MetricValue]:
        """``labeled_actuals``: the labeled rows' actuals, as class indices (classification)
        or floats (regression), in row order; ``predicted_classes``: every row's
        class_indexes (classification)."""
        metadata = self.bundle.metadata
        if metadata.task == "regression":
            return regression_metrics(labeled_actuals, predictions.labels[labeled].astype(float))
        probabilities = predictions.probabilities
        return classification_metrics_of_codes(
            labeled_actuals,
            predicted_classes[labeled],
            probabilities[labeled] if probabilities is not None else None,
            len(metadata.classes),
            self.class_code.get(metadata.positive_class, 1),
        )

    def _estimate(
        self, predictions: Predictions, labeled: np.ndarray, quality: dict[str, MetricValue], rows: int
    ) -> Estimate:
        """CBPE on every batch of at least MinLabeledRows rows, labeled or not."""
        if self.estimator is None or predictions.probabilities is None:
            return Estimate.skipped(self.no_estimate or "the model gave no probabilities for this batch")
        if rows < self.min_labeled_rows:
            return Estimate.skipped(
                f"{rows} rows, fewer than MinLabeledRows={self.min_labeled_rows}; "
                "estimated metrics are not published for this batch"
            )
        try:
            return self.estimator.estimate(predictions.probabilities, predictions.labels, labeled, quality)
        except Exception as problem:  # noqa: BLE001 - an estimate is advisory; the scores still count
            logger.exception("performance estimation failed")
            return Estimate.skipped(f"{type(problem).__name__}: {problem}; no estimated metrics published")

    def _drift(
        self, columns: drift_module.DriftColumns | None, failure: str | None, predictions: Predictions
    ) -> tuple[dict[str, MetricValue], dict[str, Any], list[dict[str, Any]]]:
        baseline = self.bundle.baseline.get("drift")
        if not baseline or columns is None:
            return {}, {"skipped": "baseline.json has no drift section; re-package the model"}, []
        if failure is not None:
            return {}, {"error": f"{failure}; no drift metrics published"}, []
        try:
            result = drift_module.compare_drift(
                columns,
                self.bundle.metadata,
                predictions.labels,
                predictions.probabilities,
                baseline,
                threshold=self.drift_threshold,
            )
        except Exception as problem:  # noqa: BLE001 - drift is advisory; the scores still count
            logger.exception("drift computation failed")
            return {}, {"error": f"{type(problem).__name__}: {problem}; no drift metrics published"}, []
        metrics = {name: MetricValue(float(value)) for name, value in result.metrics.items()}
        return metrics, result.report, list(result.findings)

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

    Every measure is the whole batch's, exactly as if it were scored in one piece: the
    quality metrics, the estimate and prediction drift need every row's prediction (ROC
    AUC ranks them all), so those stay: the predicted label, the class probabilities and
    the labeled rows' actuals, about 30 bytes a row for a binary model. Input drift keeps
    counts per distinct value (modelwatch.drift.DriftColumns), not rows.
    """

    def __init__(self, scorer: Scorer):
        self.scorer = scorer
        baseline = scorer.bundle.baseline.get("drift")
        self.drift = drift_module.DriftColumns(scorer.bundle.metadata, baseline) if baseline else None
        self.drift_failure: str | None = None
        self.labels: list[np.ndarray] = []
        self.probabilities: list[np.ndarray] = []
        self.labeled: list[np.ndarray] = []
        self.actuals: list[np.ndarray] = []  # per chunk: the labeled rows' actuals (class indices or floats)
        self.unknown: set[str] = set()
        self.normalised: dict[tuple[type, Any], Any] = {}
        self.predicted_classes: list[np.ndarray] = []  # per chunk, classification: class indices

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
        if self.scorer.bundle.metadata.task == "regression":
            self.actuals.append(np.asarray(labeled_values, dtype=float))
        else:  # class indices: 2 bytes a labeled row where the labels took 8 and more
            code = self.scorer.class_code
            self.actuals.append(np.fromiter((code[value] for value in labeled_values), dtype=np.int16))
        self.labeled.append(labeled)
        self.labels.append(predictions.labels)
        if self.scorer.bundle.metadata.task == "classification":
            self.predicted_classes.append(self.scorer.class_indexes(predictions.labels))
        if predictions.probabilities is not None:
            self.probabilities.append(predictions.probabilities)
        if raw_actuals:
            unlabeled = validated.ids.to_numpy(dtype=object)[~labeled]
            self.unknown.update(
                str(raw_actuals[record_id]) for record_id in unlabeled if record_id in raw_actuals
            )
        if self.drift is not None and self.drift_failure is None:
            try:
                self.drift.add(validated.features)
            except Exception as problem:  # noqa: BLE001 - drift is advisory; the scores still count
                logger.exception("drift computation failed")
                self.drift_failure = f"{type(problem).__name__}: {problem}"
        return actual_values

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
        labeled = np.concatenate(self.labeled)
        predictions = Predictions(
            np.concatenate(self.labels),
            np.concatenate(self.probabilities) if self.probabilities else None,
        )
        # The chunks' arrays are in the whole-batch ones now: not twice in memory.
        self.labeled, self.labels, self.probabilities = [], [], []
        rows_scored = labeled.size
        rows_labeled = int(labeled.sum())
        published: dict[str, MetricValue] = {
            "BatchesProcessed": MetricValue(1.0),
            "RowsScored": MetricValue(float(rows_scored)),
            "RowsLabeled": MetricValue(float(rows_labeled)),
            "LabelCoverage": MetricValue(
                rows_labeled / rows_scored,
                row_sum=float(rows_labeled),
                rows=rows_scored,
                row_min=float(labeled.min()),
                row_max=float(labeled.max()),
            ),
        }
        quality: dict[str, MetricValue] = {}
        withheld = None
        if rows_labeled >= scorer.min_labeled_rows:
            predicted_classes = np.concatenate(self.predicted_classes) if self.predicted_classes else labeled
            quality = scorer._quality(np.concatenate(self.actuals), labeled, predictions, predicted_classes)
            del predicted_classes
        else:
            withheld = (
                f"{rows_labeled} labeled rows, fewer than MinLabeledRows={scorer.min_labeled_rows}; "
                "quality metrics are not published for this batch"
            )
        published.update(quality)
        estimate = scorer._estimate(predictions, labeled, quality, rows_scored)
        published.update(estimate.published)
        drift_metrics, drift_report, drift_findings = scorer._drift(
            self.drift, self.drift_failure, predictions
        )
        published.update(drift_metrics)
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
        )

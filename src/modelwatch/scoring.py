"""Scoring one validated batch: predictions, then its measures against actuals and baseline.

Pure computation, no AWS: the batch monitor fetches the actuals and hands them in.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from modelwatch import drift as drift_module
from modelwatch.errors import BatchRejected
from modelwatch.estimation import Estimate, estimator_for
from modelwatch.labels import LabelNormaliser
from modelwatch.metrics import MetricValue, classification_metrics, regression_metrics
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
    actual_values: list[Any]  # per scored row: the model's class (or a float), None if unlabeled


def predict(bundle: ModelBundle, features: pd.DataFrame, key: str) -> Predictions:
    try:
        labels = np.asarray(bundle.estimator.predict(features))
        probabilities = (
            np.asarray(bundle.estimator.predict_proba(features), dtype=float)
            if bundle.has_probabilities
            else None
        )
    except Exception as problem:  # the estimator is user code: any failure rejects the batch
        raise BatchRejected(
            f"the model {bundle.metadata.name!r} could not score {key!r}: "
            f"{type(problem).__name__}: {problem}",
            code="model_error",
        ) from None
    return Predictions(labels, probabilities)


class Scorer:
    """Measures batches against their actuals and the model's baseline."""

    def __init__(self, bundle: ModelBundle, min_labeled_rows: int, drift_threshold: float):
        self.bundle = bundle
        self.min_labeled_rows = min_labeled_rows
        self.drift_threshold = drift_threshold
        metadata = bundle.metadata
        self.labels = LabelNormaliser(metadata.classes if metadata.task == "classification" else None)
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
        actual_values = [self.labels.normalise(raw_actuals.get(record_id)) for record_id in validated.ids]
        labeled = np.array([value is not None for value in actual_values], dtype=bool)
        rows_scored = len(actual_values)
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
        if rows_labeled >= self.min_labeled_rows:
            quality = self._quality(actual_values, labeled, predictions)
        else:
            withheld = (
                f"{rows_labeled} labeled rows, fewer than MinLabeledRows={self.min_labeled_rows}; "
                "quality metrics are not published for this batch"
            )
        published.update(quality)
        estimate = self._estimate(predictions, labeled, quality, rows_scored)
        published.update(estimate.published)
        drift_metrics, drift_report, findings = self._drift(validated, predictions)
        published.update(drift_metrics)
        findings = list(validated.findings) + findings + self._unknown_labels(validated, raw_actuals, labeled)
        return Measurement(
            published=published,
            quality=quality,
            estimated=estimate.published,
            estimation=estimate.report,
            rows_labeled=rows_labeled,
            quality_withheld=withheld,
            drift=drift_report,
            findings=findings,
            actual_values=actual_values,
        )

    def _quality(
        self, actual_values: list[Any], labeled: np.ndarray, predictions: Predictions
    ) -> dict[str, MetricValue]:
        metadata = self.bundle.metadata
        y_true = np.array([value for value in actual_values if value is not None], dtype=object)
        if metadata.task == "regression":
            return regression_metrics(y_true.astype(float), predictions.labels[labeled].astype(float))
        probabilities = predictions.probabilities
        return classification_metrics(
            y_true,
            predictions.labels[labeled],
            probabilities[labeled] if probabilities is not None else None,
            metadata.classes,
            metadata.positive_class,
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
        self, validated: ValidatedBatch, predictions: Predictions
    ) -> tuple[dict[str, MetricValue], dict[str, Any], list[dict[str, Any]]]:
        baseline = self.bundle.baseline.get("drift")
        if not baseline:
            return {}, {"skipped": "baseline.json has no drift section; re-package the model"}, []
        try:
            result = drift_module.compute_drift(
                validated.features,
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

    def _unknown_labels(
        self, validated: ValidatedBatch, raw_actuals: Mapping[str, Any], labeled: np.ndarray
    ) -> list[dict[str, Any]]:
        unknown = sorted(
            {
                str(raw_actuals[record_id])
                for record_id, is_labeled in zip(validated.ids, labeled, strict=True)
                if not is_labeled and record_id in raw_actuals
            }
        )
        if not unknown:
            return []
        metadata = self.bundle.metadata
        return [
            {
                "feature_name": metadata.target,
                "constraint_check_type": "unknown_labels",
                "description": f"actuals hold labels the model does not know: {unknown[:10]}; "
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

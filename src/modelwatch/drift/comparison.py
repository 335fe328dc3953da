"""One batch against the drift baseline: input drift, prediction drift, data quality.

Method, in the order a reviewer will ask about it:

* PSI per feature over the baseline's bins: 10 quantile bins of the reference for a
  numeric feature (outer bins open-ended, so out-of-range values land in the edge bins),
  the top 20 categories plus ``__other__`` and ``__unseen__`` for a categorical one.
  An empty bin on either side is given the proportion ``PSI_EPSILON`` (1e-4) instead of
  0, without renormalising. Missing values (blank, absent, or not a number) have a bin
  of their own: the value bins are scaled by the present share on each side, so a feed
  going blank moves PSI (90% blanks against none is a PSI near 10), and a feature with
  no missing values on either side gets exactly the PSI it had without that bin.
* Two-sample tests per feature, Bonferroni-adjusted over all the tests run:
  Kolmogorov-Smirnov for numeric features, Pearson chi-square for categorical ones
  (see ``kolmogorov_smirnov`` and ``chi_square`` in statistics.py for the exact
  choices), and Fisher's exact test of the missing share whenever either side has a
  missing value (so an all-blank feature, where the others cannot run, is tested
  too). All treat the reference as the sample it is, so a large healthy batch is not
  "significant" merely because the reference was finite.
* A feature counts as drifted only when PSI > threshold AND its adjusted p-value <
  ``SIGNIFICANCE_LEVEL``: PSI alone is biased upwards on small samples (about
  (bins - 1) / rows on healthy data, 0.22 at 40 rows in 10 bins, before empty bins),
  so a small batch would cross 0.2 by chance.
* Below ``min_rows`` rows (default ``MIN_ROWS``) the batch's drift metrics are not
  published at all. Above it every feature counts, however many of its values are
  missing: PSI over all rows has a small-sample bias of about bins / rows whatever
  the present share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from modelwatch.drift.columns import (
    EXAMPLES_SHOWN,
    CategoricalColumn,
    CategoricalSummary,
    NumericColumn,
    NumericCounts,
    NumericSummary,
    categorical_column,
    numeric_column,
)
from modelwatch.drift.statistics import (
    PSI_EPSILON,
    SortedSummary,
    binomial_excess,
    chi_square,
    distinct_blocks,
    missing_share_test,
    population_stability_index_with_missing,
)
from modelwatch.model_bundle import ModelMetadata

# Fewer rows than this and a batch's drift metrics are not published: PSI's small-sample
# bias (about 9 / rows in 10 bins) is 0.045 here, under a quarter of the usual 0.2
# threshold. Formerly the DRIFT_MIN_ROWS setting, which no template parameter set.
MIN_ROWS = 200
SIGNIFICANCE_LEVEL = 0.05
# A data-quality finding needs an excess that matters (absolute tolerance) and that
# sampling noise does not explain (one-sided binomial p below FINDING_P_VALUE).
MISSING_RATE_TOLERANCE = 0.01
OUT_OF_RANGE_TOLERANCE = 0.01
UNSEEN_RATE_TOLERANCE = 0.01
FINDING_P_VALUE = 0.001
MISSING_VALUES_METHOD = (
    "PSI has a bin for missing values (blank or absent; for a numeric feature also not a "
    "number) beside the value bins, each side's value bins scaled by its present share; "
    "the missing share is tested with Fisher's exact test alongside the KS or chi-square test"
)
OTHER_BUCKET = "__other__"
UNSEEN_BUCKET = "__unseen__"


@dataclass
class DriftResult:
    """What one batch's drift check found."""

    metrics: dict[str, float] = field(default_factory=dict)  # DriftScore, DriftedFeatures, PredictionDrift
    report: dict[str, Any] = field(default_factory=dict)  # the report.json "drift" section
    findings: list[dict[str, Any]] = field(default_factory=list)  # data-quality findings


def _finding(
    feature: str, check: str, description: str, value: float, baseline_value: float
) -> dict[str, Any]:
    return {
        "feature_name": feature,
        "constraint_check_type": check,
        "description": description,
        "value": value,
        "baseline_value": baseline_value,
    }


def _reference_missing_rate(baseline: dict[str, Any]) -> float:
    # A baseline written before missing rates were recorded had none to record.
    return float(baseline.get("missing_rate", 0.0))


def _missing_bin(unusable: int, rows: int, baseline: dict[str, Any]) -> dict[str, Any]:
    """The missing bin's two shares and the test of their difference, for a detail."""
    reference_rows = int(baseline.get("rows", baseline["count"]))
    reference_rate = _reference_missing_rate(baseline)
    return {
        "missing_bin_rate": unusable / rows if rows else 0.0,
        "baseline_missing_bin_rate": reference_rate,
        "missing_test": "fisher_exact",
        "missing_p_value": missing_share_test(
            unusable, rows, round(reference_rate * reference_rows), reference_rows
        ),
    }


def _compare_numeric(column: NumericColumn | NumericCounts, baseline: dict[str, Any]) -> dict[str, Any]:
    if isinstance(column, NumericColumn):
        finite = column.values.size
        blocks: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]
        blocks = partial(distinct_blocks, column.values)
    else:
        finite, blocks = column.finite, column.blocks
    rows = column.rows
    # The baseline counted non-numeric reference values as missing; so does the bin here.
    unusable = column.missing + column.invalid
    detail: dict[str, Any] = {
        "type": "numeric",
        "test": "ks",
        "rows": int(finite),
        "missing_rate": column.missing / rows if rows else 0.0,
        "baseline_missing_rate": _reference_missing_rate(baseline),
        "type_mismatch_rate": column.invalid / rows if rows else 0.0,
        "psi": None,
        "statistic": None,
        "p_value": None,
        "missing_p_value": None,
    }
    if rows == 0 or baseline["count"] == 0:
        return detail
    detail.update(_missing_bin(unusable, rows, baseline))
    edges = np.asarray(baseline["edges"], dtype=float)
    # One pass over the sorted values (a batch's may be read back from disk).
    summary = SortedSummary(
        finite,
        edges,
        baseline["min"],
        baseline["max"],
        np.asarray(baseline["quantiles"], dtype=float),
        baseline["count"],
    )
    for distinct, counts in blocks():
        summary.add(distinct, counts)
    proportions = summary.bins / max(finite, 1)
    detail.update(
        psi=population_stability_index_with_missing(
            proportions,
            detail["missing_bin_rate"],
            np.asarray(baseline["proportions"], dtype=float),
            detail["baseline_missing_bin_rate"],
        ),
        edges=baseline["edges"],
        proportions=[float(p) for p in proportions],
        baseline_proportions=baseline["proportions"],
        baseline_min=baseline["min"],
        baseline_max=baseline["max"],
    )
    if finite == 0:
        return detail  # an all-blank column: the missing bin and its test are the whole story
    detail.update(
        out_of_range_rate=summary.outside / finite,
        out_of_range_count=summary.outside,
        min=summary.minimum,
        max=summary.maximum,
    )
    ks = summary.ks_test()
    if ks is not None:
        detail["statistic"], detail["p_value"] = ks
    return detail


def _compare_categorical(column: CategoricalColumn, baseline: dict[str, Any]) -> dict[str, Any]:
    rows = column.rows
    categories: list[str] = baseline["categories"]
    # Buckets: each baseline category, then __other__, then __unseen__.
    bucket_of = {key: index for index, key in enumerate(categories)}
    other_bucket, unseen_bucket = len(categories), len(categories) + 1
    for key in baseline["other_categories"]:
        bucket_of[key] = other_bucket
    key_bucket = np.array([bucket_of.get(key, unseen_bucket) for key in column.keys], dtype=np.int64)
    counts = np.zeros(unseen_bucket + 1, dtype=np.int64)
    np.add.at(counts, key_bucket, column.counts())
    count = int(counts.sum())
    detail: dict[str, Any] = {
        "type": "categorical",
        "test": "chi_square",
        "rows": count,
        "missing_rate": column.missing / rows if rows else 0.0,
        "baseline_missing_rate": _reference_missing_rate(baseline),
        "psi": None,
        "statistic": None,
        "p_value": None,
        "missing_p_value": None,
    }
    if rows == 0 or baseline["count"] == 0:
        return detail
    detail.update(_missing_bin(column.missing, rows, baseline))
    reference = np.array([*baseline["proportions"], baseline["other_proportion"], 0.0], dtype=float)
    proportions = counts / max(count, 1)
    unseen_keys = [
        key for key, bucket in zip(column.keys, key_bucket.tolist(), strict=True) if bucket == unseen_bucket
    ]
    detail.update(
        psi=population_stability_index_with_missing(
            proportions, detail["missing_bin_rate"], reference, detail["baseline_missing_bin_rate"]
        ),
        categories=[*categories, OTHER_BUCKET, UNSEEN_BUCKET],
        proportions=[float(p) for p in proportions],
        baseline_proportions=[float(p) for p in reference],
        unseen_rate=float(proportions[unseen_bucket]),
        unseen_count=int(counts[unseen_bucket]),
        unseen_examples=sorted(unseen_keys)[:EXAMPLES_SHOWN],
        unseen_may_include_rare_known=bool(baseline["other_categories_truncated"]),
    )
    reference_count, singletons = baseline["count"], baseline["singleton_categories"]
    other_count = round(baseline["other_proportion"] * reference_count)
    reference_counts = np.array(
        [
            *(round(p * reference_count) for p in baseline["proportions"]),
            other_count - singletons,
            singletons,
        ],
        dtype=float,
    )
    chi = chi_square(counts, reference_counts)
    if chi is not None:
        detail["statistic"], detail["p_value"] = chi
    return detail


def _quality_findings(name: str, detail: dict[str, Any], baseline: dict[str, Any], column: Any) -> list[dict]:
    findings = []
    rows = column.rows
    missing, baseline_missing = detail["missing_rate"], detail["baseline_missing_rate"]
    reference_rows = baseline.get("rows", baseline["count"])
    # A rate the reference never showed is taken as half an occurrence, not zero, so a
    # single gap in a feature that had none is weighed against the reference's size.
    missing_rate0 = max(baseline_missing, 0.5 / reference_rows) if reference_rows else 0.0
    if binomial_excess(column.missing, rows, missing_rate0, MISSING_RATE_TOLERANCE, FINDING_P_VALUE):
        findings.append(
            _finding(
                name,
                "missing_rate_increase",
                f"{column.missing} of {rows} values missing ({missing:.2%}); "
                f"the baseline had {baseline_missing:.2%}",
                missing,
                baseline_missing,
            )
        )
    if detail["type"] == "numeric":
        if column.invalid:
            findings.append(
                _finding(
                    name,
                    "data_type_check",
                    f"{column.invalid} of {rows} values are not finite numbers "
                    f"(e.g. {', '.join(repr(v) for v in column.invalid_examples)}); "
                    "they were left out of drift",
                    detail["type_mismatch_rate"],
                    0.0,
                )
            )
        if "out_of_range_count" in detail:
            count, outside = detail["rows"], detail["out_of_range_count"]
            # Of m reference values, a new value from the same continuous distribution
            # falls outside their [min, max] with probability 2/(m+1).
            rate0 = 2.0 / (baseline["count"] + 1)
            if binomial_excess(outside, count, rate0, OUT_OF_RANGE_TOLERANCE, FINDING_P_VALUE):
                findings.append(
                    _finding(
                        name,
                        "out_of_range",
                        f"{outside} of {count} values ({outside / count:.2%}) outside the training range "
                        f"[{baseline['min']:.6g}, {baseline['max']:.6g}]; batch range "
                        f"[{detail['min']:.6g}, {detail['max']:.6g}]",
                        outside / count,
                        rate0,
                    )
                )
    elif detail["psi"] is not None:
        count, unseen = detail["rows"], detail["unseen_count"]
        rate0 = max(baseline["singleton_categories"], 0.5) / baseline["count"]
        if binomial_excess(unseen, count, rate0, UNSEEN_RATE_TOLERANCE, FINDING_P_VALUE):
            findings.append(
                _finding(
                    name,
                    "unseen_categories",
                    f"{unseen} of {count} values ({unseen / count:.2%}) are categories the training data "
                    f"never had (e.g. {', '.join(repr(v) for v in detail['unseen_examples'])})",
                    unseen / count,
                    rate0,
                )
            )
    return findings


def _p_values(detail: dict[str, Any]) -> list[float]:
    """The p-values of the tests that ran on one feature (or on the predictions)."""
    return [p for p in (detail["p_value"], detail["missing_p_value"]) if p is not None]


@dataclass
class PredictionColumns:
    """A batch's predictions, read as the prediction baseline's parts are: the labels as
    categories, the values as numbers, the positive-class probability as numbers (each
    None when that part is not compared)."""

    classes: CategoricalColumn | None = None
    values: NumericColumn | NumericCounts | None = None
    positive_probability: NumericColumn | NumericCounts | None = None


def prediction_columns(
    metadata: ModelMetadata,
    predictions: np.ndarray | None,
    probabilities: np.ndarray | None,
    baseline: dict[str, Any],
) -> PredictionColumns:
    """The parts of whole predictions (labels or values, one per row) the baseline compares."""
    # None (no predictions to compare) reads as an empty column: no PSI, no test.
    prediction_series = pd.Series(np.asarray(predictions if predictions is not None else []).ravel())
    columns = PredictionColumns()
    if "classes" in baseline:
        columns.classes = categorical_column(prediction_series)
    if "values" in baseline:
        columns.values = numeric_column(prediction_series)
    positive = metadata.positive_index
    if "positive_probability" in baseline and probabilities is not None and positive is not None:
        columns.positive_probability = numeric_column(pd.Series(np.asarray(probabilities)[:, positive]))
    return columns


def compare_predictions(
    columns: PredictionColumns, baseline: dict[str, Any], threshold: float
) -> dict[str, Any]:
    """Prediction drift; its basis is the positive-class probability when both sides have it."""
    parts: dict[str, Any] = {}
    if columns.classes is not None:
        parts["classes"] = _compare_categorical(columns.classes, baseline["classes"])
    if columns.values is not None:
        parts["values"] = _compare_numeric(columns.values, baseline["values"])
    if columns.positive_probability is not None:
        parts["positive_probability"] = _compare_numeric(
            columns.positive_probability, baseline["positive_probability"]
        )
    basis = next((name for name in ("positive_probability", "classes", "values") if name in parts), None)
    summary: dict[str, Any] = {"basis": basis, "psi": None, "p_value": None, "drifted": False}
    if basis is not None:
        # The basis's own tests only (its distribution and, when anything is missing, its
        # missing share), adjusted between themselves; the same rule as a feature.
        p_values = _p_values(parts[basis])
        psi = parts[basis]["psi"]
        p_value = min(1.0, min(p_values) * len(p_values)) if p_values else None
        summary.update(psi=psi, p_value=p_value)
        summary["drifted"] = bool(
            psi is not None and psi > threshold and p_value is not None and p_value < SIGNIFICANCE_LEVEL
        )
    summary.update(parts)
    return summary


class DriftColumns:
    """The model's feature columns of a batch, summarised exactly for the comparison.

    Fed the whole batch or a chunk at a time (``add``), it gives ``compare_drift`` the
    same columns either way; between chunks it holds counts, not rows (NumericSummary).
    """

    def __init__(self, metadata: ModelMetadata, drift_baseline: dict[str, Any]):
        self.features = [
            (feature.name, baseline)
            for feature in metadata.features
            if (baseline := drift_baseline["features"].get(feature.name)) is not None
        ]
        self.summaries: dict[str, NumericSummary | CategoricalSummary] = {
            name: NumericSummary() if baseline["type"] == "numeric" else CategoricalSummary()
            for name, baseline in self.features
        }
        self.absent: set[str] = set()
        self.rows = 0

    def add(self, batch: pd.DataFrame) -> None:
        rows = len(batch)
        self.rows += rows
        for name, _ in self.features:
            if name in batch.columns:
                column_data = batch[name]
            else:
                self.absent.add(name)
                column_data = pd.Series([None] * rows, dtype=object)
            summary = self.summaries[name]
            if isinstance(summary, NumericSummary):
                summary.add(numeric_column(column_data))
            else:
                summary.add(categorical_column(column_data))


def compute_drift(
    batch: pd.DataFrame,
    metadata: ModelMetadata,
    predictions: np.ndarray,
    probabilities: np.ndarray | None,
    drift_baseline: dict[str, Any],
    threshold: float,
    min_rows: int = MIN_ROWS,
) -> DriftResult:
    """Compare a scored batch (feature columns as the model saw them) with the baseline.

    ``predictions``: class labels (classification) or values (regression), one per row;
    ``probabilities``: as for build_drift_baseline, or None. ``drift_baseline`` is the
    ``"drift"`` section of baseline.json. Metrics are published only when the batch has
    at least ``min_rows`` rows. Every feature counts, however few of its values are
    present: its PSI is over all rows (missing ones in their own bin), so its noise
    follows the batch's rows, not the present values'. P-values are adjusted
    (Bonferroni) over every test run on the features; a feature's adjusted p-value is
    the smallest of its tests'. The prediction's tests are adjusted among themselves.
    """
    columns = DriftColumns(metadata, drift_baseline)
    columns.add(batch)
    baseline = drift_baseline["prediction"]
    prediction = compare_predictions(
        prediction_columns(metadata, predictions, probabilities, baseline), baseline, threshold
    )
    return compare_drift(columns, prediction, drift_baseline, threshold, min_rows)


def compare_drift(
    columns: DriftColumns,
    prediction: dict[str, Any],
    drift_baseline: dict[str, Any],
    threshold: float,
    min_rows: int = MIN_ROWS,
) -> DriftResult:
    """compute_drift on a batch's columns summarised by DriftColumns (whole or in chunks),
    with its prediction drift (compare_predictions, done first by a batch read in chunks
    so that its predictions are not in memory during the features' comparison)."""
    rows = columns.rows
    details: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    for name, baseline in columns.features:
        if name in columns.absent:
            findings.append(_finding(name, "missing_column", f"the batch has no column {name!r}", 1.0, 0.0))
        column = columns.summaries[name].column()
        if isinstance(column, NumericColumn):
            detail = _compare_numeric(column, baseline)
        else:
            detail = _compare_categorical(column, baseline)
        detail = {"name": name, **detail}
        findings.extend(_quality_findings(name, detail, baseline, column))
        del column
        details.append(detail)

    tests = sum(len(_p_values(detail)) for detail in details)
    for detail in details:
        p_values = _p_values(detail)
        detail["p_value_adjusted"] = min(1.0, min(p_values) * tests) if p_values else None
        detail["drifted"] = bool(
            detail["psi"] is not None
            and detail["psi"] > threshold
            and detail["p_value_adjusted"] is not None
            and detail["p_value_adjusted"] < SIGNIFICANCE_LEVEL
        )
    details.sort(key=lambda detail: (detail["psi"] is None, -(detail["psi"] or 0.0), detail["name"]))

    enough_rows = rows >= min_rows
    metrics: dict[str, float] = {}
    if enough_rows:
        counted = [d for d in details if d["psi"] is not None]
        if counted:
            metrics["DriftScore"] = max(d["psi"] for d in counted)
            metrics["DriftedFeatures"] = float(sum(1 for d in counted if d["drifted"]))
        if prediction["psi"] is not None:
            metrics["PredictionDrift"] = prediction["psi"]

    report: dict[str, Any] = {
        "status": "ok" if enough_rows else "insufficient_rows",
        "epsilon": PSI_EPSILON,
        "bins": drift_baseline["bins"],
        "threshold": threshold,
        "significance_level": SIGNIFICANCE_LEVEL,
        "adjustment": "bonferroni",
        "missing_values": MISSING_VALUES_METHOD,
        "tests": tests,
        "min_rows": min_rows,
        "rows": rows,
        "features": details,
        "prediction": prediction,
    }
    if not enough_rows:
        report["message"] = (
            f"{rows} rows is below the {min_rows} needed for drift metrics: PSI and tests are shown "
            "for information, DriftScore/DriftedFeatures/PredictionDrift are not published"
        )
    return DriftResult(metrics=metrics, report=report, findings=findings)

"""Values kept for a whole batch, spilled to disk as sorted runs and merged back: the
counts, ROC AUC, the estimated ROC AUC, prediction drift and duplicate ids they give
are what numpy, scikit-learn and a set give over all the values at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_auc_score

import modelwatch.validation as validation
from modelwatch.drift.columns import NumericCounts, numeric_column
from modelwatch.drift.comparison import _compare_numeric
from modelwatch.drift.statistics import SortedSummary
from modelwatch.estimation import Calibration, ExpectedAucCounts, PerformanceEstimator
from modelwatch.metrics import RocAucCounts
from modelwatch.sorted_runs import SortedRuns

pytestmark = pytest.mark.unit


def chunks_of(rng: np.random.Generator, count: int, decimals: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Uneven chunks (some empty) of scores with many ties, each row with a tag 0-2."""
    chunks = []
    for _ in range(count):
        rows = int(rng.integers(0, 400))
        chunks.append((rng.random(rows).round(decimals), rng.integers(0, 3, rows)))
    return chunks


def kept(chunks, budget: int | None, directory=None) -> SortedRuns:
    runs = SortedRuns(3, directory, budget_bytes=budget)
    for scores, tags in chunks:
        for tag in range(3):
            runs.add(tag, scores[tags == tag])
    return runs


@pytest.mark.parametrize("budget", [64, 4096, None])  # a run every chunk, every few, none
def test_merged_runs_count_each_distinct_value_of_each_tag_once(tmp_path, budget):
    rng = np.random.default_rng(1)
    chunks = chunks_of(rng, 40, decimals=2)
    scores = np.concatenate([chunk[0] for chunk in chunks] + [np.array([np.nan, np.inf, -np.inf, np.nan])])
    tags = np.concatenate([chunk[1] for chunk in chunks] + [np.array([0, 1, 2, 2])])
    runs = kept([*chunks, (scores[-4:], tags[-4:])], budget, tmp_path)
    assert runs.spilled == (budget is not None)

    blocks = list(runs.counts())
    values = np.concatenate([block[0] for block in blocks])
    counts = np.concatenate([block[1] for block in blocks])
    # Then the values are np.unique's (each NaN on its own, last), each in one block only
    finite = np.isfinite(values) | np.isinf(values)
    expected, expected_counts = np.unique(scores[~np.isnan(scores)], return_counts=True)
    np.testing.assert_array_equal(values[finite], expected)
    assert np.isnan(values[~finite]).sum() == 2 and np.all(np.isnan(values[-2:]))
    np.testing.assert_array_equal(counts[finite].sum(axis=1), expected_counts)
    for tag in range(3):
        np.testing.assert_array_equal(
            counts[finite][:, tag], [np.sum((scores == value) & (tags == tag)) for value in expected]
        )
    assert (runs.negative_infinite, runs.positive_infinite, runs.nan) == (1, 1, 2)
    # ... and read again, the same; one tag alone, its values
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(blocks, runs.counts(), strict=True))
    only = np.concatenate([block[1][:, 2] for block in runs.counts((2,))])
    assert only.sum() == np.sum(tags == 2)

    # And close() removes the runs' files and their directory
    spilled_to = runs.spill.path
    runs.close()
    assert spilled_to is None or not spilled_to.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_tie_across_many_runs_and_blocks_is_one_value(tmp_path, monkeypatch):
    import modelwatch.sorted_runs as sorted_runs

    monkeypatch.setattr(sorted_runs, "MERGE_BLOCK_ROWS", 8)
    monkeypatch.setattr(sorted_runs, "MIN_RUN_BLOCK_ROWS", 3)
    runs = SortedRuns(1, tmp_path, budget_bytes=80)
    for _ in range(30):
        runs.add(0, np.r_[np.full(7, 0.5), 0.25, 0.75])
    blocks = list(runs.counts())
    assert len(runs.runs) >= 15  # merged 3 values at a time from each
    values = np.concatenate([block[0] for block in blocks])
    counts = np.concatenate([block[1][:, 0] for block in blocks])
    np.testing.assert_array_equal(values, [0.25, 0.5, 0.75])
    np.testing.assert_array_equal(counts, [30, 210, 30])


@pytest.mark.parametrize("budget", [64, None])
@pytest.mark.parametrize("decimals", [1, 2, 6])  # many ties, some, hardly any
def test_roc_auc_of_spilled_runs_is_scikit_learns(tmp_path, budget, decimals):
    rng = np.random.default_rng(decimals)
    chunks = chunks_of(rng, 30, decimals)
    scores = np.concatenate([chunk[0] for chunk in chunks])
    tags = np.concatenate([chunk[1] for chunk in chunks])
    auc = RocAucCounts()
    for _, counts in kept(chunks, budget, tmp_path).counts():
        auc.add(counts[:, 0], counts[:, 1])
    labeled = tags < 2
    expected = roc_auc_score(tags[labeled] == 0, scores[labeled])
    assert auc.value() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("positive", [True, False])
def test_roc_auc_of_one_class_only_is_none(tmp_path, positive):
    runs = SortedRuns(3, tmp_path, budget_bytes=64)
    runs.add(0 if positive else 1, np.random.default_rng(3).random(100).round(1))
    auc = RocAucCounts()
    for _, counts in runs.counts():
        auc.add(counts[:, 0], counts[:, 1])
    assert auc.value() is None
    with pytest.warns(UndefinedMetricWarning):  # scikit-learn has no value either
        assert np.isnan(roc_auc_score(np.full(100, positive), np.zeros(100)))


def expected_auc_reference(scores: np.ndarray) -> float:
    """The expected ROC AUC as scikit-learn computes it: each row once as a positive with
    weight p and once as a negative with weight 1 - p."""
    return roc_auc_score(
        np.r_[np.ones(scores.size), np.zeros(scores.size)],
        np.r_[scores, scores],
        sample_weight=np.r_[scores, 1.0 - scores],
    )


@pytest.mark.parametrize("budget", [64, None])
def test_expected_roc_auc_of_spilled_runs_is_scikit_learns_weighted(tmp_path, budget):
    rng = np.random.default_rng(5)
    chunks = chunks_of(rng, 30, decimals=2)
    scores = np.concatenate([chunk[0] for chunk in chunks])
    tags = np.concatenate([chunk[1] for chunk in chunks])
    # A calibration map with flat steps: distinct raw values tie once calibrated
    calibration = Calibration.from_dict(
        {
            "format": 1,
            "classes": [0, 1],
            "calibrators": [{"class": 1, "x": [0.0, 0.3, 0.31, 0.6, 1.0], "y": [0.1, 0.2, 0.2, 0.2, 0.9]}],
        },
        [0, 1],
        1,
    )
    estimator = PerformanceEstimator(calibration)
    every, labeled = estimator.expected_auc_counts(), estimator.expected_auc_counts()
    plain = ExpectedAucCounts()
    assert isinstance(every, ExpectedAucCounts)
    for values, counts in kept(chunks, budget, tmp_path).counts():
        every.add(values, counts.sum(axis=1))
        labeled.add(values, counts[:, 0] + counts[:, 1])
        plain.add(values, counts.sum(axis=1))
    calibrated = calibration.calibrated_positive(scores)
    assert every.value() == pytest.approx(expected_auc_reference(calibrated), abs=1e-12)
    assert labeled.value() == pytest.approx(expected_auc_reference(calibrated[tags < 2]), abs=1e-12)
    assert plain.value() == pytest.approx(expected_auc_reference(scores), abs=1e-12)


def test_expected_roc_auc_with_a_map_that_does_not_keep_the_order(tmp_path):
    rng = np.random.default_rng(6)
    chunks = chunks_of(rng, 10, decimals=3)
    scores = np.concatenate([chunk[0] for chunk in chunks])
    calibration = Calibration.from_dict(
        {"format": 1, "classes": [0, 1], "calibrators": [{"class": 1, "x": [0.0, 1.0], "y": [0.9, 0.2]}]},
        [0, 1],
        1,
    )
    every = PerformanceEstimator(calibration).expected_auc_counts()
    for values, counts in kept(chunks, 64, tmp_path).counts():
        every.add(values, counts.sum(axis=1))
    expected = expected_auc_reference(calibration.calibrated_positive(scores))
    assert every.value() == pytest.approx(expected, abs=1e-12)


def test_prediction_drift_of_spilled_runs_is_the_whole_columns(tmp_path):
    rng = np.random.default_rng(8)
    chunks = chunks_of(rng, 30, decimals=3)
    scores = np.concatenate([chunk[0] for chunk in chunks] + [np.array([np.nan, np.inf])])
    runs = kept([*chunks, (scores[-2:], np.array([2, 2]))], 64, tmp_path)
    reference = np.sort(rng.beta(2, 3, 5000))
    baseline = {
        "count": 5000,
        "rows": 5000,
        "missing_rate": 0.0,
        "edges": np.quantile(reference, np.linspace(0.1, 0.9, 9)).tolist(),
        "proportions": [0.1] * 10,
        "min": float(reference[0]) + 0.05,
        "max": float(reference[-1]) - 0.05,
        "quantiles": np.quantile(reference, np.linspace(0, 1, 101)).tolist(),
    }

    def finite_blocks():
        for values, counts in runs.counts():
            finite = np.isfinite(values)
            yield values[finite], counts[finite].sum(axis=1)

    counted = NumericCounts(finite_blocks, int(np.isfinite(scores).sum()), scores.size, 1, 1, ["inf"])
    got = _compare_numeric(counted, baseline)
    expected = _compare_numeric(numeric_column(pd.Series(scores)), baseline)
    assert got == expected
    # The statistics themselves: scipy's KS statistic (a continuous reference) and numpy's counts
    from scipy import stats

    finite = np.sort(scores[np.isfinite(scores)])
    cdf = lambda x: np.interp(x, baseline["quantiles"], np.linspace(0, 1, 101))  # noqa: E731
    assert got["statistic"] == pytest.approx(stats.kstest(finite, cdf).statistic, abs=1e-12)
    summary = SortedSummary(finite.size, np.asarray(baseline["edges"]), 0.3, 0.6, np.array([]), 0)
    for values, counts in finite_blocks():
        summary.add(values, counts)
    np.testing.assert_array_equal(
        summary.bins, np.bincount(np.searchsorted(baseline["edges"], finite), minlength=10)
    )
    assert summary.outside == np.sum((finite < 0.3) | (finite > 0.6))
    assert (summary.minimum, summary.maximum) == (finite[0], finite[-1])


def test_ids_repeated_across_runs_on_disk_are_found_as_a_set_finds_them(tmp_path, monkeypatch):
    # Given hashes written to disk every ~1,000 ids, with a small Bloom filter (many "maybe"s)
    monkeypatch.setattr(validation, "IDS_IN_MEMORY", 1000)
    monkeypatch.setattr(validation, "BLOOM_BITS", 1 << 14)
    monkeypatch.setattr(validation, "PAGE_HASHES", 16)
    rng = np.random.default_rng(7)
    seen_ids = validation.SeenIds(tmp_path)
    reference: set[str] = set()
    for _ in range(60):
        drawn = rng.integers(0, 30_000, size=int(rng.integers(0, 2_000)))
        chunk = pd.Series([None if value % 97 == 0 else f"id-{value}" for value in drawn], dtype=object)
        earlier = seen_ids.add(chunk)
        # Then an id is reported as seen exactly when an earlier chunk had it
        assert earlier.tolist() == [value is not None and value in reference for value in chunk]
        reference.update(value for value in chunk if value is not None)
    assert len(seen_ids.disk_runs) > 5
    seen_ids.close()
    assert list(tmp_path.iterdir()) == []

"""The numbers behind drift, on plain arrays: PSI, bin counts, KS, chi-square, binomial excess.

No pandas, no baseline dictionaries: each function is checked in the tests against
scipy or a loop written there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

# Proportion given to an empty bin so PSI stays finite. Small enough that it does not
# blur real bins (the smallest reference bin of 10 is ~0.1), large enough that one
# empty bin adds at most ~0.7 to PSI rather than dominating it without bound.
PSI_EPSILON = 1e-4
# Up to this effective sample size the KS p-value uses the exact distribution
# (scipy's kstwo, ~2.5 ms here at 1,000); beyond it the Kolmogorov limit (kstwobign),
# within 6% (relative, p >= 1e-4) of exact there and shrinking as 1/sqrt(size), where
# kstwo costs 5-20 ms per feature at 2,000-10,000 and up to 0.2 s beyond.
KS_EXACT_MAX_SIZE = 1000
# Batch values the KS statistic looks at per block (memory, not the result).
KS_BLOCK_ROWS = 1_000_000


def population_stability_index(batch_proportions: np.ndarray, reference_proportions: np.ndarray) -> float:
    batch = np.maximum(batch_proportions, PSI_EPSILON)
    reference = np.maximum(reference_proportions, PSI_EPSILON)
    return float(np.sum((batch - reference) * np.log(batch / reference)))


def population_stability_index_with_missing(
    present_proportions: np.ndarray,
    missing_share: float,
    reference_present_proportions: np.ndarray,
    reference_missing_share: float,
) -> float:
    """PSI over the bins of the present values plus one bin for the missing ones.

    Each side's present-value proportions (summing to 1 over what is present) are
    scaled by that side's present share, so the bins and the missing bin together make
    one distribution over all rows. A feed going blank then moves PSI like any other
    shift of mass, and when neither side has missing values the missing bin is empty on
    both (epsilon against epsilon) and adds exactly nothing.
    """
    batch = np.append(np.asarray(present_proportions, dtype=float) * (1.0 - missing_share), missing_share)
    reference = np.append(
        np.asarray(reference_present_proportions, dtype=float) * (1.0 - reference_missing_share),
        reference_missing_share,
    )
    return population_stability_index(batch, reference)


def missing_share_test(missing: int, rows: int, reference_missing: int, reference_rows: int) -> float | None:
    """Two-sided p-value that the batch's and the reference's missing shares are equal.

    Fisher's exact test on the 2 x 2 table (missing, present) x (batch, reference): like
    the KS and chi-square tests it treats the reference as the sample it is, and being
    exact it stays right for the small counts missingness usually has (a few blanks
    against a reference that had none). None when no row on either side is missing: the
    table then has an empty margin and the test cannot reject.
    """
    if rows == 0 or reference_rows == 0 or missing + reference_missing == 0:
        return None
    table = [[missing, rows - missing], [reference_missing, reference_rows - reference_missing]]
    return float(min(1.0, stats.fisher_exact(table).pvalue))


def bin_counts(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in the bins (-inf, e0], (e0, e1], ..., (e_last, inf) of sorted values."""
    at_or_below = np.searchsorted(sorted_values, edges, side="right")
    return np.diff(np.concatenate(([0], at_or_below, [sorted_values.size])))


def ks_p_value(statistic: float, effective_size: int) -> float:
    if effective_size <= KS_EXACT_MAX_SIZE:
        p_value = stats.kstwo.sf(statistic, effective_size)
    else:
        p_value = stats.kstwobign.sf(statistic * math.sqrt(effective_size))
    return float(min(1.0, max(0.0, p_value)))


def kolmogorov_smirnov(
    sorted_batch: np.ndarray, sketch: np.ndarray, reference_count: int
) -> tuple[float, float] | None:
    """KS statistic of the batch against the reference sketch, and its p-value.

    Statistic: sup |F_batch - F_ref|, with F_ref the piecewise-linear CDF through the
    sketch (quantile k of K-1 at probability k/(K-1)), i.e. what
    ``scipy.stats.kstest(batch, cdf)`` computes for continuous data. Ties are handled
    exactly (repeated sketch values make F_ref jump; repeated batch values make the
    ECDF jump), where kstest's formula assumes there are none.

    p-value: the reference is a sample of ``reference_count`` values, not the true
    distribution, so the p-value is the two-sample one with the effective size
    n*m/(n+m) — what ``scipy.stats.ks_2samp(method="asymp")`` uses. A one-sample test
    against the sketch would ignore the reference's own noise and call every large
    healthy batch drifted; ks_2samp(batch, sketch) would pretend the reference had
    1,001 values whatever its size.
    """
    n = sorted_batch.size
    if n == 0 or sketch.size == 0 or reference_count == 0:
        return None
    statistic = KolmogorovSmirnov(n, sketch)
    for values, counts in distinct_blocks(sorted_batch):
        statistic.add(values, counts)
    return statistic.statistic, ks_p_value(statistic.statistic, effective_ks_size(n, reference_count))


def effective_ks_size(rows: int, reference_count: int) -> int:
    return max(1, round(rows * reference_count / (rows + reference_count)))


def distinct_blocks(
    ascending: np.ndarray, block_rows: int = KS_BLOCK_ROWS
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Sorted finite values as blocks of (distinct values, counts), about ``block_rows``
    values a block and each value in one block only."""
    start = 0
    while start < ascending.size:
        stop = min(ascending.size, start + block_rows)
        # The block goes on to the end of its last value's ties.
        stop = int(np.searchsorted(ascending, ascending[stop - 1], side="right"))
        block = ascending[start:stop]
        first = np.concatenate(([True], block[1:] != block[:-1]))
        yield block[first], np.diff(np.append(np.flatnonzero(first), block.size))
        start = stop


class KolmogorovSmirnov:
    """kolmogorov_smirnov's statistic over ``rows`` sorted values read as ascending blocks
    of distinct values with their counts (no value in two blocks): memory follows the
    block (the arrays here cost ~70 bytes a distinct value)."""

    def __init__(self, rows: int, sketch: np.ndarray):
        self.rows = rows
        self.sketch = sketch
        self.probabilities = np.linspace(0.0, 1.0, sketch.size)
        self.continuous = bool(np.all(sketch[1:] > sketch[:-1]))
        self.below = 0  # values in the blocks so far
        self.statistic = 0.0

    def add(self, values: np.ndarray, counts: np.ndarray) -> None:
        if not values.size:
            return
        at_or_below = np.cumsum(counts) + self.below
        # The ECDF just below and at each distinct value.
        ecdf_before = (at_or_below - counts) / self.rows
        ecdf_at = at_or_below / self.rows
        self.below = int(at_or_below[-1])
        if self.continuous:
            # No ties in the reference: F_ref is continuous, one np.interp does it.
            ref_cdf = np.interp(values, self.sketch, self.probabilities)
            block = float(max(np.max(np.abs(ecdf_at - ref_cdf)), np.max(np.abs(ecdf_before - ref_cdf))))
        else:
            block = ks_statistic_with_ties(values, ecdf_before, ecdf_at, self.sketch, self.probabilities)
        self.statistic = max(self.statistic, block)


@dataclass
class SortedSummary:
    """What a numeric column's comparison needs of its finite values in ascending order,
    read as blocks of distinct values with their counts (no value in two blocks): counts
    in the baseline's bins and outside its range, the extremes, and the KS statistic."""

    rows: int  # finite values
    edges: np.ndarray
    low: float  # the baseline's min and max
    high: float
    sketch: np.ndarray
    reference_count: int
    bins: np.ndarray = field(init=False)
    outside: int = 0
    minimum: float | None = None
    maximum: float | None = None
    ks: KolmogorovSmirnov | None = field(init=False)

    def __post_init__(self) -> None:
        self.bins = np.zeros(self.edges.size + 1, dtype=np.int64)
        usable = self.rows and self.sketch.size and self.reference_count
        self.ks = KolmogorovSmirnov(self.rows, self.sketch) if usable else None

    def add(self, values: np.ndarray, counts: np.ndarray) -> None:
        if not values.size:
            return
        cumulative = np.concatenate(([0], np.cumsum(counts)))
        self.bins += np.diff(
            np.concatenate(
                ([0], cumulative[np.searchsorted(values, self.edges, side="right")], cumulative[-1:])
            )
        )
        self.outside += int(cumulative[np.searchsorted(values, self.low, side="left")])
        self.outside += int(cumulative[-1] - cumulative[np.searchsorted(values, self.high, side="right")])
        if self.minimum is None:
            self.minimum = float(values[0])
        self.maximum = float(values[-1])
        if self.ks is not None:
            self.ks.add(values, counts)

    def ks_test(self) -> tuple[float, float] | None:
        if self.ks is None:
            return None
        statistic = self.ks.statistic
        return statistic, ks_p_value(statistic, effective_ks_size(self.rows, self.reference_count))


def ks_statistic_with_ties(
    values: np.ndarray,
    ecdf_before: np.ndarray,
    ecdf_at: np.ndarray,
    sketch: np.ndarray,
    probabilities: np.ndarray,
) -> float:
    """sup |F_batch - F_ref| when repeated sketch values make F_ref jump."""
    knots, first, repeats = np.unique(sketch, return_index=True, return_counts=True)
    cdf_before = probabilities[first]  # F_ref just below a knot
    cdf_at = probabilities[first + repeats - 1]  # F_ref at the knot (right-continuous)
    # F_ref at each value: 0 below the first knot, 1 above the last, linear between.
    knot = np.searchsorted(knots, values, side="right") - 1
    inner = np.clip(knot, 0, knots.size - 1)
    on_knot = (knot >= 0) & (knots[inner] == values)
    between = (knot >= 0) & (knot < knots.size - 1) & ~on_knot
    ref_at = np.where(knot < 0, 0.0, 1.0)
    ref_before = ref_at.copy()
    if between.any():
        k = knot[between]
        fraction = (values[between] - knots[k]) / (knots[k + 1] - knots[k])
        interpolated = cdf_at[k] + (cdf_before[k + 1] - cdf_at[k]) * fraction
        ref_at[between] = interpolated
        ref_before[between] = interpolated
    ref_at[on_knot] = cdf_at[knot[on_knot]]
    ref_before[on_knot] = cdf_before[knot[on_knot]]
    return float(max(np.max(np.abs(ecdf_at - ref_at)), np.max(np.abs(ecdf_before - ref_before))))


def chi_square(batch_counts: np.ndarray, reference_counts: np.ndarray) -> tuple[float, float] | None:
    """Pearson chi-square test of homogeneity of the batch's and the reference's counts.

    ``scipy.stats.chi2_contingency`` on the 2 x buckets table, without Yates'
    correction. Not ``chisquare(batch, reference shares x n)``: that treats the
    reference shares as exact, and with n comparable to the reference size it
    over-rejects (measured: 16% of healthy 2,000-row batches against one 5,000-row
    reference at alpha 0.05), for the same reason the KS p-value uses both sizes.
    A bucket empty on both sides carries no information and is dropped.
    """
    if batch_counts.sum() == 0 or reference_counts.sum() == 0:
        return None
    keep = (batch_counts + reference_counts) > 0
    if keep.sum() < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(np.vstack([batch_counts[keep], reference_counts[keep]]), correction=False)
    return float(result.statistic), float(min(1.0, result.pvalue))


def binomial_excess(count: int, rows: int, rate0: float, tolerance: float, p_value_below: float) -> bool:
    """Is count/rows above rate0 by more than tolerance and beyond sampling noise?

    Sampling noise: the one-sided binomial p-value of ``count`` or more in ``rows``
    at rate ``rate0`` is below ``p_value_below``.
    """
    if rows == 0 or count == 0:
        return False
    if count / rows - rate0 <= tolerance:
        return False
    return bool(stats.binom.sf(count - 1, rows, rate0) < p_value_below)

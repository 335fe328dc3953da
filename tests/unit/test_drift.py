"""Drift and data quality against the training baseline, checked against scipy and
against straightforward re-implementations written here, not against the drift package itself."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from modelwatch.drift import build_drift_baseline, compute_drift
from modelwatch.drift.baseline import QUANTILE_SKETCH_SIZE
from modelwatch.drift.statistics import KS_EXACT_MAX_SIZE, PSI_EPSILON
from modelwatch.model_bundle import Feature, ModelMetadata

THRESHOLD = 0.2
MIN_ROWS = 200
PLANS = ["basic", "plus", "pro", "team"]
PLAN_SHARES = [0.5, 0.3, 0.15, 0.05]

CHURN = ModelMetadata(
    name="churn",
    version="1",
    task="classification",
    model_file="model.joblib",
    id_column="record_id",
    target="churned",
    features=(
        Feature("age", "numeric"),
        Feature("income", "numeric", accepts_missing=True),
        Feature("plan", "categorical"),
    ),
    classes=(0, 1),
    positive_label=1,
)


def customers(rng: np.random.Generator, rows: int, age_shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": rng.normal(40 + age_shift, 10, rows),
            "income": rng.lognormal(10, 0.5, rows),
            "plan": rng.choice(PLANS, rows, p=PLAN_SHARES),
        }
    )


def scored(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and [P(0), P(1)] columns, in CHURN.classes order."""
    positive = rng.beta(2, 5, rows)
    return (positive > 0.5).astype(int), np.column_stack([1 - positive, positive])


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return customers(np.random.default_rng(7), 5000)


@pytest.fixture(scope="module")
def baseline(reference) -> dict:
    labels, probabilities = scored(np.random.default_rng(8), len(reference))
    built = build_drift_baseline(reference, CHURN, labels, probabilities)
    # Use the baseline as it comes back from baseline.json, as the monitor does.
    return json.loads(json.dumps(built))


def check(
    batch: pd.DataFrame, baseline: dict, seed: int = 0, probabilities: bool = True, min_rows: int = MIN_ROWS
):
    labels, probability_columns = scored(np.random.default_rng(seed), len(batch))
    return compute_drift(
        batch, CHURN, labels, probability_columns if probabilities else None, baseline, THRESHOLD, min_rows
    )


def feature(result, name: str) -> dict:
    return next(detail for detail in result.report["features"] if detail["name"] == name)


# --- independent references -------------------------------------------------------


def psi_by_loop(values: list, reference_proportions: list, bins: list[tuple[float, float]]) -> float:
    """PSI with right-closed bins, empty bins given PSI_EPSILON, one bin at a time."""
    total = 0.0
    for (low, high), reference in zip(bins, reference_proportions, strict=True):
        actual = sum(1 for v in values if low < v <= high) / len(values)
        actual, reference = max(actual, PSI_EPSILON), max(reference, PSI_EPSILON)
        total += (actual - reference) * math.log(actual / reference)
    return total


def psi_with_missing_by_loop(
    values: list, reference_proportions: list, reference_missing_rate: float, bins: list[tuple[float, float]]
) -> float:
    """PSI over every row: each bin's share of all rows, NaN rows in a bin of their own.

    The reference's bins hold its present share (1 - missing rate) between them."""
    pairs = []
    for (low, high), reference in zip(bins, reference_proportions, strict=True):
        actual = sum(1 for v in values if low < v <= high) / len(values)
        pairs.append((actual, reference * (1 - reference_missing_rate)))
    pairs.append((sum(1 for v in values if v != v) / len(values), reference_missing_rate))  # NaN != NaN
    total = 0.0
    for actual, reference in pairs:
        actual, reference = max(actual, PSI_EPSILON), max(reference, PSI_EPSILON)
        total += (actual - reference) * math.log(actual / reference)
    return total


def fisher_exact_by_loop(batch_missing: int, batch_rows: int, reference_missing: int, reference_rows: int):
    """Two-sided Fisher's exact p-value: the hypergeometric probabilities of every table
    with the same margins that is no more likely than the one observed."""
    rows, missing = batch_rows + reference_rows, batch_missing + reference_missing

    def log_probability(x: int) -> float:  # x of the missing rows fall in the batch
        def log_comb(n, k):
            return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)

        return log_comb(missing, x) + log_comb(rows - missing, batch_rows - x) - log_comb(rows, batch_rows)

    observed = log_probability(batch_missing)
    possible = range(max(0, batch_rows + missing - rows), min(batch_rows, missing) + 1)
    # The same relative tolerance for "as likely" as scipy and R use (1e-7).
    return sum(math.exp(lp) for lp in map(log_probability, possible) if lp <= observed + math.log1p(1e-7))


def open_bins(edges: list[float]) -> list[tuple[float, float]]:
    bounds = [-math.inf, *edges, math.inf]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def sketch_cdf(sketch: list[float]):
    return lambda x: np.interp(x, sketch, np.linspace(0, 1, len(sketch)))


# --- the baseline -----------------------------------------------------------------


def test_baseline_round_trips_through_json_and_holds_what_the_checks_need():
    rng = np.random.default_rng(3)
    labels, probabilities = scored(rng, 3000)
    built = build_drift_baseline(customers(rng, 3000), CHURN, labels, probabilities)

    # allow_nan=False: NaN or Infinity would not be JSON other tools can read.
    assert json.loads(json.dumps(built, allow_nan=False)) == built
    age = built["features"]["age"]
    assert len(age["edges"]) == 9 and len(age["proportions"]) == 10
    assert sum(age["proportions"]) == pytest.approx(1.0)
    assert len(age["quantiles"]) == QUANTILE_SKETCH_SIZE
    assert age["quantiles"][0] == age["min"] and age["quantiles"][-1] == age["max"]
    assert built["features"]["plan"]["categories"][0] == "basic"
    assert built["prediction"]["classes"]["categories"] == ["0", "1"]
    assert built["prediction"]["positive_label"] == "1"
    assert "positive_probability" in built["prediction"]


def test_tied_quantiles_give_fewer_bins_not_empty_ones():
    # Given a zero-inflated feature: 70% zeros, so seven deciles are 0
    rng = np.random.default_rng(5)
    values = np.where(rng.random(4000) < 0.7, 0.0, rng.exponential(1.0, 4000))
    metadata = ModelMetadata(
        name="m",
        version="1",
        task="regression",
        model_file="m",
        id_column="id",
        target="y",
        features=(Feature("spend", "numeric"),),
    )
    built = build_drift_baseline(pd.DataFrame({"spend": values}), metadata, values, None)

    spend = built["features"]["spend"]
    assert spend["edges"][0] == 0.0 and len(spend["edges"]) == len(set(spend["edges"]))
    # The first bin, (-inf, 0], holds every zero.
    assert spend["proportions"][0] == pytest.approx(np.mean(values <= 0.0))
    assert min(spend["proportions"]) > 0


# --- PSI ----------------------------------------------------------------------------


def test_numeric_psi_equals_a_loop_over_the_baseline_bins(baseline):
    batch = customers(np.random.default_rng(11), 1500, age_shift=3.0)
    result = check(batch, baseline)

    age_baseline = baseline["features"]["age"]
    expected = psi_by_loop(
        batch["age"].tolist(), age_baseline["proportions"], open_bins(age_baseline["edges"])
    )
    assert feature(result, "age")["psi"] == pytest.approx(expected, rel=1e-12)


def test_categorical_psi_equals_a_loop_over_categories_other_and_unseen(baseline):
    batch = customers(np.random.default_rng(12), 1000)
    batch.loc[:29, "plan"] = "enterprise"  # never in the reference
    result = check(batch, baseline)

    plan_baseline = baseline["features"]["plan"]
    reference = [*plan_baseline["proportions"], plan_baseline["other_proportion"], 0.0]
    plans = batch["plan"].tolist()
    actual = [plans.count(name) / len(plans) for name in plan_baseline["categories"]]
    actual += [0.0, plans.count("enterprise") / len(plans)]  # __other__, __unseen__
    expected = sum(
        (max(a, PSI_EPSILON) - max(r, PSI_EPSILON)) * math.log(max(a, PSI_EPSILON) / max(r, PSI_EPSILON))
        for a, r in zip(actual, reference, strict=True)
    )
    assert feature(result, "plan")["psi"] == pytest.approx(expected, rel=1e-12)


def test_values_outside_the_reference_range_land_in_the_edge_bins(baseline):
    age = baseline["features"]["age"]
    batch = customers(np.random.default_rng(13), 1000)
    batch.loc[:99, "age"] = age["min"] - 50  # 10% far below anything seen
    batch.loc[100:149, "age"] = age["max"] + 50  # 5% far above
    result = check(batch, baseline)

    detail = feature(result, "age")
    ages = batch["age"].tolist()
    assert detail["proportions"][0] == pytest.approx(sum(1 for v in ages if v <= age["edges"][0]) / 1000)
    assert detail["proportions"][-1] == pytest.approx(sum(1 for v in ages if v > age["edges"][-1]) / 1000)
    assert detail["proportions"][0] >= 0.10 and detail["proportions"][-1] >= 0.05
    assert sum(detail["proportions"]) == pytest.approx(1.0)
    outside = sum(1 for v in ages if v < age["min"] or v > age["max"])
    assert outside >= 150 and detail["out_of_range_count"] == outside
    out_of_range = [f for f in result.findings if f["constraint_check_type"] == "out_of_range"]
    assert [f["feature_name"] for f in out_of_range] == ["age"]
    assert out_of_range[0]["value"] == pytest.approx(outside / 1000)
    assert f"{outside} of 1000" in out_of_range[0]["description"]


def test_unseen_categories_get_their_own_bucket_and_a_finding(baseline):
    batch = customers(np.random.default_rng(14), 1000)
    batch.loc[:49, "plan"] = "enterprise"
    batch.loc[50:59, "plan"] = "  legacy "
    result = check(batch, baseline)

    detail = feature(result, "plan")
    assert detail["categories"][-1] == "__unseen__"
    assert detail["unseen_count"] == 60
    assert detail["proportions"][-1] == pytest.approx(0.06)
    assert detail["unseen_examples"] == ["enterprise", "legacy"]
    (finding,) = [f for f in result.findings if f["constraint_check_type"] == "unseen_categories"]
    assert finding["feature_name"] == "plan" and finding["value"] == pytest.approx(0.06)


def test_rare_reference_categories_beyond_the_top_twenty_are_other_not_unseen():
    # Given 25 categories: the five rarest fall outside the top 20
    names = [f"region{i:02d}" for i in range(25)]
    weights = np.linspace(2.0, 1.0, 25)
    rng = np.random.default_rng(15)
    metadata = ModelMetadata(
        name="m",
        version="1",
        task="regression",
        model_file="m",
        id_column="id",
        target="y",
        features=(Feature("region", "categorical"),),
    )
    reference = pd.DataFrame({"region": rng.choice(names, 5000, p=weights / weights.sum())})
    built = json.loads(json.dumps(build_drift_baseline(reference, metadata, np.zeros(5000), None)))
    assert len(built["features"]["region"]["categories"]) == 20

    batch = pd.DataFrame({"region": rng.choice(names, 2000, p=weights / weights.sum())})
    result = compute_drift(batch, metadata, np.zeros(2000), None, built, THRESHOLD, MIN_ROWS)

    detail = result.report["features"][0]
    assert detail["unseen_count"] == 0
    assert detail["proportions"][20] > 0.1  # __other__
    assert detail["psi"] < 0.05


def test_categories_are_compared_by_value_so_a_float_read_column_still_matches():
    # A column with a gap is read as float (1.0); the reference had ints (1).
    metadata = ModelMetadata(
        name="m",
        version="1",
        task="regression",
        model_file="m",
        id_column="id",
        target="y",
        features=(Feature("store", "categorical"),),
    )
    rng = np.random.default_rng(16)
    built = build_drift_baseline(
        pd.DataFrame({"store": rng.integers(1, 6, 3000)}), metadata, np.zeros(3000), None
    )
    batch_values = rng.integers(1, 6, 1000).astype(float)
    batch_values[:5] = np.nan
    result = compute_drift(
        pd.DataFrame({"store": batch_values}), metadata, np.zeros(1000), None, built, THRESHOLD, MIN_ROWS
    )

    detail = result.report["features"][0]
    assert detail["unseen_count"] == 0
    assert detail["missing_rate"] == pytest.approx(0.005)
    assert detail["psi"] < 0.05


# --- two-sample tests ---------------------------------------------------------------


def test_ks_statistic_and_p_value_equal_scipy_on_the_stored_sketch(baseline):
    batch = customers(np.random.default_rng(21), 800, age_shift=1.5)
    result = check(batch, baseline)

    age = baseline["features"]["age"]
    scipy_result = stats.kstest(batch["age"].to_numpy(), sketch_cdf(age["quantiles"]))
    detail = feature(result, "age")
    assert detail["test"] == "ks"
    assert detail["statistic"] == pytest.approx(scipy_result.statistic, abs=1e-12)
    # The reference is a sample of age["count"] values: the two-sample effective size.
    effective_size = round(800 * age["count"] / (800 + age["count"]))
    assert detail["p_value"] == pytest.approx(
        stats.kstwo.sf(scipy_result.statistic, effective_size), rel=1e-9
    )


@pytest.mark.parametrize("tied", [False, True])
def test_ks_over_blocks_of_the_batch_is_the_statistic_over_the_whole(monkeypatch, tied):
    from modelwatch.drift import statistics

    rng = np.random.default_rng(24)
    batch = np.sort(np.round(rng.normal(size=5000), 1 if tied else 12))  # tied: repeats straddle blocks
    sketch = np.quantile(rng.normal(0.2, 1.1, 4000), np.linspace(0, 1, 101))
    if tied:
        sketch = np.round(sketch, 1)  # repeated knots: the reference CDF jumps
    whole = statistics.kolmogorov_smirnov(batch, sketch, 4000)
    monkeypatch.setattr(statistics, "KS_BLOCK_ROWS", 37)
    assert statistics.kolmogorov_smirnov(batch, sketch, 4000) == whole
    if not tied:  # scipy's one-sample formula assumes no ties
        assert whole[0] == pytest.approx(stats.kstest(batch, sketch_cdf(sketch)).statistic, abs=1e-12)


def test_ks_on_the_sketch_agrees_with_ks_2samp_on_the_full_reference():
    rng = np.random.default_rng(22)
    metadata = ModelMetadata(
        name="m",
        version="1",
        task="regression",
        model_file="m",
        id_column="id",
        target="y",
        features=(Feature("x", "numeric"),),
    )
    reference = rng.gamma(2.0, 1.0, 20_000)
    built = build_drift_baseline(pd.DataFrame({"x": reference}), metadata, reference, None)
    batch = rng.gamma(2.1, 1.0, 30_000)
    result = compute_drift(pd.DataFrame({"x": batch}), metadata, batch, None, built, THRESHOLD, MIN_ROWS)

    detail = result.report["features"][0]
    full = stats.ks_2samp(batch, reference, method="asymp")
    # The sketch interpolates the reference CDF to within 1/1000.
    assert detail["statistic"] == pytest.approx(full.statistic, abs=1.5e-3)
    # Effective size 12,000 > KS_EXACT_MAX_SIZE: the Kolmogorov limit is used.
    effective_size = round(30_000 * 20_000 / 50_000)
    assert effective_size > KS_EXACT_MAX_SIZE
    assert detail["p_value"] == pytest.approx(
        stats.kstwobign.sf(detail["statistic"] * math.sqrt(effective_size))
    )


def test_ks_with_tied_values_matches_the_two_sample_statistic():
    # Integer features repeat values; kstest's formula assumes they do not.
    rng = np.random.default_rng(23)
    metadata = ModelMetadata(
        name="m",
        version="1",
        task="regression",
        model_file="m",
        id_column="id",
        target="y",
        features=(Feature("children", "numeric"),),
    )
    reference = rng.poisson(1.5, 10_000).astype(float)
    built = build_drift_baseline(pd.DataFrame({"children": reference}), metadata, reference, None)
    batch = rng.poisson(1.7, 3000).astype(float)
    result = compute_drift(
        pd.DataFrame({"children": batch}), metadata, batch, None, built, THRESHOLD, MIN_ROWS
    )

    two_sample = stats.ks_2samp(batch, reference)
    assert result.report["features"][0]["statistic"] == pytest.approx(two_sample.statistic, abs=1.5e-3)


def plan_counts(frame: pd.DataFrame) -> list[int]:
    return [int((frame["plan"] == name).sum()) for name in PLANS]


def test_chi_square_equals_scipy_on_the_batch_and_reference_counts(baseline, reference):
    batch = customers(np.random.default_rng(24), 1200)
    batch.loc[:199, "plan"] = "team"  # pushes 'team' up
    result = check(batch, baseline)

    # __other__ and __unseen__ are empty on both sides, so only the four plans count.
    scipy_result = stats.chi2_contingency([plan_counts(batch), plan_counts(reference)], correction=False)
    detail = feature(result, "plan")
    assert detail["test"] == "chi_square"
    assert detail["statistic"] == pytest.approx(scipy_result.statistic, rel=1e-9)
    assert detail["p_value"] == pytest.approx(scipy_result.pvalue, rel=1e-9)


def test_chi_square_counts_unseen_values_in_their_own_column(baseline, reference):
    batch = customers(np.random.default_rng(25), 1000)
    batch.loc[:19, "plan"] = "enterprise"
    result = check(batch, baseline)

    # The reference has no category seen only once, so its __unseen__ count is 0.
    assert baseline["features"]["plan"]["singleton_categories"] == 0
    table = [plan_counts(batch) + [20], plan_counts(reference) + [0]]
    scipy_result = stats.chi2_contingency(table, correction=False)
    assert feature(result, "plan")["statistic"] == pytest.approx(scipy_result.statistic, rel=1e-9)
    assert feature(result, "plan")["p_value"] == pytest.approx(scipy_result.pvalue, rel=1e-9)


def test_chi_square_treats_the_reference_as_a_sample_so_healthy_batches_pass_at_the_stated_rate():
    """Why a homogeneity test and not chisquare(batch, reference shares x n): with the
    batch as large as the reference, the reference's own noise doubles the statistic."""
    metadata = ModelMetadata(
        name="m", version="1", task="regression", model_file="m", id_column="id", target="y",
        features=(Feature("plan", "categorical"),),
    )  # fmt: skip
    ours, goodness_of_fit, trials = 0, 0, 200
    for seed in range(trials):
        rng = np.random.default_rng(400 + seed)
        reference_plans = rng.choice(PLANS, 2000, p=PLAN_SHARES)
        batch_plans = rng.choice(PLANS, 2000, p=PLAN_SHARES)
        built = build_drift_baseline(pd.DataFrame({"plan": reference_plans}), metadata, np.zeros(2000), None)
        result = compute_drift(
            pd.DataFrame({"plan": batch_plans}), metadata, np.zeros(2000), None, built, THRESHOLD, MIN_ROWS
        )

        ours += result.report["features"][0]["p_value"] < 0.05
        reference_shares = np.array([np.mean(reference_plans == name) for name in PLANS])
        batch_counts = [np.sum(batch_plans == name) for name in PLANS]
        goodness_of_fit += stats.chisquare(batch_counts, reference_shares * 2000).pvalue < 0.05
    assert ours / trials < 0.09
    assert goodness_of_fit / trials > 0.15


def test_p_values_are_bonferroni_adjusted_over_the_features_tested(baseline):
    batch = customers(np.random.default_rng(26), 400, age_shift=1.0)
    result = check(batch, baseline)

    assert result.report["tests"] == 3
    for detail in result.report["features"]:
        assert detail["p_value_adjusted"] == pytest.approx(min(1.0, detail["p_value"] * 3))


def test_bonferroni_caps_at_one():
    # Given identical batch and reference: every p-value is large
    rng = np.random.default_rng(27)
    reference = customers(rng, 2000)
    labels, probabilities = scored(rng, 2000)
    built = build_drift_baseline(reference, CHURN, labels, probabilities)
    result = compute_drift(reference, CHURN, labels, probabilities, built, THRESHOLD, MIN_ROWS)

    for detail in result.report["features"]:
        assert detail["p_value"] > 1 / 3
        assert detail["p_value_adjusted"] == 1.0


# --- what the metrics say -----------------------------------------------------------


def test_a_shifted_feature_has_psi_above_0_2_ranks_first_and_counts_as_drifted(baseline):
    batch = customers(np.random.default_rng(31), 2000, age_shift=7.0)  # 0.7 standard deviations
    result = check(batch, baseline)

    first = result.report["features"][0]
    assert first["name"] == "age"
    assert first["psi"] > 0.2 and first["drifted"] is True
    assert [d["psi"] for d in result.report["features"]] == sorted(
        (d["psi"] for d in result.report["features"]), reverse=True
    )
    assert result.metrics["DriftScore"] == first["psi"]
    assert result.metrics["DriftedFeatures"] == 1.0
    assert result.report["status"] == "ok"


def test_healthy_data_at_2000_rows_has_psi_well_below_0_1(baseline):
    for seed in range(20):
        result = check(customers(np.random.default_rng(100 + seed), 2000), baseline, seed=seed)

        assert result.metrics["DriftScore"] < 0.03
        assert result.metrics["DriftedFeatures"] == 0.0
        assert result.metrics["PredictionDrift"] < 0.03


def test_40_healthy_rows_do_not_raise_drift_although_their_psi_is_mostly_noise(baseline):
    """PSI of n healthy rows in 10 bins is biased by about 9/n (0.22 at n = 40), and an
    empty bin alone adds (0.1 - 1e-4) * ln(0.1 / 1e-4) = 0.69. So PSI > 0.2 by itself
    would call most 40-row batches drifted; requiring the adjusted p-value too brings
    it down to about the 5% family-wise level, and below min_rows nothing is published."""
    seeds = 300
    feature_psis, batches_over_threshold, batches_drifted = [], 0, 0
    for seed in range(seeds):
        result = check(customers(np.random.default_rng(1000 + seed), 40), baseline, seed=seed)

        assert result.metrics == {}
        assert result.report["status"] == "insufficient_rows"
        details = result.report["features"]
        feature_psis += [d["psi"] for d in details]
        batches_over_threshold += any(d["psi"] > THRESHOLD for d in details)
        batches_drifted += any(d["drifted"] for d in details)

    feature_psis = np.array(feature_psis)
    assert 0.15 < feature_psis.mean() < 0.40  # the 9/n bias, plus empty bins
    assert np.mean(feature_psis > THRESHOLD) > 0.3
    assert batches_over_threshold / seeds > 0.6  # PSI alone cries wolf
    assert batches_drifted / seeds < 0.10  # PSI and adjusted p-value: near the 5% level


def test_a_large_healthy_batch_against_a_small_reference_is_not_significant():
    """Why the KS p-value uses the reference size: a one-sample test treats the
    reference's own sampling noise as drift once the batch is large."""
    metadata = ModelMetadata(
        name="m",
        version="1",
        task="regression",
        model_file="m",
        id_column="id",
        target="y",
        features=(Feature("x", "numeric"),),
    )
    one_sample_rejections, our_rejections = 0, 0
    for seed in range(12):
        rng = np.random.default_rng(200 + seed)
        reference = rng.normal(0, 1, 1000)
        built = build_drift_baseline(pd.DataFrame({"x": reference}), metadata, reference, None)
        batch = rng.normal(0, 1, 30_000)
        result = compute_drift(pd.DataFrame({"x": batch}), metadata, batch, None, built, THRESHOLD, MIN_ROWS)

        detail = result.report["features"][0]
        our_rejections += detail["p_value"] < 0.05
        one_sample_rejections += (
            stats.kstest(batch, sketch_cdf(built["features"]["x"]["quantiles"])).pvalue < 0.05
        )
    assert one_sample_rejections >= 9
    assert our_rejections <= 2


# --- missing values move drift (a broken feed never looks healthy) --------------------


@pytest.fixture(scope="module")
def baseline_with_gaps() -> dict:
    """A reference in which a fifth of the incomes are missing."""
    reference = customers(np.random.default_rng(61), 5000)
    reference.loc[:999, "income"] = np.nan
    labels, probabilities = scored(np.random.default_rng(62), len(reference))
    return json.loads(json.dumps(build_drift_baseline(reference, CHURN, labels, probabilities)))


def test_a_feature_90_percent_blank_has_psi_and_drift_score_above_the_threshold(baseline):
    """Before the missing bin, the 100 incomes left were compared among themselves and,
    under 200 of them, left out of the score: DriftScore stayed at noise level."""
    batch = customers(np.random.default_rng(63), 1000)
    batch.loc[:899, "income"] = np.nan
    result = check(batch, baseline)

    income, reference = feature(result, "income"), baseline["features"]["income"]
    assert reference["missing_rate"] == 0.0
    expected = psi_with_missing_by_loop(
        batch["income"].tolist(), reference["proportions"], 0.0, open_bins(reference["edges"])
    )
    assert income["psi"] == pytest.approx(expected, rel=1e-12)
    assert expected > 5 * THRESHOLD
    assert result.metrics["DriftScore"] == income["psi"]
    assert income["drifted"] is True and result.metrics["DriftedFeatures"] == 1.0
    assert income["missing_p_value"] == pytest.approx(fisher_exact_by_loop(900, 1000, 0, 5000), abs=1e-300)
    (finding,) = [f for f in result.findings if f["constraint_check_type"] == "missing_rate_increase"]
    assert finding["feature_name"] == "income" and finding["value"] == pytest.approx(0.9)


def test_a_categorical_feature_90_percent_blank_has_the_missing_bin_in_its_psi(baseline):
    batch = customers(np.random.default_rng(64), 1000).astype({"plan": object})
    batch.loc[:899, "plan"] = ["", None] * 450  # blank text and None are both missing
    result = check(batch, baseline)

    plan_baseline = baseline["features"]["plan"]
    reference = [*plan_baseline["proportions"], plan_baseline["other_proportion"], 0.0, 0.0]
    plans = batch["plan"].tolist()
    actual = [plans.count(name) / len(plans) for name in plan_baseline["categories"]]
    actual += [0.0, 0.0, 900 / len(plans)]  # __other__, __unseen__, missing
    expected = sum(
        (max(a, PSI_EPSILON) - max(r, PSI_EPSILON)) * math.log(max(a, PSI_EPSILON) / max(r, PSI_EPSILON))
        for a, r in zip(actual, reference, strict=True)
    )
    plan = feature(result, "plan")
    assert plan["psi"] == pytest.approx(expected, rel=1e-12)
    assert plan["psi"] > THRESHOLD and plan["drifted"] is True
    assert result.metrics["DriftScore"] == plan["psi"]


def test_an_all_blank_batch_publishes_a_drift_score_above_the_threshold(baseline):
    batch = pd.DataFrame({"age": [np.nan] * 1000, "income": [np.nan] * 1000, "plan": [None] * 1000})
    result = check(batch, baseline)

    assert result.report["status"] == "ok"
    assert result.metrics["DriftScore"] > THRESHOLD
    assert result.metrics["DriftedFeatures"] == 3.0
    age = baseline["features"]["age"]
    expected = psi_with_missing_by_loop(
        batch["age"].tolist(), age["proportions"], age["missing_rate"], open_bins(age["edges"])
    )
    assert feature(result, "age")["psi"] == pytest.approx(expected, rel=1e-12)
    for detail in result.report["features"]:
        assert detail["p_value"] is None  # no values for KS or chi-square
        assert detail["p_value_adjusted"] == pytest.approx(
            min(1.0, 3 * fisher_exact_by_loop(1000, 1000, 0, 5000)), abs=1e-300
        )
    missing_findings = {
        f["feature_name"] for f in result.findings if f["constraint_check_type"] == "missing_rate_increase"
    }
    assert missing_findings == {"age", "income", "plan"}


def test_the_missing_bin_adds_nothing_when_neither_side_has_missing_values(baseline):
    batch = customers(np.random.default_rng(65), 1500, age_shift=3.0)
    result = check(batch, baseline)

    for name in ("age", "income"):
        reference = baseline["features"][name]
        without_missing_bin = psi_by_loop(
            batch[name].tolist(), reference["proportions"], open_bins(reference["edges"])
        )
        assert abs(feature(result, name)["psi"] - without_missing_bin) < 1e-9
        assert feature(result, name)["missing_p_value"] is None
    assert result.report["tests"] == 3  # no missing-share test where nothing is missing


def test_a_batch_with_the_references_own_missing_share_is_not_drift(baseline_with_gaps):
    reference = baseline_with_gaps["features"]["income"]
    assert reference["missing_rate"] == pytest.approx(0.2)
    batch = customers(np.random.default_rng(66), 2000)
    batch.loc[:399, "income"] = np.nan  # the reference's 20%
    result = check(batch, baseline_with_gaps)

    income = feature(result, "income")
    expected = psi_with_missing_by_loop(
        batch["income"].tolist(), reference["proportions"], 0.2, open_bins(reference["edges"])
    )
    assert income["psi"] == pytest.approx(expected, rel=1e-12)
    assert income["psi"] < 0.03
    assert income["missing_p_value"] == pytest.approx(1.0)  # identical shares
    assert result.metrics["DriftedFeatures"] == 0.0 and result.findings == []


def test_the_missing_share_test_is_fishers_exact_test_on_batch_and_reference_counts(baseline_with_gaps):
    batch = customers(np.random.default_rng(67), 1000)
    batch.loc[:239, "income"] = np.nan  # 24% against the reference's 20%
    result = check(batch, baseline_with_gaps)

    income = feature(result, "income")
    expected = fisher_exact_by_loop(240, 1000, 1000, 5000)
    assert 1e-4 < expected < 0.05
    assert income["missing_p_value"] == pytest.approx(expected, rel=1e-6)
    assert result.report["tests"] == 4  # three distribution tests and income's missing share
    assert income["p_value_adjusted"] == pytest.approx(
        min(1.0, 4 * min(income["p_value"], expected)), rel=1e-6
    )


def test_a_baseline_without_missing_rates_reads_as_a_reference_with_none_missing(baseline):
    old_format = json.loads(json.dumps(baseline))
    for summary in old_format["features"].values():
        del summary["missing_rate"]
    batch = customers(np.random.default_rng(68), 1000)
    batch.loc[:899, "income"] = np.nan

    assert check(batch, old_format).report["features"] == check(batch, baseline).report["features"]


# --- predictions --------------------------------------------------------------------


def test_prediction_drift_uses_the_positive_probability_when_there_is_one(baseline):
    rng = np.random.default_rng(41)
    batch = customers(rng, 1000)
    positive = rng.beta(5, 2, 1000)  # the model now scores most rows as likely churners
    probabilities = np.column_stack([1 - positive, positive])
    result = compute_drift(
        batch, CHURN, (positive > 0.5).astype(int), probabilities, baseline, THRESHOLD, MIN_ROWS
    )

    prediction = result.report["prediction"]
    assert prediction["basis"] == "positive_probability"
    reference = baseline["prediction"]["positive_probability"]
    expected = psi_by_loop(positive.tolist(), reference["proportions"], open_bins(reference["edges"]))
    assert result.metrics["PredictionDrift"] == pytest.approx(expected, rel=1e-12)
    assert result.metrics["PredictionDrift"] > 1.0
    assert prediction["classes"]["psi"] > 0.2


def test_prediction_drift_falls_back_to_classes_without_probabilities(baseline):
    result = check(customers(np.random.default_rng(42), 1000), baseline, probabilities=False)

    assert result.report["prediction"]["basis"] == "classes"
    assert result.metrics["PredictionDrift"] == result.report["prediction"]["classes"]["psi"]


def test_regression_prediction_drift_is_on_the_predicted_values():
    metadata = ModelMetadata(
        name="m",
        version="1",
        task="regression",
        model_file="m",
        id_column="id",
        target="y",
        features=(Feature("x", "numeric"),),
    )
    rng = np.random.default_rng(43)
    built = build_drift_baseline(
        pd.DataFrame({"x": rng.normal(size=3000)}), metadata, rng.normal(size=3000), None
    )
    values = rng.normal(0.5, 1.0, 1000)
    result = compute_drift(
        pd.DataFrame({"x": rng.normal(size=1000)}), metadata, values, None, built, THRESHOLD, MIN_ROWS
    )

    reference = built["prediction"]["values"]
    assert result.report["prediction"]["basis"] == "values"
    expected = psi_by_loop(values.tolist(), reference["proportions"], open_bins(reference["edges"]))
    assert result.metrics["PredictionDrift"] == pytest.approx(expected, rel=1e-12)


# --- data quality -------------------------------------------------------------------


def test_a_missing_rate_increase_is_a_finding_with_the_numbers(baseline):
    batch = customers(np.random.default_rng(51), 1000)
    batch.loc[:149, "income"] = np.nan
    result = check(batch, baseline)

    (finding,) = [f for f in result.findings if f["constraint_check_type"] == "missing_rate_increase"]
    assert finding["feature_name"] == "income"
    assert finding["value"] == pytest.approx(0.15) and finding["baseline_value"] == 0.0
    assert "150 of 1000" in finding["description"]
    income = feature(result, "income")
    assert income["missing_rate"] == pytest.approx(0.15) and income["rows"] == 850


def test_healthy_batches_have_no_findings(baseline):
    for seed in range(10):
        result = check(customers(np.random.default_rng(300 + seed), 1000), baseline)
        assert result.findings == []


def test_text_in_a_numeric_column_is_a_type_finding_not_a_crash(baseline):
    batch = customers(np.random.default_rng(52), 500)
    batch["age"] = batch["age"].astype(object)
    batch.loc[:2, "age"] = ["n/a", "forty", "n/a"]
    batch.loc[3, "age"] = "  "  # blank text is missing, not a type error
    batch.loc[4, "age"] = "41.5"  # numbers as text are numbers
    result = check(batch, baseline)

    (finding,) = [f for f in result.findings if f["constraint_check_type"] == "data_type_check"]
    assert finding["feature_name"] == "age"
    assert finding["description"].startswith("3 of 500 values")
    age = feature(result, "age")
    assert age["rows"] == 496 and age["missing_rate"] == pytest.approx(1 / 500)


def test_a_column_absent_from_the_batch_is_reported_and_counts_as_all_missing(baseline):
    batch = customers(np.random.default_rng(53), 500).drop(columns=["plan"])
    result = check(batch, baseline)

    assert any(
        f["constraint_check_type"] == "missing_column" and f["feature_name"] == "plan"
        for f in result.findings
    )
    plan = feature(result, "plan")
    assert plan["p_value"] is None and plan["missing_p_value"] < 1e-10
    assert plan["psi"] > THRESHOLD and plan["drifted"] is True
    assert result.report["tests"] == 3  # KS on age and income; plan's missing share


def test_the_report_is_json_and_states_its_method(baseline):
    result = check(customers(np.random.default_rng(54), 300), baseline)

    report = json.loads(json.dumps(result.report, allow_nan=False))
    assert report["epsilon"] == PSI_EPSILON == 1e-4
    assert (report["bins"], report["threshold"], report["min_rows"], report["rows"]) == (10, 0.2, 200, 300)
    expected_keys = {
        "name",
        "type",
        "psi",
        "test",
        "statistic",
        "p_value",
        "p_value_adjusted",
        "drifted",
        "missing_rate",
        "baseline_missing_rate",
    }
    for detail in report["features"]:
        assert expected_keys <= detail.keys()


def test_a_sorted_float_column_reads_as_numeric_column_reads_it():
    from modelwatch.drift.columns import numeric_column, numeric_column_of_sorted

    values = np.array([0.5, np.nan, np.inf, -1.0, 0.5, -np.inf, 2.0, np.nan, np.inf])
    got = numeric_column_of_sorted(np.sort(values))
    expected = numeric_column(pd.Series(values))
    np.testing.assert_array_equal(got.values, expected.values)
    assert (got.rows, got.missing, got.invalid) == (expected.rows, expected.missing, expected.invalid)
    assert got.invalid_examples == expected.invalid_examples
    finite = numeric_column_of_sorted(np.sort(np.array([3.0, 1.0])))
    assert (finite.values.tolist(), finite.missing, finite.invalid, finite.invalid_examples) == (
        [1.0, 3.0],
        0,
        0,
        [],
    )

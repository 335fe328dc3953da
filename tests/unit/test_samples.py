"""The committed sample data: reproducible from its script, and it tells its story.

The story (samplefiles/README.md): the default model is healthy on churn batches 1-4
and 10-12 and clearly over the default alarm threshold (ErrorRate > 0.2) on the worst
of the drifted batches 5-9. Error rates are computed here with scikit-learn from
actuals.csv, independently of modelwatch's metrics.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import accuracy_score, mean_absolute_error

from modelwatch.model_bundle import load_bundle
from modelwatch.modeling import ColumnOptions, build_model

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = REPO_ROOT / "samplefiles"
HEALTHY_CHURN_BATCHES = (1, 2, 3, 4, 10, 11, 12)
DRIFTED_CHURN_BATCHES = (5, 6, 7, 8, 9)
ALARM_THRESHOLD = 0.2


def sample_files(root: Path) -> list[str]:
    return sorted(
        str(path.relative_to(root)) for pattern in ("*.csv", "*.parquet") for path in root.rglob(pattern)
    )


def test_committed_files_are_exactly_what_the_seeded_script_generates(tmp_path):
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "generate_samples.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    committed = sample_files(SAMPLES)
    assert committed == sample_files(tmp_path)
    # train + actuals per scenario and the batches; retraining/ has no train.csv (its champion is
    # classification/'s model)
    assert len(committed) == 2 * 2 + 12 + 6 + 1 + 8
    assert "classification/batches/batch-12.parquet" in committed  # the upstream's new export
    different = [
        name for name in committed if (SAMPLES / name).read_bytes() != (tmp_path / name).read_bytes()
    ]
    assert different == [], "re-run `make samples` and commit the result"
    # The README's figures section is measured on the files by the same run.
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "| `actuals.csv` |" in readme
    assert (SAMPLES / "README.md").read_text(encoding="utf-8") == readme, "re-run `make samples`"


def readme_story(metric_header: str) -> dict[int, str]:
    """Batch number -> the figure samplefiles/README.md's story table gives for it."""
    lines = (SAMPLES / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.startswith("| batches |") and metric_header in line
    )
    figures = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        first, _, last = cells[0].partition("–")
        numbers = range(int(first), int(last or first) + 1)
        values = [value.strip() for value in cells[-1].split(",")]
        assert len(values) == len(numbers), line
        figures.update(zip(numbers, values, strict=True))
    return figures


def read_batch_file(path: Path) -> pd.DataFrame:
    # DuckDB reads the Parquet batch here: another reader than the pipeline's fastparquet.
    return duckdb.read_parquet(str(path)).df() if path.suffix == ".parquet" else pd.read_csv(path)


def read_batches(scenario: str) -> dict[int, pd.DataFrame]:
    folder = SAMPLES / scenario / "batches"
    paths = sorted([*folder.glob("batch-*.csv"), *folder.glob("batch-*.parquet")])
    return {int(path.stem.split("-")[1]): read_batch_file(path) for path in paths}


def test_churn_batches_follow_the_data_contract():
    train = pd.read_csv(SAMPLES / "classification" / "train.csv")
    batches = read_batches("classification")
    actuals = pd.read_csv(SAMPLES / "classification" / "actuals.csv")

    assert sorted(batches) == list(range(1, 13))
    ids = pd.concat([train["record_id"], *(batch["record_id"] for batch in batches.values())])
    assert ids.is_unique
    for batch in batches.values():
        assert "churned" not in batch.columns and "channel" in batch.columns
        assert 900 <= len(batch) <= 1100
    # Late labels: about 8% of batch rows have no actual yet, and no actual is orphaned.
    batch_ids = set(ids.iloc[len(train) :])
    assert set(actuals["record_id"]) <= batch_ids
    coverage = len(actuals) / len(batch_ids)
    assert 0.90 <= coverage <= 0.94
    # A few gaps in one numeric column, which the default pipeline imputes.
    gaps = {number: int(batch["data_usage_gb"].isna().sum()) for number, batch in batches.items()}
    assert 0 < sum(gaps.values()) < 100 and gaps[1] == 0
    # The plan nobody trained on appears only while drifting.
    new_plan = {number for number, batch in batches.items() if set(batch["plan"]) - set(train["plan"])}
    assert new_plan == set(DRIFTED_CHURN_BATCHES)


@pytest.fixture(scope="module")
def churn_model(sample_churn_model_dir: Path):
    return load_bundle(sample_churn_model_dir)


def churn_error_rates(bundle) -> dict[int, float]:
    actuals = pd.read_csv(SAMPLES / "classification" / "actuals.csv").set_index("record_id")["churned"]
    rates = {}
    for number, batch in read_batches("classification").items():
        predicted = pd.Series(
            bundle.estimator.predict(batch[bundle.metadata.feature_names]), index=batch["record_id"]
        )
        labelled = actuals.index.intersection(predicted.index)
        rates[number] = 1.0 - accuracy_score(actuals[labelled], predicted[labelled])
    return rates


def test_default_churn_model_is_healthy_then_drifts_then_recovers(churn_model):
    rates = churn_error_rates(churn_model)
    # samplefiles/README.md's story table gives these very figures.
    assert readme_story("ErrorRate") == {number: f"{rate:.3f}" for number, rate in rates.items()}
    for number in HEALTHY_CHURN_BATCHES:
        assert rates[number] < ALARM_THRESHOLD, f"batch {number}: {rates[number]:.3f}"
    drifted = [rates[number] for number in DRIFTED_CHURN_BATCHES]
    # Progressive: each drifted batch is worse than the one before.
    assert drifted == sorted(drifted)
    assert max(drifted) > 0.25 and rates[8] > 0.25
    assert max(rates[number] for number in HEALTHY_CHURN_BATCHES) < min(rates[8], rates[9]) - 0.1


def test_default_delivery_model_degrades_on_batches_4_and_5(tmp_path):
    build_model(SAMPLES / "regression" / "train.csv", ColumnOptions(target="delivery_minutes"), tmp_path)
    bundle = load_bundle(tmp_path)
    assert bundle.metadata.task == "regression"
    actuals = pd.read_csv(SAMPLES / "regression" / "actuals.csv").set_index("record_id")["delivery_minutes"]
    errors = {}
    for number, batch in read_batches("regression").items():
        predicted = pd.Series(
            bundle.estimator.predict(batch[bundle.metadata.feature_names]), index=batch["record_id"]
        )
        labelled = actuals.index.intersection(predicted.index)
        errors[number] = mean_absolute_error(actuals[labelled], predicted[labelled])
    assert readme_story("MAE") == {number: f"{error:.2f}" for number, error in errors.items()}
    healthy = np.mean([errors[number] for number in (1, 2, 3, 6)])
    assert errors[4] > 2 * healthy and errors[5] > 3 * healthy


def test_retraining_scenario_degrades_the_champion_for_good_and_a_clone_fitted_on_batch_4_recovers(
    churn_model,
):
    """The demo's second act rests on these: the champion breaks from batch 4 on, and the change is
    learnable from one labeled changed batch (a scikit-learn clone fitted here, not by modelwatch)."""
    actuals = pd.read_csv(SAMPLES / "retraining" / "actuals.csv").set_index("record_id")["churned"]
    batches = read_batches("retraining")
    assert sorted(batches) == list(range(1, 9))
    features = churn_model.metadata.feature_names
    labeled = {number: actuals.loc[batch["record_id"]].to_numpy() for number, batch in batches.items()}
    challenger = clone(churn_model.estimator).fit(batches[4][features], labeled[4])
    for number, batch in batches.items():
        champion_error = 1.0 - accuracy_score(labeled[number], churn_model.estimator.predict(batch[features]))
        if number < 4:
            assert champion_error < ALARM_THRESHOLD, f"batch {number}: {champion_error:.3f}"
        else:
            assert champion_error > ALARM_THRESHOLD + 0.1, f"batch {number}: {champion_error:.3f}"
        if number > 4:
            challenger_error = 1.0 - accuracy_score(labeled[number], challenger.predict(batch[features]))
            assert challenger_error < ALARM_THRESHOLD, f"batch {number}: {challenger_error:.3f}"

"""SignalsUnavailable: a signal the alarms watch that a batch could not compute is counted
and explained, never left to look healthy.

QualityAlarm, DriftAlarm and EstimatedQualityAlarm keep their state when no datapoint
arrives, so a model directory without its baseline or calibration, a baseline drift
cannot use, or a QualityMetric the model never publishes would leave them OK forever.
Every scored batch publishes how many of those signals it lost (0 included) and a note
for each. The models are real: the sample churn model as `make model` builds it, broken
the way a hand-assembled or stale model layer is, and a regressor written by modelwatch's
own packager.
"""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from tests.integration.conftest import Stack, load_handler, s3_event
from tests.lambda_context import LambdaContext
from tests.model_fixtures import delivery_frame, write_packaged_regressor

SAMPLES = Path(__file__).resolve().parents[2] / "samplefiles" / "classification"
NOTE = "SignalsUnavailable: "


def signal_notes(report: dict) -> list[str]:
    return [note for note in report["notes"] if note.startswith(NOTE)]


def signals_unavailable(stack: Stack, model_name: str) -> float | None:
    point = stack.statistic("SignalsUnavailable", ("Maximum", "SampleCount"), model_name=model_name)
    if point is None:
        return None
    assert point["SampleCount"] == 1  # one datapoint: the one batch
    return point["Maximum"]


def score_sample_batch(stack: Stack, monkeypatch, model_dir: Path) -> dict:
    """batch-01 of the sample (1,000 rows, so drift and the estimate are due), its actuals
    in the table, through the batch-monitor handler with the model in ``model_dir``."""
    monkeypatch.setenv("MODEL_DIR", str(model_dir))
    actuals = pd.read_csv(SAMPLES / "actuals.csv", dtype={"record_id": str})
    stack.put_actuals({row.record_id: int(row.churned) for row in actuals.itertuples()})
    stack.put("incoming/batch-01.csv", (SAMPLES / "batches" / "batch-01.csv").read_bytes())
    load_handler("batch_monitor").lambda_handler(s3_event("incoming/batch-01.csv"), LambdaContext())
    report = stack.report("incoming/batch-01.csv")
    assert report["status"] == "ok"
    return report


@pytest.fixture
def sample_copy(sample_churn_model_dir, tmp_path) -> Path:
    """A copy of the session's sample model, to break without touching the shared one."""
    return Path(shutil.copytree(sample_churn_model_dir, tmp_path / "model"))


def model_name(model_dir: Path) -> str:
    return json.loads((model_dir / "metadata.json").read_text())["name"]


def test_a_healthy_model_publishes_zero_and_no_note(stack, monkeypatch, sample_churn_model_dir):
    # Given the sample model as `make model` builds it, and the default QualityMetric (ErrorRate)
    report = score_sample_batch(stack, monkeypatch, sample_churn_model_dir)

    # Then every watched signal is there: drift, the estimate and the quality metric
    assert "DriftScore" in report["metrics_published"]
    assert "EstimatedErrorRate" in report["metrics_published"]
    assert "ErrorRate" in report["metrics_published"]
    # and SignalsUnavailable says so with a 0, so its alarm has data, and no note
    assert signals_unavailable(stack, model_name(sample_churn_model_dir)) == 0.0
    assert signal_notes(report) == []


def remove_baseline(model_dir: Path) -> None:
    (model_dir / "baseline.json").unlink()


def break_drift_baseline(model_dir: Path) -> None:
    """A numeric feature's reference without its bin edges: the drift comparison raises."""
    path = model_dir / "baseline.json"
    baseline = json.loads(path.read_text())
    name = next(n for n, entry in baseline["drift"]["features"].items() if entry["type"] == "numeric")
    del baseline["drift"]["features"][name]["edges"]
    path.write_text(json.dumps(baseline))


def remove_calibration(model_dir: Path) -> None:
    (model_dir / "calibration.json").unlink()


def empty_calibration(model_dir: Path) -> None:
    (model_dir / "calibration.json").write_text("{}")


@pytest.mark.parametrize(
    ("damage", "signal", "why", "fix"),
    [
        (
            remove_baseline,
            "drift (DriftScore, DriftedFeatures, PredictionDrift; DriftAlarm) was not computed",
            "baseline.json is missing or has no drift section",
            "re-package the model",
        ),
        (
            break_drift_baseline,
            "drift (DriftScore, DriftedFeatures, PredictionDrift; DriftAlarm) was not computed",
            "KeyError: 'edges'",
            "the function's log has the traceback",
        ),
        (
            remove_calibration,
            "the performance estimate (Estimated* metrics; EstimatedQualityAlarm) was not computed",
            "the model directory has no calibration.json",
            "re-package the model",
        ),
        (
            empty_calibration,
            "the performance estimate (Estimated* metrics; EstimatedQualityAlarm) was not computed",
            "calibration.json cannot be used",
            "re-package the model",
        ),
    ],
    ids=["no-baseline", "baseline-drift-raises", "no-calibration", "unusable-calibration"],
)
def test_a_lost_drift_or_estimate_publishes_one_and_a_note_saying_why_and_the_fix(
    stack, monkeypatch, sample_copy, damage, signal, why, fix
):
    # Given the sample model with its baseline or calibration missing or unusable
    damage(sample_copy)

    # When a 1,000-row batch is scored
    report = score_sample_batch(stack, monkeypatch, sample_copy)

    # Then the batch still counts (the quality metric is published), but the lost signal
    # is counted, and its note names it, why, and the fix
    assert "ErrorRate" in report["metrics_published"]
    assert signals_unavailable(stack, model_name(sample_copy)) == 1.0
    (note,) = signal_notes(report)
    assert signal in note and why in note and f"Fix: {fix}" in note


def test_each_lost_signal_counts(stack, monkeypatch, sample_copy):
    # Given a model directory without baseline.json and without calibration.json
    remove_baseline(sample_copy)
    remove_calibration(sample_copy)

    report = score_sample_batch(stack, monkeypatch, sample_copy)

    # Then both are counted, a note each
    assert signals_unavailable(stack, model_name(sample_copy)) == 2.0
    notes = signal_notes(report)
    assert len(notes) == 2
    assert any("drift (DriftScore" in note for note in notes)
    assert any("the performance estimate" in note for note in notes)


def score_regression_batch(stack: Stack, monkeypatch, model_dir: Path, quality_metric: str) -> dict:
    """300 fully labeled rows for the packaged delivery regressor, QualityMetric as given."""
    monkeypatch.setenv("MODEL_DIR", str(model_dir))
    monkeypatch.setenv("QUALITY_METRIC", quality_metric)
    frame, minutes = delivery_frame(300, seed=41)
    frame.insert(0, "record_id", [f"d-{index:04d}" for index in range(len(frame))])
    stack.put_actuals(
        {
            record_id: Decimal(f"{value:.1f}")
            for record_id, value in zip(frame["record_id"], minutes, strict=True)
        }
    )
    stack.put("incoming/delivery.csv", frame.to_csv(index=False))
    load_handler("batch_monitor").lambda_handler(s3_event("incoming/delivery.csv"), LambdaContext())
    report = stack.report("incoming/delivery.csv")
    assert report["status"] == "ok"
    return report


def test_a_regressor_watched_on_error_rate_publishes_one_and_says_which_metrics_it_has(
    stack, monkeypatch, tmp_path
):
    # Given a regressor packaged by modelwatch (drift baseline included) deployed with the
    # template's default QualityMetric, ErrorRate, which only classifiers publish
    model_dir = tmp_path / "regressor"
    write_packaged_regressor(model_dir)

    report = score_regression_batch(stack, monkeypatch, model_dir, "ErrorRate")

    # Then its drift is there, ErrorRate is not, and that is the one signal counted missing
    assert "DriftScore" in report["metrics_published"] and "MAE" in report["metrics_published"]
    assert "ErrorRate" not in report["metrics_published"]
    assert signals_unavailable(stack, "delivery-test") == 1.0
    (note,) = signal_notes(report)
    assert "QualityMetric 'ErrorRate' (QualityAlarm) is never published for this model" in note
    assert "classification metric and the model is a regressor" in note
    assert "(MAE, MSE, RMSE, MAPE, MeanError, R2)" in note and "modelwatch model check" in note


def test_a_regressor_watched_on_a_metric_it_publishes_publishes_zero(stack, monkeypatch, tmp_path):
    model_dir = tmp_path / "regressor"
    write_packaged_regressor(model_dir)

    report = score_regression_batch(stack, monkeypatch, model_dir, "MAE")

    # A regressor has no estimate by design: that is not a lost signal
    assert signals_unavailable(stack, "delivery-test") == 0.0
    assert signal_notes(report) == []

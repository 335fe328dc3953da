"""Estimated performance (CBPE): calibration.json is scikit-learn's isotonic fit on the
reference, and the estimates equal a straightforward implementation of the documented
method (NannyML's "how it works" page), written out row by row below, on the same
calibrated probabilities."""

from __future__ import annotations

import json
import math
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelwatch.estimation import Calibration
from modelwatch.model_bundle import load_bundle
from modelwatch.modeling import ColumnOptions, package_model
from modelwatch.scoring import Scorer, predict
from modelwatch.validation import validate_batch
from tests.model_fixtures import CATEGORICAL, NUMERIC, churn_frame, write_regressor

FEATURES = NUMERIC + CATEGORICAL
MIN_LABELED_ROWS = 30


def fitted_pipeline(train: pd.DataFrame, target: str, regularisation: float) -> object:
    preprocess = ColumnTransformer(
        [
            ("numeric", StandardScaler(), NUMERIC),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ]
    )
    return make_pipeline(preprocess, LogisticRegression(C=regularisation, max_iter=1000)).fit(
        train[FEATURES], train[target]
    )


def packaged(directory: Path, model: object, reference: pd.DataFrame, target: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, directory / "fitted.joblib")
    reference.to_csv(directory / "reference.csv", index=False)
    package_model(
        directory / "fitted.joblib",
        directory / "reference.csv",
        ColumnOptions(target=target),
        directory / "model",
    )
    return directory / "model"


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> dict:
    # A strongly regularised logistic regression is under-confident: its probabilities
    # need the calibration, so the test exercises a real isotonic map, not the identity.
    model = fitted_pipeline(churn_frame(1500, seed=1), "churned", regularisation=0.01)
    reference = churn_frame(2000, seed=3, id_prefix="ref")
    model_dir = packaged(tmp_path_factory.mktemp("binary"), model, reference, "churned")
    return {"model_dir": model_dir, "model": model, "reference": reference}


def scored(
    model_dir: Path, frame: pd.DataFrame, actuals: dict | None = None, min_rows: int = MIN_LABELED_ROWS
):
    bundle = load_bundle(model_dir)
    validated = validate_batch(frame, bundle.metadata, "batch.csv", 5)
    predictions = predict(bundle, validated.features, "batch.csv")
    return bundle, predictions, Scorer(bundle, min_rows, 0.2).measure(validated, predictions, actuals or {})


def shifted_batch(rows: int, seed: int) -> pd.DataFrame:
    """New customers, pricier and newer than the reference's: the inputs moved."""
    frame = churn_frame(rows, seed=seed, id_prefix=f"b{seed}")
    frame["monthly_charges"] = (frame["monthly_charges"] + 15).round(2)
    frame["tenure_months"] = (frame["tenure_months"] * 0.6).round(0)
    return frame


# --------------------------------------------------------------------------- the reference


def test_calibration_json_is_scikit_learns_isotonic_fit_on_the_reference_with_its_realized_metrics(binary):
    document = json.loads((binary["model_dir"] / "calibration.json").read_text())
    reference, model = binary["reference"], binary["model"]
    raw = model.predict_proba(reference[FEATURES])[:, 1]
    outcome = reference["churned"].to_numpy()

    (entry,) = document["calibrators"]  # binary: the positive class's map
    assert entry["class"] == 1 and entry["calibrated"] is True
    assert entry["ece_calibrated"] < entry["ece_raw"]
    expected = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(raw, outcome)
    np.testing.assert_allclose(entry["x"], expected.X_thresholds_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(entry["y"], expected.y_thresholds_, rtol=0, atol=1e-12)

    predicted = model.predict(reference[FEATURES])
    realized = document["reference"]["realized"]
    assert document["reference"]["rows"] == len(reference)
    assert realized["ErrorRate"] == pytest.approx(1 - accuracy_score(outcome, predicted), abs=1e-12)
    assert realized["Precision"] == pytest.approx(precision_score(outcome, predicted), abs=1e-12)
    assert realized["Recall"] == pytest.approx(recall_score(outcome, predicted), abs=1e-12)
    assert realized["F1"] == pytest.approx(f1_score(outcome, predicted), abs=1e-12)
    assert realized["ROCAUC"] == pytest.approx(roc_auc_score(outcome, raw), abs=1e-12)
    # The standard deviation of 0/1 rows at rate e is sqrt(e (1 - e)).
    error = realized["ErrorRate"]
    assert document["reference"]["standard_deviation"]["ErrorRate"] == pytest.approx(
        math.sqrt(error * (1 - error)), abs=1e-12
    )


# --------------------------------------------------------------------------- CBPE, row by row


def straightforward_binary_cbpe(probability: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """The documented algorithm as written: per row, then summed; ROC AUC over every threshold."""
    true_positive = false_positive = true_negative = false_negative = 0.0
    for p, label in zip(probability, predicted, strict=True):
        wrong = abs(label - p)
        right = 1 - wrong
        if label == 1:
            true_positive += right
            false_positive += wrong
        else:
            true_negative += right
            false_negative += wrong
    n = len(probability)
    precision = true_positive / (true_positive + false_positive)
    recall = true_positive / (true_positive + false_negative)
    points = [(0.0, 0.0)]  # a threshold above every probability: nothing predicted positive
    for threshold in sorted(set(probability)):
        above = probability >= threshold
        tp, fn = probability[above].sum(), probability[~above].sum()
        fp, tn = (1 - probability[above]).sum(), (1 - probability[~above]).sum()
        points.append((fp / (fp + tn), tp / (tp + fn)))
    points.sort()
    auc = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False))
    return {
        "Accuracy": (true_positive + true_negative) / n,
        "ErrorRate": (false_positive + false_negative) / n,
        "Precision": precision,
        "Recall": recall,
        "F1": 2 * precision * recall / (precision + recall),
        "ROCAUC": auc,
        "confusion": [[true_negative, false_positive], [false_negative, true_positive]],
    }


def test_binary_estimates_equal_a_straightforward_cbpe_on_the_same_calibrated_probabilities(binary):
    # Given a batch whose inputs moved, and no labels at all
    batch = shifted_batch(900, seed=11)
    _, predictions, measured = scored(binary["model_dir"], batch.drop(columns="churned"))

    # The same calibrated probabilities, by scikit-learn's isotonic fit on the reference
    reference, model = binary["reference"], binary["model"]
    calibrator = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(
        model.predict_proba(reference[FEATURES])[:, 1], reference["churned"]
    )
    probability = calibrator.predict(model.predict_proba(batch[FEATURES])[:, 1])
    expected = straightforward_binary_cbpe(probability, model.predict(batch[FEATURES]))

    report = measured.estimation
    assert report["rows"] == 900 and report["versus_realized"] is None
    for name in ("ErrorRate", "Accuracy", "Precision", "Recall", "F1", "ROCAUC"):
        assert report["metrics"][name]["estimated"] == pytest.approx(expected[name], abs=1e-9), name
        assert measured.published[f"Estimated{name}"].value == pytest.approx(expected[name], abs=1e-9), name
    np.testing.assert_allclose(
        report["expected_confusion_matrix"]["counts"], expected["confusion"], atol=1e-9
    )
    # ROC AUC once more, by scikit-learn: each row is a positive with weight p and a negative with 1 - p.
    weighted = roc_auc_score(
        np.r_[np.ones(900), np.zeros(900)],
        np.r_[probability, probability],
        sample_weight=np.r_[probability, 1 - probability],
    )
    assert report["metrics"]["ROCAUC"]["estimated"] == pytest.approx(weighted, abs=1e-9)
    # Published row-weighted, like ErrorRate: Sum over SampleCount is the estimate.
    error = measured.published["EstimatedErrorRate"]
    assert (error.rows, error.row_sum) == (900, pytest.approx(expected["ErrorRate"] * 900, abs=1e-7))
    # The band: ±3 standard errors = the reference's deviation (binomial at the estimate
    # when larger) / sqrt(rows)
    reference_error = json.loads((binary["model_dir"] / "calibration.json").read_text())["reference"][
        "realized"
    ]["ErrorRate"]
    estimate = expected["ErrorRate"]
    deviation = max(math.sqrt(reference_error * (1 - reference_error)), math.sqrt(estimate * (1 - estimate)))
    band = report["metrics"]["ErrorRate"]
    assert band["lower"] == pytest.approx(estimate - 3 * deviation / 30, abs=1e-9)  # sqrt(900) = 30
    assert band["upper"] == pytest.approx(estimate + 3 * deviation / 30, abs=1e-9)
    assert predictions.probabilities is not None


def test_multiclass_accuracy_is_the_mean_calibrated_probability_of_the_predicted_class(tmp_path):
    # Given a three-class model (the plan a customer will move to), packaged with a reference
    def plans(rows: int, seed: int) -> pd.DataFrame:
        frame = churn_frame(rows, seed=seed, id_prefix=f"m{seed}")
        rng = np.random.default_rng(seed)
        score = 0.04 * (frame["monthly_charges"] - 70) - 0.03 * (frame["tenure_months"] - 36)
        frame["next_plan"] = np.where(
            score + rng.normal(0, 0.8, rows) > 0.5,
            "premium",
            np.where(score + rng.normal(0, 0.8, rows) < -0.5, "basic", "plus"),
        )
        return frame.drop(columns="churned")

    model = fitted_pipeline(plans(3000, 21), "next_plan", regularisation=1.0)
    reference = plans(2000, 22)
    model_dir = packaged(tmp_path, model, reference, "next_plan")
    batch = plans(700, 23)

    _, _, measured = scored(model_dir, batch.drop(columns="next_plan"))

    # Independently: each class's map (isotonic on the reference where calibration.json
    # kept one, else the raw column), rows normalised to sum to 1
    document = json.loads((model_dir / "calibration.json").read_text())
    classes = list(model.classes_)
    raw_reference, raw_batch = model.predict_proba(reference[FEATURES]), model.predict_proba(batch[FEATURES])
    columns = []
    for index, label in enumerate(classes):
        (entry,) = [e for e in document["calibrators"] if e["class"] == label]
        if entry["calibrated"]:
            fitted = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(
                raw_reference[:, index], (reference["next_plan"] == label).astype(float)
            )
            columns.append(fitted.predict(raw_batch[:, index]))
        else:
            columns.append(raw_batch[:, index])
    calibrated = np.column_stack(columns)
    calibrated = calibrated / calibrated.sum(axis=1, keepdims=True)
    predicted = [classes.index(label) for label in model.predict(batch[FEATURES])]
    accuracy = np.mean([calibrated[row, code] for row, code in enumerate(predicted)])

    estimated = measured.estimation["metrics"]
    assert set(estimated) == {"ErrorRate", "Accuracy"}  # binary-only metrics are not made up
    assert estimated["Accuracy"]["estimated"] == pytest.approx(accuracy, abs=1e-9)
    assert estimated["ErrorRate"]["estimated"] == pytest.approx(1 - accuracy, abs=1e-9)
    assert set(measured.estimated) == {"EstimatedErrorRate", "EstimatedAccuracy"}


# --------------------------------------------------------------------------- with labels


def test_labels_from_the_calibrated_probabilities_sit_within_the_band_and_a_changed_relation_does_not(binary):
    # Given a shifted batch whose labels follow the model's calibrated probabilities (the
    # relation the reference showed) ...
    batch = shifted_batch(1500, seed=12)
    bundle, predictions, measured = scored(binary["model_dir"], batch.drop(columns="churned"))
    rng = np.random.default_rng(5)
    probability = Calibration.from_dict(bundle.calibration, bundle.metadata.classes, 1).apply(
        predictions.probabilities
    )[:, 1]
    consistent = (rng.random(1500) < probability).astype(int)
    # ... and the same rows where premium customers now churn when they used to stay,
    # and stay when they used to churn (the relation changed: concept drift)
    changed = np.where(batch["plan"] == "premium", 1 - consistent, consistent)
    ids = batch["record_id"]

    _, _, held = scored(
        binary["model_dir"], batch.drop(columns="churned"), dict(zip(ids, consistent, strict=True))
    )
    _, _, broken = scored(
        binary["model_dir"], batch.drop(columns="churned"), dict(zip(ids, changed, strict=True))
    )

    error = held.estimation["versus_realized"]["metrics"]["ErrorRate"]
    assert error["within_band"] is True and held.estimation["findings"] == []
    assert error["realized"] == pytest.approx(held.quality["ErrorRate"].value)
    drifted = broken.estimation["versus_realized"]["metrics"]["ErrorRate"]
    assert drifted["realized"] > drifted["upper"]
    (finding,) = broken.estimation["findings"]
    assert finding["finding"] == "concept_drift"
    assert (
        "concept drift" in finding["description"] and "retraining on recent labels" in finding["description"]
    )
    # Both labeled: realized and estimated metrics side by side in the measurement
    assert {"ErrorRate", "EstimatedErrorRate"} <= set(broken.published)


# --------------------------------------------------------------------------- no estimate


def test_a_model_packaged_before_calibration_is_scored_without_estimates_and_the_report_says_why(
    classifier_dir,
):
    frame = churn_frame(200, seed=4).drop(columns="churned")
    _, _, measured = scored(classifier_dir, frame, {"r-00001": 1} | {f"r-{i:05d}": 0 for i in range(2, 60)})
    assert (
        "calibration.json" in measured.estimation["skipped"]
        and "model package" in measured.estimation["skipped"]
    )
    assert not [name for name in measured.published if name.startswith("Estimated")]
    assert "ErrorRate" in measured.quality  # the realized metrics are unaffected


def test_regression_models_get_no_estimate_and_no_numbers(tmp_path):
    write_regressor(tmp_path)
    frame = pd.DataFrame({"record_id": ["a", "b"], "distance_km": [3.0, 5.0], "items": [1, 2]})
    _, _, measured = scored(tmp_path, frame, min_rows=1)
    assert "regression" in measured.estimation["skipped"]
    assert not [name for name in measured.published if name.startswith("Estimated")]


def test_a_batch_smaller_than_min_labeled_rows_publishes_no_estimate(binary):
    _, _, measured = scored(binary["model_dir"], churn_frame(29, seed=6).drop(columns="churned"))
    assert "MinLabeledRows=30" in measured.estimation["skipped"]
    assert not measured.estimated


@pytest.mark.parametrize("block", [1, 7, 1_000_000])
def test_expected_roc_auc_a_block_at_a_time_is_the_trapezoids_over_every_threshold(block, monkeypatch):
    import modelwatch.estimation as estimation

    rng = np.random.default_rng(block)
    raw = np.round(rng.random(2000), 2)  # many ties, some straddling blocks
    x, y = np.array([0.0, 0.3, 0.6, 1.0]), np.array([0.05, 0.2, 0.7, 0.9])
    calibrated = np.interp(raw, x, y)
    # Straightforward: at each distinct threshold t, rows >= t are predicted positive.
    thresholds = np.unique(calibrated)[::-1]
    true_positives = np.array([calibrated[calibrated >= t].sum() for t in thresholds])
    false_positives = np.array([(1 - calibrated[calibrated >= t]).sum() for t in thresholds])
    expected = np.trapezoid(
        np.r_[0.0, true_positives / calibrated.sum()], np.r_[0.0, false_positives / (1 - calibrated).sum()]
    )
    monkeypatch.setattr(estimation, "AUC_BLOCK_ROWS", block)
    got = estimation.expected_roc_auc_of_sorted(np.sort(raw), lambda values: np.interp(values, x, y))
    assert got == pytest.approx(expected, abs=1e-12)
    assert estimation.expected_roc_auc(calibrated) == pytest.approx(expected, abs=1e-12)

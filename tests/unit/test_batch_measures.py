"""A batch fed to BatchMeasures in chunks measures what scikit-learn (and the whole-batch
drift comparison) compute over all its rows at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from modelwatch.calibration import fit_calibration
from modelwatch.drift import build_drift_baseline, compute_drift
from modelwatch.model_bundle import Feature, ModelBundle, ModelMetadata
from modelwatch.scoring import BatchMeasures, Measurement, Scorer, predict
from modelwatch.validation import validate_batch

pytestmark = pytest.mark.unit

ROWS = 3000
CHUNKS = (0, 700, 701, 1900, ROWS)  # uneven, one chunk a single row


def features(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": [f"r{seed}-{row}" for row in range(rows)],
            "a": rng.normal(size=rows).round(2),
            "b": rng.choice(["x", "y", "z"], rows),
        }
    )


def numeric(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"a": frame["a"], "b": frame["b"].map({"x": 0, "y": 1, "z": 2})})


class OnNumbers:
    """The model, fed the categorical feature as a number."""

    def __init__(self, model):
        self.model = model

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict(numeric(frame))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(numeric(frame))


def bundle(task: str, classes: int = 2) -> tuple[ModelBundle, pd.DataFrame, np.ndarray]:
    """A fitted model with its drift baseline and (classifiers) calibration, and a batch
    with a target for it."""
    train = features(2000, seed=1)
    batch = features(ROWS, seed=2)
    rng = np.random.default_rng(3)

    def target(frame: pd.DataFrame) -> np.ndarray:
        signal = numeric(frame)["a"] * 2 + numeric(frame)["b"] + rng.normal(size=len(frame))
        if task == "regression":
            return signal.to_numpy()
        return pd.cut(signal, classes, labels=False).to_numpy().astype(int)

    metadata = ModelMetadata(
        name="m",
        version="1",
        task=task,
        model_file="model.joblib",
        id_column="id",
        target="y",
        features=(Feature("a", "numeric", True), Feature("b", "categorical", True)),
        classes=tuple(range(classes)) if task == "classification" else (),
        positive_label=1 if task == "classification" and classes == 2 else None,
    )
    if task == "regression":
        model = HistGradientBoostingRegressor(max_iter=20).fit(numeric(train), target(train))
    else:
        model = HistGradientBoostingClassifier(max_iter=20).fit(numeric(train), target(train))

    estimator = OnNumbers(model)
    reference = features(2000, seed=4)
    reference_predictions = estimator.predict(reference)
    probabilities = estimator.predict_proba(reference) if task == "classification" else None
    drift = build_drift_baseline(reference[["a", "b"]], metadata, reference_predictions, probabilities)
    calibration = None
    if task == "classification":
        calibration = fit_calibration(
            probabilities,
            target(reference),
            reference_predictions,
            list(range(classes)),
            metadata.positive_label,
        )
    built = ModelBundle(
        metadata=metadata, estimator=estimator, baseline={"drift": drift}, calibration=calibration
    )
    return built, batch, target(batch)


def measured_in_chunks(
    built: ModelBundle, batch: pd.DataFrame, actuals: dict
) -> tuple[Measurement, np.ndarray]:
    scorer = Scorer(built, min_labeled_rows=10, drift_threshold=0.2)
    measures = BatchMeasures(scorer)
    labels = []
    for start, stop in zip(CHUNKS, CHUNKS[1:], strict=False):
        validated = validate_batch(batch.iloc[start:stop].reset_index(drop=True), built.metadata, "b.csv", 5)
        predictions = predict(built, validated.features, "b.csv")
        labels.append(predictions.labels)
        measures.add(validated, predictions, actuals)
    return measures.finish([]), np.concatenate(labels)


@pytest.mark.parametrize("classes", [2, 3])
def test_a_classifier_fed_in_chunks_has_scikit_learns_metrics_over_the_whole_batch(classes):
    built, batch, truth = bundle("classification", classes)
    labeled = np.arange(ROWS) % 3 != 0  # two rows in three have a label
    actuals = {
        row_id: int(value) for row_id, value, has in zip(batch["id"], truth, labeled, strict=True) if has
    }
    got, _ = measured_in_chunks(built, batch, actuals)

    y_true = truth[labeled]
    frame = batch[["a", "b"]]
    y_pred = built.estimator.predict(frame)[labeled]
    probabilities = built.estimator.predict_proba(frame)[labeled]
    average = {"average": "binary", "pos_label": 1} if classes == 2 else {"average": "macro"}
    expected = {
        "Accuracy": skm.accuracy_score(y_true, y_pred),
        "ErrorRate": 1 - skm.accuracy_score(y_true, y_pred),
        "Precision": skm.precision_score(y_true, y_pred, zero_division=0, **average),
        "Recall": skm.recall_score(y_true, y_pred, zero_division=0, **average),
        "F1": skm.f1_score(y_true, y_pred, zero_division=0, **average),
        "LogLoss": skm.log_loss(y_true, probabilities, labels=list(range(classes))),
    }
    if classes == 2:
        expected["ROCAUC"] = skm.roc_auc_score(y_true, probabilities[:, 1])
    assert set(got.quality) == set(expected)
    for name, value in expected.items():
        assert got.quality[name].value == pytest.approx(value, abs=1e-9), name
    assert got.rows_scored == ROWS and got.rows_labeled == int(labeled.sum())

    # The same rows in one piece: the estimate and the drift report agree to 1e-9.
    scorer = Scorer(built, min_labeled_rows=10, drift_threshold=0.2)
    validated = validate_batch(batch, built.metadata, "b.csv", 5)
    whole = scorer.measure(validated, predict(built, validated.features, "b.csv"), actuals)
    assert "skipped" not in got.estimation and "error" not in got.drift
    assert_same(got.estimation, whole.estimation)
    assert_same(got.drift, whole.drift)
    assert got.drift["prediction"]["basis"] == ("positive_probability" if classes == 2 else "classes")


def test_a_regressor_fed_in_chunks_has_scikit_learns_metrics_and_the_whole_batchs_prediction_drift():
    built, batch, truth = bundle("regression")
    labeled = np.arange(ROWS) % 4 != 1
    actuals = {
        row_id: float(value) for row_id, value, has in zip(batch["id"], truth, labeled, strict=True) if has
    }
    got, predictions = measured_in_chunks(built, batch, actuals)

    y_true, y_pred = truth[labeled], predictions[labeled]
    expected = {
        "MAE": skm.mean_absolute_error(y_true, y_pred),
        "MSE": skm.mean_squared_error(y_true, y_pred),
        "RMSE": skm.root_mean_squared_error(y_true, y_pred),
        "MAPE": skm.mean_absolute_percentage_error(y_true, y_pred),
        "R2": skm.r2_score(y_true, y_pred),
    }
    for name, value in expected.items():
        assert got.quality[name].value == pytest.approx(value, abs=1e-9), name
    drift = compute_drift(batch[["a", "b"]], built.metadata, predictions, None, built.baseline["drift"], 0.2)
    assert got.drift["prediction"]["basis"] == "values"
    assert_same(got.drift, drift.report)


def assert_same(got, expected, where="") -> None:
    if isinstance(expected, dict):
        assert set(got) == set(expected), where
        for key in expected:
            assert_same(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list | tuple):
        assert len(got) == len(expected), where
        for index, (left, right) in enumerate(zip(got, expected, strict=True)):
            assert_same(left, right, f"{where}[{index}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, abs=1e-9, nan_ok=True), where
    else:
        assert got == expected, where

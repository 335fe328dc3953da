"""Metrics equal scikit-learn's (computed independently here) on the same rows."""

import numpy as np
import pytest
from sklearn import metrics as skm

from modelwatch.metrics import (
    PER_ROW_METRICS,
    QUALITY_METRICS,
    classification_metrics,
    publishable_metrics,
    regression_metrics,
    why_unpublishable,
)


def test_binary_classification_metrics_equal_scikit_learn():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 2, 500)
    proba = np.clip(y_true * 0.6 + rng.uniform(0, 0.5, 500), 0.01, 0.99)
    y_pred = (proba > 0.5).astype(int)
    probabilities = np.column_stack([1 - proba, proba])
    got = classification_metrics(y_true, y_pred, probabilities, classes=[0, 1], positive_label=1)
    expected = {
        "Accuracy": skm.accuracy_score(y_true, y_pred),
        "ErrorRate": 1 - skm.accuracy_score(y_true, y_pred),
        "Precision": skm.precision_score(y_true, y_pred),
        "Recall": skm.recall_score(y_true, y_pred),
        "F1": skm.f1_score(y_true, y_pred),
        "ROCAUC": skm.roc_auc_score(y_true, proba),
        "LogLoss": skm.log_loss(y_true, probabilities),
    }
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name].value == pytest.approx(value, abs=1e-12), name


def test_per_row_metrics_carry_sum_and_count_whose_ratio_is_the_value():
    y_true = np.array([1, 0, 1, 1])
    y_pred = np.array([1, 1, 0, 1])
    got = classification_metrics(y_true, y_pred, None, classes=[0, 1], positive_label=1)
    assert got["ErrorRate"].row_sum == 2 and got["ErrorRate"].rows == 4
    assert (got["ErrorRate"].row_min, got["ErrorRate"].row_max) == (0.0, 1.0)
    assert "ROCAUC" not in got and "LogLoss" not in got


def test_multiclass_uses_macro_average_and_text_labels():
    y_true = np.array(["a", "b", "c", "a", "b", "c", "a"], dtype=object)
    y_pred = np.array(["a", "b", "b", "a", "c", "c", "b"], dtype=object)
    got = classification_metrics(y_true, y_pred, None, classes=["a", "b", "c"], positive_label=None)
    assert got["F1"].value == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert got["Precision"].value == pytest.approx(skm.precision_score(y_true, y_pred, average="macro"))


def test_regression_metrics_equal_scikit_learn_including_mape_with_a_zero_actual():
    rng = np.random.default_rng(4)
    y_true = rng.uniform(5, 60, 300)
    y_true[7] = 0.0
    y_pred = y_true + rng.normal(1, 4, 300)
    got = regression_metrics(y_true, y_pred)
    expected = {
        "MAE": skm.mean_absolute_error(y_true, y_pred),
        "MSE": skm.mean_squared_error(y_true, y_pred),
        "RMSE": np.sqrt(skm.mean_squared_error(y_true, y_pred)),
        "MAPE": skm.mean_absolute_percentage_error(y_true, y_pred),
        "MeanError": float(np.mean(y_pred - y_true)),
        "R2": skm.r2_score(y_true, y_pred),
    }
    for name, value in expected.items():
        assert got[name].value == pytest.approx(value, rel=1e-12), name
        if name in PER_ROW_METRICS:
            assert got[name].row_sum / got[name].rows == pytest.approx(value, rel=1e-9), name


def test_multiclass_macro_average_over_classes_present_like_scikit_learn():
    # Class "c" appears in neither the actuals nor the predictions of this batch.
    y_true = np.array(["a", "b", "a", "b", "a"], dtype=object)
    y_pred = np.array(["a", "b", "b", "b", "a"], dtype=object)
    got = classification_metrics(y_true, y_pred, None, classes=["a", "b", "c"], positive_label=None)
    for name, function in (
        ("F1", skm.f1_score),
        ("Precision", skm.precision_score),
        ("Recall", skm.recall_score),
    ):
        assert got[name].value == pytest.approx(function(y_true, y_pred, average="macro")), name


@pytest.mark.parametrize("rows, distinct", [(50, 50), (5000, 40), (200_000, 200_000)])
def test_roc_auc_is_scikit_learns_with_and_without_ties(rows, distinct):
    from modelwatch.metrics import roc_auc

    rng = np.random.default_rng(rows)
    positive = rng.random(rows) < 0.3
    # Few distinct scores make many ties, across the classes too.
    scores = np.round(rng.random(rows) * (distinct - 1)) / (distinct - 1) + positive * 0.2
    assert roc_auc(positive, scores) == pytest.approx(skm.roc_auc_score(positive, scores), abs=1e-12)


def test_log_loss_over_slices_is_scikit_learns_over_the_whole(monkeypatch):
    import modelwatch.metrics as metrics

    rng = np.random.default_rng(8)
    y_true = rng.integers(0, 3, 10_007)
    probabilities = rng.dirichlet([1, 1, 1], 10_007)
    monkeypatch.setattr(metrics, "LOG_LOSS_SLICE_ROWS", 1000)  # 11 slices
    got = classification_metrics(y_true, y_true, probabilities, classes=[0, 1, 2], positive_label=None)
    assert got["LogLoss"].value == pytest.approx(skm.log_loss(y_true, probabilities), abs=1e-12)


@pytest.mark.parametrize("seed", range(40))
def test_precision_recall_f1_from_counts_are_scikit_learns_in_odd_batches(seed):
    # Few rows, skewed and missing classes, a positive class that is never predicted or
    # never present: the zero_division corners, binary (either positive label) and macro.
    rng = np.random.default_rng(seed)
    classes = ["a", "b"] if seed % 2 else ["a", "b", "c", "d"]
    rows = int(rng.integers(1, 30))
    weights = rng.dirichlet(np.full(len(classes), 0.3))
    y_true = rng.choice(classes, rows, p=weights).astype(object)
    y_pred = rng.choice(classes, rows, p=rng.dirichlet(np.full(len(classes), 0.3))).astype(object)
    positive = classes[seed % 4 // 2] if len(classes) == 2 else None
    got = classification_metrics(y_true, y_pred, None, classes=classes, positive_label=positive)
    averaging = {"average": "binary", "pos_label": positive} if positive else {"average": "macro"}
    for name, function in (
        ("F1", skm.f1_score),
        ("Precision", skm.precision_score),
        ("Recall", skm.recall_score),
    ):
        expected = function(y_true, y_pred, zero_division=0, **averaging)
        assert got[name].value == pytest.approx(expected, abs=1e-12), (name, list(y_true), list(y_pred))
    assert got["Accuracy"].value == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-15)


@pytest.mark.parametrize("classes", [2, 3])
def test_classification_totals_fed_in_chunks_are_scikit_learns_over_the_whole(classes, monkeypatch):
    import modelwatch.metrics as metrics

    rng = np.random.default_rng(classes)
    rows = 5003
    y_true = rng.integers(0, classes, rows)
    probabilities = rng.dirichlet(np.ones(classes), rows).round(2)  # ties for ROC AUC
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    y_pred = np.where(rng.random(rows) < 0.8, y_true, rng.integers(0, classes, rows))
    if classes == 3:
        y_pred[[5, 4000]] = -1  # a prediction that is none of the classes
    monkeypatch.setattr(metrics, "AUC_BLOCK_ROWS", 97)
    totals = metrics.ClassificationTotals(classes, positive_code=1)
    for start in range(0, rows, 1000):
        stop = start + 1000
        totals.add(y_true[start:stop], y_pred[start:stop], probabilities[start:stop])
    auc = None
    if classes == 2:
        auc = metrics.roc_auc_of_sorted(
            np.sort(probabilities[y_true == 1, 1]), np.sort(probabilities[y_true != 1, 1])
        )
    got = metrics.classification_metrics_of_totals(totals, auc)
    # Multiclass: the macro average over the classes present (a prediction that is no
    # class counts as wrong, and is not a class of the average).
    average = (
        {"average": "binary", "pos_label": 1}
        if classes == 2
        else {"average": "macro", "labels": np.union1d(y_true, y_pred[y_pred >= 0])}
    )
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
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name].value == pytest.approx(value, abs=1e-12), name
    right = int(np.sum(y_true == y_pred))
    assert (got["Accuracy"].row_sum, got["Accuracy"].rows) == (right, rows)


@pytest.mark.parametrize(
    ("classes", "with_probabilities"),
    [([0, 1], True), ([0, 1], False), (["a", "b", "c"], True), (["a", "b", "c"], False)],
    ids=["binary", "binary-without-proba", "multiclass", "multiclass-without-proba"],
)
def test_publishable_metrics_are_the_ones_a_classifier_computes(classes, with_probabilities):
    # What model check and SignalsUnavailable say a model publishes is what the computation
    # gives on a batch with every class present: neither list can drift from the other.
    rng = np.random.default_rng(5)
    y_true = np.array(classes * 40, dtype=object)
    y_pred = rng.permutation(y_true)
    probabilities = rng.dirichlet(np.ones(len(classes)), len(y_true)) if with_probabilities else None
    computed = classification_metrics(y_true, y_pred, probabilities, classes, positive_label=classes[-1])

    publishable = publishable_metrics("classification", len(classes), with_probabilities)

    assert set(publishable) == set(computed)
    for name in QUALITY_METRICS:
        reason = why_unpublishable(name, "classification", len(classes), with_probabilities)
        assert (reason is None) == (name in computed), name


def test_publishable_metrics_are_the_ones_a_regressor_computes():
    rng = np.random.default_rng(6)
    y_true = rng.normal(10, 2, 50)
    computed = regression_metrics(y_true, y_true + rng.normal(0, 1, 50))

    assert set(publishable_metrics("regression", 0, False)) == set(computed)
    assert why_unpublishable("ErrorRate", "regression", 0, False) == (
        "ErrorRate is a classification metric and the model is a regressor"
    )

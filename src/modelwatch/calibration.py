"""Fitting calibration.json on the held-out reference: what estimated performance needs.

Confidence-based estimation (modelwatch.estimation) is only as good as the model's
probabilities are calibrated. Following NannyML's documented procedure, each class's
probability gets an isotonic map fitted on the reference rows (never the training rows,
whose probabilities are optimistic), and only when it helps: three stratified
splits of the reference compare the expected calibration error (ECE, 10 equal-width
bins) of the raw and of the calibrated probabilities on the held-out part; a class whose
calibrated error is not lower keeps its raw probabilities. Binary models calibrate the
positive class's probability (the other is its complement); multiclass models every
class's, one against the rest.

Beside the maps the file records the reference's realized metrics, CBPE's estimate of
them on the same rows, and the standard deviations the confidence band is scaled from.
The maps are isotonic thresholds in JSON: small, readable, and applied in Lambda with
numpy alone.

In the runtime package, not modelwatch.modeling: the retrain function fits a candidate's
calibration too (modelwatch.retraining).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from modelwatch.estimation import (
    CALIBRATION_FORMAT,
    ESTIMABLE,
    MULTICLASS_ESTIMABLE,
    Calibration,
    cbpe,
)

ECE_BINS = 10
CALIBRATION_SPLITS = 3
CALIBRATION_TEST_SHARE = 0.3
BOOTSTRAP_DRAWS = 200
# Fewer rows of either outcome than this and a class's map would be noise: keep it raw.
MIN_ROWS_PER_OUTCOME = 10


def expected_calibration_error(probability: np.ndarray, outcome: np.ndarray, bins: int = ECE_BINS) -> float:
    """Row-weighted mean of |mean probability - share of positives| over equal-width bins."""
    bin_of = np.minimum((probability * bins).astype(int), bins - 1)
    error = 0.0
    for number in range(bins):
        inside = bin_of == number
        if inside.any():
            error += inside.sum() * abs(probability[inside].mean() - outcome[inside].mean())
    return float(error / probability.size)


def _isotonic(probability: np.ndarray, outcome: np.ndarray) -> Any:
    from sklearn.isotonic import IsotonicRegression

    return IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(
        probability, outcome
    )


def fit_class_map(probability: np.ndarray, outcome: np.ndarray, seed: int) -> dict[str, Any]:
    """One class's entry: isotonic thresholds when they lower the held-out ECE, else none."""
    positives = int(outcome.sum())
    if min(positives, outcome.size - positives) < MIN_ROWS_PER_OUTCOME:
        return {
            "calibrated": False,
            "reason": f"the reference has {positives} of {outcome.size} rows of this class: "
            "too few to calibrate",
            "x": [],
            "y": [],
        }
    from sklearn.model_selection import StratifiedShuffleSplit

    splits = StratifiedShuffleSplit(
        n_splits=CALIBRATION_SPLITS, test_size=CALIBRATION_TEST_SHARE, random_state=seed
    )
    raw_errors, calibrated_errors = [], []
    for fit_rows, test_rows in splits.split(probability.reshape(-1, 1), outcome):
        mapped = _isotonic(probability[fit_rows], outcome[fit_rows]).predict(probability[test_rows])
        raw_errors.append(expected_calibration_error(probability[test_rows], outcome[test_rows]))
        calibrated_errors.append(expected_calibration_error(np.asarray(mapped), outcome[test_rows]))
    raw_error, calibrated_error = float(np.mean(raw_errors)), float(np.mean(calibrated_errors))
    entry: dict[str, Any] = {"ece_raw": raw_error, "ece_calibrated": calibrated_error}
    if calibrated_error >= raw_error:
        return {
            **entry,
            "calibrated": False,
            "reason": "isotonic calibration did not lower the held-out calibration error",
            "x": [],
            "y": [],
        }
    fitted = _isotonic(probability, outcome)
    return {
        **entry,
        "calibrated": True,
        "x": [float(value) for value in fitted.X_thresholds_],
        "y": [float(value) for value in fitted.y_thresholds_],
    }


def _realized(
    codes: np.ndarray, predicted: np.ndarray, positive: np.ndarray | None, positive_index: int | None
) -> dict[str, float]:
    from sklearn import metrics as skm

    accuracy = float(np.mean(codes == predicted))
    values = {"ErrorRate": 1.0 - accuracy, "Accuracy": accuracy}
    if positive_index is not None and positive is not None:
        truth, guess = codes == positive_index, predicted == positive_index
        # Counted here rather than by scikit-learn's scorers: the bootstrap calls this 200 times.
        true_positive = float(np.sum(truth & guess))
        predicted_positive, actual_positive = float(guess.sum()), float(truth.sum())
        values["Precision"] = true_positive / predicted_positive if predicted_positive else 0.0
        values["Recall"] = true_positive / actual_positive if actual_positive else 0.0
        total = predicted_positive + actual_positive
        values["F1"] = 2 * true_positive / total if total else 0.0
        if 0 < truth.sum() < truth.size:
            values["ROCAUC"] = float(skm.roc_auc_score(truth, positive))
    return values


def standard_deviations(
    codes: np.ndarray,
    predicted: np.ndarray,
    positive: np.ndarray | None,
    positive_index: int | None,
    seed: int,
) -> dict[str, float]:
    """Per-row standard deviation of each metric on the reference: SE on n rows = it / sqrt(n).

    ErrorRate and Accuracy are row means, so it is the standard deviation of the rows'
    correctness (NannyML's SEM). The others are not; a seeded bootstrap of the reference
    gives their standard error on its own size, scaled back to one row by sqrt(rows).
    """
    rows = codes.size
    correct = (codes == predicted).astype(float)
    deviations = {"ErrorRate": float(np.std(correct)), "Accuracy": float(np.std(correct))}
    if positive_index is None or positive is None:
        return deviations
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(BOOTSTRAP_DRAWS):
        sample = rng.integers(0, rows, rows)
        values = _realized(codes[sample], predicted[sample], positive[sample], positive_index)
        for name in ("Precision", "Recall", "F1", "ROCAUC"):
            if name in values:
                draws.setdefault(name, []).append(values[name])
    for name, drawn in draws.items():
        deviations[name] = float(np.std(drawn) * math.sqrt(rows))
    return deviations


def fit_calibration(
    probabilities: np.ndarray,
    y_true: np.ndarray,
    predictions: np.ndarray,
    classes: list[Any],
    positive_label: Any,
    seed: int = 0,
) -> dict[str, Any]:
    """calibration.json's content for a classifier's reference rows (labels already the model's classes)."""
    index_of = {label: index for index, label in enumerate(classes)}
    codes = np.fromiter((index_of[label] for label in y_true), dtype=int, count=len(y_true))
    predicted = np.fromiter(
        (index_of.get(label, -1) for label in predictions), dtype=int, count=len(predictions)
    )
    binary = len(classes) == 2
    positive_index = index_of.get(positive_label) if binary else None
    columns = [positive_index] if binary and positive_index is not None else list(range(len(classes)))
    calibrators = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for index in columns:
            entry = fit_class_map(probabilities[:, index], (codes == index).astype(float), seed)
            calibrators.append({"class": classes[index], **entry})
    document: dict[str, Any] = {
        "format": CALIBRATION_FORMAT,
        "method": "isotonic",
        "classes": list(classes),
        "positive_label": positive_label if binary else None,
        "calibrators": calibrators,
    }
    calibration = Calibration.from_dict(document, classes, positive_index)
    calibrated = calibration.apply(probabilities)
    estimated = cbpe(calibrated, predicted, positive_index).values
    positive = probabilities[:, positive_index] if positive_index is not None else None
    names = ESTIMABLE if positive_index is not None else MULTICLASS_ESTIMABLE
    realized = _realized(codes, predicted, positive, positive_index)
    document["reference"] = {
        "rows": int(codes.size),
        "realized": {name: realized[name] for name in names if name in realized},
        "estimated": {name: estimated[name] for name in names if name in estimated},
        "standard_deviation": standard_deviations(codes, predicted, positive, positive_index, seed),
    }
    return document


def describe(document: dict[str, Any]) -> str:
    """One line for the build summary: what was calibrated, and the estimate against the truth."""
    parts = []
    for entry in document["calibrators"]:
        if entry["calibrated"]:
            parts.append(
                f"class {entry['class']!r} isotonic (held-out ECE {entry['ece_raw']:.3f} -> "
                f"{entry['ece_calibrated']:.3f})"
            )
        else:
            parts.append(f"class {entry['class']!r} raw ({entry['reason']})")
    reference = document["reference"]
    return (
        "; ".join(parts)
        + f"; on the reference ErrorRate estimated {reference['estimated']['ErrorRate']:.4f}, "
        f"realized {reference['realized']['ErrorRate']:.4f}"
    )

"""Scoring asks the model once where its predict is the argmax of predict_proba, with the same labels."""

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from modelwatch.model_bundle import Feature, ModelBundle, ModelMetadata
from modelwatch.scoring import _predict_is_argmax, predict


def bundle_of(estimator, classes) -> ModelBundle:
    metadata = ModelMetadata(
        name="m",
        version="1",
        task="classification",
        model_file="model.joblib",
        id_column="id",
        target="y",
        features=(Feature("a", "numeric", True), Feature("b", "numeric", True)),
        classes=tuple(classes),
    )
    return ModelBundle(metadata=metadata, estimator=estimator, baseline={})


def data(classes: int, rows: int = 4000) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(classes)
    features = pd.DataFrame(
        {"a": rng.normal(size=rows).round(1), "b": rng.integers(0, 3, rows).astype(float)}
    )
    target = (features["a"] * 2 + rng.normal(size=rows)).round().clip(0, classes - 1).astype(int).to_numpy()
    return features, target


@pytest.mark.parametrize(
    "estimator, classes",
    [
        (make_pipeline(StandardScaler(), HistGradientBoostingClassifier(max_iter=20)), 2),
        (HistGradientBoostingClassifier(max_iter=20), 3),
        (RandomForestClassifier(n_estimators=4, max_depth=3, random_state=0), 2),
        # A depth-1 tree on a feature with three values: leaves with equal class shares, so
        # the probabilities tie and those rows are asked of predict.
        (DecisionTreeClassifier(max_depth=1), 3),
        (LogisticRegression(), 2),  # not known to be argmax: predict is called
    ],
)
def test_labels_are_the_estimators_predict(estimator, classes):
    features, target = data(classes)
    if isinstance(estimator, DecisionTreeClassifier):
        features = features.assign(a=np.repeat([0.0, 1.0], len(features) // 2))
        target = np.tile([0, 1], len(features) // 2)
    estimator.fit(features, target)
    predictions = predict(bundle_of(estimator, estimator.classes_), features, "k.csv")
    np.testing.assert_array_equal(predictions.labels, estimator.predict(features))
    np.testing.assert_array_equal(predictions.probabilities, estimator.predict_proba(features))
    assert _predict_is_argmax(estimator) == (not isinstance(estimator, LogisticRegression))

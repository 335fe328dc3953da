"""Small, real scikit-learn models written in the model-layer layout, for tests."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC

from modelwatch.model_bundle import Feature, ModelMetadata
from modelwatch.modeling.directory import write_model_directory

NUMERIC = ["tenure_months", "monthly_charges"]
CATEGORICAL = ["plan"]


def churn_frame(rows: int, seed: int, id_prefix: str = "r") -> pd.DataFrame:
    """Synthetic churn data with a known logistic relation between inputs and target."""
    rng = np.random.default_rng(seed)
    tenure = rng.uniform(1, 72, rows).round(0)
    charges = rng.normal(70, 20, rows).round(2)
    plan = rng.choice(["basic", "plus", "premium"], rows, p=[0.5, 0.3, 0.2])
    logit = -0.05 * tenure + 0.04 * (charges - 70) + np.where(plan == "basic", 0.8, -0.4) + 0.5
    churned = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(
        {
            "record_id": [f"{id_prefix}-{index:05d}" for index in range(rows)],
            "tenure_months": tenure,
            "monthly_charges": charges,
            "plan": plan,
            "churned": churned,
        }
    )


def write_classifier(
    directory: Path, name: str = "churn-test", accepts_missing: bool = True
) -> ModelMetadata:
    """A fitted pipeline (imputers unless accepts_missing is False) in the model-layer layout."""
    train = churn_frame(1500, seed=1)
    numeric_steps = (
        [SimpleImputer(strategy="median"), StandardScaler()] if accepts_missing else [StandardScaler()]
    )
    preprocess = ColumnTransformer(
        [
            ("numeric", make_pipeline(*numeric_steps), NUMERIC),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
                ),
                CATEGORICAL,
            ),
        ]
    )
    model = make_pipeline(preprocess, LogisticRegression(max_iter=500))
    model.fit(train[NUMERIC + CATEGORICAL], train["churned"])
    metadata = ModelMetadata(
        name=name,
        version="test",
        task="classification",
        model_file="model.joblib",
        id_column="record_id",
        target="churned",
        features=tuple(
            [Feature(n, "numeric", accepts_missing) for n in NUMERIC]
            + [Feature(n, "categorical", True) for n in CATEGORICAL]
        ),
        classes=tuple(int(label) for label in model.classes_),
        positive_label=1,
    )
    return _write(directory, model, metadata)


def write_classifier_without_probabilities(directory: Path, name: str = "churn-test") -> ModelMetadata:
    """A binary churn classifier whose final step (LinearSVC) has no predict_proba."""
    train = churn_frame(1500, seed=1)
    preprocess = ColumnTransformer(
        [
            ("numeric", StandardScaler(), NUMERIC),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ]
    )
    model = make_pipeline(preprocess, LinearSVC()).fit(train[NUMERIC + CATEGORICAL], train["churned"])
    assert not hasattr(model, "predict_proba")
    metadata = ModelMetadata(
        name=name,
        version="test",
        task="classification",
        model_file="model.joblib",
        id_column="record_id",
        target="churned",
        features=tuple(Feature(n, "numeric") for n in NUMERIC)
        + tuple(Feature(n, "categorical") for n in CATEGORICAL),
        classes=tuple(int(label) for label in model.classes_),
        positive_label=1,
    )
    return _write(directory, model, metadata)


def write_multiclass_classifier(directory: Path, name: str = "plan-test") -> ModelMetadata:
    """A three-class classifier (the churn frame's plan from tenure and charges), with predict_proba."""
    train = churn_frame(1500, seed=1)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(train[NUMERIC], train["plan"])
    metadata = ModelMetadata(
        name=name,
        version="test",
        task="classification",
        model_file="model.joblib",
        id_column="record_id",
        target="plan",
        features=tuple(Feature(n, "numeric") for n in NUMERIC),
        classes=tuple(str(label) for label in model.classes_),
    )
    return _write(directory, model, metadata)


def delivery_frame(rows: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Synthetic delivery times: features and the minutes, a known linear relation plus noise."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"distance_km": rng.uniform(0.5, 15, rows), "items": rng.integers(1, 8, rows)})
    target = 10 + 3 * frame["distance_km"] + 1.5 * frame["items"] + rng.normal(0, 3, rows)
    return frame, target


DELIVERY_METADATA = ModelMetadata(
    name="delivery-test",
    version="test",
    task="regression",
    model_file="model.joblib",
    id_column="record_id",
    target="delivery_minutes",
    features=(Feature("distance_km", "numeric", True), Feature("items", "numeric", True)),
)


def write_regressor(directory: Path, name: str = "delivery-test") -> ModelMetadata:
    frame, target = delivery_frame(800, seed=2)
    model = HistGradientBoostingRegressor(max_iter=50).fit(frame, target)
    return _write(directory, model, ModelMetadata(**{**DELIVERY_METADATA.__dict__, "name": name}))


def write_packaged_regressor(directory: Path, name: str = "delivery-test") -> ModelMetadata:
    """The delivery regressor written by modelwatch's own packager, so baseline.json has its
    drift reference (from 400 held-out rows), as `modelwatch model package` writes it."""
    frame, target = delivery_frame(1200, seed=2)
    model = HistGradientBoostingRegressor(max_iter=50).fit(frame[:800], target[:800])
    metadata, _, _ = write_model_directory(
        directory,
        model,
        ModelMetadata(**{**DELIVERY_METADATA.__dict__, "name": name}),
        frame[800:].reset_index(drop=True),
        target[800:].to_numpy(),
    )
    return metadata


def _write(directory: Path, model: object, metadata: ModelMetadata) -> ModelMetadata:
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, directory / "model.joblib")
    (directory / "metadata.json").write_text(json.dumps(metadata.to_dict(), indent=2))
    (directory / "baseline.json").write_text(json.dumps({"reference_rows": 0, "reference_metrics": {}}))
    return metadata

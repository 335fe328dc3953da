"""`modelwatch model build` / `model package`: the model directory they write.

Metric values are checked against scikit-learn computed here on the held-out rows,
not against the values the code under test reports elsewhere.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn import metrics as skm
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder

from modelwatch.cli import model_commands
from modelwatch.errors import UserError
from modelwatch.model_bundle import load_bundle
from modelwatch.modeling import ColumnOptions, build_model, package_model
from modelwatch.modeling.dataset import infer_feature_type, infer_task
from modelwatch.modeling.evaluation import probe_accepts_missing

FEATURES = ["age", "balance", "visits", "segment", "country"]


def churn_like(rows: int, seed: int) -> pd.DataFrame:
    """A small binary problem with a known logistic relation and a few gaps."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "record_id": [f"s{seed}-r{i:04d}" for i in range(rows)],
            "age": rng.integers(18, 80, rows),
            "balance": np.round(rng.normal(100.0, 30.0, rows), 2),
            "visits": rng.poisson(3.0, rows),
            "segment": rng.choice(["gold", "silver", "bronze"], rows),
            "country": rng.choice(["de", "fr", "it"], rows),
        }
    )
    logit = (
        0.05 * (frame["age"] - 45) - 0.04 * (frame["balance"] - 100) + (frame["segment"] == "bronze") * 1.5
    )
    frame["label"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, object]:
    """One classification build shared by the read-only checks (training takes a moment)."""
    folder = tmp_path_factory.mktemp("build")
    train = churn_like(600, seed=1)
    train.loc[[3, 7], "balance"] = np.nan
    train_csv = write_csv(train, folder / "train.csv")
    summary = build_model(train_csv, ColumnOptions(target="label"), folder / "model", name="churn", seed=3)
    return folder / "model", train, summary


def test_build_writes_a_bundle_the_runtime_loads_and_scores(built, tmp_path):
    model_dir, train, summary = built
    bundle = load_bundle(model_dir)
    metadata = bundle.metadata

    assert metadata.name == "churn"
    assert re.fullmatch(r"\d{8}T\d{6}Z", metadata.version)
    assert metadata.task == "classification"
    assert metadata.model_file == "model.skops"
    assert metadata.feature_names == FEATURES
    assert metadata.id_column == "record_id" and metadata.target == "label"
    assert list(metadata.classes) == [0, 1] and metadata.positive_label == 1
    assert set(metadata.library_versions) == {"scikit-learn", "numpy", "pandas", "scipy", "skops"}
    assert set(metadata.trusted_types) == set(sio.get_untrusted_types(file=model_dir / "model.skops"))
    assert set(metadata.training_metrics) >= {"Accuracy", "ErrorRate", "F1", "ROCAUC", "LogLoss"}
    # The file holds exactly the shape ModelMetadata writes (plain JSON ints for classes).
    raw = json.loads((model_dir / "metadata.json").read_text())
    assert raw == metadata.to_dict() and raw["classes"] == [0, 1]

    baseline = bundle.baseline
    assert set(baseline) == {"reference_rows", "reference_metrics", "drift"}
    assert baseline["reference_rows"] == 150 == summary.reference_rows
    assert summary.training_rows == 450

    # A batch as upstream sends it: extra column, its own ids, a gap.
    batch = churn_like(40, seed=9).drop(columns="label").assign(channel="web")
    batch.loc[0, "age"] = np.nan
    batch_csv = write_csv(batch, tmp_path / "batch.csv")
    rows = pd.read_csv(batch_csv)[metadata.feature_names]
    predictions = bundle.estimator.predict(rows)
    assert len(predictions) == 40 and set(predictions) <= {0, 1}
    assert bundle.has_probabilities


def test_unseen_category_at_prediction_time_does_not_raise(built):
    model_dir, _, _ = built
    bundle = load_bundle(model_dir)
    batch = churn_like(5, seed=4).drop(columns="label")
    batch["segment"] = "platinum"  # never seen in training
    batch["country"] = np.nan
    probabilities = bundle.estimator.predict_proba(batch[bundle.metadata.feature_names])
    assert probabilities.shape == (5, 2) and np.all(np.isfinite(probabilities))


def test_reference_metrics_equal_sklearn_on_the_held_out_rows(built):
    model_dir, train, _ = built
    bundle = load_bundle(model_dir)
    # The held-out rows, recomputed with the documented split: 25%, stratified, seed 3.
    _, reference_index = train_test_split(
        np.arange(len(train)), test_size=0.25, random_state=3, stratify=train["label"]
    )
    reference = train.iloc[reference_index]
    x = reference[FEATURES]
    y = reference["label"].to_numpy()
    predicted = bundle.estimator.predict(x)
    probability = bundle.estimator.predict_proba(x)[:, 1]

    reported = bundle.baseline["reference_metrics"]
    assert reported["Accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert reported["ErrorRate"] == pytest.approx(1 - skm.accuracy_score(y, predicted))
    assert reported["Precision"] == pytest.approx(skm.precision_score(y, predicted))
    assert reported["Recall"] == pytest.approx(skm.recall_score(y, predicted))
    assert reported["F1"] == pytest.approx(skm.f1_score(y, predicted))
    assert reported["ROCAUC"] == pytest.approx(skm.roc_auc_score(y, probability))
    assert reported["LogLoss"] == pytest.approx(skm.log_loss(y, probability))
    # Training metrics come from the other rows (the fit split), so they differ.
    assert bundle.metadata.training_metrics["LogLoss"] != pytest.approx(reported["LogLoss"])


def test_regression_build_infers_the_task_and_reports_regression_metrics(tmp_path):
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "record_id": range(300),
            "distance_km": np.round(rng.gamma(2.0, 2.0, 300), 2),
            "courier": rng.choice(["bike", "car"], 300),
        }
    )
    frame["minutes"] = np.round(10 + 3 * frame["distance_km"] + rng.normal(0, 2, 300), 1)
    summary = build_model(
        write_csv(frame, tmp_path / "t.csv"), ColumnOptions(target="minutes"), tmp_path / "m"
    )
    bundle = load_bundle(tmp_path / "m")

    assert bundle.metadata.task == "regression"
    assert bundle.metadata.classes == () and bundle.metadata.positive_label is None
    _, reference_index = train_test_split(np.arange(300), test_size=0.25, random_state=0)
    reference = frame.iloc[reference_index]
    predicted = bundle.estimator.predict(reference[["distance_km", "courier"]])
    reported = bundle.baseline["reference_metrics"]
    assert reported["MAE"] == pytest.approx(skm.mean_absolute_error(reference["minutes"], predicted))
    assert reported["R2"] == pytest.approx(skm.r2_score(reference["minutes"], predicted))
    assert summary.reference_rows == 75


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["yes", "no", "yes"], "classification"),
        ([0, 1, 1, 0], "classification"),
        ([True, False, True], "classification"),
        ([0.0, 1.0, 1.0, np.nan], "classification"),
        ([1, 2, 3, 4, 5, 3, 2], "classification"),
        ([0.5, 1.25, 3.0, 7.5], "regression"),
        (list(range(50)), "regression"),
    ],
)
def test_task_inference(values, expected):
    assert infer_task(pd.Series(values)) == expected


def test_feature_type_inference():
    assert infer_feature_type(pd.Series([1, 2, 3])) == "numeric"
    assert infer_feature_type(pd.Series([1.5, np.nan])) == "numeric"
    assert infer_feature_type(pd.Series(["a", "b", None])) == "categorical"
    assert infer_feature_type(pd.Series([True, False])) == "categorical"


def test_text_labels_become_classes_and_the_larger_is_positive(tmp_path):
    frame = churn_like(300, seed=2)
    frame["label"] = frame["label"].map({0: "stay", 1: "yes"})
    build_model(
        write_csv(frame, tmp_path / "t.csv"),
        ColumnOptions(target="label", features=["age", "segment"]),
        tmp_path / "m",
    )
    metadata = load_bundle(tmp_path / "m").metadata
    assert list(metadata.classes) == ["stay", "yes"] and metadata.positive_label == "yes"
    assert [(f.name, f.type) for f in metadata.features] == [("age", "numeric"), ("segment", "categorical")]


def test_accepts_missing_is_probed_on_the_fitted_estimator():
    frame = churn_like(200, seed=6)
    numeric = frame[["age", "balance"]].astype(float)
    imputing = make_pipeline(SimpleImputer(), LogisticRegression()).fit(numeric, frame["label"])
    plain = LogisticRegression().fit(numeric, frame["label"])
    sample = numeric.head(5)

    assert probe_accepts_missing(imputing, sample, "age", "classification") is True
    assert probe_accepts_missing(plain, sample, "age", "classification") is False


def test_package_a_user_joblib_pipeline(tmp_path):
    # Given a pipeline the user fitted on a DataFrame and saved with joblib
    train = churn_like(400, seed=7)
    reference = churn_like(120, seed=8)
    numeric, categorical = ["age", "balance"], ["segment"]
    pipeline = Pipeline(
        [
            (
                "prepare",
                ColumnTransformer(
                    [
                        ("n", SimpleImputer(), numeric),
                        ("c", OneHotEncoder(handle_unknown="ignore"), categorical),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=500)),
        ]
    ).fit(train[numeric + categorical], train["label"])
    model_file = tmp_path / "user.joblib"
    joblib.dump(pipeline, model_file)

    # When it is packaged with a reference CSV
    summary = package_model(
        model_file,
        write_csv(reference, tmp_path / "reference.csv"),
        ColumnOptions(target="label"),
        tmp_path / "m",
    )

    # Then the bundle has its features, task and the metrics on every reference row
    bundle = load_bundle(tmp_path / "m")
    assert bundle.metadata.feature_names == numeric + categorical
    assert bundle.metadata.task == "classification" and bundle.metadata.name == "user"
    assert bundle.metadata.training_metrics == {}
    assert bundle.baseline["reference_rows"] == 120 == summary.reference_rows
    predicted = pipeline.predict(reference[numeric + categorical])
    assert bundle.baseline["reference_metrics"]["Accuracy"] == pytest.approx(
        skm.accuracy_score(reference["label"], predicted)
    )
    assert np.array_equal(bundle.estimator.predict(reference[numeric + categorical]), predicted)


def test_package_records_features_that_cannot_be_missing(tmp_path):
    frame = churn_like(200, seed=10)
    regressor = LinearRegression().fit(frame[["age", "balance"]], frame["visits"])
    joblib.dump(regressor, tmp_path / "linear.joblib")
    package_model(
        tmp_path / "linear.joblib",
        write_csv(frame, tmp_path / "reference.csv"),
        ColumnOptions(target="visits"),
        tmp_path / "m",
    )
    metadata = load_bundle(tmp_path / "m").metadata
    assert metadata.task == "regression"
    assert [feature.accepts_missing for feature in metadata.features] == [False, False]


def test_package_skops_file_needs_trust_for_unknown_types(tmp_path, capsys):
    frame = churn_like(200, seed=11)
    model = HistGradientBoostingClassifier(max_iter=10).fit(frame[["age", "balance"]], frame["label"])
    sio.dump(model, tmp_path / "user.skops")
    reference_csv = write_csv(frame, tmp_path / "reference.csv")
    untrusted = sio.get_untrusted_types(file=tmp_path / "user.skops")
    assert untrusted  # otherwise this test would prove nothing

    with pytest.raises(UserError, match="--trust") as refused:
        package_model(tmp_path / "user.skops", reference_csv, ColumnOptions(target="label"), tmp_path / "m")
    assert all(name in str(refused.value) for name in untrusted)
    assert not (tmp_path / "m" / "metadata.json").exists()

    package_model(
        tmp_path / "user.skops", reference_csv, ColumnOptions(target="label"), tmp_path / "m", trust=True
    )
    assert load_bundle(tmp_path / "m").metadata.feature_names == ["age", "balance"]
    assert untrusted[0] in capsys.readouterr().out


def test_missing_target_column_names_the_column_and_the_file(tmp_path):
    train_csv = write_csv(churn_like(50, seed=1), tmp_path / "train.csv")
    with pytest.raises(UserError, match=r"has no column 'churned'") as problem:
        build_model(train_csv, ColumnOptions(target="churned"), tmp_path / "m")
    assert str(train_csv) in str(problem.value)


def test_empty_csv_is_a_user_error_naming_the_file(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(UserError, match="empty") as problem:
        build_model(empty, ColumnOptions(target="label"), tmp_path / "m")
    assert str(empty) in str(problem.value)

    header_only = tmp_path / "header.csv"
    header_only.write_text("record_id,age,label\n")
    with pytest.raises(UserError, match="no data rows"):
        build_model(header_only, ColumnOptions(target="label"), tmp_path / "m")


def test_unknown_feature_name_is_a_user_error(tmp_path):
    train_csv = write_csv(churn_like(50, seed=1), tmp_path / "train.csv")
    with pytest.raises(UserError, match=r"'agee'") as problem:
        build_model(train_csv, ColumnOptions(target="label", features=["agee", "balance"]), tmp_path / "m")
    assert "age" in str(problem.value).split("columns are:")[1]


def test_missing_model_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        package_model(
            tmp_path / "nope.joblib", tmp_path / "r.csv", ColumnOptions(target="label"), tmp_path / "m"
        )


def test_cli_build_prints_a_summary(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="modelwatch")
    model_commands.register(parser.add_subparsers(required=True))
    train_csv = write_csv(churn_like(200, seed=12), tmp_path / "train.csv")
    args = parser.parse_args(
        [
            "model",
            "build",
            "--train",
            str(train_csv),
            "--target",
            "label",
            "--features",
            "age, segment",
            "--out",
            str(tmp_path / "m"),
        ]
    )
    assert args.func(args) == 0
    output = capsys.readouterr().out
    assert "50 held out as reference" in output and str(tmp_path / "m") in output
    assert "Accuracy=" in output

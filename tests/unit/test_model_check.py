"""`modelwatch model check`: the model's name against the ModelName `sam deploy` will set,
and its kind against the QualityMetric QualityAlarm will watch.

Run against the repository's own template.yaml and samconfig.toml and a real fitted
classifier written in the model-layer layout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modelwatch.cli.main import main
from tests.model_fixtures import (
    write_classifier,
    write_classifier_without_probabilities,
    write_multiclass_classifier,
    write_regressor,
)
from tests.template_resources import TEMPLATE_PATH

pytestmark = pytest.mark.unit

REPO_SAMCONFIG = TEMPLATE_PATH.parent / "samconfig.toml"
# template.yaml's ModelName default, as README.md's parameter table documents it.
TEMPLATE_DEFAULT_NAME = "churn-classifier"
DEPLOY = "[default.deploy.parameters]\n"
GLOBAL = "[default.global.parameters]\n"


def run_check(capsys, model_dir: Path, template: Path = TEMPLATE_PATH, config: Path | None = None):
    argv = ["model", "check", "--model-dir", str(model_dir), "--template", str(template)]
    if config is not None:
        argv += ["--config-file", str(config)]
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def samconfig(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "samconfig.toml"
    path.write_text("version = 0.1\n" + body, encoding="utf-8")
    return path


def test_the_sample_model_name_matches_the_repository_template_and_samconfig(tmp_path, capsys):
    model_dir = tmp_path / "model"
    write_classifier(model_dir, name=TEMPLATE_DEFAULT_NAME)

    code, out, err = run_check(capsys, model_dir, config=REPO_SAMCONFIG)

    assert (code, err) == (0, "")
    assert f"'{TEMPLATE_DEFAULT_NAME}'" in out and "matches ModelName" in out
    assert f"the default in {TEMPLATE_PATH}" in out


def test_a_model_built_with_another_name_fails_and_says_both_ways_to_fix_it(tmp_path, capsys):
    model_dir = tmp_path / "model"
    write_classifier(model_dir, name="fraud-model")

    code, out, err = run_check(capsys, model_dir, config=REPO_SAMCONFIG)

    assert code == 2 and out == ""
    assert "named 'fraud-model' (metadata.json)" in err
    assert f"ModelName '{TEMPLATE_DEFAULT_NAME}'" in err
    assert f"--name {TEMPLATE_DEFAULT_NAME}" in err
    assert "ModelName=fraud-model" in err and "[default.deploy.parameters]" in err


def test_the_default_config_file_is_the_samconfig_beside_the_template(tmp_path, capsys):
    # Given a copy of the template whose neighbouring samconfig.toml renames the model
    template = tmp_path / "template.yaml"
    shutil.copyfile(TEMPLATE_PATH, template)
    samconfig(tmp_path, '[default.deploy.parameters]\nparameter_overrides = "ModelName=fraud-model"\n')
    model_dir = tmp_path / "model"
    write_classifier(model_dir, name="fraud-model")

    # When the check runs without --config-file, then it reads that samconfig.toml
    code, out, _ = run_check(capsys, model_dir, template=template)
    assert code == 0
    assert f"parameter_overrides in {tmp_path / 'samconfig.toml'}" in out


@pytest.mark.parametrize(
    "body",
    [
        # what `sam deploy --guided` writes: a string of quoted Key="Value" pairs
        DEPLOY + 'parameter_overrides = "QualityMetric=\\"Accuracy\\" ModelName=\\"fraud-model\\""\n',
        DEPLOY + 'parameter_overrides = ["QualityMetric=Accuracy", "ModelName=fraud-model"]\n',
        GLOBAL + 'parameter_overrides = "ParameterKey=ModelName,ParameterValue=fraud-model"\n',
        # the deploy table wins over the global one
        GLOBAL
        + 'parameter_overrides = "ModelName=other"\n'
        + DEPLOY
        + 'parameter_overrides = "ModelName=fraud-model"\n',
    ],
    ids=["guided-string", "list", "cloudformation-form-in-global", "deploy-over-global"],
)
def test_samconfig_parameter_overrides_set_the_deployed_name(tmp_path, capsys, body):
    model_dir = tmp_path / "model"
    write_classifier(model_dir, name="fraud-model")

    code, out, err = run_check(capsys, model_dir, config=samconfig(tmp_path, body))

    assert (code, err) == (0, ""), err
    assert "'fraud-model'" in out


def test_overrides_of_another_config_env_do_not_count(tmp_path, capsys):
    model_dir = tmp_path / "model"
    write_classifier(model_dir, name="fraud-model")
    config = samconfig(tmp_path, '[prod.deploy.parameters]\nparameter_overrides = "ModelName=fraud-model"\n')

    assert run_check(capsys, model_dir, config=config)[0] == 2
    code = main(
        ["model", "check", "--model-dir", str(model_dir), "--template", str(TEMPLATE_PATH)]
        + ["--config-file", str(config), "--config-env", "prod"]
    )
    assert code == 0


def test_a_missing_model_says_how_to_write_one(tmp_path, capsys):
    code, _, err = run_check(capsys, tmp_path / "empty", config=REPO_SAMCONFIG)

    assert code == 2
    assert "metadata.json is missing" in err and "make model" in err


def test_an_override_that_is_not_key_value_names_the_file_and_the_table(tmp_path, capsys):
    model_dir = tmp_path / "model"
    write_classifier(model_dir)
    config = samconfig(tmp_path, '[default.deploy.parameters]\nparameter_overrides = "ModelName"\n')

    code, _, err = run_check(capsys, model_dir, config=config)

    assert code == 2
    assert f"{config} [default.deploy.parameters]" in err and "'ModelName' is not Key=Value" in err


def test_a_template_without_a_model_name_default_asks_for_an_override(tmp_path, capsys):
    template = tmp_path / "template.yaml"
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    template.write_text(text.replace("    Default: churn-classifier\n", "", 1), encoding="utf-8")
    assert template.read_text(encoding="utf-8") != text
    model_dir = tmp_path / "model"
    write_classifier(model_dir)

    code, _, err = run_check(capsys, model_dir, template=template, config=tmp_path / "none.toml")

    assert code == 2
    assert "gives ModelName no default" in err and "add ModelName=<name> to parameter_overrides" in err


# ---------------------------------------------------------------------------- QualityMetric


def test_a_regressor_with_the_default_error_rate_is_refused_naming_what_it_publishes(tmp_path, capsys):
    # Given a regressor named as the template deploys it, and the template's default
    # QualityMetric (ErrorRate, a classification metric)
    model_dir = tmp_path / "model"
    write_regressor(model_dir, name=TEMPLATE_DEFAULT_NAME)

    # When the check runs, then it refuses: the alarm would never get a datapoint
    code, out, err = run_check(capsys, model_dir, config=REPO_SAMCONFIG)
    assert code == 2 and out == ""
    assert "QualityMetric 'ErrorRate'" in err and f"the default in {TEMPLATE_PATH}" in err
    assert "classification metric and the model is a regressor" in err
    assert "This model publishes: MAE, MSE, RMSE, MAPE, MeanError, R2." in err
    assert "QualityMetric=<one of those>" in err and "[default.deploy.parameters]" in err


@pytest.mark.parametrize(
    ("write", "metric", "reason", "publishes"),
    [
        (
            write_multiclass_classifier,
            "ROCAUC",
            "binary classifiers only and the model has 3 classes",
            "ErrorRate, Accuracy, Precision, Recall, F1, LogLoss",
        ),
        (
            write_classifier_without_probabilities,
            "ROCAUC",
            "needs class probabilities and the model has no predict_proba",
            "ErrorRate, Accuracy, Precision, Recall, F1",
        ),
        (
            write_classifier_without_probabilities,
            "LogLoss",
            "needs class probabilities and the model has no predict_proba",
            "ErrorRate, Accuracy, Precision, Recall, F1",
        ),
        (write_classifier, "MAE", "regression metric and the model is a classifier", "ROCAUC, LogLoss"),
    ],
    ids=["multiclass-rocauc", "no-proba-rocauc", "no-proba-logloss", "classifier-mae"],
)
def test_a_quality_metric_the_model_never_publishes_is_refused(
    tmp_path, capsys, write, metric, reason, publishes
):
    model_dir = tmp_path / "model"
    write(model_dir, name="fraud-model")
    config = samconfig(
        tmp_path, DEPLOY + f'parameter_overrides = "ModelName=fraud-model QualityMetric={metric}"\n'
    )

    code, out, err = run_check(capsys, model_dir, config=config)

    assert code == 2 and out == ""
    assert f"QualityMetric {metric!r} (parameter_overrides in {config})" in err
    assert reason in err and publishes in err


@pytest.mark.parametrize(
    ("write", "metric", "additive"),
    [
        (write_classifier, "F1", "ErrorRate, Accuracy"),
        (write_classifier, "ROCAUC", "ErrorRate, Accuracy"),
        (write_multiclass_classifier, "LogLoss", "ErrorRate, Accuracy"),
        (write_regressor, "RMSE", "MAE, MSE, MAPE, MeanError"),
        (write_regressor, "R2", "MAE, MSE, MAPE, MeanError"),
    ],
)
def test_a_non_additive_metric_passes_with_a_warning_naming_the_additive_ones(
    tmp_path, capsys, write, metric, additive
):
    model_dir = tmp_path / "model"
    write(model_dir, name="fraud-model")
    config = samconfig(
        tmp_path, DEPLOY + f'parameter_overrides = "ModelName=fraud-model QualityMetric={metric}"\n'
    )

    code, out, err = run_check(capsys, model_dir, config=config)

    assert code == 0
    assert f"QualityMetric {metric!r}" in out and "is published by this" in out
    (warning,) = err.splitlines()
    assert warning.startswith(f"warning: QualityMetric {metric!r}") and "not row-additive" in warning
    assert "the label join publishes the batch's value" in warning
    assert f"choose one of {additive} (" in warning


@pytest.mark.parametrize(
    ("write", "metric"),
    [(write_classifier, "Accuracy"), (write_multiclass_classifier, "ErrorRate"), (write_regressor, "MAE")],
)
def test_a_row_additive_metric_the_model_publishes_passes_without_a_warning(tmp_path, capsys, write, metric):
    model_dir = tmp_path / "model"
    write(model_dir, name="fraud-model")
    config = samconfig(
        tmp_path, DEPLOY + f'parameter_overrides = "ModelName=fraud-model QualityMetric={metric}"\n'
    )

    assert run_check(capsys, model_dir, config=config)[::2] == (0, "")

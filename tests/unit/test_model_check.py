"""`modelwatch model check`: the model's name against the ModelName `sam deploy` will set.

Run against the repository's own template.yaml and samconfig.toml and a real fitted
classifier written in the model-layer layout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modelwatch.cli.main import main
from tests.model_fixtures import write_classifier
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
        DEPLOY + 'parameter_overrides = "QualityMetric=\\"F1\\" ModelName=\\"fraud-model\\""\n',
        DEPLOY + 'parameter_overrides = ["QualityMetric=F1", "ModelName=fraud-model"]\n',
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

"""`modelwatch model check`: the packaged model against the parameters the stack deploys.

The batch monitor publishes every metric, and the alarms watch, under the template's
ModelName parameter; the name in metadata.json (`model build --name`) is not what
CloudWatch sees. A mismatch is therefore caught before deployment (`make build` runs
this), not discovered on a dashboard that shows another model's name.

The same goes for QualityMetric: QualityAlarm watches it by name, and a metric this model
never publishes (ErrorRate of a regressor, ROCAUC of a multiclass model or of one
without predict_proba) leaves the alarm without data, OK forever. The check refuses it.

The deployed value is what `sam deploy` would use without command-line overrides:
samconfig.toml's parameter_overrides (the [<env>.deploy.parameters] table over
[<env>.global.parameters]), else the template's default.
"""

from __future__ import annotations

import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelwatch.errors import ModelBundleError, UserError
from modelwatch.local.template import load_template
from modelwatch.metrics import ROW_ADDITIVE_METRICS, publishable_metrics, why_unpublishable
from modelwatch.model_bundle import ModelMetadata, load_estimator, load_metadata

PARAMETER = "ModelName"
QUALITY_PARAMETER = "QualityMetric"


@dataclass(frozen=True)
class DeployedName:
    value: str
    source: str  # where the value comes from, in words a user can act on


def parse_parameter_overrides(raw: Any, where: str) -> dict[str, str]:
    """samconfig's parameter_overrides, in either form SAM accepts.

    `Key=Value Key2="two words"` (a string, or a list of such strings), and the
    CloudFormation form `ParameterKey=Key,ParameterValue=Value`.
    """
    if isinstance(raw, str):
        items = [raw]
    elif isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        items = raw
    else:
        raise UserError(f"{where}: parameter_overrides must be a string or a list of strings, got {raw!r}")
    overrides: dict[str, str] = {}
    for item in items:
        try:
            tokens = shlex.split(item)
        except ValueError as problem:
            raise UserError(f"{where}: cannot read parameter_overrides {item!r}: {problem}") from None
        for token in tokens:
            if token.startswith("ParameterKey="):
                fields = {}
                for part in token.split(","):
                    name, _, text = part.partition("=")
                    fields[name] = text
                key, value = fields.get("ParameterKey", ""), fields.get("ParameterValue")
            else:
                key, sep, value = token.partition("=")
                value = value if sep else None
            if not key or value is None:
                raise UserError(
                    f"{where}: parameter_overrides entry {token!r} is not Key=Value "
                    "(or ParameterKey=Key,ParameterValue=Value)"
                )
            overrides[key] = value
    return overrides


def samconfig_overrides(config_file: Path, config_env: str) -> dict[str, str]:
    """The parameter overrides `sam deploy` reads from the config file (none if there is no file)."""
    if not config_file.is_file():
        return {}
    try:
        document = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as problem:
        raise UserError(f"{config_file} is not valid TOML: {problem}") from None
    overrides: dict[str, str] = {}
    # sam merges the global table first; the command's own table wins.
    for command in ("global", "deploy"):
        parameters = document.get(config_env, {}).get(command, {}).get("parameters", {})
        if "parameter_overrides" in parameters:
            where = f"{config_file} [{config_env}.{command}.parameters]"
            overrides.update(parse_parameter_overrides(parameters["parameter_overrides"], where))
    return overrides


def deployed_parameter(
    parameter: str, template_path: Path, config_file: Path, config_env: str
) -> DeployedName:
    overrides = samconfig_overrides(config_file, config_env)
    if parameter in overrides:
        return DeployedName(overrides[parameter], f"parameter_overrides in {config_file}")
    declared = (load_template(template_path).get("Parameters") or {}).get(parameter)
    if declared is None:
        raise UserError(f"{template_path} declares no {parameter} parameter: is it modelwatch's template?")
    if "Default" not in declared:
        placeholder = "<name>" if parameter == PARAMETER else "<value>"
        raise UserError(
            f"{template_path} gives {parameter} no default and {config_file} does not set it: "
            f"add {parameter}={placeholder} to parameter_overrides in {config_file}"
        )
    return DeployedName(str(declared["Default"]), f"the default in {template_path}")


def deployed_model_name(template_path: Path, config_file: Path, config_env: str) -> DeployedName:
    return deployed_parameter(PARAMETER, template_path, config_file, config_env)


def check_model_name(
    model_dir: Path, template_path: Path, config_file: Path, config_env: str = "default"
) -> str:
    """A one-line confirmation when the names agree; a UserError saying how to align them otherwise."""
    if not (Path(model_dir) / "metadata.json").is_file():
        raise UserError(
            f"no model in {model_dir} (metadata.json is missing): write one with `make model` or "
            f"`modelwatch model build|package ... --out {model_dir}`, or pass --model-dir"
        )
    try:
        model_name = load_metadata(model_dir).name
    except ModelBundleError as problem:
        raise UserError(f"cannot read the model in {model_dir}: {problem}") from None
    deployed = deployed_model_name(template_path, config_file, config_env)
    if model_name == deployed.value:
        return f"model name {model_name!r} in {model_dir} matches {PARAMETER} ({deployed.source})"
    raise UserError(
        f"the model in {model_dir} is named {model_name!r} (metadata.json), but the stack will publish "
        f"its metrics and alarms under {PARAMETER} {deployed.value!r} ({deployed.source}).\n"
        "Make them agree, either way:\n"
        f"  - rebuild the model with --name {shlex.quote(deployed.value)} "
        "(modelwatch model build/package ... --name ...), or\n"
        f"  - deploy with {PARAMETER}={shlex.quote(model_name)}: add it to parameter_overrides "
        f"under [{config_env}.deploy.parameters] in {config_file} "
        f"(sam deploy --guided saves it there; a --parameter-overrides on the sam deploy command "
        "line alone is not seen by this check)."
    )


@dataclass(frozen=True)
class MetricCheck:
    confirmation: str
    warnings: list[str]


def check_quality_metric(
    model_dir: Path, template_path: Path, config_file: Path, config_env: str = "default"
) -> MetricCheck:
    """A confirmation (and warnings) when the model can publish the deployed QualityMetric;
    a UserError naming the metrics it can publish otherwise."""
    model_dir = Path(model_dir)
    try:
        metadata = load_metadata(model_dir)
        has_probabilities = _has_probabilities(model_dir, metadata)
    except ModelBundleError as problem:
        raise UserError(f"cannot read the model in {model_dir}: {problem}") from None
    deployed = deployed_parameter(QUALITY_PARAMETER, template_path, config_file, config_env)
    metric = deployed.value
    kind = _describe(metadata, has_probabilities)
    publishable = publishable_metrics(metadata.task, len(metadata.classes), has_probabilities)
    where = f"[{config_env}.deploy.parameters] in {config_file}"
    unpublishable = why_unpublishable(metric, metadata.task, len(metadata.classes), has_probabilities)
    if unpublishable is not None:
        raise UserError(
            f"QualityAlarm would watch {QUALITY_PARAMETER} {metric!r} ({deployed.source}), which the model "
            f"in {model_dir} ({kind}) can never publish: {unpublishable}. The alarm would get no data and "
            "stay OK whatever the model does.\n"
            f"This model publishes: {', '.join(publishable)}.\n"
            f"Fix: deploy with {QUALITY_PARAMETER}=<one of those>, with a QualityThreshold and "
            "QualityComparison that suit it: add them to parameter_overrides under "
            f"{where} (a --parameter-overrides on the sam deploy command line alone is not seen by "
            "this check)."
        )
    warnings = []
    if metric not in ROW_ADDITIVE_METRICS:
        additive = [name for name in publishable if name in ROW_ADDITIVE_METRICS]
        warnings.append(
            f"{QUALITY_PARAMETER} {metric!r} ({deployed.source}) is not row-additive: when labels "
            "arrive after their batch, the label join publishes the batch's value over its labels "
            "so far each time (a batch weighs once per arrival, not by its rows), and batches with "
            "fewer than MinLabeledRows labeled rows give none (they cannot be pooled). For every "
            f"label counted once, choose one of {', '.join(additive)} "
            f"(set {QUALITY_PARAMETER} under {where})."
        )
    confirmation = f"{QUALITY_PARAMETER} {metric!r} ({deployed.source}) is published by this {kind}"
    return MetricCheck(confirmation, warnings)


def _has_probabilities(model_dir: Path, metadata: ModelMetadata) -> bool:
    """Whether the batch monitor gets class probabilities from the model (ModelBundle.has_probabilities)."""
    if metadata.task != "classification":
        return False
    return hasattr(load_estimator(model_dir, metadata), "predict_proba")


def _describe(metadata: ModelMetadata, has_probabilities: bool) -> str:
    if metadata.task == "regression":
        return "regression model"
    kind = "binary classifier" if len(metadata.classes) == 2 else f"{len(metadata.classes)}-class classifier"
    return kind + ("" if has_probabilities else " without predict_proba")

"""`modelwatch model check`: the packaged model's name against the ModelName the stack deploys.

The batch monitor publishes every metric, and the alarms watch, under the template's
ModelName parameter; the name in metadata.json (`model build --name`) is not what
CloudWatch sees. A mismatch is therefore caught before deployment (`make build` runs
this), not discovered on a dashboard that shows another model's name.

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
from modelwatch.model_bundle import load_metadata

PARAMETER = "ModelName"


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


def deployed_model_name(template_path: Path, config_file: Path, config_env: str) -> DeployedName:
    overrides = samconfig_overrides(config_file, config_env)
    if PARAMETER in overrides:
        return DeployedName(overrides[PARAMETER], f"parameter_overrides in {config_file}")
    declared = (load_template(template_path).get("Parameters") or {}).get(PARAMETER)
    if declared is None:
        raise UserError(f"{template_path} declares no {PARAMETER} parameter: is it modelwatch's template?")
    if "Default" not in declared:
        raise UserError(
            f"{template_path} gives {PARAMETER} no default and {config_file} does not set it: "
            f"add {PARAMETER}=<name> to parameter_overrides in {config_file}"
        )
    return DeployedName(str(declared["Default"]), f"the default in {template_path}")


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

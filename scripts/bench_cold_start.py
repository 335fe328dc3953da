"""The batch monitor's cold init with and without the runtime layer's bytecode.

What Lambda does on a cold start, on this machine: a fresh CPython 3.13 process whose
sys.path is the function code, the runtime layer and the AWS SDK (Lambda's /var/task,
/opt/python, /var/runtime, in that order) imports the handler module and loads the
model, with the environment Lambda gives the function (tracing on, as the template
sets it). No bytecode is written (-B, PYTHONDONTWRITEBYTECODE), as on Lambda's
read-only layers, so every repetition is as cold as the first.

The layer is the one the build makes, pruned and compiled by the same Makefile and
scripts, but for this machine (manylinux wheels for cp313 on this architecture)
instead of arm64: one copy with the .pyc files, one with the sources only (BYTECODE=no).
Bytecode is the same on every architecture; the native libraries are not, which is
why Lambda's own figures will differ. The SDK is the virtualenv's boto3, botocore,
s3transfer and urllib3, compiled by the same 3.13, because Lambda's runtime ships its
SDK compiled. The function code ships as source, as sam build makes it.

Columns: imports (the handler module, as Lambda's init phase does), model (the first
event's load of the model bundle), init (the two: the figure compared), process (the
whole process from outside, with the interpreter's start and exit). Repetitions
alternate between the two layers so that load from other work on the machine falls on
both; the medians are printed, each run's init, and the ratio of the medians. The
sizes are of these x86_64 copies; the arm64 layer's are in the build test's output.
(With tracing on, the X-Ray SDK touches /tmp/.aws-xray/initialized, as in Lambda.)

    python scripts/bench_cold_start.py [--repetitions 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import python313  # beside this script, which Python puts on sys.path

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = ROOT / ".build" / "cold-start"
MODEL_DIR = ROOT / ".build" / "bench-model"
SDK_PACKAGES = ("boto3", "botocore", "s3transfer", "urllib3")
LAYERS = {"with bytecode": "yes", "sources only": "no"}
MIB = 1024 * 1024

# Runs in the fresh process. Imports exactly what Lambda's runtime imports for the
# handler "app.lambda_handler", then what the first event builds (the model bundle),
# and reports where the layer's modules were loaded from, so a layer that silently
# fell back to sources (or the other way round) shows in the numbers. Extension
# modules (.so) are the same in both copies and are not counted.
COLD_INIT = """
import time
started = time.perf_counter()
import json, sys
function_dir, layer_dir, sdk_dir, model_dir = sys.argv[1:5]
sys.path[:0] = [function_dir, layer_dir, sdk_dir]
import app
imported = time.perf_counter()
from pathlib import Path
from modelwatch.model_bundle import load_bundle
bundle = load_bundle(Path(model_dir))
loaded = time.perf_counter()
origins = [getattr(module, "__file__", None) or "" for module in list(sys.modules.values())]
from_layer = [origin for origin in origins if origin.startswith(layer_dir) and ".py" in origin[-4:]]
print(json.dumps({
    "imports_s": imported - started,
    "model_s": loaded - imported,
    "init_s": loaded - started,
    "layer_modules": len(from_layer),
    "layer_modules_from_pyc": sum(origin.endswith(".pyc") for origin in from_layer),
    "model": bundle.metadata.name,
    "wrote_bytecode": not sys.dont_write_bytecode,
}))
"""


def host_architecture() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def tree_mib(directory: Path) -> float:
    size = sum(
        path.stat().st_size for path in directory.rglob("*") if path.is_file() and not path.is_symlink()
    )
    return size / MIB


def build_layers(cache_dir: Path) -> dict[str, Path]:
    """Both copies of the runtime layer, built by its Makefile for cp313 on this machine."""
    layers = {}
    for name, bytecode in LAYERS.items():
        artifacts = cache_dir / ("layer-" + name.replace(" ", "-"))
        run(
            [
                "make",
                "--no-print-directory",
                "-f",
                str(ROOT / "layers" / "runtime" / "Makefile"),
                "build-RuntimeLayer",
                f"ARTIFACTS_DIR={artifacts}",
                "PYTHON_VERSION=3.13",
                f"ARCH={host_architecture()}",
                f"BYTECODE={bytecode}",
            ],
            cwd=ROOT,
            timeout=1800,
        )
        layers[name] = artifacts / "python"
    return layers


def build_function(cache_dir: Path) -> Path:
    artifacts = cache_dir / "function"
    run(
        [
            "make",
            "--no-print-directory",
            "-f",
            str(ROOT / "functions" / "batch_monitor" / "Makefile"),
            "build-BatchMonitorFunction",
            f"ARTIFACTS_DIR={artifacts}",
        ],
        cwd=ROOT,
        timeout=300,
    )
    return artifacts


def build_sdk(cache_dir: Path, interpreter: list[str]) -> Path:
    """Lambda's /var/runtime stand-in: the virtualenv's AWS SDK, compiled by the 3.13."""
    import importlib

    sdk_dir = cache_dir / "var-runtime"
    versions = {name: importlib.import_module(name).__version__ for name in SDK_PACKAGES}
    stamp = sdk_dir / "versions.json"
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == versions:
        return sdk_dir
    shutil.rmtree(sdk_dir, ignore_errors=True)
    for name in SDK_PACKAGES:
        package_dir = Path(importlib.import_module(name).__file__ or "").parent
        shutil.copytree(package_dir, sdk_dir / name, ignore=shutil.ignore_patterns("__pycache__"))
    run([*interpreter, "-m", "compileall", "-q", str(sdk_dir)], timeout=600)
    stamp.write_text(json.dumps(versions), encoding="utf-8")
    return sdk_dir


def ensure_model() -> Path:
    from modelwatch.local.demo import ensure_sample_model

    ensure_sample_model(MODEL_DIR, ROOT / "template.yaml")
    return MODEL_DIR


def lambda_environment(function_dir: Path, model_dir: Path) -> dict[str, str]:
    """What Lambda sets that changes what the handler's import does (the template's
    Globals, tracing active), plus the carried-over variables the machine needs."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name in ("PATH", "HOME") or name.startswith("OPENBLAS")
    }
    environment.update(
        {
            "PYTHONDONTWRITEBYTECODE": "1",
            "LAMBDA_TASK_ROOT": str(function_dir),  # Powertools' Tracer is on in Lambda only
            "AWS_LAMBDA_FUNCTION_NAME": "modelwatch-BatchMonitorFunction",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_SERVICE_NAME": "modelwatch",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "MODEL_DIR": str(model_dir),
        }
    )
    return environment


def cold_init(
    interpreter: list[str], function_dir: Path, layer_dir: Path, sdk_dir: Path, model_dir: Path
) -> dict[str, Any]:
    # -S: only the directories Lambda puts on sys.path, none of this machine's site dirs.
    command = [*interpreter, "-S", "-B", "-c", COLD_INIT, str(function_dir), str(layer_dir), str(sdk_dir)]
    started = time.perf_counter()
    result = run(
        [*command, str(model_dir)],
        env=lambda_environment(function_dir, model_dir),
        cwd=function_dir,
        timeout=300,
    )
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    figures["process_s"] = time.perf_counter() - started
    return figures


def measure_cold_start(repetitions: int = 5, cache_dir: Path = CACHE_DIR) -> dict[str, Any]:
    """Builds what it needs (cached), then the medians per layer; python313.Unavailable
    when no CPython 3.13 can be had."""
    interpreter = python313.find_python313()
    cache_dir.mkdir(parents=True, exist_ok=True)
    layers = build_layers(cache_dir)
    function_dir = build_function(cache_dir)
    sdk_dir = build_sdk(cache_dir, interpreter)
    model_dir = ensure_model()
    version = run([*interpreter, "-S", "-c", "import sys; print(sys.version.split()[0])"]).stdout.strip()

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in layers}
    for _ in range(repetitions):
        for name, layer_dir in layers.items():
            runs[name].append(cold_init(interpreter, function_dir, layer_dir, sdk_dir, model_dir))
    results: dict[str, Any] = {"python": version, "repetitions": repetitions, "layers": {}}
    for name, figures in runs.items():
        medians = {
            key: statistics.median(run[key] for run in figures)
            for key in ("imports_s", "model_s", "init_s", "process_s")
        }
        last = figures[-1]
        if last["wrote_bytecode"]:
            raise RuntimeError("the cold process was allowed to write bytecode")
        results["layers"][name] = {
            **medians,
            "init_s_all": [run["init_s"] for run in figures],
            "layer_modules": last["layer_modules"],
            "layer_modules_from_pyc": last["layer_modules_from_pyc"],
            "size_mib": tree_mib(layers[name]),
        }
    with_bytecode, sources = results["layers"]["with bytecode"], results["layers"]["sources only"]
    # Each copy was imported the way its name says, or the ratio would mean nothing.
    if not with_bytecode["layer_modules_from_pyc"] == with_bytecode["layer_modules"] > 0:
        raise RuntimeError(f"the layer with bytecode imported modules from source: {with_bytecode}")
    if sources["layer_modules_from_pyc"] != 0:
        raise RuntimeError(f"the sources-only layer imported bytecode: {sources}")
    results["ratio"] = sources["init_s"] / with_bytecode["init_s"]
    return results


def print_cold_start(repetitions: int = 5) -> None:
    try:
        results = measure_cold_start(repetitions)
    except python313.Unavailable as reason:
        print(f"\ncold start: not measured, no CPython 3.13 here ({reason})")
        return
    layer = results["layers"]
    print(
        f"\ncold start: a fresh python{results['python']} process (-B: writes no bytecode) imports the "
        f"batch monitor's handler\nand loads the sample model; runtime layer built for cp313 "
        f"{host_architecture()}; median of {results['repetitions']} runs each, alternating"
    )
    columns = ("MiB", "imports s", "model s", "init s", "process s")
    print(f"{'runtime layer':<16}" + "".join(f"{column:>11}" for column in columns) + "  init s of each run")
    for name, figures in layer.items():
        seconds = [figures[key] for key in ("imports_s", "model_s", "init_s", "process_s")]
        each = " ".join(f"{value:.2f}" for value in figures["init_s_all"])
        print(
            f"{name:<16}{figures['size_mib']:>11.1f}"
            + "".join(f"{value:>11.2f}" for value in seconds)
            + f"  {each}"
        )
    print(
        f"cold init ratio: {results['ratio']:.1f}x (sources only / with bytecode, medians of init s); "
        f"{layer['with bytecode']['layer_modules']:,} layer modules imported, from .pyc: "
        f"{layer['with bytecode']['layer_modules_from_pyc']:,} with bytecode, "
        f"{layer['sources only']['layer_modules_from_pyc']} sources only"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=5)
    print_cold_start(parser.parse_args().repetitions)
    return 0


if __name__ == "__main__":
    sys.exit(main())

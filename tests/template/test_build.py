"""`sam build` output fits Lambda, ships CPython 3.13 bytecode, and the pruned, compiled
runtime still imports and predicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cfnlint.decode import decode

from tests.parquet_writer import parquet_bytes

from .conftest import TEMPLATE, lambda_runtime_sdk_dir, sample_features

# Lambda: a function and all its layers, unzipped.
LAMBDA_UNZIPPED_LIMIT_BYTES = 262_144_000
MIB = 1024 * 1024
FUNCTIONS = (
    "BatchMonitorFunction",
    "ActualsLoaderFunction",
    "AlertNotifierFunction",
    "LabelJoinFunction",
    "RetrainFunction",
)


def unzipped_bytes(directory: Path) -> int:
    """What Lambda counts: the sizes of the files the zip would hold."""
    assert directory.is_dir(), f"{directory} was not built"
    return sum(
        path.stat().st_size for path in directory.rglob("*") if path.is_file() and not path.is_symlink()
    )


def layers_of(function: str) -> list[str]:
    """The layers template.yaml attaches to the function: what Lambda adds up with it."""
    template, problems = decode(str(TEMPLATE))
    assert not problems, problems
    # The model layer is !If [HasModelLayerVersionArn, <a promoted version>, !Ref ModelLayer]:
    # the built one counts (a promoted version is the same directory, retrained).
    layers = template["Resources"][function]["Properties"]["Layers"]
    return [layer["Fn::If"][2]["Ref"] if "Fn::If" in layer else layer["Ref"] for layer in layers]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_and_its_layers_fit_lambdas_unzipped_size_limit(sam_build_dir, function):
    parts = {name: unzipped_bytes(sam_build_dir / name) for name in (function, *layers_of(function))}
    total = sum(parts.values())
    summary = ", ".join(f"{name} {size / MIB:.1f} MiB" for name, size in parts.items())
    summary += f"; total {total / MIB:.1f} MiB of {LAMBDA_UNZIPPED_LIMIT_BYTES / MIB:.0f} MiB"
    headroom = "left for a bigger model" if "ModelLayer" in parts else "left"
    summary += f" ({(LAMBDA_UNZIPPED_LIMIT_BYTES - total) / MIB:.1f} MiB {headroom})"
    print(f"\n{function}: {summary}")
    assert total < LAMBDA_UNZIPPED_LIMIT_BYTES, summary


def test_function_artifact_ships_the_handler_and_runtime_package_only(sam_build_dir):
    artifact = sam_build_dir / "BatchMonitorFunction"
    assert (artifact / "app.py").is_file()
    assert (artifact / "modelwatch" / "monitor.py").is_file()
    assert not (artifact / "modelwatch" / "cli").exists(), "developer tooling shipped"
    assert not (artifact / "modelwatch" / "local").exists(), "developer tooling shipped"
    assert not (artifact / "modelwatch" / "modeling").exists(), "model building shipped"
    assert not list(artifact.rglob("__pycache__"))
    assert not (artifact / "Makefile").exists()


def test_runtime_layer_leaves_the_aws_sdk_to_the_lambda_runtime(sam_build_dir):
    site = sam_build_dir / "RuntimeLayer" / "python"
    for provided_by_lambda in ("boto3", "botocore", "s3transfer", "urllib3"):
        assert not (site / provided_by_lambda).exists(), f"{provided_by_lambda} is in the layer"
    # Built for Lambda's platform, not this machine's.
    assert list((site / "numpy" / "_core").glob("_multiarray_umath.cpython-313-aarch64-linux-gnu.so"))


def test_no_function_or_layer_ships_the_aws_cli(sam_build_dir):
    # The AWS CLI is developer tooling in the dev lock (requirements/dev.txt), with its own
    # copy of botocore; the functions and layers are built from their own requirements.
    developer_only = ("awscli", "docutils", "colorama", "rsa")
    shipped = [
        str(path.relative_to(sam_build_dir))
        for artifact in sam_build_dir.iterdir()
        if artifact.is_dir()
        for folder in (artifact, artifact / "python")
        if folder.is_dir()
        for path in folder.iterdir()
        if path.name.split("-")[0].lower() in developer_only
    ]
    assert shipped == []


def test_runtime_layer_is_pruned_but_keeps_package_metadata(sam_build_dir):
    site = sam_build_dir / "RuntimeLayer" / "python"
    assert not list(site.rglob("tests")), "test suites shipped"
    assert not list(site.rglob("*.pyx")) and not list(site.rglob("*.h")), "build inputs shipped"
    assert not list(site.rglob("__pycache__")), "bytecode of the build machine's Python shipped"
    # importlib.metadata.version() reads METADATA; skops and Powertools call it.
    assert (site / "scikit_learn-1.9.1.dist-info" / "METADATA").is_file()


# CPython 3.13's bytecode magic number (Lib/importlib/_bootstrap_external.py: 3571, then
# b"\r\n"), written here rather than asked of a Python: the build machine's is another.
CPYTHON_313_MAGIC = (3571).to_bytes(2, "little") + b"\r\n"


def test_runtime_layer_ships_cpython_313_bytecode_in_place_of_the_sources(sam_build_dir):
    site = sam_build_dir / "RuntimeLayer" / "python"
    bytecode = list(site.rglob("*.pyc"))
    sources = list(site.rglob("*.py"))
    size = unzipped_bytes(site)
    print(
        f"\nRuntimeLayer with bytecode: {size / MIB:.1f} MiB unzipped, {len(bytecode):,} .pyc files "
        f"({sum(path.stat().st_size for path in bytecode) / MIB:.1f} MiB), {len(sources)} .py files"
    )
    assert len(bytecode) > 1000, "the layer shipped without bytecode: was a CPython 3.13 found?"
    foreign = [str(path.relative_to(site)) for path in bytecode if path.read_bytes()[:4] != CPYTHON_313_MAGIC]
    assert not foreign, f"not CPython 3.13 bytecode: {foreign[:5]}"
    # Legacy .pyc beside where the source was: imported only when there is no .py.
    for package in ("sklearn", "pandas", "numpy", "scipy", "skops", "aws_lambda_powertools"):
        assert (site / package / "__init__.pyc").is_file(), package
    assert not sources, f"sources shipped beside their bytecode: {sources[:5]}"


def test_model_layer_mounts_the_model_directory_at_opt_model(sam_build_dir, sample_model_dir):
    mounted = sam_build_dir / "ModelLayer" / "model"  # a layer's content appears under /opt
    assert sorted(path.name for path in mounted.iterdir()) == sorted(
        path.name for path in sample_model_dir.iterdir()
    )


# Run by a Python that sees only the built artifacts (Lambda's /var/task and /opt/python)
# and the AWS SDK (Lambda's /var/runtime): -S keeps the virtualenv's site-packages out.
IMPORT_CHECK = textwrap.dedent(
    """
    import importlib, importlib.util, json, pkgutil, sys
    from pathlib import Path

    runtime_dir, function_dirs, model_dir = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:-1]], sys.argv[-1]
    leaks = [entry for entry in sys.path if "site-packages" in entry]
    assert not leaks, f"site-packages on sys.path: {leaks}"

    import aws_lambda_powertools, aws_xray_sdk.core, joblib, numpy, pandas, scipy, skops.io, sklearn
    import sklearn.ensemble, sklearn.linear_model, sklearn.metrics
    import cramjam, fastparquet, fsspec
    for module in (aws_lambda_powertools, aws_xray_sdk, joblib, numpy, pandas, scipy, skops, sklearn,
                   cramjam, fastparquet, fsspec):
        assert Path(module.__file__).is_relative_to(runtime_dir), f"{module.__name__} from {module.__file__}"
    # From the shipped bytecode alone: the layer has no sources to fall back to.
    from_source = [name for name, module in list(sys.modules.items())
                   if str(getattr(module, "__file__", None) or "").startswith(str(runtime_dir))
                   and str(module.__file__).endswith(".py")]
    assert not from_source, f"imported from source: {from_source[:5]}"

    import modelwatch
    assert Path(modelwatch.__file__).is_relative_to(function_dirs[0]), modelwatch.__file__
    # The artifact has no modelwatch.cli, .local or .modeling, so a shipped module that
    # imported one at import time fails here with ModuleNotFoundError.
    for info in pkgutil.walk_packages(modelwatch.__path__, "modelwatch."):
        importlib.import_module(info.name)
    tooling = [name for name in sys.modules if name.split(".")[:2] in (
        ["modelwatch", "cli"], ["modelwatch", "local"], ["modelwatch", "modeling"])]
    assert not tooling, f"developer tooling loaded in the Lambda runtime: {tooling}"
    # Every handler, each from its own artifact (modelwatch is the same package in all).
    for function_dir in function_dirs:
        spec = importlib.util.spec_from_file_location(f"app_{function_dir.name}", function_dir / "app.py")
        spec.loader.exec_module(importlib.util.module_from_spec(spec))

    from modelwatch.model_bundle import load_bundle
    bundle = load_bundle(Path(model_dir))
    features = pandas.read_json(sys.stdin, orient="split")[bundle.metadata.feature_names]
    # The same rows as a Parquet batch (snappy pages), through the shipped reader and validation.
    from modelwatch.batch_files import read_batch
    from modelwatch.validation import validate_batch
    key = "incoming/features.parquet"
    batch = read_batch(Path(model_dir).parent.joinpath("features.parquet").read_bytes(), key, 10**8)
    from_parquet = validate_batch(batch, bundle.metadata, key, 0.0).features
    print(json.dumps({
        "probabilities": bundle.estimator.predict_proba(features)[:, 1].tolist(),
        "parquet_probabilities": bundle.estimator.predict_proba(from_parquet)[:, 1].tolist(),
        "versions": {"sklearn": sklearn.__version__, "numpy": numpy.__version__},
    }))
    """
)


def test_pruned_runtime_imports_everything_and_predicts_like_the_unpruned_install(
    host_runtime_dir, function_artifacts, sample_model_dir, tmp_path
):
    # Given the runtime layer built for this machine's Python, the functions' artifacts and the model
    sdk_dir = lambda_runtime_sdk_dir(tmp_path / "var-runtime")
    batch_monitor = function_artifacts["BatchMonitorFunction"]
    features = sample_features(rows=50, seed=3)
    # Beside the model directory: the check finds it there without another argument.
    (sample_model_dir.parent / "features.parquet").write_bytes(
        parquet_bytes(features.assign(record_id=[f"r-{index}" for index in range(len(features))]))
    )
    environment = {
        "PATH": os.environ.get("PATH", ""),
        # Lambda's order: /var/task, /opt/python, /var/runtime
        "PYTHONPATH": os.pathsep.join(map(str, (batch_monitor, host_runtime_dir, sdk_dir))),
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "modelwatch",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }

    # When a Python without the virtualenv imports every shipped module and scores the features
    result = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            IMPORT_CHECK,
            str(host_runtime_dir),
            *(str(function_artifacts[function]) for function in FUNCTIONS),
            str(sample_model_dir),
        ],
        input=features.to_json(orient="split"),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=environment,
    )

    # Then it succeeds, and predicts what the full install in the virtualenv predicts
    assert result.returncode == 0, result.stderr[-6000:]
    scored = json.loads(result.stdout.strip().splitlines()[-1])
    from modelwatch.model_bundle import load_bundle

    bundle = load_bundle(sample_model_dir)
    expected = bundle.estimator.predict_proba(features[bundle.metadata.feature_names])[:, 1]
    assert scored["probabilities"] == pytest.approx(expected.tolist(), abs=1e-12)
    assert scored["parquet_probabilities"] == pytest.approx(expected.tolist(), abs=1e-12)
    assert scored["versions"]["sklearn"] == "1.9.1"

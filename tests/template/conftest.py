"""Fixtures of the template tier: a small model, `sam build` output, a host-Python runtime.

The expensive fixtures are session-scoped and build with the project's own Makefiles,
so what is measured and imported here is exactly what `sam build` ships. Downloaded
wheels and built runtime trees are cached in .build/ (gitignored), so only the first
run on a machine downloads anything.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "template.yaml"
VENV_BIN = Path(sys.executable).parent


def tool_environment(**extra: str) -> dict[str, str]:
    """The environment for sam and make: the venv's tools (sam finds cfn-lint on PATH), no telemetry."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["SAM_CLI_TELEMETRY"] = "0"
    env.update(extra)
    return env


def run(command: list[str], timeout_seconds: int, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run a command, failing the test with its output when it exits non-zero."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_seconds, **kwargs)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode}\n--- stdout\n{result.stdout[-6000:]}"
            f"\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


def sam_executable() -> str:
    sam = VENV_BIN / "sam"
    return str(sam) if sam.exists() else "sam"


def write_sample_model(model_dir: Path) -> None:
    """A fitted DataFrame pipeline in the model_bundle.py layout, trained here on synthetic data.

    Numeric and categorical columns through a ColumnTransformer, as real models are, so
    loading it exercises skops' trusted types and the pruned scikit-learn, scipy and pandas.
    """
    import numpy as np
    import pandas as pd
    import sklearn
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features = sample_features(rows=400, seed=7)
    rng = np.random.default_rng(11)
    signal = (
        0.08 * features["tenure_months"] - 0.05 * features["monthly_charges"] + (features["plan"] == "basic")
    )
    churned = (signal + rng.normal(0, 0.5, len(features)) < 0).astype(int)

    preprocess = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(SimpleImputer(), StandardScaler()),
                ["tenure_months", "monthly_charges"],
            ),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ]
    )
    model = Pipeline([("preprocess", preprocess), ("classify", HistGradientBoostingClassifier(max_iter=30))])
    model.fit(features, churned)

    model_dir.mkdir(parents=True, exist_ok=True)
    sio.dump(model, model_dir / "model.skops")
    metadata = {
        "name": "churn-classifier",
        "version": "template-test",
        "task": "classification",
        "model_file": "model.skops",
        "trusted_types": sorted(sio.get_untrusted_types(file=model_dir / "model.skops")),
        "id_column": "record_id",
        "target": "churned",
        "timestamp_column": None,
        "features": [
            {"name": "tenure_months", "type": "numeric", "accepts_missing": True},
            {"name": "monthly_charges", "type": "numeric", "accepts_missing": True},
            {"name": "plan", "type": "categorical", "accepts_missing": False},
        ],
        "classes": [0, 1],
        "positive_label": 1,
        "training_metrics": {},
        "library_versions": {"scikit-learn": sklearn.__version__, "pandas": pd.__version__},
    }
    (model_dir / "metadata.json").write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    (model_dir / "baseline.json").write_text("{}", encoding="utf-8")


def sample_features(rows: int, seed: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "tenure_months": rng.integers(0, 72, rows).astype(float),
            "monthly_charges": rng.uniform(10, 120, rows).round(2),
            "plan": rng.choice(["basic", "standard", "premium"], rows),
        }
    )


@pytest.fixture(scope="session")
def sample_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("model")
    write_sample_model(model_dir)
    return model_dir


@pytest.fixture(scope="session")
def sam_build_dir(tmp_path_factory: pytest.TempPathFactory, sample_model_dir: Path) -> Path:
    """`sam build` of the whole template (samconfig.toml's settings), with the sample model."""
    build_dir = tmp_path_factory.mktemp("sam") / "build"
    run(
        [sam_executable(), "build", "--template-file", str(TEMPLATE), "--build-dir", str(build_dir)],
        timeout_seconds=900,
        cwd=REPO_ROOT,
        env=tool_environment(MODEL_ARTIFACT_DIR=str(sample_model_dir)),
    )
    return build_dir


def host_machine() -> str:
    """The manylinux architecture name of this machine (x86_64, aarch64)."""
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


@pytest.fixture(scope="session")
def host_runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runtime layer, pruned and compiled exactly as for Lambda, but for this machine's
    Python, whose bytecode it ships instead of the sources (BYTECODE_PYTHON)."""
    if sys.platform != "linux":
        pytest.skip("the runtime layer is built from manylinux wheels; this machine cannot run them")
    artifacts = tmp_path_factory.mktemp("host-runtime")
    run(
        [
            "make",
            "--no-print-directory",
            "-f",
            str(REPO_ROOT / "layers/runtime/Makefile"),
            "build-RuntimeLayer",
            f"ARTIFACTS_DIR={artifacts}",
            f"PYTHON_VERSION={sys.version_info.major}.{sys.version_info.minor}",
            f"ARCH={host_machine()}",
            f"PYTHON={sys.executable}",
            f"BYTECODE_PYTHON={sys.executable}",
        ],
        timeout_seconds=900,
        cwd=REPO_ROOT,
        env=tool_environment(),
    )
    return artifacts / "python"


@pytest.fixture(scope="session")
def function_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each function's artifact, built by its own Makefile as sam would."""
    artifacts = {}
    for logical_id, folder in (
        ("BatchMonitorFunction", "batch_monitor"),
        ("ActualsLoaderFunction", "actuals_loader"),
        ("AlertNotifierFunction", "alert_notifier"),
        ("LabelJoinFunction", "label_join"),
        ("RetrainFunction", "retrain"),
    ):
        target = tmp_path_factory.mktemp(folder)
        run(
            [
                "make",
                "--no-print-directory",
                "-f",
                str(REPO_ROOT / "functions" / folder / "Makefile"),
                f"build-{logical_id}",
                f"ARTIFACTS_DIR={target}",
            ],
            timeout_seconds=120,
            cwd=REPO_ROOT,
        )
        artifacts[logical_id] = target
    return artifacts


def lambda_runtime_sdk_dir(target: Path) -> Path:
    """A directory standing in for Lambda's /var/runtime: the AWS SDK the runtime layer leaves out."""
    import boto3
    import botocore
    import s3transfer
    import urllib3

    target.mkdir(parents=True, exist_ok=True)
    for module in (boto3, botocore, s3transfer, urllib3):
        package_dir = Path(module.__file__).parent
        link = target / package_dir.name
        if not link.exists():
            link.symlink_to(package_dir, target_is_directory=True)
    return target

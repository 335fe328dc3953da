"""Writing the model directory: model.skops (or model.joblib), baseline.json,
calibration.json (classifiers with probabilities), metadata.json.

The layout is modelwatch.model_bundle's; the reference metrics, the drift baseline and
the calibration are computed here, on rows the model was not fitted on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelwatch import drift
from modelwatch.calibration import describe, fit_calibration
from modelwatch.estimation import CALIBRATION_FILE
from modelwatch.model_bundle import ModelMetadata
from modelwatch.modeling.evaluation import compute_metrics

MODEL_FILES = ("model.skops", "model.joblib")


@dataclass
class BundleSummary:
    """What was written, for the command's closing summary."""

    out_dir: Path
    metadata: ModelMetadata
    training_rows: int
    reference_rows: int
    reference_metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        feature_text = ", ".join(f"{f.name} ({f.type})" for f in self.metadata.features)
        metric_text = ", ".join(f"{name}={value:.4g}" for name, value in self.reference_metrics.items())
        lines = [
            f"model {self.metadata.name} version {self.metadata.version} ({self.metadata.task})",
            f"  rows: {self.training_rows} fitted, {self.reference_rows} held out as reference",
            f"  features ({len(self.metadata.features)}): {feature_text}",
            f"  reference metrics: {metric_text}",
            f"  written to {self.out_dir}",
        ]
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def version_now() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _dump_estimator(estimator: Any, out_dir: Path) -> tuple[str, tuple[str, ...], str | None]:
    """Write the estimator, preferring skops (loadable without running pickled code).

    Returns the file name, the skops types the loader must trust (vetted here, by the
    person packaging the model) and a note when skops could not be used.
    """
    import skops.io as sio

    path = out_dir / "model.skops"
    try:
        sio.dump(estimator, path)
        trusted = tuple(sorted(sio.get_untrusted_types(file=path)))
        # Prove the file round-trips before the layer ships it.
        sio.load(path, trusted=list(trusted))
        return path.name, trusted, None
    except Exception as problem:  # noqa: BLE001 - skops rejects some custom objects
        path.unlink(missing_ok=True)
        import joblib

        joblib.dump(estimator, out_dir / "model.joblib")
        note = f"skops could not serialise the estimator ({problem}); wrote model.joblib instead"
        return "model.joblib", (), note


def write_model_directory(
    out_dir: Path,
    estimator: Any,
    metadata: ModelMetadata,
    reference_features: pd.DataFrame,
    reference_target: np.ndarray,
) -> tuple[ModelMetadata, dict[str, float], list[str]]:
    """Compute the reference metrics and drift baseline, then write the three files.

    Everything that can fail is computed before anything is written, and metadata.json
    is written last, so a failed run never leaves a directory that looks complete.
    """
    reference_metrics, predictions, probabilities = compute_metrics(
        estimator,
        reference_features,
        reference_target,
        metadata.task,
        list(metadata.classes),
        metadata.positive_label,
    )
    baseline = {
        "reference_rows": len(reference_features),
        "reference_metrics": reference_metrics,
        "drift": drift.build_drift_baseline(reference_features, metadata, predictions, probabilities),
    }
    notes = []
    # Estimated performance needs class probabilities: regressors and classifiers without
    # predict_proba get no calibration.json, and their reports say why there is no estimate.
    calibration = None
    if metadata.task == "classification" and probabilities is not None:
        calibration = fit_calibration(
            probabilities,
            np.asarray(reference_target),
            predictions,
            list(metadata.classes),
            metadata.positive_class,
        )
        notes.append(f"calibration for estimated performance: {describe(calibration)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("metadata.json", CALIBRATION_FILE, *MODEL_FILES):
        (out_dir / stale).unlink(missing_ok=True)
    model_file, trusted_types, note = _dump_estimator(estimator, out_dir)
    metadata = ModelMetadata(
        **{**metadata.__dict__, "model_file": model_file, "trusted_types": trusted_types}
    )
    (out_dir / "baseline.json").write_text(json.dumps(baseline, indent=2) + "\n", encoding="utf-8")
    if calibration is not None:
        (out_dir / CALIBRATION_FILE).write_text(json.dumps(calibration, indent=2) + "\n", encoding="utf-8")
    (out_dir / "metadata.json").write_text(json.dumps(metadata.to_dict(), indent=2) + "\n", encoding="utf-8")
    return metadata, reference_metrics, notes + ([note] if note else [])

"""The model layer's content: the fitted estimator, metadata.json and baseline.json.

Layout of a model directory (``/opt/model`` in Lambda, any folder locally)::

    model.skops | model.joblib   the fitted estimator or pipeline
    metadata.json                 see ModelMetadata below
    baseline.json                 reference distributions and metrics (see modelwatch.drift)
    calibration.json              classifiers with probabilities: the probability calibration
                                  estimated performance uses (see modelwatch.estimation); a
                                  model packaged without it is monitored without estimates

metadata.json::

    {
      "name": "churn-classifier", "version": "20261126T101500Z",
      "task": "classification" | "regression",
      "model_file": "model.skops",
      "trusted_types": ["sklearn.pipeline.Pipeline", ...],   # skops types the packager vetted
      "id_column": "record_id", "target": "churned", "timestamp_column": null,
      "features": [{"name": "tenure_months", "type": "numeric", "accepts_missing": true},
                   {"name": "plan", "type": "categorical", "accepts_missing": true}],
      "classes": [0, 1], "positive_label": 1,          # classification only; JSON-typed as the model has them
      "training_metrics": {"Accuracy": 0.91, ...},
      "library_versions": {"scikit-learn": "1.9.1", ...}
    }

The estimator receives a pandas DataFrame with exactly the feature columns, in the
order listed, so pipelines fitted on DataFrames (ColumnTransformer by name) work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, Literal

from modelwatch.errors import ModelBundleError
from modelwatch.labels import LabelNormaliser

# The libraries whose versions metadata.json records for a model written here or by
# retraining: the model layer's build refuses a scikit-learn mismatch.
LIBRARIES = ("scikit-learn", "numpy", "pandas", "scipy", "skops")


def library_versions() -> dict[str, str]:
    """The installed versions of LIBRARIES, the ones that write (and must read) a model."""
    versions = {}
    for library in LIBRARIES:
        try:
            versions[library] = package_metadata.version(library)
        except package_metadata.PackageNotFoundError:
            continue
    return versions


FeatureType = Literal["numeric", "categorical"]
Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Feature:
    name: str
    type: FeatureType
    accepts_missing: bool = False


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    version: str
    task: Task
    model_file: str
    id_column: str
    target: str
    features: tuple[Feature, ...]
    timestamp_column: str | None = None
    classes: tuple[Any, ...] = ()
    positive_label: Any = None
    trusted_types: tuple[str, ...] = ()
    training_metrics: dict[str, float] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]

    @property
    def positive_class(self) -> Any:
        """metadata.json's positive label as the model's own class value ("1" -> 1), or None
        (regression, or a classifier whose metadata names no positive label)."""
        if self.task != "classification" or self.positive_label is None:
            return None
        return LabelNormaliser(self.classes).normalise(self.positive_label)

    @property
    def positive_index(self) -> int | None:
        """The positive class's column in ``predict_proba``'s output (classes in metadata
        order, as scikit-learn's ``classes_``); None when there is no positive class."""
        positive = self.positive_class
        return None if positive is None else list(self.classes).index(positive)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelMetadata:
        try:
            task = raw["task"]
            if task not in ("classification", "regression"):
                raise ModelBundleError(
                    f"metadata.json: task must be classification or regression, got {task!r}"
                )
            features = tuple(
                Feature(
                    name=str(item["name"]),
                    type=item["type"],
                    accepts_missing=bool(item.get("accepts_missing", False)),
                )
                for item in raw["features"]
            )
            for feature in features:
                if feature.type not in ("numeric", "categorical"):
                    raise ModelBundleError(
                        f"metadata.json: feature {feature.name!r} has type {feature.type!r}; "
                        "expected numeric or categorical"
                    )
            metadata = cls(
                name=str(raw["name"]),
                version=str(raw["version"]),
                task=task,
                model_file=str(raw["model_file"]),
                id_column=str(raw.get("id_column", "record_id")),
                target=str(raw.get("target", "actual")),
                features=features,
                timestamp_column=raw.get("timestamp_column"),
                classes=tuple(raw.get("classes") or ()),
                positive_label=raw.get("positive_label"),
                trusted_types=tuple(raw.get("trusted_types") or ()),
                training_metrics=dict(raw.get("training_metrics") or {}),
                library_versions=dict(raw.get("library_versions") or {}),
            )
        except KeyError as missing:
            raise ModelBundleError(f"metadata.json is missing the required field {missing}") from None
        if len(metadata.classes) == 2 and metadata.positive_class is None:
            raise ModelBundleError(
                f"metadata.json: positive_label {metadata.positive_label!r} is not one of the "
                f"classes {list(metadata.classes)}"
            )
        return metadata

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "model_file": self.model_file,
            "trusted_types": list(self.trusted_types),
            "id_column": self.id_column,
            "target": self.target,
            "timestamp_column": self.timestamp_column,
            "features": [
                {"name": f.name, "type": f.type, "accepts_missing": f.accepts_missing} for f in self.features
            ],
            "classes": list(self.classes),
            "positive_label": self.positive_label,
            "training_metrics": self.training_metrics,
            "library_versions": self.library_versions,
        }


@dataclass
class ModelBundle:
    metadata: ModelMetadata
    estimator: Any
    baseline: dict[str, Any]
    calibration: dict[str, Any] | None = None  # calibration.json, None when the directory has none

    @property
    def has_probabilities(self) -> bool:
        return self.metadata.task == "classification" and hasattr(self.estimator, "predict_proba")


def load_metadata(model_dir: Path) -> ModelMetadata:
    path = Path(model_dir) / "metadata.json"
    if not path.is_file():
        raise ModelBundleError(f"no metadata.json in {model_dir}: is the model layer attached and built?")
    return ModelMetadata.from_dict(json.loads(path.read_text(encoding="utf-8")))


def load_estimator(model_dir: Path, metadata: ModelMetadata) -> Any:
    path = Path(model_dir) / metadata.model_file
    if not path.is_file():
        raise ModelBundleError(f"metadata.json names {metadata.model_file!r}, which is not in {model_dir}")
    if path.suffix == ".skops":
        import skops.io as sio

        untrusted = set(sio.get_untrusted_types(file=path))
        unexpected = sorted(untrusted - set(metadata.trusted_types))
        if unexpected:
            raise ModelBundleError(
                f"{path.name} contains types nobody vetted when it was packaged: {unexpected}. "
                "Re-package the model with `modelwatch model package`."
            )
        return sio.load(path, trusted=sorted(untrusted))
    if path.suffix == ".joblib":
        import joblib

        return joblib.load(path)
    raise ModelBundleError(f"unsupported model file {path.name}: expected .skops or .joblib")


def load_bundle(model_dir: Path) -> ModelBundle:
    """Load everything the batch monitor needs from a model directory."""
    model_dir = Path(model_dir)
    metadata = load_metadata(model_dir)
    estimator = load_estimator(model_dir, metadata)
    baseline_path = model_dir / "baseline.json"
    baseline = json.loads(baseline_path.read_text(encoding="utf-8")) if baseline_path.is_file() else {}
    calibration_path = model_dir / "calibration.json"
    calibration = (
        json.loads(calibration_path.read_text(encoding="utf-8")) if calibration_path.is_file() else None
    )
    return ModelBundle(metadata=metadata, estimator=estimator, baseline=baseline, calibration=calibration)
